//! The shared store on a real Redis at `PALISADE_TEST_REDIS`: the same answers as the embedded store, all or nothing, exact under concurrency over several connections, and defined failures.
//!
//! `scripts/redis start` starts a throwaway server and prints its URL;
//! `scripts/test` exports it as `PALISADE_TEST_REDIS`. Without it these
//! tests fail under CI (`CI` set), and elsewhere print a notice and pass,
//! so that `cargo test` works on a machine without Redis. Each test keeps
//! its keys under a prefix of its own, so the tests share one server.
#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_limits::backend::{Adjust, Backend, BackendError, Checked, Draw, Held, Level, Step};
use palisade_limits::local::LocalBackend;
use palisade_limits::redis::RedisBackend;
use tokio::task::JoinSet;

const SECOND: u64 = 1_000_000_000;
/// 2039-09-18, in nanoseconds: microseconds since 1970 beyond 2^50, where
/// a double's rounding would show, and later than the real clock Redis
/// expires keys by.
const T0: u64 = 2_200_000_000 * SECOND;

fn redis_server() -> Option<String> {
    if let Ok(url) = std::env::var("PALISADE_TEST_REDIS")
        && !url.trim().is_empty()
    {
        return Some(url);
    }
    let how = "start one with `scripts/redis start` and \
               `export PALISADE_TEST_REDIS=$(scripts/redis url)` (scripts/test does both)";
    assert!(
        std::env::var_os("CI").is_none(),
        "PALISADE_TEST_REDIS is not set, and CI is: the Redis store must be tested; {how}"
    );
    eprintln!("notice: Redis tests skipped: PALISADE_TEST_REDIS is not set; {how}");
    None
}

/// A prefix no other test (or run) uses.
fn prefix(test: &str) -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "test:{test}:{nanos}:{}",
        RUN.fetch_add(1, Ordering::Relaxed)
    )
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_tokio_connection()
        .await
        .unwrap()
}

fn rate(key: &str, per_second: u64, burst: u64) -> Draw {
    Draw::Rate {
        key: key.into(),
        emission: SECOND / per_second,
        burst,
    }
}

fn count(key: &str, limit: u64, amount: u64) -> Draw {
    Draw::Count {
        key: key.into(),
        limit,
        amount,
        expires: T0 + 86_400 * SECOND,
    }
}

fn money(key: &str, reservation: u64, limit: u64, amount: u64, hold: u64) -> Draw {
    Draw::Money {
        key: key.into(),
        reservation,
        limit,
        amount,
        expires: T0 + 86_400 * SECOND,
        hold_until: T0 + hold,
    }
}

fn admitted(checked: &Checked) -> bool {
    matches!(checked, Checked::Admitted { .. })
}

/// A small deterministic generator, so a failure replays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

#[tokio::test]
async fn redis_answers_every_check_as_the_embedded_store_does() {
    let Some(url) = redis_server() else { return };
    let shared = RedisBackend::connect(&url).unwrap();
    let local = LocalBackend::new();
    let p = prefix("same");
    let (r, c, m) = (
        format!("{p}:rate"),
        format!("{p}:count"),
        format!("{p}:money"),
    );
    let mut rng = Lcg(7);
    let mut now = T0;
    let mut open: Vec<(u64, u64)> = Vec::new();
    for step in 0..400u64 {
        now += rng.next(400) * 1_000_000;
        // Every shape a call draws on: a rate alone, with a quota, with money.
        let reservation = step + 1;
        let amount = 1 + rng.next(3);
        let draws = match rng.next(4) {
            0 => vec![rate(&r, 10, 5)],
            1 => vec![rate(&r, 10, 5), count(&c, 60, amount)],
            2 => vec![
                count(&c, 60, amount),
                money(&m, reservation, 40_000_000, 1_000_000 * amount, 3 * SECOND),
            ],
            _ => vec![
                rate(&r, 10, 5),
                money(&m, reservation, 40_000_000, 500_000, 60 * SECOND),
            ],
        };
        let want = local.check(now, &draws).await.unwrap();
        let got = shared.check(now, &draws).await.unwrap();
        assert_eq!(
            got,
            want,
            "step {step} at +{} ms: {draws:?}",
            (now - T0) / 1_000_000
        );
        if admitted(&got) && draws.iter().any(|d| matches!(d, Draw::Money { .. })) {
            let reserved = draws
                .iter()
                .find_map(|d| match d {
                    Draw::Money { amount, .. } => Some(*amount),
                    Draw::Rate { .. } | Draw::Count { .. } => None,
                })
                .unwrap();
            open.push((reservation, reserved));
        }
        // Settle some reservations, some after they were charged in full.
        if rng.next(3) == 0 && !open.is_empty() {
            let (reservation, reserved) =
                open.remove(usize::try_from(rng.next(open.len() as u64)).unwrap());
            let actual = rng.next(2 * reserved);
            let adjust = [
                Adjust::Money {
                    key: m.clone(),
                    reservation,
                    reserved,
                    actual,
                    expires: T0 + 86_400 * SECOND,
                },
                Adjust::Count {
                    key: c.clone(),
                    reserved: 1,
                    actual: rng.next(2),
                    expires: T0 + 86_400 * SECOND,
                },
            ];
            local.settle(now, &adjust).await.unwrap();
            shared.settle(now, &adjust).await.unwrap();
        }
    }
    let held = |mut found: Vec<(String, Held)>| {
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    };
    // Holds past their time are charged when the next check comes.
    let last = [money(&m, 0, u64::MAX, 0, 0)];
    let _ = local.check(now + 3_600 * SECOND, &last).await.unwrap();
    let _ = shared.check(now + 3_600 * SECOND, &last).await.unwrap();
    let (want, got) = (
        held(local.scan(&p).await.unwrap()),
        held(shared.scan(&p).await.unwrap()),
    );
    let money_of = |found: &[(String, Held)]| {
        found
            .iter()
            .find(|(key, _)| *key == m)
            .map(|(_, held)| held.clone())
            .unwrap()
    };
    assert_eq!(money_of(&got), money_of(&want));
    assert_eq!(got.len(), 3, "{got:?}");
}

