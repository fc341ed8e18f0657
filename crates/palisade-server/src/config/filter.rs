//! The `[filter]` section: what layer 4 does with what it finds, inbound (per source) and outbound, read and validated.
//!
//! ```toml
//! [filter]
//! spotlight = "boundary"          # off | boundary | datamark
//! threshold = 0.6                 # injection score that counts as an injection
//! actions = { injection = "quarantine", hidden-text = "redact" }
//! taint = ["injection", "hidden-instruction", "smuggled-text", "encoded-instruction"]
//! urls = ["example.com"]          # hosts URLs in arguments may name (registrable domains)
//! url_action = "deny"
//! secrets = "deny"                # or "redact"
//! pii = { payment-card = "redact", email = "annotate" }
//! pii_roles = ["support"]         # principals with these roles may send PII
//! schemas = { "weather/forecast" = "schemas/forecast.json" }
//!
//! [filter.sources.web]            # an upstream, or "web/fetch" for one tool
//! untrusted = true                # everything it returns taints the session
//! spotlight = "datamark"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use palisade_filter::outbound::OutboundPolicy;
use palisade_filter::pii::PiiKind;
use palisade_filter::policy::{Action, Policies, SourcePolicy, Spotlight};
use palisade_filter::scan::Class;
use palisade_filter::urls::UrlAllowlist;
use serde::Serialize;

use super::read::{Fields, Secret};
use super::validate::Validator;
use super::{ConfigError, Upstream};

#[derive(Debug, Default)]
pub(super) struct RawFilter {
    source: RawSource,
    urls: Option<Vec<String>>,
    url_action: Option<String>,
    secrets: Option<String>,
    pii: Option<BTreeMap<String, String>>,
    pii_roles: Option<Vec<String>>,
    schemas: Option<BTreeMap<String, String>>,
    sources: Vec<(String, RawSource)>,
}

#[derive(Debug, Default)]
struct RawSource {
    untrusted: Option<bool>,
    spotlight: Option<String>,
    threshold: Option<f64>,
    actions: Option<BTreeMap<String, String>>,
    taint: Option<Vec<String>>,
}

impl RawSource {
    fn read(f: &mut Fields<'_, '_>, top: bool) -> Result<Self, ConfigError> {
        Ok(Self {
            untrusted: if top { None } else { f.boolean("untrusted")? },
            spotlight: f.string("spotlight")?,
            threshold: f.number("threshold")?,
            actions: f.string_table("actions", Secret::Shown)?,
            taint: f.strings("taint")?,
        })
    }
}

