//! Layer 1's decision latency with 10, 100 and 1,000 policies, next to Cedar's own evaluation of the same set.
//!
//! Four measurements per size: Cedar's `Authorizer::is_authorized` on a
//! request and entities built once (the anchor); `PolicyEngine::decide`
//! (building the request and entities from palisade's types, then Cedar,
//! then the approval rules); `PolicyAuthorizer::authorize`, the whole stage
//! with argument checks and the permit minted; and `visible`, the listing
//! check. After criterion, a plain loop prints p50 and p99 of `authorize`,
//! which criterion does not report.
#![expect(
    clippy::unwrap_used,
    clippy::unreachable,
    clippy::cast_precision_loss,
    reason = "benchmark setup: a failure is a failed run, not a crash on input"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Instant, SystemTime};

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use palisade_authz::Authorize;
use palisade_authz::policy::{
    NoArgumentChecks, PolicyAuthorizer, PolicyEngine, PolicyRequest, PolicySource,
};
use palisade_core::{
    Call, CallContext, CallHead, CallId, CallKind, Credential, EffectClass, Identity, Principal,
    PrincipalKind, SessionFacts, SessionId, SystemClock, Target,
};
use serde_json::json;

const SIZES: [usize; 3] = [10, 100, 1_000];

/// `n` policies of the shapes operators write: role reads per server, one
/// principal per tool, conditioned writes, approvals, forbids.
fn policies(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let srv = i % 30;
        let role = i % 20;
        let text = match i % 6 {
            0 => format!(
                "permit (principal in Role::\"role{role}\", action == Action::\"read\", resource in Server::\"srv{srv}\");\n"
            ),
            1 => format!(
                "permit (principal == User::\"user{i}\", action, resource == Tool::\"srv{srv}/tool{i}\");\n"
            ),
            2 => format!(
                "permit (principal in Role::\"role{role}\", action == Action::\"write\", resource in Server::\"srv{srv}\")\n  when {{ context.args.hasTag(\"path\") && context.args.getTag(\"path\") like \"/data/{srv}/*\" }};\n"
            ),
            3 => format!(
                "@approval(\"tool{i} needs a human\")\npermit (principal in Role::\"role{role}\", action, resource == Tool::\"srv{srv}/tool{i}\");\n"
            ),
            4 => format!(
                "forbid (principal in Role::\"contractor{role}\", action, resource in Server::\"srv{srv}\")\n  when {{ context.hour < 8 || context.hour > 18 }};\n"
            ),
            _ => format!(
                "forbid (principal, action == Action::\"egress\", resource in Server::\"srv{srv}\")\n  when {{ context.session.tainted }};\n"
            ),
        };
        out.push_str(&text);
    }
    out
}

fn alice() -> Principal {
    Principal::from_identity(Identity {
        id: "alice".into(),
        kind: PrincipalKind::User,
        roles: vec!["role3".into(), "role7".into()],
        tenant: Some("acme".into()),
        credential: Credential::ApiKey { key: "k1".into() },
        task: None,
    })
}

/// Cedar alone: the request and entities built once, as a caller that
/// keeps them would.
fn cedar_inputs(target: &Target) -> (Request, Entities) {
    let uid = |s: &str| EntityUid::from_str(s).unwrap();
    let principal = Entity::new_with_tags(
        uid("User::\"alice\""),
        [(
            "credential".to_owned(),
            RestrictedExpression::new_string("api-key".to_owned()),
        )],
        [
            uid("Role::\"role3\""),
            uid("Role::\"role7\""),
            uid("Tenant::\"acme\""),
        ],
        [],
    )
    .unwrap();
    let attrs = |name: &str| {
        [
            (
                "server".to_owned(),
                RestrictedExpression::new_string(target.server.to_string()),
            ),
            (
                "name".to_owned(),
                RestrictedExpression::new_string(name.to_owned()),
            ),
        ]
    };
    let server_uid = uid(&format!("Server::\"{}\"", target.server));
    let tool_uid = uid(&format!("Tool::\"{}/{}\"", target.server, target.name));
    let server = Entity::new_with_tags(server_uid.clone(), attrs(&target.server), [], []).unwrap();
    let tool =
        Entity::new_with_tags(tool_uid.clone(), attrs(&target.name), [server_uid], []).unwrap();
    let args = Entity::new_with_tags(
        uid("Arguments::\"call\""),
        [],
        [],
        [(
            "path".to_owned(),
            RestrictedExpression::new_string("/data/3/x".to_owned()),
        )],
    )
    .unwrap();
    let entities = Entities::from_entities([principal, server, tool, args], None).unwrap();
    let context = Context::from_json_value(
        json!({
            "effect": "read", "kind": "tool", "tool": "srv3__tool9",
            "session": {"tainted": false},
            "task": {"present": false, "id": "", "scopes": []},
            "time": 1_700_000_000_i64, "hour": 10,
            "constraints": {},
            "args": {"__entity": {"type": "Arguments", "id": "call"}},
        }),
        None,
    )
    .unwrap();
    let request = Request::new(
        uid("User::\"alice\""),
        uid("Action::\"read\""),
        tool_uid,
        context,
        None,
    )
    .unwrap();
    (request, entities)
}

