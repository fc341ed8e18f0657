//! A tool palisade serves itself (`builtin = "http_request"`), behind the same link as a real upstream.
//!
//! It answers `initialize`, `tools/list` and `tools/call` in process, so a
//! built-in tool passes the whole pipeline (authorization, approvals, the
//! secrets stage, redaction, audit) exactly as an upstream's tool does.

use std::sync::Arc;

use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS, METHOD_NOT_FOUND};
use palisade_mcp::protocol::method;
use palisade_mcp::{Message, Request, Response};
use serde_json::{Value, json};

use super::{Failure, LinkContext, Pending};

pub(super) struct BuiltinLink {
    pub pending: Arc<Pending>,
    ctx: LinkContext,
    protocol_version: Value,
}

impl BuiltinLink {
    pub fn new(ctx: &LinkContext, client_init: &Value) -> Self {
        Self {
            pending: Pending::new(),
            ctx: ctx.clone(),
            protocol_version: client_init
                .get("protocolVersion")
                .cloned()
                .unwrap_or(Value::Null),
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), Failure> {
        let Message::Request(request) = message else {
            // Notifications (initialized, cancelled) and responses need no answer.
            return Ok(());
        };
        let pending = Arc::clone(&self.pending);
        let ctx = self.ctx.clone();
        let version = self.protocol_version.clone();
        #[expect(
            clippy::disallowed_methods,
            reason = "the link's own work: it ends with the request's answer"
        )]
        tokio::spawn(async move {
            let response = answer(&ctx, &version, request).await;
            pending.complete(response);
        });
        Ok(())
    }

    pub async fn close(&self) {
        self.pending.fail_all(&Failure::shut_down(format!(
            "built-in `{}` was closed",
            self.ctx.name
        )));
    }
}

async fn answer(ctx: &LinkContext, version: &Value, request: Request) -> Response {
    let id = request.id.clone();
    let outcome = match request.method.as_str() {
        method::INITIALIZE => Ok(json!({
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "palisade-http-request", "version": env!("CARGO_PKG_VERSION")},
        })),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": [palisade_secrets::http_request::tool_definition()]})),
        "tools/call" => {
            let params = request.params.unwrap_or(Value::Null);
            match params.get("name").and_then(Value::as_str) {
                Some("http_request") => {
                    let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
                    Ok(ctx.broker.http_request(&ctx.name, &arguments).await)
                }
                _ => Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "unknown tool: the built-in serves `http_request`",
                )),
            }
        }
        other => Err(ErrorObject::new(
            METHOD_NOT_FOUND,
            format!("the built-in `http_request` does not serve `{other}`"),
        )),
    };
    Response {
        id: Some(id),
        outcome,
    }
}
