//! The shared backend: PostgreSQL, for several gateway replicas sharing state.
//!
//! A fixed set of [`CONNECTIONS`] connections, each opened on first use and
//! opened again when the server closed it; an operation takes a free one
//! (or waits for one). An operation is one statement, atomic on its own: a
//! replace is `UPDATE ... WHERE version = expected`, judged by the rows it
//! changed, an insert is `INSERT ... ON CONFLICT DO NOTHING`. A statement
//! that fails is not retried: whether a write whose answer was lost took
//! effect is unknown, so the caller is told the store is unavailable and
//! fails closed. No TLS: the server is expected on loopback or a private
//! network (a `sslmode` other than `disable`/`prefer` fails to connect).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::{
    Document, Store, StoreError, StoreFuture, check_names, decode, encode, mask_url, schema,
    to_sql_limit, to_sql_version,
};

/// Connections per store: a few, since each statement is short.
const CONNECTIONS: usize = 4;

/// How long a connection attempt may take before the store is unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The transaction-level advisory lock held while migrating, so that two
/// gateways opening one database migrate one after the other
/// (the bytes of "palisade").
const MIGRATION_LOCK: i64 = 0x7061_6c69_7361_6465;

pub(crate) fn check_url(url: &str) -> Result<Config, StoreError> {
    let config = url.parse::<Config>().map_err(|e| {
        StoreError::Config(format!(
            "the state store `{}` is not a valid postgresql url: {e}",
            mask_url(url)
        ))
    })?;
    if config.get_hosts().is_empty() {
        return Err(StoreError::Config(format!(
            "the state store `{}` names no host",
            mask_url(url)
        )));
    }
    Ok(config)
}

/// Where the server is, for messages: hosts and ports, and the database,
/// never the user's password.
fn place(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            // One port for all hosts, one per host, or the default.
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("postgresql at {} (database `{database}`)", hosts.join(","))
}

/// An error with what caused it: tokio-postgres's own text is only "db
/// error" or "error connecting to server", the server's message and the
/// I/O error are its sources. One line, as it goes into an error message.
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

