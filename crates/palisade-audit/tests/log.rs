//! The embedded log end to end: appends, checkpoints, recovery, tampering, proofs.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "integration tests: a panic is a failed assertion"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use palisade_audit::checkpoint::{self, Checkpoint};
use palisade_audit::verify::{self, Options};
use palisade_audit::{AuditLog, OpenError, Paths, Settings};
use palisade_core::{AuditLine, Durability, Redacted, RedactionSeam, SystemClock};
use proptest::prelude::*;
use serde_json::json;

struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).unwrap();
        let dir = std::env::temp_dir().join(format!("palisade-audit-test-{}", hex(&id)));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn paths(&self) -> Paths {
        Paths::in_dir(&self.0)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn record(n: u64) -> Redacted<AuditLine> {
    RedactionSeam::pass_through()
        .record(
            &json!({"event": "call-outcome", "n": n, "tool": "read_file", "z": {"b": 2, "a": 1}}),
        )
        .unwrap()
}

fn open(dir: &Dir) -> AuditLog {
    open_with(dir, Settings::default())
}

fn open_with(dir: &Dir, settings: Settings) -> AuditLog {
    AuditLog::open(dir.paths(), settings, Arc::new(SystemClock)).unwrap()
}

fn key(dir: &Dir) -> ed25519_dalek::VerifyingKey {
    checkpoint::read_public_key(&dir.paths().public_key()).unwrap()
}

fn options(dir: &Dir) -> Options {
    Options {
        key: Some(key(dir)),
        ..Options::default()
    }
}

async fn fill(log: &AuditLog, from: u64, n: u64) {
    for i in from..from + n {
        let appended = log
            .append_record(&record(i), Durability::Stored)
            .await
            .unwrap();
        assert_eq!(appended.seq, i);
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn appended_records_verify_and_a_reopened_log_continues_the_chain() {
    let dir = Dir::new();
    let log = open(&dir);
    fill(&log, 0, 5).await;
    log.checkpoint().await.unwrap();
    fill(&log, 5, 3).await;
    drop(log);
    let report = verify::verify(&dir.paths(), &options(&dir)).unwrap();
    // Checkpoint 0 at creation, one asked for, one at close (for the 3 after it).
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.entries, 8);
    assert_eq!(report.unsigned_tail, 0);
    assert!(report.key_given);

    let log = open(&dir);
    fill(&log, 8, 2).await;
    let report = verify::verify(&dir.paths(), &options(&dir)).unwrap();
    assert_eq!(report.total, 10);
    assert_eq!(report.unsigned_tail, 2);
    drop(log);

    // Each line is `{"prev":…,"record":{canonical},"seq":N}`.
    let first: serde_json::Value = serde_json::from_str(&lines(&dir.paths().entries)[0]).unwrap();
    assert_eq!(first["seq"], 0);
    assert_eq!(first["record"]["z"], json!({"a": 1, "b": 2}));
    assert_eq!(first["prev"], "0".repeat(64));
}

#[tokio::test]
async fn an_idle_checkpoint_is_empty_and_still_signed_and_chained() {
    let dir = Dir::new();
    let log = open(&dir);
    let a = log.checkpoint().await.unwrap();
    let b = log.checkpoint().await.unwrap();
    assert_eq!((a, b), (1, 2));
    drop(log);
    let cps = lines(&dir.paths().checkpoints);
    let c = Checkpoint::parse(cps[2].as_bytes(), Some(&key(&dir))).unwrap();
    assert_eq!((c.body.first, c.body.end), (0, 0));
    assert_eq!(c.body.prev, hex(&checkpoint::line_hash(cps[1].as_bytes())));
    verify::verify(&dir.paths(), &options(&dir)).unwrap();
}

#[tokio::test]
async fn concurrent_appends_get_every_number_once_and_verify() {
    let dir = Dir::new();
    let log = Arc::new(open_with(
        &dir,
        Settings {
            checkpoint_entries: 100,
            ..Settings::default()
        },
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..64u64 {
        let log = Arc::clone(&log);
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                seqs.push(
                    log.append_record(&record(t * 100 + i), Durability::Stored)
                        .await
                        .unwrap()
                        .seq,
                );
            }
            seqs
        });
    }
    let mut all: Vec<u64> = Vec::new();
    while let Some(seqs) = tasks.join_next().await {
        all.extend(seqs.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..1280).collect::<Vec<_>>());
    log.checkpoint().await.unwrap();
    let report = verify::verify(&dir.paths(), &options(&dir)).unwrap();
    assert_eq!(report.entries, 1280);
    // A checkpoint follows the batch that reaches 100 pending entries.
    assert!(report.checkpoints >= 3, "{report:?}");
}

#[tokio::test]
async fn every_sync_mode_acknowledges_each_record_once_and_the_log_verifies() {
    use palisade_audit::SyncMode;
    for sync in [SyncMode::Intents, SyncMode::All, SyncMode::Background] {
        let dir = Dir::new();
        let log = Arc::new(open_with(
            &dir,
            Settings {
                sync,
                checkpoint_entries: 50,
                ..Settings::default()
            },
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..32u64 {
            let log = Arc::clone(&log);
            tasks.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..10 {
                    // Intents and outcomes interleaved, as calls write them.
                    let durability = if i % 2 == 0 {
                        Durability::Stored
                    } else {
                        Durability::Handed
                    };
                    let record = record(t * 100 + i);
                    seqs.push(log.append_record(&record, durability).await.unwrap().seq);
                }
                seqs
            });
        }
        let mut all: Vec<u64> = Vec::new();
        while let Some(seqs) = tasks.join_next().await {
            all.extend(seqs.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..320).collect::<Vec<_>>(), "{sync:?}");
        log.close();
        let report = verify::verify(&dir.paths(), &options(&dir)).unwrap();
        assert_eq!(report.entries, 320, "{sync:?}");
        assert_eq!(lines(&dir.paths().entries).len(), 320, "{sync:?}");
    }
}

#[tokio::test]
async fn two_writers_of_one_log_write_one_chain() {
    let dir = Dir::new();
    let settings = Settings {
        checkpoint_entries: 16,
        ..Settings::default()
    };
    // Two opens are two open file descriptions: their locks exclude each
    // other as two processes' would.
    let a = Arc::new(open_with(&dir, settings.clone()));
    let b = Arc::new(open_with(&dir, settings));
    let mut tasks = tokio::task::JoinSet::new();
    for (t, log) in [(0u64, &a), (1, &b), (2, &a), (3, &b)] {
        let log = Arc::clone(log);
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(
                    log.append_record(&record(t * 1000 + i), Durability::Stored)
                        .await
                        .unwrap()
                        .seq,
                );
                if i % 20 == 0 {
                    log.checkpoint().await.unwrap();
                }
            }
            seqs
        });
    }
    let mut all: Vec<u64> = Vec::new();
    while let Some(seqs) = tasks.join_next().await {
        all.extend(seqs.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<_>>());
    drop(a);
    drop(b);
    let report = verify::verify(&dir.paths(), &options(&dir)).unwrap();
    assert_eq!(
        (report.entries, report.unsigned_tail),
        (200, 0),
        "{report:?}"
    );
    // A third writer opening later continues the same chain.
    let c = open(&dir);
    assert_eq!(
        c.append_record(&record(9), Durability::Stored)
            .await
            .unwrap()
            .seq,
        200
    );
}

