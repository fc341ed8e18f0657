//! The whole pipeline in process, against its target (p50 ≤ 20 µs), with and without a durable audit file.
#![expect(
    clippy::unwrap_used,
    reason = "benchmark setup: a failure is a failed run, not a crash on input"
)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_core::stage::{Audit, StageFuture};
use palisade_core::*;
use palisade_pipeline::{ExecError, Execute, Executed, Permit, Pipeline};
use serde_json::{Value, json};

/// Accepts every record and keeps none: measures the pipeline, not the disk.
#[derive(Debug)]
struct Discard;

impl Audit for Discard {
    fn append<'a>(&'a self, record: &'a CallRecord) -> StageFuture<'a, ()> {
        Box::pin(async move {
            std::hint::black_box(record);
            Ok(())
        })
    }
}

struct Echo(Value);

impl Execute for Echo {
    async fn execute(&self, permit: Permit, call: &Call) -> Result<Executed, ExecError> {
        permit.redeem(call).map_err(|e| ExecError(e.to_string()))?;
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

fn call(n: u64) -> Call {
    Call {
        id: CallId(n),
        principal: Principal::new("bench"),
        session: SessionId::new("0123456789abcdef"),
        tool: ToolRef::new("files", "read_text_file"),
        arguments: json!({ "path": "/srv/shared/notes.txt" }),
        effect: EffectClass::Read,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let echo = Echo(json!({ "content": [{ "type": "text", "text": "hello" }] }));

    let in_memory = pipeline(Arc::new(Discard));
    let mut n = 0;
    c.bench_function("pipeline/pass-through, audit discarded", |b| {
        b.iter(|| {
            n += 1;
            runtime.block_on(in_memory.run(call(n), &echo))
        })
    });

    let dir = std::env::temp_dir().join(format!("palisade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = palisade_audit::JsonLines::open(&dir.join("audit.jsonl")).unwrap();
    let to_file = pipeline(Arc::new(file));
    c.bench_function("pipeline/pass-through, audit to a JSON-lines file", |b| {
        b.iter(|| {
            n += 1;
            runtime.block_on(to_file.run(call(n), &echo))
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
