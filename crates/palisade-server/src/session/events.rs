//! What upstreams send on their own: requests for the client, notifications, in order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use palisade_core::{AuditEvent, Bounded, Finding, PromptDigest};
use palisade_mcp::jsonrpc::{ErrorObject, INTERNAL_ERROR};
use palisade_mcp::protocol::method;
use palisade_mcp::{Message, Notification, Request, RequestId, ServerRequest};
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

    pub(super) fn on_upstream_message(self: &Arc<Self>, event: Event) {
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
    /// Sampling and elicitation are recorded first, relayed or refused; one
    /// whose record cannot be written does not reach the client.
    fn relay_server_request(
        self: &Arc<Self>,
        upstream: usize,
        mut request: Request,
        related: Option<u64>,
    ) {
        let (record, refused) = match self.screen(upstream, &mut request) {
            Some((record, refused)) => (Some(record), refused),
            None => (None, None),
        };
        if let Some(why) = refused {
            return self.refuse_server_request(upstream, request.id, &why, record);
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
                record,
            );
        };
        let forwarded = Forwarded {
            upstream,
            ours,
            theirs: request.id.clone(),
            related: client_request,
        };
        let request = Request {
            id: RequestId::from(ours),
            ..request
        };
        let Some(record) = record else {
            return self.deliver(forwarded, request);
        };
        // Intent before the act: the record is written before the request
        // goes, and a request that cannot be recorded does not go. Its
        // routing entry is already in place, so that the upstream's
        // cancellation of it, arriving meanwhile, finds it.
        let event = record.event(self, true);
        let session = Arc::clone(self);
        self.gateway.spawn(async move {
            if let Err(failure) = session.gateway.pipeline.record(&event).await {
                tracing::error!(session = %session.id, "{failure}");
                if lock(&session.routing)
                    .server_requests
                    .take(forwarded.ours)
                    .is_some()
                {
                    let why = format!("palisade could not record this request: {failure}");
                    session.refuse_server_request(forwarded.upstream, forwarded.theirs, &why, None);
                }
                return;
            }
            // The upstream withdrew it (or gave up on it) while it was recorded.
            if !lock(&session.routing)
                .server_requests
                .contains(forwarded.ours)
            {
                return;
            }
            session.deliver(forwarded, request);
        });
    }

    /// What a request of an upstream's needs before it may reach the
    /// client: for sampling and elicitation, their record (without its
    /// verdict), and the reason to refuse it when there is one. A sampling
    /// request's prompt is digested as the upstream sent it, then passes
    /// the inbound filter. Other requests are plumbing: nothing.
    fn screen(
        &self,
        upstream: usize,
        request: &mut Request,
    ) -> Option<(ServerRequestRecord, Option<String>)> {
        let prompt = match ServerRequest::parse(&request.method) {
            Some(ServerRequest::SamplingCreateMessage) => {
                Some(PromptDigest::of_sampling(request.params.as_ref()))
            }
            Some(ServerRequest::ElicitationCreate) => None,
            Some(
                ServerRequest::Ping
                | ServerRequest::RootsList
                | ServerRequest::TasksGet
                | ServerRequest::TasksResult
                | ServerRequest::TasksList
                | ServerRequest::TasksCancel,
            )
            | None => return None,
        };
        let (findings, refused) = match prompt {
            Some(_) => self.filter_sampling(upstream, request),
            None => (Vec::new(), None),
        };
        let name = self.upstreams.get(upstream).map(|u| u.spec.name.as_str());
        let record = ServerRequestRecord {
            upstream: Bounded::new(name.unwrap_or_default()),
            method: Bounded::new(request.method.as_str()),
            prompt,
            findings,
        };
        Some((record, refused))
    }

    /// Sends a request forwarded under palisade's id to the client; when the
    /// client cannot take it, its upstream is told at once.
    fn deliver(&self, forwarded: Forwarded, request: Request) {
        if !self.send_to_client(Message::Request(request), forwarded.related.as_ref()) {
            lock(&self.routing).server_requests.take(forwarded.ours);
            self.refuse_server_request(
                forwarded.upstream,
                forwarded.theirs,
                "the client has no open stream to receive it",
                None,
            );
        }
    }

    /// Layer 4 on a prompt an upstream wants the client's model to answer:
    /// its text cleaned in place, the session tainted where the policy says;
    /// the findings, and the reason to refuse it when there is one.
    fn filter_sampling(
        &self,
        upstream: usize,
        request: &mut Request,
    ) -> (Vec<Finding>, Option<String>) {
        let (Some(inbound), Some(upstream)) =
            (self.gateway.inbound.as_ref(), self.upstreams.get(upstream))
        else {
            return (Vec::new(), None);
        };
        let source =
            palisade_core::Target::new(upstream.spec.name.as_str(), request.method.as_str());
        let Some(params) = request.params.as_mut() else {
            return (Vec::new(), None);
        };
        let checked = inbound.check_server_request(&source, &self.id, params);
        if let Some(taint) = checked.taint {
            self.facts.taint(taint);
        }
        let refused = checked
            .refused
            .map(|why| format!("palisade refused this request: {why}"));
        (checked.findings, refused)
    }

    /// Answers an upstream's request with an error, after writing its
    /// record (`relayed: false`) when it has one.
    fn refuse_server_request(
        &self,
        upstream: usize,
        id: RequestId,
        why: &str,
        record: Option<ServerRequestRecord>,
    ) {
        let Some(upstream) = self.upstreams.get(upstream).cloned() else {
            return;
        };
        let error = ErrorObject::new(INTERNAL_ERROR, why);
        let event = record.map(|record| record.event(self, false));
        let gateway = Arc::clone(&self.gateway);
        let session = self.id.clone();
        self.gateway.spawn(async move {
            if let Some(event) = event
                && let Err(failure) = gateway.pipeline.record(&event).await
            {
                tracing::error!(session = %session, "{failure}");
            }
            upstream.respond(id, Err(error)).await;
        });
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

/// A request an upstream sent, as palisade forwards it to the client.
struct Forwarded {
    upstream: usize,
    /// palisade's id for it (the routing entry's key).
    ours: u64,
    /// The upstream's.
    theirs: RequestId,
    /// The client request it belongs to, whose stream carries it.
    related: Option<RequestId>,
}

/// The record of a sampling or elicitation request, but for whether it is relayed.
struct ServerRequestRecord {
    upstream: Bounded,
    method: Bounded,
    prompt: Option<PromptDigest>,
    findings: Vec<Finding>,
}

impl ServerRequestRecord {
    fn event(self, session: &Session, relayed: bool) -> AuditEvent<'static> {
        AuditEvent::ServerRequest {
            time: session.gateway.pipeline.now(),
            session: session.id.clone(),
            principal: session.principal.clone(),
            upstream: self.upstream,
            method: self.method,
            relayed,
            prompt: self.prompt,
            findings: self.findings,
        }
    }
}
