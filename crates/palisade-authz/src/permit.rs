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

use std::sync::Arc;

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
        self.escalate_by(reason, Vec::new())
    }

    /// [`Permit::escalate`], naming the policies that asked for approval,
    /// so that the human sees why they are asked and the audit says who asked.
    pub fn escalate_by(self, reason: Reason, policies: Vec<String>) -> PendingApproval {
        let request = ApprovalRequest::new(&self.head, self.digest, reason, policies);
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

/// The role an approver needs when the policy names none.
pub const APPROVER_ROLE: &str = "approver";

/// What a human is asked to approve.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    pub head: CallHead,
    pub arguments: ArgumentDigest,
    pub reason: Reason,
    /// The ids of the policies that asked for approval.
    pub policies: Vec<String>,
    /// The roles that may decide (any one of them); [`APPROVER_ROLE`] unless
    /// the policy said otherwise.
    pub approvers: Vec<String>,
    /// The arguments' RFC 8785 canonical JSON: the exact text the human
    /// approves, whose SHA-256 is `arguments`. Set by
    /// [`PendingApproval::show_arguments`], which checks that digest.
    canonical: Option<Arc<str>>,
    digest: RequestDigest,
}

impl ApprovalRequest {
    fn new(
        head: &CallHead,
        arguments: ArgumentDigest,
        reason: Reason,
        policies: Vec<String>,
    ) -> Self {
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
            policies,
            approvers: vec![APPROVER_ROLE.to_owned()],
            canonical: None,
            digest: RequestDigest(h.finalize().into()),
        }
    }

    pub fn digest(&self) -> RequestDigest {
        self.digest
    }

    /// The canonical JSON text of the arguments, once shown (see
    /// [`PendingApproval::show_arguments`]).
    pub fn canonical_arguments(&self) -> Option<&str> {
        self.canonical.as_deref()
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

    /// Who may decide: any one of `roles` (replacing the default
    /// [`APPROVER_ROLE`]). An empty list keeps the default, so that a
    /// request never becomes one nobody may approve, or anybody.
    pub fn with_approvers(mut self, roles: Vec<String>) -> Self {
        if !roles.is_empty() {
            self.request.approvers = roles;
        }
        self
    }

    /// Puts the arguments' canonical text into the request, for the human
    /// who decides. Refused unless their SHA-256 is the digest the permit
    /// (and so the request digest) is bound to: the text shown is the text
    /// approved.
    pub fn show_arguments(&mut self, arguments: &Value) -> Result<(), ArgumentsMismatch> {
        let canonical = serde_json_canonicalizer::to_string(arguments)
            .map_err(|_| ArgumentsMismatch::NotCanonical)?;
        let sha: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        if hex != self.request.arguments.to_hex() {
            return Err(ArgumentsMismatch::Digest);
        }
        self.request.canonical = Some(canonical.into());
        Ok(())
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

/// The arguments shown to an approver are not those the request is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentsMismatch {
    #[error("the arguments are not the ones the approval request is bound to")]
    Digest,
    #[error("the arguments have no canonical JSON form")]
    NotCanonical,
}
