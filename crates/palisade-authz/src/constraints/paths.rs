//! The `paths` kind: a path argument must lie inside one of the allowed directories, as written and, for local upstreams, as resolved through symlinks.
//!
//! Order of the check, and why:
//! 1. refuse what is not a plain absolute path: relative paths, `~`, `file:`
//!    URIs; an upstream would resolve those against a directory we do not
//!    know;
//! 2. refuse characters an upstream might turn into a separator or a dot
//!    after we looked: NUL and other controls, backslashes, percent escapes
//!    of `.`, `/`, `\`, NUL, `%` (double encoding) or any non-ASCII byte
//!    (overlong and look-alike encodings), and Unicode look-alikes of `/`,
//!    `.` and `\` (anything whose compatibility decomposition, NFKC's first
//!    half, contains one of them, plus an explicit list of confusables that
//!    have no decomposition, such as the division and fraction slashes);
//! 3. normalise lexically (`//`, `.`, `..`) and require the result inside an
//!    allowed directory, compared component by component (`/srv/projectX`
//!    is not inside `/srv/project`);
//! 4. with `resolve_symlinks`, canonicalize the longest existing prefix of
//!    the path *as written* (so a `..` after a symlink goes where the kernel
//!    would take it), refuse a dangling symlink or a loop at the first
//!    missing component (writing through it would create its target),
//!    append the rest lexically, and require that inside an allowed
//!    directory too (the allowed directories themselves canonicalized when
//!    the rule is built).
//!
//! Both the written and the resolved path must be inside, so neither a
//! symlink inside an allowed directory nor a `..` after a symlink outside it
//! gets anything through.
//!
//! Limits: the check runs before the call, so a symlink created between the
//! check and the use, or a hard link, is not seen (the sandbox of layer 3
//! closes that). Without `resolve_symlinks` (remote upstreams) symlinks on
//! the upstream's side are not seen at all.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

use super::{ConstraintError, shown};

/// Paths longer than this are refused before any work (Linux's `PATH_MAX`).
const MAX_LEN: usize = 4096;

/// Look-alikes of `/`, `.` and `\` that have no compatibility decomposition,
/// so NFKC alone would not catch them.
const LOOK_ALIKES: &[char] = &[
    '\u{2215}', // division slash
    '\u{2044}', // fraction slash
    '\u{29F8}', // big solidus
    '\u{29F9}', // big reverse solidus
    '\u{2216}', // set minus
    '\u{29F5}', // reverse solidus operator
    '\u{29F6}', // solidus with overbar
    '\u{29F7}', // reverse solidus with horizontal stroke
    '\u{2571}', // box drawings light diagonal upper right to lower left
    '\u{2572}', // box drawings light diagonal upper left to lower right
    '\u{27CB}', // mathematical rising diagonal
    '\u{27CD}', // mathematical falling diagonal
    '\u{3033}', // vertical kana repeat mark upper half
    '\u{30CE}', // katakana letter no
    '\u{4E3F}', // CJK ideograph that draws as a slash
    '\u{0338}', // combining long solidus overlay
    '\u{0337}', // combining short solidus overlay
    '\u{20E5}', // combining reverse solidus overlay
    '\u{2CFA}', // coptic old nubian indirect question mark (a slash)
    '\u{3002}', // ideographic full stop
    '\u{FF61}', // halfwidth ideographic full stop
    '\u{06D4}', // arabic full stop
    '\u{0701}', // syriac supralinear full stop
    '\u{0702}', // syriac sublinear full stop
    '\u{A4F8}', // lisu letter tone mya ti
    '\u{A60E}', // vai full stop
    '\u{0660}', // arabic-indic digit zero
    '\u{06F0}', // extended arabic-indic digit zero
    '\u{00B7}', // middle dot
    '\u{2027}', // hyphenation point
    '\u{2219}', // bullet operator
    '\u{22C5}', // dot operator
    '\u{30FB}', // katakana middle dot
    '\u{2E31}', // word separator middle dot
    '\u{1427}', // canadian syllabics final middle dot
];

/// Allowed directories for path arguments.
#[derive(Debug, Clone)]
pub struct PathRule {
    allow: Vec<AllowedDir>,
    resolve_symlinks: bool,
}