#[tokio::test]
async fn a_refusal_draws_on_no_counter() {
    let Some(url) = redis_server() else { return };
    let backend = RedisBackend::connect(&url).unwrap();
    let p = prefix("none");
    let (r, c, m) = (
        format!("{p}:rate"),
        format!("{p}:count"),
        format!("{p}:money"),
    );
    let full = [count(&c, 3, 3)];
    assert!(admitted(&backend.check(T0, &full).await.unwrap()));
    // The rate and the money come first and admit; the quota refuses.
    let draws = [rate(&r, 1, 2), money(&m, 1, 10, 5, SECOND), count(&c, 3, 1)];
    let refused = backend.check(T0, &draws).await.unwrap();
    assert_eq!(
        refused,
        Checked::Refused {
            index: 2,
            level: Level {
                before: 3,
                after: 3,
                capacity: 3
            },
            retry_after: Some(86_400 * SECOND),
        }
    );
    let found = backend.scan(&p).await.unwrap();
    assert_eq!(
        found,
        vec![(c.clone(), Held::Count { used: 3 })],
        "only the quota exists"
    );
    // The rate's whole burst is still there.
    for _ in 0..2 {
        assert!(admitted(
            &backend.check(T0, &[rate(&r, 1, 2)]).await.unwrap()
        ));
    }
    let Checked::Refused { retry_after, .. } = backend.check(T0, &[rate(&r, 1, 2)]).await.unwrap()
    else {
        panic!("a burst of 2 admitted a third call");
    };
    assert_eq!(retry_after, Some(SECOND));
}

#[tokio::test]
async fn three_gateways_admit_exactly_the_burst_and_the_budget() {
    let Some(url) = redis_server() else { return };
    let p = prefix("exact");
    let gateways: Vec<Arc<RedisBackend>> = (0..3)
        .map(|_| Arc::new(RedisBackend::connect(&url).unwrap()))
        .collect();
    let admitted_of = |draws: Arc<dyn Fn(u64) -> Vec<Draw> + Send + Sync>| {
        let gateways = gateways.clone();
        async move {
            let mut tasks = JoinSet::new();
            for client in 0..192u64 {
                let (backend, draws) = (
                    Arc::clone(&gateways[(client % 3) as usize]),
                    Arc::clone(&draws),
                );
                tasks.spawn(async move {
                    let draws = draws(client);
                    admitted(&backend.check(T0, &draws).await.unwrap())
                });
            }
            let mut admitted = 0;
            while let Some(ok) = tasks.join_next().await {
                admitted += u64::from(ok.unwrap());
            }
            admitted
        }
    };
    let r = format!("{p}:rate");
    let rates = admitted_of(Arc::new(move |_| vec![rate(&r, 1, 30)])).await;
    assert_eq!(rates, 30, "a burst of 30 at one instant");
    let c = format!("{p}:count");
    let counts = admitted_of(Arc::new(move |_| vec![count(&c, 100, 7)])).await;
    assert_eq!(counts, 14, "7 at a time under 100");
    let m = format!("{p}:money");
    let budget = admitted_of(Arc::new(move |id| {
        vec![money(&m, id, 50_000_000, 1_000_000, 60 * SECOND)]
    }))
    .await;
    assert_eq!(budget, 50, "$1.00 reservations against $50.00");
    let spent = gateways[0].scan(&format!("{p}:money")).await.unwrap();
    assert_eq!(
        spent,
        vec![(
            format!("{p}:money"),
            Held::Money {
                spent: 0,
                reserved: 50_000_000
            }
        )]
    );
}

