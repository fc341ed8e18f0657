//! `palisade.toml`: read into raw structs that refuse unknown fields, turned once into a validated `Config`.
//!
//! The runtime only ever sees `Config`. Every error names the file, the
//! field by its dotted path and what was expected, and an invalid file
//! refuses to start.
//!
//! - `read`: TOML read one field at a time, with plain-words errors;
//! - `raw`: the file as written;
//! - `validate`: raw to validated, a section at a time;
//! - `effective`: the masked form `palisade check` prints.

mod access;
mod alerts;
pub use alerts::AlertsConfig;
mod audit;
pub use audit::AuditConfig;
mod effective;
mod filter;
pub use filter::FilterConfig;
mod limits;
pub use limits::{LimitsConfig, LimitsStore};
mod raw;
mod read;
mod secrets;
pub use secrets::DEFAULT_MAX_RESPONSE_BYTES;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_core::{EffectClass, Stage};
use serde::Serialize;

pub use access::{
    Approvals, Auth, Authz, ConstraintConfig, ConstraintKind, Jwt, Storage, Tls, Wrap,
};
pub use effective::{MASKED, mask_password};
use raw::RawConfig;
use read::Source;
use validate::Validator;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8716";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_STAGE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_SESSIONS: usize = 128;
const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(600);
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Half the default connection cap: one address cannot take the whole table.
const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Open files kept out of `max_connections`' reach: the listener, the
/// runtime, the audit log, stdio, upstream pipes and sockets, and the few
/// connections the listener holds while it closes the ones it evicts.
const RESERVED_FILES: u64 = 64;

/// Variables every spawned upstream gets from palisade's environment, so
/// that interpreters and package runners work; everything else is opt-in.
const BASE_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OS error is in the message, not a `source`: chained, it would be
    /// printed twice.
    #[error("cannot read `{}`: {error}", file.display())]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    /// A command-line flag that overrides a field of the file.
    #[error("`{flag}`: {message}")]
    Flag { flag: String, message: String },
}

/// The validated configuration. Built only by [`Config::load`], [`Config::parse`]
/// or [`Config::embedded_default`].
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The environment this gateway serves (`prod`, `staging`): task tokens
    /// minted for another are refused.
    pub environment: String,
    pub storage: Storage,
    pub server: Server,
    pub auth: Auth,
    pub authz: Authz,
    pub approvals: Approvals,
    /// `[tools]`: how tool definitions are pinned.
    pub tools: Tools,
    /// `palisade mcp`'s wrapped server: its name and its tools' effects.
    pub wrap: Wrap,
    pub pipeline: PipelineConfig,
    pub upstreams: Vec<Upstream>,
    /// Where secret values live.
    pub vault: VaultSettings,
    /// `[secrets.NAME]`: what each secret may be used for.
    pub secrets: Vec<palisade_secrets::Binding>,
    /// `[sandbox]`: degraded modes, the pool, profiles.
    #[serde(skip)]
    pub sandbox: palisade_sandbox::Settings,
    /// `[egress]` with the destinations named elsewhere in the file: one
    /// allowlist for everything palisade sends out or relays.
    pub egress: palisade_egress::Settings,
    /// `[filter]`: what layer 4 does with what it finds.
    pub filter: FilterConfig,
    /// `[limits]`: layer 5's rates, quotas, budget and loop rules.
    #[serde(skip)]
    pub limits: LimitsConfig,
    /// `[audit]`: checkpoints of the audit log.
    pub audit: AuditConfig,
    /// `[alerts]`: rules over the audit log, and the webhook.
    #[serde(skip)]
    pub alerts: AlertsConfig,
}

/// The sandbox a stdio upstream runs in for its whole session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StdioSandbox {
    pub profile: String,
    #[serde(skip)]
    pub mounts: Vec<palisade_sandbox::Mount>,
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
    /// Hide tool and prompt names outside the specification's rules, not
    /// only report them.
    pub strict_names: bool,
    /// Host names (lowercase, no port) served besides the loopback ones;
    /// any other `Host` is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Connections held open at once, below the open-file limit.
    pub max_connections: usize,
    /// Connections held open at once from one client address.
    pub max_connections_per_client: usize,
    /// Longest a client may take to send a request head, from the moment it
    /// connects or starts one on a kept-alive connection.
    #[serde(serialize_with = "as_humantime")]
    pub header_read_timeout: Duration,
    /// Longest a kept-alive connection may wait for its next request.
    #[serde(serialize_with = "as_humantime")]
    pub idle_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Listen beyond loopback without TLS: a TLS-terminating proxy is in
    /// front. Reported at start.
    pub plaintext_beyond_loopback: bool,
}

/// `[tools]`.
#[derive(Debug, Clone, Serialize)]
pub struct Tools {
    /// How every upstream's tool definitions are pinned, unless the
    /// upstream says otherwise (see docs/pinning.md).
    pub pinning: palisade_filter::pins::Mode,
}

/// Tool definitions are pinned on first sight unless the file says otherwise.
pub const DEFAULT_PINNING: palisade_filter::pins::Mode =
    palisade_filter::pins::Mode::TrustOnFirstUse;

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
    /// Methods outside MCP that this upstream serves and the operator allows
    /// through to it, unchecked (everything else unknown is refused).
    pub extension_methods: Vec<String>,
    /// This upstream's own `pinning`, over `[tools] pinning`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinning: Option<palisade_filter::pins::Mode>,
}

