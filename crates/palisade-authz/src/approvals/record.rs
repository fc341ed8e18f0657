//! An approval request as it is stored: what the human is shown, where it stands, and who decided.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::permit::ApprovalRequest;

/// Where a request stands. `Pending` and `Approved` turn into `Expired`
/// once the request's time is up; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalState {
    /// Waiting for a human.
    Pending,
    /// A human said yes; the next identical call runs, and spends it.
    Approved,
    /// A human said no.
    Denied,
    /// The approved call ran. A replay needs a new approval.
    Consumed,
    /// Nobody decided, or nobody used the approval, in time.
    Expired,
    /// A duplicate made when two replicas asked at the same moment; the
    /// other one is the request the call waits for.
    Withdrawn,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Consumed => "consumed",
            ApprovalState::Expired => "expired",
            ApprovalState::Withdrawn => "withdrawn",
        }
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human's decision, kept for the audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// The approver's principal id.
    pub by: String,
    pub tenant: Option<String>,
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    pub reason: String,
}

/// The call that spent an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumed {
    /// The call's id, as audit records print it.
    pub call: String,
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
}

/// One approval request, as stored in collection `approvals` under its id.
///
/// `arguments` is the arguments' RFC 8785 canonical JSON, exactly as the
/// call will send them (before secret injection): it may hold what the
/// agent wrote, so it goes through the redaction seam before it is logged
/// or shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub id: String,
    /// The request digest (hex) the approval is bound to.
    pub digest: String,
    pub principal: String,
    pub tenant: Option<String>,
    pub session: String,
    pub kind: String,
    pub server: String,
    pub tool: String,
    pub effect: String,
    pub arguments: String,
    pub arguments_sha256: String,
    /// Why approval is needed, as the policy put it.
    pub reason: String,
    pub policies: Vec<String>,
    /// The roles that may decide (any one of them).
    pub approvers: Vec<String>,
    /// The call that asked first.
    pub call: String,
    #[serde(with = "rfc3339")]
    pub created: SystemTime,
    #[serde(with = "rfc3339")]
    pub expires: SystemTime,
    pub state: ApprovalState,
    pub decision: Option<Decided>,
    pub consumed: Option<Consumed>,
}

impl ApprovalRecord {
    pub(crate) fn new(
        id: String,
        request: &ApprovalRequest,
        arguments: &str,
        created: SystemTime,
        ttl: Duration,
    ) -> Self {
        let head = &request.head;
        Self {
            id,
            digest: request.digest().to_hex(),
            principal: head.principal.as_str().to_owned(),
            tenant: head.principal.tenant().map(str::to_owned),
            session: head.session.as_str().to_owned(),
            kind: head.kind.as_str().to_owned(),
            server: head.target.server.to_string(),
            tool: head.target.name.to_string(),
            effect: head.effect.as_str().to_owned(),
            arguments: arguments.to_owned(),
            arguments_sha256: request.arguments.to_hex(),
            reason: request.reason.detail.clone(),
            policies: request.policies.clone(),
            approvers: request.approvers.clone(),
            call: head.id.to_string(),
            created,
            // A TTL too large for the clock is as good as none: the latest
            // time the platform can hold.
            expires: created.checked_add(ttl).unwrap_or(created),
            state: ApprovalState::Pending,
            decision: None,
            consumed: None,
        }
    }

    /// Whether the request's time is up at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now > self.expires
    }

    /// The state as of `now`: a pending or approved request past its
    /// expiry is expired even before anyone wrote so.
    pub fn state_at(&self, now: SystemTime) -> ApprovalState {
        match self.state {
            ApprovalState::Pending | ApprovalState::Approved if self.is_expired(now) => {
                ApprovalState::Expired
            }
            state @ (ApprovalState::Pending
            | ApprovalState::Approved
            | ApprovalState::Denied
            | ApprovalState::Consumed
            | ApprovalState::Expired
            | ApprovalState::Withdrawn) => state,
        }
    }
}

/// Times as RFC 3339 text, readable in the database.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(*time))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

const PREFIX: &str = "apr_";
/// Milliseconds since the epoch, in hex: ids sort by creation time.
const TIME_DIGITS: usize = 12;
const RANDOM_BYTES: usize = 16;

/// A new request id: `apr_`, the creation time, then 128 random bits, so
/// that an id cannot be guessed from the ones before it.
pub(crate) fn new_id(created: SystemTime) -> Result<String, getrandom::Error> {
    let mut random = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut random)?;
    let millis = created
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut id = format!("{PREFIX}{:0width$x}", millis, width = TIME_DIGITS);
    for b in random {
        id.push_str(&format!("{b:02x}"));
    }
    Ok(id)
}

/// Whether `id` has the shape of a request id; anything else is not looked up.
pub(crate) fn is_id(id: &str) -> bool {
    id.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == TIME_DIGITS + 2 * RANDOM_BYTES
            && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// An id as an error message may quote it: bounded and escaped.
pub(crate) fn quoted(id: &str) -> String {
    id.chars().take(64).flat_map(char::escape_default).collect()
}
