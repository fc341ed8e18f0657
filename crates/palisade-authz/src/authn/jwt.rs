//! OIDC / JWT bearer tokens: signature by the IdP's JWKS, exact issuer and audience, time against the injected clock, claims mapped to a principal.
//!
//! The order of the checks is the point:
//! 1. the header's `alg` must be in the configured family, before any key
//!    is looked at (`none` and every `HS*` are never in one, so neither an
//!    unsigned token nor one "signed" with a public key as an HMAC secret
//!    gets further);
//! 2. the key is chosen by `kid` among those whose type and `alg` fit the
//!    token's `alg` (see [`super::jwks`]);
//! 3. the signature, by jsonwebtoken, with its own time, issuer and
//!    audience checks off: it reads the system clock, and we want distinct
//!    errors;
//! 4. issuer, audience, `exp`/`nbf` (against the `now` given, with leeway),
//!    then the required scopes;
//! 5. the claims that make the principal.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use palisade_core::{Clock, Credential, Identity, PrincipalKind};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwks::{JwksCache, JwksSource};
use super::{AuthnError, printable_id};

/// The algorithm family a deployment accepts; one only, so that a key of
/// one type is never tried with another type's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AlgorithmFamilyName {
    /// RS256/384/512 and PS256/384/512.
    #[serde(rename = "RS")]
    Rs,
    /// ES256 and ES384.
    #[serde(rename = "ES")]
    Es,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl AlgorithmFamilyName {
    fn algorithms(self) -> &'static [Algorithm] {
        match self {
            AlgorithmFamilyName::Rs => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmFamilyName::Es => &[Algorithm::ES256, Algorithm::ES384],
            AlgorithmFamilyName::EdDsa => &[Algorithm::EdDSA],
        }
    }
}

/// `[auth.oidc]` as the config file says it. Durations are humantime
/// strings (`"60s"`, `"5m"`, `"1h"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry, compared exactly.
    pub issuer: String,
    /// This gateway's resource URI; a token whose `aud` lacks it is refused.
    pub audience: String,
    /// A JWKS file path, or an `https://` URL (`http://` to loopback only).
    pub jwks: String,
    pub algorithms: AlgorithmFamilyName,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    pub leeway: Duration,
    /// How often the JWKS is fetched again.
    #[serde(default = "default_refresh", deserialize_with = "duration")]
    pub refresh: Duration,
    /// How long the last good JWKS is used while fetches fail; then every
    /// token is refused.
    #[serde(default = "default_max_stale", deserialize_with = "duration")]
    pub max_stale: Duration,
    /// The claim naming the principal.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The claim holding roles: an array of strings or a space-separated
    /// string; a dotted path (`realm_access.roles`) reaches into objects.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// A claim that, when `true`, makes the principal a service; otherwise
    /// every token's principal is a user.
    #[serde(default)]
    pub service_claim: Option<String>,
    /// Scopes every token must carry (in `scope` or `scp`).
    #[serde(default)]
    pub required_scopes: Vec<String>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_refresh() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_max_stale() -> Duration {
    Duration::from_secs(60 * 60)
}
fn default_principal_claim() -> String {
    "sub".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration: {e}")))
}

impl JwtConfig {
    /// A config with every default.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks: impl Into<String>,
        algorithms: AlgorithmFamilyName,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks: jwks.into(),
            algorithms,
            leeway: default_leeway(),
            refresh: default_refresh(),
            max_stale: default_max_stale(),
            principal_claim: default_principal_claim(),
            roles_claim: default_roles_claim(),
            tenant_claim: None,
            service_claim: None,
            required_scopes: Vec::new(),
        }
    }
}

/// Why the OIDC settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error("`{field}` {why}")]
    Config { field: &'static str, why: String },
    #[error("cannot load the identity provider's keys: {0}")]
    Keys(String),
}

/// Verifies JWT bearer tokens from one issuer.
#[derive(Debug)]
pub struct JwtVerifier {
    config: JwtConfig,
    issuer: Arc<str>,
    keys: JwksCache,
}

/// The longest principal, role or tenant taken from a token, and the most roles.
const MAX_NAME_LEN: usize = 256;
const MAX_ROLES: usize = 256;

impl JwtVerifier {
    /// Checks `config` and loads the JWKS; a set that cannot be had now is an error.
    pub async fn start(config: JwtConfig, clock: Arc<dyn Clock>) -> Result<Self, JwtSetupError> {
        for (field, value) in [
            ("issuer", &config.issuer),
            ("audience", &config.audience),
            ("principal_claim", &config.principal_claim),
            ("roles_claim", &config.roles_claim),
        ] {
            if value.is_empty() {
                return Err(JwtSetupError::Config {
                    field,
                    why: "is empty".into(),
                });
            }
        }
        if config.refresh < super::jwks::MIN_FETCH_INTERVAL {
            return Err(JwtSetupError::Config {
                field: "refresh",
                why: "is shorter than 30s".into(),
            });
        }
        let source = JwksSource::parse(&config.jwks)
            .map_err(|why| JwtSetupError::Config { field: "jwks", why })?;
        let keys = JwksCache::start(
            source,
            config.algorithms.algorithms(),
            config.refresh,
            config.max_stale,
            clock,
        )
        .await
        .map_err(JwtSetupError::Keys)?;
        Ok(Self {
            issuer: config.issuer.as_str().into(),
            config,
            keys,
        })
    }

