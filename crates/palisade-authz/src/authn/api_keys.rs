//! API keys: `pk_<id>_<secret>`, stored as a keyed hash, checked against the store on every request.
//!
//! The id (12 base32 characters, 60 random bits) is public: lists, audit
//! records and error messages name it. The secret (32 random bytes,
//! base64url) is shown once, when the key is created, and never stored.
//!
//! # Why HMAC-SHA256 with a pepper, not Argon2id
//!
//! A password hash like Argon2id stretches a low-entropy secret so that
//! guessing it from a stolen hash is slow. These secrets have 256 bits of
//! entropy: guessing is out of reach with or without stretching, so
//! stretching buys nothing. What it would cost: revocation must take effect
//! on the very next request, on every replica, so the key record is read and
//! the secret checked on every request; tens of milliseconds of Argon2id per
//! request would make every call slow, and would let anyone with a made-up
//! key burn the gateway's CPU. So the record holds
//! HMAC-SHA256(pepper, id ‖ secret): the pepper is 32 random bytes made once
//! per deployment and kept in the store (`meta/api-key-pepper`, so replicas
//! on one PostgreSQL share it), the id is in the MAC so a record cannot be
//! moved to another id, and the comparison is constant-time
//! ([`Mac::verify_slice`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use palisade_core::{Credential, Identity, PrincipalKind};
use palisade_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::OnceCell;

use super::AuthnError;

pub(crate) const PREFIX: &str = "pk_";
pub const COLLECTION: &str = "api-keys";
const META: &str = "meta";
const PEPPER_KEY: &str = "api-key-pepper";
const ID_LEN: usize = 12;
const SECRET_BYTES: usize = 32;
/// 32 bytes in unpadded base64.
const SECRET_LEN: usize = 43;
const TOKEN_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;
/// RFC 4648 base32, lowercase: ids are typed and read by people.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// The longest principal, role or tenant name a key may carry.
const MAX_NAME_LEN: usize = 256;
const MAX_ROLES: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// What a new key is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub principal: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    /// How long from creation the key is valid; None for no end.
    pub expires_in: Option<Duration>,
}

/// A key as lists show it: everything but the secret and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub principal: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    pub created_at: SystemTime,
    pub expires_at: Option<SystemTime>,
    pub revoked_at: Option<SystemTime>,
}

/// A key just made: the only time its full text exists.
pub struct CreatedKey {
    pub info: KeyInfo,
    token: String,
}

impl CreatedKey {
    /// `pk_<id>_<secret>`, to hand to the client once.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey")
            .field("info", &self.info)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The stored record, key = the key's id. Times are seconds since the epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    principal: String,
    kind: String,
    roles: Vec<String>,
    tenant: Option<String>,
    created_at: u64,
    expires_at: Option<u64>,
    revoked_at: Option<u64>,
    /// Hex HMAC-SHA256(pepper, id ‖ 0 ‖ secret).
    hash: String,
}

/// API keys kept in a [`Store`].
#[derive(Debug)]
pub struct ApiKeys {
    store: Arc<dyn Store>,
    /// Made once per deployment and never changed, so it may be kept.
    pepper: OnceCell<[u8; 32]>,
}

