//! `Pipeline::run`: palisade's stage order, as code.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use palisade_authz::{
    ApprovalGate, Authorization, Authorize, Authorized, GateDecision, PendingApproval, Permit,
};
use palisade_core::stage::{
    Audit, InboundFilter, InjectSecrets, Limit, OutboundFilter, Redact, StageFuture,
};
use palisade_core::{
    AuditEvent, Bounded, Call, CallContext, CallHead, CallRecord, Clock, Decision, Durability,
    Finding, InboundDecision, LimitDecision, Outcome, Reason, ReasonCode, RedactionSeam,
    SessionFacts, Settled, Stage, StageRecord, StageVerdict, Usage, Verdict,
};
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::guard::{OutcomeGuard, Writer};
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
    pub(crate) seam: RedactionSeam,
    pub(crate) stage_timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tasks: TaskTracker,
}

/// What running the call produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Executed {
    /// The call's result (an MCP `CallToolResult`, `ReadResourceResult`, …).
    Result(Value),
    /// The upstream answered with a JSON-RPC error object; it is passed on.
    RpcError(Value),
}

/// Why the call produced no answer. Each says whether the request reached the
/// upstream, since that decides whether the call may have run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The request never left palisade (upstream down, restarting, unreachable).
    #[error("{detail}")]
    NotSent {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The request was sent, then the connection failed before the answer.
    #[error("{detail}")]
    Lost { detail: String },
    /// The request was sent and the upstream did not answer in time.
    #[error("{detail}")]
    TimedOut { detail: String },
    /// The client cancelled the request.
    #[error("cancelled by the client")]
    Cancelled,
    /// The client's session ended while the request was in flight.
    #[error("the session ended")]
    SessionEnded,
    /// The executor refused the authorized call (a permit mismatch: a bug).
    #[error("{detail}")]
    Refused { detail: String },
}

impl ExecError {
    /// Whether the upstream may have acted on the request.
    fn may_have_run(&self) -> bool {
        match self {
            ExecError::NotSent { .. } | ExecError::Refused { .. } => false,
            ExecError::Lost { .. }
            | ExecError::TimedOut { .. }
            | ExecError::Cancelled
            | ExecError::SessionEnded => true,
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            ExecError::NotSent { detail, .. } | ExecError::Lost { detail } => {
                Outcome::UpstreamUnavailable {
                    detail: Bounded::new(detail.as_str()),
                }
            }
            ExecError::TimedOut { .. } => Outcome::TimedOut,
            ExecError::Cancelled => Outcome::Cancelled,
            ExecError::SessionEnded => Outcome::SessionEnded,
            // The executor refused before sending: nothing ran.
            ExecError::Refused { .. } => Outcome::Denied {
                stage: Stage::Execute,
                code: ReasonCode::StageFailed,
            },
        }
    }
}

/// Runs an authorized call. The [`Authorized`] value is the only thing the
/// server can send upstream as a call.
pub trait Execute: Send + Sync {
    fn execute(&self, call: Authorized)
    -> impl Future<Output = Result<Executed, ExecError>> + Send;
}

/// What the agent gets back.
#[derive(Debug, Clone, PartialEq)]
pub enum CallResult {
    /// The call ran; here is its (redacted, filtered) answer.
    Returned(Executed),
    /// A stage stopped the call before it ran.
    Refused { stage: Stage, reason: Reason },
    /// The call was sent (or tried) but no answer came.
    Unfinished(ExecError),
    /// The call ran, but its answer is not returned: a stage after execution
    /// blocked or failed on it. The agent must be told that it ran, so it
    /// does not retry an action that already happened.
    Withheld { stage: Stage, reason: Reason },
}

/// An audit record that is not a call's could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write the audit record: {0}")]
pub struct AuditFailure(pub String);

/// A stage stopped the call before it ran.
struct Stopped {
    stage: Stage,
    reason: Reason,
}

/// Where the call's permission stands.
enum Grant {
    Ready(Permit),
    Pending(Box<PendingApproval>),
}

/// How far a call got: stopped before execution, or ran with this answer.
enum Ran {
    Stopped(Stopped),
    Unfinished(ExecError),
    Answered(Executed),
    Withheld(Stopped),
}

