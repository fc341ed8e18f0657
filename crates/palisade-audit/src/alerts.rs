//! Alert rules over sliding windows of audit records, with the seed's rules built in and storms folded.
//!
//! A rule counts the records that match it (an exact value, or one of
//! `a|b|c`, at each dotted path it names; optionally a tool pattern) per
//! principal, over a sliding window, and fires when the count passes its
//! threshold. A rule that fired for a principal stays quiet for that
//! principal for its `quiet` period, counting what it held back, and says so
//! when it fires next: a runaway loop is one alert, not a storm. Memory is
//! bounded: a window keeps at most `threshold + 1` times, and at most
//! [`MAX_KEYS`] principals per rule are tracked (the stalest are dropped).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palisade_core::glob::glob;
use serde::Serialize;
use serde_json::Value;

/// Principals tracked per rule before the stalest are forgotten.
pub const MAX_KEYS: usize = 65_536;

/// How urgent an alert is (OCSF severities, lower-cased).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub name: String,
    pub severity: Severity,
    /// What the rule is about, for the alert's message.
    pub title: String,
    /// Dotted path → accepted values (`a|b` accepts either).
    pub when: Vec<(String, String)>,
    /// `SERVER/NAME` patterns (`*` matches any run); empty: any record.
    pub tools: Vec<String>,
    /// Fires when more than this many match within `window`.
    pub threshold: u64,
    #[serde(serialize_with = "as_text")]
    pub window: Duration,
    /// After firing, not again for the same principal for this long.
    #[serde(serialize_with = "as_text")]
    pub quiet: Duration,
}

fn as_text<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// The tools a "file read" is, in the reference filesystem server and its kin.
pub const FILE_READ_TOOLS: [&str; 4] = [
    "*/read_file",
    "*/read_text_file",
    "*/read_media_file",
    "*/read_multiple_files",
];

/// The seed's rules that count records (its fourth, hourly spend against
/// the daily average, needs the cost of each call in the log, which is not
/// recorded yet).
pub fn builtin() -> Vec<Rule> {
    let minute = Duration::from_secs(60);
    vec![
        Rule {
            name: "egress-not-allowlisted".into(),
            severity: Severity::Critical,
            title: "outbound request to a non-allowlisted domain".into(),
            when: vec![
                ("event".into(), "egress".into()),
                ("verdict".into(), "refused".into()),
                (
                    "code".into(),
                    "not-allowlisted|method-or-path|address-not-allowed|sni-mismatch".into(),
                ),
            ],
            tools: Vec::new(),
            threshold: 0,
            window: minute,
            quiet: minute,
        },
        Rule {
            name: "file-reads".into(),
            severity: Severity::High,
            title: "more than 100 file reads in 5 minutes".into(),
            when: vec![("event".into(), "call-outcome".into())],
            tools: FILE_READ_TOOLS.iter().map(|t| (*t).to_owned()).collect(),
            threshold: 100,
            window: 5 * minute,
            quiet: 5 * minute,
        },
        Rule {
            name: "permission-denials".into(),
            severity: Severity::Medium,
            title: "more than 5 permission denials in 1 minute".into(),
            when: vec![
                ("event".into(), "call-outcome".into()),
                ("outcome.status".into(), "denied".into()),
                ("outcome.stage".into(), "authorize".into()),
            ],
            tools: Vec::new(),
            threshold: 5,
            window: minute,
            quiet: minute,
        },
    ]
}

/// An alert to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fired {
    pub rule: String,
    pub severity: Severity,
    pub principal: String,
    pub message: String,
    /// Matching records within the window when it fired.
    pub count: u64,
    pub threshold: u64,
    pub window: String,
    /// Times the rule would have fired for this principal since it last
    /// did, held back by `quiet`.
    pub suppressed: u64,
}

#[derive(Debug, Default)]
struct Window {
    times: VecDeque<Instant>,
    last_seen: Option<Instant>,
    quiet_until: Option<Instant>,
    suppressed: u64,
}

/// The rules and their windows.
#[derive(Debug)]
pub struct Alerts {
    rules: Vec<Rule>,
    windows: Vec<Mutex<HashMap<String, Window>>>,
}

fn at<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(record, |v, key| v.get(key))
}

fn text_of(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("truncated").and_then(Value::as_str),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Array(_) => None,
    }
}

