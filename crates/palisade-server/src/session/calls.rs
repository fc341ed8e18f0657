//! Calls: tool calls, resource reads, prompts, completions and task results, each through the pipeline.
//!
//! Each request is parsed into a call (head and arguments) before anything
//! is routed. A malformed one is answered with -32602 and recorded as
//! `invalid`; one naming something no upstream serves is recorded as denied;
//! the rest run the pipeline, whose executor is the only code that sends a
//! call upstream, and only as the `Authorized` value the pipeline hands it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use palisade_core::{
    Bounded, Call, CallHead, CallId, CallKind, EffectClass, Outcome, Reason, ReasonCode, Stage,
    Target,
};
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS};
use palisade_mcp::protocol::method;
use palisade_mcp::{Message, Notification, RequestId, Response};
use palisade_pipeline::{Authorized, CallResult, ExecError, Execute, Executed};
use serde_json::{Map, Value, json};

use super::listing::Listing;
use super::{Outgoing, Refusal, Session, error_value, printable_name, respond, rpc_error_from};
use crate::denial;
use crate::upstream::{Failure, lock};

/// A request read as a call, before routing decides it can be made.
struct Parsed {
    upstream: usize,
    /// The target's name on its upstream.
    name: String,
    arguments: Value,
    /// The rest of the request's params (`_meta`, `task`, …).
    rest: Map<String, Value>,
    parent: Option<CallId>,
    /// The listing the target must be shown in to be called, and its name there.
    listed_as: Option<(Listing, String)>,
}

/// Why a request could not become a call.
enum Unmade {
    /// Malformed: says what is wrong, for the client and the record.
    Invalid(String),
    /// Well formed, but nothing by that name is served: the name, for the record.
    Unknown { name: String, why: String },
}

