//! The audit log on PostgreSQL: one chain per node, in tables the gateway's role may only read and insert into.
//!
//! Two tables, owned by a role other than the gateway's ([`SCHEMA`], applied
//! by `palisade audit init-postgres` as that owner): `palisade_audit_entries`
//! (node, seq, line) and `palisade_audit_checkpoints` (node, n, line), where
//! each line is exactly what the file store writes on one line, so a node's
//! rows written out in order verify with the same code as a file
//! ([`Export`]). Each gateway writes the chain of its own node, so nodes do
//! not contend; a session advisory lock on the node's name keeps two
//! gateways from writing one chain. At connection the gateway checks that
//! its role can neither update, delete nor truncate the tables, and refuses
//! to start if it can.
//!
//! One writer thread per log runs its own single-threaded runtime: it takes
//! every record waiting, frames them after the node's head, inserts them in
//! one statement (one transaction, so a record is acknowledged once its
//! commit returns; the server's `synchronous_commit` decides what that
//! means for a crash of the database's machine), and signs checkpoints on
//! the interval and the size the file store uses. When a statement fails,
//! whether it committed is unknown: the records are refused (the calls
//! fail closed), and before the next write the writer reconnects and reads
//! the node's tail back, adopting whatever did commit.
//!
//! A database administrator can still change rows (a superuser passes any
//! grant and can disable the tables' triggers): what the chain, the signed
//! checkpoints and the checkpoint copy outside the database give is that
//! `palisade audit verify` finds the change.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use palisade_core::Clock;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Config, NoTls};

use crate::chain::Head;
use crate::entry::CanonicalRecord;
use crate::log::{AppendError, Appended, OpenError, Paths, Settings};

/// The tables, their append-only triggers and the grants; `{role}` is the
/// gateway's role, quoted. Run by the tables' owner, not the gateway.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS palisade_audit_entries (
    node TEXT NOT NULL,
    seq BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE TABLE IF NOT EXISTS palisade_audit_checkpoints (
    node TEXT NOT NULL,
    n BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (node, n)
);
CREATE OR REPLACE FUNCTION palisade_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the palisade audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE OR REPLACE TRIGGER palisade_audit_entries_append_only
    BEFORE UPDATE OR DELETE ON palisade_audit_entries
    FOR EACH ROW EXECUTE FUNCTION palisade_audit_append_only();
CREATE OR REPLACE TRIGGER palisade_audit_entries_no_truncate
    BEFORE TRUNCATE ON palisade_audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_audit_append_only();
CREATE OR REPLACE TRIGGER palisade_audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON palisade_audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION palisade_audit_append_only();
CREATE OR REPLACE TRIGGER palisade_audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON palisade_audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_audit_append_only();
REVOKE ALL ON palisade_audit_entries, palisade_audit_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON palisade_audit_entries, palisade_audit_checkpoints TO {role};
"#;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Records per insert at most.
const BATCH: usize = 4096;

/// Where a node's chain is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `postgres://…`; its password never appears in a message.
    pub url: String,
    /// The node whose chain this gateway writes (one gateway per node).
    pub node: String,
}

/// Why the database could not be used: unreachable, or refused.
fn place(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("postgresql at {}:{port} (database `{db}`)", hosts.join(","))
}

/// The error and its causes on one line (tokio-postgres says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string().replace('\n', "; "));
        source = cause.source();
    }
    text
}

/// Parses `url`, naming what is wrong without the password.
pub fn parse_url(url: &str) -> Result<Config, String> {
    let mut config = url
        .parse::<Config>()
        .map_err(|e| format!("not a valid postgresql url: {e}"))?;
    if config.get_hosts().is_empty() {
        return Err("the url names no host".into());
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    Ok(config)
}

/// A connection; its I/O runs on the current runtime until the client is dropped.
async fn connect(config: &Config, place: &str) -> Result<Client, String> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("cannot connect to {place}: {}", describe(&e)))?;
    #[expect(
        clippy::disallowed_methods,
        reason = "a connection's I/O task on the audit writer's own runtime, ended by dropping its client"
    )]
    tokio::spawn(async move {
        let _ended = connection.await;
    });
    Ok(client)
}

