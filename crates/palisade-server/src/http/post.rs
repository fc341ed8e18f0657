//! POST: a client's message, and the answer to a request, as plain JSON or
//! as an SSE stream when something has to reach the client first.

use std::collections::hash_map::Entry as Slot;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response as HttpResponse};
use futures_util::stream;
use http::{HeaderMap, HeaderValue, StatusCode};
use palisade_core::{Principal, SessionEnd};
use palisade_mcp::jsonrpc::INVALID_REQUEST;
use palisade_mcp::protocol::{header, method};
use palisade_mcp::{Message, RequestId, Response};
use tokio::sync::mpsc;

use super::auth::{authenticate, challenge, same_principal};
use super::guards::{accepts, check_content_type, check_origin, refuse, rpc_error, session_of};
use super::outbox::HttpOutbox;
use super::streams::{KEEPALIVE_FRAME, frame, next_or_keepalive, sse_response};
use super::{Entry, STREAM_QUEUE, Server, message_response};
use crate::gateway::Gateway;
use crate::session::{Outbox, Session};
use crate::upstream::lock;

pub(super) async fn post_message(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: Body,
) -> HttpResponse {
    if let Err(refused) = check_origin(&server, &headers) {
        return refused.respond(&server);
    }
    if let Err(refused) = check_content_type(&headers) {
        return refused.respond(&server);
    }
    let (json_ok, sse_ok) = (
        accepts(&headers, "application/json"),
        accepts(&headers, "text/event-stream"),
    );
    if !json_ok && !sse_ok {
        return refuse(
            &server,
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
                &server,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("message exceeds the {limit}-byte limit"),
            );
        }
        Err(_) => {
            return refuse(
                &server,
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
            let message = server
                .gateway
                .seam()
                .apply(Message::Response(e.to_response()));
            return message_response(StatusCode::BAD_REQUEST, &message);
        }
    };
    let principal = match authenticate(&server, &headers).await {
        Ok(principal) => principal,
        Err(refused) => return refused,
    };
    if let Message::Request(request) = &message
        && request.method == method::INITIALIZE
    {
        return initialize(&server, message, principal).await;
    }
    let entry = match session_of(&server, &headers) {
        Ok(entry) => entry,
        Err(refused) => return refused.respond(&server),
    };
    if let Err(failure) = same_principal(entry.session.principal(), &principal) {
        return challenge(&server, &failure);
    }
    match message {
        Message::Notification(notification) => {
            entry.session.handle_notification(notification).await;
            StatusCode::ACCEPTED.into_response()
        }
        Message::Response(response) => {
            entry.session.handle_response(response).await;
            StatusCode::ACCEPTED.into_response()
        }
        Message::Request(request) => answer(&server, entry, request, json_ok, sse_ok).await,
    }
}

async fn initialize(server: &Arc<Server>, message: Message, principal: Principal) -> HttpResponse {
    let Message::Request(request) = message else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // Taken before any upstream starts, so concurrent initializes cannot
    // overshoot the cap.
    let mut slot = Arc::clone(&server.slots).try_acquire_owned();
    if slot.is_err()
        && let Some(evicted) = server.evict_least_recently_used()
    {
        tracing::info!(session = %evicted.session.id, "closing the least recently used idle session to make room");
        evicted.close(SessionEnd::Evicted).await;
        // Its place under the cap is given back when its entry goes.
        drop(evicted);
        slot = Arc::clone(&server.slots).try_acquire_owned();
    }
    let Ok(slot) = slot else {
        return rpc_error(
            server,
            StatusCode::SERVICE_UNAVAILABLE,
            Some(request.id),
            INVALID_REQUEST,
            "too many sessions, and every one is working; end one or try later",
        );
    };
    let outbox = Arc::new(HttpOutbox::default());
    let opened = server
        .gateway
        .open_session(
            request.params,
            Arc::clone(&outbox) as Arc<dyn Outbox>,
            principal,
        )
        .await;
    let (session, result) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let message = Message::Response(Response::error(Some(request.id), error));
            return message_response(StatusCode::OK, &server.gateway.seam().apply(message));
        }
    };
    let id = session.id.to_string();
    let entry = Entry {
        session,
        outbox,
        _slot: slot,
    };
    lock(&server.sessions).insert(id.clone(), Arc::new(entry));
    let message = Message::Response(Response::result(request.id, result));
    let mut response = message_response(StatusCode::OK, &server.gateway.seam().apply(message));
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
    gateway: Arc<Gateway>,
    session: Arc<Session>,
    id: RequestId,
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(work) = self.work.take() {
            tracing::debug!(session = %self.session.id, request = %self.id, "client left before the answer; cancelling");
            // No runtime means palisade is shutting down: the session's
            // upstreams are being closed anyway.
            if tokio::runtime::Handle::try_current().is_ok() {
                self.gateway.spawn(work);
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
    server: &Server,
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
                return rpc_error(server, StatusCode::OK, Some(id), INVALID_REQUEST, message);
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
            let _ = tx.send(response).await;
        }
    });
    // The request is worked on right here until its first message: most
    // answer at once, as plain JSON, without a hand-off to another task.
    let mut work = Detached {
        work: Some(work),
        gateway: Arc::clone(&server.gateway),
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
        Some(message) if json_ok && matches!(message.get(), Message::Response(_)) => {
            // Answered: what is left of the work is its return.
            work.work = None;
            return message_response(StatusCode::OK, &message);
        }
        Some(message) => message,
    };
    // Something comes before the answer: stream it, and let the work go on in
    // a task of its own.
    if let Some(running) = work.work.take() {
        server.gateway.spawn(running);
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
            let done = matches!(message.get(), Message::Response(_));
            if done {
                guard.armed = false;
                rx.close();
            }
            Some((Ok::<_, Infallible>(frame(&message)), (None, rx, guard)))
        },
    );
    sse_response(Body::from_stream(events))
}
