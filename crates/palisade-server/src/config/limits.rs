//! The `[limits]` section: layer 5's rates, quotas, tiers, budget and loop rules, read and validated.
//!
//! ```toml
//! [limits]
//! store = "embedded"              # or "redis://127.0.0.1:6379/0", shared by every replica
//! time_zone = "UTC"               # where quotas and the budget reset at midnight
//! on_unavailable = "closed"       # or "open" for reads and writes; money, egress and irreversible always closed
//!
//! [limits.rules.tool_calls]
//! rate = "30/1m"                  # GCRA; `burst` defaults to the count
//! [limits.rules.file_writes]
//! rate = "10/1m"
//! tools = ["filesystem/write_file", "filesystem/edit_file"]
//! [limits.rules.model_tokens]
//! quota = "100000/1d"
//! counts = "tokens"
//!
//! [limits.tiers.pro]
//! roles = ["pro"]
//! rules = { tool_calls = "120/1m", model_tokens = "off" }
//! daily_limit_usd = 200
//!
//! [limits.budget]
//! daily_limit_usd = 50
//! costs = { "search/query" = "0.002" }
//! models = { "llm/complete" = "gpt-4o-mini" }
//! estimate_tokens = 2000
//!
//! [limits.loops]
//! max_similar = 3
//! window = 10
//! [limits.loops.effects.irreversible]
//! max_similar = 1
//! ```

use std::path::PathBuf;
use std::time::Duration;

use palisade_core::EffectClass;
use palisade_limits::Settings;
use palisade_limits::calendar::Zone;
use palisade_limits::loops::LoopRule;
use palisade_limits::prices::PriceTable;
use palisade_limits::spec::{Dimension, FailMode, Micros, Quota, Rate, SpecError, ToolPattern};
use palisade_limits::stage::{Budget, Counts, Loops, ModelUse, Rule, RuleLimit, Tier};

use super::read::{Fields, Secret};
use super::validate::Validator;
use super::{ConfigError, Upstream};

/// Tokens reserved for a model call until it reports what it used.
const DEFAULT_ESTIMATE_TOKENS: usize = 1_000;
/// How long a reservation may go unsettled before it is charged in full.
const DEFAULT_HOLD: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub(super) struct RawLimits {
    store: Option<String>,
    time_zone: Option<String>,
    on_unavailable: Option<String>,
    key_prefix: Option<String>,
    rules: Vec<(String, RawRule)>,
    tiers: Vec<(String, RawTier)>,
    budget: Option<RawBudget>,
    loops: Option<RawLoops>,
}

#[derive(Debug, Default)]
struct RawRule {
    rate: Option<String>,
    burst: Option<usize>,
    quota: Option<String>,
    counts: Option<String>,
    per: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    effects: Option<Vec<String>>,
    on_unavailable: Option<String>,
}

#[derive(Debug, Default)]
struct RawTier {
    roles: Option<Vec<String>>,
    rules: Option<std::collections::BTreeMap<String, String>>,
    daily_limit_usd: Option<String>,
}

#[derive(Debug, Default)]
struct RawBudget {
    daily_limit_usd: Option<String>,
    costs: Option<std::collections::BTreeMap<String, String>>,
    models: Option<std::collections::BTreeMap<String, String>>,
    estimate_tokens: Option<usize>,
    prices: Option<PathBuf>,
    hold: Option<String>,
}

#[derive(Debug, Default)]
struct RawLoop {
    max_similar: Option<usize>,
    window: Option<usize>,
    cycles: Option<bool>,
}

#[derive(Debug, Default)]
struct RawLoops {
    default: RawLoop,
    effects: Vec<(String, RawLoop)>,
}

impl RawLoop {
    fn read(f: &mut Fields<'_, '_>) -> Result<Self, ConfigError> {
        Ok(Self {
            max_similar: f.whole("max_similar")?,
            window: f.whole("window")?,
            cycles: f.boolean("cycles")?,
        })
    }
}

