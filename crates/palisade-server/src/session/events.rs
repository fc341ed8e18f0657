//! What upstreams send on their own: requests for the client, notifications, in order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use palisade_mcp::jsonrpc::{ErrorObject, INTERNAL_ERROR};
use palisade_mcp::protocol::method;
use palisade_mcp::{Message, Notification, Request, RequestId};
use serde_json::{Value, json};

use super::{Routing, ServerRequest, Session};
use crate::upstream::{Event, EventSink, lock};

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

/// Requests from upstreams a client may leave unanswered at once; more are refused.
const MAX_SERVER_REQUESTS: usize = 256;

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

impl Session {
    // ----------------------------------------------------------- from upstream

    pub(super) fn on_upstream_message(&self, event: Event) {
        let Event {
            upstream,
            message,
            related,
        } = event;
        match message {
            Message::Request(request) => self.relay_server_request(upstream, request, related),
            Message::Notification(notification) => {
                self.relay_notification(upstream, notification, related);
            }
            Message::Response(_) => {}
        }
    }

    /// Passes a request from an upstream (sampling, elicitation, roots) to the
    /// client under an id of palisade's, or refuses it at once when the client
    /// cannot take it: an upstream must never wait on a request nobody carries.
    fn relay_server_request(&self, upstream: usize, request: Request, related: Option<u64>) {
        let ours = self.next_server_request.fetch_add(1, Ordering::Relaxed);
        let client_request = {
            let mut routing = lock(&self.routing);
            if routing.server_requests.len() >= MAX_SERVER_REQUESTS {
                // The upstream gave up on those it sent longer ago than its
                // own request timeout; the client's answer would find nobody.
                let now = Instant::now();
                let upstreams = &self.upstreams;
                routing.server_requests.retain(|_, waiting| {
                    upstreams.get(waiting.upstream).is_some_and(|u| {
                        now.saturating_duration_since(waiting.since) < u.spec.request_timeout
                    })
                });
            }
            if routing.server_requests.len() >= MAX_SERVER_REQUESTS {
                drop(routing);
                return self.refuse_server_request(
                    upstream,
                    request.id,
                    "too many requests are waiting for the client",
                );
            }
            let waiting = ServerRequest {
                upstream,
                id: request.id.clone(),
                since: Instant::now(),
            };
            routing.server_requests.insert(ours, waiting);
            related_client_request(&routing, upstream, related)
        };
        let theirs = request.id.clone();
        let forwarded = Request {
            id: RequestId::from(ours),
            ..request
        };
        if !self.send_to_client(Message::Request(forwarded), client_request.as_ref()) {
            lock(&self.routing).server_requests.remove(&ours);
            self.refuse_server_request(
                upstream,
                theirs,
                "the client has no open stream to receive it",
            );
        }
    }

    fn refuse_server_request(&self, upstream: usize, id: RequestId, why: &str) {
        let Some(upstream) = self.upstreams.get(upstream).cloned() else {
            return;
        };
        let error = ErrorObject::new(INTERNAL_ERROR, why);
        self.gateway
            .spawn(async move { upstream.respond(id, Err(error)).await });
    }

    /// Passes an upstream's notification to the client, on the stream of the
    /// request it belongs to. One that names a request or token this upstream
    /// has no part in is dropped: it could only confuse another's.
    fn relay_notification(
        &self,
        upstream: usize,
        mut notification: Notification,
        related: Option<u64>,
    ) {
        let client_request = {
            let mut routing = lock(&self.routing);
            match notification.method.as_str() {
                method::PROGRESS => {
                    let token = notification
                        .params
                        .as_ref()
                        .and_then(|p| p.get("progressToken"));
                    let owner = routing
                        .flights
                        .iter()
                        .find(|(_, f)| {
                            f.upstream == upstream
                                && token.is_some()
                                && f.progress_token.as_ref() == token
                        })
                        .map(|(id, _)| id.clone());
                    match owner {
                        Some(owner) => Some(owner),
                        None => return,
                    }
                }
                method::CANCELLED => {
                    // The upstream withdrew a request it sent the client: name it by palisade's id.
                    let theirs = notification
                        .params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .cloned();
                    let ours = routing
                        .server_requests
                        .iter()
                        .find(|(_, w)| w.upstream == upstream && Some(w.id.to_value()) == theirs)
                        .map(|(ours, _)| *ours);
                    let (Some(ours), Some(Value::Object(params))) =
                        (ours, notification.params.as_mut())
                    else {
                        return;
                    };
                    routing.server_requests.remove(&ours);
                    params.insert("requestId".into(), json!(ours));
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
        // A notification the client cannot take now is lost; the outbox logs it.
        self.send_to_client(Message::Notification(notification), client_request.as_ref());
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
