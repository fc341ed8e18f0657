//! One client session: routes each message between the client and the right upstream.
//!
//! The gateway intercepts what it must (initialize, listing, tool calls,
//! naming, cancellation, server-to-client requests) and passes the rest
//! through unchanged. Every method is classified (`palisade_mcp::method`):
//! calls go through the pipeline, listings through the listing hook,
//! plumbing through as it is; unknown methods are refused and recorded.
//!
//! - `listing`: merged listings, and which tools each upstream lists;
//! - `pinning`: tools whose definition is not approved, hidden and refused;
//! - `routing`: which upstream a name or a URI belongs to;
//! - `calls`: tool calls, resource reads, prompts, completions and task results, through the pipeline;
//! - `events`: what upstreams send on their own (requests, notifications);
//! - `tables`: what the session keeps track of, each table with its bound.

mod calls;
mod catalog;
mod events;
mod listing;
mod pinning;
mod routing;
mod tables;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use palisade_core::{
    AuditEvent, Bounded, CallKind, MethodRefusal, Principal, Redacted, SessionEnd, SessionFacts,
    SessionId,
};
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND};
use palisade_mcp::{
    ClientNotification, ClientRequest, Message, Notification, Request, RequestId, Response,
};
use palisade_pipeline::Authorized;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::denial::UPSTREAM_UNAVAILABLE;
use crate::gateway::Gateway;
pub(crate) use crate::printable::printable_name;
use crate::upstream::{Failure, Upstream, lock};

use catalog::Catalog;
pub(crate) use events::SessionSink;
use listing::Listing;
use tables::{Flights, RequestIds, ServerRequests, Tasks};

/// Where messages to the client go. `related` names the client request a
/// message belongs to, so HTTP can put it on that request's stream. Takes
/// only what passed the redaction seam.
pub trait Outbox: Send + Sync {
    /// Queues `message`; false when the client cannot take it now.
    fn send(&self, message: Redacted<Message>, related: Option<&RequestId>) -> bool;
}

/// What a session keeps track of, under one lock that is never held across an await.
#[derive(Debug, Default)]
struct Routing {
    /// Ids of the client's requests in progress.
    request_ids: RequestIds,
    /// Those of them being worked on upstream.
    flights: Flights,
    /// Requests upstreams sent to the client, waiting for its answer.
    server_requests: ServerRequests,
    /// What upstreams listed: tools, resources, templates.
    catalog: Catalog,
    /// Tasks created through this session.
    tasks: Tasks,
}

impl Routing {
    /// Stops the client's request `id`: signals it if it is in flight, else,
    /// if it is still on its way (listing, pipeline), stops it at the door.
    fn cancel(&mut self, id: &RequestId) {
        if !self.flights.cancel(id) {
            self.request_ids.cancel_early(id);
        }
    }
}

/// Holds a request id for as long as its request is in progress.
struct InUse<'s> {
    session: &'s Session,
    id: RequestId,
}

impl<'s> InUse<'s> {
    fn claim(session: &'s Session, id: &RequestId) -> Option<Self> {
        let fresh = lock(&session.routing).request_ids.claim(id);
        fresh.then(|| InUse {
            session,
            id: id.clone(),
        })
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        lock(&self.session.routing).request_ids.release(&self.id);
    }
}

pub struct Session {
    pub id: SessionId,
    gateway: Arc<Gateway>,
    principal: Principal,
    upstreams: Vec<Arc<Upstream>>,
    outbox: Arc<dyn Outbox>,
    routing: Mutex<Routing>,
    next_server_request: AtomicU64,
    last_seen: Mutex<Instant>,
    /// What the layers learnt about this session (taint), shared by its calls.
    facts: Arc<SessionFacts>,
    /// One per upstream: held while its listing is read, so it is read once.
    readers: Vec<tokio::sync::Mutex<()>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

type Answer = Result<Value, ErrorObject>;

impl Session {
    pub(crate) fn start(
        id: SessionId,
        gateway: Arc<Gateway>,
        principal: Principal,
        upstreams: Vec<Arc<Upstream>>,
        outbox: Arc<dyn Outbox>,
    ) -> Arc<Self> {
        let readers = upstreams
            .iter()
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        Arc::new(Self {
            id,
            gateway,
            principal,
            upstreams,
            outbox,
            routing: Mutex::new(Routing::default()),
            next_server_request: AtomicU64::new(1),
            last_seen: Mutex::new(Instant::now()),
            facts: SessionFacts::new(),
            readers,
            closed: AtomicBool::new(false),
        })
    }

    /// The principal that opened this session.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Whether a request of the client's is in progress.
    pub fn is_working(&self) -> bool {
        !lock(&self.routing).request_ids.is_empty()
    }

