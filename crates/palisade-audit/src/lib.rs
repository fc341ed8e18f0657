//! Layer 6: the audit log. Today a JSON-lines file, one record per call.
//!
//! The hash chain, signed checkpoints, SIEM streaming and alert rules grow
//! here; they replace the storage, not the record's place in the pipeline.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use palisade_core::stage::{Audit, StageError, StageFuture};
use palisade_core::{AuditLine, Redacted};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open audit log `{path}`: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Appends one JSON line per call to a file opened in append mode.
///
/// Each record is written with a single `write` of the whole line, so
/// concurrent writers (and a crash mid-way) never interleave two records.
#[derive(Debug)]
pub struct JsonLines {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLines {
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| OpenError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, record: &Redacted<AuditLine>) -> Result<(), StageError> {
        let bytes = record.get().bytes();
        let mut line = Vec::with_capacity(bytes.len() + 1);
        line.extend_from_slice(bytes);
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| StageError::new("audit log lock poisoned"))?;
        file.write_all(&line).map_err(|e| {
            StageError::new(format!("cannot append to `{}`: {e}", self.path.display()))
        })
    }
}

impl Audit for JsonLines {
    fn append<'a>(&'a self, record: &'a Redacted<AuditLine>) -> StageFuture<'a, ()> {
        Box::pin(async move { self.write(record) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::*;

    fn record(n: u64) -> Redacted<AuditLine> {
        let event = AuditEvent::SessionOpened {
            time: "2026-01-01T00:00:00Z".into(),
            session: SessionId::new(format!("s{n}")),
            principal: Principal::anonymous(),
            protocol_version: "2025-11-25".into(),
        };
        RedactionSeam::pass_through().record(&event).unwrap()
    }

    #[tokio::test]
    async fn appends_one_parseable_line_per_record() {
        let dir = std::env::temp_dir().join(format!("palisade-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = JsonLines::open(&path).unwrap();
        log.append(&record(1)).await.unwrap();
        log.append(&record(2)).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["session"], "s2");
        assert_eq!(lines[0]["event"], "session-opened");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unopenable_path_names_the_path() {
        let err = JsonLines::open(Path::new("/nonexistent-dir/x/audit.jsonl")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-dir/x/audit.jsonl"),
            "{err}"
        );
    }
}
