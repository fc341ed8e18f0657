//! The redaction seam: everything that leaves palisade passes one redactor, enforced by type.
//!
//! Client messages, audit records, log lines, error texts and the relayed
//! stderr of upstreams are written only as [`Redacted`] values, and only
//! [`RedactionSeam`] makes those. The secrets layer provides the
//! [`Redactor`]; until it does, the seam is an explicit pass-through,
//! switched on by the same `pipeline.pass_through = ["redact"]` entry as the
//! redaction stage, and reported with it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

/// Finds and replaces secret values (known ones and detected ones) in text and JSON.
pub trait Redactor: Send + Sync + fmt::Debug {
    fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str>;

    /// Redacts every string in `value`, keys included.
    fn redact_value(&self, value: &mut Value) {
        redact_strings(value, &|s| self.redact_text(s).into_owned());
    }
}

/// Applies `redact` to every string of a JSON value, object keys included.
pub fn redact_strings(value: &mut Value, redact: &dyn Fn(&str) -> String) {
    match value {
        Value::String(s) => *s = redact(s),
        Value::Array(items) => {
            for item in items {
                redact_strings(item, redact);
            }
        }
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                redact_strings(&mut item, redact);
                map.insert(redact(&key), item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A value that can be redacted in place: implemented by what palisade writes out.
pub trait Redactable {
    fn redact_with(&mut self, redactor: &dyn Redactor);
}

impl Redactable for Value {
    fn redact_with(&mut self, redactor: &dyn Redactor) {
        redactor.redact_value(self);
    }
}

impl Redactable for String {
    fn redact_with(&mut self, redactor: &dyn Redactor) {
        if let Cow::Owned(clean) = redactor.redact_text(self) {
            *self = clean;
        }
    }
}

/// A value that passed the seam. Only [`RedactionSeam`] creates one.
#[derive(Debug, Clone, PartialEq)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub fn get(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

/// One audit record, serialized as one line of JSON (no newline), ready for a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLine(Vec<u8>);

impl AuditLine {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The record as JSON, parsed again (for tests and sinks that need fields).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.0).unwrap_or(Value::Null)
    }
}

/// The one way to [`Redacted`]: through the configured redactor, or the
/// explicit pass-through.
#[derive(Clone)]
pub struct RedactionSeam {
    redactor: Option<Arc<dyn Redactor>>,
    /// The degraded modes in force, stamped on every audit record.
    degraded: Arc<[String]>,
}

impl fmt::Debug for RedactionSeam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.redactor {
            Some(redactor) => f.debug_tuple("RedactionSeam").field(redactor).finish(),
            None => f.write_str("RedactionSeam(pass-through)"),
        }
    }
}

impl RedactionSeam {
    pub fn new(redactor: Arc<dyn Redactor>) -> Self {
        Self {
            redactor: Some(redactor),
            degraded: Arc::new([]),
        }
    }

    /// Redacts nothing. Built only from an explicit `pipeline.pass_through`
    /// entry for `redact`, and reported wherever pass-through stages are.
    pub fn pass_through() -> Self {
        Self {
            redactor: None,
            degraded: Arc::new([]),
        }
    }

    /// This seam, stamping `degraded` (what palisade runs without) on every
    /// audit record as its `degraded` field, so no record reads as if all
    /// of palisade's protection were in force when some is not.
    pub fn stamping(mut self, degraded: Vec<String>) -> Self {
        self.degraded = degraded.into();
        self
    }

    pub fn is_pass_through(&self) -> bool {
        self.redactor.is_none()
    }

    pub fn apply<T: Redactable>(&self, mut value: T) -> Redacted<T> {
        if let Some(redactor) = &self.redactor {
            value.redact_with(redactor.as_ref());
        }
        Redacted(value)
    }

    pub fn text(&self, text: &str) -> Redacted<String> {
        match &self.redactor {
            Some(redactor) => Redacted(redactor.redact_text(text).into_owned()),
            None => Redacted(text.to_owned()),
        }
    }

    /// Serializes an audit record and redacts every string in it.
    pub fn record<T: Serialize>(&self, record: &T) -> Result<Redacted<AuditLine>, String> {
        let stamp = |value: &mut Value| {
            if let Value::Object(fields) = value
                && !self.degraded.is_empty()
            {
                fields.insert("degraded".into(), Value::from(self.degraded.to_vec()));
            }
        };
        let bytes = match &self.redactor {
            // Straight to bytes: the audit path is the hot path of every call.
            None if self.degraded.is_empty() => serde_json::to_vec(record),
            None => serde_json::to_value(record).and_then(|mut value| {
                stamp(&mut value);
                serde_json::to_vec(&value)
            }),
            Some(redactor) => serde_json::to_value(record).and_then(|mut value| {
                redactor.redact_value(&mut value);
                stamp(&mut value);
                serde_json::to_vec(&value)
            }),
        };
        bytes
            .map(|bytes| Redacted(AuditLine(bytes)))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug)]
    struct Hunter2;

    impl Redactor for Hunter2 {
        fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
            if text.contains("hunter2") {
                Cow::Owned(text.replace("hunter2", "[REDACTED]"))
            } else {
                Cow::Borrowed(text)
            }
        }
    }

    #[test]
    fn a_stamping_seam_marks_every_record_degraded() {
        let record = json!({ "event": "call-intent", "secret": "hunter2" });
        let degraded = vec!["sandbox: upstream `x` runs unsandboxed".to_owned()];
        for seam in [
            RedactionSeam::pass_through(),
            RedactionSeam::new(Arc::new(Hunter2)),
        ] {
            let plain = seam.clone().record(&record).unwrap().into_inner().value();
            assert!(plain.get("degraded").is_none(), "{plain}");
            let stamped = seam.stamping(degraded.clone()).record(&record).unwrap();
            let stamped = stamped.into_inner().value();
            assert_eq!(stamped["degraded"], json!(degraded), "{stamped}");
            assert_eq!(stamped["event"], "call-intent");
        }
        let redacted = RedactionSeam::new(Arc::new(Hunter2))
            .stamping(degraded)
            .record(&record);
        assert_eq!(
            redacted.unwrap().into_inner().value()["secret"],
            "[REDACTED]"
        );
    }

    #[test]
    fn every_string_is_redacted_keys_included() {
        let seam = RedactionSeam::new(Arc::new(Hunter2));
        let out = seam.apply(json!({"a": ["x hunter2 y", 1], "hunter2": {"b": "hunter2"}}));
        let text = out.get().to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(out.get()["a"][0], "x [REDACTED] y");
        assert_eq!(out.get()["a"][1], 1);
        assert_eq!(seam.text("pw=hunter2").get(), "pw=[REDACTED]");
        let line = seam.record(&json!({"detail": "hunter2"})).unwrap();
        assert_eq!(line.get().value()["detail"], "[REDACTED]");
    }

    #[test]
    fn pass_through_changes_nothing_and_says_so() {
        let seam = RedactionSeam::pass_through();
        assert!(seam.is_pass_through());
        assert_eq!(seam.text("hunter2").get(), "hunter2");
        assert_eq!(format!("{seam:?}"), "RedactionSeam(pass-through)");
    }
}