impl Pipeline {
    pub fn builder() -> crate::PipelineBuilder {
        crate::PipelineBuilder::default()
    }

    /// The stages running as pass-through, for health reports and `palisade check`.
    pub fn passed_through(&self) -> Vec<Stage> {
        let slots = [
            (Stage::Authorize, self.authorize.passes()),
            (Stage::Limits, self.limits.passes()),
            (Stage::OutboundFilter, self.outbound.passes()),
            (Stage::Approval, self.approval.passes()),
            (Stage::InjectSecrets, self.secrets.passes()),
            (Stage::Redact, self.redact.passes()),
            (Stage::InboundFilter, self.inbound.passes()),
        ];
        slots
            .into_iter()
            .filter(|(_, passes)| *passes)
            .map(|(stage, _)| stage)
            .collect()
    }

    /// The redaction seam everything leaving palisade passes.
    pub fn seam(&self) -> &RedactionSeam {
        &self.seam
    }

    /// Work the pipeline spawned (records of abandoned calls); drain it at shutdown.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Runs one call through every stage, in the one order palisade has,
    /// and records it whatever happens.
    pub async fn run<E: Execute>(
        &self,
        call: Call,
        session: Arc<SessionFacts>,
        exec: &E,
    ) -> CallResult {
        let started = self.clock.monotonic();
        let mut guard = self.guard_for(call.head(), &call);
        let mut ctx = CallContext::new(session);
        let ran = self.stages(call, exec, &mut ctx, &mut guard).await;

        // [5] Settle what limits reserved: charged for a call that may have
        // run (even when its result was then withheld), released for one
        // that never did. Its failure is recorded; it never changes what the
        // agent is told about a call that ran.
        let t = self.clock.monotonic();
        if let Slot::Active(_) = &self.limits {
            if let Some((limits, reservation)) = guard.take_reservation() {
                let elapsed = self.clock.monotonic().saturating_duration_since(started);
                let usage = match &ran {
                    Ran::Stopped(_) => None,
                    Ran::Unfinished(e) => e.may_have_run().then(|| Usage::unanswered(elapsed)),
                    Ran::Answered(Executed::Result(answer) | Executed::RpcError(answer)) => {
                        Some(Usage::answered(elapsed, answer))
                    }
                    // Ran, but its answer is not for the agent: nor for the loop window.
                    Ran::Withheld(_) => Some(Usage::unanswered(elapsed)),
                };
                let settled = match usage {
                    Some(usage) => {
                        self.within(Stage::Settle, limits.settle(reservation, usage))
                            .await
                    }
                    None => self
                        .within(Stage::Settle, limits.release(reservation))
                        .await
                        .map(|()| Settled::default()),
                };
                match settled {
                    Ok(settled) => {
                        // After settling, so the record says what the call cost.
                        guard.set_cost(settled.cost_micros);
                        self.push(&mut guard, Stage::Settle, t, StageVerdict::Allow, vec![]);
                    }
                    Err(reason) => {
                        tracing::error!("cannot settle a call's reservation: {}", reason.detail);
                        self.failed(&mut guard, Stage::Settle, t, &reason);
                    }
                }
            }
        } else {
            self.push(
                &mut guard,
                Stage::Settle,
                t,
                StageVerdict::PassThrough,
                vec![],
            );
        }

        let outcome = match &ran {
            Ran::Stopped(stopped) => Outcome::Denied {
                stage: stopped.stage,
                code: stopped.reason.code,
            },
            Ran::Unfinished(e) => e.outcome(),
            Ran::Answered(executed) => answered(executed),
            Ran::Withheld(stopped) => Outcome::Withheld {
                stage: stopped.stage,
                detail: Bounded::new(stopped.reason.detail.as_str()),
            },
        };
        let latency = micros(self.clock.monotonic().saturating_duration_since(started));
        let taint = ctx.session().taints().last().cloned();

        // [6] The outcome, whatever happened. An answer whose record cannot
        // be kept is not returned: the intent line already says the call ran.
        let written = guard.write_outcome(outcome, latency, taint).await;
        if let Err(why) = &written {
            tracing::error!("cannot record a call's outcome: {why}");
        }
        match ran {
            Ran::Answered(executed) => match written {
                Ok(()) => CallResult::Returned(executed),
                Err(why) => CallResult::Withheld {
                    stage: Stage::Audit,
                    reason: Reason::new(ReasonCode::AuditUnavailable, why),
                },
            },
            // A call that did not answer is told so whether or not its
            // outcome could be recorded: there is no result to hold back.
            Ran::Stopped(Stopped { stage, reason }) => CallResult::Refused { stage, reason },
            Ran::Unfinished(e) => CallResult::Unfinished(e),
            Ran::Withheld(Stopped { stage, reason }) => CallResult::Withheld { stage, reason },
        }
    }

