//! Canonical JSON for entries and checkpoints: RFC 8785, except that integers are never rounded.
//!
//! RFC 8785 (JCS) writes every number as an IEEE 754 double would print, so
//! an integer beyond ±2^53 — a call id, a number in a tool's arguments —
//! would be written as a nearby value: a record altered on its way into the
//! log. Here an integer literal keeps its digits (`-0` becomes `0`); every
//! other number is written exactly as JCS writes it. For the JSON that JCS
//! represents without loss the two forms are identical. Keys are sorted by
//! their UTF-16 code units and strings escaped as JCS requires.
//!
//! A record is canonicalized from its text ([`from_slice`]), read once and
//! written as it is read; a parsed value ([`to_vec`]) only for checkpoints.

use std::borrow::Cow;
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
            entries.sort_by(|(a, _), (b, _)| utf16_cmp(a, b));
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

/// Writes `s` as a JSON string the way JCS escapes it: `"`, `\`, and the
/// control characters (as \b \t \n \f \r, or \u00xx in lower-case hex);
/// everything else as it is.
fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    // Every byte escaped is ASCII, so a UTF-8 sequence is never split.
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain..i).unwrap_or_default());
        if escape.is_empty() {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        plain = i + 1;
    }
    out.extend_from_slice(bytes.get(plain..).unwrap_or_default());
    out.push(b'"');
}

/// Why a JSON text has no canonical form, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct Invalid {
    pub at: usize,
    pub what: String,
}

/// How deep arrays and objects may nest: as deep as serde_json reads.
const MAX_DEPTH: usize = 127;

/// The canonical form of the JSON text `text`, written as it is read,
/// without building a [`Value`] (three times faster for a record: this is
/// the writer's path). It accepts exactly the texts serde_json does, and
/// refuses an object that names a key twice, which [`to_vec`] would never
/// see (a parsed map keeps one).
pub fn from_slice(text: &[u8]) -> Result<Vec<u8>, Invalid> {
    // Checked once: outside strings only ASCII is JSON, so every place the
    // reader cuts the text at is a character boundary.
    let source = std::str::from_utf8(text).map_err(|e| Invalid {
        at: e.valid_up_to(),
        what: "the text is not UTF-8".into(),
    })?;
    let mut out = Vec::with_capacity(text.len());
    let mut reader = Reader {
        source,
        text,
        at: 0,
        members: Vec::new(),
        scratch: Vec::new(),
    };
    reader.value(&mut out, 0)?;
    reader.space();
    if reader.at < text.len() {
        return Err(reader.invalid("trailing characters after the value"));
    }
    Ok(out)
}

/// A JSON text, read from `at` on.
struct Reader<'a> {
    source: &'a str,
    /// `source`'s bytes.
    text: &'a [u8],
    at: usize,
    /// The members of the objects being read, innermost last.
    members: Vec<Member<'a>>,
    /// Where an object's members are put in order.
    scratch: Vec<u8>,
}

/// An object's member as read: its key, and where it was written.
struct Member<'a> {
    key: Cow<'a, str>,
    /// Whether the key has a character from U+E000 on.
    high: bool,
    /// `"key":value` in the output.
    bytes: std::ops::Range<usize>,
    /// Where the key is in the text.
    at: usize,
}

impl Member<'_> {
    /// JCS's order of keys.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.high && other.high {
            utf16_cmp(&self.key, &other.key)
        } else {
            self.key.as_bytes().cmp(other.key.as_bytes())
        }
    }
}

/// Writes a string as read: one read without escapes (borrowed) has
/// nothing to escape, as `"`, `\` and control characters end a run of
/// plain text.
fn write_read(read: &str, borrowed: bool, out: &mut Vec<u8>) {
    if borrowed {
        out.push(b'"');
        out.extend_from_slice(read.as_bytes());
        out.push(b'"');
    } else {
        string(read, out);
    }
}

