//! Layer 2: the secrets broker and the redaction engine (not yet built; see the secrets issue).
//!
//! It will implement `palisade_core::stage::{InjectSecrets, Redact}`. Until it
//! does, the `inject-secrets` and `redact` stages run only when the operator
//! lists them under `pipeline.pass_through`, and the audit record says so.
#![forbid(unsafe_code)]
