//! Layer 2: the secrets broker, its vaults, and the redactor everything leaving palisade passes.
//!
//! - [`vault`]: where secret values live (an age-encrypted file, or OpenBao /
//!   HashiCorp Vault KV v2), one environment per vault handle.
//! - [`binding`]: what each secret may be used for: its environment, the
//!   upstreams that may use it, and the one destination it may be sent to.
//! - [`broker`]: resolves the references upstreams make to secrets, and
//!   substitutes `{{secret:NAME}}` placeholders in the built-in
//!   `http_request` tool, only toward the bound destination.
//! - [`redact`]: exact matching of every known value and its encodings, and
//!   [`detect`]ion rules for secrets palisade was never told about.
//!
//! Plaintext lives only in [`SecretValue`]s (zeroized on drop, never
//! `Debug`-formatted), and only this crate can read one.
#![forbid(unsafe_code)]

pub mod binding;
pub mod broker;
pub mod detect;
pub mod http_request;
pub mod redact;
pub mod value;
pub mod vault;

pub use binding::{Binding, Destination, Placement, SecretName};
pub use broker::Broker;
pub use redact::SecretRedactor;
pub use value::SecretValue;
pub use vault::{Meta, Vault, VaultError};
