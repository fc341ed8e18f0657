//! One client session: routes each message between the client and the right upstream.
//!
//! The gateway intercepts what it must (initialize, listing, tool calls,
//! naming, cancellation, server-to-client requests) and passes the rest
//! through unchanged. Tool calls, and only they, go through the pipeline.
//!
//! - `listing`: merged listings, and which tools each upstream lists;
//! - `routing`: which upstream a name or a URI belongs to;
//! - `tools`: tool calls, through the pipeline;
//! - `events`: what upstreams send on their own (requests, notifications).

mod events;
mod listing;
mod routing;
mod tools;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use palisade_core::{Principal, SessionId};
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND};
use palisade_mcp::protocol::method;
use palisade_mcp::{Message, Notification, Request, RequestId, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::denial::UPSTREAM_UNAVAILABLE;
use crate::gateway::Gateway;
use crate::upstream::{Failure, Upstream, lock};

pub(crate) use events::SessionSink;
use listing::Listing;

/// Where messages to the client go. `related` names the client request a
/// message belongs to, so HTTP can put it on that request's stream.
pub trait Outbox: Send + Sync {
    /// Queues `message`; false when the client cannot take it now.
    fn send(&self, message: Message, related: Option<&RequestId>) -> bool;
}

/// A client request being worked on upstream.
struct Flight {
    upstream: usize,
    upstream_id: Option<u64>,
    progress_token: Option<Value>,
    cancel: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Routing {
    flights: HashMap<RequestId, Flight>,
    /// Requests upstreams sent to the client: palisade's id → (upstream, their id).
    server_requests: HashMap<u64, ServerRequest>,
    /// Resource URIs (and template prefixes) learned from listings → upstream.
    resources: HashMap<String, usize>,
    templates: Vec<(String, usize)>,
    /// Each upstream's tool names (its own, unprefixed) from its latest full
    /// listing; forgotten when it says its list changed.
    listed_tools: HashMap<usize, HashSet<String>>,
    /// Ids of the client's requests in progress.
    in_use: HashSet<RequestId>,
    /// Requests in progress that the client cancelled before they reached an
    /// upstream: they must not reach it afterwards.
    cancelled_early: HashSet<RequestId>,
}

/// A request an upstream sent the client, waiting for the client's answer.
struct ServerRequest {
    upstream: usize,
    /// The upstream's own id for it.
    id: RequestId,
    since: Instant,
}

/// Holds a request id for as long as its request is in progress.
struct InUse<'s> {
    session: &'s Session,
    id: RequestId,
}

impl<'s> InUse<'s> {
    fn claim(session: &'s Session, id: &RequestId) -> Option<Self> {
        let fresh = lock(&session.routing).in_use.insert(id.clone());
        fresh.then(|| InUse {
            session,
            id: id.clone(),
        })
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        let mut routing = lock(&self.session.routing);
        routing.in_use.remove(&self.id);
        routing.cancelled_early.remove(&self.id);
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
        Arc::new(Self {
            id,
            gateway,
            principal,
            upstreams,
            outbox,
            routing: Mutex::new(Routing::default()),
            next_server_request: AtomicU64::new(1),
            last_seen: Mutex::new(Instant::now()),
        })
    }

    pub fn idle_for(&self) -> std::time::Duration {
        lock(&self.last_seen).elapsed()
    }

    fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    /// Ends every upstream session.
    pub async fn close(&self) {
        tracing::info!(session = %self.id, "session closed");
        futures_util::future::join_all(self.upstreams.iter().map(|u| u.close())).await;
    }

    // ------------------------------------------------------------ from the client

    /// Answers one client request. `None` means the client cancelled it, and
    /// per the protocol no answer is sent.
    pub async fn handle_request(self: &Arc<Self>, request: Request) -> Option<Response> {
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

    async fn dispatch_request(self: &Arc<Self>, request: Request) -> Option<Response> {
        let Request { id, method, params } = request;
        let answer = match method.as_str() {
            method::PING => Ok(json!({})),
            method::INITIALIZE => Err(ErrorObject::new(
                INVALID_REQUEST,
                "the session is already initialized",
            )),
            method::TOOLS_LIST => self.list(&id, Listing::Tools, params).await?,
            method::PROMPTS_LIST => self.list(&id, Listing::Prompts, params).await?,
            method::RESOURCES_LIST => self.list(&id, Listing::Resources, params).await?,
            method::RESOURCES_TEMPLATES_LIST => self.list(&id, Listing::Templates, params).await?,
            method::TOOLS_CALL => return self.call_tool(id, params).await,
            method::PROMPTS_GET => match self.route_named(Listing::Prompts, params) {
                Ok((upstream, params)) => {
                    return self.forward(upstream, id, &method, Some(params)).await;
                }
                Err(error) => Err(error),
            },
            method::RESOURCES_READ
            | method::RESOURCES_SUBSCRIBE
            | method::RESOURCES_UNSUBSCRIBE => {
                let uri = params
                    .as_ref()
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str);
                match uri.map(|uri| self.route_uri(uri)) {
                    Some(Ok(upstream)) => return self.forward(upstream, id, &method, params).await,
                    Some(Err(error)) => Err(error),
                    None => Err(ErrorObject::new(
                        INVALID_PARAMS,
                        "`params.uri` must be a string",
                    )),
                }
            }
            method::COMPLETION_COMPLETE => match self.route_completion(params) {
                Ok((upstream, params)) => {
                    return self.forward(upstream, id, &method, Some(params)).await;
                }
                Err(error) => Err(error),
            },
            method::LOGGING_SET_LEVEL => self.broadcast_request(&method, params, "logging").await,
            _ => match self.single_upstream() {
                // One upstream: anything palisade does not know passes through unchanged.
                Some(upstream) => return self.forward(upstream, id, &method, params).await,
                None => Err(ErrorObject::new(
                    METHOD_NOT_FOUND,
                    format!("method `{method}` is not supported by palisade"),
                )),
            },
        };
        Some(respond(id, answer))
    }

    pub async fn handle_notification(self: &Arc<Self>, notification: Notification) {
        self.touch();
        match notification.method.as_str() {
            // The gateway already completed each upstream's handshake.
            method::INITIALIZED => {}
            method::CANCELLED => {
                let target = notification
                    .params
                    .as_ref()
                    .and_then(|p| p.get("requestId"))
                    .cloned();
                if let Some(Ok(id)) = target.map(RequestId::from_value) {
                    self.cancel(&id);
                }
            }
            method::ROOTS_LIST_CHANGED => {
                for upstream in &self.upstreams {
                    upstream
                        .send(Message::Notification(notification.clone()))
                        .await;
                }
            }
            // Other notifications pass to a single upstream; anything else
            // sent as a notification (a `tools/call` without an id, say) would
            // act upstream without passing the pipeline, and is dropped.
            other if other.starts_with("notifications/") => {
                if let Some(index) = self.single_upstream()
                    && let Some(upstream) = self.upstreams.get(index)
                {
                    upstream.send(Message::Notification(notification)).await;
                }
            }
            other => {
                tracing::debug!(session = %self.id, "dropped a `{other}` sent as a notification")
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
        let target = key.and_then(|k| lock(&self.routing).server_requests.remove(&k));
        match target {
            Some(ServerRequest { upstream, id, .. }) => {
                if let Some(upstream) = self.upstreams.get(upstream) {
                    upstream.respond(id, response.outcome).await;
                }
            }
            None => tracing::debug!(session = %self.id, "client answered an unknown request"),
        }
    }

    /// Stops a client request: tells its upstream, and drops the answer.
    pub fn cancel(&self, client_id: &RequestId) {
        let mut routing = lock(&self.routing);
        let routing = &mut *routing;
        if let Some(flight) = routing.flights.get_mut(client_id) {
            if let Some(cancel) = flight.cancel.take() {
                let _ = cancel.send(());
            }
        } else if routing.in_use.contains(client_id) {
            // Still on its way (listing, pipeline): stop it at the door.
            routing.cancelled_early.insert(client_id.clone());
        }
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
        let answer = self.relay(index, &id, method, params).await?;
        Some(respond(id, answer.map_err(Refusal::into_error)))
    }

    async fn relay(
        &self,
        index: usize,
        client_id: &RequestId,
        method: &str,
        params: Option<Value>,
    ) -> Option<Result<Value, Refusal>> {
        let Some(upstream) = self.upstreams.get(index) else {
            let error = ErrorObject::new(METHOD_NOT_FOUND, "no such upstream");
            return Some(Err(Refusal::Unavailable {
                detail: error.message.clone(),
                error,
            }));
        };
        let progress_token = params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("progressToken"))
            .cloned();
        let (cancel, cancelled) = oneshot::channel();
        let registered = {
            let mut routing = lock(&self.routing);
            let cancelled_early = routing.cancelled_early.contains(client_id);
            if !cancelled_early {
                let flight = Flight {
                    upstream: index,
                    upstream_id: None,
                    progress_token,
                    cancel: Some(cancel),
                };
                routing.flights.insert(client_id.clone(), flight);
            }
            !cancelled_early
        };
        if !registered {
            return None;
        }
        let result = self
            .relay_inner(upstream, client_id, method, params, cancelled)
            .await;
        lock(&self.routing).flights.remove(client_id);
        result
    }

    async fn relay_inner(
        &self,
        upstream: &Upstream,
        client_id: &RequestId,
        method: &str,
        params: Option<Value>,
        mut cancelled: oneshot::Receiver<()>,
    ) -> Option<Result<Value, Refusal>> {
        let flight = tokio::select! {
            started = upstream.start(method, params) => started,
            _ = &mut cancelled => return None,
        };
        let flight = match flight {
            Ok(flight) => flight,
            Err(failure) => return Some(Err(self.unavailable(upstream, &failure))),
        };
        let upstream_id = flight.id;
        if let Some(f) = lock(&self.routing).flights.get_mut(client_id) {
            f.upstream_id = Some(upstream_id);
        }
        tokio::select! {
            answer = flight.wait(upstream.spec.request_timeout) => match answer {
                Ok(response) => Some(response.outcome.map_err(Refusal::Upstream)),
                Err(failure) => {
                    if failure.timed_out {
                        upstream.cancel(upstream_id, "timed out at the gateway").await;
                    }
                    Some(Err(self.unavailable(upstream, &failure)))
                }
            },
            _ = cancelled => {
                upstream.cancel(upstream_id, "cancelled by the client").await;
                None
            }
        }
    }

    fn unavailable(&self, upstream: &Upstream, failure: &Failure) -> Refusal {
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
            detail: format!("{message}: {}", failure.message),
            error: ErrorObject::new(UPSTREAM_UNAVAILABLE, message).with_data(data),
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

/// Why a relayed request brought back no result.
pub(super) enum Refusal {
    /// The upstream answered with this JSON-RPC error.
    Upstream(ErrorObject),
    /// No answer came: `error` is for the client, `detail` for the audit record.
    Unavailable { error: ErrorObject, detail: String },
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
