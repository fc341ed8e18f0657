//! The config file as written: serde structs that reject unknown fields,
//! turned into the validated form by `validate`.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) data_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) pipeline: RawPipeline,
    #[serde(default)]
    /// In the file's order: the operator's order of trust (see ARCHITECTURE.md).
    pub(super) upstreams: IndexMap<String, RawUpstream>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) path: Option<String>,
    pub(super) allowed_origins: Option<Vec<String>>,
    pub(super) max_message_bytes: Option<usize>,
    pub(super) max_sessions: Option<usize>,
    pub(super) session_idle_timeout: Option<String>,
    pub(super) body_timeout: Option<String>,
    pub(super) strict_names: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub(super) pass_through: Option<Vec<String>>,
    pub(super) stage_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
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
