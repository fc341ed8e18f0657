//! Raw config to validated config: one function per section, each naming
//! the field and what was expected when it refuses.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use palisade_core::{EffectClass, Stage};
use palisade_mcp::{ClientNotification, ClientRequest};

use super::raw::{RawConfig, RawPipeline, RawServer, RawUpstream};
use super::{
    Config, ConfigError, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_SESSIONS, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SESSION_IDLE,
    DEFAULT_STAGE_TIMEOUT, PipelineConfig, RESERVED_FILES, Server, Transport, Upstream,
    default_data_dir,
};

/// The address to listen on, from `server.listen` or `--listen`: an IP
/// address and port. Whether it may be beyond loopback is
/// `Validator::exposure`'s question.
pub(super) fn listen(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("expected an IP address and port such as \"127.0.0.1:8716\", got `{text}`")
    })
}

/// Turns the raw form into the validated one, a section at a time; `file`
/// names the config in every error.
pub(super) struct Validator<'f> {
    pub(super) file: &'f str,
    /// The process's soft limit on open files, which `server.max_connections`
    /// must stay below; `None` when unlimited.
    pub(super) open_files: Option<u64>,
    /// The config file's directory, which relative policy and certificate
    /// paths are read from.
    pub(super) base_dir: Option<PathBuf>,
}

