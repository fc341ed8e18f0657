//! The redactor: known values (exact, with encodings) and detection rules, replaced by typed placeholders.
//!
//! One [`SecretRedactor`] serves the whole process: the redaction seam
//! (client messages, log lines, errors, audit records) and the pipeline's
//! `redact` stage (which also reports findings). The known set is swapped
//! whole when the vault changes, and a value the broker is about to inject
//! is added first, so nothing palisade sends out can come back unknown.
//!
//! A replacement is `[REDACTED:secret:NAME]` for a known secret and
//! `[REDACTED:KIND:TAG]` for a detected one, where TAG is four hex digits
//! of a keyed digest of the value: the model can tell two keys apart, and
//! nobody can test a guess against the tag without this process's key.

pub mod exact;

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use palisade_core::stage::{Redact, StageFuture};
use palisade_core::{Finding, Redactor, Stage};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::detect::Detector;
use crate::value::SecretValue;
use crate::vault::Known;
use exact::Exact;

/// One span to replace, and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    replacement: String,
    /// For the finding: `secret.known` or `secret.<kind>`, and a short note.
    code: String,
    note: String,
}

/// The redactor everything leaving palisade passes.
pub struct SecretRedactor {
    exact: RwLock<Arc<Exact>>,
    detector: Option<Arc<Detector>>,
    /// Keys the placeholder tags of detected secrets; random per process.
    tag_key: [u8; 32],
}

impl std::fmt::Debug for SecretRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRedactor")
            .field("known", &self.exact().len())
            .field("rules", &self.detector.is_some())
            .finish()
    }
}

impl SecretRedactor {
    /// A redactor with the default detection rules and no known values yet.
    pub fn new() -> Self {
        Self::with_detector(Some(Arc::new(Detector::new())))
    }

    /// `None`: exact matching of known values only.
    pub fn with_detector(detector: Option<Arc<Detector>>) -> Self {
        let mut tag_key = [0u8; 32];
        // A tag key that cannot be made is a fixed one: tags stay stable,
        // only guessable offline, which the four hex digits make moot.
        let _ = getrandom::fill(&mut tag_key);
        Self {
            exact: RwLock::new(Arc::new(Exact::empty())),
            detector,
            tag_key,
        }
    }

