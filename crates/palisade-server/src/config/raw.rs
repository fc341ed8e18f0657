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
    pub(super) environment: Option<String>,
    pub(super) storage: Option<RawStorage>,
    pub(super) server: RawServer,
    /// `None` when the file has no `[auth]` table.
    pub(super) auth: Option<RawAuth>,
    pub(super) authz: Option<RawAuthz>,
    pub(super) approvals: Option<RawApprovals>,
    /// `[tools]`: how tool definitions are pinned.
    pub(super) tools: Option<RawTools>,
    pub(super) wrap: Option<RawWrap>,
    pub(super) vault: Option<RawVault>,
    /// `[secrets.NAME]`: each secret's binding, in the file's order.
    pub(super) secrets: IndexMap<String, RawSecret>,
    /// `None` when the file has no `[pipeline]` table.
    pub(super) pipeline: Option<RawPipeline>,
    /// `[sandbox]`: degraded modes, the pool, profiles.
    pub(super) sandbox: Option<RawSandbox>,
    /// `[egress]`: the environment's allowlist, host overrides, limits.
    pub(super) egress: Option<RawEgress>,
    /// `[filter]`: layer 4's policies.
    pub(super) filter: Option<super::filter::RawFilter>,
    /// `[limits]`: layer 5's rules, tiers, budget and loops.
    pub(super) limits: Option<super::limits::RawLimits>,
    /// `[audit]`: checkpoints of the audit log.
    pub(super) audit: Option<super::audit::RawAudit>,
    /// `[alerts]`: rules over the audit log, and the webhook.
    pub(super) alerts: Option<super::alerts::RawAlerts>,
    /// In the file's order: the operator's order of trust (see ARCHITECTURE.md).
    pub(super) upstreams: IndexMap<String, RawUpstream>,
}

#[derive(Debug, Default)]
pub(super) struct RawSandbox {
    pub(super) degraded: Option<Vec<String>>,
    pub(super) pool: Option<usize>,
    pub(super) profiles: IndexMap<String, palisade_sandbox::ProfileSettings>,
}

#[derive(Debug, Default)]
pub(super) struct RawEgress {
    pub(super) allow: Option<Vec<palisade_egress::RuleSpec>>,
    pub(super) hosts: Option<BTreeMap<String, Vec<String>>>,
    pub(super) limits: Option<RawEgressLimits>,
}

#[derive(Debug, Default)]
pub(super) struct RawEgressLimits {
    pub(super) connections: Option<usize>,
    pub(super) concurrent: Option<usize>,
    pub(super) bytes: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) total_timeout: Option<String>,
    pub(super) max_header_bytes: Option<usize>,
    pub(super) header_timeout: Option<String>,
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
    pub(super) plaintext_beyond_loopback: Option<bool>,
    pub(super) tls: Option<RawTls>,
}

#[derive(Debug, Default)]
pub(super) struct RawTls {
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub(super) struct RawStorage {
    pub(super) url: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawAuth {
    pub(super) anonymous: Option<bool>,
    pub(super) resource: Option<String>,
    pub(super) authorization_servers: Option<Vec<String>>,
    pub(super) scopes_supported: Option<Vec<String>>,
    pub(super) jwt: Option<RawJwt>,
}

#[derive(Debug, Default)]
pub(super) struct RawJwt {
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) jwks: Option<String>,
    pub(super) algorithms: Option<String>,
    pub(super) principal_claim: Option<String>,
    pub(super) roles_claim: Option<String>,
    pub(super) tenant_claim: Option<String>,
    pub(super) service_claim: Option<String>,
    pub(super) required_scopes: Option<Vec<String>>,
    pub(super) leeway: Option<String>,
    pub(super) refresh: Option<String>,
    pub(super) max_stale: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawAuthz {
    pub(super) policies: Option<Vec<String>>,
    pub(super) irreversible_needs_approval: Option<bool>,
    /// In the file's order.
    pub(super) constraints: IndexMap<String, RawConstraint>,
}

#[derive(Debug, Default)]
pub(super) struct RawConstraint {
    pub(super) kind: Option<String>,
    pub(super) tools: Option<Vec<String>>,
    pub(super) arguments: Option<Vec<String>>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) resolve_symlinks: Option<bool>,
    pub(super) read: Option<Vec<String>>,
    pub(super) write_roles: Option<Vec<String>>,
}

/// What `palisade mcp` knows of the server it wraps: the operator's word on
/// its tools' effects (the command comes from after `--`).
#[derive(Debug, Default)]
pub(super) struct RawWrap {
    pub(super) name: Option<String>,
    pub(super) default_effect: Option<String>,
    pub(super) effects: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default)]
