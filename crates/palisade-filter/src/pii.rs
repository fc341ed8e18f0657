//! PII in outbound text (tool arguments): emails, phones, payment cards, IBANs, US SSNs, IP addresses, each confirmed by a validator.
//!
//! Every kind has one pattern, compiled once, that proposes candidates, and
//! a validator that keeps only real values: the Luhn checksum and issuer
//! prefixes of a card, the country length and mod-97 check of an IBAN, the
//! number plan of a phone number, the reserved ranges of an SSN, the octets
//! of an IPv4 address, the standard library's parser for IPv6. A candidate
//! that touches letters or digits, or continues a longer number (`12-`, `.5`),
//! is not a value on its own and is dropped, so order numbers, timestamps,
//! version strings and UUIDs stay what they are.
//!
//! The patterns are `regex` patterns (linear in the input), with no
//! unbounded repetition except in the local part and domain of an email,
//! which are bounded by the characters they may hold; every validator looks
//! at a bounded number of bytes around its candidate. The whole scan is
//! therefore linear in the length of the text.

use std::cmp::Reverse;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::{Range, RangeInclusive};
use std::str::FromStr;
use std::sync::LazyLock;

use regex::{Match, Regex};
use serde::Serialize;

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PiiKind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    UsSsn,
    IpAddress,
}

impl PiiKind {
    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; 6] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::PaymentCard,
        PiiKind::Iban,
        PiiKind::UsSsn,
        PiiKind::IpAddress,
    ];

    /// The kind's stable name, as in configuration and findings (`payment-card`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::PaymentCard => "payment-card",
            PiiKind::Iban => "iban",
            PiiKind::UsSsn => "us-ssn",
            PiiKind::IpAddress => "ip-address",
        }
    }

    /// The kind named `s` (one of the [`PiiKind::as_str`] names), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }

    /// Which kind wins when two matches start at the same byte and are as
    /// long: the one with the stricter validator (lower is stronger).
    fn priority(self) -> u8 {
        match self {
            PiiKind::Email => 0,
            PiiKind::Iban => 1,
            PiiKind::PaymentCard => 2,
            PiiKind::UsSsn => 3,
            PiiKind::Phone => 4,
            PiiKind::IpAddress => 5,
        }
    }
}

/// One validated value: its kind and where it is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    pub kind: PiiKind,
    /// Byte offsets into the text that was searched.
    pub span: Range<usize>,
}

/// Every validated PII value in `text`, in order of position, none overlapping.
///
/// When matches overlap, the one that starts first wins; of two that start
/// at the same byte, the longer; of two as long, the kind with the stricter
/// validator: email, IBAN, payment card, SSN, phone, IP address.
pub fn find_pii(text: &str) -> Vec<PiiMatch> {
    let mut found = Vec::new();
    find_emails(text, &mut found);
    find_phones(text, &mut found);
    find_cards(text, &mut found);
    find_ibans(text, &mut found);
    find_ssns(text, &mut found);
    find_ipv4(text, &mut found);
    find_ipv6(text, &mut found);
    without_overlaps(found)
}

/// `text` with each match replaced by `[REDACTED:<kind>]`.
///
/// Matches are taken in order of position; one that overlaps an earlier
/// one, or whose span is not a range of `text` on character boundaries, is
/// skipped.
pub fn redact_pii(text: &str, matches: &[PiiMatch]) -> String {
    let mut ordered: Vec<&PiiMatch> = matches.iter().collect();
    ordered.sort_by_key(|m| (m.span.start, Reverse(m.span.end)));
    let mut redacted = String::with_capacity(text.len());
    let mut cursor = 0;
    for m in ordered {
        let (Some(before), Some(_)) = (text.get(cursor..m.span.start), text.get(m.span.clone()))
        else {
            continue;
        };
        redacted.push_str(before);
        redacted.push_str("[REDACTED:");
        redacted.push_str(m.kind.as_str());
        redacted.push(']');
        cursor = m.span.end;
    }
    redacted.push_str(text.get(cursor..).unwrap_or_default());
    redacted
}

/// Keeps the earliest, then longest, then strongest of overlapping matches.
fn without_overlaps(mut found: Vec<PiiMatch>) -> Vec<PiiMatch> {
    found.sort_by_key(|m| (m.span.start, Reverse(m.span.end), m.kind.priority()));
    let mut kept: Vec<PiiMatch> = Vec::with_capacity(found.len());
    for m in found {
        if kept.last().is_none_or(|last| m.span.start >= last.span.end) {
            kept.push(m);
        }
    }
    kept
}

// ---------------------------------------------------------------------------
// Patterns
//
// The regex crate has no look-behind, so a pattern for a value that must not
// follow a letter or digit consumes the character before it (or the start
// of the text) and captures the value itself as group 1; `(?-u:\b)` (an
// ASCII word boundary, which the lazy DFA handles on any input) ends it.
// Besides saying what a value is, this keeps runs of digits, letters or
// dotted numbers from proposing a candidate at every few bytes.

/// `local@domain`: a dot-separated local part of the common characters and
/// a domain of LDH labels ending in a TLD of two or more letters.
static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}",
    )
    .ok()
});
/// A phone number as written: an optional `+` or `(`, then 6 to 18 digits
/// with at most one separator (` .-/`, possibly with a parenthesis) between
/// two digits, then optionally an extension (`x123`, `ext. 123`). Group 2
/// is the number without its extension; how the digits are grouped, and
/// whether that is a phone number at all, is decided afterwards.
static PHONE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:^|[^0-9A-Za-z_+])(",
        r"(\+?\(?[0-9](?:(?:[ .\-/]?\(|\)[ .\-/]?|[ .\-/])?[0-9]){5,17})",
        r"(?: ?(?i:x|ext\.?|extn\.?|extension) ?[0-9]{1,6})?",
        r")(?-u:\b)",
    ))
    .ok()
});
/// 12 to 19 digits, bare or in groups after a first group of four, all
/// separated by single spaces or all by single dashes.
static CARD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:^|[^0-9A-Za-z_])(",
        r"[0-9]{12,19}|[0-9]{4}(?:-[0-9]{3,6}){2,4}|[0-9]{4}(?: [0-9]{3,6}){2,4}",
        r")(?-u:\b)",
    ))
    .ok()
});
/// A country code, two check digits and up to 30 more letters or digits,
/// optionally with single spaces, in either case (the country's length,
/// the case, and where the spaces are, are checked afterwards).
static IBAN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9A-Za-z_])([A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30})").ok()
});
/// `AAA-GG-SSSS`, `AAA GG SSSS` or nine bare digits (separators checked afterwards).
static SSN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9A-Za-z_])([0-9]{3}[\- ]?[0-9]{2}[\- ]?[0-9]{4})(?-u:\b)").ok()
});
/// A dotted quad of one to three digits each, not after a dot.
static IPV4: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9A-Za-z_.])([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})(?-u:\b)").ok()
});
/// Hex groups joined by at least two colons, optionally ending in a dotted
/// quad, not after a colon or dot (`std::net::Ipv6Addr` decides which are
/// addresses).
static IPV6: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9A-Za-z_:.])([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?:\.[0-9]{1,3}){3})?)").ok()
});

