//! Detection rules for secrets palisade was never told about: vendor token formats, private keys, credentials in URLs and headers, and generic `name = value` assignments.
//!
//! Speed comes from never running a rule where it cannot match. One
//! Aho-Corasick automaton holds every rule's literal anchors (`AKIA`, `ghp_`,
//! `-----BEGIN`, `://`, `password`, …); text without an anchor costs that one
//! pass. At each anchor, only the rules that own it run, and only over a small
//! window around it. Each match then passes its rule's check (a checksum, a
//! decoding, the placeholder filters) before it counts. Overlaps are settled in
//! favour of the more specific rule, then the longer span.

mod checks;
mod rules;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::{Captures, Regex};

use checks::{
    base64_pem_ok, contains, entropy, github_checksum_ok, is_code_reference, is_identifier,
    is_placeholder, is_reference_or_mask, jwt_header_ok, looks_random, token_body_ok,
};
use rules::{Check, Gate, RULES, RuleSpec};

/// One secret-looking span that a rule found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Byte offsets of the secret itself (not of a surrounding `password=`).
    pub start: usize,
    pub end: usize,
    /// The rule's kind, stable and kebab-case (`github-token`, `aws-access-key-id`): one of [`kinds`].
    pub kind: &'static str,
}

/// Every kind a [`Detection`] can carry, each once.
pub fn kinds() -> &'static [&'static str] {
    &[
        "aws-access-key-id",
        "aws-secret-access-key",
        "aws-session-token",
        "aws-bedrock-api-key",
        "aws-mws-token",
        "gcp-api-key",
        "google-oauth-client-secret",
        "google-oauth-token",
        "google-oauth-refresh-token",
        "azure-storage-key",
        "azure-shared-access-key",
        "azure-sas-signature",
        "azure-ad-client-secret",
        "azure-devops-pat",
        "github-token",
        "github-fine-grained-pat",
        "gitlab-token",
        "gitlab-runner-registration-token",
        "slack-token",
        "slack-app-token",
        "slack-webhook",
        "stripe-key",
        "stripe-webhook-secret",
        "square-token",
        "shopify-token",
        "openai-api-key",
        "openrouter-api-key",
        "anthropic-api-key",
        "huggingface-token",
        "groq-api-key",
        "perplexity-api-key",
        "xai-api-key",
        "replicate-api-token",
        "tavily-api-key",
        "firecrawl-api-key",
        "jina-api-key",
        "langsmith-api-key",
        "npm-token",
        "pypi-token",
        "rubygems-api-key",
        "crates-io-token",
        "nuget-api-key",
        "docker-hub-token",
        "artifactory-token",
        "digitalocean-token",
        "doppler-token",
        "hashicorp-vault-token",
        "terraform-cloud-token",
        "grafana-token",
        "sentry-token",
        "notion-token",
        "atlassian-api-token",
        "flyio-token",
        "age-secret-key",
        "1password-service-account-token",
        "1password-secret-key",
        "facebook-access-token",
        "heroku-api-key",
        "sonar-token",
        "sourcegraph-token",
        "dynatrace-token",
        "new-relic-key",
        "figma-token",
        "mapbox-token",
        "clickhouse-api-secret",
        "pulumi-token",
        "prefect-token",
        "infracost-token",
        "scalingo-token",
        "readme-token",
        "octopus-deploy-key",
        "stackhawk-key",
        "adafruit-io-key",
        "linear-api-key",
        "postman-api-key",
        "databricks-token",
        "sendgrid-api-key",
        "mailgun-api-key",
        "mailchimp-api-key",
        "telegram-bot-token",
        "twitch-stream-key",
        "dropbox-token",
        "salesforce-token",
        "teams-webhook",
        "discord-webhook",
        "twilio-api-key",
        "dependency-track-api-key",
        "intra42-client-secret",
        "cloudflare-origin-ca-key",
        "cloudflare-api-key",
        "thingsboard-access-token",
        "truenas-api-key",
        "hashicorp-vault-unseal-key",
        "okta-api-token",
        "sumologic-access-id",
        "sumologic-access-key",
        "password-hash",
        "jwt",
        "private-key",
        "url-password",
        "http-authorization",
        "cli-password",
        "bundler-credentials",
        "kubernetes-secret",
        "netrc-password",
        "code-credential",
        "jenkins-setup-password",
        "generic-password",
        "generic-secret",
    ]
}

