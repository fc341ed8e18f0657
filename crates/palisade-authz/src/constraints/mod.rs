//! Argument constraints: checks on what a call's arguments say (paths, mail domains, commands, read-only operations), applied to the tools an operator names.
//!
//! A constraint names the tools it applies to (exposed names, `files__*`
//! patterns allowed), the arguments that carry the values it checks
//! (selectors such as `path` or `edits[].path`), and one rule. The set checks
//! every constraint that applies to a call and reports each one's result, so
//! the authorizer can deny on any violation and the audit record can say
//! which constraint refused what.
//!
//! Selection fails closed:
//! - a selector whose key is absent selects nothing: optional arguments stay
//!   optional, and a call in which none of a constraint's selectors is
//!   present passes that constraint. An operator must therefore list *every*
//!   argument of the tool that carries a value of this kind (a tool that also
//!   reads `file_path` needs `file_path` listed);
//! - a present value of the wrong type (a number, an object, `null`) is a
//!   violation, never skipped: a tool might read `null` as "the default
//!   directory";
//! - for every kind but `commands`, a selected array of strings is checked
//!   element by element (`to = ["a@x", "b@y"]`); for `commands` an array is
//!   an argv.
//!
//! Keys are matched exactly; a key containing `.` or `[` cannot be selected.
//! Duplicate JSON keys are the wire parser's business (the MCP layer
//! refuses them), not this module's.

mod commands;
mod email;
mod paths;
mod read_only;
mod select;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

pub use commands::CommandRule;
pub use email::EmailRule;
pub use paths::PathRule;
pub use read_only::ReadOnlyRule;

use select::Selector;

/// All configured constraints, in config order.
#[derive(Debug, Clone, Default)]
pub struct ConstraintSet {
    constraints: Vec<Constraint>,
}

impl ConstraintSet {
    /// Refuses two constraints with the same name: the audit record names
    /// the constraint that refused a call, and a name must say which.
    pub fn new(constraints: Vec<Constraint>) -> Result<Self, ConstraintError> {
        let mut seen = HashSet::new();
        for c in &constraints {
            if !seen.insert(c.name.as_str()) {
                return Err(ConstraintError::DuplicateName {
                    name: c.name.clone(),
                });
            }
        }
        Ok(ConstraintSet { constraints })
    }

    /// Every constraint that applies to `tool` (the exposed name), checked on
    /// `arguments`, in config order. `roles` are the principal's roles.
    pub fn check(&self, tool: &str, roles: &[Arc<str>], arguments: &Value) -> Vec<Checked> {
        self.constraints
            .iter()
            .filter(|c| c.applies_to(tool))
            .map(|c| Checked {
                constraint: c.name.clone(),
                result: c.check(roles, arguments),
            })
            .collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.constraints.iter().map(|c| c.name.as_str())
    }

    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty()
    }
}

/// One constraint's answer for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The constraint's name.
    pub constraint: String,
    pub result: Result<(), Violation>,
}

/// Why an argument was refused: short and readable, for the agent and the
/// audit record. Values from the call are shown escaped and truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where the value was, e.g. `edits[1].path`.
    pub argument: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "argument `{}`: {}", self.argument, self.message)
    }
}

/// One configured constraint: the tools it applies to, where the values are,
/// and the rule they must satisfy.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub name: String,
    tools: Vec<ToolPattern>,
    arguments: Vec<Selector>,
    rule: Rule,
}

/// What the selected values must satisfy.
#[derive(Debug, Clone)]
pub enum Rule {
    Paths(PathRule),
    EmailDomains(EmailRule),
    Commands(CommandRule),
    ReadOnly(ReadOnlyRule),
}

impl Rule {
    /// The config's `kind` for this rule.
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::Paths(_) => "paths",
            Rule::EmailDomains(_) => "email-domains",
            Rule::Commands(_) => "commands",
            Rule::ReadOnly(_) => "read-only",
        }
    }
}