/// The candidates `pattern` proposes in `text`: group 1 of each match, or
/// the whole match for a pattern without groups (none if it did not compile).
fn candidates<'t>(
    pattern: &'static LazyLock<Option<Regex>>,
    text: &'t str,
) -> impl Iterator<Item = Match<'t>> {
    LazyLock::force(pattern)
        .as_ref()
        .into_iter()
        .flat_map(move |regex| regex.captures_iter(text))
        .filter_map(|found| found.get(1).or_else(|| found.get(0)))
}

/// Whether the candidate at `span` is a value on its own: no letter or digit
/// touches it, and no `-` or `.` joins it to a digit beyond (`12-` + span, span + `.5`).
fn stands_alone(text: &str, span: &Range<usize>) -> bool {
    let bytes = text.as_bytes();
    let byte = |at: Option<usize>| at.and_then(|i| bytes.get(i)).copied();
    let before = byte(span.start.checked_sub(1));
    let beyond_before = byte(span.start.checked_sub(2));
    let after = byte(Some(span.end));
    let beyond_after = byte(span.end.checked_add(1));
    !joins(before, beyond_before) && !joins(after, beyond_after)
}

/// Whether `next` (the byte beside a candidate) makes the candidate part of
/// something longer, `beyond` being the byte past `next`.
fn joins(next: Option<u8>, beyond: Option<u8>) -> bool {
    let Some(next) = next else {
        return false;
    };
    next.is_ascii_alphanumeric()
        || (matches!(next, b'-' | b'.') && beyond.is_some_and(|b| b.is_ascii_digit()))
}

