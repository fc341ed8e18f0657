//! The pipeline's stages, and the trait each layer implements to take part in one.
//!
//! The traits live here (all but `Authorize`, which lives with the `Permit`
//! it alone may mint, in `palisade-authz`), not in the layer crates, so that layers never depend
//! on each other and the pipeline can hold any implementation behind `dyn`.

use std::fmt;
use std::pin::Pin;

use serde::Serialize;

use crate::call::Call;
use crate::record::CallRecord;
use crate::verdict::{Decision, Finding};

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
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage could not reach a decision. The pipeline turns this into an audited deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    pub message: String,
}

impl StageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StageError {}

/// The future a stage returns: boxed, so stages can sit behind `dyn`.
pub type StageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StageError>> + Send + 'a>>;

/// Layer 5: rate limits, quotas, cost reservation and loop detection before the call.
pub trait Limit: Send + Sync + fmt::Debug {
    fn check<'a>(&'a self, call: &'a Call) -> StageFuture<'a, Decision>;
    /// Settles what `check` reserved, once the call's outcome is known.
    fn settle<'a>(&'a self, call: &'a Call, succeeded: bool) -> StageFuture<'a, ()>;
}

/// Layer 4, outbound: checks (and may rewrite) the arguments before they leave.
pub trait OutboundFilter: Send + Sync + fmt::Debug {
    fn check_arguments<'a>(&'a self, call: &'a mut Call) -> StageFuture<'a, Decision>;
}

/// Layer 1, approval gate: holds high-impact calls for a human.
pub trait ApprovalGate: Send + Sync + fmt::Debug {
    fn gate<'a>(&'a self, call: &'a Call) -> StageFuture<'a, Decision>;
}

/// Layer 2, injection: puts secret values into the outbound call, toward its bound destination only.
pub trait InjectSecrets: Send + Sync + fmt::Debug {
    fn inject<'a>(&'a self, call: &'a mut Call) -> StageFuture<'a, ()>;
}

/// Layer 2, redaction: removes secret values from what comes back.
pub trait Redact: Send + Sync + fmt::Debug {
    fn redact<'a>(&'a self, result: &'a mut serde_json::Value) -> StageFuture<'a, Vec<Finding>>;
}

/// Layer 4, inbound: checks (and may rewrite) what a tool returned, a result or an
/// upstream error, before the model sees it.
pub trait InboundFilter: Send + Sync + fmt::Debug {
    fn check_result<'a>(
        &'a self,
        call: &'a Call,
        result: &'a mut serde_json::Value,
    ) -> StageFuture<'a, Decision>;
}

/// Layer 6: keeps the record of every call, allowed or denied.
pub trait Audit: Send + Sync + fmt::Debug {
    fn append<'a>(&'a self, record: &'a CallRecord) -> StageFuture<'a, ()>;
}
