//! `[alerts]`: layer 6's alert rules over the audit log (the seed's built in), and the webhook alerts are posted to.
//!
//! ```toml
//! [alerts]
//! webhook = "https://hooks.example.com/palisade"   # optional; must be allowed by [egress]
//!
//! [alerts.rules.file-reads]          # a built-in rule: change what you name
//! threshold = 200
//!
//! [alerts.rules.permission-denials]
//! enabled = false
//!
//! [alerts.rules.spend-above-baseline]   # the baseline rule: spend, not a count
//! window = "1h"
//! baseline = "24h"
//! factor = 3
//! min_spend = "1.00"                  # dollars
//!
//! [alerts.rules.mass-email]          # a rule of your own
//! severity = "high"
//! title = "more than 20 emails in 10 minutes"
//! when = { event = "call-outcome", "outcome.status" = "completed" }
//! tools = ["mail/send_*"]
//! threshold = 20
//! window = "10m"
//! ```

use std::time::Duration;

use indexmap::IndexMap;
use palisade_audit::alerts::{self, Baseline, MAX_BASELINE_WINDOWS, Rule, Severity};
use palisade_limits::spec::Micros;
use serde::Serialize;

use super::ConfigError;
use super::read::{Fields, Secret};
use super::validate::Validator;

#[derive(Debug, Default)]
pub(super) struct RawAlerts {
    webhook: Option<String>,
    rules: IndexMap<String, RawRule>,
}

#[derive(Debug, Default)]
struct RawRule {
    enabled: Option<bool>,
    severity: Option<String>,
    title: Option<String>,
    when: Option<std::collections::BTreeMap<String, String>>,
    tools: Option<Vec<String>>,
    threshold: Option<usize>,
    window: Option<String>,
    quiet: Option<String>,
    spend: RawBaseline,
}

/// A baseline rule's own keys.
#[derive(Debug, Default)]
struct RawBaseline {
    baseline: Option<String>,
    factor: Option<usize>,
    min_spend: Option<String>,
}

impl RawAlerts {
    pub(super) fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = Self {
            webhook: f.string("webhook")?,
            rules: f
                .named_tables("rules")?
                .into_iter()
                .map(|(name, mut t)| {
                    let rule = RawRule {
                        enabled: t.boolean("enabled")?,
                        severity: t.string("severity")?,
                        title: t.string("title")?,
                        when: t.string_table("when", Secret::Shown)?,
                        tools: t.strings("tools")?,
                        threshold: t.whole("threshold")?,
                        window: t.duration("window")?,
                        quiet: t.duration("quiet")?,
                        spend: RawBaseline {
                            baseline: t.duration("baseline")?,
                            factor: t.whole("factor")?,
                            min_spend: t.amount("min_spend")?,
                        },
                    };
                    t.finish()?;
                    Ok((name, rule))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

/// The alert rules in force and where alerts also go.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub webhook: Option<String>,
    pub rules: Vec<Rule>,
}

/// `[alerts]` in the file's own layout, every rule written out in full, as
/// `palisade check` prints it (and reads it back).
#[derive(Serialize)]
pub(super) struct EffectiveAlerts<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<&'a str>,
    rules: IndexMap<&'a str, EffectiveRule<'a>>,
}

#[derive(Serialize)]
struct EffectiveRule<'a> {
    severity: Severity,
    title: &'a str,
    when: std::collections::BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tools: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<u64>,
    window: String,
    quiet: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    factor: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_spend: Option<String>,
}

impl AlertsConfig {
    pub(super) fn effective(&self) -> EffectiveAlerts<'_> {
        let text = |d: Duration| humantime::format_duration(d).to_string();
        EffectiveAlerts {
            webhook: self.webhook.as_deref(),
            rules: self
                .rules
                .iter()
                .map(|r| {
                    let rule = EffectiveRule {
                        severity: r.severity,
                        title: &r.title,
                        when: r
                            .when
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect(),
                        tools: &r.tools,
                        // A baseline rule has no threshold: it reads none back.
                        threshold: r.baseline.is_none().then_some(r.threshold),
                        window: text(r.window),
                        quiet: text(r.quiet),
                        baseline: r.baseline.map(|b| text(b.period)),
                        factor: r.baseline.map(|b| b.factor),
                        min_spend: r.baseline.map(|b| {
                            Micros(b.min_spend_micros)
                                .to_string()
                                .trim_start_matches('$')
                                .to_owned()
                        }),
                    };
                    (r.name.as_str(), rule)
                })
                .collect(),
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook: None,
            rules: alerts::builtin(),
        }
    }
}

