//! Scores the inbound filter and the PII finder on the evaluation corpora and prints plain tables of aggregate numbers.
//!
//! `cargo run --release -p palisade-filter --example evaluate -- [--ids] [--verdicts] [--misses] DIR`
//! (or `scripts/evaluate-filter [DIR]`), where `DIR` holds `injection/*.jsonl`,
//! `pii/synth_dataset_v2.json` and `html/*.html` (see the corpora's
//! MANIFEST.md). Printed:
//!
//! - injection, per file: recall on attacks and the false-positive rate on
//!   benign records at the default threshold (a record is flagged when any
//!   detection's class is suspicious), recall per kind and per the attack
//!   fields the corpora carry, the score distribution, a threshold sweep and
//!   the recall at the lowest threshold whose false-positive rate over all
//!   benign records together is at most 1 %;
//! - invariance: each attack rewritten by an evasion transform (tag
//!   characters, zero-width splitting, homoglyphs, bidi reordering, base64,
//!   HTML hiding), and the share whose verdict stays that of the plain text;
//! - the benign HTML pages read as HTML, and what was flagged in them;
//! - PII: precision, recall and F2 per kind, a prediction counting when it
//!   overlaps a gold span of the same kind;
//! - the time taken and the throughput.
//!
//! Only numbers, rule codes and record ids (with `--ids`) are printed, never
//! corpus text (the diagnosis flags print record ids, finding codes and the
//! shapes of missed PII values, for a terminal, not for a file). Malformed
//! lines are skipped and counted.
#![expect(clippy::print_stdout, reason = "a report printed to the terminal")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine as _;
use palisade_filter::injection::Rules;
use palisade_filter::pii::{self, PiiKind};
use palisade_filter::scan::{self, Class, DEFAULT_THRESHOLD, Options, Sanitized};
use palisade_filter::{html, unicode};
use serde_json::Value;

const USAGE: &str = "usage: evaluate [--ids] [--verdicts] [--misses] CORPORA_DIR
  --ids       the ids of attacks whose verdict a transform changed, with finding codes
  --verdicts  one line per injection record: id, label, verdict, score
  --misses    the shape (digits as 9, letters as A) of each PII value missed";

/// Pooled benign false-positive rate the sweep looks for.
const TARGET_FPR: f64 = 0.01;

