//! Authentication: who is connecting, proved by an API key, an OIDC/JWT bearer token or a task token.
//!
//! The server hands [`Authenticator::authenticate`] the bearer token of a
//! request (see [`bearer_token`]) and gets a [`Principal`] or an
//! [`AuthnError`]. The error says what went wrong in words safe to show the
//! client: no description ever holds the token or any part of it beyond the
//! public id of an API key. [`www_authenticate`] and
//! [`protected_resource_metadata`] build what RFC 6750 and RFC 9728 ask an
//! OAuth protected resource to answer.
//!
//! Which verifier sees a token is decided by its shape alone, before any
//! parsing: `pk_…` is an API key ([`ApiKeys`]), `pt_…` a task token (a
//! [`TaskTokens`] hook), three dot-separated parts a JWT ([`JwtVerifier`]).
//! A token of one kind is never tried as another.

mod api_keys;
mod jwks;
mod jwt;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;
use palisade_core::Principal;
use serde_json::{Value, json};

pub use api_keys::{ApiKeys, CreatedKey, KeyInfo, KeySpec};
pub use jwt::{AlgorithmFamilyName, JwtConfig, JwtSetupError, JwtVerifier};

/// The longest bearer token looked at. Real JWTs are a few KiB; anything
/// longer is refused before it is decoded.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a caller was not authenticated.
///
/// [`Display`](fmt::Display) is for logs and audit; [`AuthnError::description`]
/// is what the client is told. Neither holds a token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// No credential at all.
    #[error("no credential was presented")]
    Missing,
    /// An `Authorization` header that is not `Bearer TOKEN`.
    #[error("the authorization header is not `Bearer` followed by a token")]
    NotBearer,
    /// A token of no known shape, or one that does not parse.
    #[error("malformed credential: {why}")]
    Malformed { why: &'static str },
    /// An API key id, or a JWT `kid`, that names no known key.
    #[error("unknown key `{id}`")]
    UnknownKey { id: String },
    #[error("the key `{id}` was revoked")]
    Revoked { id: String },
    #[error("the credential has expired")]
    Expired,
    #[error("the credential is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is not meant for this resource")]
    WrongAudience,
    /// A JWT signature, or an API key's secret, that does not match.
    #[error("the credential's signature or secret does not match")]
    BadSignature,
    /// A JWT whose header `alg` is outside the configured family.
    #[error("the algorithm `{alg}` is not accepted")]
    AlgorithmNotAllowed { alg: String },
    /// A valid token without the scopes this resource requires.
    #[error("the token lacks the scope `{needed}`")]
    InsufficientScope { needed: String },
    /// The identity provider's keys cannot be had (JWKS); fail closed.
    #[error("the identity provider's keys are unavailable: {why}")]
    KeysUnavailable { why: String },
    /// The state store holding API keys cannot be read; fail closed.
    #[error("the key store is unavailable: {why}")]
    StoreUnavailable { why: String },
    /// A task token that does not verify: its own error, which names the
    /// failing check and never the token.
    #[error("task token refused: {why}")]
    TaskToken { why: String },
}

impl AuthnError {
    /// The RFC 6750 `error` code. None for a request with no credential
    /// (RFC 6750 §3.1: the server should then not say an error) and for
    /// failures of the gateway itself, which no RFC 6750 code describes.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthnError::Missing | AuthnError::KeysUnavailable { .. } => None,
            AuthnError::StoreUnavailable { .. } => None,
            AuthnError::NotBearer => Some("invalid_request"),
            AuthnError::Malformed { .. }
            | AuthnError::UnknownKey { .. }
            | AuthnError::Revoked { .. }
            | AuthnError::Expired
            | AuthnError::NotYetValid
            | AuthnError::WrongIssuer
            | AuthnError::WrongAudience
            | AuthnError::BadSignature
            | AuthnError::AlgorithmNotAllowed { .. }
            | AuthnError::TaskToken { .. } => Some("invalid_token"),
            AuthnError::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthnError::NotBearer => StatusCode::BAD_REQUEST,
            AuthnError::Missing
            | AuthnError::Malformed { .. }
            | AuthnError::UnknownKey { .. }
            | AuthnError::Revoked { .. }
            | AuthnError::Expired
            | AuthnError::NotYetValid
            | AuthnError::WrongIssuer
            | AuthnError::WrongAudience
            | AuthnError::BadSignature
            | AuthnError::AlgorithmNotAllowed { .. }
            | AuthnError::TaskToken { .. } => StatusCode::UNAUTHORIZED,
            AuthnError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthnError::KeysUnavailable { .. } | AuthnError::StoreUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// What the client is told: the message without the gateway's internals
    /// (which file, which database error).
    pub fn description(&self) -> String {
        match self {
            AuthnError::KeysUnavailable { .. } => {
                "the identity provider's keys are unavailable".to_owned()
            }
            AuthnError::StoreUnavailable { .. } => "the key store is unavailable".to_owned(),
            AuthnError::Missing
            | AuthnError::NotBearer
            | AuthnError::Malformed { .. }
            | AuthnError::UnknownKey { .. }
            | AuthnError::Revoked { .. }
            | AuthnError::Expired
            | AuthnError::NotYetValid
            | AuthnError::WrongIssuer
            | AuthnError::WrongAudience
            | AuthnError::BadSignature
            | AuthnError::AlgorithmNotAllowed { .. }
            | AuthnError::TaskToken { .. }
            | AuthnError::InsufficientScope { .. } => self.to_string(),
        }
    }
}

