//! Layer 4: filtering of content toward the model and toward tools (not yet built).
//!
//! It will implement `palisade_core::stage::{OutboundFilter, InboundFilter}`;
//! until then those stages run only as explicit, audited pass-through.
#![forbid(unsafe_code)]
