//! Alert rules over sliding windows of audit records, with the seed's rules built in and storms folded.
//!
//! A rule counts the records that match it (an exact value, or one of
//! `a|b|c`, at each dotted path it names; optionally a tool pattern) per
//! principal, over a sliding window, and fires when the count passes its
//! threshold. A baseline rule sums what the matching calls cost instead, and
//! fires when the window's spend passes a multiple of the principal's own
//! average (see [`Baseline`]). A rule that fired for a principal stays quiet
//! for that principal for its `quiet` period, counting what it held back,
//! and says so when it fires next: a runaway loop is one alert, not a storm.
//! Memory is bounded: a window keeps at most `threshold + 1` times, a
//! baseline at most [`BUCKETS_PER_WINDOW`] sums per window of its period, and
//! at most [`MAX_KEYS`] principals per rule are tracked (the stalest are
//! dropped).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palisade_core::glob::glob;
use serde::Serialize;
use serde_json::Value;

/// Principals tracked per rule before the stalest are forgotten.
pub const MAX_KEYS: usize = 65_536;

/// A baseline rule keeps a principal's spend in sums over this fraction of
/// its window: the window it measures is its last ten buckets, the one in
/// progress and the nine before.
pub const BUCKETS_PER_WINDOW: u32 = 10;

/// The longest baseline period, in windows (a week of hours): with
/// [`BUCKETS_PER_WINDOW`], at most 1,680 sums per principal.
pub const MAX_BASELINE_WINDOWS: u32 = 168;

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
    /// Set: the rule sums what the matching calls cost (`cost_micros`)
    /// against the principal's own average instead of counting records,
    /// and `threshold` is unused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// What a baseline rule compares a principal's spend in its window with.
///
/// The average is taken over the part of `period` before the current
/// window (23 hours of a 24-hour period, for a window of an hour), or over
/// the part since the principal's first matching record when that is
/// shorter. A principal first seen less than two windows ago is not judged:
/// it has no full window of its own before the current one to average,
/// and a first hour of spend always beats an average of nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Baseline {
    #[serde(serialize_with = "as_text")]
    pub period: Duration,
    /// Fires when the window's spend is more than this many times the
    /// average spend per window…
    pub factor: u64,
    /// …and more than this, in micro-dollars, so that small sums do not alert.
    pub min_spend_micros: u64,
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

/// The seed's four rules.
pub fn builtin() -> Vec<Rule> {
    let minute = Duration::from_secs(60);
    let hour = 60 * minute;
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
            baseline: None,
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
            baseline: None,
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
            baseline: None,
        },
        Rule {
            name: "spend-above-baseline".into(),
            severity: Severity::High,
            title: "hourly spend above 3× the principal's daily average".into(),
            when: vec![("event".into(), "call-outcome".into())],
            tools: Vec::new(),
            threshold: 0,
            window: hour,
            quiet: hour,
            baseline: Some(Baseline {
                period: 24 * hour,
                factor: 3,
                min_spend_micros: 1_000_000,
            }),
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
    /// A baseline rule's: `count` is then the window's spend and
    /// `threshold` what it had to pass, both in micro-dollars.
    #[serde(flatten)]
    pub spend: Option<Spend>,
}

/// What a baseline alert compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spend {
    /// What `count` and `threshold` are in: `micro-dollars`.
    pub unit: &'static str,
    /// The principal's average spend per window, in micro-dollars.
    pub average: u64,
    pub factor: u64,
    /// The period the average is taken over.
    pub baseline: String,
}

#[derive(Debug, Default)]
struct Window {
    /// A counting rule's: the times of the matching records.
    times: VecDeque<Instant>,
    /// A baseline rule's.
    spending: Spending,
    last_seen: Option<Instant>,
    quiet_until: Option<Instant>,
    suppressed: u64,
}

/// A principal's spend, for a baseline rule: sums over buckets of a tenth
/// of the window, numbered from the principal's first matching record.
#[derive(Debug, Default)]
struct Spending {
    first_seen: Option<Instant>,
    /// (bucket, micro-dollars), oldest first; a bucket without spend is not kept.
    buckets: VecDeque<(u64, u64)>,
}

/// A window that passed its rule: what it measured and what it had to pass.
struct Passed {
    count: u64,
    threshold: u64,
    spend: Option<Spend>,
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

