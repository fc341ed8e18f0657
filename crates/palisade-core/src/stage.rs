//! The pipeline's stages, and the traits each layer implements to take part in one.
//!
//! The traits live here (all but `Authorize` and `ApprovalGate`, which live
//! with the `Permit` that only they may mint or complete, in
//! `palisade-authz`), not in the layer crates, so that layers never depend on
//! each other and the pipeline can hold any implementation behind `dyn`.
//!
//! A stage gets the call's head by shared reference only: it cannot change
//! who calls, which target, or the effect class. Stages that may rewrite get
//! the arguments alone:
//!
//! ```compile_fail
//! use palisade_core::{CallHead, Target};
//! fn sneaky(head: &CallHead) {
//!     head.target = Target::new("other", "delete_everything"); // does not compile
//! }
//! ```

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::call::CallHead;
use crate::context::{CallContext, Reservation, Settled, Taint, Usage};
use crate::redact::{AuditLine, Redacted};
use crate::verdict::{Decision, Finding, Reason};

/// The pipeline's stages, in the order they run (see ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Authorize,
    Limits,
    OutboundFilter,
    Approval,
    InjectSecrets,
    Execute,
    Redact,
    InboundFilter,
    Settle,
    Audit,
}

impl Stage {
    /// Every stage, in the order the pipeline runs them.
    pub const ORDER: [Stage; 10] = [
        Stage::Authorize,
        Stage::Limits,
        Stage::OutboundFilter,
        Stage::Approval,
        Stage::InjectSecrets,
        Stage::Execute,
        Stage::Redact,
        Stage::InboundFilter,
        Stage::Settle,
        Stage::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Authorize => "authorize",
            Stage::Limits => "limits",
            Stage::OutboundFilter => "outbound-filter",
            Stage::Approval => "approval",
            Stage::InjectSecrets => "inject-secrets",
            Stage::Execute => "execute",
            Stage::Redact => "redact",
            Stage::InboundFilter => "inbound-filter",
            Stage::Settle => "settle",
            Stage::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ORDER.into_iter().find(|stage| stage.as_str() == s)
    }

    /// Position in [`Stage::ORDER`].
    pub fn position(self) -> usize {
        match self {
            Stage::Authorize => 0,
            Stage::Limits => 1,
            Stage::OutboundFilter => 2,
            Stage::Approval => 3,
            Stage::InjectSecrets => 4,
            Stage::Execute => 5,
            Stage::Redact => 6,
            Stage::InboundFilter => 7,
            Stage::Settle => 8,
            Stage::Audit => 9,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage could not reach a decision. The pipeline turns this into an audited deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// Something the stage needs (a database, a vault, a policy store) cannot
    /// be reached now; the agent may retry after `retry_after`.
    #[error("unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The stage failed: corrupt state, input it cannot judge, a bug.
    #[error("{detail}")]
    Failed { detail: String },
}

impl StageError {
    pub fn new(detail: impl Into<String>) -> Self {
        StageError::Failed {
            detail: detail.into(),
        }
    }

    pub fn unavailable(detail: impl Into<String>, retry_after: Option<Duration>) -> Self {
        StageError::Unavailable {
            detail: detail.into(),
            retry_after,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StageError::Unavailable { retry_after, .. } => *retry_after,
            StageError::Failed { .. } => None,
        }
    }
}

/// The future a stage returns: boxed, so stages can sit behind `dyn`.
pub type StageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StageError>> + Send + 'a>>;

/// The limits layer's answer: a reservation to settle later, or a refusal.
#[derive(Debug)]
pub enum LimitDecision {
    Reserved {
        reservation: Reservation,
        findings: Vec<Finding>,
    },
    Refused {
        reason: Reason,
        findings: Vec<Finding>,
    },
}

/// Layer 5: rate limits, quotas, cost reservation and loop detection before the call.
pub trait Limit: Send + Sync + fmt::Debug {
    /// Checks the call and reserves its estimated cost atomically, so
    /// concurrent calls cannot together overshoot a budget.
    fn check<'a>(
        &'a self,
        head: &'a CallHead,
        arguments: &'a Value,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, LimitDecision>;
    /// The call ran: charges what it actually used, and says what that
    /// cost. Never refunds work that ran, whatever later stages did with
    /// its result.
    fn settle<'a>(&'a self, reservation: Reservation, usage: Usage) -> StageFuture<'a, Settled>;
    /// The call never ran: gives the reservation back.
    fn release<'a>(&'a self, reservation: Reservation) -> StageFuture<'a, ()>;
}

/// Layer 4, outbound: checks (and may rewrite) the arguments before they leave.
///
/// A rewrite sends the call back through authorization, which then sees
/// exactly what will be sent.
pub trait OutboundFilter: Send + Sync + fmt::Debug {
    fn check_arguments<'a>(
        &'a self,
        head: &'a CallHead,
        arguments: &'a mut Value,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, Decision>;
}

/// Layer 2, injection: after every check has run, makes sure each secret
/// the call will use exists, is not revoked, and goes only to its bound
/// destination; a deny names which secret and why. Values are put in at
/// the outbound request itself, inside the secrets layer, never into the
/// arguments that the rest of palisade (and its audit record) sees.
pub trait InjectSecrets: Send + Sync + fmt::Debug {
    fn inject<'a>(
        &'a self,
        head: &'a CallHead,
        arguments: &'a mut Value,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, Decision>;
}

/// Layer 2, redaction: removes secret values from what comes back.
pub trait Redact: Send + Sync + fmt::Debug {
    fn redact<'a>(&'a self, result: &'a mut Value) -> StageFuture<'a, Vec<Finding>>;
}

/// What the inbound filter made of a result: a decision, and perhaps a taint
/// for the session the result entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDecision {
    pub decision: Decision,
    pub taint: Option<Taint>,
}

impl InboundDecision {
    pub fn allow() -> Self {
        Self {
            decision: Decision::allow(),
            taint: None,
        }
    }
}

/// Layer 4, inbound: checks (and may rewrite) what a tool returned, a result or an
/// upstream error, before the model sees it.
pub trait InboundFilter: Send + Sync + fmt::Debug {
    fn check_result<'a>(
        &'a self,
        head: &'a CallHead,
        result: &'a mut Value,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, InboundDecision>;
}

/// Layer 6: keeps the record of every call, allowed or denied, and of every
/// session. Takes only what passed the redaction seam.
pub trait Audit: Send + Sync + fmt::Debug {
    /// Appends one record: when this returns `Ok`, the record survives a crash
    /// of palisade, and with [`Durability::Stored`] a crash of the machine
    /// too (where the sink can promise that; the operator may relax it).
    fn append<'a>(
        &'a self,
        line: &'a Redacted<AuditLine>,
        durability: Durability,
    ) -> StageFuture<'a, ()>;
}

/// How far a record must have gone before [`Audit::append`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage: a call's intent, written before the call runs, so
    /// that nothing runs which a crash of the machine could take out of
    /// the log.
    Stored,
    /// At least with the operating system, on stable storage moments later:
    /// everything else (outcomes, denials, sessions), whose call either did
    /// not run or already has its intent stored.
    Handed,
}
