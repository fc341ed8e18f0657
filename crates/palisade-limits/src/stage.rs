//! The limits stage: which counters a call draws on, the one atomic draw, loop checks, alerts, and settling with what the call used.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_core::stage::{Limit, StageFuture};
use palisade_core::{
    CallContext, CallHead, Clock, EffectClass, Finding, LimitDecision, Reason, ReasonCode,
    Reservation, Settled, Stage, StageError, Usage,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::backend::{Adjust, Backend, BackendError, Checked, Draw, Level, Step, escape};
use crate::calendar::Zone;
use crate::loops::{self, LoopRule};
use crate::prices::PriceTable;
use crate::spec::{Calendar, Dimension, FailMode, Micros, Quota, Rate, ToolPattern};

/// The `_meta` key under which a tool reports what it used.
pub const USAGE_META: &str = "palisade/usage";

/// How far ahead of now, at most, a near-limit alert counts as new again.
const ALERT_QUIET_NANOS: u64 = 60 * 1_000_000_000;

/// A rule's limit: a smooth rate, or a quota on the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleLimit {
    Rate(Rate),
    Quota(Quota),
}

impl fmt::Display for RuleLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleLimit::Rate(rate) => rate.fmt(f),
            RuleLimit::Quota(quota) => quota.fmt(f),
        }
    }
}

/// What a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Counts {
    Calls,
    /// Model tokens, as tools report them (see [`USAGE_META`]).
    Tokens,
}

/// One limit on the calls it matches.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub name: String,
    pub limit: RuleLimit,
    pub counts: Counts,
    /// What the counters are kept per; the principal when unsaid.
    pub per: Vec<Dimension>,
    /// Which tools it applies to (every tool when empty).
    pub tools: Vec<ToolPattern>,
    /// Which effect classes it applies to (every class when empty).
    pub effects: Vec<EffectClass>,
    /// When the shared store is unreachable (the layer's setting when unsaid).
    pub on_unavailable: Option<FailMode>,
}

impl Rule {
    fn applies(&self, head: &CallHead) -> bool {
        (self.tools.is_empty()
            || self
                .tools
                .iter()
                .any(|t| t.matches(&head.target.server, &head.target.name)))
            && (self.effects.is_empty() || self.effects.contains(&head.effect))
    }
}

/// A tier (a role or plan) with its own limits.
#[derive(Debug, Clone, Serialize)]
pub struct Tier {
    pub name: String,
    /// A principal with any of these roles is in the tier (the first tier listed wins).
    pub roles: Vec<String>,
    /// A rule's limit for this tier; `None` lifts the rule for it.
    pub rules: Vec<(String, Option<RuleLimit>)>,
    pub daily_budget: Option<Micros>,
}

/// A tool that calls a model: which, and how many tokens to reserve for a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelUse {
    pub model: String,
    pub estimate_tokens: u64,
}

/// The daily budget in money.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub daily: Micros,
    /// A call's fixed cost, by tool (the first matching pattern).
    pub costs: Vec<(ToolPattern, Micros)>,
    /// Tools that call a model, by tool (the first matching pattern).
    pub models: Vec<(ToolPattern, ModelUse)>,
    #[serde(skip)]
    pub prices: PriceTable,
    /// How long a reservation may stay unsettled before it is charged in full.
    #[serde(skip)]
    pub hold: Duration,
}

/// Loop detection: a rule for every call, and stricter ones by effect class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Loops {
    pub default: LoopRule,
    pub by_effect: Vec<(EffectClass, LoopRule)>,
}

impl Loops {
    fn rule(&self, effect: EffectClass) -> &LoopRule {
        self.by_effect
            .iter()
            .find(|(e, _)| *e == effect)
            .map_or(&self.default, |(_, rule)| rule)
    }

    fn history_len(&self) -> usize {
        self.by_effect
            .iter()
            .map(|(_, rule)| rule.history_len())
            .fold(self.default.history_len(), usize::max)
    }
}

