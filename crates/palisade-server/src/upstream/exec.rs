//! The built-in `exec` tool: run a snippet of Python, shell or Node in a fresh one-time sandbox and return what it printed and how it ended.

use std::sync::Arc;

use palisade_sandbox::{End, Sandboxes};
use serde_json::{Value, json};

/// One language `exec` runs: its profile, interpreter and file name.
#[derive(Debug)]
pub struct Language {
    pub name: &'static str,
    pub profile: &'static str,
    interpreter: &'static str,
    file: &'static str,
}

pub const LANGUAGES: [Language; 3] = [
    Language {
        name: "python",
        profile: "python",
        interpreter: "python3",
        file: "main.py",
    },
    Language {
        name: "shell",
        profile: "shell",
        interpreter: "sh",
        file: "main.sh",
    },
    Language {
        name: "node",
        profile: "node",
        interpreter: "node",
        file: "main.js",
    },
];

/// Largest `code`, `stdin` and all `files` together.
const MAX_INPUT_BYTES: usize = 1024 * 1024;
const MAX_FILES: usize = 16;

pub fn tool_definition() -> Value {
    json!({
        "name": "exec",
        "description": "Run code in a fresh, one-time sandbox: no network, read-only system, a 50 MiB /tmp (the working directory), 0.5 CPU, 256 MiB of memory, 30 s. Returns stdout, stderr, the exit status and why the run ended.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "language": {"type": "string", "enum": ["python", "shell", "node"]},
                "code": {"type": "string", "description": "the program; it runs from /tmp"},
                "stdin": {"type": "string", "description": "text given to the program's standard input"},
                "files": {
                    "type": "object",
                    "description": "small input files written into /tmp first: name to content",
                    "additionalProperties": {"type": "string"}
                }
            },
            "required": ["language", "code"],
            "additionalProperties": false
        },
        "annotations": {"title": "Run code in a sandbox", "openWorldHint": false}
    })
}

fn refuse(message: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": message.into()}], "isError": true})
}

/// Runs one call; every failure is a tool result with `isError`, saying what was wrong.
/// `who`: the call its sandbox's egress connections are attributed to.
pub async fn call(
    sandboxes: Option<&Arc<Sandboxes>>,
    arguments: &Value,
    who: palisade_egress::Attribution,
) -> Value {
    let Some(sandboxes) = sandboxes else {
        return refuse("the sandbox is not running in this gateway");
    };
    let Some(object) = arguments.as_object() else {
        return refuse("exec: the arguments must be an object");
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !["language", "code", "stdin", "files"].contains(&k.as_str()))
    {
        return refuse(format!(
            "exec: unknown argument `{unknown}` (expected language, code, stdin, files)"
        ));
    }
    let Some(language) = object.get("language").and_then(Value::as_str) else {
        return refuse("exec: `language` is required: python, shell or node");
    };
    let Some(language) = LANGUAGES.iter().find(|l| l.name == language) else {
        return refuse(format!(
            "exec: unknown language `{language}`: python, shell or node"
        ));
    };
    let Some(code) = object.get("code").and_then(Value::as_str) else {
        return refuse("exec: `code` is required, a string");
    };
    let stdin = match object.get("stdin") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return refuse("exec: `stdin` must be a string"),
    };
    let mut files = vec![(language.file.to_owned(), code.as_bytes().to_vec())];
    match object.get("files") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            if given.len() > MAX_FILES {
                return refuse(format!("exec: at most {MAX_FILES} files"));
            }
            for (name, content) in given {
                let Some(content) = content.as_str() else {
                    return refuse(format!("exec: files.{name} must be a string"));
                };
                if name.is_empty()
                    || name.contains('/')
                    || name.starts_with('.')
                    || name == language.file
                {
                    return refuse(format!(
                        "exec: files.{name}: a plain file name (no `/`, not hidden, not {}) is needed",
                        language.file
                    ));
                }
                files.push((name.clone(), content.as_bytes().to_vec()));
            }
        }
        Some(_) => return refuse("exec: `files` must be an object of name to text"),
    }
    let total: usize = stdin.len() + files.iter().map(|(_, c)| c.len()).sum::<usize>();
    if total > MAX_INPUT_BYTES {
        return refuse(format!(
            "exec: code, stdin and files come to {total} bytes, over the {MAX_INPUT_BYTES}-byte limit"
        ));
    }
    let Some(profile) = sandboxes.profile(language.profile).cloned() else {
        return refuse(format!("exec: no sandbox profile `{}`", language.profile));
    };
    let mut run = palisade_sandbox::command(
        &profile,
        vec![
            language.interpreter.to_owned(),
            format!("/tmp/{}", language.file),
        ],
    );
    run.files = files;
    run.who = who;
    match sandboxes
        .run(&profile, run, stdin.as_bytes().to_vec())
        .await
    {
        Ok(finished) => {
            let stdout = String::from_utf8_lossy(&finished.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&finished.stderr).into_owned();
            let ended = finished.end.describe(&profile);
            let exit_code = match finished.end {
                End::Exited(code) => Some(code),
                End::Signaled(_)
                | End::TimedOut
                | End::OutOfMemory
                | End::OutputOver(_)
                | End::Stopped => None,
            };
            let mut text = format!("{ended}\n");
            if !stdout.is_empty() {
                text.push_str(&format!("--- stdout\n{stdout}"));
                if !stdout.ends_with('\n') {
                    text.push('\n');
                }
            }
            if !stderr.is_empty() {
                text.push_str(&format!("--- stderr\n{stderr}"));
            }
            json!({
                "content": [{"type": "text", "text": text}],
                "structuredContent": {
                    "exit_code": exit_code,
                    "ended": ended,
                    "stdout": stdout,
                    "stderr": stderr,
                },
                "isError": exit_code != Some(0),
            })
        }
        Err(error) => refuse(format!("exec: {error}")),
    }
}
