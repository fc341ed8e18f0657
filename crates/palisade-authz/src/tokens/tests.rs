//! Tests of task tokens: minting, verifying, narrowing, hostile blocks, keys on disk, revocation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use palisade_store::Store;

use super::*;
use crate::authn::testing::TempSqlite;

/// A directory under the system's temp dir, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "palisade-tokens-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn authority(dir: &TestDir) -> TokenAuthority {
    TokenAuthority::open(dir.path(), TokenSettings::default(), t0()).unwrap()
}

fn grant() -> TaskGrant {
    TaskGrant {
        principal: "alice".into(),
        kind: PrincipalKind::User,
        roles: vec!["dev".into()],
        tenant: Some("acme".into()),
        tools: vec![
            Target::new("files", "read_text_file"),
            Target::new("files", "list_directory"),
        ],
        effects: Vec::new(),
        environment: Some("prod".into()),
        ttl: mins(15),
    }
}

fn tool(name: &str) -> Target {
    parse_tool(name).unwrap()
}

/// Whether `task` permits a tool call to `name` with `effect` at `at`.
fn check(task: &VerifiedTask, name: &str, effect: EffectClass, at: SystemTime, allowed: bool) {
    let got = task.permits(&tool(name), CallKind::Tool, effect, at);
    assert_eq!(got.is_ok(), allowed, "{name} {effect:?} at {at:?}: {got:?}");
}

#[test]
fn an_issued_token_verifies_and_permits_only_its_tools() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let minted = auth.issue(&grant(), t0()).unwrap();
    assert!(minted.text.starts_with("pt_"));
    let task = auth.verify(&minted.text, "prod", t0()).unwrap();
    assert_eq!(task.principal, "alice");
    assert_eq!(task.kind, PrincipalKind::User);
    assert_eq!(task.roles, vec!["dev".to_owned()]);
    assert_eq!(task.tenant.as_deref(), Some("acme"));
    assert_eq!(task.environment.as_deref(), Some("prod"));
    assert_eq!(task.revocation_ids, vec![minted.id.clone()]);
    assert_eq!(TaskScope::id(&task), minted.id);
    assert_eq!(
        task.scopes(),
        &[
            Arc::<str>::from("files/list_directory"),
            Arc::from("files/read_text_file")
        ]
    );
    let later = t0() + mins(14);
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        later,
        true,
    );
    check(
        &task,
        "files__list_directory",
        EffectClass::Read,
        later,
        true,
    );
    check(
        &task,
        "files__delete_file",
        EffectClass::Irreversible,
        later,
        false,
    );
    check(
        &task,
        "other__read_text_file",
        EffectClass::Read,
        later,
        false,
    );
    // Past its expiry, even a granted tool is refused.
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        t0() + mins(16),
        false,
    );
    let refusal = task
        .permits(
            &tool("files__delete_file"),
            CallKind::Tool,
            EffectClass::Read,
            later,
        )
        .unwrap_err();
    assert!(
        refusal.contains("does not allow `files/delete_file`"),
        "{refusal}"
    );
    // A resource read is no tool call: a token of tools alone refuses it.
    assert!(
        task.permits(
            &Target::new("files", "file:///etc/passwd"),
            CallKind::Resource,
            EffectClass::Read,
            later
        )
        .is_err()
    );
}

#[test]
fn a_token_of_effect_classes_permits_by_effect() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let mut g = grant();
    g.tools.clear();
    g.effects = vec![EffectClass::Read];
    g.environment = None;
    let minted = auth.issue(&g, t0()).unwrap();
    // No environment in the token: any gateway environment.
    let task = auth.verify(&minted.text, "staging", t0()).unwrap();
    check(&task, "files__anything", EffectClass::Read, t0(), true);
    check(&task, "files__anything", EffectClass::Write, t0(), false);
    assert!(
        task.permits(
            &Target::new("files", "file:///a"),
            CallKind::Resource,
            EffectClass::Read,
            t0()
        )
        .is_ok()
    );
}

#[test]
fn issue_refuses_bad_grants() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let mut empty = grant();
    empty.tools.clear();
    assert!(matches!(
        auth.issue(&empty, t0()),
        Err(TokenError::EmptyScope)
    ));
    let mut long = grant();
    long.ttl = Duration::from_secs(25 * 3600);
    let e = auth.issue(&long, t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a ttl of `1day 1h` is longer than the longest allowed, `1day`"
    );
    let mut zero = grant();
    zero.ttl = Duration::ZERO;
    assert!(matches!(
        auth.issue(&zero, t0()),
        Err(TokenError::TtlTooShort)
    ));
}

