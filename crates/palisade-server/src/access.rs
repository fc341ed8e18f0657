//! Layer 1 as the server builds it from the config: the state store, the authenticators every transport asks, the policies and constraints.
//!
//! Also the resource identity bearer tokens must name (RFC 9728), and how a
//! failed authentication is answered.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use http::StatusCode;
use palisade_authz::authn::{
    AlgorithmFamilyName, ApiKeys, Authenticator, AuthnError, JwtConfig, JwtVerifier, TaskTokens,
};
use palisade_authz::constraints::{
    CommandRule, Constraint, ConstraintError, ConstraintSet, EmailRule, PathRule, ReadOnlyRule,
    Rule,
};
use palisade_authz::policy::{
    ArgumentChecks, DEFAULT_POLICY, DEFAULT_POLICY_FILE, PolicyAuthorizer, PolicyError,
    PolicySource,
};
use palisade_authz::tokens::{Revocations, TokenAuthority, TokenSettings};
use palisade_core::{Clock, Principal};
use palisade_store::{Backend, Store};
use serde_json::{Value, json};

use crate::config::{Config, ConstraintKind};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("`storage.url`: {0}")]
    Store(#[from] palisade_store::StoreError),
    #[error("`auth.jwt`: {0}")]
    Jwt(String),
    #[error("task-token keys: {0}")]
    Tokens(String),
    #[error("cannot read the policy file `{}`: {error}", file.display())]
    PolicyFile {
        file: std::path::PathBuf,
        error: String,
    },
    #[error("invalid policies:\n{0}")]
    Policy(PolicyError),
    #[error("`{field}`: {message}")]
    Constraint { field: String, message: String },
}

/// Task tokens as the authenticator sees them: verified against the root
/// keys in the data directory and this gateway's environment, then checked
/// against the revocation list on every request (a revocation applies to
/// the next one, on every replica sharing the store).
#[derive(Debug)]
struct Tasks {
    authority: TokenAuthority,
    revocations: Revocations,
    environment: String,
}

impl TaskTokens for Tasks {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        now: SystemTime,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Principal, AuthnError>> + Send + 'a>> {
        Box::pin(async move {
            let task = self
                .authority
                .verify(token, &self.environment, now)
                .map_err(|e| AuthnError::TaskToken { why: e.to_string() })?;
            match self.revocations.any_revoked(&task.revocation_ids).await {
                Ok(None) => Ok(task.into_principal()),
                Ok(Some(id)) => Err(AuthnError::Revoked { id }),
                Err(e) => Err(AuthnError::StoreUnavailable { why: e.to_string() }),
            }
        })
    }
}

/// Opens the state store the config names (`storage.url`).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, AccessError> {
    let backend = Backend::parse(&config.storage.url, &config.data_dir)?;
    Ok(palisade_store::open(&backend).await?)
}

/// Why a caller was not let in: the HTTP status, the RFC 6750 error code,
/// a description safe to show (never any part of the credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub status: StatusCode,
    /// `invalid_request`, `invalid_token` or `insufficient_scope`; `None`
    /// when no credential was presented (RFC 6750 §3.1: no error code).
    pub code: Option<&'static str>,
    pub description: String,
    /// The scope that would have sufficed, for `insufficient_scope`.
    pub scope: Option<String>,
}

impl From<&AuthnError> for AuthFailure {
    fn from(error: &AuthnError) -> Self {
        let scope = if let AuthnError::InsufficientScope { needed } = error {
            Some(needed.clone())
        } else {
            None
        };
        Self {
            status: error.status(),
            code: error.error_code(),
            description: error.description(),
            scope,
        }
    }
}

impl AuthFailure {
    pub fn missing() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: None,
            description: "authentication required: send `Authorization: Bearer <API key, task token or OIDC token>`".into(),
            scope: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: Some("invalid_request"),
            description: description.into(),
            scope: None,
        }
    }

    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: Some("invalid_token"),
            description: description.into(),
            scope: None,
        }
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: Some("insufficient_scope"),
            description: description.into(),
            scope: None,
        }
    }
}

