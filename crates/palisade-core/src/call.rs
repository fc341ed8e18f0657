//! A call as every layer sees it: an immutable head (who, where, what) and the arguments.
//!
//! The head is fixed when the call is made: no stage can change who calls,
//! in which session, which target or with which effect class, because stages
//! only ever get `&CallHead`. Stages that may rewrite get the arguments alone,
//! and the pipeline re-hashes them after every such stage (see
//! [`ArgumentDigest`]), so a proof issued for one set of arguments never
//! covers another.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Who is calling. Until authentication lands, every HTTP caller is
/// `anonymous` and every stdio caller `local`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Principal(Arc<str>);

impl Principal {
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The principal of a caller that presented no credential.
    pub fn anonymous() -> Self {
        Self::new("anonymous")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One client session with the gateway (an MCP session, or one stdio connection).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SessionId(Arc<str>);

impl SessionId {
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a call reaches: the kind of thing, on which upstream, under which name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallKind {
    /// `tools/call`: `name` is the tool's own (unprefixed) name.
    Tool,
    /// `resources/read`: `name` is the resource URI.
    Resource,
    /// `prompts/get`: `name` is the prompt's own name.
    Prompt,
    /// `completion/complete`: `name` is `ref/prompt:NAME` or `ref/resource:URI`.
    Completion,
    /// `tasks/result`: `name` is the task id; the output of the call that created it.
    TaskResult,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Tool => "tool",
            CallKind::Resource => "resource",
            CallKind::Prompt => "prompt",
            CallKind::Completion => "completion",
            CallKind::TaskResult => "task-result",
        }
    }
}

/// A tool, prompt, resource or task, named by the upstream that owns it and its name there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    pub server: Arc<str>,
    pub name: Arc<str>,
}

impl Target {
    pub fn new(server: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            server: server.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.name)
    }
}

/// What a call can do to the world, from least to most consequential.
///
/// The class comes from configuration, never from the tool's own annotations:
/// the model's (and the server's) word is data, not authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EffectClass {
    /// Reads state; changes nothing.
    Read,
    /// Changes state that can be changed back.
    Write,
    /// Sends data out of the trust boundary.
    Egress,
    /// Changes state that cannot be changed back (delete, pay, send).
    Irreversible,
}

impl EffectClass {
    pub const ALL: [EffectClass; 4] = [
        EffectClass::Read,
        EffectClass::Write,
        EffectClass::Egress,
        EffectClass::Irreversible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EffectClass::Read => "read",
            EffectClass::Write => "write",
            EffectClass::Egress => "egress",
            EffectClass::Irreversible => "irreversible",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|class| class.as_str() == s)
    }
}

/// Identifies one call across every stage and its audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Everything about a call except its arguments. Fixed when the call is made.
#[derive(Debug, Clone, PartialEq)]
pub struct CallHead {
    pub id: CallId,
    pub principal: Principal,
    pub session: SessionId,
    pub kind: CallKind,
    pub target: Target,
    pub effect: EffectClass,
    /// The request's other params (`_meta`, `task`, …) as the client sent
    /// them: fixed with the head, and sent upstream unchanged.
    pub params: Option<Value>,
    /// The call whose output this one fetches (a task result's creating call).
    pub parent: Option<CallId>,
}

/// SHA-256 of the arguments in their RFC 8785 (JCS) canonical form.
///
/// Canonical, so that key order and number spelling do not change it; the
/// same bytes hash the same everywhere (a permit, an approval, an audit
/// record). JCS reads numbers as IEEE 754 doubles: two integers above 2^53
/// that round to the same double hash alike, which only matters to a stage
/// that rewrites one into the other, and such a rewrite changes nothing an
/// upstream parsing doubles can see.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArgumentDigest([u8; 32]);

impl ArgumentDigest {
    pub fn of(arguments: &Value) -> Self {
        let mut hasher = Sha256::new();
        match serde_json_canonicalizer::to_vec(arguments) {
            Ok(canonical) => hasher.update(&canonical),
            // Only a non-finite number fails to canonicalize, and JSON text
            // cannot hold one; hash the plain form rather than fail.
            Err(_) => hasher.update(arguments.to_string().as_bytes()),
        }
        Self(hasher.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for ArgumentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArgumentDigest({})", self.to_hex())
    }
}

impl Serialize for ArgumentDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

/// One proposed call: its head, its arguments, and their digest.
#[derive(Debug, Clone)]
pub struct Call {
    head: CallHead,
    arguments: Value,
    digest: ArgumentDigest,
}

impl Call {
    pub fn new(head: CallHead, arguments: Value) -> Self {
        let digest = ArgumentDigest::of(&arguments);
        Self {
            head,
            arguments,
            digest,
        }
    }

    pub fn head(&self) -> &CallHead {
        &self.head
    }

    pub fn id(&self) -> CallId {
        self.head.id
    }

    pub fn arguments(&self) -> &Value {
        &self.arguments
    }

    /// The digest of the arguments as they were when last hashed.
    pub fn digest(&self) -> ArgumentDigest {
        self.digest
    }

    /// The head, read-only, and the arguments, for a stage that may rewrite
    /// them. Call [`Call::rehash`] afterwards.
    pub fn parts_mut(&mut self) -> (&CallHead, &mut Value) {
        (&self.head, &mut self.arguments)
    }

    /// Hashes the arguments again; true when they changed since the last hash.
    pub fn rehash(&mut self) -> bool {
        let digest = ArgumentDigest::of(&self.arguments);
        let changed = digest != self.digest;
        self.digest = digest;
        changed
    }

    pub fn into_parts(self) -> (CallHead, Value) {
        (self.head, self.arguments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(text: &str) -> String {
        ArgumentDigest::of(&serde_json::from_str(text).unwrap()).to_hex()
    }

    #[test]
    fn digest_ignores_key_order_and_number_spelling() {
        assert_eq!(
            digest(r#"{"a":1,"b":[2,"x"]}"#),
            digest(r#"{ "b": [2.0, "x"], "a": 1e0 }"#)
        );
        assert_ne!(digest(r#"{"a":1}"#), digest(r#"{"a":2}"#));
        assert_ne!(digest(r#"{"a":"1"}"#), digest(r#"{"a":1}"#));
        assert_ne!(digest(r#"{"a":null}"#), digest(r#"{}"#));
    }

    #[test]
    fn digest_is_sha256_of_the_jcs_form() {
        // RFC 8785 form of {"b":2,"a":1} is {"a":1,"b":2}; its SHA-256 is fixed.
        let known = {
            let mut h = Sha256::new();
            h.update(br#"{"a":1,"b":2}"#);
            hex(&h.finalize())
        };
        assert_eq!(digest(r#"{"b":2,"a":1}"#), known);
    }

    #[test]
    fn rehash_reports_a_rewrite() {
        let head = CallHead {
            id: CallId(1),
            principal: Principal::anonymous(),
            session: SessionId::new("s"),
            kind: CallKind::Tool,
            target: Target::new("srv", "t"),
            effect: EffectClass::Read,
            params: None,
            parent: None,
        };
        let mut call = Call::new(head, json!({"path": "/a"}));
        let before = call.digest();
        assert!(!call.rehash());
        let (_, args) = call.parts_mut();
        args["path"] = json!("/b");
        assert!(call.rehash());
        assert_ne!(call.digest(), before);
    }
}