/// Layer 5's validated settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub rules: Vec<Rule>,
    pub tiers: Vec<Tier>,
    pub budget: Option<Budget>,
    pub loops: Loops,
    #[serde(skip)]
    pub zone: Zone,
    pub on_unavailable: FailMode,
    /// What every key in the store starts with.
    pub prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            tiers: Vec::new(),
            budget: None,
            loops: Loops::default(),
            zone: Zone::utc(),
            on_unavailable: FailMode::Closed,
            prefix: "palisade:limits".into(),
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A counter passed 80 % of its limit.
    NearLimit,
    /// A call was refused at a limit.
    LimitReached,
    /// A call was refused for the daily budget.
    BudgetExceeded,
    /// A loop was refused.
    LoopDetected,
}

/// Something the alerting path should hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub limit: String,
    pub principal: String,
    pub used: u64,
    pub capacity: u64,
    pub unit: &'static str,
    pub message: String,
}

/// Where alerts go (the gateway writes them to audit and the log).
pub type AlertSink = Arc<dyn Fn(Alert) + Send + Sync>;

/// The store's health as the limits layer last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub degraded: bool,
    pub detail: Option<String>,
}

/// What a reservation will settle, kept until the call ends.
#[derive(Debug)]
struct Pending {
    principal: String,
    rates: Vec<(String, u64)>,
    /// Quotas: key, reserved, expires, counts tokens.
    counts: Vec<(String, u64, u64, Counts)>,
    money: Option<(String, u64, u64)>,
    fixed: u64,
    model: Option<ModelUse>,
    estimated_tokens: u64,
    loop_key: Option<String>,
    step: u64,
}

/// Layer 5: implements [`Limit`] over a [`Backend`].
pub struct Limits {
    settings: Settings,
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    /// The latest wall time seen: a clock that jumps back is held here.
    latest: AtomicU64,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    alerts: Option<AlertSink>,
    /// Last alert time per (kind, key), so a loop does not become a storm.
    alerted: Mutex<HashMap<(AlertKind, String), u64>>,
    health: Mutex<Health>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("rules", &self.settings.rules.len())
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn short(bytes: &[u8]) -> u64 {
    let mut eight = [0u8; 8];
    for (slot, b) in eight.iter_mut().zip(bytes) {
        *slot = *b;
    }
    u64::from_be_bytes(eight)
}

/// Where this process's reservation ids start: at random, because every
/// gateway sharing one Redis holds its reservations in the same budget
/// counter, and two gateways counting from 1 would overwrite each other's.
fn first_reservation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    // Far from the end, so that counting on never wraps to 0 (no reservation).
    (hasher.finish() >> 1).max(1)
}

