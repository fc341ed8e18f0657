//! The `commands` kind: a command must start with the tokens of an allowlist entry, and may not use the shell to run anything else.
//!
//! A string is tokenized as a POSIX shell would split it into words, by a
//! small tokenizer of our own: crates such as `shlex` split words but do not
//! say which characters were quoted, and the whole point here is to refuse
//! every *unquoted* character the shell would act on. What is refused before
//! matching, and why:
//! - `; | & $ \` ( ) < >` and newlines: another command, a pipe, a
//!   background job, an expansion, a substitution, a redirection;
//! - `* ? [ ] { } ^ !`: globbing and brace expansion make words we never saw
//!   (a file named `-delete`, or `{-delete,}`, would reach `find`);
//! - `#` starting a word (a comment hides the rest from the shell, so it
//!   runs other words than we checked) and `~` starting a word or after `=`
//!   or `:` (tilde expansion);
//! - inside double quotes, `$` and backticks (they still expand); quoting
//!   with single quotes is the way to pass them;
//! - NUL, CR, LF and other control characters anywhere, even quoted;
//! - unterminated quotes and a trailing backslash.
//!
//! Then, for strings and argv arrays alike:
//! - a first token that is a wrapper (`env`, `sh`, `sudo`, `xargs`, ...,
//!   judged by its last `/`-component, so `/usr/bin/env` too) is refused
//!   even if allowlisted: it runs whatever follows;
//! - `find`'s acting tokens (`-exec`, `-execdir`, `-ok`, `-okdir`,
//!   `-delete`, `-fprint`, `-fprint0`, `-fprintf`, `-fls`) are refused
//!   anywhere;
//! - the tokens must start with all the tokens of one allowlist entry, whole
//!   tokens compared exactly: `lsblk` is not `ls`, `/bin/ls` is not `ls`,
//!   `git status --porcelain` matches `git status`, `git push` does not.
//!
//! Options after the allowlisted tokens are not judged (beyond `find`'s
//! acting tokens): allowlist the narrowest prefix that is safe with any
//! options, and prefer a dedicated tool for anything richer.

use super::{ConstraintError, shown};

/// Programs that run another program given as their arguments.
const WRAPPERS: &[&str] = &[
    "env",
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "mksh",
    "ash",
    "csh",
    "tcsh",
    "fish",
    "busybox",
    "sudo",
    "su",
    "doas",
    "pkexec",
    "xargs",
    "nohup",
    "timeout",
    "nice",
    "ionice",
    "exec",
    "eval",
    "command",
    "builtin",
    "time",
    "watch",
    "setsid",
    "stdbuf",
    "chroot",
    "strace",
    "ltrace",
    "unshare",
    "nsenter",
    "taskset",
    "chrt",
    "flock",
    "script",
    "systemd-run",
    "parallel",
    "run-parts",
    "coproc",
    "source",
    ".",
];

/// `find` actions that run commands or write files.
const ACTING_TOKENS: &[&str] = &[
    "-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls",
];

/// Commands a tool may run: each entry the leading tokens a command must
/// start with.
#[derive(Debug, Clone)]
pub struct CommandRule {
    allow: Vec<Vec<String>>,
}

impl CommandRule {
    /// Each entry is tokenized like a command; an entry that is empty, uses
    /// the shell, or starts with a wrapper is refused.
    pub fn new(allow: Vec<String>) -> Result<Self, ConstraintError> {
        if allow.is_empty() {
            return Err(ConstraintError::Empty { field: "allow" });
        }
        let mut entries = Vec::with_capacity(allow.len());
        for entry in &allow {
            let bad = |reason: String| ConstraintError::Command {
                command: shown(entry),
                reason,
            };
            let tokens = tokenize(entry).map_err(bad)?;
            let Some(first) = tokens.first() else {
                return Err(bad("empty".to_owned()));
            };
            if is_wrapper(first) {
                return Err(bad(format!(
                    "`{}` runs other commands and cannot be allowlisted",
                    shown(first)
                )));
            }
            if let Some(t) = tokens.iter().find(|t| ACTING_TOKENS.contains(&t.as_str())) {
                return Err(bad(format!("`{}` is always refused", shown(t))));
            }
            entries.push(tokens);
        }
        Ok(CommandRule { allow: entries })
    }

    /// A command string, as a shell would run it.
    pub(crate) fn check_shell(&self, command: &str) -> Result<(), String> {
        let tokens = tokenize(command)?;
        let argv: Vec<&str> = tokens.iter().map(String::as_str).collect();
        self.check_tokens(&argv)
    }

