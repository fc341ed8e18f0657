//! What upstreams send on their own: requests for the client, notifications, in order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use palisade_mcp::protocol::method;
use palisade_mcp::{Message, Request, RequestId};
use serde_json::{Value, json};

use super::{Routing, Session};
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