/// How palisade reaches an upstream. Its `Debug` shows no env or header
/// value and no URL query: they are where credentials live.
#[derive(Clone, Serialize)]
#[serde(untagged)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, Setting>,
        /// Pass palisade's whole environment on (the `palisade mcp` default).
        inherit_env: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        cwd: Option<PathBuf>,
        /// `None`: unsandboxed (`sandbox = "off"`), a degraded mode.
        #[serde(serialize_with = "sandbox_name")]
        sandbox: Option<StdioSandbox>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, Setting>,
    },
    /// A tool palisade itself serves (`builtin = "http_request"`).
    Builtin {
        builtin: Builtin,
        /// URL prefixes the tool may reach without a secret.
        allow: Vec<String>,
        max_response_bytes: usize,
    },
}

/// The tools palisade serves itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// An HTTP request whose `{{secret:NAME}}` placeholders the broker fills.
    HttpRequest,
    /// Code (python, shell, node) run in a fresh one-time sandbox.
    Exec,
}

/// An `env` or `headers` value: written in the file, or a secret's name.
/// A stdio upstream's `sandbox` as the file spells it: a profile or `"off"`.
fn sandbox_name<S: serde::Serializer>(
    sandbox: &Option<StdioSandbox>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(sandbox.as_ref().map_or("off", |s| s.profile.as_str()))
}

/// Serialized (for `check`) without a literal's value.
#[derive(Clone, PartialEq, Eq)]
pub enum Setting {
    Literal(String),
    Secret {
        secret: palisade_secrets::SecretName,
        format: Option<String>,
    },
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Literal(_) => f.write_str(effective::MASKED),
            Setting::Secret { secret, .. } => write!(f, "secret `{secret}`"),
        }
    }
}

impl Serialize for Setting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Setting::Literal(_) => s.serialize_str(effective::MASKED),
            Setting::Secret { secret, format } => {
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("secret", secret.as_str())?;
                if let Some(format) = format {
                    map.serialize_entry("format", format)?;
                }
                map.end()
            }
        }
    }
}

/// Where secret values live (`[vault]`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum VaultSettings {
    /// The age-encrypted file `secrets.<environment>.age` in the data directory.
    File {
        /// An age identity or passphrase file; else `PALISADE_VAULT_PASSPHRASE`.
        #[serde(skip_serializing_if = "Option::is_none")]
        key_file: Option<PathBuf>,
    },
    /// OpenBao or HashiCorp Vault, KV v2.
    Openbao {
        address: String,
        mount: String,
        prefix: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// The environment variable holding the token (token auth).
        #[serde(skip_serializing_if = "Option::is_none")]
        token_env: Option<String>,
        /// AppRole auth: the role id, and the variable holding the secret id.
        #[serde(skip_serializing_if = "Option::is_none")]
        role_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_id_env: Option<String>,
        approle_mount: String,
        #[serde(serialize_with = "as_humantime")]
        request_timeout: Duration,
    },
}

impl Config {
    /// How `upstream`'s tool definitions are pinned: its own `pinning`,
    /// else `[tools] pinning`. A built-in's tools are palisade's own, never pinned.
    pub fn pinning_of(&self, upstream: &Upstream) -> palisade_filter::pins::Mode {
        if matches!(upstream.transport, Transport::Builtin { .. }) {
            return palisade_filter::pins::Mode::Off;
        }
        upstream.pinning.unwrap_or(self.tools.pinning)
    }
}

impl Upstream {
    pub fn effect_of(&self, tool: &str) -> EffectClass {
        self.effects
            .get(tool)
            .copied()
            .unwrap_or(self.default_effect)
    }

    /// The built-in `exec` tool, as the embedded default serves it: the tool
    /// is `exec`, its calls of effect class `write`.
    pub fn exec_tool() -> Self {
        Upstream {
            name: "exec".to_owned(),
            prefix: String::new(),
            transport: Transport::Builtin {
                builtin: Builtin::Exec,
                allow: Vec::new(),
                max_response_bytes: 0,
            },
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            default_effect: EffectClass::Write,
            effects: BTreeMap::new(),
            extension_methods: Vec::new(),
            pinning: None,
        }
    }

    /// Runs a stdio upstream in `sandbox`.
    pub fn sandbox(&mut self, sandbox: StdioSandbox) {
        if let Transport::Stdio { sandbox: slot, .. } = &mut self.transport {
            *slot = Some(sandbox);
        }
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
                sandbox: None,
            },
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            default_effect: EffectClass::Irreversible,
            effects: BTreeMap::new(),
            extension_methods: Vec::new(),
            pinning: None,
        }
    }
}

impl Transport {
    /// A stdio upstream that runs in a sandbox (not `sandbox = "off"`).
    pub fn sandboxed_stdio(&self) -> bool {
        matches!(
            self,
            Transport::Stdio {
                sandbox: Some(_),
                ..
            }
        )
    }

    /// The environment a spawned upstream gets, but for the variables that
    /// come from secrets (the broker sets those) and palisade's own
    /// credentials (`withheld`), which never pass to an upstream.
    pub fn child_env(
        env: &BTreeMap<String, Setting>,
        inherit_env: bool,
        withheld: &[String],
    ) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> = if inherit_env {
            std::env::vars().collect()
        } else {
            BASE_ENV
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
                .collect()
        };
        for name in WITHHELD_ENV
            .iter()
            .copied()
            .chain(withheld.iter().map(String::as_str))
        {
            out.remove(name);
        }
        for (k, v) in env {
            match v {
                Setting::Literal(v) => {
                    out.insert(k.clone(), v.clone());
                }
                Setting::Secret { .. } => {
                    out.remove(k);
                }
            }
        }
        out.into_iter().collect()
    }
}

