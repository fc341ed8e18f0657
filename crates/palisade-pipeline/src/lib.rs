//! The pipeline: the one function that fixes the order of palisade's layers.
//!
//! Every tool call passes [`Pipeline::run`]. Each stage is a trait object
//! from `palisade-core::stage`, so a layer plugs in without touching the
//! others. A stage that errors or exceeds its time budget denies the call;
//! the audit stage runs whatever happened before it.
#![forbid(unsafe_code)]

mod run;
mod slots;

pub use palisade_authz::Permit;
pub use run::{CallResult, ExecError, Execute, Executed, Pipeline};
pub use slots::{BuildError, PASSABLE, PipelineBuilder, Slot};
