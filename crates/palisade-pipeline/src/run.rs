//! `Pipeline::run`: palisade's stage order, as code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_authz::{Authorize, Permit};
use palisade_core::stage::{
    ApprovalGate, Audit, InboundFilter, InjectSecrets, Limit, OutboundFilter, Redact, StageError,
    StageFuture,
};
use palisade_core::{
    Call, CallRecord, Clock, Decision, Finding, Outcome, Reason, ReasonCode, Stage, StageRecord,
    StageVerdict, Verdict,
};
use serde_json::Value;

use crate::slots::Slot;

/// The assembled pipeline. Built by [`crate::PipelineBuilder`].
#[derive(Debug)]
pub struct Pipeline {
    pub(crate) authorize: Slot<dyn Authorize>,
    pub(crate) limits: Slot<dyn Limit>,
    pub(crate) outbound: Slot<dyn OutboundFilter>,
    pub(crate) approval: Slot<dyn ApprovalGate>,
    pub(crate) secrets: Slot<dyn InjectSecrets>,
    pub(crate) redact: Slot<dyn Redact>,
    pub(crate) inbound: Slot<dyn InboundFilter>,
    pub(crate) audit: Arc<dyn Audit>,
    pub(crate) stage_timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
}

/// What running the tool produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Executed {
    /// The tool's result (an MCP `CallToolResult`).
    Result(Value),
    /// The upstream answered with a JSON-RPC error object; it is passed on.
    RpcError(Value),
}

/// The tool could not be run at all (upstream down, crashed, timed out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// Runs a permitted call. The executor must redeem the permit against the call.
pub trait Execute: Send + Sync {
    fn execute(
        &self,
        permit: Permit,
        call: &Call,
    ) -> impl Future<Output = Result<Executed, ExecError>> + Send;
}

/// What the agent gets back.
#[derive(Debug, Clone, PartialEq)]
pub enum CallResult {
    Executed(Executed),
    Denied { stage: Stage, reason: Reason },
}

/// A stage stopped the call.
struct Stopped {
    stage: Stage,
    reason: Reason,
}

impl Pipeline {
    pub fn builder() -> crate::PipelineBuilder {
        crate::PipelineBuilder::default()
    }

    /// The stages running as pass-through, for health reports and `palisade check`.
    pub fn passed_through(&self) -> Vec<Stage> {
        let mut out = Vec::new();
        let mut note = |passes: bool, stage| {
            if passes {
                out.push(stage);
            }
        };
        note(
            matches!(self.authorize, Slot::PassThrough),
            Stage::Authorize,
        );
        note(matches!(self.limits, Slot::PassThrough), Stage::Limits);
        note(
            matches!(self.outbound, Slot::PassThrough),
            Stage::OutboundFilter,
        );
        note(matches!(self.approval, Slot::PassThrough), Stage::Approval);
        note(
            matches!(self.secrets, Slot::PassThrough),
            Stage::InjectSecrets,
        );
        note(matches!(self.redact, Slot::PassThrough), Stage::Redact);
        note(
            matches!(self.inbound, Slot::PassThrough),
            Stage::InboundFilter,
        );
        out
    }

    /// Runs one call through every stage, in the one order palisade has, and
    /// audits it whatever happens.
    pub async fn run<E: Execute>(&self, mut call: Call, exec: &E) -> CallResult {
        let started = self.clock.monotonic();
        let mut records = Vec::with_capacity(Stage::ORDER.len());
        let mut reserved = false;
        let ran = self
            .stages(&mut call, exec, &mut records, &mut reserved)
            .await;

        // [5] Settle runs after every call that reserved, allowed or not, so a
        // reservation never outlives its call.
        let ran = self.settle(&call, ran, reserved, &mut records).await;
        self.finish(&call, ran, records, started).await
    }

    /// Audits a call refused before the pipeline could start (an unknown
    /// tool, say): refused calls are recorded like every other.
    pub async fn refuse(&self, call: Call, stage: Stage, reason: Reason) -> CallResult {
        let started = self.clock.monotonic();
        let mut records = Vec::with_capacity(Stage::ORDER.len());
        let verdict = StageVerdict::Deny {
            code: reason.code,
            reason: reason.detail.clone(),
        };
        self.push(&mut records, stage, started, verdict, vec![]);
        self.finish(&call, Err(Stopped { stage, reason }), records, started)
            .await
    }