/// A rule, compiled.
#[derive(Debug)]
struct Rule {
    spec: RuleSpec,
    regex: Regex,
}

/// The rules an anchor starts, and where (the anchor may sit inside a longer
/// one that the automaton reported instead).
#[derive(Debug, Clone, Copy)]
struct Trigger {
    rule: usize,
    offset: usize,
}

/// The default rule set, compiled once; `Send + Sync`, shared across threads.
#[derive(Debug)]
pub struct Detector {
    /// `None` only if the automaton could not be built (it is far below any
    /// size limit; `builds_the_prefilter` checks): every rule then runs over
    /// the whole text, slow but not blind.
    anchors: Option<AhoCorasick>,
    /// Per automaton pattern, the rules it starts.
    triggers: Vec<Vec<Trigger>>,
    rules: Vec<Rule>,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

/// A candidate before overlaps are settled.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    kind: &'static str,
    priority: u8,
}

impl Detector {
    /// Compiles the default rules. The rules are constants checked by the
    /// tests, so a rule that fails to compile is left out rather than taking
    /// the gateway down (and `compiles_every_rule` fails).
    pub fn new() -> Self {
        let rules: Vec<Rule> = RULES
            .iter()
            .filter_map(|spec| {
                Regex::new(spec.pattern)
                    .ok()
                    .map(|regex| Rule { spec: *spec, regex })
            })
            .collect();
        let mut patterns: Vec<String> = Vec::new();
        for rule in &rules {
            for anchor in rule.spec.anchors {
                let anchor = anchor.to_ascii_lowercase();
                if !patterns.contains(&anchor) {
                    patterns.push(anchor);
                }
            }
        }
        // The automaton reports the longest anchor at a position; an anchor
        // inside it (`pass` in `-pass`) must still start its rules.
        let triggers = patterns
            .iter()
            .map(|pattern| {
                let mut found = Vec::new();
                for (index, rule) in rules.iter().enumerate() {
                    for anchor in rule.spec.anchors {
                        let anchor = anchor.to_ascii_lowercase();
                        let mut from = 0;
                        while let Some(at) = pattern.get(from..).and_then(|rest| rest.find(&anchor))
                        {
                            found.push(Trigger {
                                rule: index,
                                offset: from + at,
                            });
                            from += at + 1;
                        }
                    }
                }
                found
            })
            .collect();
        let anchors = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            // A DFA: more memory (a few hundred KiB), but about twice the
            // speed of the NFA the builder picks for this many patterns.
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .ok();
        Self {
            anchors,
            triggers,
            rules,
        }
    }

    /// How many rules compiled (all of them, unless a pattern is broken).
    #[cfg(test)]
    fn rule_count(&self) -> usize {
        self.rules.len()
    }

    #[cfg(test)]
    fn has_prefilter(&self) -> bool {
        self.anchors.is_some()
    }

    /// Every detection in `text`, sorted by start, not overlapping.
    pub fn find(&self, text: &str) -> Vec<Detection> {
        let bytes = text.as_bytes();
        let Some(anchors) = &self.anchors else {
            return settle(
                text,
                self.rules
                    .iter()
                    .flat_map(|rule| run_everywhere(rule, bytes))
                    .collect(),
            );
        };
        let mut candidates = Vec::new();
        // Per rule, where its last match ended: an anchor inside a match
        // already found needs no second look.
        let mut done_until = vec![0usize; self.rules.len()];
        // The gates already opened or closed at this anchor: most anchors
        // start several rules behind the same gate (the generic ones), and
        // the gate, not the regex, is what runs at nearly every anchor.
        let mut gates: Vec<(Gate, usize, bool)> = Vec::with_capacity(8);
        for hit in anchors.find_iter(bytes) {
            let Some(triggers) = self.triggers.get(hit.pattern().as_usize()) else {
                continue;
            };
            gates.clear();
            for trigger in triggers {
                let at = hit.start() + trigger.offset;
                let (Some(rule), Some(until)) = (
                    self.rules.get(trigger.rule),
                    done_until.get_mut(trigger.rule),
                ) else {
                    continue;
                };
                if at < *until {
                    continue;
                }
                let gate = rule.spec.gate;
                let open = if let Some(&(_, _, open)) =
                    gates.iter().find(|(g, a, _)| *g == gate && *a == at)
                {
                    open
                } else {
                    let open = gate_open(gate, bytes, at);
                    gates.push((gate, at, open));
                    open
                };
                if !open {
                    continue;
                }
                if let Some(found) = run_rule(rule, bytes, at) {
                    *until = found.end.max(at + 1);
                    candidates.push(found);
                }
            }
        }
        settle(text, candidates)
    }
}