#[tokio::test]
async fn a_torn_last_entry_is_cut_off_and_the_repair_is_signed() {
    let dir = Dir::new();
    let log = open(&dir);
    fill(&log, 0, 4).await;
    drop(log);
    // A crash mid-write: half a line, never acknowledged.
    let mut bytes = std::fs::read(&dir.paths().entries).unwrap();
    bytes.extend_from_slice(b"{\"prev\":\"00ab");
    std::fs::write(&dir.paths().entries, &bytes).unwrap();
    let log = open(&dir);
    fill(&log, 4, 1).await;
    drop(log);
    let report = verify::verify(&dir.paths(), &options(&dir)).unwrap();
    assert_eq!(report.entries, 5);
    let cps = lines(&dir.paths().checkpoints);
    let repaired = cps
        .iter()
        .map(|l| Checkpoint::parse(l.as_bytes(), None).unwrap())
        .find(|c| c.body.torn_bytes.is_some())
        .unwrap();
    assert_eq!(repaired.body.torn_bytes, Some(13));
}

#[tokio::test]
async fn a_log_damaged_after_its_last_checkpoint_is_not_appended_to() {
    let dir = Dir::new();
    let log = open(&dir);
    fill(&log, 0, 2).await;
    log.checkpoint().await.unwrap();
    fill(&log, 2, 3).await;
    // Kill the writer without its closing checkpoint: forget it.
    std::mem::forget(log);
    // Another process may now open it (the lock is per open file: a forgotten
    // log still holds it), so use a copy of the files instead.
    let copy = Dir::new();
    for name in ["audit.jsonl", "audit.checkpoints.jsonl"] {
        std::fs::copy(dir.0.join(name), copy.0.join(name)).unwrap();
    }
    std::fs::create_dir_all(copy.0.join("keys")).unwrap();
    for name in ["audit.ed25519", "audit.ed25519.pub"] {
        std::fs::copy(
            dir.0.join("keys").join(name),
            copy.0.join("keys").join(name),
        )
        .unwrap();
    }
    let mut entries = lines(&copy.paths().entries);
    entries.swap(2, 3);
    write_lines(&copy.paths().entries, &entries);
    let err = AuditLog::open(copy.paths(), Settings::default(), Arc::new(SystemClock)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OpenError::Damaged { .. }), "{text}");
    assert!(text.contains("does not follow"), "{text}");
    // And nothing was added to it.
    assert_eq!(lines(&copy.paths().entries), entries);
}