impl Rule {
    fn matches(&self, record: &Value) -> bool {
        let fields = self.when.iter().all(|(path, accepted)| {
            let found = at(record, path);
            match found {
                Some(Value::String(s)) => accepted.split('|').any(|a| a == s),
                Some(Value::Bool(b)) => accepted.split('|').any(|a| a == b.to_string()),
                Some(Value::Number(n)) => accepted.split('|').any(|a| a == n.to_string()),
                Some(_) | None => false,
            }
        });
        if !fields {
            return false;
        }
        if self.tools.is_empty() {
            return true;
        }
        let server = record.get("server").and_then(text_of).unwrap_or("");
        let name = record.get("name").and_then(text_of).unwrap_or("");
        let tool = format!("{server}/{name}");
        self.tools.iter().any(|p| glob(p, &tool))
    }
}

/// Who a record is about: a call's principal, or an egress connection's.
fn principal(record: &Value) -> Option<&str> {
    record
        .get("principal")
        .and_then(Value::as_str)
        .or_else(|| at(record, "who.principal").and_then(Value::as_str))
}

impl Alerts {
    pub fn new(rules: Vec<Rule>) -> Self {
        let windows = rules.iter().map(|_| Mutex::new(HashMap::new())).collect();
        Self { rules, windows }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Counts `record` against every rule; returns the alerts it raises.
    pub fn observe(&self, record: &Value, now: Instant) -> Vec<Fired> {
        let mut fired = Vec::new();
        for (rule, windows) in self.rules.iter().zip(&self.windows) {
            if !rule.matches(record) {
                continue;
            }
            let who = principal(record).unwrap_or("unknown");
            let Ok(mut windows) = windows.lock() else {
                continue;
            };
            if windows.len() >= MAX_KEYS && !windows.contains_key(who) {
                forget_stalest(&mut windows, now, rule.window.max(rule.quiet));
            }
            let w = windows.entry(who.to_owned()).or_default();
            w.last_seen = Some(now);
            w.times.push_back(now);
            while w
                .times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > rule.window)
            {
                w.times.pop_front();
            }
            let keep = usize::try_from(rule.threshold.saturating_add(1)).unwrap_or(usize::MAX);
            while w.times.len() > keep {
                w.times.pop_front();
            }
            let count = w.times.len() as u64;
            if count <= rule.threshold {
                continue;
            }
            if w.quiet_until.is_some_and(|until| now < until) {
                w.suppressed += 1;
                continue;
            }
            w.quiet_until = Some(now + rule.quiet);
            let suppressed = std::mem::take(&mut w.suppressed);
            fired.push(Fired {
                rule: rule.name.clone(),
                severity: rule.severity,
                principal: who.to_owned(),
                message: format!("{}: `{who}`", rule.title),
                count,
                threshold: rule.threshold,
                window: humantime::format_duration(rule.window).to_string(),
                suppressed,
            });
        }
        fired
    }
}

/// Drops the windows nothing has touched for `idle`, or else the stalest tenth.
fn forget_stalest(windows: &mut HashMap<String, Window>, now: Instant, idle: Duration) {
    windows.retain(|_, w| {
        w.last_seen
            .is_some_and(|t| now.saturating_duration_since(t) <= idle)
    });
    if windows.len() >= MAX_KEYS {
        let mut seen: Vec<Instant> = windows.values().filter_map(|w| w.last_seen).collect();
        seen.sort_unstable();
        if let Some(cut) = seen.get(seen.len() / 10).copied() {
            windows.retain(|_, w| w.last_seen.is_some_and(|t| t > cut));
        }
    }
}

/// What receives each alert as it fires (it must not block: the gateway
/// queues it and records it apart from the call that raised it).
pub type AlertSink = std::sync::Arc<dyn Fn(Fired) + Send + Sync>;

/// The audit sink with the rules watching: every record appended to the
/// log is then counted against them.
pub struct Watched {
    log: std::sync::Arc<crate::AuditLog>,
    alerts: std::sync::Arc<Alerts>,
    sink: AlertSink,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("log", &self.log)
            .field("rules", &self.alerts.rules.len())
            .finish_non_exhaustive()
    }
}

impl Watched {
    pub fn new(
        log: std::sync::Arc<crate::AuditLog>,
        alerts: std::sync::Arc<Alerts>,
        sink: AlertSink,
    ) -> Self {
        Self { log, alerts, sink }
    }
}

