//! One client session's connection to one upstream MCP server: handshake, requests, restarts.
//!
//! Each client session gets its own upstream sessions (a process per stdio
//! upstream, an MCP session per HTTP upstream). That keeps server-to-client
//! requests, subscriptions and log levels from leaking between clients, and
//! is what per-session sandboxes will need.

mod builtin;
pub(crate) mod exec;
mod http;
mod stdio;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_core::{CallKind, RedactionSeam};
use palisade_mcp::jsonrpc::ErrorObject;
use palisade_mcp::protocol::{self, method};
use palisade_mcp::{
    ClientRequest, Message, Notification, Request, RequestClass, RequestId, Response,
};
use palisade_pipeline::Authorized;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::config::{self, Transport};

/// A message an upstream sent on its own initiative (a request or a notification).
#[derive(Debug)]
pub(crate) struct Event {
    pub upstream: usize,
    pub message: Message,
    /// The upstream request id this message belongs to, when the transport says so.
    pub related: Option<u64>,
}

/// Why a request to an upstream got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The upstream took longer than its `request_timeout`.
    pub timed_out: bool,
    /// palisade closed the link (the client's session ended).
    pub shut_down: bool,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
            timed_out: false,
            shut_down: false,
        }
    }

    pub(crate) fn shut_down(message: impl Into<String>) -> Self {
        Self {
            shut_down: true,
            ..Self::new(message)
        }
    }
}

type Reply = oneshot::Sender<Result<Response, Failure>>;

/// Requests in flight on one link, by the id palisade gave them upstream.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<u64, Reply>>,
    alive: AtomicBool,
}

