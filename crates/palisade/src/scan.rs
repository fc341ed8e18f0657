//! `palisade scan`: the redactor's detection rules over files or stdin, reporting where, never what.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use palisade_secrets::detect::Detector;
use serde_json::json;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories to scan (directories recursively); `-` or nothing: standard input.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `path:line:column: kind`, one per line.
    Text,
    /// One JSON array of `{path, line, column, kind}`.
    Json,
}

/// Files larger than this are skipped (and said so): they are rarely text.
const MAX_FILE_BYTES: u64 = 64 << 20;

struct Finding {
    path: String,
    line: usize,
    column: usize,
    kind: &'static str,
}

fn scan_text(detector: &Detector, path: &str, text: &str, out: &mut Vec<Finding>) {
    for d in detector.find(text) {
        let before = text.get(..d.start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or(before).chars().count() + 1;
        out.push(Finding {
            path: path.to_owned(),
            line,
            column,
            kind: d.kind,
        });
    }
}

fn scan_path(detector: &Detector, path: &Path, out: &mut Vec<Finding>, errors: &mut Vec<String>) {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            errors.push(format!("cannot read `{}`: {e}", path.display()));
            return;
        }
    };
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                errors.push(format!("cannot list `{}`: {e}", path.display()));
                return;
            }
        };
        entries.sort();
        for entry in entries {
            let hidden_vcs = entry.file_name().is_some_and(|n| n == ".git");
            if !hidden_vcs {
                scan_path(detector, &entry, out, errors);
            }
        }
        return;
    }
    if meta.len() > MAX_FILE_BYTES {
        errors.push(format!(
            "skipped `{}`: larger than {} MiB",
            path.display(),
            MAX_FILE_BYTES >> 20
        ));
        return;
    }
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            scan_text(detector, &path.display().to_string(), &text, out);
        }
        Err(e) => errors.push(format!("cannot read `{}`: {e}", path.display())),
    }
}

/// Exit status: 1 findings, else 2 if something could not be read, else 0.
pub fn run(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let detector = Detector::new();
    let mut findings = Vec::new();
    let mut errors = Vec::new();
    let stdin_only = args.paths.is_empty();
    for path in &args.paths {
        if path.as_os_str() == "-" {
            continue;
        }
        scan_path(&detector, path, &mut findings, &mut errors);
    }
    if stdin_only || args.paths.iter().any(|p| p.as_os_str() == "-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        scan_text(
            &detector,
            "-",
            &String::from_utf8_lossy(&bytes),
            &mut findings,
        );
    }
    let text = match args.format {
        Format::Text => findings
            .iter()
            .map(|f| format!("{}:{}:{}: {}\n", f.path, f.line, f.column, f.kind))
            .collect::<String>(),
        Format::Json => {
            let items: Vec<_> = findings
                .iter()
                .map(
                    |f| json!({"path": f.path, "line": f.line, "column": f.column, "kind": f.kind}),
                )
                .collect();
            format!("{}\n", serde_json::Value::Array(items))
        }
    };
    {
        use std::io::Write;
        std::io::stdout().lock().write_all(text.as_bytes())?;
    }
    for error in &errors {
        eprintln!("palisade: scan: {error}");
    }
    Ok(if !findings.is_empty() {
        ExitCode::from(1)
    } else if !errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
