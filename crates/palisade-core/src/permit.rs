//! `Permit`: the proof that authorization allowed one specific call.
//!
//! Nothing executes without a `Permit` (DESIGN invariant 4). The type has no
//! public constructor unless the `issue-permits` feature is on, and only
//! `palisade-authz` turns it on; a workspace test checks that. A permit names
//! the call it was issued for and is consumed by execution, so it can be used
//! for that call once and for no other.

use crate::call::{Call, CallId};

#[derive(Debug)]
#[must_use = "a permit that is not used to execute is a call that never runs"]
pub struct Permit {
    call: CallId,
}

impl Permit {
    /// Mints a permit for `call`. Only the authorization layer may call this.
    #[cfg(feature = "issue-permits")]
    pub fn issue(call: &Call) -> Self {
        Self { call: call.id }
    }

    /// The call this permit was issued for.
    pub fn call(&self) -> CallId {
        self.call
    }

    /// Consumes the permit for `call`; refuses a permit issued for another call.
    pub fn redeem(self, call: &Call) -> Result<(), PermitMismatch> {
        if self.call == call.id {
            Ok(())
        } else {
            Err(PermitMismatch {
                issued_for: self.call,
                presented_for: call.id,
            })
        }
    }
}

/// A permit was presented for a call it was not issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermitMismatch {
    pub issued_for: CallId,
    pub presented_for: CallId,
}

impl std::fmt::Display for PermitMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "permit issued for call `{}` presented for call `{}`",
            self.issued_for, self.presented_for
        )
    }
}

impl std::error::Error for PermitMismatch {}