/// The ASCII digits of `s`, as numbers.
fn digits_of(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// The number the first `n` digits of `digits` spell (0 if there are fewer).
fn leading(digits: &[u32], n: usize) -> u32 {
    digits
        .get(..n)
        .map_or(0, |head| head.iter().fold(0, |acc, d| acc * 10 + d))
}

// ---------------------------------------------------------------------------
// Email

/// Longest local part RFC 5321 allows.
const MAX_LOCAL: usize = 64;
/// Longest domain name.
const MAX_DOMAIN: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;
/// How far back the start of a URL's authority is looked for.
const MAX_AUTHORITY_LOOKBACK: usize = 256;

fn find_emails(text: &str, found: &mut Vec<PiiMatch>) {
    for candidate in candidates(&EMAIL, text) {
        let span = candidate.range();
        if is_email(candidate.as_str())
            && !domain_continues(text, span.end)
            && !in_url_authority(text, span.start)
        {
            found.push(PiiMatch {
                kind: PiiKind::Email,
                span,
            });
        }
    }
}

/// Whether `candidate` (a pattern match) keeps to the lengths of a real address.
fn is_email(candidate: &str) -> bool {
    let Some((local, domain)) = candidate.rsplit_once('@') else {
        return false;
    };
    local.len() <= MAX_LOCAL
        && domain.len() <= MAX_DOMAIN
        && domain.split('.').all(|label| label.len() <= MAX_LABEL)
}

/// Whether the domain goes on past the match (`a@b.com-x`, `a@b.com_1`,
/// `a@b.com@c`), so that the match is only part of something else.
fn domain_continues(text: &str, end: usize) -> bool {
    text.as_bytes()
        .get(end)
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@'))
}

/// Whether the address at `start` is the userinfo and host of a URL
/// (`https://user:pw@host`) rather than an address: between the nearest
/// `://` before it and the match there is no `/`, `?`, `#` or whitespace.
fn in_url_authority(text: &str, start: usize) -> bool {
    let from = floor_char_boundary(text, start.saturating_sub(MAX_AUTHORITY_LOOKBACK));
    let Some(before) = text.get(from..start) else {
        return false;
    };
    let Some(scheme_end) = before.rfind("://") else {
        return false;
    };
    before
        .get(scheme_end + 3..)
        .is_some_and(|authority| !authority.contains(['/', '?', '#', ' ', '\t', '\n', '\r']))
}

/// The largest character boundary of `text` at or before `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Phone
//
// A candidate is split into its groups of digits and the separators between
// them, and judged by the first of these that applies:
//
// * `+` and a country code (ITU-T E.164): 8 to 15 digits, any grouping.
// * `00` and a country code (the international prefix of ITU-T E.164 Annex
//   and most national plans): as `+`, with at least one separator.
// * North-American (NANP) shape, `NXX NXX XXXX` with an optional leading
//   `1`: area code and exchange start with 2 to 9; the two separators are
//   the same, or the area code is in parentheses. A candidate of this shape
//   is judged only so (`555-123-4567` is not rescued by a looser rule).
// * An area code in parentheses (`(02) 9876 5432`, `(11) 98765-4321`):
//   2 digits, or 3 to 5 with a trunk `0` (three without are NANP), 8 to 12
//   digits in all.
// * A national number with the trunk prefix `0` (`020 7946 0958`,
//   `030 1234567`, `01 23 45 67 89`): 9 to 12 digits in groups, or 10 or 11
//   bare; the separators all alike (the first may differ), no date shape.
// * Otherwise a grouped national number without trunk prefix (`612 345 678`,
//   `12-34-56-78`, `345 6789`): groups of 2 to 4 digits split all by spaces
//   or all by dashes, 7 to 10 digits (11 or 12 as four or more groups split
//   by spaces, a country code written without `+`), never bare; two groups
//   (`345 6789`) only split by a space and after a word such as `phone` or
//   `call` (alone they are as often a house and street number); and not
//   shaped like a date (`2024-01-15`, `15-01-2024`), a year (`2024 1234`),
//   an SSN (`123-45-6789`) or an amount (`12 345 678 €`).
//
// Whatever the rule, the number must not continue a longer run of digits
// (`12 ` or `12-` before it, ` 34` or `:30` after it).

/// Digits of an international number after `+` or `00` (E.164: at most 15).
const INTERNATIONAL_DIGITS: RangeInclusive<usize> = 8..=15;
/// Digits of a number with an area code in parentheses.
const PAREN_DIGITS: RangeInclusive<usize> = 8..=12;
/// Digits of a grouped national number with trunk prefix `0`.
const TRUNK_DIGITS: RangeInclusive<usize> = 9..=12;
/// Digits of a bare national number with trunk prefix `0`.
const TRUNK_BARE_DIGITS: RangeInclusive<usize> = 10..=11;
/// Digits of a grouped national number without trunk prefix.
const GROUPED_DIGITS: RangeInclusive<usize> = 7..=10;
/// Digits of such a number when it is four or more groups split by spaces.
const GROUPED_LONG_DIGITS: RangeInclusive<usize> = 11..=12;
/// How far before a two-group number (`345 6789`, which is as often a house
/// and street number) a word from [`PHONE_WORDS`] must end.
const PHONE_CONTEXT: usize = 16;
/// Words that announce a phone number.
const PHONE_WORDS: [&str; 11] = [
    "phone", "tel", "mobile", "cell", "fax", "call", "dial", "desk", "contact", "number", "answer",
];
/// Years a leading group of four digits is read as (`2024 1234`).
const YEARS: RangeInclusive<u32> = 1900..=2099;
/// Currency signs and codes that make a grouped number an amount.
const CURRENCIES: [&str; 10] = ["$", "€", "£", "¥", "₹", "EUR", "USD", "GBP", "CHF", "JPY"];

fn find_phones(text: &str, found: &mut Vec<PiiMatch>) {
    let Some(regex) = LazyLock::force(&PHONE).as_ref() else {
        return;
    };
    for captures in regex.captures_iter(text) {
        let (Some(whole), Some(number)) = (captures.get(1), captures.get(2)) else {
            continue;
        };
        let span = whole.range();
        if is_phone(text, number.as_str(), &number.range()) && phone_stands_alone(text, &span) {
            found.push(PiiMatch {
                kind: PiiKind::Phone,
                span,
            });
        }
    }
}

/// A phone candidate split up: its digits, the lengths of its groups of
/// digits, the separators between groups, and which group (if any) is in
/// parentheses.
struct PhoneShape {
    plus: bool,
    digits: Vec<u32>,
    groups: Vec<usize>,
    separators: Vec<String>,
    paren: Option<usize>,
}

/// The shape of `number` (a candidate without its extension), or `None` if
/// its parentheses do not each hold exactly one group.
fn phone_shape(number: &str) -> Option<PhoneShape> {
    let plus = number.starts_with('+');
    let mut shape = PhoneShape {
        plus,
        digits: Vec::new(),
        groups: Vec::new(),
        separators: Vec::new(),
        paren: None,
    };
    let mut group = 0;
    let mut separator = String::new();
    let mut open: Option<usize> = None;
    for c in number.chars().skip(usize::from(plus)) {
        if let Some(d) = c.to_digit(10) {
            if group == 0 && !shape.groups.is_empty() {
                shape.separators.push(std::mem::take(&mut separator));
            }
            shape.digits.push(d);
            group += 1;
            continue;
        }
        if group > 0 {
            shape.groups.push(group);
            group = 0;
        }
        match c {
            '(' if open.is_none() && shape.paren.is_none() => open = Some(shape.groups.len()),
            ')' if open.is_some_and(|at| at + 1 == shape.groups.len()) => {
                shape.paren = open.take();
            }
            '(' | ')' => return None,
            _ => separator.push(c),
        }
    }
    if group > 0 {
        shape.groups.push(group);
    }
    open.is_none().then_some(shape)
}

/// Whether `number`, found at `span` of `text`, is a phone number by the
/// rules above.
fn is_phone(text: &str, number: &str, span: &Range<usize>) -> bool {
    let Some(shape) = phone_shape(number) else {
        return false;
    };
    let digits = &shape.digits;
    let first = digits.first().copied().unwrap_or(0);
    let second = digits.get(1).copied().unwrap_or(0);
    if shape.plus {
        return first != 0 && INTERNATIONAL_DIGITS.contains(&digits.len());
    }
    if first == 0 && second == 0 {
        return digits.get(2).is_some_and(|&d| d != 0)
            && INTERNATIONAL_DIGITS.contains(&(digits.len() - 2))
            && !shape.separators.is_empty();
    }
    if let Some(nanp) = nanp_verdict(&shape) {
        return nanp;
    }
    match shape.paren {
        Some(0) => paren_phone(&shape),
        Some(_) => false,
        None if first == 0 => trunk_phone(&shape),
        None => grouped_phone(text, &shape, span),
    }
}

/// `Some(verdict)` if `shape` is NANP-shaped (`[1] NXX NXX XXXX`), `None` if not.
fn nanp_verdict(shape: &PhoneShape) -> Option<bool> {
    let (country, groups) = match shape.groups.as_slice() {
        [1, rest @ ..] if shape.digits.first() == Some(&1) => (1, rest),
        groups => (0, groups),
    };
    // An area code never starts with 0 (NANP numbering plan): `083 564 9312`
    // is a national number with trunk prefix, judged by that rule.
    if groups != [3, 3, 4] || shape.digits.get(country) == Some(&0) {
        return None;
    }
    let area = shape.digits.get(country).copied().unwrap_or(0);
    let exchange = shape.digits.get(country + 3).copied().unwrap_or(0);
    let seps: Vec<&str> = shape.separators.iter().map(String::as_str).collect();
    let (country_sep, rest) = match seps.split_at_checked(country) {
        Some((head, rest)) => (head.first().copied(), rest),
        None => return Some(false),
    };
    let grouped = match (shape.paren, rest) {
        // `(555) 234-5678`, `(555)234-5678`, `(555) 234 5678`
        (Some(at), [_, last]) if at == country => matches!(*last, "-" | "." | " "),
        (None, [a, b]) => a == b && matches!(*a, "-" | "." | " "),
        _ => false,
    };
    let country_ok = match (country_sep, shape.paren) {
        (None, _) => true,
        (Some(sep), Some(_)) => sep.is_empty() || sep == " ",
        (Some(sep), None) => rest.first().is_some_and(|first| *first == sep),
    };
    Some(grouped && country_ok && (2..=9).contains(&area) && (2..=9).contains(&exchange))
}

/// An area code in parentheses at the start: `(02) 9876 5432`, `(11) 98765-4321`.
fn paren_phone(shape: &PhoneShape) -> bool {
    let Some((&area, rest)) = shape.groups.split_first() else {
        return false;
    };
    let trunk = shape.digits.first() == Some(&0);
    let area_ok = match area {
        2 => true,
        3..=5 => trunk,
        _ => false,
    };
    let seps = shape.separators.iter().skip(1);
    area_ok
        && !rest.is_empty()
        && rest.iter().all(|g| (2..=8).contains(g))
        && seps.into_iter().all(|s| s == " " || s == "-")
        && PAREN_DIGITS.contains(&shape.digits.len())
}

/// A national number with trunk prefix `0`: `020 7946 0958`, `0301234567`.
fn trunk_phone(shape: &PhoneShape) -> bool {
    let n = shape.digits.len();
    if shape.digits.get(1) == Some(&0) {
        return false;
    }
    let Some((&head, rest)) = shape.groups.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return TRUNK_BARE_DIGITS.contains(&n);
    }
    let alike = shape
        .separators
        .get(1..)
        .unwrap_or_default()
        .windows(2)
        .all(|pair| pair.first() == pair.last());
    let single = shape
        .separators
        .iter()
        .all(|s| matches!(s.as_str(), " " | "-" | "." | "/"));
    TRUNK_DIGITS.contains(&n)
        && (2..=5).contains(&head)
        && rest.iter().all(|g| (2..=8).contains(g))
        && single
        && alike
        && !matches!(shape.groups.as_slice(), [2, 2, 4, ..])
}