    async fn finish(
        &self,
        call: &Call,
        ran: Result<Executed, Stopped>,
        records: Vec<StageRecord>,
        started: Instant,
    ) -> CallResult {
        let outcome = match &ran {
            Ok(Executed::Result(result)) => Outcome::Completed {
                tool_error: result.get("isError").and_then(Value::as_bool) == Some(true),
            },
            Ok(Executed::RpcError(error)) => Outcome::UpstreamError {
                code: error
                    .get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or_default(),
            },
            Err(stopped) => Outcome::Denied {
                stage: stopped.stage,
                code: stopped.reason.code,
            },
        };
        let record = CallRecord {
            time: humantime::format_rfc3339_micros(self.clock.wall()).to_string(),
            call: call.id,
            principal: call.principal.clone(),
            session: call.session.clone(),
            tool: call.tool.clone(),
            effect: call.effect,
            stages: complete(records),
            outcome,
            latency_micros: micros(self.clock.monotonic().saturating_duration_since(started)),
        };

        // [6] Audit always runs, and a call whose record cannot be kept does
        // not return its result: an unaudited action is worse than a failed one.
        if let Err(reason) = self.guard(Stage::Audit, self.audit.append(&record)).await {
            tracing::error!(call = %call.id, "{}", reason.detail);
            return CallResult::Denied {
                stage: Stage::Audit,
                reason,
            };
        }
        match ran {
            Ok(executed) => CallResult::Executed(executed),
            Err(Stopped { stage, reason }) => CallResult::Denied { stage, reason },
        }
    }

    async fn stages<E: Execute>(
        &self,
        call: &mut Call,
        exec: &E,
        records: &mut Vec<StageRecord>,
        reserved: &mut bool,
    ) -> Result<Executed, Stopped> {
        // [1] Authorize first: nothing should spend effort on, or reveal
        // anything about, a call its principal may not make.
        let t = self.clock.monotonic();
        let permit = match &self.authorize {
            Slot::PassThrough => {
                let (_, permit) = self
                    .guard(
                        Stage::Authorize,
                        palisade_authz::PassThrough.authorize(call),
                    )
                    .await
                    .map_err(|reason| self.failed(Stage::Authorize, t, reason, records))?;
                self.push(
                    records,
                    Stage::Authorize,
                    t,
                    StageVerdict::PassThrough,
                    vec![],
                );
                permit
            }
            Slot::Active(authorizer) => {
                let (decision, permit) = self
                    .guard(Stage::Authorize, authorizer.authorize(call))
                    .await
                    .map_err(|reason| self.failed(Stage::Authorize, t, reason, records))?;
                self.judge(Stage::Authorize, t, decision, records)?;
                permit
            }
        };
        let permit = permit.ok_or_else(|| {
            let reason = Reason::new(
                ReasonCode::StageFailed,
                "authorizer allowed without a permit",
            );
            self.failed(Stage::Authorize, t, reason, records)
        })?;

        // [5] Limits before any work is done for the call, so a flood is cheap to refuse.
        let future = match &self.limits {
            Slot::Active(limits) => Some(limits.check(call)),
            Slot::PassThrough => None,
        };
        self.decide(Stage::Limits, future, records).await?;
        *reserved = matches!(self.limits, Slot::Active(_));

        // [4] The outbound filter sees the arguments as the agent wrote them,
        // before any secret is injected into them.
        let future = match &self.outbound {
            Slot::Active(filter) => Some(filter.check_arguments(call)),
            Slot::PassThrough => None,
        };
        self.decide(Stage::OutboundFilter, future, records).await?;

        // [1] Approval after filtering, so a human approves exactly the
        // arguments that will be sent, and is never asked about a call that
        // would be refused anyway.
        let future = match &self.approval {
            Slot::Active(gate) => Some(gate.gate(call)),
            Slot::PassThrough => None,
        };
        self.decide(Stage::Approval, future, records).await?;

        // [2] Secrets go in at the last moment, after every check that could
        // log or echo the arguments.
        let t = self.clock.monotonic();
        match &self.secrets {
            Slot::Active(injector) => {
                self.guard(Stage::InjectSecrets, injector.inject(call))
                    .await
                    .map_err(|reason| self.failed(Stage::InjectSecrets, t, reason, records))?;
                self.push(
                    records,
                    Stage::InjectSecrets,
                    t,
                    StageVerdict::Allow,
                    vec![],
                );
            }
            Slot::PassThrough => self.push(
                records,
                Stage::InjectSecrets,
                t,
                StageVerdict::PassThrough,
                vec![],
            ),
        }

        // [3] Execute, with the permit as proof that authorization ran.
        let t = self.clock.monotonic();
        let mut executed = match exec.execute(permit, call).await {
            Ok(executed) => executed,
            Err(ExecError(why)) => {
                let reason = Reason::new(ReasonCode::UpstreamUnavailable, why);
                return Err(self.failed(Stage::Execute, t, reason, records));
            }
        };
        self.push(records, Stage::Execute, t, StageVerdict::Allow, vec![]);

        // [2] Redact before anything else reads the result: the inbound filter
        // and the audit record must never hold a secret value.
        let t = self.clock.monotonic();
        let value = match &mut executed {
            Executed::Result(v) | Executed::RpcError(v) => v,
        };
        match &self.redact {
            Slot::Active(redactor) => {
                let findings = self
                    .guard(Stage::Redact, redactor.redact(value))
                    .await
                    .map_err(|reason| self.failed(Stage::Redact, t, reason, records))?;
                self.push(records, Stage::Redact, t, StageVerdict::Allow, findings);
            }
            Slot::PassThrough => {
                self.push(records, Stage::Redact, t, StageVerdict::PassThrough, vec![])
            }
        }

        // [4] The inbound filter judges what the model is about to read: a
        // result, or an upstream's error, whose message and data reach the
        // model just the same.
        let value = match &mut executed {
            Executed::Result(v) | Executed::RpcError(v) => v,
        };
        let future = match &self.inbound {
            Slot::Active(filter) => Some(filter.check_result(call, value)),
            Slot::PassThrough => None,
        };
        self.decide(Stage::InboundFilter, future, records).await?;
        Ok(executed)
    }

