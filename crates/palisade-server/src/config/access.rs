//! The sections of layer 1 and its state: `[storage]`, `[auth]`, `[authz]`, `[approvals]`, `[server.tls]`.
//!
//! Validated here into plain data; the gateway builds the authenticators,
//! the policy engine and the approval gate from it at start, so that a file
//! naming a policy that does not parse still fails before anything listens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

use super::raw::{
    RawApprovals, RawAuth, RawAuthz, RawConstraint, RawJwt, RawStorage, RawTls, RawWrap,
};
use super::validate::Validator;
use super::{ConfigError, as_humantime};

const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(3600);
const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
const DEFAULT_JWKS_MAX_STALE: Duration = Duration::from_secs(3600);

/// Where palisade keeps durable state (keys, revocations, approvals).
#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    /// `sqlite` (the data directory's `state.db`), `sqlite:PATH` or a
    /// `postgres://` URL. Printed masked by `palisade check`.
    pub url: String,
}

/// Who may connect, and how they prove it.
#[derive(Debug, Clone, Serialize)]
pub struct Auth {
    /// Callers without a credential are served (as `anonymous`), on a
    /// loopback listener only. True without an `[auth]` table.
    pub anonymous: bool,
    /// This gateway's resource identifier (RFC 9728): the audience a bearer
    /// token must name. Derived from the listener when not set.
    pub resource: Option<String>,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub jwt: Option<Jwt>,
}

/// OIDC / JWT bearer tokens, checked against the issuer's published keys.
#[derive(Debug, Clone, Serialize)]
pub struct Jwt {
    pub issuer: String,
    /// Defaults to `auth.resource`.
    pub audience: Option<String>,
    /// A file path, or an `https://` URL (`http://` on loopback only).
    pub jwks: String,
    /// One family: `RS`, `ES` or `EdDSA`.
    pub algorithms: String,
    pub principal_claim: String,
    pub roles_claim: String,
    pub tenant_claim: Option<String>,
    /// A claim that, when `true`, makes the principal a service (else a user).
    pub service_claim: Option<String>,
    pub required_scopes: Vec<String>,
    #[serde(serialize_with = "as_humantime")]
    pub leeway: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub refresh: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub max_stale: Duration,
}

/// The policies and the argument constraints.
#[derive(Debug, Clone, Serialize)]
pub struct Authz {
    /// Cedar policy files, resolved against the config file's directory;
    /// empty means palisade's built-in default policy.
    pub policies: Vec<PathBuf>,
    pub irreversible_needs_approval: bool,
    pub constraints: IndexMap<String, ConstraintConfig>,
}

/// One `[authz.constraints.NAME]` table, checked for shape here and built
/// into the constraint checker at start.
#[derive(Debug, Clone, Serialize)]
pub struct ConstraintConfig {
    pub kind: ConstraintKind,
    pub tools: Vec<String>,
    pub arguments: Vec<String>,
    pub allow: Vec<String>,
    pub resolve_symlinks: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<String>>,
    pub write_roles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConstraintKind {
    Paths,
    EmailDomains,
    Commands,
    ReadOnly,
}

impl ConstraintKind {
    const ALL: [ConstraintKind; 4] = [
        ConstraintKind::Paths,
        ConstraintKind::EmailDomains,
        ConstraintKind::Commands,
        ConstraintKind::ReadOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConstraintKind::Paths => "paths",
            ConstraintKind::EmailDomains => "email-domains",
            ConstraintKind::Commands => "commands",
            ConstraintKind::ReadOnly => "read-only",
        }
    }
}

/// How calls that need a human wait for one.
#[derive(Debug, Clone, Serialize)]
pub struct Approvals {
    /// How long a call is held open waiting for a decision before the agent
    /// gets a pending answer; `0s` answers at once.
    #[serde(serialize_with = "as_humantime")]
    pub hold: Duration,
    /// How long a request may wait for a decision at all.
    #[serde(serialize_with = "as_humantime")]
    pub ttl: Duration,
}

/// The server `palisade mcp` wraps, as the operator classifies it.
#[derive(Debug, Clone, Serialize)]
pub struct Wrap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub default_effect: palisade_core::EffectClass,
    pub effects: std::collections::BTreeMap<String, palisade_core::EffectClass>,
}

