//! `palisade sanitize`: what the model would read of some content, and what the inbound filter found in it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use palisade_core::Target;
use palisade_filter::policy::{Action, Policies};
use palisade_filter::scan::{self, Options};
use serde_json::json;

#[derive(Debug, Args)]
pub struct SanitizeArgs {
    /// The content: a file, or `-` / nothing for standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Read the content as HTML (by default, when it looks like HTML).
    #[arg(long)]
    pub html: bool,
    /// The source to judge it as, `UPSTREAM` or `UPSTREAM/TOOL`: its policy from the config applies.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The text the model reads, then one finding per line.
    Text,
    /// `{text, score, findings: [{class, code, action, detail, span}]}`.
    Json,
}

/// Content larger than this is refused (the gateway's own bound on a message is lower).
const MAX_BYTES: u64 = 64 << 20;

pub fn run(args: &SanitizeArgs, policies: &Policies) -> anyhow::Result<ExitCode> {
    let input = read(args.file.as_ref())?;
    let target = match args
        .source
        .as_deref()
        .map(|s| s.split_once('/').unwrap_or((s, "")))
    {
        Some((server, tool)) => Target::new(server, tool),
        None => Target::new("", ""),
    };
    let policy = policies.for_target(&target);
    let html = args.html || palisade_filter::html::looks_like_html(&input);
    let sanitized = scan::sanitize(
        &input,
        palisade_filter::injection::shared(),
        Options {
            html,
            threshold: policy.threshold,
            ..Options::default()
        },
    );
    let worst = sanitized
        .detections
        .iter()
        .map(|d| policy.action(d.class))
        .max()
        .unwrap_or(Action::Annotate);
    match args.format {
        Format::Json => {
            let findings: Vec<_> = sanitized
                .detections
                .iter()
                .map(|d| {
                    json!({
                        "class": d.class.as_str(),
                        "code": d.code,
                        "action": policy.action(d.class).as_str(),
                        "suspicious": d.class.suspicious(),
                        "detail": d.detail,
                        "span": d.span.as_ref().map(|s| [s.start, s.end]),
                        "score": d.score,
                    })
                })
                .collect();
            let out = json!({
                "text": sanitized.text,
                "html": html,
                "score": sanitized.score,
                "verdict": worst.as_str(),
                "findings": findings,
            });
            writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&out)?)?;
        }
        Format::Text => {
            writeln!(std::io::stdout(), "{}", sanitized.text)?;
            if !sanitized.detections.is_empty() {
                eprintln!("--");
                for d in &sanitized.detections {
                    eprintln!(
                        "{} [{}] {}: {}",
                        policy.action(d.class).as_str(),
                        d.class.as_str(),
                        d.code,
                        d.detail
                    );
                }
                eprintln!(
                    "verdict: {} (injection score {:.2})",
                    worst.as_str(),
                    sanitized.score
                );
            }
        }
    }
    // As `palisade scan`: a status a script can test.
    Ok(if sanitized.suspicious() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn read(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    match file.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let f = std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
            f.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
        }
        None => {
            std::io::stdin()
                .take(MAX_BYTES + 1)
                .read_to_end(&mut bytes)?;
        }
    }
    if bytes.len() as u64 > MAX_BYTES {
        anyhow::bail!("the content is larger than {} MiB", MAX_BYTES >> 20);
    }
    // Invalid UTF-8 is read as the gateway reads it: replaced, and said so.
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            eprintln!("note: the content is not valid UTF-8; invalid bytes are read as U+FFFD");
            Ok(String::from_utf8_lossy(e.as_bytes()).into_owned())
        }
    }
}
