//! The user's activity log: what the agent did on one principal's behalf, read from the audit log.
//!
//! One [`Action`] per call that principal made (its `call-outcome` record:
//! every call has one, allowed or denied), newest last, with the verdict
//! and, for a call that did not simply run, why. `palisade activity` and
//! the listener's `/activity` endpoint show it; the endpoint only ever for
//! the caller's own principal.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::entry;

/// Which actions to read.
#[derive(Debug, Clone)]
pub struct Query {
    /// The principal's id, as records name it.
    pub principal: String,
    /// Its tenant: only the calls recorded under this tenant (none: only
    /// those recorded without one), so two tenants' principals that share
    /// an id never see each other's calls.
    pub tenant: Option<String>,
    /// Only actions at or after this time.
    pub since: Option<SystemTime>,
    /// At most this many (the newest).
    pub limit: usize,
}

/// One call, as its principal should be able to read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// The entry's sequence number (`palisade audit prove SEQ` proves it).
    pub seq: u64,
    /// On PostgreSQL, the node whose chain holds the entry (`prove --node`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub time: String,
    pub session: Value,
    /// `tool`, `resource`, `prompt`, `completion`, `task-result`.
    pub kind: Value,
    pub server: Value,
    pub name: Value,
    pub effect: Value,
    /// `completed`, `denied`, `timed-out`, … (the outcome's status).
    pub status: String,
    /// Why a call did not simply run: the first stage that denied it, held
    /// it for approval or failed, with its reason; or what the outcome says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The arguments as the agent sent them, redacted.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub arguments: Value,
}

impl Action {
    /// A field as a person reads it: a string as is, a cut one with an ellipsis.
    pub fn shown(v: &Value) -> String {
        text(v)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("truncated")
            .and_then(Value::as_str)
            .map(|t| format!("{t}…"))
            .unwrap_or_default(),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Array(_) => v.to_string(),
    }
}

fn why(record: &Value) -> Option<String> {
    let stages = record.get("stages").and_then(Value::as_array);
    for stage in stages.into_iter().flatten() {
        let verdict = stage.get("verdict").and_then(Value::as_str).unwrap_or("");
        if matches!(verdict, "deny" | "needs-approval" | "failed") {
            let name = stage.get("stage").and_then(Value::as_str).unwrap_or("?");
            let reason = stage.get("reason").map(text).unwrap_or_default();
            let what = match verdict {
                "deny" => "denied",
                "needs-approval" => "held for approval",
                _ => "failed",
            };
            return Some(format!("{name} {what}: {reason}"));
        }
    }
    let outcome = record.get("outcome")?;
    outcome
        .get("detail")
        .map(text)
        .or_else(|| outcome.get("code").map(|c| format!("upstream error {c}")))
}

pub(crate) fn action(seq: u64, node: Option<String>, record: &Value) -> Action {
    let field = |k: &str| record.get(k).cloned().unwrap_or(Value::Null);
    Action {
        seq,
        node,
        time: record
            .get("time")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        session: field("session"),
        kind: field("kind"),
        server: field("server"),
        name: field("name"),
        effect: field("effect"),
        status: record
            .get("outcome")
            .and_then(|o| o.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        why: why(record),
        arguments: field("arguments"),
    }
}

/// The records of the entries file `path` that `keep` accepts, at or after
/// `since`, with their sequence numbers: the newest `limit`, oldest first.
/// `likely` sees each raw line first, so that most lines are never parsed.
fn scan(
    path: &Path,
    likely: impl Fn(&[u8]) -> bool,
    keep: impl Fn(&Value) -> bool,
    since: Option<SystemTime>,
    limit: usize,
) -> std::io::Result<Vec<(u64, Value)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let mut out = std::collections::VecDeque::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            break;
        }
        line.pop();
        if !likely(&line) {
            continue;
        }
        let Ok(framed) = entry::parse(&line) else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<Value>(framed.record) else {
            continue;
        };
        if !keep(&record) {
            continue;
        }
        if !at_or_after(&record, since) {
            continue;
        }
        out.push_back((framed.seq, record));
        if out.len() > limit {
            out.pop_front();
        }
    }
    Ok(out.into())
}

/// The record's time, if it has one.
pub(crate) fn time_of(record: &Value) -> Option<SystemTime> {
    record
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339(t).ok())
}

/// Whether `record` is at or after `since` (every record, without a `since`).
pub(crate) fn at_or_after(record: &Value, since: Option<SystemTime>) -> bool {
    since.is_none_or(|since| time_of(record).is_some_and(|at| at >= since))
}

fn event(record: &Value) -> Option<&str> {
    record.get("event").and_then(Value::as_str)
}

impl Query {
    /// What the line of one of the principal's outcomes contains: its
    /// principal as `"principal":"ID"` (canonical JSON), and its event.
    pub(crate) fn needles(&self) -> [String; 2] {
        [
            format!(
                "\"principal\":{}",
                serde_json::to_string(&self.principal).unwrap_or_default()
            ),
            "\"event\":\"call-outcome\"".to_owned(),
        ]
    }

    /// Whether `record` is one of the principal's outcomes.
    pub(crate) fn wants(&self, record: &Value) -> bool {
        event(record) == Some("call-outcome")
            && record.get("principal").and_then(Value::as_str) == Some(self.principal.as_str())
            && record.get("tenant").and_then(Value::as_str) == self.tenant.as_deref()
    }
}

/// Reads `query.principal`'s actions from the entries file `path`.
pub fn read(path: &Path, query: &Query) -> std::io::Result<Vec<Action>> {
    let needles = query.needles();
    let records = scan(
        path,
        |line| needles.iter().all(|n| contains(line, n.as_bytes())),
        |record| query.wants(record),
        query.since,
        query.limit,
    )?;
    Ok(records
        .iter()
        .map(|(seq, r)| action(*seq, None, r))
        .collect())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The alert records in the log (`alert`, and layer 5's `limit-alert`),
/// each with its `seq`: the newest `limit` from `since` on, oldest first.
pub fn alerts(path: &Path, since: Option<SystemTime>, limit: usize) -> std::io::Result<Vec<Value>> {
    let records = scan(
        path,
        |line| {
            contains(line, b"\"event\":\"alert\"") || contains(line, b"\"event\":\"limit-alert\"")
        },
        |record| matches!(event(record), Some("alert" | "limit-alert")),
        since,
        limit,
    )?;
    Ok(records
        .into_iter()
        .map(|(seq, mut record)| {
            if let Some(o) = record.as_object_mut() {
                o.insert("seq".into(), seq.into());
            }
            record
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_denied_call_says_which_stage_and_why() {
        let record = json!({
            "event": "call-outcome", "principal": "alice", "time": "2026-12-06T10:00:00Z",
            "kind": "tool", "server": "mail", "name": "send_email", "effect": "egress",
            "stages": [
                {"stage": "authorize", "verdict": "allow", "micros": 3},
                {"stage": "limits", "verdict": "deny", "code": "limited", "reason": "limit `emails` (5 calls per 1 h)", "micros": 1}
            ],
            "outcome": {"status": "denied", "stage": "limits", "code": "limited"}
        });
        let a = action(4, None, &record);
        assert_eq!(a.status, "denied");
        assert_eq!(
            a.why.as_deref(),
            Some("limits denied: limit `emails` (5 calls per 1 h)")
        );
        let ran = json!({"event": "call-outcome", "stages": [], "outcome": {"status": "completed", "tool_error": false}});
        assert_eq!(action(5, None, &ran).why, None);
    }
}
