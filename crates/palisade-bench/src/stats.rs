//! Latency percentiles and throughput of one run, as the one-line JSON `mcp-load` prints.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one run measured. Latencies are of successful calls only; `calls`
/// counts every call, failed or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub calls: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub calls_per_s: f64,
}

impl Summary {
    /// Summarises per-call latencies (nanoseconds) measured over `elapsed`.
    pub fn new(mut latencies_ns: Vec<u64>, errors: u64, elapsed: Duration) -> Self {
        latencies_ns.sort_unstable();
        let calls = latencies_ns.len() as u64 + errors;
        let seconds = elapsed.as_secs_f64();
        let calls_per_s = if seconds > 0.0 {
            (calls as f64 / seconds).round()
        } else {
            0.0
        };
        Self {
            calls,
            errors,
            p50_us: micros(percentile(&latencies_ns, 50.0)),
            p90_us: micros(percentile(&latencies_ns, 90.0)),
            p99_us: micros(percentile(&latencies_ns, 99.0)),
            max_us: micros(latencies_ns.last().copied().unwrap_or(0)),
            calls_per_s,
        }
    }
}

impl Summary {
    /// Combines repeated runs of one scenario: calls and errors add up, the
    /// maximum is the largest, every other figure is the median run's, so one
    /// run disturbed by something else on the machine does not move the result.
    pub fn median_of(runs: &[Summary]) -> Option<Summary> {
        let median = |field: fn(&Summary) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(field).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(0.0)
        };
        let first = runs.first()?;
        Some(Summary {
            calls: runs.iter().map(|r| r.calls).sum(),
            errors: runs.iter().map(|r| r.errors).sum(),
            p50_us: median(|r| r.p50_us),
            p90_us: median(|r| r.p90_us),
            p99_us: median(|r| r.p99_us),
            max_us: runs.iter().map(|r| r.max_us).fold(first.max_us, f64::max),
            calls_per_s: median(|r| r.calls_per_s),
        })
    }
}

/// Nearest-rank percentile of sorted values; 0 when there are none.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied().unwrap_or(0)
}

/// Nanoseconds as microseconds with one decimal.
fn micros(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let check = |values: &[u64], p: f64, expected: u64| {
            assert_eq!(percentile(values, p), expected, "p{p} of {values:?}");
        };
        let hundred: Vec<u64> = (1..=100).collect();
        check(&hundred, 50.0, 50);
        check(&hundred, 99.0, 99);
        check(&hundred, 100.0, 100);
        check(&[7], 50.0, 7);
        check(&[7], 99.0, 7);
        check(&[1, 2], 50.0, 1);
        check(&[1, 2], 99.0, 2);
        check(&[], 50.0, 0);
    }

    #[test]
    fn summary_counts_errors_and_rounds_to_a_tenth_of_a_microsecond() {
        let s = Summary::new(vec![3_000, 1_000, 2_049], 1, Duration::from_secs(2));
        assert_eq!(s.calls, 4);
        assert_eq!(s.errors, 1);
        assert_eq!(s.p50_us, 2.0);
        assert_eq!(s.p99_us, 3.0);
        assert_eq!(s.max_us, 3.0);
        assert_eq!(s.calls_per_s, 2.0);
    }

    #[test]
    fn repeated_runs_combine_into_their_median() {
        let run = |p50: f64, max: f64, rate: f64| Summary {
            calls: 10,
            errors: 1,
            p50_us: p50,
            p90_us: p50,
            p99_us: p50 * 2.0,
            max_us: max,
            calls_per_s: rate,
        };
        let runs = [
            run(30.0, 90.0, 100.0),
            run(10.0, 500.0, 300.0),
            run(20.0, 70.0, 200.0),
        ];
        let m = Summary::median_of(&runs).unwrap();
        assert_eq!((m.calls, m.errors), (30, 3));
        assert_eq!(
            (m.p50_us, m.p99_us, m.max_us, m.calls_per_s),
            (20.0, 40.0, 500.0, 200.0)
        );
        assert_eq!(Summary::median_of(&runs[..1]).unwrap(), runs[0]);
        assert_eq!(Summary::median_of(&[]), None);
    }

    #[test]
    fn the_json_line_has_the_documented_fields() {
        let s = Summary::new(vec![1_000], 0, Duration::from_secs(1));
        let v = serde_json::to_value(&s).unwrap();
        for field in ["calls", "errors", "p50_us", "p99_us", "calls_per_s"] {
            assert!(v.get(field).is_some(), "missing {field} in {v}");
        }
    }
}