impl Validator<'_> {
    pub(super) fn alerts(&self, raw: Option<RawAlerts>) -> Result<AlertsConfig, ConfigError> {
        let raw = raw.unwrap_or_default();
        let webhook = match raw.webhook {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(&url).map_err(|e| {
                    self.err("alerts.webhook", format!("`{url}` is not a URL: {e}"))
                })?;
                if !matches!(parsed.scheme(), "https" | "http") {
                    return Err(self.err("alerts.webhook", "expected an http:// or https:// URL"));
                }
                Some(url)
            }
        };
        let mut rules = alerts::builtin();
        for (name, r) in raw.rules {
            let field = |f: &str| format!("alerts.rules.{name}.{f}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(self.err(
                    format!("alerts.rules.{name}"),
                    "a rule's name may hold letters, digits, `-` and `_` only",
                ));
            }
            let existing = rules.iter().position(|rule| rule.name == name);
            if r.enabled == Some(false) {
                match existing {
                    Some(i) => {
                        rules.remove(i);
                        continue;
                    }
                    None => return Err(self.err(field("enabled"), "only a built-in rule can be turned off (file-reads, permission-denials, egress-not-allowlisted, spend-above-baseline); delete this rule instead")),
                }
            }
            let base = match existing {
                Some(i) => rules.remove(i),
                None => {
                    if r.when.is_none() {
                        return Err(self.err(
                            format!("alerts.rules.{name}"),
                            "a rule of your own needs `when`, such as when = { event = \"call-outcome\" }",
                        ));
                    }
                    Rule {
                        name: name.clone(),
                        severity: Severity::Medium,
                        title: format!("rule `{name}`"),
                        when: Vec::new(),
                        tools: Vec::new(),
                        threshold: 0,
                        window: Duration::from_secs(60),
                        quiet: Duration::ZERO,
                        baseline: None,
                    }
                }
            };
            let severity = match r.severity {
                None => base.severity,
                Some(text) => Severity::parse(&text).ok_or_else(|| {
                    self.err(
                        field("severity"),
                        format!("expected low, medium, high or critical, got `{text}`"),
                    )
                })?,
            };
            let window = self.duration(&field("window"), r.window.as_deref(), base.window)?;
            let quiet = match r.quiet {
                Some(text) => self.duration(&field("quiet"), Some(&text), window)?,
                None if existing.is_some() && r.window.is_none() => base.quiet,
                None => window,
            };
            let when = match r.when {
                None => base.when,
                Some(table) => {
                    if table.is_empty() {
                        return Err(self.err(
                            field("when"),
                            "needs at least one field, such as event = \"call-outcome\"",
                        ));
                    }
                    table.into_iter().collect()
                }
            };
            let baseline = match base.baseline {
                None => {
                    let given = [
                        ("baseline", r.spend.baseline.is_some()),
                        ("factor", r.spend.factor.is_some()),
                        ("min_spend", r.spend.min_spend.is_some()),
                    ];
                    if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
                        return Err(self.err(
                            field(key),
                            format!("`{key}` applies only to the baseline rule `spend-above-baseline`; `{name}` counts records (its limit is `threshold`)"),
                        ));
                    }
                    None
                }
                Some(b) => {
                    if r.threshold.is_some() {
                        return Err(self.err(
                            field("threshold"),
                            format!("`{name}` compares spend with its baseline and has no `threshold`: set `factor` and `min_spend`"),
                        ));
                    }
                    Some(self.baseline(&name, &r.spend, b, window)?)
                }
            };
            rules.push(Rule {
                name,
                severity,
                title: r.title.unwrap_or(base.title),
                when,
                tools: r.tools.unwrap_or(base.tools),
                threshold: r.threshold.map_or(base.threshold, |t| t as u64),
                window,
                quiet,
                baseline,
            });
        }
        Ok(AlertsConfig { webhook, rules })
    }

    /// A baseline rule's `baseline`, `factor` and `min_spend`, over `base`'s.
    fn baseline(
        &self,
        name: &str,
        r: &RawBaseline,
        base: Baseline,
        window: Duration,
    ) -> Result<Baseline, ConfigError> {
        let field = |f: &str| format!("alerts.rules.{name}.{f}");
        let period = self.duration(&field("baseline"), r.baseline.as_deref(), base.period)?;
        let shortest = window.saturating_mul(2);
        let longest = window.saturating_mul(MAX_BASELINE_WINDOWS);
        if period < shortest || period > longest {
            return Err(self.err(
                field("baseline"),
                format!(
                    "must be from 2 to {MAX_BASELINE_WINDOWS} windows: from `{}` to `{}` for a window of `{}`, got `{}`",
                    humantime::format_duration(shortest),
                    humantime::format_duration(longest),
                    humantime::format_duration(window),
                    humantime::format_duration(period),
                ),
            ));
        }
        let factor = match r.factor {
            None => base.factor,
            Some(0) => return Err(self.err(field("factor"), "must be 1 or more")),
            Some(n) => n as u64,
        };
        let min_spend_micros = match &r.min_spend {
            None => base.min_spend_micros,
            Some(text) => {
                Micros::parse(text)
                    .map_err(|e| self.err(field("min_spend"), e.to_string()))?
                    .0
            }
        };
        Ok(Baseline {
            period,
            factor,
            min_spend_micros,
        })
    }
}

