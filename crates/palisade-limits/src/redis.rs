//! The shared store: counters in Redis, each check one server-side script, so any number of gateways enforce one limit exactly.
//!
//! A check is one `EVALSHA` of `redis/check.lua` over every counter the
//! call draws on: Redis runs a script alone, so the script reads every
//! counter, refuses or admits, and only then writes — all of them or none.
//! Settling is `redis/settle.lua`, the same way. Lua numbers are doubles,
//! exact only to 2^53, so the scripts count time in microseconds (the
//! embedded store counts nanoseconds); an emission interval is rounded up
//! to the next microsecond, which refuses a little sooner, never later.
//!
//! The connection is opened on first use and re-opened after a failure,
//! at most twice a second: a gateway starts while Redis is down, and each
//! limit fails open or closed as configured until it is back.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script, Value};
use tokio::sync::OnceCell;

use crate::backend::{
    Adjust, Backend, BackendError, BackendFuture, Checked, Draw, Held, Level, Step,
};

/// How long a loop window outlives its last call.
const LOOP_IDLE_MS: u64 = 3_600_000;
/// The least time between two attempts to connect.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Counters and loop windows in one Redis server, shared by every gateway.
pub struct RedisBackend {
    client: Client,
    /// The URL without its password, for messages.
    url: String,
    connection: OnceCell<ConnectionManager>,
    failed_at: Mutex<Option<Instant>>,
    check: Script,
    settle: Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `url` with its credentials replaced by `***`.
pub fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    match (authority.rsplit_once('@'), path) {
        (Some((_, host)), None) => format!("{scheme}://***@{host}"),
        (Some((_, host)), Some(path)) => format!("{scheme}://***@{host}/{path}"),
        (None, _) => url.to_owned(),
    }
}

fn micros(nanos: u64) -> u64 {
    nanos / 1_000
}

fn micros_up(nanos: u64) -> u64 {
    nanos.div_ceil(1_000).max(1)
}

impl RedisBackend {
    /// Reads `url` (`redis://[user:password@]host:port[/db]`; TLS is not
    /// built, so `rediss://` is refused). Connecting waits for the first check.
    pub fn connect(url: &str) -> Result<Self, BackendError> {
        let client = Client::open(url).map_err(|e| {
            BackendError::Unavailable(format!("`{}` is not a Redis URL: {e}", masked(url)))
        })?;
        Ok(Self {
            client,
            url: masked(url),
            connection: OnceCell::new(),
            failed_at: Mutex::new(None),
            check: Script::new(include_str!("redis/check.lua")),
            settle: Script::new(include_str!("redis/settle.lua")),
        })
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let recent = self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < RECONNECT_AFTER);
        if recent {
            return Err(BackendError::Unavailable(format!(
                "Redis at {} did not answer a moment ago",
                self.url
            )));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            // One attempt at a time: a call waits for no back-off; the next
            // call after a failure tries again.
            .set_number_of_retries(0);
        let made = self
            .connection
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await;
        match made {
            Ok(connection) => Ok(connection.clone()),
            Err(e) => {
                *self
                    .failed_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                Err(self.error(&e))
            }
        }
    }