/// Whether groups begin like a date: `2024-01-15`, `15.01.2024`.
fn date_shaped(groups: &[usize]) -> bool {
    matches!(groups, [4, 2, 2, ..] | [2, 2, 4, ..])
}

/// A grouped national number without trunk prefix: `612 345 678`, `12-34-56-78`.
fn grouped_phone(text: &str, shape: &PhoneShape, span: &Range<usize>) -> bool {
    let groups = shape.groups.as_slice();
    let n = shape.digits.len();
    let Some(sep) = shape.separators.first().map(String::as_str) else {
        return false;
    };
    if !matches!(sep, " " | "-") || shape.separators.iter().any(|s| s != sep) {
        return false;
    }
    let spaced = sep == " ";
    let sized = match groups {
        // Two groups only split by a space; the second may be a long local number.
        [a, b] => {
            spaced
                && (2..=4).contains(a)
                && (2..=6).contains(b)
                && phone_named_before(text, span.start)
        }
        _ => groups.iter().all(|g| (2..=4).contains(g)),
    };
    let counted = GROUPED_DIGITS.contains(&n)
        || (spaced && groups.len() >= 4 && GROUPED_LONG_DIGITS.contains(&n));
    let year = groups.first() == Some(&4) && YEARS.contains(&leading(&shape.digits, 4));
    let thousands =
        groups.first().is_some_and(|g| *g <= 3) && groups.iter().skip(1).all(|g| *g == 3);
    sized
        && counted
        && !year
        && !date_shaped(groups)
        && groups != [3, 2, 4]
        && (!thousands || (spaced && !near_currency(text, span)))
}

/// Whether a word that announces a phone number (`phone`, `call`, …, any
/// case) ends at most [`PHONE_CONTEXT`] bytes before `start`.
fn phone_named_before(text: &str, start: usize) -> bool {
    let longest = PHONE_WORDS.iter().map(|w| w.len()).max().unwrap_or(0);
    let from = floor_char_boundary(text, start.saturating_sub(PHONE_CONTEXT + longest));
    let Some(before) = text.get(from..start) else {
        return false;
    };
    let before = before.to_ascii_lowercase();
    PHONE_WORDS.iter().any(|word| {
        before
            .rfind(word)
            .is_some_and(|at| before.len() - (at + word.len()) <= PHONE_CONTEXT)
    })
}

/// Whether a currency sign or code is next to `span` (a space apart at most).
fn near_currency(text: &str, span: &Range<usize>) -> bool {
    let before = text
        .get(..span.start)
        .unwrap_or_default()
        .trim_end_matches(' ');
    let after = text
        .get(span.end..)
        .unwrap_or_default()
        .trim_start_matches(' ');
    CURRENCIES
        .iter()
        .any(|c| before.ends_with(c) || after.starts_with(c))
}

/// Whether no letter or digit touches the phone number at `span`, and no
/// separator joins it to a digit beyond (`12 ` + span, span + `-34`, span + `:30`).
fn phone_stands_alone(text: &str, span: &Range<usize>) -> bool {
    let bytes = text.as_bytes();
    let byte = |at: Option<usize>| at.and_then(|i| bytes.get(i)).copied();
    let joins = |next: Option<u8>, beyond: Option<u8>| {
        next.is_some_and(|n| {
            n.is_ascii_alphanumeric()
                || (matches!(n, b'-' | b'.' | b'/' | b':' | b' ' | b',')
                    && beyond.is_some_and(|b| b.is_ascii_digit()))
        })
    };
    !joins(
        byte(span.start.checked_sub(1)),
        byte(span.start.checked_sub(2)),
    ) && !joins(byte(Some(span.end)), byte(span.end.checked_add(1)))
}

// ---------------------------------------------------------------------------
// Payment card
//
// Issuer identification numbers (the leading digits) and lengths per network,
// from the networks' published ranges as collected in ISO/IEC 7812 registers
// and the "Payment card number" article's IIN table (Wikipedia), which cites
// each network's own documentation (Visa and Mastercard rules, Discover's
// IIN ranges bulletin, JCB, UnionPay, Mir/NSPK, NPCI RuPay).

