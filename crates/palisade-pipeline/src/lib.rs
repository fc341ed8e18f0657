//! The pipeline: the one function that fixes the order of palisade's layers.
//!
//! Every call that reaches a tool or its content passes [`Pipeline::run`].
//! Each stage is a trait object from `palisade-core::stage` (or, for
//! authorization and approval, `palisade-authz`), so a layer plugs in without
//! touching the others. A stage that errors or exceeds its time budget denies
//! the call; the intent record is written before execution and the outcome
//! record whatever happens, even when the call's future is dropped.
#![forbid(unsafe_code)]

mod guard;
mod run;
mod slots;

pub use palisade_authz::{Authorized, Permit};
pub use run::{AuditFailure, CallResult, ExecError, Execute, Executed, Pipeline};
pub use slots::{BuildError, PASSABLE, PipelineBuilder, Slot};
