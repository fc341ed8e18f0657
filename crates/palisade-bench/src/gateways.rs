//! The side-by-side table of gateways `scripts/bench-gateway` prints for its
//! anchors: palisade and the bridges a user would otherwise put in front of
//! the same stdio server, each at every concurrency measured, with its peak
//! memory, and then every figure as a multiple of a reference gateway's.
//!
//! Input is one line per measurement, tab-separated: the gateway's name, a
//! key and a value. The key is `c=N` with the JSON summary `mcp-load` printed
//! for a run at that concurrency (a gateway and level may appear on several
//! lines, one per round: the table shows the median round, as
//! [`Summary::median_of`] combines them), or `peak-rss` with
//! `{"process_kib": N, "with_children_kib": M}` (the largest is kept).

use std::fmt::Write as _;

use serde::Deserialize;

use crate::stats::Summary;

/// Peak resident memory (`VmHWM`) of a gateway's process, and of it plus
/// every process under it (its stdio upstreams), in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PeakRss {
    pub process_kib: u64,
    pub with_children_kib: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub name: String,
    /// The median round at each level, by the level's key (`c=16`).
    pub levels: Vec<(String, Summary)>,
    pub peak_rss: Option<PeakRss>,
}

impl Gateway {
    fn at(&self, level: &str) -> Option<&Summary> {
        self.levels
            .iter()
            .find(|(key, _)| key == level)
            .map(|(_, summary)| summary)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Every level measured, in order of first appearance.
    pub levels: Vec<String>,
    /// In order of first appearance.
    pub gateways: Vec<Gateway>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewaysError {
    #[error("line {line}: expected `gateway<TAB>key<TAB>value`")]
    Shape { line: usize },
    #[error("line {line}: expected the key `c=N` or `peak-rss`, got `{key}`")]
    Key { line: usize, key: String },
    #[error("line {line}: the summary is not mcp-load's JSON: {source}")]
    Summary {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {line}: expected {{\"process_kib\": N, \"with_children_kib\": M}}: {source}")]
    Rss {
        line: usize,
        source: serde_json::Error,
    },
    #[error("the reference gateway `{name}` was not measured")]
    UnknownReference { name: String },
}

/// Reads the measurements and combines each gateway's rounds.
pub fn parse(text: &str) -> Result<Comparison, GatewaysError> {
    type Runs = Vec<(String, Vec<Summary>)>;
    let mut levels: Vec<String> = Vec::new();
    let mut gateways: Vec<(String, Runs, Option<PeakRss>)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let mut fields = raw.splitn(3, '\t');
        let (Some(name), Some(key), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(GatewaysError::Shape { line });
        };
        let (name, key, value) = (name.trim(), key.trim(), value.trim());
        if name.is_empty() {
            return Err(GatewaysError::Shape { line });
        }
        let position = match gateways.iter().position(|(n, _, _)| n == name) {
            Some(position) => position,
            None => {
                gateways.push((name.to_owned(), Vec::new(), None));
                gateways.len() - 1
            }
        };
        let Some((_, runs, peak)) = gateways.get_mut(position) else {
            return Err(GatewaysError::Shape { line });
        };
        if key == "peak-rss" {
            let rss: PeakRss = serde_json::from_str(value)
                .map_err(|source| GatewaysError::Rss { line, source })?;
            *peak = Some(match *peak {
                Some(old) => PeakRss {
                    process_kib: old.process_kib.max(rss.process_kib),
                    with_children_kib: old.with_children_kib.max(rss.with_children_kib),
                },
                None => rss,
            });
            continue;
        }
        let is_level = key
            .strip_prefix("c=")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_level {
            return Err(GatewaysError::Key {
                line,
                key: key.to_owned(),
            });
        }
        let summary: Summary = serde_json::from_str(value)
            .map_err(|source| GatewaysError::Summary { line, source })?;
        if !levels.iter().any(|l| l == key) {
            levels.push(key.to_owned());
        }
        match runs.iter_mut().find(|(l, _)| l == key) {
            Some((_, summaries)) => summaries.push(summary),
            None => runs.push((key.to_owned(), vec![summary])),
        }
    }
    Ok(Comparison {
        levels,
        gateways: gateways
            .into_iter()
            .map(|(name, runs, peak_rss)| Gateway {
                name,
                levels: runs
                    .into_iter()
                    .filter_map(|(level, summaries)| Some((level, Summary::median_of(&summaries)?)))
                    .collect(),
                peak_rss,
            })
            .collect(),
    })
}

/// Two markdown tables: the figures, then each one divided by `reference`'s
/// (by the first gateway's when `reference` is `None`).
pub fn render(comparison: &Comparison, reference: Option<&str>) -> Result<String, GatewaysError> {
    let reference = match reference {
        Some(name) => comparison
            .gateways
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| GatewaysError::UnknownReference {
                name: name.to_owned(),
            })?,
        None => match comparison.gateways.first() {
            Some(first) => first,
            None => return Ok(String::new()),
        },
    };
    let figures = ["p50", "p99", "calls/s"];
    let header = |first: &str, last: &[&str]| {
        let mut cells = vec![first.to_owned()];
        for level in &comparison.levels {
            cells.extend(figures.iter().map(|f| format!("{level} {f}")));
        }
        cells.extend(last.iter().map(|&c| c.to_owned()));
        let mut text = format!("| {} |\n|---|", cells.join(" | "));
        text.push_str(&"---:|".repeat(cells.len() - 1));
        text.push('\n');
        text
    };

    let mut out = header(
        "gateway",
        &["errors", "peak RSS", "peak RSS with its children"],
    );
    for gateway in &comparison.gateways {
        let mut cells = vec![gateway.name.clone()];
        let mut errors = 0;
        for level in &comparison.levels {
            match gateway.at(level) {
                Some(s) => {
                    errors += s.errors;
                    cells.extend([ms(s.p50_us), ms(s.p99_us), format!("{:.0}", s.calls_per_s)]);
                }
                None => cells.extend(figures.iter().map(|_| "–".to_owned())),
            }
        }
        cells.push(errors.to_string());
        match gateway.peak_rss {
            Some(rss) => cells.extend([mib(rss.process_kib), mib(rss.with_children_kib)]),
            None => cells.extend(["–".to_owned(), "–".to_owned()]),
        }
        // Writing into a String cannot fail.
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }

    out.push('\n');
    out.push_str(&header(
        &format!("÷ {}", reference.name),
        &["peak RSS", "peak RSS with its children"],
    ));
    for gateway in &comparison.gateways {
        if std::ptr::eq(gateway, reference) {
            continue;
        }
        let mut cells = vec![gateway.name.clone()];
        for level in &comparison.levels {
            match (gateway.at(level), reference.at(level)) {
                (Some(s), Some(r)) => cells.extend([
                    ratio(s.p50_us, r.p50_us),
                    ratio(s.p99_us, r.p99_us),
                    ratio(s.calls_per_s, r.calls_per_s),
                ]),
                _ => cells.extend(figures.iter().map(|_| "–".to_owned())),
            }
        }
        match (gateway.peak_rss, reference.peak_rss) {
            (Some(s), Some(r)) => cells.extend([
                ratio(s.process_kib as f64, r.process_kib as f64),
                ratio(s.with_children_kib as f64, r.with_children_kib as f64),
            ]),
            _ => cells.extend(["–".to_owned(), "–".to_owned()]),
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    Ok(out)
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        // Two decimals below 10, none from there (9.996 is `10×`, not `10.00×`).
        let r = value / base;
        let two = format!("{r:.2}");
        if two.len() <= 4 {
            format!("{two}×")
        } else {
            format!("{r:.0}×")
        }
    } else {
        "n/a".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p50: f64, p99: f64, calls_per_s: f64, errors: u64) -> String {
        format!(
            r#"{{"calls":10,"errors":{errors},"p50_us":{p50},"p90_us":{p50},"p99_us":{p99},"max_us":{p99},"calls_per_s":{calls_per_s}}}"#
        )
    }

    #[test]
    fn gateways_side_by_side_and_against_the_reference() {
        let input = [
            format!("direct\tc=1\t{}", run(100.0, 200.0, 9000.0, 0)),
            format!("gw\tc=1\t{}", run(200.0, 400.0, 4000.0, 0)),
            format!("other\tc=1\t{}", run(2000.0, 8000.0, 400.0, 1)),
            format!("gw\tc=16\t{}", run(900.0, 2000.0, 16000.0, 0)),
            format!("other\tc=16\t{}", run(9000.0, 40000.0, 1600.0, 0)),
            "direct\tpeak-rss\t{\"process_kib\":2048,\"with_children_kib\":2048}".to_owned(),
            "gw\tpeak-rss\t{\"process_kib\":10240,\"with_children_kib\":12288}".to_owned(),
            "other\tpeak-rss\t{\"process_kib\":102400,\"with_children_kib\":104448}".to_owned(),
            "other\tpeak-rss\t{\"process_kib\":51200,\"with_children_kib\":51200}".to_owned(),
        ]
        .join("\n");
        let comparison = parse(&input).unwrap();
        assert_eq!(comparison.levels, ["c=1", "c=16"]);
        let table = render(&comparison, Some("gw")).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| gateway | c=1 p50 | c=1 p99 | c=1 calls/s | c=16 p50 | c=16 p99 | c=16 calls/s | errors | peak RSS | peak RSS with its children |"
        );
        assert_eq!(
            lines[1],
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        assert_eq!(
            lines[2],
            "| direct | 0.100 ms | 0.200 ms | 9000 | – | – | – | 0 | 2.0 MiB | 2.0 MiB |"
        );
        assert_eq!(
            lines[4],
            "| other | 2.000 ms | 8.000 ms | 400 | 9.000 ms | 40.000 ms | 1600 | 1 | 100.0 MiB | 102.0 MiB |"
        );
        assert_eq!(lines[5], "");
        assert!(lines[6].starts_with("| ÷ gw | c=1 p50 |"), "{table}");
        assert_eq!(
            lines[8],
            "| direct | 0.50× | 0.50× | 2.25× | – | – | – | 0.20× | 0.17× |"
        );
        assert_eq!(
            lines[9],
            "| other | 10× | 20× | 0.10× | 10× | 20× | 0.10× | 10× | 8.50× |"
        );
        assert_eq!(lines.len(), 10, "{table}");
    }

    #[test]
    fn ratios_keep_two_decimals_below_ten() {
        assert_eq!(ratio(0.5, 1.0), "0.50×");
        assert_eq!(ratio(9.99, 1.0), "9.99×");
        assert_eq!(ratio(9.996, 1.0), "10×");
        assert_eq!(ratio(157.4, 1.0), "157×");
        assert_eq!(ratio(1.0, 0.0), "n/a");
    }

    #[test]
    fn rounds_become_their_median() {
        let input = [
            format!("gw\tc=1\t{}", run(100.0, 200.0, 1000.0, 0)),
            format!("gw\tc=1\t{}", run(300.0, 900.0, 3000.0, 0)),
            format!("gw\tc=1\t{}", run(200.0, 400.0, 2000.0, 2)),
        ]
        .join("\n");
        let comparison = parse(&input).unwrap();
        let summary = &comparison.gateways[0].levels[0].1;
        assert_eq!(
            (
                summary.calls,
                summary.errors,
                summary.p50_us,
                summary.p99_us
            ),
            (30, 2, 200.0, 400.0)
        );
    }

    #[test]
    fn refuses_malformed_input() {
        let check = |input: String, needle: &str| {
            let err = parse(&input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?} -> {err}");
        };
        check("gw\tc=1\n".into(), "line 1: expected `gateway");
        check(format!("gw\tc=x\t{}", run(1.0, 1.0, 1.0, 0)), "key `c=N`");
        check("gw\tc=1\tnot json".into(), "line 1: the summary");
        check("gw\tpeak-rss\t12".into(), "line 1: expected {");
        let comparison = parse(&format!("gw\tc=1\t{}", run(1.0, 1.0, 1.0, 0))).unwrap();
        let err = render(&comparison, Some("nope")).unwrap_err().to_string();
        assert!(err.contains("`nope` was not measured"), "{err}");
    }
}