    /// Records a call refused before the pipeline could start (an unknown
    /// tool, say): refused calls are recorded like every other.
    pub async fn refuse(&self, call: &Call, stage: Stage, reason: Reason) -> CallResult {
        let started = self.clock.monotonic();
        let mut guard = self.guard_for(call.head(), call);
        let verdict = StageVerdict::Deny {
            code: reason.code,
            reason: Bounded::new(reason.detail.as_str()),
        };
        self.push(&mut guard, stage, started, verdict, vec![]);
        let outcome = Outcome::Denied {
            stage,
            code: reason.code,
        };
        let latency = micros(self.clock.monotonic().saturating_duration_since(started));
        match guard.write_outcome(outcome, latency, None).await {
            Ok(()) => CallResult::Refused { stage, reason },
            Err(why) => CallResult::Refused {
                stage: Stage::Audit,
                reason: Reason::new(ReasonCode::AuditUnavailable, why),
            },
        }
    }

    /// Records a call that could not be made at all: malformed, or its
    /// upstream's listing unreadable. `outcome` says which.
    pub async fn record_unmade(&self, call: &Call, outcome: Outcome) -> Result<(), AuditFailure> {
        let mut guard = self.guard_for(call.head(), call);
        guard
            .write_outcome(outcome, 0, None)
            .await
            .map_err(AuditFailure)
    }

    /// Records an event that is not a call (a session opening, a refused method).
    pub async fn record(&self, event: &AuditEvent<'_>) -> Result<(), AuditFailure> {
        let line = self.seam.record(event).map_err(AuditFailure)?;
        self.within(Stage::Audit, self.audit.append(&line, Durability::Handed))
            .await
            .map_err(|reason| AuditFailure(reason.detail))
    }

    /// The wall clock, formatted for records.
    pub fn now(&self) -> String {
        rfc3339(self.clock.wall())
    }

    fn guard_for(&self, head: &CallHead, call: &Call) -> OutcomeGuard {
        let writer = Writer {
            audit: Arc::clone(&self.audit),
            seam: self.seam.clone(),
            clock: Arc::clone(&self.clock),
            tasks: self.tasks.clone(),
            timeout: self.stage_timeout,
        };
        let mut record = CallRecord::new(head, call.digest());
        record.arguments = Some(call.arguments().clone());
        OutcomeGuard::new(record, writer)
    }

