//! Revoked task tokens, by id, in the durable store (collection `token-revocations`).
//!
//! A token is refused when any of its blocks' revocation ids is listed, so
//! revoking a token's authority id revokes every attenuation made from it.

use std::sync::Arc;
use std::time::SystemTime;

use palisade_store::{Store, StoreError};
use serde_json::json;

use super::TokenError;

/// The store collection revocations live in.
pub const COLLECTION: &str = "token-revocations";

/// The revocation list, shared by every gateway on the same store.
#[derive(Debug, Clone)]
pub struct Revocations {
    store: Arc<dyn Store>,
}

impl Revocations {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Revokes the token (and every token derived from it) with this id.
    /// False when it was revoked already (the first record stays).
    pub async fn revoke(
        &self,
        id: &str,
        now: SystemTime,
        reason: &str,
    ) -> Result<bool, TokenError> {
        check_id(id)?;
        let body = json!({
            "revoked_at": humantime::format_rfc3339_seconds(now).to_string(),
            "reason": reason,
        });
        Ok(self.store.insert(COLLECTION, id, &body).await?)
    }

    /// The first of `ids` that is revoked, if any.
    pub async fn any_revoked(&self, ids: &[String]) -> Result<Option<String>, StoreError> {
        for id in ids {
            if self.store.get(COLLECTION, id).await?.is_some() {
                return Ok(Some(id.clone()));
            }
        }
        Ok(None)
    }
}

/// A token id is a block's revocation id: an Ed25519 signature, 64 bytes in hex.
fn check_id(id: &str) -> Result<(), TokenError> {
    if id.starts_with(super::PREFIX) {
        // Never echo it: that is a token, a secret.
        return Err(TokenError::NotAnId(
            "that is a task token, not its id (`palisade token inspect` shows the id)".into(),
        ));
    }
    if id.len() != 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(TokenError::NotAnId(
            "a task token id is 128 lowercase hexadecimal digits".into(),
        ));
    }
    Ok(())
}
