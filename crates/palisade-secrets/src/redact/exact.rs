//! Exact matching of every known secret value and its encodings, in one automaton.
//!
//! Each value becomes a set of patterns: the value itself, base64 (standard
//! and URL-safe, at each of the three alignments a value can take inside a
//! longer encoded string), hex in both cases, percent-encoding and JSON
//! string escaping. Text is searched with whitespace and zero-width
//! characters skipped, so a value split by them (or base64 wrapped over
//! lines) is still found; a match is mapped back to the original text and
//! covers the separators inside it.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::binding::SecretName;
use crate::value::SecretValue;

/// Values shorter than this are not matched: they would match ordinary text.
pub const MIN_LEN: usize = 8;

/// How a known value appeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    Base64,
    Base64Url,
    Hex,
    Percent,
    JsonEscaped,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Raw => "as is",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
            Encoding::Hex => "hex",
            Encoding::Percent => "percent-encoded",
            Encoding::JsonEscaped => "JSON-escaped",
        }
    }
}

/// One occurrence of a known value, in byte offsets of the searched text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub secret: usize,
    pub encoding: Encoding,
}

/// The automaton over every known value's patterns.
pub struct Exact {
    automaton: Option<AhoCorasick>,
    /// Where in a text the automaton needs to look.
    sieve: Sieve,
    /// Per pattern: which secret (index into `names`) and how it is encoded.
    patterns: Vec<(usize, Encoding)>,
    names: Vec<SecretName>,
    /// Digests of the values, to tell cheaply whether a value is known.
    digests: HashSet<[u8; 32]>,
    /// Values too short to match safely, by name (reported by `check`).
    too_short: Vec<SecretName>,
    /// The values themselves, to rebuild with one more.
    values: Vec<(SecretName, SecretValue)>,
}

impl std::fmt::Debug for Exact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exact")
            .field("secrets", &self.names.len())
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

pub(crate) fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Whether `text[at..]` starts with a separator the search skips; its length.
fn separator(bytes: &[u8], at: usize) -> usize {
    match bytes.get(at) {
        Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) => 1,
        // U+200B..U+200D (zero-width space, non-joiner, joiner), U+2060 (word joiner).
        Some(0xE2) => match (bytes.get(at + 1), bytes.get(at + 2)) {
            (Some(0x80), Some(0x8B..=0x8D)) | (Some(0x81), Some(0xA0)) => 3,
            _ => 0,
        },
        // U+FEFF (zero-width no-break space).
        Some(0xEF) => match (bytes.get(at + 1), bytes.get(at + 2)) {
            (Some(0xBB), Some(0xBF)) => 3,
            _ => 0,
        },
        // U+00AD (soft hyphen).
        Some(0xC2) if bytes.get(at + 1) == Some(&0xAD) => 2,
        _ => 0,
    }
}

fn squeeze_str(text: &str) -> Zeroizing<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        match separator(bytes, at) {
            0 => {
                out.push(b);
                at += 1;
            }
            n => at += n,
        }
    }
    out
}

/// How [`squeeze`] treats a byte: dropped (a one-byte separator), kept, or
/// looked at with what follows (it may start a multi-byte separator).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Drop,
    Keep,
    Lead,
}

/// `\t \n \x0b \x0c \r` and space, as bits of a mask indexed by the byte.
const ONE_BYTE_SEPARATORS: u64 = 1 << b' ' | 0b11111 << b'\t';

fn class(b: u8) -> Class {
    match b {
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => Class::Drop,
        0xC2 | 0xE2 | 0xEF => Class::Lead,
        _ => Class::Keep,
    }
}

