//! The connections the listener holds: a cap on all of them and on each
//! client address, the deadlines of the ones doing nothing, and, when a cap
//! is reached, the idle connection that makes room for a new one.
//!
//! A connection is *busy* from the moment its request head is read until its
//! response is written; otherwise it is *idle*: waiting for its first request
//! head (or part-way through one), or kept alive between requests. Only idle
//! connections have deadlines and only idle ones are evicted: a cap reached
//! by connections that send nothing (or trickle) never turns away a client
//! that is about to send a request, it closes one of them instead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::upstream::lock;

/// Connections being closed after an eviction still hold their descriptors
/// until their tasks next run; this many may be over the cap while they go.
/// Part of the open files that the config keeps out of `max_connections`'
/// reach.
const EVICTING_SLACK: usize = 16;

#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max: usize,
    pub(super) per_client: usize,
    pub(super) header_read: Duration,
    pub(super) idle: Duration,
}

/// Why a new connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `max_connections` are open and every one of them is busy.
    Full,
    /// `max_connections_per_client` are open from this address, all busy.
    ClientFull,
    /// The connections closed to make room still hold their descriptors:
    /// wait for [`Connections::freed`], then ask again.
    Closing,
}

#[derive(Debug)]
pub(super) struct Connections {
    limits: Limits,
    table: Mutex<Table>,
    /// Told each time a connection leaves the table.
    freed: Notify,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Conn>>,
}

/// One open connection, shared by its task, its IO and the table.
#[derive(Debug)]
pub(super) struct Conn {
    id: u64,
    client: IpAddr,
    state: Mutex<State>,
    /// Wakes the connection's deadline watch when its state changes.
    changed: Notify,
    /// Cancelled to close the connection: on eviction, or at shutdown (a
    /// child of the listener's token).
    stop: CancellationToken,
}

#[derive(Debug)]
struct State {
    /// Requests whose response is not yet written.
    busy: usize,
    /// Requests begun on this connection.
    requests: u64,
    /// When it last became idle (or was accepted).
    idle_since: Instant,
    /// When the request head being read began: at accept for a new
    /// connection, at its first byte on a kept-alive one.
    head_since: Option<Instant>,
    /// Chosen to make room; closing.
    evicted: bool,
}

impl Connections {
    pub(super) fn new(limits: Limits) -> Self {
        Connections {
            limits,
            table: Mutex::new(Table::default()),
            freed: Notify::new(),
        }
    }

    /// Returns once a connection has left the table (perhaps before this was called).
    pub(super) async fn freed(&self) {
        self.freed.notified().await;
    }

    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes a new connection from `client`, evicting an idle one first if a
    /// cap is reached; refuses it when the connections in the way are all busy.
    pub(super) fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        shutdown: &CancellationToken,
    ) -> Result<Slot, Refusal> {
        let now = Instant::now();
        let mut table = lock(&self.table);
        if table.open.len() >= self.limits.max.saturating_add(EVICTING_SLACK) {
            return Err(Refusal::Closing);
        }
        let (mut open, mut from_client) = (0, 0);
        for conn in table.open.values() {
            if !lock(&conn.state).evicted {
                open += 1;
                if conn.client == client {
                    from_client += 1;
                }
            }
        }
        let made_room = if from_client >= self.limits.per_client {
            if !table.evict_one(Some(client)) {
                return Err(Refusal::ClientFull);
            }
            Some(Refusal::ClientFull)
        } else if open >= self.limits.max {
            if !table.evict_one(None) {
                return Err(Refusal::Full);
            }
            Some(Refusal::Full)
        } else {
            None
        };
        table.next_id = table.next_id.wrapping_add(1);
        let conn = Arc::new(Conn {
            id: table.next_id,
            client,
            state: Mutex::new(State {
                busy: 0,
                requests: 0,
                idle_since: now,
                head_since: Some(now),
                evicted: false,
            }),
            changed: Notify::new(),
            stop: shutdown.child_token(),
        });
        table.open.insert(conn.id, Arc::clone(&conn));
        Ok(Slot {
            connections: Arc::clone(self),
            conn,
            made_room,
        })
    }

    /// Closes the idle connection that has been idle longest, if there is
    /// one: when `accept` runs out of descriptors, that frees one.
    pub(super) fn evict_one(&self) -> bool {
        lock(&self.table).evict_one(None)
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        lock(&self.table).open.len()
    }
}

impl Table {
    /// Marks the best idle connection (of `client`, if given) for closing.
    /// Those that never began a request go first (they are what a flood of
    /// silent or trickling sockets is made of), then the longest idle, then
    /// the oldest.
    fn evict_one(&mut self, client: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .values()
            .filter(|conn| client.is_none_or(|ip| conn.client == ip))
            .filter_map(|conn| {
                let state = lock(&conn.state);
                (state.busy == 0 && !state.evicted)
                    .then(|| ((state.requests > 0, state.idle_since, conn.id), conn))
            })
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, conn)| Arc::clone(conn));
        let Some(victim) = victim else {
            return false;
        };
        lock(&victim.state).evicted = true;
        victim.stop.cancel();
        true
    }
}

/// A connection's place in the table, given back when its task ends however it ends.
#[derive(Debug)]
pub(super) struct Slot {
    connections: Arc<Connections>,
    conn: Arc<Conn>,
    /// The cap that was reached, if an idle connection was closed for this one.
    made_room: Option<Refusal>,
}

impl Slot {
    pub(super) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    pub(super) fn made_room(&self) -> Option<Refusal> {
        self.made_room
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.connections.table).open.remove(&self.conn.id);
        self.connections.freed.notify_one();
    }
}

