//! Tests of the Cedar policy engine and its authorizer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cedar_policy::{Entities, Request};
use palisade_core::{
    Call, CallContext, CallHead, CallId, CallKind, Credential, EffectClass, Identity, ManualClock,
    Principal, PrincipalKind, ReasonCode, SessionFacts, SessionId, Target, TaskScope,
};
use serde_json::{Value, json};

use super::*;
use crate::{Authorization, Authorize};

const SEED: &str = include_str!("seed.cedar");

fn source(file: &str, text: &str) -> PolicySource {
    PolicySource {
        file: PathBuf::from(file),
        text: text.to_owned(),
    }
}

fn names() -> Vec<String> {
    vec!["paths".to_owned(), "email.domains".to_owned()]
}

fn engine(text: &str) -> PolicyEngine {
    PolicyEngine::load(&[source("p.cedar", text)], &names(), true).unwrap_or_else(|e| panic!("{e}"))
}

fn load_error(text: &str) -> String {
    match PolicyEngine::load(&[source("p.cedar", text)], &names(), true) {
        Ok(_) => panic!("loaded: {text}"),
        Err(e) => e.to_string(),
    }
}

fn person(
    id: &str,
    kind: PrincipalKind,
    roles: &[&str],
    task: Option<Arc<dyn TaskScope>>,
) -> Principal {
    Principal::from_identity(Identity {
        id: id.into(),
        kind,
        roles: roles.iter().map(|r| Arc::from(*r)).collect(),
        tenant: Some("acme".into()),
        credential: Credential::ApiKey { key: "k1".into() },
        task,
    })
}

fn alice() -> Principal {
    person("alice", PrincipalKind::User, &["dev"], None)
}

fn bob() -> Principal {
    person("bob", PrincipalKind::User, &[], None)
}

fn ci_bot() -> Principal {
    person("ci-bot", PrincipalKind::Service, &["ci"], None)
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// One call as the policies see it.
struct Ask<'a> {
    who: &'a Principal,
    kind: CallKind,
    target: &'a str,
    effect: EffectClass,
    args: Value,
    tainted: bool,
    sources: Vec<String>,
    constraints: Vec<(String, bool)>,
}

fn ask<'a>(who: &'a Principal, target: &'a str, effect: EffectClass) -> Ask<'a> {
    Ask {
        who,
        kind: CallKind::Tool,
        target,
        effect,
        args: json!({}),
        tainted: false,
        sources: Vec::new(),
        constraints: Vec::new(),
    }
}

impl Ask<'_> {
    fn args(mut self, args: Value) -> Self {
        self.args = args;
        self
    }

    fn kind(mut self, kind: CallKind) -> Self {
        self.kind = kind;
        self
    }

    fn tainted(mut self) -> Self {
        self.tainted = true;
        self
    }

    fn tainted_by(mut self, source: &str) -> Self {
        self.tainted = true;
        self.sources.push(source.to_owned());
        self
    }

    fn explain(&self, engine: &PolicyEngine) -> Explanation {
        let (server, name) = self.target.split_once('/').unwrap();
        let target = Target::new(server, name);
        let exposed = format!("{server}__{name}");
        engine.explain(&PolicyRequest {
            principal: self.who,
            kind: self.kind,
            target: &target,
            exposed_name: &exposed,
            effect: self.effect,
            arguments: &self.args,
            tainted: self.tainted,
            taint_sources: &self.sources,
            constraints: &self.constraints,
            now: now(),
        })
    }
}

/// `allow`, `deny` or `needs-approval`, and the deciding policies.
fn short(decision: &PolicyDecision) -> String {
    format!("{} {}", decision.verb(), decision.policies().join(","))
        .trim_end()
        .to_owned()
}

/// The reason a denial or a hold gives; empty for an allow.
fn reason_of(decision: &PolicyDecision) -> &str {
    match decision {
        PolicyDecision::Allow { .. } => "",
        PolicyDecision::NeedsApproval { reason, .. } | PolicyDecision::Deny { reason, .. } => {
            reason
        }
    }
}

