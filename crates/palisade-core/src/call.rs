//! A tool call as every layer sees it: who makes it, in which session, to which tool, with what.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Who is calling. Until authentication lands, every local caller is `anonymous`.
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

/// A tool, named by the upstream server that owns it and its name there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ToolRef {
    pub server: Arc<str>,
    pub name: Arc<str>,
}

impl ToolRef {
    pub fn new(server: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            server: server.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ToolRef {
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

/// Identifies one call across every stage and the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One proposed tool call.
#[derive(Debug, Clone)]
pub struct Call {
    pub id: CallId,
    pub principal: Principal,
    pub session: SessionId,
    pub tool: ToolRef,
    /// The arguments exactly as the agent sent them.
    pub arguments: serde_json::Value,
    pub effect: EffectClass,
}
