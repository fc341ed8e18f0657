//! The effective configuration `palisade check` prints: the file's own
//! layout, defaults filled in, environment and header values masked.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::{
    Approvals, Auth, Authz, Config, PipelineConfig, Server, Storage, Transport, as_humantime,
};

/// What `palisade check` prints instead of an environment or header value:
/// those are where API keys live, and check output ends up in CI logs.
pub const MASKED: &str = "<set>";

impl Config {
    /// The effective configuration as TOML, for `palisade check`.
    pub fn to_toml(&self) -> String {
        toml::to_string(&Effective::from(self))
            .unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// `Config` reshaped into the file's own layout, so `check` prints something
/// an operator can paste back.
#[derive(Serialize)]
struct Effective<'a> {
    data_dir: &'a Path,
    environment: &'a str,
    storage: Storage,
    server: &'a Server,
    auth: &'a Auth,
    authz: &'a Authz,
    approvals: &'a Approvals,
    tools: &'a super::Tools,
    wrap: &'a super::Wrap,
    pipeline: &'a PipelineConfig,
    vault: &'a super::VaultSettings,
    #[serde(skip_serializing_if = "indexmap::IndexMap::is_empty")]
    secrets: indexmap::IndexMap<&'a str, EffectiveSecret<'a>>,
    limits: toml::Table,
    audit: super::AuditConfig,
    alerts: super::alerts::EffectiveAlerts<'a>,
    upstreams: indexmap::IndexMap<&'a str, EffectiveUpstream<'a>>,
}

/// A binding in the file's own layout.
#[derive(Serialize)]
struct EffectiveSecret<'a> {
    environment: &'a str,
    upstreams: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    methods: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotate_every: Option<String>,
}

impl<'a> From<&'a palisade_secrets::Binding> for EffectiveSecret<'a> {
    fn from(b: &'a palisade_secrets::Binding) -> Self {
        use palisade_secrets::Placement;
        let (header, format, query, env) = match &b.placement {
            Placement::Header { name, format } => {
                (Some(name.as_str()), Some(format.as_str()), None, None)
            }
            Placement::Query { name } => (None, None, Some(name.as_str()), None),
            Placement::Env { name } => (None, None, None, Some(name.as_str())),
        };
        EffectiveSecret {
            environment: &b.environment,
            upstreams: &b.upstreams,
            destination: b
                .destination
                .as_ref()
                .map(|d| format!("{}://{}:{}{}", d.scheme, d.host, d.port, d.path_prefix)),
            methods: b.destination.as_ref().map_or(&[], |d| d.methods.as_slice()),
            header,
            format,
            query,
            env,
            rotate_every: b
                .rotate_every
                .map(|d| humantime::format_duration(d).to_string()),
        }
    }
}

#[derive(Serialize)]
struct EffectiveUpstream<'a> {
    #[serde(flatten)]
    transport: Transport,
    /// A sandboxed stdio upstream's host paths, as `SRC[:DST]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bind: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bind_ro: Vec<String>,
    prefix: &'a str,
    #[serde(serialize_with = "as_humantime")]
    request_timeout: Duration,
    default_effect: &'a str,
    effects: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    extension_methods: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pinning: Option<&'static str>,
}

impl<'a> From<&'a Config> for Effective<'a> {
    fn from(c: &'a Config) -> Self {
        Effective {
            data_dir: &c.data_dir,
            environment: &c.environment,
            storage: Storage {
                url: mask_password(&c.storage.url),
            },
            server: &c.server,
            auth: &c.auth,
            authz: &c.authz,
            approvals: &c.approvals,
            tools: &c.tools,
            wrap: &c.wrap,
            pipeline: &c.pipeline,
            vault: &c.vault,
            limits: c.limits.effective(),
            audit: super::AuditConfig {
                postgres: c.audit.postgres.as_deref().map(mask_password),
                ..c.audit.clone()
            },
            alerts: c.alerts.effective(),
            secrets: c
                .secrets
                .iter()
                .map(|b| (b.name.as_str(), EffectiveSecret::from(b)))
                .collect(),
            upstreams: c
                .upstreams
                .iter()
                .map(|u| {
                    let effects = u
                        .effects
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let (bind, bind_ro) = binds(&u.transport);
                    (
                        u.name.as_str(),
                        EffectiveUpstream {
                            // A literal `env` or `headers` value serializes masked.
                            transport: u.transport.clone(),
                            bind,
                            bind_ro,
                            prefix: &u.prefix,
                            request_timeout: u.request_timeout,
                            default_effect: u.default_effect.as_str(),
                            effects,
                            extension_methods: &u.extension_methods,
                            pinning: u.pinning.map(palisade_filter::pins::Mode::as_str),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The writable and the read-only binds of a sandboxed stdio upstream, as the file spells them.
fn binds(transport: &Transport) -> (Vec<String>, Vec<String>) {
    let Transport::Stdio {
        sandbox: Some(sandbox),
        ..
    } = transport
    else {
        return (Vec::new(), Vec::new());
    };
    let spell = |m: &palisade_sandbox::Mount| {
        if m.source == m.target {
            m.source.display().to_string()
        } else {
            format!("{}:{}", m.source.display(), m.target.display())
        }
    };
    let (writable, read_only): (Vec<_>, Vec<_>) = sandbox.mounts.iter().partition(|m| m.writable);
    (
        writable.into_iter().map(spell).collect(),
        read_only.into_iter().map(spell).collect(),
    )
}

/// A database URL with its password, if any, replaced by [`MASKED`].
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{MASKED}@{host}{tail}"),
        None => url.to_owned(),
    }
}
