//! The embedded audit log: entries appended with group commit, signed checkpoints, recovery at open.
//!
//! Two files in the data directory: `audit.jsonl`, one [`crate::entry`]
//! per line, and `audit.checkpoints.jsonl`, one [`Checkpoint`] per line.
//! In each process one writer thread owns them. It takes every record
//! waiting, and under the log's lock (an exclusive `flock` on
//! `audit.jsonl`, which every palisade process writing this log takes —
//! several `palisade mcp` sharing a data directory is the common case) first
//! reads what other processes appended since it last looked, then frames and
//! hashes its records after theirs, writes them with one `write` and one
//! `fdatasync`, and only then acknowledges each: an acknowledged record is
//! on disk, and the processes write one chain. A checkpoint follows every
//! `checkpoint_interval` (an empty one when nothing was written, so a gap in
//! time shows) or every `checkpoint_entries` entries.
//!
//! At open, whatever follows the last checkpoint is checked entry by entry
//! and signed into a new checkpoint; a torn last line (a write a crash cut
//! short, so never acknowledged) is cut off and the checkpoint says how
//! many bytes went. A log that is damaged anywhere else is refused:
//! palisade does not append to a log it cannot vouch for.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use palisade_core::stage::{Audit, StageError, StageFuture};
use palisade_core::{AuditLine, Clock, Redacted};
use tokio::sync::oneshot;

use crate::checkpoint::{self, Body, Checkpoint, KeyError};
use crate::entry::{self, GENESIS, Hash};
use crate::merkle;

/// Where a log's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `audit.jsonl`: the entries.
    pub entries: PathBuf,
    /// `audit.checkpoints.jsonl`: the signed checkpoints.
    pub checkpoints: PathBuf,
    /// `keys/`: the signing key `audit.ed25519` and its public half.
    pub keys: PathBuf,
}

impl Paths {
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            entries: data_dir.join("audit.jsonl"),
            checkpoints: data_dir.join("audit.checkpoints.jsonl"),
            keys: data_dir.join("keys"),
        }
    }

    /// The public key verifiers of this log use by default.
    pub fn public_key(&self) -> PathBuf {
        self.keys.join("audit.ed25519.pub")
    }
}

