//! Where counters live: the interface both stores implement, each check one atomic step over every counter a call draws on.
//!
//! A call draws on several counters at once (a rate, a daily quota, the
//! budget). A check admits all of them or none: no counter is spent for a
//! call that another counter refuses. The embedded store ([`crate::local`])
//! keeps them in process; the shared one ([`crate::redis`]) runs one Lua
//! script per check, so any number of gateways enforce one limit exactly.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// What a store operation returns.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// One counter a call draws on. Times are nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Draw {
    /// A GCRA rate: one call costs `emission`; at most `burst` at once.
    Rate {
        key: String,
        emission: u64,
        burst: u64,
    },
    /// A calendar quota: `amount` more, up to `limit`, in a window that
    /// ends at `expires` (its key names the window).
    Count {
        key: String,
        limit: u64,
        amount: u64,
        expires: u64,
    },
    /// Money: `amount` micro-dollars reserved under `reservation` against
    /// `limit` until the call settles, or until `hold_until`, when an
    /// unsettled reservation is charged in full (the call may have run on
    /// a gateway that died).
    Money {
        key: String,
        reservation: u64,
        limit: u64,
        amount: u64,
        expires: u64,
        hold_until: u64,
    },
}

impl Draw {
    pub fn key(&self) -> &str {
        match self {
            Draw::Rate { key, .. } | Draw::Count { key, .. } | Draw::Money { key, .. } => key,
        }
    }
}

/// How full a counter is, in its own units (calls, tokens, micro-dollars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub before: u64,
    pub after: u64,
    pub capacity: u64,
}

/// A check's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Every counter admitted the call: their levels, in the order drawn.
    Admitted { levels: Vec<Level> },
    /// The counter at `index` refused; nothing was drawn. `retry_after` is
    /// when the call would pass (nanoseconds), when the counter can say.
    Refused {
        index: usize,
        level: Level,
        retry_after: Option<u64>,
    },
}

/// What settling does to one counter a call reserved on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjust {
    /// The call never ran: give back the one emission interval it took.
    Rate { key: String, emission: u64 },
    /// A quota reserved `reserved`; the call used `actual`.
    Count {
        key: String,
        reserved: u64,
        actual: u64,
        expires: u64,
    },
    /// Money reserved under `reservation`; the call cost `actual`
    /// (0 when it never ran).
    Money {
        key: String,
        reservation: u64,
        reserved: u64,
        actual: u64,
        expires: u64,
    },
}

/// One call in a session's loop window: what was called, and what it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Step {
    /// Tool and canonical arguments, digested.
    pub call: u64,
    /// The answer, digested; `None` when there was none to compare.
    pub answer: Option<u64>,
}

impl Step {
    /// The form both stores keep: `call` and `answer` in hex, `-` for none.
    pub fn encode(&self) -> String {
        match self.answer {
            Some(answer) => format!("{:016x}:{answer:016x}", self.call),
            None => format!("{:016x}:-", self.call),
        }
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (call, answer) = text.split_once(':')?;
        let call = u64::from_str_radix(call, 16).ok()?;
        let answer = match answer {
            "-" => None,
            hex => Some(u64::from_str_radix(hex, 16).ok()?),
        };
        Some(Self { call, answer })
    }
}

/// What a counter holds, as `palisade limits status` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Rate { tat: u64 },
    Count { used: u64 },
    Money { spent: u64, reserved: u64 },
}

/// Counters and loop windows, embedded or shared.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Draws on every counter in `draws` at `now`, or on none of them.
    fn check<'a>(&'a self, now: u64, draws: &'a [Draw]) -> BackendFuture<'a, Checked>;

    /// Settles what a call reserved: charges what it used, returns the rest.
    fn settle<'a>(&'a self, now: u64, adjust: &'a [Adjust]) -> BackendFuture<'a, ()>;

    /// The last `len` steps of the loop window `key`, oldest first.
    fn history<'a>(&'a self, key: &'a str, len: usize) -> BackendFuture<'a, Vec<Step>>;

    /// Appends a step to the loop window `key`, keeping the last `keep`.
    fn record<'a>(&'a self, key: &'a str, step: Step, keep: usize) -> BackendFuture<'a, ()>;

    /// Every counter whose key starts with `prefix`, for status reports.
    fn scan<'a>(&'a self, prefix: &'a str) -> BackendFuture<'a, Vec<(String, Held)>>;
}

/// The store could not answer: each limit then fails open or closed as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("the limits store is unreachable: {0}")]
    Unavailable(String),
    #[error("the limits store answered what palisade cannot read: {0}")]
    Corrupt(String),
}

/// Escapes a key part so that no principal or tool name can forge
/// another key's shape (`:` separates parts; glob characters would widen
/// a Redis `SCAN MATCH`).
pub fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        match c {
            ':' | '%' | '*' | '?' | '[' | ']' | '\\' | '=' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`].
pub fn unescape(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = part.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_cannot_forge_structure() {
        let hostile = "alice:rate:tool_calls:*";
        let escaped = escape(hostile);
        assert!(
            !escaped.contains(':') && !escaped.contains('*'),
            "{escaped}"
        );
        assert_eq!(unescape(&escaped), hostile);
        assert_eq!(unescape(&escape("é\u{0}x=y%")), "é\u{0}x=y%");
    }

    #[test]
    fn steps_round_trip() {
        for step in [
            Step {
                call: 7,
                answer: Some(u64::MAX),
            },
            Step {
                call: 0,
                answer: None,
            },
        ] {
            assert_eq!(Step::decode(&step.encode()), Some(step));
        }
        assert_eq!(Step::decode("zz:-"), None);
    }
}
