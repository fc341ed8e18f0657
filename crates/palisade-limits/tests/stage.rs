//! The limits stage end to end over the embedded store, on a manual clock: the seed's table, tiers, the budget's reserve and settle, loops, and a clock that jumps back.
#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use palisade_core::stage::Limit;
use palisade_core::{
    CallContext, CallHead, CallId, CallKind, Credential, EffectClass, Identity, LimitDecision,
    ManualClock, Principal, PrincipalKind, ReasonCode, SessionFacts, SessionId, Target, Usage,
};
use palisade_limits::calendar::Zone;
use palisade_limits::local::LocalBackend;
use palisade_limits::loops::LoopRule;
use palisade_limits::prices::PriceTable;
use palisade_limits::spec::{Micros, Quota, Rate, ToolPattern};
use palisade_limits::stage::{Budget, Counts, Loops, ModelUse, Rule, RuleLimit, Tier};
use palisade_limits::{Alert, AlertKind, Limits, Settings};
use serde_json::{Value, json};

/// 2026-12-03T10:00:00Z.
const START: u64 = 1_796_292_000;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(START)))
}

fn principal(id: &str, roles: &[&str]) -> Principal {
    Principal::from_identity(Identity {
        id: id.into(),
        kind: PrincipalKind::User,
        roles: roles.iter().map(|r| Arc::from(*r)).collect(),
        tenant: None,
        credential: Credential::None,
        task: None,
    })
}

fn head(who: &Principal, session: &str, tool: &str, effect: EffectClass) -> CallHead {
    let (server, name) = tool.split_once('/').unwrap();
    CallHead {
        id: CallId(1),
        principal: who.clone(),
        session: SessionId::new(session),
        kind: CallKind::Tool,
        target: Target::new(server, name),
        effect,
        params: None,
        parent: None,
    }
}

fn rule(name: &str, limit: RuleLimit, tools: &[&str], effects: &[EffectClass]) -> Rule {
    Rule {
        name: name.into(),
        limit,
        counts: Counts::Calls,
        per: vec![],
        tools: tools
            .iter()
            .map(|t| ToolPattern::parse(t).unwrap())
            .collect(),
        effects: effects.to_vec(),
        on_unavailable: None,
    }
}

/// The seed's table, as the docs write it.
fn seed() -> Settings {
    let rate = |t: &str| RuleLimit::Rate(Rate::parse(t).unwrap());
    let mut tokens = rule(
        "model_tokens",
        RuleLimit::Quota(Quota::parse("100000/1d").unwrap()),
        &["llm/*"],
        &[],
    );
    tokens.counts = Counts::Tokens;
    Settings {
        rules: vec![
            rule("tool_calls", rate("30/1m"), &[], &[]),
            rule(
                "file_writes",
                rate("10/1m"),
                &["fs/write_file", "fs/edit_file"],
                &[],
            ),
            rule("emails", rate("5/1h"), &["mail/send_*"], &[]),
            rule(
                "cloud_mutations",
                rate("3/1h"),
                &["aws/*"],
                &[EffectClass::Write, EffectClass::Irreversible],
            ),
            tokens,
        ],
        tiers: vec![Tier {
            name: "pro".into(),
            roles: vec!["pro".into()],
            rules: vec![
                ("tool_calls".into(), Some(rate("120/1m"))),
                ("emails".into(), None),
            ],
            daily_budget: Some(Micros::parse("200").unwrap()),
        }],
        budget: Some(Budget {
            daily: Micros::parse("50").unwrap(),
            costs: vec![(
                ToolPattern::parse("aws/*").unwrap(),
                Micros::parse("1.00").unwrap(),
            )],
            models: vec![(
                ToolPattern::parse("llm/*").unwrap(),
                ModelUse {
                    model: "gpt-4o".into(),
                    estimate_tokens: 2_000,
                },
            )],
            prices: PriceTable::bundled(),
            hold: Duration::from_secs(600),
        }),
        loops: Loops {
            default: LoopRule {
                max_similar: 0,
                ..LoopRule::default()
            },
            by_effect: vec![],
        },
        zone: Zone::utc(),
        ..Settings::default()
    }
}

struct Harness {
    limits: Limits,
    clock: Arc<ManualClock>,
    alerts: Arc<Mutex<Vec<Alert>>>,
}

