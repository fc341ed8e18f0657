//! Durable appends per second and verification speed, each next to an anchor measured in the same run.
//!
//! `cargo bench -p palisade-audit --bench audit` prints one table. Appends:
//! the embedded log with group commit (256 concurrent writers, each waiting
//! for its record to be on disk), against an append-only file that syncs
//! every record on its own (what durability costs without group commit);
//! and the same writers waiting only until the kernel has each record (an
//! outcome's durability under `sync = "intents"`), synced behind them.
//! Verification: `palisade audit verify`'s work on a log of N entries,
//! against SHA-256 alone over the same bytes.
#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "a benchmark program: a panic is a failed run, and it prints its results"
)]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use palisade_audit::verify::{self, Options};
use palisade_audit::{AuditLog, Paths, Settings};
use palisade_core::{AuditLine, Durability, Redacted, RedactionSeam, SystemClock};
use serde_json::json;
use sha2::Digest;

/// A `call-outcome` record of a typical size (about 700 bytes).
fn record(i: u64) -> Redacted<AuditLine> {
    RedactionSeam::pass_through()
        .record(&json!({
            "event": "call-outcome",
            "time": "2026-12-06T22:00:00.123456Z",
            "call": format!("c{i:016x}"),
            "session": "s-5f0c9d8e2b7a41c3",
            "principal": {"id": "alice@example.com", "roles": ["engineer"], "tenant": "acme"},
            "kind": "tools/call",
            "target": {"server": "filesystem", "name": "read_file"},
            "effect": "read",
            "arguments_digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "arguments": {"path": "/srv/project/src/main.rs"},
            "status": "completed",
            "result": {"content": [{"type": "text", "text": "fn main() { println!(\"hello\"); } // and a few more lines of a source file"}]},
            "stages": [
                {"stage": "authorize", "verdict": "allow", "micros": 4},
                {"stage": "limits", "verdict": "allow", "micros": 1},
                {"stage": "outbound-filter", "verdict": "allow", "micros": 9},
                {"stage": "execute", "verdict": "allow", "micros": 812},
                {"stage": "redact", "verdict": "allow", "micros": 3},
                {"stage": "inbound-filter", "verdict": "allow", "micros": 14}
            ],
            "findings": [],
            "micros": 870
        }))
        .unwrap()
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "palisade-audit-bench-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn appends_grouped(n: u64, writers: u64, durability: Durability) -> (f64, std::path::PathBuf) {
    let dir = temp(&format!("grouped-{durability:?}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let records: Arc<Vec<_>> = Arc::new((0..n).map(record).collect());
    let log = Arc::new(
        AuditLog::open(
            Paths::in_dir(&dir),
            Settings::default(),
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let start = Instant::now();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            let log = Arc::clone(&log);
            let records = Arc::clone(&records);
            tasks.spawn(async move {
                let mut i = w;
                while i < n {
                    log.append_record(&records[i as usize], durability)
                        .await
                        .unwrap();
                    i += writers;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    let rate = n as f64 / start.elapsed().as_secs_f64();
    log.close();
    (rate, dir)
}

fn appends_one_sync_each(n: u64) -> f64 {
    let dir = temp("each");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("audit.jsonl"))
        .unwrap();
    let lines: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut l = record(i).get().bytes().to_vec();
            l.push(b'\n');
            l
        })
        .collect();
    let start = Instant::now();
    for l in &lines {
        file.write_all(l).unwrap();
        file.sync_data().unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

fn main() {
    let n: u64 = std::env::var("AUDIT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let (grouped, dir) = appends_grouped(n, 256, Durability::Stored);
    let (handed, handed_dir) = appends_grouped(n, 256, Durability::Handed);
    let _ = std::fs::remove_dir_all(&handed_dir);
    let each = appends_one_sync_each(2_000.min(n));

    let paths = Paths::in_dir(&dir);
    let bytes = std::fs::read(&paths.entries).unwrap();
    let key = palisade_audit::checkpoint::read_public_key(&paths.public_key()).unwrap();
    let options = Options {
        key: Some(key),
        ..Options::default()
    };
    let mut best_verify = f64::MAX;
    let mut best_hash = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let report = verify::verify(&paths, &options).unwrap();
        best_verify = best_verify.min(start.elapsed().as_secs_f64());
        assert_eq!(report.total, n);
        let start = Instant::now();
        let digest = sha2::Sha256::digest(&bytes);
        std::hint::black_box(digest);
        best_hash = best_hash.min(start.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mib = bytes.len() as f64 / (1024.0 * 1024.0);
    println!(
        "audit log, {n} entries of {} bytes on average",
        bytes.len() as u64 / n
    );
    println!("| what | rate |");
    println!("|---|---|");
    println!("| durable appends, group commit, 256 writers | {grouped:.0} entries/s |");
    println!("| anchor: append + fdatasync per record | {each:.0} entries/s |");
    println!("| appends with the kernel, synced behind, 256 writers | {handed:.0} entries/s |");
    println!(
        "| verify (chain, Merkle roots, signatures) | {:.0} entries/s ({:.0} MiB/s) |",
        n as f64 / best_verify,
        mib / best_verify
    );
    println!(
        "| anchor: SHA-256 of the same bytes | {:.0} entries/s ({:.0} MiB/s) |",
        n as f64 / best_hash,
        mib / best_hash
    );
}
