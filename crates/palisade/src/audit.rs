//! `palisade audit verify | prove | check-proof | init-postgres`, `palisade activity`, `palisade alerts`: the audit log from outside the gateway.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use palisade_audit::checkpoint;
use palisade_audit::verify::{self, Options, Proof};
use palisade_server::config::Config;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the log (or a range of it): every checkpoint's signature and chain,
    /// every entry against its checkpoint. Exit status 1 names where it breaks.
    Verify {
        /// The first entry to check (sequence number); checkpoints are always checked in full.
        #[arg(long)]
        from: Option<u64>,
        /// The last entry to check.
        #[arg(long)]
        to: Option<u64>,
        /// The public key checkpoints must be signed by (hex, as in
        /// `keys/audit.ed25519.pub`). Default: the data directory's, which
        /// someone who can rewrite the log could also replace: keep a copy.
        #[arg(long)]
        key: Option<PathBuf>,
        /// A copy of the checkpoints kept elsewhere to compare with the log's
        /// (default: `audit.checkpoint_copy` from the config, if set).
        #[arg(long)]
        copy: Option<PathBuf>,
        /// `text` (the default) or `json`.
        #[arg(long, default_value = "text")]
        format: String,
        /// With `[audit] postgres`: the node whose chain to check (default:
        /// this gateway's `[audit] node`; pass that node's `--key`).
        #[arg(long)]
        node: Option<String>,
    },
    /// Print an inclusion proof for entry SEQ: the entry, its signed checkpoint,
    /// and the hashes that join them (no other entry's content).
    Prove {
        seq: u64,
        #[arg(long)]
        key: Option<PathBuf>,
        /// With `[audit] postgres`: the node whose chain holds the entry.
        #[arg(long)]
        node: Option<String>,
    },
    /// Create the PostgreSQL audit tables, as the role `--url` logs in as
    /// (their owner), and grant the gateway's role reading and inserting only.
    InitPostgres {
        /// The owner's `postgres://` URL (not the gateway's).
        #[arg(long)]
        url: String,
        /// The role the gateway connects as (`[audit] postgres`).
        #[arg(long)]
        gateway_role: String,
    },
    /// Check a proof printed by `prove` (a file, or `-` for stdin) without the log.
    CheckProof {
        proof: PathBuf,
        /// The public key the checkpoint must be signed by (default: the data directory's).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

fn key_for(
    config: &Config,
    given: Option<&Path>,
) -> anyhow::Result<Option<ed25519_dalek::VerifyingKey>> {
    let default = config.audit_paths().public_key();
    match given {
        Some(path) => Ok(Some(checkpoint::read_public_key(path)?)),
        None if default.exists() => Ok(Some(checkpoint::read_public_key(&default)?)),
        None => Ok(None),
    }
}

/// The log a command reads: the data directory's files, or a node's rows
/// on PostgreSQL written out as the same two files in a temporary
/// directory (removed when this is dropped).
struct Source {
    paths: palisade_audit::Paths,
    /// How messages name the log.
    label: String,
    /// The export the paths are in, while it is read.
    export: Option<palisade_audit::postgres::Export>,
}

impl Source {
    fn open(config: &Config, node: Option<&str>) -> anyhow::Result<Self> {
        let paths = config.audit_paths();
        let Some(mut target) = config.audit.postgres_target() else {
            if let Some(node) = node {
                anyhow::bail!(
                    "--node {node}: the audit log is in the data directory (no `[audit] postgres`)"
                );
            }
            return Ok(Self {
                label: format!("`{}`", paths.entries.display()),
                paths,
                export: None,
            });
        };
        if let Some(node) = node {
            node.clone_into(&mut target.node);
        }
        let export = palisade_audit::postgres::Export::new(&target, paths.keys)
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Self {
            paths: export.paths.clone(),
            label: format!(
                "node `{}` in {}",
                target.node,
                palisade_server::config::mask_password(&target.url)
            ),
            export: Some(export),
        })
    }

    /// A location in the exported files, named as the tables' rows.
    fn place(&self, text: &str) -> String {
        if self.export.is_none() {
            return text.to_owned();
        }
        text.replace(
            &format!("`{}` line", self.paths.entries.display()),
            "palisade_audit_entries row",
        )
        .replace(
            &format!("`{}` line", self.paths.checkpoints.display()),
            "palisade_audit_checkpoints row",
        )
        .replace(
            &format!("`{}`", self.paths.entries.display()),
            "palisade_audit_entries",
        )
        .replace(
            &format!("`{}`", self.paths.checkpoints.display()),
            "palisade_audit_checkpoints",
        )
    }
}