    async fn settle(
        &self,
        call: &Call,
        ran: Result<Executed, Stopped>,
        reserved: bool,
        records: &mut Vec<StageRecord>,
    ) -> Result<Executed, Stopped> {
        let t = self.clock.monotonic();
        match (&self.limits, reserved) {
            (Slot::Active(limits), true) => {
                let succeeded = matches!(ran, Ok(Executed::Result(_)));
                match self
                    .guard(Stage::Settle, limits.settle(call, succeeded))
                    .await
                {
                    Ok(()) => self.push(records, Stage::Settle, t, StageVerdict::Allow, vec![]),
                    Err(reason) => return Err(self.failed(Stage::Settle, t, reason, records)),
                }
            }
            (Slot::PassThrough, _) => {
                self.push(records, Stage::Settle, t, StageVerdict::PassThrough, vec![])
            }
            (Slot::Active(_), false) => {}
        }
        ran
    }

    /// Runs a decision stage (or records its pass-through) and stops the call
    /// unless it allows.
    async fn decide(
        &self,
        stage: Stage,
        future: Option<StageFuture<'_, Decision>>,
        records: &mut Vec<StageRecord>,
    ) -> Result<(), Stopped> {
        let t = self.clock.monotonic();
        let Some(future) = future else {
            self.push(records, stage, t, StageVerdict::PassThrough, vec![]);
            return Ok(());
        };
        match self.guard(stage, future).await {
            Ok(decision) => self.judge(stage, t, decision, records),
            Err(reason) => Err(self.failed(stage, t, reason, records)),
        }
    }

    fn judge(
        &self,
        stage: Stage,
        t: Instant,
        decision: Decision,
        records: &mut Vec<StageRecord>,
    ) -> Result<(), Stopped> {
        let Decision { verdict, findings } = decision;
        match verdict {
            Verdict::Allow => {
                self.push(records, stage, t, StageVerdict::Allow, findings);
                Ok(())
            }
            Verdict::Deny(reason) => {
                let verdict = StageVerdict::Deny {
                    code: reason.code,
                    reason: reason.detail.clone(),
                };
                self.push(records, stage, t, verdict, findings);
                Err(Stopped { stage, reason })
            }
            Verdict::NeedsApproval(reason) => {
                let verdict = StageVerdict::NeedsApproval {
                    code: reason.code,
                    reason: reason.detail.clone(),
                };
                self.push(records, stage, t, verdict, findings);
                Err(Stopped { stage, reason })
            }
        }
    }

    /// Awaits a stage within its time budget; an error or a timeout is a deny.
    async fn guard<T>(
        &self,
        stage: Stage,
        future: impl Future<Output = Result<T, StageError>>,
    ) -> Result<T, Reason> {
        match tokio::time::timeout(self.stage_timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Reason::new(
                ReasonCode::StageFailed,
                format!("stage `{stage}` failed: {error}"),
            )),
            Err(_) => Err(Reason::new(
                ReasonCode::StageFailed,
                format!(
                    "stage `{stage}` exceeded its {} ms budget",
                    self.stage_timeout.as_millis()
                ),
            )),
        }
    }

    fn failed(
        &self,
        stage: Stage,
        t: Instant,
        reason: Reason,
        records: &mut Vec<StageRecord>,
    ) -> Stopped {
        let verdict = StageVerdict::Failed {
            reason: reason.detail.clone(),
        };
        self.push(records, stage, t, verdict, vec![]);
        Stopped { stage, reason }
    }

    fn push(
        &self,
        records: &mut Vec<StageRecord>,
        stage: Stage,
        since: Instant,
        verdict: StageVerdict,
        findings: Vec<Finding>,
    ) {
        records.push(StageRecord {
            stage,
            verdict,
            findings,
            micros: micros(self.clock.monotonic().saturating_duration_since(since)),
        });
    }
}

/// Every stage but audit appears once in the record, in pipeline order;
/// stages the call never reached say so.
fn complete(mut records: Vec<StageRecord>) -> Vec<StageRecord> {
    for stage in Stage::ORDER {
        if stage != Stage::Audit && !records.iter().any(|r| r.stage == stage) {
            records.push(StageRecord {
                stage,
                verdict: StageVerdict::NotReached,
                findings: vec![],
                micros: 0,
            });
        }
    }
    records.sort_by_key(|r| Stage::ORDER.iter().position(|s| *s == r.stage));
    records
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
