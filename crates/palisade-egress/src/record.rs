//! What the egress reports: who a connection was for, where it went, and how it ended — one record per connection, allowed or refused.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;

/// The execution a connection is made for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Attribution {
    /// `sandbox`, `http_request` or `upstream`.
    pub origin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The tool call's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// The upstream or tool (`exec`, a stdio upstream's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The sandbox (its supervisor's pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// A stable name for why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalCode {
    /// Not HTTP, or a request palisade cannot read.
    Malformed,
    /// No rule allows the host and port.
    NotAllowlisted,
    /// A rule allows the host and port but not the method or path.
    MethodOrPath,
    /// The name resolves only to addresses that are not allowed (private, loopback, metadata, ...).
    AddressNotAllowed,
    /// The name does not resolve.
    Unresolvable,
    /// The TLS ClientHello names another host than `CONNECT` did, or none.
    SniMismatch,
    /// `CONNECT` carried something that is not TLS.
    NotTls,
    /// A limit of the execution or the connection.
    Limit,
    /// The destination refused or did not answer.
    Unreachable,
}

impl RefusalCode {
    /// The HTTP status the proxy answers with.
    pub fn status(self) -> u16 {
        match self {
            RefusalCode::Malformed | RefusalCode::NotTls | RefusalCode::SniMismatch => 400,
            RefusalCode::NotAllowlisted
            | RefusalCode::MethodOrPath
            | RefusalCode::AddressNotAllowed => 403,
            RefusalCode::Unresolvable | RefusalCode::Unreachable => 502,
            RefusalCode::Limit => 429,
        }
    }

    /// The alert rule a refusal is marked for, if any.
    pub fn alert(self) -> Option<&'static str> {
        match self {
            RefusalCode::NotAllowlisted
            | RefusalCode::MethodOrPath
            | RefusalCode::AddressNotAllowed
            | RefusalCode::SniMismatch => Some("outbound request to a non-allowlisted domain"),
            RefusalCode::Malformed
            | RefusalCode::Unresolvable
            | RefusalCode::NotTls
            | RefusalCode::Limit
            | RefusalCode::Unreachable => None,
        }
    }
}

/// A refusal: its code and, in words, what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    pub code: RefusalCode,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: RefusalCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Outcome {
    Allowed,
    Refused(Refusal),
}

/// One connection (or, for plain HTTP, one request), at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub who: Attribution,
    /// `connect`, or the plain-HTTP method.
    pub kind: String,
    /// The host as the client wrote it, normalized when it could be.
    pub host: String,
    pub port: u16,
    /// The address palisade connected to (or found and refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// `verdict`, and for a refusal its `code` and `detail`.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Bytes from the client toward the destination, and back.
    pub sent: u64,
    pub received: u64,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// What closed an allowed connection early: a timeout or a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}", self.kind, self.host, self.port)
    }
}

/// Where records go (the audit log). Called once per connection, when it ends.
pub trait Recorder: Send + Sync + fmt::Debug {
    fn record(&self, record: Record) -> BoxFuture<'_, ()>;
}
