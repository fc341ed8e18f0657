//! Layer 1: who is calling, and may they make this call. The only crate that mints `Permit`s.
//!
//! Today it holds the explicit pass-through authorizer, used only when the
//! operator lists `authorize` under `pipeline.pass_through`. Cedar policies,
//! task credentials and approval gates grow here.
#![forbid(unsafe_code)]

mod permit;

use std::fmt;

use palisade_core::stage::StageFuture;
use palisade_core::{Call, Decision};

pub use permit::{Permit, PermitMismatch};

/// May this principal make this call? An allow comes with the `Permit` that
/// execution requires; only this crate can implement it meaningfully, since
/// only this crate can mint permits.
pub trait Authorize: Send + Sync + fmt::Debug {
    fn authorize<'a>(&'a self, call: &'a Call) -> StageFuture<'a, (Decision, Option<Permit>)>;
}

/// Allows every call. Built only from an explicit `pipeline.pass_through` entry,
/// and every call it allows is recorded as `pass-through` in the audit log.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

impl Authorize for PassThrough {
    fn authorize<'a>(&'a self, call: &'a Call) -> StageFuture<'a, (Decision, Option<Permit>)> {
        Box::pin(async move { Ok((Decision::allow(), Some(Permit::issue(call)))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{CallId, EffectClass, Principal, SessionId, ToolRef};

    fn call(id: u64) -> Call {
        Call {
            id: CallId(id),
            principal: Principal::anonymous(),
            session: SessionId::new("s"),
            tool: ToolRef::new("srv", "tool"),
            arguments: serde_json::json!({}),
            effect: EffectClass::Read,
        }
    }

    #[tokio::test]
    async fn pass_through_permit_is_bound_to_its_call() {
        let (decision, permit) = PassThrough.authorize(&call(1)).await.unwrap();
        assert_eq!(decision, Decision::allow());
        let permit = permit.unwrap();
        assert_eq!(permit.call(), CallId(1));
        // A permit for call 1 cannot run call 2.
        assert!(permit.redeem(&call(2)).is_err());
        let (_, permit) = PassThrough.authorize(&call(1)).await.unwrap();
        assert!(permit.unwrap().redeem(&call(1)).is_ok());
    }
}