/// `text` if it is a short run of id characters, else a placeholder: for
/// ids that come from the caller (a JWT `kid`, an `alg`) and end up in
/// messages and logs.
pub(crate) fn printable_id(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    if !text.is_empty() && text.len() <= 64 && text.chars().all(plain) {
        text.to_owned()
    } else {
        "(unprintable)".to_owned()
    }
}

/// Verifies task tokens (`pt_…`); written beside the Biscuit tokens.
pub trait TaskTokens: Send + Sync + fmt::Debug {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        now: SystemTime,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, AuthnError>> + Send + 'a>>;
}

/// Every way this gateway accepts a caller, chosen by the token's shape.
#[derive(Debug, Default)]
pub struct Authenticator {
    pub api_keys: Option<ApiKeys>,
    pub jwt: Option<JwtVerifier>,
    pub task_tokens: Option<Arc<dyn TaskTokens>>,
}

impl Authenticator {
    /// Who presented `bearer` (the token, without the `Bearer ` scheme).
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        now: SystemTime,
    ) -> Result<Principal, AuthnError> {
        let token = bearer.ok_or(AuthnError::Missing)?;
        if token.is_empty() {
            return Err(AuthnError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthnError::Malformed {
                why: "the credential is too long",
            });
        }
        if token.starts_with(api_keys::PREFIX) {
            let keys = self.api_keys.as_ref().ok_or(AuthnError::Malformed {
                why: "api keys are not accepted here",
            })?;
            return keys.verify(token, now).await.map(Principal::from_identity);
        }
        if token.starts_with("pt_") {
            let tasks = self.task_tokens.as_ref().ok_or(AuthnError::Malformed {
                why: "task tokens are not accepted here",
            })?;
            return tasks.verify(token, now).await;
        }
        if token.split('.').count() == 3 {
            let jwt = self.jwt.as_ref().ok_or(AuthnError::Malformed {
                why: "jwt bearer tokens are not accepted here",
            })?;
            return jwt.verify(token, now).await.map(Principal::from_identity);
        }
        Err(AuthnError::Malformed {
            why: "the credential is not an api key, a task token or a jwt",
        })
    }
}

/// The token of an `Authorization` header value: `Bearer TOKEN`, the scheme
/// in any case (RFC 9110 §11.1), the token in RFC 6750's `b64token` syntax.
pub fn bearer_token(header: &str) -> Result<&str, AuthnError> {
    let (scheme, token) = header.split_once(' ').ok_or(AuthnError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthnError::NotBearer);
    }
    let token = token.trim_start_matches(' ');
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.is_empty() || !token.chars().all(b64token) {
        return Err(AuthnError::NotBearer);
    }
    Ok(token)
}

/// The `WWW-Authenticate` value for a refusal (RFC 6750 §3, RFC 9728 §5.1).
pub fn www_authenticate(resource_metadata_url: &str, error: &AuthnError) -> String {
    let mut value = format!(
        "Bearer resource_metadata=\"{}\"",
        quoted(resource_metadata_url)
    );
    if let Some(code) = error.error_code() {
        value.push_str(&format!(
            ", error=\"{code}\", error_description=\"{}\"",
            description_chars(&error.description())
        ));
    }
    if let AuthnError::InsufficientScope { needed } = error {
        value.push_str(&format!(", scope=\"{}\"", description_chars(needed)));
    }
    value
}

