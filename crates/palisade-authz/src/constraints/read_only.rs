//! The `read-only` kind: an operation argument must name a read, unless the principal holds a role that may write.
//!
//! Patterns are exact names or prefixes ending in `*` (`Describe*`),
//! compared case-sensitively as cloud APIs name operations; a pattern that
//! is an HTTP method (`GET`) also matches the value in any case (`get`), as
//! HTTP methods are read by tools that way. The value must look like an
//! operation name (ASCII letters, digits, `_ - . :`): a prefix pattern must
//! not let `DescribeInstances,TerminateInstances` or `Get Delete` through.

use std::sync::Arc;

use super::{ConstraintError, shown};

/// Read verbs used when the config names none.
pub const DEFAULT_READ: &[&str] = &[
    "Describe*",
    "Get*",
    "List*",
    "Head*",
    "BatchGet*",
    "Lookup*",
    "Search*",
    "Query*",
    "GET",
    "HEAD",
    "OPTIONS",
];

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "OPTIONS", "TRACE", "POST", "PUT", "PATCH", "DELETE", "CONNECT",
];

/// Which operations are reads, and who may do the rest.
#[derive(Debug, Clone)]
pub struct ReadOnlyRule {
    read: Vec<ReadPattern>,
    write_roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadPattern {
    Exact(String),
    Prefix(String),
    Method(&'static str),
}

impl ReadOnlyRule {
    /// `read`: `None` means [`DEFAULT_READ`]; `write_roles`: principals with
    /// one of these roles may call anything (may be empty: nobody writes).
    pub fn new(
        read: Option<Vec<String>>,
        write_roles: Vec<String>,
    ) -> Result<Self, ConstraintError> {
        let read = read.unwrap_or_else(|| DEFAULT_READ.iter().map(|s| (*s).to_owned()).collect());
        if read.is_empty() {
            return Err(ConstraintError::Empty { field: "read" });
        }
        let mut patterns = Vec::with_capacity(read.len());
        for pattern in &read {
            let bad = |reason: &'static str| ConstraintError::ReadPattern {
                pattern: shown(pattern),
                reason,
            };
            let (body, prefix) = match pattern.strip_suffix('*') {
                Some(body) => (body, true),
                None => (pattern.as_str(), false),
            };
            if body.is_empty() {
                return Err(bad("matches every operation; drop the constraint instead"));
            }
            if !is_operation_name(body) {
                return Err(bad(
                    "may hold ASCII letters, digits and `_ - . :`, and `*` only at the end",
                ));
            }
            let method = HTTP_METHODS.iter().find(|m| **m == body);
            patterns.push(match (prefix, method) {
                (false, Some(m)) => ReadPattern::Method(m),
                (false, None) => ReadPattern::Exact(body.to_owned()),
                (true, _) => ReadPattern::Prefix(body.to_owned()),
            });
        }
        for role in &write_roles {
            if role.is_empty() || role.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ConstraintError::Role {
                    role: shown(role),
                    reason: "must be non-empty, without whitespace or control characters",
                });
            }
        }
        Ok(ReadOnlyRule {
            read: patterns,
            write_roles,
        })
    }

    /// Checks one operation value; the error is the violation's message.
    pub(crate) fn check(&self, value: &str, roles: &[Arc<str>]) -> Result<(), String> {
        if self.may_write(roles) {
            return Ok(());
        }
        if !is_operation_name(value) {
            return Err(format!(
                "`{}` is not an operation name (ASCII letters, digits, `_ - . :`)",
                shown(value)
            ));
        }
        if self.is_read(value) {
            return Ok(());
        }
        Err(if self.write_roles.is_empty() {
            format!("`{}` is not a read operation", shown(value))
        } else {
            format!(
                "`{}` is not a read operation, and writes need one of the roles {}",
                shown(value),
                self.write_roles
                    .iter()
                    .map(|r| format!("`{}`", shown(r)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    fn may_write(&self, roles: &[Arc<str>]) -> bool {
        roles
            .iter()
            .any(|r| self.write_roles.iter().any(|w| w.as_str() == &**r))
    }

    fn is_read(&self, value: &str) -> bool {
        self.read.iter().any(|p| match p {
            ReadPattern::Exact(name) => name == value,
            ReadPattern::Prefix(prefix) => value.starts_with(prefix.as_str()),
            ReadPattern::Method(m) => m.eq_ignore_ascii_case(value),
        })
    }
}

fn is_operation_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    /// `expected`: `Ok(())`, or `Err(fragment)` that the message must contain.
    fn check(rule: &ReadOnlyRule, held: &[&str], cases: &[(&str, Result<(), &str>)]) {
        let held = roles(held);
        for (input, expected) in cases {
            let got = rule.check(input, &held);
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(fragment), Err(message)) if message.contains(fragment) => {}
                _ => panic!("{input:?} with {held:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    const NOT_READ: &str = "is not a read operation";

    #[test]
    fn reads_pass_and_writes_need_a_role() {
        let rule = ReadOnlyRule::new(None, vec!["ops".to_owned()]).unwrap();
        check(
            &rule,
            &[],
            &[
                ("DescribeInstances", Ok(())),
                ("ListBuckets", Ok(())),
                ("GetObject", Ok(())),
                ("Get", Ok(())),
                ("GET", Ok(())),
                ("get", Ok(())),
                ("HEAD", Ok(())),
                ("head", Ok(())),
                ("Options", Ok(())),
                (
                    "TerminateInstances",
                    Err("writes need one of the roles `ops`"),
                ),
                ("describeInstances", Err(NOT_READ)),
                ("LISTBUCKETS", Err(NOT_READ)),
                ("DELETE", Err(NOT_READ)),
                ("delete", Err(NOT_READ)),
                ("POST", Err(NOT_READ)),
                ("PUT", Err(NOT_READ)),
                ("GETX", Err(NOT_READ)),
                ("ec2:DescribeInstances", Err(NOT_READ)),
                (
                    "DescribeInstances,TerminateInstances",
                    Err("not an operation name"),
                ),
                ("Describe Instances", Err("not an operation name")),
                ("Get/../Delete", Err("not an operation name")),
                (" GET", Err("not an operation name")),
                ("GET\n", Err("not an operation name")),
                ("", Err("not an operation name")),
            ],
        );
        check(
            &rule,
            &["ops"],
            &[("TerminateInstances", Ok(())), ("DELETE", Ok(()))],
        );
        check(&rule, &["dev", "ops"], &[("TerminateInstances", Ok(()))]);
        check(
            &rule,
            &["Ops", "op", "ops "],
            &[("TerminateInstances", Err(NOT_READ))],
        );
    }

    #[test]
    fn configured_patterns_replace_the_defaults() {
        let rule = ReadOnlyRule::new(
            Some(vec![
                "ec2:Describe*".to_owned(),
                "GET".to_owned(),
                "Status".to_owned(),
            ]),
            vec![],
        )
        .unwrap();
        check(
            &rule,
            &["ops"],
            &[
                ("ec2:DescribeInstances", Ok(())),
                ("get", Ok(())),
                ("Status", Ok(())),
                (
                    "StatusUpdate",
                    Err("`StatusUpdate` is not a read operation"),
                ),
                ("status", Err(NOT_READ)),
                ("DescribeInstances", Err(NOT_READ)),
                ("ListBuckets", Err(NOT_READ)),
            ],
        );
    }

    #[test]
    fn patterns_and_roles_are_checked_when_built() {
        let err = |read: &[&str]| {
            ReadOnlyRule::new(Some(read.iter().map(|s| (*s).to_owned()).collect()), vec![])
                .unwrap_err()
        };
        assert_eq!(err(&[]), ConstraintError::Empty { field: "read" });
        for bad in ["*", "", "Des*cribe*", "Get Object", "*Get", "Get\n"] {
            assert!(
                matches!(err(&[bad]), ConstraintError::ReadPattern { ref pattern, .. } if *pattern == shown(bad)),
                "{bad:?}"
            );
        }
        for bad in ["", "o ps", "ops\n"] {
            assert!(matches!(
                ReadOnlyRule::new(None, vec![bad.to_owned()]).unwrap_err(),
                ConstraintError::Role { .. }
            ));
        }
    }
}