    pub fn idle_for(&self) -> std::time::Duration {
        lock(&self.last_seen).elapsed()
    }

    fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    /// Ends every upstream session, and records why the session ended (once).
    pub async fn close(&self, reason: SessionEnd) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!(session = %self.id, "session closed");
        futures_util::future::join_all(self.upstreams.iter().map(|u| u.close())).await;
        let event = AuditEvent::SessionClosed {
            time: self.gateway.pipeline.now(),
            session: self.id.clone(),
            principal: self.principal.clone(),
            reason,
        };
        if let Err(failure) = self.gateway.pipeline.record(&event).await {
            tracing::error!(session = %self.id, "{failure}");
        }
    }

    /// Sends a message to the client through the redaction seam.
    pub(super) fn send_to_client(&self, message: Message, related: Option<&RequestId>) -> bool {
        self.outbox
            .send(self.gateway.seam().apply(message), related)
    }

    // ------------------------------------------------------------ from the client

    /// Answers one client request, through the redaction seam. `None` means
    /// the client cancelled it, and per the protocol no answer is sent.
    pub async fn handle_request(self: &Arc<Self>, request: Request) -> Option<Redacted<Message>> {
        let response = self.answer_request(request).await?;
        Some(self.gateway.seam().apply(Message::Response(response)))
    }

    async fn answer_request(self: &Arc<Self>, request: Request) -> Option<Response> {
        self.touch();
        // Ids name requests in progress (for cancellation, progress, streams):
        // a second request under an id still in use would take over the first.
        let Some(_in_use) = InUse::claim(self, &request.id) else {
            let error = ErrorObject::new(
                INVALID_REQUEST,
                format!(
                    "request id {} is already in use by a request in progress",
                    request.id
                ),
            );
            return Some(Response::error(Some(request.id), error));
        };
        self.dispatch_request(request).await
    }

