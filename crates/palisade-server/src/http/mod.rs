//! The Streamable HTTP listener: POST for messages, GET for the server's stream, DELETE to end.
//!
//! A request's answer is plain JSON when the upstream answers straight
//! away, and becomes an SSE stream as soon as anything else (progress, a
//! sampling request, a log message) has to reach the client first.
//!
//! - `listener`: the accept loop, and each connection served by hyper;
//! - `connections`: the caps on connections, and the deadlines of idle ones;
//! - `guards`: what a request must pass before it reaches a session;
//! - `post`: POST, a client's message and the answer to it;
//! - `streams`: SSE framing, GET (the server's stream), DELETE and `/healthz`;
//! - `outbox`: where a session's messages to the client go.

mod activity;
mod admin;
mod auth;
mod connections;
mod guards;
mod listener;
mod outbox;
mod post;
mod streams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use palisade_core::{Redacted, SessionEnd};
use palisade_mcp::Message;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::gateway::Gateway;
use crate::session::Session;
use crate::upstream::lock;
use outbox::HttpOutbox;

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

impl Server {
    /// Takes out of the table the session unused for longest among those
    /// with nothing in progress (no request, no open GET stream), if any.
    fn evict_least_recently_used(&self) -> Option<Arc<Entry>> {
        let mut sessions = lock(&self.sessions);
        let victim = sessions
            .iter()
            .filter(|(_, entry)| entry.is_idle())
            .max_by_key(|(_, entry)| entry.session.idle_for())
            .map(|(id, _)| id.clone())?;
        sessions.remove(&victim)
    }
}

impl Entry {
    fn is_idle(&self) -> bool {
        let listening = lock(&self.outbox.standalone)
            .as_ref()
            .is_some_and(|stream| !stream.is_closed());
        !listening && !self.session.is_working()
    }

    /// Ends the session and its streams: the client's open SSE responses
    /// finish instead of keeping their connections (and a shutdown) waiting.
    async fn close(&self, reason: SessionEnd) {
        self.session.close(reason).await;
        lock(&self.outbox.standalone).take();
        lock(&self.outbox.streams).clear();
    }
}

async fn close_all(entries: Vec<Arc<Entry>>, reason: SessionEnd) {
    futures_util::future::join_all(entries.iter().map(|e| e.close(reason))).await;
}

/// How long a shutdown waits for open connections once every session is closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Binds the configured address. Separate from [`serve`] so the caller can
/// report the real port when the config asks for port 0.
pub async fn bind(gateway: &Gateway) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(gateway.config.server.listen).await?;
    let addr = listener.local_addr()?;
    let scheme = if gateway.config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    gateway
        .access
        .listening(scheme, addr, &gateway.config.server.path);
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
    // Housekeeping, not a call's work: stopped, not drained, at shutdown.
    #[expect(
        clippy::disallowed_methods,
        reason = "the reaper is aborted when serving ends"
    )]
    let reaper = tokio::spawn(reap_idle(Arc::downgrade(&server)));
    let app = Router::new()
        .route(
            &path,
            get(streams::open_stream)
                .post(post::post_message)
                .delete(streams::end_session),
        )
        .route("/healthz", get(streams::health))
        .route("/activity", get(activity::list))
        .route("/admin/approvals", get(admin::list))
        .route("/admin/approvals/{id}", get(admin::show))
        .route("/admin/approvals/{id}/approve", post(admin::approve))
        .route("/admin/approvals/{id}/deny", post(admin::deny))
        .route(
            "/.well-known/oauth-protected-resource",
            get(auth::resource_metadata),
        )
        .route(
            &format!("/.well-known/oauth-protected-resource{path}"),
            get(auth::resource_metadata),
        )
        .with_state(Arc::clone(&server));
    let open = listener::Listener::new(listener, Arc::clone(&server), app)
        .accept_until(shutdown)
        .await;
    // Sessions first: that ends their streams, so the connections carrying
    // them can finish.
    let entries = lock(&server.sessions).drain().map(|(_, e)| e).collect();
    close_all(entries, SessionEnd::Shutdown).await;
    open.close(SHUTDOWN_GRACE).await;
    // Any session opened while the connections finished.
    let entries = lock(&server.sessions).drain().map(|(_, e)| e).collect();
    close_all(entries, SessionEnd::Shutdown).await;
    reaper.abort();
    server.gateway.drain().await;
    Ok(())
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
        close_all(idle, SessionEnd::Idle).await;
    }
}

/// A JSON-RPC message as a response body: only what passed the redaction seam.
fn message_response(status: StatusCode, message: &Redacted<Message>) -> HttpResponse {
    json_response(status, message.get().to_bytes())
}

/// A JSON response: a message (see [`message_response`]) or, for `/healthz`, a JSON document.
fn json_response(status: StatusCode, body: impl Into<Body>) -> HttpResponse {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.into(),
    )
        .into_response()
}
