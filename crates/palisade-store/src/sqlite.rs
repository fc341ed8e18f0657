//! The embedded backend: one SQLite file in the data directory, in WAL mode, fsynced at every commit.
//!
//! One connection behind a mutex, used from `spawn_blocking`: SQLite
//! serializes writers anyway, and a gateway's state traffic is small.
//! Each operation is one statement, so each is atomic on its own; a second
//! process on the same file waits for the lock up to [`BUSY_TIMEOUT`].

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use crate::{
    Document, Store, StoreError, StoreFuture, check_names, decode, encode, schema, to_sql_limit,
    to_sql_version,
};

/// How long a statement waits for another process's lock before the store
/// reports itself unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    pub(crate) async fn open(path: PathBuf) -> Result<Self, StoreError> {
        let opened = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&opened))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("opening sqlite `{}`: {e}", path.display()))
            })??;
        Ok(Self {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `op` on the connection on a blocking thread; `what` names the
    /// operation in an error.
    fn run<T, F>(&self, what: &'static str, op: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        Box::pin(async move {
            let place = || format!("sqlite `{}`", self.path.display());
            let result = tokio::task::spawn_blocking(move || {
                // A panic while holding the lock cannot leave a statement half
                // applied (SQLite rolls it back), so a poisoned lock is usable.
                let conn = conn
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                op(&conn)
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {what}: {e}", place())))?;
            result.map_err(|failure| match failure {
                Failure::Sql(e) => StoreError::Unavailable(format!("{}: {what}: {e}", place())),
                Failure::Store(e) => e,
            })
        })
    }
}

/// What an operation on the blocking thread can end with.
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    let place = format!("sqlite `{}`", path.display());
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("{place}: {what}: {e}"))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| unavailable("creating its directory", &e))?;
    }
    // Created here rather than by SQLite so that it is owner-only from its
    // first byte; SQLite gives its WAL and shared-memory files the same mode.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| unavailable("creating the file", &e))?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| unavailable("opening", &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| unavailable("setting the busy timeout", &e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| unavailable("switching to WAL", &e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{place}: the journal mode is `{mode}`, not `wal`"
        )));
    }
    // FULL: a commit is on disk before the call returns, so a spent approval
    // or a revocation survives a crash or a power cut.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| unavailable("setting synchronous = FULL", &e))?;
    migrate(&mut conn, &place)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, place: &str) -> Result<(), StoreError> {
    let failed = |e: rusqlite::Error| StoreError::Unavailable(format!("{place}: migrating: {e}"));
    // IMMEDIATE takes the write lock first: two processes opening one file
    // migrate one after the other.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    tx.execute(schema::SQLITE_SCHEMA_TABLE, [])
        .map_err(failed)?;
    let found: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM palisade_schema",
            [],
            |row| row.get(0),
        )
        .map_err(failed)?;
    for step in schema::pending(found, place)? {
        tx.execute_batch(step.sqlite).map_err(failed)?;
        tx.execute(
            "INSERT INTO palisade_schema (version) VALUES (?1)",
            [step.version],
        )
        .map_err(failed)?;
    }
    tx.commit().map_err(failed)
}

impl Store for SqliteStore {
    fn insert<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        body: &'a Value,
    ) -> StoreFuture<'a, bool> {
        let prepared = check_names(collection, key).and_then(|()| encode(collection, key, body));
        let (collection, key) = (collection.to_owned(), key.to_owned());
        match prepared {
            Err(e) => Box::pin(async move { Err(e) }),
            Ok(text) => self.run("insert", move |conn| {
                let added = conn.execute(
                    "INSERT INTO palisade_documents (collection, key, version, body)
                     VALUES (?1, ?2, 1, ?3) ON CONFLICT DO NOTHING",
                    params![collection, key, text],
                )?;
                Ok(added == 1)
            }),
        }
    }

    fn get<'a>(&'a self, collection: &'a str, key: &'a str) -> StoreFuture<'a, Option<Document>> {
        if let Err(e) = check_names(collection, key) {
            return Box::pin(async move { Err(e) });
        }
        let (collection, key) = (collection.to_owned(), key.to_owned());
        self.run("get", move |conn| {
            let row: Option<(i64, String)> = conn
                .query_row(
                    "SELECT version, body FROM palisade_documents WHERE collection = ?1 AND key = ?2",
                    params![collection, key],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            match row {
                None => Ok(None),
                Some((version, body)) => Ok(Some(decode(&collection, key, version, &body)?)),
            }
        })
    }

    fn replace<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        expected: u64,
        body: &'a Value,
    ) -> StoreFuture<'a, Option<u64>> {
        let prepared = check_names(collection, key).and_then(|()| encode(collection, key, body));
        let (Some(current), Some(next)) = (
            to_sql_version(expected),
            expected.checked_add(1).and_then(to_sql_version),
        ) else {
            // No document has such a version.
            return Box::pin(async move { prepared.map(|_| None) });
        };
        let (collection, key) = (collection.to_owned(), key.to_owned());
        match prepared {
            Err(e) => Box::pin(async move { Err(e) }),
            Ok(text) => self.run("replace", move |conn| {
                let changed = conn.execute(
                    "UPDATE palisade_documents
                     SET version = ?4, body = ?3,
                         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                     WHERE collection = ?1 AND key = ?2 AND version = ?5",
                    params![collection, key, text, next, current],
                )?;
                Ok((changed == 1).then_some(expected.saturating_add(1)))
            }),
        }
    }

    fn list<'a>(
        &'a self,
        collection: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Document>> {
        if let Err(e) = check_names(collection, after.unwrap_or_default()) {
            return Box::pin(async move { Err(e) });
        }
        let (collection, after) = (collection.to_owned(), after.map(str::to_owned));
        let limit = to_sql_limit(limit);
        self.run("list", move |conn| {
            let mut statement = conn.prepare(
                "SELECT key, version, body FROM palisade_documents
                 WHERE collection = ?1 AND (?2 IS NULL OR key > ?2)
                 ORDER BY key LIMIT ?3",
            )?;
            let rows = statement.query_map(params![collection, after, limit], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (key, version, body) = row?;
                out.push(decode(&collection, key, version, &body)?);
            }
            Ok(out)
        })
    }
}
