//! Audit records shaped as OCSF events, for sinks whose SIEM reads OCSF: API Activity for calls, Authentication for sessions and failed credentials, Detection Finding for alerts, Network Activity for egress.
//!
//! The log itself keeps palisade's own records (they are what is hashed
//! and signed); a sink with `format = "ocsf"` sends each as an OCSF 1.3
//! event instead. Every event keeps the whole record under
//! `unmapped.palisade`, so nothing the log holds is lost in the mapping,
//! and carries the entry's sequence number as `metadata.sequence` (and
//! `metadata.uid`) for de-duplication.

use serde_json::{Map, Value, json};

/// The OCSF schema version the events follow.
pub const VERSION: &str = "1.3.0";

/// A record (an entry's) as an OCSF event; `key` is `("seq", N)` or
/// `("checkpoint", N)`, `time_ms` its time in milliseconds since the epoch.
pub fn shape(record: &Map<String, Value>, key: (&str, u64), time_ms: u64) -> Value {
    let text = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or_default();
    let event = text("event");
    let mut out = Map::new();
    let (category, class, activity, status) = match event {
        "call-intent" | "call-outcome" => {
            api_activity(record, &mut out);
            let activity = match text("effect") {
                "read" => 2,
                "write" => 3,
                "irreversible" | "destructive" => 4,
                _ => 99,
            };
            let status = match record
                .get("outcome")
                .and_then(|o| o.get("status"))
                .and_then(Value::as_str)
            {
                None => Status::Unknown,
                Some("completed" | "task-created") => Status::Success,
                Some(other) => Status::Failure(other.to_owned()),
            };
            (6, 6003, activity, status)
        }
        "session-opened" | "session-closed" | "authentication-failed" => {
            identity(record, &mut out);
            if let Some(credential) = record.get("credential") {
                out.insert("auth_protocol".into(), credential.clone());
            }
            let (activity, status) = match event {
                "session-opened" => (1, Status::Success),
                "session-closed" => (2, Status::Success),
                _ => (1, Status::Failure(text("reason").to_owned())),
            };
            (3, 3002, activity, status)
        }
        "alert" | "limit-alert" => {
            let rule = if event == "alert" {
                text("rule").to_owned()
            } else {
                format!("limits:{}", text("limit"))
            };
            out.insert(
                "finding_info".into(),
                json!({
                    "uid": format!("{rule}-{}", key.1),
                    "title": text("message"),
                    "types": [rule],
                }),
            );
            identity(record, &mut out);
            (2, 2004, 1, Status::New)
        }
        "egress" => {
            let mut endpoint = Map::new();
            for (from, to) in [("host", "hostname"), ("port", "port")] {
                if let Some(v) = record.get(from) {
                    endpoint.insert(to.into(), v.clone());
                }
            }
            out.insert("dst_endpoint".into(), Value::Object(endpoint));
            let status = match text("verdict") {
                "allowed" => Status::Success,
                "" => Status::Unknown,
                other => Status::Failure(format!("{other}: {}", text("code"))),
            };
            (4, 4001, 1, status)
        }
        _ => (0, 0, 99, Status::Unknown),
    };
    out.insert("category_uid".into(), json!(category));
    out.insert("class_uid".into(), json!(class));
    out.insert("activity_id".into(), json!(activity));
    out.insert("type_uid".into(), json!(class * 100 + activity));
    out.insert("time".into(), json!(time_ms));
    out.insert("severity_id".into(), json!(severity(text("severity"))));
    status.insert(&mut out);
    out.insert(
        "metadata".into(),
        json!({
            "version": VERSION,
            "product": {"name": "palisade", "vendor_name": "palisade", "version": env!("CARGO_PKG_VERSION")},
            "log_name": "audit",
            "uid": format!("{}-{}", key.0, key.1),
            "sequence": key.1,
        }),
    );
    out.insert("message".into(), json!(event));
    out.insert(
        "unmapped".into(),
        json!({"palisade": Value::Object(record.clone())}),
    );
    Value::Object(out)
}

/// OCSF's status: `status_id` and, on failure, why.
enum Status {
    Unknown,
    Success,
    Failure(String),
    /// A finding's: new.
    New,
}

impl Status {
    fn insert(self, out: &mut Map<String, Value>) {
        let (id, name, detail) = match self {
            Status::Unknown => (0, "Unknown", None),
            Status::Success => (1, "Success", None),
            Status::Failure(why) => (2, "Failure", Some(why)),
            Status::New => (1, "New", None),
        };
        out.insert("status_id".into(), json!(id));
        out.insert("status".into(), json!(name));
        if let Some(detail) = detail {
            out.insert("status_detail".into(), json!(detail));
        }
    }
}

/// OCSF `severity_id` from an alert's severity; other records are informational.
fn severity(name: &str) -> u8 {
    match name {
        "critical" => 5,
        "high" => 4,
        "medium" => 3,
        "low" => 2,
        _ => 1,
    }
}