/// Runs one rule over the window around an anchor at `at`, once its gate is
/// open; the match must contain the anchor.
fn run_rule(rule: &Rule, bytes: &[u8], at: usize) -> Option<Candidate> {
    let spec = &rule.spec;
    let from = at.saturating_sub(spec.before);
    let to = at.saturating_add(spec.after).min(bytes.len());
    // The haystack keeps everything before the window so that `\b` and `^`
    // see the real preceding byte.
    let haystack = bytes.get(..to)?;
    let mut start = from;
    while start <= at {
        let caps = rule.regex.captures_at(haystack, start)?;
        let whole = caps.get(0)?;
        if whole.start() > at {
            return None;
        }
        if whole.end() > at {
            let (s, e) = check(spec, bytes, &caps)?;
            return Some(Candidate {
                start: s,
                end: e,
                kind: kind_of(spec, &caps),
                priority: spec.priority,
            });
        }
        start = whole.end().max(whole.start() + 1);
    }
    None
}

/// The cheap look at the bytes after an anchor that saves most regex runs in
/// prose, where `token` or `://` is rarely followed by what the rule needs.
fn gate_open(gate: Gate, bytes: &[u8], at: usize) -> bool {
    let rest = bytes.get(at..).unwrap_or(&[]);
    match gate {
        Gate::Open => true,
        Gate::Assignment => {
            // The name runs on, then an optional closing quote, blanks, and an
            // operator, a quote or `>` (XML) must follow.
            let mut after_name = rest
                .iter()
                .skip_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                .take(12);
            let mut next = after_name.next();
            if matches!(next, Some(b'"' | b'\'' | b'\\')) {
                next = after_name.next();
                if next == Some(&b'"') {
                    next = after_name.next();
                }
            }
            while matches!(next, Some(b' ' | b'\t')) {
                next = after_name.next();
            }
            matches!(
                next,
                Some(b':' | b'=' | b'(' | b'"' | b'\'' | b'`' | b'>' | b'\\')
            )
        }
        Gate::QuotedPair => {
            let mut after_name = rest
                .iter()
                .skip_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                .take(12);
            matches!(after_name.next(), Some(b'"' | b'\''))
                && after_name.find(|b| !matches!(b, b' ' | b'\t')) == Some(&b',')
        }
        Gate::SaysIs => {
            // One pass to the end of the sentence; only at a quote look back
            // for `is `.
            let window = rest.get(..rest.len().min(64)).unwrap_or(&[]);
            window
                .iter()
                .take_while(|b| !matches!(b, b'\n' | b'.' | b';' | b':' | b'='))
                .enumerate()
                .any(|(i, b)| {
                    matches!(b, b'"' | b'\'')
                        && i >= 3
                        && window
                            .get(i - 3..i)
                            .is_some_and(|w| w.eq_ignore_ascii_case(b"is "))
                })
        }
        Gate::UserInfo => rest
            .iter()
            .skip(3)
            .take(400)
            .take_while(|b| {
                !b.is_ascii_whitespace() && !matches!(b, b'/' | b'"' | b'\'' | b'<' | b'>')
            })
            .any(|&b| b == b'@'),
    }
}

/// Every match of one rule in the whole text (the path without a prefilter).
fn run_everywhere(rule: &Rule, bytes: &[u8]) -> Vec<Candidate> {
    rule.regex
        .captures_iter(bytes)
        .filter_map(|caps| {
            let (start, end) = check(&rule.spec, bytes, &caps)?;
            Some(Candidate {
                start,
                end,
                kind: kind_of(&rule.spec, &caps),
                priority: rule.spec.priority,
            })
        })
        .collect()
}

