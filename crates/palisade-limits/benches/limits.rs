//! What a limit check costs: the embedded store next to `governor` in the same run, and checks per second against a real Redis from one process.
//!
//! `cargo bench -p palisade-limits --bench limits`. The embedded figures
//! are one rate check (`LocalBackend::check_now`, one GCRA key, admitted),
//! a typical call's three counters (a rate, a daily quota, the budget), and
//! `governor`'s keyed and direct limiters doing the same one-rate check,
//! the anchor. With `PALISADE_TEST_REDIS` set (`scripts/redis start`), a
//! plain loop then runs checks through one multiplexed connection, many in
//! flight at once so the client pipelines them, and prints rate checks per
//! second and whole calls per second (three counters checked, then settled).
#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark program prints its results"
)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use governor::{Quota, RateLimiter};
use palisade_limits::backend::{Adjust, Backend, Checked, Draw};
use palisade_limits::local::LocalBackend;
use palisade_limits::redis::RedisBackend;

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 2_200_000_000 * SECOND;

/// A rate that always admits: a million a second with a burst of a
/// million, checked as time moves on by a microsecond a call.
fn rate(key: &str) -> Draw {
    Draw::Rate {
        key: key.into(),
        emission: 1_000,
        burst: 1_000_000,
    }
}

fn typical(principal: u64, reservation: u64) -> Vec<Draw> {
    vec![
        rate(&format!(
            "palisade:limits:rate:tool_calls:principal=p{principal}"
        )),
        Draw::Count {
            key: format!("palisade:limits:count:tokens:2039-09-18:principal=p{principal}"),
            limit: u64::MAX,
            amount: 1,
            expires: T0 + 86_400 * SECOND,
        },
        Draw::Money {
            key: format!("palisade:limits:money:2039-09-18:principal=p{principal}"),
            reservation,
            limit: u64::MAX,
            amount: 1,
            expires: T0 + 86_400 * SECOND,
            hold_until: T0 + 60 * SECOND,
        },
    ]
}

fn local(c: &mut Criterion) {
    let backend = LocalBackend::new();
    let draws = [rate("palisade:limits:rate:tool_calls:principal=alice")];
    let clock = AtomicU64::new(T0);
    c.bench_function("limits/local one rate", |b| {
        b.iter(|| {
            let now = clock.fetch_add(1_000, Ordering::Relaxed);
            black_box(backend.check_now(now, black_box(&draws)))
        });
    });
    let three = typical(1, 1);
    c.bench_function("limits/local rate+quota+budget", |b| {
        b.iter(|| {
            let now = clock.fetch_add(1_000, Ordering::Relaxed);
            black_box(backend.check_now(now, black_box(&three)))
        });
    });
    let quota = Quota::per_second(NonZeroU32::new(1_000_000).unwrap());
    let keyed = RateLimiter::keyed(quota);
    let key = String::from("palisade:limits:rate:tool_calls:principal=alice");
    c.bench_function("limits/governor keyed", |b| {
        b.iter(|| black_box(keyed.check_key(black_box(&key))));
    });
    let direct = RateLimiter::direct(quota);
    c.bench_function("limits/governor direct", |b| {
        b.iter(|| black_box(direct.check()));
    });
}

/// Per second through one connection with `in_flight` at a time: rate
/// checks, or whole calls (a check on a rate, a quota and the budget, then
/// the settle that charges what the call cost).
async fn redis_rate(backend: &Arc<RedisBackend>, in_flight: u64, total: u64, calls: bool) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..in_flight {
        let (backend, next) = (Arc::clone(backend), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let now = T0 + n * 1_000;
                let mut draws = typical(worker % 64, n + 1);
                if !calls {
                    draws.truncate(1);
                }
                let checked = backend.check(now, &draws).await.unwrap();
                assert!(matches!(checked, Checked::Admitted { .. }), "{checked:?}");
                if calls {
                    let adjust = settled(&draws);
                    backend.settle(now, &adjust).await.unwrap();
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// What a call that cost what it was estimated at settles.
fn settled(draws: &[Draw]) -> Vec<Adjust> {
    draws
        .iter()
        .filter_map(|draw| match draw {
            Draw::Rate { .. } => None,
            Draw::Count {
                key,
                amount,
                expires,
                ..
            } => Some(Adjust::Count {
                key: key.clone(),
                reserved: *amount,
                actual: *amount,
                expires: *expires,
            }),
            Draw::Money {
                key,
                reservation,
                amount,
                expires,
                ..
            } => Some(Adjust::Money {
                key: key.clone(),
                reservation: *reservation,
                reserved: *amount,
                actual: *amount,
                expires: *expires,
            }),
        })
        .collect()
}

fn redis_table() {
    let Ok(url) = std::env::var("PALISADE_TEST_REDIS") else {
        println!("\nRedis: PALISADE_TEST_REDIS is not set (scripts/redis start); skipped");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = Arc::new(RedisBackend::connect(&url).unwrap());
        // Warm: the connection, the scripts loaded.
        redis_rate(&backend, 16, 2_000, true).await;
        println!(
            "\nRedis at {}: from one process, one connection",
            backend.url()
        );
        println!(
            "{:<12} {:>10} {:>16} {:>16}",
            "in flight", "each", "rate checks/s", "calls/s"
        );
        for in_flight in [1, 16, 64, 256] {
            let total = if in_flight == 1 { 5_000 } else { 50_000 };
            let checks = redis_rate(&backend, in_flight, total, false).await;
            let calls = redis_rate(&backend, in_flight, total, true).await;
            println!("{in_flight:<12} {total:>10} {checks:>16.0} {calls:>16.0}");
        }
        println!("(a call: one check of a rate, a daily quota and the budget, then its settle)");
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = local
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    redis_table();
}