impl Limits {
    pub fn new(settings: Settings, backend: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            backend,
            clock,
            latest: AtomicU64::new(0),
            next_id: AtomicU64::new(first_reservation()),
            pending: Mutex::new(HashMap::new()),
            alerts: None,
            alerted: Mutex::new(HashMap::new()),
            health: Mutex::new(Health {
                degraded: false,
                detail: None,
            }),
        }
    }

    /// Sends alerts to `sink`.
    pub fn with_alerts(mut self, sink: AlertSink) -> Self {
        self.alerts = Some(sink);
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Now, in nanoseconds, never earlier than a time already seen.
    pub fn now(&self) -> u64 {
        let wall = nanos(self.clock.wall());
        self.latest.fetch_max(wall, Ordering::AcqRel).max(wall)
    }

    fn tier(&self, head: &CallHead) -> Option<&Tier> {
        let roles = &head.principal.identity().roles;
        self.settings.tiers.iter().find(|tier| {
            tier.roles
                .iter()
                .any(|r| roles.iter().any(|have| **have == **r))
        })
    }

    fn dims(&self, rule: &Rule, head: &CallHead) -> String {
        let identity = head.principal.identity();
        let per: &[Dimension] = if rule.per.is_empty() {
            &[Dimension::Principal]
        } else {
            &rule.per
        };
        let mut out = String::new();
        for dim in per {
            let value: String = match dim {
                Dimension::Principal => identity.id.to_string(),
                Dimension::Tenant => identity.tenant.as_deref().unwrap_or("-").to_owned(),
                Dimension::Session => head.session.as_str().to_owned(),
                Dimension::Upstream => head.target.server.to_string(),
                Dimension::Tool => format!("{}/{}", head.target.server, head.target.name),
                Dimension::Effect => head.effect.as_str().to_owned(),
            };
            if !out.is_empty() {
                out.push(':');
            }
            out.push_str(&format!("{}={}", dim.as_str(), escape(&value)));
        }
        out
    }

    fn model_for(&self, head: &CallHead) -> Option<&ModelUse> {
        let budget_models = self.settings.budget.as_ref().map(|b| b.models.as_slice());
        budget_models?
            .iter()
            .find(|(p, _)| p.matches(&head.target.server, &head.target.name))
            .map(|(_, m)| m)
    }

    fn alert(&self, kind: AlertKind, key: &str, alert: impl FnOnce() -> Alert, now: u64) {
        let Some(sink) = &self.alerts else {
            return;
        };
        {
            let mut alerted = self.alerted.lock().unwrap_or_else(PoisonError::into_inner);
            let last = alerted.entry((kind, key.to_owned())).or_insert(0);
            if *last != 0 && now.saturating_sub(*last) < ALERT_QUIET_NANOS {
                return;
            }
            *last = now;
            if alerted.len() > 100_000 {
                alerted.retain(|_, at| now.saturating_sub(*at) < ALERT_QUIET_NANOS);
            }
        }
        sink(alert());
    }

    fn set_health(&self, error: Option<&BackendError>) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match error {
            Some(e) => {
                if !health.degraded {
                    tracing::warn!("limits: {e}");
                }
                *health = Health {
                    degraded: true,
                    detail: Some(e.to_string()),
                };
            }
            None if health.degraded => {
                tracing::info!("limits: the store answers again");
                *health = Health {
                    degraded: false,
                    detail: None,
                };
            }
            None => {}
        }
    }

    async fn check_call(
        &self,
        head: &CallHead,
        arguments: &Value,
    ) -> Result<LimitDecision, StageError> {
        let now = self.now();
        let tier = self.tier(head);
        let principal = head.principal.identity().id.to_string();
        let prefix = &self.settings.prefix;
        let model = self.model_for(head).cloned();
        let estimated_tokens = model.as_ref().map_or(0, |m| m.estimate_tokens);

        // Loops first: a call that loops spends nothing.
        let loop_rule = *self.settings.loops.rule(head.effect);
        let step = {
            let mut hasher = Sha256::new();
            hasher.update(head.target.server.as_bytes());
            hasher.update([0]);
            hasher.update(head.target.name.as_bytes());
            hasher.update([0]);
            hasher.update(
                palisade_core::ArgumentDigest::of(arguments)
                    .to_hex()
                    .as_bytes(),
            );
            short(&hasher.finalize())
        };
        let loop_key = (loop_rule.max_similar > 0)
            .then(|| format!("{prefix}:loop:{}", escape(head.session.as_str())));
        let mut findings = Vec::new();
        if let Some(key) = &loop_key {
            match self
                .backend
                .history(key, self.settings.loops.history_len())
                .await
            {
                Ok(history) => {
                    if let Some(found) = loops::detect(&history, step, &loop_rule) {
                        let message = found.explain();
                        self.alert(
                            AlertKind::LoopDetected,
                            key,
                            || Alert {
                                kind: AlertKind::LoopDetected,
                                limit: "loops".into(),
                                principal: principal.clone(),
                                used: 0,
                                capacity: u64::from(loop_rule.max_similar),
                                unit: "calls",
                                message: message.clone(),
                            },
                            now,
                        );
                        return Ok(LimitDecision::Refused {
                            reason: Reason::new(ReasonCode::LoopDetected, message),
                            findings: vec![Finding {
                                stage: Stage::Limits,
                                code: "limits.loop".into(),
                                message: found.explain(),
                            }],
                        });
                    }
                }
                // Loop windows are a heuristic: an unreachable store skips them, audited.
                Err(e) => {
                    self.set_health(Some(&e));
                    findings.push(degraded_finding(&e, "loop detection skipped"));
                }
            }
        }

        // Every counter the call draws on, and what each one is, for messages.
        let mut draws = Vec::new();
        let mut what: Vec<Described> = Vec::new();
        // How the call fails when the store cannot answer: as its rules say
        // (closed if any says closed), as `[limits]` says when it matches
        // none; money, egress and irreversible calls always closed.
        let mut fail: Option<FailMode> = None;
        let mut pending = Pending {
            principal: principal.clone(),
            rates: Vec::new(),
            counts: Vec::new(),
            money: None,
            fixed: 0,
            model: model.clone(),
            estimated_tokens,
            loop_key,
            step,
        };
        for rule in self.settings.rules.iter().filter(|r| r.applies(head)) {
            let limit = match tier.and_then(|t| t.rules.iter().find(|(name, _)| *name == rule.name))
            {
                Some((_, Some(limit))) => *limit,
                Some((_, None)) => continue,
                None => rule.limit,
            };
            let mode = rule.on_unavailable.unwrap_or(self.settings.on_unavailable);
            if fail != Some(FailMode::Closed) {
                fail = Some(mode);
            }
            let dims = self.dims(rule, head);
            let name = escape(&rule.name);
            match limit {
                RuleLimit::Rate(rate) => {
                    let key = format!("{prefix}:rate:{name}:{dims}");
                    pending.rates.push((key.clone(), rate.emission_nanos()));
                    draws.push(Draw::Rate {
                        key,
                        emission: rate.emission_nanos(),
                        burst: rate.burst,
                    });
                    what.push(Described::Rate {
                        rule: rule.name.clone(),
                        rate,
                    });
                }
                RuleLimit::Quota(quota) => {
                    let window = self.settings.zone.window(quota.window, now);
                    let key = format!("{prefix}:count:{name}:{}:{dims}", escape(&window.name));
                    let amount = match rule.counts {
                        Counts::Calls => 1,
                        Counts::Tokens => estimated_tokens,
                    };
                    pending
                        .counts
                        .push((key.clone(), amount, window.ends_nanos, rule.counts));
                    draws.push(Draw::Count {
                        key,
                        limit: quota.amount,
                        amount,
                        expires: window.ends_nanos,
                    });
                    what.push(Described::Quota {
                        rule: rule.name.clone(),
                        quota,
                        counts: rule.counts,
                        ends: window.ends_nanos,
                    });
                }
            }
        }
        let reservation = self.next_id.fetch_add(1, Ordering::Relaxed).max(1);
        let mut cost = 0;
        if let Some(budget) = &self.settings.budget {
            let daily = tier.and_then(|t| t.daily_budget).unwrap_or(budget.daily);
            pending.fixed = budget
                .costs
                .iter()
                .find(|(p, _)| p.matches(&head.target.server, &head.target.name))
                .map_or(0, |(_, cost)| cost.0);
            let tokens = model.as_ref().map_or(0, |m| {
                let price = budget
                    .prices
                    .get(&m.model)
                    .unwrap_or_else(|| budget.prices.highest());
                price.ceiling(m.estimate_tokens)
            });
            cost = pending.fixed.saturating_add(tokens);
            let day = self.settings.zone.window(Calendar::Day, now);
            let key = format!(
                "{prefix}:money:{}:principal={}",
                escape(&day.name),
                escape(&principal)
            );
            let hold = u64::try_from(budget.hold.as_nanos()).unwrap_or(u64::MAX);
            pending.money = Some((key.clone(), cost, day.ends_nanos));
            draws.push(Draw::Money {
                key,
                reservation,
                limit: daily.0,
                amount: cost,
                expires: day.ends_nanos,
                hold_until: now.saturating_add(hold),
            });
            what.push(Described::Money {
                daily,
                estimate: cost,
                ends: day.ends_nanos,
            });
            fail = Some(FailMode::Closed);
        }
        let fail = fail
            .unwrap_or(self.settings.on_unavailable)
            .for_effect(head.effect);
        if draws.is_empty() {
            // Nothing to draw on; the loop window still hears how it went.
            let id = if pending.loop_key.is_some() {
                self.hold(reservation, pending);
                reservation
            } else {
                0
            };
            return Ok(LimitDecision::Reserved {
                reservation: Reservation { id, cost_micros: 0 },
                findings,
            });
        }

        match self.backend.check(now, &draws).await {
            Ok(Checked::Admitted { levels }) => {
                self.set_health(None);
                for ((draw, level), described) in draws.iter().zip(&levels).zip(&what) {
                    if crosses_near(level) {
                        let message = described.near(level);
                        self.alert(
                            AlertKind::NearLimit,
                            draw.key(),
                            || Alert {
                                kind: AlertKind::NearLimit,
                                limit: described.name(),
                                principal: principal.clone(),
                                used: level.after,
                                capacity: level.capacity,
                                unit: described.unit(),
                                message: message.clone(),
                            },
                            now,
                        );
                        findings.push(Finding {
                            stage: Stage::Limits,
                            code: "limits.near".into(),
                            message,
                        });
                    }
                }
                self.hold(reservation, pending);
                Ok(LimitDecision::Reserved {
                    reservation: Reservation {
                        id: reservation,
                        cost_micros: cost,
                    },
                    findings,
                })
            }
            Ok(Checked::Refused {
                index,
                level,
                retry_after,
            }) => {
                self.set_health(None);
                let (Some(described), Some(draw)) = (what.get(index), draws.get(index)) else {
                    return Err(StageError::new(
                        "the limits store refused a counter it was not given",
                    ));
                };
                let message = described.refused(&level, retry_after, now, &self.settings.zone);
                let kind = match described {
                    Described::Money { .. } => AlertKind::BudgetExceeded,
                    Described::Rate { .. } | Described::Quota { .. } => AlertKind::LimitReached,
                };
                self.alert(
                    kind,
                    draw.key(),
                    || Alert {
                        kind,
                        limit: described.name(),
                        principal: principal.clone(),
                        used: level.before,
                        capacity: level.capacity,
                        unit: described.unit(),
                        message: message.clone(),
                    },
                    now,
                );
                let mut reason = Reason::new(ReasonCode::LimitExceeded, message.clone());
                if let Some(wait) = retry_after {
                    reason = reason.retry_after(Duration::from_nanos(wait.max(1_000_000)));
                }
                findings.push(Finding {
                    stage: Stage::Limits,
                    code: format!("limits.{}", described.code()),
                    message,
                });
                Ok(LimitDecision::Refused { reason, findings })
            }
            Err(e) => {
                self.set_health(Some(&e));
                match fail {
                    FailMode::Closed => Err(StageError::unavailable(
                        format!("{e}; limits fail closed for this call"),
                        Some(Duration::from_secs(1)),
                    )),
                    FailMode::Open => {
                        findings.push(degraded_finding(&e, "admitted without a limit check"));
                        Ok(LimitDecision::Reserved {
                            reservation: Reservation {
                                id: 0,
                                cost_micros: 0,
                            },
                            findings,
                        })
                    }
                }
            }
        }
    }

    fn hold(&self, id: u64, pending: Pending) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, pending);
    }

    /// Settles (`usage`) or releases (`None`) a reservation; says what
    /// the budget charged.
    async fn finish(
        &self,
        reservation: Reservation,
        usage: Option<Usage>,
    ) -> Result<Settled, StageError> {
        let Some(pending) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&reservation.id)
        else {
            return Ok(Settled::default());
        };
        let now = self.now();
        let mut adjust = Vec::new();
        let Some(usage) = usage else {
            // Never ran: everything back.
            for (key, emission) in pending.rates {
                adjust.push(Adjust::Rate { key, emission });
            }
            for (key, reserved, expires, _) in pending.counts {
                adjust.push(Adjust::Count {
                    key,
                    reserved,
                    actual: 0,
                    expires,
                });
            }
            if let Some((key, reserved, expires)) = pending.money {
                adjust.push(Adjust::Money {
                    key,
                    reservation: reservation.id,
                    reserved,
                    actual: 0,
                    expires,
                });
            }
            return self
                .settle_adjust(now, &adjust)
                .await
                .map(|()| Settled::default());
        };
        let reported = Reported::read(usage.meta.as_ref());
        let mut settled = Settled::default();
        let tokens = reported.tokens().unwrap_or(pending.estimated_tokens);
        for (key, reserved, expires, counts) in pending.counts {
            let actual = match counts {
                Counts::Calls => reserved,
                Counts::Tokens => tokens,
            };
            adjust.push(Adjust::Count {
                key,
                reserved,
                actual,
                expires,
            });
        }
        if let (Some((key, reserved, expires)), Some(budget)) =
            (pending.money, &self.settings.budget)
        {
            let variable = match (&reported, &pending.model) {
                (
                    Reported {
                        cost: Some(cost), ..
                    },
                    _,
                ) => *cost,
                (
                    Reported {
                        tokens: Some((input, output)),
                        model,
                        ..
                    },
                    configured,
                ) => {
                    let name = model
                        .as_deref()
                        .or(configured.as_ref().map(|m| m.model.as_str()));
                    let price = name.and_then(|n| budget.prices.get(n));
                    if price.is_none() {
                        tracing::warn!(
                            principal = %pending.principal,
                            "usage reported for a model the price table lacks ({}); charged at its highest price",
                            name.unwrap_or("none named")
                        );
                    }
                    price
                        .unwrap_or_else(|| budget.prices.highest())
                        .cost(*input, *output)
                }
                (Reported { .. }, _) => reserved.saturating_sub(pending.fixed),
            };
            let actual = pending.fixed.saturating_add(variable);
            settled.cost_micros = Some(actual);
            adjust.push(Adjust::Money {
                key,
                reservation: reservation.id,
                reserved,
                actual,
                expires,
            });
        }
        if let Some(key) = &pending.loop_key {
            let step = Step {
                call: pending.step,
                answer: usage.answer.map(|a| short(&a)),
            };
            if let Err(e) = self
                .backend
                .record(key, step, self.settings.loops.history_len())
                .await
            {
                self.set_health(Some(&e));
            }
        }
        self.settle_adjust(now, &adjust).await.map(|()| settled)
    }

    async fn settle_adjust(&self, now: u64, adjust: &[Adjust]) -> Result<(), StageError> {
        if adjust.is_empty() {
            return Ok(());
        }
        self.backend.settle(now, adjust).await.map_err(|e| {
            self.set_health(Some(&e));
            StageError::unavailable(e.to_string(), None)
        })
    }
}

