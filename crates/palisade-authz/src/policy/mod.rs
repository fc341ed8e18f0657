//! Cedar policies: who may make which call, validated against palisade's own schema, default deny.
//!
//! # The model
//!
//! Policies are namespace-free Cedar, validated strictly against the schema
//! in `schema.rs` (see [`schema_text`]). Unknown entity types, actions or
//! attributes, and an unguarded access to an argument, fail the load with
//! `FILE:LINE:COLUMN` and Cedar's message.
//!
//! - **Principals**: `User::"alice"` or `Service::"ci-bot"` (the principal's
//!   kind), members of `Role::"dev"` for each role and of `Tenant::"acme"`;
//!   attribute `credential`: `"api-key"`, `"jwt"`, `"task-token"`,
//!   `"local-user"` or `"none"`.
//! - **Resources**: a tool is `Tool::"SERVER/TOOL"`, a resource
//!   `Resource::"URI"`, a prompt `Prompt::"SERVER/PROMPT"`, each in its
//!   upstream `Server::"SERVER"`; each has `resource.server` and
//!   `resource.name` (its own name there, a resource's URI). A completion
//!   is judged as the prompt or resource it completes; a task's result as a
//!   read of its `Server` itself (the call that created the task was judged
//!   when it was made; `context.kind == "task-result"` tells them apart).
//! - **Actions**: a call's action is its effect class: `Action::"read"`,
//!   `"write"`, `"egress"` or `"irreversible"` (`action == …` and
//!   `action in …` both work). The issue asked for an action per tool, with
//!   the effect classes as groups; but tools are known only at run time (an
//!   upstream lists them), while the schema, and so every action, must be
//!   fixed when policies are validated at start. A rule naming one tool
//!   names it as the resource instead — `resource == Tool::"files/delete_file"`
//!   — which says the same and validates. The kind of call is the resource's
//!   type (`resource is Tool`) and `context.kind`.
//! - **Context**: `effect`, `kind` (`tool`, `resource`, `prompt`,
//!   `completion`, `task-result`), `tool` (the name the agent sees:
//!   `files__read_text_file`, a prompt's exposed name, a resource's URI),
//!   `session.tainted`, `session.sources` (where the taint came from), `task.present` / `task.id` / `task.scopes` (empty
//!   without a task token), `time` (Unix seconds) and `hour` (UTC, 0–23),
//!   `constraints.NAME` (one `Bool` per configured argument constraint:
//!   true when the arguments satisfy it or it does not apply to the tool),
//!   and `args`, an entity whose tags are the call's top-level arguments:
//!   a string as it is, any other value as its canonical JSON text. Cedar's
//!   strict validation needs a `hasTag` before a `getTag`:
//!   `when { context.args.hasTag("path") && context.args.getTag("path") like "/tmp/*" }`.
//!   A `forbid` on an argument's text is a weak guard (a nested value or a
//!   differently spelled path passes it); the typed argument constraints
//!   are the real check, and a failed one denies whatever the policies say.
//!
//! # The answer
//!
//! Default deny; a matching `forbid` wins (an errored `forbid` denies too:
//! fail closed). A matching `permit` annotated `@approval("reason")` makes
//! the answer *needs approval*, even if an unannotated permit also matches:
//! one rule asking for a human is enough. With
//! `irreversible_needs_approval` (the default), every permitted
//! `irreversible` call needs approval. Before Cedar is asked, a task token's
//! scope that refuses the call, or a failed argument constraint, denies it.
//! Each decision names the policies that decided it: a policy's id is its
//! `@id("…")` annotation, else `FILE:LINE` of its first line
//! (`FILE:LINE:COLUMN` when two start on one line). A `forbid` may carry
//! `@reason("…")`, the text the agent is told.
//!
//! Cedar's extensions (`ip`, `decimal`, `datetime`) are available (its core
//! crate builds them whatever `cedar-policy`'s features say); the context's
//! `time` and `hour` are plain numbers all the same, the simplest to compare.