impl Validator<'_> {
    pub(super) fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(super) fn duration(
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

    /// A duration that may be zero (`"0s"`: not at all).
    pub(super) fn duration_or_zero(
        &self,
        field: &str,
        raw: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(raw) = raw else { return Ok(default) };
        humantime::parse_duration(raw).map_err(|e| {
            self.err(
                field,
                format!("expected a duration such as \"30s\" or \"0s\", got `{raw}` ({e})"),
            )
        })
    }

    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let data_dir = self.data_dir(raw.data_dir)?;
        let environment = self.environment(raw.environment)?;
        let storage = self.storage(raw.storage)?;
        let server = self.server(raw.server)?;
        let auth = self.auth(raw.auth)?;
        self.exposure(
            server.listen,
            &auth,
            server.tls.as_ref(),
            server.plaintext_beyond_loopback,
        )?;
        let authz = self.authz(raw.authz)?;
        let approvals = self.approvals(raw.approvals)?;
        let tools = super::Tools {
            pinning: match raw.tools.and_then(|t| t.pinning) {
                Some(text) => self.pinning("tools.pinning", &text)?,
                None => super::DEFAULT_PINNING,
            },
        };
        let wrap = self.wrap(raw.wrap)?;
        let pipeline = self.pipeline(raw.pipeline)?;
        let upstreams = self.upstreams(raw.upstreams)?;
        let vault = self.vault(raw.vault)?;
        let secrets = self.secrets(raw.secrets, &environment)?;
        self.references_are_bound(&upstreams, &secrets, &environment)?;
        let sandbox = self.sandbox(raw.sandbox, &upstreams)?;
        let egress = self.egress(raw.egress, &upstreams, &secrets, &sandbox)?;
        let filter = self.filter(raw.filter, &upstreams)?;
        let limits = self.limits(raw.limits, &upstreams)?;
        let audit = self.audit(raw.audit)?;
        let alerts = self.alerts(raw.alerts)?;
        Ok(Config {
            data_dir,
            environment,
            storage,
            server,
            auth,
            authz,
            approvals,
            tools,
            wrap,
            pipeline,
            upstreams,
            vault,
            secrets,
            sandbox,
            egress,
            filter,
            limits,
            audit,
            alerts,
        })
    }

    fn pinning(&self, field: &str, text: &str) -> Result<palisade_filter::pins::Mode, ConfigError> {
        palisade_filter::pins::Mode::parse(text).ok_or_else(|| {
            self.err(
                field,
                format!("expected one of approve, trust-on-first-use, off, got `{text}`"),
            )
        })
    }

    fn data_dir(&self, raw: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
        match raw {
            Some(dir) if dir.as_os_str().is_empty() => {
                Err(self.err("data_dir", "must not be empty"))
            }
            Some(dir) => Ok(dir),
            None => default_data_dir().ok_or_else(|| {
                self.err(
                    "data_dir",
                    "not set, and neither XDG_DATA_HOME nor HOME is set to derive it from",
                )
            }),
        }
    }

    fn server(&self, raw: RawServer) -> Result<Server, ConfigError> {
        let listen = listen(raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN))
            .map_err(|message| self.err("server.listen", message))?;
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
        let allowed_hosts = self.allowed_hosts(raw.allowed_hosts.unwrap_or_default())?;
        let (max_connections, max_connections_per_client) =
            self.connections(raw.max_connections, raw.max_connections_per_client)?;
        let tls = self.tls(raw.tls)?;
        Ok(Server {
            tls,
            plaintext_beyond_loopback: raw.plaintext_beyond_loopback.unwrap_or(false),
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
            strict_names: raw.strict_names.unwrap_or(false),
            allowed_hosts,
            max_connections,
            max_connections_per_client,
            header_read_timeout: self.duration(
                "server.header_read_timeout",
                raw.header_read_timeout.as_deref(),
                DEFAULT_HEADER_READ_TIMEOUT,
            )?,
            idle_timeout: self.duration(
                "server.idle_timeout",
                raw.idle_timeout.as_deref(),
                DEFAULT_IDLE_TIMEOUT,
            )?,
        })
    }

    /// Host names as a client would write them in `Host`, without a port:
    /// a DNS name, an IPv4 address or a bracketed IPv6 one. Kept lowercase.
    fn allowed_hosts(&self, raw: Vec<String>) -> Result<Vec<String>, ConfigError> {
        let mut hosts = Vec::with_capacity(raw.len());
        for (i, host) in raw.into_iter().enumerate() {
            let host = host.to_ascii_lowercase();
            if !is_host_name(&host) {
                return Err(self.err(
                    format!("server.allowed_hosts[{i}]"),
                    format!("expected a host name without scheme or port, such as \"mcp.internal\", got `{host}`"),
                ));
            }
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Ok(hosts)
    }

    /// The connection caps. Every connection is an open file, so the cap
    /// stays [`RESERVED_FILES`] below the process's limit: at the limit,
    /// `accept` fails and the backlog holds everyone, attacker or not. Left
    /// out, the caps shrink to fit a low limit; set, they must fit it.
    fn connections(
        &self,
        max: Option<usize>,
        per_client: Option<usize>,
    ) -> Result<(usize, usize), ConfigError> {
        let room = self.open_files.map(|limit| {
            usize::try_from(limit.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX)
        });
        let too_low = |limit: u64| {
            format!(
                "the open-file limit is {limit}, which leaves no room for connections beside the {RESERVED_FILES} files palisade keeps for itself; raise it (`ulimit -n`)"
            )
        };
        let max = match (max, room) {
            (Some(0), _) => return Err(self.err("server.max_connections", "must be at least 1")),
            (Some(max), Some(room)) if max > room => {
                let limit = self.open_files.unwrap_or_default();
                return Err(self.err(
                    "server.max_connections",
                    format!(
                        "{max} does not fit the open-file limit of {limit}: at most {room}, keeping {RESERVED_FILES} files for palisade itself; raise the limit (`ulimit -n`) or lower this"
                    ),
                ));
            }
            (Some(max), _) => max,
            (None, Some(0)) => {
                return Err(self.err(
                    "server.max_connections",
                    too_low(self.open_files.unwrap_or_default()),
                ));
            }
            (None, Some(room)) => DEFAULT_MAX_CONNECTIONS.min(room),
            (None, None) => DEFAULT_MAX_CONNECTIONS,
        };
        let per_client = match per_client {
            Some(0) => {
                return Err(self.err("server.max_connections_per_client", "must be at least 1"));
            }
            Some(n) if n > max => {
                return Err(self.err(
                    "server.max_connections_per_client",
                    format!("{n} is more than `server.max_connections` ({max})"),
                ));
            }
            Some(n) => n,
            None => DEFAULT_MAX_CONNECTIONS_PER_CLIENT.min(max),
        };
        Ok((max, per_client))
    }

    fn pipeline(&self, raw: Option<RawPipeline>) -> Result<PipelineConfig, ConfigError> {
        let raw = raw.unwrap_or_default();
        let mut pass_through = Vec::new();
        for (i, name) in raw.pass_through.unwrap_or_default().iter().enumerate() {
            let field = format!("pipeline.pass_through[{i}]");
            let stage = Stage::parse(name).ok_or_else(|| {
                let names: Vec<&str> = palisade_pipeline::PASSABLE
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                self.err(
                    &field,
                    format!(
                        "unknown stage `{name}`; expected one of {}",
                        names.join(", ")
                    ),
                )
            })?;
            if !palisade_pipeline::PASSABLE.contains(&stage) {
                return Err(self.err(field, format!("stage `{name}` cannot be passed through")));
            }
            if pass_through.contains(&stage) {
                return Err(self.err(field, format!("stage `{name}` is listed twice")));
            }
            pass_through.push(stage);
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

    fn upstreams(&self, raw: IndexMap<String, RawUpstream>) -> Result<Vec<Upstream>, ConfigError> {
        let mut upstreams = Vec::with_capacity(raw.len());
        let single = raw.len() == 1;
        for (name, upstream) in raw {
            upstreams.push(self.upstream(&name, upstream, single)?);
        }
        self.prefixes_are_unambiguous(&upstreams)?;
        self.extension_methods_are_unique(&upstreams)?;
        Ok(upstreams)
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
        if let Some(builtin) = &raw.builtin {
            for (field, present) in [
                ("command", raw.command.is_some()),
                ("url", raw.url.is_some()),
                ("args", raw.args.is_some()),
                ("env", raw.env.is_some()),
                ("inherit_env", raw.inherit_env.is_some()),
                ("cwd", raw.cwd.is_some()),
                ("headers", raw.headers.is_some()),
            ] {
                if present {
                    return Err(self.err(at(field), "a built-in tool does not take this"));
                }
            }
            for (field, present) in [
                ("sandbox", raw.sandbox.is_some()),
                ("bind", raw.bind.is_some()),
                ("bind_ro", raw.bind_ro.is_some()),
            ] {
                if present {
                    return Err(self.err(
                        at(field),
                        "a built-in tool does not take this (the exec tool's sandboxes are the `python`, `shell` and `node` profiles of [sandbox.profiles])",
                    ));
                }
            }
            if builtin != "http_request" && builtin != "exec" {
                return Err(self.err(
                    at("builtin"),
                    format!("expected \"http_request\" or \"exec\", got `{builtin}`"),
                ));
            }
        }
        if raw.builtin.as_deref() != Some("http_request") {
            for (field, present) in [
                ("allow", raw.allow.is_some()),
                ("max_response_bytes", raw.max_response_bytes.is_some()),
            ] {
                if present {
                    return Err(self.err(
                        at(field),
                        "only a built-in `http_request` upstream takes this",
                    ));
                }
            }
        }
        let transport = match (raw.command, raw.url) {
            _ if raw.builtin.as_deref() == Some("exec") => Transport::Builtin {
                builtin: super::Builtin::Exec,
                allow: Vec::new(),
                max_response_bytes: 0,
            },
            _ if raw.builtin.is_some() => {
                let allow = raw.allow.unwrap_or_default();
                for (i, prefix) in allow.iter().enumerate() {
                    match reqwest::Url::parse(prefix) {
                        Ok(url)
                            if matches!(url.scheme(), "http" | "https")
                                && url.username().is_empty()
                                && url.password().is_none() => {}
                        Ok(_) | Err(_) => {
                            return Err(self.err(
                                format!("upstreams.{name}.allow[{i}]"),
                                format!("expected an http or https URL prefix, got `{prefix}`"),
                            ));
                        }
                    }
                }
                Transport::Builtin {
                    builtin: super::Builtin::HttpRequest,
                    allow,
                    max_response_bytes: raw
                        .max_response_bytes
                        .unwrap_or(super::secrets::DEFAULT_MAX_RESPONSE_BYTES),
                }
            }
            (Some(command), None) => {
                if raw.headers.is_some() {
                    return Err(
                        self.err(at("headers"), "only an upstream with `url` takes headers")
                    );
                }
                if command.trim().is_empty() {
                    return Err(self.err(at("command"), "must not be empty"));
                }
                let sandbox = self.upstream_sandbox(name, raw.sandbox, raw.bind, raw.bind_ro)?;
                Transport::Stdio {
                    command,
                    args: raw.args.unwrap_or_default(),
                    env: self.settings(&at("env"), raw.env)?,
                    inherit_env: raw.inherit_env.unwrap_or(false),
                    cwd: raw.cwd,
                    sandbox,
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
                    headers: self.settings(&at("headers"), raw.headers)?,
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
                    "set `command` (a stdio server), `url` (a Streamable HTTP server) or `builtin = \"http_request\"`",
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
            // Running code in a sandbox writes at most its own /tmp; the
            // operator may raise it.
            None if matches!(
                transport,
                Transport::Builtin {
                    builtin: super::Builtin::Exec,
                    ..
                }
            ) =>
            {
                EffectClass::Write
            }
            // Unknown tools are assumed to do the worst they could.
            None => EffectClass::Irreversible,
        };
        let mut effects = BTreeMap::new();
        for (tool, text) in raw.effects.unwrap_or_default() {
            let class = effect(format!("upstreams.{name}.effects.{tool}"), &text)?;
            effects.insert(tool, class);
        }
        let mut extension_methods: Vec<String> = Vec::new();
        for (i, method) in raw
            .extension_methods
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let field = format!("upstreams.{name}.extension_methods[{i}]");
            if method.is_empty() || method.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(self.err(
                    field,
                    "a method name must be non-empty, without spaces or control characters",
                ));
            }
            if ClientRequest::parse(&method).is_some()
                || ClientNotification::parse(&method).is_some()
            {
                return Err(self.err(
                    field,
                    format!("`{method}` is an MCP method; palisade handles it itself"),
                ));
            }
            if extension_methods.contains(&method) {
                return Err(self.err(field, format!("`{method}` is listed twice")));
            }
            extension_methods.push(method);
        }
        let pinning = match raw.pinning {
            // A built-in's tools are palisade's own: nothing to pin.
            Some(_) if matches!(transport, Transport::Builtin { .. }) => {
                return Err(self.err(
                    at("pinning"),
                    "a built-in tool is palisade's own: its definition is not pinned",
                ));
            }
            Some(text) => Some(self.pinning(&at("pinning"), &text)?),
            None => None,
        };
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
            extension_methods,
            pinning,
        })
    }

    /// `sandbox`, `bind` and `bind_ro` of a stdio upstream.
    fn upstream_sandbox(
        &self,
        name: &str,
        profile: Option<String>,
        bind: Option<Vec<String>>,
        bind_ro: Option<Vec<String>>,
    ) -> Result<Option<super::StdioSandbox>, ConfigError> {
        let at = |field: &str| format!("upstreams.{name}.{field}");
        // Sandboxed unless the operator says otherwise: an MCP server is
        // third-party code that an agent drives.
        let profile = match profile.as_deref() {
            Some("off") => {
                for (field, present) in [("bind", bind.is_some()), ("bind_ro", bind_ro.is_some())] {
                    if present {
                        return Err(self.err(
                            at(field),
                            "binds need a sandbox, and `sandbox = \"off\"` runs the server without one",
                        ));
                    }
                }
                return Ok(None);
            }
            Some(profile) => profile.to_owned(),
            None => "upstream".to_owned(),
        };
        let mut mounts = Vec::new();
        for (field, specs, writable) in [("bind", bind, true), ("bind_ro", bind_ro, false)] {
            for (i, spec) in specs.unwrap_or_default().iter().enumerate() {
                let mount = palisade_sandbox::Mount::parse(spec, writable)
                    .map_err(|e| self.err(format!("{}[{i}]", at(field)), e))?;
                mounts.push(mount);
            }
        }
        Ok(Some(super::StdioSandbox { profile, mounts }))
    }

    /// `[sandbox]`: the degraded modes are known names and every profile resolves.
    pub(super) fn sandbox(
        &self,
        raw: Option<super::raw::RawSandbox>,
        upstreams: &[Upstream],
    ) -> Result<palisade_sandbox::Settings, ConfigError> {
        let raw = raw.unwrap_or_default();
        let mut degraded = Vec::new();
        for (i, name) in raw.degraded.unwrap_or_default().iter().enumerate() {
            degraded.push(
                name.parse::<palisade_sandbox::Degraded>()
                    .map_err(|e| self.err(format!("sandbox.degraded[{i}]"), e))?,
            );
        }
        let settings = palisade_sandbox::Settings {
            degraded,
            pool: raw.pool,
            profiles: raw.profiles.into_iter().collect(),
        };
        let profiles = palisade_sandbox::profile::resolve(&settings.profiles)
            .map_err(|e| self.err("sandbox.profiles", e))?;
        for upstream in upstreams {
            if let Transport::Stdio {
                sandbox: Some(sandbox),
                ..
            } = &upstream.transport
                && !profiles.contains_key(&sandbox.profile)
            {
                {
                    return Err(self.err(
                        format!("upstreams.{}.sandbox", upstream.name),
                        format!(
                            "no sandbox profile `{}` (built-in: {}; or define [sandbox.profiles.{}]; or \"off\")",
                            sandbox.profile,
                            palisade_sandbox::profile::BUILT_IN.join(", "),
                            sandbox.profile
                        ),
                    ));
                }
            }
        }
        Ok(settings)
    }

    /// `[egress]`: the environment's allowlist — the rules the file lists,
    /// and the destinations it names elsewhere (remote upstreams,
    /// `http_request`'s URLs, secrets' bound destinations) — the host map
    /// and the limits. A sandbox profile's `egress` must stay within it.
    pub(super) fn egress(
        &self,
        raw: Option<super::raw::RawEgress>,
        upstreams: &[Upstream],
        secrets: &[palisade_secrets::Binding],
        sandbox: &palisade_sandbox::Settings,
    ) -> Result<palisade_egress::Settings, ConfigError> {
        use palisade_egress::RuleSpec;
        use palisade_egress::rule::{FullRule, Ports};
        let raw = raw.unwrap_or_default();
        let listed = raw.allow.unwrap_or_default();
        palisade_egress::Rules::parse(&listed, "egress.allow")
            .map_err(|e| self.err("egress.allow", e.to_string()))?;
        let mut allow = listed;
        let named = |host: &str, port: u16, anywhere: bool| {
            RuleSpec::Full(FullRule {
                host: host.to_owned(),
                port: Ports::One(port),
                methods: Vec::new(),
                paths: Vec::new(),
                // A remote upstream's address is the operator's to choose,
                // internal ones included.
                addresses: if anywhere {
                    vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()]
                } else {
                    Vec::new()
                },
            })
        };
        let url_rule = |field: String, text: &str, anywhere: bool| {
            let url = reqwest::Url::parse(text)
                .map_err(|e| self.err(&field, format!("`{text}`: {e}")))?;
            match (url.host_str(), url.port_or_known_default()) {
                (Some(host), Some(port)) => Ok(named(host, port, anywhere)),
                _ => Err(self.err(field, format!("`{text}` names no host and port"))),
            }
        };
        for upstream in upstreams {
            match &upstream.transport {
                Transport::Http { url, .. } => {
                    allow.push(url_rule(
                        format!("upstreams.{}.url", upstream.name),
                        url,
                        true,
                    )?);
                }
                Transport::Builtin { allow: urls, .. } => {
                    for (i, url) in urls.iter().enumerate() {
                        allow.push(url_rule(
                            format!("upstreams.{}.allow[{i}]", upstream.name),
                            url,
                            false,
                        )?);
                    }
                }
                Transport::Stdio { .. } => {}
            }
        }
        for binding in secrets {
            if let Some(destination) = &binding.destination {
                allow.push(named(&destination.host, destination.port, false));
            }
        }
        let mut hosts = BTreeMap::new();
        for (name, addresses) in raw.hosts.unwrap_or_default() {
            let parsed = addresses
                .iter()
                .map(|a| {
                    a.parse::<std::net::IpAddr>().map_err(|_| {
                        self.err(
                            format!("egress.hosts.{name}"),
                            format!("`{a}` is not an IP address"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            hosts.insert(name, parsed);
        }
        let mut limits = palisade_egress::LimitSettings::default();
        if let Some(raw) = raw.limits {
            let whole = |n: Option<usize>, into: &mut u64| {
                if let Some(n) = n {
                    *into = n as u64;
                }
            };
            whole(raw.connections, &mut limits.connections);
            whole(raw.concurrent, &mut limits.concurrent);
            if let Some(bytes) = &raw.bytes {
                limits.bytes = palisade_sandbox::profile::parse_size(bytes)
                    .map_err(|e| self.err("egress.limits.bytes", e))?;
            }
            if let Some(n) = raw.max_header_bytes {
                limits.max_header_bytes = n;
            }
            for (field, value, into) in [
                (
                    "egress.limits.idle_timeout",
                    &raw.idle_timeout,
                    &mut limits.idle_timeout,
                ),
                (
                    "egress.limits.total_timeout",
                    &raw.total_timeout,
                    &mut limits.total_timeout,
                ),
                (
                    "egress.limits.header_timeout",
                    &raw.header_timeout,
                    &mut limits.header_timeout,
                ),
            ] {
                *into = self.duration(field, value.as_deref(), *into)?;
            }
        }
        let settings = palisade_egress::Settings {
            allow,
            hosts,
            limits,
        };
        let environment = palisade_egress::Rules::parse(&settings.allow, "egress.allow")
            .map_err(|e| self.err("egress.allow", e.to_string()))?;
        let profiles = palisade_sandbox::profile::resolve(&sandbox.profiles)
            .map_err(|e| self.err("sandbox.profiles", e))?;
        for (name, profile) in &profiles {
            let field = format!("sandbox.profiles.{name}.egress");
            let rules = palisade_egress::Rules::parse(&profile.egress, &field)
                .map_err(|e| self.err(&field, e.to_string()))?;
            if let Some(rule) = environment.uncovered(&rules).first() {
                return Err(self.err(
                    field,
                    format!(
                        "{} is not within the environment's allowlist; add it to [egress] allow",
                        show_rule(rule)
                    ),
                ));
            }
        }
        Ok(settings)
    }

    fn extension_methods_are_unique(&self, upstreams: &[Upstream]) -> Result<(), ConfigError> {
        for (i, a) in upstreams.iter().enumerate() {
            for b in upstreams.iter().skip(i + 1) {
                if let Some(method) = b
                    .extension_methods
                    .iter()
                    .find(|m| a.extension_methods.contains(m))
                {
                    return Err(self.err(
                        format!("upstreams.{}.extension_methods", b.name),
                        format!(
                            "`{method}` is already an extension method of upstream `{}`",
                            a.name
                        ),
                    ));
                }
            }
        }
        Ok(())
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

/// Every stage that has no implementation and is not passed through, in one
/// message that ends with the lines that would pass them all through.
/// A DNS name (labels of letters, digits and `-`), an IPv4 address, or an
/// IPv6 address in brackets: what may stand before the port in `Host`.
fn is_host_name(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A rule as the file would write it, for errors.
fn show_rule(rule: &palisade_egress::RuleSpec) -> String {
    match rule {
        palisade_egress::RuleSpec::Short(text) => format!("`{text}`"),
        palisade_egress::RuleSpec::Full(full) => format!("`{}` (port {:?})", full.host, full.port),
    }
}
