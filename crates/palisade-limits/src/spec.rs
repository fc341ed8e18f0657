//! What an operator writes: rates, calendar quotas, money, key dimensions and fail modes, parsed with errors that say what to write instead.
//!
//! The forms are short and have one spelling each: a rate is `COUNT/PERIOD`
//! (`30/1m`, `5/1h`, `10/30s`); a quota is `AMOUNT/CALENDAR` where the
//! calendar window is `1h`, `1d`, `1w` or `1mo` and resets on its boundary
//! in the configured time zone; money is US dollars written as an integer
//! or a decimal string (`50`, `"0.002"`), kept as integer micro-dollars.

use std::fmt;
use std::time::Duration;

use palisade_core::EffectClass;
use palisade_core::glob::glob;
use serde::Serialize;

/// Nanoseconds in each unit a period may be written in.
const UNITS: [(&str, u64); 4] = [
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

/// A rate, enforced with GCRA: on average `count` per `period`, and at
/// most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rate {
    pub count: u64,
    #[serde(serialize_with = "humane")]
    pub period: Duration,
    pub burst: u64,
}

impl Rate {
    /// Parses `COUNT/PERIOD`; the burst is `count` until [`Rate::with_burst`].
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let (count, period) = split(text, "a rate", "30/1m")?;
        let nanos = period_nanos(text, period)?;
        let emission = nanos / count;
        if emission == 0 {
            return Err(SpecError::new(format!(
                "`{text}` is more than one call per nanosecond; write a longer period"
            )));
        }
        Ok(Self {
            count,
            period: Duration::from_nanos(nanos),
            burst: count,
        })
    }

    pub fn with_burst(self, burst: u64) -> Result<Self, SpecError> {
        if burst == 0 {
            return Err(SpecError::new(
                "a burst of 0 admits nothing; the smallest burst is 1 (calls strictly evenly spaced)",
            ));
        }
        // The tolerance, burst × emission interval, must fit in nanoseconds.
        if self.emission_nanos().checked_mul(burst).is_none() {
            return Err(SpecError::new(format!(
                "a burst of {burst} is too large for this rate"
            )));
        }
        Ok(Self { burst, ..self })
    }

    /// The GCRA emission interval: the time one call uses up.
    pub fn emission_nanos(&self) -> u64 {
        let nanos = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        (nanos / self.count.max(1)).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humane_period(self.period))
    }
}

/// A calendar window: a quota resets on its boundary in the configured time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Calendar {
    Hour,
    Day,
    Week,
    Month,
}

impl Calendar {
    pub fn as_str(self) -> &'static str {
        match self {
            Calendar::Hour => "1h",
            Calendar::Day => "1d",
            Calendar::Week => "1w",
            Calendar::Month => "1mo",
        }
    }

    /// How the window reads in a sentence ("per day").
    pub fn noun(self) -> &'static str {
        match self {
            Calendar::Hour => "hour",
            Calendar::Day => "day",
            Calendar::Week => "week",
            Calendar::Month => "month",
        }
    }
}

/// A quota: at most `amount` per calendar window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub amount: u64,
    pub window: Calendar,
}

impl Quota {
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let (amount, window) = split(text, "a quota", "100000/1d")?;
        let window = match window {
            "1h" => Calendar::Hour,
            "1d" => Calendar::Day,
            "1w" => Calendar::Week,
            "1mo" => Calendar::Month,
            _ => {
                return Err(SpecError::new(format!(
                    "`{text}`: a quota resets on the calendar, so its window is one of 1h, 1d, 1w, 1mo (for a sliding window, write a `rate`)"
                )));
            }
        };
        Ok(Self { amount, window })
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.amount, self.window.as_str())
    }
}

/// `N/REST`, with N a positive integer.
fn split<'t>(text: &'t str, what: &str, example: &str) -> Result<(u64, &'t str), SpecError> {
    let Some((count, rest)) = text.trim().split_once('/') else {
        return Err(SpecError::new(format!(
            "`{text}` is not {what}: write COUNT/WINDOW, as in `{example}`"
        )));
    };
    let count = count.trim().replace('_', "");
    let count: u64 = count.parse().map_err(|_| {
        SpecError::new(format!(
            "`{text}`: `{count}` is not a whole number (write {what} as in `{example}`)"
        ))
    })?;
    if count == 0 {
        return Err(SpecError::new(format!(
            "`{text}` admits nothing; to forbid a tool, deny it in policy instead"
        )));
    }
    Ok((count, rest.trim()))
}