    fn exact(&self) -> Arc<Exact> {
        Arc::clone(&self.exact.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the known set with `known` (all values the vault holds).
    pub fn set_known(&self, known: &Known) {
        let exact = Arc::new(Exact::build(&known.values));
        *self.exact.write().unwrap_or_else(|p| p.into_inner()) = exact;
    }

    /// Adds values to the known set unless all are known already.
    pub fn learn(&self, values: &[(crate::binding::SecretName, SecretValue)]) {
        let current = self.exact();
        if values
            .iter()
            .all(|(_, v)| current.knows(v) || v.len() < exact::MIN_LEN)
        {
            return;
        }
        let mut guard = self.exact.write().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = guard.values_for_rebuild();
        all.extend(values.iter().cloned());
        *guard = Arc::new(Exact::build(&all));
    }

    pub fn known_count(&self) -> usize {
        self.exact().len()
    }

    /// Names whose values are too short to be matched.
    pub fn too_short(&self) -> Vec<crate::binding::SecretName> {
        self.exact().too_short().to_vec()
    }

    fn tag(&self, value: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.tag_key);
        hasher.update(value.as_bytes());
        hex::encode(hasher.finalize().get(..2).unwrap_or_default())
    }

    /// The spans to replace in `text`, ordered, not overlapping. Known
    /// values win over detections that overlap them.
    fn spans(&self, text: &str) -> Vec<Span> {
        let exact = self.exact();
        let mut spans: Vec<Span> = exact
            .find(text)
            .into_iter()
            .map(|hit| {
                let name = exact.name(hit.secret).map_or("?", |n| n.as_str());
                Span {
                    start: hit.start,
                    end: hit.end,
                    replacement: format!("[REDACTED:secret:{name}]"),
                    code: "secret.known".to_owned(),
                    note: format!("the secret `{name}` ({})", hit.encoding.as_str()),
                }
            })
            .collect();
        if let Some(detector) = &self.detector {
            let detected = detector.find(text);
            if !detected.is_empty() {
                for d in detected {
                    let overlaps = spans.iter().any(|s| d.start < s.end && s.start < d.end);
                    if overlaps {
                        continue;
                    }
                    let value = text.get(d.start..d.end).unwrap_or_default();
                    spans.push(Span {
                        start: d.start,
                        end: d.end,
                        replacement: format!("[REDACTED:{}:{}]", d.kind, self.tag(value)),
                        code: format!("secret.{}", d.kind),
                        note: format!("what looks like a {} secret", d.kind),
                    });
                }
                spans.sort_by_key(|s| s.start);
            }
        }
        spans
    }

    fn apply<'t>(&self, text: &'t str, mut report: impl FnMut(&Span)) -> Cow<'t, str> {
        let spans = self.spans(text);
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for span in &spans {
            if span.start < at {
                continue;
            }
            out.push_str(text.get(at..span.start).unwrap_or_default());
            out.push_str(&span.replacement);
            at = span.end;
            report(span);
        }
        out.push_str(text.get(at..).unwrap_or_default());
        Cow::Owned(out)
    }

    /// Redacts `value` in place and returns a finding per replacement, with
    /// where it was (a JSON pointer), never what.
    pub fn redact_reporting(&self, value: &mut Value) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut path = String::new();
        self.walk(value, &mut path, &mut findings);
        findings
    }

    fn redact_at(&self, text: &str, path: &str, findings: &mut Vec<Finding>) -> Option<String> {
        match self.apply(text, |span| {
            findings.push(Finding {
                stage: Stage::Redact,
                code: span.code.clone(),
                message: format!("redacted {} at `{}`", span.note, display_path(path)),
            });
        }) {
            Cow::Borrowed(_) => None,
            Cow::Owned(clean) => Some(clean),
        }
    }

    fn walk(&self, value: &mut Value, path: &mut String, findings: &mut Vec<Finding>) {
        match value {
            Value::String(s) => {
                if let Some(clean) = self.redact_at(s, path, findings) {
                    *s = clean;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    self.walk(item, path, findings);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    let len = path.len();
                    let key = self.redact_at(&key, path, findings).unwrap_or(key);
                    path.push('/');
                    path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    self.walk(&mut item, path, findings);
                    path.truncate(len);
                    map.insert(key, item);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

impl Default for SecretRedactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor for SecretRedactor {
    fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.apply(text, |_| {})
    }
}

/// The pipeline's `redact` stage: the same redactor, reporting findings.
#[derive(Debug, Clone)]
pub struct RedactStage(pub Arc<SecretRedactor>);

impl Redact for RedactStage {
    fn redact<'a>(&'a self, result: &'a mut Value) -> StageFuture<'a, Vec<Finding>> {
        Box::pin(async move { Ok(self.0.redact_reporting(result)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::SecretName;
    use serde_json::json;

    const VALUE: &str = "tk_live_9fQ2xR7mZ4pL1vB8";

    fn redactor() -> SecretRedactor {
        let r = SecretRedactor::with_detector(None);
        r.set_known(&Known {
            values: vec![(
                SecretName::parse("tickets").unwrap(),
                SecretValue::new(VALUE.into()),
            )],
        });
        r
    }

    #[test]
    fn known_values_become_named_placeholders_with_findings() {
        let r = redactor();
        let mut value = json!({
            "content": [{"type": "text", "text": format!("key is {VALUE}")}],
            VALUE: hex::encode(VALUE),
        });
        let findings = r.redact_reporting(&mut value);
        let text = value.to_string();
        assert!(!text.contains("9fQ2"), "{text}");
        assert_eq!(
            value["content"][0]["text"],
            "key is [REDACTED:secret:tickets]"
        );
        assert_eq!(findings.len(), 3, "{findings:?}");
        assert!(findings.iter().all(|f| f.code == "secret.known"));
        assert!(
            findings
                .iter()
                .any(|f| f.message.contains("`/content/0/text`"))
        );
        assert!(findings.iter().any(|f| f.message.contains("(hex)")));
        assert!(findings.iter().all(|f| !f.message.contains("9fQ2")));
    }

    #[test]
    fn learning_a_value_takes_effect_at_once_and_keeps_the_old() {
        let r = redactor();
        let new = "tk_live_ROTATED_value_42";
        assert_eq!(r.redact_text(new), new);
        r.learn(&[(
            SecretName::parse("tickets").unwrap(),
            SecretValue::new(new.into()),
        )]);
        assert_eq!(r.redact_text(new), "[REDACTED:secret:tickets]");
        assert_eq!(r.redact_text(VALUE), "[REDACTED:secret:tickets]");
    }

    #[test]
    fn text_without_secrets_is_borrowed() {
        let r = redactor();
        assert!(matches!(r.redact_text("plain words"), Cow::Borrowed(_)));
    }
}
