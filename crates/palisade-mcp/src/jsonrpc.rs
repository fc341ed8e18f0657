//! JSON-RPC 2.0 messages as MCP uses them.
//!
//! MCP narrows JSON-RPC: request ids are strings or integers (never null,
//! fractional or structured), and the revisions palisade speaks
//! (2025-06-18, 2025-11-25) have no batches. Parameters and results stay
//! `serde_json::Value`, so whatever the gateway does not look at passes
//! through unchanged.

use std::fmt;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// A request id: a string or an integer, kept exactly as the peer wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestId {
    Number(serde_json::Number),
    String(String),
}

impl RequestId {
    /// Reads an id as MCP allows it: a string or an integer.
    pub fn from_value(value: Value) -> Result<Self, &'static str> {
        match value {
            Value::String(s) => Ok(RequestId::String(s)),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(RequestId::Number(n)),
            Value::Number(_) => Err("`id` must be a string or an integer, not a fraction"),
            Value::Null => Err("`id` must be a string or an integer, not null"),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                Err("`id` must be a string or an integer")
            }
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            RequestId::Number(n) => Value::Number(n.clone()),
            RequestId::String(s) => Value::String(s.clone()),
        }
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        RequestId::Number(n.into())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestId::Number(n) => n.serialize(s),
            RequestId::String(v) => v.serialize(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub method: String,
    pub params: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Option<Value>,
}

/// A response: a result or an error. `id` is `None` only for errors about a
/// message whose id could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: Option<RequestId>,
    pub outcome: Result<Value, ErrorObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request(Request),
    Notification(Notification),
    Response(Response),
}

/// Why bytes are not a JSON-RPC message, with the id when one could be read,
/// so the error response can still be correlated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub code: i64,
    pub message: String,
    pub id: Option<RequestId>,
}

impl ParseError {
    fn invalid(message: impl Into<String>, id: Option<RequestId>) -> Self {
        Self {
            code: INVALID_REQUEST,
            message: message.into(),
            id,
        }
    }

    /// The error response to send back for this parse failure.
    pub fn to_response(&self) -> Response {
        Response {
            id: self.id.clone(),
            outcome: Err(ErrorObject::new(self.code, self.message.clone())),
        }
    }
}

impl Message {
    /// Parses one message. A JSON array (a batch) is refused: the revisions
    /// palisade speaks removed batching.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ParseError {
            code: PARSE_ERROR,
            message: format!("not valid JSON: {e}"),
            id: None,
        })?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, ParseError> {
        let mut object = match value {
            Value::Object(object) => object,
            Value::Array(_) => {
                return Err(ParseError::invalid(
                    "JSON-RPC batches are not supported: protocol revisions 2025-06-18 and later removed them",
                    None,
                ));
            }
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                return Err(ParseError::invalid(
                    "a JSON-RPC message must be a JSON object",
                    None,
                ));
            }
        };
        // Read the id first so every later error can be correlated.
        let raw_id = object.remove("id");
        let id = match raw_id.clone().map(RequestId::from_value) {
            Some(Ok(id)) => Some(id),
            Some(Err(_)) | None => None,
        };
        match object.get("jsonrpc") {
            Some(Value::String(v)) if v == "2.0" => {}
            Some(_) => {
                return Err(ParseError::invalid(
                    "`jsonrpc` must be the string \"2.0\"",
                    id,
                ));
            }
            None => return Err(ParseError::invalid("missing `jsonrpc` member", id)),
        }
        let params = object.remove("params");
        if let Some(p) = &params
            && !(p.is_object() || p.is_array())
        {
            return Err(ParseError {
                code: INVALID_PARAMS,
                message: "`params` must be an object or an array".into(),
                id,
            });
        }
        match object.remove("method") {
            Some(Value::String(method)) => match raw_id {
                None => Ok(Message::Notification(Notification { method, params })),
                Some(raw) => match RequestId::from_value(raw) {
                    Ok(id) => Ok(Message::Request(Request { id, method, params })),
                    Err(why) => Err(ParseError::invalid(why, None)),
                },
            },
            Some(_) => Err(ParseError::invalid("`method` must be a string", id)),
            None => Self::response_from(object, raw_id, id),
        }
    }

    fn response_from(
        mut object: Map<String, Value>,
        raw_id: Option<Value>,
        id: Option<RequestId>,
    ) -> Result<Self, ParseError> {
        let outcome = match (object.remove("result"), object.remove("error")) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(parse_error_object(error).ok_or_else(|| {
                ParseError::invalid(
                    "`error` must have an integer `code` and a string `message`",
                    id.clone(),
                )
            })?),
            (Some(_), Some(_)) => {
                return Err(ParseError::invalid(
                    "a response must not have both `result` and `error`",
                    id,
                ));
            }
            (None, None) => {
                return Err(ParseError::invalid(
                    "a message needs `method` (request, notification) or `result`/`error` (response)",
                    id,
                ));
            }
        };
        match (raw_id, id) {
            (_, Some(id)) => Ok(Message::Response(Response {
                id: Some(id),
                outcome,
            })),
            // JSON-RPC: an error about an unreadable request carries `id: null`.
            (Some(Value::Null), None) if outcome.is_err() => {
                Ok(Message::Response(Response { id: None, outcome }))
            }
            (Some(_) | None, None) => Err(ParseError::invalid(
                "a response needs a string or integer `id`",
                None,
            )),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing a tree of `Value`s into memory cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(r) => Some(&r.method),
            Message::Notification(n) => Some(&n.method),
            Message::Response(_) => None,
        }
    }
}