    /// What makes the rule fire, in words (for `palisade alerts rules`).
    pub fn condition(&self) -> String {
        let window = humantime::format_duration(self.window);
        match &self.baseline {
            None => format!("more than {} in {window}", self.threshold),
            Some(b) => format!(
                "spend in {window} above {}× the average per {window} over {}, and above {}",
                b.factor,
                humantime::format_duration(b.period),
                dollars(b.min_spend_micros)
            ),
        }
    }

    /// How long a principal's state means something after its last record.
    fn kept_for(&self) -> Duration {
        let period = self.baseline.map_or(Duration::ZERO, |b| b.period);
        self.window.max(self.quiet).max(period)
    }
}

/// `$1.25`, `$0.00015`.
fn dollars(micros: u64) -> String {
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    let digits = format!("{fraction:06}");
    let trimmed = digits.trim_end_matches('0');
    let shown = if trimmed.len() < 2 {
        digits.get(..2).unwrap_or("00")
    } else {
        trimmed
    };
    format!("${whole}.{shown}")
}

impl Window {
    /// Counts a matching record; passed when more than the threshold are in the window.
    fn count(&mut self, rule: &Rule, now: Instant) -> Option<Passed> {
        self.times.push_back(now);
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > rule.window)
        {
            self.times.pop_front();
        }
        let keep = usize::try_from(rule.threshold.saturating_add(1)).unwrap_or(usize::MAX);
        while self.times.len() > keep {
            self.times.pop_front();
        }
        let count = self.times.len() as u64;
        (count > rule.threshold).then_some(Passed {
            count,
            threshold: rule.threshold,
            spend: None,
        })
    }
}