mod authorizer;
mod cache;
mod request;
mod schema;
mod source;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{
    Authorizer, Context, Decision, Effect, Policy, PolicyId, PolicySet, Request,
    ResourceConstraint, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use palisade_core::{CallKind, EffectClass, Principal, Target};

pub use authorizer::{ArgumentCheck, ArgumentChecks, NoArgumentChecks, PolicyAuthorizer};

use cache::Cache;
use request::{PrincipalParts, ResourceParts, Types};

/// How many principals, and how many targets, an engine keeps built
/// entities for (a full cache is emptied and refilled: simple, and a
/// gateway's working set of callers and tools is far smaller).
const CACHE_ENTRIES: usize = 4_096;

/// The policy in force when the operator names no policy file.
pub const DEFAULT_POLICY: &str = include_str!("default.cedar");

/// Where [`DEFAULT_POLICY`] says it comes from, in errors and policy ids.
pub const DEFAULT_POLICY_FILE: &str = "(built-in default policy)";

/// One policy file's text, and where it came from (for ids and errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub file: PathBuf,
    pub text: String,
}

/// What a call looks like to the policies.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    pub principal: &'a Principal,
    pub kind: CallKind,
    pub target: &'a Target,
    /// The name the agent sees (`files__read_text_file`).
    pub exposed_name: &'a str,
    pub effect: EffectClass,
    pub arguments: &'a serde_json::Value,
    pub tainted: bool,
    /// Where the session's taint came from (`SERVER/TOOL`), when it is tainted.
    pub taint_sources: &'a [String],
    /// Each argument constraint that applies to the call, and whether the
    /// arguments satisfy it.
    pub constraints: &'a [(String, bool)],
    pub now: SystemTime,
}

/// The policies' answer, with the ids of the policies that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
    Allow {
        policies: Vec<String>,
    },
    NeedsApproval {
        reason: String,
        policies: Vec<String>,
    },
    Deny {
        reason: String,
        policies: Vec<String>,
    },
}

impl PolicyDecision {
    /// The ids of the policies (or the task token, or the constraint) that decided.
    pub fn policies(&self) -> &[String] {
        match self {
            PolicyDecision::Allow { policies }
            | PolicyDecision::NeedsApproval { policies, .. }
            | PolicyDecision::Deny { policies, .. } => policies,
        }
    }

    pub fn verb(&self) -> &'static str {
        match self {
            PolicyDecision::Allow { .. } => "allow",
            PolicyDecision::NeedsApproval { .. } => "needs-approval",
            PolicyDecision::Deny { .. } => "deny",
        }
    }
}

/// A decision and how it was reached, for `palisade policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub decision: PolicyDecision,
    /// Every policy whose conditions held (permits and forbids alike).
    pub matched: Vec<String>,
    /// Policies that could not be evaluated, with Cedar's message; such a
    /// permit allows nothing, such a forbid denies.
    pub errors: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "decision: {}", self.decision.verb())?;
        match &self.decision {
            PolicyDecision::Allow { .. } => {}
            PolicyDecision::NeedsApproval { reason, .. } | PolicyDecision::Deny { reason, .. } => {
                writeln!(f, "reason: {reason}")?;
            }
        }
        let list = |ids: &[String]| {
            if ids.is_empty() {
                "(none)".to_owned()
            } else {
                ids.join(", ")
            }
        };
        writeln!(f, "decided by: {}", list(self.decision.policies()))?;
        writeln!(f, "matched: {}", list(&self.matched))?;
        for error in &self.errors {
            writeln!(f, "error: {error}")?;
        }
        Ok(())
    }
}

/// One thing wrong with the policies, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The policy's id, once it parsed.
    pub policy: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Every problem found, in file order.
    #[error("{}", join_problems(.0))]
    Invalid(Vec<PolicyProblem>),
    #[error(
        "argument constraint name `{name}`: only letters, digits, `_`, `-` and `.` may be used"
    )]
    ConstraintName { name: String },
    #[error("palisade's policy schema does not load: {0}")]
    Schema(String),
}

