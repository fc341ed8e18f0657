//! The embedded store: counters in process, lock-free on the rate path, with quotas and money persisted so a restart does not hand out a fresh day.
//!
//! Counters sit in sharded maps; a rate is one atomic TAT updated by
//! compare-and-swap, so checks on different keys never wait for each other
//! and checks on one key never lose an update. A check that draws on
//! several counters applies them in order and undoes what it applied when
//! a later one refuses: a concurrent check may then see a counter fuller
//! than it ends up, which refuses more, never less.
//!
//! Quotas and money are written to the state store ([`Store`]) by
//! [`LocalBackend::flush`], which the gateway runs every few hundred
//! milliseconds and at shutdown, and read back by [`LocalBackend::load`].
//! A reservation still held when the process stopped is charged in full
//! on load: the call it was for may have run.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use palisade_store::Store;
use serde_json::json;

use crate::backend::{
    Adjust, Backend, BackendError, BackendFuture, Checked, Draw, Held, Level, Step,
};
use crate::gcra;

const SHARDS: usize = 16;
/// The state store collection the embedded counters persist in.
pub const COLLECTION: &str = "limits.counters";
/// How long a loop window outlives its last call.
const LOOP_IDLE_NANOS: u64 = 3_600 * 1_000_000_000;
/// How often expired counters and idle loop windows are swept.
const SWEEP_NANOS: u64 = 60 * 1_000_000_000;

/// One counter, and what of it was last written to the store (so a
/// flush writes only what changed, and the check path marks nothing).
#[derive(Debug)]
enum Cell {
    Rate {
        tat: AtomicU64,
        flushed: AtomicU64,
    },
    Count {
        used: AtomicU64,
        flushed: AtomicU64,
        expires: u64,
    },
    Money {
        money: Mutex<Money>,
        expires: u64,
    },
}

impl Cell {
    fn rate(tat: u64) -> Self {
        Cell::Rate {
            tat: AtomicU64::new(tat),
            flushed: AtomicU64::new(tat),
        }
    }

    fn count(used: u64, expires: u64) -> Self {
        Cell::Count {
            used: AtomicU64::new(used),
            flushed: AtomicU64::new(used),
            expires,
        }
    }

    fn money(spent: u64, expires: u64) -> Self {
        Cell::Money {
            money: Mutex::new(Money {
                spent,
                flushed: (spent, 0),
                ..Money::default()
            }),
            expires,
        }
    }
}

#[derive(Debug, Default)]
struct Money {
    spent: u64,
    reserved: u64,
    /// Reservation id → (amount, charged in full at).
    held: HashMap<u64, (u64, u64)>,
    /// (spent, reserved) as last written.
    flushed: (u64, u64),
}

impl Money {
    /// Charges in full every reservation held past its time.
    fn expire(&mut self, now: u64) {
        let spent = &mut self.spent;
        let reserved = &mut self.reserved;
        self.held.retain(|_, (amount, until)| {
            if *until > now {
                return true;
            }
            *reserved = reserved.saturating_sub(*amount);
            *spent = spent.saturating_add(*amount);
            false
        });
    }

    fn level(&self) -> u64 {
        self.spent.saturating_add(self.reserved)
    }
}

/// foldhash, not SipHash: keys are names palisade builds from
/// authenticated principals and configured tools, and the hash is half a
/// rate check's cost; each map still gets its own random seed.
type Hasher = foldhash::fast::RandomState;
type Shard = RwLock<HashMap<Box<str>, Arc<Cell>, Hasher>>;

#[derive(Debug)]
struct LoopWindow {
    steps: VecDeque<Step>,
    touched: u64,
}

/// Counters and loop windows held in this process.
#[derive(Debug)]
pub struct LocalBackend {
    shards: [Shard; SHARDS],
    hasher: Hasher,
    loops: Mutex<HashMap<Box<str>, LoopWindow>>,
    next_sweep: AtomicU64,
    /// The latest time a check was made at: when loop windows were last used.
    latest: AtomicU64,
}