    async fn stages<E: Execute>(
        &self,
        mut call: Call,
        exec: &E,
        ctx: &mut CallContext,
        guard: &mut OutcomeGuard,
    ) -> Ran {
        // [1] Authorize first: nothing should spend effort on, or reveal
        // anything about, a call its principal may not make.
        let mut grant = match self.authorize(&call, ctx, guard).await {
            Ok(grant) => grant,
            Err(stopped) => return Ran::Stopped(stopped),
        };

        // [5] Limits before any work is done for the call, so a flood is
        // cheap to refuse. What they reserve is settled after the call.
        let t = self.clock.monotonic();
        match &self.limits {
            Slot::PassThrough => {
                self.push(guard, Stage::Limits, t, StageVerdict::PassThrough, vec![])
            }
            Slot::Active(limits) => {
                let decision = self
                    .within(
                        Stage::Limits,
                        limits.check(call.head(), call.arguments(), ctx),
                    )
                    .await;
                match decision {
                    Ok(LimitDecision::Reserved {
                        reservation,
                        findings,
                    }) => {
                        guard.hold(Arc::clone(limits), reservation);
                        ctx.add_findings(findings.iter().cloned());
                        self.push(guard, Stage::Limits, t, StageVerdict::Allow, findings);
                    }
                    Ok(LimitDecision::Refused { reason, findings }) => {
                        return Ran::Stopped(self.deny(guard, Stage::Limits, t, reason, findings));
                    }
                    Err(reason) => {
                        return Ran::Stopped(self.failed(guard, Stage::Limits, t, &reason));
                    }
                }
            }
        }

        // [4] The outbound filter sees the arguments as the agent wrote them,
        // before any secret is injected into them. A rewrite goes back
        // through authorization, so the policy judges what will be sent and
        // the permit covers exactly that.
        let t = self.clock.monotonic();
        match &self.outbound {
            Slot::PassThrough => self.push(
                guard,
                Stage::OutboundFilter,
                t,
                StageVerdict::PassThrough,
                vec![],
            ),
            Slot::Active(filter) => {
                let (head, arguments) = call.parts_mut();
                let decision = self
                    .within(
                        Stage::OutboundFilter,
                        filter.check_arguments(head, arguments, ctx),
                    )
                    .await;
                let decision = match decision {
                    Ok(decision) => decision,
                    Err(reason) => {
                        return Ran::Stopped(self.failed(guard, Stage::OutboundFilter, t, &reason));
                    }
                };
                let mut findings = decision.findings;
                let rewritten = call.rehash();
                if rewritten {
                    guard.set_digest(call.digest(), call.arguments());
                    findings.push(Finding {
                        stage: Stage::OutboundFilter,
                        code: "arguments.rewritten".into(),
                        message: "the arguments were rewritten and authorized again".into(),
                    });
                }
                ctx.add_findings(findings.iter().cloned());
                match decision.verdict {
                    Verdict::Allow => self.push(
                        guard,
                        Stage::OutboundFilter,
                        t,
                        StageVerdict::Allow,
                        findings,
                    ),
                    Verdict::Deny(reason) => {
                        return Ran::Stopped(self.deny(
                            guard,
                            Stage::OutboundFilter,
                            t,
                            reason,
                            findings,
                        ));
                    }
                    Verdict::NeedsApproval(reason) => {
                        let verdict = StageVerdict::NeedsApproval {
                            code: reason.code,
                            reason: Bounded::new(reason.detail.as_str()),
                        };
                        self.push(guard, Stage::OutboundFilter, t, verdict, findings);
                        grant = match grant {
                            Grant::Ready(permit) => {
                                Grant::Pending(Box::new(permit.escalate(reason)))
                            }
                            pending @ Grant::Pending(_) => pending,
                        };
                    }
                }
                if rewritten {
                    let was_pending = matches!(grant, Grant::Pending(_));
                    grant = match self.authorize(&call, ctx, guard).await {
                        Ok(Grant::Ready(permit)) if was_pending => {
                            let reason = Reason::new(
                                ReasonCode::ApprovalRequired,
                                "the outbound filter asked for approval",
                            );
                            Grant::Pending(Box::new(permit.escalate(reason)))
                        }
                        Ok(grant) => grant,
                        Err(stopped) => return Ran::Stopped(stopped),
                    };
                }
            }
        }

        // [1] Approval after filtering, so a human approves exactly the
        // arguments that will be sent, and is never asked about a call that
        // would be refused anyway.
        let permit = match self.approve(grant, &call, ctx, guard).await {
            Ok(permit) => permit,
            Err(stopped) => return Ran::Stopped(stopped),
        };
        let mut authorized = match permit.redeem(call) {
            Ok(authorized) => authorized,
            Err(mismatch) => {
                let t = self.clock.monotonic();
                let reason = Reason::new(ReasonCode::StageFailed, mismatch.to_string());
                return Ran::Stopped(self.failed(guard, Stage::Execute, t, &reason));
            }
        };

        // [2] Secrets go in at the last moment, after every check that could
        // log or echo the arguments.
        let t = self.clock.monotonic();
        match &self.secrets {
            Slot::PassThrough => self.push(
                guard,
                Stage::InjectSecrets,
                t,
                StageVerdict::PassThrough,
                vec![],
            ),
            Slot::Active(injector) => {
                let (head, arguments) = authorized.parts_mut();
                match self
                    .within(Stage::InjectSecrets, injector.inject(head, arguments, ctx))
                    .await
                {
                    Ok(Decision {
                        verdict: Verdict::Allow,
                        findings,
                    }) => {
                        ctx.add_findings(findings.iter().cloned());
                        self.push(
                            guard,
                            Stage::InjectSecrets,
                            t,
                            StageVerdict::Allow,
                            findings,
                        )
                    }
                    // Approval was the gate before this one; here it is a deny.
                    Ok(Decision {
                        verdict: Verdict::Deny(reason) | Verdict::NeedsApproval(reason),
                        findings,
                    }) => {
                        ctx.add_findings(findings.iter().cloned());
                        return Ran::Stopped(self.deny(
                            guard,
                            Stage::InjectSecrets,
                            t,
                            reason,
                            findings,
                        ));
                    }
                    Err(reason) => {
                        return Ran::Stopped(self.failed(guard, Stage::InjectSecrets, t, &reason));
                    }
                }
            }
        }

        // [6] The intent, durable before anything runs: if it cannot be
        // written, nothing runs, and a crash during the call still leaves
        // the action visible.
        let t = self.clock.monotonic();
        if let Err(why) = guard.write_intent().await {
            tracing::error!(call = %authorized.head().id, "cannot record a call's intent: {why}");
            let reason = Reason::new(ReasonCode::AuditUnavailable, why);
            return Ran::Stopped(self.failed(guard, Stage::Audit, t, &reason));
        }

        // [3] Execute: only an `Authorized` call can be sent.
        let head = authorized.head().clone();
        let t = self.clock.monotonic();
        guard.executing();
        let mut executed = match exec.execute(authorized).await {
            Ok(executed) => executed,
            Err(e) => {
                let verdict = StageVerdict::Failed {
                    reason: Bounded::new(e.to_string()),
                };
                self.push(guard, Stage::Execute, t, verdict, vec![]);
                return Ran::Unfinished(e);
            }
        };
        self.push(guard, Stage::Execute, t, StageVerdict::Allow, vec![]);

        // [2] Redact before anything else reads the answer: the inbound
        // filter, the audit record and the agent see only redacted content.
        // From here on the call has run: a failure withholds its answer but
        // never reports the call as refused.
        let t = self.clock.monotonic();
        let answer = match &mut executed {
            Executed::Result(value) | Executed::RpcError(value) => value,
        };
        match &self.redact {
            Slot::PassThrough => {
                self.push(guard, Stage::Redact, t, StageVerdict::PassThrough, vec![])
            }
            Slot::Active(redactor) => match self
                .within(Stage::Redact, redactor.redact(answer))
                .await
            {
                Ok(findings) => {
                    ctx.add_findings(findings.iter().cloned());
                    // Only a redacted result is kept in the record.
                    guard.set_result(answer);
                    self.push(guard, Stage::Redact, t, StageVerdict::Allow, findings);
                }
                Err(reason) => return Ran::Withheld(self.failed(guard, Stage::Redact, t, &reason)),
            },
        }

        // [4] The inbound filter on the redacted answer; it may taint the session.
        let t = self.clock.monotonic();
        match &self.inbound {
            Slot::PassThrough => self.push(
                guard,
                Stage::InboundFilter,
                t,
                StageVerdict::PassThrough,
                vec![],
            ),
            Slot::Active(filter) => {
                match self
                    .within(
                        Stage::InboundFilter,
                        filter.check_result(&head, answer, ctx),
                    )
                    .await
                {
                    Ok(InboundDecision { decision, taint }) => {
                        if let Some(taint) = taint {
                            ctx.session().taint(taint);
                        }
                        let findings = decision.findings;
                        match decision.verdict {
                            Verdict::Allow => self.push(
                                guard,
                                Stage::InboundFilter,
                                t,
                                StageVerdict::Allow,
                                findings,
                            ),
                            // Approval makes no sense for an answer that exists: it is withheld.
                            Verdict::Deny(reason) | Verdict::NeedsApproval(reason) => {
                                return Ran::Withheld(self.deny(
                                    guard,
                                    Stage::InboundFilter,
                                    t,
                                    reason,
                                    findings,
                                ));
                            }
                        }
                    }
                    Err(reason) => {
                        return Ran::Withheld(self.failed(guard, Stage::InboundFilter, t, &reason));
                    }
                }
            }
        }
        Ran::Answered(executed)
    }

