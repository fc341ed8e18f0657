//! The `email-domains` kind: every recipient address must be at an allowed domain, judged on the address itself and never on its display name.
//!
//! A value is an address list in the common subset of RFC 5322:
//! comma-separated items, each `local@domain` or `Display Name <local@domain>`
//! (the display name plain words or one quoted string). What a mail
//! library might read differently from us is refused rather than guessed:
//! - comments `( )`, groups and source routes (`:` `;`, as in
//!   `<@relay:user@host>`), domain literals `[ ]`, a backslash outside
//!   quotes, more than one `<` or `>`, text after `>`;
//! - quoted local parts (`"a@b"@c`), more or fewer than one `@`, whitespace
//!   inside an address, `%` and `!` in the local part (relay routing: the
//!   percent hack and bang paths send mail on from the named domain);
//! - `@`, `<` or `>` inside a display name, quoted or not: their only use is
//!   to make a parser take the display name for the address;
//! - control characters anywhere (CR LF would inject headers), empty items,
//!   and a value with no address at all.
//!
//! Domains compare case-insensitively (ASCII), one trailing dot removed. An
//! entry `example.com` allows exactly that domain; `*.example.org` allows its
//! strict subdomains, any depth, and not `example.org` itself. A domain with
//! non-ASCII characters or a punycode (`xn--`) label is allowed only by an
//! exact entry, compared as written: look-alike internationalized names
//! never ride on a wildcard.

use super::{ConstraintError, shown};

/// Recipient domains a tool may send to.
#[derive(Debug, Clone)]
pub struct EmailRule {
    allow: Vec<DomainPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DomainPattern {
    Exact(String),
    /// Strict subdomains of this (ASCII, not punycode) domain.
    Subdomains(String),
}

impl EmailRule {
    /// `allow`: domains (`example.com`) or `*.domain` for strict subdomains.
    pub fn new(allow: Vec<String>) -> Result<Self, ConstraintError> {
        if allow.is_empty() {
            return Err(ConstraintError::Empty { field: "allow" });
        }
        let mut patterns = Vec::with_capacity(allow.len());
        for entry in &allow {
            let bad = |reason: &'static str| ConstraintError::Domain {
                domain: shown(entry),
                reason,
            };
            if entry.contains('@') {
                return Err(bad("give a domain, not an address"));
            }
            let (wildcard, domain) = match entry.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, entry.as_str()),
            };
            let domain = normalise_domain(domain).map_err(|_| bad("not a valid domain"))?;
            if wildcard {
                if is_international(&domain) {
                    return Err(bad(
                        "a wildcard cannot cover a non-ASCII or punycode domain; list each domain exactly",
                    ));
                }
                patterns.push(DomainPattern::Subdomains(domain));
            } else {
                patterns.push(DomainPattern::Exact(domain));
            }
        }
        Ok(EmailRule { allow: patterns })
    }

    /// Checks one address-list value; the error is the violation's message.
    pub(crate) fn check(&self, value: &str) -> Result<(), String> {
        let addresses = parse_list(value)?;
        if addresses.is_empty() {
            return Err("no address found".to_owned());
        }
        for domain in addresses {
            if !self.allows(&domain) {
                return Err(format!(
                    "the domain `{}` is not allowed (allowed: {})",
                    shown(&domain),
                    self.listed()
                ));
            }
        }
        Ok(())
    }

    fn allows(&self, domain: &str) -> bool {
        let international = is_international(domain);
        self.allow.iter().any(|p| match p {
            DomainPattern::Exact(d) => d == domain,
            DomainPattern::Subdomains(base) => {
                !international
                    && domain
                        .strip_suffix(base.as_str())
                        .and_then(|head| head.strip_suffix('.'))
                        .is_some_and(|head| !head.is_empty())
            }
        })
    }

    fn listed(&self) -> String {
        self.allow
            .iter()
            .map(|p| match p {
                DomainPattern::Exact(d) => format!("`{}`", shown(d)),
                DomainPattern::Subdomains(d) => format!("`*.{}`", shown(d)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_international(domain: &str) -> bool {
    !domain.is_ascii() || domain.split('.').any(|l| l.starts_with("xn--"))
}

/// Lowercase (ASCII), one trailing dot removed, each label non-empty and of
/// letters, digits and inner hyphens (any non-ASCII character counts as a
/// letter: the exact-match rule above takes care of those).
fn normalise_domain(domain: &str) -> Result<String, String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return Err("an empty domain".to_owned());
    }
    if domain.len() > 253 {
        return Err("a domain longer than 253 bytes".to_owned());
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(format!("the domain `{}` has an empty label", shown(domain)));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "the domain `{}` has a label that starts or ends with `-`",
                shown(domain)
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| c.is_ascii() && !c.is_ascii_alphanumeric() && *c != '-')
        {
            return Err(format!(
                "the domain `{}` contains `{}`",
                shown(domain),
                shown(&c.to_string())
            ));
        }
        if let Some(c) = label.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "the domain `{}` contains `{}`",
                shown(domain),
                c.escape_unicode()
            ));
        }
    }
    Ok(domain.to_ascii_lowercase())
}