fn harness(settings: Settings) -> Harness {
    let clock = clock();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&alerts);
    let limits = Limits::new(settings, Arc::new(LocalBackend::new()), clock.clone())
        .with_alerts(Arc::new(move |a| sink.lock().unwrap().push(a)));
    Harness {
        limits,
        clock,
        alerts,
    }
}

fn ctx() -> CallContext {
    CallContext::new(SessionFacts::new())
}

impl Harness {
    /// Checks a call and, when admitted, settles it as having run with `answer`.
    async fn call(
        &self,
        head: &CallHead,
        args: &Value,
        answer: &Value,
    ) -> Result<(), (ReasonCode, String, Option<Duration>)> {
        match self.limits.check(head, args, &ctx()).await.unwrap() {
            LimitDecision::Reserved { reservation, .. } => {
                self.limits
                    .settle(reservation, Usage::answered(Duration::ZERO, answer))
                    .await
                    .unwrap();
                Ok(())
            }
            LimitDecision::Refused { reason, .. } => {
                Err((reason.code, reason.detail, reason.retry_after))
            }
        }
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

fn nth(i: usize) -> Value {
    json!({ "n": i })
}

#[tokio::test]
async fn tool_calls_30_per_minute_with_retry_after() {
    let h = harness(seed());
    let alice = principal("alice", &[]);
    let call = head(&alice, "s1", "fs/read_file", EffectClass::Read);
    for i in 0..30 {
        h.call(&call, &nth(i), &json!({})).await.unwrap();
    }
    let (code, detail, retry) = h.call(&call, &nth(30), &json!({})).await.unwrap_err();
    assert_eq!(code, ReasonCode::LimitExceeded);
    assert!(
        detail.contains("limit `tool_calls`") && detail.contains("retry in 2.0 s"),
        "{detail}"
    );
    assert_eq!(retry, Some(Duration::from_secs(2)));
    // Another principal is not affected.
    let bob = head(
        &principal("bob", &[]),
        "s2",
        "fs/read_file",
        EffectClass::Read,
    );
    h.call(&bob, &nth(0), &json!({})).await.unwrap();
    // Two seconds on, exactly one more.
    h.advance(Duration::from_secs(2));
    h.call(&call, &nth(31), &json!({})).await.unwrap();
    assert!(h.call(&call, &nth(32), &json!({})).await.is_err());
    let alerts = h.alerts.lock().unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == AlertKind::NearLimit && a.limit == "tool_calls"),
        "{alerts:?}"
    );
    // Refused twice within the quiet period: one limit-reached alert.
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.kind == AlertKind::LimitReached)
            .count(),
        1,
        "{alerts:?}"
    );
}

#[tokio::test]
async fn file_writes_emails_and_cloud_mutations_have_their_own_limits() {
    let h = harness(seed());
    let alice = principal("alice", &[]);
    let write = head(&alice, "s", "fs/write_file", EffectClass::Write);
    for i in 0..10 {
        h.call(&write, &nth(i), &json!({})).await.unwrap();
    }
    let (_, detail, _) = h.call(&write, &nth(10), &json!({})).await.unwrap_err();
    assert!(detail.contains("`file_writes`"), "{detail}");

    let mail = head(&alice, "s", "mail/send_email", EffectClass::Egress);
    for i in 0..5 {
        h.call(&mail, &nth(i), &json!({})).await.unwrap();
    }
    let (_, detail, retry) = h.call(&mail, &nth(5), &json!({})).await.unwrap_err();
    assert!(
        detail.contains("`emails`") && detail.contains("5 calls per 1 h"),
        "{detail}"
    );
    assert_eq!(retry, Some(Duration::from_secs(720)));

    // Cloud mutations: writes count, reads of the same upstream do not.
    let mutate = head(&alice, "s", "aws/delete_bucket", EffectClass::Irreversible);
    let read = head(&alice, "s", "aws/list_buckets", EffectClass::Read);
    for i in 0..3 {
        h.call(&mutate, &nth(i), &json!({})).await.unwrap();
    }
    let (_, detail, _) = h.call(&mutate, &nth(3), &json!({})).await.unwrap_err();
    assert!(detail.contains("`cloud_mutations`"), "{detail}");
    h.call(&read, &nth(0), &json!({})).await.unwrap();
}