#[cfg(test)]
mod tests {
    use palisade_audit::alerts::{Baseline, Rule};

    use super::super::Config;

    const BASE: &str = "data_dir = \"palisade-test-data\"\n[pipeline]\npass_through = [\"authorize\", \"limits\", \"outbound-filter\", \"approval\", \"inject-secrets\", \"redact\", \"inbound-filter\"]\n";

    fn parse(alerts: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{alerts}"), "p.toml").map_err(|e| e.to_string())
    }

    fn spend_rule(config: &Config) -> Option<&Rule> {
        config
            .alerts
            .rules
            .iter()
            .find(|r| r.name == "spend-above-baseline")
    }

    #[test]
    fn the_baseline_rule_is_built_in_and_its_keys_are_read() {
        let config = parse("").unwrap();
        let rule = spend_rule(&config).unwrap();
        assert_eq!(
            rule.baseline,
            Some(Baseline {
                period: std::time::Duration::from_secs(24 * 3600),
                factor: 3,
                min_spend_micros: 1_000_000,
            })
        );
        let config = parse(
            "[alerts.rules.spend-above-baseline]\nwindow = \"2s\"\nbaseline = \"20s\"\nfactor = 4\nmin_spend = \"0.25\"\n",
        )
        .unwrap();
        let rule = spend_rule(&config).unwrap();
        assert_eq!(
            (rule.window, rule.quiet),
            (
                std::time::Duration::from_secs(2),
                std::time::Duration::from_secs(2)
            )
        );
        let baseline = rule.baseline.unwrap();
        assert_eq!(
            (
                baseline.period.as_secs(),
                baseline.factor,
                baseline.min_spend_micros
            ),
            (20, 4, 250_000)
        );
        // What `palisade check` prints reads back the same.
        let again = Config::parse(&config.to_toml(), "effective").unwrap();
        assert_eq!(spend_rule(&again), spend_rule(&config));
        assert!(
            config.to_toml().contains("min_spend = \"0.25\""),
            "{}",
            config.to_toml()
        );
        let off = parse("[alerts.rules.spend-above-baseline]\nenabled = false\n").unwrap();
        assert!(spend_rule(&off).is_none());
    }

    #[test]
    fn baseline_keys_are_refused_where_they_do_not_apply() {
        for (alerts, wanted) in [
            (
                "[alerts.rules.file-reads]\nfactor = 2\n",
                "`alerts.rules.file-reads.factor`: `factor` applies only to the baseline rule `spend-above-baseline`; `file-reads` counts records",
            ),
            (
                "[alerts.rules.mine]\nwhen = { event = \"call-outcome\" }\nmin_spend = \"5\"\n",
                "`alerts.rules.mine.min_spend`: `min_spend` applies only to the baseline rule",
            ),
            (
                "[alerts.rules.permission-denials]\nbaseline = \"1d\"\n",
                "`alerts.rules.permission-denials.baseline`: `baseline` applies only",
            ),
            (
                "[alerts.rules.spend-above-baseline]\nthreshold = 5\n",
                "`alerts.rules.spend-above-baseline.threshold`: `spend-above-baseline` compares spend with its baseline and has no `threshold`",
            ),
            (
                "[alerts.rules.spend-above-baseline]\nbaseline = \"90m\"\n",
                "`alerts.rules.spend-above-baseline.baseline`: must be from 2 to 168 windows: from `2h` to `7days` for a window of `1h`, got `1h 30m`",
            ),
            (
                "[alerts.rules.spend-above-baseline]\nwindow = \"1m\"\n",
                "`alerts.rules.spend-above-baseline.baseline`: must be from 2 to 168 windows",
            ),
            (
                "[alerts.rules.spend-above-baseline]\nfactor = 0\n",
                "`alerts.rules.spend-above-baseline.factor`: must be 1 or more",
            ),
            (
                "[alerts.rules.spend-above-baseline]\nmin_spend = \"lots\"\n",
                "`alerts.rules.spend-above-baseline.min_spend`: `lots` is not an amount of money",
            ),
            (
                "[alerts.rules.spend-above-baseline]\nmin_spend = 0.5\n",
                "`alerts.rules.spend-above-baseline.min_spend`",
            ),
        ] {
            let error = parse(alerts).err().unwrap_or_default();
            assert!(error.contains(wanted), "{alerts}: {error}");
        }
    }
}