/// The domain of every address in the list.
fn parse_list(value: &str) -> Result<Vec<String>, String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the control character `{}` is refused",
            c.escape_unicode()
        ));
    }
    if value.trim().is_empty() {
        return Err("no address found".to_owned());
    }
    split_items(value)?
        .into_iter()
        .map(|item| parse_item(item.trim()))
        .collect()
}

/// Splits at commas outside quoted strings.
fn split_items(value: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                (false, _) => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => {
                items.push(value.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("an unterminated quoted string".to_owned());
    }
    items.push(value.get(start..).unwrap_or(""));
    Ok(items)
}

/// One item, `addr` or `display <addr>`: the domain of its address.
fn parse_item(item: &str) -> Result<String, String> {
    if item.is_empty() {
        return Err("an empty address in the list".to_owned());
    }
    // Characters outside quoted strings, with their positions.
    let mut outside = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in item.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                (false, _) => {}
            }
            continue;
        }
        if c == '"' {
            quoted = true;
        }
        outside.push((i, c));
    }
    for &(_, c) in &outside {
        let why = match c {
            '(' | ')' => "comments `( )` are refused",
            ':' | ';' => "groups and source routes (`:` `;`) are refused",
            '[' | ']' => "domain literals `[ ]` are refused",
            '\\' => "a backslash outside quotes is refused",
            _ => continue,
        };
        return Err(why.to_owned());
    }
    let opens: Vec<usize> = outside
        .iter()
        .filter(|(_, c)| *c == '<')
        .map(|(i, _)| *i)
        .collect();
    let closes: Vec<usize> = outside
        .iter()
        .filter(|(_, c)| *c == '>')
        .map(|(i, _)| *i)
        .collect();
    match (opens.as_slice(), closes.as_slice()) {
        ([], []) => parse_address(item),
        ([open], [close]) if open < close => {
            let display = item.get(..*open).unwrap_or("").trim();
            let address = item.get(open + 1..*close).unwrap_or("");
            let after = item.get(close + 1..).unwrap_or("");
            if !after.trim().is_empty() {
                return Err("text after `>` is refused".to_owned());
            }
            check_display_name(display)?;
            parse_address(address)
        }
        _ => Err("an address must have at most one `<...>`".to_owned()),
    }
}

fn check_display_name(display: &str) -> Result<(), String> {
    if display.contains(['@', '<', '>']) {
        return Err("`@`, `<` or `>` in a display name is refused".to_owned());
    }
    if display.contains('"') {
        // One quoted string, nothing around it.
        let inner = display
            .strip_prefix('"')
            .and_then(|d| d.strip_suffix('"'))
            .ok_or_else(|| "a display name must be plain words or one quoted string".to_owned())?;
        let mut escaped = false;
        for c in inner.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    return Err(
                        "a display name must be plain words or one quoted string".to_owned()
                    );
                }
                (false, _) => {}
            }
        }
    }
    Ok(())
}