    /// Runs authorization (or records its pass-through) and says where the
    /// call's permission stands.
    async fn authorize(
        &self,
        call: &Call,
        ctx: &mut CallContext,
        guard: &mut OutcomeGuard,
    ) -> Result<Grant, Stopped> {
        let t = self.clock.monotonic();
        let (answer, passed) = match &self.authorize {
            Slot::PassThrough => (
                self.within(
                    Stage::Authorize,
                    palisade_authz::PassThrough.authorize(call, ctx),
                )
                .await,
                true,
            ),
            Slot::Active(authorizer) => (
                self.within(Stage::Authorize, authorizer.authorize(call, ctx))
                    .await,
                false,
            ),
        };
        let answer = answer.map_err(|reason| self.failed(guard, Stage::Authorize, t, &reason))?;
        let allowed = |findings| {
            if passed {
                (StageVerdict::PassThrough, findings)
            } else {
                (StageVerdict::Allow, findings)
            }
        };
        match answer {
            Authorization::Allow {
                permit,
                obligations,
                findings,
            } => {
                ctx.add_obligations(obligations);
                ctx.add_findings(findings.iter().cloned());
                let (verdict, findings) = allowed(findings);
                self.push(guard, Stage::Authorize, t, verdict, findings);
                Ok(Grant::Ready(permit))
            }
            Authorization::NeedsApproval {
                pending,
                obligations,
                findings,
            } => {
                ctx.add_obligations(obligations);
                ctx.add_findings(findings.iter().cloned());
                let reason = &pending.request().reason;
                let verdict = StageVerdict::NeedsApproval {
                    code: reason.code,
                    reason: Bounded::new(reason.detail.as_str()),
                };
                self.push(guard, Stage::Authorize, t, verdict, findings);
                Ok(Grant::Pending(pending))
            }
            Authorization::Deny { reason, findings } => {
                Err(self.deny(guard, Stage::Authorize, t, reason, findings))
            }
        }
    }