impl RawLimits {
    pub(super) fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = Self {
            store: f.secret_string("store")?,
            time_zone: f.string("time_zone")?,
            on_unavailable: f.string("on_unavailable")?,
            key_prefix: f.string("key_prefix")?,
            rules: f
                .named_tables("rules")?
                .into_iter()
                .map(|(name, mut t)| {
                    let rule = RawRule {
                        rate: t.string("rate")?,
                        burst: t.whole("burst")?,
                        quota: t.string("quota")?,
                        counts: t.string("counts")?,
                        per: t.strings("per")?,
                        tools: t.strings("tools")?,
                        effects: t.strings("effects")?,
                        on_unavailable: t.string("on_unavailable")?,
                    };
                    t.finish()?;
                    Ok((name, rule))
                })
                .collect::<Result<_, ConfigError>>()?,
            tiers: f
                .named_tables("tiers")?
                .into_iter()
                .map(|(name, mut t)| {
                    let tier = RawTier {
                        roles: t.strings("roles")?,
                        rules: t.string_table("rules", Secret::Shown)?,
                        daily_limit_usd: t.amount("daily_limit_usd")?,
                    };
                    t.finish()?;
                    Ok((name, tier))
                })
                .collect::<Result<_, ConfigError>>()?,
            budget: f
                .table("budget")?
                .map(|mut t| {
                    let budget = RawBudget {
                        daily_limit_usd: t.amount("daily_limit_usd")?,
                        costs: t.string_table("costs", Secret::Shown)?,
                        models: t.string_table("models", Secret::Shown)?,
                        estimate_tokens: t.whole("estimate_tokens")?,
                        prices: t.path("prices")?,
                        hold: t.duration("hold")?,
                    };
                    t.finish()?;
                    Ok::<_, ConfigError>(budget)
                })
                .transpose()?,
            loops: f
                .table("loops")?
                .map(|mut t| {
                    let default = RawLoop::read(&mut t)?;
                    let effects = t
                        .named_tables("effects")?
                        .into_iter()
                        .map(|(name, mut e)| {
                            let rule = RawLoop::read(&mut e)?;
                            e.finish()?;
                            Ok((name, rule))
                        })
                        .collect::<Result<_, ConfigError>>()?;
                    t.finish()?;
                    Ok::<_, ConfigError>(RawLoops { default, effects })
                })
                .transpose()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

/// Where the counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsStore {
    /// In process, persisted in the state store.
    Embedded,
    /// A Redis server shared by every replica.
    Redis { url: String },
}

/// Layer 5's validated settings.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub settings: Settings,
    pub store: LimitsStore,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            store: LimitsStore::Embedded,
        }
    }
}

