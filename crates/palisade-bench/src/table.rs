//! The comparison table `scripts/bench-gateway` prints: each scenario beside its direct baseline.
//!
//! Input is one line per scenario, tab-separated: the scenario's name, the
//! name of the scenario it is compared with (`-` for a baseline) and the
//! JSON summary `mcp-load` printed for it. A scenario may appear on several
//! lines (repeated rounds): its row then shows the median round.

use std::fmt::Write as _;

use crate::stats::Summary;

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub scenario: String,
    pub baseline: Option<String>,
    /// How many runs `summary` combines.
    pub rounds: usize,
    pub summary: Summary,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("line {line}: expected `scenario<TAB>baseline<TAB>summary`")]
    Shape { line: usize },
    #[error("line {line}: the summary is not mcp-load's JSON: {source}")]
    Summary {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {line}: baseline `{baseline}` is not an earlier scenario")]
    UnknownBaseline { line: usize, baseline: String },
}

/// Reads the rows, checking that every baseline names an earlier row, and
/// combines the rounds of each scenario, in order of first appearance.
pub fn parse_rows(text: &str) -> Result<Vec<Row>, TableError> {
    let mut runs: Vec<(String, Option<String>, Vec<Summary>)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let mut fields = raw.splitn(3, '\t');
        let (Some(scenario), Some(baseline), Some(json)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(TableError::Shape { line });
        };
        let summary = serde_json::from_str(json.trim())
            .map_err(|source| TableError::Summary { line, source })?;
        let baseline = match baseline.trim() {
            "-" | "" => None,
            name if runs.iter().any(|(s, _, _)| s == name) => Some(name.to_owned()),
            name => {
                return Err(TableError::UnknownBaseline {
                    line,
                    baseline: name.to_owned(),
                });
            }
        };
        let scenario = scenario.trim();
        match runs.iter_mut().find(|(s, _, _)| s == scenario) {
            Some((_, _, summaries)) => summaries.push(summary),
            None => runs.push((scenario.to_owned(), baseline, vec![summary])),
        }
    }
    Ok(runs
        .into_iter()
        .filter_map(|(scenario, baseline, summaries)| {
            Some(Row {
                rounds: summaries.len(),
                summary: Summary::median_of(&summaries)?,
                scenario,
                baseline,
            })
        })
        .collect())
}

/// A markdown table; overhead columns are filled for rows with a baseline.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | calls | errors | p50 | p99 | calls/s | overhead p50 / p99 vs direct | calls/s vs direct |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let s = &row.summary;
        let base = row
            .baseline
            .as_ref()
            .and_then(|name| rows.iter().find(|r| &r.scenario == name))
            .map(|r| &r.summary);
        let (overhead, throughput) = match base {
            Some(b) => (
                format!(
                    "{} / {}",
                    signed_ms(s.p50_us - b.p50_us),
                    signed_ms(s.p99_us - b.p99_us)
                ),
                percent(s.calls_per_s, b.calls_per_s),
            ),
            None => ("baseline".to_owned(), "baseline".to_owned()),
        };
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            row.scenario,
            s.calls,
            s.errors,
            ms(s.p50_us),
            ms(s.p99_us),
            s.calls_per_s,
            overhead,
            throughput
        );
    }
    out
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

fn signed_ms(us: f64) -> String {
    format!("{:+.3} ms", us / 1000.0)
}

fn percent(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.0} %", value / base * 100.0)
    } else {
        "n/a".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECT: &str = r#"{"calls":10,"errors":0,"p50_us":50.0,"p90_us":60.0,"p99_us":100.0,"max_us":120.0,"calls_per_s":20000.0}"#;
    const GATEWAY: &str = r#"{"calls":10,"errors":1,"p50_us":150.0,"p90_us":160.0,"p99_us":350.0,"max_us":400.0,"calls_per_s":10000.0}"#;

    #[test]
    fn renders_overhead_against_the_baseline() {
        let input = format!("direct\t-\t{DIRECT}\n\nvia gateway\tdirect\t{GATEWAY}\n");
        let rows = parse_rows(&input).unwrap();
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(
            lines[2],
            "| direct | 10 | 0 | 0.050 ms | 0.100 ms | 20000 | baseline | baseline |"
        );
        assert_eq!(
            lines[3],
            "| via gateway | 10 | 1 | 0.150 ms | 0.350 ms | 10000 | +0.100 ms / +0.250 ms | 50 % |"
        );
    }

    #[test]
    fn rounds_of_a_scenario_become_one_row() {
        let input =
            format!("direct\t-\t{DIRECT}\nvia gateway\tdirect\t{GATEWAY}\ndirect\t-\t{DIRECT}\n");
        let rows = parse_rows(&input).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].scenario.as_str(),
                rows[0].rounds,
                rows[0].summary.calls
            ),
            ("direct", 2, 20)
        );
        assert_eq!(
            (rows[1].scenario.as_str(), rows[1].rounds),
            ("via gateway", 1)
        );
    }

    #[test]
    fn refuses_malformed_input() {
        let check = |input: String, needle: &str| {
            let err = parse_rows(&input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?} -> {err}");
        };
        check("only-a-name\n".into(), "line 1: expected");
        check("a\t-\tnot json\n".into(), "line 1: the summary");
        check(format!("a\tb\t{DIRECT}\n"), "baseline `b`");
        check(
            format!("a\t-\t{DIRECT}\nb\tc\t{GATEWAY}\n"),
            "line 2: baseline `c`",
        );
    }
}