    /// Every method has one place: a call goes through the pipeline, a
    /// listing through the listing hook, plumbing through; a method palisade
    /// does not know is refused and recorded, unless an upstream declares it
    /// as an extension.
    async fn dispatch_request(self: &Arc<Self>, request: Request) -> Option<Response> {
        let Request { id, method, params } = request;
        let Some(known) = ClientRequest::parse(&method) else {
            return self.unknown_method(id, &method, params).await;
        };
        let answer = match known {
            ClientRequest::Ping => Ok(json!({})),
            ClientRequest::Initialize => Err(ErrorObject::new(
                INVALID_REQUEST,
                "the session is already initialized",
            )),
            ClientRequest::ToolsList => self.list(Listing::Tools, params).await,
            ClientRequest::PromptsList => self.list(Listing::Prompts, params).await,
            ClientRequest::ResourcesList => self.list(Listing::Resources, params).await,
            ClientRequest::ResourcesTemplatesList => self.list(Listing::Templates, params).await,
            ClientRequest::ToolsCall => return self.call(CallKind::Tool, id, params).await,
            ClientRequest::PromptsGet => return self.call(CallKind::Prompt, id, params).await,
            ClientRequest::ResourcesRead => return self.call(CallKind::Resource, id, params).await,
            ClientRequest::CompletionComplete => {
                return self.call(CallKind::Completion, id, params).await;
            }
            ClientRequest::TasksResult => {
                return self.call(CallKind::TaskResult, id, params).await;
            }
            ClientRequest::ResourcesSubscribe | ClientRequest::ResourcesUnsubscribe => {
                let uri = params
                    .as_ref()
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str);
                let routed = match uri {
                    Some(uri) => Some(self.route_subscription(uri).await),
                    None => None,
                };
                match routed {
                    Some(Ok(upstream)) => return self.forward(upstream, id, &method, params).await,
                    Some(Err(error)) => Err(error),
                    None => Err(ErrorObject::new(
                        INVALID_PARAMS,
                        "`params.uri` must be a string",
                    )),
                }
            }
            ClientRequest::LoggingSetLevel => {
                self.broadcast_request(&method, params, "logging").await
            }
            ClientRequest::TasksGet | ClientRequest::TasksCancel => {
                match self.route_task(params.as_ref()) {
                    Ok(upstream) => return self.forward(upstream, id, &method, params).await,
                    Err(error) => Err(error),
                }
            }
            ClientRequest::TasksList => match self.single_upstream() {
                Some(upstream) => return self.forward(upstream, id, &method, params).await,
                None => Err(ErrorObject::new(
                    METHOD_NOT_FOUND,
                    "`tasks/list` is not offered across several upstreams; use `tasks/get`",
                )),
            },
        };
        Some(respond(id, answer))
    }

    /// A method palisade does not know: forwarded to the upstream that
    /// declared it in `extension_methods`, else refused and recorded.
    async fn unknown_method(
        self: &Arc<Self>,
        id: RequestId,
        method: &str,
        params: Option<Value>,
    ) -> Option<Response> {
        let declared = self
            .upstreams
            .iter()
            .position(|u| u.spec.extension_methods.iter().any(|m| m == method));
        if let Some(upstream) = declared {
            return self.forward(upstream, id, method, params).await;
        }
        let event = AuditEvent::MethodRefused {
            time: self.gateway.pipeline.now(),
            session: self.id.clone(),
            principal: self.principal.clone(),
            method: Bounded::new(method),
            reason: MethodRefusal::Unknown,
        };
        if let Err(failure) = self.gateway.pipeline.record(&event).await {
            tracing::error!(session = %self.id, "{failure}");
        }
        let error = ErrorObject::new(
            METHOD_NOT_FOUND,
            format!(
                "method `{}` is not an MCP method palisade knows",
                printable_name(method)
            ),
        );
        Some(Response::error(Some(id), error))
    }

    pub async fn handle_notification(self: &Arc<Self>, notification: Notification) {
        self.touch();
        let Some(known) = ClientNotification::parse(&notification.method) else {
            // Anything else sent as a notification (a `tools/call` without an
            // id, say) would act upstream without passing the pipeline.
            tracing::debug!(session = %self.id, "dropped a `{}` sent as a notification", printable_name(&notification.method));
            return;
        };
        match known {
            // The gateway already completed each upstream's handshake.
            ClientNotification::Initialized => {}
            ClientNotification::Cancelled => {
                let target = notification
                    .params
                    .as_ref()
                    .and_then(|p| p.get("requestId"))
                    .cloned();
                if let Some(Ok(id)) = target.map(RequestId::from_value) {
                    self.cancel(&id);
                }
            }
            ClientNotification::RootsListChanged => {
                for upstream in &self.upstreams {
                    upstream
                        .send(Message::Notification(notification.clone()))
                        .await;
                }
            }
            // About requests an upstream sent the client: with one upstream
            // there is no doubt whose they are.
            ClientNotification::Progress | ClientNotification::TasksStatus => {
                if let Some(index) = self.single_upstream()
                    && let Some(upstream) = self.upstreams.get(index)
                {
                    upstream.send(Message::Notification(notification)).await;
                }
            }
        }
    }

    /// A client's answer to a request an upstream sent it.
    pub async fn handle_response(self: &Arc<Self>, response: Response) {
        self.touch();
        let key = match &response.id {
            Some(RequestId::Number(n)) => n.as_u64(),
            Some(RequestId::String(_)) | None => None,
        };
        let target = key.and_then(|k| lock(&self.routing).server_requests.take(k));
        match target {
            Some((upstream, id)) => {
                if let Some(upstream) = self.upstreams.get(upstream) {
                    upstream.respond(id, response.outcome).await;
                }
            }
            None => tracing::debug!(session = %self.id, "client answered an unknown request"),
        }
    }

    /// Stops a client request: tells its upstream, and drops the answer.
    pub fn cancel(&self, client_id: &RequestId) {
        lock(&self.routing).cancel(client_id);
    }

    fn single_upstream(&self) -> Option<usize> {
        (self.upstreams.len() == 1).then_some(0)
    }

    // ------------------------------------------------------------- forwarding

    /// Sends a client request to one upstream and relays its answer.
    async fn forward(
        &self,
        index: usize,
        id: RequestId,
        method: &str,
        params: Option<Value>,
    ) -> Option<Response> {
        let answer = self
            .relay(index, &id, Outgoing::Request(method, params))
            .await?;
        Some(respond(id, answer.map_err(Refusal::into_error)))
    }

    /// Sends `outgoing` to upstream `index` as the client's request
    /// `client_id`, and waits for the answer. `None`: the client cancelled.
    async fn relay(
        &self,
        index: usize,
        client_id: &RequestId,
        outgoing: Outgoing<'_>,
    ) -> Option<Result<Value, Refusal>> {
        let Some(upstream) = self.upstreams.get(index) else {
            let failure = Failure::new("no such upstream");
            return Some(Err(Refusal::Unavailable {
                error: ErrorObject::new(METHOD_NOT_FOUND, "no such upstream"),
                failure,
                sent: false,
            }));
        };
        let progress_token = outgoing
            .params()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("progressToken"))
            .cloned();
        let (cancel, cancelled) = oneshot::channel();
        let registered = {
            let mut routing = lock(&self.routing);
            let cancelled_early = routing.request_ids.is_cancelled_early(client_id);
            if !cancelled_early {
                routing
                    .flights
                    .insert(client_id.clone(), index, progress_token, cancel);
            }
            !cancelled_early
        };
        if !registered {
            return None;
        }
        let result = self
            .relay_inner(upstream, client_id, outgoing, cancelled)
            .await;
        lock(&self.routing).flights.remove(client_id);
        result
    }

    async fn relay_inner(
        &self,
        upstream: &Upstream,
        client_id: &RequestId,
        outgoing: Outgoing<'_>,
        mut cancelled: oneshot::Receiver<()>,
    ) -> Option<Result<Value, Refusal>> {
        let start = async {
            match outgoing {
                Outgoing::Request(method, params) => upstream.start(method, params).await,
                Outgoing::Call(call) => upstream.start_call(call).await,
            }
        };
        let flight = tokio::select! {
            started = start => started,
            _ = &mut cancelled => return None,
        };
        let flight = match flight {
            Ok(flight) => flight,
            Err(failure) => return Some(Err(self.unavailable(upstream, failure, false))),
        };
        let upstream_id = flight.id;
        lock(&self.routing)
            .flights
            .set_upstream_id(client_id, upstream_id);
        tokio::select! {
            answer = flight.wait(upstream.spec.request_timeout) => match answer {
                Ok(response) => Some(response.outcome.map_err(Refusal::Upstream)),
                Err(failure) => {
                    if failure.timed_out {
                        upstream.cancel(upstream_id, "timed out at the gateway").await;
                    }
                    Some(Err(self.unavailable(upstream, failure, true)))
                }
            },
            _ = cancelled => {
                upstream.cancel(upstream_id, "cancelled by the client").await;
                None
            }
        }
    }

    /// The refusal for a request that got no answer, with the error the client reads.
    fn unavailable(&self, upstream: &Upstream, failure: Failure, sent: bool) -> Refusal {
        tracing::warn!(session = %self.id, upstream = %upstream.spec.name, "{}", failure.message);
        let mut data = json!({ "palisade": { "reason": "upstream-unavailable", "upstream": upstream.spec.name } });
        if let (Some(after), Some(Value::Object(p))) =
            (failure.retry_after, data.get_mut("palisade"))
        {
            p.insert(
                "retryAfterMs".into(),
                json!(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
            );
        }
        let message = if failure.timed_out {
            format!("upstream `{}` did not answer in time", upstream.spec.name)
        } else {
            format!("upstream `{}` is unavailable", upstream.spec.name)
        };
        Refusal::Unavailable {
            error: ErrorObject::new(UPSTREAM_UNAVAILABLE, message).with_data(data),
            failure,
            sent,
        }
    }

    async fn broadcast_request(
        &self,
        method: &str,
        params: Option<Value>,
        capability: &str,
    ) -> Answer {
        let targets = self
            .upstreams
            .iter()
            .filter(|u| u.capability(capability).is_some());
        let answers =
            futures_util::future::join_all(targets.map(|u| u.request(method, params.clone())))
                .await;
        for answer in answers {
            if let Err(failure) = answer {
                tracing::warn!(session = %self.id, "{method}: {}", failure.message);
            }
        }
        Ok(json!({}))
    }
}