fn join_problems(problems: &[PolicyProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// palisade's Cedar schema (Cedar schema syntax) for these constraint names.
pub fn schema_text(constraint_names: &[String]) -> Result<String, PolicyError> {
    schema::text(constraint_names)
}

/// The schema and a validated policy set. Immutable: a reload builds a new one.
pub struct PolicyEngine {
    policies: PolicySet,
    /// The same policies, sliced by the upstream they can apply to.
    sliced: Sliced,
    /// The permits with their conditions dropped, and the unconditional
    /// forbids: what could ever allow a call, for listings.
    visible: Sliced,
    types: Types,
    constraint_names: Vec<String>,
    irreversible_needs_approval: bool,
    authorizer: Authorizer,
    schema: Schema,
    /// Each principal's entity and `task` record. Keyed by the whole
    /// principal (id, kind, roles, tenant, credential, task id: see
    /// `Principal`'s `Eq`), so two callers differing in any of them never
    /// share one. Per engine: a reload starts empty.
    principals: Cache<Principal, PrincipalParts>,
    /// Each target's resource and server entities.
    resources: Cache<(CallKind, Target), ResourceParts>,
    /// Each policy's `@approval` and `@reason`, read at load: Cedar parses
    /// the annotation's name on every lookup, a fifth of a whole call's time.
    annotations: HashMap<String, Annotations>,
}

#[derive(Debug, Default)]
struct Annotations {
    approval: Option<String>,
    reason: Option<String>,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.policies.num_of_policies())
            .field("constraint_names", &self.constraint_names)
            .field(
                "irreversible_needs_approval",
                &self.irreversible_needs_approval,
            )
            .finish_non_exhaustive()
    }
}

/// Where a policy came from.
#[derive(Debug, Clone)]
struct Origin {
    file: usize,
    line: usize,
    column: usize,
}

