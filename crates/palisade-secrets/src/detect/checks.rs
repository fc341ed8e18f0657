//! The checks a rule's match must pass before it counts: checksums, decodings, and the filters that tell a value from a placeholder.

use base64::Engine as _;

/// CRC-32 (IEEE 802.3, reflected, the one zlib and PNG use), table-driven.
/// Written here rather than pulled in as a crate: GitHub's checksum is
/// computed over 30 bytes, and twenty lines do not need a dependency.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    #[expect(
        clippy::indexing_slicing,
        reason = "a constant table filled over its own index range, at compile time"
    )]
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        let slot = usize::from((crc as u8) ^ b);
        crc = TABLE.get(slot).copied().unwrap_or(0) ^ (crc >> 8);
    }
    !crc
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` in base 62 (digits, then upper case, then lower case), left-padded with
/// `0` to `width` digits: how GitHub writes a token's checksum.
pub(crate) fn base62(mut n: u32, width: usize) -> Vec<u8> {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62.get((n % 62) as usize).copied().unwrap_or(b'0');
        n /= 62;
    }
    out
}

/// A classic GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`) is a
/// prefix, 30 random base62 characters and 6 characters of checksum: the
/// CRC-32 of the 30 random characters, in base 62. A token whose checksum
/// does not verify was not issued by GitHub.
pub(crate) fn github_checksum_ok(token: &[u8]) -> bool {
    let (Some(random), Some(checksum)) = (token.get(4..34), token.get(34..40)) else {
        return false;
    };
    token.len() == 40 && base62(crc32(random), 6) == checksum
}

fn decode_base64url(part: &[u8]) -> Option<Vec<u8>> {
    let trimmed = part
        .strip_suffix(b"==")
        .or_else(|| part.strip_suffix(b"="))
        .unwrap_or(part);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
        .or_else(|| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(trimmed)
                .ok()
        })
}

/// A JWT's first part decodes to a JSON object naming its `alg`.
pub(crate) fn jwt_header_ok(token: &[u8]) -> bool {
    let Some(header) = token.split(|&b| b == b'.').next() else {
        return false;
    };
    let Some(json) = decode_base64url(header) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&json) {
        Ok(serde_json::Value::Object(map)) => {
            map.get("alg").is_some_and(serde_json::Value::is_string)
        }
        Ok(_) | Err(_) => false,
    }
}