#[derive(Debug, Clone)]
struct AllowedDir {
    /// As configured, normalised lexically.
    written: PathBuf,
    /// Canonicalized when the rule was built (with `resolve_symlinks`).
    canonical: Option<PathBuf>,
}

impl PathRule {
    /// `allow`: absolute directories. With `resolve_symlinks` each must exist
    /// now (a typo fails at startup) and is canonicalized.
    pub fn new(allow: Vec<PathBuf>, resolve_symlinks: bool) -> Result<Self, ConstraintError> {
        if allow.is_empty() {
            return Err(ConstraintError::Empty { field: "allow" });
        }
        let mut dirs = Vec::with_capacity(allow.len());
        for dir in &allow {
            let bad = |reason: String| ConstraintError::Directory {
                dir: shown(&dir.to_string_lossy()),
                reason,
            };
            let Some(text) = dir.to_str() else {
                return Err(bad("not valid UTF-8".to_owned()));
            };
            let components = parse(text).map_err(bad)?;
            let written = lexical(&components);
            let canonical = if resolve_symlinks {
                let canonical = fs::canonicalize(&written)
                    .map_err(|e| bad(format!("cannot be resolved: {}", e.kind())))?;
                if !canonical.is_dir() {
                    return Err(bad("not a directory".to_owned()));
                }
                Some(canonical)
            } else {
                None
            };
            dirs.push(AllowedDir { written, canonical });
        }
        Ok(PathRule {
            allow: dirs,
            resolve_symlinks,
        })
    }

    pub fn resolves_symlinks(&self) -> bool {
        self.resolve_symlinks
    }

    /// Checks one path value; the error is the violation's message.
    pub(crate) fn check(&self, value: &str) -> Result<(), String> {
        let components = parse(value)?;
        let written = lexical(&components);
        let inside_written = self.allow.iter().any(|d| {
            written.starts_with(&d.written)
                || d.canonical.as_ref().is_some_and(|c| written.starts_with(c))
        });
        if !inside_written {
            return Err(format!(
                "`{}` is outside the allowed directories ({})",
                shown(&written.to_string_lossy()),
                self.listed()
            ));
        }
        if self.resolve_symlinks {
            let resolved = resolve(&components)?;
            let inside = self.allow.iter().any(|d| {
                d.canonical
                    .as_ref()
                    .is_some_and(|c| resolved.starts_with(c))
            });
            if !inside {
                return Err(format!(
                    "`{}` resolves to `{}`, outside the allowed directories ({})",
                    shown(&written.to_string_lossy()),
                    shown(&resolved.to_string_lossy()),
                    self.listed()
                ));
            }
        }
        Ok(())
    }

