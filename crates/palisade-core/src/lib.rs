//! The shared vocabulary of palisade's layers: who calls, what they call, what each layer decided.
//!
//! This crate does no I/O. Layer crates meet only through these types, and
//! `palisade-pipeline` composes them; a layer never names another layer.
#![forbid(unsafe_code)]

pub mod call;
pub mod clock;
pub mod context;
pub mod glob;
pub mod record;
pub mod redact;
pub mod stage;
pub mod verdict;

pub use call::{
    ArgumentDigest, Call, CallHead, CallId, CallKind, Credential, EffectClass, Identity, Principal,
    PrincipalKind, SessionId, Target, TaskScope,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{CallContext, Obligation, Reservation, SessionFacts, Settled, Taint, Usage};
pub use record::{
    AuditEvent, Bounded, CallRecord, ListingFinding, MethodRefusal, Outcome, PromptDigest,
    SessionEnd, StageRecord, StageVerdict,
};
pub use redact::{AuditLine, Redactable, Redacted, RedactionSeam, Redactor};
pub use stage::{Durability, InboundDecision, LimitDecision, Stage, StageError, StageFuture};
pub use verdict::{Decision, Finding, Reason, ReasonCode, Verdict};