fn check(engine: &PolicyEngine, cases: &[(Ask<'_>, &str)]) {
    for (ask, expected) in cases {
        let got = ask.explain(engine);
        assert_eq!(
            short(&got.decision),
            *expected,
            "{} {} {:?} {}: {got}",
            ask.who,
            ask.target,
            ask.effect,
            ask.args
        );
    }
}

use EffectClass::{Egress, Irreversible, Read, Write};

const RULES: &str = r#"
@id("dev-reads")
permit (principal in Role::"dev", action == Action::"read", resource);

@id("alice-deletes")
permit (principal == User::"alice", action, resource == Tool::"files/delete_file");

@id("ci-on-build")
permit (principal in Role::"ci", action in [Action::"read", Action::"write"], resource in Server::"build");

@id("no-secrets")
@reason("the secrets server is off limits")
forbid (principal, action, resource == Tool::"files/read_secret");

@id("tenant-writes")
permit (principal in Tenant::"acme", action == Action::"write", resource is Tool)
when { resource.server == "files" && principal.credential == "api-key" };
"#;

#[test]
fn roles_tools_servers_forbids_and_default_deny() {
    let e = engine(RULES);
    let (alice, bob, ci) = (alice(), bob(), ci_bot());
    check(
        &e,
        &[
            // A role rule: any read, for developers only.
            (ask(&alice, "files/read_text_file", Read), "allow dev-reads"),
            (ask(&bob, "files/read_text_file", Read), "deny"),
            // An effect class the role rule does not name.
            (ask(&alice, "web/fetch", Egress), "deny"),
            // A tool rule naming one principal: allowed, but irreversible needs approval.
            (
                ask(&alice, "files/delete_file", Irreversible),
                "needs-approval alice-deletes",
            ),
            (ask(&bob, "files/delete_file", Irreversible), "deny"),
            // A server rule, for a service's role.
            (ask(&ci, "build/run", Write), "allow ci-on-build"),
            (ask(&ci, "build/run", Egress), "deny"),
            (ask(&ci, "files/read_text_file", Read), "deny"),
            // A forbid wins over a permit that matches.
            (ask(&alice, "files/read_secret", Read), "deny no-secrets"),
            // Attributes and tenants: bob is in acme, with an API key, writing to files.
            (ask(&bob, "files/write_file", Write), "allow tenant-writes"),
            (ask(&bob, "other/write_file", Write), "deny"),
            // Prompts and resources are resources too.
            (
                ask(&alice, "files/summarize", Read).kind(CallKind::Prompt),
                "allow dev-reads",
            ),
            (
                ask(&bob, "files/summarize", Read).kind(CallKind::Prompt),
                "deny",
            ),
        ],
    );
    let forbidden = ask(&alice, "files/read_secret", Read).explain(&e);
    assert_eq!(
        reason_of(&forbidden.decision),
        "the secrets server is off limits"
    );
    assert_eq!(forbidden.matched, ["no-secrets"]);
    let denied = ask(&bob, "files/read_text_file", Read).explain(&e);
    assert_eq!(
        reason_of(&denied.decision),
        "no policy permits `bob` to read `files__read_text_file`"
    );
}

#[test]
fn resources_completions_and_task_results_have_their_own_resource() {
    let e = engine(
        r#"
        @id("readme") permit (principal, action, resource == Resource::"file:///readme.md");
        @id("prompt") permit (principal, action, resource == Prompt::"files/greet");
        @id("results") permit (principal, action == Action::"read", resource is Server)
            when { context.kind == "task-result" };
        "#,
    );
    let who = bob();
    // A target's name is `server/name`; a resource's name is its URI.
    let resource = |uri: &str| {
        let target = Target::new("files", uri);
        e.decide(&PolicyRequest {
            principal: &who,
            kind: CallKind::Resource,
            target: &target,
            exposed_name: uri,
            effect: Read,
            arguments: &Value::Null,
            tainted: false,
            taint_sources: &[],
            constraints: &[],
            now: now(),
        })
    };
    assert_eq!(short(&resource("file:///readme.md")), "allow readme");
    assert_eq!(short(&resource("file:///etc/passwd")), "deny");
    check(
        &e,
        &[
            (
                ask(&who, "files/ref/prompt:greet", Read).kind(CallKind::Completion),
                "allow prompt",
            ),
            (
                ask(&who, "files/ref/prompt:other", Read).kind(CallKind::Completion),
                "deny",
            ),
            (
                ask(&who, "files/ref/resource:file:///readme.md", Read).kind(CallKind::Completion),
                "allow readme",
            ),
            (
                ask(&who, "files/task-1", Read).kind(CallKind::TaskResult),
                "allow results",
            ),
            // The task-result rule does not open the server's tools.
            (ask(&who, "files/greet", Read), "deny"),
        ],
    );
}

#[test]
fn approval_annotations_and_the_irreversible_default() {
    let text = r#"
        @id("plain") permit (principal in Role::"dev", action, resource == Tool::"pay/transfer");
        @id("ask") @approval("payments need a human") permit (principal in Role::"dev", action, resource == Tool::"pay/transfer")
            when { context.args.hasTag("amount") };
        @id("deploy") @approval("") permit (principal in Role::"dev", action, resource == Tool::"ops/deploy");
        @id("wipe") permit (principal in Role::"dev", action == Action::"irreversible", resource == Tool::"ops/wipe");
    "#;
    let e = engine(text);
    let alice = alice();
    check(
        &e,
        &[
            // Only the unannotated permit matches: allowed.
            (ask(&alice, "pay/transfer", Write), "allow plain"),
            // Both match: one asking for approval is enough.
            (
                ask(&alice, "pay/transfer", Write).args(json!({"amount": 10})),
                "needs-approval ask,plain",
            ),
            (ask(&alice, "ops/deploy", Write), "needs-approval deploy"),
            (ask(&alice, "ops/wipe", Irreversible), "needs-approval wipe"),
        ],
    );
    let held = ask(&alice, "pay/transfer", Write)
        .args(json!({"amount": 10}))
        .explain(&e);
    assert_eq!(reason_of(&held.decision), "payments need a human");
    // The default can be switched off: then an irreversible call is only as held as its policy says.
    let relaxed = PolicyEngine::load(&[source("p.cedar", text)], &names(), false).unwrap();
    check(
        &relaxed,
        &[
            (ask(&alice, "ops/wipe", Irreversible), "allow wipe"),
            (ask(&alice, "ops/deploy", Write), "needs-approval deploy"),
        ],
    );
}

#[test]
fn a_tainted_session_may_not_send_data_out() {
    let e = engine(
        r#"
        @id("all") permit (principal in Role::"dev", action, resource);
        @id("taint") forbid (principal, action, resource)
            when { context.session.tainted && action == Action::"egress" };
        "#,
    );
    let alice = alice();
    check(
        &e,
        &[
            (ask(&alice, "web/post", Egress), "allow all"),
            (ask(&alice, "web/post", Egress).tainted(), "deny taint"),
            (
                ask(&alice, "files/read_text_file", Read).tainted(),
                "allow all",
            ),
        ],
    );
}

#[test]
fn policies_see_where_the_taint_came_from() {
    let e = engine(
        r#"
        @id("all") permit (principal in Role::"dev", action, resource);
        @id("web-taint") forbid (principal, action == Action::"egress", resource)
            when { context.session.sources.contains("web/fetch") };
        "#,
    );
    let alice = alice();
    check(
        &e,
        &[
            (
                ask(&alice, "mail/send", Egress).tainted_by("web/fetch"),
                "deny web-taint",
            ),
            (
                ask(&alice, "mail/send", Egress).tainted_by("docs/read"),
                "allow all",
            ),
            (ask(&alice, "mail/send", Egress), "allow all"),
        ],
    );
}

#[test]
fn argument_tags_guard_a_path() {
    let e = engine(
        r#"
        @id("tmp-writes") permit (principal in Role::"dev", action == Action::"write", resource == Tool::"files/write_file")
            when { context.args.hasTag("path") && context.args.getTag("path") like "/tmp/*" };
        @id("small") permit (principal in Role::"dev", action == Action::"write", resource == Tool::"files/truncate")
            when { context.args.hasTag("size") && context.args.getTag("size") == "0" };
        "#,
    );
    let alice = alice();
    let write = |args: Value| ask(&alice, "files/write_file", Write).args(args);
    check(
        &e,
        &[
            (write(json!({"path": "/tmp/a.txt"})), "allow tmp-writes"),
            (write(json!({"path": "/etc/passwd"})), "deny"),
            (write(json!({"path": "/tmpx/a"})), "deny"),
            (write(json!({})), "deny"),
            // A non-string is its JSON text, which does not look like a path.
            (write(json!({"path": ["/tmp/a"]})), "deny"),
            (write(json!({"path": {"p": "/tmp/a"}})), "deny"),
            (write(json!("/tmp/a")), "deny"),
            // A number is its JSON text.
            (
                ask(&alice, "files/truncate", Write).args(json!({"size": 0})),
                "allow small",
            ),
            (
                ask(&alice, "files/truncate", Write).args(json!({"size": 5})),
                "deny",
            ),
        ],
    );
}

#[test]
fn a_failed_constraint_denies_whatever_the_policies_say() {
    let e = engine(
        r#"
        @id("all") permit (principal, action, resource);
        @id("paths-ok") permit (principal, action, resource) when { context.constraints.paths };
        "#,
    );
    let alice = alice();
    let mut passing = ask(&alice, "files/write_file", Write);
    passing.constraints = vec![("paths".to_owned(), true)];
    let mut failing = ask(&alice, "files/write_file", Write);
    failing.constraints = vec![("paths".to_owned(), false)];
    check(
        &e,
        &[
            (passing, "allow all,paths-ok"),
            (failing, "deny constraint:paths"),
            // A constraint that does not apply counts as satisfied.
            (ask(&alice, "files/write_file", Write), "allow all,paths-ok"),
        ],
    );
}

/// A task token allowing a fixed list of tools.
#[derive(Debug)]
struct Scope(Vec<Arc<str>>);

impl TaskScope for Scope {
    fn id(&self) -> &str {
        "tok-1"
    }

    fn scopes(&self) -> &[Arc<str>] {
        &self.0
    }

    fn permits(
        &self,
        target: &Target,
        _: CallKind,
        _: EffectClass,
        _: SystemTime,
    ) -> Result<(), String> {
        let name = format!("{}__{}", target.server, target.name);
        if self.0.iter().any(|s| **s == *name) {
            Ok(())
        } else {
            Err(format!("`{name}` is not among the token's tools"))
        }
    }
}

fn with_task(tools: &[&str]) -> Principal {
    let scope: Arc<dyn TaskScope> = Arc::new(Scope(tools.iter().map(|t| Arc::from(*t)).collect()));
    person("alice", PrincipalKind::User, &["dev"], Some(scope))
}

#[test]
fn a_task_token_narrows_and_is_visible_to_policies() {
    let e = engine(
        r#"
        @id("dev") permit (principal in Role::"dev", action, resource);
        @id("scoped") forbid (principal, action, resource)
            when { context.task.present && !context.task.scopes.contains(context.tool) };
        "#,
    );
    let holder = with_task(&["files__read_text_file", "files__list_directory"]);
    check(
        &e,
        &[
            (ask(&holder, "files/read_text_file", Read), "allow dev"),
            // Refused by the token before the policies are asked.
            (
                ask(&holder, "files/write_file", Write),
                "deny task-token:tok-1",
            ),
            // Without a token, the policies alone.
            (ask(&alice(), "files/write_file", Write), "allow dev"),
        ],
    );
    // The policies see the scopes: a token listing a tool it does not
    // allow (scope checks disagree) is still held to `context.task.scopes`.
    assert_eq!(
        reason_of(&ask(&holder, "files/write_file", Write).explain(&e).decision),
        "task token `tok-1` does not allow this call: `files__write_file` is not among the token's tools"
    );
}

#[test]
fn the_schema_refuses_unknown_types_actions_and_attributes_where_they_are() {
    let check = |text: &str, expected: &str| {
        let got = load_error(text);
        assert!(
            got.contains(expected),
            "{text}\n  got: {got}\n  expected: {expected}"
        );
    };
    check(
        "permit (principal, action, resource);\n\npermit (principal == Group::\"x\", action, resource);",
        "p.cedar:3:22: ",
    );
    check(
        "permit (principal == Group::\"x\", action, resource);",
        "unrecognized entity type `Group`",
    );
    check(
        "permit (principal, action == Action::\"delete\", resource);",
        "p.cedar:1:30: ",
    );
    check(
        "permit (principal, action == Action::\"delete\", resource);",
        "unrecognized action `Action::\"delete\"`",
    );
    check(
        "permit (principal, action, resource)\nwhen { principal.email == \"a\" };",
        "p.cedar:2:8: ",
    );
    check(
        "permit (principal, action, resource)\nwhen { principal.email == \"a\" };",
        "email",
    );
    check(
        "permit (principal, action, resource) when { context.nope };",
        "nope",
    );
    // A tag read without `hasTag` could fail at run time: refused.
    check(
        "permit (principal, action, resource) when { context.args.getTag(\"path\") == \"/\" };",
        "p.cedar:1:45: ",
    );
    // An unknown constraint name.
    check(
        "permit (principal, action, resource) when { context.constraints.shell };",
        "shell",
    );
    // An extension function that does not exist.
    check(
        "permit (principal, action, resource) when { nope(\"x\") };",
        "p.cedar:1:45: ",
    );
}

#[test]
fn parse_errors_and_duplicate_ids_are_located() {
    let check = |text: &str, expected: &str| {
        let got = load_error(text);
        assert!(
            got.contains(expected),
            "{text}\n  got: {got}\n  expected: {expected}"
        );
    };
    check(
        "permit (principal, action, resource);\npermit (principal, action, resource) when { 1 + };",
        "p.cedar:2:",
    );
    check("permit (principal, action, resource)", "p.cedar:1:");
    check("allow (principal, action, resource);", "p.cedar:1:1: ");
    check(
        "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);",
        "p.cedar:2:1: policy id `a` is already used at p.cedar:1:1",
    );
    check(
        "permit (principal == ?principal, action, resource);",
        "templates",
    );
    // Several files: each problem names its own file.
    let err = PolicyEngine::load(
        &[
            source("a.cedar", "permit (principal, action, resource);"),
            source(
                "b.cedar",
                "\n  permit (principal, action == Action::\"x\", resource);",
            ),
        ],
        &[],
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("b.cedar:2:32: "), "{err}");
    // A bad constraint name is refused before any policy is read.
    assert!(matches!(
        PolicyEngine::load(&[], &["a\"b".to_owned()], true),
        Err(PolicyError::ConstraintName { .. })
    ));
}

#[test]
fn policies_are_named_by_annotation_or_file_and_line() {
    let e = PolicyEngine::load(
        &[source(
            "dir/p.cedar",
            "// reads\npermit (principal, action == Action::\"read\", resource);\n\n@id(\"writes\")\npermit (principal, action == Action::\"write\", resource);\npermit (principal, action == Action::\"egress\", resource); permit (principal, action == Action::\"egress\", resource);",
        )],
        &[],
        true,
    )
    .unwrap();
    assert_eq!(
        e.policy_ids(),
        [
            "dir/p.cedar:2",
            "dir/p.cedar:6",
            "dir/p.cedar:6:59",
            "writes"
        ]
    );
    let who = bob();
    check(
        &e,
        &[
            (ask(&who, "a/b", Read), "allow dir/p.cedar:2"),
            (ask(&who, "a/b", Write), "allow writes"),
            (
                ask(&who, "a/b", Egress),
                "allow dir/p.cedar:6,dir/p.cedar:6:59",
            ),
        ],
    );
}

#[test]
fn the_seed_examples_hold_what_they_say() {
    let e = PolicyEngine::load(&[source("seed.cedar", SEED)], &[], true)
        .unwrap_or_else(|e| panic!("{e}"));
    let alice = alice();
    check(
        &e,
        &[
            (ask(&alice, "files/read_text_file", Read), "allow reads"),
            (
                ask(&alice, "files/delete_file", Irreversible),
                "needs-approval file.delete",
            ),
            (
                ask(&alice, "files/write_file", Write).args(json!({"path": "/home/a/x"})),
                "allow file.write",
            ),
            (
                ask(&alice, "files/write_file", Write).args(json!({"path": "/etc/hosts"})),
                "needs-approval file.write,file.write_system",
            ),
            (
                ask(&alice, "cloud/terminate_instance", Irreversible),
                "needs-approval cloud.terminate",
            ),
            (
                ask(&alice, "cloud/modify_security_group", Write),
                "needs-approval cloud.modify_security",
            ),
            (
                ask(&alice, "payments/transfer", Irreversible),
                "needs-approval payment.transfer",
            ),
            (
                ask(&alice, "email/send", Egress).args(json!({"to": "bob@acme.example"})),
                "allow email.send",
            ),
            (
                ask(&alice, "email/send", Egress).args(json!({"to": "eve@evil.example"})),
                "needs-approval email.send,email.send_external",
            ),
            // Not a developer: nothing.
            (ask(&bob(), "files/read_text_file", Read), "deny"),
            (ask(&bob(), "payments/transfer", Irreversible), "deny"),
        ],
    );
}

#[test]
fn listings_show_what_some_permit_could_allow() {
    let e = engine(
        r#"
        @id("reads") permit (principal in Role::"dev", action == Action::"read", resource)
            when { context.hour >= 8 && context.hour < 18 };
        @id("deletes") @approval("x") permit (principal in Role::"dev", action, resource == Tool::"files/delete_file");
        @id("no-shell") forbid (principal, action, resource in Server::"shell");
        @id("no-egress-when-tainted") forbid (principal, action == Action::"egress", resource)
            when { context.session.tainted };
        @id("egress") permit (principal in Role::"dev", action == Action::"egress", resource == Tool::"web/post");
        "#,
    );
    let visible = |who: &Principal, target: &str, effect| {
        let (server, name) = target.split_once('/').unwrap();
        e.visible(who, CallKind::Tool, &Target::new(server, name), effect)
    };
    let (alice, bob) = (alice(), bob());
    // Conditions aside, a permit exists.
    assert!(visible(&alice, "files/read_text_file", Read));
    assert!(visible(&alice, "files/delete_file", Irreversible));
    // A conditional forbid does not hide it.
    assert!(visible(&alice, "web/post", Egress));
    assert!(!visible(&alice, "files/write_file", Write));
    assert!(!visible(&bob, "files/read_text_file", Read));
    // An unconditional forbid does.
    assert!(!visible(&alice, "shell/run", Read));
}

#[test]
fn requests_and_entities_conform_to_the_schema() {
    let e = engine("permit (principal, action, resource);");
    let holder = with_task(&["files__read_text_file"]);
    for (who, kind, name) in [
        (alice(), CallKind::Tool, "read_text_file"),
        (ci_bot(), CallKind::Prompt, "greet"),
        (holder, CallKind::Resource, "file:///a"),
        (bob(), CallKind::Completion, "ref/prompt:greet"),
        (bob(), CallKind::TaskResult, "t-1"),
    ] {
        let target = Target::new("files", name);
        let constraints = [("paths".to_owned(), true)];
        let args = json!({"path": "/a", "n": 1, "deep": {"x": [1]}});
        let r = PolicyRequest {
            principal: &who,
            kind,
            target: &target,
            exposed_name: "files__x",
            effect: Write,
            arguments: &args,
            tainted: true,
            taint_sources: &[],
            constraints: &constraints,
            now: now(),
        };
        let request = e.types.request(&r, e.constraint_names()).unwrap();
        request
            .context()
            .unwrap()
            .validate(e.schema(), &e.types.action(Write))
            .unwrap_or_else(|err| panic!("{kind:?}: {err}"));
        let entities = e.types.entities(&who, kind, &target, Some(&args)).unwrap();
        Entities::from_entities(entities.iter().cloned(), Some(e.schema()))
            .unwrap_or_else(|err| panic!("{kind:?}: {err}"));
        // The request as calls build it, with the principal's cached parts.
        let parts = e.principal_parts(&who).unwrap();
        let request = e
            .types
            .request_with(&r, e.constraint_names(), parts.task())
            .unwrap();
        Request::new(
            request.principal().unwrap().clone(),
            request.action().unwrap().clone(),
            request.resource().unwrap().clone(),
            request.context().unwrap().clone(),
            Some(e.schema()),
        )
        .unwrap_or_else(|err| panic!("{kind:?}: {err}"));
        let resource = e.resource_parts(kind, &target).unwrap();
        let assembled = e.types.assemble(&parts, &resource, Some(&args)).unwrap();
        Entities::from_entities(assembled.iter().cloned(), Some(e.schema()))
            .unwrap_or_else(|err| panic!("{kind:?}: {err}"));
    }
}

/// The entities assembled from cached parts, without computing the
/// hierarchy's transitive closure, are exactly the ones computed from scratch.
#[test]
fn fast_entities_equal_the_computed_ones() {
    let e = engine("permit (principal, action, resource);");
    let no_roles = Principal::new("svc");
    let many = person("carol", PrincipalKind::User, &["a", "b", "c"], None);
    let args = json!({"path": "/a", "n": 1, "deep": {"x": [1]}, "": "empty key"});
    for who in [alice(), ci_bot(), no_roles, many, with_task(&["x"])] {
        for (kind, name) in [
            (CallKind::Tool, "read_text_file"),
            (CallKind::Prompt, "greet"),
            (CallKind::Resource, "file:///a"),
            (CallKind::Completion, "ref/prompt:greet"),
            (CallKind::Completion, "ref/resource:file:///a"),
            (CallKind::Completion, "other"),
            (CallKind::TaskResult, "t-1"),
        ] {
            let target = Target::new("files", name);
            let parts = e.principal_parts(&who).unwrap();
            let resource = e.resource_parts(kind, &target).unwrap();
            for arguments in [Some(&args), Some(&json!([1])), None] {
                let fast = e.types.assemble(&parts, &resource, arguments).unwrap();
                let slow = e.types.entities(&who, kind, &target, arguments).unwrap();
                assert!(
                    fast.as_ref().deep_eq(slow.as_ref()),
                    "{who:?} {kind:?} {name}: {fast:?} != {slow:?}"
                );
            }
        }
    }
}

const BY_ROLE: &str = r#"
permit (principal in Role::"dev", action == Action::"read", resource);
forbid (principal, action, resource) when { context.task.present };
"#;

/// Two principals with the same id but different roles, kind, tenant or
/// task never share a cached entity, in whichever order they call.
#[test]
fn principals_differing_in_anything_but_the_id_do_not_share_a_cache_entry() {
    let dev = alice();
    let ops = person("alice", PrincipalKind::User, &["ops"], None);
    let service = person("alice", PrincipalKind::Service, &["dev"], None);
    let task = with_task(&["files__read_text_file"]);
    let cases = [
        (&dev, "allow"),
        (&ops, "deny"),
        (&service, "allow"),
        (&task, "deny"),
    ];
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2]] {
        let e = engine(BY_ROLE);
        for round in 0..2 {
            for &i in &order {
                let (who, want) = cases[i];
                let got = ask(who, "files/read_text_file", EffectClass::Read)
                    .explain(&e)
                    .decision;
                assert_eq!(got.verb(), want, "{who:?}, round {round}");
            }
        }
        assert_eq!(e.cached(), (4, 1));
    }
    // Equal principals built apart share one.
    let e = engine(BY_ROLE);
    for _ in 0..3 {
        ask(&alice(), "files/read_text_file", EffectClass::Read).explain(&e);
    }
    assert_eq!(e.cached(), (1, 1));
}