fn degraded_finding(e: &BackendError, what: &str) -> Finding {
    Finding {
        stage: Stage::Limits,
        code: "limits.degraded".into(),
        message: format!("{e}: {what}"),
    }
}

/// Whether a draw took its counter from under 80 % to 80 % or more.
fn crosses_near(level: &Level) -> bool {
    let cap = u128::from(level.capacity);
    let (before, after) = (u128::from(level.before) * 5, u128::from(level.after) * 5);
    cap > 0 && before < cap * 4 && after >= cap * 4
}

/// What a tool reported it used, from its answer's `_meta`.
#[derive(Debug, Default)]
struct Reported {
    model: Option<String>,
    tokens: Option<(u64, u64)>,
    cost: Option<u64>,
}

impl Reported {
    /// `{"palisade/usage": {"model": "…", "inputTokens": N, "outputTokens": N, "costUsd": "0.01"}}`;
    /// what does not parse is ignored (the estimate stands).
    fn read(meta: Option<&Value>) -> Self {
        let Some(usage) = meta.and_then(|m| m.get(USAGE_META)) else {
            return Self::default();
        };
        let count = |name: &str| usage.get(name).and_then(Value::as_u64);
        let tokens = match (count("inputTokens"), count("outputTokens")) {
            (None, None) => None,
            (input, output) => Some((input.unwrap_or(0), output.unwrap_or(0))),
        };
        Self {
            model: usage
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned),
            tokens,
            cost: usage
                .get("costUsd")
                .and_then(Value::as_str)
                .and_then(|text| Micros::parse(text).ok())
                .map(|m| m.0),
        }
    }

    fn tokens(&self) -> Option<u64> {
        self.tokens.map(|(i, o)| i.saturating_add(o))
    }
}

