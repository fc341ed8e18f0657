//! What upstreams send on their own: requests for the client, notifications, in order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use palisade_mcp::jsonrpc::{ErrorObject, INTERNAL_ERROR};
use palisade_mcp::protocol::method;
use palisade_mcp::{Message, Notification, Request, RequestId};
use serde_json::{Value, json};

use super::Session;
use super::listing::Listing;
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
    fn relay_server_request(&self, upstream: usize, mut request: Request, related: Option<u64>) {
        if request.method == method::SAMPLING_CREATE_MESSAGE
            && let Some(why) = self.filter_sampling(upstream, &mut request)
        {
            return self.refuse_server_request(upstream, request.id, &why);
        }
        let ours = self.next_server_request.fetch_add(1, Ordering::Relaxed);
        // Past its upstream's timeout, a request is given up on.
        let timeout = self
            .upstreams
            .get(upstream)
            .map_or(Duration::ZERO, |u| u.spec.request_timeout);
        let client_request = {
            let mut routing = lock(&self.routing);
            let waiting = routing.server_requests.insert(
                ours,
                upstream,
                request.id.clone(),
                Instant::now(),
                timeout,
            );
            waiting.then(|| routing.flights.related(upstream, related))
        };
        let Some(client_request) = client_request else {
            return self.refuse_server_request(
                upstream,
                request.id,
                "too many requests are waiting for the client",
            );
        };
        let theirs = request.id.clone();
        let forwarded = Request {
            id: RequestId::from(ours),
            ..request
        };
        if !self.send_to_client(Message::Request(forwarded), client_request.as_ref()) {
            lock(&self.routing).server_requests.take(ours);
            self.refuse_server_request(
                upstream,
                theirs,
                "the client has no open stream to receive it",
            );
        }
    }

    /// Layer 4 on a prompt an upstream wants the client's model to answer:
    /// its text cleaned in place, the session tainted where the policy says,
    /// findings recorded; the reason to refuse it, when there is one.
    fn filter_sampling(&self, upstream: usize, request: &mut Request) -> Option<String> {
        let inbound = self.gateway.inbound.as_ref()?;
        let name = self.upstreams.get(upstream)?.spec.name.clone();
        let source = palisade_core::Target::new(name.as_str(), request.method.as_str());
        let params = request.params.as_mut()?;
        let checked = inbound.check_server_request(&source, &self.id, params);
        if let Some(taint) = checked.taint {
            self.facts.taint(taint);
        }
        if checked.findings.is_empty() {
            return None;
        }
        let event = palisade_core::AuditEvent::ServerRequestFiltered {
            time: self.gateway.pipeline.now(),
            session: self.id.clone(),
            principal: self.principal.clone(),
            upstream: palisade_core::Bounded::new(name.as_str()),
            method: palisade_core::Bounded::new(request.method.as_str()),
            refused: checked.refused.is_some(),
            findings: checked.findings,
        };
        let gateway = Arc::clone(&self.gateway);
        let session = self.id.clone();
        self.gateway.spawn(async move {
            if let Err(failure) = gateway.pipeline.record(&event).await {
                tracing::error!(session = %session, "{failure}");
            }
        });
        checked
            .refused
            .map(|why| format!("palisade refused this request: {why}"))
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
                    let owner =
                        token.and_then(|t| routing.flights.owner_of_progress_token(upstream, t));
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
                    let ours = theirs.and_then(|t| routing.server_requests.find(upstream, &t));
                    let (Some(ours), Some(Value::Object(params))) =
                        (ours, notification.params.as_mut())
                    else {
                        return;
                    };
                    routing.server_requests.take(ours);
                    params.insert("requestId".into(), json!(ours));
                    None
                }
                method::TOOLS_LIST_CHANGED => {
                    routing.catalog.forget(upstream, &[Listing::Tools]);
                    None
                }
                method::PROMPTS_LIST_CHANGED => {
                    routing.catalog.forget(upstream, &[Listing::Prompts]);
                    None
                }
                method::RESOURCES_LIST_CHANGED => {
                    routing
                        .catalog
                        .forget(upstream, &[Listing::Resources, Listing::Templates]);
                    None
                }
                _ => routing.flights.related(upstream, related),
            }
        };
        // A notification the client cannot take now is lost; the outbox logs it.
        self.send_to_client(Message::Notification(notification), client_request.as_ref());
    }
}