pub(crate) struct PostgresStore {
    config: Config,
    place: String,
    slots: Box<[Mutex<Option<Client>>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for PostgresStore {
    // Not the config: it holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("place", &self.place)
            .field("connections", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let mut config = check_url(url)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let place = place(&config);
        let store = Self {
            config,
            place,
            slots: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to {}: {}",
                self.place,
                describe(&e)
            ))
        })?;
        // The connection task ends when its client is dropped (or the server
        // goes away, which the client then reports as closed): nothing to
        // drain at shutdown, and its error reaches the next operation.
        #[expect(
            clippy::disallowed_methods,
            reason = "a connection's I/O task, ended by dropping its client"
        )]
        tokio::spawn(async move {
            let _ended = connection.await;
        });
        Ok(client)
    }

    /// A connection of the set, open: a free one, else the next in turn once free.
    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let count = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count.max(1);
        let free = self
            .slots
            .iter()
            .cycle()
            .skip(start)
            .take(count)
            .find_map(|slot| slot.try_lock().ok());
        let mut guard = match free {
            Some(guard) => guard,
            None => match self.slots.get(start) {
                Some(slot) => slot.lock().await,
                None => return Err(self.unavailable("connecting", "no connection slots")),
            },
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.connect().await?);
        }
        Ok(guard)
    }

    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("{}: {what}: {e}", self.place))
    }

    fn failed(&self, what: &str, e: &tokio_postgres::Error) -> StoreError {
        self.unavailable(what, describe(e))
    }

    /// Runs one statement's worth of work on a connection; a connection the
    /// failure closed is dropped, to be opened again on next use.
    async fn with_client<T>(
        &self,
        what: &str,
        op: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut guard = self.client().await?;
        let Some(client) = guard.as_ref() else {
            return Err(self.unavailable(what, "no connection"));
        };
        match op(client).await {
            Ok(value) => Ok(value),
            Err(e) => {
                if e.is_closed() || client.is_closed() {
                    *guard = None;
                }
                Err(self.failed(what, &e))
            }
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let Some(client) = guard.as_mut() else {
            return Err(self.unavailable("migrating", "no connection"));
        };
        let failed = |e: tokio_postgres::Error| self.failed("migrating", &e);
        let tx = client.transaction().await.map_err(failed)?;
        // Before anything else, even creating the schema table: a concurrent
        // CREATE TABLE IF NOT EXISTS can fail on PostgreSQL's catalog.
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await
            .map_err(failed)?;
        tx.batch_execute(schema::POSTGRES_SCHEMA_TABLE)
            .await
            .map_err(failed)?;
        let found: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM palisade_schema",
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(failed)?;
        for step in schema::pending(found, &self.place)? {
            tx.batch_execute(step.postgres).await.map_err(failed)?;
            tx.execute(
                "INSERT INTO palisade_schema (version) VALUES ($1)",
                &[&step.version],
            )
            .await
            .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }
}

impl Store for PostgresStore {
    fn insert<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        body: &'a Value,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            check_names(collection, key)?;
            let text = encode(collection, key, body)?;
            let added = self
                .with_client("insert", async |client| {
                    client
                        .execute(
                            "INSERT INTO palisade_documents (collection, key, version, body)
                             VALUES ($1, $2, 1, $3) ON CONFLICT DO NOTHING",
                            &[&collection, &key, &text],
                        )
                        .await
                })
                .await?;
            Ok(added == 1)
        })
    }

    fn get<'a>(&'a self, collection: &'a str, key: &'a str) -> StoreFuture<'a, Option<Document>> {
        Box::pin(async move {
            check_names(collection, key)?;
            let row = self
                .with_client("get", async |client| {
                    let row = client
                        .query_opt(
                            "SELECT version, body FROM palisade_documents
                             WHERE collection = $1 AND key = $2",
                            &[&collection, &key],
                        )
                        .await?;
                    row.map(|r| Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
                        .transpose()
                })
                .await?;
            match row {
                None => Ok(None),
                Some((version, body)) => {
                    let body: String = body;
                    Ok(Some(decode(collection, key.to_owned(), version, &body)?))
                }
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
        Box::pin(async move {
            check_names(collection, key)?;
            let text = encode(collection, key, body)?;
            let (Some(current), Some(next)) = (
                to_sql_version(expected),
                expected.checked_add(1).and_then(to_sql_version),
            ) else {
                // No document has such a version.
                return Ok(None);
            };
            let changed = self
                .with_client("replace", async |client| {
                    client
                        .execute(
                            "UPDATE palisade_documents
                             SET version = $4, body = $3, updated_at = now()
                             WHERE collection = $1 AND key = $2 AND version = $5",
                            &[&collection, &key, &text, &next, &current],
                        )
                        .await
                })
                .await?;
            Ok((changed == 1).then_some(expected.saturating_add(1)))
        })
    }

    fn list<'a>(
        &'a self,
        collection: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Document>> {
        Box::pin(async move {
            check_names(collection, after.unwrap_or_default())?;
            let limit = to_sql_limit(limit);
            let rows = self
                .with_client("list", async |client| {
                    let rows = client
                        .query(
                            "SELECT key, version, body FROM palisade_documents
                             WHERE collection = $1 AND ($2::TEXT IS NULL OR key > $2::TEXT)
                             ORDER BY key LIMIT $3",
                            &[&collection, &after, &limit],
                        )
                        .await?;
                    rows.iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                        .collect::<Result<Vec<(String, i64, String)>, tokio_postgres::Error>>()
                })
                .await?;
            rows.into_iter()
                .map(|(key, version, body)| decode(collection, key, version, &body))
                .collect()
        })
    }
}