pub(super) struct RawTools {
    pub(super) pinning: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawApprovals {
    pub(super) hold: Option<String>,
    pub(super) ttl: Option<String>,
}

/// An `env` or `headers` value: written out, or a secret's name.
#[derive(Debug, Clone)]
pub(super) enum RawSetting {
    Literal(String),
    Secret {
        secret: String,
        format: Option<String>,
    },
}

#[derive(Debug, Default)]
pub(super) struct RawVault {
    pub(super) backend: Option<String>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) address: Option<String>,
    pub(super) mount: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) role_id: Option<String>,
    pub(super) secret_id_env: Option<String>,
    pub(super) approle_mount: Option<String>,
    pub(super) request_timeout: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawSecret {
    pub(super) environment: Option<String>,
    pub(super) upstreams: Option<Vec<String>>,
    pub(super) destination: Option<String>,
    pub(super) methods: Option<Vec<String>>,
    pub(super) header: Option<String>,
    pub(super) format: Option<String>,
    pub(super) query: Option<String>,
    pub(super) env: Option<String>,
    pub(super) rotate_every: Option<String>,
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
    pub(super) env: Option<BTreeMap<String, RawSetting>>,
    pub(super) inherit_env: Option<bool>,
    pub(super) cwd: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) headers: Option<BTreeMap<String, RawSetting>>,
    pub(super) builtin: Option<String>,
    pub(super) sandbox: Option<String>,
    pub(super) bind: Option<Vec<String>>,
    pub(super) bind_ro: Option<Vec<String>>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) max_response_bytes: Option<usize>,
    pub(super) prefix: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) default_effect: Option<String>,
    pub(super) effects: Option<BTreeMap<String, String>>,
    pub(super) extension_methods: Option<Vec<String>>,
    pub(super) pinning: Option<String>,
}

// Each reader asks for its fields in the order of the reference
// (docs/configuration.md): that is the order "expected one of" lists them in.

