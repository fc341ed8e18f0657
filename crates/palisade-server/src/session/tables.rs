//! The tables a session keeps (requests in progress, where each went, requests from upstreams, tasks), each holding its own bound.
//!
//! Every table lives in the session's one `Routing` lock and none does I/O:
//! a caller takes the lock, asks, and lets go before it awaits anything.
//! Whatever depends on the time takes the current instant as a parameter.
//!
//! `RequestIds` and `Flights` hold one entry per client request in progress,
//! each removed when its request ends; the others learn from what upstreams
//! send, so each caps what it keeps.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use palisade_core::CallId;
use palisade_mcp::RequestId;
use serde_json::Value;
use tokio::sync::oneshot;

/// Requests from upstreams a client may leave unanswered at once; more are refused.
pub(super) const MAX_SERVER_REQUESTS: usize = 256;
/// Tasks remembered per session, for routing `tasks/*`; the oldest are forgotten first.
pub(super) const MAX_TASKS: usize = 1024;

// ---------------------------------------------------------------- RequestIds

/// Ids of the client's requests in progress, and which of them the client
/// cancelled before they reached an upstream: those must not reach it
/// afterwards. An id is free again once its request ends.
#[derive(Debug, Default)]
pub(super) struct RequestIds {
    in_use: HashSet<RequestId>,
    cancelled_early: HashSet<RequestId>,
}

impl RequestIds {
    /// Takes `id` for a request starting now; false when a request in
    /// progress already has it (a second one would take over the first's
    /// cancellation, progress and stream).
    #[must_use]
    pub(super) fn claim(&mut self, id: &RequestId) -> bool {
        self.in_use.insert(id.clone())
    }

    /// Whether no request is in progress.
    pub(super) fn is_empty(&self) -> bool {
        self.in_use.is_empty()
    }

    /// The request `id` ended: its id is free, its early cancellation forgotten.
    pub(super) fn release(&mut self, id: &RequestId) {
        self.in_use.remove(id);
        self.cancelled_early.remove(id);
    }

    /// The client cancelled `id` before it reached an upstream. Only a
    /// request in progress is marked (an unknown id marks nothing, so it
    /// cannot hold back a later request under that id); true when marked.
    pub(super) fn cancel_early(&mut self, id: &RequestId) -> bool {
        self.in_use.contains(id) && {
            self.cancelled_early.insert(id.clone());
            true
        }
    }

    /// Whether `id` was cancelled before it reached an upstream.
    pub(super) fn is_cancelled_early(&self, id: &RequestId) -> bool {
        self.cancelled_early.contains(id)
    }
}

// ------------------------------------------------------------------- Flights

/// A client request sent (or being sent) to an upstream.
#[derive(Debug)]
struct Flight {
    upstream: usize,
    /// The upstream's id for it, once it is sent.
    upstream_id: Option<u64>,
    progress_token: Option<Value>,
    /// Signalled once, when the client cancels.
    cancel: Option<oneshot::Sender<()>>,
}

/// The client's requests being worked on upstream, by the client's id: the
/// upstream each went to, its id there, its progress token, and how to stop
/// it. Whoever inserts one removes it when the answer is in.
#[derive(Debug, Default)]
pub(super) struct Flights {
    by_client_id: HashMap<RequestId, Flight>,
}

impl Flights {
    /// The client's request `client_id` is going to `upstream`; `cancel` stops it.
    pub(super) fn insert(
        &mut self,
        client_id: RequestId,
        upstream: usize,
        progress_token: Option<Value>,
        cancel: oneshot::Sender<()>,
    ) {
        let flight = Flight {
            upstream,
            upstream_id: None,
            progress_token,
            cancel: Some(cancel),
        };
        self.by_client_id.insert(client_id, flight);
    }

    /// The request's answer is in (or will never come).
    pub(super) fn remove(&mut self, client_id: &RequestId) {
        self.by_client_id.remove(client_id);
    }

