//! Durable appends per second and verification speed, each next to an anchor measured in the same run.
//!
//! `cargo bench -p palisade-audit --bench audit` prints one table. Appends:
//! the embedded log with group commit (256 concurrent writers, each waiting
//! for its record to be on disk), against an append-only file that syncs
//! every record on its own (what durability costs without group commit);
//! and the same writers waiting only until the kernel has each record (an
//! outcome's durability under `sync = "intents"`), synced behind them.
//! Verification: `palisade audit verify`'s work on a log of N entries,
//! against SHA-256 alone over the same bytes. With `PALISADE_TEST_POSTGRES`
//! (a superuser's URL, as `scripts/postgres url` prints), also the
//! PostgreSQL store in a database of its own, against one `INSERT` per
//! record committed on its own.
#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "a benchmark program (spawning its own tasks): a panic is a failed run, and it prints its results"
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

/// Appends every record from `writers` tasks at once, each waiting for its own.
fn append_all(
    runtime: &tokio::runtime::Runtime,
    log: &Arc<AuditLog>,
    records: &Arc<Vec<Redacted<AuditLine>>>,
    writers: u64,
    durability: Durability,
) {
    let n = records.len() as u64;
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            let log = Arc::clone(log);
            let records = Arc::clone(records);
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
    append_all(&runtime, &log, &records, writers, durability);
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

/// `url` logging in as `user` to database `db`.
fn pg_url(url: &str, user: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let host = authority.rsplit('@').next().unwrap();
    format!("{scheme}://{user}@{host}/{db}")
}

/// The PostgreSQL store: (grouped appends/s, anchor appends/s).
fn appends_postgres(url: &str, n: u64, writers: u64) -> (f64, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tag = std::process::id();
    let (db, owner, gateway) = (
        format!("palisade_bench_{tag}"),
        format!("bench_owner_{tag}"),
        format!("bench_gw_{tag}"),
    );
    let admin = |sql: String, url: String| {
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let running = tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap();
            drop(client);
            let _ = running.await;
        });
    };
    // CREATE and DROP DATABASE run outside a transaction: one statement each.
    admin(format!("CREATE DATABASE {db}"), url.to_owned());
    admin(
        format!("CREATE ROLE {owner} LOGIN; CREATE ROLE {gateway} LOGIN"),
        url.to_owned(),
    );
    let user = url.split("://").nth(1).unwrap().split('@').next().unwrap();
    admin(
        format!("GRANT CREATE ON SCHEMA public TO {owner}"),
        pg_url(url, user, &db),
    );
    palisade_audit::postgres::init(&pg_url(url, &owner, &db), &gateway).unwrap();

    let dir = temp("postgres");
    let log = Arc::new(
        AuditLog::open_postgres(
            Paths::in_dir(&dir),
            &palisade_audit::postgres::Target {
                url: pg_url(url, &gateway, &db),
                node: "bench".into(),
            },
            Settings::default(),
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let records: Arc<Vec<_>> = Arc::new((0..n).map(record).collect());
    let start = Instant::now();
    append_all(&runtime, &log, &records, writers, Durability::Stored);
    let grouped = n as f64 / start.elapsed().as_secs_f64();
    log.close();

    // The anchor: each record its own INSERT and commit, one after another.
    let each_n = 2_000.min(n);
    let gw_url = pg_url(url, &gateway, &db);
    let each = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&gw_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let running = tokio::spawn(connection);
        let lines: Vec<String> = (0..each_n)
            .map(|i| String::from_utf8(record(i).get().bytes().to_vec()).unwrap())
            .collect();
        let start = Instant::now();
        for (i, line) in lines.iter().enumerate() {
            client
                .execute(
                    "INSERT INTO palisade_audit_entries (node, seq, line) VALUES ('anchor', $1, $2)",
                    &[&(i as i64), line],
                )
                .await
                .unwrap();
        }
        let rate = each_n as f64 / start.elapsed().as_secs_f64();
        drop(client);
        let _ = running.await;
        rate
    });
    admin(format!("DROP DATABASE {db} WITH (FORCE)"), url.to_owned());
    admin(
        format!("DROP ROLE {owner}; DROP ROLE {gateway}"),
        url.to_owned(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    (grouped, each)
}

fn main() {
    let n: u64 = std::env::var("AUDIT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let postgres = std::env::var("PALISADE_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|url| appends_postgres(&url, n.min(100_000), 256));
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
    if let Some((grouped, each)) = postgres {
        println!(
            "| PostgreSQL: committed appends, one insert per batch, 256 writers | {grouped:.0} entries/s |"
        );
        println!("| anchor: PostgreSQL, one INSERT and commit per record | {each:.0} entries/s |");
    }
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