/// Quotes a role name for SQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the tables (as their owner, the role `url` logs in as) and
/// grants `gateway_role` reading and inserting only. Idempotent.
pub fn init(url: &str, gateway_role: &str) -> Result<(), String> {
    let config = parse_url(url)?;
    let place = place(&config);
    if gateway_role.is_empty() {
        return Err("the gateway's role is empty".into());
    }
    if config.get_user() == Some(gateway_role) {
        return Err(format!(
            "`{gateway_role}` would own the audit tables it writes: run this as another role (the tables' owner) and name the gateway's role"
        ));
    }
    let sql = SCHEMA.replace("{role}", &quote_ident(gateway_role));
    block_on(async move {
        let client = connect(&config, &place).await?;
        client.batch_execute(&sql).await.map_err(|e| {
            format!(
                "cannot create the audit tables in {place}: {}",
                describe(&e)
            )
        })
    })
}

/// Runs `f` on a runtime of its own (the CLI and the writer thread are not
/// inside one).
fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?
        .block_on(f)
}

/// Writes node `node`'s entries and checkpoints, in order, as the two files
/// of the file store in `dir`, for verification, proofs and reading.
fn export_into(target: &Target, dir: &Path) -> Result<(), String> {
    let config = parse_url(&target.url)?;
    let place = place(&config);
    let paths = Paths::in_dir(dir);
    let node = target.node.clone();
    let (entries_path, checkpoints_path) = (paths.entries.clone(), paths.checkpoints.clone());
    block_on(async move {
        let client = connect(&config, &place).await?;
        let failed = |what: &str, e: &tokio_postgres::Error| {
            format!(
                "cannot read the {what} of node `{node}` from {place}: {}",
                describe(e)
            )
        };
        for (table, order, path) in [
            ("palisade_audit_checkpoints", "n", &checkpoints_path),
            ("palisade_audit_entries", "seq", &entries_path),
        ] {
            let mut out = std::io::BufWriter::new(
                File::create(path)
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?,
            );
            let rows = client
                .query(
                    &format!("SELECT line FROM {table} WHERE node = $1 ORDER BY {order}"),
                    &[&node],
                )
                .await
                .map_err(|e| failed(table, &e))?;
            for row in rows {
                let line: String = row.try_get(0).map_err(|e| failed(table, &e))?;
                out.write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            }
            out.flush()
                .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        }
        Ok(())
    })
}

/// `query.principal`'s actions from every node's chain in the database
/// (a user may have been served by any gateway), each naming its node:
/// the newest `query.limit`, oldest first, ordered by the time each
/// node's clock wrote, then by node and sequence number. Nodes' clocks may
/// disagree; each chain's own order is its sequence numbers.
pub fn activity(
    target: &Target,
    query: &crate::activity::Query,
) -> Result<Vec<crate::activity::Action>, String> {
    let config = parse_url(&target.url)?;
    let place = place(&config);
    let [principal, event] = query.needles();
    let rows = block_on(async {
        let client = connect(&config, &place).await?;
        client
            .query(
                "SELECT node, seq, line FROM palisade_audit_entries
                 WHERE strpos(line, $1) > 0 AND strpos(line, $2) > 0",
                &[&principal, &event],
            )
            .await
            .map_err(|e| format!("cannot read the entries from {place}: {}", describe(&e)))
    })?;
    let mut found = Vec::new();
    for row in rows {
        let (Ok(node), Ok(seq), Ok(line)) = (
            row.try_get::<_, String>(0),
            row.try_get::<_, i64>(1),
            row.try_get::<_, String>(2),
        ) else {
            continue;
        };
        let Ok(framed) = crate::entry::parse(line.as_bytes()) else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(framed.record) else {
            continue;
        };
        if !query.wants(&record) || !crate::activity::at_or_after(&record, query.since) {
            continue;
        }
        let seq = u64::try_from(seq).unwrap_or_default();
        let at = crate::activity::time_of(&record);
        found.push((
            at,
            node.clone(),
            seq,
            crate::activity::action(seq, Some(node), &record),
        ));
    }
    found.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let skip = found.len().saturating_sub(query.limit);
    Ok(found
        .into_iter()
        .skip(skip)
        .map(|(.., action)| action)
        .collect())
}