pub fn run(
    config: &Config,
    command: &AuditCommand,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::InitPostgres { url, gateway_role } => {
            palisade_audit::postgres::init(url, gateway_role).map_err(|e| anyhow::anyhow!(e))?;
            writeln!(
                out,
                "audit tables ready in {}: `{gateway_role}` may read and insert, nothing more",
                palisade_server::config::mask_password(url)
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            from,
            to,
            key,
            copy,
            format,
            node,
        } => {
            if !matches!(format.as_str(), "text" | "json") {
                anyhow::bail!("--format {format}: expected `text` or `json`");
            }
            if let (Some(from), Some(to)) = (from, to)
                && from > to
            {
                anyhow::bail!("--from {from} is after --to {to}");
            }
            let options = Options {
                key: key_for(config, key.as_deref())?,
                from: *from,
                to: *to,
                copy: copy
                    .clone()
                    .or_else(|| config.audit.checkpoint_copy.clone()),
            };
            let source = Source::open(config, node.as_deref())?;
            let result = verify::verify(&source.paths, &options).map_err(|b| verify::Break {
                where_: source.place(&b.where_),
                detail: source.place(&b.detail),
            });
            if format == "json" {
                let value = match &result {
                    Ok(report) => serde_json::json!({"ok": true, "report": report}),
                    Err(broken) => serde_json::json!({"ok": false, "break": broken}),
                };
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                match &result {
                    Ok(report) => {
                        writeln!(
                            out,
                            "audit log {}: {} entries checked under {} checkpoints, nothing altered",
                            source.label, report.entries, report.checkpoints
                        )?;
                        writeln!(out, "  log {}, signed by key {}", report.log, report.key)?;
                        if !report.key_given {
                            writeln!(
                                out,
                                "  warning: no public key given or found: checked against the key the log names, which shows only that the log agrees with itself"
                            )?;
                        }
                        writeln!(out, "  last checkpoint {}", report.last_checkpoint)?;
                        if report.unsigned_tail > 0 {
                            writeln!(
                                out,
                                "  {} entries after it are chained but not yet signed (the gateway signs them within {})",
                                report.unsigned_tail,
                                humantime::format_duration(config.audit.checkpoint_interval)
                            )?;
                        }
                        if let Some(n) = report.copy_compared {
                            writeln!(out, "  {n} checkpoints match the copy")?;
                        }
                    }
                    Err(broken) => {
                        writeln!(
                            out,
                            "audit log {} is broken at {}",
                            source.label, broken.where_
                        )?;
                        writeln!(out, "  {}", broken.detail)?;
                    }
                }
            }
            Ok(if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Prove { seq, key, node } => {
            let key = key_for(config, key.as_deref())?;
            let source = Source::open(config, node.as_deref())?;
            let proof = verify::prove(&source.paths, *seq, key.as_ref())
                .map_err(|e| anyhow::anyhow!("cannot prove {}", source.place(&e.to_string())))?;
            writeln!(out, "{}", serde_json::to_string_pretty(&proof)?)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckProof { proof, key } => {
            let text = if proof.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(proof)
                    .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", proof.display()))?
            };
            let parsed: Proof = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("`{}` is not a proof: {e}", proof.display()))?;
            let Some(key) = key_for(config, key.as_deref())? else {
                anyhow::bail!(
                    "no public key: pass --key (the `audit.ed25519.pub` of the gateway that wrote the log)"
                );
            };
            match verify::check_proof(&parsed, &key) {
                Ok(body) => {
                    writeln!(
                        out,
                        "entry {} is in checkpoint {} (entries {}..{}, signed {} by key {})",
                        parsed.seq, body.n, body.first, body.end, body.time, body.key
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    writeln!(
                        out,
                        "the proof of entry {} does not hold: {why}",
                        parsed.seq
                    )?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// `palisade activity`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ActivityArgs {
    /// The principal whose actions to show (as records name it: an API
    /// key's principal, a token's subject).
    #[arg(long)]
    pub user: String,
    /// The tenant the user belongs to, if their credentials name one:
    /// only that tenant's calls by that id are shown.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only actions this recent (`2h`, `30m`, `7d`).
    #[arg(long)]
    pub since: Option<humantime::Duration>,
    /// At most this many, the newest.
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// `text` (the default) or `json`.
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub fn activity(
    config: &Config,
    args: &ActivityArgs,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if !matches!(args.format.as_str(), "text" | "json") {
        anyhow::bail!("--format {}: expected `text` or `json`", args.format);
    }
    let query = palisade_audit::activity::Query {
        principal: args.user.clone(),
        tenant: args.tenant.clone(),
        since: args
            .since
            .map(|d| std::time::SystemTime::now() - std::time::Duration::from(d)),
        limit: args.limit,
    };
    // On PostgreSQL, every node's chain: a user may be served by any gateway.
    let (actions, label) = match config.audit.postgres_target() {
        Some(target) => (
            palisade_audit::postgres::activity(&target, &query).map_err(|e| anyhow::anyhow!(e))?,
            format!(
                "the audit log in {}",
                palisade_server::config::mask_password(&target.url)
            ),
        ),
        None => {
            let source = Source::open(config, None)?;
            let actions = palisade_audit::activity::read(&source.paths.entries, &query)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", source.label))?;
            (actions, source.label)
        }
    };
    if args.format == "json" {
        writeln!(out, "{}", serde_json::to_string_pretty(&actions)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if actions.is_empty() {
        writeln!(out, "no calls by `{}` in {label}", args.user)?;
        return Ok(ExitCode::SUCCESS);
    }
    for a in &actions {
        write!(
            out,
            "{}  {}/{}  {}  {}",
            a.time,
            palisade_audit::activity::Action::shown(&a.server),
            palisade_audit::activity::Action::shown(&a.name),
            palisade_audit::activity::Action::shown(&a.effect),
            a.status
        )?;
        if let Some(why) = &a.why {
            write!(out, "  ({why})")?;
        }
        match &a.node {
            Some(node) => writeln!(out, "  #{} on node `{node}`", a.seq)?,
            None => writeln!(out, "  #{}", a.seq)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// The alerts in the audit log (the rules' and the limits'), oldest first.
    List {
        /// Only alerts this recent (`2h`, `1d`).
        #[arg(long)]
        since: Option<humantime::Duration>,
        /// At most this many, the newest.
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// `text` (the default) or `json`.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// The alert rules in force (the built-in ones as the config leaves them).
    Rules,
}

pub fn alerts(
    config: &Config,
    command: &AlertsCommand,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (since, limit, format) = match command {
        AlertsCommand::Rules => {
            for rule in &config.alerts.rules {
                let when: Vec<String> = rule.when.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(
                    out,
                    "{}  {:?}  {}  when {}{}",
                    rule.name,
                    rule.severity,
                    rule.condition(),
                    when.join(" "),
                    if rule.tools.is_empty() {
                        String::new()
                    } else {
                        format!(" tools {}", rule.tools.join(","))
                    }
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        AlertsCommand::List {
            since,
            limit,
            format,
        } => (since, limit, format),
    };
    if !matches!(format.as_str(), "text" | "json") {
        anyhow::bail!("--format {format}: expected `text` or `json`");
    }
    let since = since.map(|d| std::time::SystemTime::now() - std::time::Duration::from(d));
    let source = Source::open(config, None)?;
    let records = palisade_audit::activity::alerts(&source.paths.entries, since, *limit)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", source.label))?;
    if format == "json" {
        writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        writeln!(out, "no alerts in {}", source.label)?;
    }
    let field =
        |r: &serde_json::Value, k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    for r in &records {
        let (rule, severity) = if field(r, "event") == "alert" {
            (field(r, "rule"), field(r, "severity"))
        } else {
            (format!("limits:{}", field(r, "limit")), "medium".to_owned())
        };
        writeln!(
            out,
            "{}  {severity}  {rule}  {}  #{}",
            field(r, "time"),
            field(r, "message"),
            r.get("seq")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