/// palisade's own credentials: never passed on to a spawned upstream, even
/// with `inherit_env`.
pub const WITHHELD_ENV: [&str; 5] = [
    "PALISADE_VAULT_PASSPHRASE",
    "PALISADE_TOKEN",
    "BAO_TOKEN",
    "VAULT_TOKEN",
    "PALISADE_TEST_OPENBAO_TOKEN",
];

fn as_humantime<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn stages_as_names<S: serde::Serializer>(stages: &[Stage], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(stages.iter().map(|stage| stage.as_str()))
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_owned(),
            error,
        })?;
        let base_dir = path.parent().map(Path::to_owned);
        let file = path.display().to_string();
        let raw = RawConfig::read(&Source {
            file: &file,
            text: &text,
        })?;
        Validator {
            file: &file,
            open_files: open_files_limit(),
            base_dir,
        }
        .config(raw)
    }

    /// The configuration used when no file is given: loopback only, state in
    /// the default data directory, no upstreams, every stage on.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Validator {
            file: "(embedded default)",
            open_files: open_files_limit(),
            base_dir: None,
        }
        .config(RawConfig::default())
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let raw = RawConfig::read(&Source { file, text })?;
        Validator {
            file,
            open_files: open_files_limit(),
            base_dir: None,
        }
        .config(raw)
    }

    /// Replaces `server.listen` with the `--listen` flag's address, under the
    /// same rules as the file's.
    pub fn override_listen(&mut self, text: &str) -> Result<(), ConfigError> {
        let flag = |message: String| ConfigError::Flag {
            flag: "--listen".to_owned(),
            message,
        };
        let listen = validate::listen(text).map_err(flag)?;
        let validator = Validator {
            file: "--listen",
            open_files: None,
            base_dir: None,
        };
        validator
            .exposure(
                listen,
                &self.auth,
                self.server.tls.as_ref(),
                self.server.plaintext_beyond_loopback,
            )
            .map_err(|e| match e {
                ConfigError::Invalid { message, .. } => flag(message),
                other @ (ConfigError::Read { .. }
                | ConfigError::Syntax { .. }
                | ConfigError::Flag { .. }) => other,
            })?;
        self.server.listen = listen;
        Ok(())
    }

    /// Where the embedded state store lives, for `storage.url = "sqlite"`.
    pub fn state_path(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.audit_paths().entries
    }

    /// The audit log's entries, checkpoints and signing key.
    pub fn audit_paths(&self) -> palisade_audit::Paths {
        palisade_audit::Paths::in_dir(&self.data_dir)
    }

    /// Checks that every stdio upstream's command can be found, so a typo
    /// stops palisade at start instead of failing each client's session.
    /// Separate from parsing: it reads the file system and `PATH`.
    ///
    /// A sandboxed upstream's command must also be found the way its
    /// sandbox will look for it, through its `PATH` and the symbolic links
    /// and interpreter line on the way: a server installed under a home
    /// directory, or a venv's interpreter pointing into one, is named here
    /// with the bind it needs rather than failing each session.
    pub fn find_commands(&self, file: &str) -> Result<(), ConfigError> {
        for upstream in &self.upstreams {
            let Transport::Stdio { command, cwd, .. } = &upstream.transport else {
                continue;
            };
            let invalid = |message: String| ConfigError::Invalid {
                file: file.to_owned(),
                field: format!("upstreams.{}.command", upstream.name),
                message,
            };
            // A name must be found on the host's PATH, sandboxed or not; a
            // path, when sandboxed, is a path inside the sandbox.
            if (!upstream.transport.sandboxed_stdio() || !command.contains('/'))
                && find_program(command, cwd.as_deref()).is_none()
            {
                return Err(invalid(format!(
                    "`{command}` is not an executable file, nor found on PATH"
                )));
            }
            match self.unseen_in_sandbox(upstream) {
                Some((profile, Unseen::Hidden(what))) => {
                    return Err(invalid(format!(
                        "`{command}` cannot run in the sandbox profile `{profile}`: {what}, which the sandbox does not show (it shows {} and the upstream's binds); add the directory to `bind_ro`, or run the server unsandboxed with `sandbox = \"off\"`",
                        palisade_sandbox::profile::SYSTEM.join(", "),
                    )));
                }
                Some((profile, Unseen::Missing(what))) => {
                    return Err(invalid(format!(
                        "`{command}` cannot run in the sandbox profile `{profile}`: {what}"
                    )));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// What keeps a sandboxed stdio upstream's program from running in its
    /// sandbox, with the profile's name: `None` when nothing is seen to (or
    /// the upstream is not sandboxed).
    pub fn unseen_in_sandbox(&self, upstream: &Upstream) -> Option<(String, Unseen)> {
        let Transport::Stdio {
            command,
            cwd,
            env,
            inherit_env,
            sandbox: Some(sandbox),
            ..
        } = &upstream.transport
        else {
            return None;
        };
        let profiles = palisade_sandbox::profile::resolve(&self.sandbox.profiles).ok()?;
        let mut profile = profiles.get(&sandbox.profile)?.clone();
        profile.mounts.extend(sandbox.mounts.iter().cloned());
        sandboxed_command(&profile, command, cwd.as_deref(), env, *inherit_env)
            .err()
            .map(|unseen| (profile.name, unseen))
    }
}

/// Why a sandboxed upstream's program would not start in its sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unseen {
    /// A path on the way is not shown: the operator must bind it.
    Hidden(String),
    /// The sandbox shows the place, but no executable is there.
    Missing(String),
}

/// Finds a stdio upstream's program as its sandbox will: `command` itself
/// when it names a path, else through the `PATH` the upstream is given; then
/// the interpreter its `#!` line names. `Err` says what the sandbox hides.
fn sandboxed_command(
    profile: &palisade_sandbox::Profile,
    command: &str,
    cwd: Option<&Path>,
    env: &BTreeMap<String, Setting>,
    inherit_env: bool,
) -> Result<(), Unseen> {
    if let Some(dir) = cwd {
        profile.host_file(dir).map_err(|hidden| {
            Unseen::Hidden(format!(
                "its `cwd` `{}` needs the host's `{}`",
                dir.display(),
                hidden.display()
            ))
        })?;
    }
    let program = if command.contains('/') {
        let inside = match cwd {
            Some(dir) => dir.join(command),
            None => Path::new("/tmp").join(command),
        };
        let host = profile.host_file(&inside).map_err(|hidden| {
            Unseen::Hidden(format!("it needs the host's `{}`", hidden.display()))
        })?;
        if !is_executable(&host) {
            return Err(Unseen::Missing(format!(
                "`{}` is not an executable file",
                inside.display()
            )));
        }
        host
    } else {
        let path = Transport::child_env(env, inherit_env, &[])
            .into_iter()
            .find_map(|(k, v)| (k == "PATH").then_some(v))
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned());
        let mut hidden = Vec::new();
        let found = path
            .split(':')
            .filter(|d| d.starts_with('/'))
            .find_map(
                |dir| match profile.host_file(&Path::new(dir).join(command)) {
                    Ok(host) if is_executable(&host) => Some(host),
                    Ok(_) => None,
                    Err(at) => {
                        if is_executable(&Path::new(dir).join(command)) {
                            hidden.push(at);
                        }
                        None
                    }
                },
            );
        match found {
            Some(host) => host,
            None => {
                return Err(hidden.first().map_or_else(
                    || Unseen::Missing(format!("no `{command}` on its PATH ({path})")),
                    |at| {
                        Unseen::Hidden(format!(
                            "it is found only under the host's `{}`",
                            at.display()
                        ))
                    },
                ));
            }
        }
    };
    // `#!INTERPRETER [ARG]`: the kernel runs the interpreter, which must be
    // shown too (an `env` line's program is looked up at run time).
    let mut head = [0u8; 256];
    let read = std::fs::File::open(&program)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    if let Some(line) = head.get(..read).and_then(|h| h.strip_prefix(b"#!")) {
        let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        if let Some(interpreter) = line.split_whitespace().next() {
            profile
                .host_file(Path::new(interpreter))
                .map_err(|hidden| {
                    Unseen::Hidden(format!(
                        "its interpreter `{interpreter}` needs the host's `{}`",
                        hidden.display()
                    ))
                })?;
        }
    }
    Ok(())
}

/// A regular file with an execute bit (following symbolic links).
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where `command` would be run from: itself if it names a path (relative to
/// `cwd`), else the first executable of that name on `PATH`.
pub fn find_program(command: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    if command.contains('/') {
        let path = match cwd {
            Some(dir) => dir.join(command),
            None => PathBuf::from(command),
        };
        return is_executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable(candidate))
}

/// This process's soft limit on open files (`RLIMIT_NOFILE`); `None` when unlimited.
fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
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
            Some(
                "`server.listen`: `0.0.0.0:9000` is not a loopback address, and anonymous callers are served",
            ),
        );
        check(
            "[server]\nlisten = \"0.0.0.0:9000\"\n[auth]\nanonymous = false",
            Some("bearer credentials need TLS there"),
        );
        check(
            "[server]\nlisten = \"0.0.0.0:9000\"\nplaintext_beyond_loopback = true\n[auth]\nanonymous = false",
            None,
        );
        check(
            "[server]\nlisten = \"0.0.0.0:9000\"\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[auth]\nanonymous = true",
            Some("anonymous callers are served"),
        );
        check("[storage]\nurl = \"mysql://x\"", Some("`storage.url`"));
        check(
            "[storage]\nurl = \"postgres://u:hunter2@127.0.0.1/db\"",
            None,
        );
        check(
            "[auth.jwt]\nissuer = \"https://idp\"\njwks = \"http://idp.example.com/jwks\"",
            Some("`auth.jwt.jwks`: an http:// JWKS URL is allowed on loopback only"),
        );
        check(
            "[auth.jwt]\nissuer = \"https://idp\"\njwks = \"k.json\"\nalgorithms = \"HS\"",
            Some("`auth.jwt.algorithms`: expected one family"),
        );
        check(
            "[auth.jwt]\njwks = \"k.json\"",
            Some("`auth.jwt.issuer`: required"),
        );
        check(
            "[authz.constraints.workspace]\nkind = \"paths\"\ntools = [\"files__write_file\"]\narguments = [\"path\"]\nallow = [\"/tmp\"]",
            None,
        );
        check(
            "[authz.constraints.workspace]\nkind = \"globs\"",
            Some("`authz.constraints.workspace.kind`: expected one of paths"),
        );
        check(
            "[authz.constraints.shell]\nkind = \"commands\"\ntools = [\"sh__run\"]\narguments = [\"command\"]",
            Some("`authz.constraints.shell.allow`: required"),
        );
        check(
            "[authz.constraints.cloud]\nkind = \"read-only\"\ntools = [\"c__call\"]\narguments = [\"op\"]\nresolve_symlinks = false",
            Some("`authz.constraints.cloud.resolve_symlinks`: applies to `paths` constraints only"),
        );
        check(
            "[authz.constraints.bad-name]\nkind = \"paths\"",
            Some("a constraint name is letters"),
        );
        check("[approvals]\nhold = \"0s\"\nttl = \"10m\"", None);
        check(
            "[approvals]\nttl = \"0s\"",
            Some("`approvals.ttl`: must be greater than zero"),
        );
        check(
            "[server]\nlisten = \"localhost\"",
            Some("`server.listen`: expected an IP address and port"),
        );
        check(
            "[server]\nlisen = \"127.0.0.1:1\"",
            Some(
                "`server.lisen`: unknown field (line 7, column 1); expected one of listen, path, allowed_origins,",
            ),
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
            Some(
                "`upstreams.a.colour`: unknown field (line 8, column 1); expected one of command, args, env,",
            ),
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

    fn parse_with_open_files(extra: &str, open_files: Option<u64>) -> Result<Config, String> {
        let text = format!("{PASS}\n{extra}");
        let raw = RawConfig::read(&Source {
            file: "p.toml",
            text: &text,
        })
        .unwrap();
        Validator {
            file: "p.toml",
            open_files,
            base_dir: None,
        }
        .config(raw)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn connection_caps_fit_the_open_file_limit() {
        let server = |extra: &str, limit| parse_with_open_files(extra, limit).map(|c| c.server);
        // Left out: the defaults, shrunk to fit a low limit.
        let s = server("", Some(1024)).unwrap();
        assert_eq!(
            (s.max_connections, s.max_connections_per_client),
            (512, 256)
        );
        let s = server("", None).unwrap();
        assert_eq!(
            (s.max_connections, s.max_connections_per_client),
            (512, 256)
        );
        let s = server("", Some(200)).unwrap();
        assert_eq!(
            (s.max_connections, s.max_connections_per_client),
            (136, 136)
        );
        let err = server("", Some(64)).unwrap_err();
        assert!(
            err.contains("`server.max_connections`: the open-file limit is 64"),
            "{err}"
        );
        // Set: it must fit.
        let s = server("[server]\nmax_connections = 960", Some(1024)).unwrap();
        assert_eq!(s.max_connections, 960);
        let err = server("[server]\nmax_connections = 961", Some(1024)).unwrap_err();
        assert!(
            err.contains("`server.max_connections`: 961 does not fit the open-file limit of 1024: at most 960"),
            "{err}"
        );
        assert!(server("[server]\nmax_connections = 100000", None).is_ok());
        let err = server("[server]\nmax_connections = 0", None).unwrap_err();
        assert!(err.contains("must be at least 1"), "{err}");
        let err = server(
            "[server]\nmax_connections = 20\nmax_connections_per_client = 21",
            Some(1024),
        )
        .unwrap_err();
        assert!(
            err.contains(
                "`server.max_connections_per_client`: 21 is more than `server.max_connections` (20)"
            ),
            "{err}"
        );
        let s = server("[server]\nmax_connections = 20", Some(1024)).unwrap();
        assert_eq!(s.max_connections_per_client, 20);
    }

    #[test]
    fn listener_timeouts_and_hosts() {
        let s = Config::parse(PASS, "p.toml").unwrap().server;
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert!(s.allowed_hosts.is_empty());
        check(
            "[server]\nheader_read_timeout = \"0s\"",
            Some("`server.header_read_timeout`: must be greater than zero"),
        );
        check(
            "[server]\nidle_timeout = \"later\"",
            Some("`server.idle_timeout`: expected a duration"),
        );
        let text = format!(
            "{PASS}\n[server]\nallowed_hosts = [\"MCP.Internal\", \"10.0.0.7\", \"[fd00::1]\", \"mcp.internal\"]"
        );
        let hosts = Config::parse(&text, "p.toml").unwrap().server.allowed_hosts;
        assert_eq!(hosts, ["mcp.internal", "10.0.0.7", "[fd00::1]"]);
        for bad in [
            "http://mcp.internal",
            "mcp.internal:8716",
            "*",
            "",
            "a..b",
            "-a.b",
            "[::1",
            "a b",
            "fd00::1",
        ] {
            check(
                &format!("[server]\nallowed_hosts = [\"x\", {bad:?}]"),
                Some("`server.allowed_hosts[1]`: expected a host name"),
            );
        }
    }

    fn stdio_sandbox(text: &str) -> Option<StdioSandbox> {
        let config = Config::parse(&format!("{PASS}\n{text}"), "p.toml").unwrap();
        match &config.upstreams[0].transport {
            Transport::Stdio { sandbox, .. } => sandbox.clone(),
            Transport::Http { .. } | Transport::Builtin { .. } => panic!("not stdio"),
        }
    }

    #[test]
    fn stdio_upstreams_are_sandboxed_unless_the_config_says_off() {
        let default = stdio_sandbox("[upstreams.a]\ncommand = \"sh\"").unwrap();
        assert_eq!(default.profile, "upstream");
        assert!(default.mounts.is_empty());
        let bound = stdio_sandbox(
            "[upstreams.a]\ncommand = \"sh\"\nbind = [\"/srv/data\"]\nbind_ro = [\"/opt/tool:/tool\"]",
        )
        .unwrap();
        assert_eq!(bound.profile, "upstream");
        assert_eq!(
            bound.mounts,
            vec![
                palisade_sandbox::Mount::parse("/srv/data", true).unwrap(),
                palisade_sandbox::Mount::parse("/opt/tool:/tool", false).unwrap(),
            ]
        );
        assert_eq!(
            stdio_sandbox("[upstreams.a]\ncommand = \"sh\"\nsandbox = \"off\""),
            None
        );
        check(
            "[upstreams.a]\ncommand = \"sh\"\nsandbox = \"off\"\nbind_ro = [\"/srv\"]",
            Some("`upstreams.a.bind_ro`: binds need a sandbox"),
        );
        check(
            "[upstreams.a]\ncommand = \"sh\"\nsandbox = \"nope\"",
            Some("`upstreams.a.sandbox`: no sandbox profile `nope`"),
        );
        check(
            "[upstreams.a]\ncommand = \"sh\"\nbind = [\"relative\"]",
            Some(
                "`upstreams.a.bind[0]`: bind `relative`: the source `relative` must be an absolute path",
            ),
        );
        // `check` prints what an operator can paste back.
        let config = Config::parse(
            &format!("{PASS}\n[upstreams.a]\ncommand = \"sh\"\nbind_ro = [\"/opt/tool:/tool\"]\n[upstreams.b]\ncommand = \"sh\"\nsandbox = \"off\""),
            "p.toml",
        )
        .unwrap();
        let printed = config.to_toml();
        assert!(
            printed.contains("sandbox = \"upstream\"\nbind_ro = [\"/opt/tool:/tool\"]"),
            "{printed}"
        );
        assert!(printed.contains("sandbox = \"off\""), "{printed}");
        let reparsed = Config::parse(&printed, "printed.toml").unwrap();
        assert_eq!(reparsed.to_toml(), printed);
        let degraded = crate::gateway::degraded(&config, None);
        assert_eq!(
            degraded,
            vec!["sandbox: upstream `b` runs as an ordinary child process, not in a sandbox (`sandbox = \"off\"`)".to_owned()]
        );
    }

    #[test]
    fn a_sandboxed_command_must_be_visible_in_its_sandbox() {
        let dir = std::env::temp_dir().join(format!("palisade-hidden-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let tool = dir.join("bin/tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = dir.join("bin/script");
        std::fs::write(&script, format!("#!{} -x\n", tool.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let top = dir.iter().take(2).collect::<PathBuf>();
        let find = |upstream: &str| {
            Config::parse(&format!("{PASS}\n[upstreams.a]\n{upstream}"), "p.toml")
                .unwrap()
                .find_commands("p.toml")
        };
        let err = find(&format!("command = \"{}\"", tool.display()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "p.toml: `upstreams.a.command`: `{}` cannot run in the sandbox profile `upstream`: it needs the host's `{}`, which the sandbox does not show (it shows /usr, /bin, /sbin, /lib, /lib32, /lib64, /libx32, /etc/alternatives, /etc/ssl/certs and the upstream's binds); add the directory to `bind_ro`, or run the server unsandboxed with `sandbox = \"off\"`",
                tool.display(),
                top.display()
            )
        );
        find(&format!(
            "command = \"{}\"\nbind_ro = [\"{}\"]",
            tool.display(),
            dir.display()
        ))
        .unwrap();
        find(&format!(
            "command = \"{}\"\nsandbox = \"off\"",
            tool.display()
        ))
        .unwrap();
        // A script whose interpreter the sandbox does not show.
        let err = find(&format!(
            "command = \"/s/script\"\nbind_ro = [\"{}:/s\"]",
            dir.join("bin").display()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(
                "its interpreter `{}` needs the host's `{}`",
                tool.display(),
                top.display()
            )),
            "{err}"
        );
        // A hidden `cwd`.
        let err = find(&format!("command = \"sh\"\ncwd = \"{}\"", dir.display()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "its `cwd` `{}` needs the host's `{}`",
                dir.display(),
                top.display()
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
            let text = format!("{PASS}\n[upstreams.a]\ncommand = \"{missing}\"\nsandbox = \"off\"");
            let err = Config::parse(&text, "p.toml")
                .unwrap()
                .find_commands("p.toml")
                .unwrap_err();
            let expected = format!(
                "p.toml: `upstreams.a.command`: `{missing}` is not an executable file, nor found on PATH"
            );
            assert_eq!(err.to_string(), expected);
        }
        // A sandboxed upstream's command is looked for as its sandbox will.
        let err = Config::parse(
            &format!("{PASS}\n[upstreams.a]\ncommand = \"/bin/no-such-program\""),
            "p.toml",
        )
        .unwrap()
        .find_commands("p.toml")
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "p.toml: `upstreams.a.command`: `/bin/no-such-program` cannot run in the sandbox profile `upstream`: `/bin/no-such-program` is not an executable file"
        );
        std::fs::remove_file(&not_executable).unwrap();
    }

    #[test]
    fn wrong_types_are_named_by_path_in_plain_words() {
        let cases = [
            (
                "[server]\nmax_sessions = \"10\"",
                "`server.max_sessions`: expected a whole number, got the string `10` (line 7, column 16)",
            ),
            (
                "[server]\nmax_sessions = -1",
                "`server.max_sessions`: expected a whole number of 0 or more, got `-1`",
            ),
            (
                "[server]\nallowed_origins = \"http://localhost\"",
                "`server.allowed_origins`: expected a list of strings, such as [\"a\", \"b\"], got the string `http://localhost`",
            ),
            (
                "[server]\nbody_timeout = 30",
                "`server.body_timeout`: expected a duration in quotes, such as \"30s\" or \"500ms\", got the whole number `30`",
            ),
            (
                "[upstreams.files]\ncommand = \"x\"\nargs = [\"a\", \"b\", 3]",
                "`upstreams.files.args[2]`: expected a string, got the whole number `3` (line 8, column 19)",
            ),
            (
                "[upstreams.files]\ncommand = \"x\"\ninherit_env = \"yes\"",
                "`upstreams.files.inherit_env`: expected true or false, got the string `yes`",
            ),
            (
                "[upstreams.files]\ncommand = \"x\"\nprefix = true",
                "`upstreams.files.prefix`: expected a string, got `true`",
            ),
            (
                "[upstreams.files]\ncommand = 1.5",
                "`upstreams.files.command`: expected a string, got the number `1.5`",
            ),
            (
                "[upstreams.files]\ncommand = \"x\"\neffects = { echo = [\"read\"] }",
                "`upstreams.files.effects.echo`: expected a string, got a list",
            ),
            (
                "[[upstreams]]\ncommand = \"x\"",
                "`upstreams`: expected [upstreams.NAME] tables, one per name, got a list",
            ),
        ];
        for (extra, expected) in cases {
            check(extra, Some(expected));
        }
        // Keys above any table header.
        let top_level = [
            (
                "server = 1",
                "p.toml: `server`: expected a [server] table, got the whole number `1` (line 1, column 10)",
            ),
            (
                "upstreams.files = \"x\"",
                "p.toml: `upstreams.files`: expected a [upstreams.files] table, got the string `x` (line 1, column 19)",
            ),
            (
                "datadir = \"/x\"",
                "p.toml: `datadir`: unknown field (line 1, column 1); expected one of data_dir, environment, storage, server, auth, authz, approvals, tools, wrap, vault, secrets, pipeline, sandbox, egress, filter, limits, audit, alerts, upstreams",
            ),
        ];
        for (first, expected) in top_level {
            let err = Config::parse(&format!("{first}\n{PASS}"), "p.toml")
                .unwrap_err()
                .to_string();
            assert_eq!(err, expected);
        }
    }

    #[test]
    fn pinning_is_first_use_unless_set_globally_or_per_upstream() {
        use palisade_filter::pins::Mode;
        let c = Config::parse(
            &format!("{PASS}[upstreams.a]\ncommand = \"x\"\n[upstreams.b]\ncommand = \"y\"\npinning = \"off\"\n[upstreams.c]\nbuiltin = \"http_request\""),
            "p.toml",
        )
        .unwrap();
        let modes: Vec<Mode> = c.upstreams.iter().map(|u| c.pinning_of(u)).collect();
        assert_eq!(modes, [Mode::TrustOnFirstUse, Mode::Off, Mode::Off]);
        let c = Config::parse(
            &format!("{PASS}[tools]\npinning = \"approve\"\n[upstreams.a]\ncommand = \"x\"\n[upstreams.b]\ncommand = \"y\"\npinning = \"trust-on-first-use\""),
            "p.toml",
        )
        .unwrap();
        let modes: Vec<Mode> = c.upstreams.iter().map(|u| c.pinning_of(u)).collect();
        assert_eq!(modes, [Mode::Approve, Mode::TrustOnFirstUse]);
        assert!(
            c.to_toml().contains("[tools]\npinning = \"approve\""),
            "{}",
            c.to_toml()
        );
        for (extra, expected) in [
            (
                "[tools]\npinning = \"tofu\"",
                "p.toml: `tools.pinning`: expected one of approve, trust-on-first-use, off, got `tofu`",
            ),
            (
                "[tools]\npining = \"off\"",
                "p.toml: `tools.pining`: unknown field (line 6, column 1); expected one of pinning",
            ),
            (
                "[upstreams.a]\ncommand = \"x\"\npinning = \"always\"",
                "p.toml: `upstreams.a.pinning`: expected one of approve, trust-on-first-use, off, got `always`",
            ),
            (
                "[upstreams.a]\nbuiltin = \"http_request\"\npinning = \"approve\"",
                "p.toml: `upstreams.a.pinning`: a built-in tool is palisade's own: its definition is not pinned",
            ),
        ] {
            let err = Config::parse(&format!("{PASS}{extra}"), "p.toml")
                .unwrap_err()
                .to_string();
            assert_eq!(err, expected);
        }
    }

    #[test]
    fn env_and_header_values_are_not_shown_in_errors() {
        for (extra, field) in [
            (
                "[upstreams.a]\ncommand = \"x\"\nenv = { KEY = 123456 }",
                "`upstreams.a.env.KEY`: expected a string or { secret = \"name\" }, got a whole number",
            ),
            (
                "[upstreams.a]\nurl = \"http://h/mcp\"\nheaders = \"Bearer 123456\"",
                "`upstreams.a.headers`: expected a table such as { NAME = \"value\" } or { NAME = { secret = \"name\" } }, got a string (",
            ),
        ] {
            let err = Config::parse(&format!("{PASS}\n{extra}"), "p.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
            assert!(!err.contains("123456"), "{err}");
        }
    }

    #[test]
    fn every_field_is_read() {
        let text = format!(
            "{PASS}stage_timeout = \"2s\"\n[server]\nlisten = \"127.0.0.1:0\"\npath = \"/m\"\nallowed_origins = [\"http://localhost\"]\nmax_message_bytes = 0x10000\nmax_sessions = 3\nbody_timeout = \"1s\"\nsession_idle_timeout = \"1m\"\n[upstreams.a]\ncommand = \"x\"\nargs = [\"y\"]\nenv = {{ K = \"v\" }}\ninherit_env = true\ncwd = \"/tmp\"\nprefix = \"a_\"\nrequest_timeout = \"3s\"\ndefault_effect = \"read\"\neffects = {{ rm = \"irreversible\" }}\nextension_methods = [\"x/y\"]\n[upstreams.b]\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = {{ H = \"v\" }}"
        );
        let c = Config::parse(&text, "p.toml").unwrap();
        assert_eq!(c.server.max_message_bytes, 0x10000);
        assert_eq!(c.server.max_sessions, 3);
        assert_eq!(c.server.session_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.pipeline.stage_timeout, Duration::from_secs(2));
        let a = &c.upstreams[0];
        assert_eq!(a.extension_methods, ["x/y"]);
        assert_eq!(a.effect_of("rm"), EffectClass::Irreversible);
        assert!(matches!(
            &a.transport,
            Transport::Stdio { inherit_env: true, cwd: Some(cwd), env, .. }
                if cwd == Path::new("/tmp") && env.contains_key("K")
        ));
    }

    #[test]
    fn a_file_that_cannot_be_read_gives_its_os_error_once() {
        let err = Config::load(Path::new("/no/such/dir/palisade.toml")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cannot read `/no/such/dir/palisade.toml`: "),
            "{message}"
        );
        assert_eq!(message.matches("os error").count(), 1, "{message}");
        // A chained source would be printed again by `{:#}`.
        assert!(std::error::Error::source(&err).is_none(), "{message}");
    }

    #[test]
    fn listen_flag_overrides_the_file_under_the_same_rule() {
        let mut c = Config::parse(
            &format!("{PASS}\n[server]\nlisten = \"127.0.0.1:1\""),
            "p.toml",
        )
        .unwrap();
        c.override_listen("[::1]:9000").unwrap();
        assert_eq!(c.server.listen, "[::1]:9000".parse::<SocketAddr>().unwrap());
        let err = c.override_listen("0.0.0.0:9000").unwrap_err().to_string();
        assert_eq!(
            err,
            "`--listen`: `0.0.0.0:9000` is not a loopback address, and anonymous callers are served; configure `[auth]` (API keys or `[auth.jwt]`) with `anonymous = false` to listen beyond loopback"
        );
        let err = c.override_listen("localhost:1").unwrap_err().to_string();
        assert!(
            err.starts_with("`--listen`: expected an IP address and port"),
            "{err}"
        );
    }

    #[test]
    fn every_stage_runs_unless_the_config_passes_it_through() {
        let c = Config::parse("data_dir = \"/x\"", "p.toml").unwrap();
        assert!(c.pipeline.pass_through.is_empty());
        let c = Config::parse(
            "data_dir = \"/x\"\n[pipeline]\npass_through = [\"limits\", \"redact\"]",
            "p.toml",
        )
        .unwrap();
        assert_eq!(c.pipeline.pass_through, [Stage::Limits, Stage::Redact]);
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
        assert_eq!(
            err,
            "p.toml: invalid TOML at line 1, column 8: unclosed table, expected `]`"
        );
        let err = Config::parse("[server]\nlisten = \"a\"\nlisten = \"b\"", "p.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "p.toml: invalid TOML at line 3, column 1: duplicate key"
        );
    }

    #[test]
    fn upstreams_keep_the_files_order() {
        // The order decides who owns a contested resource: it must be the
        // operator's, not the alphabet's.
        let text = format!(
            "{PASS}\n[upstreams.zeta]\nurl = \"http://127.0.0.1:9/mcp\"\n[upstreams.alpha]\nurl = \"http://127.0.0.1:8/mcp\""
        );
        let config = Config::parse(&text, "t.toml").unwrap();
        let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
    }

    #[test]
    fn embedded_default_is_loopback_with_every_stage_on() {
        let c = Config::embedded_default().unwrap();
        assert!(c.server.listen.ip().is_loopback());
        assert!(c.pipeline.pass_through.is_empty());
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

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio {
                command,
                args,
                env,
                inherit_env,
                cwd,
                sandbox,
            } => f
                .debug_struct("Stdio")
                .field("sandbox", sandbox)
                .field("command", command)
                .field("args", &args.len())
                .field("env", &env.keys().collect::<Vec<_>>())
                .field("inherit_env", inherit_env)
                .field("cwd", cwd)
                .finish(),
            Transport::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", &url.split(['?', '#']).next().unwrap_or_default())
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
            Transport::Builtin {
                builtin,
                allow,
                max_response_bytes,
            } => f
                .debug_struct("Builtin")
                .field("builtin", builtin)
                .field("allow", allow)
                .field("max_response_bytes", max_response_bytes)
                .finish(),
        }
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_shows_no_credential() {
        let stdio = Transport::Stdio {
            command: "server".into(),
            args: vec!["--token=hunter2".into()],
            env: BTreeMap::from([("API_KEY".into(), Setting::Literal("hunter2".into()))]),
            inherit_env: false,
            cwd: None,
            sandbox: None,
        };
        let http = Transport::Http {
            url: "https://mcp.example.com/mcp?key=hunter2".into(),
            headers: BTreeMap::from([(
                "Authorization".into(),
                Setting::Literal("Bearer hunter2".into()),
            )]),
        };
        for transport in [stdio, http] {
            let text = format!("{transport:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(
                text.contains("API_KEY") || text.contains("Authorization"),
                "{text}"
            );
        }
    }
}
