//! `secrets-eval`: scores the redactor's detection rules on the secrets corpora (recall on secrets, false positives on the rest) and measures their throughput.
//!
//! Reads `gitleaks_rule_fixtures.jsonl` and `noseyparker_rule_examples.jsonl`
//! from the directory given, and prints markdown: per family of upstream rule
//! kinds, then per file and overall. A secret counts as found when any
//! detection fires in its text; a non-secret counts as a false positive when
//! any fires. Only record ids are ever printed, never texts: they hold secrets.
#![forbid(unsafe_code)]
#![expect(clippy::print_stdout, reason = "an evaluation prints its table")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use palisade_secrets::detect::Detector;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(about = "Score palisade's secret detection rules on the secrets corpora")]
struct Cli {
    /// The folder holding the two JSONL files.
    dir: PathBuf,
    /// Also list the ids of missed secrets and of false positives.
    #[arg(long)]
    ids: bool,
    /// MiB of generated prose and log lines for the throughput check (0: skip).
    #[arg(long, default_value_t = 8)]
    throughput_mib: usize,
}

const FILES: [&str; 2] = [
    "gitleaks_rule_fixtures.jsonl",
    "noseyparker_rule_examples.jsonl",
];

#[derive(Debug, Deserialize)]
struct Record {
    id: String,
    text: String,
    label: String,
    kind: String,
    #[serde(default)]
    categories: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Score {
    positives: usize,
    found: usize,
    negatives: usize,
    false_positives: usize,
    excluded: usize,
}

impl Score {
    fn add(&mut self, other: Score) {
        self.positives += other.positives;
        self.found += other.found;
        self.negatives += other.negatives;
        self.false_positives += other.false_positives;
        self.excluded += other.excluded;
    }
}

/// Why a record is left out of the score, if it is.
fn exclusion(record: &Record) -> Option<&'static str> {
    let identifier = record.categories.iter().any(|c| c == "identifier");
    let secret = record.categories.iter().any(|c| c == "secret");
    (identifier && !secret).then_some("identifier")
}

/// Our family for an upstream rule kind (gitleaks rule ids and Nosey Parker
/// rule-name slugs).
fn family(kind: &str) -> &'static str {
    const FAMILIES: &[(&str, &[&str])] = &[
        ("aws", &["aws-", "amazon-"]),
        ("google", &["gcp-", "google-"]),
        ("azure", &["azure-"]),
        ("github", &["github-"]),
        ("gitlab", &["gitlab-"]),
        ("slack", &["slack-"]),
        ("stripe", &["stripe-"]),
        (
            "model-providers",
            &[
                "openai-",
                "anthropic-",
                "huggingface-",
                "groq-",
                "perplexity-",
                "cohere-",
                "tavily-",
                "firecrawl-",
                "jina-",
                "kagi-",
                "privateai-",
            ],
        ),
        (
            "package-registries",
            &[
                "npm-",
                "pypi-",
                "rubygems-",
                "crates-io-",
                "nuget-api",
                "artifactory-",
                "docker-hub-",
            ],
        ),
        ("jwt", &["jwt", "json-web-token-base64"]),
        (
            "private-key",
            &[
                "private-key",
                "pem-encoded",
                "base64-pem",
                "age-",
                "wireguard-",
            ],
        ),
        (
            "connection-url",
            &[
                "credentials-in-mongodb",
                "credentials-in-postgresql",
                "credentials-in-odbc",
                "sidekiq-sensitive-url",
                "connection-string",
                "azure-connection",
            ],
        ),
        (
            "http-auth-and-cli",
            &[
                "curl-",
                "http-",
                "credentials-in-psexec",
                "credentials-in-connect",
                "netrc-",
            ],
        ),
        ("password-hash", &["password-hash"]),
        (
            "generic",
            &[
                "generic-",
                "react-app-",
                "kubernetes-secret",
                "nuget-config",
                "hardcoded-gradle",
                "phpmailer",
                "credentials-in-net",
                "sensitive-value",
                "json-web-token-secret",
                "django-",
                "jenkins-",
            ],
        ),
    ];
    FAMILIES
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| kind.starts_with(p)))
        .map_or("other-vendors", |(name, _)| name)
}

fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("`{}` line {}", path.display(), n + 1))
        })
        .collect()
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "–".to_owned()
    } else {
        format!("{:.1} %", 100.0 * part as f64 / whole as f64)
    }
}

fn row(name: &str, s: &Score) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} |",
        s.positives,
        s.found,
        percent(s.found, s.positives),
        s.negatives,
        s.false_positives,
        percent(s.false_positives, s.negatives),
        s.excluded
    )
}

