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
use crate::config::Builtin;

pub(super) struct BuiltinLink {
    pub pending: Arc<Pending>,
    ctx: LinkContext,
    protocol_version: Value,
    builtin: Builtin,
}

impl BuiltinLink {
    pub fn new(ctx: &LinkContext, client_init: &Value, builtin: Builtin) -> Self {
        Self {
            pending: Pending::new(),
            ctx: ctx.clone(),
            protocol_version: client_init
                .get("protocolVersion")
                .cloned()
                .unwrap_or(Value::Null),
            builtin,
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
        let builtin = self.builtin;
        #[expect(
            clippy::disallowed_methods,
            reason = "the link's own work: it ends with the request's answer"
        )]
        tokio::spawn(async move {
            let response = answer(&ctx, &version, builtin, request).await;
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

async fn answer(
    ctx: &LinkContext,
    version: &Value,
    builtin: Builtin,
    request: Request,
) -> Response {
    let id = request.id.clone();
    let (tool, server) = match builtin {
        Builtin::HttpRequest => ("http_request", "palisade-http-request"),
        Builtin::Exec => ("exec", "palisade-exec"),
    };
    let outcome = match request.method.as_str() {
        method::INITIALIZE => Ok(json!({
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": server, "version": env!("CARGO_PKG_VERSION")},
        })),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": [match builtin {
            Builtin::HttpRequest => palisade_secrets::http_request::tool_definition(),
            Builtin::Exec => super::exec::tool_definition(),
        }]})),
        "tools/call" => {
            let params = request.params.unwrap_or(Value::Null);
            let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
            match params.get("name").and_then(Value::as_str) {
                Some(name) if name == tool => Ok(match builtin {
                    Builtin::HttpRequest => {
                        let who = palisade_egress::Attribution {
                            origin: "http_request",
                            call: Some(id.to_string()),
                            ..ctx.who.clone()
                        };
                        ctx.broker.http_request(&ctx.name, &arguments, who).await
                    }
                    Builtin::Exec => {
                        let who = palisade_egress::Attribution {
                            origin: "sandbox",
                            call: Some(id.to_string()),
                            ..ctx.who.clone()
                        };
                        super::exec::call(ctx.sandboxes.as_ref(), &arguments, who).await
                    }
                }),
                _ => Err(ErrorObject::new(
                    INVALID_PARAMS,
                    format!("unknown tool: the built-in serves `{tool}`"),
                )),
            }
        }
        other => Err(ErrorObject::new(
            METHOD_NOT_FOUND,
            format!("the built-in `{tool}` does not serve `{other}`"),
        )),
    };
    Response {
        id: Some(id),
        outcome,
    }
}
