//! The OpenBao vault against a real OpenBao: the dev server at `PALISADE_TEST_OPENBAO`.
//!
//! `scripts/openbao start` starts a throwaway dev server (AppRole on, a
//! role `palisade` fenced to `secret/*/palisade/`) and writes its URL and
//! root token under `.state/openbao/`; `scripts/test` exports them as
//! `PALISADE_TEST_OPENBAO` and `PALISADE_TEST_OPENBAO_TOKEN`. Without
//! them these tests fail under CI (`CI` set), and elsewhere print a notice
//! and pass, so that `cargo test` works on a machine without OpenBao.
//! Each test works under a prefix of its own, so they run in parallel on
//! one server. The sealed-server test starts a second dev server of its
//! own from the same binary (`.state/openbao/venv/bin/bao`, or
//! `PALISADE_TEST_OPENBAO_BIN`) and seals it.
//!
//! The vault never lets a value out of the crate, so these tests tell
//! values apart by their lengths (each value here has its own), and check
//! what was stored through OpenBao's own API.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use palisade_core::ManualClock;
use palisade_secrets::vault::openbao::{Auth, OpenBao, OpenBaoVault};
use palisade_secrets::{SecretName, SecretValue, Vault, VaultError};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use url::Url;

// ------------------------------------------------------------------ the server

/// The dev server to test on, and its root token.
#[derive(Clone)]
struct Server {
    url: Url,
    root: String,
}

/// From `PALISADE_TEST_OPENBAO` and `PALISADE_TEST_OPENBAO_TOKEN`. Unset:
/// a failure under CI, a notice (and `None`) on a developer's machine.
fn server() -> Option<Server> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let (Some(url), Some(root)) = (
        var("PALISADE_TEST_OPENBAO"),
        var("PALISADE_TEST_OPENBAO_TOKEN"),
    ) {
        return Some(Server {
            url: Url::parse(url.trim()).unwrap(),
            root: root.trim().to_owned(),
        });
    }
    let how = "start one with `scripts/openbao start`, then \
               `export PALISADE_TEST_OPENBAO=$(scripts/openbao url) PALISADE_TEST_OPENBAO_TOKEN=$(scripts/openbao token)` \
               (scripts/test does both)";
    assert!(
        std::env::var_os("CI").is_none(),
        "PALISADE_TEST_OPENBAO(_TOKEN) is not set, and CI is: the OpenBao vault must be tested; {how}"
    );
    eprintln!("notice: OpenBao tests skipped: PALISADE_TEST_OPENBAO is not set; {how}");
    None
}

impl Server {
    /// One request with the root token, for what the tests set up or look at.
    async fn root(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}/v1/{path}", self.url.as_str().trim_end_matches('/'));
        let mut request = reqwest::Client::new()
            .request(method, &url)
            .header("X-Vault-Token", &self.root);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    }

    async fn root_ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.root(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// A handle on this server for `environment`, under `prefix`, with `auth`.
    fn vault(&self, prefix: &str, environment: &str, auth: Auth) -> OpenBaoVault {
        let mut settings = OpenBao::new(self.url.clone(), environment, auth);
        settings.prefix = prefix.to_owned();
        OpenBaoVault::new(settings).unwrap()
    }

    fn root_auth(&self) -> Auth {
        Auth::Token(secret(&self.root))
    }

    /// A role ID and a fresh secret ID of the AppRole role `palisade`.
    async fn approle(&self) -> (String, String) {
        let role = self
            .root_ok(Method::GET, "auth/approle/role/palisade/role-id", None)
            .await;
        let secret = self
            .root_ok(Method::POST, "auth/approle/role/palisade/secret-id", None)
            .await;
        (
            role["data"]["role_id"].as_str().unwrap().to_owned(),
            secret["data"]["secret_id"].as_str().unwrap().to_owned(),
        )
    }

    /// What OpenBao says of the token behind `accessor`.
    async fn token_by_accessor(&self, accessor: &str) -> (StatusCode, Value) {
        self.root(
            Method::POST,
            "auth/token/lookup-accessor",
            Some(json!({ "accessor": accessor })),
        )
        .await
    }
}

