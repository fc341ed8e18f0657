//! The Streamable HTTP listener: POST for messages, GET for the server's stream, DELETE to end.
//!
//! A request's answer is plain JSON when the upstream answers straight
//! away, and becomes an SSE stream as soon as anything else (progress, a
//! sampling request, a log message) has to reach the client first.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use futures_util::stream;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ORIGIN};
use http::{HeaderMap, HeaderValue, StatusCode};
use palisade_core::Principal;
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_REQUEST};
use palisade_mcp::protocol::{self, header, method};
use palisade_mcp::{Message, RequestId, Response, sse};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::gateway::Gateway;
use crate::session::{Outbox, Session};
use crate::upstream::lock;

const STREAM_QUEUE: usize = 256;

struct Server {
    gateway: Arc<Gateway>,
    sessions: Mutex<HashMap<String, Arc<Entry>>>,
    /// One permit per session that may exist, taken before its upstreams start.
    slots: Arc<Semaphore>,
}

struct Entry {
    session: Arc<Session>,
    outbox: Arc<HttpOutbox>,
    /// This session's place under `max_sessions`, given back when it ends.
    _slot: OwnedSemaphorePermit,
}

impl Entry {
    /// Ends the session and its streams: the client's open SSE responses
    /// finish instead of keeping their connections (and a shutdown) waiting.
    async fn close(&self) {
        self.session.close().await;
        lock(&self.outbox.standalone).take();
        lock(&self.outbox.streams).clear();
    }
}

async fn close_all(entries: Vec<Arc<Entry>>) {
    futures_util::future::join_all(entries.iter().map(|e| e.close())).await;
}

/// How long a shutdown waits for open connections once every session is closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Delivers messages to the stream of the request they belong to, else to the
/// GET stream. Until the client opens that, a few messages wait for it: what
/// an upstream says right after its handshake (a `list_changed`, say) is sent
/// before any client can have opened one.
#[derive(Default)]
struct HttpOutbox {
    streams: Mutex<HashMap<RequestId, mpsc::Sender<Message>>>,
    standalone: Mutex<Option<mpsc::Sender<Message>>>,
    backlog: Mutex<Vec<Message>>,
}

/// Messages kept for a GET stream not yet opened.
const BACKLOG: usize = 64;

impl Outbox for HttpOutbox {
    fn send(&self, message: Message, related: Option<&RequestId>) -> bool {
        let on_request = related.and_then(|id| lock(&self.streams).get(id).cloned());
        let target = match on_request {
            Some(stream) => stream,
            None => {
                let standalone = lock(&self.standalone);
                match standalone.as_ref() {
                    Some(stream) => stream.clone(),
                    // Only notifications wait: a request must be refused at
                    // once, not left for a stream that may never open. The
                    // GET lock is held so that one opening cannot miss this.
                    None if matches!(message, Message::Notification(_)) => {
                        let mut backlog = lock(&self.backlog);
                        if backlog.len() < BACKLOG {
                            backlog.push(message);
                            return true;
                        }
                        return false;
                    }
                    None => {
                        tracing::debug!("no open stream to the client; dropped a message to it");
                        return false;
                    }
                }
            }
        };
        let stream = target;
        let queued = stream.try_send(message).is_ok();
        if !queued {
            tracing::warn!("client stream is full or closed; dropped a message to it");
        }
        queued
    }
}

/// Binds the configured address. Separate from [`serve`] so the caller can
/// report the real port when the config asks for port 0.
pub async fn bind(gateway: &Gateway) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(gateway.config.server.listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let path = gateway.config.server.path.clone();
    let slots = Arc::new(Semaphore::new(gateway.config.server.max_sessions));
    let server = Arc::new(Server {
        gateway,
        sessions: Mutex::new(HashMap::new()),
        slots,
    });
    tokio::spawn(reap_idle(Arc::downgrade(&server)));
    let app = Router::new()
        .route(
            &path,
            get(open_stream).post(post_message).delete(end_session),
        )
        .route("/healthz", get(health))
        .with_state(Arc::clone(&server));
    let (closed, all_closed) = oneshot::channel::<()>();
    let closing = {
        let server = Arc::clone(&server);
        async move {
            shutdown.await;
            // Sessions first: that ends their streams, so the connections
            // carrying them can finish.
            let entries = lock(&server.sessions).drain().map(|(_, e)| e).collect();
            close_all(entries).await;
            let _ = closed.send(());
        }
    };
    let graceful = axum::serve(listener, app).with_graceful_shutdown(closing);
    let grace_over = async {
        match all_closed.await {
            Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
            Err(_) => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = graceful.into_future() => result,
        () = grace_over => {
            tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after shutdown; closing them");
            Ok(())
        }
    };
    let entries = lock(&server.sessions).drain().map(|(_, e)| e).collect();
    close_all(entries).await;
    result
}

async fn reap_idle(server: std::sync::Weak<Server>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        let limit = server.gateway.config.server.session_idle_timeout;
        let idle: Vec<Arc<Entry>> = {
            let mut sessions = lock(&server.sessions);
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, e)| e.session.idle_for() > limit)
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for entry in &idle {
            tracing::info!(session = %entry.session.id, "closing idle session");
        }
        close_all(idle).await;
    }
}