/// The bytes [`Squeezed::of`] produces, without the offset map: the search
/// needs only these, and the map is built only for a text with a hit.
///
/// Every byte is written and the write position advances only for a kept
/// one, so the loop does not branch on whitespace, which in prose comes every
/// few bytes at no predictable place.
fn squeeze(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let any = bytes.iter().enumerate().any(|(i, &b)| match class(b) {
        Class::Drop => true,
        Class::Lead => separator(bytes, i) > 0,
        Class::Keep => false,
    });
    if !any {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = vec![0u8; bytes.len()];
    let mut written = 0;
    let mut skip = 0;
    for (at, &b) in bytes.iter().enumerate() {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if b >= 0xC2 && class(b) == Class::Lead {
            let n = separator(bytes, at);
            if n > 0 {
                skip = n - 1;
                continue;
            }
        }
        if let Some(slot) = out.get_mut(written) {
            *slot = b;
        }
        // 1 unless `b` is one of the one-byte separators (bits 9..13 and 32).
        let dropped = u64::from(b <= b' ') & (ONE_BYTE_SEPARATORS >> (b & 63));
        written += 1 - dropped as usize;
    }
    out.truncate(written);
    std::borrow::Cow::Owned(out)
}

/// Where the separators [`squeeze`] removed were, to map a hit back.
struct Squeezed {
    /// (offset in the squeezed text, bytes removed before it in total), ascending.
    removed: Vec<(usize, usize)>,
}

impl Squeezed {
    fn of(text: &str) -> Squeezed {
        let bytes = text.as_bytes();
        let mut removed = Vec::new();
        let mut kept = 0;
        let mut total = 0;
        let mut at = 0;
        while bytes.get(at).is_some() {
            match separator(bytes, at) {
                0 => {
                    kept += 1;
                    at += 1;
                }
                n => {
                    total += n;
                    at += n;
                    match removed.last_mut() {
                        Some((offset, sum)) if *offset == kept => *sum = total,
                        _ => removed.push((kept, total)),
                    }
                }
            }
        }
        Squeezed { removed }
    }

    /// The original offset of the byte at squeezed offset `at` (a start).
    fn start(&self, at: usize) -> usize {
        let idx = self.removed.partition_point(|(offset, _)| *offset <= at);
        at + idx
            .checked_sub(1)
            .and_then(|i| self.removed.get(i))
            .map_or(0, |(_, sum)| *sum)
    }

    /// The original offset just past the byte before squeezed offset `at` (an end).
    fn end(&self, at: usize) -> usize {
        match at.checked_sub(1) {
            Some(last) => self.start(last) + 1,
            None => 0,
        }
    }
}

/// Bytes per window the sieve hashes.
const WINDOW: usize = 4;

/// A filter over sampled windows of the squeezed text that tells where an
/// occurrence of some pattern may be, so that the automaton (a DFA without a
/// prefilter: there are too many patterns for one) runs over a few short
/// regions instead of the whole text.
///
/// Every pattern is at least `shortest` bytes long, so a window of
/// [`WINDOW`] bytes taken every `stride = shortest - WINDOW + 1` bytes falls
/// wholly inside any occurrence, at one of its first `stride` offsets. The
/// sieve holds a bit for the hash of each pattern's windows at those
/// offsets; a window whose bit is clear starts no occurrence near it. An
/// occurrence found by a window at `q` starts at `q - (stride - 1)` or later
/// and ends by `q + longest`: that is the region searched. Regions that touch
/// are merged, so each occurrence lies wholly inside one region and the
/// leftmost-longest matches in the regions are the ones in the whole text.
struct Sieve {
    stride: usize,
    longest: usize,
    /// One bit per hash value; `shift` turns a 32-bit hash into an index.
    bits: Vec<u64>,
    shift: u32,
}

impl Sieve {
    fn build(patterns: &[Zeroizing<Vec<u8>>]) -> Self {
        let shortest = patterns.iter().map(|p| p.len()).min().unwrap_or(MIN_LEN);
        let longest = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let stride = shortest.max(WINDOW) - WINDOW + 1;
        // About 1 bit in 128 set: a window of ordinary text passes rarely.
        let windows = patterns.len().saturating_mul(stride).max(1);
        let order = windows
            .saturating_mul(128)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(12, 24);
        let mut sieve = Self {
            stride,
            longest,
            bits: vec![0; 1 << (order - 6)],
            shift: 32 - order,
        };
        for pattern in patterns {
            for offset in 0..stride {
                if let Some(window) = pattern.get(offset..offset + WINDOW) {
                    let (word, bit) = sieve.slot(window);
                    if let Some(w) = sieve.bits.get_mut(word) {
                        *w |= bit;
                    }
                }
            }
        }
        sieve
    }

    fn slot(&self, window: &[u8]) -> (usize, u64) {
        let mut word = [0u8; WINDOW];
        word.copy_from_slice(window);
        let hash = u32::from_le_bytes(word).wrapping_mul(0x9E37_79B1) >> self.shift;
        ((hash >> 6) as usize, 1 << (hash & 63))
    }

    /// The regions of `bytes` an occurrence may lie in, ascending, disjoint.
    fn regions(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut regions: Vec<(usize, usize)> = Vec::new();
        let mut at = 0;
        while let Some(window) = bytes.get(at..at + WINDOW) {
            let (word, bit) = self.slot(window);
            if self.bits.get(word).is_some_and(|w| w & bit != 0) {
                let from = at.saturating_sub(self.stride - 1);
                let to = at.saturating_add(self.longest).min(bytes.len());
                match regions.last_mut() {
                    Some((_, end)) if *end >= from => *end = to.max(*end),
                    _ => regions.push((from, to)),
                }
            }
            at += self.stride;
        }
        regions
    }
}

fn base64_alignments(value: &[u8], out: &mut Vec<(Vec<u8>, Encoding)>) {
    for (engine, encoding) in [
        (&STANDARD_NO_PAD, Encoding::Base64),
        (&URL_SAFE_NO_PAD, Encoding::Base64Url),
    ] {
        for lead in 0..3usize {
            let mut padded = Zeroizing::new(vec![0u8; lead]);
            padded.extend_from_slice(value);
            let encoded = Zeroizing::new(engine.encode(padded.as_slice()));
            // Characters whose six bits all come from `value`.
            let from = (lead * 8).div_ceil(6);
            let to = (padded.len() * 8) / 6;
            if let Some(stable) = encoded.as_bytes().get(from..to)
                && stable.len() >= MIN_LEN
            {
                out.push((stable.to_vec(), encoding));
            }
        }
    }
}

fn percent_encode(value: &[u8], upper: bool) -> Vec<u8> {
    let digits = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(value.len() * 3);
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.push(b'%');
            out.extend(digits.get(usize::from(b >> 4)));
            out.extend(digits.get(usize::from(b & 15)));
        }
    }
    out
}

