//! Every rule's allow and deny cases, on fixtures generated here from the published formats.

use super::checks::{base62, crc32};
use super::rules::RULES;
use super::{Detector, kinds};
use base64::Engine as _;
use std::sync::LazyLock;

static DETECTOR: LazyLock<Detector> = LazyLock::new(Detector::new);

const ALNUM: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &str = "0123456789abcdef";
const UPPER_DIGITS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URLSAFE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Deterministic random strings (xorshift), so that fixtures are generated,
/// never copied, and every run sees the same ones.
fn random(alphabet: &str, len: usize, seed: u64) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chars[(state % chars.len() as u64) as usize]
        })
        .collect()
}

fn github_token(prefix: &str, seed: u64) -> String {
    let body = random(ALNUM, 30, seed);
    let checksum = String::from_utf8(base62(crc32(body.as_bytes()), 6)).unwrap();
    format!("{prefix}{body}{checksum}")
}

fn jwt(header: &str, seed: u64) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = format!(
        r#"{{"sub":"{}","iat":1700000000}}"#,
        random(ALNUM, 12, seed)
    );
    format!(
        "{}.{}.{}",
        engine.encode(header),
        engine.encode(payload),
        random(URLSAFE, 43, seed + 1)
    )
}

fn pem(label: &str, seed: u64) -> String {
    let lines: Vec<String> = (0..12).map(|i| random(B64, 64, seed + i)).collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----",
        lines.join("\n")
    )
}

/// `input` yields a detection of `expected` (and, for `None`, nothing at all).
#[track_caller]
fn check(input: &str, expected: Option<&str>) {
    let found = DETECTOR.find(input);
    match expected {
        Some(kind) => assert!(
            found.iter().any(|d| d.kind == kind),
            "expected a `{kind}` detection, got {:?} (input of {} bytes)",
            found.iter().map(|d| d.kind).collect::<Vec<_>>(),
            input.len()
        ),
        None => assert!(
            found.is_empty(),
            "expected nothing, got {:?}",
            found.iter().map(|d| d.kind).collect::<Vec<_>>()
        ),
    }
}

/// `input` yields exactly one detection, of `kind`, covering `secret`.
#[track_caller]
fn check_span(input: &str, secret: &str, kind: &str) {
    let found = DETECTOR.find(input);
    let at = input.find(secret).unwrap();
    assert_eq!(
        found.len(),
        1,
        "{:?}",
        found.iter().map(|d| d.kind).collect::<Vec<_>>()
    );
    assert_eq!(
        (found[0].start, found[0].end, found[0].kind),
        (at, at + secret.len(), kind)
    );
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(base62(61, 6), b"00000z");
    assert_eq!(base62(62, 6), b"000010");
}

#[test]
fn compiles_every_rule_and_builds_the_prefilter() {
    assert_eq!(DETECTOR.rule_count(), RULES.len());
    assert!(DETECTOR.has_prefilter());
}

#[test]
fn kinds_lists_every_rule_kind_once() {
    let listed = kinds();
    for rule in RULES {
        assert!(
            listed.contains(&rule.kind),
            "`{}` missing from kinds()",
            rule.kind
        );
    }
    assert!(listed.contains(&"generic-password"));
    let mut sorted = listed.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len());
}

#[test]
fn detector_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Detector>();
}