#[test]
fn tools_parse_at_the_first_double_underscore() {
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("files__read_text_file", Some(("files", "read_text_file"))),
        ("a__b__c", Some(("a", "b__c"))),
        ("files", None),
        ("__read", None),
        ("files__", None),
        ("a/b__c", None),
    ];
    for (input, expected) in cases {
        let got = parse_tool(input).ok();
        let expected = expected.map(|(s, n)| Target::new(s, n));
        assert_eq!(got, expected, "{input}");
    }
}

#[test]
fn attenuation_narrows_tools_and_life_offline() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let minted = auth.issue(&grant(), t0()).unwrap();
    let narrow = Attenuation {
        tools: vec![tool("files__read_text_file")],
        effects: Vec::new(),
        ttl: Some(mins(5)),
    };
    let child = attenuate(&minted.text, &narrow, t0()).unwrap();
    assert_ne!(child.id, minted.id);
    let task = auth.verify(&child.text, "prod", t0()).unwrap();
    assert_eq!(task.revocation_ids.len(), 2);
    assert_eq!(task.revocation_ids[0], minted.id);
    assert_eq!(TaskScope::id(&task), child.id);
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        t0() + mins(4),
        true,
    );
    check(
        &task,
        "files__list_directory",
        EffectClass::Read,
        t0() + mins(4),
        false,
    );
    // Its own, shorter life.
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        t0() + mins(6),
        false,
    );
    assert!(matches!(
        auth.verify(&child.text, "prod", t0() + mins(6)),
        Err(TokenError::Expired { at: None })
    ));
    // Attenuating to a tool the parent lacks grants nothing.
    let sideways = Attenuation {
        tools: vec![tool("files__delete_file")],
        ..Attenuation::default()
    };
    let child = attenuate(&minted.text, &sideways, t0()).unwrap();
    let task = auth.verify(&child.text, "prod", t0()).unwrap();
    check(&task, "files__delete_file", EffectClass::Read, t0(), false);
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        t0(),
        false,
    );
    // A longer ttl does not outlive the parent.
    let longer = Attenuation {
        ttl: Some(mins(600)),
        ..Attenuation::default()
    };
    let child = attenuate(&minted.text, &longer, t0()).unwrap();
    let task = auth.verify(&child.text, "prod", t0()).unwrap();
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        t0() + mins(16),
        false,
    );
    // Narrowing by effect class: only reads of the granted tools remain.
    let reads = Attenuation {
        effects: vec![EffectClass::Read],
        ..Attenuation::default()
    };
    let child = attenuate(&minted.text, &reads, t0()).unwrap();
    let task = auth.verify(&child.text, "prod", t0()).unwrap();
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        t0(),
        true,
    );
    check(
        &task,
        "files__read_text_file",
        EffectClass::Write,
        t0(),
        false,
    );
    check(&task, "files__delete_file", EffectClass::Read, t0(), false);
    assert!(matches!(
        attenuate(&minted.text, &Attenuation::default(), t0()),
        Err(TokenError::NothingToNarrow)
    ));
}

/// Appends a block written by a hostile holder, with biscuit's own API.
fn hostile(text: &str, code: &str) -> String {
    let token = UnverifiedBiscuit::from_base64(text.strip_prefix(PREFIX).unwrap()).unwrap();
    let block = BlockBuilder::new().code(code).unwrap();
    format!(
        "{PREFIX}{}",
        token.append(block).unwrap().to_base64().unwrap()
    )
}

