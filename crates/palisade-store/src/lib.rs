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

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

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