#[test]
fn aws() {
    let id = format!("AKIA{}", random(UPPER_DIGITS, 16, 1));
    check_span(
        &format!("aws_access_key_id = {id}"),
        &id,
        "aws-access-key-id",
    );
    check(
        &format!("ASIA{}", random(UPPER_DIGITS, 16, 2)),
        Some("aws-access-key-id"),
    );
    check("AKIAIOSFODNN7EXAMPLE", None);
    check(&format!("AKIA{}", random(UPPER_DIGITS, 15, 3)), None);
    check(&format!("XAKIA{}", random(UPPER_DIGITS, 16, 4)), None);
    let secret = random(B64, 40, 5);
    check_span(
        &format!("aws_secret_access_key = {secret}"),
        &secret,
        "aws-secret-access-key",
    );
    check(&format!("{id},{secret}\n"), Some("aws-secret-access-key"));
    check(&format!("checksum = {}", random(B64, 40, 6)), None);
    check(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
    );
    check(
        &format!("IQoJb3JpZ2luX2Vj{}", random(B64, 200, 7)),
        Some("aws-session-token"),
    );
    check(
        &format!("ABSK{}", random(B64, 120, 8)),
        Some("aws-bedrock-api-key"),
    );
}

#[test]
fn google() {
    check(
        &format!("key=AIza{}", random(URLSAFE, 35, 10)),
        Some("gcp-api-key"),
    );
    check(&format!("AIza{}", random(URLSAFE, 30, 11)), None);
    check(
        &format!("GOCSPX-{}", random(URLSAFE, 28, 12)),
        Some("google-oauth-client-secret"),
    );
    check("GOCSPX-xxxxxxxxxxxxxxxxxxxxxxxxxxxx", None);
    check(
        &format!("ya29.{}", random(URLSAFE, 60, 13)),
        Some("google-oauth-token"),
    );
    let key = pem("PRIVATE KEY", 14).replace('\n', "\\n");
    check(
        &format!(r#"{{"type": "service_account", "private_key": "{key}\n"}}"#),
        Some("private-key"),
    );
}

#[test]
fn azure() {
    let key = format!("{}==", random(B64, 86, 20));
    check_span(
        &format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=core.windows.net"
        ),
        &key,
        "azure-storage-key",
    );
    check("AccountKey=<your-account-key>", None);
    let client = format!("{}8Q~{}", random(ALNUM, 3, 21), random(URLSAFE, 34, 22));
    check_span(
        &format!("client secret: {client}"),
        &client,
        "azure-ad-client-secret",
    );
    check(
        &format!("{}8Q-{}", random(ALNUM, 3, 21), random(URLSAFE, 34, 22)),
        None,
    );
    let sak = format!("{}=", random(B64, 43, 23));
    check_span(
        &format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey={sak}"
        ),
        &sak,
        "azure-shared-access-key",
    );
    check(
        &format!("{}AZDO{}", random(ALNUM, 76, 24), random(ALNUM, 4, 25)),
        Some("azure-devops-pat"),
    );
}

#[test]
fn github() {
    for (i, prefix) in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"].iter().enumerate() {
        let token = github_token(prefix, 30 + i as u64);
        check_span(&format!("using {token} now"), &token, "github-token");
        // One changed checksum character: not a token GitHub issued.
        let mut wrong = token.clone();
        let last = if wrong.ends_with('A') { "B" } else { "A" };
        wrong.replace_range(39..40, last);
        check(&format!("using {wrong} now"), None);
    }
    check(
        &format!(
            "github_pat_{}_{}",
            random(ALNUM, 22, 40),
            random(ALNUM, 59, 41)
        ),
        Some("github-fine-grained-pat"),
    );
    check(
        &format!(
            "github_pat_{}_{}",
            random(ALNUM, 22, 40),
            random(ALNUM, 30, 41)
        ),
        None,
    );
}

#[test]
fn gitlab() {
    check(
        &format!("glpat-{}", random(URLSAFE, 20, 50)),
        Some("gitlab-token"),
    );
    check(
        &format!("glrt-{}", random(URLSAFE, 20, 51)),
        Some("gitlab-token"),
    );
    check("glpat-xxxxxxxxxxxxxxxxxxxx", None);
    check(
        &format!("GR1348941{}", random(URLSAFE, 20, 52)),
        Some("gitlab-runner-registration-token"),
    );
}

