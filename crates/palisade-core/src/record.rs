//! Audit records: a call's intent and outcome, sessions opening and closing,
//! refused methods, requests upstreams send the client.
//!
//! Records carry no arguments or results (only the arguments' digest) until
//! the redaction layer exists to clean them. Every string that came from
//! outside is [`Bounded`]: a 4 MB tool name costs a few hundred bytes of log.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::call::{ArgumentDigest, CallHead, CallId, CallKind, EffectClass, Principal, SessionId};
use crate::context::Taint;
use crate::stage::Stage;
use crate::verdict::{Finding, ReasonCode};

/// Strings longer than this many bytes are cut in records.
pub const MAX_RECORD_STRING: usize = 1024;
/// How much of a cut string is kept.
const KEPT_PREFIX: usize = 256;

/// A string from outside, as a record keeps it: whole when short; when long,
/// its first bytes (on a character boundary), its length and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded(Arc<str>);

impl Bounded {
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<T: Into<Arc<str>>> From<T> for Bounded {
    fn from(text: T) -> Self {
        Self::new(text)
    }
}

impl Serialize for Bounded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.len() <= MAX_RECORD_STRING {
            return s.serialize_str(&self.0);
        }
        let mut end = KEPT_PREFIX;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        #[derive(Serialize)]
        struct Cut<'a> {
            truncated: &'a str,
            bytes: usize,
            sha256: String,
        }
        Cut {
            truncated: self.0.get(..end).unwrap_or_default(),
            bytes: self.0.len(),
            sha256: crate::call::hex(&Sha256::digest(self.0.as_bytes())),
        }
        .serialize(s)
    }
}

/// What one stage did with the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum StageVerdict {
    Allow,
    /// The operator configured this stage to pass everything; see `pipeline.pass_through`.
    PassThrough,
    Deny {
        code: ReasonCode,
        reason: Bounded,
    },
    NeedsApproval {
        code: ReasonCode,
        reason: Bounded,
    },
    /// The stage failed or timed out.
    Failed {
        reason: Bounded,
    },
    /// The call never got this far.
    NotReached,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRecord {
    pub stage: Stage,
    #[serde(flatten)]
    pub verdict: StageVerdict,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    pub micros: u64,
}

/// How a call ended. Each way it can end has its own status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The tool ran and returned a result (which may itself report a tool error).
    Completed { tool_error: bool },
    /// The upstream accepted the call as a task: only a handle came back; the
    /// result is fetched later with `tasks/result`.
    TaskCreated { task: Bounded },
    /// A stage stopped the call before it ran.
    Denied { stage: Stage, code: ReasonCode },
    /// The upstream answered with a JSON-RPC error.
    UpstreamError { code: i64 },
    /// The upstream could not be reached, or its connection failed mid-call.
    UpstreamUnavailable { detail: Bounded },
    /// The client cancelled the call.
    Cancelled,
    /// The upstream did not answer within its `request_timeout`.
    TimedOut,
    /// The client's session ended (DELETE, idle, shutdown) while the call was in flight.
    SessionEnded,
    /// The call's work was dropped before it could finish (a shutdown, a lost task).
    Abandoned,
    /// The call ran, but a stage after execution failed, so its result was
    /// not returned; the client is told it ran.
    Withheld { stage: Stage, detail: Bounded },
    /// The request was malformed; nothing was routed or run.
    Invalid { detail: Bounded },
}

/// A call's record: what it was, what each stage did, and (for the outcome) how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub time: String,
    pub call: CallId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<CallId>,
    pub principal: Principal,
    /// The principal's tenant, where its credential names one: the
    /// activity log shows a user only their own tenant's calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Bounded>,
    pub session: SessionId,
    pub kind: CallKind,
    pub server: Bounded,
    pub name: Bounded,
    pub effect: EffectClass,
    pub arguments_sha256: ArgumentDigest,
    /// The arguments as the agent sent them (before any secret went in);
    /// like every string of the record, redacted on the way to the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// What the call returned, after the redact stage (outcome records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    pub stages: Vec<StageRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taint: Option<Taint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_micros: Option<u64>,
    /// What the budget charged the call once it was settled, in
    /// micro-dollars (outcome records of calls a budget drew on only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_micros: Option<u64>,
}

