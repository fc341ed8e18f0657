//! Layer 3 in the gateway: the sandboxes that built-in `exec` and sandboxed stdio upstreams run in, started (preflight, sweep, pool) with the gateway.

use std::sync::Arc;

use palisade_sandbox::Sandboxes;

use crate::config::{Builtin, Config, Transport};
use crate::gateway::StartError;

/// Whether any upstream of `config` runs in a sandbox.
pub fn needed(config: &Config) -> bool {
    config.upstreams.iter().any(|u| {
        u.transport.sandboxed_stdio()
            || matches!(
                u.transport,
                Transport::Builtin {
                    builtin: Builtin::Exec,
                    ..
                }
            )
    })
}

/// Starts layer 3 when the config needs it: a host without a required
/// isolation feature stops the gateway here, naming the degraded mode that
/// would accept it.
pub fn start(config: &Config) -> Result<Option<Arc<Sandboxes>>, StartError> {
    if !needed(config) {
        return Ok(None);
    }
    let helper = std::env::current_exe()
        .map_err(|e| StartError::Sandbox(format!("cannot find palisade's own binary: {e}")))?;
    let sandboxes = Sandboxes::start(&config.sandbox, helper).map_err(|why| {
        let stdio = config.upstreams.iter().any(|u| u.transport.sandboxed_stdio());
        StartError::Sandbox(if stdio {
            format!("{why}\n(stdio upstreams run sandboxed unless their config says `sandbox = \"off\"`, or `palisade mcp --no-sandbox`: both run the server with palisade's privileges, reported as degraded)")
        } else {
            why
        })
    })?;
    Ok(Some(sandboxes))
}

/// Fills the pools of the `exec` profiles, so that the first calls do not
/// wait for a cold sandbox.
pub async fn warm(sandboxes: &Arc<Sandboxes>) {
    for name in crate::upstream::exec::LANGUAGES.iter().map(|l| l.profile) {
        if let Err(error) = sandboxes.warm(name).await {
            tracing::warn!("cannot fill the sandbox pool of `{name}`: {error}");
        }
    }
}