#[tokio::test]
async fn settling_charges_what_the_call_cost_and_expiry_charges_in_full() {
    let Some(url) = redis_server() else { return };
    let backend = RedisBackend::connect(&url).unwrap();
    let p = prefix("settle");
    let m = format!("{p}:money");
    let day = T0 + 86_400 * SECOND;
    for id in 1..=3 {
        assert!(admitted(
            &backend
                .check(T0, &[money(&m, id, 10_000_000, 2_000_000, 60 * SECOND)])
                .await
                .unwrap()
        ));
    }
    let settle = |reservation, actual| Adjust::Money {
        key: m.clone(),
        reservation,
        reserved: 2_000_000,
        actual,
        expires: day,
    };
    // One cost less than estimated, one never ran; the third is never settled.
    backend
        .settle(T0 + SECOND, &[settle(1, 500_000), settle(2, 0)])
        .await
        .unwrap();
    let held = backend.scan(&m).await.unwrap();
    assert_eq!(
        held[0].1,
        Held::Money {
            spent: 500_000,
            reserved: 2_000_000
        }
    );
    // A minute on, the unsettled hold is charged in full; settling it late
    // adds only what it cost beyond its estimate.
    let later = T0 + 61 * SECOND;
    let probe = [money(&m, 9, 10_000_000, 7_500_001, SECOND)];
    let Checked::Refused { level, .. } = backend.check(later, &probe).await.unwrap() else {
        panic!("$2.50 spent and $7.50 more was admitted under $10");
    };
    assert_eq!(level.before, 2_500_000);
    backend
        .settle(later, &[settle(3, 3_000_000)])
        .await
        .unwrap();
    assert_eq!(
        backend.scan(&m).await.unwrap()[0].1,
        Held::Money {
            spent: 3_500_000,
            reserved: 0
        }
    );
    // A refund on a rate gives back one interval; a quota settles to what was used.
    let (r, c) = (format!("{p}:rate"), format!("{p}:count"));
    assert!(admitted(
        &backend
            .check(T0, &[rate(&r, 1, 1), count(&c, 10, 4)])
            .await
            .unwrap()
    ));
    backend
        .settle(
            T0,
            &[
                Adjust::Rate {
                    key: r.clone(),
                    emission: SECOND,
                },
                Adjust::Count {
                    key: c.clone(),
                    reserved: 4,
                    actual: 9,
                    expires: day,
                },
            ],
        )
        .await
        .unwrap();
    assert!(
        admitted(&backend.check(T0, &[rate(&r, 1, 1)]).await.unwrap()),
        "the refunded interval"
    );
    assert!(
        !admitted(&backend.check(T0, &[count(&c, 10, 2)]).await.unwrap()),
        "9 of 10 used"
    );
}

#[tokio::test]
async fn loop_windows_keep_the_last_steps_in_order() {
    let Some(url) = redis_server() else { return };
    let backend = RedisBackend::connect(&url).unwrap();
    let key = format!("{}:loop:s1", prefix("loop"));
    for call in 0..12u64 {
        let answer = (call % 2 == 0).then_some(call * 10);
        backend
            .record(&key, Step { call, answer }, 10)
            .await
            .unwrap();
    }
    let steps = backend.history(&key, 10).await.unwrap();
    assert_eq!(
        steps.iter().map(|s| s.call).collect::<Vec<_>>(),
        (2..12).collect::<Vec<_>>()
    );
    assert_eq!(steps[0].answer, Some(20));
    assert_eq!(steps[1].answer, None);
    assert_eq!(backend.history(&key, 3).await.unwrap().len(), 3);
    assert!(
        backend.scan(&key).await.unwrap().is_empty(),
        "a loop window is not a counter"
    );
}

#[tokio::test]
async fn a_key_of_another_type_is_an_error_and_nothing_is_drawn() {
    let Some(url) = redis_server() else { return };
    let backend = RedisBackend::connect(&url).unwrap();
    let p = prefix("wrongtype");
    let (r, c) = (format!("{p}:rate"), format!("{p}:count"));
    let mut connection = raw(&url).await;
    let _: () = redis::cmd("RPUSH")
        .arg(&c)
        .arg("x")
        .query_async(&mut connection)
        .await
        .unwrap();
    let e = backend
        .check(T0, &[rate(&r, 1, 1), count(&c, 5, 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(e, BackendError::Corrupt(ref m) if m.contains("WRONGTYPE")),
        "{e}"
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(&r)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!exists, "the rate was drawn on for a refused check");
    // A loop window holding what is not a step.
    let l = format!("{p}:loop");
    let _: () = redis::cmd("RPUSH")
        .arg(&l)
        .arg("not a step")
        .query_async(&mut connection)
        .await
        .unwrap();
    let e = backend.history(&l, 10).await.unwrap_err();
    assert!(
        matches!(e, BackendError::Corrupt(ref m) if m.contains("not a loop step")),
        "{e}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_fast_and_says_where() {
    // A port nothing listens on (the test binds it, then lets it go).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = RedisBackend::connect(&format!("redis://:hunter2@127.0.0.1:{port}/")).unwrap();
    for _ in 0..2 {
        let e = backend.check(T0, &[rate("k", 1, 1)]).await.unwrap_err();
        let message = e.to_string();
        assert!(matches!(e, BackendError::Unavailable(_)), "{message}");
        assert!(
            message.contains(&format!("127.0.0.1:{port}")) && !message.contains("hunter2"),
            "{message}"
        );
    }
    assert!(matches!(
        backend.history("k", 3).await,
        Err(BackendError::Unavailable(_))
    ));
}