/// A prefix of its own for one test, under `palisade/` (where the AppRole
/// role's policy allows).
fn prefix(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("palisade/t{}-{n}-{test}", std::process::id())
}

fn name(n: &str) -> SecretName {
    SecretName::parse(n).unwrap()
}

fn secret(v: &str) -> SecretValue {
    SecretValue::new(v.to_owned())
}

/// `error`'s text and debug form hold none of `hidden`.
fn assert_hides(error: &VaultError, hidden: &[&str]) {
    let shown = format!("{error} {error:?}");
    for h in hidden {
        assert!(!shown.contains(h), "`{h}` shown in: {shown}");
    }
}

/// Lengths of the known values of `secret`, longest first.
async fn known_lengths(vault: &OpenBaoVault, secret: &SecretName) -> Vec<usize> {
    let mut lengths: Vec<usize> = vault
        .known()
        .await
        .unwrap()
        .values
        .iter()
        .filter(|(n, _)| n == secret)
        .map(|(_, v)| v.len())
        .collect();
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    lengths
}

// ------------------------------------------------------------------ the vault

#[tokio::test]
async fn values_are_written_read_rotated_revoked_and_listed() {
    let Some(server) = server() else {
        return;
    };
    let prefix = prefix("life");
    let vault = server.vault(&prefix, "dev", server.root_auth());
    vault.check().await.unwrap();
    let tickets = name("tickets");
    let v1 = "tk-first-0001"; // 13 bytes; each value has its own length
    let v2 = "tk-second-000002"; // 16
    let v3 = "tk-third-0000000003"; // 19
    let v4 = "tk-fourth-00000000004"; // 21
    let v5 = "tk-fifth-00000000000000005"; // 26

    let meta = vault.write(&tickets, secret(v1)).await.unwrap();
    assert_eq!((meta.version, meta.revoked), (1, false));
    assert_eq!(meta.environment, "dev");
    // Stored where the layout says, as KV v2 data `{"value": ...}`.
    let stored = server
        .root_ok(
            Method::GET,
            &format!("secret/data/{prefix}/dev/tickets"),
            None,
        )
        .await;
    assert_eq!(stored["data"]["data"], json!({ "value": v1 }));
    let entry = vault.read(&tickets).await.unwrap();
    assert_eq!((entry.meta.version, entry.value.len()), (1, v1.len()));
    let created = entry.meta.created;
    assert!(created > 1_600_000_000, "{created}");

    // A rotation is a new version; the old value stays known.
    let meta = vault.write(&tickets, secret(v2)).await.unwrap();
    assert_eq!(meta.version, 2);
    assert_eq!(meta.created, created);
    assert!(meta.updated >= created);
    let entry = vault.read(&tickets).await.unwrap();
    assert_eq!((entry.meta.version, entry.value.len()), (2, v2.len()));
    assert_eq!(known_lengths(&vault, &tickets).await, [v2.len(), v1.len()]);

    // The redactor learns the current value and two earlier ones.
    vault.write(&tickets, secret(v3)).await.unwrap();
    vault.write(&tickets, secret(v4)).await.unwrap();
    assert_eq!(
        known_lengths(&vault, &tickets).await,
        [v4.len(), v3.len(), v2.len()]
    );

    // Revoked: the read fails, the list says so, and OpenBao itself no
    // longer hands the current version out.
    let meta = vault.revoke(&tickets).await.unwrap();
    assert!(meta.revoked);
    assert_eq!(meta.version, 4);
    match vault.read(&tickets).await {
        Err(VaultError::Revoked(n)) => assert_eq!(n, tickets),
        other => panic!("a revoked secret was read: {other:?}"),
    }
    let (status, _) = server
        .root(
            Method::GET,
            &format!("secret/data/{prefix}/dev/tickets"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let listed = vault.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].version, listed[0].revoked), (4, true));
    assert_eq!(listed[0].name, tickets);
    // A soft-deleted version cannot be read back, even for the redactor.
    assert_eq!(known_lengths(&vault, &tickets).await, [v3.len(), v2.len()]);

    // A new value un-revokes.
    let meta = vault.write(&tickets, secret(v5)).await.unwrap();
    assert_eq!((meta.version, meta.revoked), (5, false));
    let entry = vault.read(&tickets).await.unwrap();
    assert_eq!(entry.value.len(), v5.len());
    assert!(!vault.list().await.unwrap()[0].revoked);

    // A value another client wrote to the same path is read as well.
    server
        .root_ok(
            Method::POST,
            &format!("secret/data/{prefix}/dev/elsewhere"),
            Some(json!({ "data": { "value": "written-by-bao-cli" } })),
        )
        .await;
    let entry = vault.read(&name("elsewhere")).await.unwrap();
    assert_eq!(entry.value.len(), "written-by-bao-cli".len());
    let mut names: Vec<String> = vault
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["elsewhere", "tickets"]);

    let describe = vault.describe();
    assert!(
        describe.contains(server.url.as_str().trim_end_matches('/')),
        "{describe}"
    );
    assert!(describe.contains(&format!("`{prefix}/dev/`")), "{describe}");
    assert!(describe.contains("mount `secret`"), "{describe}");
    assert!(!describe.contains(&server.root), "{describe}");
    assert!(!format!("{vault:?}").contains(&server.root));
}