/// The authorize future is ready at once (no I/O); poll it once.
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("authorize never waits"),
    }
}

fn call(target: &Target) -> Call {
    Call::new(
        CallHead {
            id: CallId(1),
            principal: alice(),
            session: SessionId::new("s"),
            kind: CallKind::Tool,
            target: target.clone(),
            effect: EffectClass::Read,
            params: None,
            parent: None,
        },
        json!({"path": "/data/3/x", "mode": "text"}),
    )
}

fn bench(c: &mut Criterion) {
    let target = Target::new("srv3", "tool9");
    let (cedar_request, cedar_entities) = cedar_inputs(&target);
    let arguments = json!({"path": "/data/3/x", "mode": "text"});
    let alice = alice();
    let mut group = c.benchmark_group("authz");
    for n in SIZES {
        let text = policies(n);
        let source = PolicySource {
            file: PathBuf::from("bench.cedar"),
            text: text.clone(),
        };
        let engine = PolicyEngine::load(std::slice::from_ref(&source), &[], true).unwrap();
        let set = PolicySet::from_str(&text).unwrap();
        let cedar = Authorizer::new();
        group.bench_with_input(BenchmarkId::new("cedar_is_authorized", n), &n, |b, _| {
            b.iter(|| black_box(cedar.is_authorized(&cedar_request, &set, &cedar_entities)))
        });
        group.bench_with_input(BenchmarkId::new("engine_decide", n), &n, |b, _| {
            b.iter(|| {
                black_box(engine.decide(&PolicyRequest {
                    principal: &alice,
                    kind: CallKind::Tool,
                    target: &target,
                    exposed_name: "srv3__tool9",
                    effect: EffectClass::Read,
                    arguments: &arguments,
                    tainted: false,
                    taint_sources: &[],
                    constraints: &[],
                    now: SystemTime::now(),
                }))
            })
        });
        group.bench_with_input(BenchmarkId::new("engine_visible", n), &n, |b, _| {
            b.iter(|| black_box(engine.visible(&alice, CallKind::Tool, &target, EffectClass::Read)))
        });
        let authorizer = PolicyAuthorizer::load(
            std::slice::from_ref(&source),
            Arc::new(NoArgumentChecks),
            HashMap::new(),
            Arc::new(SystemClock),
            true,
        )
        .unwrap();
        let call = call(&target);
        let ctx = CallContext::new(SessionFacts::new());
        group.bench_with_input(BenchmarkId::new("authorizer_authorize", n), &n, |b, _| {
            b.iter(|| black_box(ready(authorizer.authorize(&call, &ctx))))
        });
    }
    group.finish();
    percentiles();
}

/// p50 and p99 of the whole stage, one timing per call.
fn percentiles() {
    let target = Target::new("srv3", "tool9");
    for n in SIZES {
        let source = PolicySource {
            file: PathBuf::from("bench.cedar"),
            text: policies(n),
        };
        let authorizer = PolicyAuthorizer::load(
            &[source],
            Arc::new(NoArgumentChecks),
            HashMap::new(),
            Arc::new(SystemClock),
            true,
        )
        .unwrap();
        let call = call(&target);
        let ctx = CallContext::new(SessionFacts::new());
        let runs = if n >= 1_000 { 5_000 } else { 20_000 };
        let mut times: Vec<u128> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                black_box(ready(authorizer.authorize(&call, &ctx)).ok());
                start.elapsed().as_nanos()
            })
            .collect();
        times.sort_unstable();
        let at = |q: f64| {
            times
                .get(((times.len() as f64) * q) as usize)
                .copied()
                .unwrap_or(0)
        };
        eprintln!(
            "authorize with {n} policies: p50 {:.1} µs, p99 {:.1} µs ({runs} calls)",
            at(0.50) as f64 / 1_000.0,
            at(0.99) as f64 / 1_000.0
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
