//! Layer 5: rate limits, calendar quotas, cost budgets and loop detection, in process or shared through Redis.
//!
//! [`Limits`] implements `palisade_core::stage::Limit`. Before a call, it
//! works out every counter the call draws on (each matching rule's rate
//! or quota, per principal or finer; the principal's daily budget) and
//! draws on all of them in one atomic step of its [`backend::Backend`];
//! it refuses a call that repeats in a loop. After the call, it settles
//! what was reserved with what the call used. See docs/limits.md.
#![forbid(unsafe_code)]

pub mod backend;
pub mod calendar;
pub mod gcra;
pub mod local;
pub mod loops;
pub mod prices;
pub mod redis;
pub mod spec;
pub mod stage;
pub mod status;

pub use stage::{Alert, AlertKind, AlertSink, Limits, Settings};