    /// An argv, run without a shell.
    pub(crate) fn check_argv(&self, argv: &[&str]) -> Result<(), String> {
        for token in argv {
            if token.contains(['\0', '\n', '\r']) {
                return Err("NUL, CR and LF are refused in a command".to_owned());
            }
        }
        self.check_tokens(argv)
    }

    fn check_tokens(&self, argv: &[&str]) -> Result<(), String> {
        let Some(first) = argv.first() else {
            return Err("the command is empty".to_owned());
        };
        if is_wrapper(first) {
            return Err(format!(
                "`{}` runs other commands and is refused",
                shown(first)
            ));
        }
        if let Some(t) = argv.iter().find(|t| ACTING_TOKENS.contains(t)) {
            return Err(format!("`{}` is refused", shown(t)));
        }
        let allowed = self
            .allow
            .iter()
            .any(|entry| entry.len() <= argv.len() && entry.iter().zip(argv).all(|(a, b)| a == b));
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "`{}` is not an allowed command (allowed: {})",
                shown(first),
                self.listed()
            ))
        }
    }

    fn listed(&self) -> String {
        self.allow
            .iter()
            .map(|e| format!("`{}`", shown(&e.join(" "))))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_wrapper(token: &str) -> bool {
    let base = token.rsplit('/').next().unwrap_or(token);
    WRAPPERS.contains(&base)
}

/// Splits `command` into words as a POSIX shell would, refusing whatever
/// the shell would do more with than quote removal (see the module docs).
pub(crate) fn tokenize(command: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        refuse_control(c)?;
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    tokens.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err("an unterminated `'` quote".to_owned()),
                        Some('\'') => break,
                        Some(q) => {
                            refuse_control(q)?;
                            w.push(q);
                        }
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err("an unterminated `\"` quote".to_owned()),
                        Some('"') => break,
                        Some(q @ ('$' | '`')) => {
                            return Err(format!(
                                "`{q}` expands inside double quotes and is refused; use single quotes"
                            ));
                        }
                        Some('\\') => match chars.next() {
                            None => return Err("an unterminated `\"` quote".to_owned()),
                            Some(e @ ('$' | '`' | '"' | '\\')) => w.push(e),
                            Some(e) => {
                                refuse_control(e)?;
                                w.push('\\');
                                w.push(e);
                            }
                        },
                        Some(q) => {
                            refuse_control(q)?;
                            w.push(q);
                        }
                    }
                }
            }
            '\\' => match chars.next() {
                None => return Err("a trailing backslash is refused".to_owned()),
                Some(e) => {
                    refuse_control(e)?;
                    word.get_or_insert_with(String::new).push(e);
                }
            },
            ';' | '|' | '&' | '$' | '`' | '(' | ')' | '<' | '>' | '*' | '?' | '[' | ']' | '{'
            | '}' | '^' | '!' => {
                return Err(format!(
                    "an unquoted `{c}` is refused: the shell would act on it"
                ));
            }
            '#' if word.is_none() => {
                return Err("an unquoted `#` starting a word is refused: the shell would treat the rest as a comment".to_owned());
            }
            '~' if word
                .as_ref()
                .is_none_or(|w| w.ends_with('=') || w.ends_with(':')) =>
            {
                return Err("an unquoted `~` is refused here: the shell would expand it".to_owned());
            }
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    if let Some(w) = word {
        tokens.push(w);
    }
    Ok(tokens)
}