/// A card issuer: the range its first `prefix_len` digits fall in, and the
/// lengths its numbers have.
struct Issuer {
    prefix_len: usize,
    low: u32,
    high: u32,
    lengths: &'static [usize],
}

const SIXTEEN_TO_NINETEEN: &[usize] = &[16, 17, 18, 19];
const FOURTEEN_TO_NINETEEN: &[usize] = &[14, 15, 16, 17, 18, 19];
const TWELVE_TO_NINETEEN: &[usize] = &[12, 13, 14, 15, 16, 17, 18, 19];

const fn issuer(prefix_len: usize, low: u32, high: u32, lengths: &'static [usize]) -> Issuer {
    Issuer {
        prefix_len,
        low,
        high,
        lengths,
    }
}

/// Every network's ranges (overlaps, such as Discover's 65 and RuPay's, are harmless).
const ISSUERS: [Issuer; 24] = [
    // Visa: 4, 13, 16 or 19 digits.
    issuer(1, 4, 4, &[13, 16, 19]),
    // Mastercard: 51–55 and 2221–2720, 16 digits.
    issuer(2, 51, 55, &[16]),
    issuer(4, 2221, 2720, &[16]),
    // American Express: 34 and 37, 15 digits.
    issuer(2, 34, 34, &[15]),
    issuer(2, 37, 37, &[15]),
    // Discover: 6011, 644–649, 65, and the UnionPay co-brand 622126–622925.
    issuer(4, 6011, 6011, SIXTEEN_TO_NINETEEN),
    issuer(3, 644, 649, SIXTEEN_TO_NINETEEN),
    issuer(2, 65, 65, SIXTEEN_TO_NINETEEN),
    issuer(6, 622_126, 622_925, SIXTEEN_TO_NINETEEN),
    // JCB: 3528–3589, 16 to 19 digits; the legacy 1800 and 2131, 15 digits.
    issuer(4, 3528, 3589, SIXTEEN_TO_NINETEEN),
    issuer(4, 1800, 1800, &[15]),
    issuer(4, 2131, 2131, &[15]),
    // Diners Club International: 300–305, 3095, 36, 38–39, 14 to 19 digits.
    issuer(3, 300, 305, FOURTEEN_TO_NINETEEN),
    issuer(4, 3095, 3095, FOURTEEN_TO_NINETEEN),
    issuer(2, 36, 36, FOURTEEN_TO_NINETEEN),
    issuer(2, 38, 39, FOURTEEN_TO_NINETEEN),
    // UnionPay: 62, 16 to 19 digits.
    issuer(2, 62, 62, SIXTEEN_TO_NINETEEN),
    // Maestro: 50 and 56–69, 12 to 19 digits.
    issuer(2, 50, 50, TWELVE_TO_NINETEEN),
    issuer(2, 56, 69, TWELVE_TO_NINETEEN),
    // Mir: 2200–2204, 16 to 19 digits.
    issuer(4, 2200, 2204, SIXTEEN_TO_NINETEEN),
    // RuPay: 60, 65, 81, 82 and 508, 16 digits.
    issuer(2, 60, 60, &[16]),
    issuer(2, 65, 65, &[16]),
    issuer(2, 81, 82, &[16]),
    issuer(3, 508, 508, &[16]),
];

fn find_cards(text: &str, found: &mut Vec<PiiMatch>) {
    for candidate in candidates(&CARD, text) {
        let span = candidate.range();
        let digits = digits_of(candidate.as_str());
        if has_issuer(&digits) && luhn_valid(&digits) && stands_alone(text, &span) {
            found.push(PiiMatch {
                kind: PiiKind::PaymentCard,
                span,
            });
        }
    }
}

/// Whether a known issuer gives out numbers with this prefix and length.
fn has_issuer(digits: &[u32]) -> bool {
    ISSUERS.iter().any(|issuer| {
        let prefix = leading(digits, issuer.prefix_len);
        (issuer.low..=issuer.high).contains(&prefix) && issuer.lengths.contains(&digits.len())
    })
}