impl<'a> Reader<'a> {
    fn invalid(&self, what: impl Into<String>) -> Invalid {
        Invalid {
            at: self.at,
            what: what.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Skips space and takes `byte`, or says what was expected.
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), Invalid> {
        self.space();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.invalid(format!("expected {what}")))
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), Invalid> {
        self.space();
        match self.peek() {
            Some(b'{') => self.object(out, depth + 1),
            Some(b'[') => self.array(out, depth + 1),
            Some(b'"') => {
                let read = self.string()?;
                write_read(&read, matches!(read, Cow::Borrowed(_)), out);
                Ok(())
            }
            Some(b't') => self.literal(b"true", out),
            Some(b'f') => self.literal(b"false", out),
            Some(b'n') => self.literal(b"null", out),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            Some(_) => Err(self.invalid("expected a value")),
            None => Err(self.invalid("the text ends where a value should be")),
        }
    }

    fn literal(&mut self, word: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
        if self.text.get(self.at..self.at + word.len()) != Some(word) {
            return Err(self.invalid("expected a value"));
        }
        self.at += word.len();
        out.extend_from_slice(word);
        Ok(())
    }

    fn nested(&self, depth: usize) -> Result<(), Invalid> {
        if depth > MAX_DEPTH {
            return Err(self.invalid(format!("nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), Invalid> {
        self.nested(depth)?;
        self.at += 1;
        out.push(b'[');
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            self.value(out, depth)?;
            if self.comma_or(b']', out)? {
                break;
            }
        }
        out.push(b']');
        Ok(())
    }

    /// After an element or member: takes a `,` (written: `false`) or the
    /// container's `close` (`true`).
    fn comma_or(&mut self, close: u8, out: &mut Vec<u8>) -> Result<bool, Invalid> {
        self.space();
        let closed = match self.peek() {
            Some(b',') => {
                out.push(b',');
                false
            }
            Some(b) if b == close => true,
            _ => {
                let close = char::from(close);
                return Err(self.invalid(format!("expected `,` or `{close}`")));
            }
        };
        self.at += 1;
        Ok(closed)
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), Invalid> {
        self.nested(depth)?;
        self.at += 1;
        let base = out.len();
        out.push(b'{');
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            out.push(b'}');
            return Ok(());
        }
        // Each member is written where it is read, and noted on the
        // reader's stack of members (an inner object's above this one's,
        // gone before this one goes on); if the keys were not in order,
        // the members are put in order afterwards.
        let first = self.members.len();
        let mut sorted = true;
        loop {
            self.space();
            if self.peek() != Some(b'"') {
                return Err(self.invalid("expected a key"));
            }
            let at = self.at;
            let key = self.string()?;
            self.expect(b':', "`:`")?;
            let start = out.len();
            write_read(&key, matches!(key, Cow::Borrowed(_)), out);
            out.push(b':');
            self.value(out, depth)?;
            let member = Member {
                // Only such keys can sort differently as UTF-16.
                high: key.bytes().any(|b| b >= 0xee),
                key,
                bytes: start..out.len(),
                at,
            };
            if let Some(last) = self.members.get(first..).and_then(<[_]>::last) {
                sorted &= last.cmp(&member).is_lt();
            }
            self.members.push(member);
            if self.comma_or(b'}', out)? {
                break;
            }
        }
        let members = self.members.get_mut(first..).unwrap_or_default();
        if !sorted {
            members.sort_by(Member::cmp);
            let twice = members.windows(2).find_map(|pair| match pair {
                [a, b] if a.key == b.key => Some((&b.key, a.at.max(b.at))),
                _ => None,
            });
            if let Some((key, at)) = twice {
                return Err(Invalid {
                    at,
                    what: format!("key `{key}` appears twice in one object"),
                });
            }
            self.scratch.clear();
            for (i, member) in members.iter().enumerate() {
                if i > 0 {
                    self.scratch.push(b',');
                }
                self.scratch
                    .extend_from_slice(out.get(member.bytes.clone()).unwrap_or_default());
            }
            out.truncate(base + 1);
            out.extend_from_slice(&self.scratch);
        }
        self.members.truncate(first);
        out.push(b'}');
        Ok(())
    }

    /// Reads a string (at its opening quote); borrowed when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, Invalid> {
        self.at += 1;
        let mut owned: Option<String> = None;
        loop {
            let rest = self.text.get(self.at..).unwrap_or_default();
            let end = plain_len(rest);
            match rest.get(end) {
                None => return Err(self.invalid("the text ends inside a string")),
                Some(0..0x20) => {
                    self.at += end;
                    return Err(self.invalid("a control character inside a string"));
                }
                Some(_) => {}
            }
            let plain = self
                .source
                .get(self.at..self.at + end)
                .ok_or_else(|| self.invalid("a string is cut inside a character"))?;
            self.at += end;
            if rest.get(end) == Some(&b'"') {
                self.at += 1;
                return Ok(match owned {
                    None => Cow::Borrowed(plain),
                    Some(mut s) => {
                        s.push_str(plain);
                        Cow::Owned(s)
                    }
                });
            }
            let s = owned.get_or_insert_with(String::new);
            s.push_str(plain);
            self.escape(s)?;
        }
    }

    /// Reads one escape (at its backslash) into `s`.
    fn escape(&mut self, s: &mut String) -> Result<(), Invalid> {
        self.at += 1;
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = self.hex4()?;
                let c = if (0xd800..0xdc00).contains(&unit) {
                    // A high surrogate: a low one must follow.
                    if self.text.get(self.at + 1..self.at + 3) != Some(b"\\u") {
                        return Err(self.invalid("a lone surrogate in a \\u escape"));
                    }
                    self.at += 2;
                    let low = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&low) {
                        return Err(self.invalid("a lone surrogate in a \\u escape"));
                    }
                    char::from_u32(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00))
                } else {
                    char::from_u32(unit)
                };
                c.ok_or_else(|| self.invalid("a lone surrogate in a \\u escape"))?
            }
            _ => return Err(self.invalid("an invalid escape")),
        };
        s.push(c);
        self.at += 1;
        Ok(())
    }

    /// Reads the four hex digits after `\u` (at the `u`), leaving `at` on the last.
    fn hex4(&mut self) -> Result<u32, Invalid> {
        let digits = self
            .text
            .get(self.at + 1..self.at + 5)
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.invalid("a \\u escape without four hex digits"))?;
        self.at += 4;
        Ok(digits)
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), Invalid> {
        let start = self.at;
        let digits = |r: &mut Self| {
            let from = r.at;
            while let Some(b'0'..=b'9') = r.peek() {
                r.at += 1;
            }
            r.at - from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.invalid("a number without digits")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            integer = false;
            if digits(self) == 0 {
                return Err(self.invalid("a number without digits after its `.`"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.invalid("a number without digits in its exponent"));
            }
        }
        let text = self.text.get(start..self.at).unwrap_or_default();
        if integer {
            out.extend_from_slice(if text == b"-0" { b"0" } else { text });
            return Ok(());
        }
        // The grammar above admits only ASCII.
        let text = std::str::from_utf8(text).unwrap_or_default();
        let n: Number = serde_json::from_str(text).map_err(|e| Invalid {
            at: start,
            what: format!("number `{text}`: {e}"),
        })?;
        number(&n, out).map_err(|e| Invalid {
            at: start,
            what: e.to_string(),
        })
    }
}