impl Session {
    pub(super) async fn call(
        self: &Arc<Self>,
        kind: CallKind,
        id: RequestId,
        params: Option<Value>,
    ) -> Option<Response> {
        let parsed = match self.parse_call(kind, params).await {
            Ok(parsed) => parsed,
            Err(Unmade::Invalid(detail)) => {
                let call = self.unmade_call(kind, "", "");
                let outcome = Outcome::Invalid {
                    detail: Bounded::new(detail.as_str()),
                };
                if let Err(failure) = self.gateway.pipeline.record_unmade(&call, outcome).await {
                    tracing::error!(session = %self.id, "{failure}");
                }
                let error = ErrorObject::new(INVALID_PARAMS, detail);
                return Some(Response::error(Some(id), error));
            }
            Err(Unmade::Unknown { name, why }) => {
                return Some(self.unknown(kind, id, ("", &name), &name, why).await);
            }
        };
        let Some(upstream) = self.upstreams.get(parsed.upstream) else {
            let error = ErrorObject::new(INVALID_PARAMS, "no such upstream");
            return Some(Response::error(Some(id), error));
        };
        if let Some((listing, listed_name)) = &parsed.listed_as {
            // Only tools and prompts the upstream lists, and palisade shows,
            // can be called: a hidden one would escape everything palisade
            // learns from listings and pins.
            match self.is_listed(*listing, parsed.upstream, listed_name).await {
                // A tool whose definition is not approved is unknown to the
                // client; the record says why.
                Ok(true) if *listing == Listing::Tools => {
                    if let Some(why) = self.pin_refusal_of(parsed.upstream, listed_name).await {
                        let shown = format!("{}{}", upstream.spec.prefix, listed_name);
                        let target = (upstream.spec.name.as_str(), parsed.name.as_str());
                        return Some(self.unknown(kind, id, target, &shown, why).await);
                    }
                }
                Ok(true) => {}
                Ok(false) => {
                    let shown = format!("{}{}", upstream.spec.prefix, listed_name);
                    let target = (upstream.spec.name.as_str(), parsed.name.as_str());
                    return Some(self.unknown(kind, id, target, &shown, String::new()).await);
                }
                Err(retry_after) => {
                    let failure = Failure {
                        retry_after,
                        ..Failure::new(format!(
                            "cannot list the {} of `{}`",
                            listing.field(),
                            upstream.spec.name
                        ))
                    };
                    let call = self.unmade_call(kind, &upstream.spec.name, &parsed.name);
                    let outcome = Outcome::UpstreamUnavailable {
                        detail: Bounded::new(failure.message.as_str()),
                    };
                    if let Err(failure) = self.gateway.pipeline.record_unmade(&call, outcome).await
                    {
                        tracing::error!(session = %self.id, "{failure}");
                    }
                    let error = self.unavailable(upstream, failure, false).into_error();
                    return Some(Response::error(Some(id), error));
                }
            }
        }
        let effect = match kind {
            CallKind::Tool => upstream.spec.effect_of(&parsed.name),
            // Reading content changes nothing upstream; what it brings in is
            // the inbound filter's to judge.
            CallKind::Resource | CallKind::Prompt | CallKind::Completion | CallKind::TaskResult => {
                EffectClass::Read
            }
        };
        let head = CallHead {
            id: self.gateway.next_call_id(),
            principal: self.principal.clone(),
            session: self.id.clone(),
            kind,
            target: Target::new(upstream.spec.name.as_str(), parsed.name.as_str()),
            effect,
            params: (!parsed.rest.is_empty()).then_some(Value::Object(parsed.rest)),
            parent: parsed.parent,
        };
        let call_id = head.id;
        let progress_token = head
            .params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("progressToken"))
            .cloned();
        let call = Call::new(head, parsed.arguments);
        let exec = UpstreamCall {
            session: self,
            index: parsed.upstream,
            client_id: &id,
            unavailable: Mutex::new(None),
            started: AtomicBool::new(false),
        };
        let run = self
            .gateway
            .pipeline
            .run(call, Arc::clone(&self.facts), &exec);
        let result = match progress_token {
            Some(token) if !self.gateway.config.approvals.hold.is_zero() => {
                self.keep_alive(run, &token, &id, &exec.started).await
            }
            Some(_) | None => run.await,
        };
        let answer = match result {
            CallResult::Returned(Executed::Result(result)) => {
                if kind == CallKind::Tool {
                    self.remember_task(&result, parsed.upstream, call_id);
                }
                Ok(result)
            }
            CallResult::Returned(Executed::RpcError(error)) => Err(rpc_error_from(error)),
            CallResult::Refused { stage, reason } => Err(denial::to_error(stage, &reason)),
            CallResult::Withheld { stage, reason } => Err(denial::withheld(stage, &reason)),
            CallResult::Unfinished(ExecError::Cancelled) => return None,
            CallResult::Unfinished(error) => {
                Err(lock(&exec.unavailable).take().unwrap_or_else(|| {
                    let reason = Reason::new(ReasonCode::UpstreamUnavailable, error.to_string());
                    denial::to_error(Stage::Execute, &reason)
                }))
            }
        };
        Some(respond(id, answer))
    }

    /// Awaits `run`, telling the client every few seconds, with the progress
    /// token it sent, that its call is still held before it runs (waiting
    /// for a human's approval): a client that times out quiet requests keeps
    /// it. Once the call reaches its upstream, the upstream's own progress
    /// is what the client hears.
    async fn keep_alive<F: Future<Output = CallResult>>(
        &self,
        run: F,
        token: &Value,
        id: &RequestId,
        started: &AtomicBool,
    ) -> CallResult {
        let mut run = std::pin::pin!(run);
        let every = std::time::Duration::from_secs(5);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut sent: u64 = 0;
        loop {
            tokio::select! {
                result = &mut run => return result,
                _ = tick.tick() => {
                    if started.load(Ordering::SeqCst) {
                        continue;
                    }
                    sent = sent.saturating_add(1);
                    let notification = Notification {
                        method: method::PROGRESS.to_owned(),
                        params: Some(json!({
                            "progressToken": token,
                            "progress": sent,
                            "message": "palisade is holding this call until a human approves it",
                        })),
                    };
                    self.send_to_client(Message::Notification(notification), Some(id));
                }
            }
        }
    }

    /// Reads a request as a call: checks its shape and finds its upstream.
    async fn parse_call(&self, kind: CallKind, params: Option<Value>) -> Result<Parsed, Unmade> {
        let mut rest = match params {
            Some(Value::Object(params)) => params,
            Some(_) | None => return Err(Unmade::Invalid("`params` must be an object".into())),
        };
        let mut take_string = |field: &str, what: &str| match rest.shift_remove(field) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Unmade::Invalid(format!(
                "`params.{field}` ({what}) must be a string"
            ))),
            None => Err(Unmade::Invalid(format!(
                "`params.{field}` ({what}) is missing"
            ))),
        };
        match kind {
            CallKind::Tool | CallKind::Prompt => {
                let (what, listing) = match kind {
                    CallKind::Prompt => ("the prompt's name", Listing::Prompts),
                    CallKind::Tool
                    | CallKind::Resource
                    | CallKind::Completion
                    | CallKind::TaskResult => ("the tool's name", Listing::Tools),
                };
                let name = take_string("name", what)?;
                let arguments = match rest.shift_remove("arguments") {
                    None | Some(Value::Null) => Value::Null,
                    Some(arguments @ Value::Object(_)) => arguments,
                    Some(_) => {
                        return Err(Unmade::Invalid(
                            "`params.arguments` must be an object".into(),
                        ));
                    }
                };
                let Some((upstream, inner)) = self.resolve(&name) else {
                    return Err(unknown(listing, &name));
                };
                Ok(Parsed {
                    upstream,
                    name: inner.to_owned(),
                    arguments,
                    rest,
                    parent: None,
                    listed_as: Some((listing, inner.to_owned())),
                })
            }
            CallKind::Resource => {
                let uri = take_string("uri", "the resource's URI")?;
                let upstream = self.route_uri(&uri).await.map_err(|e| Unmade::Unknown {
                    name: uri.clone(),
                    why: e.message,
                })?;
                Ok(Parsed {
                    upstream,
                    name: uri,
                    arguments: Value::Null,
                    rest,
                    parent: None,
                    listed_as: None,
                })
            }
            CallKind::Completion => {
                let Some(Value::Object(reference)) = rest.shift_remove("ref") else {
                    return Err(Unmade::Invalid("`params.ref` must be an object".into()));
                };
                let field = |name: &str| reference.get(name).and_then(Value::as_str);
                let (upstream, name, listed_as) = match field("type") {
                    Some("ref/prompt") => {
                        let prompt = field("name").ok_or_else(|| {
                            Unmade::Invalid("`params.ref.name` must be a string".into())
                        })?;
                        let (upstream, inner) = self
                            .resolve(prompt)
                            .ok_or_else(|| unknown(Listing::Prompts, prompt))?;
                        let listed_as = Some((Listing::Prompts, inner.to_owned()));
                        (upstream, format!("ref/prompt:{inner}"), listed_as)
                    }
                    Some("ref/resource") => {
                        let uri = field("uri").ok_or_else(|| {
                            Unmade::Invalid("`params.ref.uri` must be a string".into())
                        })?;
                        let upstream = self.route_uri(uri).await.map_err(|e| Unmade::Unknown {
                            name: uri.to_owned(),
                            why: e.message,
                        })?;
                        (upstream, format!("ref/resource:{uri}"), None)
                    }
                    Some(_) | None => {
                        return Err(Unmade::Invalid(
                            "`params.ref.type` must be `ref/prompt` or `ref/resource`".into(),
                        ));
                    }
                };
                // What is being completed is the call's argument.
                let mut arguments = Map::new();
                for field in ["argument", "context"] {
                    if let Some(value) = rest.shift_remove(field) {
                        arguments.insert(field.into(), value);
                    }
                }
                Ok(Parsed {
                    upstream,
                    name,
                    arguments: Value::Object(arguments),
                    rest,
                    parent: None,
                    listed_as,
                })
            }
            CallKind::TaskResult => {
                let task = take_string("taskId", "the task's id")?;
                let known = lock(&self.routing).tasks.get(&task);
                let Some((upstream, parent)) = known else {
                    let why = format!(
                        "no task `{}` was created in this session",
                        printable_name(&task)
                    );
                    return Err(Unmade::Unknown { name: task, why });
                };
                Ok(Parsed {
                    upstream,
                    name: task,
                    arguments: Value::Null,
                    rest,
                    parent: Some(parent),
                    listed_as: None,
                })
            }
        }
    }

    /// A call that names nothing an upstream serves, recorded as refused. A
    /// tool is answered, as servers built on the reference SDKs do, with a
    /// tool error the model can read and correct; the rest with -32602.
    /// `target` is what the record names (server and name, as far as known),
    /// `name` what the client asked for.
    async fn unknown(
        &self,
        kind: CallKind,
        id: RequestId,
        target: (&str, &str),
        name: &str,
        why: String,
    ) -> Response {
        let call = self.unmade_call(kind, target.0, target.1);
        let what = match kind {
            CallKind::Tool => "tool",
            CallKind::Prompt => "prompt",
            CallKind::Resource => "resource",
            CallKind::Completion => "completion reference",
            CallKind::TaskResult => "task",
        };
        let detail = if why.is_empty() {
            format!("no upstream serves the {what} `{}`", printable_name(name))
        } else {
            why
        };
        let reason = Reason::new(ReasonCode::UnknownTool, detail.as_str());
        let refused = self
            .gateway
            .pipeline
            .refuse(&call, Stage::Authorize, reason)
            .await;
        if let CallResult::Refused {
            stage: Stage::Audit,
            reason,
        } = refused
        {
            return Response::error(Some(id), denial::to_error(Stage::Audit, &reason));
        }
        match kind {
            CallKind::Tool => {
                let text = format!("Unknown tool: `{}`", printable_name(name));
                Response::result(
                    id,
                    json!({ "content": [{ "type": "text", "text": text }], "isError": true }),
                )
            }
            CallKind::Prompt | CallKind::Resource | CallKind::Completion | CallKind::TaskResult => {
                Response::error(Some(id), ErrorObject::new(INVALID_PARAMS, detail))
            }
        }
    }

    /// The call a refused or malformed request would have been, for its record.
    fn unmade_call(&self, kind: CallKind, server: &str, name: &str) -> Call {
        let head = CallHead {
            id: self.gateway.next_call_id(),
            principal: self.principal.clone(),
            session: self.id.clone(),
            kind,
            target: Target::new(server, name),
            // Unknown means unknown: judged as the most consequential.
            effect: EffectClass::Irreversible,
            params: None,
            parent: None,
        };
        Call::new(head, Value::Null)
    }

    /// A task-augmented call answered with a task handle: its later
    /// `tasks/*` requests go to the same upstream, and its result is the
    /// output of this call.
    fn remember_task(&self, result: &Value, upstream: usize, call: CallId) {
        let Some(task) = result
            .get("task")
            .and_then(|t| t.get("taskId"))
            .and_then(Value::as_str)
        else {
            return;
        };
        lock(&self.routing).tasks.remember(task, upstream, call);
    }
}

