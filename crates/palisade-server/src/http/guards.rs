//! What a request must pass before it reaches a session: the host it names,
//! its origin, its media types, its session id and protocol version; and the
//! JSON-RPC error it gets when it does not.

use std::sync::Arc;

use axum::response::Response as HttpResponse;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, StatusCode, Uri};
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

/// A request must name this gateway as its host: a loopback name or address,
/// or one of `server.allowed_hosts`. A page whose DNS name an attacker points
/// at 127.0.0.1 (DNS rebinding) is same-origin with palisade as far as the
/// browser knows, and its GETs carry no `Origin`; they do carry its name in
/// `Host`. Checked on every request, before routing.
pub(super) fn check_host(
    allowed: &[String],
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), Refused> {
    let mut hosts = headers.get_all(HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "a request needs exactly one Host header".into(),
        ));
    };
    // A request in absolute form names its host in the target as well; both must be ours.
    let target_ok = uri
        .authority()
        .is_none_or(|authority| host_allowed(allowed, authority.as_str()));
    let host_ok = host.to_str().is_ok_and(|host| host_allowed(allowed, host));
    if host_ok && target_ok {
        Ok(())
    } else {
        Err(Refused(
            StatusCode::MISDIRECTED_REQUEST,
            "this host is not served here: palisade answers to loopback names and `server.allowed_hosts` only".into(),
        ))
    }
}

/// Whether a `Host` value (`name[:port]`) names a loopback host or one of `allowed`.
fn host_allowed(allowed: &[String], value: &str) -> bool {
    // `[v6]` or `[v6]:port`; else `name` or `name:port`.
    let (name, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inner, "")) => (format!("[{inner}]"), ""),
            Some((inner, after)) => match after.strip_prefix(':') {
                Some(port) => (format!("[{inner}]"), port),
                None => return false,
            },
            None => return false,
        },
        None => match value.rsplit_once(':') {
            Some((name, port)) => (name.to_owned(), port),
            None => (value.to_owned(), ""),
        },
    };
    if name.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    let loopback = name == "localhost"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .and_then(|n| n.parse::<std::net::Ipv6Addr>().ok())
            .is_some_and(|ip| ip.is_loopback());
    loopback || allowed.contains(&name)
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
    fn a_request_must_name_one_host_of_ours() {
        let status = |pairs: &[(&'static str, &str)], uri: &str| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_str(v).unwrap());
            }
            check_host(&[], &h, &uri.parse().unwrap()).map_err(|refused| refused.0)
        };
        assert_eq!(status(&[("host", "127.0.0.1:8716")], "/healthz"), Ok(()));
        assert_eq!(
            status(&[("host", "evil.attacker.com:8716")], "/mcp"),
            Err(StatusCode::MISDIRECTED_REQUEST)
        );
        assert_eq!(status(&[], "/mcp"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            status(
                &[("host", "localhost"), ("host", "evil.attacker.com")],
                "/mcp"
            ),
            Err(StatusCode::BAD_REQUEST)
        );
        // The target's authority, in absolute form, must be ours as well.
        assert_eq!(
            status(&[("host", "localhost")], "http://evil.attacker.com/healthz"),
            Err(StatusCode::MISDIRECTED_REQUEST)
        );
        assert_eq!(
            status(&[("host", "localhost")], "http://[::1]:8716/mcp"),
            Ok(())
        );
        let mut opaque = HeaderMap::new();
        opaque.insert(HOST, HeaderValue::from_bytes(b"local\xffhost").unwrap());
        assert!(check_host(&[], &opaque, &"/mcp".parse().unwrap()).is_err());
    }

    #[test]
    fn only_loopback_and_listed_hosts_are_served() {
        let allowed = ["mcp.internal".to_owned(), "[fd00::1]".to_owned()];
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8716",
            "localhost",
            "LocalHost:8716",
            "[::1]",
            "[::1]:8716",
            "127.0.0.2:1",
            "mcp.internal:8716",
            "MCP.internal",
            "[fd00::1]:80",
            "localhost:",
        ] {
            assert!(host_allowed(&allowed, ok), "{ok}");
        }
        for refused in [
            "evil.attacker.com",
            "evil.attacker.com:8716",
            "localhost.evil.com",
            "127.0.0.1.evil.com:8716",
            "10.0.0.1:8716",
            "[::2]:8716",
            "[::1]x",
            "[::1",
            "::1",
            "localhost:87a",
            "localhost:8716:1",
            "",
            ":8716",
            "user@localhost",
            "mcp.internal.",
        ] {
            assert!(!host_allowed(&allowed, refused), "{refused}");
        }
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
