//! `palisade limits status`: usage against each limit, read from the counter store the config names.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use palisade_limits::backend::Backend;
use palisade_limits::status::{self, Line};
use palisade_server::config::{Config, LimitsStore};

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Usage against each limit and the daily budget: every counter, or one principal's.
    Status {
        /// Only this principal's counters, with each rule they fall under.
        #[arg(long)]
        principal: Option<String>,
        /// `text` (the default) or `json`.
        #[arg(long, default_value = "text")]
        format: String,
    },
}

pub async fn run(
    config: &Config,
    command: &LimitsCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let LimitsCommand::Status { principal, format } = command;
    if !matches!(format.as_str(), "text" | "json") {
        anyhow::bail!("--format {format}: expected `text` or `json`");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let backend: Box<dyn Backend> = match &config.limits.store {
        LimitsStore::Embedded => {
            // What the running gateway last wrote (every 250 ms).
            let store = palisade_server::access::open_store(config).await?;
            let local = palisade_limits::local::LocalBackend::new();
            local.load(&*store, now).await?;
            Box::new(local)
        }
        LimitsStore::Redis { url } => Box::new(palisade_limits::redis::RedisBackend::connect(url)?),
    };
    let lines = status::report(
        &config.limits.settings,
        &*backend,
        now,
        principal.as_deref(),
    )
    .await?;
    if format == "json" {
        writeln!(out, "{}", serde_json::to_string_pretty(&lines)?)?;
        return Ok(());
    }
    if lines.is_empty() {
        let what =
            if config.limits.settings.rules.is_empty() && config.limits.settings.budget.is_none() {
                "no limits are configured ([limits.rules.NAME], [limits.budget])"
            } else {
                "no counter is in use"
            };
        writeln!(out, "{what}")?;
        return Ok(());
    }
    for line in &lines {
        writeln!(out, "{}", describe(line))?;
    }
    Ok(())
}

fn describe(line: &Line) -> String {
    let when = humane(line.resets_in_ms);
    let reset = match (line.kind, line.resets_in_ms) {
        ("rate", 0) => "unused".to_owned(),
        ("rate", _) => format!("clear in {when}"),
        _ => format!("resets in {when}"),
    };
    format!(
        "{:<16} {:<12} {:<32} {:<28} {reset}",
        line.limit,
        line.configured,
        line.scope,
        line.usage()
    )
}

fn humane(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}
