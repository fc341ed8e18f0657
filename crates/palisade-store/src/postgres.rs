//! The shared backend: PostgreSQL, for several gateway replicas (being built).

use serde_json::Value;

use crate::{Document, Store, StoreError, StoreFuture};

pub(crate) fn check_url(url: &str) -> Result<(), StoreError> {
    url.parse::<tokio_postgres::Config>()
        .map(drop)
        .map_err(|e| {
            StoreError::Config(format!(
                "the state store `{}` is not a valid postgresql url: {e}",
                crate::mask_url(url)
            ))
        })
}

#[derive(Debug)]
pub(crate) struct PostgresStore;

impl PostgresStore {
    pub(crate) async fn open(_url: &str) -> Result<Self, StoreError> {
        Err(StoreError::Config(
            "the postgresql backend is not built yet".to_owned(),
        ))
    }
}

impl Store for PostgresStore {
    fn insert<'a>(&'a self, _: &'a str, _: &'a str, _: &'a Value) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(false) })
    }
    fn get<'a>(&'a self, _: &'a str, _: &'a str) -> StoreFuture<'a, Option<Document>> {
        Box::pin(async { Ok(None) })
    }
    fn replace<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u64,
        _: &'a Value,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async { Ok(None) })
    }
    fn list<'a>(
        &'a self,
        _: &'a str,
        _: Option<&'a str>,
        _: usize,
    ) -> StoreFuture<'a, Vec<Document>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