impl Pending {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
        })
    }

    fn insert(&self, id: u64, reply: Reply) {
        lock(&self.waiting).insert(id, reply);
    }

    fn remove(&self, id: u64) -> Option<Reply> {
        lock(&self.waiting).remove(&id)
    }

    /// Delivers a response; returns false when nobody waits for that id.
    fn complete(&self, response: Response) -> bool {
        let id = match &response.id {
            Some(RequestId::Number(n)) => n.as_u64(),
            Some(RequestId::String(_)) | None => None,
        };
        match id.and_then(|id| self.remove(id)) {
            Some(reply) => {
                let _ = reply.send(Ok(response));
                true
            }
            None => false,
        }
    }

    /// Marks the link dead and fails everything still waiting on it.
    fn fail_all(&self, failure: &Failure) {
        self.alive.store(false, Ordering::SeqCst);
        let waiting: Vec<Reply> = lock(&self.waiting).drain().map(|(_, r)| r).collect();
        for reply in waiting {
            let _ = reply.send(Err(failure.clone()));
        }
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Link {
    Stdio(stdio::StdioLink),
    Http(Box<http::HttpLink>),
    Builtin(Box<builtin::BuiltinLink>),
}

impl Link {
    fn pending(&self) -> &Arc<Pending> {
        match self {
            Link::Stdio(l) => &l.pending,
            Link::Http(l) => &l.pending,
            Link::Builtin(l) => &l.pending,
        }
    }

    async fn send(&self, message: Message) -> Result<(), Failure> {
        match self {
            Link::Stdio(l) => l.send(message).await,
            Link::Http(l) => l.send(message).await,
            Link::Builtin(l) => l.send(message).await,
        }
    }

    async fn close(&self) {
        match self {
            Link::Stdio(l) => l.close().await,
            Link::Http(l) => l.close().await,
            Link::Builtin(l) => l.close().await,
        }
    }
}

/// Restart bookkeeping. The link itself lives apart from it, so that sending
/// never waits for a (re)connect in progress.
enum State {
    Down {
        failures: u32,
        retry_at: Option<Instant>,
    },
    Up {
        since: Instant,
        failures: u32,
    },
}

/// What every link needs to know about its session.
#[derive(Clone)]
pub(crate) struct LinkContext {
    pub index: usize,
    pub name: Arc<str>,
    pub max_message_bytes: usize,
    pub events: Arc<dyn EventSink>,
    pub http: reqwest::Client,
    /// Bounds every exchange with the upstream, notifications included.
    pub request_timeout: Duration,
    /// What the upstream's stderr passes before palisade logs it.
    pub seam: RedactionSeam,
    /// Supplies the secrets the upstream's configuration names.
    pub broker: Arc<palisade_secrets::Broker>,
    /// palisade's own credential variables, never passed to a child.
    pub withheld_env: Arc<[String]>,
    /// Where built-in `exec` runs and sandboxed upstreams live.
    pub sandboxes: Option<Arc<palisade_sandbox::Sandboxes>>,
    /// The session and upstream the link's egress connections are attributed to.
    pub who: palisade_egress::Attribution,
}

/// One upstream, for one client session.
pub(crate) struct Upstream {
    pub spec: Arc<config::Upstream>,
    ctx: LinkContext,
    /// The client's `initialize` params, replayed on every (re)connect.
    client_init: Value,
    /// Serializes (re)connects.
    state: tokio::sync::Mutex<State>,
    /// The live link, if any; cloned out before any I/O so no lock is held across it.
    link: Mutex<Option<Arc<Link>>>,
    closed: AtomicBool,
    next_id: AtomicU64,
    /// The upstream's `initialize` result from the latest handshake.
    init_result: Mutex<Option<Value>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.spec.name)
            .finish_non_exhaustive()
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A link that stayed up this long before dying starts its backoff afresh.
const STABLE_AFTER: Duration = Duration::from_secs(30);

fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

/// A request sent upstream, not yet answered.
pub(crate) struct InFlight {
    pub id: u64,
    reply: oneshot::Receiver<Result<Response, Failure>>,
    pending: Arc<Pending>,
}

impl Upstream {
    /// `learnt`: the `initialize` result another session got from this
    /// upstream, standing in for its capabilities until this one connects.
    pub fn new(
        spec: Arc<config::Upstream>,
        ctx: LinkContext,
        client_init: Value,
        learnt: Option<Value>,
    ) -> Self {
        Self {
            spec,
            ctx,
            client_init,
            state: tokio::sync::Mutex::new(State::Down {
                failures: 0,
                retry_at: None,
            }),
            link: Mutex::new(None),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            init_result: Mutex::new(learnt),
        }
    }

    pub fn init_result(&self) -> Option<Value> {
        lock(&self.init_result).clone()
    }

    /// The capability object the upstream declared, or `{}` before a handshake.
    pub fn capability(&self, name: &str) -> Option<Value> {
        lock(&self.init_result)
            .as_ref()
            .and_then(|r| r.get("capabilities"))
            .and_then(|c| c.get(name))
            .cloned()
    }

    fn current(&self) -> Option<Arc<Link>> {
        lock(&self.link).clone()
    }

    fn closed_failure(&self) -> Failure {
        Failure::shut_down(format!("upstream `{}` was shut down", self.spec.name))
    }

    /// Connects (or reconnects, with backoff) and performs the handshake.
    pub async fn connect(&self) -> Result<(), Failure> {
        let mut state = self.state.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Err(self.closed_failure());
        }
        let (failures, retry_at) = match &*state {
            State::Up { .. } if self.current().is_some_and(|l| l.pending().is_alive()) => {
                return Ok(());
            }
            State::Up { since, failures } => {
                let failures = if since.elapsed() > STABLE_AFTER {
                    1
                } else {
                    failures + 1
                };
                (failures, Some(Instant::now() + backoff(failures)))
            }
            State::Down { failures, retry_at } => (*failures, *retry_at),
        };
        if let State::Up { .. } = &*state {
            *state = State::Down { failures, retry_at };
            let dead = lock(&self.link).take();
            if let Some(link) = dead {
                link.close().await;
            }
            tracing::warn!(upstream = %self.spec.name, "upstream died; restarting after {:?}", backoff(failures));
        }
        if let Some(at) = retry_at {
            let now = Instant::now();
            if now < at {
                let wait = at - now;
                return Err(Failure {
                    message: format!(
                        "upstream `{}` is restarting; retry in {} ms",
                        self.spec.name,
                        wait.as_millis().max(1)
                    ),
                    retry_after: Some(wait),
                    ..Failure::new("")
                });
            }
        }
        match self.open_and_handshake().await {
            Ok(link) => {
                // A close that came during the handshake wins. `closed` is set
                // under the same lock, so it cannot slip in after this check.
                let published = {
                    let mut slot = lock(&self.link);
                    let open = !self.closed.load(Ordering::SeqCst);
                    if open {
                        *slot = Some(Arc::new(link));
                        None
                    } else {
                        Some(link)
                    }
                };
                if let Some(link) = published {
                    link.close().await;
                    return Err(self.closed_failure());
                }
                *state = State::Up {
                    since: Instant::now(),
                    failures,
                };
                Ok(())
            }
            Err(failure) => {
                let failures = failures + 1;
                *state = State::Down {
                    failures,
                    retry_at: Some(Instant::now() + backoff(failures)),
                };
                Err(failure)
            }
        }
    }

    async fn open_and_handshake(&self) -> Result<Link, Failure> {
        let link = match &self.spec.transport {
            Transport::Stdio {
                command,
                args,
                env,
                inherit_env,
                cwd,
                sandbox,
            } => {
                // The secrets are read now, for this process: a rotation
                // later restarts it (see `secrets_current`).
                let secrets = self
                    .ctx
                    .broker
                    .env(&self.spec.name)
                    .await
                    .map_err(|refusal| Failure {
                        retry_after: refusal.retry_after,
                        ..Failure::new(format!(
                            "cannot start upstream `{}`: {refusal}",
                            self.spec.name
                        ))
                    })?;
                Link::Stdio(
                    stdio::StdioLink::spawn(
                        &self.ctx,
                        command,
                        args,
                        env,
                        *inherit_env,
                        cwd.as_deref(),
                        &secrets,
                        sandbox.as_ref(),
                    )
                    .await?,
                )
            }
            Transport::Http { url, headers } => {
                Link::Http(Box::new(http::HttpLink::new(&self.ctx, url, headers)?))
            }
            Transport::Builtin { builtin, .. } => Link::Builtin(Box::new(
                builtin::BuiltinLink::new(&self.ctx, &self.client_init, *builtin),
            )),
        };
        match self.handshake(&link).await {
            Ok(()) => Ok(link),
            Err(failure) => {
                link.close().await;
                Err(failure)
            }
        }
    }

    async fn handshake(&self, link: &Link) -> Result<(), Failure> {
        let name = &self.spec.name;
        let flight = self
            .start_on(link, method::INITIALIZE, Some(self.client_init.clone()))
            .await?;
        let response = flight
            .wait(self.spec.request_timeout.min(Duration::from_secs(30)))
            .await?;
        let result = response.outcome.map_err(|e| {
            Failure::new(format!(
                "upstream `{name}` refused initialize: {} ({})",
                e.message, e.code
            ))
        })?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let version = version.as_str();
        let over_http = matches!(link, Link::Http(_));
        if !protocol::upstream_supported(version, over_http) {
            return Err(Failure::new(format!(
                "upstream `{name}` speaks protocol revision `{version}`; palisade bridges {}{}",
                protocol::UPSTREAM_VERSIONS.join(", "),
                if over_http {
                    " (2024-11-05 over stdio only)"
                } else {
                    ""
                }
            )));
        }
        if let Link::Http(http) = link {
            http.set_protocol_version(version);
        }
        *lock(&self.init_result) = Some(result);
        link.send(Message::Notification(Notification {
            method: method::INITIALIZED.into(),
            params: None,
        }))
        .await?;
        if let Link::Http(http) = link {
            http.open_event_stream().await;
        }
        tracing::info!(upstream = %name, version, "upstream connected");
        Ok(())
    }

    async fn start_on(
        &self,
        link: &Link,
        method: &str,
        params: Option<Value>,
    ) -> Result<InFlight, Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let pending = Arc::clone(link.pending());
        pending.insert(id, tx);
        let request = Message::Request(Request {
            id: RequestId::from(id),
            method: method.to_owned(),
            params,
        });
        if let Err(failure) = link.send(request).await {
            pending.remove(id);
            return Err(failure);
        }
        Ok(InFlight {
            id,
            reply: rx,
            pending,
        })
    }

    /// Sends a request, connecting first if needed. Await the answer with [`InFlight::wait`].
    ///
    /// Refuses the methods that reach a tool or its content: those are sent
    /// only as an [`Authorized`] call, by [`Upstream::start_call`].
    pub async fn start(&self, method: &str, params: Option<Value>) -> Result<InFlight, Failure> {
        if ClientRequest::parse(method).map(ClientRequest::class) == Some(RequestClass::Call) {
            return Err(Failure::new(format!(
                "`{method}` reaches upstream `{}` only through the pipeline",
                self.spec.name
            )));
        }
        self.start_any(method, params).await
    }

    /// Sends a call the pipeline authorized.
    pub async fn start_call(&self, call: &Authorized) -> Result<InFlight, Failure> {
        let (method, params) = call_request(call);
        self.start_any(method, Some(params)).await
    }

    /// A spawned upstream whose environment holds a secret that has been
    /// rotated since it started is restarted with the new value; one whose
    /// secret was revoked is stopped. Each message reads the versions (the
    /// file vault from memory unless its file changed).
    async fn secrets_current(&self) -> Result<(), Failure> {
        if !matches!(self.spec.transport, Transport::Stdio { .. })
            || self.ctx.broker.references(&self.spec.name).is_empty()
        {
            return Ok(());
        }
        let current = self.current();
        let Some(Link::Stdio(running)) = current.as_deref() else {
            return Ok(());
        };
        let wanted = self.ctx.broker.current_versions(&self.spec.name).await;
        if wanted.as_ref().is_ok_and(|w| *w == running.secret_versions) {
            return Ok(());
        }
        {
            let mut state = self.state.lock().await;
            let stale = lock(&self.link).take();
            *state = State::Down {
                failures: 0,
                retry_at: None,
            };
            drop(state);
            if let Some(link) = stale {
                link.close().await;
            }
        }
        match wanted {
            Ok(_) => {
                tracing::info!(upstream = %self.spec.name, "a secret in the upstream's environment was rotated; restarting it");
                Ok(())
            }
            Err(refusal) => Err(Failure {
                retry_after: refusal.retry_after,
                ..Failure::new(format!("upstream `{}` stopped: {refusal}", self.spec.name))
            }),
        }
    }

    async fn start_any(&self, method: &str, params: Option<Value>) -> Result<InFlight, Failure> {
        self.secrets_current().await?;
        self.connect().await?;
        let link = self.current().ok_or_else(|| {
            Failure::new(format!("upstream `{}` is not connected", self.spec.name))
        })?;
        self.start_on(&link, method, params).await
    }

    /// Sends a request and waits for its answer within the upstream's timeout.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Response, Failure> {
        let flight = self.start(method, params).await?;
        let id = flight.id;
        match flight.wait(self.spec.request_timeout).await {
            Err(failure) if failure.timed_out => {
                self.cancel(id, "timed out").await;
                Err(failure)
            }
            other => other,
        }
    }

    /// Sends a notification or a response. Dropped when the upstream is down:
    /// neither kind can be retried meaningfully after a restart.
    pub async fn send(&self, message: Message) {
        let Some(link) = self.current() else { return };
        if let Err(failure) = link.send(message).await {
            tracing::warn!(upstream = %self.spec.name, "cannot send: {}", failure.message);
        }
    }

    /// Tells the upstream to stop working on request `id`.
    pub async fn cancel(&self, id: u64, reason: &str) {
        if let Some(link) = self.current() {
            link.pending().remove(id);
        }
        let params = json!({ "requestId": id, "reason": reason });
        self.send(Message::Notification(Notification {
            method: method::CANCELLED.into(),
            params: Some(params),
        }))
        .await;
    }

    /// Answers a request the upstream sent (sampling, elicitation, roots).
    pub async fn respond(&self, id: RequestId, outcome: Result<Value, ErrorObject>) {
        self.send(Message::Response(Response {
            id: Some(id),
            outcome,
        }))
        .await;
    }

    /// Ends the upstream session: terminates the process or deletes the HTTP
    /// session. Does not wait for a connect in progress; that connect sees the
    /// close and undoes itself.
    pub async fn close(&self) {
        let link = {
            let mut slot = lock(&self.link);
            self.closed.store(true, Ordering::SeqCst);
            slot.take()
        };
        if let Some(link) = link {
            link.close().await;
        }
    }
}