/// The generic rule reports passwords under their own kind.
fn kind_of(spec: &RuleSpec, caps: &Captures<'_>) -> &'static str {
    if spec.check == Check::Assignment
        && let Some(name) = caps.name("k")
        && key_class(name.as_bytes()) == Some(KeyClass::Password)
    {
        return "generic-password";
    }
    spec.kind
}

/// The secret's span: the `s` group, a value group, or the whole match.
fn secret_span(caps: &Captures<'_>) -> Option<(usize, usize, bool)> {
    for (name, quoted) in [
        ("s", true),
        ("dq", true),
        ("sq", true),
        ("bq", true),
        ("uq", false),
    ] {
        if let Some(m) = caps.name(name) {
            return Some((m.start(), m.end(), quoted));
        }
    }
    caps.get(0).map(|m| (m.start(), m.end(), true))
}

fn check(spec: &RuleSpec, bytes: &[u8], caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (start, end, quoted) = secret_span(caps)?;
    let value = bytes.get(start..end)?;
    let ok = match spec.check {
        Check::Pattern => true,
        Check::TokenBody => token_body_ok(value),
        Check::GithubChecksum => github_checksum_ok(value),
        Check::Jwt => jwt_header_ok(value),
        Check::PemBlock => return pem_block(bytes, start, end),
        Check::PemBase64 => base64_pem_ok(value),
        Check::AwsKeyId => !value.ends_with(b"EXAMPLE") && token_body_ok(value),
        Check::AwsSecret => !contains(value, b"EXAMPLE") && entropy(value) >= 4.0,
        Check::Assignment => assignment_ok(caps.name("k").map(|k| k.as_bytes()), value, quoted),
        Check::Password => password_ok(value),
        Check::SlotPassword => slot_password_ok(value),
        Check::Random => !is_placeholder(value) && looks_random(value, 8),
        Check::KubernetesSecret => !is_placeholder(value) && says_kind_secret(bytes, start, end),
    };
    ok.then_some((start, end))
}

/// A Kubernetes manifest of `kind: Secret` around the span (the `kind` line
/// may come before or after `data:`).
fn says_kind_secret(bytes: &[u8], start: usize, end: usize) -> bool {
    const REACH: usize = 2048;
    let around = bytes
        .get(start.saturating_sub(REACH)..end.saturating_add(REACH).min(bytes.len()))
        .unwrap_or(&[]);
    let lower = around.to_ascii_lowercase();
    lower.windows(5).enumerate().any(|(i, w)| {
        w == b"kind:"
            && lower
                .get(i + 5..)
                .map(|rest| {
                    rest.iter()
                        .skip_while(|b| matches!(b, b' ' | b'\t' | b'"' | b'\''))
                        .take(6)
                        .copied()
                        .collect::<Vec<u8>>()
                })
                .is_some_and(|word| word == b"secret")
    })
}

/// A PEM block from its `BEGIN` line through its `END` line, holding at least
/// a small key's worth of base64 (documentation shows `MIIE...` instead).
fn pem_block(bytes: &[u8], start: usize, header_end: usize) -> Option<(usize, usize)> {
    const MAX_BLOCK: usize = 64 * 1024;
    const END: &[u8] = b"-----END";
    let limit = header_end.saturating_add(MAX_BLOCK).min(bytes.len());
    let rest = bytes.get(header_end..limit)?;
    let body_len = rest.windows(END.len()).position(|w| w == END)?;
    let body = rest.get(..body_len)?;
    let footer = rest.get(body_len + END.len()..)?;
    let close = footer.windows(5).position(|w| w == b"-----")?;
    if close > 40 {
        return None;
    }
    let base64: Vec<u8> = strip_line_breaks(body);
    let enough = base64.len() >= 64 && entropy(&base64) >= 5.0 && !contains(body, b"...");
    enough.then_some((start, header_end + body_len + END.len() + close + 5))
}

/// The base64 characters of a PEM body, without line breaks, written as real
/// ones or as JSON's `\n`, and without any `Proc-Type:` style header lines.
fn strip_line_breaks(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut escaped = false;
    for &b in body {
        if escaped {
            escaped = false;
            if matches!(b, b'n' | b'r' | b't') {
                continue;
            }
        }
        if b == b'\\' {
            escaped = true;
        } else if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/') {
            out.push(b);
        }
    }
    out
}

