//! The record of one call: each stage's verdict, the outcome, the latency.

use serde::Serialize;

use crate::call::{CallId, EffectClass, Principal, SessionId, ToolRef};
use crate::stage::Stage;
use crate::verdict::{Finding, ReasonCode};

/// What one stage did with the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum StageVerdict {
    Allow,
    /// The operator configured this stage to pass everything; see `pipeline.pass_through`.
    PassThrough,
    Deny {
        code: ReasonCode,
        reason: String,
    },
    NeedsApproval {
        code: ReasonCode,
        reason: String,
    },
    /// The stage failed or timed out; the call was denied.
    Failed {
        reason: String,
    },
    /// An earlier stage stopped the call.
    NotReached,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRecord {
    pub stage: Stage,
    #[serde(flatten)]
    pub verdict: StageVerdict,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    pub micros: u64,
}

/// How the call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The tool ran and returned a result (which may itself report a tool error).
    Completed { tool_error: bool },
    /// A stage stopped the call.
    Denied { stage: Stage, code: ReasonCode },
    /// The upstream answered with a JSON-RPC error.
    UpstreamError { code: i64 },
}

/// One audit line per call. Holds no arguments or results: those reach the
/// audit log only after the redaction layer exists to clean them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub time: String,
    pub call: CallId,
    pub principal: Principal,
    pub session: SessionId,
    pub tool: ToolRef,
    pub effect: EffectClass,
    pub stages: Vec<StageRecord>,
    pub outcome: Outcome,
    pub latency_micros: u64,
}