/// An HTTP error carrying a JSON-RPC error about no particular request.
fn refuse(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    rpc_error(status, None, INVALID_REQUEST, message)
}

fn rpc_error(
    status: StatusCode,
    id: Option<RequestId>,
    code: i64,
    message: impl Into<String>,
) -> HttpResponse {
    let body = Message::Response(Response::error(id, ErrorObject::new(code, message))).to_bytes();
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// Browsers send `Origin`; a page from an unlisted origin must not drive
/// local tools (DNS rebinding). Non-browser clients send none and pass.
/// Why a request was turned away before reaching a session.
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> HttpResponse {
        refuse(self.0, self.1)
    }
}

fn check_origin(server: &Server, headers: &HeaderMap) -> Result<(), Refused> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|origin| origin_allowed(server, origin));
    if allowed {
        Ok(())
    } else {
        Err(Refused(StatusCode::FORBIDDEN, "origin not allowed".into()))
    }
}

fn origin_allowed(server: &Server, origin: &str) -> bool {
    server
        .gateway
        .config
        .server
        .allowed_origins
        .iter()
        .any(|allowed| {
            origin == allowed
                || origin
                    .strip_prefix(allowed.as_str())
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|port| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    })
        })
}

fn accepts(headers: &HeaderMap, kind: &str) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|part| {
        let media = part.split(';').next().unwrap_or_default().trim();
        media == kind || media == "*/*"
    })
}

fn session_of(server: &Server, headers: &HeaderMap) -> Result<Arc<Entry>, Refused> {
    let Some(id) = headers
        .get(header::SESSION_ID)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "missing Mcp-Session-Id header: send `initialize` first".into(),
        ));
    };
    let Some(entry) = lock(&server.sessions).get(id).cloned() else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            "unknown or expired session: initialize a new one".into(),
        ));
    };
    if let Some(version) = headers.get(header::PROTOCOL_VERSION) {
        let version = version.to_str().unwrap_or_default();
        if !protocol::is_supported(version) {
            return Err(Refused(
                StatusCode::BAD_REQUEST,
                format!("unsupported MCP-Protocol-Version `{version}`"),
            ));
        }
    }
    Ok(entry)
}

async fn post_message(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: Body,
) -> HttpResponse {
    if let Err(refused) = check_origin(&server, &headers) {
        return refused.into_response();
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let (json_ok, sse_ok) = (
        accepts(&headers, "application/json"),
        accepts(&headers, "text/event-stream"),
    );
    if !json_ok && !sse_ok {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must include application/json or text/event-stream",
        );
    }
    let limit = server.gateway.config.server.max_message_bytes;
    // A client that sends its body slower than this holds a connection and
    // a buffer for nothing.
    let timeout = server.gateway.config.server.body_timeout;
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("message exceeds the {limit}-byte limit"),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} ms",
                    timeout.as_millis()
                ),
            );
        }
    };
    let message = match Message::parse(&bytes) {
        Ok(message) => message,
        Err(e) => {
            let body = Message::Response(e.to_response()).to_bytes();
            return (
                StatusCode::BAD_REQUEST,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response();
        }
    };
    if let Message::Request(request) = &message
        && request.method == method::INITIALIZE
    {
        return initialize(&server, message).await;
    }
    let entry = match session_of(&server, &headers) {
        Ok(entry) => entry,
        Err(refused) => return refused.into_response(),
    };
    match message {
        Message::Notification(notification) => {
            entry.session.handle_notification(notification).await;
            StatusCode::ACCEPTED.into_response()
        }
        Message::Response(response) => {
            entry.session.handle_response(response).await;
            StatusCode::ACCEPTED.into_response()
        }
        Message::Request(request) => answer(entry, request, json_ok, sse_ok).await,
    }
}