    fn listed(&self) -> String {
        self.allow
            .iter()
            .map(|d| format!("`{}`", shown(&d.written.to_string_lossy())))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The components of an absolute path as written, without empty ones and
/// `.` (neither changes what the kernel resolves), `..` kept.
fn parse(value: &str) -> Result<Vec<&str>, String> {
    if value.is_empty() {
        return Err("the path is empty".to_owned());
    }
    if value.len() > MAX_LEN {
        return Err(format!("the path is longer than {MAX_LEN} bytes"));
    }
    if value
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("file:"))
    {
        return Err("a `file:` URI is not a path; give an absolute path".to_owned());
    }
    if value.starts_with('~') {
        return Err("a `~` path is refused; give an absolute path".to_owned());
    }
    if !value.starts_with('/') {
        return Err(format!(
            "`{}` is a relative path; give an absolute path",
            shown(value)
        ));
    }
    refuse_characters(value)?;
    refuse_percent_escapes(value)?;
    Ok(value
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect())
}

fn refuse_characters(value: &str) -> Result<(), String> {
    for c in value.chars() {
        if c == '\0' {
            return Err("a NUL character is refused".to_owned());
        }
        if c.is_control() {
            return Err(format!(
                "the control character `{}` is refused",
                c.escape_unicode()
            ));
        }
        if c == '\\' {
            return Err("a backslash is refused".to_owned());
        }
        if is_look_alike(c) {
            return Err(format!(
                "`{}` looks like `/`, `.` or `\\` and is refused",
                c.escape_unicode()
            ));
        }
    }
    Ok(())
}

/// Is `c` (not ASCII) a look-alike of `/`, `.` or `\`?
pub(crate) fn is_look_alike(c: char) -> bool {
    if c.is_ascii() {
        return false;
    }
    if LOOK_ALIKES.contains(&c) {
        return true;
    }
    let mut found = false;
    unicode_normalization::char::decompose_compatible(c, |d| {
        found |= matches!(d, '/' | '.' | '\\');
    });
    found
}

/// Refuses `%XX` escapes an upstream that decodes would turn into a
/// separator, a dot, a NUL, another escape, or a non-ASCII byte (overlong
/// or look-alike encodings). Escapes of other ASCII characters are left:
/// decoded or not, they name an ordinary file.
fn refuse_percent_escapes(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'%' {
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).and_then(|h| hex(*h)),
            bytes.get(i + 2).and_then(|l| hex(*l)),
        ) else {
            continue;
        };
        let decoded = hi * 16 + lo;
        if matches!(decoded, b'.' | b'/' | b'\\' | b'%') || !(0x20..0x7f).contains(&decoded) {
            let escape = value.get(i..i + 3).unwrap_or("%");
            return Err(format!("the percent escape `{}` is refused", shown(escape)));
        }
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `..` applied lexically; never above `/`.
fn lexical(components: &[&str]) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in components {
        if *c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

/// The path as the kernel would resolve it now: the longest existing prefix
/// canonicalized, the rest appended lexically.
fn resolve(components: &[&str]) -> Result<PathBuf, String> {
    for k in (0..=components.len()).rev() {
        let prefix = join(components.get(..k).unwrap_or(&[]));
        match fs::canonicalize(&prefix) {
            Ok(mut out) => {
                if let Some(next) = components.get(k) {
                    // The first missing component exists as an entry: a
                    // dangling symlink or a loop. Writing through it would
                    // create or reach its target, wherever that is.
                    let entry = prefix.join(next);
                    if fs::symlink_metadata(&entry).is_ok() {
                        return Err(format!(
                            "`{}` is a symlink that cannot be resolved",
                            shown(&entry.to_string_lossy())
                        ));
                    }
                }
                for c in components.iter().skip(k) {
                    if *c == ".." {
                        out.pop();
                    } else {
                        out.push(c);
                    }
                }
                return Ok(out);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "`{}` cannot be resolved: {}",
                    shown(&prefix.to_string_lossy()),
                    e.kind()
                ));
            }
        }
    }
    Err("the root directory cannot be resolved".to_owned())
}

fn join(components: &[&str]) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in components {
        out.push(c);
    }
    out
}