impl Default for LocalBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LocalBackend {
    pub fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::with_hasher(Hasher::default()))),
            hasher: Hasher::default(),
            loops: Mutex::new(HashMap::new()),
            next_sweep: AtomicU64::new(0),
            latest: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let [first, ..] = &self.shards;
        self.shards.get(index).unwrap_or(first)
    }

    /// Runs `f` on the counter for `key`, made from `make` when there is
    /// none yet, under the shard's lock: the check path takes no reference
    /// count.
    fn with_cell<R>(
        &self,
        key: &str,
        make: impl FnOnce() -> Cell,
        f: impl FnOnce(&Cell) -> R,
    ) -> R {
        let shard = self.shard(key);
        {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(cell) = map.get(key) {
                return f(cell);
            }
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(key.into()).or_insert_with(|| Arc::new(make())))
    }

    /// The counter for `key`, made from `make` when there is none yet.
    fn cell(&self, key: &str, make: impl FnOnce() -> Cell) -> Arc<Cell> {
        let shard = self.shard(key);
        if let Some(cell) = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Arc::clone(cell);
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(key.into()).or_insert_with(|| Arc::new(make())))
    }

    fn existing(&self, key: &str) -> Option<Arc<Cell>> {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The check itself, without a future around it: what the benchmark measures.
    pub fn check_now(&self, now: u64, draws: &[Draw]) -> Checked {
        self.latest.fetch_max(now, Ordering::Relaxed);
        self.sweep(now);
        let mut levels = Vec::with_capacity(draws.len());
        for (index, draw) in draws.iter().enumerate() {
            match self.apply(now, draw) {
                Ok(level) => levels.push(level),
                Err((level, retry_after)) => {
                    for (done, _) in draws.iter().zip(&levels) {
                        self.undo(done);
                    }
                    return Checked::Refused {
                        index,
                        level,
                        retry_after,
                    };
                }
            }
        }
        Checked::Admitted { levels }
    }

    fn apply(&self, now: u64, draw: &Draw) -> Result<Level, (Level, Option<u64>)> {
        match draw {
            Draw::Rate {
                key,
                emission,
                burst,
            } => self.with_cell(
                key,
                || Cell::rate(0),
                |cell| {
                    let Cell::Rate { tat, .. } = cell else {
                        return Err(self.mismatch());
                    };
                    let mut current = tat.load(Ordering::Acquire);
                    loop {
                        let before = gcra::used(current, now, *emission);
                        let next =
                            gcra::admit(current, now, *emission, *burst, 1).map_err(|wait| {
                                let level = Level {
                                    before,
                                    after: before,
                                    capacity: *burst,
                                };
                                (level, Some(wait))
                            })?;
                        match tat.compare_exchange_weak(
                            current,
                            next,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => {
                                return Ok(Level {
                                    before,
                                    after: gcra::used(next, now, *emission),
                                    capacity: *burst,
                                });
                            }
                            Err(seen) => current = seen,
                        }
                    }
                },
            ),
            Draw::Count {
                key,
                limit,
                amount,
                expires,
            } => self.with_cell(
                key,
                || Cell::count(0, *expires),
                |cell| {
                    let Cell::Count { used, .. } = cell else {
                        return Err(self.mismatch());
                    };
                    let wait = Some(expires.saturating_sub(now));
                    let mut current = used.load(Ordering::Acquire);
                    loop {
                        let after = current.saturating_add(*amount);
                        // Drawing nothing (a call that uses no tokens) is never refused.
                        if *amount > 0 && (current >= *limit || after > *limit) {
                            let level = Level {
                                before: current,
                                after: current,
                                capacity: *limit,
                            };
                            return Err((level, wait));
                        }
                        match used.compare_exchange_weak(
                            current,
                            after,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => {
                                return Ok(Level {
                                    before: current,
                                    after,
                                    capacity: *limit,
                                });
                            }
                            Err(seen) => current = seen,
                        }
                    }
                },
            ),
            Draw::Money {
                key,
                reservation,
                limit,
                amount,
                expires,
                hold_until,
            } => self.with_cell(
                key,
                || Cell::money(0, *expires),
                |cell| {
                    let Cell::Money { money, .. } = cell else {
                        return Err(self.mismatch());
                    };
                    let mut money = lock(money);
                    money.expire(now);
                    let before = money.level();
                    let after = before.saturating_add(*amount);
                    if before >= *limit || after > *limit {
                        let level = Level {
                            before,
                            after: before,
                            capacity: *limit,
                        };
                        return Err((level, Some(expires.saturating_sub(now))));
                    }
                    money.reserved = money.reserved.saturating_add(*amount);
                    money.held.insert(*reservation, (*amount, *hold_until));
                    Ok(Level {
                        before,
                        after,
                        capacity: *limit,
                    })
                },
            ),
        }
    }

    /// A key used as two kinds of counter: a configuration bug, refused.
    fn mismatch(&self) -> (Level, Option<u64>) {
        tracing::error!("a limits key is used for two kinds of counter; refusing");
        (
            Level {
                before: 0,
                after: 0,
                capacity: 0,
            },
            None,
        )
    }

    /// Gives back what [`Self::apply`] took for `draw`.
    fn undo(&self, draw: &Draw) {
        let Some(cell) = self.existing(draw.key()) else {
            return;
        };
        match (draw, &*cell) {
            (Draw::Rate { emission, .. }, Cell::Rate { tat, .. }) => {
                let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(t.saturating_sub(*emission))
                });
            }
            (Draw::Count { amount, .. }, Cell::Count { used, .. }) => {
                let _ = used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    Some(u.saturating_sub(*amount))
                });
            }
            (
                Draw::Money {
                    reservation,
                    amount,
                    ..
                },
                Cell::Money { money, .. },
            ) => {
                let mut money = lock(money);
                if money.held.remove(reservation).is_some() {
                    money.reserved = money.reserved.saturating_sub(*amount);
                }
            }
            (Draw::Rate { .. } | Draw::Count { .. } | Draw::Money { .. }, _) => {}
        }
    }

    fn settle_now(&self, now: u64, adjust: &[Adjust]) {
        for change in adjust {
            match change {
                Adjust::Count {
                    key,
                    reserved,
                    actual,
                    expires,
                } => {
                    let cell = self.cell(key, || Cell::count(0, *expires));
                    if let Cell::Count { used, .. } = &*cell {
                        let _ = used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                            Some(u.saturating_sub(*reserved).saturating_add(*actual))
                        });
                    }
                }
                Adjust::Money {
                    key,
                    reservation,
                    reserved,
                    actual,
                    expires,
                } => {
                    let cell = self.cell(key, || Cell::money(0, *expires));
                    if let Cell::Money { money, .. } = &*cell {
                        let mut money = lock(money);
                        money.expire(now);
                        match money.held.remove(reservation) {
                            Some((amount, _)) => {
                                money.reserved = money.reserved.saturating_sub(amount);
                                money.spent = money.spent.saturating_add(*actual);
                            }
                            // Expired and charged in full already: only what it cost beyond.
                            None => {
                                money.spent =
                                    money.spent.saturating_add(actual.saturating_sub(*reserved));
                            }
                        }
                    }
                }
                Adjust::Rate { key, emission } => {
                    if let Some(cell) = self.existing(key)
                        && let Cell::Rate { tat, .. } = &*cell
                    {
                        let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                            Some(t.saturating_sub(*emission))
                        });
                    }
                }
            }
        }
    }

    /// Drops counters past their window and loop windows long idle, at most once a minute.
    fn sweep(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due
            || self
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(SWEEP_NANOS),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        for shard in self.shards.iter() {
            let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, cell| match &**cell {
                Cell::Rate { tat, .. } => tat.load(Ordering::Acquire) > now,
                Cell::Count { expires, .. } => *expires > now,
                Cell::Money { money, expires } => *expires > now || !lock(money).held.is_empty(),
            });
        }
        lock(&self.loops).retain(|_, window| window.touched.saturating_add(LOOP_IDLE_NANOS) > now);
    }

    fn held(cell: &Cell) -> Held {
        match cell {
            Cell::Rate { tat, .. } => Held::Rate {
                tat: tat.load(Ordering::Acquire),
            },
            Cell::Count { used, .. } => Held::Count {
                used: used.load(Ordering::Acquire),
            },
            Cell::Money { money, .. } => {
                let money = lock(money);
                Held::Money {
                    spent: money.spent,
                    reserved: money.reserved,
                }
            }
        }
    }

    /// Reads back what [`Self::flush`] wrote, skipping windows that have ended.
    pub async fn load(&self, store: &dyn Store, now: u64) -> Result<usize, BackendError> {
        let mut after: Option<String> = None;
        let mut loaded = 0;
        loop {
            let page = store
                .list(COLLECTION, after.as_deref(), 500)
                .await
                .map_err(|e| BackendError::Unavailable(e.to_string()))?;
            let Some(last) = page.last() else {
                return Ok(loaded);
            };
            after = Some(last.key.clone());
            for doc in &page {
                let field = |name: &str| doc.body.get(name).and_then(serde_json::Value::as_u64);
                let (Some(expires), Some(kind)) = (
                    field("expires"),
                    doc.body.get("kind").and_then(serde_json::Value::as_str),
                ) else {
                    return Err(BackendError::Corrupt(format!(
                        "`{COLLECTION}/{}` has no kind or expiry",
                        doc.key
                    )));
                };
                if expires <= now {
                    continue;
                }
                let cell = match kind {
                    "rate" => Cell::rate(field("tat").unwrap_or(0)),
                    "count" => Cell::count(field("used").unwrap_or(0), expires),
                    // Held when the process stopped: charged in full.
                    "money" => Cell::money(
                        field("spent")
                            .unwrap_or(0)
                            .saturating_add(field("reserved").unwrap_or(0)),
                        expires,
                    ),
                    other => {
                        return Err(BackendError::Corrupt(format!(
                            "`{COLLECTION}/{}` is of unknown kind `{other}`",
                            doc.key
                        )));
                    }
                };
                self.shard(&doc.key)
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(doc.key.as_str().into(), Arc::new(cell));
                loaded += 1;
            }
        }
    }

    /// Writes every counter changed since the last flush; one that cannot
    /// be written is tried again at the next.
    pub async fn flush(&self, store: &dyn Store) -> Result<usize, BackendError> {
        let changed: Vec<(Box<str>, Arc<Cell>)> = self
            .shards
            .iter()
            .flat_map(|shard| {
                let map = shard.read().unwrap_or_else(PoisonError::into_inner);
                map.iter()
                    .map(|(key, cell)| (key.clone(), Arc::clone(cell)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut written = 0;
        let mut failed = None;
        for (key, cell) in changed {
            let (body, done): (serde_json::Value, Box<dyn FnOnce() + Send>) = match &*cell {
                Cell::Rate { tat, flushed } => {
                    let now = tat.load(Ordering::Acquire);
                    if now == flushed.load(Ordering::Acquire) {
                        continue;
                    }
                    let cell = Arc::clone(&cell);
                    let body = json!({ "kind": "rate", "tat": now, "expires": now });
                    (
                        body,
                        Box::new(move || {
                            if let Cell::Rate { flushed, .. } = &*cell {
                                flushed.store(now, Ordering::Release);
                            }
                        }),
                    )
                }
                Cell::Count {
                    used,
                    flushed,
                    expires,
                } => {
                    let now = used.load(Ordering::Acquire);
                    if now == flushed.load(Ordering::Acquire) {
                        continue;
                    }
                    let cell = Arc::clone(&cell);
                    let body = json!({ "kind": "count", "used": now, "expires": expires });
                    (
                        body,
                        Box::new(move || {
                            if let Cell::Count { flushed, .. } = &*cell {
                                flushed.store(now, Ordering::Release);
                            }
                        }),
                    )
                }
                Cell::Money { money, expires } => {
                    let state = {
                        let money = lock(money);
                        (money.spent, money.reserved)
                    };
                    if state == lock(money).flushed {
                        continue;
                    }
                    let cell = Arc::clone(&cell);
                    let body = json!({
                        "kind": "money",
                        "spent": state.0,
                        "reserved": state.1,
                        "expires": expires,
                    });
                    (
                        body,
                        Box::new(move || {
                            if let Cell::Money { money, .. } = &*cell {
                                lock(money).flushed = state;
                            }
                        }),
                    )
                }
            };
            match write(store, &key, &body).await {
                Ok(()) => {
                    done();
                    written += 1;
                }
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }
}

/// Upserts one document: replace at its version, or insert.
async fn write(store: &dyn Store, key: &str, body: &serde_json::Value) -> Result<(), BackendError> {
    let unavailable = |e: palisade_store::StoreError| BackendError::Unavailable(e.to_string());
    for _ in 0..4 {
        match store.get(COLLECTION, key).await.map_err(unavailable)? {
            Some(doc) => {
                if store
                    .replace(COLLECTION, key, doc.version, body)
                    .await
                    .map_err(unavailable)?
                    .is_some()
                {
                    return Ok(());
                }
            }
            None => {
                if store
                    .insert(COLLECTION, key, body)
                    .await
                    .map_err(unavailable)?
                {
                    return Ok(());
                }
            }
        }
    }
    Err(BackendError::Unavailable(format!(
        "`{COLLECTION}/{key}` kept changing under another writer"
    )))
}

impl Backend for LocalBackend {
    fn check<'a>(&'a self, now: u64, draws: &'a [Draw]) -> BackendFuture<'a, Checked> {
        Box::pin(std::future::ready(Ok(self.check_now(now, draws))))
    }

    fn settle<'a>(&'a self, now: u64, adjust: &'a [Adjust]) -> BackendFuture<'a, ()> {
        self.settle_now(now, adjust);
        Box::pin(std::future::ready(Ok(())))
    }

    fn history<'a>(&'a self, key: &'a str, len: usize) -> BackendFuture<'a, Vec<Step>> {
        let steps = lock(&self.loops)
            .get(key)
            .map(|window| {
                let skip = window.steps.len().saturating_sub(len);
                window.steps.iter().skip(skip).copied().collect()
            })
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(steps)))
    }

    fn record<'a>(&'a self, key: &'a str, step: Step, keep: usize) -> BackendFuture<'a, ()> {
        let now = self.latest.load(Ordering::Relaxed);
        let mut loops = lock(&self.loops);
        let window = loops.entry(key.into()).or_insert_with(|| LoopWindow {
            steps: VecDeque::with_capacity(keep),
            touched: now,
        });
        window.steps.push_back(step);
        while window.steps.len() > keep {
            window.steps.pop_front();
        }
        window.touched = window.touched.max(now);
        Box::pin(std::future::ready(Ok(())))
    }

    fn scan<'a>(&'a self, prefix: &'a str) -> BackendFuture<'a, Vec<(String, Held)>> {
        let mut found: Vec<(String, Held)> = self
            .shards
            .iter()
            .flat_map(|shard| {
                let map = shard.read().unwrap_or_else(PoisonError::into_inner);
                map.iter()
                    .filter(|(key, _)| key.starts_with(prefix))
                    .map(|(key, cell)| (key.to_string(), Self::held(cell)))
                    .collect::<Vec<_>>()
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rate(key: &str, per_second: u64, burst: u64) -> Draw {
        Draw::Rate {
            key: key.into(),
            emission: S / per_second,
            burst,
        }
    }

    fn count(key: &str, limit: u64, amount: u64) -> Draw {
        Draw::Count {
            key: key.into(),
            limit,
            amount,
            expires: 1_000 * S,
        }
    }

    fn money(key: &str, reservation: u64, limit: u64, amount: u64) -> Draw {
        Draw::Money {
            key: key.into(),
            reservation,
            limit,
            amount,
            expires: 100_000 * S,
            hold_until: 20 * S,
        }
    }

    fn admitted(c: &Checked) -> bool {
        matches!(c, Checked::Admitted { .. })
    }

    #[test]
    fn a_refusal_spends_nothing_on_the_other_counters() {
        let b = LocalBackend::new();
        let draws = [rate("r", 1, 5), count("q", 2, 1)];
        assert!(admitted(&b.check_now(10 * S, &draws)));
        assert!(admitted(&b.check_now(10 * S, &draws)));
        match b.check_now(10 * S, &draws) {
            Checked::Refused { index, level, .. } => {
                assert_eq!(index, 1);
                assert_eq!(level.before, 2);
            }
            other => panic!("{other:?}"),
        }
        // The rate was given back: three more pass on it alone.
        for _ in 0..3 {
            assert!(admitted(&b.check_now(10 * S, &[rate("r", 1, 5)])));
        }
        assert!(!admitted(&b.check_now(10 * S, &[rate("r", 1, 5)])));
    }

    #[test]
    fn money_reserves_settles_and_charges_what_is_never_settled() {
        let b = LocalBackend::new();
        assert!(admitted(&b.check_now(S, &[money("m", 1, 100, 60)])));
        assert!(!admitted(&b.check_now(S, &[money("m", 2, 100, 60)])));
        b.settle_now(
            S,
            &[Adjust::Money {
                key: "m".into(),
                reservation: 1,
                reserved: 60,
                actual: 10,
                expires: 100_000 * S,
            }],
        );
        assert!(admitted(&b.check_now(S, &[money("m", 3, 100, 60)])));
        // Reservation 3 is never settled: at its hold time it is charged in full.
        assert!(!admitted(&b.check_now(30 * S, &[money("m", 4, 100, 40)])));
        assert!(admitted(&b.check_now(30 * S, &[money("m", 5, 100, 30)])));
    }

    #[test]
    fn concurrent_checks_never_over_admit() {
        let b = Arc::new(LocalBackend::new());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    (0..200)
                        .filter(|i| {
                            let draws = [rate("r", 1, 30), money("m", t * 1000 + i, 50, 1)];
                            admitted(&b.check_now(5 * S, &draws))
                        })
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 30);
    }

    #[tokio::test]
    async fn quotas_and_money_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("palisade-limits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let backend = palisade_store::Backend::Sqlite {
            path: dir.join("state.db"),
        };
        let store = palisade_store::open(&backend).await.unwrap();
        let first = LocalBackend::new();
        for _ in 0..3 {
            assert!(admitted(&first.check_now(S, &[count("q", 3, 1)])));
        }
        assert!(admitted(&first.check_now(S, &[money("m", 1, 100, 70)])));
        assert!(admitted(&first.check_now(S, &[rate("r", 1, 1)])));
        assert_eq!(first.flush(&*store).await.unwrap(), 3);
        // Nothing changed since: nothing to write.
        assert_eq!(first.flush(&*store).await.unwrap(), 0);
        let second = LocalBackend::new();
        assert_eq!(second.load(&*store, S).await.unwrap(), 3);
        assert!(!admitted(&second.check_now(S, &[rate("r", 1, 1)])));
        assert!(!admitted(&second.check_now(S, &[count("q", 3, 1)])));
        // The held 70 was charged: 30 left.
        assert!(!admitted(&second.check_now(S, &[money("m", 2, 100, 31)])));
        assert!(admitted(&second.check_now(S, &[money("m", 3, 100, 30)])));
        // A window that has ended is not loaded.
        let third = LocalBackend::new();
        assert_eq!(third.load(&*store, 2_000 * S).await.unwrap(), 1);
        assert!(admitted(&third.check_now(2_000 * S, &[count("q2", 3, 1)])));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
