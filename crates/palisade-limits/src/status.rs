//! Usage against each limit, read back from the counter store: what `palisade limits status` shows.

use serde::Serialize;

use crate::backend::{Backend, BackendError, Held, escape, unescape};
use crate::gcra;
use crate::spec::{Calendar, Micros};
use crate::stage::{Counts, RuleLimit, Settings};

/// One counter's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The rule's name, or `daily budget`.
    pub limit: String,
    /// `rate`, `quota` or `budget`.
    pub kind: &'static str,
    /// The limit as configured (`30/1m`, `100000/1d`, `$50.00`).
    pub configured: String,
    /// What the counter is kept per (`principal=alice`, `principal=alice tool=fs/write`).
    pub scope: String,
    pub used: u64,
    pub capacity: u64,
    pub unit: &'static str,
    /// When the counter is empty (a rate) or resets (a quota, the budget), in ms from now.
    pub resets_in_ms: u64,
}

fn scope(dims: &str) -> String {
    dims.split(':')
        .map(|part| match part.split_once('=') {
            Some((dim, value)) => format!("{dim}={}", unescape(value)),
            None => unescape(part),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every counter in the store, or those of one principal; each rule the
/// principal falls under is listed even when it has not been used yet.
pub async fn report(
    settings: &Settings,
    backend: &dyn Backend,
    now: u64,
    principal: Option<&str>,
) -> Result<Vec<Line>, BackendError> {
    let prefix = &settings.prefix;
    let wanted = principal.map(|p| format!("principal={}", escape(p)));
    let mine = |dims: &str| {
        wanted
            .as_deref()
            .is_none_or(|w| dims.split(':').any(|part| part == w))
    };
    let mut lines = Vec::new();
    for rule in &settings.rules {
        let name = escape(&rule.name);
        let (kind, configured) = match rule.limit {
            RuleLimit::Rate(_) => ("rate", rule.limit.to_string()),
            RuleLimit::Quota(_) => ("count", rule.limit.to_string()),
        };
        let found = backend.scan(&format!("{prefix}:{kind}:{name}:")).await?;
        let before = lines.len();
        for (key, held) in found {
            let rest = key
                .strip_prefix(&format!("{prefix}:{kind}:{name}:"))
                .unwrap_or_default();
            match (rule.limit, held) {
                (RuleLimit::Rate(rate), Held::Rate { tat }) => {
                    if !mine(rest) || tat <= now {
                        continue;
                    }
                    lines.push(Line {
                        limit: rule.name.clone(),
                        kind: "rate",
                        configured: configured.clone(),
                        scope: scope(rest),
                        used: gcra::used(tat, now, rate.emission_nanos()),
                        capacity: rate.burst,
                        unit: "calls",
                        resets_in_ms: (tat - now) / 1_000_000,
                    });
                }
                (RuleLimit::Quota(quota), Held::Count { used }) => {
                    let window = settings.zone.window(quota.window, now);
                    let Some(dims) = rest.strip_prefix(&format!("{}:", escape(&window.name)))
                    else {
                        continue; // an earlier window's counter, not yet expired
                    };
                    if !mine(dims) {
                        continue;
                    }
                    lines.push(Line {
                        limit: rule.name.clone(),
                        kind: "quota",
                        configured: configured.clone(),
                        scope: scope(dims),
                        used,
                        capacity: quota.amount,
                        unit: match rule.counts {
                            Counts::Calls => "calls",
                            Counts::Tokens => "tokens",
                        },
                        resets_in_ms: window.ends_nanos.saturating_sub(now) / 1_000_000,
                    });
                }
                (
                    RuleLimit::Rate(_) | RuleLimit::Quota(_),
                    Held::Rate { .. } | Held::Count { .. } | Held::Money { .. },
                ) => {}
            }
        }
        if let (Some(principal), true) = (principal, lines.len() == before) {
            let (kind, capacity, resets, unit) = match rule.limit {
                RuleLimit::Rate(rate) => ("rate", rate.burst, 0, "calls"),
                RuleLimit::Quota(quota) => {
                    let window = settings.zone.window(quota.window, now);
                    let unit = match rule.counts {
                        Counts::Calls => "calls",
                        Counts::Tokens => "tokens",
                    };
                    (
                        "quota",
                        quota.amount,
                        window.ends_nanos.saturating_sub(now) / 1_000_000,
                        unit,
                    )
                }
            };
            lines.push(Line {
                limit: rule.name.clone(),
                kind,
                configured,
                scope: format!("principal={principal}"),
                used: 0,
                capacity,
                unit,
                resets_in_ms: resets,
            });
        }
    }
    if let Some(budget) = &settings.budget {
        let day = settings.zone.window(Calendar::Day, now);
        let found = backend
            .scan(&format!("{prefix}:money:{}:", escape(&day.name)))
            .await?;
        let before = lines.len();
        for (key, held) in found {
            let dims = key.rsplit_once(':').map_or("", |(_, d)| d);
            if let Held::Money { spent, reserved } = held
                && mine(dims)
            {
                lines.push(Line {
                    limit: "daily budget".into(),
                    kind: "budget",
                    configured: budget.daily.to_string(),
                    scope: scope(dims),
                    used: spent.saturating_add(reserved),
                    capacity: budget.daily.0,
                    unit: "micro-dollars",
                    resets_in_ms: day.ends_nanos.saturating_sub(now) / 1_000_000,
                });
            }
        }
        if let (Some(principal), true) = (principal, lines.len() == before) {
            lines.push(Line {
                limit: "daily budget".into(),
                kind: "budget",
                configured: budget.daily.to_string(),
                scope: format!("principal={principal}"),
                used: 0,
                capacity: budget.daily.0,
                unit: "micro-dollars",
                resets_in_ms: day.ends_nanos.saturating_sub(now) / 1_000_000,
            });
        }
    }
    Ok(lines)
}

impl Line {
    /// "12 of 30 calls", "$12.50 of $50.00".
    pub fn usage(&self) -> String {
        match self.unit {
            "micro-dollars" => format!("{} of {}", Micros(self.used), Micros(self.capacity)),
            unit => format!("{} of {} {unit}", self.used, self.capacity),
        }
    }
}