/// `actor` (the principal, its tenant as the user's organization, its
/// session) and `api` (the tool called).
fn api_activity(record: &Map<String, Value>, out: &mut Map<String, Value>) {
    let text = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or_default();
    let user = match record.get("tenant").and_then(Value::as_str) {
        Some(tenant) => json!({"uid": text("principal"), "org": {"uid": tenant}}),
        None => json!({"uid": text("principal")}),
    };
    out.insert(
        "actor".into(),
        json!({"user": user, "session": {"uid": text("session")}}),
    );
    out.insert(
        "api".into(),
        json!({
            "operation": format!("{}/{}", text("server"), text("name")),
            "service": {"name": text("server")},
            "request": {"uid": record.get("call").cloned().unwrap_or(Value::Null)},
        }),
    );
    if let Some(micros) = record.get("latency_micros").and_then(Value::as_u64) {
        out.insert("duration".into(), json!(micros / 1000));
    }
}

/// `user` and `session` of an identity record.
fn identity(record: &Map<String, Value>, out: &mut Map<String, Value>) {
    if let Some(principal) = record.get("principal").and_then(Value::as_str) {
        out.insert("user".into(), json!({"uid": principal}));
    }
    if let Some(session) = record.get("session").and_then(Value::as_str) {
        out.insert("session".into(), json!({"uid": session}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaped(record: Value, seq: u64) -> Value {
        let Value::Object(map) = record else {
            return Value::Null;
        };
        shape(&map, ("seq", seq), 1_700_000_000_000)
    }

    #[test]
    fn a_completed_call_is_successful_api_activity_and_keeps_its_record() {
        let record = json!({"event": "call-outcome", "principal": "alice", "tenant": "acme", "session": "s1", "call": 7,
            "server": "files", "name": "read_file", "effect": "read", "latency_micros": 2500,
            "outcome": {"status": "completed"}});
        let e = shaped(record.clone(), 12);
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["category_uid"], 6);
        assert_eq!(e["activity_id"], 2);
        assert_eq!(e["type_uid"], 600302);
        assert_eq!(e["status_id"], 1);
        assert_eq!(e["api"]["operation"], "files/read_file");
        assert_eq!(e["actor"]["user"]["uid"], "alice");
        assert_eq!(e["actor"]["user"]["org"]["uid"], "acme");
        assert_eq!(e["duration"], 2);
        assert_eq!(e["metadata"]["sequence"], 12);
        assert_eq!(e["metadata"]["version"], VERSION);
        assert_eq!(e["unmapped"]["palisade"], record);
    }

    #[test]
    fn a_denied_call_fails_and_an_intent_is_of_unknown_status() {
        let denied = shaped(
            json!({"event": "call-outcome", "effect": "irreversible", "outcome": {"status": "denied"}}),
            1,
        );
        assert_eq!(
            (
                denied["activity_id"].clone(),
                denied["status_id"].clone(),
                denied["status_detail"].clone()
            ),
            (json!(4), json!(2), json!("denied"))
        );
        let intent = shaped(json!({"event": "call-intent", "effect": "write"}), 0);
        assert_eq!(
            (intent["activity_id"].clone(), intent["status_id"].clone()),
            (json!(3), json!(0))
        );
    }

    #[test]
    fn sessions_and_failed_credentials_are_authentication() {
        let opened = shaped(
            json!({"event": "session-opened", "principal": "bob", "session": "s9"}),
            3,
        );
        assert_eq!(
            (opened["class_uid"].clone(), opened["activity_id"].clone()),
            (json!(3002), json!(1))
        );
        assert_eq!(opened["user"]["uid"], "bob");
        let closed = shaped(json!({"event": "session-closed"}), 4);
        assert_eq!(closed["activity_id"], 2);
        let failed = shaped(
            json!({"event": "authentication-failed", "credential": "jwt", "reason": "expired"}),
            5,
        );
        assert_eq!(
            (
                failed["status_id"].clone(),
                failed["status_detail"].clone(),
                failed["auth_protocol"].clone()
            ),
            (json!(2), json!("expired"), json!("jwt"))
        );
    }

    #[test]
    fn an_alert_is_a_detection_finding_with_its_severity() {
        let e = shaped(
            json!({"event": "alert", "rule": "egress-not-allowlisted", "severity": "critical",
                   "principal": "eve", "message": "outbound request to a non-allowlisted domain"}),
            40,
        );
        assert_eq!(
            (e["class_uid"].clone(), e["severity_id"].clone()),
            (json!(2004), json!(5))
        );
        assert_eq!(e["finding_info"]["uid"], "egress-not-allowlisted-40");
        assert_eq!(e["finding_info"]["types"][0], "egress-not-allowlisted");
    }

    #[test]
    fn egress_is_network_activity_and_anything_else_a_base_event() {
        let e = shaped(
            json!({"event": "egress", "host": "evil.example", "port": 443, "verdict": "refused", "code": "not-allowlisted"}),
            2,
        );
        assert_eq!(
            (e["class_uid"].clone(), e["status_id"].clone()),
            (json!(4001), json!(2))
        );
        assert_eq!(e["dst_endpoint"]["hostname"], "evil.example");
        let other = shaped(json!({"event": "gateway-started"}), 0);
        assert_eq!(
            (other["class_uid"].clone(), other["type_uid"].clone()),
            (json!(0), json!(99))
        );
    }
}