/// What an assignment's name says the value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    /// Any string a person chose: no randomness required.
    Password,
    /// `secret`, `token`, `api_key`, `credential`: must look random.
    Secret,
    /// `key` or `auth` alone: must look random and be long.
    Weak,
}

/// Words that contain a keyword without being about a secret (`keyboard`,
/// `author`, `max_tokens`): they never make a name secret.
const DECOY_WORDS: &[&str] = &[
    "keyword",
    "keywords",
    "keyboard",
    "monkey",
    "turkey",
    "donkey",
    "hotkey",
    "keyframe",
    "keycode",
    "keys",
    "author",
    "authors",
    "authored",
    "tokenizer",
    "tokens",
    "passport",
    "bypass",
    "compass",
    "passive",
    "passthrough",
    "passing",
    "passed",
];

/// Words that, anywhere in a name, make it about something other than a
/// secret value: the public half, a form's text, a page or an action.
const MODIFIER_WORDS: &[&str] = &[
    "public",
    "pub",
    "csrf",
    "xsrf",
    "prompt",
    "label",
    "hint",
    "placeholder",
    "description",
    "title",
    "button",
    "input",
    "error",
    "message",
    "validation",
    "reset",
    "forgot",
    "change",
    "regex",
    "pattern",
    "policy",
    "format",
    // Keys that name data, not grant access: an S3 object's key, a
    // database's primary or sort key, a cache's key.
    "bucket",
    "primary",
    "foreign",
    "partition",
    "sort",
    "cache",
    "lookup",
];

/// Head nouns: after the secret's keyword they make the name about the
/// secret's id, file, length or type (`password_file`, `api_key_id`); before
/// it they only qualify it (`ClearTextPassword`, `file_password`). English
/// compounds put the head last.
const HEAD_WORDS: &[&str] = &[
    "name",
    "names",
    "file",
    "path",
    "url",
    "uri",
    "type",
    "length",
    "len",
    "size",
    "count",
    "max",
    "min",
    "expiry",
    "expires",
    "expiration",
    "ttl",
    "timeout",
    "header",
    "field",
    "text",
    "algorithm",
    "alg",
    "mode",
    "enabled",
    "enable",
    "version",
    "endpoint",
    "host",
    "port",
    "username",
    "id",
    "ids",
    "limit",
    "budget",
    "usage",
    "prefix",
    "location",
    "rotation",
    "provider",
    "method",
    "manager",
    "strategy",
    "scheme",
    "date",
    "time",
    "created",
    "updated",
    "ref",
    "arn",
    "entry",
    "st",
];

/// A name's words: split at `_`, `.`, `-` and camel-case humps, lower-cased.
fn words(name: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut prev: Option<u8> = None;
    for (i, &b) in name.iter().enumerate() {
        let next_lower = name.get(i + 1).is_some_and(u8::is_ascii_lowercase);
        let hump = b.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next_lower)
            });
        if (!b.is_ascii_alphanumeric() || hump) && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if b.is_ascii_alphanumeric() {
            current.push(char::from(b.to_ascii_lowercase()));
        }
        prev = Some(b);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn key_class(name: &[u8]) -> Option<KeyClass> {
    const KEYWORDS: &[&str] = &[
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
    ];
    let words = words(name);
    if words.iter().any(|w| MODIFIER_WORDS.contains(&w.as_str())) {
        return None;
    }
    let is_keyword =
        |w: &String| !DECOY_WORDS.contains(&w.as_str()) && KEYWORDS.iter().any(|k| w.contains(k));
    let last = words.iter().rposition(is_keyword)?;
    let after = words.get(last + 1..).unwrap_or(&[]);
    if after.iter().any(|w| HEAD_WORDS.contains(&w.as_str())) {
        return None;
    }
    let joined: String = words
        .iter()
        .filter(|w| !DECOY_WORDS.contains(&w.as_str()))
        .map(String::as_str)
        .collect();
    let has = |word: &str| joined.contains(word);
    if has("pass") || has("pwd") {
        Some(KeyClass::Password)
    } else if has("secret")
        || has("token")
        || has("credential")
        || has("apikey")
        || has("private")
        || has("accesskey")
    {
        Some(KeyClass::Secret)
    } else {
        Some(KeyClass::Weak)
    }
}

