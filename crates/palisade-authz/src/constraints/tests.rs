//! Tests of selection, tool patterns and the set; each kind's own tests sit in its file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::*;

/// A directory removed when dropped; canonical, so tests compare paths
/// without a symlinked temp root getting in the way.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("palisade-constraints-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(std::fs::canonicalize(&dir).unwrap())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn paths_constraint(name: &str, tools: &[&str], arguments: &[&str]) -> Constraint {
    let rule = PathRule::new(vec!["/srv/project".into(), "/tmp".into()], false).unwrap();
    Constraint::new(name, strings(tools), strings(arguments), Rule::Paths(rule)).unwrap()
}

/// `expected`: `Ok(())`, or the violation's argument and a fragment of its
/// message.
type Case<'a> = (Value, Result<(), (&'a str, &'a str)>);

fn check(c: &Constraint, cases: &[Case<'_>]) {
    for (arguments, expected) in cases {
        let got = c.check(&[], arguments);
        match (expected, &got) {
            (Ok(()), Ok(())) => {}
            (Err((argument, fragment)), Err(v))
                if v.argument == *argument && v.message.contains(fragment) => {}
            _ => panic!("{arguments}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn selection_fails_closed_on_present_values_of_the_wrong_type() {
    let c = paths_constraint(
        "workspace",
        &["files__*"],
        &["path", "source", "edits[].path"],
    );
    check(
        &c,
        &[
            // Absent keys select nothing: optional arguments stay optional.
            (json!({}), Ok(())),
            (Value::Null, Ok(())),
            (json!({"other": "/etc/passwd"}), Ok(())),
            (json!({"path": "/srv/project/a"}), Ok(())),
            (json!({"path": "/etc/passwd"}), Err(("path", "outside"))),
            (
                json!({"path": "/srv/project/a", "source": "/etc/x"}),
                Err(("source", "outside")),
            ),
            (
                json!({"path": null}),
                Err(("path", "expected a string, found null")),
            ),
            (json!({"path": 3}), Err(("path", "found a number"))),
            (json!({"path": true}), Err(("path", "found a boolean"))),
            (
                json!({"path": {"p": "/etc"}}),
                Err(("path", "found an object")),
            ),
            // An array of strings is checked element by element.
            (json!({"path": ["/srv/project/a", "/tmp/b"]}), Ok(())),
            (
                json!({"path": ["/srv/project/a", "/etc/b"]}),
                Err(("path[1]", "outside")),
            ),
            (
                json!({"path": ["/srv/project/a", 7]}),
                Err(("path[1]", "expected a string")),
            ),
            (
                json!({"path": [["/etc"]]}),
                Err(("path[0]", "found an array")),
            ),
            (json!({"edits": []}), Ok(())),
            (json!({"edits": [{"path": "/tmp/a"}, {"old": "x"}]}), Ok(())),
            (
                json!({"edits": [{"path": "/tmp/a"}, {"path": "/etc/shadow"}]}),
                Err(("edits[1].path", "outside")),
            ),
            (
                json!({"edits": {"path": "/etc"}}),
                Err(("edits", "expected an array")),
            ),
            (
                json!({"edits": "/etc"}),
                Err(("edits", "expected an array")),
            ),
            (
                json!({"edits": [{"path": "/tmp/a"}, "/etc"]}),
                Err(("edits[1]", "expected an object")),
            ),
            (
                json!({"edits": [null]}),
                Err(("edits[0]", "expected an object")),
            ),
            (json!({"edits": [{"path": ["/tmp/a"]}]}), Ok(())),
            (
                json!({"edits": [{"path": ["/tmp/a", "/etc"]}]}),
                Err(("edits[0].path[1]", "outside")),
            ),
            (json!([]), Err(("", "must be an object"))),
            (json!("/etc/passwd"), Err(("", "must be an object"))),
        ],
    );
}

#[test]
fn nested_keys_and_explicit_elements() {
    let c = paths_constraint("nested", &["t"], &["options.target", "list[]"]);
    check(
        &c,
        &[
            (json!({"options": {"target": "/tmp/a"}}), Ok(())),
            (json!({"options": {}}), Ok(())),
            (
                json!({"options": {"target": "/etc"}}),
                Err(("options.target", "outside")),
            ),
            (
                json!({"options": "/etc"}),
                Err(("options", "expected an object")),
            ),
            (
                json!({"options": null}),
                Err(("options", "expected an object")),
            ),
            (json!({"list": ["/tmp/a", "/tmp/b"]}), Ok(())),
            (
                json!({"list": ["/tmp/a", "/etc/b"]}),
                Err(("list[1]", "outside")),
            ),
            (
                json!({"list": [["/tmp/a"]]}),
                Err(("list[0]", "found an array")),
            ),
            (
                json!({"list": "/tmp/a"}),
                Err(("list", "expected an array")),
            ),
        ],
    );
}

#[test]
fn tool_patterns_match_exact_names_and_prefixes() {
    let c = paths_constraint("p", &["files__*", "shell__run"], &["path"]);
    for tool in ["files__write_file", "files__", "shell__run"] {
        assert!(c.applies_to(tool), "{tool}");
    }
    for tool in [
        "files_write",
        "filesystem__write",
        "shell__run2",
        "shell__ru",
        "",
        "FILES__x",
    ] {
        assert!(!c.applies_to(tool), "{tool}");
    }
    let every = paths_constraint("all", &["*"], &["path"]);
    assert!(every.applies_to("anything__at_all"));
}

#[test]
fn constructors_name_the_bad_value() {
    let rule = || Rule::Paths(PathRule::new(vec!["/tmp".into()], false).unwrap());
    let new = |name: &str, tools: &[&str], arguments: &[&str]| {
        Constraint::new(name, strings(tools), strings(arguments), rule()).unwrap_err()
    };
    assert_eq!(
        new("", &["t"], &["p"]),
        ConstraintError::Name {
            name: String::new()
        }
    );
    assert_eq!(
        new("a b", &["t"], &["p"]),
        ConstraintError::Name { name: "a b".into() }
    );
    assert_eq!(
        new("n", &[], &["p"]),
        ConstraintError::Empty { field: "tools" }
    );
    assert_eq!(
        new("n", &["t"], &[]),
        ConstraintError::Empty { field: "arguments" }
    );
    for bad in ["", "f*x", "*f", "f**", "a b"] {
        assert!(
            matches!(new("n", &[bad], &["p"]), ConstraintError::ToolPattern { pattern, .. } if pattern == bad),
            "{bad:?}"
        );
    }
    for bad in [
        "", "a..b", ".a", "a.", "a[]b", "[]", "a[", "a]", "a[0]", "a b", "*",
    ] {
        assert!(
            matches!(new("n", &["t"], &[bad]), ConstraintError::Selector { selector, .. } if selector == bad),
            "{bad:?}"
        );
    }
    let message = new("n", &["f*x"], &["p"]).to_string();
    assert_eq!(message, "`tools` entry `f*x`: `*` may only end a pattern");
}

#[test]
fn the_set_checks_every_applying_constraint_in_config_order() {
    let set = ConstraintSet::new(vec![
        paths_constraint("first", &["files__*"], &["path"]),
        paths_constraint("other-tool", &["mail__*"], &["path"]),
        paths_constraint("second", &["files__write_file"], &["destination"]),
    ])
    .unwrap();
    assert_eq!(
        set.names().collect::<Vec<_>>(),
        ["first", "other-tool", "second"]
    );
    let checked = set.check(
        "files__write_file",
        &[],
        &json!({"path": "/tmp/a", "destination": "/etc/x"}),
    );
    assert_eq!(checked.len(), 2);
    assert_eq!(checked[0].constraint, "first");
    assert_eq!(checked[0].result, Ok(()));
    assert_eq!(checked[1].constraint, "second");
    let v = checked[1].result.clone().unwrap_err();
    assert_eq!(v.argument, "destination");
    assert!(
        v.to_string()
            .starts_with("argument `destination`: `/etc/x` is outside")
    );
    // A tool no constraint names: nothing applies.
    assert!(
        set.check("git__log", &[], &json!({"path": "/etc"}))
            .is_empty()
    );
    assert!(ConstraintSet::default().is_empty());
}

#[test]
fn constraint_names_are_unique() {
    let err = ConstraintSet::new(vec![
        paths_constraint("a", &["t"], &["p"]),
        paths_constraint("a", &["u"], &["q"]),
    ])
    .unwrap_err();
    assert_eq!(err, ConstraintError::DuplicateName { name: "a".into() });
}

/// The four examples of the seed, built as the server's config parser will.
#[test]
fn the_seed_examples() {
    let tmp = TempDir::new();
    let project = tmp.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let set = ConstraintSet::new(vec![
        Constraint::new(
            "workspace",
            strings(&["files__write_file", "files__edit_file", "files__move_file"]),
            strings(&["path", "source", "destination", "edits[].path"]),
            Rule::Paths(PathRule::new(vec![project.clone(), "/tmp".into()], true).unwrap()),
        )
        .unwrap(),
        Constraint::new(
            "mail",
            strings(&["mail__send_email"]),
            strings(&["to", "cc", "bcc", "reply_to"]),
            Rule::EmailDomains(EmailRule::new(strings(&["example.com", "*.example.org"])).unwrap()),
        )
        .unwrap(),
        Constraint::new(
            "shell",
            strings(&["shell__run"]),
            strings(&["command"]),
            Rule::Commands(
                CommandRule::new(strings(&["ls", "cat", "git status", "git log"])).unwrap(),
            ),
        )
        .unwrap(),
        Constraint::new(
            "cloud",
            strings(&["cloud__call"]),
            strings(&["operation"]),
            Rule::ReadOnly(ReadOnlyRule::new(None, strings(&["ops"])).unwrap()),
        )
        .unwrap(),
    ])
    .unwrap();
    assert_eq!(
        set.constraints()
            .iter()
            .map(|c| c.rule().kind())
            .collect::<Vec<_>>(),
        ["paths", "email-domains", "commands", "read-only"]
    );
    let none: &[Arc<str>] = &[];
    let ops: &[Arc<str>] = &[Arc::from("ops")];
    let verdict = |tool: &str, roles: &[Arc<str>], arguments: Value| -> Result<(), Violation> {
        let checked = set.check(tool, roles, &arguments);
        assert_eq!(checked.len(), 1, "{tool}");
        checked.into_iter().next().unwrap().result
    };
    let inside = format!("{}/a.txt", project.display());
    assert!(verdict("files__write_file", none, json!({"path": inside})).is_ok());
    assert!(
        verdict(
            "files__move_file",
            none,
            json!({"source": "/tmp/x", "destination": "/etc/cron.d/x"})
        )
        .is_err()
    );
    assert!(
        verdict(
            "mail__send_email",
            none,
            json!({"to": "Bob <bob@example.com>", "cc": ["a@b.example.org"]})
        )
        .is_ok()
    );
    assert!(
        verdict(
            "mail__send_email",
            none,
            json!({"to": "bob@example.com", "bcc": "x@evil.com"})
        )
        .is_err()
    );
    assert!(
        verdict(
            "shell__run",
            none,
            json!({"command": "git status --porcelain"})
        )
        .is_ok()
    );
    assert!(verdict("shell__run", none, json!({"command": ["git", "log", "-1"]})).is_ok());
    assert!(verdict("shell__run", none, json!({"command": "ls; rm -rf /"})).is_err());
    assert!(
        verdict(
            "cloud__call",
            none,
            json!({"operation": "DescribeInstances"})
        )
        .is_ok()
    );
    let v = verdict(
        "cloud__call",
        none,
        json!({"operation": "TerminateInstances"}),
    )
    .unwrap_err();
    assert_eq!(v.argument, "operation");
    assert!(v.message.contains("roles `ops`"), "{}", v.message);
    assert!(
        verdict(
            "cloud__call",
            ops,
            json!({"operation": "TerminateInstances"})
        )
        .is_ok()
    );
}

#[test]
fn shown_escapes_and_truncates() {
    assert_eq!(shown("a b/c"), "a b/c");
    assert_eq!(shown("a\nb"), "a\\u{a}b");
    assert_eq!(shown("\u{202E}x"), "\\u{202e}x");
    let long = "x".repeat(500);
    assert_eq!(shown(&long).chars().count(), 121);
}
