//! The config file as written, read field by field (see `read`): a field
//! that no reader here asks for is refused. `validate` turns it into `Config`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;

use super::ConfigError;
use super::read::{Fields, Secret, Source};

#[derive(Debug, Default)]
pub(super) struct RawConfig {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) server: RawServer,
    /// `None` when the file has no `[pipeline]` table.
    pub(super) pipeline: Option<RawPipeline>,
    /// In the file's order: the operator's order of trust (see ARCHITECTURE.md).
    pub(super) upstreams: IndexMap<String, RawUpstream>,
}

#[derive(Debug, Default)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) path: Option<String>,
    pub(super) allowed_origins: Option<Vec<String>>,
    pub(super) max_message_bytes: Option<usize>,
    pub(super) max_sessions: Option<usize>,
    pub(super) session_idle_timeout: Option<String>,
    pub(super) body_timeout: Option<String>,
    pub(super) strict_names: Option<bool>,
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_client: Option<usize>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawPipeline {
    pub(super) pass_through: Option<Vec<String>>,
    pub(super) stage_timeout: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawUpstream {
    pub(super) command: Option<String>,
    pub(super) args: Option<Vec<String>>,
    pub(super) env: Option<BTreeMap<String, String>>,
    pub(super) inherit_env: Option<bool>,
    pub(super) cwd: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) headers: Option<BTreeMap<String, String>>,
    pub(super) prefix: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) default_effect: Option<String>,
    pub(super) effects: Option<BTreeMap<String, String>>,
    pub(super) extension_methods: Option<Vec<String>>,
}

// Each reader asks for its fields in the order of the reference
// (docs/configuration.md): that is the order "expected one of" lists them in.

impl RawConfig {
    pub(super) fn read(source: &Source<'_>) -> Result<Self, ConfigError> {
        let mut f = source.parse()?;
        let raw = RawConfig {
            data_dir: f.path("data_dir")?,
            server: match f.table("server")? {
                Some(t) => RawServer::read(t)?,
                None => RawServer::default(),
            },
            pipeline: f.table("pipeline")?.map(RawPipeline::read).transpose()?,
            upstreams: f
                .named_tables("upstreams")?
                .into_iter()
                .map(|(name, t)| Ok((name, RawUpstream::read(t)?)))
                .collect::<Result<_, ConfigError>>()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawServer {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawServer {
            listen: f.string("listen")?,
            path: f.string("path")?,
            allowed_origins: f.strings("allowed_origins")?,
            allowed_hosts: f.strings("allowed_hosts")?,
            max_message_bytes: f.whole("max_message_bytes")?,
            max_sessions: f.whole("max_sessions")?,
            body_timeout: f.duration("body_timeout")?,
            session_idle_timeout: f.duration("session_idle_timeout")?,
            strict_names: f.boolean("strict_names")?,
            max_connections: f.whole("max_connections")?,
            max_connections_per_client: f.whole("max_connections_per_client")?,
            header_read_timeout: f.duration("header_read_timeout")?,
            idle_timeout: f.duration("idle_timeout")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawPipeline {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawPipeline {
            pass_through: f.strings("pass_through")?,
            stage_timeout: f.duration("stage_timeout")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawUpstream {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawUpstream {
            command: f.string("command")?,
            args: f.strings("args")?,
            env: f.string_table("env", Secret::Hidden)?,
            inherit_env: f.boolean("inherit_env")?,
            cwd: f.path("cwd")?,
            url: f.string("url")?,
            headers: f.string_table("headers", Secret::Hidden)?,
            prefix: f.string("prefix")?,
            request_timeout: f.duration("request_timeout")?,
            default_effect: f.string("default_effect")?,
            effects: f.string_table("effects", Secret::Shown)?,
            extension_methods: f.strings("extension_methods")?,
        };
        f.finish()?;
        Ok(raw)
    }
}