/// `API_KEY=…`: an environment variable, whose bare value is a literal
/// string, never code.
fn is_env_name(name: &[u8]) -> bool {
    name.iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        && name.iter().any(u8::is_ascii_uppercase)
}

fn assignment_ok(name: Option<&[u8]>, value: &[u8], quoted: bool) -> bool {
    let Some(class) = name.and_then(key_class) else {
        return false;
    };
    let literal = quoted || name.is_some_and(is_env_name);
    if is_placeholder(value)
        || (!literal && is_code_reference(value))
        || name.is_some_and(|n| spells_the_name(n, value))
    {
        return false;
    }
    match class {
        KeyClass::Password => password_ok(value) && !names_something_else(value),
        KeyClass::Secret => looks_random(value, 8),
        KeyClass::Weak => looks_random(value, 16),
    }
}

/// A value that is the name again, or part of it, however it is
/// separated (`KeyMeshing = "id-Gost-None-KeyMeshing"`): a label, not a value.
fn spells_the_name(name: &[u8], value: &[u8]) -> bool {
    let letters = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .iter()
            .filter(|b| b.is_ascii_alphanumeric())
            .map(u8::to_ascii_lowercase)
            .collect()
    };
    let (name, value) = (letters(name), letters(value));
    value.len() >= 4 && (contains(&name, &value) || contains(&value, &name) && name.len() >= 8)
}

/// A value under a password's name that is a path, a URL, or an identifier
/// spelled with the keyword (`#add-password`, `cms_user_password`): a route,
/// a selector or a setting's name, not the password.
fn names_something_else(value: &[u8]) -> bool {
    let lower = value.to_ascii_lowercase();
    let path = lower.starts_with(b"/")
        || lower.starts_with(b"./")
        || lower.starts_with(b"~/")
        || contains(&lower, b"://");
    let spelled = ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|k| contains(&lower, k.as_bytes()));
    path || (is_identifier(&lower) && spelled)
}

/// A password a person chose: any characters, but not a placeholder, and
/// not prose.
fn password_ok(value: &[u8]) -> bool {
    let spaced = value.iter().any(u8::is_ascii_whitespace);
    (4..=128).contains(&value.len()) && !spaced && !is_placeholder(value)
}

/// A password in a slot that holds nothing else (a URL's user info, a
/// connection string's `Password=`): whatever is there is the password, even
/// a word like `secret`, unless it is a template, a variable or a mask.
/// The slot's own name written in it (`user:password@`) is documentation
/// labelling the slot, though.
fn slot_password_ok(value: &[u8]) -> bool {
    let names_the_slot = [
        "pass",
        "passwd",
        "password",
        "pwd",
        "null",
        "nil",
        "none",
        "undefined",
    ]
    .iter()
    .any(|n| value.eq_ignore_ascii_case(n.as_bytes()));
    (1..=256).contains(&value.len())
        && !value.iter().any(u8::is_ascii_whitespace)
        && !names_the_slot
        && !is_reference_or_mask(value)
}

/// Sorts candidates, drops the ones an earlier-chosen (more specific, then
/// longer) one overlaps, and widens spans to whole characters.
fn settle(text: &str, mut candidates: Vec<Candidate>) -> Vec<Detection> {
    if candidates.is_empty() {
        return Vec::new();
    }
    candidates.sort_by_key(|c| (c.priority, usize::MAX - (c.end - c.start), c.start));
    let mut chosen: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if !chosen
            .iter()
            .any(|c| c.start < candidate.end && candidate.start < c.end)
        {
            chosen.push(candidate);
        }
    }
    chosen.sort_by_key(|c| c.start);
    chosen
        .into_iter()
        .map(|c| {
            let mut start = c.start;
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = c.end;
            while !text.is_char_boundary(end) {
                end += 1;
            }
            Detection {
                start,
                end,
                kind: c.kind,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
