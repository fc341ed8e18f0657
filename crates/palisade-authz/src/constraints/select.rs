//! Argument selectors: where in a call's arguments a constraint finds its values (`path`, `edits[].path`).

use serde_json::Value;

use super::{ConstraintError, Violation, shown, type_name};

/// A path of object keys; a key written `key[]` steps into each element of
/// the array there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    key: String,
    each: bool,
}

/// One selected value and where it was, as the agent would write it
/// (`edits[1].path`).
#[derive(Debug)]
pub(crate) struct Selected<'a> {
    pub argument: String,
    pub value: &'a Value,
    /// Selected by a final `[]`: an element, never expanded again.
    pub element: bool,
}

impl Selector {
    pub(crate) fn parse(selector: &str) -> Result<Self, ConstraintError> {
        let bad = |reason: &'static str| ConstraintError::Selector {
            selector: shown(selector),
            reason,
        };
        if selector.is_empty() {
            return Err(bad("empty"));
        }
        let mut segments = Vec::new();
        for part in selector.split('.') {
            let (key, each) = match part.strip_suffix("[]") {
                Some(key) => (key, true),
                None => (part, false),
            };
            if key.is_empty() {
                return Err(bad("a key is empty"));
            }
            if key
                .chars()
                .any(|c| c == '[' || c == ']' || c == '*' || c.is_control() || c.is_whitespace())
            {
                return Err(bad(
                    "a key may not contain `[`, `]`, `*`, whitespace or control characters (`[]` may only end a key)",
                ));
            }
            segments.push(Segment {
                key: key.to_owned(),
                each,
            });
        }
        Ok(Selector { segments })
    }

    /// The values this selector finds in `arguments`. Absent keys select
    /// nothing; a present value of the wrong shape on the way is a violation.
    pub(crate) fn select<'a>(&self, arguments: &'a Value) -> Result<Vec<Selected<'a>>, Violation> {
        let mut out = Vec::new();
        match arguments {
            // No arguments at all: nothing is present.
            Value::Null => {}
            Value::Object(_) => walk(arguments, &self.segments, String::new(), &mut out)?,
            other @ (Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_)) => {
                return Err(Violation {
                    argument: String::new(),
                    message: format!(
                        "the arguments must be an object, found {}",
                        type_name(other)
                    ),
                });
            }
        }
        Ok(out)
    }
}

fn walk<'a>(
    object: &'a Value,
    segments: &[Segment],
    at: String,
    out: &mut Vec<Selected<'a>>,
) -> Result<(), Violation> {
    let Some((segment, rest)) = segments.split_first() else {
        return Ok(());
    };
    let Some(value) = object.get(&segment.key) else {
        return Ok(());
    };
    let here = if at.is_empty() {
        segment.key.clone()
    } else {
        format!("{at}.{}", segment.key)
    };
    if segment.each {
        let Value::Array(items) = value else {
            return Err(Violation {
                argument: here,
                message: format!("expected an array, found {}", type_name(value)),
            });
        };
        for (i, item) in items.iter().enumerate() {
            step(item, rest, format!("{here}[{i}]"), true, out)?;
        }
        Ok(())
    } else {
        step(value, rest, here, false, out)
    }
}

fn step<'a>(
    value: &'a Value,
    rest: &[Segment],
    here: String,
    element: bool,
    out: &mut Vec<Selected<'a>>,
) -> Result<(), Violation> {
    if rest.is_empty() {
        out.push(Selected {
            argument: here,
            value,
            element,
        });
        return Ok(());
    }
    match value {
        Value::Object(_) => walk(value, rest, here, out),
        other @ (Value::Null
        | Value::Bool(_)
        | Value::Number(_)
        | Value::String(_)
        | Value::Array(_)) => Err(Violation {
            argument: here,
            message: format!("expected an object, found {}", type_name(other)),
        }),
    }
}
