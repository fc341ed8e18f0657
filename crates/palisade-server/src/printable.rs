//! Text from outside made fit to show in a log line or an error: control characters escaped, long names cut.

/// Longest part of a name from outside that an error message or log line shows.
const MAX_SHOWN: usize = 200;

/// `text` with every control character escaped (`\u{1b}`), so that it cannot
/// drive a terminal or break a log line.
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A name from outside (a method, a tool, a URI): control characters
/// escaped, cut at 200 characters.
pub(crate) fn printable_name(name: &str) -> String {
    match name.char_indices().nth(MAX_SHOWN) {
        Some((end, _)) => {
            let mut out = escape_controls(name.get(..end).unwrap_or_default());
            out.push('…');
            out
        }
        None => escape_controls(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text"), "plain text");
        assert_eq!(
            escape_controls("\u{1b}[31mred\u{7}"),
            "\\u{1b}[31mred\\u{7}"
        );
        assert!(
            !escape_controls("a\u{1b}b\u{9b}c\rd")
                .chars()
                .any(char::is_control)
        );
    }

    #[test]
    fn long_names_are_cut() {
        assert_eq!(printable_name("read_file"), "read_file");
        let long = "é".repeat(500);
        let shown = printable_name(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(
            printable_name(&"x".repeat(MAX_SHOWN)),
            "x".repeat(MAX_SHOWN)
        );
    }
}