#[test]
fn slack() {
    let bot = format!(
        "xoxb-{}-{}-{}",
        random("0123456789", 12, 60),
        random("0123456789", 13, 61),
        random(ALNUM, 24, 62)
    );
    check_span(&format!("SLACK_TOKEN={bot}"), &bot, "slack-token");
    check("xoxb-xxxxxxxxxxxx-xxxxxxxxxxxx", None);
    check(
        &format!(
            "xapp-1-A{}-{}-{}",
            random(UPPER_DIGITS, 10, 63),
            random("0123456789", 13, 64),
            random(HEX, 64, 65)
        ),
        Some("slack-app-token"),
    );
    let hook = format!(
        "T{}/B{}/{}",
        random(UPPER_DIGITS, 10, 66),
        random(UPPER_DIGITS, 10, 67),
        random(ALNUM, 24, 68)
    );
    check_span(
        &format!("https://hooks.slack.com/services/{hook}"),
        &hook,
        "slack-webhook",
    );
    check("https://hooks.slack.com/services/", None);
}

#[test]
fn payments_and_model_providers() {
    check(
        &format!("sk_live_{}", random(ALNUM, 24, 70)),
        Some("stripe-key"),
    );
    check(
        &format!("rk_test_{}", random(ALNUM, 24, 71)),
        Some("stripe-key"),
    );
    check(&format!("pk_live_{}", random(ALNUM, 24, 72)), None);
    check(
        &format!("sk-proj-{}", random(URLSAFE, 120, 73)),
        Some("openai-api-key"),
    );
    check(
        &format!(
            "sk-{}T3BlbkFJ{}",
            random(ALNUM, 20, 74),
            random(ALNUM, 20, 75)
        ),
        Some("openai-api-key"),
    );
    check(&format!("sk-{}", random(ALNUM, 12, 76)), None);
    check(
        &format!("sk-ant-api03-{}AA", random(URLSAFE, 93, 77)),
        Some("anthropic-api-key"),
    );
    check("sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", None);
    check(
        &format!("hf_{}", random(LETTERS, 34, 78)),
        Some("huggingface-token"),
    );
    check(&format!("hf_{}", random(LETTERS, 20, 78)), None);
    check(
        &format!("gsk_{}", random(ALNUM, 52, 79)),
        Some("groq-api-key"),
    );
    check(&format!("npm_{}", random(ALNUM, 36, 80)), Some("npm-token"));
    check("npm_000000000000000000000000000000000000", None);
    check(
        &format!("pypi-AgEIcHlwaS5vcmc{}", random(URLSAFE, 120, 81)),
        Some("pypi-token"),
    );
    check(&format!("pypi-{}", random(URLSAFE, 120, 81)), None);
}