fn period_nanos(text: &str, period: &str) -> Result<u64, SpecError> {
    let digits = period.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = period.split_at(digits);
    let scale = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale);
    let (Ok(number), Some(scale)) = (number.parse::<u64>(), scale) else {
        return Err(SpecError::new(format!(
            "`{text}`: write the period as a number and a unit, as in `30/1m` (units: s, m, h, d)"
        )));
    };
    if number == 0 {
        return Err(SpecError::new(format!(
            "`{text}`: a period of zero is not a rate"
        )));
    }
    number
        .checked_mul(scale)
        .ok_or_else(|| SpecError::new(format!("`{text}`: the period is too long")))
}

fn humane_period(period: Duration) -> String {
    let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    for (name, scale) in UNITS.iter().rev() {
        if nanos % scale == 0 {
            return format!("{}{name}", nanos / scale);
        }
    }
    format!("{}ms", period.as_millis())
}

fn humane<S: serde::Serializer>(period: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humane_period(*period))
}

/// Money in micro-dollars (millionths of a US dollar), never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Micros(pub u64);

impl Micros {
    /// Parses `50`, `"0.002"` or `"$1.25"`: at most six decimal places.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let bare = text.trim().trim_start_matches('$').replace('_', "");
        let bad = || {
            SpecError::new(format!(
                "`{text}` is not an amount of money: write dollars as in `50` or `\"0.002\"` (at most six decimal places, never negative)"
            ))
        };
        let (whole, fraction) = bare.split_once('.').unwrap_or((&bare, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > 6
        {
            return Err(bad());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let padded = format!("{fraction:0<6}");
        let fraction: u64 = padded.parse().map_err(|_| bad())?;
        whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(fraction))
            .map(Micros)
            .ok_or_else(bad)
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if fraction % 10_000 == 0 {
            write!(f, "${whole}.{:02}", fraction / 10_000)
        } else {
            let digits = format!("{fraction:06}");
            write!(f, "${whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// What a limit's counters are kept per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Principal,
    Tenant,
    Session,
    Upstream,
    Tool,
    Effect,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::Principal,
        Dimension::Tenant,
        Dimension::Session,
        Dimension::Upstream,
        Dimension::Tool,
        Dimension::Effect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Principal => "principal",
            Dimension::Tenant => "tenant",
            Dimension::Session => "session",
            Dimension::Upstream => "upstream",
            Dimension::Tool => "tool",
            Dimension::Effect => "effect",
        }
    }

    pub fn parse(text: &str) -> Result<Self, SpecError> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == text)
            .ok_or_else(|| {
                SpecError::new(format!(
                    "unknown key `{text}`: limits are kept per principal, tenant, session, upstream, tool or effect"
                ))
            })
    }
}

/// What a limit does when its shared store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Refuse the call (always so for money, irreversible and egress effects).
    Closed,
    /// Admit the call, audited as degraded.
    Open,
}

impl FailMode {
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        match text {
            "closed" => Ok(FailMode::Closed),
            "open" => Ok(FailMode::Open),
            _ => Err(SpecError::new(format!(
                "`{text}`: write \"closed\" (refuse the call) or \"open\" (admit it, audited as degraded)"
            ))),
        }
    }

    /// Money, irreversible and egress effects fail closed whatever the setting.
    pub fn for_effect(self, effect: EffectClass) -> FailMode {
        match effect {
            EffectClass::Read | EffectClass::Write => self,
            EffectClass::Egress | EffectClass::Irreversible => FailMode::Closed,
        }
    }
}

/// A `SERVER/TOOL` pattern: `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ToolPattern(String);