/// For tests: the lexical normalisation of an absolute path string.
#[cfg(test)]
pub(crate) fn normalise(value: &str) -> PathBuf {
    lexical(
        &value
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constraints::tests::TempDir;
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// `expected`: `Ok(())`, or `Err(fragment)` that the message must contain.
    fn check(rule: &PathRule, cases: &[(&str, Result<(), &str>)]) {
        for (input, expected) in cases {
            let got = rule.check(input);
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(fragment), Err(message)) if message.contains(fragment) => {}
                _ => panic!("{input:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    fn lexical_rule() -> PathRule {
        PathRule::new(vec!["/srv/project".into(), "/tmp/".into()], false).unwrap()
    }

    const OUTSIDE: &str = "outside the allowed directories";

    #[test]
    fn lexical_containment_is_component_wise() {
        check(
            &lexical_rule(),
            &[
                ("/srv/project/a.txt", Ok(())),
                ("/srv/project", Ok(())),
                ("/srv/project/", Ok(())),
                ("/srv//project/./a", Ok(())),
                ("/srv/project/sub/../b", Ok(())),
                ("/tmp/x", Ok(())),
                ("/srv/project/a..b/...", Ok(())),
                ("/srv/project/日本語.txt", Ok(())),
                ("/srv/projectX/a", Err(OUTSIDE)),
                ("/srv/projec", Err(OUTSIDE)),
                ("/srv/project/../etc/passwd", Err(OUTSIDE)),
                ("/srv/project/sub/../../x", Err(OUTSIDE)),
                ("/srv/project/../../../../../etc", Err(OUTSIDE)),
                ("/tmp/../etc", Err(OUTSIDE)),
                ("/tmpfoo", Err(OUTSIDE)),
                ("/etc/passwd", Err(OUTSIDE)),
                ("/", Err(OUTSIDE)),
                ("//", Err(OUTSIDE)),
                ("/srv", Err(OUTSIDE)),
            ],
        );
    }

    #[test]
    fn only_plain_absolute_paths() {
        check(
            &lexical_rule(),
            &[
                ("/srv/project/x", Ok(())),
                ("", Err("empty")),
                ("srv/project/x", Err("relative path")),
                ("./srv/project", Err("relative path")),
                ("../srv/project", Err("relative path")),
                ("~/x", Err("`~`")),
                ("~root/srv/project", Err("`~`")),
                ("file:///srv/project/x", Err("`file:` URI")),
                ("FILE:///srv/project/x", Err("`file:` URI")),
                ("file:/srv/project/x", Err("`file:` URI")),
                (" /srv/project/x", Err("relative path")),
            ],
        );
        let long = format!("/srv/project/{}", "a/".repeat(3000));
        assert!(lexical_rule().check(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn characters_that_could_become_separators_are_refused() {
        check(
            &lexical_rule(),
            &[
                ("/srv/project/100%41.txt", Ok(())),
                ("/srv/project/100%", Ok(())),
                ("/srv/project/a%zz", Ok(())),
                ("/srv/project/a\0b", Err("NUL")),
                ("/srv/project/a\nb", Err("control character")),
                ("/srv/project/a\u{7f}", Err("control character")),
                ("/srv/project/a\u{85}", Err("control character")),
                ("/srv/project/..\\..\\etc", Err("backslash")),
                ("/srv/project/%2e%2e/etc", Err("percent escape `%2e`")),
                ("/srv/project/%2E%2E/etc", Err("percent escape `%2E`")),
                ("/srv/project/..%2fetc", Err("percent escape `%2f`")),
                ("/srv/project/..%2F..%2Fetc", Err("percent escape")),
                ("/srv/project/%5c", Err("percent escape")),
                ("/srv/project/%00", Err("percent escape")),
                ("/srv/project/%0a", Err("percent escape")),
                ("/srv/project/%252e%252e", Err("percent escape `%25`")),
                ("/srv/project/%c0%ae%c0%ae", Err("percent escape `%c0`")),
                ("/srv/project/%ef%bc%8f", Err("percent escape")),
                // Fullwidth solidus, full stop and reverse solidus (NFKC).
                ("/srv/project/..\u{FF0F}etc", Err("looks like")),
                ("/srv/project/\u{FF0E}\u{FF0E}", Err("looks like")),
                ("/srv/project/\u{FF3C}", Err("looks like")),
                // Division slash and fraction slash (no decomposition).
                ("/srv/project/a\u{2215}..\u{2215}..", Err("looks like")),
                ("/srv/project/\u{2044}etc", Err("looks like")),
                // One-dot and two-dot leaders, small full stop, ellipsis.
                ("/srv/project/\u{2024}\u{2024}/x", Err("looks like")),
                ("/srv/project/\u{2025}", Err("looks like")),
                ("/srv/project/\u{FE52}", Err("looks like")),
                ("/srv/project/\u{2026}", Err("looks like")),
                ("/srv/project/\u{FE68}", Err("looks like")),
                ("/srv/project/\u{3002}", Err("looks like")),
                ("/srv/project/\u{29F8}", Err("looks like")),
                ("/srv/project/a\u{0338}", Err("looks like")),
            ],
        );
    }

    #[test]
    fn the_lookalike_test_catches_the_named_ones_and_spares_letters() {
        for c in [
            '\u{FF0F}', '\u{2215}', '\u{2044}', '\u{2024}', '\u{FF0E}', '\u{FF3C}', '\u{FE52}',
        ] {
            assert!(is_look_alike(c), "{}", c.escape_unicode());
        }
        for c in ['a', '/', '.', 'é', 'ß', '日', 'Ж', '\u{00E9}'] {
            assert!(!is_look_alike(c), "{}", c.escape_unicode());
        }
    }

    #[test]
    fn constructor_refuses_bad_directories() {
        let err = |allow: Vec<&str>, resolve: bool| {
            PathRule::new(allow.into_iter().map(PathBuf::from).collect(), resolve).unwrap_err()
        };
        assert_eq!(
            err(vec![], false),
            ConstraintError::Empty { field: "allow" }
        );
        assert!(
            matches!(err(vec!["srv/project"], false), ConstraintError::Directory { dir, .. } if dir == "srv/project")
        );
        assert!(matches!(
            err(vec!["/srv/\u{2215}x"], false),
            ConstraintError::Directory { .. }
        ));
        assert!(
            matches!(err(vec!["/definitely/not/here/palisade"], true), ConstraintError::Directory { reason, .. } if reason.contains("cannot be resolved"))
        );
        // Without resolution a directory need not exist (remote upstreams).
        assert!(PathRule::new(vec!["/definitely/not/here/palisade".into()], false).is_ok());
        let tmp = TempDir::new();
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(matches!(
            PathRule::new(vec![file], true).unwrap_err(),
            ConstraintError::Directory { reason, .. } if reason == "not a directory"
        ));
    }

    /// root/allowed (with inner/, file.txt and links), root/outside, and a
    /// link to allowed/.
    fn tree() -> TempDir {
        let tmp = TempDir::new();
        let root = tmp.path();
        fs::create_dir_all(root.join("allowed/inner")).unwrap();
        fs::create_dir_all(root.join("outside")).unwrap();
        fs::write(root.join("allowed/file.txt"), "x").unwrap();
        fs::write(root.join("outside/secret"), "x").unwrap();
        symlink(root.join("outside"), root.join("allowed/escape")).unwrap();
        symlink(root.join("outside/new"), root.join("allowed/dangling")).unwrap();
        symlink(root.join("allowed/loop"), root.join("allowed/loop")).unwrap();
        symlink(root.join("allowed/inner"), root.join("allowed/ok_link")).unwrap();
        symlink("../outside", root.join("allowed/relative_escape")).unwrap();
        symlink(root.join("allowed"), root.join("link_to_allowed")).unwrap();
        tmp
    }

    fn at(root: &Path, rest: &str) -> String {
        format!("{}/{rest}", root.display())
    }

    #[test]
    fn symlinks_out_of_the_allowed_directory_are_caught() {
        let tmp = tree();
        let root = tmp.path();
        let rule = PathRule::new(vec![root.join("allowed")], true).unwrap();
        let cases: Vec<(String, Result<(), &str>)> = vec![
            (at(root, "allowed/file.txt"), Ok(())),
            (at(root, "allowed/new.txt"), Ok(())),
            (at(root, "allowed/inner/new/deeper.txt"), Ok(())),
            (at(root, "allowed/ok_link/x"), Ok(())),
            (at(root, "allowed/inner/../file.txt"), Ok(())),
            (at(root, "allowed/missing/../x"), Ok(())),
            (at(root, "allowed"), Ok(())),
            (at(root, "allowed/escape/secret"), Err("resolves to")),
            (at(root, "allowed/escape"), Err("resolves to")),
            (at(root, "allowed/escape/new/file"), Err("resolves to")),
            (
                at(root, "allowed/relative_escape/secret"),
                Err("resolves to"),
            ),
            // `..` after a symlink goes where the kernel takes it.
            (
                at(root, "allowed/escape/../outside/secret"),
                Err("resolves to"),
            ),
            (at(root, "allowed/inner/../escape/x"), Err("resolves to")),
            (
                at(root, "allowed/dangling"),
                Err("symlink that cannot be resolved"),
            ),
            (
                at(root, "allowed/dangling/x"),
                Err("symlink that cannot be resolved"),
            ),
            (at(root, "allowed/loop"), Err("cannot be resolved")),
            (at(root, "allowed/loop/x"), Err("cannot be resolved")),
            (at(root, "allowed/file.txt/x"), Err("cannot be resolved")),
            (
                at(root, "allowed/file.txt/../../outside/secret"),
                Err(OUTSIDE),
            ),
            (at(root, "outside/secret"), Err(OUTSIDE)),
            (at(root, "allowedX"), Err(OUTSIDE)),
        ];
        let cases: Vec<(&str, Result<(), &str>)> =
            cases.iter().map(|(p, e)| (p.as_str(), *e)).collect();
        check(&rule, &cases);
    }

    #[test]
    fn an_allowed_directory_named_through_a_symlink_works_both_ways() {
        let tmp = tree();
        let root = tmp.path();
        let rule = PathRule::new(vec![root.join("link_to_allowed")], true).unwrap();
        check(
            &rule,
            &[
                (&at(root, "link_to_allowed/file.txt"), Ok(())),
                (&at(root, "allowed/file.txt"), Ok(())),
                (
                    &at(root, "link_to_allowed/escape/secret"),
                    Err("resolves to"),
                ),
                (&at(root, "outside/secret"), Err(OUTSIDE)),
            ],
        );
    }

    #[test]
    fn without_resolution_a_symlink_is_not_followed() {
        // The documented limit: for remote upstreams only the written path
        // is judged.
        let tmp = tree();
        let root = tmp.path();
        let rule = PathRule::new(vec![root.join("allowed")], false).unwrap();
        assert!(!rule.resolves_symlinks());
        check(
            &rule,
            &[
                (&at(root, "allowed/escape/secret"), Ok(())),
                (&at(root, "allowed/../outside/secret"), Err(OUTSIDE)),
            ],
        );
    }

    fn segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "..",
            ".",
            "",
            "%2e",
            "%2e%2e",
            "%2f",
            "%252e",
            "a",
            "b",
            "project",
            "projectX",
            "srv",
            "\u{FF0E}",
            "\u{FF0E}\u{FF0E}",
            "\u{2215}",
            "\u{2044}",
            "..\u{FF0F}",
            "\u{2024}\u{2024}",
            "x.y",
            "...",
            "\\..",
            "~",
            "%41",
        ])
    }

    #[test]
    fn nothing_accepted_lies_lexically_outside() {
        let rule = lexical_rule();
        let cases = (
            prop::sample::select(vec!["/srv/project/", "/srv/", "/", "", "/srv/project"]),
            prop::collection::vec(segment(), 0..8),
        );
        let (accepted, refused) = (Cell::new(0_u32), Cell::new(0_u32));
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&cases, |(lead, segments)| {
                let path = format!("{lead}{}", segments.join("/"));
                if rule.check(&path).is_ok() {
                    accepted.set(accepted.get() + 1);
                    let n = normalise(&path);
                    prop_assert!(
                        n.starts_with("/srv/project") || n.starts_with("/tmp"),
                        "{path:?} accepted as {n:?}"
                    );
                    prop_assert!(!path.chars().any(is_look_alike));
                    prop_assert!(!path.to_ascii_lowercase().contains("%2e"));
                } else {
                    refused.set(refused.get() + 1);
                }
                Ok(())
            })
            .unwrap();
        // The property says something only if both answers occur.
        let (accepted, refused) = (accepted.get(), refused.get());
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn nothing_accepted_lies_outside_with_resolution() {
        let tmp = tree();
        let root = tmp.path().to_path_buf();
        let allowed = root.join("allowed");
        let rule = PathRule::new(vec![allowed.clone()], true).unwrap();
        let canonical = fs::canonicalize(&allowed).unwrap();
        let segments = prop::collection::vec(
            prop::sample::select(vec![
                "..",
                ".",
                "",
                "%2e%2e",
                "escape",
                "dangling",
                "inner",
                "ok_link",
                "file.txt",
                "outside",
                "allowed",
                "secret",
                "new",
                "\u{FF0E}\u{FF0E}",
            ]),
            0..7,
        );
        let (accepted, refused) = (Cell::new(0_u32), Cell::new(0_u32));
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&segments, |segments| {
                let path = format!("{}/{}", allowed.display(), segments.join("/"));
                if rule.check(&path).is_err() {
                    refused.set(refused.get() + 1);
                } else {
                    accepted.set(accepted.get() + 1);
                    let n = normalise(&path);
                    prop_assert!(n.starts_with(&allowed), "{path:?} accepted as {n:?}");
                    let components = parse(&path).unwrap();
                    let resolved = resolve(&components).unwrap();
                    prop_assert!(
                        resolved.starts_with(&canonical),
                        "{path:?} resolves to {resolved:?}"
                    );
                }
                Ok(())
            })
            .unwrap();
        let (accepted, refused) = (accepted.get(), refused.get());
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
    }
}