fn unknown(listing: Listing, name: &str) -> Unmade {
    let what = match listing {
        Listing::Tools => "tool",
        Listing::Prompts | Listing::Resources | Listing::Templates => "prompt",
    };
    Unmade::Unknown {
        name: name.to_owned(),
        why: if matches!(listing, Listing::Tools) {
            String::new()
        } else {
            format!("unknown {what} `{}`", printable_name(name))
        },
    }
}

/// Executes an authorized call on its upstream.
struct UpstreamCall<'a> {
    session: &'a Session,
    index: usize,
    client_id: &'a RequestId,
    /// The error the client reads when no answer came.
    unavailable: Mutex<Option<ErrorObject>>,
    /// Set when the pipeline hands the call to its upstream.
    started: AtomicBool,
}

impl Execute for UpstreamCall<'_> {
    async fn execute(&self, call: Authorized) -> Result<Executed, ExecError> {
        self.started.store(true, Ordering::SeqCst);
        let answer = self
            .session
            .relay(self.index, self.client_id, Outgoing::Call(&call))
            .await;
        match answer {
            Some(Ok(result)) => Ok(Executed::Result(result)),
            Some(Err(Refusal::Upstream(error))) => Ok(Executed::RpcError(error_value(error))),
            Some(Err(Refusal::Unavailable {
                mut error,
                failure,
                sent,
            })) => {
                if let Some(Value::Object(palisade)) =
                    error.data.as_mut().and_then(|d| d.get_mut("palisade"))
                {
                    palisade.insert("stage".into(), json!(Stage::Execute.as_str()));
                }
                // The client's message names the upstream; the failure says what happened.
                let detail = format!("{}: {}", error.message, failure.message);
                *lock(&self.unavailable) = Some(error);
                Err(if failure.shut_down {
                    ExecError::SessionEnded
                } else if !sent {
                    ExecError::NotSent {
                        detail,
                        retry_after: failure.retry_after,
                    }
                } else if failure.timed_out {
                    ExecError::TimedOut { detail }
                } else {
                    ExecError::Lost { detail }
                })
            }
            None => Err(ExecError::Cancelled),
        }
    }
}
