//! Stores for this crate's unit tests: a real SQLite database in a fresh temporary directory, and a wrapper that makes a store fail on demand.
//!
//! Every test opens its own database, so tests run in parallel without
//! seeing each other's documents.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use palisade_store::{Backend, Document, Store, StoreError, StoreFuture};
use serde_json::Value;

/// A directory under the system's temp dir, unique to this process and
/// call, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "palisade-authz-store-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // Left over from an earlier process that had this id and was killed.
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The SQLite backend of `palisade_store` on a database of its own; the
/// directory goes when the last handle does.
#[derive(Debug)]
pub(crate) struct TempSqlite {
    // Declared before `dir` so that the connection closes before its files
    // are removed.
    store: Arc<dyn Store>,
    _dir: TempDir,
}

impl TempSqlite {
    pub(crate) async fn new() -> Arc<Self> {
        let dir = TempDir::new();
        let backend = Backend::Sqlite {
            path: dir.0.join("state.db"),
        };
        match palisade_store::open(&backend).await {
            Ok(store) => Arc::new(Self { store, _dir: dir }),
            Err(e) => panic!("opening the test store {backend}: {e}"),
        }
    }
}

impl Store for TempSqlite {
    fn insert<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        body: &'a Value,
    ) -> StoreFuture<'a, bool> {
        self.store.insert(collection, key, body)
    }

    fn get<'a>(&'a self, collection: &'a str, key: &'a str) -> StoreFuture<'a, Option<Document>> {
        self.store.get(collection, key)
    }

    fn replace<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        expected: u64,
        body: &'a Value,
    ) -> StoreFuture<'a, Option<u64>> {
        self.store.replace(collection, key, expected, body)
    }

    fn list<'a>(
        &'a self,
        collection: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Document>> {
        self.store.list(collection, after, limit)
    }
}

/// A real store that fails every operation, without reaching it, while
/// `down` is set: a database that cannot be reached, for the tests that
/// the callers fail closed. Until then it is the store it wraps.
#[derive(Debug)]
pub(crate) struct FailingStore {
    inner: Arc<dyn Store>,
    pub(crate) down: AtomicBool,
}

impl FailingStore {
    pub(crate) fn over(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            down: AtomicBool::new(false),
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

impl Store for FailingStore {
    fn insert<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        body: &'a Value,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.check()?;
            self.inner.insert(collection, key, body).await
        })
    }

    fn get<'a>(&'a self, collection: &'a str, key: &'a str) -> StoreFuture<'a, Option<Document>> {
        Box::pin(async move {
            self.check()?;
            self.inner.get(collection, key).await
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
            self.check()?;
            self.inner.replace(collection, key, expected, body).await
        })
    }

    fn list<'a>(
        &'a self,
        collection: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Document>> {
        Box::pin(async move {
            self.check()?;
            self.inner.list(collection, after, limit).await
        })
    }
}
