//! A secret's plaintext: zeroized when dropped, never printed, readable only inside this crate.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A secret value. Its `Debug` shows only that it is one; nothing outside
/// `palisade-secrets` can read it.
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    /// Takes ownership of `value`; the `String` is zeroized when this drops.
    pub fn new(value: String) -> Self {
        Self(SecretString::from(value))
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Compares in time independent of where the values differ.
    pub(crate) fn same_as(&self, other: &SecretValue) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let value = SecretValue::new("hunter2-hunter2".into());
        assert_eq!(format!("{value:?}"), "SecretValue(..)");
        assert_eq!(
            format!("{:?}", Some(value.clone())),
            "Some(SecretValue(..))"
        );
        assert_eq!(value.len(), 15);
    }
}