fn parse_error_object(value: Value) -> Option<ErrorObject> {
    let Value::Object(mut object) = value else {
        return None;
    };
    let code = object.get("code")?.as_i64()?;
    let message = match object.remove("message")? {
        Value::String(s) => s,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
            return None;
        }
    };
    Some(ErrorObject {
        code,
        message,
        data: object.remove("data"),
    })
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("jsonrpc", "2.0")?;
        match self {
            Message::Request(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("method", &r.method)?;
                if let Some(p) = &r.params {
                    map.serialize_entry("params", p)?;
                }
            }
            Message::Notification(n) => {
                map.serialize_entry("method", &n.method)?;
                if let Some(p) = &n.params {
                    map.serialize_entry("params", p)?;
                }
            }
            Message::Response(r) => {
                map.serialize_entry("id", &r.id)?;
                match &r.outcome {
                    Ok(result) => map.serialize_entry("result", result)?,
                    Err(error) => map.serialize_entry("error", error)?,
                }
            }
        }
        map.end()
    }
}

impl Response {
    pub fn result(id: RequestId, result: Value) -> Self {
        Self {
            id: Some(id),
            outcome: Ok(result),
        }
    }

    pub fn error(id: Option<RequestId>, error: ErrorObject) -> Self {
        Self {
            id,
            outcome: Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Message, ParseError> {
        Message::parse(v.to_string().as_bytes())
    }

    #[test]
    fn ids_of_every_type() {
        let cases: &[(Value, Option<RequestId>)] = &[
            (json!(1), Some(RequestId::Number(1.into()))),
            (json!(-7), Some(RequestId::Number((-7).into()))),
            (json!(u64::MAX), Some(RequestId::Number(u64::MAX.into()))),
            (json!("abc"), Some(RequestId::String("abc".into()))),
            (json!(""), Some(RequestId::String(String::new()))),
            (json!(1.5), None),
            (json!(null), None),
            (json!(true), None),
            (json!([1]), None),
            (json!({"a": 1}), None),
        ];
        for (id, expected) in cases {
            let got = parse(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
            match (got, expected) {
                (Ok(Message::Request(r)), Some(e)) => assert_eq!(&r.id, e, "id {id}"),
                (Err(err), None) => assert_eq!(err.code, INVALID_REQUEST, "id {id}"),
                (other, _) => panic!("id {id}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn ids_round_trip_exactly() {
        for raw in [
            r#""x""#,
            "0",
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"ping"}}"#);
            let msg = Message::parse(text.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(msg.to_bytes()).unwrap(), text);
        }
    }

    #[test]
    fn numbers_in_params_pass_through_as_written() {
        // Big integers and floats must reach the upstream exactly as the agent
        // wrote them: a gateway that rounds an account number is not transparent.
        // (Only an exponent's spelling is normalized: `1E400` leaves as `1e+400`.)
        for number in [
            "123456789012345678901234567890",
            "1.7125907383214939e-223",
            "0.1",
            "-0",
            "1e+400",
        ] {
            let text = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"n":{number}}}}}"#
            );
            let message = Message::parse(text.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(message.to_bytes()).unwrap(), text);
        }
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason() {
        let cases: &[(&[u8], i64, &str)] = &[
            (b"{", PARSE_ERROR, "not valid JSON"),
            (b"", PARSE_ERROR, "not valid JSON"),
            (b"[]", INVALID_REQUEST, "batches"),
            (b"42", INVALID_REQUEST, "JSON object"),
            (
                br#"{"id":1,"method":"x"}"#,
                INVALID_REQUEST,
                "missing `jsonrpc`",
            ),
            (
                br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
                INVALID_REQUEST,
                "\"2.0\"",
            ),
            (
                br#"{"jsonrpc":2.0,"id":1,"method":"x"}"#,
                INVALID_REQUEST,
                "\"2.0\"",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                INVALID_REQUEST,
                "`method` must be a string",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
                INVALID_PARAMS,
                "`params`",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1}"#,
                INVALID_REQUEST,
                "needs `method`",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
                INVALID_REQUEST,
                "both",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#,
                INVALID_REQUEST,
                "`code`",
            ),
            (br#"{"jsonrpc":"2.0","result":1}"#, INVALID_REQUEST, "`id`"),
        ];
        for (bytes, code, needle) in cases {
            let err = Message::parse(bytes).unwrap_err();
            assert_eq!(err.code, *code, "{}", String::from_utf8_lossy(bytes));
            assert!(
                err.message.contains(needle),
                "{} -> {}",
                String::from_utf8_lossy(bytes),
                err.message
            );
        }
    }

    #[test]
    fn errors_keep_the_id_when_it_was_readable() {
        let err = Message::parse(br#"{"jsonrpc":"1.0","id":"k","method":"x"}"#).unwrap_err();
        assert_eq!(err.id, Some(RequestId::String("k".into())));
        let response = Message::Response(err.to_response());
        let v: Value = serde_json::from_slice(&response.to_bytes()).unwrap();
        assert_eq!(v["id"], "k");
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn classifies_every_kind() {
        assert!(matches!(
            parse(json!({"jsonrpc":"2.0","method":"notifications/initialized"})),
            Ok(Message::Notification(_))
        ));
        assert!(matches!(
            parse(json!({"jsonrpc":"2.0","id":3,"result":{}})),
            Ok(Message::Response(Response { outcome: Ok(_), .. }))
        ));
        let null_id_error =
            parse(json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}))
                .unwrap();
        assert!(matches!(
            null_id_error,
            Message::Response(Response {
                id: None,
                outcome: Err(_)
            })
        ));
    }
}