/// What every transport asks before serving a caller.
#[derive(Debug)]
pub struct Access {
    anonymous: bool,
    authenticator: Authenticator,
    /// This gateway's resource identifier, fixed once the listener's
    /// address is known (a configured `auth.resource` wins).
    resource: OnceLock<String>,
    configured_resource: Option<String>,
}

impl Access {
    /// Builds the authenticators the config names: API keys from the
    /// store always; OIDC tokens when `[auth.jwt]` is set (its keys are
    /// fetched now: a JWKS that cannot be read stops the start).
    pub async fn build(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, AccessError> {
        let jwt = match &config.auth.jwt {
            None => None,
            Some(jwt) => {
                let audience = jwt
                    .audience
                    .clone()
                    .or_else(|| config.auth.resource.clone())
                    .ok_or_else(|| {
                        AccessError::Jwt(
                            "set `auth.resource` (this gateway's URL) or `auth.jwt.audience`: a token must name the gateway it is for".into(),
                        )
                    })?;
                let family = match jwt.algorithms.as_str() {
                    "ES" => AlgorithmFamilyName::Es,
                    "EdDSA" => AlgorithmFamilyName::EdDsa,
                    _ => AlgorithmFamilyName::Rs,
                };
                let mut settings =
                    JwtConfig::new(jwt.issuer.clone(), audience, jwt.jwks.clone(), family);
                settings.leeway = jwt.leeway;
                settings.refresh = jwt.refresh;
                settings.max_stale = jwt.max_stale;
                settings.principal_claim = jwt.principal_claim.clone();
                settings.roles_claim = jwt.roles_claim.clone();
                settings.tenant_claim = jwt.tenant_claim.clone();
                settings.service_claim = jwt.service_claim.clone();
                settings.required_scopes = jwt.required_scopes.clone();
                Some(
                    JwtVerifier::start(settings, clock)
                        .await
                        .map_err(|e| AccessError::Jwt(e.to_string()))?,
                )
            }
        };
        let tokens = TokenAuthority::open(
            &config.data_dir,
            TokenSettings::default(),
            SystemTime::now(),
        )
        .map_err(|e| AccessError::Tokens(e.to_string()))?;
        let task_tokens = Arc::new(Tasks {
            authority: tokens,
            revocations: Revocations::new(Arc::clone(&store)),
            environment: config.environment.clone(),
        });
        let authenticator = Authenticator {
            api_keys: Some(ApiKeys::new(store)),
            jwt,
            task_tokens: Some(task_tokens),
        };
        Ok(Arc::new(Self {
            anonymous: config.auth.anonymous,
            authenticator,
            resource: OnceLock::new(),
            configured_resource: config.auth.resource.clone(),
        }))
    }

    /// Authenticates a bearer credential, or its absence. A credential that
    /// is presented and fails is refused, never taken as anonymous.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, AuthFailure> {
        match bearer {
            None if self.anonymous => Ok(Principal::anonymous()),
            None => Err(AuthFailure::missing()),
            Some(token) => self
                .authenticator
                .authenticate(Some(token), SystemTime::now())
                .await
                .map_err(|e| {
                    tracing::info!("authentication failed: {e}");
                    AuthFailure::from(&e)
                }),
        }
    }

    /// Who a local stdio client is: the holder of `PALISADE_TOKEN` (an API
    /// key or a task token) if it is set, else the operating-system user.
    pub async fn local_principal(&self) -> Result<Principal, AuthFailure> {
        match std::env::var("PALISADE_TOKEN") {
            Ok(token) if !token.trim().is_empty() => self.authenticate(Some(token.trim())).await,
            Ok(_) | Err(_) => Ok(Principal::local_user(os_user())),
        }
    }

    /// Records the address the listener got, for the default resource identifier.
    pub fn listening(&self, scheme: &str, addr: std::net::SocketAddr, path: &str) {
        let derived = format!("{scheme}://{addr}{path}");
        let _ = self
            .resource
            .set(self.configured_resource.clone().unwrap_or(derived));
    }

    pub fn resource(&self, config: &Config) -> String {
        self.resource.get().cloned().unwrap_or_else(|| {
            self.configured_resource
                .clone()
                .unwrap_or_else(|| format!("http://{}{}", config.server.listen, config.server.path))
        })
    }

