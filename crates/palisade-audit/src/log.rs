//! The embedded audit log: entries appended with group commit, signed checkpoints, recovery at open.
//!
//! Two files in the data directory: `audit.jsonl`, one [`crate::entry`]
//! per line, and `audit.checkpoints.jsonl`, one [`Checkpoint`] per line.
//! A record is queued, and the caller that takes the process's writer (a
//! mutex) writes every queued record with one `write` (flat combining; a
//! caller that finds the writer taken waits for its answer on the runtime,
//! not on the mutex), holding the log's lock (an exclusive `flock` on
//! `audit.jsonl`, which every palisade process writing this log takes —
//! several `palisade mcp` sharing a data directory is the common case):
//! first it reads what other processes appended since this one last looked,
//! then frames and hashes the records after theirs. Written, a record
//! survives a crash of palisade; one that must survive a crash of the
//! machine (see [`SyncMode`]) then waits for the syncer thread, whose one
//! `fdatasync` answers every record written before it began (group commit).
//! No thread stands between a caller and the file: handing each record to a
//! writer thread and back cost more than the write. A ticker
//! thread signs a checkpoint every `checkpoint_interval` (an empty one when
//! nothing was written, so a gap in time shows); the append that brings
//! `checkpoint_entries` entries signs one too.
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
use palisade_core::stage::{Audit, Durability, StageError, StageFuture};
use palisade_core::{AuditLine, Clock, Redacted};
use tokio::sync::oneshot;

use crate::chain::Head;
use crate::checkpoint::{self, Checkpoint, KeyError};
use crate::entry;

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

/// Which records wait for `fdatasync` before they are acknowledged. Every
/// record is written to the operating system before it is acknowledged, so
/// each survives a crash of palisade; this says which also survive a crash
/// of the machine at that moment (the others reach the disk with the next
/// sync, which starts as soon as the one before it ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Records asked for as [`Durability::Stored`] (a call's intent: nothing
    /// runs that a crash could take out of the log); the rest follow.
    #[default]
    Intents,
    /// Every record.
    All,
    /// None: a crash of the machine can lose the records of the last sync
    /// interval (a few milliseconds), intents included.
    Background,
}

impl SyncMode {
    fn waits(self, durability: Durability) -> bool {
        match self {
            SyncMode::Intents => durability == Durability::Stored,
            SyncMode::All => true,
            SyncMode::Background => false,
        }
    }
}

/// How the writer behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Which records wait for the disk.
    pub sync: SyncMode,
    /// A checkpoint at least this often, empty if nothing was written.
    pub checkpoint_interval: Duration,
    /// A checkpoint after the append that brings this many entries (keeps
    /// proofs short and the writer's memory bounded).
    pub checkpoint_entries: usize,
    /// Every checkpoint is also appended here (a file the operator keeps
    /// out of reach of the gateway's data directory, so that rewriting the
    /// whole tail of the log is caught).
    pub copy: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sync: SyncMode::default(),
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
    #[error("the audit log of node `{node}` cannot be opened: {detail}")]
    Database { node: String, detail: String },
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

type Ack = oneshot::Sender<Result<Appended, AppendError>>;

/// A record waiting for whoever holds the writer to write it.
struct Queued {
    record: entry::CanonicalRecord,
    durability: Durability,
    done: Ack,
}

/// The writer and the records queued for it (flat combining: the caller
/// that takes the writer writes every queued record in one `write`).
struct Shared {
    /// `None` once closed.
    writer: Mutex<Option<Writer>>,
    queue: Mutex<Vec<Queued>>,
}

impl Shared {
    /// Runs `f` on the writer (waiting for it), then writes what was queued
    /// meanwhile; `None` when the log is closed.
    fn with_writer<T>(&self, f: impl FnOnce(&mut Writer) -> T) -> Option<T> {
        let out = {
            let mut writer = self.writer.lock().ok()?;
            writer.as_mut().map(f)
        };
        self.try_drain();
        out
    }

