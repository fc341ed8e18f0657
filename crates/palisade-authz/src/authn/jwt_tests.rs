//! JWT verification against keys made from the PEM fixtures, served by a real loopback HTTP server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use palisade_core::{Clock, Credential, ManualClock, PrincipalKind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{
    AlgorithmFamilyName, Authenticator, AuthnError, JwtConfig, JwtSetupError, JwtVerifier,
};

const ISS: &str = "https://idp.example";
const AUD: &str = "https://gw.example/mcp";

const RSA_PEM: &[u8] = include_bytes!("../../tests/fixtures/rsa-private.pem");
const RSA_PUBLIC_PEM: &[u8] = include_bytes!("../../tests/fixtures/rsa-public.pem");
const EC_PEM: &[u8] = include_bytes!("../../tests/fixtures/ec-p256-private.pem");
const ED_PEM: &[u8] = include_bytes!("../../tests/fixtures/ed25519-private.pem");

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PEM).unwrap()
}
fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PEM).unwrap()
}
fn ed() -> EncodingKey {
    EncodingKey::from_ed_pem(ED_PEM).unwrap()
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

fn jwks(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// RSA as `rsa-1`, EC P-256 as `ec-1`, Ed25519 as `ed-1`.
fn all_keys() -> String {
    jwks(vec![
        jwk(&rsa(), Algorithm::RS256, "rsa-1"),
        jwk(&ec(), Algorithm::ES256, "ec-1"),
        jwk(&ed(), Algorithm::EdDSA, "ed-1"),
    ])
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims that pass, at `now`.
fn claims(now: SystemTime) -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "exp": secs(now) + 300,
        "iat": secs(now),
        "roles": ["dev", "ops"],
    })
}

/// A JWKS endpoint on loopback: answers every request with the current
/// status and body, and counts them.
struct JwksServer {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((200, body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        #[expect(
            clippy::disallowed_methods,
            reason = "a test server, dropped with the test's runtime"
        )]
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let (status, body) = a.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        Self { url, answer, hits }
    }

    fn set(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

struct Fixture {
    server: JwksServer,
    clock: Arc<ManualClock>,
    verifier: JwtVerifier,
}

impl Fixture {
    async fn new(family: AlgorithmFamilyName, edit: impl FnOnce(&mut JwtConfig)) -> Self {
        let server = JwksServer::start(all_keys()).await;
        let clock = Arc::new(ManualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ));
        let mut config = JwtConfig::new(ISS, AUD, server.url.clone(), family);
        edit(&mut config);
        let verifier = JwtVerifier::start(config, clock.clone()).await.unwrap();
        Self {
            server,
            clock,
            verifier,
        }
    }

    async fn rs() -> Self {
        Self::new(AlgorithmFamilyName::Rs, |_| {}).await
    }

    fn now(&self) -> SystemTime {
        self.clock.wall()
    }

    /// An RS256 token from `rsa-1` with `claims` edited.
    fn token(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = claims(self.now());
        edit(&mut c);
        sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &c)
    }

    async fn verify(&self, token: &str) -> Result<palisade_core::Identity, AuthnError> {
        self.verifier.verify(token, self.now()).await
    }

    async fn check(&self, edit: impl FnOnce(&mut Value), expected: Result<(), AuthnError>) {
        let token = self.token(edit);
        assert_eq!(self.verify(&token).await.map(|_| ()), expected);
    }
}

#[tokio::test]
async fn a_valid_token_names_its_principal() {
    let f = Fixture::rs().await;
    let who = f.verify(&f.token(|_| {})).await.unwrap();
    assert_eq!(&*who.id, "alice");
    assert_eq!(who.kind, PrincipalKind::User);
    assert_eq!(who.roles, vec![Arc::from("dev"), Arc::from("ops")]);
    assert_eq!(who.tenant, None);
    assert_eq!(who.credential, Credential::Jwt { issuer: ISS.into() });
    // Through the Authenticator, by shape.
    let auth = Authenticator {
        jwt: Some(f.verifier),
        ..Authenticator::default()
    };
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa(),
        &claims(f.clock.wall()),
    );
    let principal = auth
        .authenticate(Some(&token), f.clock.wall())
        .await
        .unwrap();
    assert_eq!(principal.as_str(), "alice");
    assert_eq!(principal.credential().method(), "jwt");
}

