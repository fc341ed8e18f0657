//! The shared vocabulary of palisade's layers: who calls, what they call, what each layer decided.
//!
//! This crate does no I/O. Layer crates meet only through these types, and
//! `palisade-pipeline` composes them; a layer never names another layer.
#![forbid(unsafe_code)]

pub mod call;
pub mod clock;
pub mod record;
pub mod stage;
pub mod verdict;

pub use call::{Call, CallId, EffectClass, Principal, SessionId, ToolRef};
pub use clock::{Clock, ManualClock, SystemClock};
pub use record::{CallRecord, Outcome, StageRecord, StageVerdict};
pub use stage::{Stage, StageError, StageFuture};
pub use verdict::{Decision, Finding, Reason, ReasonCode, Verdict};
