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
use std::ops::Range;
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
/// `+` and 8 to 15 digits, with up to two of ` .-()` between digits.
static E164: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9A-Za-z_])(\+[1-9](?:[ .\-()]{0,2}[0-9]){7,14})(?-u:\b)").ok()
});
/// North-American numbers: `(NXX) NXX-XXXX`, `NXX-NXX-XXXX`, `NXX.NXX.XXXX`
/// (N is 2 to 9), optionally after the country code 1.
static NANP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:^|[^0-9A-Za-z_])(",
        r"(?:1 ?)?\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[\-. ][0-9]{4}",
        r"|(?:1-)?[2-9][0-9]{2}-[2-9][0-9]{2}-[0-9]{4}",
        r"|(?:1\.)?[2-9][0-9]{2}\.[2-9][0-9]{2}\.[0-9]{4}",
        r")(?-u:\b)",
    ))
    .ok()
});
/// 13 to 19 digits, bare or in groups after a first group of four, all
/// separated by single spaces or all by single dashes.
static CARD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:^|[^0-9A-Za-z_])(",
        r"[0-9]{13,19}|[0-9]{4}(?:-[0-9]{3,6}){2,4}|[0-9]{4}(?: [0-9]{3,6}){2,4}",
        r")(?-u:\b)",
    ))
    .ok()
});
/// A country code, two check digits and up to 30 more letters or digits,
/// optionally with single spaces (the country's length, and where the
/// spaces are, are checked afterwards).
static IBAN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9A-Za-z_])([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30})").ok()
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

/// Fewest and most digits of an international number.
const E164_DIGITS: Range<usize> = 8..16;

fn find_phones(text: &str, found: &mut Vec<PiiMatch>) {
    for candidate in candidates(&E164, text) {
        let span = candidate.range();
        let digits = digits_of(candidate.as_str()).len();
        if E164_DIGITS.contains(&digits) && stands_alone(text, &span) {
            found.push(PiiMatch {
                kind: PiiKind::Phone,
                span,
            });
        }
    }
    for candidate in candidates(&NANP, text) {
        let span = candidate.range();
        if stands_alone(text, &span) {
            found.push(PiiMatch {
                kind: PiiKind::Phone,
                span,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Payment card

/// A card issuer: the range its first `prefix_len` digits fall in, and the
/// lengths its numbers have.
struct Issuer {
    prefix_len: usize,
    low: u32,
    high: u32,
    lengths: &'static [usize],
}

const SIXTEEN_TO_NINETEEN: &[usize] = &[16, 17, 18, 19];

/// Visa, Mastercard, Amex, Discover, JCB, Diners Club and UnionPay.
const ISSUERS: [Issuer; 13] = [
    Issuer {
        prefix_len: 1,
        low: 4,
        high: 4,
        lengths: &[13, 16, 19],
    },
    Issuer {
        prefix_len: 2,
        low: 51,
        high: 55,
        lengths: &[16],
    },
    Issuer {
        prefix_len: 4,
        low: 2221,
        high: 2720,
        lengths: &[16],
    },
    Issuer {
        prefix_len: 2,
        low: 34,
        high: 34,
        lengths: &[15],
    },
    Issuer {
        prefix_len: 2,
        low: 37,
        high: 37,
        lengths: &[15],
    },
    Issuer {
        prefix_len: 4,
        low: 6011,
        high: 6011,
        lengths: SIXTEEN_TO_NINETEEN,
    },
    Issuer {
        prefix_len: 2,
        low: 65,
        high: 65,
        lengths: SIXTEEN_TO_NINETEEN,
    },
    Issuer {
        prefix_len: 3,
        low: 644,
        high: 649,
        lengths: SIXTEEN_TO_NINETEEN,
    },
    Issuer {
        prefix_len: 4,
        low: 3528,
        high: 3589,
        lengths: SIXTEEN_TO_NINETEEN,
    },
    Issuer {
        prefix_len: 3,
        low: 300,
        high: 305,
        lengths: &[14, 15, 16, 17, 18, 19],
    },
    Issuer {
        prefix_len: 2,
        low: 36,
        high: 36,
        lengths: &[14, 15, 16, 17, 18, 19],
    },
    Issuer {
        prefix_len: 2,
        low: 38,
        high: 38,
        lengths: &[14, 15, 16, 17, 18, 19],
    },
    Issuer {
        prefix_len: 2,
        low: 62,
        high: 62,
        lengths: SIXTEEN_TO_NINETEEN,
    },
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

/// The IBAN at the start of `candidate` without its spaces, and how many
/// bytes of `candidate` it takes: as many letters and digits as its
/// country's IBANs have, spaces only between groups of four.
fn iban_prefix(candidate: &str) -> Option<(String, usize)> {
    let country = candidate.get(..2)?;
    let (_, length) = IBAN_LENGTHS.iter().find(|(code, _)| *code == country)?;
    let mut compact = String::with_capacity(*length);
    for (at, c) in candidate.char_indices() {
        if c == ' ' {
            if !compact.len().is_multiple_of(IBAN_GROUP) {
                return None;
            }
            continue;
        }
        compact.push(c);
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
        for pattern in [&EMAIL, &E164, &NANP, &CARD, &IBAN, &SSN, &IPV4, &IPV6] {
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
            "a", "a.", "a@", "a@b.", "+1", "1-", "1:", "ab12", "DE89", "x@y.zz",
        ] {
            let text = unit.repeat((1 << 20) / unit.len());
            let _ = find_pii(&text);
        }
    }
}
