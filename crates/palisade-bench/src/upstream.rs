//! The fast upstream's MCP behaviour: initialize, ping, and one `echo` tool.
//!
//! It answers from a single function with no state beyond the message, so
//! both transports in `fast-upstream` share it and spend almost nothing per
//! call.

use palisade_mcp::jsonrpc::{INVALID_PARAMS, METHOD_NOT_FOUND};
use palisade_mcp::protocol::{self, method};
use palisade_mcp::{ErrorObject, Message, Request, Response};
use serde_json::{Value, json};

/// The name `fast-upstream` gives itself in `serverInfo`.
pub const SERVER_NAME: &str = "palisade-bench-fast-upstream";

/// The reply to one message: a response for a request, nothing for a
/// notification or a response.
pub fn answer(message: Message) -> Option<Message> {
    match message {
        Message::Request(request) => Some(Message::Response(answer_request(request))),
        Message::Notification(_) | Message::Response(_) => None,
    }
}

fn answer_request(request: Request) -> Response {
    let Request { id, method, params } = request;
    let outcome = match method.as_str() {
        method::INITIALIZE => Ok(initialize(params.as_ref())),
        method::PING => Ok(json!({})),
        method::TOOLS_LIST => Ok(json!({ "tools": [echo_tool()] })),
        method::TOOLS_CALL => call_tool(params.as_ref()),
        other => Err(ErrorObject::new(
            METHOD_NOT_FOUND,
            format!("method `{other}` is not offered by {SERVER_NAME}"),
        )),
    };
    Response {
        id: Some(id),
        outcome,
    }
}

fn initialize(params: Option<&Value>) -> Value {
    let requested = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str);
    json!({
        "protocolVersion": protocol::negotiate(requested),
        "capabilities": { "tools": {} },
        "serverInfo": { "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION") },
    })
}

fn echo_tool() -> Value {
    json!({
        "name": "echo",
        "description": "Echoes back the input string",
        "inputSchema": {
            "type": "object",
            "properties": { "message": { "type": "string", "description": "Message to echo" } },
            "required": ["message"],
        },
    })
}

fn call_tool(params: Option<&Value>) -> Result<Value, ErrorObject> {
    let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
    match name {
        Some("echo") => {}
        Some(other) => {
            return Err(ErrorObject::new(
                INVALID_PARAMS,
                format!("unknown tool `{other}`"),
            ));
        }
        None => return Err(ErrorObject::new(INVALID_PARAMS, "`name` must be a string")),
    }
    let message = params
        .and_then(|p| p.get("arguments"))
        .and_then(|a| a.get("message"))
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorObject::new(INVALID_PARAMS, "`arguments.message` must be a string"))?;
    Ok(json!({ "content": [{ "type": "text", "text": format!("Echo: {message}") }] }))
}

/// Whether a message is an `initialize` request, which opens an HTTP session.
pub fn is_initialize(message: &Message) -> bool {
    matches!(message, Message::Request(r) if r.method == method::INITIALIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(request: Value) -> Value {
        let message = Message::parse(request.to_string().as_bytes()).unwrap();
        let reply = answer(message).unwrap();
        serde_json::from_slice(&reply.to_bytes()).unwrap()
    }

    #[test]
    fn initialize_negotiates_the_revision() {
        let check = |asked: Value, expected: &str| {
            let r = reply(
                json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":asked,"capabilities":{}}}),
            );
            assert_eq!(r["result"]["protocolVersion"], expected, "asked {asked}");
            assert_eq!(r["result"]["capabilities"], json!({"tools":{}}));
        };
        check(json!("2025-06-18"), "2025-06-18");
        check(json!("2025-11-25"), "2025-11-25");
        check(json!("2024-11-05"), "2025-11-25");
        check(json!(null), "2025-11-25");
    }

    #[test]
    fn lists_and_calls_echo() {
        let list = reply(json!({"jsonrpc":"2.0","id":"l","method":"tools/list"}));
        assert_eq!(list["result"]["tools"][0]["name"], "echo");
        assert_eq!(
            list["result"]["tools"][0]["inputSchema"]["required"],
            json!(["message"])
        );
        let call = reply(
            json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}),
        );
        assert_eq!(
            call,
            json!({"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"Echo: hi"}]}})
        );
    }

    #[test]
    fn refuses_what_it_does_not_offer() {
        let check = |request: Value, code: i64| {
            let r = reply(request.clone());
            assert_eq!(r["error"]["code"], code, "{request}");
        };
        check(
            json!({"jsonrpc":"2.0","id":1,"method":"resources/list"}),
            METHOD_NOT_FOUND,
        );
        check(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{}}}),
            INVALID_PARAMS,
        );
        check(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}),
            INVALID_PARAMS,
        );
        check(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}),
            INVALID_PARAMS,
        );
    }

    #[test]
    fn notifications_get_no_reply() {
        let m =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(answer(m).is_none());
    }

    #[test]
    fn ping_answers_an_empty_result() {
        assert_eq!(
            reply(json!({"jsonrpc":"2.0","id":9,"method":"ping"}))["result"],
            json!({})
        );
    }
}