impl LimitsConfig {
    /// What `palisade check` shows, in the file's own layout; never the Redis password.
    pub fn effective(&self) -> toml::Table {
        use toml::Value;
        let strings =
            |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
        let settings = &self.settings;
        let mut out = toml::Table::new();
        out.insert(
            "store".into(),
            Value::String(match &self.store {
                LimitsStore::Embedded => "embedded".into(),
                LimitsStore::Redis { url } => palisade_limits::redis::masked(url),
            }),
        );
        out.insert(
            "time_zone".into(),
            Value::String(settings.zone.name().into()),
        );
        let mode = |m: FailMode| match m {
            FailMode::Closed => "closed",
            FailMode::Open => "open",
        };
        out.insert(
            "on_unavailable".into(),
            Value::String(mode(settings.on_unavailable).into()),
        );
        out.insert("key_prefix".into(), Value::String(settings.prefix.clone()));
        let mut rules = toml::Table::new();
        for rule in &settings.rules {
            let mut t = toml::Table::new();
            match rule.limit {
                RuleLimit::Rate(rate) => {
                    t.insert("rate".into(), Value::String(rate.to_string()));
                    t.insert(
                        "burst".into(),
                        Value::Integer(i64::try_from(rate.burst).unwrap_or(i64::MAX)),
                    );
                }
                RuleLimit::Quota(quota) => {
                    t.insert("quota".into(), Value::String(quota.to_string()));
                }
            }
            let counts = match rule.counts {
                Counts::Calls => "calls",
                Counts::Tokens => "tokens",
            };
            t.insert("counts".into(), Value::String(counts.into()));
            let per = if rule.per.is_empty() {
                vec![Dimension::Principal]
            } else {
                rule.per.clone()
            };
            t.insert(
                "per".into(),
                strings(per.iter().map(|d| d.as_str().to_owned()).collect()),
            );
            if !rule.tools.is_empty() {
                t.insert(
                    "tools".into(),
                    strings(rule.tools.iter().map(|p| p.as_str().to_owned()).collect()),
                );
            }
            if !rule.effects.is_empty() {
                t.insert(
                    "effects".into(),
                    strings(rule.effects.iter().map(|e| e.as_str().to_owned()).collect()),
                );
            }
            if let Some(m) = rule.on_unavailable {
                t.insert("on_unavailable".into(), Value::String(mode(m).into()));
            }
            rules.insert(rule.name.clone(), Value::Table(t));
        }
        out.insert("rules".into(), Value::Table(rules));
        let mut tiers = toml::Table::new();
        for tier in &settings.tiers {
            let mut t = toml::Table::new();
            t.insert("roles".into(), strings(tier.roles.clone()));
            let mut overrides = toml::Table::new();
            for (rule, limit) in &tier.rules {
                let shown = limit.map_or_else(|| "off".to_owned(), |l| l.to_string());
                overrides.insert(rule.clone(), Value::String(shown));
            }
            t.insert("rules".into(), Value::Table(overrides));
            if let Some(daily) = tier.daily_budget {
                t.insert("daily_limit_usd".into(), Value::String(dollars(daily)));
            }
            tiers.insert(tier.name.clone(), Value::Table(t));
        }
        out.insert("tiers".into(), Value::Table(tiers));
        if let Some(budget) = &settings.budget {
            let mut t = toml::Table::new();
            t.insert(
                "daily_limit_usd".into(),
                Value::String(dollars(budget.daily)),
            );
            let mut costs = toml::Table::new();
            for (tool, cost) in &budget.costs {
                costs.insert(tool.as_str().to_owned(), Value::String(dollars(*cost)));
            }
            t.insert("costs".into(), Value::Table(costs));
            let mut models = toml::Table::new();
            for (tool, model) in &budget.models {
                models.insert(tool.as_str().to_owned(), Value::String(model.model.clone()));
            }
            t.insert("models".into(), Value::Table(models));
            let estimate = budget
                .models
                .first()
                .map_or(DEFAULT_ESTIMATE_TOKENS as u64, |(_, m)| m.estimate_tokens);
            t.insert(
                "estimate_tokens".into(),
                Value::Integer(i64::try_from(estimate).unwrap_or(i64::MAX)),
            );
            t.insert(
                "prices_version".into(),
                Value::String(budget.prices.version.clone()),
            );
            t.insert(
                "hold".into(),
                Value::String(humantime::format_duration(budget.hold).to_string()),
            );
            out.insert("budget".into(), Value::Table(t));
        }
        let loop_table = |rule: &LoopRule| {
            let mut t = toml::Table::new();
            t.insert(
                "max_similar".into(),
                Value::Integer(i64::from(rule.max_similar)),
            );
            t.insert("window".into(), Value::Integer(i64::from(rule.window)));
            t.insert("cycles".into(), Value::Boolean(rule.cycles));
            t
        };
        let mut loops = loop_table(&settings.loops.default);
        let mut effects = toml::Table::new();
        for (effect, rule) in &settings.loops.by_effect {
            effects.insert(effect.as_str().to_owned(), Value::Table(loop_table(rule)));
        }
        loops.insert("effects".into(), Value::Table(effects));
        out.insert("loops".into(), Value::Table(loops));
        out
    }
}

/// `$50.00` as the file writes it: `"50.00"`.
fn dollars(amount: Micros) -> String {
    amount.to_string().trim_start_matches('$').to_owned()
}