impl PolicyEngine {
    /// Parses and validates `sources` against palisade's schema; every
    /// problem is reported with its file, line, column and Cedar's message.
    pub fn load(
        sources: &[PolicySource],
        constraint_names: &[String],
        irreversible_needs_approval: bool,
    ) -> Result<Self, PolicyError> {
        let schema_text = schema::text(constraint_names)?;
        let (schema, _warnings) = Schema::from_cedarschema_str(&schema_text)
            .map_err(|e| PolicyError::Schema(e.to_string()))?;
        let types = Types::new().map_err(PolicyError::Schema)?;
        let mut problems = Vec::new();
        let mut policies = PolicySet::new();
        let mut origins: HashMap<String, Origin> = HashMap::new();
        for index in 0..sources.len() {
            load_file(sources, index, &mut policies, &mut origins, &mut problems);
        }
        if problems.is_empty() {
            let validator = Validator::new(schema.clone());
            let result = validator.validate(&policies, ValidationMode::Strict);
            for error in result.validation_errors() {
                let id = error.policy_id().to_string();
                let origin = origins.get(&id);
                let source = origin.and_then(|o| sources.get(o.file));
                // An error that cannot be placed is still an error.
                let (line, column) = match (source, label_offset(error)) {
                    (Some(source), Some(at)) => source::line_column(&source.text, at),
                    (Some(_) | None, _) => origin.map_or((1, 1), |o| (o.line, o.column)),
                };
                problems.push(PolicyProblem {
                    file: source.map_or_else(PathBuf::new, |s| s.file.clone()),
                    line,
                    column,
                    policy: Some(id),
                    message: message(error),
                });
            }
        }
        if !problems.is_empty() {
            problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            return Err(PolicyError::Invalid(problems));
        }
        let visible = visibility_set(&policies)
            .and_then(|set| Sliced::new(&set))
            .map_err(PolicyError::Schema)?;
        let sliced = Sliced::new(&policies).map_err(PolicyError::Schema)?;
        let annotations = policies
            .policies()
            .map(|p| {
                let read = |key| p.annotation(key).map(str::to_owned);
                (
                    p.id().to_string(),
                    Annotations {
                        approval: read("approval"),
                        reason: read("reason"),
                    },
                )
            })
            .filter(|(_, a)| a.approval.is_some() || a.reason.is_some())
            .collect();
        Ok(Self {
            policies,
            sliced,
            visible,
            types,
            constraint_names: constraint_names.to_vec(),
            irreversible_needs_approval,
            authorizer: Authorizer::new(),
            schema,
            principals: Cache::new(CACHE_ENTRIES),
            resources: Cache::new(CACHE_ENTRIES),
            annotations,
        })
    }

    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.policies.num_of_policies()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The ids of the loaded policies, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .policies
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        ids
    }

    pub fn constraint_names(&self) -> &[String] {
        &self.constraint_names
    }

    pub fn irreversible_needs_approval(&self) -> bool {
        self.irreversible_needs_approval
    }

    pub fn decide(&self, request: &PolicyRequest<'_>) -> PolicyDecision {
        self.explain(request).decision
    }

    /// The decision, every policy that matched, and every evaluation error.
    pub fn explain(&self, r: &PolicyRequest<'_>) -> Explanation {
        let plain = |decision| Explanation {
            decision,
            matched: Vec::new(),
            errors: Vec::new(),
        };
        // The task token narrows whatever the policies grant.
        if let Some(task) = r.principal.task()
            && let Err(why) = task.permits(r.target, r.kind, r.effect, r.now)
        {
            return plain(PolicyDecision::Deny {
                reason: format!("task token `{}` does not allow this call: {why}", task.id()),
                policies: vec![format!("task-token:{}", task.id())],
            });
        }
        let failed: Vec<&str> = r
            .constraints
            .iter()
            .filter(|(_, passed)| !passed)
            .map(|(name, _)| name.as_str())
            .collect();
        if !failed.is_empty() {
            return plain(PolicyDecision::Deny {
                reason: format!(
                    "the arguments break the constraint {}",
                    failed
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                policies: failed.iter().map(|n| format!("constraint:{n}")).collect(),
            });
        }
        let built = self.principal_parts(r.principal).and_then(|principal| {
            let request = self
                .types
                .request_with(r, &self.constraint_names, principal.task())?;
            let resource = self.resource_parts(r.kind, r.target)?;
            let entities = self
                .types
                .assemble(&principal, &resource, Some(r.arguments))?;
            Ok((request, entities))
        });
        let (request, entities) = match built {
            Ok(built) => built,
            Err(why) => {
                return plain(PolicyDecision::Deny {
                    reason: format!("the call could not be put to the policies: {why}"),
                    policies: Vec::new(),
                });
            }
        };
        let response = self.authorizer.is_authorized(
            &request,
            self.sliced.for_server(&r.target.server),
            &entities,
        );
        let mut errors = Vec::new();
        let mut errored_forbids = Vec::new();
        for error in response.diagnostics().errors() {
            let id = error_policy(error);
            if self.effect_of(&id) == Some(Effect::Forbid) {
                errored_forbids.push(id.to_string());
            }
            errors.push(error.to_string());
        }
        let mut matched: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        matched.sort();
        let decision = if !errored_forbids.is_empty() {
            errored_forbids.sort();
            PolicyDecision::Deny {
                reason: format!(
                    "forbid policy {} could not be evaluated",
                    ticked(&errored_forbids)
                ),
                policies: errored_forbids,
            }
        } else {
            match response.decision() {
                Decision::Deny if matched.is_empty() => PolicyDecision::Deny {
                    reason: format!(
                        "no policy permits `{}` to {} `{}`",
                        r.principal,
                        r.effect.as_str(),
                        r.exposed_name
                    ),
                    policies: Vec::new(),
                },
                Decision::Deny => PolicyDecision::Deny {
                    reason: self.forbid_reason(&matched),
                    policies: matched.clone(),
                },
                Decision::Allow => self.allowed(r.effect, matched.clone()),
            }
        };
        Explanation {
            decision,
            matched,
            errors,
        }
    }

    /// Allowed by `permits`, unless one of them, or the effect class, asks for a human.
    fn allowed(&self, effect: EffectClass, permits: Vec<String>) -> PolicyDecision {
        let asks: Vec<&str> = permits
            .iter()
            .filter_map(|id| self.annotations.get(id)?.approval.as_deref())
            .collect();
        if !asks.is_empty() {
            let mut asks: Vec<&str> = asks
                .into_iter()
                .map(|a| {
                    if a.is_empty() {
                        "approval required by policy"
                    } else {
                        a
                    }
                })
                .collect();
            asks.sort_unstable();
            asks.dedup();
            return PolicyDecision::NeedsApproval {
                reason: asks.join("; "),
                policies: permits,
            };
        }
        match effect {
            EffectClass::Irreversible if self.irreversible_needs_approval => {
                PolicyDecision::NeedsApproval {
                    reason: "irreversible calls need a human's approval".to_owned(),
                    policies: permits,
                }
            }
            EffectClass::Read
            | EffectClass::Write
            | EffectClass::Egress
            | EffectClass::Irreversible => PolicyDecision::Allow { policies: permits },
        }
    }

    fn forbid_reason(&self, forbids: &[String]) -> String {
        let reasons: Vec<&str> = forbids
            .iter()
            .filter_map(|id| self.annotations.get(id)?.reason.as_deref())
            .collect();
        if reasons.is_empty() {
            format!("forbidden by policy {}", ticked(forbids))
        } else {
            reasons.join("; ")
        }
    }

    fn effect_of(&self, id: &PolicyId) -> Option<Effect> {
        self.policies.policy(id).map(Policy::effect)
    }

    /// May `principal` see this tool (prompt, resource) in a listing? True
    /// when some permit could allow a call to it, its conditions aside, and
    /// no unconditional forbid matches. The task token's scope is not
    /// consulted here (see [`PolicyAuthorizer::visible`]).
    pub fn visible(
        &self,
        principal: &Principal,
        kind: CallKind,
        target: &Target,
        effect: EffectClass,
    ) -> bool {
        let entities = self.principal_parts(principal).and_then(|p| {
            let resource = self.resource_parts(kind, target)?;
            self.types.assemble(&p, &resource, None)
        });
        let Ok(entities) = entities else {
            return false;
        };
        let Ok(request) = Request::new(
            self.types.principal_uid(principal),
            self.types.action(effect),
            self.types.resource_uid(kind, target),
            Context::empty(),
            None,
        ) else {
            return false;
        };
        self.authorizer
            .is_authorized(&request, self.visible.for_server(&target.server), &entities)
            .decision()
            == Decision::Allow
    }

    /// The schema the policies were validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    fn principal_parts(&self, principal: &Principal) -> Result<PrincipalParts, String> {
        if let Some(parts) = self.principals.get(principal) {
            return Ok(parts);
        }
        let parts = self.types.principal_parts(principal)?;
        self.principals.insert(principal.clone(), parts.clone());
        Ok(parts)
    }

    fn resource_parts(&self, kind: CallKind, target: &Target) -> Result<ResourceParts, String> {
        let key = (kind, target.clone());
        if let Some(parts) = self.resources.get(&key) {
            return Ok(parts);
        }
        let parts = self.types.resource_parts(kind, target)?;
        self.resources.insert(key, Arc::clone(&parts));
        Ok(parts)
    }

    /// How many principals and targets have cached entities (for tests).
    #[cfg(test)]
    fn cached(&self) -> (usize, usize) {
        (self.principals.len(), self.resources.len())
    }
}

