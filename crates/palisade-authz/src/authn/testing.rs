//! An in-memory [`Store`] for this module's unit tests (the real backends live in palisade-store).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use palisade_store::{Document, Store, StoreError, StoreFuture};
use serde_json::Value;

#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    docs: Mutex<BTreeMap<(String, String), (u64, Value)>>,
    /// When set, every operation fails as a database that cannot be reached.
    pub(crate) down: AtomicBool,
}

impl MemoryStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }

    fn docs(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), (u64, Value)>> {
        self.docs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Overwrites a document behind the API's back (a racing writer).
    pub(crate) fn bump(&self, collection: &str, key: &str) {
        if let Some((version, _)) = self.docs().get_mut(&(collection.into(), key.into())) {
            *version += 1;
        }
    }
}

impl Store for MemoryStore {
    fn insert<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
        body: &'a Value,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.check()?;
            let mut docs = self.docs();
            let k = (collection.to_owned(), key.to_owned());
            if docs.contains_key(&k) {
                return Ok(false);
            }
            docs.insert(k, (1, body.clone()));
            Ok(true)
        })
    }

    fn get<'a>(&'a self, collection: &'a str, key: &'a str) -> StoreFuture<'a, Option<Document>> {
        Box::pin(async move {
            self.check()?;
            Ok(self
                .docs()
                .get(&(collection.to_owned(), key.to_owned()))
                .map(|(version, body)| Document {
                    key: key.to_owned(),
                    version: *version,
                    body: body.clone(),
                }))
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
            let mut docs = self.docs();
            match docs.get_mut(&(collection.to_owned(), key.to_owned())) {
                Some((version, old)) if *version == expected => {
                    *version += 1;
                    *old = body.clone();
                    Ok(Some(*version))
                }
                Some(_) | None => Ok(None),
            }
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
            Ok(self
                .docs()
                .iter()
                .filter(|((c, k), _)| c == collection && after.is_none_or(|a| k.as_str() > a))
                .take(limit)
                .map(|((_, k), (version, body))| Document {
                    key: k.clone(),
                    version: *version,
                    body: body.clone(),
                })
                .collect())
        })
    }
}