/// A reload starts from empty caches: entities built for the old engine
/// are not reused, and the new policies decide.
#[tokio::test]
async fn a_reload_starts_with_empty_caches() {
    async fn verdict(a: &PolicyAuthorizer, read: &Call, ctx: &CallContext) -> &'static str {
        match a.authorize(read, ctx).await.unwrap() {
            Authorization::Allow { .. } => "allow",
            Authorization::NeedsApproval { .. } => "needs-approval",
            Authorization::Deny { .. } => "deny",
        }
    }
    let a = authorizer(BY_ROLE);
    let who = alice();
    let read = call(who.clone(), "read_text_file", EffectClass::Read, json!({}));
    let ctx = CallContext::new(SessionFacts::new());
    assert_eq!(verdict(&a, &read, &ctx).await, "allow");
    let before = a.engine();
    assert_eq!(before.cached(), (1, 1));
    a.reload(&[source(
        "p.cedar",
        r#"permit (principal in Role::"ops", action, resource);"#,
    )])
    .unwrap();
    assert_eq!(a.engine().cached(), (0, 0));
    assert_eq!(verdict(&a, &read, &ctx).await, "deny");
    assert_eq!(a.engine().cached(), (1, 1));
    // The old engine's entries stay with it, never seen by the new one.
    assert_eq!(before.cached(), (1, 1));
}