    /// The approval gate: a permit that waits for a human goes to the gate;
    /// without a gate, it cannot be approved and the call is held.
    async fn approve(
        &self,
        grant: Grant,
        call: &Call,
        ctx: &CallContext,
        guard: &mut OutcomeGuard,
    ) -> Result<Permit, Stopped> {
        let t = self.clock.monotonic();
        let pending = match (grant, &self.approval) {
            (Grant::Ready(permit), Slot::PassThrough) => {
                self.push(guard, Stage::Approval, t, StageVerdict::PassThrough, vec![]);
                return Ok(permit);
            }
            (Grant::Ready(permit), Slot::Active(_)) => {
                self.push(guard, Stage::Approval, t, StageVerdict::Allow, vec![]);
                return Ok(permit);
            }
            (Grant::Pending(pending), Slot::PassThrough) => {
                let reason = Reason::new(
                    ReasonCode::ApprovalRequired,
                    format!(
                        "{}; no approval gate is configured, so it cannot be approved",
                        pending.request().reason.detail
                    ),
                );
                return Err(self.hold(guard, t, reason));
            }
            (Grant::Pending(pending), Slot::Active(gate)) => (pending, gate),
        };
        let (pending, gate) = pending;
        let mut pending = *pending;
        // The human sees the exact text that will be sent; it is checked
        // against the digest the permit is bound to.
        if let Err(mismatch) = pending.show_arguments(call.arguments()) {
            let reason = Reason::new(ReasonCode::StageFailed, mismatch.to_string());
            return Err(self.failed(guard, Stage::Approval, t, &reason));
        }
        // A gate may hold the call open for a human's decision: that time
        // comes on top of the stage's own budget.
        let budget = self.stage_timeout.saturating_add(gate.hold());
        let decision = self
            .within_for(Stage::Approval, budget, gate.gate(pending.request(), ctx))
            .await
            .map_err(|reason| self.failed(guard, Stage::Approval, t, &reason))?;
        match decision {
            GateDecision::Approved(approval) => match pending.approve(approval) {
                Ok(permit) => {
                    self.push(guard, Stage::Approval, t, StageVerdict::Allow, vec![]);
                    Ok(permit)
                }
                Err(mismatch) => {
                    let reason = Reason::new(ReasonCode::StageFailed, mismatch.to_string());
                    Err(self.failed(guard, Stage::Approval, t, &reason))
                }
            },
            GateDecision::Pending(reason) => Err(self.hold(guard, t, reason)),
            GateDecision::Denied(reason) => {
                Err(self.deny(guard, Stage::Approval, t, reason, vec![]))
            }
        }
    }