impl RawFilter {
    pub(super) fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let source = RawSource::read(&mut f, true)?;
        let raw = Self {
            source,
            urls: f.strings("urls")?,
            url_action: f.string("url_action")?,
            secrets: f.string("secrets")?,
            pii: f.string_table("pii", Secret::Shown)?,
            pii_roles: f.strings("pii_roles")?,
            schemas: f.string_table("schemas", Secret::Shown)?,
            sources: f
                .named_tables("sources")?
                .into_iter()
                .map(|(name, mut t)| {
                    let source = RawSource::read(&mut t, false)?;
                    t.finish()?;
                    Ok((name, source))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

/// Layer 4's validated settings.
#[derive(Debug, Clone, Serialize)]
pub struct FilterConfig {
    /// The inbound policy for everything, and the overrides by source.
    #[serde(skip)]
    pub policies: Policies,
    #[serde(skip)]
    pub outbound: OutboundPolicy,
    /// Output schemas the configuration gives, by `SERVER/TOOL`.
    pub schemas: BTreeMap<String, PathBuf>,
    /// What the effective config shows.
    pub spotlight: &'static str,
    pub threshold: f64,
    pub untrusted_sources: Vec<String>,
    pub urls: Vec<String>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        let policies = Policies::default();
        Self {
            spotlight: policies.default.spotlight.as_str(),
            threshold: policies.default.threshold,
            policies,
            outbound: OutboundPolicy::default(),
            schemas: BTreeMap::new(),
            untrusted_sources: Vec::new(),
            urls: Vec::new(),
        }
    }
}

impl Validator<'_> {
    pub(super) fn filter(
        &self,
        raw: Option<RawFilter>,
        upstreams: &[Upstream],
    ) -> Result<FilterConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(FilterConfig::default());
        };
        let default = self.source_policy("filter", &raw.source, &SourcePolicy::default())?;
        let mut policies = Policies {
            default: default.clone(),
            sources: Default::default(),
        };
        let mut untrusted_sources = Vec::new();
        for (name, source) in &raw.sources {
            let field = format!("filter.sources.{name}");
            let server = name.split('/').next().unwrap_or(name);
            if !upstreams.iter().any(|u| u.name == server) {
                return Err(self.err(
                    field,
                    format!("no upstream is named `{server}`; a source is an upstream's name, or `UPSTREAM/TOOL`"),
                ));
            }
            let mut policy = self.source_policy(&field, source, &default)?;
            policy.untrusted = source.untrusted.unwrap_or(false);
            if policy.untrusted {
                untrusted_sources.push(name.clone());
            }
            policies.sources.insert(name.clone(), policy);
        }
        let mut outbound = OutboundPolicy::default();
        if let Some(urls) = &raw.urls {
            outbound.allow = UrlAllowlist::new(urls).map_err(|e| self.err("filter.urls", e))?;
        }
        if let Some(text) = &raw.url_action {
            outbound.urls =
                self.action("filter.url_action", text, &[Action::Annotate, Action::Deny])?;
        }
        if let Some(text) = &raw.secrets {
            outbound.secrets =
                self.action("filter.secrets", text, &[Action::Redact, Action::Deny])?;
        }
        for (kind, text) in raw.pii.iter().flatten() {
            let field = format!("filter.pii.{kind}");
            let Some(kind) = PiiKind::parse(kind) else {
                let known: Vec<&str> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(self.err(
                    field,
                    format!("not a PII kind; expected one of {}", known.join(", ")),
                ));
            };
            let action = self.action(
                &field,
                text,
                &[Action::Annotate, Action::Redact, Action::Deny],
            )?;
            outbound.pii.insert(kind, action);
        }
        outbound.pii_roles = raw.pii_roles.clone().unwrap_or_default();
        let mut schemas = BTreeMap::new();
        for (target, path) in raw.schemas.iter().flatten() {
            let field = format!("filter.schemas.{target}");
            if !target.contains('/') {
                return Err(self.err(field, "name a tool as `UPSTREAM/TOOL`"));
            }
            schemas.insert(target.clone(), self.relative(PathBuf::from(path)));
        }
        Ok(FilterConfig {
            spotlight: default.spotlight.as_str(),
            threshold: default.threshold,
            policies,
            outbound,
            schemas,
            untrusted_sources,
            urls: raw.urls.unwrap_or_default(),
        })
    }

    fn source_policy(
        &self,
        field: &str,
        raw: &RawSource,
        base: &SourcePolicy,
    ) -> Result<SourcePolicy, ConfigError> {
        let mut policy = base.clone();
        if let Some(text) = &raw.spotlight {
            policy.spotlight = Spotlight::parse(text).ok_or_else(|| {
                self.err(
                    format!("{field}.spotlight"),
                    "expected \"off\", \"boundary\" or \"datamark\"",
                )
            })?;
        }
        if let Some(threshold) = raw.threshold {
            if !(threshold > 0.0 && threshold <= 1.0) {
                return Err(self.err(
                    format!("{field}.threshold"),
                    "expected a number above 0 and at most 1",
                ));
            }
            policy.threshold = threshold;
        }
        for (class, text) in raw.actions.iter().flatten() {
            let at = format!("{field}.actions.{class}");
            let class = self.class(&at, class)?;
            policy
                .actions
                .insert(class, self.action(&at, text, &Action::ALL)?);
        }
        if let Some(taint) = &raw.taint {
            policy.taint = taint
                .iter()
                .enumerate()
                .map(|(i, c)| self.class(&format!("{field}.taint[{i}]"), c))
                .collect::<Result<_, _>>()?;
        }
        Ok(policy)
    }

    fn class(&self, field: &str, text: &str) -> Result<Class, ConfigError> {
        Class::parse(text).ok_or_else(|| {
            let known: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
            self.err(
                field,
                format!("not a finding class; expected one of {}", known.join(", ")),
            )
        })
    }

    fn action(&self, field: &str, text: &str, allowed: &[Action]) -> Result<Action, ConfigError> {
        match Action::parse(text) {
            Some(action) if allowed.contains(&action) => Ok(action),
            _ => {
                let names: Vec<String> = allowed
                    .iter()
                    .map(|a| format!("\"{}\"", a.as_str()))
                    .collect();
                Err(self.err(field, format!("expected {}", names.join(", "))))
            }
        }
    }
}
