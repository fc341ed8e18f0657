//! Layer 1: may this principal make this call, and has a human approved it if it must. The only crate that mints `Permit`s.
//!
//! Today it holds the explicit pass-through authorizer (used only when the
//! operator lists `authorize` under `pipeline.pass_through`), rules by effect
//! class, and a store of one-time approvals. Authentication, Cedar policies
//! and task credentials grow here.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod authn;
pub mod constraints;
mod permit;
pub mod policy;
mod rules;
pub mod tokens;

use std::fmt;

use palisade_core::stage::StageFuture;
use palisade_core::{Call, CallContext, Finding, Obligation, Reason, ReasonCode};

pub use approvals::{OneTimeApprovals, StoredApprovals};
pub use permit::{
    APPROVER_ROLE, Approval, ApprovalMismatch, ApprovalRequest, ArgumentsMismatch, Authorized,
    PendingApproval, Permit, PermitMismatch, RequestDigest,
};
pub use rules::{EffectRules, Rule};

/// Authorization's answer. Only this crate can build the first and the last
/// (they hold a permit), so an authorizer from elsewhere can only refuse, or
/// pass on an answer this crate gave it.
#[derive(Debug)]
pub enum Authorization {
    Allow {
        permit: Permit,
        /// What later stages must do for this call.
        obligations: Vec<Obligation>,
        findings: Vec<Finding>,
    },
    Deny {
        reason: Reason,
        findings: Vec<Finding>,
    },
    /// Allowed once a human approves the request the pending permit describes.
    NeedsApproval {
        pending: Box<PendingApproval>,
        obligations: Vec<Obligation>,
        findings: Vec<Finding>,
    },
}

impl Authorization {
    /// Allows `call` as it is now, with nothing asked of later stages.
    pub(crate) fn allow(call: &Call) -> Self {
        Authorization::Allow {
            permit: Permit::issue(call),
            obligations: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn deny(reason: Reason) -> Self {
        Authorization::Deny {
            reason,
            findings: Vec::new(),
        }
    }
}

/// May this principal make this call, with these arguments, in this session?
pub trait Authorize: Send + Sync + fmt::Debug {
    fn authorize<'a>(
        &'a self,
        call: &'a Call,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, Authorization>;
}

/// Allows every call that its caller's own credential allows. Built only
/// from an explicit `pipeline.pass_through` entry, and every call it allows
/// is recorded as `pass-through` in the audit log.
///
/// Passing authorization through drops the policies, never a task token's
/// scope: the token itself says what it may do, and its holder may be a
/// sub-agent given less than its principal has.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

impl Authorize for PassThrough {
    fn authorize<'a>(
        &'a self,
        call: &'a Call,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, Authorization> {
        Box::pin(async move {
            let head = call.head();
            if let Some(task) = head.principal.task()
                && let Err(why) = task.permits(
                    &head.target,
                    head.kind,
                    head.effect,
                    std::time::SystemTime::now(),
                )
            {
                return Ok(Authorization::deny(Reason::new(
                    ReasonCode::NotAuthorized,
                    format!(
                        "the task token `{}` does not allow this call: {why}",
                        task.id()
                    ),
                )));
            }
            Ok(Authorization::allow(call))
        })
    }
}

/// The approval gate's answer.
#[derive(Debug)]
pub enum GateDecision {
    /// A human approved exactly this request.
    Approved(Approval),
    /// Nobody has answered yet; the agent may retry later.
    Pending(Reason),
    /// A human refused.
    Denied(Reason),
}

/// Holds high-impact calls until a human approves the exact request. Lives
/// here, beside the permit, because only this crate may turn a pending
/// permit back into one.
pub trait ApprovalGate: Send + Sync + fmt::Debug {
    fn gate<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, GateDecision>;

    /// How long [`ApprovalGate::gate`] may hold a call open waiting for a
    /// human; the pipeline adds it to the stage's time budget.
    fn hold(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{
        CallHead, CallId, CallKind, EffectClass, Principal, ReasonCode, SessionFacts, SessionId,
        Target,
    };
    use serde_json::json;

    pub(crate) fn call(id: u64, effect: EffectClass, arguments: serde_json::Value) -> Call {
        let head = CallHead {
            id: CallId(id),
            principal: Principal::anonymous(),
            session: SessionId::new("s"),
            kind: CallKind::Tool,
            target: Target::new("srv", "tool"),
            effect,
            params: None,
            parent: None,
        };
        Call::new(head, arguments)
    }

    pub(crate) fn ctx() -> CallContext {
        CallContext::new(SessionFacts::new())
    }

    async fn permit(call: &Call) -> Permit {
        match PassThrough.authorize(call, &ctx()).await.unwrap() {
            Authorization::Allow { permit, .. } => permit,
            other @ (Authorization::Deny { .. } | Authorization::NeedsApproval { .. }) => {
                panic!("{other:?}")
            }
        }
    }

    #[tokio::test]
    async fn a_permit_redeems_only_for_its_call() {
        let one = call(1, EffectClass::Read, json!({"path": "/a"}));
        let p = permit(&one).await;
        assert_eq!(p.call(), CallId(1));
        // Another call id.
        let other = call(2, EffectClass::Read, json!({"path": "/a"}));
        assert!(matches!(p.redeem(other), Err(PermitMismatch::Head { .. })));
        // Same id, another effect class: the head is compared whole.
        let p = permit(&one).await;
        let louder = call(1, EffectClass::Irreversible, json!({"path": "/a"}));
        assert!(matches!(p.redeem(louder), Err(PermitMismatch::Head { .. })));
        // Same head, other arguments.
        let p = permit(&one).await;
        let swapped = call(1, EffectClass::Read, json!({"path": "/etc/shadow"}));
        assert!(matches!(
            p.redeem(swapped),
            Err(PermitMismatch::Arguments { .. })
        ));
        // Arguments changed after hashing: the digest is recomputed at redeem.
        let p = permit(&one).await;
        let mut tampered = one.clone();
        tampered.parts_mut().1["path"] = json!("/etc/shadow");
        assert!(matches!(
            p.redeem(tampered),
            Err(PermitMismatch::Arguments { .. })
        ));
        // The call itself.
        let p = permit(&one).await;
        let authorized = p.redeem(one.clone()).unwrap();
        assert_eq!(authorized.arguments(), one.arguments());
        assert_eq!(authorized.authorized_digest(), one.digest());
    }

    #[tokio::test]
    async fn an_escalated_permit_needs_the_approval_of_its_own_request() {
        let one = call(1, EffectClass::Write, json!({"x": 1}));
        let pending = permit(&one)
            .await
            .escalate(Reason::new(ReasonCode::ApprovalRequired, "writes"));
        let other = call(1, EffectClass::Write, json!({"x": 2}));
        let wrong = permit(&other)
            .await
            .escalate(Reason::new(ReasonCode::ApprovalRequired, "writes"));
        // An approval of another request does not fit.
        let approval = Approval::grant(wrong.request().digest());
        assert_eq!(pending.approve(approval).unwrap_err(), ApprovalMismatch);
        let pending = permit(&one)
            .await
            .escalate(Reason::new(ReasonCode::ApprovalRequired, "writes"));
        let approval = Approval::grant(pending.request().digest());
        assert!(pending.approve(approval).unwrap().redeem(one).is_ok());
    }
}
