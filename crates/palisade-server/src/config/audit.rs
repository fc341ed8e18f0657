//! `[audit]`: which records wait for the disk, how often the log is checkpointed, and where a copy of each checkpoint goes.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::read::Fields;
use super::validate::Validator;
use super::{ConfigError, as_humantime};

/// `[audit]` as written.
#[derive(Debug, Default)]
pub(super) struct RawAudit {
    postgres: Option<String>,
    node: Option<String>,
    sync: Option<String>,
    checkpoint_interval: Option<String>,
    checkpoint_entries: Option<usize>,
    checkpoint_copy: Option<PathBuf>,
}

impl RawAudit {
    pub(super) fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawAudit {
            postgres: f.secret_string("postgres")?,
            node: f.string("node")?,
            sync: f.string("sync")?,
            checkpoint_interval: f.duration("checkpoint_interval")?,
            checkpoint_entries: f.whole("checkpoint_entries")?,
            checkpoint_copy: f.path("checkpoint_copy")?,
        };
        f.finish()?;
        Ok(raw)
    }
}

/// The audit log's settings.
#[derive(Debug, Clone, Serialize)]
pub struct AuditConfig {
    /// A `postgres://` URL: the log goes to PostgreSQL instead of the data
    /// directory. Printed masked by `palisade check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// The node whose chain this gateway writes there (the host's name by
    /// default); each gateway needs its own.
    pub node: String,
    /// Which records wait for `fdatasync` before they count as written:
    /// `intents`, `all` or `background`.
    #[serde(serialize_with = "sync_name")]
    pub sync: palisade_audit::SyncMode,
    /// A signed checkpoint at least this often (an empty one when idle).
    #[serde(serialize_with = "as_humantime")]
    pub checkpoint_interval: Duration,
    /// … and after at most about this many entries.
    pub checkpoint_entries: usize,
    /// A file every checkpoint is also appended to, kept where the
    /// gateway's data directory is not (so rewriting the log's tail shows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_copy: Option<PathBuf>,
}

/// `sync`'s names.
const SYNC_MODES: [(&str, palisade_audit::SyncMode); 3] = [
    ("intents", palisade_audit::SyncMode::Intents),
    ("all", palisade_audit::SyncMode::All),
    ("background", palisade_audit::SyncMode::Background),
];

fn sync_name<S: serde::Serializer>(
    mode: &palisade_audit::SyncMode,
    s: S,
) -> Result<S::Ok, S::Error> {
    let name = SYNC_MODES
        .iter()
        .find(|(_, m)| m == mode)
        .map_or("intents", |(n, _)| *n);
    s.serialize_str(name)
}

/// This machine's host name, the default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "palisade".to_owned())
}

impl AuditConfig {
    /// Where the PostgreSQL log is, when there is one.
    pub fn postgres_target(&self) -> Option<palisade_audit::postgres::Target> {
        self.postgres
            .as_ref()
            .map(|url| palisade_audit::postgres::Target {
                url: url.clone(),
                node: self.node.clone(),
            })
    }

    pub fn settings(&self) -> palisade_audit::Settings {
        palisade_audit::Settings {
            sync: self.sync,
            checkpoint_interval: self.checkpoint_interval,
            checkpoint_entries: self.checkpoint_entries,
            copy: self.checkpoint_copy.clone(),
        }
    }
}

impl Validator<'_> {
    pub(super) fn audit(&self, raw: Option<RawAudit>) -> Result<AuditConfig, ConfigError> {
        let raw = raw.unwrap_or_default();
        let defaults = palisade_audit::Settings::default();
        let checkpoint_entries = match raw.checkpoint_entries {
            None => defaults.checkpoint_entries,
            Some(0) => return Err(self.err("audit.checkpoint_entries", "must be at least 1")),
            Some(n) if n > 1 << 20 => {
                return Err(self.err(
                    "audit.checkpoint_entries",
                    "must be at most 1048576 (a checkpoint's entries are held in memory until it is signed)",
                ));
            }
            Some(n) => n,
        };
        let sync = match raw.sync.as_deref() {
            None => defaults.sync,
            Some(name) => SYNC_MODES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, mode)| *mode)
                .ok_or_else(|| {
                    self.err(
                        "audit.sync",
                        format!("`{name}`: expected \"intents\", \"all\" or \"background\""),
                    )
                })?,
        };
        let node = match raw.node {
            Some(node) => node,
            None => host_name(),
        };
        if node.is_empty() || node.len() > 128 || node.chars().any(char::is_control) {
            return Err(self.err(
                "audit.node",
                "must be 1 to 128 characters, none of them control characters",
            ));
        }
        if let Some(url) = &raw.postgres {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(self.err(
                    "audit.postgres",
                    "must be a postgres:// or postgresql:// URL",
                ));
            }
            palisade_audit::postgres::parse_url(url).map_err(|e| self.err("audit.postgres", e))?;
        }
        Ok(AuditConfig {
            postgres: raw.postgres,
            node,
            sync,
            checkpoint_interval: self.duration(
                "audit.checkpoint_interval",
                raw.checkpoint_interval.as_deref(),
                defaults.checkpoint_interval,
            )?,
            checkpoint_entries,
            checkpoint_copy: raw.checkpoint_copy.map(|p| self.relative(p)),
        })
    }
}
