//! Quarantined content: held in the store for an operator, who may release it; released content passes when it comes again.
//!
//! A held result is keyed by what it is (its target and the hash of its
//! canonical JSON), so releasing it allows exactly that content: the
//! agent repeats the request, the same content comes back, and it passes.
//! Different content from the same call is judged afresh.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_core::{CallHead, Finding};
use palisade_store::{Document, Store, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The store collection this module owns.
pub const COLLECTION: &str = "quarantine";

/// What became of content sent to quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quarantined {
    /// Held under this id; the agent gets a placeholder.
    Held(String),
    /// An operator released this very content before.
    Released(String),
}

#[derive(Debug, Clone)]
pub struct Quarantine {
    store: Arc<dyn Store>,
}

impl Quarantine {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Holds `content` (unless released before) and says which.
    pub async fn hold(
        &self,
        head: &CallHead,
        content: &Value,
        why: &str,
        findings: &[Finding],
    ) -> Result<Quarantined, StoreError> {
        let id = id_of(&head.target.to_string(), content);
        if let Some(doc) = self.store.get(COLLECTION, &id).await? {
            if doc.body.get("released").and_then(Value::as_bool) == Some(true) {
                return Ok(Quarantined::Released(id));
            }
            return Ok(Quarantined::Held(id));
        }
        let body = json!({
            "id": id,
            "target": head.target.to_string(),
            "kind": head.kind.as_str(),
            "principal": head.principal.as_str(),
            "session": head.session.as_str(),
            "why": why,
            "findings": findings.iter().map(|f| json!({"code": f.code, "message": f.message})).collect::<Vec<_>>(),
            "content": content,
            "held_at": now(),
            "released": false,
        });
        // Another replica may have held it a moment ago: the same document.
        self.store.insert(COLLECTION, &id, &body).await?;
        Ok(Quarantined::Held(id))
    }

    /// Held content, newest last (in key order, at most `limit`).
    pub async fn list(&self, limit: usize) -> Result<Vec<Document>, StoreError> {
        self.store.list(COLLECTION, None, limit).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Document>, StoreError> {
        self.store.get(COLLECTION, id).await
    }

    /// Releases held content; `Ok(false)` when there is no such id.
    pub async fn release(&self, id: &str, by: &str) -> Result<bool, StoreError> {
        loop {
            let Some(doc) = self.store.get(COLLECTION, id).await? else {
                return Ok(false);
            };
            let mut body = doc.body;
            if let Some(map) = body.as_object_mut() {
                map.insert("released".into(), Value::Bool(true));
                map.insert("released_by".into(), Value::String(by.to_owned()));
                map.insert("released_at".into(), json!(now()));
            }
            if self
                .store
                .replace(COLLECTION, id, doc.version, &body)
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
    }
}

/// `Q-` and 16 hex digits of SHA-256 over the target and the canonical content.
pub fn id_of(target: &str, content: &Value) -> String {
    let canonical = serde_json_canonicalizer::to_string(content).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(target.as_bytes());
    hasher.update([0]);
    hasher.update(canonical.as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("Q-{}", digest.get(..16).unwrap_or(&digest))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_depends_on_the_content_not_its_key_order() {
        let a = id_of("web/fetch", &json!({"a": 1, "b": 2}));
        let b = id_of("web/fetch", &json!({"b": 2, "a": 1}));
        let c = id_of("web/fetch", &json!({"a": 1, "b": 3}));
        let d = id_of("web/other", &json!({"a": 1, "b": 2}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert!(a.starts_with("Q-") && a.len() == 18);
    }
}