/// The certificate the listener presents.
#[derive(Debug, Clone, Serialize)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Validator<'_> {
    pub(super) fn environment(&self, raw: Option<String>) -> Result<String, ConfigError> {
        let environment = raw.unwrap_or_else(|| "default".to_owned());
        if !is_word(&environment) {
            return Err(self.err(
                "environment",
                format!("expected a name of letters, digits, `-` and `_`, got `{environment}`"),
            ));
        }
        Ok(environment)
    }

    pub(super) fn storage(&self, raw: Option<RawStorage>) -> Result<Storage, ConfigError> {
        let url = raw
            .and_then(|r| r.url)
            .unwrap_or_else(|| "sqlite".to_owned());
        let known = url == "sqlite"
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://");
        if !known {
            return Err(self.err(
                "storage.url",
                "expected `sqlite`, `sqlite:PATH` or a `postgres://` URL",
            ));
        }
        Ok(Storage { url })
    }

    pub(super) fn auth(&self, raw: Option<RawAuth>) -> Result<Auth, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Auth {
                anonymous: true,
                resource: None,
                authorization_servers: Vec::new(),
                scopes_supported: Vec::new(),
                jwt: None,
            });
        };
        if let Some(resource) = &raw.resource
            && !is_http_url(resource)
        {
            return Err(self.err(
                "auth.resource",
                format!("expected an https:// URL naming this gateway, got `{resource}`"),
            ));
        }
        let authorization_servers = raw.authorization_servers.unwrap_or_default();
        for (i, server) in authorization_servers.iter().enumerate() {
            if !is_http_url(server) {
                return Err(self.err(
                    format!("auth.authorization_servers[{i}]"),
                    format!("expected an https:// URL, got `{server}`"),
                ));
            }
        }
        Ok(Auth {
            anonymous: raw.anonymous.unwrap_or(false),
            resource: raw.resource,
            authorization_servers,
            scopes_supported: raw.scopes_supported.unwrap_or_default(),
            jwt: raw.jwt.map(|j| self.jwt(j)).transpose()?,
        })
    }

    fn jwt(&self, raw: RawJwt) -> Result<Jwt, ConfigError> {
        let issuer = raw
            .issuer
            .ok_or_else(|| self.err("auth.jwt.issuer", "required: the issuer (`iss`) to trust"))?;
        let jwks = raw.jwks.ok_or_else(|| {
            self.err(
                "auth.jwt.jwks",
                "required: a JWKS file path or URL with the issuer's keys",
            )
        })?;
        if jwks.starts_with("http://") && !is_loopback_url(&jwks) {
            return Err(self.err(
                "auth.jwt.jwks",
                "an http:// JWKS URL is allowed on loopback only; use https://",
            ));
        }
        let algorithms = raw.algorithms.unwrap_or_else(|| "RS".to_owned());
        if !["RS", "ES", "EdDSA"].contains(&algorithms.as_str()) {
            return Err(self.err(
                "auth.jwt.algorithms",
                format!(
                    "expected one family: \"RS\", \"ES\" or \"EdDSA\" (never `none` or HS), got `{algorithms}`"
                ),
            ));
        }
        Ok(Jwt {
            issuer,
            audience: raw.audience,
            jwks,
            algorithms,
            principal_claim: raw.principal_claim.unwrap_or_else(|| "sub".to_owned()),
            roles_claim: raw.roles_claim.unwrap_or_else(|| "roles".to_owned()),
            tenant_claim: raw.tenant_claim,
            service_claim: raw.service_claim,
            required_scopes: raw.required_scopes.unwrap_or_default(),
            leeway: self.duration_or_zero(
                "auth.jwt.leeway",
                raw.leeway.as_deref(),
                DEFAULT_JWT_LEEWAY,
            )?,
            refresh: self.duration(
                "auth.jwt.refresh",
                raw.refresh.as_deref(),
                DEFAULT_JWKS_REFRESH,
            )?,
            max_stale: self.duration(
                "auth.jwt.max_stale",
                raw.max_stale.as_deref(),
                DEFAULT_JWKS_MAX_STALE,
            )?,
        })
    }

    pub(super) fn authz(&self, raw: Option<RawAuthz>) -> Result<Authz, ConfigError> {
        let raw = raw.unwrap_or_default();
        let policies = raw
            .policies
            .unwrap_or_default()
            .into_iter()
            .map(|p| self.relative_to_file(Path::new(&p)))
            .collect();
        let mut constraints = IndexMap::new();
        for (name, c) in raw.constraints {
            let field = format!("authz.constraints.{name}");
            let attribute = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
            if !attribute {
                return Err(self.err(
                    field,
                    "a constraint name is letters, digits and `_` (it is a Cedar attribute: `context.constraints.NAME`)",
                ));
            }
            let built = self.constraint(&field, c)?;
            constraints.insert(name, built);
        }
        Ok(Authz {
            policies,
            irreversible_needs_approval: raw.irreversible_needs_approval.unwrap_or(true),
            constraints,
        })
    }

    fn constraint(&self, field: &str, raw: RawConstraint) -> Result<ConstraintConfig, ConfigError> {
        let names: Vec<&str> = ConstraintKind::ALL.iter().map(|k| k.as_str()).collect();
        let kind_text = raw.kind.ok_or_else(|| {
            self.err(
                format!("{field}.kind"),
                format!("required: one of {}", names.join(", ")),
            )
        })?;
        let kind = ConstraintKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind_text)
            .ok_or_else(|| {
                self.err(
                    format!("{field}.kind"),
                    format!("expected one of {}, got `{kind_text}`", names.join(", ")),
                )
            })?;
        let tools = raw.tools.unwrap_or_default();
        if tools.is_empty() {
            return Err(self.err(
                format!("{field}.tools"),
                "required: the tools (as clients see them, such as \"files__write_file\"; `files__*` for all of one upstream) this constraint holds",
            ));
        }
        let arguments = raw.arguments.unwrap_or_default();
        if arguments.is_empty() {
            return Err(self.err(
                format!("{field}.arguments"),
                "required: the arguments that hold the values to check, such as [\"path\"]",
            ));
        }
        let allow = raw.allow.unwrap_or_default();
        let needs_allow = kind != ConstraintKind::ReadOnly;
        if needs_allow && allow.is_empty() {
            return Err(self.err(
                format!("{field}.allow"),
                "required: what is allowed (directories, domains or commands); an empty list would refuse everything",
            ));
        }
        if !needs_allow && !allow.is_empty() {
            return Err(self.err(
                format!("{field}.allow"),
                "a read-only constraint lists its read operations in `read`, not `allow`",
            ));
        }
        let kind_only = |present: bool, name: &str, only: ConstraintKind| {
            if present && kind != only {
                Err(self.err(
                    format!("{field}.{name}"),
                    format!(
                        "applies to `{}` constraints only, not `{}`",
                        only.as_str(),
                        kind.as_str()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        kind_only(
            raw.resolve_symlinks.is_some(),
            "resolve_symlinks",
            ConstraintKind::Paths,
        )?;
        kind_only(raw.read.is_some(), "read", ConstraintKind::ReadOnly)?;
        kind_only(
            raw.write_roles.is_some(),
            "write_roles",
            ConstraintKind::ReadOnly,
        )?;
        Ok(ConstraintConfig {
            kind,
            tools,
            arguments,
            allow,
            resolve_symlinks: raw.resolve_symlinks.unwrap_or(true),
            read: raw.read,
            write_roles: raw.write_roles.unwrap_or_default(),
        })
    }

    pub(super) fn approvals(&self, raw: Option<RawApprovals>) -> Result<Approvals, ConfigError> {
        let raw = raw.unwrap_or_default();
        Ok(Approvals {
            hold: self.duration_or_zero("approvals.hold", raw.hold.as_deref(), Duration::ZERO)?,
            ttl: self.duration("approvals.ttl", raw.ttl.as_deref(), DEFAULT_APPROVAL_TTL)?,
        })
    }

    pub(super) fn wrap(&self, raw: Option<RawWrap>) -> Result<Wrap, ConfigError> {
        let raw = raw.unwrap_or_default();
        let effect = |field: String, text: &str| {
            palisade_core::EffectClass::parse(text).ok_or_else(|| {
                self.err(
                    field,
                    format!("expected one of read, write, egress, irreversible, got `{text}`"),
                )
            })
        };
        let default_effect = match raw.default_effect {
            Some(text) => effect("wrap.default_effect".into(), &text)?,
            None => palisade_core::EffectClass::Irreversible,
        };
        let mut effects = std::collections::BTreeMap::new();
        for (tool, text) in raw.effects.unwrap_or_default() {
            let class = effect(format!("wrap.effects.{tool}"), &text)?;
            effects.insert(tool, class);
        }
        Ok(Wrap {
            name: raw.name,
            default_effect,
            effects,
        })
    }

    pub(super) fn tls(&self, raw: Option<RawTls>) -> Result<Option<Tls>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let cert = raw
            .cert
            .ok_or_else(|| self.err("server.tls.cert", "required: the PEM certificate chain"))?;
        let key = raw
            .key
            .ok_or_else(|| self.err("server.tls.key", "required: the PEM private key"))?;
        Ok(Some(Tls {
            cert: self.relative_to_file(&cert),
            key: self.relative_to_file(&key),
        }))
    }

    /// Who may reach a listener on `listen`: anonymous callers on loopback
    /// only, and beyond loopback TLS, or an explicit plaintext opt-out.
    pub(super) fn exposure(
        &self,
        listen: SocketAddr,
        auth: &Auth,
        tls: Option<&Tls>,
        plaintext_beyond_loopback: bool,
    ) -> Result<(), ConfigError> {
        if listen.ip().is_loopback() {
            return Ok(());
        }
        if auth.anonymous {
            return Err(self.err(
                "server.listen",
                format!(
                    "`{listen}` is not a loopback address, and anonymous callers are served; configure `[auth]` (API keys or `[auth.jwt]`) with `anonymous = false` to listen beyond loopback"
                ),
            ));
        }
        if tls.is_none() && !plaintext_beyond_loopback {
            return Err(self.err(
                "server.listen",
                format!(
                    "`{listen}` is not a loopback address: bearer credentials need TLS there; set `[server.tls]` cert and key, or `server.plaintext_beyond_loopback = true` when a TLS-terminating proxy is in front"
                ),
            ));
        }
        Ok(())
    }

    /// A path as written, or relative to the config file's directory.
    fn relative_to_file(&self, path: &Path) -> PathBuf {
        match &self.base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            Some(_) | None => path.to_owned(),
        }
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("https://") || is_loopback_url(s)
}

fn is_loopback_url(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