    /// Writes every queued record unless another holds the writer. After
    /// letting go it looks again: a record queued while it wrote, by a
    /// caller who found the writer taken, is written by it, not left.
    fn try_drain(&self) {
        loop {
            let Ok(mut writer) = self.writer.try_lock() else {
                return;
            };
            let batch = match self.queue.lock() {
                Ok(mut queue) if !queue.is_empty() => std::mem::take(&mut *queue),
                _ => return,
            };
            match writer.as_mut() {
                Some(w) => w.write_batch(batch),
                None => {
                    for q in batch {
                        let _ = q.done.send(Err(AppendError::Closed));
                    }
                }
            }
            drop(writer);
            if self.queue.lock().map_or(true, |q| q.is_empty()) {
                return;
            }
        }
    }
}

/// The syncer thread and its queue: a request for a sync, with the
/// acknowledgements to answer after it.
type Syncer = (mpsc::Sender<Vec<(u64, Ack)>>, std::thread::JoinHandle<()>);

/// The embedded, tamper-evident audit log.
pub struct AuditLog {
    paths: Paths,
    store: Store,
}

/// Where the entries go.
enum Store {
    Files {
        shared: Arc<Shared>,
        /// Dropping the sender stops the ticker.
        ticker: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
    },
    Postgres(crate::postgres::PgLog),
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
        let interval = settings.checkpoint_interval;
        let shared = Arc::new(Shared {
            writer: Mutex::new(Some(Writer::open(&paths, settings, key, clock)?)),
            queue: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let ticking = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("palisade-audit".into())
            .spawn(move || {
                // Wakes at least once per interval; the writer skips the
                // checkpoint when one was signed within it.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    ticking.with_writer(|w| w.checkpoint_logged(true));
                }
            })
            .map_err(|source| OpenError::Io {
                action: "start the checkpoint ticker of",
                path: paths.entries.clone(),
                source,
            })?;
        Ok(Self {
            paths,
            store: Store::Files {
                shared,
                ticker: Mutex::new(Some((stop, thread))),
            },
        })
    }