#[tokio::test]
async fn a_missing_secret_is_not_found_and_an_empty_folder_lists_nothing() {
    let Some(server) = server() else {
        return;
    };
    let vault = server.vault(&prefix("missing"), "dev", server.root_auth());
    assert!(vault.list().await.unwrap().is_empty());
    assert!(vault.known().await.unwrap().values.is_empty());
    for result in [
        vault.read(&name("nope")).await.map(|e| e.meta),
        vault.revoke(&name("nope")).await,
    ] {
        match result {
            Err(VaultError::NotFound(n)) => assert_eq!(n.as_str(), "nope"),
            other => panic!("a missing secret: {other:?}"),
        }
    }
    // A value KV v2 holds but palisade did not write (no `value` field).
    let prefix = prefix("foreign");
    server
        .root_ok(
            Method::POST,
            &format!("secret/data/{prefix}/dev/foreign"),
            Some(json!({ "data": { "password": "not-palisade-shaped" } })),
        )
        .await;
    let vault = server.vault(&prefix, "dev", server.root_auth());
    match vault.read(&name("foreign")).await {
        Err(e @ VaultError::Corrupt(_)) => assert_hides(&e, &["not-palisade-shaped"]),
        other => panic!("a foreign value was read: {other:?}"),
    }
}

#[tokio::test]
async fn environments_are_separated_by_path_and_policy_can_fence_them() {
    let Some(server) = server() else {
        return;
    };
    let prefix = prefix("env");
    let dev = server.vault(&prefix, "dev", server.root_auth());
    let prod = server.vault(&prefix, "prod", server.root_auth());
    dev.write(&name("db"), secret("dev-database-password"))
        .await
        .unwrap();
    // The same name in prod is another secret, and prod sees none of dev's.
    assert!(matches!(
        prod.read(&name("db")).await,
        Err(VaultError::NotFound(_))
    ));
    assert!(prod.list().await.unwrap().is_empty());
    assert!(prod.known().await.unwrap().values.is_empty());
    prod.write(&name("db"), secret("prod-pw")).await.unwrap();
    assert_eq!(
        dev.read(&name("db")).await.unwrap().value.len(),
        "dev-database-password".len()
    );

    // A token whose policy allows prod only: a dev handle holding it is
    // refused by OpenBao itself, naming the path and the capability.
    let policy = format!("palisade-prod-only-{}", prefix.replace('/', "-"));
    let rules = format!(
        "path \"secret/data/{prefix}/prod/*\" {{ capabilities = [\"read\", \"create\", \"update\", \"delete\"] }}\n\
         path \"secret/metadata/{prefix}/prod/*\" {{ capabilities = [\"read\", \"list\"] }}\n"
    );
    server
        .root_ok(
            Method::PUT,
            &format!("sys/policies/acl/{policy}"),
            Some(json!({ "policy": rules })),
        )
        .await;
    let created = server
        .root_ok(
            Method::POST,
            "auth/token/create",
            Some(json!({ "policies": [policy], "ttl": "10m" })),
        )
        .await;
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let fenced_prod = server.vault(&prefix, "prod", Auth::Token(secret(&token)));
    let fenced_dev = server.vault(&prefix, "dev", Auth::Token(secret(&token)));
    fenced_prod.check().await.unwrap();
    assert_eq!(
        fenced_prod.read(&name("db")).await.unwrap().value.len(),
        "prod-pw".len()
    );
    match fenced_dev.read(&name("db")).await {
        Err(e @ VaultError::Refused(_)) => {
            let m = e.to_string();
            assert!(m.contains(&format!("{prefix}/dev/db")), "{m}");
            assert!(m.contains("policy"), "{m}");
            assert_hides(&e, &[&token, "dev-database-password"]);
        }
        other => panic!("a prod token read a dev secret: {other:?}"),
    }
    match fenced_dev.check().await {
        Err(e @ VaultError::Refused(_)) => assert_hides(&e, &[&token]),
        other => panic!("a prod token passed the dev check: {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_never_shown() {
    let Some(server) = server() else {
        return;
    };
    let wrong = "bao-wrong-token-0123456789";
    let vault = server.vault(&prefix("wrong"), "dev", Auth::Token(secret(wrong)));
    let value = "the-value-being-written-42";
    let errors = [
        vault.check().await.unwrap_err(),
        vault.read(&name("k")).await.unwrap_err(),
        vault.write(&name("k"), secret(value)).await.unwrap_err(),
        vault.list().await.unwrap_err(),
        vault.revoke(&name("k")).await.unwrap_err(),
    ];
    for error in &errors {
        assert!(matches!(error, VaultError::Refused(_)), "{error:?}");
        assert!(error.to_string().contains("HTTP 403"), "{error}");
        assert_hides(error, &[wrong, value]);
    }
    assert!(
        errors[0].to_string().contains("lookup-self"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].to_string().contains("policy grants `read`"),
        "{}",
        errors[1]
    );

    // A wrong AppRole secret ID: the login is refused, the ID never shown.
    let (role_id, _) = server.approle().await;
    let wrong_id = "00000000-1111-2222-3333-444444444444";
    let vault = server.vault(
        &prefix("wrong"),
        "dev",
        Auth::approle(role_id, secret(wrong_id)),
    );
    let error = vault.check().await.unwrap_err();
    assert!(matches!(error, VaultError::Refused(_)), "{error:?}");
    assert!(error.to_string().contains("auth/approle/login"), "{error}");
    assert_hides(&error, &[wrong_id]);
}

#[tokio::test]
async fn check_refuses_a_mount_that_is_not_kv_v2() {
    let Some(server) = server() else {
        return;
    };
    let mount = format!("kv1-{}", prefix("mount").replace('/', "-"));
    server
        .root_ok(
            Method::POST,
            &format!("sys/mounts/{mount}"),
            Some(json!({ "type": "kv", "options": { "version": "1" } })),
        )
        .await;
    let mut settings = OpenBao::new(server.url.clone(), "dev", server.root_auth());
    settings.mount = mount.clone();
    let error = OpenBaoVault::new(settings)
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not KV v2"), "{error}");
    assert!(error.to_string().contains(&mount), "{error}");

    let mut settings = OpenBao::new(server.url.clone(), "dev", server.root_auth());
    settings.mount = "no-such-mount".to_owned();
    let error = OpenBaoVault::new(settings)
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::Refused(_)), "{error:?}");
    assert!(error.to_string().contains("no-such-mount"), "{error}");
}

