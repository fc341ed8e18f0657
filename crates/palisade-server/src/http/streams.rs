//! SSE streams to the client: framing and keepalives, the answer stream's
//! response, GET (the server's own stream), DELETE (ending a session) and
//! `/healthz`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response as HttpResponse};
use futures_util::stream;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use palisade_core::{Redacted, SessionEnd};
use palisade_mcp::{Message, sse};
use serde_json::json;
use tokio::sync::mpsc;

use super::auth::{authenticate, challenge, same_principal};
use super::guards::{accepts, check_origin, refuse, session_of};
use super::{STREAM_QUEUE, Server, json_response};
use crate::upstream::lock;

/// An SSE comment: keeps idle streams open through proxies and load balancers.
pub(super) const KEEPALIVE_FRAME: &[u8] = b": keepalive\n\n";
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// The next message (`Some(Some)`), a keepalive tick (`Some(None)`), or the end (`None`).
pub(super) async fn next_or_keepalive(
    rx: &mut mpsc::Receiver<Redacted<Message>>,
) -> Option<Option<Redacted<Message>>> {
    match tokio::time::timeout(KEEPALIVE_EVERY, rx.recv()).await {
        Ok(Some(message)) => Some(Some(message)),
        Ok(None) => None,
        Err(_) => Some(None),
    }
}

pub(super) fn frame(message: &Redacted<Message>) -> Bytes {
    Bytes::from(sse::encode(
        None,
        &String::from_utf8_lossy(&message.get().to_bytes()),
    ))
}

pub(super) fn sse_response(body: Body) -> HttpResponse {
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

pub(super) async fn open_stream(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
) -> HttpResponse {
    if let Err(refused) = check_origin(&server, &headers) {
        return refused.respond(&server);
    }
    if !accepts(&headers, "text/event-stream") {
        return refuse(
            &server,
            StatusCode::NOT_ACCEPTABLE,
            "Accept must include text/event-stream",
        );
    }
    let principal = match authenticate(&server, &headers).await {
        Ok(principal) => principal,
        Err(refused) => return refused,
    };
    let entry = match session_of(&server, &headers) {
        Ok(entry) => entry,
        Err(refused) => return refused.respond(&server),
    };
    if let Err(failure) = same_principal(entry.session.principal(), &principal) {
        return challenge(&server, &failure);
    }
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    {
        let mut standalone = lock(&entry.outbox.standalone);
        if standalone.as_ref().is_some_and(|s| !s.is_closed()) {
            return refuse(
                &server,
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

pub(super) async fn end_session(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
) -> HttpResponse {
    if let Err(refused) = check_origin(&server, &headers) {
        return refused.respond(&server);
    }
    let principal = match authenticate(&server, &headers).await {
        Ok(principal) => principal,
        Err(refused) => return refused,
    };
    let entry = match session_of(&server, &headers) {
        Ok(entry) => entry,
        Err(refused) => return refused.respond(&server),
    };
    if let Err(failure) = same_principal(entry.session.principal(), &principal) {
        return challenge(&server, &failure);
    }
    lock(&server.sessions).remove(entry.session.id.as_str());
    entry.close(SessionEnd::Deleted).await;
    StatusCode::OK.into_response()
}

pub(super) async fn health(State(server): State<Arc<Server>>) -> HttpResponse {
    let gateway = &server.gateway;
    let limits = gateway.limits.limits.health();
    let mut degraded = crate::gateway::degraded(&gateway.config, gateway.sandboxes.as_deref());
    if let Some(detail) = &limits.detail {
        degraded.push(format!("limits: {detail}"));
    }
    let lost = gateway
        .audit_lost
        .load(std::sync::atomic::Ordering::Relaxed);
    if lost > 0 {
        degraded.push(format!(
            "audit: {lost} records could not be written and their actions went ahead (on_failure = \"continue\")"
        ));
    }
    let body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "sessions": lock(&server.sessions).len(),
        "upstreams": gateway.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        "pass_through": gateway.pipeline.passed_through().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "degraded": degraded,
        "limits": {
            "store": match &gateway.config.limits.store {
                crate::config::LimitsStore::Embedded => "embedded",
                crate::config::LimitsStore::Redis { .. } => "redis",
            },
            "degraded": limits.degraded,
            "detail": limits.detail,
        },
        "sandbox": gateway.sandboxes.as_ref().map(|s| json!({
            "features": s.host().features,
            "degraded": s.host().degraded,
            "profiles": s.profiles().keys().collect::<Vec<_>>(),
        })),
        "secrets": {
            "vault": gateway.broker.vault().describe(),
            "known": gateway.broker.redactor().known_count(),
            "rotation_overdue": gateway
                .overdue_secrets()
                .await
                .into_iter()
                .map(|(name, late)| json!({"name": name, "overdue_by": late}))
                .collect::<Vec<_>>(),
        },
    });
    json_response(StatusCode::OK, body.to_string())
}