#[test]
fn a_hostile_block_cannot_widen_the_token() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let minted = auth.issue(&grant(), t0()).unwrap();
    let widened = hostile(
        &minted.text,
        r#"
        tool("files/delete_file");
        grant_tool("files/delete_file");
        grant_effect("irreversible");
        principal("root");
        principal_kind("service");
        role("admin");
        tenant("other");
        env("staging");
        expires(2100-01-01T00:00:00Z);
        issued(2000-01-01T00:00:00Z);
        grant_tool($t) <- tool($t);
        grant_tool("files/move_file") <- principal($p);
        "#,
    );
    let task = auth.verify(&widened, "prod", t0()).unwrap();
    assert_eq!(task.principal, "alice");
    assert_eq!(task.kind, PrincipalKind::User);
    assert_eq!(task.roles, vec!["dev".to_owned()]);
    assert_eq!(task.tenant.as_deref(), Some("acme"));
    assert_eq!(task.environment.as_deref(), Some("prod"));
    assert_eq!(task.expires_at, t0() + mins(15));
    assert_eq!(task.scopes().len(), 2);
    check(
        &task,
        "files__delete_file",
        EffectClass::Irreversible,
        t0(),
        false,
    );
    check(&task, "files__move_file", EffectClass::Write, t0(), false);
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        t0() + mins(16),
        false,
    );
    check(
        &task,
        "files__read_text_file",
        EffectClass::Read,
        t0(),
        true,
    );
    assert!(matches!(
        auth.verify(&widened, "staging", t0()),
        Err(TokenError::WrongEnvironment { .. })
    ));
    // A block that checks something no call supplies refuses everything, by name.
    let stuck = hostile(&minted.text, r#"check if admin("yes")"#);
    let e = auth.verify(&stuck, "prod", t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"block 1 of the task token fails its check `check if admin("yes")`"#
    );
}

#[test]
fn expired_not_yet_valid_and_wrong_environment_are_refused() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let minted = auth.issue(&grant(), t0()).unwrap();
    let e = auth
        .verify(&minted.text, "prod", t0() + mins(16))
        .unwrap_err();
    assert!(matches!(e, TokenError::Expired { at: Some(_) }), "{e}");
    assert_eq!(
        e.to_string(),
        "the task token expired at 2025-06-15T15:21:40Z"
    );
    let future = auth.issue(&grant(), t0() + mins(10)).unwrap();
    assert!(matches!(
        auth.verify(&future.text, "prod", t0()),
        Err(TokenError::NotYetValid { .. })
    ));
    // Within the allowed clock skew it is fine.
    assert!(
        auth.verify(
            &future.text,
            "prod",
            t0() + mins(10) - Duration::from_secs(30)
        )
        .is_ok()
    );
    let e = auth.verify(&minted.text, "staging", t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the task token is for environment `prod`, and this gateway is `staging`"
    );
}

#[test]
fn tampered_and_foreign_tokens_are_refused() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let minted = auth.issue(&grant(), t0()).unwrap();
    let body = minted.text.strip_prefix(PREFIX).unwrap();
    let bytes = base64_decode(body);
    // Flip each byte in turn: none of the results may verify.
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        let text = format!("{PREFIX}{}", base64_encode(&changed));
        let got = auth.verify(&text, "prod", t0());
        assert!(got.is_err(), "byte {i} flipped still verifies");
    }
    // A flipped byte inside the signed authority block: the signature fails.
    let mut changed = bytes.clone();
    let at = find(&changed, b"alice").unwrap();
    changed[at] = b'b';
    let text = format!("{PREFIX}{}", base64_encode(&changed));
    assert!(matches!(
        auth.verify(&text, "prod", t0()),
        Err(TokenError::SignatureInvalid)
    ));
    // Another data directory's key 1 signed it.
    let other_dir = TestDir::new();
    let other = authority(&other_dir);
    let foreign = other.issue(&grant(), t0()).unwrap();
    assert!(matches!(
        auth.verify(&foreign.text, "prod", t0()),
        Err(TokenError::SignatureInvalid)
    ));
    // A key id this authority does not have.
    let mut rotated = authority(&other_dir);
    rotated.rotate(t0()).unwrap();
    let unknown = rotated.issue(&grant(), t0()).unwrap();
    let e = auth.verify(&unknown.text, "prod", t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the task token was signed by an unknown root key (id 2)"
    );
    // Not a task token at all.
    let e = auth.verify("pk_abc", "prod", t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed task token (prefix): a task token starts with `pt_`"
    );
    let e = auth.verify("pt_!!!", "prod", t0()).unwrap_err();
    assert!(
        matches!(
            e,
            TokenError::Malformed {
                stage: "base64",
                ..
            }
        ),
        "{e}"
    );
    let e = auth
        .verify(
            &format!("{PREFIX}{}", base64_encode(b"hello")),
            "prod",
            t0(),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            TokenError::Malformed {
                stage: "envelope",
                ..
            }
        ),
        "{e}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn the_test_base64_round_trips() {
    for input in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0xff, 0xfe, 0x00]] {
        assert_eq!(base64_decode(&base64_encode(input)), input);
    }
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_key_is_past_use() {
    let dir = TestDir::new();
    let mut auth = authority(&dir);
    assert_eq!(auth.key_ids(), vec![KeyId(1)]);
    let old = auth.issue(&grant(), t0()).unwrap();
    assert_eq!(auth.rotate(t0()).unwrap(), KeyId(2));
    let new = auth.issue(&grant(), t0()).unwrap();
    assert_eq!(inspect(&new.text).unwrap().root_key_id, Some(2));
    assert!(auth.verify(&old.text, "prod", t0()).is_ok());
    assert!(auth.verify(&new.text, "prod", t0()).is_ok());
    // From disk, in another process's view.
    let reopened = authority(&dir);
    assert_eq!(reopened.key_ids(), vec![KeyId(2), KeyId(1)]);
    assert!(reopened.verify(&old.text, "prod", t0()).is_ok());
    assert!(reopened.verify(&new.text, "prod", t0()).is_ok());
    // The retired key keeps no private half.
    let file = std::fs::read_to_string(dir.path().join("keys/task-root-00000001.json")).unwrap();
    assert!(!file.contains("private"), "{file}");
    // Once the longest ttl has passed since it retired, key 1 is dropped.
    let past = t0() + DEFAULT_MAX_TTL + mins(1);
    let reopened = TokenAuthority::open(dir.path(), TokenSettings::default(), past).unwrap();
    assert_eq!(reopened.key_ids(), vec![KeyId(2)]);
    assert!(!dir.path().join("keys/task-root-00000001.json").exists());
}