/// A node's rows read in order, from a given sequence number on: what a
/// SIEM sink follows when the log is on PostgreSQL. Connects on first use
/// and again after a failure.
pub(crate) struct Rows {
    config: Config,
    place: String,
    node: String,
    client: Option<Client>,
}

impl Rows {
    pub(crate) fn new(target: &Target) -> Result<Self, String> {
        let config = parse_url(&target.url)?;
        Ok(Self {
            place: place(&config),
            config,
            node: target.node.clone(),
            client: None,
        })
    }

    /// Up to `max` lines of the node's entries (`checkpoints` false) or
    /// checkpoints, from number `from` on, in order.
    pub(crate) async fn after(
        &mut self,
        checkpoints: bool,
        from: u64,
        max: usize,
    ) -> Result<Vec<Vec<u8>>, String> {
        let client = match &mut self.client {
            Some(client) if !client.is_closed() => client,
            slot => slot.insert(connect(&self.config, &self.place).await?),
        };
        let (table, order) = if checkpoints {
            ("palisade_audit_checkpoints", "n")
        } else {
            ("palisade_audit_entries", "seq")
        };
        let (from, max) = (
            i64::try_from(from).unwrap_or(i64::MAX),
            i64::try_from(max).unwrap_or(i64::MAX),
        );
        let rows = client
            .query(
                &format!(
                    "SELECT line FROM {table} WHERE node = $1 AND {order} >= $2 ORDER BY {order} LIMIT $3"
                ),
                &[&self.node, &from, &max],
            )
            .await
            .map_err(|e| {
                self.client = None;
                format!(
                    "cannot read the {table} of node `{}` from {}: {}",
                    self.node,
                    self.place,
                    describe(&e)
                )
            })?;
        rows.iter()
            .map(|row| row.try_get::<_, String>(0).map(String::into_bytes))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("a row of {table} is not text: {}", describe(&e)))
    }
}

/// A node's rows written out by [`export`] into a fresh temporary
/// directory, removed when this is dropped.
#[derive(Debug)]
pub struct Export {
    pub paths: Paths,
    dir: PathBuf,
}

impl Export {
    /// Exports `target`'s chain; `keys` is where verifiers find the key.
    pub fn new(target: &Target, keys: PathBuf) -> Result<Self, String> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| format!("no randomness: {e}"))?;
        let dir = std::env::temp_dir().join(format!("palisade-audit-export-{}", hex::encode(id)));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let export = Self {
            paths: Paths {
                keys,
                ..Paths::in_dir(&dir)
            },
            dir,
        };
        export_into(target, &export.dir)?;
        Ok(export)
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) type Ack = oneshot::Sender<Result<Appended, AppendError>>;

pub(crate) enum Job {
    Append {
        record: CanonicalRecord,
        done: Ack,
    },
    Checkpoint {
        done: oneshot::Sender<Result<u64, AppendError>>,
    },
}