/// Every pattern one value is searched as.
fn patterns_of(value: &str) -> Vec<(Vec<u8>, Encoding)> {
    let raw = value.as_bytes();
    let mut out = vec![(squeeze_str(value).to_vec(), Encoding::Raw)];
    base64_alignments(raw, &mut out);
    out.push((hex::encode(raw).into_bytes(), Encoding::Hex));
    out.push((hex::encode_upper(raw).into_bytes(), Encoding::Hex));
    for upper in [true, false] {
        let encoded = percent_encode(raw, upper);
        if encoded != raw {
            out.push((encoded, Encoding::Percent));
        }
    }
    if let Ok(json) = serde_json::to_string(value) {
        let inner = json
            .as_bytes()
            .get(1..json.len().saturating_sub(1))
            .unwrap_or_default();
        if inner != raw {
            out.push((
                squeeze_str(&String::from_utf8_lossy(inner)).to_vec(),
                Encoding::JsonEscaped,
            ));
        }
    }
    out.retain(|(p, _)| p.len() >= MIN_LEN);
    out
}

impl Exact {
    pub fn empty() -> Self {
        Self {
            automaton: None,
            sieve: Sieve::build(&[]),
            patterns: Vec::new(),
            names: Vec::new(),
            digests: HashSet::new(),
            too_short: Vec::new(),
            values: Vec::new(),
        }
    }

