//! One client session: routes each message between the client and the right upstream.
//!
//! The gateway intercepts what it must (initialize, listing, tool calls,
//! naming, cancellation, server-to-client requests) and passes the rest
//! through unchanged. Tool calls, and only they, go through the pipeline.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use palisade_core::{Call, EffectClass, Principal, Reason, ReasonCode, SessionId, Stage, ToolRef};
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND};
use palisade_mcp::protocol::method;
use palisade_mcp::{Message, Notification, Request, RequestId, Response};
use palisade_pipeline::{CallResult, ExecError, Execute, Executed, Permit};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::denial::{self, UPSTREAM_UNAVAILABLE};
use crate::gateway::{Gateway, Mode};
use crate::upstream::{Event, EventSink, Failure, Upstream, lock};

/// Where messages to the client go. `related` names the client request a
/// message belongs to, so HTTP can put it on that request's stream.
pub trait Outbox: Send + Sync {
    fn send(&self, message: Message, related: Option<&RequestId>);
}

/// Hands upstream messages to the session. Messages that arrive while the
/// session is being opened (during the upstream handshakes) wait here.
#[derive(Default)]
pub(crate) struct SessionSink {
    state: Mutex<SinkState>,
}

enum SinkState {
    Opening(Vec<Event>),
    Open(Weak<Session>),
}

impl Default for SinkState {
    fn default() -> Self {
        SinkState::Opening(Vec::new())
    }
}

/// Messages kept for a session that is still opening; more are dropped.
const MAX_EARLY_EVENTS: usize = 256;

impl SessionSink {
    pub(crate) fn attach(&self, session: &Arc<Session>) {
        let early = match std::mem::replace(
            &mut *lock(&self.state),
            SinkState::Open(Arc::downgrade(session)),
        ) {
            SinkState::Opening(early) => early,
            SinkState::Open(_) => Vec::new(),
        };
        for event in early {
            session.on_upstream_message(event);
        }
    }
}

impl EventSink for SessionSink {
    fn deliver(&self, event: Event) {
        let session = match &mut *lock(&self.state) {
            SinkState::Opening(early) => {
                if early.len() < MAX_EARLY_EVENTS {
                    early.push(event);
                }
                return;
            }
            SinkState::Open(session) => session.upgrade(),
        };
        if let Some(session) = session {
            session.on_upstream_message(event);
        }
    }
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
    server_requests: HashMap<u64, (usize, RequestId)>,
    /// Resource URIs (and template prefixes) learned from listings → upstream.
    resources: HashMap<String, usize>,
    templates: Vec<(String, usize)>,
    /// Each upstream's tool names (its own, unprefixed) from its latest full
    /// listing; forgotten when it says its list changed.
    listed_tools: HashMap<usize, HashSet<String>>,
    /// Ids of the client's requests in progress.
    in_use: HashSet<RequestId>,
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
        lock(&self.session.routing).in_use.remove(&self.id);
    }
}

pub struct Session {
    pub id: SessionId,
    pub protocol_version: &'static str,
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

/// Which listing, and how its items are named.
#[derive(Clone, Copy)]
enum Listing {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl Listing {
    fn method(self) -> &'static str {
        match self {
            Listing::Tools => method::TOOLS_LIST,
            Listing::Prompts => method::PROMPTS_LIST,
            Listing::Resources => method::RESOURCES_LIST,
            Listing::Templates => method::RESOURCES_TEMPLATES_LIST,
        }
    }
    fn field(self) -> &'static str {
        match self {
            Listing::Tools => "tools",
            Listing::Prompts => "prompts",
            Listing::Resources => "resources",
            Listing::Templates => "resourceTemplates",
        }
    }
    fn capability(self) -> &'static str {
        match self {
            Listing::Tools => "tools",
            Listing::Prompts => "prompts",
            Listing::Resources | Listing::Templates => "resources",
        }
    }
}

type Answer = Result<Value, ErrorObject>;

/// Items per page of a merged listing.
const PAGE_SIZE: usize = 1000;
/// Longest a listing waits for a restarting upstream.
const MAX_LISTING_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Pages read from one upstream for one listing, against a server whose cursors never end.
const MAX_UPSTREAM_PAGES: usize = 100;