    fn hold(&self, guard: &mut OutcomeGuard, t: Instant, reason: Reason) -> Stopped {
        let verdict = StageVerdict::NeedsApproval {
            code: reason.code,
            reason: Bounded::new(reason.detail.as_str()),
        };
        self.push(guard, Stage::Approval, t, verdict, vec![]);
        Stopped {
            stage: Stage::Approval,
            reason,
        }
    }

    fn deny(
        &self,
        guard: &mut OutcomeGuard,
        stage: Stage,
        t: Instant,
        reason: Reason,
        findings: Vec<Finding>,
    ) -> Stopped {
        let verdict = StageVerdict::Deny {
            code: reason.code,
            reason: Bounded::new(reason.detail.as_str()),
        };
        self.push(guard, stage, t, verdict, findings);
        Stopped { stage, reason }
    }

    /// Awaits a stage within its time budget; an error or a timeout is a
    /// reason to stop, which keeps any `retry_after` the stage gave.
    async fn within<T>(&self, stage: Stage, future: StageFuture<'_, T>) -> Result<T, Reason> {
        self.within_for(stage, self.stage_timeout, future).await
    }

    /// [`Pipeline::within`], with a budget of its own.
    async fn within_for<T>(
        &self,
        stage: Stage,
        budget: Duration,
        future: StageFuture<'_, T>,
    ) -> Result<T, Reason> {
        match tokio::time::timeout(budget, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let mut reason = Reason::new(
                    ReasonCode::StageFailed,
                    format!("stage `{stage}` failed: {error}"),
                );
                reason.retry_after = error.retry_after();
                Err(reason)
            }
            Err(_) => Err(Reason::new(
                ReasonCode::StageFailed,
                format!(
                    "stage `{stage}` exceeded its {} ms budget",
                    budget.as_millis()
                ),
            )),
        }
    }

    fn failed(
        &self,
        guard: &mut OutcomeGuard,
        stage: Stage,
        t: Instant,
        reason: &Reason,
    ) -> Stopped {
        let verdict = StageVerdict::Failed {
            reason: Bounded::new(reason.detail.as_str()),
        };
        self.push(guard, stage, t, verdict, vec![]);
        Stopped {
            stage,
            reason: reason.clone(),
        }
    }

    fn push(
        &self,
        guard: &mut OutcomeGuard,
        stage: Stage,
        since: Instant,
        verdict: StageVerdict,
        findings: Vec<Finding>,
    ) {
        // A stage that passes through did no work: no clock read for it.
        let micros = match verdict {
            StageVerdict::PassThrough => 0,
            StageVerdict::Allow
            | StageVerdict::Deny { .. }
            | StageVerdict::NeedsApproval { .. }
            | StageVerdict::Failed { .. }
            | StageVerdict::NotReached => {
                micros(self.clock.monotonic().saturating_duration_since(since))
            }
        };
        guard.push(StageRecord {
            stage,
            verdict,
            findings,
            micros,
        });
    }
}

/// How a call that got an answer ended.
fn answered(executed: &Executed) -> Outcome {
    match executed {
        Executed::Result(result) => match result
            .get("task")
            .and_then(|task| task.get("taskId"))
            .and_then(Value::as_str)
        {
            // A task-augmented call answers with a handle, not a result.
            Some(task) if result.get("content").is_none() => Outcome::TaskCreated {
                task: Bounded::new(task),
            },
            Some(_) | None => Outcome::Completed {
                tool_error: result.get("isError").and_then(Value::as_bool) == Some(true),
            },
        },
        Executed::RpcError(error) => Outcome::UpstreamError {
            code: error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
        },
    }
}

/// Every stage but audit appears in the record, in pipeline order; stages
/// the call never reached say so.
pub(crate) fn complete(records: &mut Vec<StageRecord>) {
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
    // Stable: a stage that ran twice (authorization after a rewrite) keeps its order.
    if !records.is_sorted_by_key(|r| r.stage.position()) {
        records.sort_by_key(|r| r.stage.position());
    }
}

pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