/// How many bytes of `bytes` come before the first `"`, `\\` or control
/// character: eight at a time while none of them is one (the usual test
/// for a zero byte in a word, for `"`, for `\\`, and for one below 0x20).
fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut skipped = 0;
    for chunk in bytes.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk).map(u64::from_le_bytes) else {
            break;
        };
        let found = zero_in(word ^ (ONES * u64::from(b'"')))
            | zero_in(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word);
        if found & HIGH != 0 {
            break;
        }
        skipped += 8;
    }
    let rest = bytes.get(skipped..).unwrap_or_default();
    skipped
        + rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(rest.len())
}

/// Orders keys by their UTF-16 code units, as JCS sorts them. That is
/// the order of their UTF-8 bytes except where a character beyond U+FFFF
/// (two UTF-16 units, the first a surrogate) meets one from U+E000 on;
/// so only the first characters that differ are compared as UTF-16.
fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let Some(differ) = a.bytes().zip(b.bytes()).position(|(x, y)| x != y) else {
        return a.len().cmp(&b.len());
    };
    // Back to the start of the character the difference falls in: both
    // strings agree before it, so it starts at the same place in each.
    let start = (0..=differ)
        .rev()
        .find(|&i| a.is_char_boundary(i))
        .unwrap_or(0);
    let first = |s: &str| s.get(start..).and_then(|t| t.chars().next());
    match (first(a), first(b)) {
        (Some(x), Some(y)) => {
            let (mut ux, mut uy) = ([0u16; 2], [0u16; 2]);
            x.encode_utf16(&mut ux).cmp(&y.encode_utf16(&mut uy))
        }
        _ => a.cmp(b),
    }
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

    /// Arbitrary JSON values, numbers of every kind included.
    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let number = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,8})?([eE][+-]?[0-9]{1,2})?"
                .prop_map(|t| serde_json::from_str::<Value>(&t).unwrap_or(Value::Null)),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number,
            any::<String>().prop_map(Value::String),
            "[\\\\\"\\x00-\\x1f\\u{7f}\\u{e000}\\u{1f600}a/]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(("[a-c\\u{e000}\\u{1f600}\\u{80}]{0,3}", inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Read from any spelling of a value, the canonical form is the
        /// one made from the parsed value.
        #[test]
        fn reading_the_text_agrees_with_the_parsed_value(value in json()) {
            let Ok(expected) = to_vec(&value) else { return Ok(()) };
            let compact = serde_json::to_vec(&value).unwrap();
            let pretty = serde_json::to_vec_pretty(&value).unwrap();
            proptest::prop_assert_eq!(&from_slice(&compact).unwrap(), &expected);
            proptest::prop_assert_eq!(&from_slice(&pretty).unwrap(), &expected);
            // Escaping every character the long way changes nothing.
            let escaped: String = String::from_utf8(compact).unwrap().chars().map(|c| match c {
                'é' | '😀' | '\u{e000}' => c.encode_utf16(&mut [0; 2]).iter().map(|u| format!("\\u{u:04x}")).collect(),
                c => c.to_string(),
            }).collect();
            proptest::prop_assert_eq!(&from_slice(escaped.as_bytes()).unwrap(), &expected);
        }

        /// On any bytes, it accepts exactly what serde_json accepts (bar a
        /// key named twice), and then agrees with it.
        #[test]
        fn on_any_bytes_it_agrees_with_serde_json(text in proptest::collection::vec(
            proptest::sample::select(b"{}[],:\"\\ 0123456789.eE+-truefalsn\\u00e9\x01\xff".to_vec()), 0..24)
        ) {
            let ours = from_slice(&text);
            match serde_json::from_slice::<Value>(&text) {
                Ok(value) => match to_vec(&value) {
                    Ok(expected) => {
                        if let Ok(ours) = ours { proptest::prop_assert_eq!(ours, expected) }
                        else { proptest::prop_assert!(ours.unwrap_err().what.contains("twice")) }
                    }
                    Err(_) => proptest::prop_assert!(ours.is_err()),
                },
                Err(_) => proptest::prop_assert!(ours.is_err(), "accepted {:?}", String::from_utf8_lossy(&text)),
            }
        }
    }

    #[test]
    fn bad_texts_are_refused_saying_where() {
        for (text, at, what) in [
            ("{\"a\":1,}", 7, "expected a key"),
            ("[1 2]", 3, "expected `,` or `]`"),
            ("{\"a\" 1}", 5, "expected `:`"),
            ("01", 1, "trailing characters"),
            ("1.e5", 2, "digits after its `.`"),
            ("\"\\ud800x\"", 6, "lone surrogate"),
            ("\"\\q\"", 2, "invalid escape"),
            ("\"a\nb\"", 2, "control character"),
            ("{\"b\":1,\"a\":2,\"b\":3}", 13, "key `b` appears twice"),
            ("[1e400]", 1, "no canonical form"),
            ("tru", 0, "expected a value"),
            ("", 0, "ends where a value should be"),
        ] {
            let e = from_slice(text.as_bytes()).unwrap_err();
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.what.contains(what), "{text}: {e}");
        }
        assert!(
            from_slice(b"\"\xff\"")
                .unwrap_err()
                .what
                .contains("not UTF-8")
        );
    }

    #[test]
    fn it_nests_as_deep_as_serde_json_does() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let limit = (1..200)
            .find(|&n| serde_json::from_str::<Value>(&deep(n)).is_err())
            .unwrap();
        assert!(from_slice(deep(limit - 1).as_bytes()).is_ok());
        assert!(
            from_slice(deep(limit).as_bytes())
                .unwrap_err()
                .what
                .contains("nested deeper")
        );
    }
}