impl Session {
    pub(crate) fn start(
        id: SessionId,
        gateway: Arc<Gateway>,
        principal: Principal,
        upstreams: Vec<Arc<Upstream>>,
        outbox: Arc<dyn Outbox>,
        protocol_version: &'static str,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            protocol_version,
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
            _ => {
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
        let target = key.and_then(|k| lock(&self.routing).server_requests.remove(&k));
        match target {
            Some((index, original)) => {
                if let Some(upstream) = self.upstreams.get(index) {
                    upstream.respond(original, response.outcome).await;
                }
            }
            None => tracing::debug!(session = %self.id, "client answered an unknown request"),
        }
    }

    /// Stops a client request: tells its upstream, and drops the answer.
    pub fn cancel(&self, client_id: &RequestId) {
        let cancel = lock(&self.routing)
            .flights
            .get_mut(client_id)
            .and_then(|f| f.cancel.take());
        if let Some(cancel) = cancel {
            let _ = cancel.send(());
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
        Some(respond(id, answer.map_err(rpc_error_from)))
    }

    async fn relay(
        &self,
        index: usize,
        client_id: &RequestId,
        method: &str,
        params: Option<Value>,
    ) -> Option<Result<Value, Value>> {
        let Some(upstream) = self.upstreams.get(index) else {
            return Some(Err(error_value(ErrorObject::new(
                METHOD_NOT_FOUND,
                "no such upstream",
            ))));
        };
        let progress_token = params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("progressToken"))
            .cloned();
        let (cancel, cancelled) = oneshot::channel();
        lock(&self.routing).flights.insert(
            client_id.clone(),
            Flight {
                upstream: index,
                upstream_id: None,
                progress_token,
                cancel: Some(cancel),
            },
        );
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
    ) -> Option<Result<Value, Value>> {
        let flight = tokio::select! {
            started = upstream.start(method, params) => started,
            _ = &mut cancelled => return None,
        };
        let flight = match flight {
            Ok(flight) => flight,
            Err(failure) => return Some(Err(error_value(self.unavailable(upstream, &failure)))),
        };
        let upstream_id = flight.id;
        if let Some(f) = lock(&self.routing).flights.get_mut(client_id) {
            f.upstream_id = Some(upstream_id);
        }
        tokio::select! {
            answer = flight.wait(upstream.spec.request_timeout) => match answer {
                Ok(response) => Some(response.outcome.map_err(error_value)),
                Err(failure) => {
                    if failure.timed_out {
                        upstream.cancel(upstream_id, "timed out at the gateway").await;
                    }
                    Some(Err(error_value(self.unavailable(upstream, &failure))))
                }
            },
            _ = cancelled => {
                upstream.cancel(upstream_id, "cancelled by the client").await;
                None
            }
        }
    }

    fn unavailable(&self, upstream: &Upstream, failure: &Failure) -> ErrorObject {
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
        ErrorObject::new(UPSTREAM_UNAVAILABLE, message).with_data(data)
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

    // ---------------------------------------------------------------- listings

    /// A listing. Wrapping one server, its own pages pass through. Aggregating,
    /// every upstream is read in full (following its cursors), the items are
    /// renamed and merged in config order, and palisade pages the result: the
    /// cursor is `o:<offset>`.
    async fn list(
        &self,
        id: &RequestId,
        listing: Listing,
        params: Option<Value>,
    ) -> Option<Answer> {
        if self.gateway.mode == Mode::Wrap
            && let Some(index) = self.single_upstream()
        {
            let answer = self.relay(index, id, listing.method(), params).await?;
            return Some(answer.map_err(rpc_error_from));
        }
        let offset = match params.as_ref().and_then(|p| p.get("cursor")) {
            None | Some(Value::Null) => 0,
            Some(Value::String(c)) => {
                match c.strip_prefix("o:").and_then(|o| o.parse::<usize>().ok()) {
                    Some(offset) => offset,
                    None => return Some(Err(ErrorObject::new(INVALID_PARAMS, "invalid cursor"))),
                }
            }
            Some(_) => {
                return Some(Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "`params.cursor` must be a string",
                )));
            }
        };
        let pages = futures_util::future::join_all(
            (0..self.upstreams.len()).map(|index| self.list_one(listing, index)),
        )
        .await;
        let merged: Vec<Value> = pages.into_iter().flatten().flatten().collect();
        let page: Vec<Value> = merged
            .iter()
            .skip(offset)
            .take(PAGE_SIZE)
            .cloned()
            .collect();
        let mut result = Map::new();
        result.insert(listing.field().into(), Value::Array(page));
        if offset + PAGE_SIZE < merged.len() {
            result.insert(
                "nextCursor".into(),
                json!(format!("o:{}", offset + PAGE_SIZE)),
            );
        }
        Some(Ok(Value::Object(result)))
    }