fn refuse_control(c: char) -> Result<(), String> {
    match c {
        '\0' => Err("a NUL character is refused".to_owned()),
        '\n' | '\r' => Err("a line break is refused".to_owned()),
        '\t' => Ok(()),
        c if c.is_control() => Err(format!(
            "the control character `{}` is refused",
            c.escape_unicode()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CommandRule {
        CommandRule::new(
            ["ls", "cat", "git status", "git log", "/bin/echo", "find"]
                .map(String::from)
                .to_vec(),
        )
        .unwrap()
    }

    /// `expected`: `Ok(())`, or `Err(fragment)` that the message must contain.
    fn check(cases: &[(&str, Result<(), &str>)]) {
        let rule = rule();
        for (input, expected) in cases {
            let got = rule.check_shell(input);
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(fragment), Err(message)) if message.contains(fragment) => {}
                _ => panic!("{input:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    const NOT_ALLOWED: &str = "is not an allowed command";
    const SHELL: &str = "the shell would act on it";
    const WRAPPER: &str = "runs other commands";

    #[test]
    fn whole_leading_tokens_match() {
        check(&[
            ("ls", Ok(())),
            ("ls -la /tmp", Ok(())),
            ("  ls\t-l  ", Ok(())),
            ("git status", Ok(())),
            ("git status --porcelain", Ok(())),
            ("git  status", Ok(())),
            ("'git' \"status\"", Ok(())),
            ("g'i't status", Ok(())),
            ("git log HEAD~1 --format=%h", Ok(())),
            ("/bin/echo hi", Ok(())),
            ("find . -name '*.rs'", Ok(())),
            ("lsblk", Err(NOT_ALLOWED)),
            ("ls2", Err(NOT_ALLOWED)),
            ("l", Err(NOT_ALLOWED)),
            ("git push", Err(NOT_ALLOWED)),
            ("git", Err(NOT_ALLOWED)),
            ("gitstatus", Err(NOT_ALLOWED)),
            ("git statusx", Err(NOT_ALLOWED)),
            ("git -C / status", Err(NOT_ALLOWED)),
            ("/bin/ls", Err(NOT_ALLOWED)),
            ("./ls", Err(NOT_ALLOWED)),
            ("echo hi", Err(NOT_ALLOWED)),
            ("LD_PRELOAD=/tmp/x.so ls", Err(NOT_ALLOWED)),
            ("\"\" ls", Err(NOT_ALLOWED)),
            ("rm -rf /", Err("`rm` is not an allowed command")),
            ("", Err("empty")),
            ("   ", Err("empty")),
        ]);
    }

    #[test]
    fn quoting_makes_metacharacters_literal() {
        check(&[
            ("cat 'a;b|c&d$e`f(g)h<i>j*k?[l]{m}^n!o#p~q'", Ok(())),
            ("cat \"a;b|c&d(e)<f>*?[]{}^!#~\"", Ok(())),
            ("cat a\\;b a\\|b a\\$b", Ok(())),
            ("cat \"a\\\"b\" \"a\\\\b\" \"a\\$b\"", Ok(())),
            ("cat '$HOME' a#b", Ok(())),
            ("ls ''", Ok(())),
            ("ls -- '-exec'", Err("`-exec` is refused")),
        ]);
    }

    #[test]
    fn the_shell_gets_nothing_to_act_on() {
        check(&[
            ("ls; rm -rf /", Err(SHELL)),
            ("ls;rm", Err(SHELL)),
            ("ls && rm", Err(SHELL)),
            ("ls || rm", Err(SHELL)),
            ("ls | sh", Err(SHELL)),
            ("ls & rm", Err(SHELL)),
            ("ls $(rm -rf /)", Err(SHELL)),
            ("ls ${HOME}", Err(SHELL)),
            ("ls $HOME", Err(SHELL)),
            ("ls `rm`", Err(SHELL)),
            ("ls > /etc/passwd", Err(SHELL)),
            ("ls 2>/dev/null", Err(SHELL)),
            ("ls < x", Err(SHELL)),
            ("cat <(rm)", Err(SHELL)),
            ("(ls)", Err(SHELL)),
            ("ls *", Err(SHELL)),
            ("ls /etc/?asswd", Err(SHELL)),
            ("ls [a]", Err(SHELL)),
            ("ls {a,b}", Err(SHELL)),
            ("find . {-delete,}", Err(SHELL)),
            ("ls ^x", Err(SHELL)),
            ("ls !x", Err(SHELL)),
            ("ls # comment", Err("comment")),
            ("ls ~", Err("`~`")),
            ("cat ~/.ssh/id_rsa", Err("`~`")),
            ("ls --dir=~/x", Err("`~`")),
            ("ls a:~/x", Err("`~`")),
            ("ls \"$(rm)\"", Err("expands inside double quotes")),
            ("ls \"${x}\"", Err("expands inside double quotes")),
            ("ls \"`rm`\"", Err("expands inside double quotes")),
            ("ls\nrm", Err("line break")),
            ("ls\r", Err("line break")),
            ("ls 'a\nb'", Err("line break")),
            ("ls \"a\nb\"", Err("line break")),
            ("ls \\\nrm", Err("line break")),
            ("ls 'a\0b'", Err("NUL")),
            ("ls a\u{7}", Err("control character")),
            ("ls 'a", Err("unterminated")),
            ("ls \"a", Err("unterminated")),
            ("ls \"a\\", Err("unterminated")),
            ("ls a\\", Err("trailing backslash")),
        ]);
    }

    #[test]
    fn wrappers_and_acting_tokens_are_refused() {
        check(&[
            ("find . -name x", Ok(())),
            ("find . -exec rm '{}' +", Err("`-exec` is refused")),
            ("find . -execdir rm x", Err("`-execdir`")),
            ("find . -ok rm", Err("`-ok`")),
            ("find . -okdir rm", Err("`-okdir`")),
            ("find / -delete", Err("`-delete`")),
            ("find / -fprint /etc/x", Err("`-fprint`")),
            ("ls -delete", Err("`-delete`")),
            ("env ls", Err(WRAPPER)),
            ("/usr/bin/env ls", Err(WRAPPER)),
            ("sh -c ls", Err(WRAPPER)),
            ("bash -c ls", Err(WRAPPER)),
            ("zsh", Err(WRAPPER)),
            ("dash", Err(WRAPPER)),
            ("busybox ls", Err(WRAPPER)),
            ("sudo ls", Err(WRAPPER)),
            ("/usr/bin/sudo ls", Err(WRAPPER)),
            ("su -c ls", Err(WRAPPER)),
            ("xargs ls", Err(WRAPPER)),
            ("nohup ls", Err(WRAPPER)),
            ("timeout 1 ls", Err(WRAPPER)),
            ("nice ls", Err(WRAPPER)),
            ("exec ls", Err(WRAPPER)),
            ("eval ls", Err(WRAPPER)),
            ("command ls", Err(WRAPPER)),
            ("builtin ls", Err(WRAPPER)),
            ("'sudo' ls", Err(WRAPPER)),
            (". ./script", Err(WRAPPER)),
        ]);
    }

    #[test]
    fn an_argv_runs_without_a_shell_under_the_same_token_rules() {
        let rule = rule();
        let argv = |items: &[&str]| rule.check_argv(items);
        assert!(argv(&["ls", "-la"]).is_ok());
        assert!(argv(&["cat", "a;b $(x) `y` *"]).is_ok());
        assert!(argv(&["git", "status", "--porcelain"]).is_ok());
        assert!(argv(&["git", "push"]).unwrap_err().contains(NOT_ALLOWED));
        assert!(argv(&["git"]).unwrap_err().contains(NOT_ALLOWED));
        assert!(argv(&["ls; rm"]).unwrap_err().contains(NOT_ALLOWED));
        assert!(argv(&["git status"]).unwrap_err().contains(NOT_ALLOWED));
        assert!(argv(&["/bin/ls"]).unwrap_err().contains(NOT_ALLOWED));
        assert!(argv(&["env", "ls"]).unwrap_err().contains(WRAPPER));
        assert!(
            argv(&["/bin/sh", "-c", "ls"])
                .unwrap_err()
                .contains(WRAPPER)
        );
        assert!(
            argv(&["find", ".", "-delete"])
                .unwrap_err()
                .contains("`-delete`")
        );
        assert!(
            argv(&["ls", "a\nb"])
                .unwrap_err()
                .contains("NUL, CR and LF")
        );
        assert!(argv(&["ls", "a\0"]).unwrap_err().contains("NUL, CR and LF"));
        assert!(argv(&[]).unwrap_err().contains("empty"));
    }

    #[test]
    fn entries_are_checked_when_built() {
        let err = |entry: &str| CommandRule::new(vec![entry.to_owned()]).unwrap_err();
        assert_eq!(
            CommandRule::new(vec![]).unwrap_err(),
            ConstraintError::Empty { field: "allow" }
        );
        assert!(matches!(err(""), ConstraintError::Command { reason, .. } if reason == "empty"));
        assert!(
            matches!(err("sudo ls"), ConstraintError::Command { command, reason } if command == "sudo ls" && reason.contains("cannot be allowlisted"))
        );
        assert!(
            matches!(err("/usr/bin/env"), ConstraintError::Command { reason, .. } if reason.contains("cannot be allowlisted"))
        );
        assert!(
            matches!(err("ls; rm"), ConstraintError::Command { reason, .. } if reason.contains(SHELL))
        );
        assert!(
            matches!(err("find -delete"), ConstraintError::Command { reason, .. } if reason.contains("always refused"))
        );
        let quoted = CommandRule::new(vec!["git 'log'".to_owned()]).unwrap();
        assert!(quoted.check_shell("git log -1").is_ok());
    }

    #[test]
    fn the_tokenizer_splits_as_a_shell_does() {
        let t = |s: &str| tokenize(s).unwrap();
        assert_eq!(t("a b"), ["a", "b"]);
        assert_eq!(t("a'b c'd"), ["ab cd"]);
        assert_eq!(t("'' \"\""), ["", ""]);
        assert_eq!(t("\"a\\nb\""), ["a\\nb"]);
        assert_eq!(t("a\\ b"), ["a b"]);
        assert_eq!(t("x=1 a#b c~d"), ["x=1", "a#b", "c~d"]);
        assert!(t("").is_empty());
    }
}
