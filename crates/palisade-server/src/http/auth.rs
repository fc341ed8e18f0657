//! Who is calling, on every HTTP request: the bearer credential checked,
//! the MCP authorization rules for a resource server (RFC 9728 metadata,
//! `401` with `WWW-Authenticate`, `403` for `insufficient_scope`), and a
//! session kept to the principal that opened it.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response as HttpResponse};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use palisade_core::{AuditEvent, Bounded, Principal};

use super::{Server, json_response};
use crate::access::AuthFailure;

/// The bearer credential of a request, if it carries one. A request with
/// two `Authorization` headers, or another scheme, is refused rather than
/// served as anonymous.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthFailure> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthFailure::invalid_request(
            "a request carries at most one Authorization header",
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| AuthFailure::invalid_request("the Authorization header is not ASCII"))?;
    // The scheme and the token's syntax are layer 1's to judge (RFC 6750).
    let credential = palisade_authz::authn::bearer_token(text.trim_end())
        .map_err(|e| AuthFailure::invalid_request(e.description()))?;
    Ok(Some(credential))
}

/// Authenticates a request: its bearer credential, or (where the operator
/// allows it, on loopback) none. A credential that is presented and fails is
/// refused, never downgraded to anonymous.
pub(super) async fn authenticate(
    server: &Server,
    headers: &HeaderMap,
) -> Result<Principal, HttpResponse> {
    let access = &server.gateway.access;
    let presented = bearer(headers);
    let kind = match &presented {
        Ok(None) => "none",
        Ok(Some(credential)) => credential_kind(credential),
        Err(_) => "unknown",
    };
    let outcome = match presented {
        Ok(credential) => access.authenticate(credential).await,
        Err(failure) => Err(failure),
    };
    match outcome {
        Ok(principal) => Ok(principal),
        Err(failure) => {
            let event = AuditEvent::AuthenticationFailed {
                time: server.gateway.pipeline.now(),
                transport: "http",
                credential: kind,
                code: failure.code,
                reason: Bounded::new(failure.description.as_str()),
            };
            if let Err(e) = server.gateway.pipeline.record(&event).await {
                tracing::error!("cannot record a failed authentication: {e}");
            }
            Err(challenge(server, &failure))
        }
    }
}

/// What kind of credential a bearer value looks like, for the audit record
/// (never the value).
fn credential_kind(credential: &str) -> &'static str {
    if credential.starts_with("pk_") {
        "api-key"
    } else if credential.starts_with("pt_") {
        "task-token"
    } else if credential.split('.').count() == 3 {
        "jwt"
    } else {
        "unknown"
    }
}

/// The answer to a request that did not authenticate: its status, the
/// challenge that tells an MCP client where to find the authorization
/// server, and a JSON-RPC error body.
pub(super) fn challenge(server: &Server, failure: &AuthFailure) -> HttpResponse {
    let status = failure.status;
    let mut response = super::guards::refuse(server, status, failure.description.clone());
    let metadata = server.gateway.access.metadata_url(&server.gateway.config);
    let mut value = format!("Bearer resource_metadata=\"{}\"", quoted(&metadata));
    if let Some(code) = failure.code {
        value.push_str(&format!(
            ", error=\"{code}\", error_description=\"{}\"",
            quoted(&failure.description)
        ));
    }
    if let Some(scope) = &failure.scope {
        value.push_str(&format!(", scope=\"{}\"", quoted(scope)));
    }
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// A quoted-string's content (RFC 9110): quotes and backslashes escaped,
/// control characters dropped.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            other => vec![other],
        })
        .collect()
}

/// A request on a session must come from the principal that opened it.
pub(super) fn same_principal(opened_by: &Principal, now: &Principal) -> Result<(), AuthFailure> {
    let (a, b) = (opened_by.identity(), now.identity());
    let same = a.id == b.id && a.kind == b.kind && a.tenant == b.tenant && {
        use palisade_core::Credential as C;
        // A refreshed JWT or a new key of the same principal may continue
        // the session; a task token is bound to itself.
        match (&a.credential, &b.credential) {
            (C::TaskToken { token: x }, C::TaskToken { token: y }) => x == y,
            (C::TaskToken { .. }, _) | (_, C::TaskToken { .. }) => false,
            (C::None, C::None) | (C::LocalUser, C::LocalUser) => true,
            (C::ApiKey { .. }, C::ApiKey { .. }) => true,
            (C::Jwt { issuer: x }, C::Jwt { issuer: y }) => x == y,
            (
                C::None | C::LocalUser | C::ApiKey { .. } | C::Jwt { .. },
                C::None | C::LocalUser | C::ApiKey { .. } | C::Jwt { .. },
            ) => false,
        }
    };
    if same {
        Ok(())
    } else {
        Err(AuthFailure::forbidden(
            "this session was opened by another principal",
        ))
    }
}

/// RFC 9728 protected-resource metadata, at
/// `/.well-known/oauth-protected-resource` and with the endpoint's path appended.
pub(super) async fn resource_metadata(State(server): State<Arc<Server>>) -> HttpResponse {
    let document = server
        .gateway
        .access
        .resource_metadata(&server.gateway.config);
    json_response(StatusCode::OK, document.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_bearer_credential_is_read() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let read = |values: &[&str]| {
            bearer(&with(values))
                .map(|c| c.map(str::to_owned))
                .map_err(|f| f.description)
        };
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&["Bearer pk_a_b"]), Ok(Some("pk_a_b".into())));
        assert_eq!(read(&["bearer  pk_a_b "]), Ok(Some("pk_a_b".into())));
        assert!(read(&["Basic dXNlcjpwYXNz"]).is_err());
        assert!(read(&["Bearer"]).is_err());
        assert!(read(&["Bearer "]).is_err());
        assert!(read(&["Bearer a", "Bearer b"]).is_err());
    }

    #[test]
    fn challenge_text_is_quoted() {
        assert_eq!(quoted("a\"b\\c\nd"), "a\\\"b\\\\cd");
    }

    #[test]
    fn a_session_stays_with_its_principal() {
        use palisade_core::{Credential, Identity, PrincipalKind};
        let p = |id: &str, credential: Credential| {
            Principal::from_identity(Identity {
                id: id.into(),
                kind: PrincipalKind::User,
                roles: vec![],
                tenant: None,
                credential,
                task: None,
            })
        };
        let key = |k: &str| Credential::ApiKey { key: k.into() };
        let token = |t: &str| Credential::TaskToken { token: t.into() };
        assert!(same_principal(&p("alice", key("1")), &p("alice", key("2"))).is_ok());
        assert!(same_principal(&p("alice", key("1")), &p("bob", key("1"))).is_err());
        assert!(same_principal(&p("alice", token("t")), &p("alice", token("t"))).is_ok());
        assert!(same_principal(&p("alice", token("t")), &p("alice", token("u"))).is_err());
        assert!(same_principal(&p("alice", token("t")), &p("alice", key("1"))).is_err());
        assert!(same_principal(&Principal::anonymous(), &p("alice", key("1"))).is_err());
    }
}
