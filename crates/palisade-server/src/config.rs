//! `palisade.toml`: raw structs that reject unknown fields, turned once into a validated `Config`.
//!
//! The runtime only ever sees `Config`. Every error names the file, the
//! field and what was expected, and an invalid file refuses to start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_core::{EffectClass, Stage};
use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8716";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_STAGE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_SESSIONS: usize = 128;
const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(3600);
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Variables every spawned upstream gets from palisade's environment, so
/// that interpreters and package runners work; everything else is opt-in.
const BASE_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read `{file}`: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

// ---------------------------------------------------------------- raw form

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    pipeline: RawPipeline,
    #[serde(default)]
    upstreams: BTreeMap<String, RawUpstream>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    path: Option<String>,
    allowed_origins: Option<Vec<String>>,
    max_message_bytes: Option<usize>,
    max_sessions: Option<usize>,
    session_idle_timeout: Option<String>,
    body_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    pass_through: Option<Vec<String>>,
    stage_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    inherit_env: Option<bool>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    prefix: Option<String>,
    request_timeout: Option<String>,
    default_effect: Option<String>,
    effects: Option<BTreeMap<String, String>>,
}

// ----------------------------------------------------------- validated form

/// The validated configuration. Built only by [`Config::load`], [`Config::parse`]
/// or [`Config::embedded_default`].
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub data_dir: PathBuf,
    pub server: Server,
    pub pipeline: PipelineConfig,
    pub upstreams: Vec<Upstream>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub listen: SocketAddr,
    pub path: String,
    /// Origins a browser may call from; requests without `Origin` are not browsers and pass.
    pub allowed_origins: Vec<String>,
    pub max_message_bytes: usize,
    pub max_sessions: usize,
    #[serde(serialize_with = "as_humantime")]
    pub session_idle_timeout: Duration,
    /// Longest a client may take to send one request body.
    #[serde(serialize_with = "as_humantime")]
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineConfig {
    #[serde(serialize_with = "stages_as_names")]
    pub pass_through: Vec<Stage>,
    #[serde(serialize_with = "as_humantime")]
    pub stage_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub name: String,
    /// Prepended to the upstream's tool and prompt names.
    pub prefix: String,
    pub transport: Transport,
    #[serde(serialize_with = "as_humantime")]
    pub request_timeout: Duration,
    /// Effect class of tools not listed in `effects`.
    pub default_effect: EffectClass,
    pub effects: BTreeMap<String, EffectClass>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        /// Pass palisade's whole environment on (the `palisade mcp` default).
        inherit_env: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        cwd: Option<PathBuf>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

impl Upstream {
    pub fn effect_of(&self, tool: &str) -> EffectClass {
        self.effects
            .get(tool)
            .copied()
            .unwrap_or(self.default_effect)
    }

    /// A stdio upstream from a command line, as `palisade mcp -- CMD ARGS` builds it.
    pub fn from_command(name: &str, command: String, args: Vec<String>) -> Self {
        Upstream {
            name: name.to_owned(),
            prefix: String::new(),
            transport: Transport::Stdio {
                command,
                args,
                env: BTreeMap::new(),
                inherit_env: true,
                cwd: None,
            },
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            default_effect: EffectClass::Irreversible,
            effects: BTreeMap::new(),
        }
    }
}

/// What `palisade check` prints instead of an environment or header value:
/// those are where API keys live, and check output ends up in CI logs.
pub const MASKED: &str = "<set>";

impl Transport {
    fn masked(&self) -> Transport {
        let mut copy = self.clone();
        let values = match &mut copy {
            Transport::Stdio { env, .. } => env.values_mut(),
            Transport::Http { headers, .. } => headers.values_mut(),
        };
        for value in values {
            *value = MASKED.to_owned();
        }
        copy
    }

    /// The environment a spawned upstream gets.
    pub fn child_env(env: &BTreeMap<String, String>, inherit_env: bool) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> = if inherit_env {
            std::env::vars().collect()
        } else {
            BASE_ENV
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
                .collect()
        };
        out.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.into_iter().collect()
    }
}