// ------------------------------------------------------------------ AppRole

#[tokio::test]
async fn approle_logs_in_renews_before_the_lease_ends_and_logs_in_again() {
    let Some(server) = server() else {
        return;
    };
    let (role_id, secret_id) = server.approle().await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let mut settings = OpenBao::new(
        server.url.clone(),
        "dev",
        Auth::approle(role_id, secret(&secret_id)),
    );
    settings.prefix = prefix("approle");
    let vault = OpenBaoVault::with_clock(settings, clock.clone()).unwrap();
    let k = name("k");

    assert_eq!(vault.token_accessor().await, None);
    vault.check().await.unwrap();
    let first = vault.token_accessor().await.unwrap();
    let (_, looked_up) = server.token_by_accessor(&first).await;
    // The role's tokens live an hour (scripts/openbao); not renewed yet.
    assert_eq!(looked_up["data"]["creation_ttl"], json!(3600));
    assert!(
        looked_up["data"]["last_renewal_time"].is_null(),
        "{looked_up}"
    );
    vault.write(&k, secret("approle-value-1")).await.unwrap();

    // Half the lease: the token is used as it is.
    clock.advance(Duration::from_secs(30 * 60));
    vault.read(&k).await.unwrap();
    let (_, looked_up) = server.token_by_accessor(&first).await;
    assert!(
        looked_up["data"]["last_renewal_time"].is_null(),
        "{looked_up}"
    );

    // Past two thirds: renewed, the same token (same accessor).
    clock.advance(Duration::from_secs(11 * 60));
    vault.read(&k).await.unwrap();
    assert_eq!(vault.token_accessor().await.unwrap(), first);
    let (_, looked_up) = server.token_by_accessor(&first).await;
    assert!(
        looked_up["data"]["last_renewal_time"].as_u64().is_some(),
        "{looked_up}"
    );

    // The renewal started a new lease: 41 minutes later, no new login yet...
    clock.advance(Duration::from_secs(30 * 60));
    vault.read(&k).await.unwrap();
    assert_eq!(vault.token_accessor().await.unwrap(), first);
    // ...but past the whole lease, a new login (the old token is not used).
    clock.advance(Duration::from_secs(61 * 60));
    vault.read(&k).await.unwrap();
    let second = vault.token_accessor().await.unwrap();
    assert_ne!(second, first);

    // Revoked behind palisade's back: OpenBao refuses it, palisade logs in
    // again and the call succeeds.
    server
        .root_ok(
            Method::POST,
            "auth/token/revoke-accessor",
            Some(json!({ "accessor": second })),
        )
        .await;
    assert_eq!(
        vault.read(&k).await.unwrap().value.len(),
        "approle-value-1".len()
    );
    let third = vault.token_accessor().await.unwrap();
    assert_ne!(third, second);

    // Refused by policy (outside `palisade/`): the token is still good, so
    // it is kept, not replaced by a login per denied call.
    let (role_id, secret_id) = server.approle().await;
    let mut settings = OpenBao::new(
        server.url.clone(),
        "dev",
        Auth::approle(role_id, secret(&secret_id)),
    );
    settings.prefix = "not-palisade".to_owned();
    let outside = OpenBaoVault::new(settings).unwrap();
    let error = outside.check().await.unwrap_err();
    assert!(error.to_string().contains("not-palisade/dev"), "{error}");
    let kept = outside.token_accessor().await.unwrap();
    for _ in 0..3 {
        let error = outside.read(&k).await.unwrap_err();
        assert!(matches!(error, VaultError::Refused(_)), "{error:?}");
        assert_hides(&error, &[&secret_id]);
    }
    assert_eq!(outside.token_accessor().await.unwrap(), kept);

    // A renewal that fails (the token was revoked) is a new login too.
    server
        .root_ok(
            Method::POST,
            "auth/token/revoke-accessor",
            Some(json!({ "accessor": third })),
        )
        .await;
    clock.advance(Duration::from_secs(45 * 60));
    vault.read(&k).await.unwrap();
    let fourth = vault.token_accessor().await.unwrap();
    assert_ne!(fourth, third);
    let (status, _) = server.token_by_accessor(&third).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the revoked token is gone");
}