/// The inside of an RFC 9110 quoted-string: `"` and `\` escaped, controls dropped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c == '\t' || (' '..='~').contains(&c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// RFC 6750 §3 allows only %x20-21 / %x23-5B / %x5D-7E in `error_description`
/// and `scope`: no quote, no backslash, nothing outside printable ASCII.
fn description_chars(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .collect()
}

/// The RFC 9728 protected-resource metadata document, served at
/// `/.well-known/oauth-protected-resource`.
pub fn protected_resource_metadata(
    resource: &str,
    authorization_servers: &[String],
    scopes_supported: &[String],
) -> Value {
    let mut doc = json!({
        "resource": resource,
        "authorization_servers": authorization_servers,
        "bearer_methods_supported": ["header"],
    });
    if !scopes_supported.is_empty()
        && let Some(map) = doc.as_object_mut()
    {
        map.insert("scopes_supported".into(), json!(scopes_supported));
    }
    doc
}

#[cfg(test)]
mod jwt_tests;
#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        let check = |header: &str, expected: Result<&str, AuthnError>| {
            assert_eq!(bearer_token(header), expected, "{header:?}");
        };
        check("Bearer abc.def-_~+/=", Ok("abc.def-_~+/="));
        check("bearer pk_x", Ok("pk_x"));
        check("BEARER  pk_x", Ok("pk_x"));
        check("Basic dXNlcjpwYXNz", Err(AuthnError::NotBearer));
        check("Bearer", Err(AuthnError::NotBearer));
        check("Bearer ", Err(AuthnError::NotBearer));
        check("Bearer a b", Err(AuthnError::NotBearer));
        check("Bearer a\"b", Err(AuthnError::NotBearer));
        check("Bearer é", Err(AuthnError::NotBearer));
    }

    #[test]
    fn every_error_has_a_status_and_a_code_that_agree() {
        let all = [
            AuthnError::Missing,
            AuthnError::NotBearer,
            AuthnError::Malformed { why: "x" },
            AuthnError::UnknownKey { id: "k".into() },
            AuthnError::Revoked { id: "k".into() },
            AuthnError::Expired,
            AuthnError::NotYetValid,
            AuthnError::WrongIssuer,
            AuthnError::WrongAudience,
            AuthnError::BadSignature,
            AuthnError::AlgorithmNotAllowed { alg: "none".into() },
            AuthnError::InsufficientScope {
                needed: "mcp".into(),
            },
            AuthnError::KeysUnavailable {
                why: "/etc/idp/jwks.json".into(),
            },
            AuthnError::StoreUnavailable {
                why: "postgres://u:p@db".into(),
            },
        ];
        for e in &all {
            let (status, code) = (e.status().as_u16(), e.error_code());
            match code {
                Some("invalid_token") => assert_eq!(status, 401, "{e:?}"),
                Some("invalid_request") => assert_eq!(status, 400, "{e:?}"),
                Some("insufficient_scope") => assert_eq!(status, 403, "{e:?}"),
                None => assert!(status == 401 || status == 503, "{e:?}"),
                Some(other) => panic!("unexpected code {other}"),
            }
            // Internals of the gateway are not for the client.
            assert!(!e.description().contains("/etc"), "{e:?}");
            assert!(!e.description().contains("postgres"), "{e:?}");
        }
    }

    #[test]
    fn www_authenticate_quotes_and_omits_what_it_must() {
        let url = "https://gw.example/.well-known/oauth-protected-resource";
        assert_eq!(
            www_authenticate(url, &AuthnError::Missing),
            format!("Bearer resource_metadata=\"{url}\"")
        );
        assert_eq!(
            www_authenticate(url, &AuthnError::Expired),
            format!(
                "Bearer resource_metadata=\"{url}\", error=\"invalid_token\", error_description=\"the credential has expired\""
            )
        );
        let scope = www_authenticate(
            url,
            &AuthnError::InsufficientScope {
                needed: "mcp:tools".into(),
            },
        );
        assert!(scope.ends_with(", scope=\"mcp:tools\""), "{scope}");
        assert!(scope.contains("error=\"insufficient_scope\""), "{scope}");
        // A quote in the URL is escaped; one in a description is replaced,
        // as RFC 6750 forbids it there; nothing can end the quoted string.
        let odd = www_authenticate(
            "https://x/\"a\\",
            &AuthnError::UnknownKey {
                id: "a\"b\\c\né".into(),
            },
        );
        assert!(
            odd.starts_with("Bearer resource_metadata=\"https://x/\\\"a\\\\\""),
            "{odd}"
        );
        assert!(
            odd.ends_with("error_description=\"unknown key `a'b'c??`\""),
            "{odd}"
        );
    }

    #[test]
    fn resource_metadata_document() {
        let doc = protected_resource_metadata(
            "https://gw.example/mcp",
            &["https://idp.example".to_owned()],
            &["mcp".to_owned()],
        );
        assert_eq!(doc["resource"], "https://gw.example/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://idp.example");
        assert_eq!(doc["scopes_supported"][0], "mcp");
        assert_eq!(doc["bearer_methods_supported"][0], "header");
        let bare = protected_resource_metadata("https://gw.example/mcp", &[], &[]);
        assert!(bare.get("scopes_supported").is_none());
    }

    #[test]
    fn printable_ids_only() {
        assert_eq!(printable_id("key-1_A.b:c"), "key-1_A.b:c");
        assert_eq!(printable_id(""), "(unprintable)");
        assert_eq!(printable_id("a\"b"), "(unprintable)");
        assert_eq!(printable_id(&"a".repeat(65)), "(unprintable)");
    }

    #[derive(Debug)]
    struct FixedTask;

    impl TaskTokens for FixedTask {
        fn verify<'a>(
            &'a self,
            token: &'a str,
            _now: SystemTime,
        ) -> Pin<Box<dyn Future<Output = Result<Principal, AuthnError>> + Send + 'a>> {
            Box::pin(async move {
                if token == "pt_good" {
                    Ok(Principal::new("task-holder"))
                } else {
                    Err(AuthnError::BadSignature)
                }
            })
        }
    }

    #[tokio::test]
    async fn task_tokens_go_to_their_hook() {
        let auth = Authenticator {
            task_tokens: Some(Arc::new(FixedTask)),
            ..Authenticator::default()
        };
        let now = SystemTime::UNIX_EPOCH;
        let who = auth.authenticate(Some("pt_good"), now).await.unwrap();
        assert_eq!(who.as_str(), "task-holder");
        assert_eq!(
            auth.authenticate(Some("pt_bad"), now).await.unwrap_err(),
            AuthnError::BadSignature
        );
        // A JWT-shaped token is not offered to the task-token hook.
        assert!(matches!(
            auth.authenticate(Some("a.b.c"), now).await.unwrap_err(),
            AuthnError::Malformed { .. }
        ));
    }

    #[tokio::test]
    async fn api_keys_through_the_authenticator() {
        let keys = ApiKeys::new(testing::TempSqlite::new().await);
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10);
        let created = keys
            .create(
                KeySpec {
                    principal: "ci".into(),
                    kind: palisade_core::PrincipalKind::Service,
                    roles: vec!["deploy".into()],
                    tenant: None,
                    expires_in: None,
                },
                now,
            )
            .await
            .unwrap();
        let auth = Authenticator {
            api_keys: Some(keys),
            ..Authenticator::default()
        };
        let who = auth.authenticate(Some(created.token()), now).await.unwrap();
        assert_eq!(who.as_str(), "ci");
        assert_eq!(who.kind(), palisade_core::PrincipalKind::Service);
        assert_eq!(who.credential().method(), "api-key");
    }

    #[tokio::test]
    async fn tokens_are_routed_by_shape() {
        let auth = Authenticator::default();
        let now = SystemTime::UNIX_EPOCH;
        let check = |bearer: Option<&'static str>, expected: AuthnError| {
            let auth = &auth;
            async move {
                assert_eq!(
                    auth.authenticate(bearer, now).await.unwrap_err(),
                    expected,
                    "{bearer:?}"
                );
            }
        };
        check(None, AuthnError::Missing).await;
        check(Some(""), AuthnError::Missing).await;
        check(
            Some("pk_abc"),
            AuthnError::Malformed {
                why: "api keys are not accepted here",
            },
        )
        .await;
        check(
            Some("pt_abc"),
            AuthnError::Malformed {
                why: "task tokens are not accepted here",
            },
        )
        .await;
        check(
            Some("a.b.c"),
            AuthnError::Malformed {
                why: "jwt bearer tokens are not accepted here",
            },
        )
        .await;
        check(
            Some("a.b"),
            AuthnError::Malformed {
                why: "the credential is not an api key, a task token or a jwt",
            },
        )
        .await;
        let huge: &'static str = Box::leak("pk_".repeat(10_000).into_boxed_str());
        check(
            Some(huge),
            AuthnError::Malformed {
                why: "the credential is too long",
            },
        )
        .await;
    }
}