    /// Who the token says its holder is, if its issuer signed it for us and
    /// it is valid at `now`.
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, AuthnError> {
        if token.len() > super::MAX_TOKEN_LEN {
            return Err(malformed("the token is too long"));
        }
        let (alg, kid) = header(token)?;
        let alg = Algorithm::from_str(&alg)
            .ok()
            .filter(|a| self.config.algorithms.algorithms().contains(a))
            .ok_or_else(|| AuthnError::AlgorithmNotAllowed {
                alg: printable_id(&alg),
            })?;
        let key = self.keys.key_for(kid.as_deref(), alg).await?;
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| {
                if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) {
                    AuthnError::BadSignature
                } else {
                    malformed("the token does not decode")
                }
            })?
            .claims;
        self.check(&claims, now)?;
        self.identity(&claims)
    }

    fn check(&self, claims: &Map<String, Value>, now: SystemTime) -> Result<(), AuthnError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(AuthnError::WrongIssuer);
        }
        let ours = |v: &Value| v.as_str() == Some(self.config.audience.as_str());
        let aud_ok = match claims.get("aud") {
            Some(Value::Array(items)) => items.iter().any(ours),
            Some(one) => ours(one),
            None => false,
        };
        if !aud_ok {
            return Err(AuthnError::WrongAudience);
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let leeway = self.config.leeway.as_secs_f64();
        // A token without `exp` would never end.
        let exp = time_claim(claims, "exp")?.ok_or(malformed("the token has no `exp`"))?;
        if now > exp + leeway {
            return Err(AuthnError::Expired);
        }
        if let Some(nbf) = time_claim(claims, "nbf")?
            && now + leeway < nbf
        {
            return Err(AuthnError::NotYetValid);
        }
        if !self.config.required_scopes.is_empty() {
            let granted = scopes(claims);
            if !self
                .config
                .required_scopes
                .iter()
                .all(|s| granted.contains(&s.as_str()))
            {
                return Err(AuthnError::InsufficientScope {
                    needed: self.config.required_scopes.join(" "),
                });
            }
        }
        Ok(())
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthnError> {
        let id = claim(claims, &self.config.principal_claim)
            .and_then(Value::as_str)
            .filter(|s| name_ok(s))
            .ok_or(malformed(
                "the token's principal claim is missing or not a name",
            ))?;
        let roles: Vec<Arc<str>> = match claim(claims, &self.config.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(Into::into).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().filter(|s| name_ok(s)).map(Into::into))
                .collect::<Option<_>>()
                .ok_or(malformed("the token's roles are not all names"))?,
            Some(Value::Bool(_) | Value::Number(_) | Value::Object(_)) => {
                return Err(malformed("the token's roles are not strings"));
            }
        };
        if roles.len() > MAX_ROLES || !roles.iter().all(|r| name_ok(r)) {
            return Err(malformed("the token's roles are too many or too long"));
        }
        let tenant = match &self.config.tenant_claim {
            None => None,
            Some(path) => match claim(claims, path) {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_str()
                        .filter(|s| name_ok(s))
                        .ok_or(malformed("the token's tenant claim is not a name"))?
                        .into(),
                ),
            },
        };
        let kind = match &self.config.service_claim {
            Some(path) if claim(claims, path).and_then(Value::as_bool) == Some(true) => {
                PrincipalKind::Service
            }
            Some(_) | None => PrincipalKind::User,
        };
        Ok(Identity {
            id: id.into(),
            kind,
            roles,
            tenant,
            credential: Credential::Jwt {
                issuer: self.issuer.clone(),
            },
            task: None,
        })
    }
}

fn malformed(why: &'static str) -> AuthnError {
    AuthnError::Malformed { why }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control)
}

/// The header's `alg` and `kid`, read by hand: jsonwebtoken refuses an
/// `alg` it does not know (such as `none`) with an error that does not say
/// which, and we want to report it.
fn header(token: &str) -> Result<(String, Option<String>), AuthnError> {
    let encoded = token
        .split('.')
        .next()
        .ok_or(malformed("the token is not a jwt"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| malformed("the token's header is not base64url"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| malformed("the token's header is not json"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(malformed("the token's header has no `alg`"))?
        .to_owned();
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("the token's `kid` is not a string")),
    };
    Ok((alg, kid))
}

/// A NumericDate claim (RFC 7519 §2), in seconds; an error if it is there
/// but not a number.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, AuthnError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|t| t.is_finite())
            .map(Some)
            .ok_or(malformed("a time claim of the token is not a number")),
    }
}

/// A claim by name, or by a dotted path into nested objects when no claim
/// has that exact name.
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut at = claims.get(parts.next()?)?;
    for part in parts {
        at = at.as_object()?.get(part)?;
    }
    Some(at)
}

/// The scopes granted: `scope` (space-separated, RFC 8693) and `scp`
/// (an array or a string, as some IdPs write it).
fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            Some(Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_)) | None => {}
        }
    }
    out
}