#[test]
fn other_vendors() {
    check(
        &format!("SG.{}.{}", random(URLSAFE, 22, 90), random(URLSAFE, 43, 91)),
        Some("sendgrid-api-key"),
    );
    check(
        &format!("dop_v1_{}", random(HEX, 64, 92)),
        Some("digitalocean-token"),
    );
    check(
        &format!("hvs.{}", random(URLSAFE, 90, 93)),
        Some("hashicorp-vault-token"),
    );
    check(
        &format!(
            "AGE-SECRET-KEY-1{}",
            random("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58, 94)
        ),
        Some("age-secret-key"),
    );
    check(
        &format!("{}-us12", random(HEX, 32, 95)),
        Some("mailchimp-api-key"),
    );
    check(
        &format!("shpat_{}", random(HEX, 32, 96)),
        Some("shopify-token"),
    );
    check(
        &format!(
            "{}:AA{}",
            random("0123456789", 10, 97),
            random(URLSAFE, 33, 98)
        ),
        Some("telegram-bot-token"),
    );
    check(
        &format!("dapi{}", random(HEX, 32, 99)),
        Some("databricks-token"),
    );
    check("shpat_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", None);
}

#[test]
fn password_hashes() {
    check(
        &format!(
            "$2b$12${}",
            random(
                "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                53,
                100
            )
        ),
        Some("password-hash"),
    );
    check(
        &format!(
            "$6$saltsalt${}",
            random(
                "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                86,
                101
            )
        ),
        Some("password-hash"),
    );
    check("costs $2 and $12 in total", None);
}

#[test]
fn jwts() {
    let token = jwt(r#"{"alg":"HS256","typ":"JWT"}"#, 110);
    check_span(&format!("Cookie: session={token}; Path=/"), &token, "jwt");
    check(&jwt(r#"{"typ":"JWT"}"#, 111), None);
    check(
        &format!(
            "eyJ{}.eyJ{}.{}",
            random(URLSAFE, 20, 112),
            random(URLSAFE, 20, 113),
            random(URLSAFE, 20, 114)
        ),
        None,
    );
}

#[test]
fn private_keys() {
    for label in [
        "RSA PRIVATE KEY",
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
    ] {
        let key = pem(label, 120);
        check_span(&format!("key:\n{key}\n"), &key, "private-key");
    }
    check(
        "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----",
        None,
    );
    check(&pem("PUBLIC KEY", 121), None);
    check(&pem("CERTIFICATE", 122), None);
    let encoded = base64::engine::general_purpose::STANDARD.encode(pem("RSA PRIVATE KEY", 123));
    check(&format!("tls.key: {encoded}"), Some("private-key"));
}

#[test]
fn urls_with_passwords() {
    let pass = random(ALNUM, 16, 130);
    for scheme in [
        "postgres",
        "postgresql",
        "mysql",
        "mongodb",
        "mongodb+srv",
        "redis",
        "amqp",
        "https",
    ] {
        check_span(
            &format!("DATABASE={scheme}://app:{pass}@db.internal:5432/app"),
            &pass,
            "url-password",
        );
    }
    check_span(
        &format!("redis://:{pass}@cache:6379"),
        &pass,
        "url-password",
    );
    check("postgres://app@db.internal/app", None);
    check("postgres://user:${DB_PASSWORD}@db/app", None);
    check("mysql://user:password@localhost/db", None);
    check("see https://example.org/a:b@c for details", None);
}

#[test]
fn headers_and_command_lines() {
    let token = random(URLSAFE, 40, 140);
    check_span(
        &format!("Authorization: Bearer {token}"),
        &token,
        "http-authorization",
    );
    check("Authorization: Bearer <token>", None);
    check("the bearer token is refreshed hourly", None);
    let pass = format!("{}9!", random(ALNUM, 10, 141));
    check_span(
        &format!("curl -s -u deploy:{pass} https://ci.internal/api"),
        &pass,
        "cli-password",
    );
    check("curl -u $USER:$PASS https://ci.internal/api", None);
    check_span(
        &format!("psexec \\\\host -u admin -p {pass} cmd"),
        &pass,
        "cli-password",
    );
    check_span(&format!("tool --password={pass}"), &pass, "cli-password");
    check("mkdir -p build", None);
    check_span(
        &format!("machine api.example.net login bot password {pass}"),
        &pass,
        "netrc-password",
    );
    check_span(
        &format!(r#"new NetworkCredential("svc", "{pass}")"#),
        &pass,
        "code-credential",
    );
}

#[test]
fn generic_assignments() {
    let secret = random(ALNUM, 32, 150);
    for line in [
        format!("api_key = \"{secret}\""),
        format!("API_KEY={secret}"),
        format!("\"client_secret\": \"{secret}\""),
        format!("auth_token: '{secret}'"),
        format!("const stripeSecret = `{secret}`;"),
        format!("<add key=\"ApiToken\" value=\"{secret}\" />"),
        format!("<secret>{secret}</secret>"),
    ] {
        check_span(&line, &secret, "generic-secret");
    }
    let pass = "Tr0ub4dor#3";
    check_span(&format!("DB_PASSWORD={pass}"), pass, "generic-password");
    check_span(&format!("password: \"{pass}\""), pass, "generic-password");
    check_span(
        &format!("Server=db;User Id=sa;Password={pass};"),
        pass,
        "generic-password",
    );
    check_span(
        &format!("credentials {{ password '{pass}' }}"),
        pass,
        "generic-password",
    );
    for line in [
        "password = \"changeme\"",
        "password: ${DB_PASSWORD}",
        "api_key = \"<your-api-key>\"",
        "token = 'xxxxxxxxxxxxxxxx'",
        "secret: \"aaaaaaaaaaaaaaaaaaaa\"",
        "api_key = os.environ[\"API_KEY\"]",
        "password = config.password",
        "token = getToken()",
        "max_tokens = 4096",
        "token_type: bearer",
        "public_key = \"AAAAC3NzaC1lZDI1NTE5AAAAI\"",
        "secret_name: production-db-credentials",
        "password_min_length = 12",
        "primary_key: user_id",
        "The key point is: keep it short.",
        "passed: 118, failed: 0",
        "token: example",
        "password: hunter",
    ] {
        check(line, None);
    }
}

#[test]
fn detections_are_sorted_disjoint_and_on_char_boundaries() {
    let text = format!(
        "é token={} and ghp… {} then AKIA{} ü password=\"{}\"",
        random(ALNUM, 30, 160),
        github_token("ghp_", 161),
        random(UPPER_DIGITS, 16, 162),
        "s3cr3t-Pa55!"
    );
    let found = DETECTOR.find(&text);
    assert_eq!(
        found.len(),
        4,
        "{:?}",
        found.iter().map(|d| d.kind).collect::<Vec<_>>()
    );
    for pair in found.windows(2) {
        assert!(pair[0].end <= pair[1].start);
    }
    for d in &found {
        assert!(text.is_char_boundary(d.start) && text.is_char_boundary(d.end));
    }
}

#[test]
fn a_vendor_rule_wins_over_the_generic_one_on_the_same_span() {
    let token = github_token("ghp_", 170);
    check_span(&format!("GITHUB_TOKEN=\"{token}\""), &token, "github-token");
}

#[test]
fn plain_prose_and_logs_yield_nothing() {
    for line in [
        "The committee passed the budget; the key question remains who authored the token economy paper.",
        "2024-05-01T10:00:00Z INFO request id=4f1c path=/api/v1/items status=200 duration_ms=12",
        "Visit https://docs.example.org/guide#install or mailto:ops@example.org for help.",
        "fn main() { let key = map.get(&id); println!(\"{}\", key); }",
    ] {
        check(line, None);
    }
}

#[test]
fn kubernetes_secrets_and_bundler_credentials() {
    let value = base64::engine::general_purpose::STANDARD.encode(random(ALNUM, 24, 180));
    check_span(
        &format!("apiVersion: v1\nkind: Secret\ndata:\n  config.json: {value}\n"),
        &value,
        "kubernetes-secret",
    );
    check(
        &format!("apiVersion: v1\nkind: ConfigMap\ndata:\n  config.json: {value}\n"),
        None,
    );
    let pass = random(ALNUM, 16, 181);
    check_span(
        &format!("export BUNDLE_GEMS__EXAMPLE__COM=deploy:{pass}"),
        &format!("deploy:{pass}"),
        "bundler-credentials",
    );
    check("BUNDLE_GEMS__EXAMPLE__COM=${GEM_CREDENTIALS}", None);
}

#[test]
fn vendor_formats_added_in_the_second_round() {
    let hex = |n, seed| random(HEX, n, seed);
    let alnum = |n, seed| random(ALNUM, n, seed);
    let sk = format!("SK{}", hex(32, 200));
    check_span(&format!("TWILIO_API_KEY_SID={sk}"), &sk, "twilio-api-key");
    check("SKIP_THE_TESTS=1", None);
    let odt = format!("odt_{}", alnum(32, 201));
    check_span(
        &format!("X-Api-Key: {odt}"),
        &odt,
        "dependency-track-api-key",
    );
    let intra = format!("s-s4t2ud-{}", hex(64, 202));
    check_span(&format!("secret: {intra}"), &intra, "intra42-client-secret");
    let origin = format!("v1.0-{}-{}", hex(24, 203), hex(146, 204));
    check_span(
        &format!("ORIGIN_CA_KEY: {origin}"),
        &origin,
        "cloudflare-origin-ca-key",
    );
    check("release v1.0-beta is out", None);
    let okta = format!("00{}", random(URLSAFE, 40, 205));
    check_span(&format!("okta_api_token = {okta}"), &okta, "okta-api-token");
    check_span(
        &format!("Authorization: SSWS {okta}"),
        &okta,
        "okta-api-token",
    );
    check(&format!("bookTable = {okta}"), None);
    let sumo_id = format!("su{}", alnum(12, 206));
    check_span(
        &format!("SUMO_ACCESS_ID = \"{sumo_id}\""),
        &sumo_id,
        "sumologic-access-id",
    );
    check(&format!("sumOrders = {sumo_id}"), None);
    let sumo_key = alnum(64, 207);
    check_span(
        &format!("sumologic.accessKey: {sumo_key}"),
        &sumo_key,
        "sumologic-access-key",
    );
    let global = hex(37, 208);
    check_span(
        &format!("cloudflare: \"{global}\""),
        &global,
        "cloudflare-api-key",
    );
    let fb = format!(
        "{}|{}",
        random("0123456789", 16, 209),
        random(URLSAFE, 27, 210)
    );
    check_span(
        &format!("facebook app token {fb}"),
        &fb,
        "facebook-access-token",
    );
    let vault = format!("s.{}", alnum(24, 211));
    check_span(
        &format!("-vaultToken {vault}"),
        &vault,
        "hashicorp-vault-token",
    );
    check_span(&format!("token: {vault}"), &vault, "generic-secret");
    let unseal = random(B64, 44, 212);
    check_span(
        &format!("Unseal Key 1: {unseal}"),
        &unseal,
        "hashicorp-vault-unseal-key",
    );
    check_span(
        &format!("vault operator unseal {unseal}"),
        &unseal,
        "hashicorp-vault-unseal-key",
    );
    let pat = random("abcdefghijklmnopqrstuvwxyz234567", 52, 213);
    check_span(&format!("ado_pat = \"{pat}\""), &pat, "azure-devops-pat");
    let board = random("abcdefghijklmnopqrstuvwxyz0123456789", 20, 214);
    check_span(
        &format!("https://thingsboard.cloud/api/v1/{board}/telemetry"),
        &board,
        "thingsboard-access-token",
    );
    let nas = format!("7-{}", alnum(64, 215));
    check_span(
        &format!(r#"{{"method": "auth.login_with_api_key", "params": ["{nas}"]}}"#),
        &nas,
        "truenas-api-key",
    );
    let eu = format!("eu01xx{}NRAL", hex(30, 216));
    check_span(&format!("license_key: {eu}"), &eu, "new-relic-key");
    check(&format!("favicon.ico-{}.png", hex(32, 217)), None);
    check("xoxe.xoxb-1-ShortConfigValue0Q", None);
}

#[test]
fn passwords_in_slots_prose_and_connection_strings() {
    let pass = format!("{}7", random(LETTERS, 9, 220));
    // A URL's user info and a connection string hold only a password: even
    // a word there is one, but not a template, a variable or the slot's name.
    check_span("postgresql://app:secret@db/app", "secret", "url-password");
    check("postgresql://app:password@db/app", None);
    check("mysql://app:${DB_PASS}@db/app", None);
    check_span(
        &format!("Data Source=db;User ID=app;Password={pass};Initial Catalog=x"),
        &pass,
        "generic-password",
    );
    check_span(
        "Server=db;Uid=app;Pwd=secret;",
        "secret",
        "generic-password",
    );
    check("char *password = NULL;", None);
    check("text << \"Password=#{password}, \"", None);
    // A token as the URL's user.
    let token = random(ALNUM, 36, 221);
    check_span(
        &format!("git clone https://{token}@git.example.net/a/b"),
        &token,
        "url-password",
    );
    check("git clone https://deploy-user@git.example.net/a/b", None);
    // Prose.
    check_span(
        &format!("The password is '{pass}'"),
        &pass,
        "generic-password",
    );
    check_span(
        &format!("the default password for user \"ops\" is \"{pass}\"."),
        &pass,
        "generic-password",
    );
    check("the password is 'admin'", None);
    check("the password is stored in a vault.", None);
    // curl with quoted parts, and with the key as the user.
    check_span(
        &format!("curl --user ops:'{pass}' https://x"),
        &pass,
        "cli-password",
    );
    let key = random(ALNUM, 24, 222);
    check_span(
        &format!("curl -u \"{key}:\" https://x"),
        &key,
        "cli-password",
    );
    check("curl -u \"${USER}\":\"${PASS}\" https://x", None);
    check("curl --user admin:[SECRET] https://localhost:9200/", None);
}

#[test]
fn generic_names_values_and_placeholders_in_the_second_round() {
    let hex16 = random(HEX, 16, 230);
    check_span(&format!("-H \"Token: {hex16}\""), &hex16, "generic-secret");
    // The head noun is the last word: a clear-text password is a password,
    // a password file is a file.
    let pass = format!("{}4!", random(ALNUM, 10, 231));
    check_span(
        &format!("<add key=\"ClearTextPassword\" value=\"{pass}\" />"),
        &pass,
        "generic-password",
    );
    check(&format!("password_file = \"{pass}\""), None);
    // `$` inside a word is part of the password.
    check_span(
        "password = \"hunt3r$Tw0\"",
        "hunt3r$Tw0",
        "generic-password",
    );
    check("password = \"$DB_PASS\"", None);
    // A name and its value as a call's two strings.
    let secret = random(ALNUM, 32, 232);
    check_span(
        &format!("getenv(\"API_TOKEN\", \"{secret}\")"),
        &secret,
        "generic-secret",
    );
    check("getenv(\"API_TOKEN\", \"\")", None);
    for line in [
        "<setting key=\"org.acme.cache_v2_eviction\" value=\"enabled\" />",
        "deploySecrets: web2-stg-4410029381",
        "csrf-token=QmFzZTY0IGlzIG5vdCBhIHNlY3JldA8x7Kp2Ww==",
        "this.showPassword = \"#show-password\";",
        "\"help_password\": \"/docs/account/choosing-one\"",
        "signingKey=m9n8o7p6q5r4s3t2u1v0w9x8",
        "export API_TOKEN=tok_Zm9vYmFyYmF6cXV4...",
        "\"bucket_key\": \"Invoices2031-Q7.v2x\"",
        "cache_key = \"u7Kp2WwQmFzZTY0x9Lr3\"",
        "NID_rsa_oaep_KeyWrap = \"rsa-oaep-KeyWrap\"",
        "\"slack\": \"xoxb-4410029381-7730219944-#########################\"",
    ] {
        check(line, None);
    }
    // Long base64 runs of `A` are zero bytes, not a mask.
    let data = format!("AAAAAAAAAAC{}", random(B64, 80, 233));
    check_span(
        &format!("apiVersion: v1\nkind: Secret\ndata:\n\tpassword: {data}\n"),
        &data,
        "kubernetes-secret",
    );
    let cfg = random(B64, 60, 234);
    check_span(
        &format!("apiVersion: v1\ndata:\n  .dockercfg: |\n    {cfg}\nkind: Secret\n"),
        &cfg,
        "kubernetes-secret",
    );
}