impl ApiKeys {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            pepper: OnceCell::new(),
        }
    }

    /// Makes a key for `spec`; its secret is in the answer and nowhere else.
    pub async fn create(&self, spec: KeySpec, now: SystemTime) -> Result<CreatedKey, AuthnError> {
        check_spec(&spec)?;
        let pepper = self.pepper().await?;
        let created_at = secs(now);
        let expires_at = match spec.expires_in {
            Some(ttl) => Some(created_at.checked_add(ttl.as_secs()).ok_or(
                AuthnError::Malformed {
                    why: "the expiry is too far away",
                },
            )?),
            None => None,
        };
        // 60 random bits: a collision is unlikely, and insert refuses one.
        for _ in 0..4 {
            let id = new_id()?;
            let secret: [u8; SECRET_BYTES] = random()?;
            let record = KeyRecord {
                principal: spec.principal.clone(),
                kind: spec.kind.as_str().to_owned(),
                roles: spec.roles.clone(),
                tenant: spec.tenant.clone(),
                created_at,
                expires_at,
                revoked_at: None,
                hash: hex(&mac(&pepper, &id, &secret)?.finalize().into_bytes()),
            };
            let body = to_value(&record)?;
            if self
                .store
                .insert(COLLECTION, &id, &body)
                .await
                .map_err(store)?
            {
                let token = format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
                return Ok(CreatedKey {
                    info: info(id, &record)?,
                    token,
                });
            }
        }
        Err(AuthnError::StoreUnavailable {
            why: "could not find a free key id".into(),
        })
    }

    /// Every key, in id order.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, AuthnError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list(COLLECTION, after.as_deref(), 100)
                .await
                .map_err(store)?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            after = Some(last.key.clone());
            for doc in &page {
                out.push(info(doc.key.clone(), &record(&doc.key, &doc.body)?)?);
            }
        }
    }

    /// Revokes the key `id` from `now` on. Revoking a revoked key changes
    /// nothing (the first revocation time stays).
    pub async fn revoke(&self, id: &str, now: SystemTime) -> Result<(), AuthnError> {
        // Another writer may change the record between read and write; the
        // compare-and-set notices, and we read again.
        for _ in 0..8 {
            let doc = self
                .store
                .get(COLLECTION, id)
                .await
                .map_err(store)?
                .ok_or_else(|| AuthnError::UnknownKey {
                    id: super::printable_id(id),
                })?;
            let mut rec = record(id, &doc.body)?;
            if rec.revoked_at.is_some() {
                return Ok(());
            }
            rec.revoked_at = Some(secs(now));
            let body = to_value(&rec)?;
            if self
                .store
                .replace(COLLECTION, id, doc.version, &body)
                .await
                .map_err(store)?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(AuthnError::StoreUnavailable {
            why: format!("the key `{id}` kept changing while being revoked"),
        })
    }

    /// Who holds `text`, read from the store now: a key revoked on another
    /// replica a moment ago is refused.
    pub async fn verify(&self, text: &str, now: SystemTime) -> Result<Identity, AuthnError> {
        let (id, secret) = parse(text)?;
        let doc = self
            .store
            .get(COLLECTION, id)
            .await
            .map_err(store)?
            .ok_or_else(|| AuthnError::UnknownKey { id: id.to_owned() })?;
        let rec = record(id, &doc.body)?;
        let stored = unhex(&rec.hash).ok_or_else(|| damaged(id, "its hash is not hex"))?;
        let pepper = self.pepper().await?;
        // Secret first: only its holder learns whether a key is revoked or expired.
        mac(&pepper, id, &secret)?
            .verify_slice(&stored)
            .map_err(|_| AuthnError::BadSignature)?;
        if rec.revoked_at.is_some() {
            return Err(AuthnError::Revoked { id: id.to_owned() });
        }
        if rec.expires_at.is_some_and(|end| secs(now) >= end) {
            return Err(AuthnError::Expired);
        }
        Ok(Identity {
            id: rec.principal.as_str().into(),
            kind: kind(id, &rec.kind)?,
            roles: rec.roles.iter().map(|r| r.as_str().into()).collect(),
            tenant: rec.tenant.as_deref().map(Into::into),
            credential: Credential::ApiKey { key: id.into() },
            task: None,
        })
    }

    /// The deployment's pepper, made by whichever replica needs it first.
    async fn pepper(&self) -> Result<[u8; 32], AuthnError> {
        self.pepper
            .get_or_try_init(|| async {
                if let Some(found) = self.read_pepper().await? {
                    return Ok(found);
                }
                let fresh: [u8; 32] = random()?;
                let body = json!({ "hex": hex(&fresh) });
                if self
                    .store
                    .insert(META, PEPPER_KEY, &body)
                    .await
                    .map_err(store)?
                {
                    return Ok(fresh);
                }
                // Another replica made one first: use theirs.
                self.read_pepper()
                    .await?
                    .ok_or_else(|| AuthnError::StoreUnavailable {
                        why: format!("`{META}/{PEPPER_KEY}` vanished after being written"),
                    })
            })
            .await
            .copied()
    }

    async fn read_pepper(&self) -> Result<Option<[u8; 32]>, AuthnError> {
        let Some(doc) = self.store.get(META, PEPPER_KEY).await.map_err(store)? else {
            return Ok(None);
        };
        let bytes = doc
            .body
            .get("hex")
            .and_then(Value::as_str)
            .and_then(unhex)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| AuthnError::StoreUnavailable {
                why: format!("`{META}/{PEPPER_KEY}` is not 32 bytes of hex"),
            })?;
        Ok(Some(bytes))
    }
}