    /// Every item one upstream lists, renamed; `None` when its listing failed
    /// (logged), which a merged listing leaves out rather than failing whole.
    async fn list_one(&self, listing: Listing, index: usize) -> Option<Vec<Value>> {
        let upstream = self.upstreams.get(index)?;
        let offers =
            upstream.init_result().is_none() || upstream.capability(listing.capability()).is_some();
        if !offers {
            return Some(Vec::new());
        }
        let mut items = Vec::new();
        let mut names = HashSet::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_UPSTREAM_PAGES {
            let params = cursor.take().map(|c| json!({ "cursor": c }));
            let mut answer = upstream.request(listing.method(), params.clone()).await;
            // An upstream restarting after a crash would vanish from the
            // listing; a short wait for it is better than a list that lies.
            if let Err(Failure {
                retry_after: Some(wait),
                ..
            }) = &answer
                && *wait <= MAX_LISTING_WAIT
            {
                tokio::time::sleep(*wait).await;
                answer = upstream.request(listing.method(), params).await;
            }
            let mut result = match answer {
                Ok(Response {
                    outcome: Ok(result),
                    ..
                }) => result,
                Ok(Response {
                    outcome: Err(error),
                    ..
                }) => {
                    tracing::warn!(session = %self.id, upstream = %upstream.spec.name, "{}: {}", listing.method(), error.message);
                    return None;
                }
                Err(failure) => {
                    tracing::warn!(session = %self.id, upstream = %upstream.spec.name, "{}: {}", listing.method(), failure.message);
                    return None;
                }
            };
            if let (Listing::Tools, Some(Value::Array(tools))) =
                (listing, result.get(listing.field()))
            {
                names.extend(
                    tools
                        .iter()
                        .filter_map(|t| t.get("name")?.as_str())
                        .map(str::to_owned),
                );
            }
            self.rename_page(listing, index, &mut result);
            if let Some(Value::Array(page)) = result.get_mut(listing.field()).map(Value::take) {
                items.extend(page);
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        if let Listing::Tools = listing {
            lock(&self.routing).listed_tools.insert(index, names);
        }
        Some(items)
    }

    fn rename_page(&self, listing: Listing, index: usize, result: &mut Value) {
        let prefix = self
            .upstreams
            .get(index)
            .map(|u| u.spec.prefix.clone())
            .unwrap_or_default();
        let Some(Value::Array(items)) = result.get_mut(listing.field()) else {
            return;
        };
        let mut routing = lock(&self.routing);
        for item in items.iter_mut() {
            match listing {
                Listing::Tools | Listing::Prompts => {
                    if let Some(Value::String(name)) = item.get_mut("name") {
                        name.insert_str(0, &prefix);
                    }
                }
                Listing::Resources => {
                    if let Some(uri) = item.get("uri").and_then(Value::as_str) {
                        routing.resources.insert(uri.to_owned(), index);
                    }
                }
                Listing::Templates => {
                    if let Some(template) = item.get("uriTemplate").and_then(Value::as_str) {
                        let fixed = template.split('{').next().unwrap_or_default().to_owned();
                        if !routing
                            .templates
                            .iter()
                            .any(|(p, i)| *p == fixed && *i == index)
                        {
                            routing.templates.push((fixed, index));
                        }
                    }
                }
            }
        }
    }

    // ----------------------------------------------------------------- routing

    /// Finds the upstream of a prefixed name; returns it with the name it has there.
    fn resolve<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        self.upstreams
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                name.strip_prefix(u.spec.prefix.as_str())
                    .map(|rest| (i, rest, u.spec.prefix.len()))
            })
            .filter(|(_, rest, _)| !rest.is_empty())
            .max_by_key(|(_, _, len)| *len)
            .map(|(i, rest, _)| (i, rest))
    }

    fn route_named(
        &self,
        listing: Listing,
        params: Option<Value>,
    ) -> Result<(usize, Value), ErrorObject> {
        let Some(Value::Object(mut params)) = params else {
            return Err(ErrorObject::new(
                INVALID_PARAMS,
                "`params` must be an object",
            ));
        };
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let what = match listing {
            Listing::Tools => "tool",
            Listing::Prompts | Listing::Resources | Listing::Templates => "prompt",
        };
        let (index, inner) = self
            .resolve(&name)
            .ok_or_else(|| ErrorObject::new(INVALID_PARAMS, format!("unknown {what} `{name}`")))?;
        params.insert("name".into(), json!(inner));
        Ok((index, Value::Object(params)))
    }

    fn route_uri(&self, uri: &str) -> Result<usize, ErrorObject> {
        if let Some(index) = self.single_upstream() {
            return Ok(index);
        }
        let routing = lock(&self.routing);
        if let Some(index) = routing.resources.get(uri) {
            return Ok(*index);
        }
        let by_template = routing
            .templates
            .iter()
            .filter(|(prefix, _)| !prefix.is_empty() && uri.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len());
        if let Some((_, index)) = by_template {
            return Ok(*index);
        }
        let serving: Vec<usize> = (0..self.upstreams.len())
            .filter(|i| {
                self.upstreams
                    .get(*i)
                    .is_some_and(|u| u.capability("resources").is_some())
            })
            .collect();
        match serving.as_slice() {
            [only] => Ok(*only),
            _ => Err(ErrorObject::new(
                INVALID_PARAMS,
                format!("no upstream is known to serve `{uri}`; list resources or templates first"),
            )),
        }
    }

    fn route_completion(&self, params: Option<Value>) -> Result<(usize, Value), ErrorObject> {
        let Some(Value::Object(mut params)) = params else {
            return Err(ErrorObject::new(
                INVALID_PARAMS,
                "`params` must be an object",
            ));
        };
        let Some(Value::Object(mut reference)) = params.remove("ref") else {
            return Err(ErrorObject::new(
                INVALID_PARAMS,
                "`params.ref` must be an object",
            ));
        };
        let index = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let (index, inner) = self.resolve(&name).ok_or_else(|| {
                    ErrorObject::new(INVALID_PARAMS, format!("unknown prompt `{name}`"))
                })?;
                reference.insert("name".into(), json!(inner));
                index
            }
            Some("ref/resource") => {
                let uri = reference
                    .get("uri")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.route_uri(&uri)?
            }
            _ => {
                return Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "`params.ref.type` must be `ref/prompt` or `ref/resource`",
                ));
            }
        };
        params.insert("ref".into(), Value::Object(reference));
        Ok((index, Value::Object(params)))
    }

    // -------------------------------------------------------------- tool calls

    async fn call_tool(self: &Arc<Self>, id: RequestId, params: Option<Value>) -> Option<Response> {
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
                    self.unavailable(upstream, &failure),
                ));
            }
        }
        let arguments = params
            .get("arguments")
            .cloned()
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
    async fn unknown_tool(&self, id: RequestId, name: &str) -> Response {
        if let Some(refused) = self.audit_unknown_tool(&id, name).await {
            return refused;
        }
        let text = format!("Unknown tool: `{name}`");
        Response::result(
            id,
            json!({ "content": [{ "type": "text", "text": text }], "isError": true }),
        )
    }

    /// Whether upstream `index` lists `tool`, reading its listing when palisade
    /// has none (the client may call without listing first). `None` when the
    /// listing cannot be read: then nothing is known to be callable.
    async fn is_listed(&self, index: usize, tool: &str) -> Option<bool> {
        let known = |routing: &Routing| {
            routing
                .listed_tools
                .get(&index)
                .map(|names| names.contains(tool))
        };
        if let Some(listed) = known(&lock(&self.routing)) {
            return Some(listed);
        }
        self.list_one(Listing::Tools, index).await?;
        known(&lock(&self.routing))
    }

    /// Records a call to a tool no upstream serves. Returns the error to send
    /// instead of the tool error when even that record cannot be written.
    async fn audit_unknown_tool(&self, id: &RequestId, name: &str) -> Option<Response> {
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

    // ----------------------------------------------------------- from upstream

    fn on_upstream_message(&self, event: Event) {
        let Event {
            upstream,
            message,
            related,
        } = event;
        match message {
            Message::Request(request) => {
                let gateway_id = self.next_server_request.fetch_add(1, Ordering::Relaxed);
                let client_request = {
                    let mut routing = lock(&self.routing);
                    routing
                        .server_requests
                        .insert(gateway_id, (upstream, request.id.clone()));
                    related_client_request(&routing, upstream, related)
                };
                let forwarded = Request {
                    id: RequestId::from(gateway_id),
                    ..request
                };
                self.outbox
                    .send(Message::Request(forwarded), client_request.as_ref());
            }
            Message::Notification(mut notification) => {
                let client_request = {
                    let mut routing = lock(&self.routing);
                    match notification.method.as_str() {
                        method::PROGRESS => {
                            let token = notification
                                .params
                                .as_ref()
                                .and_then(|p| p.get("progressToken"));
                            routing
                                .flights
                                .iter()
                                .find(|(_, f)| {
                                    f.upstream == upstream
                                        && f.progress_token.as_ref() == token
                                        && token.is_some()
                                })
                                .map(|(id, _)| id.clone())
                        }
                        method::CANCELLED => {
                            // The upstream withdrew a request it sent the client: use palisade's id for it.
                            let theirs = notification
                                .params
                                .as_ref()
                                .and_then(|p| p.get("requestId"))
                                .cloned();
                            let ours = routing
                                .server_requests
                                .iter()
                                .find(|(_, (u, id))| {
                                    *u == upstream && Some(id.to_value()) == theirs
                                })
                                .map(|(ours, _)| *ours);
                            if let (Some(ours), Some(Value::Object(p))) =
                                (ours, notification.params.as_mut())
                            {
                                p.insert("requestId".into(), json!(ours));
                            }
                            None
                        }
                        method::TOOLS_LIST_CHANGED => {
                            routing.listed_tools.remove(&upstream);
                            None
                        }
                        method::PROMPTS_LIST_CHANGED | method::RESOURCES_LIST_CHANGED => None,
                        _ => related_client_request(&routing, upstream, related),
                    }
                };
                self.outbox
                    .send(Message::Notification(notification), client_request.as_ref());
            }
            Message::Response(_) => {}
        }
    }
}