    /// Opens node `target.node`'s chain on PostgreSQL, recovering what
    /// follows its last checkpoint; signed with the key in `paths.keys`.
    pub fn open_postgres(
        paths: Paths,
        target: &crate::postgres::Target,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let key = checkpoint::load_or_create_key(&paths.keys)?;
        let log = crate::postgres::PgLog::open(target, settings, key, clock)?;
        Ok(Self {
            paths,
            store: Store::Postgres(log),
        })
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Appends one record; returns once it is as durable as `durability`
    /// asks under the log's [`SyncMode`].
    pub async fn append_record(
        &self,
        record: &Redacted<AuditLine>,
        durability: Durability,
    ) -> Result<Appended, AppendError> {
        // Canonicalized before the writer is taken: others wait on it only
        // while a record is framed, hashed and written.
        let record = entry::CanonicalRecord::of(record.get().bytes())
            .map_err(|e| AppendError::Record(e.to_string()))?;
        self.append_canonical(record, durability).await
    }

    /// Appends a record already in canonical form (made from what passed
    /// the redaction seam); returns as [`AuditLog::append_record`] does.
    pub async fn append_canonical(
        &self,
        record: entry::CanonicalRecord,
        durability: Durability,
    ) -> Result<Appended, AppendError> {
        let shared = match &self.store {
            Store::Files { shared, .. } => shared,
            Store::Postgres(log) => return log.append(record).await,
        };
        let (done, answer) = oneshot::channel();
        shared
            .queue
            .lock()
            .map_err(|_| AppendError::Closed)?
            .push(Queued {
                record,
                durability,
                done,
            });
        // Whoever holds the writer writes what is queued before letting go;
        // a caller who finds it taken waits for its answer, on the runtime,
        // not on the mutex.
        shared.try_drain();
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Writes a checkpoint now (empty if nothing is pending); returns its
    /// index. It syncs the disk twice, holding the writer: for tests,
    /// operators and shutdown, not the request path.
    pub async fn checkpoint(&self) -> Result<u64, AppendError> {
        match &self.store {
            Store::Files { shared, .. } => shared
                .with_writer(Writer::checkpoint_now)
                .ok_or(AppendError::Closed)?,
            Store::Postgres(log) => log.checkpoint().await,
        }
    }

    /// Stops the writer after a last checkpoint. Appends after this fail.
    pub fn close(&self) {
        let (shared, ticker) = match &self.store {
            Store::Files { shared, ticker } => (shared, ticker),
            Store::Postgres(log) => return log.close(),
        };
        if let Some((stop, thread)) = ticker.lock().ok().and_then(|mut t| t.take()) {
            drop(stop);
            let _ = thread.join();
        }
        let writer = shared.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(mut w) = writer {
            w.close();
        }
        // Whatever was queued as the writer went has no one to write it.
        if let Ok(mut queue) = shared.queue.lock() {
            for q in queue.drain(..) {
                let _ = q.done.send(Err(AppendError::Closed));
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Audit for AuditLog {
    fn append<'a>(
        &'a self,
        line: &'a Redacted<AuditLine>,
        durability: Durability,
    ) -> StageFuture<'a, ()> {
        Box::pin(async move {
            self.append_record(line, durability)
                .await
                .map(|_| ())
                .map_err(|e| StageError::new(e.to_string()))
        })
    }
}

/// The writer's state, behind the log's mutex: the files, the chain's
/// head, what the next checkpoint will cover.
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
    /// The chain's head; its `bytes` is the entry file's length as far as
    /// this writer has read or written it.
    head: Head,
    /// The checkpoint file's length as far as this writer has read it.
    checkpoint_bytes: u64,
    last_checkpoint_at: Instant,
    /// Set when a failed write could not be undone, a sync failed, or the
    /// files changed in a way no writer would: nothing more is written.
    broken: Option<String>,
    /// The syncer thread: takes the acknowledgements that wait for the disk.
    syncer: Option<Syncer>,
    /// Set by the syncer when an `fdatasync` failed.
    sync_failed: Arc<std::sync::OnceLock<String>>,
}

pub(crate) fn open_rw(path: &Path) -> Result<File, OpenError> {
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
            head: Head::start().map_err(|detail| OpenError::Damaged {
                path: paths.entries.clone(),
                detail,
            })?,
            checkpoint_bytes: 0,
            last_checkpoint_at: Instant::now(),
            broken: None,
            syncer: None,
            sync_failed: Arc::default(),
        };
        writer
            .locked(Writer::start)
            .map_err(io("lock", &paths.entries))?
            .map_err(|detail| OpenError::Damaged {
                path: paths.entries.clone(),
                detail,
            })?;
        writer.syncer = Some(start_syncer(
            writer
                .entries
                .try_clone()
                .map_err(io("open", &paths.entries))?,
            paths.entries.clone(),
            Arc::clone(&writer.sync_failed),
        )?);
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
            return self.write_checkpoint(0);
        };
        self.head = Head::resume(&line, &self.key.verifying_key()).map_err(|e| {
            format!(
                "the last checkpoint in `{}` is not valid: {e}",
                self.checkpoints_path.display()
            )
        })?;
        self.checkpoint_bytes = complete;
        self.catch_up()?;
        if !self.head.pending.is_empty() || self.head.torn_bytes.is_some() {
            self.write_checkpoint(self.head.checkpoint_n + 1)?;
        }
        Ok(())
    }

    /// Reads what other writers appended since this one last looked: their
    /// entries (checked and chained like any), their checkpoints (which
    /// then cover this writer's pending entries). A torn final line, which
    /// only a writer that died mid-write leaves (writes happen under the
    /// lock), is cut off. Called with the lock held.
    fn catch_up(&mut self) -> Result<(), String> {
        self.catch_up_entries()?;
        self.catch_up_checkpoints()
    }