/// `pk_<id>_<secret>` into its id and secret bytes; anything else is malformed.
fn parse(text: &str) -> Result<(&str, [u8; SECRET_BYTES]), AuthnError> {
    let malformed = AuthnError::Malformed {
        why: "an api key is `pk_`, a 12-character id, `_` and a 43-character secret",
    };
    // Length first: nothing longer is even looked at.
    if text.len() != TOKEN_LEN || !text.is_ascii() {
        return Err(malformed);
    }
    let rest = text.strip_prefix(PREFIX).ok_or(malformed.clone())?;
    let (id, rest) = rest.split_at_checked(ID_LEN).ok_or(malformed.clone())?;
    let secret = rest.strip_prefix('_').ok_or(malformed.clone())?;
    if !id.bytes().all(|b| ID_ALPHABET.contains(&b)) {
        return Err(malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(secret)
        .map_err(|_| malformed.clone())?;
    let secret = <[u8; SECRET_BYTES]>::try_from(bytes).map_err(|_| malformed)?;
    Ok((id, secret))
}

fn mac(pepper: &[u8; 32], id: &str, secret: &[u8]) -> Result<HmacSha256, AuthnError> {
    // HMAC takes a key of any length, so this does not fail; stay total anyway.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(pepper).map_err(|e| AuthnError::StoreUnavailable {
            why: format!("cannot key the api key hash: {e}"),
        })?;
    mac.update(id.as_bytes());
    mac.update(&[0]);
    mac.update(secret);
    Ok(mac)
}

fn check_spec(spec: &KeySpec) -> Result<(), AuthnError> {
    let name_ok =
        |s: &str| !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(|c| c.is_control());
    if !name_ok(&spec.principal) {
        return Err(AuthnError::Malformed {
            why: "the principal must be 1 to 256 characters without control characters",
        });
    }
    if spec.roles.len() > MAX_ROLES || !spec.roles.iter().all(|r| name_ok(r)) {
        return Err(AuthnError::Malformed {
            why: "roles must be at most 64 names of 1 to 256 characters",
        });
    }
    if spec.tenant.as_deref().is_some_and(|t| !name_ok(t)) {
        return Err(AuthnError::Malformed {
            why: "the tenant must be 1 to 256 characters without control characters",
        });
    }
    Ok(())
}

fn new_id() -> Result<String, AuthnError> {
    let bytes: [u8; 8] = random()?;
    let mut bits = u64::from_le_bytes(bytes);
    let mut id = String::with_capacity(ID_LEN);
    for _ in 0..ID_LEN {
        let at = usize::try_from(bits & 31).unwrap_or(0);
        id.push(char::from(ID_ALPHABET.get(at).copied().unwrap_or(b'a')));
        bits >>= 5;
    }
    Ok(id)
}