impl CallRecord {
    /// A record of `head`; its `time` is set when a line of it is written.
    pub fn new(head: &CallHead, digest: ArgumentDigest) -> Self {
        Self {
            time: String::new(),
            call: head.id,
            parent: head.parent,
            principal: head.principal.clone(),
            tenant: head.principal.tenant().map(Bounded::new),
            session: head.session.clone(),
            kind: head.kind,
            server: Bounded::new(Arc::clone(&head.target.server)),
            name: Bounded::new(Arc::clone(&head.target.name)),
            effect: head.effect,
            arguments_sha256: digest,
            arguments: None,
            result: None,
            stages: Vec::new(),
            outcome: None,
            taint: None,
            latency_micros: None,
            cost_micros: None,
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionEnd {
    /// The client ended it (HTTP DELETE).
    Deleted,
    /// Unused for longer than `server.session_idle_timeout`.
    Idle,
    /// The client went away (stdio input closed).
    ClientGone,
    /// palisade shut down.
    Shutdown,
    /// The session never started: its (wrapped) upstream could not.
    NotStarted,
    /// Closed to make room for a new one at `server.max_sessions`: it was
    /// the least recently used of those with nothing in progress.
    Evicted,
}

/// Why a request was refused before it could reach any upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodRefusal {
    /// Not a method of the MCP revisions palisade speaks, nor an allowed extension.
    Unknown,
}

/// What palisade found in a name (or URI) an upstream listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListingFinding {
    /// ESC, BEL, newlines and the like.
    ControlCharacters,
    /// Zero-width, bidirectional and other characters that print as nothing.
    InvisibleCharacters,
    /// Another name of the same upstream differs from it only in case.
    CaseCollision,
    /// Outside the specification's tool-name rules (ASCII letters, digits,
    /// `_`, `-`, `.`; 1 to 128 characters); hidden only under `server.strict_names`.
    Nonstandard,
    /// The item has no name (or URI) at all.
    Unnamed,
    /// A URI or template that an upstream earlier in the configuration claims.
    ClaimedByAnother,
    /// The listing is longer or larger than palisade keeps.
    OverBound,
}

impl ListingFinding {
    /// Whether the item is hidden, or only reported.
    pub fn hides(self, strict: bool) -> bool {
        match self {
            ListingFinding::Nonstandard => strict,
            ListingFinding::ControlCharacters
            | ListingFinding::InvisibleCharacters
            | ListingFinding::CaseCollision
            | ListingFinding::Unnamed
            | ListingFinding::ClaimedByAnother
            | ListingFinding::OverBound => true,
        }
    }
}

/// What a record keeps of the prompt of a `sampling/createMessage`: the
/// SHA-256 of `{"messages", "systemPrompt"}` in RFC 8785 canonical form, as
/// the upstream sent them, and its size; never the text. The same prompt
/// has the same digest whatever the key order or spacing it came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptDigest {
    pub sha256: String,
    /// How many messages the prompt has.
    pub messages: usize,
    /// The length of the canonical text that was hashed.
    pub bytes: usize,
}

impl PromptDigest {
    /// The digest of the prompt in the `params` of a sampling request. A key
    /// the request lacks is left out of what is hashed (a request without
    /// `messages` is hashed as `{}`, with no messages).
    pub fn of_sampling(params: Option<&Value>) -> Self {
        #[derive(Serialize)]
        struct Prompt<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            messages: Option<&'a Value>,
            #[serde(rename = "systemPrompt", skip_serializing_if = "Option::is_none")]
            system_prompt: Option<&'a Value>,
        }
        let field = |key: &str| params.and_then(|p| p.get(key));
        let prompt = Prompt {
            messages: field("messages"),
            system_prompt: field("systemPrompt"),
        };
        let canonical = match serde_json_canonicalizer::to_vec(&prompt) {
            Ok(canonical) => canonical,
            // Only a non-finite number fails to canonicalize, and JSON text
            // cannot hold one; hash the plain form rather than fail.
            Err(_) => serde_json::to_vec(&prompt).unwrap_or_default(),
        };
        Self {
            sha256: crate::call::hex(&Sha256::digest(&canonical)),
            messages: prompt
                .messages
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            bytes: canonical.len(),
        }
    }
}

