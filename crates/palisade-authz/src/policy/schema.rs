//! palisade's Cedar schema: the entity types, actions and context every policy is validated against.

use std::fmt::Write as _;

use super::PolicyError;

/// The schema, in Cedar's schema syntax, namespace-free so that policies
/// say `User::"alice"` rather than `Palisade::User::"alice"`: a policy file
/// is palisade's alone, and there is nothing to keep apart from.
///
/// `CONSTRAINTS` is replaced with one `Bool` per configured argument
/// constraint.
const TEMPLATE: &str = r#"
// Who calls. Roles and tenants are groups; `credential` says how the
// caller proved who it is.
entity Role, Tenant;
entity User in [Role, Tenant] { credential: String };
entity Service in [Role, Tenant] { credential: String };

// What is called: each upstream is a `Server`; its tools, resources and
// prompts are in it. `server` is the upstream's name, `name` the thing's
// own name there (a resource's URI).
entity Server { server: String, name: String };
entity Tool in [Server] { server: String, name: String };
entity Resource in [Server] { server: String, name: String };
entity Prompt in [Server] { server: String, name: String };

// The call's top-level arguments, one tag each: strings as they are, any
// other value as its canonical JSON text.
entity Arguments tags String;

type CallContext = {
  effect: String,
  kind: String,
  tool: String,
  session: { tainted: Bool, sources: Set<String> },
  task: { present: Bool, id: String, scopes: Set<String> },
  time: Long,
  hour: Long,
  constraints: { CONSTRAINTS },
  args: Arguments,
};

// Each call's action is its effect class.
action "read", "write", "egress", "irreversible" appliesTo {
  principal: [User, Service],
  resource: [Tool, Resource, Prompt, Server],
  context: CallContext,
};
"#;

/// The schema text for these constraint names.
pub(super) fn text(constraint_names: &[String]) -> Result<String, PolicyError> {
    let mut fields = String::new();
    for name in constraint_names {
        if !valid_constraint_name(name) {
            return Err(PolicyError::ConstraintName { name: name.clone() });
        }
        // Quoted, so that names with dots or dashes are attributes too
        // (`context.constraints["files.paths"]`).
        let _ = write!(fields, "\"{name}\": Bool, ");
    }
    Ok(TEMPLATE.replace("CONSTRAINTS", &fields))
}

/// Letters, digits, `_`, `-` and `.`: nothing that needs escaping in a
/// Cedar string, and nothing a reader could mistake.
fn valid_constraint_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