// ------------------------------------------------------------------ unavailable

/// Needs no server: nothing listens on the port.
#[tokio::test]
async fn an_unreachable_address_is_unavailable_naming_it_not_the_token() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let token = "bao-token-never-shown-000";
    let vault =
        OpenBaoVault::new(OpenBao::new(address, "dev", Auth::Token(secret(token)))).unwrap();
    for error in [
        vault.check().await.unwrap_err(),
        vault.read(&name("k")).await.unwrap_err(),
        vault
            .write(&name("k"), secret("value-never-shown"))
            .await
            .unwrap_err(),
    ] {
        let VaultError::Unavailable {
            detail,
            retry_after,
        } = &error
        else {
            panic!("an unreachable server: {error:?}");
        };
        assert!(detail.contains(&format!("127.0.0.1:{port}")), "{detail}");
        assert!(detail.contains("cannot be reached"), "{detail}");
        assert!(retry_after.is_some());
        assert_hides(&error, &[token, "value-never-shown"]);
    }
}

/// Needs no server: something accepts the connection and never answers.
#[tokio::test]
async fn a_server_that_does_not_answer_is_unavailable_after_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let mut settings = OpenBao::new(address, "dev", Auth::Token(secret("bao-token-quiet-000")));
    settings.timeout = Duration::from_millis(300);
    let vault = OpenBaoVault::new(settings).unwrap();
    match vault.read(&name("k")).await {
        Err(
            e @ VaultError::Unavailable {
                retry_after: Some(_),
                ..
            },
        ) => {
            assert!(e.to_string().contains("did not answer"), "{e}");
            assert!(e.to_string().contains("300ms"), "{e}");
            assert_hides(&e, &["bao-token-quiet-000"]);
        }
        other => panic!("a silent server: {other:?}"),
    }
    drop(listener);
}

