//! What a request must pass before it reaches a session: its origin, its
//! media types, its session id and protocol version; and the JSON-RPC error
//! it gets when it does not.

use std::sync::Arc;

use axum::response::Response as HttpResponse;
use http::header::{ACCEPT, CONTENT_TYPE, ORIGIN};
use http::{HeaderMap, StatusCode};
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_REQUEST};
use palisade_mcp::protocol::{self, header};
use palisade_mcp::{Message, RequestId, Response};

use super::{Entry, Server, message_response};
use crate::upstream::lock;

/// An HTTP error carrying a JSON-RPC error about no particular request.
pub(super) fn refuse(
    server: &Server,
    status: StatusCode,
    message: impl Into<String>,
) -> HttpResponse {
    rpc_error(server, status, None, INVALID_REQUEST, message)
}

pub(super) fn rpc_error(
    server: &Server,
    status: StatusCode,
    id: Option<RequestId>,
    code: i64,
    message: impl Into<String>,
) -> HttpResponse {
    let message = Message::Response(Response::error(id, ErrorObject::new(code, message)));
    message_response(status, &server.gateway.seam().apply(message))
}

/// Why a request was turned away before reaching a session.
pub(super) struct Refused(StatusCode, String);

impl Refused {
    pub(super) fn respond(self, server: &Server) -> HttpResponse {
        refuse(server, self.0, self.1)
    }
}

/// Browsers send `Origin`; a page from an unlisted origin must not drive
/// local tools (DNS rebinding). Non-browser clients send none and pass.
pub(super) fn check_origin(server: &Server, headers: &HeaderMap) -> Result<(), Refused> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|origin| origin_allowed(server, origin));
    if allowed {
        Ok(())
    } else {
        Err(Refused(StatusCode::FORBIDDEN, "origin not allowed".into()))
    }
}

fn origin_allowed(server: &Server, origin: &str) -> bool {
    server
        .gateway
        .config
        .server
        .allowed_origins
        .iter()
        .any(|allowed| {
            origin == allowed
                || origin
                    .strip_prefix(allowed.as_str())
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|port| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    })
        })
}

/// A POST body must be declared JSON.
pub(super) fn check_content_type(headers: &HeaderMap) -> Result<(), Refused> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if is_json {
        Ok(())
    } else {
        Err(Refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json".into(),
        ))
    }
}

pub(super) fn accepts(headers: &HeaderMap, kind: &str) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|part| {
        let media = part.split(';').next().unwrap_or_default().trim();
        media == kind || media == "*/*"
    })
}

pub(super) fn session_of(server: &Server, headers: &HeaderMap) -> Result<Arc<Entry>, Refused> {
    let Some(id) = headers
        .get(header::SESSION_ID)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "missing Mcp-Session-Id header: send `initialize` first".into(),
        ));
    };
    let Some(entry) = lock(&server.sessions).get(id).cloned() else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            "unknown or expired session: initialize a new one".into(),
        ));
    };
    if let Some(version) = headers.get(header::PROTOCOL_VERSION) {
        let version = version.to_str().unwrap_or_default();
        if !protocol::is_supported(version) {
            return Err(Refused(
                StatusCode::BAD_REQUEST,
                format!("unsupported MCP-Protocol-Version `{version}`"),
            ));
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accept_header_parsing() {
        assert!(accepts(&headers(&[]), "application/json"));
        assert!(accepts(
            &headers(&[("accept", "application/json, text/event-stream")]),
            "text/event-stream"
        ));
        assert!(accepts(
            &headers(&[("accept", "text/event-stream;q=0.9")]),
            "text/event-stream"
        ));
        assert!(accepts(&headers(&[("accept", "*/*")]), "application/json"));
        assert!(!accepts(
            &headers(&[("accept", "text/html")]),
            "application/json"
        ));
    }
}
