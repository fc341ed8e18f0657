//! Where secret values live, behind one trait: the age-encrypted vault file, or OpenBao / Vault KV v2.
//!
//! A vault handle serves one environment (`dev`, `staging`, `prod`) and
//! cannot address another's secrets: the file vault keeps one file per
//! environment, each under its own passphrase; OpenBao keeps each
//! environment under its own path, which its policies can fence.

pub mod file;
pub mod openbao;

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

use crate::binding::SecretName;
use crate::value::SecretValue;

/// What a vault knows about a secret, besides its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meta {
    pub name: SecretName,
    pub environment: String,
    /// 1 for the first value; each `set` or `rotate` adds one.
    pub version: u64,
    /// When the first version was written (seconds since the Unix epoch).
    pub created: u64,
    /// When the current version was written (seconds since the Unix epoch).
    pub updated: u64,
    /// Revoked secrets are never injected; their values stay known to the
    /// redactor (a copy may still be out there).
    pub revoked: bool,
}

/// One secret as read for use: its current value and what the vault knows of it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: Meta,
    pub value: SecretValue,
}

/// Every value the redactor must know: current and earlier versions,
/// revoked ones included.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub values: Vec<(SecretName, SecretValue)>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no secret named `{0}` in this environment")]
    NotFound(SecretName),
    #[error("secret `{0}` is revoked")]
    Revoked(SecretName),
    /// The passphrase or key does not open the vault file.
    #[error("{0}")]
    Locked(String),
    /// The vault file or the backend's answer is not what palisade wrote or expects.
    #[error("{0}")]
    Corrupt(String),
    /// The backend cannot be reached now (network, sealed, overloaded); retry later.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The backend refused (permission denied, invalid request).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}

impl VaultError {
    pub fn unavailable(detail: impl Into<String>) -> Self {
        VaultError::Unavailable {
            detail: detail.into(),
            retry_after: Some(Duration::from_secs(1)),
        }
    }
}

pub type VaultFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, VaultError>> + Send + 'a>>;

/// A store of secret values for one environment.
pub trait Vault: Send + Sync + fmt::Debug {
    /// Where the values are, for `palisade check` and errors (no credentials).
    fn describe(&self) -> String;

    fn environment(&self) -> &str;

    /// The current value of one secret. A revoked secret is an error.
    fn read<'a>(&'a self, name: &'a SecretName) -> VaultFuture<'a, Entry>;

    /// Every secret's metadata, revoked ones included.
    fn list(&self) -> VaultFuture<'_, Vec<Meta>>;

    /// Writes a new version (the first, or a rotation) and un-revokes.
    fn write<'a>(&'a self, name: &'a SecretName, value: SecretValue) -> VaultFuture<'a, Meta>;

    /// Marks the secret revoked: the next read fails.
    fn revoke<'a>(&'a self, name: &'a SecretName) -> VaultFuture<'a, Meta>;

    /// Every value the redactor must recognise.
    fn known(&self) -> VaultFuture<'_, Known>;

    /// A number that changes whenever the vault may have changed, if the
    /// backend can tell cheaply (the file vault: its file's identity and
    /// modification time). `None`: the broker reads the backend per use.
    fn generation(&self) -> Option<u64> {
        None
    }
}
