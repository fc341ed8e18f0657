//! What a task token costs the gateway: verifying one (once per request), and checking a call against it.
#![expect(
    clippy::unwrap_used,
    reason = "benchmark setup: a failure is a failed run, not a crash on input"
)]

use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_authz::tokens::{
    Attenuation, TaskGrant, TokenAuthority, TokenSettings, attenuate, parse_tool,
};
use palisade_core::{CallKind, EffectClass, PrincipalKind, Target, TaskScope};

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("palisade-bench-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let now = SystemTime::now();
    let authority = TokenAuthority::open(&dir, TokenSettings::default(), now).unwrap();
    let grant = TaskGrant {
        principal: "alice".into(),
        kind: PrincipalKind::User,
        roles: vec!["dev".into()],
        tenant: Some("acme".into()),
        tools: vec![
            parse_tool("files__read_text_file").unwrap(),
            parse_tool("files__list_directory").unwrap(),
        ],
        effects: Vec::new(),
        environment: Some("prod".into()),
        ttl: Duration::from_secs(900),
    };
    let token = authority.issue(&grant, now).unwrap();
    let narrowed = attenuate(
        &token.text,
        &Attenuation {
            tools: vec![parse_tool("files__read_text_file").unwrap()],
            effects: Vec::new(),
            ttl: Some(Duration::from_secs(300)),
        },
        now,
    )
    .unwrap();
    let target = Target::new("files", "read_text_file");
    for (name, text) in [("issued", &token.text), ("attenuated", &narrowed.text)] {
        c.bench_function(&format!("verify/{name}"), |b| {
            b.iter(|| authority.verify(text, "prod", now).unwrap())
        });
        let task = authority.verify(text, "prod", now).unwrap();
        c.bench_function(&format!("permits/{name}"), |b| {
            b.iter(|| {
                task.permits(&target, CallKind::Tool, EffectClass::Read, now)
                    .unwrap()
            })
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