impl Validator<'_> {
    fn spec<T>(&self, field: &str, result: Result<T, SpecError>) -> Result<T, ConfigError> {
        result.map_err(|e| self.err(field.to_owned(), e.to_string()))
    }

    pub(super) fn limits(
        &self,
        raw: Option<RawLimits>,
        upstreams: &[Upstream],
    ) -> Result<LimitsConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(LimitsConfig::default());
        };
        let mut settings = Settings::default();
        let store = match raw.store.as_deref() {
            None | Some("embedded") => LimitsStore::Embedded,
            Some(url) if url.starts_with("rediss://") => {
                return Err(self.err(
                    "limits.store",
                    "TLS to Redis (`rediss://`) is not built yet: use `redis://` on a private network or through a TLS tunnel",
                ));
            }
            Some(url) if url.starts_with("redis://") => {
                // Read now, so a bad URL is a load-time error; connecting waits for the first call.
                palisade_limits::redis::RedisBackend::connect(url)
                    .map_err(|e| self.err("limits.store", e.to_string()))?;
                LimitsStore::Redis {
                    url: url.to_owned(),
                }
            }
            Some(_) => {
                return Err(self.err(
                    "limits.store",
                    "expected \"embedded\" or a Redis URL (`redis://[user:password@]HOST:PORT/DB`)",
                ));
            }
        };
        if let Some(zone) = &raw.time_zone {
            settings.zone = self.spec("limits.time_zone", Zone::named(zone))?;
        }
        if let Some(mode) = &raw.on_unavailable {
            settings.on_unavailable = self.spec("limits.on_unavailable", FailMode::parse(mode))?;
        }
        if let Some(prefix) = raw.key_prefix {
            if prefix.is_empty()
                || prefix.contains(|c: char| c.is_whitespace() || "*?[]".contains(c))
            {
                return Err(self.err(
                    "limits.key_prefix",
                    "expected a non-empty prefix without spaces or glob characters (* ? [ ])",
                ));
            }
            settings.prefix = prefix;
        }
        for (name, rule) in raw.rules {
            settings
                .rules
                .push(self.rule(&name, rule, upstreams, settings.on_unavailable)?);
        }
        for (name, tier) in raw.tiers {
            let tier = self.tier(&name, tier, &settings.rules)?;
            settings.tiers.push(tier);
        }
        if let Some(budget) = raw.budget {
            settings.budget = Some(self.budget(budget, upstreams)?);
        } else if let Some((tier, _)) = settings
            .tiers
            .iter()
            .find(|t| t.daily_budget.is_some())
            .map(|t| (t.name.clone(), ()))
        {
            return Err(self.err(
                format!("limits.tiers.{tier}.daily_limit_usd"),
                "a tier's budget overrides `[limits.budget] daily_limit_usd`, which is not set",
            ));
        }
        if let Some(loops) = raw.loops {
            settings.loops = Loops {
                default: self.loop_rule("limits.loops", &loops.default, LoopRule::default())?,
                by_effect: Vec::new(),
            };
            for (name, rule) in &loops.effects {
                let field = format!("limits.loops.effects.{name}");
                let effect = EffectClass::parse(name).ok_or_else(|| {
                    self.err(
                        &field,
                        "not an effect class; expected read, write, egress or irreversible",
                    )
                })?;
                let rule = self.loop_rule(&field, rule, settings.loops.default)?;
                settings.loops.by_effect.push((effect, rule));
            }
        }
        Ok(LimitsConfig { settings, store })
    }

    fn rule(
        &self,
        name: &str,
        raw: RawRule,
        upstreams: &[Upstream],
        default_mode: FailMode,
    ) -> Result<Rule, ConfigError> {
        let at = |field: &str| format!("limits.rules.{name}.{field}");
        let limit = match (&raw.rate, &raw.quota) {
            (Some(rate), None) => {
                let mut rate = self.spec(&at("rate"), Rate::parse(rate))?;
                if let Some(burst) = raw.burst {
                    let burst = u64::try_from(burst).unwrap_or(u64::MAX);
                    rate = self.spec(&at("burst"), rate.with_burst(burst))?;
                }
                RuleLimit::Rate(rate)
            }
            (None, Some(quota)) => {
                if raw.burst.is_some() {
                    return Err(self.err(
                        at("burst"),
                        "a quota has no burst: it admits up to its amount until its window ends",
                    ));
                }
                RuleLimit::Quota(self.spec(&at("quota"), Quota::parse(quota))?)
            }
            (Some(_), Some(_)) => {
                return Err(self.err(
                    format!("limits.rules.{name}"),
                    "a rule is a `rate` or a `quota`, not both; write two rules",
                ));
            }
            (None, None) => {
                return Err(self.err(
                    format!("limits.rules.{name}"),
                    "a rule needs `rate = \"30/1m\"` (smooth, GCRA) or `quota = \"100000/1d\"` (resets on the calendar)",
                ));
            }
        };
        let counts = match raw.counts.as_deref() {
            None | Some("calls") => Counts::Calls,
            Some("tokens") => {
                if matches!(limit, RuleLimit::Rate(_)) {
                    return Err(self.err(
                        at("counts"),
                        "tokens are counted by a `quota`, not a `rate`",
                    ));
                }
                Counts::Tokens
            }
            Some(other) => {
                return Err(self.err(
                    at("counts"),
                    format!("`{other}`: expected \"calls\" or \"tokens\""),
                ));
            }
        };
        let mut per = Vec::new();
        for (i, dim) in raw.per.iter().flatten().enumerate() {
            let dim = self.spec(&at(&format!("per[{i}]")), Dimension::parse(dim))?;
            if per.contains(&dim) {
                return Err(self.err(at(&format!("per[{i}]")), "listed twice"));
            }
            per.push(dim);
        }
        let mut tools = Vec::new();
        for (i, text) in raw.tools.iter().flatten().enumerate() {
            let field = format!("tools[{i}]");
            let pattern = self.spec(&at(&field), ToolPattern::parse(text))?;
            if let Some(upstream) = pattern.upstream()
                && !upstreams.iter().any(|u| u.name == upstream)
            {
                let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                return Err(self.err(
                    at(&field),
                    format!(
                        "no upstream `{upstream}` is configured (upstreams: {})",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            }
            tools.push(pattern);
        }
        let mut effects = Vec::new();
        for (i, text) in raw.effects.iter().flatten().enumerate() {
            let effect = EffectClass::parse(text).ok_or_else(|| {
                self.err(
                    at(&format!("effects[{i}]")),
                    format!("`{text}` is not an effect class; expected read, write, egress or irreversible"),
                )
            })?;
            effects.push(effect);
        }
        let on_unavailable = match &raw.on_unavailable {
            Some(mode) => Some(self.spec(&at("on_unavailable"), FailMode::parse(mode))?),
            None => None,
        };
        let mode = on_unavailable.unwrap_or(default_mode);
        if mode == FailMode::Open
            && !effects.is_empty()
            && effects
                .iter()
                .all(|e| FailMode::Open.for_effect(*e) == FailMode::Closed)
        {
            return Err(self.err(
                at("on_unavailable"),
                "egress and irreversible calls always fail closed: \"open\" would never apply to this rule",
            ));
        }
        Ok(Rule {
            name: name.to_owned(),
            limit,
            counts,
            per,
            tools,
            effects,
            on_unavailable,
        })
    }

    fn tier(&self, name: &str, raw: RawTier, rules: &[Rule]) -> Result<Tier, ConfigError> {
        let at = |field: &str| format!("limits.tiers.{name}.{field}");
        let roles = raw.roles.unwrap_or_default();
        if roles.is_empty() {
            return Err(self.err(
                at("roles"),
                "a tier applies to principals by role: list at least one, as in `roles = [\"pro\"]`",
            ));
        }
        let mut overrides = Vec::new();
        for (rule, text) in raw.rules.into_iter().flatten() {
            let field = at(&format!("rules.{rule}"));
            let Some(base) = rules.iter().find(|r| r.name == rule) else {
                let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
                return Err(self.err(
                    field,
                    format!(
                        "no rule `{rule}` in [limits.rules] (rules: {})",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            };
            let limit = if text == "off" {
                None
            } else {
                let parsed = match base.limit {
                    RuleLimit::Rate(rate) => Rate::parse(&text)
                        .and_then(|r| {
                            if rate.burst == rate.count {
                                Ok(r)
                            } else {
                                r.with_burst(rate.burst)
                            }
                        })
                        .map(RuleLimit::Rate),
                    RuleLimit::Quota(_) => Quota::parse(&text).map(RuleLimit::Quota),
                };
                Some(parsed.map_err(|e| {
                    self.err(
                        field.clone(),
                        format!("{e} (or \"off\" to lift the rule for this tier)"),
                    )
                })?)
            };
            overrides.push((rule, limit));
        }
        let daily_budget = match &raw.daily_limit_usd {
            Some(text) => Some(
                Micros::parse(text).map_err(|e| self.err(at("daily_limit_usd"), e.to_string()))?,
            ),
            None => None,
        };
        Ok(Tier {
            name: name.to_owned(),
            roles,
            rules: overrides,
            daily_budget,
        })
    }

    fn budget(&self, raw: RawBudget, upstreams: &[Upstream]) -> Result<Budget, ConfigError> {
        let Some(daily) = &raw.daily_limit_usd else {
            return Err(self.err(
                "limits.budget.daily_limit_usd",
                "a budget needs its daily limit in dollars, as in `daily_limit_usd = 50`",
            ));
        };
        let daily = Micros::parse(daily)
            .map_err(|e| self.err("limits.budget.daily_limit_usd", e.to_string()))?;
        if daily.0 == 0 {
            return Err(self.err(
                "limits.budget.daily_limit_usd",
                "a budget of $0 admits nothing; to forbid costly tools, deny them in policy",
            ));
        }
        let prices = match &raw.prices {
            Some(path) => {
                let path = self.relative(path.clone());
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err(
                        "limits.budget.prices",
                        format!("cannot read `{}`: {e}", path.display()),
                    )
                })?;
                PriceTable::parse(&text, &format!("`{}`", path.display()))
                    .map_err(|e| self.err("limits.budget.prices", e.to_string()))?
            }
            None => PriceTable::bundled(),
        };
        let pattern = |field: String, text: &str| -> Result<ToolPattern, ConfigError> {
            let pattern =
                ToolPattern::parse(text).map_err(|e| self.err(field.clone(), e.to_string()))?;
            if let Some(upstream) = pattern.upstream()
                && !upstreams.iter().any(|u| u.name == upstream)
            {
                return Err(self.err(field, format!("no upstream `{upstream}` is configured")));
            }
            Ok(pattern)
        };
        let mut costs = Vec::new();
        for (tool, cost) in raw.costs.iter().flatten() {
            let field = format!("limits.budget.costs.{tool}");
            let amount = Micros::parse(cost).map_err(|e| self.err(field.clone(), e.to_string()))?;
            costs.push((pattern(field, tool)?, amount));
        }
        let estimate_tokens = u64::try_from(raw.estimate_tokens.unwrap_or(DEFAULT_ESTIMATE_TOKENS))
            .unwrap_or(u64::MAX);
        let mut models = Vec::new();
        for (tool, model) in raw.models.iter().flatten() {
            let field = format!("limits.budget.models.{tool}");
            if prices.get(model).is_none() {
                return Err(self.err(
                    field,
                    format!(
                        "model `{model}` is not in the price table (version {}); add it to a table of your own and name it with `prices = \"FILE\"`",
                        prices.version
                    ),
                ));
            }
            models.push((
                pattern(field, tool)?,
                ModelUse {
                    model: model.clone(),
                    estimate_tokens,
                },
            ));
        }
        let hold = self.duration("limits.budget.hold", raw.hold.as_deref(), DEFAULT_HOLD)?;
        Ok(Budget {
            daily,
            costs,
            models,
            prices,
            hold,
        })
    }

    fn loop_rule(
        &self,
        field: &str,
        raw: &RawLoop,
        base: LoopRule,
    ) -> Result<LoopRule, ConfigError> {
        let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let rule = LoopRule {
            max_similar: raw.max_similar.map_or(base.max_similar, small),
            window: raw.window.map_or(base.window, small),
            cycles: raw.cycles.unwrap_or(base.cycles),
        };
        if !(1..=1_000).contains(&rule.window) {
            return Err(self.err(
                format!("{field}.window"),
                "expected a window of 1 to 1000 calls",
            ));
        }
        if rule.max_similar > rule.window {
            return Err(self.err(
                format!("{field}.max_similar"),
                format!(
                    "{} is more than the window of {} calls, so no loop could ever be found; 0 turns loop detection off",
                    rule.max_similar, rule.window
                ),
            ));
        }
        Ok(rule)
    }
}
