//! `Permit`: the proof that authorization allowed one specific call.
//!
//! Nothing executes without a `Permit` (ARCHITECTURE.md, invariant 3). Its constructor
//! is private to this crate, so the compiler guarantees that only the
//! authorization layer mints one. A permit names the call it was issued for
//! and is consumed by execution: it runs that call once and no other.

use palisade_core::{Call, CallId};

#[derive(Debug)]
#[must_use = "a permit that is not used to execute is a call that never runs"]
pub struct Permit {
    call: CallId,
}

impl Permit {
    /// Mints a permit for `call`.
    pub(crate) fn issue(call: &Call) -> Self {
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
