//! Approval gates: a human's yes to one exact call, asked for, decided, and spent once.
//!
//! [`StoredApprovals`] keeps requests in the state store (collection
//! `approvals`, keyed by an unguessable `apr_…` id, and `approval-digests`,
//! request digest → id), so that requests and decisions survive a restart
//! and replicas on one database share them. The agent's identical retry
//! has the same request digest (principal, session, target, effect and the
//! arguments' canonical SHA-256) and so finds its request:
//!
//! | request state | the gate answers | and then |
//! |---|---|---|
//! | none | pending, with a new id | the request waits for a human |
//! | pending | pending, the same id (after holding the call up to `hold`) | |
//! | approved | approved | consumed (compare-and-set: one call wins) |
//! | consumed | pending, with a new id | a replay needs a new approval |
//! | denied | denied, with the approver's reason | until the request's expiry |
//! | pending or approved, past expiry | denied: expired | marked expired; the next retry asks anew |
//!
//! [`OneTimeApprovals`] is the in-memory gate without ids or persistence,
//! for tests and embedders that grant by digest.

mod one_time;
mod record;
mod stored;
#[cfg(test)]
mod tests;

pub use one_time::OneTimeApprovals;
pub use record::{ApprovalRecord, ApprovalState, Consumed, Decided};
pub use stored::{
    APPROVAL_DIGESTS, APPROVALS, ApprovalError, ApprovalFilter, ApprovalSettings, SettingsError,
    StoredApprovals,
};