#[tokio::test]
async fn time_is_the_injected_clock_with_leeway() {
    let f = Fixture::rs().await;
    let now = secs(f.now());
    f.check(|c| c["exp"] = json!(now - 61), Err(AuthnError::Expired))
        .await;
    f.check(|c| c["exp"] = json!(now - 59), Ok(())).await;
    f.check(|c| c["nbf"] = json!(now + 61), Err(AuthnError::NotYetValid))
        .await;
    f.check(|c| c["nbf"] = json!(now + 59), Ok(())).await;
    f.check(
        |c| {
            c.as_object_mut().unwrap().remove("exp");
        },
        Err(AuthnError::Malformed {
            why: "the token has no `exp`",
        }),
    )
    .await;
    f.check(
        |c| c["exp"] = json!("tomorrow"),
        Err(AuthnError::Malformed {
            why: "a time claim of the token is not a number",
        }),
    )
    .await;
    // A token valid now is refused once the clock passes its end.
    let token = f.token(|_| {});
    assert!(f.verify(&token).await.is_ok());
    f.clock.advance(Duration::from_secs(300 + 61));
    assert_eq!(f.verify(&token).await.unwrap_err(), AuthnError::Expired);
}

#[tokio::test]
async fn issuer_and_audience_match_exactly() {
    let f = Fixture::rs().await;
    let cases: [(Value, Value, Result<(), AuthnError>); 9] = [
        (json!(ISS), json!(AUD), Ok(())),
        (json!(ISS), json!(["other", AUD]), Ok(())),
        (
            json!("https://evil.example"),
            json!(AUD),
            Err(AuthnError::WrongIssuer),
        ),
        (
            json!(format!("{ISS}/")),
            json!(AUD),
            Err(AuthnError::WrongIssuer),
        ),
        (Value::Null, json!(AUD), Err(AuthnError::WrongIssuer)),
        (
            json!(ISS),
            json!("https://other.example/mcp"),
            Err(AuthnError::WrongAudience),
        ),
        (
            json!(ISS),
            json!(["a", "b"]),
            Err(AuthnError::WrongAudience),
        ),
        (
            json!(ISS),
            json!(format!("{AUD}/")),
            Err(AuthnError::WrongAudience),
        ),
        (json!(ISS), Value::Null, Err(AuthnError::WrongAudience)),
    ];
    for (iss, aud, expected) in cases {
        let label = format!("{iss} {aud}");
        let token = f.token(|c| {
            c["iss"] = iss;
            c["aud"] = aud;
        });
        assert_eq!(f.verify(&token).await.map(|_| ()), expected, "{label}");
    }
}

#[tokio::test]
async fn algorithms_outside_the_family_are_refused_before_any_key() {
    let f = Fixture::rs().await;
    let body = URL_SAFE_NO_PAD.encode(claims(f.now()).to_string());
    // alg none, hand-made, with and without a signature part.
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": "rsa-1"}),
    ] {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        for token in [format!("{head}.{body}."), format!("{head}.{body}.AAAA")] {
            assert_eq!(
                f.verify(&token).await.unwrap_err(),
                AuthnError::AlgorithmNotAllowed { alg: "none".into() }
            );
        }
    }
    // The classic confusion: HS256 "signed" with the RSA public key as the secret.
    let confused = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(RSA_PUBLIC_PEM).unwrap(),
        &claims(f.now()),
    );
    assert_eq!(
        f.verify(&confused).await.unwrap_err(),
        AuthnError::AlgorithmNotAllowed {
            alg: "HS256".into()
        }
    );
    // Another family's algorithm, with a key of that family in the set.
    let es = sign(Algorithm::ES256, Some("ec-1"), &ec(), &claims(f.now()));
    assert_eq!(
        f.verify(&es).await.unwrap_err(),
        AuthnError::AlgorithmNotAllowed {
            alg: "ES256".into()
        }
    );
    // An alg that is no name at all is not echoed.
    let head = URL_SAFE_NO_PAD.encode(json!({"alg": "x\"y<script>"}).to_string());
    assert_eq!(
        f.verify(&format!("{head}.{body}.")).await.unwrap_err(),
        AuthnError::AlgorithmNotAllowed {
            alg: "(unprintable)".into()
        }
    );
    assert_eq!(f.server.hits(), 1, "no key was fetched for any of these");
}