    /// What a Redis error means for a limit: the server gone (the limit
    /// fails as configured) or an answer palisade cannot use.
    fn error(&self, e: &RedisError) -> BackendError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            BackendError::Unavailable(format!("Redis at {}: {e}", self.url))
        } else {
            BackendError::Corrupt(format!("Redis at {}: {e}", self.url))
        }
    }

    async fn check_draws(&self, now: u64, draws: &[Draw]) -> Result<Checked, BackendError> {
        let mut invocation = self.check.prepare_invoke();
        invocation.arg(micros(now));
        for draw in draws {
            invocation.key(draw.key());
            match draw {
                Draw::Rate {
                    emission, burst, ..
                } => {
                    invocation
                        .arg("r")
                        .arg(micros_up(*emission))
                        .arg(*burst)
                        .arg(0)
                        .arg(0)
                        .arg(0);
                }
                Draw::Count {
                    limit,
                    amount,
                    expires,
                    ..
                } => {
                    invocation
                        .arg("c")
                        .arg(*limit)
                        .arg(*amount)
                        .arg(micros(*expires))
                        .arg(0)
                        .arg(0);
                }
                Draw::Money {
                    reservation,
                    limit,
                    amount,
                    expires,
                    hold_until,
                    ..
                } => {
                    invocation
                        .arg("m")
                        .arg(*limit)
                        .arg(*amount)
                        .arg(micros(*expires))
                        .arg(micros_up(*hold_until))
                        .arg(*reservation);
                }
            }
        }
        let mut connection = self.connection().await?;
        let answer: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.error(&e))?;
        self.read_checked(&answer, draws.len())
    }

    fn read_checked(&self, answer: &[i64], draws: usize) -> Result<Checked, BackendError> {
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        let corrupt = || {
            BackendError::Corrupt(format!(
                "Redis at {}: the check script answered {answer:?}",
                self.url
            ))
        };
        match answer {
            [1, levels @ ..] if levels.len() == draws * 3 => Ok(Checked::Admitted {
                levels: levels
                    .chunks_exact(3)
                    .map(|l| match l {
                        [before, after, capacity] => Level {
                            before: count(*before),
                            after: count(*after),
                            capacity: count(*capacity),
                        },
                        _ => Level {
                            before: 0,
                            after: 0,
                            capacity: 0,
                        },
                    })
                    .collect(),
            }),
            [0, index, before, after, capacity, retry] => {
                let index = usize::try_from(*index).map_err(|_| corrupt())?;
                if index >= draws {
                    return Err(corrupt());
                }
                Ok(Checked::Refused {
                    index,
                    level: Level {
                        before: count(*before),
                        after: count(*after),
                        capacity: count(*capacity),
                    },
                    retry_after: u64::try_from(*retry)
                        .ok()
                        .map(|us| us.saturating_mul(1_000)),
                })
            }
            _ => Err(corrupt()),
        }
    }

    async fn settle_all(&self, now: u64, adjust: &[Adjust]) -> Result<(), BackendError> {
        if adjust.is_empty() {
            return Ok(());
        }
        let mut invocation = self.settle.prepare_invoke();
        invocation.arg(micros(now));
        for change in adjust {
            match change {
                Adjust::Rate { key, emission } => {
                    invocation.key(key.as_str());
                    invocation
                        .arg("r")
                        .arg(micros_up(*emission))
                        .arg(0)
                        .arg(0)
                        .arg(0);
                }
                Adjust::Count {
                    key,
                    reserved,
                    actual,
                    expires,
                } => {
                    invocation.key(key.as_str());
                    invocation
                        .arg("c")
                        .arg(*reserved)
                        .arg(*actual)
                        .arg(micros(*expires))
                        .arg(0);
                }
                Adjust::Money {
                    key,
                    reservation,
                    reserved,
                    actual,
                    expires,
                } => {
                    invocation.key(key.as_str());
                    invocation
                        .arg("m")
                        .arg(*reserved)
                        .arg(*actual)
                        .arg(micros(*expires))
                        .arg(*reservation);
                }
            }
        }
        let mut connection = self.connection().await?;
        let _: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    async fn history_of(&self, key: &str, len: usize) -> Result<Vec<Step>, BackendError> {
        let mut connection = self.connection().await?;
        let from = -i64::try_from(len.max(1)).unwrap_or(i64::MAX);
        let items: Vec<String> = ::redis::cmd("LRANGE")
            .arg(key)
            .arg(from)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(&e))?;
        items
            .iter()
            .map(|item| {
                Step::decode(item).ok_or_else(|| {
                    BackendError::Corrupt(format!(
                        "Redis at {}: `{key}` holds `{item}`, not a loop step",
                        self.url
                    ))
                })
            })
            .collect()
    }

    async fn record_step(&self, key: &str, step: Step, keep: usize) -> Result<(), BackendError> {
        let mut connection = self.connection().await?;
        let keep = isize::try_from(keep.max(1)).unwrap_or(isize::MAX);
        let _: () = ::redis::pipe()
            .atomic()
            .rpush(key, step.encode())
            .ignore()
            .ltrim(key, -keep, -1)
            .ignore()
            .pexpire(key, i64::try_from(LOOP_IDLE_MS).unwrap_or(i64::MAX))
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Held)>, BackendError> {
        let mut connection = self.connection().await?;
        let pattern = format!("{}*", glob_literal(prefix));
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.error(&e))?;
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        let mut found = Vec::with_capacity(keys.len());
        for batch in keys.chunks(500) {
            let mut types = ::redis::pipe();
            for key in batch {
                types.cmd("TYPE").arg(key);
            }
            let kinds: Vec<String> = types
                .query_async(&mut connection)
                .await
                .map_err(|e| self.error(&e))?;
            // Counters are strings and hashes; loop windows (lists) are not counters.
            let counters: Vec<(&String, &String)> = batch
                .iter()
                .zip(&kinds)
                .filter(|(_, kind)| matches!(kind.as_str(), "string" | "hash"))
                .collect();
            if counters.is_empty() {
                continue;
            }
            let mut values = ::redis::pipe();
            for (key, kind) in &counters {
                let read = if kind.as_str() == "string" {
                    "GET"
                } else {
                    "HGETALL"
                };
                values.cmd(read).arg(key.as_str());
            }
            let held: Vec<Value> = values
                .query_async(&mut connection)
                .await
                .map_err(|e| self.error(&e))?;
            for ((key, kind), value) in counters.into_iter().zip(held) {
                if let Some(held) = read_held(kind, value) {
                    found.push((key.clone(), held));
                }
            }
        }
        Ok(found)
    }
}