#[cfg(unix)]
#[test]
fn keys_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    let _ = authority(&dir);
    let keys = dir.path().join("keys");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let file = keys.join("task-root-00000001.json");
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&file), 0o600);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = TokenAuthority::open(dir.path(), TokenSettings::default(), t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "`{0}` may be read or written by group or others (mode 644); run `chmod 600 {0}`",
            file.display()
        )
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o750)).unwrap();
    let e = TokenAuthority::open(dir.path(), TokenSettings::default(), t0()).unwrap_err();
    assert!(e.to_string().contains("run `chmod 700"), "{e}");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(TokenAuthority::open(dir.path(), TokenSettings::default(), t0()).is_ok());
}

#[test]
fn nothing_shows_the_token() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let minted = auth.issue(&grant(), t0()).unwrap();
    let body = &minted.text[PREFIX.len()..PREFIX.len() + 24];
    let task = auth.verify(&minted.text, "prod", t0()).unwrap();
    for shown in [
        format!("{minted:?}"),
        format!("{task:?}"),
        format!("{auth:?}"),
    ] {
        assert!(!shown.contains(body), "{shown}");
    }
    let principal = task.into_principal();
    assert_eq!(principal.as_str(), "alice");
    assert_eq!(
        principal.credential(),
        &Credential::TaskToken {
            token: Arc::from(minted.id.as_str())
        }
    );
    assert_eq!(principal.task().map(|t| t.id().to_owned()), Some(minted.id));
    assert!(!format!("{principal:?}").contains(body));
}

#[test]
fn inspect_shows_the_blocks_and_whether_they_were_verified() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let minted = auth.issue(&grant(), t0()).unwrap();
    let child = attenuate(
        &minted.text,
        &Attenuation {
            tools: vec![tool("files__read_text_file")],
            ..Attenuation::default()
        },
        t0(),
    )
    .unwrap();
    let unverified = inspect(&child.text).unwrap();
    assert_eq!(unverified.signature, SignatureStatus::NotChecked);
    assert_eq!(unverified.id(), child.id);
    assert_eq!(unverified.blocks[0].revocation_id, minted.id);
    let shown = unverified.to_string();
    assert!(shown.starts_with("signature: NOT VERIFIED"), "{shown}");
    for expected in [
        r#"principal("alice");"#,
        r#"grant_tool("files/read_text_file");"#,
        "check if time($t), expires($x), $t <= $x;",
        r#"check if tool($t), {"files/read_text_file"}.contains($t);"#,
    ] {
        assert!(shown.contains(expected), "{expected} missing from {shown}");
    }
    assert_eq!(
        auth.inspect(&child.text).unwrap().signature,
        SignatureStatus::Valid
    );
    let other_dir = TestDir::new();
    let other = authority(&other_dir);
    assert!(matches!(
        other.inspect(&child.text).unwrap().signature,
        SignatureStatus::Invalid(_)
    ));
}