fn as_humantime<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn stages_as_names<S: serde::Serializer>(stages: &[Stage], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(stages.iter().map(|stage| stage.as_str()))
}

/// The stages that have no implementation yet: today, every stage that can
/// be passed through. The embedded default passes them through, explicitly;
/// a config file must list them itself.
pub const UNIMPLEMENTED_STAGES: [Stage; 7] = palisade_pipeline::PASSABLE;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The configuration used when no file is given: loopback only, state in
    /// the default data directory, no upstreams, every unbuilt stage passed
    /// through explicitly.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        let names: Vec<String> = UNIMPLEMENTED_STAGES
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        let raw = RawConfig {
            pipeline: RawPipeline {
                pass_through: Some(names),
                stage_timeout: None,
            },
            ..RawConfig::default()
        };
        Validator {
            file: "(embedded default)",
        }
        .config(raw)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        Validator { file }.config(raw)
    }

    pub fn audit_path(&self) -> PathBuf {
        self.data_dir.join("audit.jsonl")
    }

    /// Checks that every stdio upstream's command can be found, so a typo
    /// stops palisade at start instead of failing each client's session.
    /// Separate from parsing: it reads the file system and `PATH`.
    pub fn find_commands(&self, file: &str) -> Result<(), ConfigError> {
        for upstream in &self.upstreams {
            let Transport::Stdio { command, cwd, .. } = &upstream.transport else {
                continue;
            };
            if find_program(command, cwd.as_deref()).is_none() {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    field: format!("upstreams.{}.command", upstream.name),
                    message: format!("`{command}` is not an executable file, nor found on PATH"),
                });
            }
        }
        Ok(())
    }

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
    server: &'a Server,
    pipeline: &'a PipelineConfig,
    upstreams: BTreeMap<&'a str, EffectiveUpstream<'a>>,
}

#[derive(Serialize)]
struct EffectiveUpstream<'a> {
    #[serde(flatten)]
    transport: Transport,
    prefix: &'a str,
    #[serde(serialize_with = "as_humantime")]
    request_timeout: Duration,
    default_effect: &'a str,
    effects: BTreeMap<&'a str, &'a str>,
}

impl<'a> From<&'a Config> for Effective<'a> {
    fn from(c: &'a Config) -> Self {
        Effective {
            data_dir: &c.data_dir,
            server: &c.server,
            pipeline: &c.pipeline,
            upstreams: c
                .upstreams
                .iter()
                .map(|u| {
                    let effects = u
                        .effects
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    (
                        u.name.as_str(),
                        EffectiveUpstream {
                            transport: u.transport.masked(),
                            prefix: &u.prefix,
                            request_timeout: u.request_timeout,
                            default_effect: u.default_effect.as_str(),
                            effects,
                        },
                    )
                })
                .collect(),
        }
    }
}

