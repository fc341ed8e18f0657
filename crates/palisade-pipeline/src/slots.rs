//! How a pipeline is assembled: each stage is an implementation, or an explicit pass-through.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use palisade_authz::{ApprovalGate, Authorize};
use palisade_core::stage::{Audit, InboundFilter, InjectSecrets, Limit, OutboundFilter, Redact};
use palisade_core::{Clock, RedactionSeam, Redactor, Stage, SystemClock};
use tokio_util::task::TaskTracker;

use crate::run::Pipeline;

/// A stage's place in the pipeline. `PassThrough` exists only because the
/// operator asked for it, and every call records it.
#[derive(Debug)]
pub enum Slot<T: ?Sized> {
    Active(Arc<T>),
    PassThrough,
}

impl<T: ?Sized> Slot<T> {
    pub fn passes(&self) -> bool {
        matches!(self, Slot::PassThrough)
    }
}

impl<T: ?Sized> Clone for Slot<T> {
    fn clone(&self) -> Self {
        match self {
            Slot::Active(t) => Slot::Active(Arc::clone(t)),
            Slot::PassThrough => Slot::PassThrough,
        }
    }
}

/// The stages an operator may run as pass-through. `execute` and `audit`
/// never can; `settle` belongs to `limits`.
pub const PASSABLE: [Stage; 7] = [
    Stage::Authorize,
    Stage::Limits,
    Stage::OutboundFilter,
    Stage::Approval,
    Stage::InjectSecrets,
    Stage::Redact,
    Stage::InboundFilter,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error(
        "stage `{0}` has no implementation yet; list it in `pipeline.pass_through` to run without it"
    )]
    Unimplemented(Stage),
    #[error("stage `{0}` cannot be passed through")]
    NotPassable(Stage),
    #[error("stage `{0}` is both implemented and listed in `pipeline.pass_through`")]
    Both(Stage),
    #[error("the pipeline needs an audit sink")]
    NoAudit,
    #[error("stage `redact` is implemented but the redaction seam has no redactor")]
    NoRedactor,
}

#[derive(Debug, Default)]
pub struct PipelineBuilder {
    authorize: Option<Arc<dyn Authorize>>,
    limits: Option<Arc<dyn Limit>>,
    outbound: Option<Arc<dyn OutboundFilter>>,
    approval: Option<Arc<dyn ApprovalGate>>,
    secrets: Option<Arc<dyn InjectSecrets>>,
    redact: Option<Arc<dyn Redact>>,
    inbound: Option<Arc<dyn InboundFilter>>,
    audit: Option<Arc<dyn Audit>>,
    redactor: Option<Arc<dyn Redactor>>,
    tasks: Option<TaskTracker>,
    pass_through: BTreeSet<PassKey>,
    stage_timeout: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
    degraded: Vec<String>,
}

// `Stage` is not `Ord`; keep the set ordered by pipeline position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PassKey(usize);

fn key(stage: Stage) -> PassKey {
    PassKey(stage.position())
}

impl PipelineBuilder {
    pub fn authorize(mut self, stage: Arc<dyn Authorize>) -> Self {
        self.authorize = Some(stage);
        self
    }
    pub fn limits(mut self, stage: Arc<dyn Limit>) -> Self {
        self.limits = Some(stage);
        self
    }
    pub fn outbound_filter(mut self, stage: Arc<dyn OutboundFilter>) -> Self {
        self.outbound = Some(stage);
        self
    }
    pub fn approval(mut self, stage: Arc<dyn ApprovalGate>) -> Self {
        self.approval = Some(stage);
        self
    }
    pub fn inject_secrets(mut self, stage: Arc<dyn InjectSecrets>) -> Self {
        self.secrets = Some(stage);
        self
    }
    pub fn redact(mut self, stage: Arc<dyn Redact>) -> Self {
        self.redact = Some(stage);
        self
    }
    pub fn inbound_filter(mut self, stage: Arc<dyn InboundFilter>) -> Self {
        self.inbound = Some(stage);
        self
    }
    pub fn audit(mut self, sink: Arc<dyn Audit>) -> Self {
        self.audit = Some(sink);
        self
    }
    /// What the redaction seam applies to everything leaving palisade.
    /// Without one, `redact` must be passed through, and the seam is too.
    pub fn redactor(mut self, redactor: Arc<dyn Redactor>) -> Self {
        self.redactor = Some(redactor);
        self
    }
    /// What palisade runs without (degraded modes), stamped on every audit record.
    pub fn degraded(mut self, degraded: Vec<String>) -> Self {
        self.degraded = degraded;
        self
    }
    /// Where the pipeline tracks the work it spawns; by default its own.
    pub fn tasks(mut self, tasks: TaskTracker) -> Self {
        self.tasks = Some(tasks);
        self
    }
    /// Runs `stage` as pass-through. Refused at `build` for stages that cannot be.
    pub fn pass_through(mut self, stage: Stage) -> Self {
        self.pass_through.insert(key(stage));
        self
    }
    pub fn stage_timeout(mut self, timeout: Duration) -> Self {
        self.stage_timeout = Some(timeout);
        self
    }
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn build(self) -> Result<Pipeline, BuildError> {
        for PassKey(i) in &self.pass_through {
            let stage = Stage::ORDER.get(*i).copied().unwrap_or(Stage::Execute);
            if !PASSABLE.contains(&stage) {
                return Err(BuildError::NotPassable(stage));
            }
        }
        let passes = |stage| self.pass_through.contains(&key(stage));
        fn slot<T: ?Sized>(
            stage: Stage,
            active: Option<Arc<T>>,
            passes: bool,
        ) -> Result<Slot<T>, BuildError> {
            match (active, passes) {
                (Some(a), false) => Ok(Slot::Active(a)),
                (None, true) => Ok(Slot::PassThrough),
                (Some(_), true) => Err(BuildError::Both(stage)),
                (None, false) => Err(BuildError::Unimplemented(stage)),
            }
        }
        Ok(Pipeline {
            authorize: slot(Stage::Authorize, self.authorize, passes(Stage::Authorize))?,
            limits: slot(Stage::Limits, self.limits, passes(Stage::Limits))?,
            outbound: slot(
                Stage::OutboundFilter,
                self.outbound,
                passes(Stage::OutboundFilter),
            )?,
            approval: slot(Stage::Approval, self.approval, passes(Stage::Approval))?,
            secrets: slot(
                Stage::InjectSecrets,
                self.secrets,
                passes(Stage::InjectSecrets),
            )?,
            redact: slot(Stage::Redact, self.redact, passes(Stage::Redact))?,
            inbound: slot(
                Stage::InboundFilter,
                self.inbound,
                passes(Stage::InboundFilter),
            )?,
            seam: match (self.redactor, passes(Stage::Redact)) {
                (Some(redactor), _) => RedactionSeam::new(redactor),
                (None, true) => RedactionSeam::pass_through(),
                (None, false) => return Err(BuildError::NoRedactor),
            }
            .stamping(self.degraded),
            tasks: self.tasks.unwrap_or_default(),
            audit: self.audit.ok_or(BuildError::NoAudit)?,
            stage_timeout: self.stage_timeout.unwrap_or(Duration::from_secs(5)),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        })
    }
}