#[tokio::test]
async fn a_log_with_entries_but_no_checkpoints_is_refused_by_name() {
    let dir = Dir::new();
    std::fs::write(&dir.paths().entries, "{\"event\":\"session-opened\"}\n").unwrap();
    let err = AuditLog::open(dir.paths(), Settings::default(), Arc::new(SystemClock)).unwrap_err();
    assert!(err.to_string().contains("no checkpoint"), "{err}");
}

#[tokio::test]
async fn every_entry_has_a_proof_that_checks_alone() {
    let dir = Dir::new();
    let log = open_with(
        &dir,
        Settings {
            checkpoint_entries: 7,
            ..Settings::default()
        },
    );
    fill(&log, 0, 23).await;
    log.checkpoint().await.unwrap();
    drop(log);
    let key = key(&dir);
    for seq in 0..23 {
        let proof = verify::prove(&dir.paths(), seq, Some(&key)).unwrap();
        let covered = verify::check_proof(&proof, &key).unwrap();
        assert!(covered.first <= seq && seq < covered.end);
        // A changed entry, index or path no longer checks.
        let mut bad = proof.clone();
        bad.entry = bad.entry.replace("read_file", "rm_rf_all");
        assert!(verify::check_proof(&bad, &key).is_err());
        if proof.size > 1 {
            let mut bad = proof.clone();
            bad.path[0] = "00".repeat(32);
            assert!(verify::check_proof(&bad, &key).is_err());
        }
    }
    let err = verify::prove(&dir.paths(), 23, Some(&key)).unwrap_err();
    assert!(err.to_string().contains("no checkpoint covers it"), "{err}");
}

#[tokio::test]
async fn a_rewritten_tail_is_caught_by_the_checkpoint_copy() {
    let dir = Dir::new();
    let copy = dir.0.join("elsewhere.jsonl");
    let settings = Settings {
        copy: Some(copy.clone()),
        ..Settings::default()
    };
    let log = open_with(&dir, settings);
    fill(&log, 0, 6).await;
    log.checkpoint().await.unwrap();
    fill(&log, 6, 6).await;
    drop(log);
    let with_copy = Options {
        copy: Some(copy.clone()),
        ..options(&dir)
    };
    assert_eq!(
        verify::verify(&dir.paths(), &with_copy)
            .unwrap()
            .copy_compared,
        Some(3)
    );
    // Drop the last checkpoint and the entries it covered: the log alone
    // still verifies (its remaining checkpoints are intact) …
    let mut cps = lines(&dir.paths().checkpoints);
    let last = Checkpoint::parse(cps.pop().unwrap().as_bytes(), None).unwrap();
    write_lines(&dir.paths().checkpoints, &cps);
    let entries = lines(&dir.paths().entries);
    write_lines(
        &dir.paths().entries,
        &entries[..usize::try_from(last.body.first).unwrap()],
    );
    verify::verify(&dir.paths(), &options(&dir)).unwrap();
    // … and the copy shows the cut.
    let err = verify::verify(&dir.paths(), &with_copy).unwrap_err();
    assert!(
        err.detail.contains("tail was removed or rewritten"),
        "{err}"
    );
}

/// The ways a log's files can be changed behind its back.
#[derive(Debug, Clone)]
enum Mutation {
    FlipByte { line: usize, at: usize },
    Delete { line: usize },
    Swap { a: usize, b: usize },
    Duplicate { line: usize },
    Truncate { keep: usize },
}