#[tokio::test]
async fn revoking_the_authority_id_revokes_every_attenuation() {
    let dir = TestDir::new();
    let auth = authority(&dir);
    let store = TempSqlite::new().await;
    let revocations = Revocations::new(store.clone());
    let minted = auth.issue(&grant(), t0()).unwrap();
    let child = attenuate(
        &minted.text,
        &Attenuation {
            ttl: Some(mins(5)),
            ..Attenuation::default()
        },
        t0(),
    )
    .unwrap();
    let sibling = auth.issue(&grant(), t0()).unwrap();
    let task = auth.verify(&child.text, "prod", t0()).unwrap();
    assert_eq!(
        revocations.any_revoked(&task.revocation_ids).await.unwrap(),
        None
    );
    assert!(
        revocations
            .revoke(&minted.id, t0(), "task done")
            .await
            .unwrap()
    );
    assert!(!revocations.revoke(&minted.id, t0(), "again").await.unwrap());
    assert_eq!(
        revocations.any_revoked(&task.revocation_ids).await.unwrap(),
        Some(minted.id.clone())
    );
    let record = store
        .get(REVOCATIONS_COLLECTION, &minted.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.body["reason"], "task done");
    assert_eq!(record.body["revoked_at"], "2025-06-15T15:06:40Z");
    // Another token of the same grant is untouched.
    let other = auth.verify(&sibling.text, "prod", t0()).unwrap();
    assert_eq!(
        revocations
            .any_revoked(&other.revocation_ids)
            .await
            .unwrap(),
        None
    );
    // Revoking a child leaves its parent alone.
    assert!(revocations.revoke(&child.id, t0(), "").await.unwrap());
    assert_eq!(
        revocations
            .any_revoked(std::slice::from_ref(&sibling.id))
            .await
            .unwrap(),
        None
    );
    // Neither a token nor a malformed id is taken, and the token is not echoed.
    let e = revocations
        .revoke(&minted.text, t0(), "")
        .await
        .unwrap_err();
    assert!(!e.to_string().contains(&minted.text[3..20]), "{e}");
    assert!(revocations.revoke("abc", t0(), "").await.is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    #[test]
    fn malformed_input_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), text in ".{0,200}") {
        let dir = TestDir::new();
        let auth = authority(&dir);
        let encoded = format!("{PREFIX}{}", base64_encode(&bytes));
        proptest::prop_assert!(auth.verify(&encoded, "prod", t0()).is_err());
        proptest::prop_assert!(auth.verify(&text, "prod", t0()).is_err());
        let _ = inspect(&encoded);
        let _ = attenuate(&encoded, &Attenuation { ttl: Some(mins(1)), ..Attenuation::default() }, t0());
    }

    /// A changed byte either breaks the token or changes only its protobuf
    /// spelling (a default field written as an unknown one, say): then it
    /// verifies as the very same token, with the same signatures, ids and
    /// grant. It never verifies as anything else.
    #[test]
    fn a_mutated_token_never_verifies_as_another(at in 0usize..10_000, xor in 1u8..=255) {
        let dir = TestDir::new();
        let auth = authority(&dir);
        let minted = auth.issue(&grant(), t0()).unwrap();
        let original = auth.verify(&minted.text, "prod", t0()).unwrap();
        let mut bytes = base64_decode(&minted.text[PREFIX.len()..]);
        let at = at % bytes.len();
        bytes[at] ^= xor;
        let text = format!("{PREFIX}{}", base64_encode(&bytes));
        if let Ok(task) = auth.verify(&text, "prod", t0()) {
            proptest::prop_assert_eq!(&task.revocation_ids, &original.revocation_ids);
            proptest::prop_assert_eq!(&task.principal, &original.principal);
            proptest::prop_assert_eq!(&task.roles, &original.roles);
            proptest::prop_assert_eq!(TaskScope::scopes(&task), TaskScope::scopes(&original));
            proptest::prop_assert_eq!(task.expires_at, original.expires_at);
        }
    }
}
