//! `bench-redact`: the redactor's single-core throughput on generated log lines and prose, beside detect-secrets in the same run.
//!
//! The inputs come from a seeded PRNG (no corpus data): log-like text
//! (timestamps, levels, URLs, JSON fragments, ids, hex) and English-like
//! prose, each cut into messages of about `--chunk` bytes, the size of a
//! tool result or a log record. A few messages carry planted secrets: the
//! known values as they are, in base64 (a Basic credential) and in hex, and
//! tokens the detection rules know by their format (AWS access key ids,
//! JWTs). `redact_text` runs over every message on one thread, for exact
//! matching alone and for the full rule set; each mode runs `--rounds`
//! times and the table shows the best and the median round.
//!
//! The anchor is detect-secrets, run by the Python given with `--python` on
//! the same inputs written to files, timed inside Python (imports left out).
//! It scans for secrets and does not rewrite the text, so it is the lighter
//! job of the two.
//!
//! Then the sanity check: every planted secret must be gone from its
//! message and its placeholder in its place, or the program exits non-zero.
//! Nothing here prints a secret value, not even a generated one.
#![forbid(unsafe_code)]
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Parser;
use palisade_core::Redactor as _;
use palisade_secrets::detect::Detector;
use palisade_secrets::vault::Known;
use palisade_secrets::{SecretName, SecretRedactor, SecretValue};

#[derive(Debug, Parser)]
#[command(about = "Measure the redactor's throughput on generated text, beside detect-secrets")]
struct Cli {
    /// MiB of each input (log lines, prose).
    #[arg(long, default_value_t = 32)]
    mib: usize,
    /// Bytes per message `redact_text` is called on.
    #[arg(long, default_value_t = 4096)]
    chunk: usize,
    /// Timed rounds per mode (after one untimed warm-up round).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// How many known secrets the redactor is given.
    #[arg(long, default_value_t = 20)]
    known: usize,
    /// A Python with detect-secrets installed, for the anchor rows (none: left out).
    #[arg(long)]
    python: Option<PathBuf>,
    /// MiB of each input detect-secrets scans (the first ones; default: all of it).
    #[arg(long)]
    anchor_mib: Option<usize>,
    /// Seed of the generator: the same seed, the same inputs.
    #[arg(long, default_value_t = 0x5EED_0F_BA11)]
    seed: u64,
}

const MIB: f64 = 1024.0 * 1024.0;
const EXACT_TARGET_MIB_S: f64 = 2048.0;
const FULL_TARGET_MIB_S: f64 = 500.0;

/// xorshift64*: small, fast and the same everywhere, which is all a
/// generator of benchmark text needs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }

    fn chars(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| {
                char::from(
                    alphabet
                        .get(self.below(alphabet.len()))
                        .copied()
                        .unwrap_or(b'x'),
                )
            })
            .collect()
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64().to_le_bytes()[0]).collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "out",
    "up",
    "into",
    "time",
    "about",
    "than",
    "them",
    "some",
    "could",
    "other",
    "then",
    "its",
    "only",
    "new",
    "over",
    "after",
    "also",
    "most",
    "made",
    "many",
    "before",
    "must",
    "through",
    "years",
    "where",
    "much",
    "your",
    "way",
    "well",
    "down",
    "should",
    "because",
    "each",
    "just",
    "those",
    "people",
    "how",
    "too",
    "little",
    "state",
    "good",
    "very",
    "make",
    "world",
    "still",
    "own",
    "see",
    "men",
    "work",
    "long",
    "here",
    "between",
    "both",
    "life",
    "being",
    "under",
    "never",
    "day",
    "same",
    "another",
    "know",
    "while",
    "last",
    "might",
    "great",
    "since",
    "against",
    "right",
    "three",
    "states",
    "himself",
    "few",
    "house",
    "use",
    "during",
    "without",
    "again",
    "place",
    "around",
    "however",
    "home",
    "small",
    "found",
    "thought",
    "went",
    "say",
    "part",
    "once",
    "general",
    "high",
    "upon",
    "school",
    "every",
    "does",
    "got",
    "united",
    "left",
    "number",
    "course",
    "war",
    "until",
    "always",
    "away",
    "something",
    "fact",
    "though",
    "water",
    "less",
    "public",
    "put",
    "think",
    "almost",
    "hand",
    "enough",
    "far",
    "took",
    "head",
    "yet",
    "government",
    "system",
    "better",
    "set",
    "told",
    "nothing",
    "night",
    "end",
    "why",
    "called",
    "request",
    "server",
    "user",
    "file",
    "error",
    "value",
    "result",
    "function",
    "returns",
    "configuration",
    "service",
    "database",
    "connection",
    "timeout",
    "retry",
    "session",
    "token",
    "key",
    "password",
    "secret",
    "deployment",
    "cluster",
    "message",
    "response",
    "update",
];