fn mutate(lines: &mut Vec<String>, m: &Mutation) -> bool {
    let n = lines.len();
    match *m {
        Mutation::FlipByte { line, at } => {
            let l = &mut lines[line % n];
            let mut bytes = l.clone().into_bytes();
            let i = at % bytes.len();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            match String::from_utf8(bytes) {
                Ok(s) if s != *l => {
                    *l = s;
                    true
                }
                _ => false,
            }
        }
        Mutation::Delete { line } => {
            lines.remove(line % n);
            true
        }
        Mutation::Swap { a, b } => {
            let (a, b) = (a % n, b % n);
            if lines[a] == lines[b] {
                return false;
            }
            lines.swap(a, b);
            true
        }
        Mutation::Duplicate { line } => {
            let l = lines[line % n].clone();
            lines.insert(line % n, l);
            true
        }
        Mutation::Truncate { keep } => {
            lines.truncate(keep % n);
            true
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(line, at)| Mutation::FlipByte { line, at }),
        any::<usize>().prop_map(|line| Mutation::Delete { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
        any::<usize>().prop_map(|line| Mutation::Duplicate { line }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
    ]
}

/// A log of `n` entries under several checkpoints, every entry signed.
fn signed_log(n: u64) -> Dir {
    let dir = Dir::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = open_with(
            &dir,
            Settings {
                checkpoint_entries: 5,
                ..Settings::default()
            },
        );
        fill(&log, 0, n).await;
        log.checkpoint().await.unwrap();
    });
    dir
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_change_to_signed_entries_is_detected(n in 3u64..30, m in mutation()) {
        let dir = signed_log(n);
        let path = dir.paths().entries;
        let mut entries = lines(&path);
        prop_assume!(mutate(&mut entries, &m));
        write_lines(&path, &entries);
        let result = verify::verify(&dir.paths(), &options(&dir));
        prop_assert!(result.is_err(), "{m:?} went unnoticed: {result:?}");
    }

    #[test]
    fn any_change_to_checkpoints_but_cutting_the_last_is_detected(n in 3u64..30, m in mutation()) {
        let dir = signed_log(n);
        let path = dir.paths().checkpoints;
        let mut cps = lines(&path);
        let before = cps.clone();
        prop_assume!(mutate(&mut cps, &m));
        // Cutting whole checkpoints off the end leaves a shorter log that is
        // consistent: only the copy kept elsewhere shows it (tested above).
        // Cutting them all is still detected (checkpoint 0 is missing).
        prop_assume!(cps.is_empty() || !before.starts_with(&cps));
        write_lines(&path, &cps);
        let result = verify::verify(&dir.paths(), &options(&dir));
        prop_assert!(result.is_err(), "{m:?} went unnoticed: {result:?}");
    }
}

#[test]
fn verification_names_the_entry_where_the_log_breaks() {
    let dir = signed_log(12);
    let path = dir.paths().entries;
    let mut entries = lines(&path);
    entries[7] = entries[7].replace("read_file", "send_mail");
    write_lines(&path, &entries);
    let err = verify::verify(&dir.paths(), &options(&dir)).unwrap_err();
    assert!(err.where_.starts_with("entry 8 "), "{err}");
    assert!(err.where_.contains("line 9"), "{err}");
    assert!(err.detail.contains("entry 7 was altered"), "{err}");

    let dir = signed_log(12);
    let path = dir.paths().entries;
    let mut entries = lines(&path);
    entries.remove(3);
    write_lines(&path, &entries);
    let err = verify::verify(&dir.paths(), &options(&dir)).unwrap_err();
    assert!(err.where_.starts_with("entry 3 "), "{err}");
    assert!(
        err.detail.contains("holds entry 4 where entry 3 belongs"),
        "{err}"
    );

    // A checkpoint re-signed by another key is refused against the real one.
    let dir = signed_log(4);
    let other = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let path = dir.paths().checkpoints;
    let mut cps = lines(&path);
    let mut c = Checkpoint::parse(cps[1].as_bytes(), None).unwrap().body;
    c.key = hex(other.verifying_key().as_bytes());
    cps[1] = String::from_utf8(c.sign(&other).line()).unwrap();
    write_lines(&path, &cps);
    let err = verify::verify(&dir.paths(), &options(&dir)).unwrap_err();
    assert!(err.where_.starts_with("checkpoint 1 "), "{err}");
    assert!(err.detail.contains("not by the expected key"), "{err}");
}

#[test]
fn a_range_is_verified_from_its_covering_checkpoint() {
    let dir = signed_log(30);
    let opts = Options {
        from: Some(12),
        to: Some(17),
        ..options(&dir)
    };
    let report = verify::verify(&dir.paths(), &opts).unwrap();
    // Checkpoints of five: 10..15 and 15..20.
    assert_eq!(report.entries, 10);
    // A same-length change outside the range is not looked at (one that
    // moves the range's bytes is); one inside it is found.
    let path = dir.paths().entries;
    let mut entries = lines(&path);
    entries[2] = entries[2].replace("read_file", "read_fila");
    write_lines(&path, &entries);
    verify::verify(&dir.paths(), &opts).unwrap();
    assert!(verify::verify(&dir.paths(), &options(&dir)).is_err());
    entries[13] = entries[13].replace("read_file", "read_fila");
    write_lines(&path, &entries);
    let err = verify::verify(&dir.paths(), &opts).unwrap_err();
    assert!(err.where_.starts_with("entry 14 "), "{err}");
}
