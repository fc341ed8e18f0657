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

/// Who is calling: an authenticated identity, the credential it proved it
/// with, and, for a task token, the task's scope.
///
/// Serialized (in audit records) as its id alone; [`Principal::credential`]
/// says how it authenticated. Two principals are equal when everything but
/// the scope's internals is: the same id, kind, roles, tenant, credential and
/// task-token id.
#[derive(Clone)]
pub struct Principal(Arc<Identity>);

/// What authentication established about a caller.
#[derive(Debug)]
pub struct Identity {
    pub id: Arc<str>,
    pub kind: PrincipalKind,
    /// Roles, as the credential or the identity provider grants them.
    pub roles: Vec<Arc<str>>,
    pub tenant: Option<Arc<str>>,
    pub credential: Credential,
    /// The narrower scope of a task token, checked on every call.
    pub task: Option<Arc<dyn TaskScope>>,
}

/// A person, or a program acting on its own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalKind {
    User,
    Service,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
        }
    }
}

/// How a caller proved who it is. Holds ids, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Credential {
    /// Nothing: an anonymous caller, served on loopback only.
    None,
    /// The operating-system user running a local stdio client.
    LocalUser,
    /// An API key, by its public id.
    ApiKey { key: Arc<str> },
    /// An OIDC / JWT bearer token from this issuer.
    Jwt { issuer: Arc<str> },
    /// A task token, by its id.
    TaskToken { token: Arc<str> },
}

impl Credential {
    pub fn method(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::LocalUser => "local-user",
            Credential::ApiKey { .. } => "api-key",
            Credential::Jwt { .. } => "jwt",
            Credential::TaskToken { .. } => "task-token",
        }
    }
}

/// The scope of a task token: checked on every call the holder makes, on
/// top of (never instead of) the policies that judge its principal.
pub trait TaskScope: Send + Sync + fmt::Debug {
    /// The token's id: what `palisade token revoke` names.
    fn id(&self) -> &str;
    /// The tools and effect classes the token was minted for, as policies
    /// see them (`context.task.scopes`).
    fn scopes(&self) -> &[Arc<str>];
    /// Whether the token (every block of it, attenuations included) allows
    /// this call at `now`; the error says which check refused it.
    fn permits(
        &self,
        target: &Target,
        kind: CallKind,
        effect: EffectClass,
        now: std::time::SystemTime,
    ) -> Result<(), String>;
}

impl Principal {
    pub fn from_identity(identity: Identity) -> Self {
        Self(Arc::new(identity))
    }

    /// A service principal with no roles, known by its id alone (tests,
    /// benchmarks, and the pass-through paths).
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self::from_identity(Identity {
            id: id.into(),
            kind: PrincipalKind::Service,
            roles: Vec::new(),
            tenant: None,
            credential: Credential::None,
            task: None,
        })
    }

    /// The principal of a caller that presented no credential.
    pub fn anonymous() -> Self {
        Self::new("anonymous")
    }

    /// The operating-system user `user` of a local stdio client.
    pub fn local_user(user: impl Into<Arc<str>>) -> Self {
        Self::from_identity(Identity {
            id: user.into(),
            kind: PrincipalKind::User,
            roles: Vec::new(),
            tenant: None,
            credential: Credential::LocalUser,
            task: None,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0.id
    }

    pub fn identity(&self) -> &Identity {
        &self.0
    }

    pub fn kind(&self) -> PrincipalKind {
        self.0.kind
    }

    pub fn roles(&self) -> &[Arc<str>] {
        &self.0.roles
    }

    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }

    pub fn credential(&self) -> &Credential {
        &self.0.credential
    }

    pub fn task(&self) -> Option<&dyn TaskScope> {
        self.0.task.as_deref()
    }
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        let (a, b) = (&*self.0, &*other.0);
        a.id == b.id
            && a.kind == b.kind
            && a.roles == b.roles
            && a.tenant == b.tenant
            && a.credential == b.credential
            && a.task.as_ref().map(|t| t.id()) == b.task.as_ref().map(|t| t.id())
    }
}

impl Eq for Principal {}

impl std::hash::Hash for Principal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
        self.0.credential.hash(state);
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.0;
        f.debug_struct("Principal")
            .field("id", &i.id)
            .field("kind", &i.kind)
            .field("roles", &i.roles)
            .field("tenant", &i.tenant)
            .field("credential", &i.credential)
            .field("task", &i.task.as_ref().map(|t| t.id().to_owned()))
            .finish()
    }
}

impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.id)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.id)
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
