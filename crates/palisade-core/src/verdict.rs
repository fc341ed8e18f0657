//! What a layer decided about a call, and why.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::stage::Stage;

/// A layer's answer. A denial is a normal outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(Reason),
    NeedsApproval(Reason),
}

/// Why a call was stopped. `code` is what the agent sees; `detail` goes to the
/// audit record only, since it may name internal things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: ReasonCode,
    pub detail: String,
    pub retry_after: Option<Duration>,
    /// The approval request a held call waits for (`apr_…`), so that the
    /// server can name it to the agent and offer it to a human without
    /// parsing `detail`.
    pub approval: Option<Arc<str>>,
}

impl Reason {
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after: None,
            approval: None,
        }
    }

    /// The call waits for approval request `id`.
    pub fn awaiting(mut self, id: impl Into<Arc<str>>) -> Self {
        self.approval = Some(id.into());
        self
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

/// The closed set of reasons a call can be stopped for.
///
/// Every mapping over this enum (to JSON-RPC errors, to audit fields) is an
/// exhaustive `match`, so a new reason cannot be forgotten anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonCode {
    /// The policy does not allow this principal to make this call.
    NotAuthorized,
    /// A rate limit, quota or cost budget is exhausted.
    LimitExceeded,
    /// The same call, or a short cycle of calls, repeats.
    LoopDetected,
    /// A filter found content that must not pass.
    ContentBlocked,
    /// A human must approve this call first.
    ApprovalRequired,
    /// The named tool does not exist, or not for this principal.
    UnknownTool,
    /// A stage failed or timed out; palisade failed closed.
    StageFailed,
    /// The upstream server could not be reached, crashed or timed out.
    UpstreamUnavailable,
    /// The audit record could not be written, so the call did not run.
    AuditUnavailable,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::NotAuthorized => "not-authorized",
            ReasonCode::LimitExceeded => "limit-exceeded",
            ReasonCode::LoopDetected => "loop-detected",
            ReasonCode::ContentBlocked => "content-blocked",
            ReasonCode::ApprovalRequired => "approval-required",
            ReasonCode::UnknownTool => "unknown-tool",
            ReasonCode::StageFailed => "stage-failed",
            ReasonCode::UpstreamUnavailable => "upstream-unavailable",
            ReasonCode::AuditUnavailable => "audit-unavailable",
        }
    }
}

/// Something a layer noticed, whether or not it changed the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub stage: Stage,
    /// A stable, machine-readable name for what was found (`secret.aws-key`).
    pub code: String,
    pub message: String,
}

/// A verdict with the findings that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

impl Decision {
    pub fn allow() -> Self {
        Self {
            verdict: Verdict::Allow,
            findings: Vec::new(),
        }
    }

    pub fn deny(reason: Reason) -> Self {
        Self {
            verdict: Verdict::Deny(reason),
            findings: Vec::new(),
        }
    }

    pub fn needs_approval(reason: Reason) -> Self {
        Self {
            verdict: Verdict::NeedsApproval(reason),
            findings: Vec::new(),
        }
    }

    pub fn with_findings(mut self, findings: Vec<Finding>) -> Self {
        self.findings = findings;
        self
    }
}