/// The Luhn checksum: every second digit from the right doubled (less 9
/// past 9), the sum a multiple of 10.
fn luhn_valid(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (false, _) => d,
            (true, doubled) if doubled > 9 => doubled - 9,
            (true, doubled) => doubled,
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------
// IBAN

/// IBAN lengths by country (SWIFT IBAN registry).
const IBAN_LENGTHS: [(&str, usize); 78] = [
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("LY", 25),
];

/// Letters and digits in a group of a printed IBAN.
const IBAN_GROUP: usize = 4;

fn find_ibans(text: &str, found: &mut Vec<PiiMatch>) {
    for candidate in candidates(&IBAN, text) {
        let Some((compact, len)) = iban_prefix(candidate.as_str()) else {
            continue;
        };
        let span = candidate.start()..candidate.start() + len;
        if mod97(&compact) == Some(1) && stands_alone(text, &span) {
            found.push(PiiMatch {
                kind: PiiKind::Iban,
                span,
            });
        }
    }
}

/// The IBAN at the start of `candidate` without its spaces, in upper case,
/// and how many bytes of `candidate` it takes: as many letters and digits as
/// its country's IBANs have, spaces only between groups of four, letters all
/// upper case or all lower case (`de89…` is an IBAN typed in lower case,
/// `De89…Ab` more likely an identifier).
fn iban_prefix(candidate: &str) -> Option<(String, usize)> {
    let country = candidate.get(..2)?.to_ascii_uppercase();
    let (_, length) = IBAN_LENGTHS.iter().find(|(code, _)| *code == country)?;
    let mut compact = String::with_capacity(*length);
    let (mut upper, mut lower) = (false, false);
    for (at, c) in candidate.char_indices() {
        if c == ' ' {
            if !compact.len().is_multiple_of(IBAN_GROUP) {
                return None;
            }
            continue;
        }
        upper |= c.is_ascii_uppercase();
        lower |= c.is_ascii_lowercase();
        if upper && lower {
            return None;
        }
        compact.push(c.to_ascii_uppercase());
        if compact.len() == *length {
            return Some((compact, at + 1));
        }
    }
    None
}

/// The IBAN check: the first four characters moved to the end, letters
/// read as 10 to 35, the number taken modulo 97.
fn mod97(iban: &str) -> Option<u32> {
    let (head, tail) = (iban.get(..4)?, iban.get(4..)?);
    tail.chars().chain(head.chars()).try_fold(0u32, |rest, c| {
        let value = c.to_digit(36)?;
        let scale = if value < 10 { 10 } else { 100 };
        Some((rest * scale + value) % 97)
    })
}

// ---------------------------------------------------------------------------
// US SSN

/// How far before bare digits the words "SSN" or "social security" may end.
const SSN_CONTEXT: usize = 20;
/// The words that make nine bare digits an SSN.
const SSN_WORDS: [&str; 2] = ["ssn", "social security"];

fn find_ssns(text: &str, found: &mut Vec<PiiMatch>) {
    for candidate in candidates(&SSN, text) {
        let span = candidate.range();
        let separators: Vec<char> = candidate
            .as_str()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        let shaped = match separators.as_slice() {
            [] => ssn_named_before(text, span.start),
            [first, second] => first == second,
            _ => false,
        };
        if shaped && ssn_valid(&digits_of(candidate.as_str())) && stands_alone(text, &span) {
            found.push(PiiMatch {
                kind: PiiKind::UsSsn,
                span,
            });
        }
    }
}

/// Whether an SSN can have these nine digits: area not 000, 666 or
/// 900–999, group not 00, serial not 0000.
fn ssn_valid(digits: &[u32]) -> bool {
    let area = leading(digits, 3);
    let group = digits.get(3..5).map_or(0, |g| leading(g, 2));
    let serial = digits.get(5..9).map_or(0, |s| leading(s, 4));
    digits.len() == 9 && area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Whether "SSN" or "social security" (any case) ends at most
/// [`SSN_CONTEXT`] bytes before `start`.
fn ssn_named_before(text: &str, start: usize) -> bool {
    let longest = SSN_WORDS.iter().map(|w| w.len()).max().unwrap_or(0);
    let from = floor_char_boundary(text, start.saturating_sub(SSN_CONTEXT + longest));
    let Some(before) = text.get(from..start) else {
        return false;
    };
    let before = before.to_ascii_lowercase();
    SSN_WORDS.iter().any(|word| {
        before
            .rfind(word)
            .is_some_and(|at| before.len() - (at + word.len()) <= SSN_CONTEXT)
    })
}

// ---------------------------------------------------------------------------
// IP address

fn find_ipv4(text: &str, found: &mut Vec<PiiMatch>) {
    for candidate in candidates(&IPV4, text) {
        let span = candidate.range();
        // The standard parser takes exactly four decimal octets of 0–255
        // and refuses leading zeros.
        if Ipv4Addr::from_str(candidate.as_str()).is_ok() && stands_alone(text, &span) {
            found.push(PiiMatch {
                kind: PiiKind::IpAddress,
                span,
            });
        }
    }
}

fn find_ipv6(text: &str, found: &mut Vec<PiiMatch>) {
    for candidate in candidates(&IPV6, text) {
        let span = candidate.range();
        let address = candidate.as_str();
        // A decimal digit, so that `a::b` and `dead::beef` in code or
        // prose are not addresses; `::1` and `fe80::1` keep theirs.
        if address.contains(|c: char| c.is_ascii_digit())
            && Ipv6Addr::from_str(address).is_ok()
            && ipv6_stands_alone(text, &span)
        {
            found.push(PiiMatch {
                kind: PiiKind::IpAddress,
                span,
            });
        }
    }
}

/// Whether nothing that could continue an IPv6 address touches `span`:
/// no letter, digit or colon on either side, no `.` and digit after.
fn ipv6_stands_alone(text: &str, span: &Range<usize>) -> bool {
    let bytes = text.as_bytes();
    let before = span
        .start
        .checked_sub(1)
        .and_then(|i| bytes.get(i))
        .copied();
    let after = bytes.get(span.end).copied();
    let beyond_after = span.end.checked_add(1).and_then(|i| bytes.get(i)).copied();
    let continues = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b':');
    !continues(before) && !continues(after) && !joins(after, beyond_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds and texts of the matches in `text`.
    fn found(text: &str) -> Vec<(PiiKind, &str)> {
        find_pii(text)
            .into_iter()
            .map(|m| (m.kind, &text[m.span]))
            .collect()
    }

    fn kinds(text: &str) -> Vec<PiiKind> {
        find_pii(text).into_iter().map(|m| m.kind).collect()
    }

    #[test]
    fn every_pattern_compiles() {
        for pattern in [&EMAIL, &PHONE, &CARD, &IBAN, &SSN, &IPV4, &IPV6] {
            assert!(LazyLock::force(pattern).is_some());
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in PiiKind::ALL {
            assert_eq!(PiiKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::json!(kind.as_str()))
            );
        }
        assert_eq!(PiiKind::parse("ssn"), None);
    }

    #[test]
    fn emails() {
        assert_eq!(
            found("mail jane.doe+tag@example.co.uk now"),
            [(PiiKind::Email, "jane.doe+tag@example.co.uk")]
        );
        assert_eq!(
            found("<a.b-c_d%e@sub-1.example.org>"),
            [(PiiKind::Email, "a.b-c_d%e@sub-1.example.org")]
        );
        assert_eq!(
            found("to: bob@example.com."),
            [(PiiKind::Email, "bob@example.com")]
        );
        for text in [
            "user@localhost",
            "user@example.c",
            "user@example.c0m",
            "@example.com",
            "user@.com",
            "user@example.com-x",
            "user@example.com@other.org",
            "a@b",
            "version 1.2@3.4",
        ] {
            assert_eq!(kinds(text), [], "{text}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(kinds(&long_local), []);
    }

    #[test]
    fn email_in_a_url_authority_is_not_an_address() {
        assert_eq!(kinds("https://user:secret@example.com/path"), []);
        assert_eq!(kinds("ftp://anonymous@ftp.example.org"), []);
        // In the query it is an address being sent.
        assert_eq!(
            found("https://example.com/invite?to=joe@example.org"),
            [(PiiKind::Email, "joe@example.org")]
        );
    }

    #[test]
    fn phones() {
        for phone in [
            "+1 (555) 123-4567",
            "+44 20 7946 0958",
            "+49 (0)30 1234567",
            "+33.1.23.45.67.89",
            "+61412345678",
            "(555) 234-5678",
            "(555)234-5678",
            "(555) 234 5678",
            "555-234-5678",
            "1-555-234-5678",
            "555.234.5678",
        ] {
            let text = format!("call {phone} today");
            assert_eq!(found(&text), [(PiiKind::Phone, phone)], "{phone}");
        }
    }

    #[test]
    fn not_phones() {
        for text in [
            "order 5551234567",
            "order #20240115123456",
            // The exchange (the second group) starts with 2–9 too.
            "555-123-4567",
            "(555) 123-4567",
            "155-234-5678",
            "(155) 234-5678",
            "2024-01-15 12:30:45",
            "2024-01-15T12:30:45+05:30",
            "id 12-555-234-5678",
            "555-234-5678-89",
            "+1234567",
            "+0123456789",
            "+1234567890123456",
            "ab+12345678cd",
            "550e8400-e29b-41d4-a716-446655440000",
            "12345678-1234-5678-1234-567812345678",
        ] {
            assert!(!kinds(text).contains(&PiiKind::Phone), "{text}");
        }
    }

    #[test]
    fn national_and_extended_phones() {
        for phone in [
            // Trunk prefix 0 (UK drama ranges, invented DE/FR/NL/AU numbers).
            "020 7946 0958",
            "07700 900123",
            "079 4600 0958",
            "030 1234567",
            "0301-2345678",
            "030/1234567",
            "01 23 45 67 89",
            "01.23.45.67.89",
            "0612 34 56 78",
            "083 564 9312",
            "0201234567",
            // Area code in parentheses.
            "(02) 9876 5432",
            "(11) 98765-4321",
            "(21) 555-123",
            "(030) 1234567",
            // NANP with extensions, and the 00 international prefix.
            "555-234-5678 x123",
            "555.234.5678x42",
            "(555) 234-5678 ext. 42",
            "(555)234-5678x1234",
            "+1-555-234-5678x789",
            "+44 20 7946 0958 ext 12",
            "001-555-234-5678",
            "0044 20 7946 0958",
            "555 234 5678",
            // Grouped national numbers without trunk prefix.
            "612 345 678",
            "12 34 56 78",
            "12-34-56-78",
            "412 34 567",
            "21 345 67 89",
            "91 9876 543 210",
        ] {
            let text = format!("call {phone} today");
            assert_eq!(found(&text), [(PiiKind::Phone, phone)], "{phone}");
        }
        // Two groups only after a word that announces a phone number.
        assert_eq!(found("Phone: 345 6789"), [(PiiKind::Phone, "345 6789")]);
        assert_eq!(
            found("mobile:\n9123 4567\n"),
            [(PiiKind::Phone, "9123 4567")]
        );
    }

    #[test]
    fn digit_runs_that_are_not_phones() {
        for text in [
            "on 2024-01-15 at noon",
            "on 15-01-2024 at noon",
            "on 15.01.2024 at noon",
            "on 01.02.2024 at noon",
            "on 01-02-2024 10:30",
            "on 2024 1234 items",
            "code 123-45-6789 here",
            "pay 12 345 678 € now",
            "pay $123 456 789 now",
            "pay 123 456 789 EUR now",
            "370 3911 Fourth Avenue",
            "between 500-1000 users",
            "range 555-1234",
            "host 10.20.30.40 up",
            "version 10.20.30.40.50",
            "id 0000123456 ok",
            "id 00 12 34 ok",
            "id 012345678 ok",
            "id 012345678901 ok",
            "ref 12 34 56 78 90 12 34",
            "lot 1234 5678 9012",
            "serial 4111 1111 1111 1112",
            "at 12 34 56 78:30",
            "1.2.3",
            "build 20240115 123045",
            "(2020) 1234 5678",
            "(555) 2345678",
            "+1 (555",
            "555-234-5678x",
        ] {
            assert!(!kinds(text).contains(&PiiKind::Phone), "{text}");
        }
    }

    #[test]
    fn payment_cards() {
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "6445644564456445",
            "3530111333300000",
            "30569309025904",
            "6200000000000005",
            "4222222222222",
            // Maestro (50, 56–69) from 12 digits, one in groups of four.
            "501800000009",
            "5018 0000 0009",
            "675900000000",
            "6759649826438453",
            "6304000000000000000",
            // JCB's legacy 15-digit ranges.
            "180000000000002",
            "213100000000001",
            // Mir, Discover's UnionPay co-brand, RuPay, Diners 3095 and 39.
            "2200000000000004",
            "6221260000000000",
            "8100000000000002",
            "5080000000000002",
            "30950000000000",
            "39000000000005",
        ] {
            let text = format!("card: {card}, exp 12/29");
            assert_eq!(found(&text), [(PiiKind::PaymentCard, card)], "{card}");
        }
    }

    #[test]
    fn not_payment_cards() {
        for text in [
            "4111111111111112",
            "4111 1111 1111 1112",
            "1234567812345670",
            "41111111111111110",
            "94111111111111111",
            "4111 1111-1111 1111",
            "4111  1111 1111 1111",
            "x4111111111111111",
            "4111111111111111.5",
            "12-4111-1111-1111-1111",
            "order 20240115093045123",
            "550e8400-e29b-41d4-a716-446655440000",
            "12345678-1234-5678-1234-567812345678",
            // Luhn-valid, but 35 outside JCB's 3528–3589 and no issuer's 12 or 06.
            "3500000000000009",
            "3590000000000000",
            "120000000006",
            "060400000000",
            // Maestro's 12 digits are not Visa's, Amex's 16 not Amex's.
            "411111111117",
            "3711111111111117",
        ] {
            assert!(!kinds(text).contains(&PiiKind::PaymentCard), "{text}");
        }
    }

    #[test]
    fn ibans() {
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "GB82 WEST 1234 5698 7654 32",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "BE68 5390 0754 7034",
            "CH93 0076 2011 6238 5295 7",
            "NO93 8601 1117 947",
            "AT61 1904 3002 3457 3201",
            "de89 3704 0044 0532 0130 00",
            "gb82west12345698765432",
        ] {
            let text = format!("IBAN {iban} (BIC COBADEFFXXX)");
            assert_eq!(found(&text), [(PiiKind::Iban, iban)], "{iban}");
        }
        // Groups may be followed by more words.
        assert_eq!(
            found("pay DE89 3704 0044 0532 0130 00 BY friday"),
            [(PiiKind::Iban, "DE89 3704 0044 0532 0130 00")]
        );
    }

    #[test]
    fn not_ibans() {
        for text in [
            "DE88 3704 0044 0532 0130 00",
            "DE89 3704 0044 0532 0130 0",
            "DE89370400440532013000123",
            "DE8 93704 0044 0532 0130 00",
            "ZZ89370400440532013000",
            "XDE89370400440532013000",
            "de88 3704 0044 0532 0130 00",
            "Gb82West12345698765432",
            "GB82west12345698765432",
        ] {
            assert!(!kinds(text).contains(&PiiKind::Iban), "{text}");
        }
    }

    #[test]
    fn ssns() {
        assert_eq!(found("SSN 123-45-6789"), [(PiiKind::UsSsn, "123-45-6789")]);
        assert_eq!(
            found("it is 123 45 6789."),
            [(PiiKind::UsSsn, "123 45 6789")]
        );
        assert_eq!(found("ssn: 123456789"), [(PiiKind::UsSsn, "123456789")]);
        assert_eq!(
            found("Social Security Number: 078051120"),
            [(PiiKind::UsSsn, "078051120")]
        );
    }

    #[test]
    fn not_ssns() {
        for text in [
            "666-12-3456",
            "000-12-3456",
            "900-12-3456",
            "123-00-6789",
            "123-45-0000",
            "123-45 6789",
            "order 123456789",
            "ssn is in the file, the order id being: 123456789",
            "1123-45-6789",
            "123-45-6789-1",
        ] {
            assert!(!kinds(text).contains(&PiiKind::UsSsn), "{text}");
        }
    }

    #[test]
    fn ip_addresses() {
        for ip in [
            "192.168.1.10",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "2001:db8:85a3::8a2e:370:7334",
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
            "::ffff:192.0.2.1",
        ] {
            let text = format!("host {ip}, port 22");
            assert_eq!(found(&text), [(PiiKind::IpAddress, ip)], "{ip}");
        }
        assert_eq!(found("http://[::1]:8080/"), [(PiiKind::IpAddress, "::1")]);
        assert_eq!(found("10.0.0.1:443"), [(PiiKind::IpAddress, "10.0.0.1")]);
    }

    #[test]
    fn not_ip_addresses() {
        for text in [
            "999.1.1.1",
            "256.1.1.1",
            "01.2.3.4",
            "version 1.2.3.4.5",
            "v1.2.3.4",
            "1.2.3",
            "at 12:30:45",
            "12:30",
            "00:1A:2B:3C:4D:5E",
            "std::fmt::Display",
            "a::b",
            "::",
            "1:2:3:4:5:6:7:8:9",
        ] {
            assert!(!kinds(text).contains(&PiiKind::IpAddress), "{text}");
        }
    }

    #[test]
    fn spans_are_byte_offsets_in_order() {
        let text = "é→ jane@example.com, 4111 1111 1111 1111 и 10.0.0.1";
        let matches = find_pii(text);
        let spans: Vec<(PiiKind, &str)> = matches
            .iter()
            .map(|m| (m.kind, &text[m.span.clone()]))
            .collect();
        assert_eq!(
            spans,
            [
                (PiiKind::Email, "jane@example.com"),
                (PiiKind::PaymentCard, "4111 1111 1111 1111"),
                (PiiKind::IpAddress, "10.0.0.1"),
            ]
        );
        let start = text.find("jane").unwrap_or_default();
        assert_eq!(matches[0].span, start..start + "jane@example.com".len());
    }

    #[test]
    fn overlaps_keep_the_earlier_and_longer() {
        // The IPv4 tail of the IPv6 address is not reported on its own.
        assert_eq!(
            found("::ffff:10.0.0.1"),
            [(PiiKind::IpAddress, "::ffff:10.0.0.1")]
        );
        // An email whose local part is an IP address is one email.
        assert_eq!(
            found("10.0.0.1@example.com"),
            [(PiiKind::Email, "10.0.0.1@example.com")]
        );
        let resolved = without_overlaps(vec![
            PiiMatch {
                kind: PiiKind::IpAddress,
                span: 0..5,
            },
            PiiMatch {
                kind: PiiKind::Phone,
                span: 0..5,
            },
            PiiMatch {
                kind: PiiKind::Email,
                span: 2..9,
            },
            PiiMatch {
                kind: PiiKind::Iban,
                span: 9..12,
            },
        ]);
        assert_eq!(
            resolved,
            [
                PiiMatch {
                    kind: PiiKind::Phone,
                    span: 0..5
                },
                PiiMatch {
                    kind: PiiKind::Iban,
                    span: 9..12
                },
            ]
        );
    }

    #[test]
    fn redaction() {
        let text = "Mail jane@example.com or call +44 20 7946 0958; card 4111-1111-1111-1111.";
        assert_eq!(
            redact_pii(text, &find_pii(text)),
            "Mail [REDACTED:email] or call [REDACTED:phone]; card [REDACTED:payment-card]."
        );
        assert_eq!(redact_pii("nothing here", &[]), "nothing here");
        // Out-of-range, overlapping and mid-character spans are skipped.
        let odd = [
            PiiMatch {
                kind: PiiKind::Email,
                span: 0..2,
            },
            PiiMatch {
                kind: PiiKind::Phone,
                span: 1..3,
            },
            PiiMatch {
                kind: PiiKind::Iban,
                span: 4..5,
            },
            PiiMatch {
                kind: PiiKind::UsSsn,
                span: 7..99,
            },
        ];
        assert_eq!(redact_pii("abcdéf", &odd), "[REDACTED:email]cdéf");
    }

    #[test]
    fn a_megabyte_of_digits_finishes() {
        let digits = "7".repeat(1 << 20);
        assert_eq!(kinds(&digits), []);
        let grouped = "4111 ".repeat(1 << 18);
        assert_eq!(kinds(&grouped), []);
        let dotted = "1.".repeat(1 << 19);
        assert_eq!(kinds(&dotted), []);
    }

    #[test]
    fn a_megabyte_without_spaces_finishes() {
        for unit in [
            "a", "a.", "a@", "a@b.", "+1", "1-", "1:", "ab12", "DE89", "x@y.zz", "12 ", "01.",
            "(1)", "1x", "de89",
        ] {
            let text = unit.repeat((1 << 20) / unit.len());
            let _ = find_pii(&text);
        }
    }
}