fn main() -> ExitCode {
    let (mut ids, mut verdicts, mut misses) = (false, false, false);
    let mut dir = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--ids" => ids = true,
            "--verdicts" => verdicts = true,
            "--misses" => misses = true,
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let Some(dir) = dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if !dir.is_dir() {
        eprintln!("evaluate: no corpora folder at {}", dir.display());
        return ExitCode::from(1);
    }
    let rules = Rules::new();
    println!(
        "palisade-filter evaluation on {} ({} injection rules, default threshold {DEFAULT_THRESHOLD})",
        dir.display(),
        rules.len()
    );
    let started = Instant::now();
    let files = injection(&dir, &rules);
    if verdicts {
        println!();
        for r in files.iter().flat_map(|f| &f.records) {
            let label = if r.attack { "attack" } else { "benign" };
            println!("verdict {} {label} {} {:.4}", r.id, r.flagged, r.score);
        }
    }
    if !files.is_empty() {
        invariance(&files, &rules, ids);
    }
    html_pages(&dir, &rules);
    pii_eval(&dir, misses);
    println!();
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------- injection

/// One labelled record, with what the filter made of it.
#[derive(Debug)]
struct Record {
    id: String,
    text: String,
    attack: bool,
    kind: String,
    /// Attack fields to group by (`attack_category`, `position`, `subsource`).
    groups: Vec<(&'static str, String)>,
    /// The verdict at the default threshold.
    flagged: bool,
    /// Flagged whatever the threshold (smuggled text, hidden instructions).
    structural: bool,
    /// The highest injection score of the text and its decoded layers.
    score: f64,
}

impl Record {
    fn flagged_at(&self, threshold: f64) -> bool {
        self.structural || self.score >= threshold
    }
}

#[derive(Debug)]
struct File {
    name: String,
    short: String,
    records: Vec<Record>,
    malformed: usize,
    bytes: usize,
    elapsed: Duration,
}

const GROUP_FIELDS: [&str; 3] = ["attack_category", "position", "subsource"];

fn flagged(s: &Sanitized) -> bool {
    s.detections.iter().any(|d| d.class.suspicious())
}

/// The verdict's threshold-free part and the score the threshold is compared with.
fn score_of(s: &Sanitized) -> (bool, f64) {
    let structural = s
        .detections
        .iter()
        .any(|d| matches!(d.class, Class::SmuggledText | Class::HiddenInstruction));
    let encoded = s
        .detections
        .iter()
        .filter(|d| d.class == Class::EncodedInstruction)
        .filter_map(|d| d.score)
        .fold(0.0, f64::max);
    (structural, s.score.max(encoded))
}

fn options(html: bool, threshold: f64) -> Options {
    Options {
        html,
        threshold,
        ..Options::default()
    }
}

fn read_injection_file(path: &Path, rules: &Rules) -> Option<File> {
    let content = std::fs::read_to_string(path).ok()?;
    let name = path.file_name()?.to_string_lossy().into_owned();
    let short = name.split(['_', '.']).next().unwrap_or(&name).to_owned();
    let mut records = Vec::new();
    let mut malformed = 0;
    for line in content.lines().filter(|l| !l.trim().is_empty()) {
        let Some(record) = parse_record(line) else {
            malformed += 1;
            continue;
        };
        records.push(record);
    }
    // The verdict, timed: the filter as the gateway runs it.
    let started = Instant::now();
    let mut bytes = 0;
    for record in &mut records {
        bytes += record.text.len();
        let s = scan::sanitize(&record.text, rules, options(false, DEFAULT_THRESHOLD));
        record.flagged = flagged(&s);
    }
    let elapsed = started.elapsed();
    // The score, with every encoded layer reported whatever its score.
    for record in &mut records {
        let s = scan::sanitize(&record.text, rules, options(false, f64::MIN_POSITIVE));
        (record.structural, record.score) = score_of(&s);
    }
    Some(File {
        name,
        short,
        records,
        malformed,
        bytes,
        elapsed,
    })
}

fn parse_record(line: &str) -> Option<Record> {
    let value: Value = serde_json::from_str(line).ok()?;
    let text = value.get("text")?.as_str()?.to_owned();
    let attack = match value.get("label")?.as_str()? {
        "attack" => true,
        "benign" => false,
        _ => return None,
    };
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let groups = GROUP_FIELDS
        .iter()
        .filter_map(|&name| field(name).map(|v| (name, v)))
        .collect();
    Some(Record {
        id: field("id").unwrap_or_default(),
        text,
        attack,
        kind: field("kind").unwrap_or_else(|| "-".into()),
        groups,
        flagged: false,
        structural: false,
        score: 0.0,
    })
}

fn injection(dir: &Path, rules: &Rules) -> Vec<File> {
    let folder = dir.join("injection");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    if paths.is_empty() {
        println!();
        println!("injection: no *.jsonl under {} (skipped)", folder.display());
        return Vec::new();
    }
    let files: Vec<File> = paths
        .iter()
        .filter_map(|p| {
            let file = read_injection_file(p, rules);
            if file.is_none() {
                eprintln!("evaluate: cannot read {}", p.display());
            }
            file
        })
        .collect();

    // Per file, at the default threshold.
    let mut rows = Vec::new();
    let (mut all_bytes, mut all_time, mut all_records) = (0, Duration::ZERO, 0);
    for f in &files {
        let attacks = f.records.iter().filter(|r| r.attack).count();
        let benign = f.records.len() - attacks;
        let hit = f.records.iter().filter(|r| r.attack && r.flagged).count();
        let fp = f.records.iter().filter(|r| !r.attack && r.flagged).count();
        all_bytes += f.bytes;
        all_time += f.elapsed;
        all_records += f.records.len();
        rows.push(vec![
            f.name.clone(),
            f.records.len().to_string(),
            f.malformed.to_string(),
            attacks.to_string(),
            pct(hit, attacks),
            benign.to_string(),
            pct(fp, benign),
            ms(f.elapsed),
            mib_s(f.bytes, f.elapsed),
            per_s(f.records.len(), f.elapsed),
        ]);
    }
    let attacks: Vec<&Record> = files
        .iter()
        .flat_map(|f| &f.records)
        .filter(|r| r.attack)
        .collect();
    let benign: Vec<&Record> = files
        .iter()
        .flat_map(|f| &f.records)
        .filter(|r| !r.attack)
        .collect();
    rows.push(vec![
        "all".into(),
        all_records.to_string(),
        files.iter().map(|f| f.malformed).sum::<usize>().to_string(),
        attacks.len().to_string(),
        pct(attacks.iter().filter(|r| r.flagged).count(), attacks.len()),
        benign.len().to_string(),
        pct(benign.iter().filter(|r| r.flagged).count(), benign.len()),
        ms(all_time),
        mib_s(all_bytes, all_time),
        per_s(all_records, all_time),
    ]);
    table(
        &format!("injection at the default threshold ({DEFAULT_THRESHOLD})"),
        &[
            "file",
            "records",
            "malformed",
            "attacks",
            "recall",
            "benign",
            "FP rate",
            "time",
            "MiB/s",
            "records/s",
        ],
        &rows,
    );

    // Consistency of the sweep's model of the verdict with the verdict.
    let mismatched = files
        .iter()
        .flat_map(|f| &f.records)
        .filter(|r| r.flagged != r.flagged_at(DEFAULT_THRESHOLD))
        .count();
    if mismatched > 0 {
        println!(
            "note: {mismatched} records flagged differently by the score model than by the filter"
        );
    }

    // Per kind, and per the attack fields.
    let mut by_kind: BTreeMap<(String, String, &str), (usize, usize)> = BTreeMap::new();
    for f in &files {
        for r in &f.records {
            let label = if r.attack { "attack" } else { "benign" };
            let e = by_kind
                .entry((f.short.clone(), r.kind.clone(), label))
                .or_default();
            e.0 += 1;
            e.1 += usize::from(r.flagged);
        }
    }
    let rows: Vec<Vec<String>> = by_kind
        .iter()
        .map(|((file, kind, label), (n, hit))| {
            vec![
                file.clone(),
                kind.clone(),
                (*label).into(),
                n.to_string(),
                pct(*hit, *n),
            ]
        })
        .collect();
    table(
        "flagged share per kind (attack: recall; benign: false positives)",
        &["file", "kind", "label", "records", "flagged"],
        &rows,
    );
    let mut by_group: BTreeMap<(String, &str, String), (usize, usize)> = BTreeMap::new();
    for f in &files {
        for r in f.records.iter().filter(|r| r.attack) {
            for (field, value) in &r.groups {
                let e = by_group
                    .entry((f.short.clone(), *field, value.clone()))
                    .or_default();
                e.0 += 1;
                e.1 += usize::from(r.flagged);
            }
        }
    }
    let rows: Vec<Vec<String>> = by_group
        .iter()
        .map(|((file, field, value), (n, hit))| {
            vec![
                file.clone(),
                format!("{field}={value}"),
                n.to_string(),
                pct(*hit, *n),
            ]
        })
        .collect();
    table(
        "recall on attacks per attack field",
        &["file", "group", "attacks", "recall"],
        &rows,
    );

    // What flags the benign records flagged at the default threshold.
    let mut fired: BTreeMap<(String, String), usize> = BTreeMap::new();
    for f in &files {
        for r in f.records.iter().filter(|r| !r.attack && r.flagged) {
            let s = scan::sanitize(&r.text, rules, options(false, DEFAULT_THRESHOLD));
            for d in s.detections.iter().filter(|d| d.class.suspicious()) {
                *fired.entry((f.short.clone(), d.code.clone())).or_default() += 1;
            }
        }
    }
    if !fired.is_empty() {
        let rows: Vec<Vec<String>> = fired
            .into_iter()
            .map(|((file, code), n)| vec![file, code, n.to_string()])
            .collect();
        table(
            "findings on the benign records flagged at the default threshold",
            &["file", "finding", "records"],
            &rows,
        );
    }

    distribution(&files);
    sweep(&files, &benign);
    files
}

fn distribution(files: &[File]) {
    const EDGES: [f64; 7] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
    let mut columns: Vec<(String, Vec<&Record>)> = Vec::new();
    for f in files {
        for (attack, label) in [(true, "attack"), (false, "benign")] {
            let of: Vec<&Record> = f.records.iter().filter(|r| r.attack == attack).collect();
            if !of.is_empty() {
                columns.push((format!("{} {label}", f.short), of));
            }
        }
    }
    let mut labels = vec!["0".to_owned()];
    let mut from = 0.0;
    for edge in EDGES {
        labels.push(format!(
            "{}{from}, {edge})",
            if from == 0.0 { "(" } else { "[" }
        ));
        from = edge;
    }
    labels.push(format!("[{from}, 1)"));
    let bin = |s: f64| -> usize {
        if s <= 0.0 {
            0
        } else {
            1 + EDGES.iter().filter(|&&e| s >= e).count()
        }
    };
    let mut rows: Vec<Vec<String>> = labels.into_iter().map(|l| vec![l]).collect();
    for (_, records) in &columns {
        let mut counts = vec![0usize; rows.len()];
        for r in records {
            if let Some(c) = counts.get_mut(bin(r.score)) {
                *c += 1;
            }
        }
        for (row, c) in rows.iter_mut().zip(counts) {
            row.push(c.to_string());
        }
    }
    let mut structural = vec!["flagged at any score".to_owned()];
    structural.extend(
        columns
            .iter()
            .map(|(_, rs)| rs.iter().filter(|r| r.structural).count().to_string()),
    );
    rows.push(structural);
    let mut head = vec!["score"];
    head.extend(columns.iter().map(|(name, _)| name.as_str()));
    table("score distribution (records per score bin)", &head, &rows);
}

fn sweep(files: &[File], benign: &[&Record]) {
    let fpr = |t: f64| {
        ratio(
            benign.iter().filter(|r| r.flagged_at(t)).count(),
            benign.len(),
        )
    };
    let mut candidates: Vec<f64> = files
        .iter()
        .flat_map(|f| &f.records)
        .map(|r| r.score)
        .filter(|s| *s > 0.0)
        .collect();
    candidates.push(1.0);
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    let chosen = candidates.iter().copied().find(|&t| fpr(t) <= TARGET_FPR);

    let mut thresholds: Vec<(f64, &str)> =
        [0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
            .into_iter()
            .map(|t| (t, ""))
            .collect();
    if let Some(t) = chosen {
        thresholds.push((t, " (FPR≤1%)"));
    }
    thresholds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let sources: Vec<&File> = files
        .iter()
        .filter(|f| f.records.iter().any(|r| r.attack))
        .collect();
    let hard: Vec<&&Record> = benign
        .iter()
        .filter(|r| r.kind == "hard-negative")
        .collect();
    let all_attacks: Vec<&Record> = files
        .iter()
        .flat_map(|f| &f.records)
        .filter(|r| r.attack)
        .collect();
    let recall = |records: &[&Record], t: f64| {
        let attacks: Vec<&&Record> = records.iter().filter(|r| r.attack).collect();
        pct(
            attacks.iter().filter(|r| r.flagged_at(t)).count(),
            attacks.len(),
        )
    };
    let mut rows = Vec::new();
    for (t, mark) in thresholds {
        let mut row = vec![
            format!("{t:.3}{mark}"),
            pct(
                benign.iter().filter(|r| r.flagged_at(t)).count(),
                benign.len(),
            ),
            pct(hard.iter().filter(|r| r.flagged_at(t)).count(), hard.len()),
        ];
        for f in &sources {
            let records: Vec<&Record> = f.records.iter().collect();
            row.push(recall(&records, t));
        }
        row.push(recall(&all_attacks, t));
        rows.push(row);
    }
    let names: Vec<String> = sources
        .iter()
        .map(|f| format!("{} recall", f.short))
        .collect();
    let mut head = vec!["threshold", "benign FPR", "hard-neg flagged"];
    head.extend(names.iter().map(String::as_str));
    head.push("all recall");
    table(
        &format!(
            "threshold sweep (FPR over all {} benign records together; flagged = smuggled/hidden text, or score ≥ threshold)",
            benign.len()
        ),
        &head,
        &rows,
    );
    match chosen {
        Some(t) => println!(
            "lowest threshold with pooled benign FPR ≤ 1 %: {t:.3} (FPR {})",
            pct(
                benign.iter().filter(|r| r.flagged_at(t)).count(),
                benign.len()
            )
        ),
        None => println!("no threshold brings the pooled benign FPR to 1 %"),
    }
}

// ---------------------------------------------------------------- invariance

type Transform = fn(&str) -> String;

/// Each transform: its name, the rewrite, and whether the result is read as HTML.
const TRANSFORMS: [(&str, Transform, bool); 8] = [
    ("tag smuggling (whole text)", tag_smuggle, false),
    ("zero-width splitting", zero_width, false),
    ("homoglyphs (Cyrillic)", homoglyphs, false),
    ("bidi reordering (one override)", bidi, false),
    ("  variant: one override per line", bidi_per_line, false),
    ("base64 attachment", base64_attachment, false),
    ("HTML display:none (escaped)", html_hidden, true),
    ("  variant: not escaped", html_hidden_raw, true),
];

fn tag_smuggle(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii() {
                char::from_u32(0xE0000 + u32::from(c)).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

fn zero_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut word: Vec<char> = Vec::new();
    let flush = |word: &mut Vec<char>, out: &mut String| {
        let split = word.len() > 3;
        for (i, c) in word.drain(..).enumerate() {
            if split && i > 0 {
                out.push('\u{200B}');
            }
            out.push(c);
        }
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn homoglyphs(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a' => '\u{430}',
            'c' => '\u{441}',
            'e' => '\u{435}',
            'o' => '\u{43E}',
            'p' => '\u{440}',
            'x' => '\u{445}',
            'y' => '\u{443}',
            'i' => '\u{456}',
            's' => '\u{455}',
            other => other,
        })
        .collect()
}

fn bidi(text: &str) -> String {
    format!("\u{202E}{}\u{202C}", text.chars().rev().collect::<String>())
}

/// A right-to-left override ends at a paragraph break (as in the Unicode
/// bidi algorithm), so a text of several lines that displays as the
/// original needs one override per line.
fn bidi_per_line(text: &str) -> String {
    text.split('\n').map(bidi).collect::<Vec<_>>().join("\n")
}

fn base64_attachment(text: &str) -> String {
    format!(
        "Attachment: {}",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_hidden(text: &str) -> String {
    html_hidden_raw(&escape(text))
}

fn html_hidden_raw(text: &str) -> String {
    format!("<p>Hello.</p><div style=\"display:none\">{text}</div>")
}

/// A verdict a transform changed: the record and the findings after it.
#[derive(Debug)]
struct Change<'a> {
    record: &'a Record,
    gained: bool,
    codes: String,
}

impl<'a> Change<'a> {
    fn new(record: &'a Record, gained: bool, s: &Sanitized) -> Self {
        Self {
            record,
            gained,
            codes: codes(s),
        }
    }
}

/// The suspicious findings' codes (never their text).
fn codes(s: &Sanitized) -> String {
    let codes: Vec<String> = s
        .detections
        .iter()
        .map(|d| format!("{}{}", d.code, if d.class.suspicious() { "!" } else { "" }))
        .collect();
    codes.join(" ")
}

fn invariance(files: &[File], rules: &Rules, ids: bool) {
    let attacks: Vec<&Record> = files
        .iter()
        .flat_map(|f| &f.records)
        .filter(|r| r.attack)
        .collect();
    let plain = attacks.iter().filter(|r| r.flagged).count();
    let mut rows = vec![vec![
        "plain (reference)".to_owned(),
        attacks.len().to_string(),
        "100.0 %".into(),
        "0".into(),
        "0".into(),
        pct(plain, attacks.len()),
        "".into(),
        "".into(),
    ]];
    let mut failing: Vec<(&str, Vec<Change>)> = Vec::new();
    for (name, transform, html) in TRANSFORMS {
        let started = Instant::now();
        let (mut same, mut lost, mut gained, mut hit, mut bytes) = (0, 0, 0, 0, 0);
        let mut failed = Vec::new();
        for r in &attacks {
            let text = transform(&r.text);
            bytes += text.len();
            let s = scan::sanitize(&text, rules, options(html, DEFAULT_THRESHOLD));
            let now = flagged(&s);
            hit += usize::from(now);
            match (r.flagged, now) {
                (a, b) if a == b => same += 1,
                (true, false) => {
                    lost += 1;
                    failed.push(Change::new(r, false, &s));
                }
                _ => {
                    gained += 1;
                    failed.push(Change::new(r, true, &s));
                }
            }
        }
        let elapsed = started.elapsed();
        rows.push(vec![
            name.to_owned(),
            attacks.len().to_string(),
            pct(same, attacks.len()),
            lost.to_string(),
            gained.to_string(),
            pct(hit, attacks.len()),
            ms(elapsed),
            mib_s(bytes, elapsed),
        ]);
        failing.push((name, failed));
    }
    table(
        "invariance: attacks rewritten by an evasion transform (same = verdict unchanged; lost = was flagged, now not; gained = now flagged)",
        &[
            "transform",
            "attacks",
            "same",
            "lost",
            "gained",
            "flagged",
            "time",
            "MiB/s",
        ],
        &rows,
    );
    if ids {
        for (name, failed) in failing.iter().filter(|(_, f)| !f.is_empty()) {
            println!();
            println!("{name}: verdict changed for");
            for change in failed {
                let plain = scan::sanitize(
                    &change.record.text,
                    rules,
                    options(false, DEFAULT_THRESHOLD),
                );
                println!(
                    "  {} {} ({} chars, {} lines): plain [{}] -> [{}]",
                    change.record.id,
                    if change.gained { "gained" } else { "lost" },
                    change.record.text.chars().count(),
                    change.record.text.lines().count(),
                    codes(&plain),
                    change.codes
                );
            }
        }
    }
}

// ---------------------------------------------------------------- HTML pages

fn html_pages(dir: &Path, rules: &Rules) {
    let folder = dir.join("html");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "html"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    if paths.is_empty() {
        println!();
        println!("html: no *.html under {} (skipped)", folder.display());
        return;
    }
    let pages: Vec<String> = paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let unreadable = paths.len() - pages.len();
    let started = Instant::now();
    let results: Vec<Sanitized> = pages
        .iter()
        .map(|p| scan::sanitize(p, rules, options(true, DEFAULT_THRESHOLD)))
        .collect();
    let elapsed = started.elapsed();
    let bytes: usize = pages.iter().map(String::len).sum();
    let count = |class: Class| {
        results
            .iter()
            .flat_map(|s| &s.detections)
            .filter(|d| d.class == class)
            .count()
    };
    let rows = vec![vec![
        "html/*.html (all benign)".to_owned(),
        pages.len().to_string(),
        unreadable.to_string(),
        pct(results.iter().filter(|s| flagged(s)).count(), pages.len()),
        count(Class::HiddenText).to_string(),
        count(Class::HiddenInstruction).to_string(),
        ms(elapsed),
        mib_s(bytes, elapsed),
    ]];
    table(
        "benign HTML pages read as HTML",
        &[
            "pages",
            "files",
            "unreadable",
            "flagged",
            "hidden-text",
            "hidden-instruction",
            "time",
            "MiB/s",
        ],
        &rows,
    );
    // Which rules make hidden text read as an instruction, by why it is hidden.
    let mut fired: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for page in &pages {
        let Ok(read) = html::read(page) else { continue };
        for item in &read.hidden {
            let view = rules.scan(&unicode::fold(&unicode::clean(&item.text).text));
            for hit in &view.hits {
                *fired.entry((item.why, hit.rule)).or_default() += 1;
            }
        }
    }
    if !fired.is_empty() {
        let rows: Vec<Vec<String>> = fired
            .into_iter()
            .map(|((why, rule), n)| vec![why.to_owned(), rule.to_owned(), n.to_string()])
            .collect();
        table(
            "rules matching hidden text of the benign pages (any match makes it a hidden instruction)",
            &["hidden by", "rule", "items"],
            &rows,
        );
    }
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for d in results
        .iter()
        .flat_map(|s| &s.detections)
        .filter(|d| d.class.suspicious())
    {
        *codes
            .entry(format!("{} {}", d.class.as_str(), d.code))
            .or_default() += 1;
    }
    if !codes.is_empty() {
        let rows: Vec<Vec<String>> = codes
            .into_iter()
            .map(|(code, n)| vec![code, n.to_string()])
            .collect();
        table(
            "suspicious findings on the HTML pages",
            &["finding", "count"],
            &rows,
        );
    }
}

// ---------------------------------------------------------------- PII

fn kind_of(entity: &str) -> Option<PiiKind> {
    Some(match entity {
        "EMAIL_ADDRESS" => PiiKind::Email,
        "PHONE_NUMBER" => PiiKind::Phone,
        "CREDIT_CARD" => PiiKind::PaymentCard,
        "IBAN_CODE" => PiiKind::Iban,
        "US_SSN" => PiiKind::UsSsn,
        "IP_ADDRESS" => PiiKind::IpAddress,
        _ => return None,
    })
}

#[derive(Debug)]
struct Gold {
    entity: String,
    kind: Option<PiiKind>,
    span: std::ops::Range<usize>,
}

fn overlaps(a: &std::ops::Range<usize>, b: &std::ops::Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

#[derive(Debug, Default, Clone)]
struct Counts {
    gold: usize,
    found: usize,
    predicted: usize,
    correct: usize,
}

/// A value's shape: digits as `9`, letters as `A`, the rest as it is.
fn shape(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                '9'
            } else if c.is_alphabetic() {
                'A'
            } else {
                c
            }
        })
        .collect()
}

fn luhn(value: &str) -> bool {
    let digits: Vec<u32> = value.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                (d * 2) % 9 + u32::from(d == 9) * 9
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

fn pii_eval(dir: &Path, misses: bool) {
    let path = dir.join("pii").join("synth_dataset_v2.json");
    let Some(items) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v.as_array().cloned())
    else {
        println!();
        println!("pii: cannot read {} (skipped)", path.display());
        return;
    };
    let mut sentences: Vec<(String, Vec<Gold>)> = Vec::new();
    let (mut malformed, mut bad_spans) = (0, 0);
    for item in &items {
        let Some(text) = item.get("full_text").and_then(Value::as_str) else {
            malformed += 1;
            continue;
        };
        // Code-point offsets to byte offsets.
        let offsets: Vec<usize> = text
            .char_indices()
            .map(|(at, _)| at)
            .chain(std::iter::once(text.len()))
            .collect();
        let mut gold = Vec::new();
        for span in item
            .get("spans")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let field = |name: &str| {
                span.get(name)
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| offsets.get(n).copied())
            };
            let entity = span.get("entity_type").and_then(Value::as_str);
            match (entity, field("start_position"), field("end_position")) {
                (Some(entity), Some(start), Some(end)) if start < end => gold.push(Gold {
                    entity: entity.to_owned(),
                    kind: kind_of(entity),
                    span: start..end,
                }),
                _ => bad_spans += 1,
            }
        }
        sentences.push((text.to_owned(), gold));
    }
    let started = Instant::now();
    let predictions: Vec<Vec<pii::PiiMatch>> = sentences
        .iter()
        .map(|(text, _)| pii::find_pii(text))
        .collect();
    let elapsed = started.elapsed();
    let bytes: usize = sentences.iter().map(|(t, _)| t.len()).sum();

    let mut counts: BTreeMap<PiiKind, Counts> = BTreeMap::new();
    // False positives by the gold entity type they overlap (or none).
    let mut wrong: BTreeMap<(PiiKind, String), usize> = BTreeMap::new();
    let mut uncovered: BTreeMap<String, usize> = BTreeMap::new();
    for ((text, gold), predicted) in sentences.iter().zip(&predictions) {
        for g in gold {
            match g.kind {
                Some(kind) => {
                    let c = counts.entry(kind).or_default();
                    c.gold += 1;
                    if predicted
                        .iter()
                        .any(|p| p.kind == kind && overlaps(&p.span, &g.span))
                    {
                        c.found += 1;
                    } else if misses {
                        let value = text.get(g.span.clone()).unwrap_or_default();
                        let before = text.get(..g.span.start).and_then(|t| t.chars().last());
                        let after = text.get(g.span.end..).and_then(|t| t.chars().next());
                        println!(
                            "missed {} {:?} luhn={} prefix={} around={:?}",
                            kind.as_str(),
                            shape(value),
                            luhn(value),
                            value.get(..2).unwrap_or_default(),
                            (
                                before.map(|c| shape(&c.to_string())),
                                after.map(|c| shape(&c.to_string()))
                            )
                        );
                    }
                }
                None => *uncovered.entry(g.entity.clone()).or_default() += 1,
            }
        }
        for p in predicted {
            let c = counts.entry(p.kind).or_default();
            c.predicted += 1;
            if gold
                .iter()
                .any(|g| g.kind == Some(p.kind) && overlaps(&p.span, &g.span))
            {
                c.correct += 1;
            } else {
                let under = gold
                    .iter()
                    .find(|g| overlaps(&p.span, &g.span))
                    .map_or_else(|| "(no gold span)".to_owned(), |g| g.entity.clone());
                *wrong.entry((p.kind, under)).or_default() += 1;
            }
        }
    }
    let mut rows = Vec::new();
    let mut total = Counts::default();
    for kind in PiiKind::ALL {
        let c = counts.get(&kind).cloned().unwrap_or_default();
        total.gold += c.gold;
        total.found += c.found;
        total.predicted += c.predicted;
        total.correct += c.correct;
        rows.push(pii_row(kind.as_str(), &c));
    }
    rows.push(pii_row("all covered kinds", &total));
    table(
        &format!(
            "PII on pii/synth_dataset_v2.json ({} sentences, {malformed} malformed, {bad_spans} unusable spans; {} in {}, {} MiB/s)",
            sentences.len(),
            mib(bytes),
            ms(elapsed),
            mib_s(bytes, elapsed)
        ),
        &[
            "kind",
            "gold",
            "found",
            "recall",
            "predicted",
            "correct",
            "precision",
            "F2",
        ],
        &rows,
    );
    if !wrong.is_empty() {
        let rows: Vec<Vec<String>> = wrong
            .into_iter()
            .map(|((kind, under), n)| vec![kind.as_str().to_owned(), under, n.to_string()])
            .collect();
        table(
            "PII false positives by the gold span they overlap",
            &["predicted", "gold entity there", "count"],
            &rows,
        );
    }
    let mut uncovered: Vec<(String, usize)> = uncovered.into_iter().collect();
    uncovered.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let rows: Vec<Vec<String>> = uncovered
        .into_iter()
        .map(|(entity, n)| vec![entity, n.to_string()])
        .collect();
    table(
        "PII entity types palisade does not detect (not covered)",
        &["entity type", "spans"],
        &rows,
    );
}

fn pii_row(name: &str, c: &Counts) -> Vec<String> {
    let recall = ratio(c.found, c.gold);
    let precision = ratio(c.correct, c.predicted);
    let f2 = if c.gold == 0 || c.predicted == 0 || precision + recall == 0.0 {
        "–".to_owned()
    } else {
        format!(
            "{:.3}",
            5.0 * precision * recall / (4.0 * precision + recall)
        )
    };
    vec![
        name.to_owned(),
        c.gold.to_string(),
        c.found.to_string(),
        pct(c.found, c.gold),
        c.predicted.to_string(),
        c.correct.to_string(),
        pct(c.correct, c.predicted),
        f2,
    ]
}

// ---------------------------------------------------------------- output

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "–".into()
    } else {
        format!("{:.1} %", 100.0 * ratio(n, d))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1u32 << 20))
}

fn mib_s(bytes: usize, d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs == 0.0 {
        "–".into()
    } else {
        format!("{:.1}", bytes as f64 / f64::from(1u32 << 20) / secs)
    }
}

fn per_s(n: usize, d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs == 0.0 {
        "–".into()
    } else {
        format!("{:.0}", n as f64 / secs)
    }
}

/// A plain aligned table: the first column left-aligned, the others right-aligned.
fn table(title: &str, head: &[&str], rows: &[Vec<String>]) {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = head.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width(cell)),
                None => widths.push(width(cell)),
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            let pad = " ".repeat(w.saturating_sub(width(cell)));
            if i == 0 {
                out.push_str(cell);
                out.push_str(&pad);
            } else {
                out.push_str("  ");
                out.push_str(&pad);
                out.push_str(cell);
            }
        }
        println!("{}", out.trim_end());
    };
    println!();
    println!("{title}");
    line(&mut head.iter().copied());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut rule.iter().map(String::as_str));
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}