/// A base64 run that decodes to a PEM private key block.
pub(crate) fn base64_pem_ok(run: &[u8]) -> bool {
    let trimmed: Vec<u8> = run.iter().copied().filter(|b| *b != b'=').collect();
    let usable = trimmed.get(..trimmed.len() / 4 * 4).unwrap_or(&[]);
    let Ok(decoded) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(usable) else {
        return false;
    };
    contains(&decoded, b"-----BEGIN") && contains(&decoded, b"PRIVATE KEY")
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Shannon entropy of the bytes, in bits per byte.
pub(crate) fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let len = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

fn longest_run(value: &[u8]) -> usize {
    let mut best = 0;
    let mut run = 0;
    let mut prev = None;
    for &b in value {
        run = if prev == Some(b) { run + 1 } else { 1 };
        prev = Some(b);
        best = best.max(run);
    }
    best
}

/// Template syntax, masks and references to where the value really is.
const REFERENCE_MARKS: &[&str] = &[
    "xxxx",
    "****",
    "####",
    // An ellipsis (`..`, `...`, `…`): the value was cut short.
    "..",
    "\u{2026}",
    "${",
    "{{",
    "}}",
    "#{",
    "%(",
    "$(",
    "<",
    ">",
    "process.env",
    "os.environ",
    "getenv",
    "env(",
    "env[",
    "secrets.",
    "vault:",
];

/// Markers of a value that stands for a secret rather than being one: the
/// words documentation uses (on top of [`REFERENCE_MARKS`]).
const PLACEHOLDER_MARKS: &[&str] = &[
    "your",
    "example",
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "redacted",
    "dummy",
    "sample",
    "replace",
    "insert",
    "fake",
    "todo",
    "fixme",
    "000000",
    "123456",
    "abcdef",
    "here",
    "notreal",
    "not-real",
    "not_real",
    "goes_",
    "mysecret",
    "mypassword",
];

/// Whole values that are words, types or literals of code, not secrets.
const PLACEHOLDER_WORDS: &[&str] = &[
    "none",
    "null",
    "nil",
    "undefined",
    "true",
    "false",
    "string",
    "str",
    "required",
    "optional",
    "secret",
    "password",
    "passwd",
    "pass",
    "token",
    "key",
    "apikey",
    "api_key",
    "value",
    "test",
    "testing",
    "admin",
    "root",
    "user",
    "username",
    "default",
    "empty",
    "hidden",
    "masked",
    "unknown",
    "bearer",
    "basic",
    "auth",
    "private",
    "public",
    "str",
    "int",
    "bool",
    "any",
    "object",
    "bytes",
    "text",
    "number",
    "yes",
    "no",
    "off",
    "on",
    "env",
    "config",
    "settings",
    "encrypted",
    "secure",
    "qwerty",
    "letmein",
    "foobar",
    "foo",
    "bar",
    "baz",
];

/// A run of `len` characters each one after (or before) the previous
/// (`abcde`, `34567`, `98765`), or the same every other character
/// (`a1b2c3d4e5`): typed by a person writing an example, almost never drawn
/// at random.
fn has_sequence(value: &[u8], len: usize) -> bool {
    [1, 2].into_iter().any(|stride| {
        [1u8, u8::MAX].into_iter().any(|step| {
            // One run per phase: with a stride of 2, even and odd positions
            // are separate sequences.
            let mut runs = [1usize; 2];
            value
                .iter()
                .zip(value.iter().skip(stride))
                .enumerate()
                .any(|(i, (&a, &b))| {
                    let Some(run) = runs.get_mut(i % stride) else {
                        return false;
                    };
                    *run = if a.is_ascii_alphanumeric()
                        && b.is_ascii_alphanumeric()
                        && b == a.wrapping_add(step)
                    {
                        *run + 1
                    } else {
                        1
                    };
                    *run >= len
                })
        })
    })
}

/// The value without the quotes (and escaping backslashes) around it.
fn strip_quotes(mut value: &[u8]) -> &[u8] {
    while let [b'"' | b'\'' | b'\\', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b'"' | b'\'' | b'\\'] = value {
        value = rest;
    }
    value
}

/// A variable interpolated into the value (`$HOME`, `${X}`, `$(cmd)`,
/// `/home/$USER`). A `$` inside a word (`pa$$word`, `super$ecret`) is a
/// character of the password, the way people write them, not a variable.
fn interpolates(value: &[u8]) -> bool {
    value.windows(2).enumerate().any(|(i, w)| match w {
        [b'$', b'{' | b'('] => true,
        [b'$', next] if next.is_ascii_alphabetic() || *next == b'_' => {
            let before = i.checked_sub(1).and_then(|j| value.get(j));
            before.is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'$')
        }
        _ => false,
    })
}

/// A value that is a template, a variable, a mask or a reference to where
/// the secret really is (`${X}`, `$VAR`, `%VAR%`, `****`, `[PASSWORD]`), but
/// not one that is merely a word: in a slot that holds only a password,
/// `secret` is the password.
pub(crate) fn is_reference_or_mask(value: &[u8]) -> bool {
    let value = strip_quotes(value.trim_ascii());
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let lower = text.to_ascii_lowercase();
    let run = longest_run(value);
    let bracketed = |open: char, close: char| lower.starts_with(open) && lower.ends_with(close);
    lower.is_empty()
        || (run >= 5 && run * 2 > value.len())
        || (bracketed('[', ']') && lower.len() > 2)
        || interpolates(value)
        || REFERENCE_MARKS.iter().any(|m| lower.contains(m))
        || lower.starts_with('$')
        || (lower.starts_with('%') && lower.ends_with('%'))
}

