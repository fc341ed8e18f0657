//! The proofs of layer 1: a `Permit` for one call, the `Authorized` call it redeems into, and approvals.
//!
//! Nothing executes without a `Permit` (ARCHITECTURE.md, invariant 3). Its
//! constructor is private to this crate, so the compiler guarantees that only
//! the authorization layer mints one. A permit binds the call's whole head
//! and the digest of the arguments authorization saw; redeeming it checks
//! both against the call presented, and yields the [`Authorized`] call, the
//! only value with which the server can send a call upstream.
//!
//! Anyone may tighten a permit into a [`PendingApproval`]; only an approval
//! gate of this crate can turn that back into a permit, with an
//! [`Approval`] bound to exactly the request a human saw.

use palisade_core::{ArgumentDigest, Call, CallHead, CallId, Reason};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug)]
#[must_use = "a permit that is not redeemed is a call that never runs"]
pub struct Permit {
    head: CallHead,
    digest: ArgumentDigest,
}

impl Permit {
    /// Mints a permit for `call` as it is now.
    pub(crate) fn issue(call: &Call) -> Self {
        Self {
            head: call.head().clone(),
            digest: call.digest(),
        }
    }

    /// The call this permit was issued for.
    pub fn call(&self) -> CallId {
        self.head.id
    }

    /// The digest of the arguments authorization saw.
    pub fn digest(&self) -> ArgumentDigest {
        self.digest
    }

    /// Consumes the permit for `call`. Refuses a call whose head differs in
    /// anything, or whose arguments are not the ones authorized (their digest
    /// is computed afresh, not taken from the call).
    pub fn redeem(self, call: Call) -> Result<Authorized, PermitMismatch> {
        if *call.head() != self.head {
            return Err(PermitMismatch::Head {
                issued_for: self.head.id,
                presented_for: call.id(),
            });
        }
        if ArgumentDigest::of(call.arguments()) != self.digest {
            return Err(PermitMismatch::Arguments { call: call.id() });
        }
        let (head, arguments) = call.into_parts();
        Ok(Authorized {
            head,
            arguments,
            authorized: self.digest,
        })
    }

    /// Makes this permit wait for a human's approval. Tightening needs no
    /// proof; loosening back does.
    pub fn escalate(self, reason: Reason) -> PendingApproval {
        let request = ApprovalRequest::new(&self.head, self.digest, reason);
        PendingApproval {
            permit: self,
            request,
        }
    }
}

/// A permit was presented for a call it was not issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PermitMismatch {
    #[error("permit issued for call `{issued_for}` presented for call `{presented_for}`")]
    Head {
        issued_for: CallId,
        presented_for: CallId,
    },
    #[error("the arguments of call `{call}` are not the ones authorized")]
    Arguments { call: CallId },
}

/// A call that authorization allowed, with the arguments it allowed. The
/// only value the server sends upstream as a call.
#[derive(Debug)]
pub struct Authorized {
    head: CallHead,
    arguments: Value,
    authorized: ArgumentDigest,
}

impl Authorized {
    pub fn head(&self) -> &CallHead {
        &self.head
    }

    pub fn arguments(&self) -> &Value {
        &self.arguments
    }

    /// The digest of the arguments as authorized, before secrets went in.
    pub fn authorized_digest(&self) -> ArgumentDigest {
        self.authorized
    }

    /// For secret injection only, the last step before execution: the head
    /// stays read-only, and the authorized digest keeps what was checked.
    pub fn parts_mut(&mut self) -> (&CallHead, &mut Value) {
        (&self.head, &mut self.arguments)
    }
}

/// The digest an approval is bound to: who asks, in which session, to do
/// what, with which arguments. Not the call id, so that the agent's retry of
/// the same call finds the approval given for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestDigest([u8; 32]);

impl RequestDigest {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a human is asked to approve.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    pub head: CallHead,
    pub arguments: ArgumentDigest,
    pub reason: Reason,
    digest: RequestDigest,
}

impl ApprovalRequest {
    fn new(head: &CallHead, arguments: ArgumentDigest, reason: Reason) -> Self {
        let mut h = Sha256::new();
        for part in [
            head.principal.as_str(),
            head.session.as_str(),
            head.kind.as_str(),
            &head.target.server,
            &head.target.name,
            head.effect.as_str(),
        ] {
            // Length-prefixed, so no two different heads hash alike.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(arguments.to_hex().as_bytes());
        Self {
            head: head.clone(),
            arguments,
            reason,
            digest: RequestDigest(h.finalize().into()),
        }
    }

    pub fn digest(&self) -> RequestDigest {
        self.digest
    }
}

/// A permit waiting for a human.
#[derive(Debug)]
#[must_use = "a pending approval must go to the approval gate"]
pub struct PendingApproval {
    permit: Permit,
    request: ApprovalRequest,
}

impl PendingApproval {
    pub fn request(&self) -> &ApprovalRequest {
        &self.request
    }

    /// The permit back, for the approval of exactly this request.
    pub fn approve(self, approval: Approval) -> Result<Permit, ApprovalMismatch> {
        if approval.request == self.request.digest {
            Ok(self.permit)
        } else {
            Err(ApprovalMismatch)
        }
    }
}

/// A human's yes to one request. Only this crate's approval gates make one.
#[derive(Debug)]
#[must_use]
pub struct Approval {
    request: RequestDigest,
}

impl Approval {
    pub(crate) fn grant(request: RequestDigest) -> Self {
        Self { request }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the approval was given for another request")]
pub struct ApprovalMismatch;
