//! The whole pipeline in process, against its target (p50 ≤ 20 µs), with and without a durable audit file, and with Cedar authorization on.
#![expect(
    clippy::unwrap_used,
    reason = "benchmark setup: a failure is a failed run, not a crash on input"
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_core::stage::{Audit, StageFuture};
use palisade_core::*;
use palisade_pipeline::{Authorized, ExecError, Execute, Executed, Pipeline};
use serde_json::{Value, json};

/// Accepts every line and keeps none: measures the pipeline, not the disk.
#[derive(Debug)]
struct Discard;

impl Audit for Discard {
    fn append<'a>(
        &'a self,
        line: &'a Redacted<AuditLine>,
        _durability: Durability,
    ) -> StageFuture<'a, ()> {
        Box::pin(async move {
            std::hint::black_box(line);
            Ok(())
        })
    }
}

/// An upstream that answers every authorized call with the same result.
struct Echo(Value);

impl Execute for Echo {
    async fn execute(&self, call: Authorized) -> Result<Executed, ExecError> {
        std::hint::black_box(call.arguments());
        Ok(Executed::Result(self.0.clone()))
    }
}

fn pipeline(audit: Arc<dyn Audit>) -> Pipeline {
    let mut builder = Pipeline::builder().audit(audit);
    for stage in palisade_pipeline::PASSABLE {
        builder = builder.pass_through(stage);
    }
    builder.build().unwrap()
}

/// Ten policies of the kinds an operator starts with: reads by role, writes
/// under a path, an approval, forbids on taint and out of hours.
const POLICIES: &str = r#"
permit (principal in Role::"dev", action == Action::"read", resource in Server::"files");
permit (principal in Role::"dev", action == Action::"write", resource in Server::"files")
  when { context.args.hasTag("path") && context.args.getTag("path") like "/srv/shared/*" };
permit (principal in Role::"ops", action, resource in Server::"shell");
@approval("deleting needs a human")
permit (principal in Role::"dev", action, resource == Tool::"files/delete_file");
permit (principal == Service::"ci", action == Action::"read", resource);
permit (principal in Role::"dev", action == Action::"egress", resource in Server::"web")
  when { !context.session.tainted };
forbid (principal, action == Action::"egress", resource) when { context.session.tainted };
forbid (principal in Role::"contractor", action, resource) when { context.hour < 8 || context.hour > 18 };
forbid (principal, action, resource == Tool::"shell/rm");
forbid (principal, action, resource in Server::"files") when { context.task.present && !(context.task.scopes.contains(context.tool)) };
"#;

/// Every stage passed through but authorization, which is palisade's
/// Cedar engine on [`POLICIES`].
fn authorized_pipeline(audit: Arc<dyn Audit>) -> Pipeline {
    let authorizer = palisade_authz::policy::PolicyAuthorizer::load(
        &[palisade_authz::policy::PolicySource {
            file: PathBuf::from("bench.cedar"),
            text: POLICIES.to_owned(),
        }],
        Arc::new(palisade_authz::policy::NoArgumentChecks),
        HashMap::new(),
        Arc::new(SystemClock),
        true,
    )
    .unwrap();
    let mut builder = Pipeline::builder()
        .audit(audit)
        .authorize(Arc::new(authorizer));
    for stage in palisade_pipeline::PASSABLE {
        if stage != Stage::Authorize {
            builder = builder.pass_through(stage);
        }
    }
    builder.build().unwrap()
}

fn developer() -> Principal {
    Principal::from_identity(Identity {
        id: "alice".into(),
        kind: PrincipalKind::User,
        roles: vec!["dev".into()],
        tenant: Some("acme".into()),
        credential: Credential::ApiKey { key: "k1".into() },
        task: None,
    })
}

fn call(n: u64) -> Call {
    call_as(n, Principal::new("bench"))
}

fn call_as(n: u64, principal: Principal) -> Call {
    let head = CallHead {
        id: CallId(n),
        principal,
        session: SessionId::new("0123456789abcdef"),
        kind: CallKind::Tool,
        target: Target::new("files", "read_text_file"),
        effect: EffectClass::Read,
        params: None,
        parent: None,
    };
    Call::new(head, json!({ "path": "/srv/shared/notes.txt" }))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let echo = Echo(json!({ "content": [{ "type": "text", "text": "hello" }] }));
    // One session for every call, as one busy agent's would be.
    let session = SessionFacts::new();

    let in_memory = pipeline(Arc::new(Discard));
    let mut n = 0;
    c.bench_function("pipeline/pass-through, audit discarded", |b| {
        b.iter(|| {
            n += 1;
            runtime.block_on(in_memory.run(call(n), Arc::clone(&session), &echo))
        })
    });

    let dir = std::env::temp_dir().join(format!("palisade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = palisade_audit::AuditLog::open(
        palisade_audit::Paths::in_dir(&dir),
        palisade_audit::Settings::default(),
        Arc::new(palisade_core::SystemClock),
    )
    .unwrap();
    let to_file = pipeline(Arc::new(file));
    // One call at a time: each record waits for its own fdatasync.
    c.bench_function("pipeline/pass-through, audit to the embedded log", |b| {
        b.iter(|| {
            n += 1;
            runtime.block_on(to_file.run(call(n), Arc::clone(&session), &echo))
        })
    });
    let _ = std::fs::remove_dir_all(&dir);

    let authorized = authorized_pipeline(Arc::new(Discard));
    let alice = developer();
    // The measured call must be one the policies allow and the upstream runs.
    let first =
        runtime.block_on(authorized.run(call_as(0, alice.clone()), Arc::clone(&session), &echo));
    assert!(
        matches!(first, palisade_pipeline::CallResult::Returned(_)),
        "the benchmark call was not allowed: {first:?}"
    );
    c.bench_function(
        "pipeline/Cedar authorization (10 policies), audit discarded",
        |b| {
            b.iter(|| {
                n += 1;
                let outcome = runtime.block_on(authorized.run(
                    call_as(n, alice.clone()),
                    Arc::clone(&session),
                    &echo,
                ));
                std::hint::black_box(outcome)
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