impl Spending {
    /// Adds what a matching record cost; passed when the window's spend is
    /// above both the floor and `factor` times the average per window.
    /// Only a call that cost something is judged: a free one, or a record
    /// that is not a call's, is history and nothing more.
    fn add(
        &mut self,
        record: &Value,
        window: Duration,
        baseline: &Baseline,
        now: Instant,
    ) -> Option<Passed> {
        let first = *self.first_seen.get_or_insert(now);
        let width = (window / BUCKETS_PER_WINDOW).max(Duration::from_nanos(1));
        let bucket_of =
            |d: Duration| u64::try_from(d.as_nanos() / width.as_nanos()).unwrap_or(u64::MAX);
        let now_bucket = bucket_of(now.saturating_duration_since(first));
        let per_window = u64::from(BUCKETS_PER_WINDOW);
        let period = bucket_of(baseline.period);
        while self
            .buckets
            .front()
            .is_some_and(|(b, _)| b.saturating_add(period) <= now_bucket)
        {
            self.buckets.pop_front();
        }
        let cost = record
            .get("cost_micros")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if cost == 0 {
            return None;
        }
        match self.buckets.back_mut() {
            // A record that lost the race for the lock joins the newest bucket.
            Some((b, sum)) if *b >= now_bucket => *sum = sum.saturating_add(cost),
            Some(_) | None => self.buckets.push_back((now_bucket, cost)),
        }
        if now_bucket < 2 * per_window {
            return None;
        }
        // Buckets from here on are the current window; those before, its baseline.
        let current_from = now_bucket.saturating_add(1) - per_window;
        let (mut current, mut before) = (0u64, 0u64);
        for (b, sum) in &self.buckets {
            if *b >= current_from {
                current = current.saturating_add(*sum);
            } else {
                before = before.saturating_add(*sum);
            }
        }
        // Buckets of the period before the current window the principal was seen in.
        let seen = now_bucket
            .saturating_add(1)
            .min(period)
            .checked_sub(per_window)?;
        if seen == 0 {
            return None;
        }
        let per = |n: u64| {
            let scaled = u128::from(n) * u128::from(before) * u128::from(per_window);
            u64::try_from(scaled / u128::from(seen)).unwrap_or(u64::MAX)
        };
        let threshold = per(baseline.factor).max(baseline.min_spend_micros);
        (current > threshold).then(|| Passed {
            count: current,
            threshold,
            spend: Some(Spend {
                unit: "micro-dollars",
                average: per(1),
                factor: baseline.factor,
                baseline: humantime::format_duration(baseline.period).to_string(),
            }),
        })
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
                forget_stalest(&mut windows, now, rule.kept_for());
            }
            let w = windows.entry(who.to_owned()).or_default();
            w.last_seen = Some(now);
            let passed = match &rule.baseline {
                None => w.count(rule, now),
                Some(baseline) => w.spending.add(record, rule.window, baseline, now),
            };
            let Some(passed) = passed else {
                continue;
            };
            if w.quiet_until.is_some_and(|until| now < until) {
                w.suppressed += 1;
                continue;
            }
            w.quiet_until = Some(now + rule.quiet);
            let suppressed = std::mem::take(&mut w.suppressed);
            let message = match &passed.spend {
                None => format!("{}: `{who}`", rule.title),
                Some(spend) => format!(
                    "{}: `{who}` spent {} in {}, against an average of {}",
                    rule.title,
                    dollars(passed.count),
                    humantime::format_duration(rule.window),
                    dollars(spend.average)
                ),
            };
            fired.push(Fired {
                rule: rule.name.clone(),
                severity: rule.severity,
                principal: who.to_owned(),
                message,
                count: passed.count,
                threshold: passed.threshold,
                window: humantime::format_duration(rule.window).to_string(),
                suppressed,
                spend: passed.spend,
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
    on_failure: OnFailure,
    /// Records lost under [`OnFailure::Continue`].
    lost: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// What happens to an action whose record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// It does not happen: the call is refused (the default; no unaudited actions).
    #[default]
    Refuse,
    /// It goes ahead unrecorded; each lost record is counted, logged, and
    /// reported as degraded.
    Continue,
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
        on_failure: OnFailure,
    ) -> Self {
        Self {
            log,
            alerts,
            sink,
            on_failure,
            lost: std::sync::Arc::default(),
        }
    }

    /// How many records were lost under [`OnFailure::Continue`] (shared,
    /// for the gateway's health).
    pub fn lost(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        std::sync::Arc::clone(&self.lost)
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
            // Canonicalized from its text (faster than from a parsed
            // value), then parsed for the rules.
            let canonical = crate::entry::CanonicalRecord::of(line.get().bytes())
                .map_err(|e| failed(format!("audit record refused: {e}")))?;
            let record: Value = serde_json::from_slice(line.get().bytes()).map_err(|e| {
                failed(format!("audit record refused: the record is not JSON: {e}"))
            })?;
            if let Err(e) = self.log.append_canonical(canonical, durability).await {
                if self.on_failure == OnFailure::Refuse {
                    return Err(failed(e.to_string()));
                }
                let lost = self.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                tracing::error!(
                    lost,
                    "audit record lost, the action goes ahead ([audit] on_failure = \"continue\"): {e}"
                );
            }
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

    const MINUTE: Duration = Duration::from_secs(60);
    const DOLLAR: u64 = 1_000_000;

    fn charged(principal: &str, micros: u64) -> Value {
        json!({"event": "call-outcome", "principal": principal, "server": "llm", "name": "complete",
               "outcome": {"status": "completed", "tool_error": false}, "cost_micros": micros})
    }

    fn spend_rule() -> Vec<Rule> {
        builtin()
            .into_iter()
            .filter(|r| r.name == "spend-above-baseline")
            .collect()
    }

    /// Feeds `calls` calls of `micros` each, `every` apart from `from`; the
    /// alerts they raise, and when the next call would come.
    fn spend(
        alerts: &Alerts,
        who: &str,
        from: Instant,
        every: Duration,
        calls: u32,
        micros: u64,
    ) -> (Vec<Fired>, Instant) {
        let fired = (0..calls)
            .flat_map(|i| alerts.observe(&charged(who, micros), from + every * i))
            .collect();
        (fired, from + every * calls)
    }

    #[test]
    fn spend_fires_above_three_times_the_average_with_history() {
        let alerts = Alerts::new(builtin());
        let t0 = Instant::now();
        // Five hours at $1.20 an hour: a dime every 5 minutes.
        let (fired, t) = spend(&alerts, "alice", t0, 5 * MINUTE, 60, DOLLAR / 10);
        assert!(fired.is_empty(), "{fired:?}");
        // Then $1 a minute: over $3.60 within the hour it fires, once.
        let (fired, _) = spend(&alerts, "alice", t, MINUTE, 10, DOLLAR);
        assert_eq!(fired.len(), 1, "{fired:?}");
        let alert = &fired[0];
        assert_eq!(
            (
                alert.rule.as_str(),
                alert.severity,
                alert.principal.as_str()
            ),
            ("spend-above-baseline", Severity::High, "alice")
        );
        let spend = alert.spend.as_ref().unwrap();
        assert_eq!((spend.unit, spend.factor), ("micro-dollars", 3));
        assert_eq!(spend.baseline, "1day");
        // The average is about $1.20 (to a bucket, a tenth of an hour), so
        // the window had to pass about $3.60: its last ten dimes and three
        // dollars did.
        assert!(alert.count > alert.threshold, "{alert:?}");
        assert!((1_150_000..1_250_000).contains(&spend.average), "{alert:?}");
        assert!(
            (3_450_000..3_750_000).contains(&alert.threshold),
            "{alert:?}"
        );
        assert_eq!(alert.count, 4 * DOLLAR, "{alert:?}");
        assert!(
            alert.message.contains("`alice` spent $"),
            "{}",
            alert.message
        );
        // Each principal is judged on its own history: bob has none yet.
        assert!(alerts.observe(&charged("bob", 50 * DOLLAR), t).is_empty());
    }

    #[test]
    fn steady_spend_does_not_fire() {
        for (every, micros) in [
            (MINUTE, DOLLAR),          // $60 an hour, for two days
            (10 * MINUTE, 5 * DOLLAR), // $30 an hour in lumps
            (30 * MINUTE, 2 * DOLLAR), // one call a half hour
        ] {
            let alerts = Alerts::new(spend_rule());
            let calls = u32::try_from(48 * 60 * MINUTE.as_secs() / every.as_secs()).unwrap();
            let (fired, _) = spend(&alerts, "alice", Instant::now(), every, calls, micros);
            assert!(fired.is_empty(), "every {every:?}: {fired:?}");
        }
    }

    #[test]
    fn spend_without_history_or_under_the_floor_does_not_fire() {
        let alerts = Alerts::new(spend_rule());
        let t0 = Instant::now();
        // A fresh principal spends $100 in its first two hours: nothing to
        // compare it with yet.
        let (fired, t) = spend(&alerts, "new", t0, MINUTE, 119, DOLLAR);
        assert!(fired.is_empty(), "{fired:?}");
        // Free calls are history: two quiet hours, then a first spend.
        for i in 0..120 {
            let free = charged("fresh", 0);
            assert!(alerts.observe(&free, t + MINUTE * i).is_empty());
        }
        let (fired, _) = spend(&alerts, "fresh", t + 120 * MINUTE, MINUTE, 2, 3 * DOLLAR);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].spend.as_ref().unwrap().average, 0);
        // A cent an hour for five hours, then 90 cents within the hour: 90
        // times the average, but under the $1 floor.
        let (fired, t) = spend(&alerts, "thrifty", t0, 60 * MINUTE, 5, DOLLAR / 100);
        assert!(fired.is_empty(), "{fired:?}");
        let (fired, t) = spend(&alerts, "thrifty", t, MINUTE, 9, DOLLAR / 10);
        assert!(fired.is_empty(), "{fired:?}");
        // One more dime passes it.
        let (fired, _) = spend(&alerts, "thrifty", t, MINUTE, 2, DOLLAR / 10);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].threshold, DOLLAR);
    }

    #[test]
    fn a_spending_storm_is_one_alert_that_counts_what_it_held_back() {
        let alerts = Alerts::new(spend_rule());
        let t0 = Instant::now();
        let (_, t) = spend(&alerts, "alice", t0, 10 * MINUTE, 30, DOLLAR / 10);
        // $5 a minute: the first minute fires; the rest of the hour is held back.
        let (fired, t) = spend(&alerts, "alice", t, MINUTE, 60, 5 * DOLLAR);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].suppressed, 0);
        // Still spending past its quiet hour: the next alert names the 59.
        let (fired, _) = spend(&alerts, "alice", t, MINUTE, 1, 50 * DOLLAR);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].suppressed, 59);
    }

    #[test]
    fn spend_is_kept_in_bounded_buckets() {
        let alerts = Alerts::new(spend_rule());
        spend(
            &alerts,
            "alice",
            Instant::now(),
            MINUTE,
            3 * 24 * 60,
            DOLLAR,
        );
        let windows = alerts.windows[0].lock().unwrap();
        let kept = windows["alice"].spending.buckets.len();
        // 24 hours in tenths of an hour.
        assert!(kept <= 240, "{kept}");
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