const HEADER: &str = "| family | secrets | found | recall | non-secrets | false positives | FP rate | excluded |\n|---|---:|---:|---:|---:|---:|---:|---:|";

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("secrets-eval: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let detector = Detector::new();
    let mut overall = Score::default();
    let mut overall_families: BTreeMap<&'static str, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut false_positives = Vec::new();
    println!("# Secret detection on the secrets corpora\n");
    println!(
        "A secret is found when any detection fires in its text; a non-secret is a false positive when any fires \
         (a non-secret of one upstream rule that another of our rules rightly flags still counts against us).\n"
    );
    println!(
        "Excluded: Nosey Parker examples whose only categories are `identifier` (with `api`/`fuzzy`), not `secret`: \
         account ids, bucket names, ARNs, OAuth client ids, shop domains, usernames. They name things and grant \
         nothing, so a redactor that flagged them would be over-redacting; they are counted in `excluded`, scored \
         neither way. Nothing else is left out.\n"
    );
    for file in FILES {
        let records = read(&cli.dir.join(file))?;
        let mut families: BTreeMap<&'static str, Score> = BTreeMap::new();
        for record in &records {
            let score = families.entry(family(&record.kind)).or_default();
            if exclusion(record).is_some() {
                score.excluded += 1;
                continue;
            }
            let detections = detector.find(&record.text);
            let fired = !detections.is_empty();
            if record.label == "secret" {
                score.positives += 1;
                score.found += usize::from(fired);
                if !fired {
                    misses.push(format!("{} ({})", record.id, record.kind));
                }
            } else {
                score.negatives += 1;
                score.false_positives += usize::from(fired);
                if fired {
                    let ours: Vec<&str> = detections.iter().map(|d| d.kind).collect();
                    false_positives.push(format!(
                        "{} ({}): {}",
                        record.id,
                        record.kind,
                        ours.join(", ")
                    ));
                }
            }
        }
        println!("## {file}\n\n{HEADER}");
        let mut total = Score::default();
        for (name, score) in &families {
            println!("{}", row(name, score));
            total.add(*score);
            overall_families.entry(name).or_default().add(*score);
        }
        println!("{}\n", row("**total**", &total));
        overall.add(total);
    }
    println!("## Both files\n\n{HEADER}");
    for (name, score) in &overall_families {
        println!("{}", row(name, score));
    }
    println!("{}\n", row("**total**", &overall));
    if cli.ids {
        println!("## Missed secrets (ids)\n\n{}\n", misses.join("\n"));
        println!(
            "## False positives (ids)\n\n{}\n",
            false_positives.join("\n")
        );
    }
    if cli.throughput_mib > 0 {
        throughput(&detector, cli.throughput_mib);
    }
    Ok(())
}

/// A quick single-thread check of `find` over generated prose and log lines
/// (the real benchmark lives elsewhere).
fn throughput(detector: &Detector, mib: usize) {
    let text = typical_text(mib * 1024 * 1024);
    let mut found = 0;
    let started = Instant::now();
    const ROUNDS: usize = 5;
    for _ in 0..ROUNDS {
        found += detector.find(&text).len();
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = (text.len() * ROUNDS) as f64 / (1024.0 * 1024.0) / seconds;
    println!("## Throughput\n");
    println!(
        "`find` over {:.1} MiB of generated prose and log lines, {ROUNDS} rounds on one thread: **{rate:.0} MiB/s** \
         ({} detections per round).",
        text.len() as f64 / (1024.0 * 1024.0),
        found / ROUNDS
    );
}

/// Prose and log lines of the kind tool results carry: words (including the
/// ones the generic rules are anchored on, `token`, `key`, `password`), URLs,
/// timestamps, ids, JSON fragments. No secrets.
fn typical_text(len: usize) -> String {
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
        "author",
        "passed",
        "deployment",
        "cluster",
        "message",
        "response",
        "update",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut out = String::with_capacity(len + 256);
    let mut line = 0usize;
    while out.len() < len {
        line += 1;
        if line.is_multiple_of(3) {
            let words: Vec<&str> = (0..12 + next(10))
                .map(|_| WORDS.get(next(WORDS.len())).copied().unwrap_or("the"))
                .collect();
            out.push_str(&words.join(" "));
            out.push_str(".\n");
        } else {
            out.push_str(&format!(
                "2025-03-{:02}T{:02}:{:02}:{:02}.{:03}Z INFO http request method=GET path=/api/v1/items/{} status={} \
                 duration_ms={} user_id={} url=https://service.internal/api/v1/items?page={} {{\"ok\":true,\"count\":{}}}\n",
                1 + next(28),
                next(24),
                next(60),
                next(60),
                next(1000),
                next(100_000),
                [200, 201, 204, 404, 500].get(next(5)).copied().unwrap_or(200),
                next(900),
                next(10_000),
                next(50),
                next(500)
            ));
        }
    }
    out
}