async fn initialize(server: &Arc<Server>, message: Message) -> HttpResponse {
    let Message::Request(request) = message else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // Taken before any upstream starts, so concurrent initializes cannot
    // overshoot the cap.
    let Ok(slot) = Arc::clone(&server.slots).try_acquire_owned() else {
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(request.id),
            INVALID_REQUEST,
            "too many sessions; end one or try later",
        );
    };
    let outbox = Arc::new(HttpOutbox::default());
    let opened = server
        .gateway
        .open_session(
            request.params,
            Arc::clone(&outbox) as Arc<dyn Outbox>,
            Principal::anonymous(),
        )
        .await;
    let (session, result) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let body = Message::Response(Response::error(Some(request.id), error)).to_bytes();
            return (
                StatusCode::OK,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response();
        }
    };
    let id = session.id.to_string();
    let entry = Entry {
        session,
        outbox,
        _slot: slot,
    };
    lock(&server.sessions).insert(id.clone(), Arc::new(entry));
    let body = Message::Response(Response::result(request.id, result)).to_bytes();
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(header::SESSION_ID, value);
    }
    response
}

type Work = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A request's work, driven by the HTTP handler. If the client leaves before
/// it is done, the work is not dropped half-way (its upstream would never
/// hear of it): it goes on in a task of its own, told to cancel.
struct Detached {
    work: Option<Work>,
    session: Arc<Session>,
    id: RequestId,
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(work) = self.work.take() {
            tracing::debug!(session = %self.session.id, request = %self.id, "client left before the answer; cancelling");
            // No runtime means palisade is shutting down: the session's
            // upstreams are being closed anyway.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(work);
                self.session.cancel(&self.id);
            }
        }
    }
}

/// A request's stream in the outbox, removed when the request ends however it ends.
struct StreamRegistration {
    outbox: Arc<HttpOutbox>,
    id: RequestId,
}

impl Drop for StreamRegistration {
    fn drop(&mut self) {
        lock(&self.outbox.streams).remove(&self.id);
    }
}

/// Cancels the request upstream if the client goes away before its answer.
struct CancelOnDrop {
    session: Arc<Session>,
    id: RequestId,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(session = %self.session.id, request = %self.id, "client left before the answer; cancelling");
            self.session.cancel(&self.id);
        }
    }
}