#[tokio::test]
async fn keys_fit_the_token_by_kid_and_type() {
    let f = Fixture::new(AlgorithmFamilyName::Es, |_| {}).await;
    let ok = sign(Algorithm::ES256, Some("ec-1"), &ec(), &claims(f.now()));
    assert!(f.verify(&ok).await.is_ok());
    // No kid: the one ES256 key in the set is used.
    let no_kid = sign(Algorithm::ES256, None, &ec(), &claims(f.now()));
    assert!(f.verify(&no_kid).await.is_ok());
    // An ES256 token naming the RSA key's kid finds no key that fits.
    let wrong_kid = sign(Algorithm::ES256, Some("rsa-1"), &ec(), &claims(f.now()));
    assert_eq!(
        f.verify(&wrong_kid).await.unwrap_err(),
        AuthnError::UnknownKey { id: "rsa-1".into() }
    );
}

#[tokio::test]
async fn eddsa_tokens_verify() {
    let f = Fixture::new(AlgorithmFamilyName::EdDsa, |_| {}).await;
    let ok = sign(Algorithm::EdDSA, Some("ed-1"), &ed(), &claims(f.now()));
    assert_eq!(&*f.verify(&ok).await.unwrap().id, "alice");
}

#[tokio::test]
async fn a_changed_token_fails_its_signature() {
    let f = Fixture::rs().await;
    let token = f.token(|_| {});
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims(f.now());
    forged["sub"] = json!("admin");
    let body = URL_SAFE_NO_PAD.encode(forged.to_string());
    parts[1] = &body;
    assert_eq!(
        f.verify(&parts.join(".")).await.unwrap_err(),
        AuthnError::BadSignature
    );
    // Signed with the EC key but claiming RS256 and the RSA kid.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa-1".into());
    let es = jsonwebtoken::encode(&header, &claims(f.now()), &ec()).unwrap();
    let es_parts: Vec<&str> = es.split('.').collect();
    let rs_head = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "rsa-1"}).to_string());
    let spliced = format!("{rs_head}.{}.{}", es_parts[1], es_parts[2]);
    assert_eq!(
        f.verify(&spliced).await.unwrap_err(),
        AuthnError::BadSignature
    );
    for garbage in ["a.b.c", "..", "e30.e30.", "!!.!!.!!"] {
        assert!(
            matches!(
                f.verify(garbage).await.unwrap_err(),
                AuthnError::Malformed { .. }
            ),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn an_unknown_kid_refreshes_at_most_every_30s() {
    let f = Fixture::rs().await;
    assert_eq!(f.server.hits(), 1);
    // The fetch at start counts: no other within 30s of it.
    f.clock.advance(Duration::from_secs(31));
    let bogus = |kid: &str| sign(Algorithm::RS256, Some(kid), &rsa(), &claims(f.now()));
    assert_eq!(
        f.verify(&bogus("nope-1")).await.unwrap_err(),
        AuthnError::UnknownKey {
            id: "nope-1".into()
        }
    );
    assert_eq!(f.server.hits(), 2, "the set was fetched again");
    for i in 0..8 {
        assert!(f.verify(&bogus(&format!("nope-{i}"))).await.is_err());
    }
    assert_eq!(f.server.hits(), 2, "a flood of kids does not reach the IdP");
    // The IdP rotates: a new key appears under a new kid.
    f.server.set(
        200,
        jwks(vec![
            jwk(&rsa(), Algorithm::RS256, "rsa-1"),
            jwk(&rsa(), Algorithm::RS256, "rsa-2"),
        ]),
    );
    let rotated = bogus("rsa-2");
    assert!(
        f.verify(&rotated).await.is_err(),
        "within 30s of the last fetch"
    );
    f.clock.advance(Duration::from_secs(31));
    assert!(f.verify(&rotated).await.is_ok());
    assert_eq!(f.server.hits(), 3);
}

#[tokio::test]
async fn refresh_keeps_the_last_good_set_until_max_stale() {
    let f = Fixture::rs().await;
    let token = |f: &Fixture| f.token(|_| {});
    f.server.set(500, "down".into());
    // Past `refresh` (5m): the fetch fails, the last good set still serves.
    f.clock.advance(Duration::from_secs(301));
    assert!(f.verify(&token(&f)).await.is_ok());
    assert_eq!(f.server.hits(), 2);
    // Past `max_stale` (1h) since the last good fetch: fail closed.
    f.clock.advance(Duration::from_secs(3300));
    let err = f.verify(&token(&f)).await.unwrap_err();
    assert!(matches!(err, AuthnError::KeysUnavailable { .. }), "{err:?}");
    assert_eq!(err.status().as_u16(), 503);
    assert!(err.to_string().contains("500"), "{err}");
    // The IdP comes back: the next fetch (30s on) restores service.
    f.server.set(200, all_keys());
    f.clock.advance(Duration::from_secs(31));
    assert!(f.verify(&token(&f)).await.is_ok());
}

#[tokio::test]
async fn a_jwks_that_cannot_be_had_at_start_is_an_error() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(UNIX_EPOCH));
    let start = |jwks: String| {
        let clock = clock.clone();
        async move {
            JwtVerifier::start(
                JwtConfig::new(ISS, AUD, jwks, AlgorithmFamilyName::Rs),
                clock,
            )
            .await
        }
    };
    let server = JwksServer::start(String::new()).await;
    for (status, body) in [
        (500, all_keys()),
        (200, "not json".to_owned()),
        (200, "{\"keys\": []}".to_owned()),
        // Only keys of another family.
        (200, jwks(vec![jwk(&ec(), Algorithm::ES256, "ec-1")])),
    ] {
        server.set(status, body.clone());
        assert!(
            matches!(start(server.url.clone()).await, Err(JwtSetupError::Keys(_))),
            "{status} {body:.30}"
        );
    }
    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", closed.local_addr().unwrap());
    drop(closed);
    assert!(matches!(start(url).await, Err(JwtSetupError::Keys(_))));
    assert!(matches!(
        start("/nonexistent/jwks.json".into()).await,
        Err(JwtSetupError::Keys(_))
    ));
    assert!(matches!(
        start("http://idp.example/jwks".into()).await,
        Err(JwtSetupError::Config { field: "jwks", .. })
    ));
}