const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR"];
const SERVICES: &[&str] = &[
    "api",
    "billing",
    "auth",
    "scheduler",
    "ingest",
    "search",
    "notifier",
    "gateway",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH"];
const PATHS: &[&str] = &[
    "/api/v1/users",
    "/api/v1/orders",
    "/api/v2/items",
    "/healthz",
    "/api/v1/search",
    "/internal/metrics",
    "/api/v1/invoices",
];
const HOSTS: &[&str] = &[
    "api.example.com",
    "service.internal",
    "db-primary.internal:5432",
    "cdn.example.net",
    "queue.internal:5672",
];
const ACTIONS: &[&str] = &[
    "create", "update", "delete", "read", "sync", "retry", "expire",
];
const STATUSES: &[&str] = &[
    "200", "200", "200", "201", "204", "301", "404", "429", "500", "503",
];

fn timestamp(rng: &mut Rng) -> String {
    format!(
        "2025-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000)
    )
}

fn uuid(rng: &mut Rng) -> String {
    format!(
        "{}-{}-4{}-{}-{}",
        rng.chars(HEX, 8),
        rng.chars(HEX, 4),
        rng.chars(HEX, 3),
        rng.chars(HEX, 4),
        rng.chars(HEX, 12)
    )
}

fn sentence(rng: &mut Rng, words: usize) -> String {
    let mut out = String::new();
    for i in 0..words {
        let word = rng.pick(WORDS);
        if i == 0 {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push(' ');
            out.push_str(word);
            if i + 1 < words && rng.below(9) == 0 {
                out.push(',');
            }
        }
    }
    out.push_str(rng.pick(&[".", ".", ".", "?", "!", ";"]));
    out
}

/// One log line, in one of the shapes services write.
fn log_line(rng: &mut Rng) -> String {
    let ts = timestamp(rng);
    let level = rng.pick(LEVELS);
    let service = rng.pick(SERVICES);
    match rng.below(5) {
        0 | 1 => format!(
            "{ts} {level:<5} [{service}] {} https://{}{}/{}?page={}&limit={} status={} duration_ms={} request_id={}\n",
            rng.pick(METHODS),
            rng.pick(HOSTS),
            rng.pick(PATHS),
            rng.below(100_000),
            rng.below(50),
            [10, 25, 50, 100].get(rng.below(4)).copied().unwrap_or(10),
            rng.pick(STATUSES),
            rng.below(2000),
            uuid(rng)
        ),
        2 => format!(
            "{ts} {level:<5} [{service}] event {{\"user_id\":{},\"action\":\"{}\",\"ok\":{},\"items\":[{},{},{}],\"trace\":\"{}\"}}\n",
            rng.below(1_000_000),
            rng.pick(ACTIONS),
            rng.below(2) == 0,
            rng.below(1000),
            rng.below(1000),
            rng.below(1000),
            rng.chars(HEX, 32)
        ),
        3 => {
            let (commit, span) = (rng.chars(HEX, 40), rng.chars(HEX, 16));
            let words = 6 + rng.below(8);
            format!(
                "{ts} {level:<5} [{service}] commit={commit} span={span} {}\n",
                sentence(rng, words)
            )
        }
        _ => {
            let stats = format!(
                "worker-{} pid={} mem_kib={} queue_depth={}",
                rng.below(64),
                1000 + rng.below(60_000),
                rng.below(4_000_000),
                rng.below(500)
            );
            let words = 4 + rng.below(6);
            format!(
                "{ts} {level:<5} [{service}] {stats} {}\n",
                sentence(rng, words)
            )
        }
    }
}

/// One paragraph of prose, then a blank line.
fn paragraph(rng: &mut Rng) -> String {
    let mut out = String::new();
    for i in 0..3 + rng.below(5) {
        if i > 0 {
            out.push(' ');
        }
        let words = 6 + rng.below(18);
        out.push_str(&sentence(rng, words));
    }
    out.push_str("\n\n");
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Logs,
    Prose,
}

impl Input {
    fn name(self) -> &'static str {
        match self {
            Input::Logs => "logs",
            Input::Prose => "prose",
        }
    }

    fn piece(self, rng: &mut Rng) -> String {
        match self {
            Input::Logs => log_line(rng),
            Input::Prose => paragraph(rng),
        }
    }
}