fn ticked(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_policy(error: &cedar_policy::AuthorizationError) -> PolicyId {
    match error {
        cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id().clone(),
    }
}

/// Parses one file into `policies`, naming each policy; what is wrong goes to `problems`.
fn load_file(
    sources: &[PolicySource],
    index: usize,
    policies: &mut PolicySet,
    origins: &mut HashMap<String, Origin>,
    problems: &mut Vec<PolicyProblem>,
) {
    let Some(source) = sources.get(index) else {
        return;
    };
    let problem = |at: Option<usize>, policy: Option<String>, message: String| {
        let (line, column) = at.map_or((1, 1), |at| source::line_column(&source.text, at));
        PolicyProblem {
            file: source.file.clone(),
            line,
            column,
            policy,
            message,
        }
    };
    let parsed = match PolicySet::from_str(&source.text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for error in errors.iter() {
                problems.push(problem(label_offset(error), None, message(error)));
            }
            return;
        }
    };
    let starts = source::statement_starts(&source.text);
    if let Some(template) = parsed.templates().next() {
        let at = template_number(template.id()).and_then(|n| starts.get(n).copied());
        problems.push(problem(
            at,
            None,
            "templates (policies with `?principal` or `?resource`) are not supported".to_owned(),
        ));
        return;
    }
    let mut numbered: Vec<(usize, &Policy)> = parsed
        .policies()
        .map(|p| (template_number(p.id()).unwrap_or(usize::MAX), p))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let file = source.file.display().to_string();
    for (n, policy) in numbered {
        let at = starts.get(n).copied();
        let (line, column) = at.map_or((1, 1), |at| source::line_column(&source.text, at));
        let id = match policy.annotation("id") {
            Some(id) => id.to_owned(),
            None if origins.contains_key(&format!("{file}:{line}")) => {
                format!("{file}:{line}:{column}")
            }
            None => format!("{file}:{line}"),
        };
        if let Some(other) = origins.get(&id) {
            let other_file = sources
                .get(other.file)
                .map_or_else(String::new, |s| s.file.display().to_string());
            problems.push(problem(
                at,
                Some(id.clone()),
                format!(
                    "policy id `{id}` is already used at {other_file}:{}:{}",
                    other.line, other.column
                ),
            ));
            continue;
        }
        if let Err(e) = policies.add(policy.new_id(PolicyId::new(&id))) {
            problems.push(problem(at, Some(id), e.to_string()));
            continue;
        }
        origins.insert(
            id,
            Origin {
                file: index,
                line,
                column,
            },
        );
    }
}