/// A value that is a placeholder, a mask, a template or a reference to
/// something else (`$VAR`, `%VAR%`, `config.password`), not a secret.
pub(crate) fn is_placeholder(value: &[u8]) -> bool {
    if is_reference_or_mask(value) {
        return true;
    }
    let value = strip_quotes(value.trim_ascii());
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let lower = text.to_ascii_lowercase();
    // A run of one character: a mask (`aaaa…`, `0000…`). In long base64,
    // runs of `A` (zero bytes) are common, so there a run must also fill a
    // good part of the value.
    let run = longest_run(value);
    if lower.is_empty()
        || run * 2 > value.len()
        || (run >= 5 && (value.len() < 32 || run * 4 > value.len()))
    {
        return true;
    }
    if has_sequence(value, 5) || interpolates(value) {
        return true;
    }
    if PLACEHOLDER_WORDS.contains(&lower.as_str())
        || PLACEHOLDER_MARKS.iter().any(|m| lower.contains(m))
    {
        return true;
    }
    let starts_var = lower.starts_with('$') || lower.starts_with('%') && lower.ends_with('%');
    starts_var || lower.starts_with('@') || lower.starts_with("!ref") || lower.starts_with("arn:")
}

/// An unquoted value that reads as code: a dotted path, a call, a type.
/// A dotted value with a random-looking part (`s.` and 24 random
/// characters, a Vault token) is not a member access: members are words.
pub(crate) fn is_code_reference(value: &[u8]) -> bool {
    let identifier_like = value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'(' | b')'));
    let has_digit = value.iter().any(u8::is_ascii_digit);
    let dotted = value.contains(&b'.') || value.contains(&b'(');
    let random_part = value
        .split(|b| matches!(b, b'.' | b'(' | b')'))
        .any(|part| part.len() >= 16 && looks_random(part, 16));
    identifier_like && (dotted || !has_digit) && !random_part
}

/// A value made of words joined by separators (`jetbrains.mps.v8_elimination`,
/// `cmp2-qat-1208358310`, `#add-password`): an identifier, a selector or a
/// version, not something drawn at random. Each part is lower-case letters
/// (digits allowed only after them) or digits alone.
pub(crate) fn is_identifier(value: &[u8]) -> bool {
    let value = value.strip_prefix(b"#").unwrap_or(value);
    let separators = |b: &u8| matches!(b, b'.' | b'_' | b'-' | b':' | b'/');
    if !value.iter().any(separators) {
        return false;
    }
    value.split(separators).all(|part| {
        let letters = part.iter().take_while(|b| b.is_ascii_lowercase()).count();
        let rest = part.get(letters..).unwrap_or(&[]);
        let digits_only = rest.iter().all(u8::is_ascii_digit);
        // A long part of letters then digits is a word with a number
        // (`version2`); a long run of digits alone is an id.
        digits_only && (letters == 0 || rest.len() <= 4)
    })
}

/// How a value that should be random must look: long enough, spread over
/// enough characters, and mixing character classes. Words and identifiers
/// (`my_token_name`) fail; keys, hex digests and base64 pass.
pub(crate) fn looks_random(value: &[u8], min_len: usize) -> bool {
    if value.len() < min_len || value.iter().any(|b| b.is_ascii_whitespace()) {
        return false;
    }
    let lower = value.iter().any(u8::is_ascii_lowercase);
    let upper = value.iter().any(u8::is_ascii_uppercase);
    let digit = value.iter().any(u8::is_ascii_digit);
    let symbol = value.iter().any(|b| !b.is_ascii_alphanumeric());
    let classes = [lower, upper, digit, symbol].iter().filter(|&&c| c).count();
    let bits = entropy(value);
    // Hex has only 16 symbols: a random 16-character hex string often
    // measures below 3 bits, where base62 would not.
    let hex = value.iter().all(u8::is_ascii_hexdigit);
    let needed = if hex && value.len() >= 16 {
        2.7
    } else if value.len() < 16 {
        2.8
    } else if value.len() < 24 {
        3.0
    } else {
        3.2
    };
    let letters_only = !digit
        && value
            .iter()
            .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'-'));
    let wordish = letters_only && !(lower && upper && value.len() >= 20);
    bits >= needed && classes >= 2 && !wordish && !is_identifier(value)
}

/// The random part of a vendor token (after its prefix) must not be a mask
/// or a run of one character.
pub(crate) fn token_body_ok(body: &[u8]) -> bool {
    let lower: Vec<u8> = body.to_ascii_lowercase();
    let masked = [
        "xxxxx", "*****", "#####", "00000000", "12345678", "abcdefgh", "example", "your",
    ]
    .iter()
    .any(|m| contains(&lower, m.as_bytes()));
    !masked && longest_run(body) < 6 && entropy(body) >= 2.5
}