/// Messages of at most about `chunk` bytes (a piece longer than that is a
/// message alone), `total` bytes in all, cut at line ends.
fn messages(input: Input, rng: &mut Rng, total: usize, chunk: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::with_capacity(chunk + 512);
    let mut size = 0;
    while size < total {
        let piece = input.piece(rng);
        if !current.is_empty() && current.len() + piece.len() > chunk {
            size += current.len();
            out.push(std::mem::replace(
                &mut current,
                String::with_capacity(chunk + 512),
            ));
        }
        current.push_str(&piece);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// What a planted secret is and the placeholder that must replace it.
#[derive(Debug, Clone)]
struct Plant {
    /// Which message holds it.
    message: usize,
    /// The text as planted (never printed).
    text: String,
    /// `raw`, `base64`, `hex`, `aws-access-key-id`, `jwt`: printed on failure.
    form: &'static str,
    /// The placeholder's start that must be in the redacted message.
    placeholder: String,
    /// Whether exact matching alone must redact it.
    known: bool,
}

fn known_secrets(rng: &mut Rng, count: usize) -> anyhow::Result<Vec<(SecretName, String)>> {
    const PREFIXES: &[&str] = &["sk_live_", "tok-", "pw:", "svc_", "", "key-", "db."];
    const SYMBOLS: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!@#%^&*+=";
    (0..count)
        .map(|i| {
            let name =
                SecretName::parse(&format!("app-{i:02}")).map_err(|e| anyhow::anyhow!("{e}"))?;
            let body_len = 16 + rng.below(25);
            let alphabet = if i % 3 == 0 { SYMBOLS } else { ALNUM };
            let value = format!("{}{}", rng.pick(PREFIXES), rng.chars(alphabet, body_len));
            Ok((name, value))
        })
        .collect()
}

fn aws_key_id(rng: &mut Rng) -> String {
    format!("AKIA{}", rng.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16))
}

fn jwt(rng: &mut Rng) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"user-{}","iat":{},"scope":"read write"}}"#,
        rng.below(1_000_000),
        1_700_000_000 + rng.below(50_000_000)
    ));
    let signature = URL_SAFE_NO_PAD.encode(rng.bytes(32));
    format!("{header}.{payload}.{signature}")
}