/// What goes upstream: a plain request, or a call the pipeline authorized.
pub(super) enum Outgoing<'a> {
    Request(&'a str, Option<Value>),
    Call(&'a Authorized),
}

impl Outgoing<'_> {
    fn params(&self) -> Option<&Value> {
        match self {
            Outgoing::Request(_, params) => params.as_ref(),
            Outgoing::Call(call) => call.head().params.as_ref(),
        }
    }
}

/// Why a relayed request brought back no result.
pub(super) enum Refusal {
    /// The upstream answered with this JSON-RPC error.
    Upstream(ErrorObject),
    /// No answer came: `error` is for the client; `sent` says whether the
    /// request had reached the upstream.
    Unavailable {
        error: ErrorObject,
        failure: Failure,
        sent: bool,
    },
}

impl Refusal {
    pub(super) fn into_error(self) -> ErrorObject {
        match self {
            Refusal::Upstream(error) | Refusal::Unavailable { error, .. } => error,
        }
    }
}

pub(super) fn error_value(error: ErrorObject) -> Value {
    serde_json::to_value(error)
        .unwrap_or_else(|_| json!({"code": -32603, "message": "internal error"}))
}

pub(super) fn rpc_error_from(value: Value) -> ErrorObject {
    ErrorObject {
        code: value.get("code").and_then(Value::as_i64).unwrap_or(-32603),
        message: value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        data: value.get("data").cloned(),
    }
}

pub(super) fn respond(id: RequestId, answer: Answer) -> Response {
    match answer {
        Ok(result) => Response::result(id, result),
        Err(error) => Response::error(Some(id), error),
    }
}