fn random<const N: usize>() -> Result<[u8; N], AuthnError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| AuthnError::StoreUnavailable {
        why: format!("the operating system's random numbers are unavailable: {e}"),
    })?;
    Ok(bytes)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn time(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

fn kind(id: &str, text: &str) -> Result<PrincipalKind, AuthnError> {
    match text {
        "user" => Ok(PrincipalKind::User),
        "service" => Ok(PrincipalKind::Service),
        _ => Err(damaged(id, "its kind is neither `user` nor `service`")),
    }
}

fn info(id: String, rec: &KeyRecord) -> Result<KeyInfo, AuthnError> {
    Ok(KeyInfo {
        kind: kind(&id, &rec.kind)?,
        id,
        principal: rec.principal.clone(),
        roles: rec.roles.clone(),
        tenant: rec.tenant.clone(),
        created_at: time(rec.created_at),
        expires_at: rec.expires_at.map(time),
        revoked_at: rec.revoked_at.map(time),
    })
}

fn record(id: &str, body: &Value) -> Result<KeyRecord, AuthnError> {
    KeyRecord::deserialize(body).map_err(|e| damaged(id, &e.to_string()))
}

fn to_value(rec: &KeyRecord) -> Result<Value, AuthnError> {
    serde_json::to_value(rec).map_err(|e| AuthnError::StoreUnavailable {
        why: format!("cannot encode a key record: {e}"),
    })
}

/// A record the store holds but this code did not write: fail closed.
fn damaged(id: &str, why: &str) -> AuthnError {
    AuthnError::StoreUnavailable {
        why: format!("the key record `{COLLECTION}/{id}` is damaged: {why}"),
    }
}

fn store(e: StoreError) -> AuthnError {
    AuthnError::StoreUnavailable { why: e.to_string() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::testing::{FailingStore, TempSqlite};
    use std::sync::atomic::Ordering;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    /// The secret part of a key's text (which may itself hold `_`).
    fn secret_of(token: &str) -> &str {
        &token[PREFIX.len() + ID_LEN + 1..]
    }

    fn spec(expires_in: Option<Duration>) -> KeySpec {
        KeySpec {
            principal: "alice".into(),
            kind: PrincipalKind::User,
            roles: vec!["dev".into(), "ops".into()],
            tenant: Some("acme".into()),
            expires_in,
        }
    }

    async fn keys() -> (Arc<TempSqlite>, ApiKeys) {
        let store = TempSqlite::new().await;
        (store.clone(), ApiKeys::new(store))
    }

    #[tokio::test]
    async fn create_then_verify() {
        let (store, keys) = keys().await;
        let created = keys.create(spec(None), t(1000)).await.unwrap();
        let token = created.token().to_owned();
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.starts_with(&format!("pk_{}_", created.info.id)));
        let who = keys.verify(&token, t(2000)).await.unwrap();
        assert_eq!(&*who.id, "alice");
        assert_eq!(who.kind, PrincipalKind::User);
        assert_eq!(who.roles, vec![Arc::from("dev"), Arc::from("ops")]);
        assert_eq!(who.tenant.as_deref(), Some("acme"));
        assert_eq!(
            who.credential,
            Credential::ApiKey {
                key: created.info.id.as_str().into()
            }
        );
        // The secret is stored nowhere and printed nowhere.
        let secret = secret_of(&token);
        let doc = store
            .get(COLLECTION, &created.info.id)
            .await
            .unwrap()
            .unwrap();
        assert!(!doc.body.to_string().contains(secret));
        assert!(!format!("{created:?}").contains(secret));
        assert_eq!(doc.body["hash"].as_str().unwrap().len(), 64);
        // A second ApiKeys on the same store (another replica) shares the pepper.
        let replica = ApiKeys::new(store.clone());
        assert_eq!(&*replica.verify(&token, t(2000)).await.unwrap().id, "alice");
    }

    #[tokio::test]
    async fn revoked_keys_are_refused_on_the_next_request() {
        let (store, keys) = keys().await;
        let created = keys.create(spec(None), t(1000)).await.unwrap();
        let replica = ApiKeys::new(store.clone());
        assert!(replica.verify(created.token(), t(1001)).await.is_ok());
        keys.revoke(&created.info.id, t(1002)).await.unwrap();
        assert_eq!(
            replica.verify(created.token(), t(1003)).await.unwrap_err(),
            AuthnError::Revoked {
                id: created.info.id.clone()
            }
        );
        // Revoking again keeps the first time.
        keys.revoke(&created.info.id, t(5000)).await.unwrap();
        let listed = keys.list().await.unwrap();
        assert_eq!(listed[0].revoked_at, Some(t(1002)));
        assert_eq!(
            keys.revoke("aaaaaaaaaaaa", t(1)).await.unwrap_err(),
            AuthnError::UnknownKey {
                id: "aaaaaaaaaaaa".into()
            }
        );
    }

    #[tokio::test]
    async fn revoke_retries_when_another_writer_won() {
        // A store on which another writer replaces the key's record once,
        // between our read and our write.
        #[derive(Debug)]
        struct Racing(Arc<TempSqlite>, std::sync::atomic::AtomicBool);
        impl Store for Racing {
            fn insert<'a>(
                &'a self,
                c: &'a str,
                k: &'a str,
                b: &'a Value,
            ) -> palisade_store::StoreFuture<'a, bool> {
                self.0.insert(c, k, b)
            }
            fn get<'a>(
                &'a self,
                c: &'a str,
                k: &'a str,
            ) -> palisade_store::StoreFuture<'a, Option<palisade_store::Document>> {
                Box::pin(async move {
                    let doc = self.0.get(c, k).await;
                    if c == COLLECTION
                        && !self.1.swap(true, Ordering::SeqCst)
                        && let Ok(Some(read)) = &doc
                    {
                        let won = self.0.replace(c, k, read.version, &read.body).await;
                        assert_eq!(won.unwrap(), Some(read.version + 1));
                    }
                    doc
                })
            }
            fn replace<'a>(
                &'a self,
                c: &'a str,
                k: &'a str,
                e: u64,
                b: &'a Value,
            ) -> palisade_store::StoreFuture<'a, Option<u64>> {
                self.0.replace(c, k, e, b)
            }
            fn list<'a>(
                &'a self,
                c: &'a str,
                a: Option<&'a str>,
                l: usize,
            ) -> palisade_store::StoreFuture<'a, Vec<palisade_store::Document>> {
                self.0.list(c, a, l)
            }
        }
        let inner = TempSqlite::new().await;
        let created = ApiKeys::new(inner.clone())
            .create(spec(None), t(1))
            .await
            .unwrap();
        let racing = ApiKeys::new(Arc::new(Racing(inner.clone(), false.into())));
        racing.revoke(&created.info.id, t(2)).await.unwrap();
        let doc = inner
            .get(COLLECTION, &created.info.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(doc.version, 3, "bumped once, then replaced once");
        assert_eq!(doc.body["revoked_at"], 2);
    }

    #[tokio::test]
    async fn expiry() {
        let (_, keys) = keys().await;
        let created = keys
            .create(spec(Some(Duration::from_secs(60))), t(1000))
            .await
            .unwrap();
        assert_eq!(created.info.expires_at, Some(t(1060)));
        assert!(keys.verify(created.token(), t(1059)).await.is_ok());
        assert_eq!(
            keys.verify(created.token(), t(1060)).await.unwrap_err(),
            AuthnError::Expired
        );
    }

    #[tokio::test]
    async fn unknown_id_and_wrong_secret() {
        let (_, keys) = keys().await;
        let created = keys.create(spec(None), t(1)).await.unwrap();
        let other = keys.create(spec(None), t(1)).await.unwrap();
        // A well-formed key that was never made.
        let unknown = format!("pk_aaaaaaaaaaaa_{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert_eq!(
            keys.verify(&unknown, t(2)).await.unwrap_err(),
            AuthnError::UnknownKey {
                id: "aaaaaaaaaaaa".into()
            }
        );
        // The same id with another secret: the other key's.
        let other_secret = secret_of(other.token());
        let forged = format!("pk_{}_{other_secret}", created.info.id);
        assert_eq!(
            keys.verify(&forged, t(2)).await.unwrap_err(),
            AuthnError::BadSignature
        );
        // One bit off.
        let mut bytes = URL_SAFE_NO_PAD.decode(secret_of(created.token())).unwrap();
        bytes[31] ^= 1;
        let flipped = format!("pk_{}_{}", created.info.id, URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(
            keys.verify(&flipped, t(2)).await.unwrap_err(),
            AuthnError::BadSignature
        );
        // A revoked key with a wrong secret says nothing about revocation.
        keys.revoke(&created.info.id, t(3)).await.unwrap();
        assert_eq!(
            keys.verify(&flipped, t(4)).await.unwrap_err(),
            AuthnError::BadSignature
        );
    }

    #[tokio::test]
    async fn malformed_keys_never_reach_the_store() {
        let store = FailingStore::over(TempSqlite::new().await);
        let keys = ApiKeys::new(store.clone());
        let good = keys.create(spec(None), t(1)).await.unwrap();
        store.down.store(true, Ordering::SeqCst);
        let id = good.info.id.clone();
        let secret = secret_of(good.token()).to_owned();
        let cases = [
            "pk_".to_owned(),
            "pk_x".to_owned(),
            format!("pk_{id}"),
            format!("pk_{id}_"),
            format!("pk_{id}_{secret}x"),
            format!("pk_{id}-{secret}"),
            format!("pk_{}_{secret}", id.to_uppercase()),
            format!("pk_{}1_{secret}", &id[..11]),
            format!("pk_{id}_{}é", &secret[..41]),
            format!("pk_{id}_{}", "=".repeat(43)),
            format!("pk_{id}_{secret}{}", "A".repeat(1 << 20)),
        ];
        for case in &cases {
            let err = keys.verify(case, t(2)).await.unwrap_err();
            assert!(
                matches!(err, AuthnError::Malformed { .. }),
                "{case:.40}: {err:?}"
            );
            assert!(!err.description().contains(&secret));
        }
        // And a well-formed one does reach it, which is down: fail closed.
        assert!(matches!(
            keys.verify(good.token(), t(2)).await.unwrap_err(),
            AuthnError::StoreUnavailable { .. }
        ));
    }

    #[tokio::test]
    async fn damaged_records_fail_closed() {
        let (store, keys) = keys().await;
        let good = keys.create(spec(None), t(1)).await.unwrap();
        let doc = store.get(COLLECTION, &good.info.id).await.unwrap().unwrap();
        let mut body = doc.body.clone();
        body["kind"] = json!("admin");
        store
            .replace(COLLECTION, &good.info.id, doc.version, &body)
            .await
            .unwrap();
        assert!(matches!(
            keys.verify(good.token(), t(2)).await.unwrap_err(),
            AuthnError::StoreUnavailable { .. }
        ));
    }

    #[tokio::test]
    async fn list_pages_through_every_key() {
        let (_, keys) = keys().await;
        let mut ids = Vec::new();
        for _ in 0..205 {
            ids.push(keys.create(spec(None), t(1)).await.unwrap().info.id);
        }
        ids.sort();
        let listed: Vec<String> = keys
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(listed, ids);
    }

    #[tokio::test]
    async fn specs_are_checked() {
        let (_, keys) = keys().await;
        let check = |s: KeySpec, ok: bool| {
            let keys = &keys;
            async move {
                assert_eq!(keys.create(s.clone(), t(1)).await.is_ok(), ok, "{s:?}");
            }
        };
        check(spec(None), true).await;
        check(
            KeySpec {
                principal: String::new(),
                ..spec(None)
            },
            false,
        )
        .await;
        check(
            KeySpec {
                principal: "a\nb".into(),
                ..spec(None)
            },
            false,
        )
        .await;
        check(
            KeySpec {
                roles: vec![String::new()],
                ..spec(None)
            },
            false,
        )
        .await;
        check(
            KeySpec {
                tenant: Some("x".repeat(257)),
                ..spec(None)
            },
            false,
        )
        .await;
        check(
            KeySpec {
                expires_in: Some(Duration::MAX),
                ..spec(None)
            },
            false,
        )
        .await;
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(
            unhex(&hex(&[0, 1, 254, 255])).unwrap(),
            vec![0, 1, 254, 255]
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
