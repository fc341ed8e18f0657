//! The load generator: an MCP client that opens a session and times `tools/call`.
//!
//! Both transports share the messages built and checked here: a call counts
//! as successful only if its response carries the request's id, a result, and
//! no `isError`.

pub mod http;
pub mod stdio;

use std::time::Duration;

use palisade_mcp::framing::FrameError;
use palisade_mcp::protocol::{LATEST_VERSION, method};
use palisade_mcp::sse::SseError;
use palisade_mcp::{ErrorObject, Message, Notification, ParseError, Request, RequestId};
use serde_json::{Value, json};

use crate::stats::Summary;

/// The largest reply accepted, in bytes: far above an echo, far below harm.
pub const REPLY_LIMIT: usize = 4 * 1024 * 1024;

/// What a run measured, and the first error it met (the rest are only counted).
#[derive(Debug)]
pub struct Report {
    pub summary: Summary,
    pub first_error: Option<LoadError>,
}

/// The raw measurements of a batch of calls, before they are summarised.
#[derive(Debug, Default)]
struct Outcome {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<LoadError>,
}

impl Outcome {
    fn record(&mut self, result: Result<Duration, LoadError>) {
        match result {
            Ok(latency) => self
                .latencies_ns
                .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)),
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies_ns.extend(other.latencies_ns);
        self.errors += other.errors;
        if let Some(error) = other.first_error {
            self.first_error.get_or_insert(error);
        }
    }

    fn report(self, elapsed: Duration) -> Report {
        Report {
            summary: Summary::new(self.latencies_ns, self.errors, elapsed),
            first_error: self.first_error,
        }
    }
}

/// What a run does: which tool it calls (always with `{"message": "hello"}`), and how often.
#[derive(Debug, Clone)]
pub struct CallPlan {
    /// The tool's name as the peer lists it (`fast__echo` through a gateway
    /// that prefixes tools with their upstream's name).
    pub tool: String,
    /// Calls measured after the warm-up.
    pub calls: u64,
    /// Calls made first and not measured: connections, caches and JITs settle.
    pub warmup: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected content type `{0}`")]
    ContentType(String),
    #[error("reply is not JSON-RPC: {0}")]
    Parse(#[from] ParseError),
    #[error("event stream: {0}")]
    Sse(#[from] SseError),
    #[error("stdio: {0}")]
    Frame(#[from] FrameError),
    #[error("stdio: {0}")]
    Io(#[from] std::io::Error),
    #[error("error response {}: {}", .0.code, .0.message)]
    Rpc(ErrorObject),
    #[error("the tool reported an error: {0}")]
    Tool(String),
    #[error("the peer closed before answering request {0}")]
    NoReply(RequestId),
    #[error("expected the response to request {expected}, got {got}")]
    Unexpected { expected: RequestId, got: String },
    #[error("initialize result has no string `protocolVersion`")]
    NoVersion,
    #[error("a worker stopped: {0}")]
    Worker(String),
}

pub fn initialize_request(id: RequestId) -> Message {
    Message::Request(Request {
        id,
        method: method::INITIALIZE.to_owned(),
        params: Some(json!({
            "protocolVersion": LATEST_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "palisade-bench-mcp-load", "version": env!("CARGO_PKG_VERSION") },
        })),
    })
}

pub fn initialized_notification() -> Message {
    Message::Notification(Notification {
        method: method::INITIALIZED.to_owned(),
        params: None,
    })
}

pub fn call_request(id: RequestId, tool: &str) -> Message {
    Message::Request(Request {
        id,
        method: method::TOOLS_CALL.to_owned(),
        params: Some(json!({ "name": tool, "arguments": { "message": "hello" } })),
    })
}

/// The result of the response to request `id`, or why there is none.
pub fn result_of(reply: Message, id: &RequestId) -> Result<Value, LoadError> {
    match reply {
        Message::Response(response) if response.id.as_ref() == Some(id) => {
            response.outcome.map_err(LoadError::Rpc)
        }
        Message::Response(response) if response.id.is_none() => match response.outcome {
            Err(error) => Err(LoadError::Rpc(error)),
            Ok(_) => Err(unexpected(id, "a result without an id".to_owned())),
        },
        other @ (Message::Request(_) | Message::Notification(_) | Message::Response(_)) => Err(
            unexpected(id, String::from_utf8_lossy(&other.to_bytes()).into_owned()),
        ),
    }
}

/// The negotiated revision in an `initialize` result.
pub fn negotiated_version(result: &Value) -> Result<String, LoadError> {
    result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(LoadError::NoVersion)
}

/// A `tools/call` result that the tool marked as failed is an error too.
pub fn check_call_result(result: &Value) -> Result<(), LoadError> {
    if result.get("isError") == Some(&Value::Bool(true)) {
        let text = result
            .pointer("/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or("(no text)");
        return Err(LoadError::Tool(text.to_owned()));
    }
    Ok(())
}

/// The client's answer to a request the server sent it while a call was in
/// flight: `ping` is answered, anything else is refused.
pub fn answer_server_request(request: &Request) -> Message {
    let outcome = if request.method == method::PING {
        Ok(json!({}))
    } else {
        Err(ErrorObject::new(
            palisade_mcp::jsonrpc::METHOD_NOT_FOUND,
            format!("mcp-load does not offer `{}`", request.method),
        ))
    };
    Message::Response(palisade_mcp::Response {
        id: Some(request.id.clone()),
        outcome,
    })
}

fn unexpected(expected: &RequestId, got: String) -> LoadError {
    let mut got = got;
    got.truncate(200);
    LoadError::Unexpected {
        expected: expected.clone(),
        got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Message {
        Message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn only_the_matching_response_is_a_result() {
        let id = RequestId::from(7);
        let check = |reply: &str, ok: bool| {
            assert_eq!(result_of(parse(reply), &id).is_ok(), ok, "{reply}");
        };
        check(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#, true);
        check(r#"{"jsonrpc":"2.0","id":8,"result":{}}"#, false);
        check(r#"{"jsonrpc":"2.0","id":"7","result":{}}"#, false);
        check(
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"no"}}"#,
            false,
        );
        check(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#,
            false,
        );
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/message"}"#,
            false,
        );
    }

    #[test]
    fn a_tool_error_is_an_error() {
        assert!(
            check_call_result(&json!({"content":[{"type":"text","text":"Echo: hello"}]})).is_ok()
        );
        let err =
            check_call_result(&json!({"content":[{"type":"text","text":"denied"}],"isError":true}))
                .unwrap_err();
        assert_eq!(err.to_string(), "the tool reported an error: denied");
    }

    #[test]
    fn answers_ping_and_refuses_the_rest() {
        let ping = Request {
            id: 1.into(),
            method: "ping".into(),
            params: None,
        };
        let roots = Request {
            id: 2.into(),
            method: "roots/list".into(),
            params: None,
        };
        let Message::Response(r) = answer_server_request(&ping) else {
            panic!()
        };
        assert_eq!(r.outcome, Ok(json!({})));
        let Message::Response(r) = answer_server_request(&roots) else {
            panic!()
        };
        assert!(r.outcome.is_err());
    }
}