/// A dev server of this test's own, killed when dropped.
struct OwnServer {
    child: std::process::Child,
    server: Server,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `bao` binary `scripts/openbao` installed, if there is one.
fn bao_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PALISADE_TEST_OPENBAO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.state/openbao/venv/bin/bao")
        });
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no bao binary at `{}`, and CI is set: run `scripts/openbao start` first (scripts/test does)",
        path.display()
    );
    eprintln!(
        "notice: sealed-server test skipped: no bao binary at `{}` (scripts/openbao start installs it)",
        path.display()
    );
    None
}

async fn own_server(bao: &std::path::Path) -> OwnServer {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let root = format!("bao-own-{}-{port}", std::process::id());
    #[expect(
        clippy::disallowed_methods,
        reason = "a test starts its own throwaway OpenBao, not a tool"
    )]
    let child = std::process::Command::new(bao)
        .args([
            "server",
            "-dev",
            &format!("-dev-listen-address=127.0.0.1:{port}"),
            &format!("-dev-root-token-id={root}"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let own = OwnServer {
        child,
        server: Server {
            url: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            root,
        },
    };
    let health = format!("{}v1/sys/health", own.server.url);
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(&health).await
            && r.status() == StatusCode::OK
        {
            return own;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the test's own OpenBao did not answer on {health} within 30 s");
}

#[tokio::test]
async fn a_sealed_server_is_unavailable_and_says_it_is_sealed() {
    // The shared server is only needed to know that OpenBao is under test.
    if server().is_none() {
        return;
    }
    let Some(bao) = bao_binary() else {
        return;
    };
    let own = own_server(&bao).await;
    let vault = own.server.vault("palisade", "dev", own.server.root_auth());
    vault
        .write(&name("k"), secret("before-the-seal"))
        .await
        .unwrap();
    own.server.root_ok(Method::PUT, "sys/seal", None).await;
    for error in [
        vault.read(&name("k")).await.unwrap_err(),
        vault.check().await.unwrap_err(),
        vault.list().await.unwrap_err(),
    ] {
        let VaultError::Unavailable {
            detail,
            retry_after,
        } = &error
        else {
            panic!("a sealed server: {error:?}");
        };
        assert!(detail.contains("is sealed"), "{detail}");
        assert!(
            detail.contains(own.server.url.as_str().trim_end_matches('/')),
            "{detail}"
        );
        assert!(retry_after.is_some());
        assert_hides(&error, &[&own.server.root, "before-the-seal"]);
    }
}