#[tokio::test]
async fn a_tier_overrides_and_lifts_rules() {
    let h = harness(seed());
    let pro = principal("carol", &["pro"]);
    let call = head(&pro, "s", "fs/read_file", EffectClass::Read);
    for i in 0..120 {
        h.call(&call, &nth(i), &json!({})).await.unwrap();
    }
    assert!(h.call(&call, &nth(120), &json!({})).await.is_err());
    // `emails` is lifted for pro, `tool_calls` still counts (and is spent):
    // a new minute's worth is needed first.
    h.advance(Duration::from_secs(60));
    let mail = head(&pro, "s", "mail/send_email", EffectClass::Egress);
    for i in 0..20 {
        h.call(&mail, &nth(i), &json!({})).await.unwrap();
    }
}

#[tokio::test]
async fn model_tokens_are_reserved_then_settled_with_what_was_reported() {
    let h = harness(seed());
    let alice = principal("alice", &[]);
    let llm = head(&alice, "s", "llm/complete", EffectClass::Read);
    // Each call reports 30,000 tokens: three fit in 100,000, the fourth
    // still passes the check (90,000 + 2,000 ≤ 100,000) and settles over.
    let used = json!({ "_meta": { "palisade/usage": { "model": "gpt-4o", "inputTokens": 20000, "outputTokens": 10000 } } });
    for i in 0..4 {
        h.call(&llm, &nth(i), &used).await.unwrap();
    }
    let (code, detail, retry) = h.call(&llm, &nth(4), &used).await.unwrap_err();
    assert_eq!(code, ReasonCode::LimitExceeded);
    assert!(
        detail.contains("quota `model_tokens`") && detail.contains("120000 of 100000"),
        "{detail}"
    );
    assert_eq!(retry, Some(Duration::from_secs(14 * 3600)));
    // Midnight UTC: a fresh day.
    h.advance(Duration::from_secs(14 * 3600));
    h.call(&llm, &nth(5), &used).await.unwrap();
}

