//! Canonical JSON for entries and checkpoints: RFC 8785, except that integers are never rounded.
//!
//! RFC 8785 (JCS) writes every number as an IEEE 754 double would print, so
//! an integer beyond ±2^53 — a call id, a number in a tool's arguments —
//! would be written as a nearby value: a record altered on its way into the
//! log. Here an integer literal keeps its digits (`-0` becomes `0`); every
//! other number is written exactly as JCS writes it. For the JSON that JCS
//! represents without loss the two forms are identical. Keys are sorted by
//! their UTF-16 code units and strings escaped as JCS requires.

use std::io::Write;

use serde_json::{Number, Value};

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("number `{0}` has no canonical form")]
pub struct NotCanonical(pub String);

/// The canonical form of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, NotCanonical> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), NotCanonical> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => number(n, out)?,
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(key, out);
                out.push(b':');
                write(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

fn number(n: &Number, out: &mut Vec<u8>) -> Result<(), NotCanonical> {
    let text = n.to_string();
    if is_integer_literal(&text) {
        out.extend_from_slice(if text == "-0" { "0" } else { &text }.as_bytes());
        return Ok(());
    }
    let canonical = serde_json_canonicalizer::to_vec(&Value::Number(n.clone()))
        .map_err(|_| NotCanonical(text))?;
    out.extend_from_slice(&canonical);
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly what JCS does: `"`, `\`, and the control
    // characters (as \b \t \n \f \r, or \u00xx in lower-case hex).
    let _ = serde_json::to_writer(&mut *out, s);
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        String::from_utf8(to_vec(&serde_json::from_str(text).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn agrees_with_rfc8785_where_it_is_lossless() {
        for text in [
            r#"{"b":[1.0, 2.5e3, -0, 1e-7, 0.1],"a":"x\u0001\n\"/é😀","c":{"z":null,"y":true}}"#,
            r#"{"\u20ac":1,"\r":2,"1":3,"\ud83d\ude00":4,"\ue000":5}"#,
            r#"[9007199254740992, -9007199254740992, 123456789, 1e21, 5e-324]"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                to_vec(&value).unwrap(),
                serde_json_canonicalizer::to_vec(&value).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn an_integer_beyond_two_to_the_53_keeps_its_digits() {
        assert_eq!(
            canon(r#"{"call":3737013183054171637,"n":-18446744073709551615999}"#),
            r#"{"call":3737013183054171637,"n":-18446744073709551615999}"#
        );
        assert_eq!(canon("[-0, 0, 10, 1.50]"), "[0,0,10,1.5]");
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+1F600 is D83D DE00 in UTF-16, before U+E000; in UTF-8 bytes it
        // comes after (F0 … against EE …).
        assert_eq!(
            canon(r#"{"\ue000":2,"\ud83d\ude00":1}"#),
            "{\"\u{1f600}\":1,\"\u{e000}\":2}"
        );
    }
}
