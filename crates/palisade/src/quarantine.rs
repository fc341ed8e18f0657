//! `palisade quarantine`: content the inbound filter held — list it, show it, release it (in the config's state store).

use std::io::Write;

use clap::Subcommand;
use palisade_filter::quarantine::Quarantine;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Held content: id, target, why.
    List,
    /// One held item in full: its findings and the content itself.
    Show { id: String },
    /// Let this exact content through: the agent's repeated request then gets it.
    Release { id: String },
}

/// Items listed at most.
const LIMIT: usize = 1000;

pub async fn run(
    quarantine: &Quarantine,
    command: &QuarantineCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        QuarantineCommand::List => {
            let held = quarantine.list(LIMIT).await?;
            if held.is_empty() {
                writeln!(out, "nothing is quarantined")?;
            }
            for doc in held {
                let field = |k: &str| {
                    doc.body
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                let state = if doc.body.get("released").and_then(Value::as_bool) == Some(true) {
                    "released"
                } else {
                    "held"
                };
                writeln!(
                    out,
                    "{}  {state:8}  {}  {}",
                    doc.key,
                    field("target"),
                    field("why")
                )?;
            }
        }
        QuarantineCommand::Show { id } => {
            let doc = quarantine.get(id).await?.ok_or_else(|| unknown(id))?;
            writeln!(out, "{}", serde_json::to_string_pretty(&doc.body)?)?;
        }
        QuarantineCommand::Release { id } => {
            let by = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            if !quarantine.release(id, &by).await? {
                return Err(unknown(id));
            }
            writeln!(
                out,
                "released {id}; the same content now passes when the agent asks again"
            )?;
        }
    }
    Ok(())
}

fn unknown(id: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "no quarantined content has the id `{id}`; `palisade quarantine list` shows them"
    )
}