/// Plants every known value in its three forms, and some detectable tokens,
/// spread evenly over the messages; returns what was planted where.
fn plant(
    input: Input,
    messages: &mut [String],
    known: &[(SecretName, String)],
    rng: &mut Rng,
) -> Vec<Plant> {
    let mut plants = Vec::new();
    for (name, value) in known {
        let placeholder = format!("[REDACTED:secret:{}]", name.as_str());
        let basic = STANDARD.encode(format!("user{}:{value}", rng.below(100)));
        for (form, text) in [
            ("raw", value.clone()),
            ("base64", basic),
            ("hex", hex::encode(value)),
        ] {
            plants.push(Plant {
                message: 0,
                text,
                form,
                placeholder: placeholder.clone(),
                known: true,
            });
        }
    }
    for _ in 0..8 {
        for (form, text) in [("aws-access-key-id", aws_key_id(rng)), ("jwt", jwt(rng))] {
            plants.push(Plant {
                message: 0,
                placeholder: format!("[REDACTED:{form}:"),
                text,
                form,
                known: false,
            });
        }
    }
    let stride = (messages.len() / plants.len().max(1)).max(1);
    for (i, p) in plants.iter_mut().enumerate() {
        p.message = (i * stride + stride / 2).min(messages.len().saturating_sub(1));
        let line = match (input, p.form) {
            (Input::Logs, "base64") => format!(
                "{} DEBUG [gateway] upstream headers Authorization: Basic {} accept=*/*\n",
                timestamp(rng),
                p.text
            ),
            (Input::Logs, _) => format!(
                "{} WARN  [config] loaded credential {} from the environment\n",
                timestamp(rng),
                p.text
            ),
            (Input::Prose, _) => format!(
                "Someone pasted {} into the channel by mistake, and it stayed there.\n\n",
                p.text
            ),
        };
        if let Some(message) = messages.get_mut(p.message) {
            // After the first line, so the secret sits inside the message.
            let at = message.find('\n').map_or(message.len(), |i| i + 1);
            message.insert_str(at, &line);
        }
    }
    plants
}

/// Best and median MiB/s of `rounds` timed passes over the messages.
#[derive(Debug, Clone, Copy)]
struct Rate {
    best: f64,
    median: f64,
}

fn measure(redactor: &SecretRedactor, messages: &[String], rounds: usize) -> Rate {
    let bytes: usize = messages.iter().map(String::len).sum();
    let pass = || {
        let mut out = 0usize;
        for message in messages {
            out += std::hint::black_box(redactor.redact_text(std::hint::black_box(message))).len();
        }
        std::hint::black_box(out)
    };
    pass();
    let mut rates: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let started = Instant::now();
            pass();
            bytes as f64 / MIB / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    Rate {
        best: rates.last().copied().unwrap_or(0.0),
        median: rates.get(rates.len() / 2).copied().unwrap_or(0.0),
    }
}

/// How many placeholders the redactor put into all messages, and the ids of
/// plants it left (as `message/form`).
fn check(
    redactor: &SecretRedactor,
    messages: &[String],
    plants: &[Plant],
    full: bool,
) -> (usize, Vec<String>) {
    let redacted: Vec<String> = messages
        .iter()
        .map(|m| redactor.redact_text(m).into_owned())
        .collect();
    let placeholders = redacted
        .iter()
        .map(|m| m.matches("[REDACTED:").count())
        .sum();
    let missed = plants
        .iter()
        .filter(|p| p.known || full)
        .filter(|p| {
            redacted
                .get(p.message)
                .is_none_or(|m| m.contains(&p.text) || !m.contains(&p.placeholder))
        })
        .map(|p| format!("message {} ({})", p.message, p.form))
        .collect();
    (placeholders, missed)
}

/// detect-secrets' scan, timed inside Python; prints `version V`, then
/// `scan SECONDS FINDINGS` per file.
const ANCHOR: &str = r#"
import sys, time
from detect_secrets import SecretsCollection
from detect_secrets.__version__ import VERSION
from detect_secrets.settings import default_settings
print("version", VERSION)
for path in sys.argv[1:]:
    with default_settings():
        secrets = SecretsCollection()
        started = time.perf_counter()
        secrets.scan_file(path)
        seconds = time.perf_counter() - started
    print("scan", seconds, sum(len(found) for found in secrets.data.values()))
