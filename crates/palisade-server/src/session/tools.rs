//! Tool calls: the one request that goes through the pipeline.

use std::sync::{Arc, Mutex};

use palisade_core::{Call, EffectClass, Reason, ReasonCode, Stage, ToolRef};
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS};
use palisade_mcp::protocol::method;
use palisade_mcp::{RequestId, Response};
use palisade_pipeline::{CallResult, ExecError, Execute, Executed, Permit};
use serde_json::{Map, Value, json};

use super::listing::Listing;
use super::{Refusal, Session, error_value, respond, rpc_error_from};
use crate::denial;
use crate::upstream::{Failure, lock};

impl Session {
    // -------------------------------------------------------------- tool calls

    pub(super) async fn call_tool(
        self: &Arc<Self>,
        id: RequestId,
        params: Option<Value>,
    ) -> Option<Response> {
        let name = params
            .as_ref()
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (index, params) = match (self.route_named(Listing::Tools, params), name) {
            (Ok(routed), _) => routed,
            (Err(_), Some(name)) => return Some(self.unknown_tool(id, &name).await),
            (Err(error), None) => return Some(Response::error(Some(id), error)),
        };
        let Some(upstream) = self.upstreams.get(index) else {
            return Some(Response::error(
                Some(id),
                ErrorObject::new(INVALID_PARAMS, "unknown tool"),
            ));
        };
        let tool = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Only tools the upstream lists can be called: a hidden tool would
        // escape everything palisade learns from listings (and, later, pins).
        match self.is_listed(index, &tool).await {
            Some(true) => {}
            Some(false) => {
                let name = format!("{}{tool}", upstream.spec.prefix);
                return Some(self.unknown_tool(id, &name).await);
            }
            None => {
                let failure =
                    Failure::new(format!("cannot list the tools of `{}`", upstream.spec.name));
                return Some(Response::error(
                    Some(id),
                    self.unavailable(upstream, &failure).into_error(),
                ));
            }
        }
        // The arguments move into the call; the rest of `params` (`_meta`)
        // is kept to go upstream with the arguments as the pipeline leaves them.
        let mut params = params;
        let arguments = params
            .as_object_mut()
            .and_then(|p| p.remove("arguments"))
            .unwrap_or_else(|| json!({}));
        let call = Call {
            id: self.gateway.next_call_id(),
            principal: self.principal.clone(),
            session: self.id.clone(),
            tool: ToolRef::new(upstream.spec.name.as_str(), tool.as_str()),
            effect: upstream.spec.effect_of(&tool),
            arguments,
        };
        let exec = UpstreamCall {
            session: self,
            index,
            client_id: &id,
            params: &params,
            cancelled: Mutex::new(false),
        };
        let result = self.gateway.pipeline.run(call, &exec).await;
        if *lock(&exec.cancelled) {
            return None;
        }
        let answer = match result {
            CallResult::Executed(Executed::Result(result)) => Ok(result),
            CallResult::Executed(Executed::RpcError(error)) => Err(rpc_error_from(error)),
            CallResult::Denied { stage, reason } => Err(denial::to_error(stage, &reason)),
        };
        Some(respond(id, answer))
    }

    /// Answers a call to a tool no upstream lists. As MCP servers built on the
    /// reference SDKs do, that is a tool error the model can read and correct,
    /// not a protocol error; and it is audited like any refused call.
    pub(super) async fn unknown_tool(&self, id: RequestId, name: &str) -> Response {
        if let Some(refused) = self.audit_unknown_tool(&id, name).await {
            return refused;
        }
        let text = format!("Unknown tool: `{name}`");
        Response::result(
            id,
            json!({ "content": [{ "type": "text", "text": text }], "isError": true }),
        )
    }

    /// Records a call to a tool no upstream serves. Returns the error to send
    /// instead of the tool error when even that record cannot be written.
    pub(super) async fn audit_unknown_tool(&self, id: &RequestId, name: &str) -> Option<Response> {
        let call = Call {
            id: self.gateway.next_call_id(),
            principal: self.principal.clone(),
            session: self.id.clone(),
            tool: ToolRef::new("", name),
            arguments: json!({}),
            effect: EffectClass::Irreversible,
        };
        let reason = Reason::new(
            ReasonCode::UnknownTool,
            format!("no upstream serves `{name}`"),
        );
        match self
            .gateway
            .pipeline
            .refuse(call, Stage::Authorize, reason)
            .await
        {
            CallResult::Denied {
                stage: Stage::Audit,
                reason,
            } => Some(Response::error(
                Some(id.clone()),
                denial::to_error(Stage::Audit, &reason),
            )),
            CallResult::Denied { .. } | CallResult::Executed(_) => None,
        }
    }
}

/// Executes a permitted tool call on its upstream.
struct UpstreamCall<'a> {
    session: &'a Session,
    index: usize,
    client_id: &'a RequestId,
    params: &'a Value,
    cancelled: Mutex<bool>,
}

impl Execute for UpstreamCall<'_> {
    async fn execute(&self, permit: Permit, call: &Call) -> Result<Executed, ExecError> {
        permit.redeem(call).map_err(|e| ExecError(e.to_string()))?;
        // The upstream gets the arguments as the pipeline left them (filtered,
        // with secrets injected), under the tool's own name.
        let mut params: Map<String, Value> = self.params.as_object().cloned().unwrap_or_default();
        params.insert("name".into(), json!(call.tool.name.as_ref()));
        params.insert("arguments".into(), call.arguments.clone());
        match self
            .session
            .relay(
                self.index,
                self.client_id,
                method::TOOLS_CALL,
                Some(Value::Object(params)),
            )
            .await
        {
            Some(Ok(result)) => Ok(Executed::Result(result)),
            Some(Err(Refusal::Upstream(error))) => Ok(Executed::RpcError(error_value(error))),
            Some(Err(Refusal::Unavailable { detail, .. })) => Err(ExecError(detail)),
            None => {
                *lock(&self.cancelled) = true;
                Err(ExecError("cancelled by the client".into()))
            }
        }
    }
}