/// `text` as a `SCAN MATCH` pattern that matches only itself.
fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A counter as Redis holds it; `None` for what is not one (a loop window,
/// a key that expired between the scan and the read).
fn read_held(kind: &str, value: Value) -> Option<Held> {
    let number = |text: &str| text.parse::<u64>().ok();
    match kind {
        "string" => {
            let text: String = ::redis::from_redis_value(&value).ok()?;
            Some(Held::Count {
                used: number(&text)?,
            })
        }
        "hash" => {
            let fields: std::collections::HashMap<String, String> =
                ::redis::from_redis_value(&value).ok()?;
            if let Some(tat) = fields.get("t") {
                return Some(Held::Rate {
                    tat: number(tat)?.saturating_mul(1_000),
                });
            }
            let spent = fields.get("s").and_then(|s| number(s)).unwrap_or(0);
            let reserved = fields
                .iter()
                .filter(|(name, _)| name.starts_with("h:"))
                .filter_map(|(_, held)| number(held.split_once(':')?.0))
                .fold(0u64, u64::saturating_add);
            Some(Held::Money { spent, reserved })
        }
        _ => None,
    }
}

impl Backend for RedisBackend {
    fn check<'a>(&'a self, now: u64, draws: &'a [Draw]) -> BackendFuture<'a, Checked> {
        Box::pin(self.check_draws(now, draws))
    }

    fn settle<'a>(&'a self, now: u64, adjust: &'a [Adjust]) -> BackendFuture<'a, ()> {
        Box::pin(self.settle_all(now, adjust))
    }

    fn history<'a>(&'a self, key: &'a str, len: usize) -> BackendFuture<'a, Vec<Step>> {
        Box::pin(self.history_of(key, len))
    }

    fn record<'a>(&'a self, key: &'a str, step: Step, keep: usize) -> BackendFuture<'a, ()> {
        Box::pin(self.record_step(key, step, keep))
    }

    fn scan<'a>(&'a self, prefix: &'a str) -> BackendFuture<'a, Vec<(String, Held)>> {
        Box::pin(self.scan_prefix(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            masked("redis://:hunter2@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(masked("redis://app:p@ss@h"), "redis://***@h");
        assert_eq!(masked("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let e = RedisBackend::connect("http://:hunter2@x")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("hunter2") && e.contains("not a Redis URL"),
            "{e}"
        );
    }

    #[test]
    fn scan_patterns_match_only_the_prefix() {
        assert_eq!(
            glob_literal("p:rate:a*b?[c]\\"),
            "p:rate:a\\*b\\?\\[c\\]\\\\"
        );
    }

    #[test]
    fn answers_that_are_not_a_check_are_corrupt() {
        let backend = RedisBackend::connect("redis://127.0.0.1:1").unwrap();
        assert!(matches!(
            backend.read_checked(&[1, 0, 1], 1),
            Err(BackendError::Corrupt(_))
        ));
        assert!(matches!(
            backend.read_checked(&[0, 3, 0, 0, 1, -1], 2),
            Err(BackendError::Corrupt(_))
        ));
        assert_eq!(
            backend.read_checked(&[0, 1, 5, 5, 5, 7], 2),
            Ok(Checked::Refused {
                index: 1,
                level: Level {
                    before: 5,
                    after: 5,
                    capacity: 5
                },
                retry_after: Some(7_000),
            })
        );
    }
}
