//! Calendar windows in a named time zone: which hour, day, week or month an instant falls in, and when that window ends.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::spec::{Calendar, SpecError};

/// Where quotas and budgets reset: a time zone from the tz database.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    pub fn utc() -> Self {
        Self {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// An IANA name (`UTC`, `Europe/Paris`, `America/New_York`).
    pub fn named(name: &str) -> Result<Self, SpecError> {
        let tz = TimeZone::get(name).map_err(|_| {
            SpecError::new(format!(
                "unknown time zone `{name}`: use a tz database name such as \"UTC\", \"Europe/Paris\" or \"America/New_York\""
            ))
        })?;
        Ok(Self {
            name: name.to_owned(),
            tz,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The window `at` falls in: a stable name for it (`2026-12-03` for a
    /// day) and the instant it ends, in nanoseconds since the epoch.
    pub fn window(&self, calendar: Calendar, at_nanos: u64) -> Window {
        match self.try_window(calendar, at_nanos) {
            Ok(window) => window,
            // Outside jiff's range (years beyond 9999): one window for all of it.
            Err(_) => Window {
                name: "end-of-time".into(),
                ends_nanos: u64::MAX,
            },
        }
    }

    fn try_window(&self, calendar: Calendar, at_nanos: u64) -> Result<Window, jiff::Error> {
        let now = Timestamp::from_nanosecond(i128::from(at_nanos))?.to_zoned(self.tz.clone());
        let (end, name) = match calendar {
            Calendar::Hour => {
                let start = now
                    .with()
                    .minute(0)
                    .second(0)
                    .subsec_nanosecond(0)
                    .build()?;
                let end = start.timestamp().checked_add(1.hour())?;
                (end, start.strftime("%Y-%m-%dT%H%z").to_string())
            }
            Calendar::Day => {
                let next = now.date().tomorrow()?;
                (self.midnight(next)?, now.date().to_string())
            }
            Calendar::Week => {
                let date = now.date();
                let monday =
                    date.checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days())?;
                let next = monday.checked_add(7.days())?;
                let week = monday.iso_week_date();
                let name = format!("{}-W{:02}", week.year(), week.week());
                (self.midnight(next)?, name)
            }
            Calendar::Month => {
                let first = now.date().first_of_month();
                let next = first.checked_add(1.month())?;
                let name = format!("{:04}-{:02}", first.year(), first.month());
                (self.midnight(next)?, name)
            }
        };
        Ok(Window {
            name,
            ends_nanos: u64::try_from(end.as_nanosecond()).unwrap_or(u64::MAX),
        })
    }

    fn midnight(&self, date: Date) -> Result<Timestamp, jiff::Error> {
        Ok(date.to_zoned(self.tz.clone())?.start_of_day()?.timestamp())
    }
}

/// One calendar window: its name, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub name: String,
    pub ends_nanos: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> u64 {
        let ts: Timestamp = text.parse().unwrap();
        u64::try_from(ts.as_nanosecond()).unwrap()
    }

    #[test]
    fn a_day_ends_at_local_midnight() {
        let paris = Zone::named("Europe/Paris").unwrap();
        // 23:30 UTC on 3 December is 00:30 on the 4th in Paris.
        let w = paris.window(Calendar::Day, nanos("2026-12-03T23:30:00Z"));
        assert_eq!(w.name, "2026-12-04");
        assert_eq!(w.ends_nanos, nanos("2026-12-04T23:00:00Z"));
        let utc = Zone::utc().window(Calendar::Day, nanos("2026-12-03T23:30:00Z"));
        assert_eq!(utc.name, "2026-12-03");
        assert_eq!(utc.ends_nanos, nanos("2026-12-04T00:00:00Z"));
    }

    #[test]
    fn a_day_with_a_clock_change_is_23_or_25_hours() {
        let ny = Zone::named("America/New_York").unwrap();
        // 8 March 2026: clocks go forward at 02:00 local.
        let w = ny.window(Calendar::Day, nanos("2026-03-08T12:00:00Z"));
        assert_eq!(w.name, "2026-03-08");
        assert_eq!(w.ends_nanos, nanos("2026-03-09T04:00:00Z"));
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let zone = Zone::utc();
        // Thursday 3 December 2026 is in ISO week 49.
        let w = zone.window(Calendar::Week, nanos("2026-12-03T10:00:00Z"));
        assert_eq!(w.name, "2026-W49");
        assert_eq!(w.ends_nanos, nanos("2026-12-07T00:00:00Z"));
        let m = zone.window(Calendar::Month, nanos("2026-12-03T10:00:00Z"));
        assert_eq!(m.name, "2026-12");
        assert_eq!(m.ends_nanos, nanos("2027-01-01T00:00:00Z"));
        let h = zone.window(Calendar::Hour, nanos("2026-12-03T10:59:59Z"));
        assert_eq!(h.ends_nanos, nanos("2026-12-03T11:00:00Z"));
    }

    #[test]
    fn unknown_zones_are_named_in_the_error() {
        let error = Zone::named("Mars/Olympus").unwrap_err().to_string();
        assert!(error.contains("Mars/Olympus"), "{error}");
    }
}
