//! The one mapping from a denial (or a withheld result) to what the agent reads: a short JSON-RPC error.
//!
//! The agent gets the reason's class, the stage and when to retry; the full
//! reason (which may name internals) goes to the audit record only.

use palisade_core::{Reason, ReasonCode, Stage};
use palisade_mcp::jsonrpc::{ErrorObject, INTERNAL_ERROR, INVALID_PARAMS};
use serde_json::{Value, json};

/// JSON-RPC codes palisade answers with, in the implementation-defined range.
pub const DENIED: i64 = -32010;
pub const LIMITED: i64 = -32011;
pub const APPROVAL_REQUIRED: i64 = -32012;
pub const BLOCKED: i64 = -32013;
pub const UPSTREAM_UNAVAILABLE: i64 = -32015;
pub const AUDIT_UNAVAILABLE: i64 = -32016;
pub const WITHHELD: i64 = -32017;

pub fn to_error(stage: Stage, reason: &Reason) -> ErrorObject {
    let (code, message) = match reason.code {
        ReasonCode::NotAuthorized => (DENIED, "palisade denied this call: not authorized"),
        ReasonCode::LimitExceeded => (LIMITED, "palisade denied this call: limit exceeded"),
        ReasonCode::LoopDetected => (
            LIMITED,
            "palisade denied this call: the same calls repeat in a loop",
        ),
        ReasonCode::ContentBlocked => (
            BLOCKED,
            "palisade blocked this call: its content is not allowed",
        ),
        ReasonCode::ApprovalRequired => (
            APPROVAL_REQUIRED,
            "palisade is holding this call for human approval",
        ),
        ReasonCode::UnknownTool => (INVALID_PARAMS, "unknown tool"),
        ReasonCode::StageFailed => (
            INTERNAL_ERROR,
            "palisade could not check this call and refused it",
        ),
        ReasonCode::UpstreamUnavailable => {
            (UPSTREAM_UNAVAILABLE, "the tool's server is unavailable")
        }
        ReasonCode::AuditUnavailable => (
            AUDIT_UNAVAILABLE,
            "palisade cannot write its audit log, so this call did not run",
        ),
    };
    // Layers 1 and 2 write their reasons for the agent (which policy, which
    // constraint, which approval request; which secret and which rule of its
    // binding): they say what to change or whom to ask, name nothing
    // internal and never a value. Every other stage's detail stays in the
    // audit record.
    // Layer 5 writes its reasons for the agent too: which limit, its
    // window, spend against the budget, the loop it would repeat.
    let readable = (matches!(
        reason.code,
        ReasonCode::NotAuthorized | ReasonCode::ApprovalRequired
    ) && matches!(
        stage,
        Stage::Authorize | Stage::Approval | Stage::InjectSecrets
    )) || (matches!(
        reason.code,
        ReasonCode::LimitExceeded | ReasonCode::LoopDetected
    ) && stage == Stage::Limits);
    if readable && !reason.detail.is_empty() {
        let detail = bounded(&reason.detail, 400);
        let message = format!("{message}: {detail}");
        return error(code, &message, stage, reason, false);
    }
    error(code, message, stage, reason, false)
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The call ran, but its answer is withheld. Says so, so that the agent
/// does not retry an action that already happened.
pub fn withheld(stage: Stage, reason: &Reason) -> ErrorObject {
    let message = match reason.code {
        ReasonCode::ContentBlocked => {
            "the call ran, but palisade blocked its result: its content is not allowed"
        }
        ReasonCode::AuditUnavailable => {
            "the call ran, but palisade cannot write its audit log, so its result is withheld"
        }
        ReasonCode::NotAuthorized
        | ReasonCode::LimitExceeded
        | ReasonCode::LoopDetected
        | ReasonCode::ApprovalRequired
        | ReasonCode::UnknownTool
        | ReasonCode::StageFailed
        | ReasonCode::UpstreamUnavailable => {
            "the call ran, but palisade could not check its result, so it is withheld"
        }
    };
    error(WITHHELD, message, stage, reason, true)
}

fn error(code: i64, message: &str, stage: Stage, reason: &Reason, executed: bool) -> ErrorObject {
    let mut data = json!({ "palisade": { "reason": reason.code.as_str(), "stage": stage.as_str(), "executed": executed } });
    if let Some(Value::Object(p)) = data.get_mut("palisade") {
        if let Some(after) = reason.retry_after {
            p.insert(
                "retryAfterMs".into(),
                json!(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
            );
        }
        if let Some(request) = &reason.approval {
            p.insert("approvalRequest".into(), json!(request.as_ref()));
        }
    }
    ErrorObject::new(code, message).with_data(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_agent_sees_the_class_not_the_detail() {
        let reason = Reason::new(
            ReasonCode::StageFailed,
            "secret backend at 10.0.0.7 unreachable",
        );
        let error = to_error(Stage::InjectSecrets, &reason);
        let text = serde_json::to_string(&error).unwrap();
        assert!(!text.contains("10.0.0.7"), "{text}");
        assert_eq!(error.code, INTERNAL_ERROR);
        assert_eq!(error.data.unwrap()["palisade"]["stage"], "inject-secrets");
    }

    #[test]
    fn retry_after_is_given_in_milliseconds() {
        let reason = Reason::new(ReasonCode::LimitExceeded, "10/min")
            .retry_after(Duration::from_millis(1500));
        let error = to_error(Stage::Limits, &reason);
        assert_eq!(error.code, LIMITED);
        assert_eq!(error.data.unwrap()["palisade"]["retryAfterMs"], 1500);
    }

    #[test]
    fn a_limit_names_itself_and_when_to_retry() {
        let reason = Reason::new(
            ReasonCode::LimitExceeded,
            "limit `tool_calls` (30 calls per 1 min 0 s, bursts of 30) is exhausted; retry in 2.0 s",
        )
        .retry_after(Duration::from_secs(2));
        let error = to_error(Stage::Limits, &reason);
        assert!(
            error.message.contains("limit `tool_calls`"),
            "{}",
            error.message
        );
        assert_eq!(error.data.unwrap()["palisade"]["retryAfterMs"], 2000);
        let looped = Reason::new(ReasonCode::LoopDetected, "this exact call was made 3 times");
        let error = to_error(Stage::Limits, &looped);
        assert!(error.message.contains("made 3 times"), "{}", error.message);
        // A store failure at the limits stage stays in the audit record.
        let failed = Reason::new(ReasonCode::StageFailed, "redis://10.0.0.9 unreachable");
        let error = to_error(Stage::Limits, &failed);
        assert!(!error.message.contains("10.0.0.9"), "{}", error.message);
    }

    #[test]
    fn a_withheld_result_says_the_call_ran() {
        let reason = Reason::new(ReasonCode::ContentBlocked, "injection in result");
        let error = withheld(Stage::InboundFilter, &reason);
        assert_eq!(error.code, WITHHELD);
        assert!(error.message.contains("ran"), "{}", error.message);
        assert_eq!(error.data.unwrap()["palisade"]["executed"], true);
        let refused = to_error(
            Stage::Audit,
            &Reason::new(ReasonCode::AuditUnavailable, "disk full"),
        );
        assert_eq!(refused.code, AUDIT_UNAVAILABLE);
        assert_eq!(refused.data.unwrap()["palisade"]["executed"], false);
    }
}