impl Conn {
    /// A request head was read: the connection is busy until [`Busy`] drops.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        {
            let mut state = lock(&self.state);
            state.busy += 1;
            state.requests += 1;
            state.head_since = None;
        }
        self.changed.notify_one();
        Busy {
            conn: Arc::clone(self),
        }
    }

    /// Bytes arrived: on an idle kept-alive connection, a request head has begun.
    pub(super) fn received(&self) {
        let started = {
            let mut state = lock(&self.state);
            let starts = state.busy == 0 && state.head_since.is_none();
            if starts {
                state.head_since = Some(Instant::now());
            }
            starts
        };
        if started {
            self.changed.notify_one();
        }
    }

    pub(super) fn is_busy(&self) -> bool {
        lock(&self.state).busy > 0
    }

    /// Cancelled when the connection is to close: evicted, or shutting down.
    pub(super) fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// When the connection is to be closed for doing nothing: none while busy.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let state = lock(&self.state);
        if state.busy > 0 {
            None
        } else if let Some(head) = state.head_since {
            Some(head + limits.header_read)
        } else {
            Some(state.idle_since + limits.idle)
        }
    }

    /// Returns once the connection has been idle past its deadline: its
    /// request head too slow in coming, or kept alive too long unused.
    pub(super) async fn expired(&self, limits: Limits) {
        loop {
            // A permit left by `notify_one` since the last look wakes this at once.
            let changed = self.changed.notified();
            match self.deadline(&limits) {
                None => changed.await,
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
        }
    }
}

/// A request in progress on a connection: the connection is busy while one lives.
#[derive(Debug)]
pub(super) struct Busy {
    conn: Arc<Conn>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut state = lock(&self.conn.state);
            state.busy = state.busy.saturating_sub(1);
            if state.busy == 0 {
                state.idle_since = Instant::now();
                state.head_since = None;
            }
        }
        self.conn.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

    fn connections(max: usize, per_client: usize) -> Arc<Connections> {
        Arc::new(Connections::new(Limits {
            max,
            per_client,
            header_read: Duration::from_secs(1),
            idle: Duration::from_secs(3),
        }))
    }

    fn evicted(slot: &Slot) -> bool {
        slot.conn().stop().is_cancelled()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_makes_room_by_closing_the_oldest_idle_connection() {
        let table = connections(3, 3);
        let shutdown = CancellationToken::new();
        let silent = table.admit(A, &shutdown).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let served = table.admit(A, &shutdown).unwrap();
        drop(served.conn().begin()); // one request answered: kept alive
        tokio::time::advance(Duration::from_millis(10)).await;
        let late_silent = table.admit(B, &shutdown).unwrap();
        // Full. A connection that never sent a request goes first, the oldest of them.
        assert_eq!(late_silent.made_room(), None);
        let fourth = table.admit(B, &shutdown).unwrap();
        assert_eq!(fourth.made_room(), Some(Refusal::Full));
        assert!(evicted(&silent) && !evicted(&late_silent) && !evicted(&served));
        let fifth = table.admit(B, &shutdown).unwrap();
        assert!(evicted(&late_silent) && !evicted(&served));
        // Then the kept-alive one, before any busy one.
        let _busy = fifth.conn().begin();
        let _busy4 = fourth.conn().begin();
        let sixth = table.admit(B, &shutdown).unwrap();
        assert!(evicted(&served));
        let _busy6 = sixth.conn().begin();
        // All busy: refused, and nothing is closed for it.
        drop((silent, late_silent, served));
        assert_eq!(table.admit(A, &shutdown).unwrap_err(), Refusal::Full);
        assert!(!evicted(&fourth) && !evicted(&fifth) && !evicted(&sixth));
        assert_eq!(table.open(), 3);
        // Shutting down stops every connection.
        shutdown.cancel();
        assert!(evicted(&fourth) && evicted(&sixth));
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_is_held_to_its_own_share() {
        let table = connections(10, 2);
        let shutdown = CancellationToken::new();
        let first = table.admit(A, &shutdown).unwrap();
        let second = table.admit(A, &shutdown).unwrap();
        let other = table.admit(B, &shutdown).unwrap();
        // A third from A closes A's oldest idle one, never B's.
        let third = table.admit(A, &shutdown).unwrap();
        assert_eq!(third.made_room(), Some(Refusal::ClientFull));
        assert!(evicted(&first) && !evicted(&second) && !evicted(&other));
        drop(first);
        let _busy = (second.conn().begin(), third.conn().begin());
        assert_eq!(table.admit(A, &shutdown).unwrap_err(), Refusal::ClientFull);
        // Others are still taken.
        let _b = table.admit(B, &shutdown).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire_and_busy_ones_do_not() {
        let table = connections(10, 10);
        let shutdown = CancellationToken::new();
        let slot = table.admit(A, &shutdown).unwrap();
        let conn = Arc::clone(slot.conn());
        let limits = table.limits();
        // A new connection has `header_read` for its first request head.
        let start = Instant::now();
        conn.expired(limits).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Busy: no deadline however long the answer takes.
        let busy = conn.begin();
        let waited = tokio::time::timeout(Duration::from_secs(100), conn.expired(limits)).await;
        assert!(waited.is_err());
        // Kept alive: `idle` until the next request begins...
        drop(busy);
        let start = Instant::now();
        let expiry = conn.expired(limits);
        tokio::pin!(expiry);
        let early = tokio::time::timeout(Duration::from_millis(2500), &mut expiry).await;
        assert!(early.is_err());
        // ...and once it has begun, `header_read` from its first byte.
        conn.received();
        expiry.await;
        assert_eq!(start.elapsed(), Duration::from_millis(3500));
    }
}