/// Every kind of audit record. Each line of the log is one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum AuditEvent<'a> {
    GatewayStarted {
        time: String,
        version: &'static str,
        /// Stages (and the redaction seam) that run as pass-through.
        pass_through: Vec<Stage>,
        degraded: Vec<String>,
    },
    /// Secrets older than their rotation schedule, found at start.
    SecretsOverdue {
        time: String,
        /// Each secret's name and how far past its schedule it is.
        secrets: Vec<(String, String)>,
    },
    CallIntent(&'a CallRecord),
    CallOutcome(&'a CallRecord),
    SessionOpened {
        time: String,
        session: SessionId,
        principal: Principal,
        protocol_version: Bounded,
    },
    SessionClosed {
        time: String,
        session: SessionId,
        principal: Principal,
        reason: SessionEnd,
    },
    /// Something an upstream listed was hidden from the client, or is reported.
    ListingNotice {
        time: String,
        session: SessionId,
        principal: Principal,
        upstream: Bounded,
        listing: &'static str,
        name: Bounded,
        finding: ListingFinding,
        hidden: bool,
        /// For a refused claim: the upstream that owns it.
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<Bounded>,
    },
    MethodRefused {
        time: String,
        session: SessionId,
        principal: Principal,
        method: Bounded,
        reason: MethodRefusal,
    },
    /// A caller presented a credential that did not authenticate, or none
    /// where one is required. Never holds the credential itself.
    AuthenticationFailed {
        time: String,
        /// `http` or `stdio`.
        transport: &'static str,
        /// What was presented: `none`, `api-key`, `task-token`, `jwt`, `unknown`.
        credential: &'static str,
        /// The RFC 6750 error code, where there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<&'static str>,
        reason: Bounded,
    },
    /// One outbound connection (a tunnel, or a plain-HTTP request) through
    /// palisade's egress, allowed or refused: who it was for, where it went,
    /// the bytes each way and how long it lasted (the egress crate's record).
    Egress {
        time: String,
        #[serde(flatten)]
        connection: serde_json::Value,
    },
    /// A request an upstream sent the client (`sampling/createMessage`,
    /// `elicitation/create`), written before it is relayed (one that cannot
    /// be recorded is refused, unrecorded); `relayed` is false when palisade
    /// refused it. A client then found without an open stream is told to the
    /// upstream, not recorded again. For sampling, the prompt's digest,
    /// never its text; the inbound filter's findings when it had any.
    ServerRequest {
        time: String,
        session: SessionId,
        principal: Principal,
        upstream: Bounded,
        method: Bounded,
        relayed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        prompt: Option<PromptDigest>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        findings: Vec<Finding>,
    },
    /// Layer 5 raised an alert: a counter near its limit, a limit or the
    /// daily budget reached, a loop refused (the limits crate's record).
    LimitAlert {
        time: String,
        #[serde(flatten)]
        alert: serde_json::Value,
    },
    /// An alert rule over the audit log fired (the audit crate's record:
    /// rule, severity, principal, count in its window, alerts held back).
    Alert {
        time: String,
        #[serde(flatten)]
        alert: serde_json::Value,
    },
    /// A human approved or refused a held call.
    ApprovalDecided {
        time: String,
        request: Bounded,
        /// Who decided.
        principal: Principal,
        /// Who asked.
        requester: Bounded,
        decision: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<Bounded>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_strings_are_cut_with_length_and_hash() {
        let short = serde_json::to_value(Bounded::new("read_file")).unwrap();
        assert_eq!(short, json!("read_file"));
        let long = "é".repeat(2_000_000);
        let value = serde_json::to_value(Bounded::new(long.as_str())).unwrap();
        assert_eq!(value["bytes"], 4_000_000);
        let kept = value["truncated"].as_str().unwrap();
        assert!(kept.len() <= KEPT_PREFIX && long.starts_with(kept));
        assert_eq!(value["sha256"].as_str().unwrap().len(), 64);
        assert!(serde_json::to_string(&value).unwrap().len() < 512);
    }

    /// The digest of `params`, against the canonical text written by hand and its SHA-256 (from `sha256sum`).
    fn check_prompt(params: &str, canonical: &str, sha256: &str, messages: usize) {
        let params: Value = serde_json::from_str(params).unwrap();
        let digest = PromptDigest::of_sampling(Some(&params));
        assert_eq!(
            crate::call::hex(&Sha256::digest(canonical.as_bytes())),
            sha256
        );
        let expected = PromptDigest {
            sha256: sha256.into(),
            messages,
            bytes: canonical.len(),
        };
        assert_eq!(digest, expected, "{params}");
    }

    #[test]
    fn a_prompt_digest_hashes_its_canonical_form() {
        let canonical = r#"{"messages":[{"content":{"text":"Sum up: é","type":"text"},"role":"user"}],"systemPrompt":"Be brief."}"#;
        let sha256 = "548e9dc1c926374bb04a329395e01b23b14c19e263b1171ec82a92c9325766cd";
        // Key order, spacing and the other parameters do not change it.
        for params in [
            r#"{"messages":[{"role":"user","content":{"type":"text","text":"Sum up: é"}}],"systemPrompt":"Be brief."}"#,
            r#"{ "temperature": 0.7, "systemPrompt": "Be brief.", "maxTokens": 5,
                 "messages": [ { "content": { "text": "Sum up: \u00e9", "type": "text" }, "role": "user" } ] }"#,
        ] {
            check_prompt(params, canonical, sha256, 1);
        }
        // Without a system prompt, its key is left out.
        check_prompt(
            r#"{"maxTokens":5,"messages":[{"role":"user","content":{"type":"text","text":"hi"}},
                {"role":"assistant","content":{"type":"text","text":"hello"}}]}"#,
            r#"{"messages":[{"content":{"text":"hi","type":"text"},"role":"user"},{"content":{"text":"hello","type":"text"},"role":"assistant"}]}"#,
            "74a2f8996d91fc2cd306ac68fe2edd375a2a166f64860dc79d66bf0791f171f2",
            2,
        );
        let empty = PromptDigest::of_sampling(None);
        assert_eq!((empty.messages, empty.bytes), (0, 2));
    }

    #[test]
    fn a_server_request_record_holds_the_digest_not_the_prompt() {
        let params = json!({"messages": [{"role": "user", "content": {"type": "text", "text": "the secret plan"}}]});
        let event = AuditEvent::ServerRequest {
            time: "t".into(),
            session: SessionId::new("s"),
            principal: Principal::anonymous(),
            upstream: Bounded::new("everything"),
            method: Bounded::new("sampling/createMessage"),
            relayed: true,
            prompt: Some(PromptDigest::of_sampling(Some(&params))),
            findings: Vec::new(),
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["event"], "server-request");
        assert_eq!(value["prompt"]["messages"], 1);
        assert!(value.get("findings").is_none(), "{value}");
        assert!(!value.to_string().contains("secret plan"), "{value}");
    }

    #[test]
    fn events_are_tagged() {
        let event = AuditEvent::SessionClosed {
            time: "t".into(),
            session: SessionId::new("s"),
            principal: Principal::anonymous(),
            reason: SessionEnd::ClientGone,
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["event"], "session-closed");
        assert_eq!(value["reason"], "client-gone");
    }
}