"#;

#[derive(Debug)]
struct AnchorRun {
    version: String,
    /// Per file: bytes scanned, seconds, findings.
    scans: Vec<(usize, f64, usize)>,
}

#[expect(
    clippy::disallowed_methods,
    reason = "the anchor is another program: the benchmark runs detect-secrets, not a tool"
)]
fn run_anchor(python: &Path, files: &[(PathBuf, usize)]) -> anyhow::Result<AnchorRun> {
    let output = Command::new(python)
        .arg("-c")
        .arg(ANCHOR)
        .args(files.iter().map(|(path, _)| path))
        .output()
        .with_context(|| format!("running `{}`", python.display()))?;
    if !output.status.success() {
        bail!(
            "detect-secrets failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut version = String::from("?");
    let mut scans = Vec::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["version", v] => version = (*v).to_owned(),
            ["scan", seconds, found] => {
                let bytes = files.get(scans.len()).map_or(0, |(_, b)| *b);
                scans.push((bytes, seconds.parse()?, found.parse()?));
            }
            _ => {}
        }
    }
    if scans.len() != files.len() {
        bail!(
            "detect-secrets reported {} scans for {} files",
            scans.len(),
            files.len()
        );
    }
    Ok(AnchorRun { version, scans })
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench-redact: {error:#}");
            ExitCode::FAILURE
        }
    }
}

struct Prepared {
    input: Input,
    messages: Vec<String>,
    plants: Vec<Plant>,
    bytes: usize,
}

/// Runs everything; `Ok(false)` when a planted secret was left.
fn run(cli: &Cli) -> anyhow::Result<bool> {
    let mut rng = Rng::new(cli.seed);
    let known = known_secrets(&mut rng, cli.known)?;
    let exact = SecretRedactor::with_detector(None);
    let full = SecretRedactor::with_detector(Some(Arc::new(Detector::new())));
    let set = Known {
        values: known
            .iter()
            .map(|(name, value)| (name.clone(), SecretValue::new(value.clone())))
            .collect(),
    };
    exact.set_known(&set);
    full.set_known(&set);

    let prepared: Vec<Prepared> = [Input::Logs, Input::Prose]
        .into_iter()
        .map(|input| {
            let mut messages = messages(input, &mut rng, cli.mib * 1024 * 1024, cli.chunk);
            let plants = plant(input, &mut messages, &known, &mut rng);
            let bytes = messages.iter().map(String::len).sum();
            Prepared {
                input,
                messages,
                plants,
                bytes,
            }
        })
        .collect();

    let anchor = match &cli.python {
        Some(python) => Some(anchor_on(python, &prepared, cli.anchor_mib)?),
        None => None,
    };

    let mut table = String::from(
        "| input | redactor | messages | MiB | best MiB/s | median MiB/s | target | placeholders / findings |\n\
         |---|---|---:|---:|---:|---:|---|---:|\n",
    );
    let mut sane = true;
    let mut sanity = Vec::new();
    for (index, p) in prepared.iter().enumerate() {
        let mib = p.bytes as f64 / MIB;
        let mut full_median = 0.0;
        for (label, redactor, target, is_full) in [
            ("exact only", &exact, EXACT_TARGET_MIB_S, false),
            ("full rule set", &full, FULL_TARGET_MIB_S, true),
        ] {
            let rate = measure(redactor, &p.messages, cli.rounds);
            let (placeholders, missed) = check(redactor, &p.messages, &p.plants, is_full);
            if is_full {
                full_median = rate.median;
            }
            let verdict = if rate.median >= target {
                "met"
            } else {
                "missed"
            };
            let _ = writeln!(
                table,
                "| {} | palisade, {label} ({} known) | {} | {mib:.1} | {:.0} | {:.0} | ≥ {target:.0}: {verdict} | {placeholders} |",
                p.input.name(),
                known.len(),
                p.messages.len(),
                rate.best,
                rate.median,
            );
            let expected = p.plants.iter().filter(|pl| pl.known || is_full).count();
            if missed.is_empty() {
                sanity.push(format!(
                    "{}, {label}: all {expected} planted secrets redacted",
                    p.input.name()
                ));
            } else {
                sane = false;
                sanity.push(format!(
                    "{}, {label}: {} of {expected} planted secrets LEFT: {}",
                    p.input.name(),
                    missed.len(),
                    missed.join(", ")
                ));
            }
        }
        if let Some(run) = &anchor
            && let Some((bytes, seconds, found)) = run.scans.get(index)
        {
            let rate = *bytes as f64 / MIB / seconds;
            let _ = writeln!(
                table,
                "| {} | detect-secrets {} (anchor; scan only, 1 run) | – | {:.1} | {rate:.1} | {rate:.1} | palisade full set: {:.0} × | {found} |",
                p.input.name(),
                run.version,
                *bytes as f64 / MIB,
                full_median / rate,
            );
        }
    }
    println!(
        "# Redaction throughput, one thread, messages of about {} bytes\n",
        cli.chunk
    );
    println!("{table}");
    for line in &sanity {
        println!("- {line}");
    }
    println!(
        "\nsanity: {}",
        if sane {
            "ok"
        } else {
            "FAILED: planted secrets were left"
        }
    );
    Ok(sane)
}