impl palisade_core::stage::Audit for Watched {
    fn append<'a>(
        &'a self,
        line: &'a palisade_core::Redacted<palisade_core::AuditLine>,
        durability: palisade_core::Durability,
    ) -> palisade_core::stage::StageFuture<'a, ()> {
        Box::pin(async move {
            let failed = |e: String| palisade_core::stage::StageError::new(e);
            // Parsed once: for its canonical form and for the rules.
            let record: Value = serde_json::from_slice(line.get().bytes()).map_err(|e| {
                failed(format!("audit record refused: the record is not JSON: {e}"))
            })?;
            let canonical = crate::entry::CanonicalRecord::from_value(&record)
                .map_err(|e| failed(format!("audit record refused: {e}")))?;
            self.log
                .append_canonical(canonical, durability)
                .await
                .map_err(|e| failed(e.to_string()))?;
            for fired in self.alerts.observe(&record, Instant::now()) {
                (self.sink)(fired);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(principal: &str, name: &str) -> Value {
        json!({"event": "call-outcome", "principal": principal, "server": "files", "name": name,
               "outcome": {"status": "completed", "tool_error": false}})
    }

    fn denied(principal: &str, stage: &str) -> Value {
        json!({"event": "call-outcome", "principal": principal, "server": "mail", "name": "send",
               "outcome": {"status": "denied", "stage": stage, "code": "forbidden"}})
    }

    #[test]
    fn file_reads_fire_past_100_in_5_minutes_once_per_storm() {
        let alerts = Alerts::new(builtin());
        let t0 = Instant::now();
        let mut fired = Vec::new();
        for i in 0..100 {
            fired.extend(alerts.observe(&read("alice", "read_file"), t0 + Duration::from_secs(i)));
        }
        assert!(fired.is_empty(), "{fired:?}");
        // Other tools and other principals count apart.
        assert!(
            alerts
                .observe(&read("alice", "write_file"), t0 + Duration::from_secs(100))
                .is_empty()
        );
        assert!(
            alerts
                .observe(
                    &read("bob", "read_text_file"),
                    t0 + Duration::from_secs(100)
                )
                .is_empty()
        );
        let first = alerts.observe(
            &read("alice", "read_text_file"),
            t0 + Duration::from_secs(101),
        );
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(
            (first[0].rule.as_str(), first[0].count),
            ("file-reads", 101)
        );
        assert_eq!(first[0].severity, Severity::High);
        // The storm goes on: held back, counted, and named when it fires again.
        for i in 0..500 {
            assert!(
                alerts
                    .observe(
                        &read("alice", "read_file"),
                        t0 + Duration::from_secs(102) + Duration::from_millis(i)
                    )
                    .is_empty()
            );
        }
        let later = alerts.observe(
            &read("alice", "read_file"),
            t0 + Duration::from_secs(102 + 300),
        );
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].suppressed, 500);
    }

    #[test]
    fn reads_spread_over_more_than_the_window_do_not_fire() {
        let alerts = Alerts::new(builtin());
        let t0 = Instant::now();
        for i in 0..1000 {
            // One every 4 s: 75 per 5 minutes.
            let fired =
                alerts.observe(&read("alice", "read_file"), t0 + Duration::from_secs(4 * i));
            assert!(fired.is_empty(), "at {i}: {fired:?}");
        }
    }

    #[test]
    fn permission_denials_count_only_authorization() {
        let alerts = Alerts::new(builtin());
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(
                alerts
                    .observe(&denied("alice", "limits"), t0 + Duration::from_secs(i))
                    .is_empty()
            );
        }
        for i in 0..5 {
            assert!(
                alerts
                    .observe(&denied("alice", "authorize"), t0 + Duration::from_secs(i))
                    .is_empty()
            );
        }
        let fired = alerts.observe(&denied("alice", "authorize"), t0 + Duration::from_secs(5));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].severity, Severity::Medium);
    }

    #[test]
    fn one_refused_destination_is_critical_at_once() {
        let alerts = Alerts::new(builtin());
        let refused = json!({"event": "egress", "who": {"origin": "sandbox", "principal": "alice"},
                             "verdict": "refused", "code": "not-allowlisted", "host": "evil.example"});
        let fired = alerts.observe(&refused, Instant::now());
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].severity, fired[0].principal.as_str()),
            (Severity::Critical, "alice")
        );
        let unreachable = json!({"event": "egress", "who": {"principal": "bob"}, "verdict": "refused", "code": "unreachable"});
        assert!(alerts.observe(&unreachable, Instant::now()).is_empty());
        let allowed = json!({"event": "egress", "who": {"principal": "bob"}, "verdict": "allowed"});
        assert!(alerts.observe(&allowed, Instant::now()).is_empty());
    }

    #[test]
    fn tracked_principals_are_bounded() {
        let rule = Rule {
            threshold: 1000,
            ..builtin().remove(1)
        };
        let alerts = Alerts::new(vec![rule]);
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            alerts.observe(&read(&format!("p{i}"), "read_file"), t0);
        }
        assert!(alerts.windows[0].lock().unwrap().len() <= MAX_KEYS);
    }
}