    /// One automaton for all `values` (a name may have several values: versions).
    pub fn build(values: &[(SecretName, SecretValue)]) -> Self {
        let mut names: Vec<SecretName> = Vec::new();
        let mut pattern_bytes: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut patterns = Vec::new();
        let mut digests = HashSet::new();
        let mut too_short = Vec::new();
        for (name, value) in values {
            let text = value.expose();
            if !digests.insert(digest(text)) {
                continue;
            }
            if squeeze_str(text).len() < MIN_LEN {
                too_short.push(name.clone());
                continue;
            }
            let index = match names.iter().position(|n| n == name) {
                Some(index) => index,
                None => {
                    names.push(name.clone());
                    names.len() - 1
                }
            };
            for (bytes, encoding) in patterns_of(text) {
                pattern_bytes.push(Zeroizing::new(bytes));
                patterns.push((index, encoding));
            }
        }
        let automaton = if pattern_bytes.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(AhoCorasickKind::DFA))
                .build(pattern_bytes.iter().map(|p| p.as_slice()))
                .or_else(|_| {
                    AhoCorasick::builder()
                        .match_kind(MatchKind::LeftmostLongest)
                        .build(pattern_bytes.iter().map(|p| p.as_slice()))
                })
                .ok()
        };
        let sieve = Sieve::build(&pattern_bytes);
        Self {
            automaton,
            sieve,
            patterns,
            names,
            digests,
            too_short,
            values: values.to_vec(),
        }
    }

    /// The values this automaton was built from.
    pub fn values_for_rebuild(&self) -> Vec<(SecretName, SecretValue)> {
        self.values.clone()
    }

    pub fn name(&self, secret: usize) -> Option<&SecretName> {
        self.names.get(secret)
    }

    pub fn knows(&self, value: &SecretValue) -> bool {
        self.digests.contains(&digest(value.expose()))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn too_short(&self) -> &[SecretName] {
        &self.too_short
    }

    /// Every occurrence in `text`, leftmost-longest, in order.
    pub fn find(&self, text: &str) -> Vec<Hit> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let bytes = squeeze(text.as_bytes());
        let mut matches = self
            .sieve
            .regions(bytes.as_ref())
            .into_iter()
            .flat_map(|(from, to)| {
                automaton.find_iter(aho_corasick::Input::new(bytes.as_ref()).range(from..to))
            })
            .peekable();
        // Most texts hold no known value: they need no offset map.
        if matches.peek().is_none() {
            return Vec::new();
        }
        let squeezed = Squeezed::of(text);
        matches
            .filter_map(|m| {
                let (secret, encoding) = *self.patterns.get(m.pattern().as_usize())?;
                Some(Hit {
                    start: squeezed.start(m.start()),
                    end: squeezed.end(m.end()),
                    secret,
                    encoding,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "tk_live_9fQ2xR7mZ4pL1vB8";

    fn exact(values: &[&str]) -> Exact {
        let values: Vec<_> = values
            .iter()
            .map(|v| {
                (
                    SecretName::parse("tickets").unwrap(),
                    SecretValue::new((*v).into()),
                )
            })
            .collect();
        Exact::build(&values)
    }

    /// The text with every hit cut out, for asserting nothing of the value is left.
    fn cut(exact: &Exact, text: &str) -> String {
        let mut out = String::new();
        let mut at = 0;
        for hit in exact.find(text) {
            out.push_str(&text[at..hit.start]);
            out.push('#');
            at = hit.end;
        }
        out.push_str(&text[at..]);
        out
    }

    #[test]
    fn the_value_is_found_in_every_encoding() {
        let e = exact(&[VALUE]);
        let b64 = |engine: &base64::engine::GeneralPurpose, lead: &str| {
            engine.encode(format!("{lead}{VALUE} and more"))
        };
        let std = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE;
        let cases = vec![
            format!("token: {VALUE}!"),
            b64(&std, ""),
            b64(&std, "a"),
            b64(&std, "ab"),
            b64(&url, "x"),
            b64(&url, "xy"),
            hex::encode(VALUE),
            hex::encode_upper(VALUE),
            format!(
                "q={}",
                String::from_utf8(percent_encode(VALUE.as_bytes(), true)).unwrap()
            ),
            serde_json::to_string(VALUE).unwrap(),
            "tk_live_9fQ2 xR7mZ4\npL1vB8".to_owned(),
            "tk_live\u{200b}_9fQ2xR7mZ4\u{feff}pL1vB8".to_owned(),
        ];
        for text in cases {
            let hits = e.find(&text);
            assert!(!hits.is_empty(), "not found in {text:?}");
            let left = cut(&e, &text);
            assert!(!left.contains("9fQ2"), "{text:?} -> {left:?}");
        }
    }

    #[test]
    fn the_fast_squeeze_agrees_with_the_plain_one() {
        for text in [
            "",
            "no-separators-at-all",
            " lead and trail ",
            "tabs\tand\r\nlines\x0b\x0cff",
            "zero\u{200b}width\u{200c}\u{200d}joiners\u{2060}\u{feff}",
            "soft\u{ad}hyphen and \u{c2}\u{a9} copyright",
            "curly \u{2019} quotes \u{201c}and\u{201d} dashes \u{2014} \u{e2}\u{80}",
            "h\u{e9}llo  tk_live_9fQ2 xR7mZ4pL1vB8 bye",
        ] {
            assert_eq!(
                squeeze(text.as_bytes()).as_ref(),
                squeeze_str(text).as_slice(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_sieve_keeps_every_occurrence_at_every_offset() {
        let values = [VALUE, "short-one", "x7Yq!p2@Lm#9vRt$Kd8&Wz3^Nb5*Hc1"];
        let e = exact(&values);
        let plain = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(values.iter().flat_map(|v| patterns_of(v)).map(|(p, _)| p))
            .unwrap();
        for lead in 0..20 {
            for value in values {
                let text = format!("{}{value}{}{value}tail", "a".repeat(lead), "-".repeat(lead));
                let whole: Vec<_> = plain
                    .find_iter(text.as_bytes())
                    .map(|m| (m.start(), m.end()))
                    .collect();
                let sieved: Vec<_> = e.find(&text).iter().map(|h| (h.start, h.end)).collect();
                assert_eq!(sieved, whole, "lead {lead}");
                assert_eq!(sieved.len(), 2, "lead {lead}");
            }
        }
        // Ordinary text passes the sieve in few places.
        let prose = "the quick brown fox jumps over the lazy dog ".repeat(100);
        let covered: usize = e
            .sieve
            .regions(prose.as_bytes())
            .iter()
            .map(|(a, b)| b - a)
            .sum();
        assert!(covered < prose.len() / 4, "{covered} of {}", prose.len());
    }

    #[test]
    fn a_json_escaped_value_is_found() {
        let tricky = "pa\"ss\\word/with-quotes-1";
        let e = exact(&[tricky]);
        let json = serde_json::to_string(&serde_json::json!({ "k": tricky })).unwrap();
        assert_eq!(e.find(&json).len(), 1, "{json}");
        assert_eq!(e.find(&json)[0].encoding, Encoding::JsonEscaped);
    }

    #[test]
    fn spans_map_back_to_the_original_text() {
        let e = exact(&[VALUE]);
        let text = "héllo  tk_live_9fQ2 xR7mZ4pL1vB8 bye";
        let hits = e.find(text);
        assert_eq!(hits.len(), 1);
        assert_eq!(
            &text[hits[0].start..hits[0].end],
            "tk_live_9fQ2 xR7mZ4pL1vB8"
        );
        assert_eq!(cut(&e, text), "héllo  # bye");
    }

    #[test]
    fn unrelated_text_and_short_values_do_not_match() {
        let e = exact(&[VALUE, "short"]);
        assert!(
            e.find("nothing to see here, tk_live_ but not the rest")
                .is_empty()
        );
        assert!(e.find("short story").is_empty());
        assert_eq!(e.too_short().len(), 1);
        assert!(Exact::empty().find(VALUE).is_empty());
        assert!(e.knows(&SecretValue::new(VALUE.into())));
        assert!(!e.knows(&SecretValue::new("other-value-123".into())));
    }
}