/// The PostgreSQL store's handle: the writer thread and its queue.
pub(crate) struct PgLog {
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl PgLog {
    /// Connects, checks the grants, takes the node's lock and recovers its
    /// chain; returns once the writer is ready, or why it cannot be.
    pub(crate) fn open(
        target: &Target,
        settings: Settings,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let refused = |detail: String| OpenError::Database {
            node: target.node.clone(),
            detail,
        };
        let config = parse_url(&target.url).map_err(refused)?;
        let copy = match &settings.copy {
            Some(path) => Some((path.clone(), crate::log::open_rw(path)?)),
            None => None,
        };
        let mut writer = PgWriter {
            place: place(&config),
            config,
            node: target.node.clone(),
            client: None,
            head: Head::start().map_err(refused)?,
            settings,
            key,
            clock,
            copy,
            last_checkpoint_at: Instant::now(),
            broken: None,
        };
        let (jobs, queue) = mpsc::unbounded_channel();
        let (ready, started) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("palisade-audit-pg".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(format!("cannot start a runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let opened = writer.reconnect().await;
                    let failed = opened.is_err();
                    let _ = ready.send(opened);
                    if !failed {
                        writer.run(queue).await;
                    }
                });
            })
            .map_err(|e| refused(format!("cannot start the writer: {e}")))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Self {
                jobs: Mutex::new(Some(jobs)),
                thread: Mutex::new(Some(thread)),
            }),
            Ok(Err(detail)) => {
                let _ = thread.join();
                Err(refused(detail))
            }
            Err(_) => {
                let _ = thread.join();
                Err(refused("the writer stopped as it started".into()))
            }
        }
    }

    fn send(&self, job: Job) -> Result<(), AppendError> {
        let jobs = self.jobs.lock().map_err(|_| AppendError::Closed)?;
        jobs.as_ref()
            .ok_or(AppendError::Closed)?
            .send(job)
            .map_err(|_| AppendError::Closed)
    }

    pub(crate) async fn append(&self, record: CanonicalRecord) -> Result<Appended, AppendError> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Append { record, done })?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    pub(crate) async fn checkpoint(&self) -> Result<u64, AppendError> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Checkpoint { done })?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Stops the writer after a last checkpoint.
    pub(crate) fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}

/// The writer: the node's head and the connection it writes on.
struct PgWriter {
    config: Config,
    place: String,
    node: String,
    /// `None` after a failure: reconnect and read the tail back first.
    client: Option<Client>,
    head: Head,
    settings: Settings,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    copy: Option<(PathBuf, File)>,
    last_checkpoint_at: Instant,
    /// Set when the chain in the database cannot be continued: nothing
    /// more is written.
    broken: Option<String>,
}

impl PgWriter {
    async fn run(&mut self, mut queue: mpsc::UnboundedReceiver<Job>) {
        loop {
            let due = self.last_checkpoint_at + self.settings.checkpoint_interval;
            let first = tokio::select! {
                job = queue.recv() => job,
                () = tokio::time::sleep_until(due.into()) => {
                    self.checkpoint_logged().await;
                    continue;
                }
            };
            let Some(first) = first else {
                if !self.head.pending.is_empty() {
                    self.checkpoint_logged().await;
                }
                return;
            };
            let mut appends = Vec::new();
            let mut checkpoints = Vec::new();
            let mut job = Some(first);
            while let Some(next) = job {
                match next {
                    Job::Append { record, done } => appends.push((record, done)),
                    Job::Checkpoint { done } => checkpoints.push(done),
                }
                job = if appends.len() < BATCH {
                    queue.try_recv().ok()
                } else {
                    None
                };
            }
            self.write(appends).await;
            let due = self.last_checkpoint_at.elapsed() >= self.settings.checkpoint_interval
                || self.head.pending.len() >= self.settings.checkpoint_entries;
            if checkpoints.is_empty() && !due {
                continue;
            }
            let n = self.head.checkpoint_n + 1;
            let result = self.write_checkpoint(n).await.map(|()| n);
            if let Err(e) = &result {
                tracing::error!(
                    "audit checkpoint {n} of node `{}` not written: {e}",
                    self.node
                );
            }
            for done in checkpoints {
                let _ = done.send(result.clone().map_err(AppendError::Write));
            }
        }
    }

    async fn checkpoint_logged(&mut self) {
        let n = self.head.checkpoint_n + 1;
        if let Err(e) = self.write_checkpoint(n).await {
            tracing::error!(
                "audit checkpoint {n} of node `{}` not written: {e}",
                self.node
            );
            // Try again after another interval, not at once.
            self.last_checkpoint_at = Instant::now();
        }
    }

