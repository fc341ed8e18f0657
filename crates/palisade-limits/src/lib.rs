//! Layer 5: rate limits, quotas, cost budgets and loop detection (not yet built).
//!
//! It will implement `palisade_core::stage::Limit`; until then the `limits`
//! and `settle` stages run only as explicit, audited pass-through.
#![forbid(unsafe_code)]
