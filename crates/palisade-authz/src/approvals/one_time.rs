//! One-time approvals in memory: a human's yes to one exact request, spent by the first call that matches it.

use std::collections::HashSet;
use std::sync::Mutex;

use palisade_core::stage::StageFuture;
use palisade_core::{CallContext, Reason, ReasonCode};

use crate::permit::{Approval, ApprovalRequest, RequestDigest};
use crate::{ApprovalGate, GateDecision};

/// Approvals granted out of band (console, CLI, API), each usable once.
///
/// An approval names the request's digest (principal, session, target,
/// effect and the arguments' digest), so it cannot be moved to other
/// arguments or another tool, and a replay finds it spent.
#[derive(Debug, Default)]
pub struct OneTimeApprovals {
    granted: Mutex<HashSet<RequestDigest>>,
    refused: Mutex<HashSet<RequestDigest>>,
}

impl OneTimeApprovals {
    /// A human approved `request`.
    pub fn grant(&self, request: RequestDigest) {
        lock(&self.refused).remove(&request);
        lock(&self.granted).insert(request);
    }

    /// A human refused `request`.
    pub fn refuse(&self, request: RequestDigest) {
        lock(&self.granted).remove(&request);
        lock(&self.refused).insert(request);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ApprovalGate for OneTimeApprovals {
    fn gate<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, GateDecision> {
        Box::pin(async move {
            let digest = request.digest();
            if lock(&self.refused).contains(&digest) {
                return Ok(GateDecision::Denied(Reason::new(
                    ReasonCode::NotAuthorized,
                    format!("approval request `{}` was refused", digest.to_hex()),
                )));
            }
            // Removed as it is used: one approval, one call.
            if lock(&self.granted).remove(&digest) {
                return Ok(GateDecision::Approved(Approval::grant(digest)));
            }
            Ok(GateDecision::Pending(Reason::new(
                ReasonCode::ApprovalRequired,
                format!("waiting for approval of request `{}`", digest.to_hex()),
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{call, ctx};
    use crate::{Authorization, Authorize, PassThrough};
    use palisade_core::EffectClass;
    use serde_json::json;

    async fn pending(arguments: serde_json::Value) -> crate::PendingApproval {
        let c = call(1, EffectClass::Irreversible, arguments);
        match PassThrough.authorize(&c, &ctx()).await.unwrap() {
            Authorization::Allow { permit, .. } => {
                permit.escalate(Reason::new(ReasonCode::ApprovalRequired, "irreversible"))
            }
            other @ (Authorization::Deny { .. } | Authorization::NeedsApproval { .. }) => {
                panic!("{other:?}")
            }
        }
    }

    #[tokio::test]
    async fn an_approval_is_used_once_and_fits_only_its_request() {
        let gate = OneTimeApprovals::default();
        let p = pending(json!({"to": "alice"})).await;
        assert!(matches!(
            gate.gate(p.request(), &ctx()).await.unwrap(),
            GateDecision::Pending(_)
        ));
        gate.grant(p.request().digest());
        // Another request (swapped arguments) does not get it.
        let swapped = pending(json!({"to": "mallory"})).await;
        assert!(matches!(
            gate.gate(swapped.request(), &ctx()).await.unwrap(),
            GateDecision::Pending(_)
        ));
        let GateDecision::Approved(approval) = gate.gate(p.request(), &ctx()).await.unwrap() else {
            panic!("expected approval");
        };
        assert!(p.approve(approval).is_ok());
        // Replayed: spent.
        let again = pending(json!({"to": "alice"})).await;
        assert!(matches!(
            gate.gate(again.request(), &ctx()).await.unwrap(),
            GateDecision::Pending(_)
        ));
        gate.refuse(again.request().digest());
        assert!(matches!(
            gate.gate(again.request(), &ctx()).await.unwrap(),
            GateDecision::Denied(_)
        ));
    }
}