/// `local@domain`, strictly: the normalised domain.
fn parse_address(address: &str) -> Result<String, String> {
    if address.is_empty() {
        return Err("an empty address".to_owned());
    }
    if address.contains('"') {
        return Err("quoted local parts are refused".to_owned());
    }
    if address.chars().any(char::is_whitespace) {
        return Err(format!(
            "whitespace inside the address `{}` is refused",
            shown(address.trim())
        ));
    }
    let mut parts = address.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "the address `{}` must have exactly one `@`",
            shown(address)
        ));
    };
    check_local_part(local)?;
    normalise_domain(domain)
}

fn check_local_part(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("an address with an empty local part".to_owned());
    }
    if local.contains(['%', '!']) {
        return Err("`%` and `!` in the local part are refused: they route mail on".to_owned());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("a local part may not start or end with `.` or contain `..`".to_owned());
    }
    const ATEXT: &str = "!#$%&'*+-/=?^_`{|}~.";
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ATEXT.contains(*c)))
    {
        return Err(format!(
            "`{}` in the local part is refused",
            shown(&c.to_string())
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> EmailRule {
        EmailRule::new(
            [
                "corp.com",
                "*.example.org",
                "xn--bcher-kva.example",
                "bücher.test",
            ]
            .map(String::from)
            .to_vec(),
        )
        .unwrap()
    }

    /// `expected`: `Ok(())`, or `Err(fragment)` that the message must contain.
    fn check(cases: &[(&str, Result<(), &str>)]) {
        let rule = rule();
        for (input, expected) in cases {
            let got = rule.check(input);
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(fragment), Err(message)) if message.contains(fragment) => {}
                _ => panic!("{input:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    const NOT_ALLOWED: &str = "is not allowed";

    #[test]
    fn the_domain_of_the_address_decides() {
        check(&[
            ("a@corp.com", Ok(())),
            ("A.B+tag@CORP.COM", Ok(())),
            ("a@corp.com.", Ok(())),
            ("  a@corp.com  ", Ok(())),
            ("<a@corp.com>", Ok(())),
            ("Alice <a@corp.com>", Ok(())),
            ("John Q. Public <j@corp.com>", Ok(())),
            ("\"Doe, John\" <j@corp.com>", Ok(())),
            ("\"evil.com\" <a@corp.com>", Ok(())),
            ("\"say \\\"hi\\\"\" <a@corp.com>", Ok(())),
            ("Zoë <a@corp.com>", Ok(())),
            ("a@corp.com, Bob <b@x.example.org>", Ok(())),
            ("a@corp.com,b@corp.com", Ok(())),
            ("b@a.b.example.org", Ok(())),
            ("a@xn--bcher-kva.example", Ok(())),
            ("a@bücher.test", Ok(())),
            ("a@evil.com", Err("`evil.com` is not allowed")),
            ("a@corp.com.evil.com", Err(NOT_ALLOWED)),
            ("a@evilcorp.com", Err(NOT_ALLOWED)),
            ("a@corp.co", Err(NOT_ALLOWED)),
            ("a@com", Err(NOT_ALLOWED)),
            ("a@example.org", Err(NOT_ALLOWED)),
            ("a@badexample.org", Err(NOT_ALLOWED)),
            ("a@example.org.evil.com", Err(NOT_ALLOWED)),
            ("a@corp.com, b@evil.com", Err("`evil.com`")),
            ("Corp Com <x@evil.com>", Err(NOT_ALLOWED)),
            ("\"corp.com\" <x@evil.com>", Err(NOT_ALLOWED)),
            // Internationalized domains only by an exact entry.
            ("a@xn--corp-abc.example.org", Err(NOT_ALLOWED)),
            ("a@bücher.example.org", Err(NOT_ALLOWED)),
            ("a@BÜCHER.test", Err(NOT_ALLOWED)),
            ("a@xn--bcher-kva.example.evil.com", Err(NOT_ALLOWED)),
        ]);
    }

    #[test]
    fn what_a_parser_might_read_differently_is_refused() {
        check(&[
            ("a@corp.com", Ok(())),
            ("\"a@corp.com\" <x@evil.com>", Err("display name")),
            ("\"x@evil.com\" <a@corp.com>", Err("display name")),
            ("a@corp.com <x@evil.com>", Err("display name")),
            ("\"<a@corp.com>\" <x@corp.com>", Err("display name")),
            ("\"x@evil.com\"@corp.com", Err("quoted local parts")),
            ("\"x\"@corp.com", Err("quoted local parts")),
            ("\"boss@corp.com\" x@evil.com", Err("quoted local parts")),
            ("<@corp.com:x@evil.com>", Err("source routes")),
            ("Group: a@corp.com;", Err("groups")),
            ("undisclosed-recipients:;", Err("groups")),
            ("mailto:a@corp.com", Err("groups")),
            ("a@corp.com (x@evil.com)", Err("comments")),
            ("a(x)@corp.com", Err("comments")),
            ("a@[127.0.0.1]", Err("domain literals")),
            ("a\\@b@corp.com", Err("backslash")),
            ("<a@corp.com> <b@evil.com>", Err("at most one")),
            ("<<a@corp.com>>", Err("at most one")),
            ("a@corp.com>", Err("at most one")),
            ("> a@corp.com <", Err("at most one")),
            ("<a@corp.com> x", Err("text after")),
            ("\"a\" \"b\" <a@corp.com>", Err("one quoted string")),
            ("\"unterminated <a@corp.com>", Err("unterminated")),
            ("a@corp.com, ", Err("empty address")),
            (",a@corp.com", Err("empty address")),
            ("a@corp.com,,b@corp.com", Err("empty address")),
            ("", Err("no address")),
            ("   ", Err("no address")),
            ("Name <>", Err("empty address")),
            ("a@b@corp.com", Err("exactly one `@`")),
            ("corp.com", Err("exactly one `@`")),
            ("@corp.com", Err("empty local part")),
            ("a@", Err("empty domain")),
            ("a@.", Err("empty domain")),
            ("a@corp..com", Err("empty label")),
            ("a@.corp.com", Err("empty label")),
            ("a@-corp.com", Err("`-`")),
            ("a@corp_x.com", Err("contains `_`")),
            ("a@corp.com%2eevil.com", Err("contains `%`")),
            ("a%evil.com@corp.com", Err("route mail on")),
            ("evil.com!a@corp.com", Err("route mail on")),
            (".a@corp.com", Err("`..`")),
            ("a..b@corp.com", Err("`..`")),
            ("a @corp.com", Err("whitespace")),
            ("<a@ corp.com>", Err("whitespace")),
            ("a@corp.com\r\nBcc: x@evil.com", Err("control character")),
            ("a@corp.com\0", Err("control character")),
            ("zoë@corp.com", Err("in the local part")),
            ("a@corp\u{3002}com", Err(NOT_ALLOWED)),
        ]);
    }

    #[test]
    fn entries_are_domains() {
        let err = |entry: &str| EmailRule::new(vec![entry.to_owned()]).unwrap_err();
        assert_eq!(
            EmailRule::new(vec![]).unwrap_err(),
            ConstraintError::Empty { field: "allow" }
        );
        for bad in [
            "",
            "*",
            "*.",
            "corp..com",
            "bad domain",
            "-a.com",
            "a_b.com",
            "**.corp.com",
            "*corp.com",
        ] {
            assert!(
                matches!(err(bad), ConstraintError::Domain { ref domain, reason } if domain == bad && reason == "not a valid domain"),
                "{bad:?}: {:?}",
                err(bad)
            );
        }
        assert!(
            matches!(err("a@corp.com"), ConstraintError::Domain { reason, .. } if reason.contains("not an address"))
        );
        assert!(
            matches!(err("*.xn--bcher-kva.example"), ConstraintError::Domain { reason, .. } if reason.contains("wildcard"))
        );
        assert!(
            matches!(err("*.bücher.test"), ConstraintError::Domain { reason, .. } if reason.contains("wildcard"))
        );
        // Entries are normalised like addresses.
        let r = EmailRule::new(vec!["Corp.COM.".to_owned()]).unwrap();
        assert!(r.check("a@corp.com").is_ok());
        assert!(r.check("a@CORP.com.").is_ok());
    }
}