    /// Connects (again), checks the grants, takes the node's lock and reads
    /// the chain's tail back, adopting what follows the last checkpoint and
    /// signing it; starts the chain when the node has none.
    async fn reconnect(&mut self) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        self.client = None;
        let client = connect(&self.config, &self.place).await?;
        let (place, node) = (self.place.clone(), self.node.clone());
        let failed = |what: &str, e: &tokio_postgres::Error| {
            format!("{place}: cannot {what}: {}", describe(e))
        };
        let grants = client
            .query_one(
                "SELECT current_user::TEXT,
                        to_regclass('palisade_audit_entries') IS NOT NULL
                            AND to_regclass('palisade_audit_checkpoints') IS NOT NULL",
                &[],
            )
            .await
            .map_err(|e| failed("read the audit tables' grants", &e))?;
        let role: String = grants.try_get(0).map_err(|e| failed("read the role", &e))?;
        let exist: bool = grants
            .try_get(1)
            .map_err(|e| failed("find the tables", &e))?;
        if !exist {
            return Err(format!(
                "{place} has no audit tables: create them as their owner with \
                 `palisade audit init-postgres --url OWNER_URL --gateway-role {role}`"
            ));
        }
        let too_much: Option<String> = client
            .query_one(
                "SELECT string_agg(p || ' on ' || t, ', ') FROM
                    unnest(ARRAY['palisade_audit_entries', 'palisade_audit_checkpoints']) AS t,
                    unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE']) AS p
                 WHERE has_table_privilege(t, p)",
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| failed("read the audit tables' grants", &e))?;
        if let Some(privileges) = too_much {
            return Err(format!(
                "the gateway's role `{role}` may {privileges} in {place}: the audit tables must be owned by another role, \
                 and the gateway's granted SELECT and INSERT only (`palisade audit init-postgres`)"
            ));
        }
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended('palisade-audit:' || $1, 0))",
                &[&node],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| failed("lock the node's chain", &e))?;
        if !locked {
            return Err(format!(
                "another gateway is writing the audit chain of node `{node}` in {place}: give each gateway its own `[audit] node`"
            ));
        }
        let last: Option<String> = client
            .query_opt(
                "SELECT line FROM palisade_audit_checkpoints WHERE node = $1 ORDER BY n DESC LIMIT 1",
                &[&node],
            )
            .await
            .and_then(|row| row.map(|r| r.try_get(0)).transpose())
            .map_err(|e| failed("read the last checkpoint", &e))?;
        self.client = Some(client);
        let Some(last) = last else {
            let any: bool = self
                .query_bool("SELECT EXISTS (SELECT 1 FROM palisade_audit_entries WHERE node = $1)")
                .await?;
            if any {
                return Err(self.damaged(
                    "it holds entries but no checkpoint (its checkpoints were removed)".into(),
                ));
            }
            self.head = Head::start()?;
            return self.insert_checkpoint(0).await;
        };
        self.head = Head::resume(last.as_bytes(), &self.key.verifying_key())
            .map_err(|e| self.damaged(format!("its last checkpoint is not valid: {e}")))?;
        let end = i64::try_from(self.head.seq).map_err(|e| e.to_string())?;
        let rows = self
            .client()?
            .query(
                "SELECT line FROM palisade_audit_entries WHERE node = $1 AND seq >= $2 ORDER BY seq",
                &[&node, &end],
            )
            .await
            .map_err(|e| failed("read the entries after the last checkpoint", &e))?;
        for row in rows {
            let line: String = row.try_get(0).map_err(|e| failed("read an entry", &e))?;
            if let Err(e) = self.head.adopt(line.as_bytes()) {
                return Err(self.damaged(e));
            }
        }
        if !self.head.pending.is_empty() {
            self.insert_checkpoint(self.head.checkpoint_n + 1).await?;
        }
        Ok(())
    }

    /// The chain cannot be continued: nothing more is written.
    fn damaged(&mut self, detail: String) -> String {
        let why = format!(
            "the audit chain of node `{}` in {} is damaged: {detail}; palisade will not append to it \
             (`palisade audit verify` says more)",
            self.node, self.place
        );
        self.broken = Some(why.clone());
        why
    }

    fn client(&self) -> Result<&Client, String> {
        self.client
            .as_ref()
            .ok_or_else(|| format!("not connected to {}", self.place))
    }

    async fn query_bool(&self, sql: &str) -> Result<bool, String> {
        self.client()?
            .query_one(sql, &[&self.node])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| format!("{}: {}", self.place, describe(&e)))
    }

    /// Inserts the records in one statement and answers each.
    async fn write(&mut self, appends: Vec<(CanonicalRecord, Ack)>) {
        if appends.is_empty() {
            return;
        }
        if self.client.is_none()
            && let Err(e) = self.reconnect().await
        {
            tracing::error!("audit log: {e}");
            self.client = None;
            let why = format!("audit log unavailable: {e}");
            for (_, done) in appends {
                let _ = done.send(Err(AppendError::Write(why.clone())));
            }
            return;
        }
        let mark = self.head.mark();
        let mut seqs = Vec::with_capacity(appends.len());
        let mut lines = Vec::with_capacity(appends.len());
        for (record, _) in &appends {
            let seq = self.head.seq;
            // Canonical JSON is UTF-8: the conversion never replaces a byte.
            let line = String::from_utf8_lossy(&self.head.frame(record)).into_owned();
            seqs.push(i64::try_from(seq).unwrap_or(i64::MAX));
            lines.push(line);
        }
        let inserted = match self.client() {
            Ok(client) => client
                .execute(
                    "INSERT INTO palisade_audit_entries (node, seq, line)
                     SELECT $1, s, l FROM unnest($2::BIGINT[], $3::TEXT[]) AS t(s, l)",
                    &[&self.node, &seqs, &lines],
                )
                .await
                .map_err(|e| {
                    format!(
                        "{}: cannot insert audit entries: {}",
                        self.place,
                        describe(&e)
                    )
                }),
            Err(e) => Err(e),
        };
        match inserted {
            Ok(_) => {
                for ((_, done), seq) in appends.into_iter().zip(mark.seq()..) {
                    let _ = done.send(Ok(Appended { seq }));
                }
            }
            Err(e) => {
                // Committed or not, no one can say: read the tail back
                // before the next write.
                tracing::error!("audit log: {e}");
                self.head.rewind(mark);
                self.client = None;
                for (_, done) in appends {
                    let _ = done.send(Err(AppendError::Write(e.clone())));
                }
            }
        }
    }

    /// Signs and inserts checkpoint `n` over the pending entries.
    async fn write_checkpoint(&mut self, n: u64) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        if self.client.is_none() {
            self.reconnect().await?;
            if n != self.head.checkpoint_n + 1 {
                // Reconnecting signed the tail already.
                return Ok(());
            }
        }
        self.insert_checkpoint(n).await
    }

    /// [`PgWriter::write_checkpoint`] on the connection there is.
    async fn insert_checkpoint(&mut self, n: u64) -> Result<(), String> {
        let line = self.head.checkpoint(n, &self.key, &self.clock);
        let text = String::from_utf8_lossy(&line).into_owned();
        let n_sql = i64::try_from(n).map_err(|e| e.to_string())?;
        let inserted = self
            .client()?
            .execute(
                "INSERT INTO palisade_audit_checkpoints (node, n, line) VALUES ($1, $2, $3)",
                &[&self.node, &n_sql, &text],
            )
            .await;
        if let Err(e) = inserted {
            self.client = None;
            return Err(format!(
                "{}: cannot insert audit checkpoint {n}: {}",
                self.place,
                describe(&e)
            ));
        }
        if let Some((path, copy)) = &mut self.copy {
            let mut copied = line.clone();
            copied.push(b'\n');
            if let Err(e) = copy.write_all(&copied).and_then(|()| copy.sync_data()) {
                tracing::error!(
                    "audit checkpoint {n} not copied to `{}`: {e}",
                    path.display()
                );
            }
        }
        self.head.checkpointed(n, &line);
        self.last_checkpoint_at = Instant::now();
        Ok(())
    }
}