/// Cedar names the n-th statement of a file `policyN`.
fn template_number(id: &PolicyId) -> Option<usize> {
    id.to_string().strip_prefix("policy")?.parse().ok()
}

fn label_offset(diagnostic: &dyn Diagnostic) -> Option<usize> {
    diagnostic.labels()?.next().map(|label| label.offset())
}

/// Cedar's message, with its hint when it has one.
fn message(diagnostic: &(impl Diagnostic + fmt::Display)) -> String {
    match diagnostic.help() {
        Some(help) => format!("{diagnostic} ({help})"),
        None => diagnostic.to_string(),
    }
}

/// The permits with their conditions dropped, and the unconditional forbids.
fn visibility_set(policies: &PolicySet) -> Result<PolicySet, String> {
    let mut out = PolicySet::new();
    for policy in policies.policies() {
        let keep = match policy.effect() {
            Effect::Permit if policy.has_non_scope_constraint() => {
                let mut json = policy.to_json().map_err(|e| e.to_string())?;
                if let Some(object) = json.as_object_mut() {
                    object.insert(
                        "conditions".to_owned(),
                        serde_json::Value::Array(Vec::new()),
                    );
                }
                Some(
                    Policy::from_json(Some(policy.id().clone()), json)
                        .map_err(|e| e.to_string())?,
                )
            }
            Effect::Permit => Some(policy.clone()),
            Effect::Forbid if policy.has_non_scope_constraint() => None,
            Effect::Forbid => Some(policy.clone()),
        };
        if let Some(policy) = keep {
            out.add(policy).map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// A policy set cut by upstream, because Cedar evaluates every policy of
/// the set it is given: a policy whose resource scope names a server (or a
/// tool or prompt in one) can only match calls to that server, so each
/// server's set holds its own policies and the ones that name no server.
/// The answer is the same as with the whole set; only the work shrinks.
#[derive(Debug)]
struct Sliced {
    /// The policies that may match a call to any server.
    common: PolicySet,
    by_server: HashMap<String, PolicySet>,
}

impl Sliced {
    fn new(all: &PolicySet) -> Result<Self, String> {
        let mut common = PolicySet::new();
        let mut scoped: HashMap<String, Vec<&Policy>> = HashMap::new();
        for policy in all.policies() {
            match servers_of(policy) {
                None => common.add(policy.clone()).map_err(|e| e.to_string())?,
                Some(servers) => {
                    for server in servers {
                        scoped.entry(server).or_default().push(policy);
                    }
                }
            }
        }
        let mut by_server = HashMap::new();
        for (server, policies) in scoped {
            let mut set = common.clone();
            for policy in policies {
                set.add(policy.clone()).map_err(|e| e.to_string())?;
            }
            by_server.insert(server, set);
        }
        Ok(Self { common, by_server })
    }

    fn for_server(&self, server: &str) -> &PolicySet {
        self.by_server.get(server).unwrap_or(&self.common)
    }
}

/// The servers a policy's resource scope confines it to, or `None` when
/// it may match a call to any server. A tool's or prompt's id is
/// `SERVER/NAME`; since a server's name could hold a `/`, every prefix
/// before a `/` is a candidate (a policy in one set too many is harmless;
/// one missing from a set could skip a forbid).
fn servers_of(policy: &Policy) -> Option<Vec<String>> {
    let uid = match policy.resource_constraint() {
        ResourceConstraint::Any | ResourceConstraint::Is(_) => return None,
        ResourceConstraint::Eq(uid)
        | ResourceConstraint::In(uid)
        | ResourceConstraint::IsIn(_, uid) => uid,
    };
    let id = uid.id().unescaped();
    match uid.type_name().basename() {
        "Server" if uid.type_name().namespace().is_empty() => Some(vec![id.to_owned()]),
        "Tool" | "Prompt" if uid.type_name().namespace().is_empty() => {
            let servers: Vec<String> = id
                .match_indices('/')
                .filter_map(|(at, _)| id.get(..at))
                .map(str::to_owned)
                .collect();
            if servers.is_empty() {
                None
            } else {
                Some(servers)
            }
        }
        _ => None,
    }
}