impl Constraint {
    /// `name` is the config table's key (`[A-Za-z0-9_-]+`); `tools` are
    /// exposed tool names or prefix patterns ending in `*`; `arguments` are
    /// selectors (`path`, `edits[].path`). Both lists must be non-empty.
    pub fn new(
        name: impl Into<String>,
        tools: Vec<String>,
        arguments: Vec<String>,
        rule: Rule,
    ) -> Result<Self, ConstraintError> {
        let name = name.into();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConstraintError::Name { name: shown(&name) });
        }
        if tools.is_empty() {
            return Err(ConstraintError::Empty { field: "tools" });
        }
        if arguments.is_empty() {
            return Err(ConstraintError::Empty { field: "arguments" });
        }
        let tools = tools
            .iter()
            .map(|t| ToolPattern::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let arguments = arguments
            .iter()
            .map(|a| Selector::parse(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Constraint {
            name,
            tools,
            arguments,
            rule,
        })
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Does this constraint apply to the exposed tool name `tool`?
    pub fn applies_to(&self, tool: &str) -> bool {
        self.tools.iter().any(|p| p.matches(tool))
    }

    /// Checks every selected value; the first violation is the answer.
    pub fn check(&self, roles: &[Arc<str>], arguments: &Value) -> Result<(), Violation> {
        for selector in &self.arguments {
            for selected in selector.select(arguments)? {
                self.check_value(roles, &selected)?;
            }
        }
        Ok(())
    }

    fn check_value(
        &self,
        roles: &[Arc<str>],
        selected: &select::Selected<'_>,
    ) -> Result<(), Violation> {
        let refuse = |argument: String, message: String| Violation { argument, message };
        if let Rule::Commands(rule) = &self.rule {
            return match selected.value {
                Value::String(s) => rule
                    .check_shell(s)
                    .map_err(|m| refuse(selected.argument.clone(), m)),
                Value::Array(items) => {
                    let mut argv = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        match item {
                            Value::String(s) => argv.push(s.as_str()),
                            other @ (Value::Null
                            | Value::Bool(_)
                            | Value::Number(_)
                            | Value::Array(_)
                            | Value::Object(_)) => {
                                return Err(refuse(
                                    format!("{}[{i}]", selected.argument),
                                    format!("expected a string, found {}", type_name(other)),
                                ));
                            }
                        }
                    }
                    rule.check_argv(&argv)
                        .map_err(|m| refuse(selected.argument.clone(), m))
                }
                other @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_)) => {
                    Err(refuse(
                        selected.argument.clone(),
                        format!(
                            "expected a string or an array of strings, found {}",
                            type_name(other)
                        ),
                    ))
                }
            };
        }
        match selected.value {
            Value::String(s) => self
                .check_string(roles, s)
                .map_err(|m| refuse(selected.argument.clone(), m)),
            Value::Array(items) if !selected.element => {
                for (i, item) in items.iter().enumerate() {
                    let argument = format!("{}[{i}]", selected.argument);
                    match item {
                        Value::String(s) => {
                            self.check_string(roles, s)
                                .map_err(|m| refuse(argument, m))?;
                        }
                        other @ (Value::Null
                        | Value::Bool(_)
                        | Value::Number(_)
                        | Value::Array(_)
                        | Value::Object(_)) => {
                            return Err(refuse(
                                argument,
                                format!("expected a string, found {}", type_name(other)),
                            ));
                        }
                    }
                }
                Ok(())
            }
            other @ (Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::Array(_)
            | Value::Object(_)) => Err(refuse(
                selected.argument.clone(),
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    fn check_string(&self, roles: &[Arc<str>], value: &str) -> Result<(), String> {
        match &self.rule {
            Rule::Paths(rule) => rule.check(value),
            Rule::EmailDomains(rule) => rule.check(value),
            Rule::Commands(rule) => rule.check_shell(value),
            Rule::ReadOnly(rule) => rule.check(value, roles),
        }
    }
}

/// An exposed tool name, or a prefix ending in `*` (`files__*`; `*` alone is
/// every tool).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ToolPattern {
    Exact(String),
    Prefix(String),
}

impl ToolPattern {
    fn parse(pattern: &str) -> Result<Self, ConstraintError> {
        let bad = |reason: &'static str| ConstraintError::ToolPattern {
            pattern: shown(pattern),
            reason,
        };
        if pattern.is_empty() {
            return Err(bad("empty"));
        }
        if pattern.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("contains whitespace or a control character"));
        }
        match pattern.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => Err(bad("`*` may only end a pattern")),
            Some(prefix) => Ok(ToolPattern::Prefix(prefix.to_owned())),
            None if pattern.contains('*') => Err(bad("`*` may only end a pattern")),
            None => Ok(ToolPattern::Exact(pattern.to_owned())),
        }
    }

    fn matches(&self, tool: &str) -> bool {
        match self {
            ToolPattern::Exact(name) => name == tool,
            ToolPattern::Prefix(prefix) => tool.starts_with(prefix.as_str()),
        }
    }
}

/// A constraint that cannot be built; each names the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("constraint name `{name}` must be non-empty letters, digits, `-` or `_`")]
    Name { name: String },
    #[error("two constraints are named `{name}`")]
    DuplicateName { name: String },
    #[error("`{field}` is empty")]
    Empty { field: &'static str },
    #[error("`tools` entry `{pattern}`: {reason}")]
    ToolPattern {
        pattern: String,
        reason: &'static str,
    },
    #[error("`arguments` entry `{selector}`: {reason}")]
    Selector {
        selector: String,
        reason: &'static str,
    },
    #[error("`allow` entry `{dir}`: {reason}")]
    Directory { dir: String, reason: String },
    #[error("`allow` entry `{domain}`: {reason}")]
    Domain {
        domain: String,
        reason: &'static str,
    },
    #[error("`allow` entry `{command}`: {reason}")]
    Command { command: String, reason: String },
    #[error("`read` entry `{pattern}`: {reason}")]
    ReadPattern {
        pattern: String,
        reason: &'static str,
    },
    #[error("`write_roles` entry `{role}`: {reason}")]
    Role { role: String, reason: &'static str },
}

/// A value from outside, fit for a message: ASCII kept, anything else
/// (controls, look-alikes, bidi overrides) escaped, and cut to a readable
/// length so one argument cannot flood the audit record.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 120;
    let mut out = String::new();
    for (n, c) in value.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;

/// The constraints as the policy engine asks them: each that applies to the
/// tool, passed or failed with the violation as its detail.
impl crate::policy::ArgumentChecks for ConstraintSet {
    fn check(
        &self,
        exposed_tool: &str,
        principal: &palisade_core::Principal,
        arguments: &Value,
    ) -> Vec<crate::policy::ArgumentCheck> {
        ConstraintSet::check(self, exposed_tool, principal.roles(), arguments)
            .into_iter()
            .map(|checked| crate::policy::ArgumentCheck {
                constraint: checked.constraint,
                passed: checked.result.is_ok(),
                detail: checked.result.err().map(|v| v.to_string()),
            })
            .collect()
    }

    fn names(&self) -> Vec<String> {
        ConstraintSet::names(self).map(str::to_owned).collect()
    }
}