#[tokio::test]
async fn a_jwks_file_works_too() {
    let dir = std::env::temp_dir().join(format!("palisade-authn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, all_keys()).unwrap();
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ));
    let config = JwtConfig::new(
        ISS,
        AUD,
        path.display().to_string(),
        AlgorithmFamilyName::Rs,
    );
    let verifier = JwtVerifier::start(config, clock.clone()).await.unwrap();
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa(),
        &claims(clock.wall()),
    );
    assert!(verifier.verify(&token, clock.wall()).await.is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn claims_map_to_the_principal() {
    let f = Fixture::new(AlgorithmFamilyName::Rs, |c| {
        c.tenant_claim = Some("org".into());
        c.service_claim = Some("svc".into());
    })
    .await;
    let who = |edit: fn(&mut Value)| {
        let token = f.token(edit);
        let f = &f;
        async move { f.verify(&token).await }
    };
    assert_eq!(
        who(|c| c["roles"] = json!("dev  ops")).await.unwrap().roles,
        vec![Arc::from("dev"), Arc::from("ops")]
    );
    assert!(
        who(|c| c["roles"] = Value::Null)
            .await
            .unwrap()
            .roles
            .is_empty()
    );
    assert!(
        who(|c| {
            c.as_object_mut().unwrap().remove("roles");
        })
        .await
        .unwrap()
        .roles
        .is_empty()
    );
    for bad in [json!([1, 2]), json!({"a": 1}), json!(true), json!([""])] {
        let token = f.token(|c| c["roles"] = bad);
        assert!(matches!(
            f.verify(&token).await.unwrap_err(),
            AuthnError::Malformed { .. }
        ));
    }
    let one = who(|c| {
        c["org"] = json!("acme");
        c["svc"] = json!(true);
    })
    .await
    .unwrap();
    assert_eq!(one.tenant.as_deref(), Some("acme"));
    assert_eq!(one.kind, PrincipalKind::Service);
    // `"true"` is not `true`.
    assert_eq!(
        who(|c| c["svc"] = json!("true")).await.unwrap().kind,
        PrincipalKind::User
    );
    assert!(who(|c| c["org"] = json!(7)).await.is_err());
    assert!(
        who(|c| {
            c.as_object_mut().unwrap().remove("sub");
        })
        .await
        .is_err()
    );
    assert!(who(|c| c["sub"] = json!("")).await.is_err());

    // Roles by a dotted path, as Keycloak writes them.
    let k = Fixture::new(AlgorithmFamilyName::Rs, |c| {
        c.roles_claim = "realm_access.roles".into();
    })
    .await;
    let token = k.token(|c| c["realm_access"] = json!({"roles": ["admin"]}));
    assert_eq!(
        k.verify(&token).await.unwrap().roles,
        vec![Arc::from("admin")]
    );
}

#[tokio::test]
async fn required_scopes() {
    let f = Fixture::new(AlgorithmFamilyName::Rs, |c| {
        c.required_scopes = vec!["mcp".into(), "tools".into()];
    })
    .await;
    let insufficient = Err(AuthnError::InsufficientScope {
        needed: "mcp tools".into(),
    });
    f.check(|c| c["scope"] = json!("openid mcp tools"), Ok(()))
        .await;
    f.check(|c| c["scp"] = json!(["tools", "mcp"]), Ok(()))
        .await;
    f.check(|c| c["scope"] = json!("mcp"), insufficient.clone())
        .await;
    f.check(|c| c["scope"] = json!("mcptools"), insufficient.clone())
        .await;
    f.check(|_| {}, insufficient.clone()).await;
    let token = f.token(|_| {});
    let err = f.verify(&token).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 403);
    assert_eq!(err.error_code(), Some("insufficient_scope"));
}

#[test]
fn config_defaults_and_unknown_fields() {
    let config: JwtConfig = serde_json::from_value(json!({
        "issuer": ISS,
        "audience": AUD,
        "jwks": "https://idp.example/jwks",
        "algorithms": "ES",
        "leeway": "5s",
    }))
    .unwrap();
    assert_eq!(config.algorithms, AlgorithmFamilyName::Es);
    assert_eq!(config.leeway, Duration::from_secs(5));
    assert_eq!(config.refresh, Duration::from_secs(300));
    assert_eq!(config.max_stale, Duration::from_secs(3600));
    assert_eq!(config.principal_claim, "sub");
    assert_eq!(config.roles_claim, "roles");
    let refused = |extra: Value| {
        let mut doc = json!({"issuer": ISS, "audience": AUD, "jwks": "x", "algorithms": "RS"});
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        serde_json::from_value::<JwtConfig>(doc).is_err()
    };
    assert!(!refused(json!({})));
    assert!(refused(json!({"algorithms": "HS"})));
    assert!(refused(json!({"algorithms": "none"})));
    assert!(refused(json!({"leeway": "soon"})));
    assert!(refused(json!({"issuers": ISS})));
}