// The authorizer: constraints from the checker, permits, findings, reloads.

#[derive(Debug)]
struct PathsInTmp;

impl ArgumentChecks for PathsInTmp {
    fn check(&self, exposed_tool: &str, _: &Principal, arguments: &Value) -> Vec<ArgumentCheck> {
        if exposed_tool != "fs_write_file" {
            return Vec::new();
        }
        let path = arguments.get("path").and_then(Value::as_str).unwrap_or("");
        let passed = path.starts_with("/tmp/");
        vec![ArgumentCheck {
            constraint: "paths".to_owned(),
            passed,
            detail: (!passed).then(|| format!("`{path}` is outside `/tmp`")),
        }]
    }

    fn names(&self) -> Vec<String> {
        vec!["paths".to_owned()]
    }
}

fn authorizer(text: &str) -> PolicyAuthorizer {
    PolicyAuthorizer::load(
        &[source("p.cedar", text)],
        Arc::new(PathsInTmp),
        HashMap::from([("files".to_owned(), "fs_".to_owned())]),
        Arc::new(ManualClock::new(now())),
        true,
    )
    .unwrap()
}

fn call(who: Principal, name: &str, effect: EffectClass, args: Value) -> Call {
    Call::new(
        CallHead {
            id: CallId(7),
            principal: who,
            session: SessionId::new("s"),
            kind: CallKind::Tool,
            target: Target::new("files", name),
            effect,
            params: None,
            parent: None,
        },
        args,
    )
}

