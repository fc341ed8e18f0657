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
use palisade_audit::alerts::{self, Rule, Severity};
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
    threshold: u64,
    window: String,
    quiet: String,
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
                        threshold: r.threshold,
                        window: text(r.window),
                        quiet: text(r.quiet),
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
                    None => return Err(self.err(field("enabled"), "only a built-in rule can be turned off (file-reads, permission-denials, egress-not-allowlisted); delete this rule instead")),
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
            rules.push(Rule {
                name,
                severity,
                title: r.title.unwrap_or(base.title),
                when,
                tools: r.tools.unwrap_or(base.tools),
                threshold: r.threshold.map_or(base.threshold, |t| t as u64),
                window,
                quiet,
            });
        }
        Ok(AlertsConfig { webhook, rules })
    }
}