/// How the writer behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A checkpoint at least this often, empty if nothing was written.
    pub checkpoint_interval: Duration,
    /// A checkpoint after the write that brings this many entries (keeps
    /// proofs short and the writer's memory bounded; a write holds at most
    /// 4,096 records).
    pub checkpoint_entries: usize,
    /// Every checkpoint is also appended here (a file the operator keeps
    /// out of reach of the gateway's data directory, so that rewriting the
    /// whole tail of the log is caught).
    pub copy: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_secs(10),
            checkpoint_entries: 65_536,
            copy: None,
        }
    }
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot {action} audit log `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "audit log `{path}` is damaged: {detail}; palisade will not append to it. \
         `palisade audit verify` says more; move the log and its checkpoints aside to start a new one"
    )]
    Damaged { path: PathBuf, detail: String },
}

/// Why one append failed. The record is not in the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("audit log write failed: {0}")]
    Write(String),
    #[error("the audit log is closed")]
    Closed,
    #[error("audit record refused: {0}")]
    Record(String),
}

/// What one appended record became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
}

enum Job {
    Append {
        record: entry::CanonicalRecord,
        done: oneshot::Sender<Result<Appended, AppendError>>,
    },
    Checkpoint {
        done: oneshot::Sender<Result<u64, AppendError>>,
    },
}

/// The embedded, tamper-evident audit log.
pub struct AuditLog {
    paths: Paths,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("entries", &self.paths.entries)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or starts) the log, recovering what follows its last checkpoint.
    pub fn open(
        paths: Paths,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let key = checkpoint::load_or_create_key(&paths.keys)?;
        let mut writer = Writer::open(&paths, settings, key, clock)?;
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("palisade-audit".into())
            .spawn(move || writer.run(&queue))
            .map_err(|source| OpenError::Io {
                action: "start the writer of",
                path: paths.entries.clone(),
                source,
            })?;
        Ok(Self {
            paths,
            jobs: Mutex::new(Some(jobs)),
            writer: Mutex::new(Some(thread)),
        })
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    fn send(&self, job: Job) -> Result<(), AppendError> {
        let jobs = self.jobs.lock().map_err(|_| AppendError::Closed)?;
        jobs.as_ref()
            .ok_or(AppendError::Closed)?
            .send(job)
            .map_err(|_| AppendError::Closed)
    }

    /// Appends one record; returns once it is on disk.
    pub async fn append_record(
        &self,
        record: &Redacted<AuditLine>,
    ) -> Result<Appended, AppendError> {
        // Canonicalized here, by each caller, so that the one writer thread
        // only frames, hashes and writes.
        let record = entry::CanonicalRecord::of(record.get().bytes())
            .map_err(|e| AppendError::Record(e.to_string()))?;
        self.append_canonical(record).await
    }

    /// Appends a record already in canonical form (made from what passed
    /// the redaction seam); returns once it is on disk.
    pub async fn append_canonical(
        &self,
        record: entry::CanonicalRecord,
    ) -> Result<Appended, AppendError> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Append { record, done })?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Writes a checkpoint now (empty if nothing is pending); returns its index.
    pub async fn checkpoint(&self) -> Result<u64, AppendError> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Checkpoint { done })?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Stops the writer after a last checkpoint. Appends after this fail.
    pub fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Some(thread) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = thread.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Audit for AuditLog {
    fn append<'a>(&'a self, line: &'a Redacted<AuditLine>) -> StageFuture<'a, ()> {
        Box::pin(async move {
            self.append_record(line)
                .await
                .map(|_| ())
                .map_err(|e| StageError::new(e.to_string()))
        })
    }
}

/// The writer thread's state: the files, the chain's head, what the next
/// checkpoint will cover.
struct Writer {
    entries: File,
    entries_path: PathBuf,
    checkpoints: File,
    checkpoints_path: PathBuf,
    /// A second handle on the entries file's open description: its `flock`
    /// is what every process writing this log takes around each write.
    lock: File,
    copy: Option<(PathBuf, File)>,
    settings: Settings,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    log_id: String,
    /// The next entry's sequence number.
    seq: u64,
    /// The last entry's hash (the next one's `prev`).
    last: Hash,
    /// The entry file's length as far as this writer has read or written it.
    bytes: u64,
    /// Hashes of the entries since the last checkpoint.
    pending: Vec<Hash>,
    /// The last checkpoint: its index and the hash of its line.
    checkpoint_n: u64,
    checkpoint_hash: Hash,
    /// The checkpoint file's length as far as this writer has read it.
    checkpoint_bytes: u64,
    last_checkpoint_at: Instant,
    torn_bytes: Option<u64>,
    /// Set when a failed write could not be undone, or the files changed
    /// in a way no writer would: nothing more is written.
    broken: Option<String>,
    scratch: Vec<Hash>,
}

fn open_rw(path: &Path) -> Result<File, OpenError> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|source| OpenError::Io {
        action: "open",
        path: path.to_owned(),
        source,
    })
}

/// Splits off a final line that has no newline: what a crash left half-written.
fn complete_part(bytes: &[u8]) -> (&[u8], usize) {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (complete, torn) = bytes.split_at_checked(end).unwrap_or((bytes, &[]));
    (complete, torn.len())
}

/// Reads `file` from `offset` to its end.
fn read_from(file: &mut File, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    file.seek(SeekFrom::Start(offset))?;
    file.read_to_end(&mut out)?;
    Ok(out)
}

/// The last whole line of a file of short lines, and the length of the
/// file's whole lines (a torn line after them excluded).
fn last_line(file: &mut File) -> std::io::Result<(Option<Vec<u8>>, u64)> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(64 * 1024);
    let chunk = read_from(file, start)?;
    let (complete, _) = complete_part(&chunk);
    let complete_len = start + complete.len() as u64;
    let line = complete
        .strip_suffix(b"\n")
        .and_then(|c| c.split(|&b| b == b'\n').next_back())
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec);
    Ok((line, complete_len))
}

impl Writer {
    fn open(
        paths: &Paths,
        settings: Settings,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        if let Some(dir) = paths.entries.parent() {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Io {
                action: "create the directory of",
                path: paths.entries.clone(),
                source,
            })?;
        }
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::Io {
                action,
                path,
                source,
            }
        };
        let entries = open_rw(&paths.entries)?;
        let lock = entries.try_clone().map_err(io("open", &paths.entries))?;
        let checkpoints = open_rw(&paths.checkpoints)?;
        let copy = match &settings.copy {
            Some(path) => Some((path.clone(), open_rw(path)?)),
            None => None,
        };
        let mut writer = Writer {
            entries,
            entries_path: paths.entries.clone(),
            checkpoints,
            checkpoints_path: paths.checkpoints.clone(),
            lock,
            copy,
            settings,
            key,
            clock,
            log_id: String::new(),
            seq: 0,
            last: GENESIS,
            bytes: 0,
            pending: Vec::new(),
            checkpoint_n: 0,
            checkpoint_hash: [0; 32],
            checkpoint_bytes: 0,
            last_checkpoint_at: Instant::now(),
            torn_bytes: None,
            broken: None,
            scratch: Vec::new(),
        };
        writer
            .locked(Writer::start)
            .map_err(io("lock", &paths.entries))?
            .map_err(|detail| OpenError::Damaged {
                path: paths.entries.clone(),
                detail,
            })?;
        Ok(writer)
    }

    /// Runs `f` holding the log's lock, which every writer of it takes
    /// around each write (processes and threads alike).
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> std::io::Result<T> {
        self.lock.lock()?;
        let out = f(self);
        let _ = self.lock.unlock();
        Ok(out)
    }

    /// Takes up the log where its last checkpoint left it (or starts it),
    /// checks and adopts what follows, and signs that.
    fn start(&mut self) -> Result<(), String> {
        let (line, complete) = last_line(&mut self.checkpoints)
            .map_err(|e| format!("cannot read `{}`: {e}", self.checkpoints_path.display()))?;
        let entries_len = self.entries.metadata().map_err(|e| e.to_string())?.len();
        let Some(line) = line else {
            if entries_len > 0 {
                return Err(format!(
                    "it holds {entries_len} bytes but there is no checkpoint in `{}` \
                     (a log written before checkpoints existed, or its checkpoints were removed)",
                    self.checkpoints_path.display()
                ));
            }
            // A torn checkpoint 0 (a crash as the log was made) goes too.
            self.checkpoints.set_len(0).map_err(|e| e.to_string())?;
            let mut id = [0u8; 16];
            getrandom::fill(&mut id).map_err(|e| e.to_string())?;
            self.log_id = hex::encode(id);
            return self.write_checkpoint(0);
        };
        let public = self.key.verifying_key();
        let last = Checkpoint::parse(&line, Some(&public)).map_err(|e| {
            format!(
                "the last checkpoint in `{}` is not valid: {e}",
                self.checkpoints_path.display()
            )
        })?;
        let body = &last.body;
        self.log_id = body.log.clone();
        self.seq = body.end;
        self.bytes = body.bytes;
        self.checkpoint_n = body.n;
        self.checkpoint_hash = checkpoint::line_hash(&line);
        self.checkpoint_bytes = complete;
        self.last = checkpoint::decode_hash(&body.last)
            .ok_or("the last checkpoint's `last` is not a hash")?;
        self.catch_up()?;
        if !self.pending.is_empty() || self.torn_bytes.is_some() {
            self.write_checkpoint(self.checkpoint_n + 1)?;
        }
        Ok(())
    }

    /// Reads what other writers appended since this one last looked: their
    /// entries (checked and chained like any), their checkpoints (which
    /// then cover this writer's pending entries). A torn final line, which
    /// only a writer that died mid-write leaves (writes happen under the
    /// lock), is cut off. Called with the lock held.
    fn catch_up(&mut self) -> Result<(), String> {
        let path = self.entries_path.display().to_string();
        let len = self
            .entries
            .metadata()
            .map_err(|e| format!("cannot read `{path}`: {e}"))?
            .len();
        if len < self.bytes {
            return Err(format!(
                "`{path}` is {len} bytes long, but {} bytes of it were written and checkpointed: entries were removed",
                self.bytes
            ));
        }
        if len > self.bytes {
            let tail = read_from(&mut self.entries, self.bytes)
                .map_err(|e| format!("cannot read `{path}`: {e}"))?;
            let (complete, torn) = complete_part(&tail);
            for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let framed = entry::parse(line)
                    .map_err(|e| format!("entry {} is not an entry: {e}", self.seq))?;
                if framed.seq != self.seq || framed.prev != self.last {
                    return Err(format!(
                        "the entry after entry {} does not follow it (it says seq {}{})",
                        self.seq.wrapping_sub(1),
                        framed.seq,
                        if framed.prev == self.last {
                            ""
                        } else {
                            " and names another entry as its predecessor"
                        }
                    ));
                }
                self.last = entry::leaf_hash(line);
                self.pending.push(self.last);
                self.seq += 1;
                self.bytes += line.len() as u64 + 1;
            }
            if torn > 0 {
                self.entries
                    .set_len(self.bytes)
                    .and_then(|()| self.entries.sync_data())
                    .map_err(|e| format!("cannot repair `{path}`: {e}"))?;
                tracing::warn!(
                    "audit log `{path}`: cut off {torn} bytes of a final entry that a crash left half-written (it was never acknowledged)"
                );
                self.torn_bytes = Some(self.torn_bytes.unwrap_or(0) + torn as u64);
            }
        }
        let cpath = self.checkpoints_path.display().to_string();
        let clen = self
            .checkpoints
            .metadata()
            .map_err(|e| format!("cannot read `{cpath}`: {e}"))?
            .len();
        if clen < self.checkpoint_bytes {
            return Err(format!(
                "`{cpath}` became shorter: checkpoints were removed"
            ));
        }
        if clen > self.checkpoint_bytes {
            let tail = read_from(&mut self.checkpoints, self.checkpoint_bytes)
                .map_err(|e| format!("cannot read `{cpath}`: {e}"))?;
            let (complete, torn) = complete_part(&tail);
            let public = self.key.verifying_key();
            for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let c = Checkpoint::parse(line, Some(&public))
                    .map_err(|e| format!("a checkpoint another writer added is not valid: {e}"))?;
                let b = &c.body;
                let first = self.seq - self.pending.len() as u64;
                if b.n != self.checkpoint_n + 1
                    || checkpoint::decode_hash(&b.prev) != Some(self.checkpoint_hash)
                    || b.first != first
                    || b.end > self.seq
                {
                    return Err(format!(
                        "checkpoint {} that another writer added does not continue checkpoint {}",
                        b.n, self.checkpoint_n
                    ));
                }
                let covered = usize::try_from(b.end - b.first).unwrap_or(usize::MAX);
                self.pending.drain(..covered.min(self.pending.len()));
                self.checkpoint_n = b.n;
                self.checkpoint_hash = checkpoint::line_hash(line);
                self.last_checkpoint_at = Instant::now();
            }
            self.checkpoint_bytes += complete.len() as u64;
            if torn > 0 {
                self.checkpoints
                    .set_len(self.checkpoint_bytes)
                    .map_err(|e| format!("cannot repair `{cpath}`: {e}"))?;
            }
        }
        Ok(())
    }

    fn run(&mut self, queue: &mpsc::Receiver<Job>) {
        loop {
            let wait = self
                .settings
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint_at.elapsed());
            let first = match queue.recv_timeout(wait) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.checkpoint_logged(true);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if !self.pending.is_empty() {
                        self.checkpoint_logged(false);
                    }
                    return;
                }
            };
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let locked = self.locked(|w| w.write_batch(batch));
            if let Err(e) = locked {
                // The jobs were dropped unanswered: their callers see the
                // log as closed. Nothing can be written without the lock.
                self.broken = Some(format!(
                    "cannot lock `{}`: {e}",
                    self.entries_path.display()
                ));
            }
        }
    }

    /// A checkpoint from the timer (`idle`: skipped if another writer
    /// signed one within the interval) or at close.
    fn checkpoint_logged(&mut self, idle: bool) {
        if self.broken.is_some() {
            return;
        }
        let result = self.locked(|w| {
            w.catch_up()?;
            if idle && w.last_checkpoint_at.elapsed() < w.settings.checkpoint_interval {
                return Ok(());
            }
            w.write_checkpoint(w.checkpoint_n + 1)
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!("audit checkpoint not written: {e}");
                self.broken = Some(e);
            }
            Err(e) => tracing::error!("audit checkpoint not written: cannot lock the log: {e}"),
        }
    }

    fn write_batch(&mut self, batch: Vec<Job>) {
        if self.broken.is_none()
            && let Err(e) = self.catch_up()
        {
            tracing::error!("audit log `{}`: {e}", self.entries_path.display());
            self.broken = Some(format!("the log changed under palisade: {e}"));
        }
        let mut buf = Vec::new();
        let mut appends = Vec::with_capacity(batch.len());
        let mut checkpoints = Vec::new();
        let (seq, last, pending, bytes) = (self.seq, self.last, self.pending.len(), self.bytes);
        for job in batch {
            match job {
                Job::Append { record, done } => {
                    if let Some(why) = &self.broken {
                        let _ = done.send(Err(AppendError::Write(why.clone())));
                        continue;
                    }
                    let line = entry::frame_canonical(&self.last, self.seq, &record);
                    self.last = entry::leaf_hash(&line);
                    self.pending.push(self.last);
                    buf.extend_from_slice(&line);
                    buf.push(b'\n');
                    appends.push((self.seq, done));
                    self.seq += 1;
                }
                Job::Checkpoint { done } => checkpoints.push(done),
            }
        }
        if !buf.is_empty() {
            let written = self
                .entries
                .write_all(&buf)
                .and_then(|()| self.entries.sync_data());
            if let Err(e) = written {
                let why = format!("`{}`: {e}", self.entries_path.display());
                // Undo the part that may have landed, so the file ends on a
                // whole entry and the next write continues the chain.
                if let Err(undo) = self
                    .entries
                    .set_len(bytes)
                    .and_then(|()| self.entries.sync_data())
                {
                    self.broken = Some(format!(
                        "{why}; and the partial write could not be removed ({undo}): no more records are accepted"
                    ));
                }
                self.seq = seq;
                self.last = last;
                self.pending.truncate(pending);
                for (_, done) in appends {
                    let _ = done.send(Err(AppendError::Write(why.clone())));
                }
                for done in checkpoints {
                    let _ = done.send(Err(AppendError::Write(why.clone())));
                }
                return;
            }
            self.bytes += buf.len() as u64;
        }
        for (seq, done) in appends {
            let _ = done.send(Ok(Appended { seq }));
        }
        let due = self.last_checkpoint_at.elapsed() >= self.settings.checkpoint_interval
            || self.pending.len() >= self.settings.checkpoint_entries;
        if checkpoints.is_empty() && !due {
            return;
        }
        let n = self.checkpoint_n + 1;
        let result = match &self.broken {
            Some(why) => Err(why.clone()),
            None => self.write_checkpoint(n).map(|()| n),
        };
        if let Err(e) = &result {
            tracing::error!("audit checkpoint {n} not written: {e}");
        }
        for done in checkpoints {
            let _ = done.send(result.clone().map_err(AppendError::Write));
        }
    }

    /// Signs and appends checkpoint `n` over the pending entries. Called
    /// with the lock held, after `catch_up`.
    fn write_checkpoint(&mut self, n: u64) -> Result<(), String> {
        let first = self.seq - self.pending.len() as u64;
        let root = merkle::root_with(&self.pending, &mut self.scratch);
        let body = Body {
            n,
            log: self.log_id.clone(),
            first,
            end: self.seq,
            bytes: self.bytes,
            root: hex::encode(root),
            last: hex::encode(self.last),
            prev: hex::encode(if n == 0 {
                [0; 32]
            } else {
                self.checkpoint_hash
            }),
            time: humantime::format_rfc3339_micros(self.clock.wall()).to_string(),
            key: hex::encode(self.key.verifying_key().as_bytes()),
            torn_bytes: self.torn_bytes,
        };
        let mut line = body.sign(&self.key).line();
        let hash = checkpoint::line_hash(&line);
        line.push(b'\n');
        if let Err(e) = self
            .checkpoints
            .write_all(&line)
            .and_then(|()| self.checkpoints.sync_data())
        {
            // A partial checkpoint line would hide the ones after it: cut it.
            let _ = self.checkpoints.set_len(self.checkpoint_bytes);
            return Err(format!(
                "cannot write a checkpoint to `{}`: {e}",
                self.checkpoints_path.display()
            ));
        }
        if let Some((path, copy)) = &mut self.copy
            && let Err(e) = copy.write_all(&line).and_then(|()| copy.sync_data())
        {
            tracing::error!(
                "audit checkpoint {n} not copied to `{}`: {e}",
                path.display()
            );
        }
        self.checkpoint_n = n;
        self.checkpoint_hash = hash;
        self.checkpoint_bytes += line.len() as u64;
        self.pending.clear();
        self.torn_bytes = None;
        self.last_checkpoint_at = Instant::now();
        Ok(())
    }
}
