//! The identity provider's signing keys (a JWKS from a file or a URL), cached and refreshed on a schedule and on an unknown `kid`.
//!
//! Loaded once at start (a set that cannot be read then is an error), then
//! refreshed when it is `refresh` old and when a token names a `kid` the set
//! lacks (keys rotate), but never more than once per [`MIN_FETCH_INTERVAL`]:
//! a flood of tokens with made-up kids cannot make the gateway hammer the
//! IdP. A failed refresh keeps the last good set until it is `max_stale`
//! old; after that every token is refused (fail closed) until a fetch works.
//! Time is read from the injected clock, so tests move it instead of sleeping.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use palisade_core::Clock;

use super::{AuthnError, printable_id};

/// The least time between two fetches of the set.
pub const MIN_FETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The longest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JwksSource {
    File(PathBuf),
    Url(reqwest::Url),
}

impl JwksSource {
    /// A path, or an `https://` URL; `http://` only to a loopback address,
    /// where nobody on the network can swap the keys.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            if text.is_empty() {
                return Err("is empty".into());
            }
            return Ok(JwksSource::File(PathBuf::from(text)));
        }
        let url = reqwest::Url::parse(text).map_err(|e| format!("is not a url: {e}"))?;
        if url.scheme() == "http" && !is_loopback(url.host_str().unwrap_or("")) {
            return Err("uses `http` to a host that is not loopback; use `https`".into());
        }
        Ok(JwksSource::Url(url))
    }

    fn describe(&self) -> String {
        match self {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url(url) => url.to_string(),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One usable key: the algorithms it may verify, fixed from its `kty`,
/// `crv` and `alg` when the set was read.
#[derive(Clone)]
pub(crate) struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    keys: Arc<Vec<Key>>,
    fetched_at: Instant,
    last_attempt: Instant,
    last_error: Option<String>,
}

/// The cached set.
#[derive(Debug)]
pub(crate) struct JwksCache {
    source: JwksSource,
    /// The algorithms of the configured family: keys for others are dropped.
    allowed: &'static [Algorithm],
    refresh: Duration,
    max_stale: Duration,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    state: Mutex<State>,
    /// One fetch at a time; the others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub(crate) async fn start(
        source: JwksSource,
        allowed: &'static [Algorithm],
        refresh: Duration,
        max_stale: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // A redirect could lead anywhere, `http` included.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an http client: {e}"))?;
        let keys = fetch(&client, &source, allowed).await?;
        let now = clock.monotonic();
        Ok(Self {
            source,
            allowed,
            refresh,
            max_stale,
            clock,
            client,
            state: Mutex::new(State {
                keys: Arc::new(keys),
                fetched_at: now,
                last_attempt: now,
                last_error: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key that may verify a token signed with `alg` naming `kid`.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, AuthnError> {
        let now = self.clock.monotonic();
        let (due, attempt) = {
            let s = self.state();
            let due = now.saturating_duration_since(s.fetched_at) >= self.refresh
                && now.saturating_duration_since(s.last_attempt) >= MIN_FETCH_INTERVAL;
            (due, s.last_attempt)
        };
        if due {
            self.refetch(attempt).await;
        }
        if let Some(key) = self.find(kid, alg)? {
            return Ok(key);
        }
        // Perhaps the IdP rotated its keys: look again, if not done lately.
        let attempt = {
            let s = self.state();
            (now.saturating_duration_since(s.last_attempt) >= MIN_FETCH_INTERVAL)
                .then_some(s.last_attempt)
        };
        if let Some(attempt) = attempt {
            self.refetch(attempt).await;
            if let Some(key) = self.find(kid, alg)? {
                return Ok(key);
            }
        }
        Err(AuthnError::UnknownKey {
            id: kid.map_or_else(|| "(no kid)".to_owned(), printable_id),
        })
    }

    /// The matching key of the current set, unless the set is too old to trust.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<DecodingKey>, AuthnError> {
        let now = self.clock.monotonic();
        let s = self.state();
        let age = now.saturating_duration_since(s.fetched_at);
        if age > self.max_stale {
            return Err(AuthnError::KeysUnavailable {
                why: format!(
                    "the keys from `{}` are {}s old, more than max_stale allows; last error: {}",
                    self.source.describe(),
                    age.as_secs(),
                    s.last_error.as_deref().unwrap_or("none")
                ),
            });
        }
        let mut fit = s
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)));
        let first = fit.next();
        // Without a kid, only a set with one key for the algorithm is unambiguous.
        if kid.is_none() && fit.next().is_some() {
            return Ok(None);
        }
        Ok(first.map(|k| k.key.clone()))
    }

    /// Fetches the set again, unless another task did since `seen`.
    async fn refetch(&self, seen: Instant) {
        let _one = self.fetching.lock().await;
        if self.state().last_attempt != seen {
            return;
        }
        let result = fetch(&self.client, &self.source, self.allowed).await;
        let now = self.clock.monotonic();
        let mut s = self.state();
        s.last_attempt = now;
        match result {
            Ok(keys) => {
                s.keys = Arc::new(keys);
                s.fetched_at = now;
                s.last_error = None;
            }
            Err(why) => {
                tracing::warn!(
                    jwks = %self.source.describe(),
                    "cannot refresh the identity provider's keys, keeping the last good set: {why}"
                );
                s.last_error = Some(why);
            }
        }
    }
}

async fn fetch(
    client: &reqwest::Client,
    source: &JwksSource,
    allowed: &'static [Algorithm],
) -> Result<Vec<Key>, String> {
    let bytes = match source {
        JwksSource::File(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            if bytes.len() > MAX_JWKS_BYTES {
                return Err(format!("`{}` is larger than 1 MiB", path.display()));
            }
            bytes
        }
        JwksSource::Url(url) => get(client, url).await?,
    };
    let set: JwkSet = serde_json::from_slice(&bytes)
        .map_err(|e| format!("`{}` is not a JWK set: {e}", source.describe()))?;
    let keys = usable(&set, allowed);
    if keys.is_empty() {
        return Err(format!(
            "`{}` holds no key for the configured algorithms",
            source.describe()
        ));
    }
    Ok(keys)
}

async fn get(client: &reqwest::Client, url: &reqwest::Url) -> Result<Vec<u8>, String> {
    let mut response = client
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("cannot fetch `{url}`: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("`{url}` answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("cannot read `{url}`: {e}"))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("`{url}` answered more than 1 MiB"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The keys of `set` that verify signatures with one of `allowed`: each
/// key's algorithms follow from its type and curve (an RSA key never
/// verifies an HMAC or an EC signature), narrowed to its `alg` if it names
/// one. Symmetric keys (`oct`) are never used.
fn usable(set: &JwkSet, allowed: &[Algorithm]) -> Vec<Key> {
    let mut out = Vec::new();
    for jwk in &set.keys {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            continue;
        }
        let by_type: &[Algorithm] = if let AlgorithmParameters::RSA(_) = &jwk.algorithm {
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ]
        } else if let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm {
            if ec.curve == EllipticCurve::P256 {
                &[Algorithm::ES256]
            } else if ec.curve == EllipticCurve::P384 {
                &[Algorithm::ES384]
            } else {
                &[]
            }
        } else if let AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm {
            if okp.curve == EllipticCurve::Ed25519 {
                &[Algorithm::EdDSA]
            } else {
                &[]
            }
        } else {
            &[]
        };
        let mut algorithms: Vec<Algorithm> = by_type
            .iter()
            .copied()
            .filter(|a| allowed.contains(a))
            .collect();
        if let Some(named) = jwk.common.key_algorithm {
            match Algorithm::try_from(named) {
                Ok(named) => algorithms.retain(|a| *a == named),
                Err(_) => algorithms.clear(),
            }
        }
        if algorithms.is_empty() {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        out.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let check = |text: &str, ok: bool| {
            assert_eq!(JwksSource::parse(text).is_ok(), ok, "{text}");
        };
        check("https://idp.example/jwks", true);
        check("http://127.0.0.1:8080/jwks", true);
        check("http://127.9.9.9/jwks", true);
        check("http://[::1]:9/jwks", true);
        check("http://localhost/jwks", true);
        check("HTTP://idp.example/jwks", false);
        check("http://idp.example/jwks", false);
        check("http://10.0.0.1/jwks", false);
        check("http://127.0.0.1.example/jwks", false);
        check("https://", false);
        check("", false);
        assert_eq!(
            JwksSource::parse("keys/jwks.json").unwrap(),
            JwksSource::File("keys/jwks.json".into())
        );
    }

    #[test]
    fn keys_are_used_only_for_their_type_and_alg() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "ec", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "ec-enc", "use": "enc", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "ec-rs", "alg": "RS256", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]}))
        .unwrap();
        let hs = [Algorithm::HS256, Algorithm::ES256];
        let keys = usable(&set, &hs);
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, vec!["ec".to_owned()]);
        assert_eq!(keys.first().unwrap().algorithms, vec![Algorithm::ES256]);
        assert!(usable(&set, &[Algorithm::RS256]).is_empty());
    }
}