    /// RFC 9728 §3: the metadata's URL is the resource's, with
    /// `/.well-known/oauth-protected-resource` inserted before its path.
    pub fn metadata_url(&self, config: &Config) -> String {
        let resource = self.resource(config);
        let (scheme, rest) = resource.split_once("://").unwrap_or(("http", &resource));
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        format!("{scheme}://{authority}/.well-known/oauth-protected-resource{path}")
    }

    pub fn resource_metadata(&self, config: &Config) -> Value {
        let mut document = json!({
            "resource": self.resource(config),
            "bearer_methods_supported": ["header"],
            "resource_name": "palisade",
        });
        if let Some(object) = document.as_object_mut() {
            if !config.auth.authorization_servers.is_empty() {
                object.insert(
                    "authorization_servers".into(),
                    json!(config.auth.authorization_servers),
                );
            }
            if !config.auth.scopes_supported.is_empty() {
                object.insert(
                    "scopes_supported".into(),
                    json!(config.auth.scopes_supported),
                );
            }
        }
        document
    }
}

/// The name of the user running palisade: `USER`, else `uid:N`.
fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 256)
        .unwrap_or_else(|| format!("uid:{}", rustix::process::getuid().as_raw()))
}

/// The policy files the config names, read now; or palisade's built-in
/// default policy when it names none.
pub fn policy_sources(config: &Config) -> Result<Vec<PolicySource>, AccessError> {
    if config.authz.policies.is_empty() {
        return Ok(vec![PolicySource {
            file: DEFAULT_POLICY_FILE.into(),
            text: DEFAULT_POLICY.to_owned(),
        }]);
    }
    config
        .authz
        .policies
        .iter()
        .map(|file| {
            std::fs::read_to_string(file)
                .map(|text| PolicySource {
                    file: file.clone(),
                    text,
                })
                .map_err(|e| AccessError::PolicyFile {
                    file: file.clone(),
                    error: e.to_string(),
                })
        })
        .collect()
}

/// The argument constraints of `[authz.constraints]`, built (directories
/// resolved, patterns checked) so that a bad one stops the start.
pub fn constraints(config: &Config) -> Result<ConstraintSet, AccessError> {
    let mut built = Vec::with_capacity(config.authz.constraints.len());
    for (name, c) in &config.authz.constraints {
        let field = |e: ConstraintError| AccessError::Constraint {
            field: format!("authz.constraints.{name}"),
            message: e.to_string(),
        };
        let rule = match c.kind {
            ConstraintKind::Paths => Rule::Paths(
                PathRule::new(
                    c.allow.iter().map(std::path::PathBuf::from).collect(),
                    c.resolve_symlinks,
                )
                .map_err(field)?,
            ),
            ConstraintKind::EmailDomains => {
                Rule::EmailDomains(EmailRule::new(c.allow.clone()).map_err(field)?)
            }
            ConstraintKind::Commands => {
                Rule::Commands(CommandRule::new(c.allow.clone()).map_err(field)?)
            }
            ConstraintKind::ReadOnly => Rule::ReadOnly(
                ReadOnlyRule::new(c.read.clone(), c.write_roles.clone()).map_err(field)?,
            ),
        };
        built.push(
            Constraint::new(name.clone(), c.tools.clone(), c.arguments.clone(), rule)
                .map_err(field)?,
        );
    }
    ConstraintSet::new(built).map_err(|e| AccessError::Constraint {
        field: "authz.constraints".into(),
        message: e.to_string(),
    })
}

/// The authorizer of `authorize`: the policies (validated against
/// palisade's schema) and the argument constraints.
pub fn authorizer(config: &Config, clock: Arc<dyn Clock>) -> Result<PolicyAuthorizer, AccessError> {
    let sources = policy_sources(config)?;
    let checks: Arc<dyn ArgumentChecks> = Arc::new(constraints(config)?);
    let prefixes = config
        .upstreams
        .iter()
        .map(|u| (u.name.clone(), u.prefix.clone()))
        .collect();
    PolicyAuthorizer::load(
        &sources,
        checks,
        prefixes,
        clock,
        config.authz.irreversible_needs_approval,
    )
    .map_err(AccessError::Policy)
}