async fn outcome(a: &PolicyAuthorizer, call: &Call) -> (String, String, Vec<String>) {
    let ctx = CallContext::new(SessionFacts::new());
    let codes = |f: &[palisade_core::Finding]| {
        f.iter()
            .map(|f| format!("{}: {}", f.code, f.message))
            .collect()
    };
    match a.authorize(call, &ctx).await.unwrap() {
        Authorization::Allow {
            permit, findings, ..
        } => {
            assert!(permit.redeem(call.clone()).is_ok());
            ("allow".into(), String::new(), codes(&findings))
        }
        Authorization::NeedsApproval {
            pending, findings, ..
        } => {
            assert_eq!(pending.request().reason.code, ReasonCode::ApprovalRequired);
            (
                "approval".into(),
                pending.request().reason.detail.clone(),
                codes(&findings),
            )
        }
        Authorization::Deny { reason, findings } => {
            assert_eq!(reason.code, ReasonCode::NotAuthorized);
            ("deny".into(), reason.detail, codes(&findings))
        }
    }
}

const WRITES: &str = r#"
@id("writes") permit (principal in Role::"dev", action, resource in Server::"files")
    when { context.tool like "fs_*" };
"#;

#[tokio::test]
async fn the_authorizer_checks_constraints_and_mints_permits() {
    let a = authorizer(WRITES);
    let (verdict, _, findings) = outcome(
        &a,
        &call(alice(), "write_file", Write, json!({"path": "/tmp/x"})),
    )
    .await;
    assert_eq!(verdict, "allow");
    assert_eq!(findings, ["policy.allow: policies: writes"]);
    // The policy would allow it; the constraint does not.
    let (verdict, reason, findings) = outcome(
        &a,
        &call(alice(), "write_file", Write, json!({"path": "/etc/x"})),
    )
    .await;
    assert_eq!(verdict, "deny");
    assert_eq!(
        reason,
        "the arguments break the constraint `paths` (`paths`: `/etc/x` is outside `/tmp`)"
    );
    assert_eq!(
        findings,
        [
            "constraint.paths: constraint `paths` failed: `/etc/x` is outside `/tmp`",
            "policy.deny: policies: constraint:paths"
        ]
    );
    let (verdict, reason, _) = outcome(&a, &call(alice(), "rm", Irreversible, json!({}))).await;
    assert_eq!(
        (verdict.as_str(), reason.as_str()),
        ("approval", "irreversible calls need a human's approval")
    );
    let (verdict, _, findings) = outcome(&a, &call(bob(), "read", Read, json!({}))).await;
    assert_eq!(verdict, "deny");
    assert_eq!(findings, ["policy.deny: no policy matched"]);
    let (verdict, reason, _) = outcome(
        &a,
        &call(
            with_task(&["files__read"]),
            "write_file",
            Write,
            json!({"path": "/tmp/x"}),
        ),
    )
    .await;
    assert_eq!(verdict, "deny");
    assert!(
        reason.starts_with("task token `tok-1` does not allow this call"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_bad_reload_keeps_the_policies_in_force() {
    let a = authorizer(WRITES);
    let write = call(alice(), "write_file", Write, json!({"path": "/tmp/x"}));
    let err = a
        .reload(&[source(
            "new.cedar",
            "permit (principal, action == Action::\"nope\", resource);",
        )])
        .unwrap_err();
    assert!(err.to_string().starts_with("new.cedar:1:"), "{err}");
    assert_eq!(outcome(&a, &write).await.0, "allow");
    a.reload(&[source(
        "new.cedar",
        "@id(\"none\") forbid (principal, action, resource);",
    )])
    .unwrap();
    let (verdict, reason, _) = outcome(&a, &write).await;
    assert_eq!(
        (verdict.as_str(), reason.as_str()),
        ("deny", "forbidden by policy `none`")
    );
    // The reloaded engine keeps the constraint names.
    assert_eq!(a.engine().constraint_names(), ["paths"]);
}

#[test]
fn exposed_names_follow_the_prefixes() {
    let a = authorizer(WRITES);
    let check = |kind, server: &str, name: &str, expected: &str| {
        assert_eq!(a.exposed_name(kind, &Target::new(server, name)), expected);
    };
    check(CallKind::Tool, "files", "read", "fs_read");
    check(CallKind::Tool, "other", "read", "other__read");
    check(CallKind::Prompt, "files", "greet", "fs_greet");
    check(CallKind::Resource, "files", "file:///a", "file:///a");
    check(
        CallKind::Completion,
        "files",
        "ref/prompt:greet",
        "fs_greet",
    );
    check(
        CallKind::Completion,
        "files",
        "ref/resource:file:///a",
        "file:///a",
    );
    check(CallKind::TaskResult, "files", "t-1", "t-1");
    // The authorizer's view of listings also asks the task token.
    let holder = with_task(&["files__read"]);
    assert!(a.visible(&holder, CallKind::Tool, &Target::new("files", "read"), Read));
    assert!(!a.visible(
        &holder,
        CallKind::Tool,
        &Target::new("files", "write"),
        Read
    ));
    assert!(a.visible(
        &alice(),
        CallKind::Tool,
        &Target::new("files", "write"),
        Read
    ));
}

#[test]
fn an_explanation_reads_as_text() {
    let e = engine(RULES);
    let text = ask(&alice(), "files/read_secret", Read)
        .explain(&e)
        .to_string();
    assert_eq!(
        text,
        "decision: deny\nreason: the secrets server is off limits\ndecided by: no-secrets\nmatched: no-secrets\n"
    );
}

#[test]
fn a_policy_that_fails_to_evaluate_never_allows_and_a_forbid_that_fails_denies() {
    // Validation cannot see an overflow coming; evaluation errors on it.
    let overflow = "context.time * 100000000000 > 0";
    let permit = engine(&format!(
        "@id(\"p\") permit (principal, action, resource) when {{ {overflow} }};"
    ));
    let alice = alice();
    check(&permit, &[(ask(&alice, "a/b", Read), "deny")]);
    assert_eq!(ask(&alice, "a/b", Read).explain(&permit).errors.len(), 1);
    let forbid = engine(&format!(
        "@id(\"all\") permit (principal, action, resource);\n@id(\"f\") forbid (principal, action, resource) when {{ {overflow} }};"
    ));
    check(&forbid, &[(ask(&alice, "a/b", Read), "deny f")]);
    assert_eq!(
        reason_of(&ask(&alice, "a/b", Read).explain(&forbid).decision),
        "forbid policy `f` could not be evaluated"
    );
}

#[test]
fn slicing_by_server_keeps_every_policy_that_could_match() {
    // A server whose name holds a `/`, and policies for servers no call names.
    let e = engine(
        r#"
        @id("any") permit (principal in Role::"dev", action == Action::"read", resource);
        @id("ab-tool") forbid (principal, action, resource == Tool::"a/b/c");
        @id("a-server") permit (principal, action == Action::"write", resource in Server::"a");
        @id("ab-server") forbid (principal, action == Action::"write", resource in Server::"a/b");
        @id("other") forbid (principal, action, resource in Server::"zzz");
        @id("prompt") permit (principal, action == Action::"egress", resource == Prompt::"a/p");
        "#,
    );
    let alice = alice();
    let on = |server: &str, name: &str, effect, kind| {
        let target = Target::new(server, name);
        short(&e.decide(&PolicyRequest {
            principal: &alice,
            kind,
            target: &target,
            exposed_name: "x",
            effect,
            arguments: &json!({}),
            tainted: false,
            taint_sources: &[],
            constraints: &[],
            now: now(),
        }))
    };
    assert_eq!(on("a/b", "c", Read, CallKind::Tool), "deny ab-tool");
    assert_eq!(on("a", "b/c", Read, CallKind::Tool), "deny ab-tool");
    assert_eq!(on("a", "x", Read, CallKind::Tool), "allow any");
    assert_eq!(on("a", "x", Write, CallKind::Tool), "allow a-server");
    assert_eq!(on("a/b", "x", Write, CallKind::Tool), "deny ab-server");
    assert_eq!(on("q", "x", Read, CallKind::Tool), "allow any");
    assert_eq!(on("a", "p", Egress, CallKind::Prompt), "allow prompt");
    assert_eq!(on("a", "p", Egress, CallKind::Tool), "deny");
    assert!(!e.visible(&alice, CallKind::Tool, &Target::new("a/b", "c"), Read));
    assert!(e.visible(&alice, CallKind::Tool, &Target::new("a", "c"), Read));
}