/// A counter a call drew on, as messages name it.
#[derive(Debug)]
enum Described {
    Rate {
        rule: String,
        rate: Rate,
    },
    Quota {
        rule: String,
        quota: Quota,
        counts: Counts,
        ends: u64,
    },
    Money {
        daily: Micros,
        estimate: u64,
        ends: u64,
    },
}

impl Described {
    fn name(&self) -> String {
        match self {
            Described::Rate { rule, .. } | Described::Quota { rule, .. } => rule.clone(),
            Described::Money { .. } => "daily budget".into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Described::Rate { .. } => "rate",
            Described::Quota { .. } => "quota",
            Described::Money { .. } => "budget",
        }
    }

    fn unit(&self) -> &'static str {
        match self {
            Described::Rate { .. }
            | Described::Quota {
                counts: Counts::Calls,
                ..
            } => "calls",
            Described::Quota {
                counts: Counts::Tokens,
                ..
            } => "tokens",
            Described::Money { .. } => "micro-dollars",
        }
    }

    fn near(&self, level: &Level) -> String {
        match self {
            Described::Rate { rule, rate } => format!(
                "limit `{rule}` ({rate}) is at {} of a burst of {}",
                level.after, level.capacity
            ),
            Described::Quota { rule, quota, .. } => format!(
                "quota `{rule}` ({quota}) is at {} of {} {} this {}",
                level.after,
                level.capacity,
                self.unit(),
                quota.window.noun()
            ),
            Described::Money { daily, .. } => {
                format!("the daily budget is at {} of {daily}", Micros(level.after))
            }
        }
    }

    fn refused(&self, level: &Level, retry_after: Option<u64>, now: u64, zone: &Zone) -> String {
        let wait = retry_after.map(|ns| humane_wait(Duration::from_nanos(ns)));
        match self {
            Described::Rate { rule, rate } => format!(
                "limit `{rule}` ({} calls per {}, bursts of {}) is exhausted; retry in {}",
                rate.count,
                humane_wait(rate.period),
                rate.burst,
                wait.unwrap_or_else(|| "a moment".into())
            ),
            Described::Quota {
                rule, quota, ends, ..
            } => format!(
                "quota `{rule}` ({} {} per {}) is used up: {} of {} used; it resets at the start of the next {} ({}, in {})",
                quota.amount,
                self.unit(),
                quota.window.noun(),
                level.before,
                quota.amount,
                quota.window.noun(),
                zone.name(),
                humane_wait(Duration::from_nanos(ends.saturating_sub(now)))
            ),
            Described::Money {
                daily,
                estimate,
                ends,
            } => format!(
                "daily budget exceeded: {} spent + {} estimate > {daily} limit; it resets at midnight {} (in {})",
                Micros(level.before),
                Micros(*estimate),
                zone.name(),
                humane_wait(Duration::from_nanos(ends.saturating_sub(now)))
            ),
        }
    }
}

/// "1.5 s", "2 min 5 s", "3 h 20 min".
fn humane_wait(wait: Duration) -> String {
    let secs = wait.as_secs();
    if secs < 60 {
        let tenths = wait.as_millis().div_ceil(100);
        return format!("{}.{} s", tenths / 10, tenths % 10);
    }
    if secs < 3_600 {
        return format!("{} min {} s", secs / 60, secs % 60);
    }
    format!("{} h {} min", secs / 3_600, (secs % 3_600) / 60)
}

impl Limit for Limits {
    fn check<'a>(
        &'a self,
        head: &'a CallHead,
        arguments: &'a Value,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, LimitDecision> {
        Box::pin(self.check_call(head, arguments))
    }

    fn settle<'a>(&'a self, reservation: Reservation, usage: Usage) -> StageFuture<'a, Settled> {
        Box::pin(self.finish(reservation, Some(usage)))
    }

    fn release<'a>(&'a self, reservation: Reservation) -> StageFuture<'a, ()> {
        Box::pin(async move { self.finish(reservation, None).await.map(|_| ()) })
    }
}