async fn answer(
    entry: Arc<Entry>,
    request: palisade_mcp::Request,
    json_ok: bool,
    sse_ok: bool,
) -> HttpResponse {
    let id = request.id.clone();
    let (tx, mut rx) = mpsc::channel(STREAM_QUEUE);
    // A client that takes JSON only gets what comes before the answer
    // (progress, sampling requests) on its GET stream instead.
    let stream = if sse_ok {
        match lock(&entry.outbox.streams).entry(id.clone()) {
            Slot::Occupied(_) => {
                let message = format!("request id {id} is already in use by a request in progress");
                let body = Message::Response(Response::error(
                    Some(id),
                    ErrorObject::new(INVALID_REQUEST, message),
                ))
                .to_bytes();
                return (
                    StatusCode::OK,
                    [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    body,
                )
                    .into_response();
            }
            Slot::Vacant(vacant) => {
                vacant.insert(tx.clone());
            }
        }
        Some(StreamRegistration {
            outbox: Arc::clone(&entry.outbox),
            id: id.clone(),
        })
    } else {
        None
    };
    let session = Arc::clone(&entry.session);
    let work: Work = Box::pin(async move {
        let response = session.handle_request(request).await;
        // Deregistered before the answer is queued, so nothing can follow it.
        drop(stream);
        if let Some(response) = response {
            let _ = tx.send(Message::Response(response)).await;
        }
    });
    // The request is worked on right here until its first message: most
    // answer at once, as plain JSON, without a hand-off to another task.
    let mut work = Detached {
        work: Some(work),
        session: Arc::clone(&entry.session),
        id: id.clone(),
    };
    let first = loop {
        let Some(running) = work.work.as_mut() else {
            break rx.recv().await;
        };
        tokio::select! {
            biased;
            message = rx.recv() => break message,
            () = running => work.work = None,
        }
    };
    let first = match first {
        None => {
            work.work = None;
            return StatusCode::ACCEPTED.into_response();
        }
        Some(Message::Response(response)) if json_ok => {
            // Answered: what is left of the work is its return.
            work.work = None;
            let body = Message::Response(response).to_bytes();
            return (
                StatusCode::OK,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response();
        }
        Some(message) => message,
    };
    // Something comes before the answer: stream it, and let the work go on in
    // a task of its own.
    if let Some(running) = work.work.take() {
        tokio::spawn(running);
    }
    let guard = CancelOnDrop {
        session: Arc::clone(&entry.session),
        id,
        armed: true,
    };
    let events = stream::unfold(
        (Some(first), rx, guard),
        |(next, mut rx, mut guard)| async move {
            let message = match next {
                Some(message) => message,
                None => match next_or_keepalive(&mut rx).await? {
                    Some(message) => message,
                    None => {
                        return Some((Ok(Bytes::from_static(KEEPALIVE_FRAME)), (None, rx, guard)));
                    }
                },
            };
            let done = matches!(message, Message::Response(_));
            if done {
                guard.armed = false;
                rx.close();
            }
            Some((Ok::<_, Infallible>(frame(&message)), (None, rx, guard)))
        },
    );
    sse_response(Body::from_stream(events))
}

/// An SSE comment: keeps idle streams open through proxies and load balancers.
const KEEPALIVE_FRAME: &[u8] = b": keepalive\n\n";
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// The next message (`Some(Some)`), a keepalive tick (`Some(None)`), or the end (`None`).
async fn next_or_keepalive(rx: &mut mpsc::Receiver<Message>) -> Option<Option<Message>> {
    match tokio::time::timeout(KEEPALIVE_EVERY, rx.recv()).await {
        Ok(Some(message)) => Some(Some(message)),
        Ok(None) => None,
        Err(_) => Some(None),
    }
}

fn frame(message: &Message) -> Bytes {
    Bytes::from(sse::encode(
        None,
        &String::from_utf8_lossy(&message.to_bytes()),
    ))
}

fn sse_response(body: Body) -> HttpResponse {
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn open_stream(State(server): State<Arc<Server>>, headers: HeaderMap) -> HttpResponse {
    if let Err(refused) = check_origin(&server, &headers) {
        return refused.into_response();
    }
    if !accepts(&headers, "text/event-stream") {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must include text/event-stream",
        );
    }
    let entry = match session_of(&server, &headers) {
        Ok(entry) => entry,
        Err(refused) => return refused.into_response(),
    };
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    {
        let mut standalone = lock(&entry.outbox.standalone);
        if standalone.as_ref().is_some_and(|s| !s.is_closed()) {
            return refuse(
                StatusCode::CONFLICT,
                "this session already has a GET stream open",
            );
        }
        for message in lock(&entry.outbox.backlog).drain(..) {
            let _ = tx.try_send(message);
        }
        *standalone = Some(tx);
    }
    let events = stream::unfold(rx, |mut rx| async move {
        let bytes = match next_or_keepalive(&mut rx).await? {
            Some(message) => frame(&message),
            None => Bytes::from_static(KEEPALIVE_FRAME),
        };
        Some((Ok::<_, Infallible>(bytes), rx))
    });
    sse_response(Body::from_stream(events))
}

async fn end_session(State(server): State<Arc<Server>>, headers: HeaderMap) -> HttpResponse {
    if let Err(refused) = check_origin(&server, &headers) {
        return refused.into_response();
    }
    let entry = match session_of(&server, &headers) {
        Ok(entry) => entry,
        Err(refused) => return refused.into_response(),
    };
    lock(&server.sessions).remove(entry.session.id.as_str());
    entry.close().await;
    StatusCode::OK.into_response()
}

async fn health(State(server): State<Arc<Server>>) -> HttpResponse {
    let gateway = &server.gateway;
    let body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "sessions": lock(&server.sessions).len(),
        "upstreams": gateway.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        "pass_through": gateway.pipeline.passed_through().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "degraded": crate::gateway::DEGRADED,
    });
    (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accept_header_parsing() {
        assert!(accepts(&headers(&[]), "application/json"));
        assert!(accepts(
            &headers(&[("accept", "application/json, text/event-stream")]),
            "text/event-stream"
        ));
        assert!(accepts(
            &headers(&[("accept", "text/event-stream;q=0.9")]),
            "text/event-stream"
        ));
        assert!(accepts(&headers(&[("accept", "*/*")]), "application/json"));
        assert!(!accepts(
            &headers(&[("accept", "text/html")]),
            "application/json"
        ));
    }
}