struct Validator<'f> {
    file: &'f str,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn duration(
        &self,
        field: &str,
        raw: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(raw) = raw else { return Ok(default) };
        let d = humantime::parse_duration(raw).map_err(|e| {
            self.err(
                field,
                format!("expected a duration such as \"30s\" or \"500ms\", got `{raw}` ({e})"),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(field, "must be greater than zero"));
        }
        Ok(d)
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let data_dir = match raw.data_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(self.err("data_dir", "must not be empty"));
            }
            Some(dir) => dir,
            None => default_data_dir().ok_or_else(|| {
                self.err(
                    "data_dir",
                    "not set, and neither XDG_DATA_HOME nor HOME is set to derive it from",
                )
            })?,
        };
        let server = self.server(raw.server)?;
        let pipeline = self.pipeline(raw.pipeline)?;
        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        let single = raw.upstreams.len() == 1;
        for (name, upstream) in raw.upstreams {
            upstreams.push(self.upstream(&name, upstream, single)?);
        }
        self.prefixes_are_unambiguous(&upstreams)?;
        Ok(Config {
            data_dir,
            server,
            pipeline,
            upstreams,
        })
    }

    fn server(&self, raw: RawServer) -> Result<Server, ConfigError> {
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            self.err("server.listen", format!("expected an IP address and port such as \"127.0.0.1:8716\", got `{listen_text}`"))
        })?;
        if !listen.ip().is_loopback() {
            // Authentication is not built yet: an endpoint reachable from other
            // machines would let anyone drive every upstream.
            return Err(self.err(
                "server.listen",
                format!("`{listen}` is not a loopback address; palisade has no client authentication yet, so it listens on loopback only"),
            ));
        }
        let path = raw.path.unwrap_or_else(|| "/mcp".to_owned());
        if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#', ' ']) {
            return Err(self.err(
                "server.path",
                format!("expected an absolute URL path such as \"/mcp\", got `{path}`"),
            ));
        }
        let allowed_origins = raw.allowed_origins.unwrap_or_else(|| {
            ["http://localhost", "http://127.0.0.1", "http://[::1]"]
                .map(String::from)
                .to_vec()
        });
        for (i, origin) in allowed_origins.iter().enumerate() {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(self.err(
                    format!("server.allowed_origins[{i}]"),
                    format!(
                        "expected an origin such as \"https://console.example.com\", got `{origin}`"
                    ),
                ));
            }
        }
        let max_message_bytes = raw.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max_message_bytes < 1024 {
            return Err(self.err("server.max_message_bytes", "must be at least 1024"));
        }
        let max_sessions = raw.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            return Err(self.err("server.max_sessions", "must be at least 1"));
        }
        Ok(Server {
            listen,
            path,
            allowed_origins,
            max_message_bytes,
            max_sessions,
            session_idle_timeout: self.duration(
                "server.session_idle_timeout",
                raw.session_idle_timeout.as_deref(),
                DEFAULT_SESSION_IDLE,
            )?,
            body_timeout: self.duration(
                "server.body_timeout",
                raw.body_timeout.as_deref(),
                DEFAULT_BODY_TIMEOUT,
            )?,
        })
    }

    fn pipeline(&self, raw: RawPipeline) -> Result<PipelineConfig, ConfigError> {
        let mut pass_through = Vec::new();
        for (i, name) in raw.pass_through.unwrap_or_default().iter().enumerate() {
            let field = format!("pipeline.pass_through[{i}]");
            let stage = Stage::parse(name).ok_or_else(|| {
                let names: Vec<&str> = UNIMPLEMENTED_STAGES.iter().map(|s| s.as_str()).collect();
                self.err(
                    &field,
                    format!(
                        "unknown stage `{name}`; expected one of {}",
                        names.join(", ")
                    ),
                )
            })?;
            if !UNIMPLEMENTED_STAGES.contains(&stage) {
                return Err(self.err(field, format!("stage `{name}` cannot be passed through")));
            }
            if pass_through.contains(&stage) {
                return Err(self.err(field, format!("stage `{name}` is listed twice")));
            }
            pass_through.push(stage);
        }
        for stage in UNIMPLEMENTED_STAGES {
            if !pass_through.contains(&stage) {
                return Err(self.err(
                    "pipeline.pass_through",
                    format!(
                        "stage `{stage}` has no implementation yet; list it here to run without it"
                    ),
                ));
            }
        }
        Ok(PipelineConfig {
            pass_through,
            stage_timeout: self.duration(
                "pipeline.stage_timeout",
                raw.stage_timeout.as_deref(),
                DEFAULT_STAGE_TIMEOUT,
            )?,
        })
    }

    fn upstream(
        &self,
        name: &str,
        raw: RawUpstream,
        single: bool,
    ) -> Result<Upstream, ConfigError> {
        let at = |field: &str| format!("upstreams.{name}.{field}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            || name.contains("__")
        {
            return Err(self.err(
                format!("upstreams.{name}"),
                "an upstream name is 1 to 64 characters of a-z, 0-9, `-` and `_`, without `__`",
            ));
        }
        let transport = match (raw.command, raw.url) {
            (Some(command), None) => {
                if raw.headers.is_some() {
                    return Err(
                        self.err(at("headers"), "only an upstream with `url` takes headers")
                    );
                }
                if command.trim().is_empty() {
                    return Err(self.err(at("command"), "must not be empty"));
                }
                Transport::Stdio {
                    command,
                    args: raw.args.unwrap_or_default(),
                    env: raw.env.unwrap_or_default(),
                    inherit_env: raw.inherit_env.unwrap_or(false),
                    cwd: raw.cwd,
                }
            }
            (None, Some(url)) => {
                for (field, present) in [
                    ("args", raw.args.is_some()),
                    ("env", raw.env.is_some()),
                    ("inherit_env", raw.inherit_env.is_some()),
                    ("cwd", raw.cwd.is_some()),
                ] {
                    if present {
                        return Err(
                            self.err(at(field), "only an upstream with `command` takes this")
                        );
                    }
                }
                let parsed = reqwest::Url::parse(&url).map_err(|e| {
                    self.err(
                        at("url"),
                        format!("expected an http or https URL, got `{url}` ({e})"),
                    )
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(self.err(
                        at("url"),
                        format!("expected an http or https URL, got `{url}`"),
                    ));
                }
                Transport::Http {
                    url,
                    headers: raw.headers.unwrap_or_default(),
                }
            }
            (Some(_), Some(_)) => {
                return Err(self.err(
                    format!("upstreams.{name}"),
                    "set either `command` or `url`, not both",
                ));
            }
            (None, None) => {
                return Err(self.err(
                    format!("upstreams.{name}"),
                    "set `command` (a stdio server) or `url` (a Streamable HTTP server)",
                ));
            }
        };
        let prefix = raw.prefix.unwrap_or_else(|| format!("{name}__"));
        if prefix.is_empty() && !single {
            return Err(self.err(
                at("prefix"),
                "an empty prefix is allowed only when there is a single upstream",
            ));
        }
        let effect = |field: String, text: &str| {
            EffectClass::parse(text).ok_or_else(|| {
                self.err(
                    field,
                    format!("expected one of read, write, egress, irreversible, got `{text}`"),
                )
            })
        };
        let default_effect = match raw.default_effect {
            Some(text) => effect(at("default_effect"), &text)?,
            // Unknown tools are assumed to do the worst they could.
            None => EffectClass::Irreversible,
        };
        let mut effects = BTreeMap::new();
        for (tool, text) in raw.effects.unwrap_or_default() {
            let class = effect(format!("upstreams.{name}.effects.{tool}"), &text)?;
            effects.insert(tool, class);
        }
        Ok(Upstream {
            name: name.to_owned(),
            prefix,
            transport,
            request_timeout: self.duration(
                &at("request_timeout"),
                raw.request_timeout.as_deref(),
                DEFAULT_REQUEST_TIMEOUT,
            )?,
            default_effect,
            effects,
        })
    }

    fn prefixes_are_unambiguous(&self, upstreams: &[Upstream]) -> Result<(), ConfigError> {
        for a in upstreams {
            for b in upstreams {
                if a.name != b.name && b.prefix.starts_with(&a.prefix) {
                    return Err(self.err(
                        format!("upstreams.{}.prefix", b.name),
                        format!("prefix `{}` starts with the prefix `{}` of upstream `{}`, so tool names would be ambiguous", b.prefix, a.prefix, a.name),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where `command` would be run from: itself if it names a path (relative to
/// `cwd`), else the first executable of that name on `PATH`.
pub fn find_program(command: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    let executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        let path = match cwd {
            Some(dir) => dir.join(command),
            None => PathBuf::from(command),
        };
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|candidate| executable(candidate))
}

fn default_data_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("palisade"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".local/share/palisade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = r#"
data_dir = "palisade-test-data"
[pipeline]
pass_through = ["authorize", "limits", "outbound-filter", "approval", "inject-secrets", "redact", "inbound-filter"]
"#;

    fn check(extra: &str, expected_error: Option<&str>) {
        let text = format!("{PASS}\n{extra}");
        match (Config::parse(&text, "palisade.toml"), expected_error) {
            (Ok(_), None) => {}
            (Err(e), Some(needle)) => {
                let msg = e.to_string();
                assert!(msg.starts_with("palisade.toml:"), "{msg}");
                assert!(msg.contains(needle), "expected `{needle}` in: {msg}");
            }
            (Ok(_), Some(needle)) => panic!("accepted, expected error `{needle}`:\n{extra}"),
            (Err(e), None) => panic!("rejected: {e}\n{extra}"),
        }
    }

    #[test]
    fn accepts_and_rejects() {
        check("", None);
        check("[server]\nlisten = \"127.0.0.1:0\"", None);
        check("[server]\nlisten = \"[::1]:9000\"", None);
        check(
            "[server]\nlisten = \"0.0.0.0:9000\"",
            Some("`server.listen`: `0.0.0.0:9000` is not a loopback address"),
        );
        check(
            "[server]\nlisten = \"localhost\"",
            Some("`server.listen`: expected an IP address and port"),
        );
        check(
            "[server]\nlisen = \"127.0.0.1:1\"",
            Some("unknown field `lisen`"),
        );
        check("[server]\npath = \"mcp\"", Some("`server.path`"));
        check(
            "[server]\nallowed_origins = [\"example.com\"]",
            Some("`server.allowed_origins[0]`"),
        );
        check(
            "[server]\nmax_message_bytes = 10",
            Some("`server.max_message_bytes`"),
        );
        check(
            "[server]\nsession_idle_timeout = \"soon\"",
            Some("`server.session_idle_timeout`: expected a duration"),
        );
        check("[upstreams.a]\ncommand = \"node\"\nargs = [\"x.js\"]", None);
        check("[upstreams.a]\nurl = \"http://127.0.0.1:1/mcp\"", None);
        check(
            "[upstreams.a]\ncommand = \"x\"\nurl = \"http://h/mcp\"",
            Some("`upstreams.a`: set either `command` or `url`, not both"),
        );
        check(
            "[upstreams.a]\nargs = [\"x\"]",
            Some("`upstreams.a`: set `command`"),
        );
        check(
            "[upstreams.a]\nurl = \"ftp://h/x\"",
            Some("`upstreams.a.url`"),
        );
        check(
            "[upstreams.a]\nurl = \"http://h/mcp\"\nargs = []",
            Some("`upstreams.a.args`"),
        );
        check(
            "[upstreams.a]\ncommand = \"x\"\nheaders = {}",
            Some("`upstreams.a.headers`"),
        );
        check(
            "[upstreams.A]\ncommand = \"x\"",
            Some("`upstreams.A`: an upstream name"),
        );
        check("[upstreams.a__b]\ncommand = \"x\"", Some("without `__`"));
        check(
            "[upstreams.a]\ncommand = \"x\"\ncolour = 1",
            Some("unknown field `colour`"),
        );
        check(
            "[upstreams.a]\ncommand = \"x\"\ndefault_effect = \"mild\"",
            Some("`upstreams.a.default_effect`: expected one of read"),
        );
        check(
            "[upstreams.a]\ncommand = \"x\"\neffects = { echo = \"loud\" }",
            Some("`upstreams.a.effects.echo`"),
        );
        check(
            "[upstreams.a]\ncommand = \"x\"\nrequest_timeout = \"0s\"",
            Some("must be greater than zero"),
        );
        check("[upstreams.a]\ncommand = \"x\"\nprefix = \"\"", None);
        check(
            "[upstreams.a]\ncommand = \"x\"\nprefix = \"\"\n[upstreams.b]\ncommand = \"y\"",
            Some("`upstreams.a.prefix`: an empty prefix"),
        );
        check(
            "[upstreams.a]\ncommand = \"x\"\nprefix = \"t_\"\n[upstreams.b]\ncommand = \"y\"\nprefix = \"t_b_\"",
            Some("`upstreams.b.prefix`"),
        );
    }

    #[test]
    fn commands_must_be_found() {
        let found = format!(
            "{PASS}\n[upstreams.a]\ncommand = \"sh\"\n[upstreams.b]\ncommand = \"/bin/sh\""
        );
        Config::parse(&found, "p.toml")
            .unwrap()
            .find_commands("p.toml")
            .unwrap();
        let not_executable =
            std::env::temp_dir().join(format!("palisade-not-exec-{}", std::process::id()));
        std::fs::write(&not_executable, "data").unwrap();
        let not_executable = not_executable.display().to_string();
        for missing in [
            "no-such-program-palisade",
            "/bin/no-such-program",
            not_executable.as_str(),
        ] {
            let text = format!("{PASS}\n[upstreams.a]\ncommand = \"{missing}\"");
            let err = Config::parse(&text, "p.toml")
                .unwrap()
                .find_commands("p.toml")
                .unwrap_err();
            let expected = format!(
                "p.toml: `upstreams.a.command`: `{missing}` is not an executable file, nor found on PATH"
            );
            assert_eq!(err.to_string(), expected);
        }
        std::fs::remove_file(&not_executable).unwrap();
    }

    #[test]
    fn pass_through_must_be_explicit() {
        let err = Config::parse("data_dir = \"/x\"", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "p.toml: `pipeline.pass_through`: stage `authorize` has no implementation yet"
            ),
            "{err}"
        );
        let err = Config::parse(
            "data_dir = \"/x\"\n[pipeline]\npass_through = [\"execute\"]",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`pipeline.pass_through[0]`: stage `execute` cannot be passed through"),
            "{err}"
        );
        let err = Config::parse(
            "data_dir = \"/x\"\n[pipeline]\npass_through = [\"authorise\"]",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown stage `authorise`"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let err = Config::parse("[server\nlisten=1", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml: "), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn embedded_default_is_loopback_and_passes_unbuilt_stages_explicitly() {
        let c = Config::embedded_default().unwrap();
        assert!(c.server.listen.ip().is_loopback());
        assert_eq!(c.pipeline.pass_through, UNIMPLEMENTED_STAGES.to_vec());
        assert!(c.upstreams.is_empty());
    }

    #[test]
    fn effective_config_never_shows_env_or_header_values() {
        let text = format!(
            "{PASS}\n[upstreams.a]\ncommand = \"x\"\nenv = {{ API_KEY = \"sk-live-123\" }}\n[upstreams.b]\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = {{ Authorization = \"Bearer tok-456\" }}"
        );
        let shown = Config::parse(&text, "p.toml").unwrap().to_toml();
        assert!(
            !shown.contains("sk-live-123") && !shown.contains("tok-456"),
            "{shown}"
        );
        assert!(
            shown.contains("API_KEY") && shown.contains("Authorization"),
            "{shown}"
        );
    }

    #[test]
    fn effective_config_round_trips() {
        let text = format!(
            "{PASS}\n[upstreams.a]\ncommand = \"node\"\nargs = [\"s.js\"]\neffects = {{ echo = \"read\" }}\n[upstreams.b]\nurl = \"http://127.0.0.1:9/mcp\""
        );
        let c = Config::parse(&text, "p.toml").unwrap();
        assert_eq!(c.upstreams[0].effect_of("echo"), EffectClass::Read);
        assert_eq!(c.upstreams[0].effect_of("rm"), EffectClass::Irreversible);
        let again = Config::parse(&c.to_toml(), "effective").unwrap();
        assert_eq!(again.to_toml(), c.to_toml());
    }
}