    /// The request reached its upstream, which knows it as `upstream_id`.
    pub(super) fn set_upstream_id(&mut self, client_id: &RequestId, upstream_id: u64) {
        if let Some(flight) = self.by_client_id.get_mut(client_id) {
            flight.upstream_id = Some(upstream_id);
        }
    }

    /// Signals the request's cancellation (once); false when no such request is in flight.
    pub(super) fn cancel(&mut self, client_id: &RequestId) -> bool {
        let Some(flight) = self.by_client_id.get_mut(client_id) else {
            return false;
        };
        if let Some(cancel) = flight.cancel.take() {
            let _ = cancel.send(());
        }
        true
    }

    /// The client request of `upstream`'s that carries progress token `token`.
    pub(super) fn owner_of_progress_token(
        &self,
        upstream: usize,
        token: &Value,
    ) -> Option<RequestId> {
        self.by_client_id
            .iter()
            .find(|(_, f)| f.upstream == upstream && f.progress_token.as_ref() == Some(token))
            .map(|(id, _)| id.clone())
    }

    /// The client request an upstream's own message belongs to: the one the
    /// transport named by its upstream id (`related`), or else the only one
    /// in flight to that upstream.
    pub(super) fn related(&self, upstream: usize, related: Option<u64>) -> Option<RequestId> {
        let mut candidates = self
            .by_client_id
            .iter()
            .filter(|(_, f)| f.upstream == upstream);
        match related {
            Some(upstream_id) => candidates
                .find(|(_, f)| f.upstream_id == Some(upstream_id))
                .map(|(id, _)| id.clone()),
            None => match (candidates.next(), candidates.next()) {
                (Some((id, _)), None) => Some(id.clone()),
                (Some(_), Some(_)) | (None, _) => None,
            },
        }
    }
}

// ------------------------------------------------------------ ServerRequests

/// A request an upstream sent the client, waiting for the client's answer.
#[derive(Debug)]
struct ServerRequest {
    upstream: usize,
    /// The upstream's own id for it.
    theirs: RequestId,
    since: Instant,
    /// The upstream's request timeout: past it, the upstream has given up.
    timeout: Duration,
}

/// Requests upstreams sent the client (sampling, elicitation, roots), by the
/// id palisade gave them, at most [`MAX_SERVER_REQUESTS`] at once.
#[derive(Debug, Default)]
pub(super) struct ServerRequests {
    by_ours: HashMap<u64, ServerRequest>,
}

impl ServerRequests {
    /// Remembers the request `upstream` sent as `theirs`, forwarded to the
    /// client as `ours`, at `now`; `timeout` is the upstream's request
    /// timeout. When full, those older than their upstream's timeout are
    /// dropped first (the upstream gave up on them; the client's answer
    /// would find nobody). False when it is still full: refuse the request.
    #[must_use]
    pub(super) fn insert(
        &mut self,
        ours: u64,
        upstream: usize,
        theirs: RequestId,
        now: Instant,
        timeout: Duration,
    ) -> bool {
        if self.by_ours.len() >= MAX_SERVER_REQUESTS {
            self.by_ours.retain(|_, waiting| {
                now.saturating_duration_since(waiting.since) < waiting.timeout
            });
        }
        if self.by_ours.len() >= MAX_SERVER_REQUESTS {
            return false;
        }
        let waiting = ServerRequest {
            upstream,
            theirs,
            since: now,
            timeout,
        };
        self.by_ours.insert(ours, waiting);
        true
    }

    /// Forgets the request palisade forwarded as `ours`: the upstream and its
    /// id for it, to answer or to forget.
    pub(super) fn take(&mut self, ours: u64) -> Option<(usize, RequestId)> {
        self.by_ours
            .remove(&ours)
            .map(|waiting| (waiting.upstream, waiting.theirs))
    }