#[tokio::test]
async fn the_daily_budget_refuses_with_spend_and_estimate() {
    let h = harness(seed());
    let alice = principal("alice", &[]);
    // aws/* costs $1.00 a call; cloud_mutations would stop writes, so reads.
    let call = head(&alice, "s", "aws/describe", EffectClass::Read);
    for i in 0..50 {
        if i % 30 == 29 {
            h.advance(Duration::from_secs(60));
        }
        h.call(&call, &nth(i), &json!({})).await.unwrap();
    }
    h.advance(Duration::from_secs(60));
    let (code, detail, _) = h.call(&call, &nth(50), &json!({})).await.unwrap_err();
    assert_eq!(code, ReasonCode::LimitExceeded);
    assert!(
        detail.contains("daily budget exceeded: $50.00 spent + $1.00 estimate > $50.00 limit"),
        "{detail}"
    );
    let alerts = h.alerts.lock().unwrap();
    assert!(
        alerts.iter().any(|a| a.kind == AlertKind::BudgetExceeded),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn concurrent_reservations_never_overshoot_the_budget() {
    let mut settings = seed();
    settings.rules.clear();
    let h = Arc::new(harness(settings));
    let alice = principal("alice", &[]);
    // $1.00 a call against $50: 200 concurrent calls, each holding its
    // reservation until every check has been made.
    let mut checks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (h, alice) = (Arc::clone(&h), alice.clone());
        checks.spawn(async move {
            let call = head(&alice, "s", "aws/describe", EffectClass::Read);
            h.limits.check(&call, &nth(i), &ctx()).await.unwrap()
        });
    }
    let mut admitted = Vec::new();
    while let Some(decision) = checks.join_next().await {
        if let LimitDecision::Reserved { reservation, .. } = decision.unwrap() {
            admitted.push(reservation);
        }
    }
    assert_eq!(admitted.len(), 50);
    // Released (the calls never ran): the money is back.
    for reservation in admitted {
        h.limits.release(reservation).await.unwrap();
    }
    let call = head(&alice, "s", "aws/describe", EffectClass::Read);
    h.call(&call, &nth(999), &json!({})).await.unwrap();
}

#[tokio::test]
async fn a_reported_cost_settles_the_reservation() {
    let mut settings = seed();
    settings.rules.clear();
    let h = harness(settings);
    let alice = principal("alice", &[]);
    let call = head(&alice, "s", "aws/run", EffectClass::Read);
    // Reported $20 beyond the $1 fixed: two calls spend $42.
    let costly = json!({ "_meta": { "palisade/usage": { "costUsd": "20" } } });
    let LimitDecision::Reserved { reservation, .. } =
        h.limits.check(&call, &nth(1), &ctx()).await.unwrap()
    else {
        panic!("the first call was refused");
    };
    // Settling says what the call cost, for its audit record.
    let settled = h
        .limits
        .settle(reservation, Usage::answered(Duration::ZERO, &costly))
        .await
        .unwrap();
    assert_eq!(settled.cost_micros, Some(21_000_000));
    h.call(&call, &nth(2), &costly).await.unwrap();
    for i in 3..11 {
        h.call(&call, &nth(i), &json!({})).await.unwrap();
    }
    let (_, detail, _) = h.call(&call, &nth(11), &json!({})).await.unwrap_err();
    assert!(detail.contains("$50.00 spent"), "{detail}");
}

#[tokio::test]
async fn a_clock_that_jumps_back_admits_nothing_more() {
    let h = harness(seed());
    let alice = principal("alice", &[]);
    let mail = head(&alice, "s", "mail/send_email", EffectClass::Egress);
    for i in 0..5 {
        h.call(&mail, &nth(i), &json!({})).await.unwrap();
    }
    // The wall clock is set an hour back (a bad NTP step): still refused,
    // and a day back does not reach yesterday's (empty) quota.
    h.clock.rewind_wall(Duration::from_secs(3_600));
    assert!(h.call(&mail, &nth(5), &json!({})).await.is_err());
    let llm = head(&alice, "s", "llm/complete", EffectClass::Read);
    let used = json!({ "_meta": { "palisade/usage": { "inputTokens": 100000 } } });
    h.call(&llm, &nth(0), &used).await.unwrap();
    h.clock.rewind_wall(Duration::from_secs(86_400));
    assert!(h.call(&llm, &nth(1), &used).await.is_err());
}

#[tokio::test]
async fn loops_are_refused_with_an_explanation() {
    let mut settings = seed();
    settings.rules.clear();
    settings.budget = None;
    settings.loops = Loops {
        default: LoopRule::default(),
        by_effect: vec![(
            EffectClass::Irreversible,
            LoopRule {
                max_similar: 1,
                ..LoopRule::default()
            },
        )],
    };
    let h = harness(settings);
    let alice = principal("alice", &[]);
    let read = head(&alice, "s", "fs/read_file", EffectClass::Read);
    let same = json!({ "path": "/etc/motd" });
    for _ in 0..3 {
        h.call(&read, &same, &json!({ "content": "hello" }))
            .await
            .unwrap();
    }
    let (code, detail, _) = h.call(&read, &same, &json!({})).await.unwrap_err();
    assert_eq!(code, ReasonCode::LoopDetected);
    assert!(
        detail.contains("3 times") && detail.contains("same answer"),
        "{detail}"
    );
    // Another session has its own window.
    let other = head(&alice, "s2", "fs/read_file", EffectClass::Read);
    h.call(&other, &same, &json!({})).await.unwrap();
    // An irreversible call may not be repeated at all.
    let delete = head(&alice, "s3", "fs/delete", EffectClass::Irreversible);
    h.call(&delete, &same, &json!({})).await.unwrap();
    assert!(h.call(&delete, &same, &json!({})).await.is_err());
    // A cycle A B A B A B: the seventh call is refused.
    let (a, b) = (json!({ "path": "a" }), json!({ "path": "b" }));
    let cycle = head(&alice, "s4", "fs/read_file", EffectClass::Read);
    for i in 0..3 {
        h.call(&cycle, &a, &json!({ "i": i })).await.unwrap();
        h.call(&cycle, &b, &json!({ "i": i })).await.unwrap();
    }
    let (code, detail, _) = h.call(&cycle, &a, &json!({})).await.unwrap_err();
    assert_eq!(code, ReasonCode::LoopDetected);
    assert!(detail.contains("cycle of 2 calls"), "{detail}");
}

#[tokio::test]
async fn retries_that_get_new_answers_are_allowed_longer() {
    let mut settings = seed();
    settings.rules.clear();
    settings.budget = None;
    settings.loops.default = LoopRule {
        cycles: false,
        ..LoopRule::default()
    };
    let h = harness(settings);
    let alice = principal("alice", &[]);
    let poll = head(&alice, "s", "jobs/status", EffectClass::Read);
    let args = json!({ "job": 7 });
    for i in 0..5 {
        h.call(&poll, &args, &json!({ "progress": i }))
            .await
            .unwrap();
    }
    let (_, detail, _) = h.call(&poll, &args, &json!({})).await.unwrap_err();
    assert!(detail.contains("5 times"), "{detail}");
}