impl InFlight {
    pub async fn wait(self, timeout: Duration) -> Result<Response, Failure> {
        match tokio::time::timeout(timeout, self.reply).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Failure::new("upstream connection closed before answering")),
            Err(_) => {
                self.pending.remove(self.id);
                Err(Failure {
                    timed_out: true,
                    ..Failure::new(format!(
                        "upstream did not answer within {} ms",
                        timeout.as_millis()
                    ))
                })
            }
        }
    }
}

/// The request an authorized call becomes: the target and the arguments as
/// the pipeline left them, then the client's other params (`_meta`, `task`,
/// …) as they were, in their order.
fn call_request(call: &Authorized) -> (&'static str, Value) {
    let head = call.head();
    let mut params = Map::new();
    let name = json!(head.target.name.as_ref());
    let arguments = call.arguments().clone();
    let method = match head.kind {
        CallKind::Tool => {
            params.insert("name".into(), name);
            if !arguments.is_null() {
                params.insert("arguments".into(), arguments);
            }
            ClientRequest::ToolsCall
        }
        CallKind::Prompt => {
            params.insert("name".into(), name);
            if !arguments.is_null() {
                params.insert("arguments".into(), arguments);
            }
            ClientRequest::PromptsGet
        }
        CallKind::Resource => {
            params.insert("uri".into(), name);
            ClientRequest::ResourcesRead
        }
        CallKind::Completion => {
            let reference = match head.target.name.split_once(':') {
                Some(("ref/resource", uri)) => json!({ "type": "ref/resource", "uri": uri }),
                Some((kind, name)) => json!({ "type": kind, "name": name }),
                None => json!({ "type": "ref/prompt", "name": head.target.name.as_ref() }),
            };
            params.insert("ref".into(), reference);
            if let Value::Object(fields) = arguments {
                params.extend(fields);
            }
            ClientRequest::CompletionComplete
        }
        CallKind::TaskResult => {
            params.insert("taskId".into(), name);
            ClientRequest::TasksResult
        }
    };
    if let Some(Value::Object(rest)) = &head.params {
        for (key, value) in rest {
            params.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    (method.as_str(), Value::Object(params))
}

/// Where an upstream's own messages go. Delivery is synchronous, in the order
/// the upstream sent them, so a notification about a request always reaches
/// the client before that request's answer.
pub(crate) trait EventSink: Send + Sync {
    fn deliver(&self, event: Event);
}

fn dispatch(ctx: &LinkContext, pending: &Pending, message: Message, related: Option<u64>) {
    match message {
        Message::Response(response) => {
            if !pending.complete(response) {
                tracing::debug!(upstream = %ctx.name, "response to an unknown or cancelled request");
            }
        }
        message @ (Message::Request(_) | Message::Notification(_)) => {
            let event = Event {
                upstream: ctx.index,
                message,
                related,
            };
            ctx.events.deliver(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