    /// Whether the request palisade forwards as `ours` is still waiting.
    pub(super) fn contains(&self, ours: u64) -> bool {
        self.by_ours.contains_key(&ours)
    }

    /// palisade's id for the request `upstream` sent as `theirs` (as the
    /// upstream wrote it, in a `notifications/cancelled`, say).
    pub(super) fn find(&self, upstream: usize, theirs: &Value) -> Option<u64> {
        self.by_ours
            .iter()
            .find(|(_, w)| w.upstream == upstream && w.theirs.to_value() == *theirs)
            .map(|(ours, _)| *ours)
    }
}

// --------------------------------------------------------------------- Tasks

/// Tasks created through this session: task id → the upstream that holds it
/// and the call that created it. Beyond [`MAX_TASKS`], the oldest is forgotten.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    by_id: HashMap<String, (usize, CallId)>,
    /// The ids of `by_id`, oldest first.
    order: VecDeque<String>,
}

impl Tasks {
    /// The call `call` to `upstream` created task `task`. A task id known
    /// already takes the new upstream and call, and keeps its age.
    pub(super) fn remember(&mut self, task: &str, upstream: usize, call: CallId) {
        if let Some(known) = self.by_id.get_mut(task) {
            *known = (upstream, call);
            return;
        }
        while self.by_id.len() >= MAX_TASKS {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
        self.by_id.insert(task.to_owned(), (upstream, call));
        self.order.push_back(task.to_owned());
    }

    /// The upstream that holds `task`, and the call that created it.
    pub(super) fn get(&self, task: &str) -> Option<(usize, CallId)> {
        self.by_id.get(task).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RequestId {
        RequestId::from(n)
    }

    fn named(s: &str) -> RequestId {
        RequestId::String(s.to_owned())
    }

    // -------------------------------------------------------- RequestIds

    #[test]
    fn an_id_is_claimed_once_until_released() {
        let mut ids = RequestIds::default();
        assert!(ids.claim(&id(1)));
        assert!(!ids.claim(&id(1)), "a second claim of an id in use");
        assert!(ids.claim(&named("1")), "a string id is not the number");
        ids.release(&id(1));
        assert!(ids.claim(&id(1)), "a released id can be claimed again");
    }

    #[test]
    fn only_an_id_in_use_is_cancelled_early_and_release_forgets_it() {
        let mut ids = RequestIds::default();
        assert!(!ids.cancel_early(&id(7)), "no request 7 is in progress");
        assert!(!ids.is_cancelled_early(&id(7)));
        assert!(
            ids.claim(&id(7)),
            "a stray cancel must not hold the id back"
        );
        assert!(!ids.is_cancelled_early(&id(7)));
        assert!(ids.cancel_early(&id(7)));
        assert!(ids.is_cancelled_early(&id(7)));
        assert!(!ids.is_cancelled_early(&id(8)));
        ids.release(&id(7));
        assert!(!ids.is_cancelled_early(&id(7)), "released with its request");
        assert!(ids.claim(&id(7)));
        assert!(
            !ids.is_cancelled_early(&id(7)),
            "a new request under the id"
        );
    }

    #[test]
    fn a_cancel_stops_the_flight_or_else_the_request_at_the_door() {
        let mut routing = super::super::Routing::default();
        assert!(routing.request_ids.claim(&id(1)));
        assert!(routing.request_ids.claim(&id(2)));
        let mut flying = fly(&mut routing.flights, id(1), 0, None);
        routing.cancel(&id(1));
        assert_eq!(flying.try_recv(), Ok(()));
        assert!(
            !routing.request_ids.is_cancelled_early(&id(1)),
            "it had left"
        );
        routing.cancel(&id(2));
        assert!(
            routing.request_ids.is_cancelled_early(&id(2)),
            "not yet sent"
        );
        routing.cancel(&id(3));
        assert!(
            !routing.request_ids.is_cancelled_early(&id(3)),
            "not in progress"
        );
    }

    // ----------------------------------------------------------- Flights

    /// Inserts a flight and returns what its cancellation signals.
    fn fly(
        flights: &mut Flights,
        client: RequestId,
        upstream: usize,
        token: Option<Value>,
    ) -> oneshot::Receiver<()> {
        let (cancel, cancelled) = oneshot::channel();
        flights.insert(client, upstream, token, cancel);
        cancelled
    }

    #[test]
    fn cancel_signals_its_flight_once_and_only_while_it_flies() {
        let mut flights = Flights::default();
        let mut one = fly(&mut flights, id(1), 0, None);
        let mut two = fly(&mut flights, id(2), 0, None);
        assert!(!flights.cancel(&id(3)), "no flight 3");
        assert!(flights.cancel(&id(1)));
        assert_eq!(one.try_recv(), Ok(()));
        assert!(two.try_recv().is_err(), "flight 2 was not cancelled");
        assert!(flights.cancel(&id(1)), "still in flight, though signalled");
        flights.remove(&id(1));
        assert!(!flights.cancel(&id(1)), "removed");
    }

    #[test]
    fn progress_tokens_belong_to_their_upstream_only() {
        let mut flights = Flights::default();
        let _a = fly(&mut flights, id(1), 0, Some(Value::from("t")));
        let _b = fly(&mut flights, id(2), 1, Some(Value::from(5)));
        let _c = fly(&mut flights, id(3), 1, None);
        let check = |upstream: usize, token: Value, expected: Option<RequestId>| {
            assert_eq!(
                flights.owner_of_progress_token(upstream, &token),
                expected,
                "upstream {upstream}, token {token}"
            );
        };
        check(0, Value::from("t"), Some(id(1)));
        check(1, Value::from("t"), None);
        check(1, Value::from(5), Some(id(2)));
        check(1, Value::from("5"), None);
        check(0, Value::from(5), None);
        check(1, Value::Null, None);
    }

    #[test]
    fn related_is_the_named_flight_or_the_only_one() {
        let mut flights = Flights::default();
        let _a = fly(&mut flights, id(1), 0, None);
        let _b = fly(&mut flights, id(2), 1, None);
        let _c = fly(&mut flights, id(3), 1, None);
        flights.set_upstream_id(&id(2), 40);
        flights.set_upstream_id(&id(3), 41);
        flights.set_upstream_id(&id(9), 42);
        let check = |upstream: usize, related: Option<u64>, expected: Option<RequestId>| {
            assert_eq!(
                flights.related(upstream, related),
                expected,
                "upstream {upstream}, related {related:?}"
            );
        };
        check(0, None, Some(id(1)));
        check(0, Some(40), None);
        check(1, None, None);
        check(1, Some(40), Some(id(2)));
        check(1, Some(41), Some(id(3)));
        check(1, Some(42), None);
        check(2, None, None);
    }

    // ---------------------------------------------------- ServerRequests

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn server_requests_refuse_past_the_bound_while_none_expired() {
        let mut waiting = ServerRequests::default();
        let start = Instant::now();
        for ours in 0..MAX_SERVER_REQUESTS as u64 {
            assert!(waiting.insert(ours, 0, id(ours), start, SECOND));
        }
        let just_before = start + SECOND - Duration::from_millis(1);
        assert!(!waiting.insert(1000, 0, id(1000), just_before, SECOND));
        assert_eq!(waiting.take(1000), None, "the refused one is not kept");
        assert_eq!(waiting.take(0), Some((0, id(0))));
        assert!(waiting.insert(1000, 0, id(1000), just_before, SECOND));
        assert!(!waiting.insert(1001, 0, id(1001), just_before, SECOND));
    }

    #[test]
    fn server_requests_drop_those_past_their_upstreams_timeout_when_full() {
        let mut waiting = ServerRequests::default();
        let start = Instant::now();
        // Half to a quick upstream (1 s), half to a slow one (1 min).
        let half = MAX_SERVER_REQUESTS as u64 / 2;
        for ours in 0..MAX_SERVER_REQUESTS as u64 {
            let (upstream, timeout) = if ours < half {
                (0, SECOND)
            } else {
                (1, 60 * SECOND)
            };
            assert!(waiting.insert(ours, upstream, id(ours), start, timeout));
        }
        assert!(waiting.insert(1000, 0, id(1000), start + SECOND, SECOND));
        for ours in 0..half {
            assert_eq!(waiting.take(ours), None, "{ours} expired");
        }
        assert_eq!(waiting.take(half), Some((1, id(half))));
        assert_eq!(waiting.take(1000), Some((0, id(1000))));
    }

    #[test]
    fn server_requests_are_not_dropped_before_full() {
        let mut waiting = ServerRequests::default();
        let start = Instant::now();
        assert!(waiting.insert(1, 0, id(11), start, SECOND));
        assert!(waiting.insert(2, 0, id(12), start + 60 * SECOND, SECOND));
        assert_eq!(
            waiting.take(1),
            Some((0, id(11))),
            "old, but there was room"
        );
    }

    #[test]
    fn server_requests_are_found_by_upstream_and_their_id() {
        let mut waiting = ServerRequests::default();
        let now = Instant::now();
        assert!(waiting.insert(1, 0, id(5), now, SECOND));
        assert!(waiting.insert(2, 1, id(5), now, SECOND));
        assert!(waiting.insert(3, 1, named("x"), now, SECOND));
        let check = |upstream: usize, theirs: Value, expected: Option<u64>| {
            assert_eq!(
                waiting.find(upstream, &theirs),
                expected,
                "upstream {upstream}, their id {theirs}"
            );
        };
        check(0, Value::from(5), Some(1));
        check(1, Value::from(5), Some(2));
        check(1, Value::from("x"), Some(3));
        check(0, Value::from("x"), None);
        check(1, Value::from("5"), None);
        check(2, Value::from(5), None);
        assert_eq!(waiting.take(2), Some((1, id(5))));
        assert_eq!(waiting.take(2), None, "taken once");
        assert_eq!(waiting.find(1, &Value::from(5)), None);
    }

    // ------------------------------------------------------------- Tasks

    #[test]
    fn tasks_route_to_their_upstream_and_creating_call() {
        let mut tasks = Tasks::default();
        tasks.remember("a", 0, CallId(10));
        tasks.remember("b", 1, CallId(11));
        let check = |tasks: &Tasks, task: &str, expected: Option<(usize, CallId)>| {
            assert_eq!(tasks.get(task), expected, "{task}");
        };
        check(&tasks, "a", Some((0, CallId(10))));
        check(&tasks, "b", Some((1, CallId(11))));
        check(&tasks, "c", None);
        tasks.remember("a", 1, CallId(12));
        check(&tasks, "a", Some((1, CallId(12))));
    }

    #[test]
    fn the_oldest_task_is_forgotten_past_the_bound() {
        let mut tasks = Tasks::default();
        for n in 0..MAX_TASKS {
            tasks.remember(&format!("t{n}"), 0, CallId(n as u64));
        }
        // Known already: no room is needed, nothing is forgotten.
        tasks.remember("t0", 1, CallId(0));
        assert_eq!(tasks.get("t0"), Some((1, CallId(0))));
        tasks.remember("new", 0, CallId(9999));
        assert_eq!(tasks.get("t0"), None, "the oldest, though just renewed");
        assert!(tasks.get("t1").is_some());
        assert!(tasks.get("new").is_some());
        tasks.remember("newer", 0, CallId(10_000));
        assert_eq!(tasks.get("t1"), None);
        assert!(tasks.get("t2").is_some());
        assert_eq!(tasks.by_id.len(), MAX_TASKS);
        assert_eq!(tasks.order.len(), MAX_TASKS);
    }
}