/// The client request an upstream's own message belongs to: the one the
/// transport named, or the only one in flight to that upstream.
fn related_client_request(
    routing: &Routing,
    upstream: usize,
    related: Option<u64>,
) -> Option<RequestId> {
    let mut candidates = routing
        .flights
        .iter()
        .filter(|(_, f)| f.upstream == upstream);
    match related {
        Some(upstream_id) => candidates
            .find(|(_, f)| f.upstream_id == Some(upstream_id))
            .map(|(id, _)| id.clone()),
        None => match (candidates.next(), candidates.next()) {
            (Some((id, _)), None) => Some(id.clone()),
            _ => None,
        },
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
            Some(Err(error))
                if error.get("code").and_then(Value::as_i64) == Some(UPSTREAM_UNAVAILABLE) =>
            {
                Err(ExecError(
                    error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("upstream unavailable")
                        .to_owned(),
                ))
            }
            Some(Err(error)) => Ok(Executed::RpcError(error)),
            None => {
                *lock(&self.cancelled) = true;
                Err(ExecError("cancelled by the client".into()))
            }
        }
    }
}

fn error_value(error: ErrorObject) -> Value {
    serde_json::to_value(error)
        .unwrap_or_else(|_| json!({"code": -32603, "message": "internal error"}))
}

fn rpc_error_from(value: Value) -> ErrorObject {
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

fn respond(id: RequestId, answer: Answer) -> Response {
    match answer {
        Ok(result) => Response::result(id, result),
        Err(error) => Response::error(Some(id), error),
    }
}