    /// The entries half of [`Writer::catch_up`], all an append needs: other
    /// writers' checkpoints matter only to this one's next checkpoint.
    fn catch_up_entries(&mut self) -> Result<(), String> {
        let path = self.entries_path.display().to_string();
        let len = self
            .entries
            .metadata()
            .map_err(|e| format!("cannot read `{path}`: {e}"))?
            .len();
        if len < self.head.bytes {
            return Err(format!(
                "`{path}` is {len} bytes long, but {} bytes of it were written and checkpointed: entries were removed",
                self.head.bytes
            ));
        }
        if len > self.head.bytes {
            let tail = read_from(&mut self.entries, self.head.bytes)
                .map_err(|e| format!("cannot read `{path}`: {e}"))?;
            let (complete, torn) = complete_part(&tail);
            for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                self.head.adopt(line)?;
            }
            if torn > 0 {
                self.entries
                    .set_len(self.head.bytes)
                    .and_then(|()| self.entries.sync_data())
                    .map_err(|e| format!("cannot repair `{path}`: {e}"))?;
                tracing::warn!(
                    "audit log `{path}`: cut off {torn} bytes of a final entry that a crash left half-written (it was never acknowledged)"
                );
                self.head.torn_bytes = Some(self.head.torn_bytes.unwrap_or(0) + torn as u64);
            }
        }
        Ok(())
    }

    /// The checkpoints half of [`Writer::catch_up`].
    fn catch_up_checkpoints(&mut self) -> Result<(), String> {
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
                let first = self.head.seq - self.head.pending.len() as u64;
                if b.n != self.head.checkpoint_n + 1
                    || checkpoint::decode_hash(&b.prev) != Some(self.head.checkpoint_hash)
                    || b.first != first
                    || b.end > self.head.seq
                {
                    return Err(format!(
                        "checkpoint {} that another writer added does not continue checkpoint {}",
                        b.n, self.head.checkpoint_n
                    ));
                }
                let covered = usize::try_from(b.end - b.first).unwrap_or(usize::MAX);
                self.head
                    .pending
                    .drain(..covered.min(self.head.pending.len()));
                self.head.checkpoint_n = b.n;
                self.head.checkpoint_hash = checkpoint::line_hash(line);
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

    /// Signs a last checkpoint if anything is pending, and waits for the
    /// syncer to answer what it holds.
    fn close(&mut self) {
        if !self.head.pending.is_empty() {
            self.checkpoint_logged(false);
        }
        if let Some((queue, thread)) = self.syncer.take() {
            drop(queue);
            let _ = thread.join();
        }
    }

    /// A checkpoint from the ticker (`idle`: skipped if one was signed,
    /// by this process or another, within the interval) or at close.
    fn checkpoint_logged(&mut self, idle: bool) {
        if self.broken.is_some() {
            return;
        }
        let result = self.locked(|w| {
            w.catch_up()?;
            if idle && w.last_checkpoint_at.elapsed() < w.settings.checkpoint_interval {
                return Ok(());
            }
            w.write_checkpoint(w.head.checkpoint_n + 1)
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

    fn checkpoint_now(&mut self) -> Result<u64, AppendError> {
        self.note_sync_failure();
        if let Some(why) = &self.broken {
            return Err(AppendError::Write(why.clone()));
        }
        let n = self
            .locked(|w| {
                w.catch_up()?;
                let n = w.head.checkpoint_n + 1;
                w.write_checkpoint(n).map(|()| n)
            })
            .map_err(|e| format!("cannot lock `{}`: {e}", self.entries_path.display()))
            .and_then(|written| written);
        n.map_err(|e| {
            tracing::error!("audit checkpoint not written: {e}");
            AppendError::Write(e)
        })
    }

    fn note_sync_failure(&mut self) {
        if self.broken.is_none()
            && let Some(why) = self.sync_failed.get()
        {
            self.broken = Some(why.clone());
        }
    }

    /// Writes queued records with one `write` under the log's lock, after
    /// what other writers appended, and answers each (or hands its answer
    /// to the syncer); signs a checkpoint when enough entries are pending.
    fn write_batch(&mut self, batch: Vec<Queued>) {
        self.note_sync_failure();
        let refuse = |batch: Vec<Queued>, why: &str| {
            for q in batch {
                let _ = q.done.send(Err(AppendError::Write(why.to_owned())));
            }
        };
        if let Some(why) = &self.broken {
            return refuse(batch, why);
        }
        let locked = self.locked(|w| {
            if let Err(e) = w.catch_up_entries() {
                tracing::error!("audit log `{}`: {e}", w.entries_path.display());
                let why = format!("the log changed under palisade: {e}");
                w.broken = Some(why.clone());
                return Err(why);
            }
            let (mark, start) = (w.head.mark(), w.head.bytes);
            let mut buf = Vec::with_capacity(batch.len() * 1024);
            for q in &batch {
                buf.extend_from_slice(&w.head.frame(&q.record));
                buf.push(b'\n');
            }
            if let Err(e) = w.entries.write_all(&buf) {
                let why = format!("`{}`: {e}", w.entries_path.display());
                w.head.rewind(mark);
                // Undo the part that may have landed, so the file ends on
                // a whole entry and the next write continues the chain.
                if let Err(undo) = w.entries.set_len(start).and_then(|()| w.entries.sync_data()) {
                    w.broken = Some(format!(
                        "{why}; and the partial write could not be removed ({undo}): no more records are accepted"
                    ));
                }
                return Err(why);
            }
            if w.head.pending.len() >= w.settings.checkpoint_entries
                && let Err(e) = w
                    .catch_up_checkpoints()
                    .and_then(|()| w.write_checkpoint(w.head.checkpoint_n + 1))
            {
                // The records are written; the next checkpoint covers them.
                tracing::error!("audit checkpoint not written: {e}");
            }
            Ok(mark.seq())
        });
        let first = match locked {
            Ok(Ok(first)) => first,
            Ok(Err(why)) => return refuse(batch, &why),
            Err(e) => {
                let why = format!("cannot lock `{}`: {e}", self.entries_path.display());
                return refuse(batch, &why);
            }
        };
        // Written: each record survives a crash of palisade. Those that
        // must survive one of the machine wait for the syncer's next
        // `fdatasync`; every write asks for one, so the rest follow.
        let mut wait = Vec::new();
        for (seq, q) in (first..).zip(batch) {
            if self.settings.sync.waits(q.durability) {
                wait.push((seq, q.done));
            } else {
                let _ = q.done.send(Ok(Appended { seq }));
            }
        }
        self.request_sync(wait);
    }

    /// Asks the syncer for a sync of what is written, answering `acks` after it.
    fn request_sync(&self, acks: Vec<(u64, Ack)>) {
        let refused = match &self.syncer {
            Some((syncer, _)) => match syncer.send(acks) {
                Ok(()) => return,
                Err(mpsc::SendError(acks)) => acks,
            },
            None => acks,
        };
        for (_, done) in refused {
            let _ = done.send(Err(AppendError::Closed));
        }
    }

    /// Signs and appends checkpoint `n` over the pending entries. Called
    /// with the lock held, after `catch_up`.
    fn write_checkpoint(&mut self, n: u64) -> Result<(), String> {
        // The entries a checkpoint covers reach the disk before it does: a
        // checkpoint naming bytes a crash then lost would read as tampering.
        self.entries.sync_data().map_err(|e| {
            format!(
                "cannot sync `{}` before a checkpoint: {e}",
                self.entries_path.display()
            )
        })?;
        let signed = self.head.checkpoint(n, &self.key, &self.clock);
        let mut line = signed.clone();
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
        self.head.checkpointed(n, &signed);
        self.checkpoint_bytes += line.len() as u64;
        self.last_checkpoint_at = Instant::now();
        Ok(())
    }
}

/// How long a sync that no record waits on may wait for more writes to share it.
const BACKGROUND_SYNC_DELAY: Duration = Duration::from_millis(5);

/// Starts the thread that makes written entries durable: it takes every
/// acknowledgement waiting, runs one `fdatasync` for them all,
/// and answers them. A failed sync is final (after one, Linux may already
/// have dropped the pages it could not write): it is reported to the
/// writer, which accepts nothing more.
fn start_syncer(
    file: File,
    path: PathBuf,
    failed: Arc<std::sync::OnceLock<String>>,
) -> Result<Syncer, OpenError> {
    let (queue, jobs) = mpsc::channel::<Vec<(u64, Ack)>>();
    let name = path.clone();
    let run = move || {
        while let Ok(first) = jobs.recv() {
            let mut acks = first;
            // A sync no record waits on waits a little for more writes to
            // share it, unless a record that waits arrives.
            let deadline = Instant::now() + BACKGROUND_SYNC_DELAY;
            while acks.is_empty() {
                match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(more) => acks.extend(more),
                    Err(_) => break,
                }
            }
            while let Ok(more) = jobs.try_recv() {
                acks.extend(more);
            }
            let answer = match failed.get() {
                Some(why) => Err(why.clone()),
                None => file.sync_data().map_err(|e| {
                    let why = format!("cannot sync `{}`: {e}", path.display());
                    tracing::error!("audit log: {why}; no more records are accepted");
                    failed.get_or_init(|| why).clone()
                }),
            };
            for (seq, done) in acks {
                let _ = done.send(
                    answer
                        .clone()
                        .map(|()| Appended { seq })
                        .map_err(AppendError::Write),
                );
            }
        }
    };
    let thread = std::thread::Builder::new()
        .name("palisade-audit-sync".into())
        .spawn(run)
        .map_err(|source| OpenError::Io {
            action: "start the syncer of",
            path: name,
            source,
        })?;
    Ok((queue, thread))
}
