//! Durable state for the layers: versioned JSON documents in named collections, on embedded SQLite or PostgreSQL.
//!
//! One interface, [`Store`], two backends: SQLite in the data directory
//! (the embedded default) and PostgreSQL (several gateway replicas sharing
//! state). A layer that keeps state (keys, revocations, approvals; later
//! pins) owns its collections and the typed records in them; this crate
//! owns the tables, their migrations and the SQL, and knows nothing of any
//! layer. Every change is a compare-and-set on a document's version, so two
//! replicas racing to spend one approval cannot both win.
#![forbid(unsafe_code)]

mod postgres;
mod schema;
mod sqlite;
mod url;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use url::mask_url;

/// What a store operation returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One document: its key within its collection, its version (1 when
/// inserted, one more at every replace) and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub key: String,
    pub version: u64,
    pub body: Value,
}

/// Durable, shared state: versioned documents in named collections.
pub trait Store: Send + Sync + fmt::Debug {
    /// Adds a document at version 1. False, and nothing changed, when the
    /// key already exists in the collection.
    fn insert<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        body: &'a Value,
    ) -> StoreFuture<'a, bool>;

    fn get<'a>(&'a self, collection: &'a str, key: &'a str) -> StoreFuture<'a, Option<Document>>;

    /// Replaces the document if it is still at version `expected`: the new
    /// version then, `None` (and nothing changed) if another writer got
    /// there first or the key does not exist.
    fn replace<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        expected: u64,
        body: &'a Value,
    ) -> StoreFuture<'a, Option<u64>>;

    /// Documents in key order, those after `after` (exclusive), at most `limit`.
    fn list<'a>(
        &'a self,
        collection: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Document>>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation; the caller
    /// fails closed.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// A stored document is not what the store wrote.
    #[error("the state store holds a damaged document `{collection}/{key}`: {message}")]
    Corrupt {
        collection: String,
        key: String,
        message: String,
    },
    /// The store's URL or its schema is not one this build can use.
    #[error("{0}")]
    Config(String),
}

/// Where the state lives, parsed from the configuration's store URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file, created owner-only (0600) with its directory (0700).
    Sqlite { path: PathBuf },
    /// A PostgreSQL server shared by the gateway's replicas.
    Postgres { url: String },
}

impl Backend {
    /// `sqlite` (the file `state.db` in `data_dir`), `sqlite:PATH` (a
    /// relative PATH is taken within `data_dir`), or a `postgres://...` /
    /// `postgresql://...` URL.
    pub fn parse(url: &str, data_dir: &Path) -> Result<Backend, StoreError> {
        let url = url.trim();
        if url == "sqlite" {
            return Ok(Backend::Sqlite {
                path: data_dir.join("state.db"),
            });
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(StoreError::Config(
                    "the state store `sqlite:` names no file: write `sqlite` or `sqlite:PATH`"
                        .to_owned(),
                ));
            }
            return Ok(Backend::Sqlite {
                path: data_dir.join(path),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres::check_url(url)?;
            return Ok(Backend::Postgres {
                url: url.to_owned(),
            });
        }
        Err(StoreError::Config(format!(
            "unknown state store `{}`: expected `sqlite`, `sqlite:PATH` or `postgres://...`",
            mask_url(url)
        )))
    }
}

impl fmt::Debug for Backend {
    // A PostgreSQL URL may carry a password: Debug shows it masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Backend::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &mask_url(url))
                .finish(),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
            Backend::Postgres { url } => f.write_str(&mask_url(url)),
        }
    }
}

/// Opens the store, creating or migrating its schema; refuses a schema
/// newer than this build knows.
pub async fn open(backend: &Backend) -> Result<Arc<dyn Store>, StoreError> {
    match backend {
        Backend::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path.clone()).await?)),
        Backend::Postgres { url } => Ok(Arc::new(postgres::PostgresStore::open(url).await?)),
    }
}

/// The document a row holds, checked: a version of at least 1 and a body
/// that parses as JSON.
fn decode(collection: &str, key: String, version: i64, body: &str) -> Result<Document, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        collection: collection.to_owned(),
        key: key.clone(),
        message,
    };
    let version = u64::try_from(version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| corrupt(format!("version {version} is not a positive number")))?;
    let body =
        serde_json::from_str(body).map_err(|e| corrupt(format!("the body is not JSON: {e}")))?;
    Ok(Document { key, version, body })
}

/// A body as stored: JSON text, written and read back byte for byte (so
/// key order and number precision survive, which JSONB would not keep).
fn encode(collection: &str, key: &str, body: &Value) -> Result<String, StoreError> {
    serde_json::to_string(body).map_err(|e| StoreError::Corrupt {
        collection: collection.to_owned(),
        key: key.to_owned(),
        message: format!("the body cannot be written as JSON: {e}"),
    })
}

/// Names the store cannot hold: PostgreSQL text refuses NUL, so both
/// backends refuse it alike rather than differ.
fn check_names(collection: &str, key: &str) -> Result<(), StoreError> {
    for (what, name) in [("collection", collection), ("key", key)] {
        if name.contains('\0') {
            return Err(StoreError::Unavailable(format!(
                "the {what} {name:?} contains a NUL character, which the store cannot hold"
            )));
        }
    }
    Ok(())
}

/// A version for SQL's signed 64-bit integers; `None` for one no row can have.
fn to_sql_version(version: u64) -> Option<i64> {
    i64::try_from(version).ok().filter(|v| *v >= 1)
}

/// `limit` for SQL, saturating: nobody lists more than `i64::MAX` documents.
fn to_sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