/// Writes each input to a file (its first `anchor_mib` MiB, whole messages)
/// and times detect-secrets over them; the files are removed afterwards.
fn anchor_on(
    python: &Path,
    prepared: &[Prepared],
    anchor_mib: Option<usize>,
) -> anyhow::Result<AnchorRun> {
    let dir = std::env::temp_dir().join(format!("palisade-bench-redact.{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let result = (|| {
        let mut files = Vec::new();
        for p in prepared {
            let limit = anchor_mib.map_or(usize::MAX, |m| m * 1024 * 1024);
            let mut text = String::new();
            for message in &p.messages {
                if text.len() >= limit {
                    break;
                }
                text.push_str(message);
            }
            let path = dir.join(format!("{}.txt", p.input.name()));
            std::fs::write(&path, &text)
                .with_context(|| format!("writing `{}`", path.display()))?;
            files.push((path, text.len()));
        }
        run_anchor(python, &files)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_messages() {
        let make = |seed| messages(Input::Logs, &mut Rng::new(seed), 64 * 1024, 4096);
        assert_eq!(make(7), make(7));
        assert_ne!(make(7), make(8));
        let prose = messages(Input::Prose, &mut Rng::new(7), 64 * 1024, 4096);
        assert!(
            prose.iter().all(|m| m.len() <= 4096 + 2048),
            "a message far over the chunk"
        );
        assert!(prose.iter().map(String::len).sum::<usize>() >= 64 * 1024);
    }

    #[test]
    fn every_plant_is_redacted_and_a_missed_one_is_reported() {
        let mut rng = Rng::new(3);
        let known = known_secrets(&mut rng, 4).unwrap();
        let mut msgs = messages(Input::Prose, &mut rng, 256 * 1024, 4096);
        let plants = plant(Input::Prose, &mut msgs, &known, &mut rng);
        let full = SecretRedactor::new();
        full.set_known(&Known {
            values: known
                .iter()
                .map(|(n, v)| (n.clone(), SecretValue::new(v.clone())))
                .collect(),
        });
        let (placeholders, missed) = check(&full, &msgs, &plants, true);
        assert!(missed.is_empty(), "{missed:?}");
        assert!(placeholders >= plants.len());
        // Without the known values, the exact plants are left and say so.
        let blind = SecretRedactor::new();
        let (_, missed) = check(&blind, &msgs, &plants, true);
        assert_eq!(missed.len(), 4 * 3, "{missed:?}");
    }
}