impl RawConfig {
    pub(super) fn read(source: &Source<'_>) -> Result<Self, ConfigError> {
        let mut f = source.parse()?;
        let raw = RawConfig {
            data_dir: f.path("data_dir")?,
            environment: f.string("environment")?,
            storage: f.table("storage")?.map(RawStorage::read).transpose()?,
            server: match f.table("server")? {
                Some(t) => RawServer::read(t)?,
                None => RawServer::default(),
            },
            auth: f.table("auth")?.map(RawAuth::read).transpose()?,
            authz: f.table("authz")?.map(RawAuthz::read).transpose()?,
            approvals: f.table("approvals")?.map(RawApprovals::read).transpose()?,
            tools: f.table("tools")?.map(RawTools::read).transpose()?,
            wrap: f.table("wrap")?.map(RawWrap::read).transpose()?,
            vault: f.table("vault")?.map(RawVault::read).transpose()?,
            secrets: f
                .named_tables("secrets")?
                .into_iter()
                .map(|(name, t)| Ok((name, RawSecret::read(t)?)))
                .collect::<Result<_, ConfigError>>()?,
            pipeline: f.table("pipeline")?.map(RawPipeline::read).transpose()?,
            sandbox: f.table("sandbox")?.map(RawSandbox::read).transpose()?,
            egress: f.table("egress")?.map(RawEgress::read).transpose()?,
            filter: f
                .table("filter")?
                .map(super::filter::RawFilter::read)
                .transpose()?,
            limits: f
                .table("limits")?
                .map(super::limits::RawLimits::read)
                .transpose()?,
            audit: f
                .table("audit")?
                .map(super::audit::RawAudit::read)
                .transpose()?,
            alerts: f
                .table("alerts")?
                .map(super::alerts::RawAlerts::read)
                .transpose()?,
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

impl RawSandbox {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawSandbox {
            degraded: f.strings("degraded")?,
            pool: f.whole("pool")?,
            profiles: f
                .named_tables("profiles")?
                .into_iter()
                .map(|(name, mut t)| {
                    let profile = palisade_sandbox::ProfileSettings {
                        base: t.string("base")?,
                        memory: t.string("memory")?,
                        cpus: t.number("cpus")?,
                        pids: t.whole("pids")?.map(|n| n as u64),
                        timeout: t.string("timeout")?,
                        tmp_size: t.string("tmp_size")?,
                        tmp_noexec: t.boolean("tmp_noexec")?,
                        file_size: t.string("file_size")?,
                        open_files: t.whole("open_files")?.map(|n| n as u64),
                        max_output: t.string("max_output")?,
                        bind: t.strings("bind")?.unwrap_or_default(),
                        bind_ro: t.strings("bind_ro")?.unwrap_or_default(),
                        env: t.string_table("env", Secret::Shown)?.unwrap_or_default(),
                        egress: t.rules("egress")?,
                    };
                    t.finish()?;
                    Ok((name, profile))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawEgress {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawEgress {
            allow: f.rules("allow")?,
            hosts: f.string_lists("hosts")?,
            limits: f
                .table("limits")?
                .map(|mut t| {
                    let limits = RawEgressLimits {
                        connections: t.whole("connections")?,
                        concurrent: t.whole("concurrent")?,
                        bytes: t.string("bytes")?,
                        idle_timeout: t.duration("idle_timeout")?,
                        total_timeout: t.duration("total_timeout")?,
                        max_header_bytes: t.whole("max_header_bytes")?,
                        header_timeout: t.duration("header_timeout")?,
                    };
                    t.finish()?;
                    Ok::<_, ConfigError>(limits)
                })
                .transpose()?,
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
            plaintext_beyond_loopback: f.boolean("plaintext_beyond_loopback")?,
            tls: f.table("tls")?.map(RawTls::read).transpose()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawTls {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawTls {
            cert: f.path("cert")?,
            key: f.path("key")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawStorage {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        // The URL may carry a database password: shown masked in errors.
        let raw = RawStorage {
            url: f.secret_string("url")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawAuth {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawAuth {
            anonymous: f.boolean("anonymous")?,
            resource: f.string("resource")?,
            authorization_servers: f.strings("authorization_servers")?,
            scopes_supported: f.strings("scopes_supported")?,
            jwt: f.table("jwt")?.map(RawJwt::read).transpose()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawJwt {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawJwt {
            issuer: f.string("issuer")?,
            audience: f.string("audience")?,
            jwks: f.string("jwks")?,
            algorithms: f.string("algorithms")?,
            principal_claim: f.string("principal_claim")?,
            roles_claim: f.string("roles_claim")?,
            tenant_claim: f.string("tenant_claim")?,
            service_claim: f.string("service_claim")?,
            required_scopes: f.strings("required_scopes")?,
            leeway: f.duration("leeway")?,
            refresh: f.duration("refresh")?,
            max_stale: f.duration("max_stale")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawAuthz {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawAuthz {
            policies: f.strings("policies")?,
            irreversible_needs_approval: f.boolean("irreversible_needs_approval")?,
            constraints: f
                .named_tables("constraints")?
                .into_iter()
                .map(|(name, t)| Ok((name, RawConstraint::read(t)?)))
                .collect::<Result<_, ConfigError>>()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawConstraint {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawConstraint {
            kind: f.string("kind")?,
            tools: f.strings("tools")?,
            arguments: f.strings("arguments")?,
            allow: f.strings("allow")?,
            resolve_symlinks: f.boolean("resolve_symlinks")?,
            read: f.strings("read")?,
            write_roles: f.strings("write_roles")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawWrap {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawWrap {
            name: f.string("name")?,
            default_effect: f.string("default_effect")?,
            effects: f.string_table("effects", Secret::Shown)?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawTools {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawTools {
            pinning: f.string("pinning")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawApprovals {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawApprovals {
            hold: f.duration("hold")?,
            ttl: f.duration("ttl")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawVault {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawVault {
            backend: f.string("backend")?,
            key_file: f.path("key_file")?,
            address: f.string("address")?,
            mount: f.string("mount")?,
            prefix: f.string("prefix")?,
            namespace: f.string("namespace")?,
            token_env: f.string("token_env")?,
            role_id: f.string("role_id")?,
            secret_id_env: f.string("secret_id_env")?,
            approle_mount: f.string("approle_mount")?,
            request_timeout: f.duration("request_timeout")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

impl RawSecret {
    fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawSecret {
            environment: f.string("environment")?,
            upstreams: f.strings("upstreams")?,
            destination: f.string("destination")?,
            methods: f.strings("methods")?,
            header: f.string("header")?,
            format: f.string("format")?,
            query: f.string("query")?,
            env: f.string("env")?,
            rotate_every: f.duration("rotate_every")?,
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
            env: f.settings("env")?,
            inherit_env: f.boolean("inherit_env")?,
            cwd: f.path("cwd")?,
            url: f.string("url")?,
            headers: f.settings("headers")?,
            builtin: f.string("builtin")?,
            sandbox: f.string("sandbox")?,
            bind: f.strings("bind")?,
            bind_ro: f.strings("bind_ro")?,
            allow: f.strings("allow")?,
            max_response_bytes: f.whole("max_response_bytes")?,
            prefix: f.string("prefix")?,
            request_timeout: f.duration("request_timeout")?,
            default_effect: f.string("default_effect")?,
            effects: f.string_table("effects", Secret::Shown)?,
            extension_methods: f.strings("extension_methods")?,
            pinning: f.string("pinning")?,
        };
        f.finish()?;
        Ok(raw)
    }
}