impl ToolPattern {
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        if text == "*" {
            return Ok(Self(text.to_owned()));
        }
        let Some((server, tool)) = text.split_once('/') else {
            return Err(SpecError::new(format!(
                "`{text}`: name tools as UPSTREAM/TOOL (`mail/send_email`, `aws/*`), or `*` for every tool"
            )));
        };
        if server.is_empty() || tool.is_empty() {
            return Err(SpecError::new(format!(
                "`{text}`: both the upstream and the tool must be named (`*` matches any)"
            )));
        }
        Ok(Self(text.to_owned()))
    }

    /// The upstream the pattern names, when it names one without a wildcard.
    pub fn upstream(&self) -> Option<&str> {
        let (server, _) = self.0.split_once('/')?;
        (!server.contains('*')).then_some(server)
    }

    pub fn matches(&self, server: &str, tool: &str) -> bool {
        if self.0 == "*" {
            return true;
        }
        let Some((ps, pt)) = self.0.split_once('/') else {
            return false;
        };
        glob(ps, server) && glob(pt, tool)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A value an operator wrote that palisade cannot use, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(String);

impl SpecError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_count_over_period() {
        let rate = Rate::parse("30/1m").unwrap();
        assert_eq!(rate.count, 30);
        assert_eq!(rate.period, Duration::from_secs(60));
        assert_eq!(rate.burst, 30);
        assert_eq!(rate.emission_nanos(), 2_000_000_000);
        assert_eq!(rate.to_string(), "30/1m");
        assert_eq!(Rate::parse("5/1h").unwrap().to_string(), "5/1h");
        assert_eq!(Rate::parse("10/90s").unwrap().to_string(), "10/90s");
        assert_eq!(Rate::parse("1_000/1d").unwrap().count, 1000);
    }

    #[test]
    fn bad_rates_say_what_to_write() {
        for (text, says) in [
            ("30/minute", "number and a unit"),
            ("0/1m", "admits nothing"),
            ("30/0s", "zero"),
            ("-3/1m", "whole number"),
            ("30", "COUNT/WINDOW"),
            ("30/1y", "units: s, m, h, d"),
            ("2000000000/1s", "nanosecond"),
            ("30/99999999999999d", "too long"),
        ] {
            let error = Rate::parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
        let error = Rate::parse("30/1m").unwrap().with_burst(0).unwrap_err();
        assert!(error.to_string().contains("burst of 0"), "{error}");
    }

    #[test]
    fn quotas_reset_on_the_calendar() {
        let quota = Quota::parse("100000/1d").unwrap();
        assert_eq!(quota.amount, 100_000);
        assert_eq!(quota.window, Calendar::Day);
        assert_eq!(Quota::parse("5/1mo").unwrap().window, Calendar::Month);
        let error = Quota::parse("100/2d").unwrap_err().to_string();
        assert!(error.contains("1h, 1d, 1w, 1mo"), "{error}");
        assert!(Quota::parse("0/1d").is_err());
    }

    #[test]
    fn money_is_integer_micros() {
        assert_eq!(Micros::parse("50").unwrap(), Micros(50_000_000));
        assert_eq!(Micros::parse("0.002").unwrap(), Micros(2_000));
        assert_eq!(Micros::parse("$1.25").unwrap(), Micros(1_250_000));
        assert_eq!(Micros::parse(".5").unwrap(), Micros(500_000));
        assert_eq!(Micros(50_000_000).to_string(), "$50.00");
        assert_eq!(Micros(2_000).to_string(), "$0.002");
        assert_eq!(Micros(1_234_567).to_string(), "$1.234567");
        for bad in [
            "-5",
            "1.0000001",
            "abc",
            "",
            ".",
            "1e3",
            "99999999999999999999",
        ] {
            assert!(Micros::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tool_patterns_glob_on_both_halves() {
        let p = ToolPattern::parse("mail/send_*").unwrap();
        assert!(p.matches("mail", "send_email"));
        assert!(!p.matches("mail", "read_inbox"));
        assert!(!p.matches("mailer", "send_email"));
        assert_eq!(p.upstream(), Some("mail"));
        let any = ToolPattern::parse("*").unwrap();
        assert!(any.matches("x", "y"));
        let mid = ToolPattern::parse("*/*_file").unwrap();
        assert!(mid.matches("fs", "write_file"));
        assert!(!mid.matches("fs", "write_files"));
        assert_eq!(mid.upstream(), None);
        assert!(ToolPattern::parse("send_email").is_err());
        assert!(ToolPattern::parse("/x").is_err());
    }

    #[test]
    fn money_irreversible_and_egress_always_fail_closed() {
        assert_eq!(FailMode::Open.for_effect(EffectClass::Read), FailMode::Open);
        assert_eq!(
            FailMode::Open.for_effect(EffectClass::Irreversible),
            FailMode::Closed
        );
        assert_eq!(
            FailMode::Open.for_effect(EffectClass::Egress),
            FailMode::Closed
        );
    }
}
