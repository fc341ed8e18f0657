//! Where each policy of a file starts, and how Cedar's byte offsets become `FILE:LINE:COLUMN`.

/// Byte offsets at which the statements of a Cedar policy file start, in
/// order. Cedar ends every statement with `;`; a `;` inside a string or a
/// `//` comment does not count. Cedar numbers the policies of a file in the
/// same order, so the n-th offset is where Cedar's n-th policy begins.
pub(super) fn statement_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_statement = false;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '/' if chars.peek().is_some_and(|&(_, next)| next == '/') => {
                // A comment runs to the end of the line.
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                if !in_statement {
                    in_statement = true;
                    starts.push(at);
                }
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            ';' => in_statement = false,
            c if c.is_whitespace() => {}
            _ => {
                if !in_statement {
                    in_statement = true;
                    starts.push(at);
                }
            }
        }
    }
    starts
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (at, c) in text.char_indices() {
        if at >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_start_after_semicolons_outside_strings_and_comments() {
        let check = |text: &str, expected: &[usize]| {
            assert_eq!(statement_starts(text), expected, "{text:?}");
        };
        check("", &[]);
        check("permit(principal, action, resource);", &[0]);
        check(
            "permit(principal, action, resource);\n  forbid(principal, action, resource);",
            &[0, 39],
        );
        // A `;` inside a string, an escaped quote, and a comment.
        check(
            "@reason(\"a; \\\" b\")\npermit(principal, action, resource);\n// x; y\nforbid(principal, action, resource);",
            &[0, 64],
        );
        // A comment between annotations and the effect stays in the statement.
        check(
            "// head;\n@id(\"a\")\n// note; here\npermit(principal, action, resource);",
            &[9],
        );
    }

    #[test]
    fn line_and_column_are_one_based() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 3), (2, 1));
        // After a two-byte character, the column counts characters.
        assert_eq!(line_column(text, 8), (3, 1));
    }
}
