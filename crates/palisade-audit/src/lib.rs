//! Layer 6: the tamper-evident audit log — entries chained by hash, checkpoints signed over their Merkle roots.
//!
//! [`AuditLog`] is the embedded log the gateway writes (the
//! [`palisade_core::stage::Audit`] sink); [`verify::verify`] checks a log or a
//! range of it and says where it breaks; [`verify::prove`] makes an
//! inclusion proof for one entry, which [`verify::check_proof`] checks
//! without the log. docs/audit.md describes the formats.
#![forbid(unsafe_code)]

pub mod activity;
pub mod alerts;
pub mod canonical;
mod chain;
pub mod checkpoint;
pub mod entry;
pub mod log;
pub mod merkle;
pub mod ocsf;
pub mod postgres;
pub mod sinks;
pub mod verify;

pub use log::{AppendError, Appended, AuditLog, OpenError, Paths, Settings, SyncMode};
