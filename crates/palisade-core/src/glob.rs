//! `*`-only patterns over names (`mail/send_*`, `*/read_file`), as tool rules of several layers write them.

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (none included) and everything else only itself. Linear in
/// practice for the short names tools have: each literal part is found
/// leftmost, which is exact when `*` is the only wildcard.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn stars_match_any_run_and_the_rest_only_itself() {
        assert!(glob("*/read_file", "files/read_file"));
        assert!(!glob("*/read_file", "files/read_file2"));
        assert!(glob("mail/send_*", "mail/send_email"));
        assert!(glob("mail/send_*", "mail/send_"));
        assert!(glob("*", ""));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(!glob("*ab*b", "ab"), "a literal is not used twice");
    }
}
