//! Task tokens: short-lived Biscuit credentials for one task, attenuable offline, checked on every call.
//!
//! A token's text is `pt_` followed by the biscuit in base64url, so its kind
//! shows in its prefix. The authority block, signed by a root key of the data
//! directory, says who (`principal`, `principal_kind`, `role`, `tenant`),
//! where (`env`), until when (`expires`) and what (`grant_tool("server/tool")`,
//! `grant_effect("read")`), and holds the checks that bind the call to that:
//!
//! ```text
//! check if time($t), expires($x), $t <= $x;
//! check if tool($t), grant_tool($t) or effect($e), grant_effect($e);
//! check if environment($e), env($e);          // only with an environment
//! ```
//!
//! The gateway's authorizer supplies `time`, `environment`, `effect`,
//! `call_kind` and, for tool calls, `tool`. Biscuit evaluates each block's
//! checks trusting only the authority block, the block itself and the
//! authorizer, so a later block can only add checks that must also pass:
//! a `grant_tool` or `principal` fact in an attenuation block is never seen
//! by the authority's checks, nor by [`VerifiedTask`]'s identity queries.
//! Attenuation blocks (see [`attenuate`]) carry
//! `check if tool($t), {"files/read_text_file"}.contains($t)` and
//! `check if time($t), $t <= EXPIRY`.
//!
//! Nothing here logs a token, and no `Debug` output holds one (the
//! biscuit's container carries the private key that appends the next block).

mod keys;
mod revocations;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{Policy, date, fact, set, string};
use biscuit_auth::error::{FailedCheck, Format, Logic, Token as BiscuitError};
use biscuit_auth::{
    AuthorizerBuilder, AuthorizerLimits, Biscuit, BlockBuilder, PublicKey, UnverifiedBiscuit,
};
use palisade_core::{
    CallKind, Credential, EffectClass, Identity, Principal, PrincipalKind, Target, TaskScope,
};
use palisade_store::StoreError;

pub use keys::KeyId;
pub use revocations::{COLLECTION as REVOCATIONS_COLLECTION, Revocations};

/// What every task token's text starts with.
pub const PREFIX: &str = "pt_";

/// The longest ttl a token may be issued with, unless configured.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// How far in the future a token's issue time may lie (clock skew between
/// the process that minted it and this one).
const CLOCK_SKEW: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "`{}` may be read or written by group or others (mode {mode:o}); run `chmod {wanted:o} {}`",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        path: PathBuf,
        mode: u32,
        wanted: u32,
    },
    #[error("the key file `{}` cannot be used: {message}", path.display())]
    KeyFile { path: PathBuf, message: String },
    #[error("a ttl of `{}` is longer than the longest allowed, `{}`", humantime::format_duration(*ttl), humantime::format_duration(*max))]
    TtlTooLong { ttl: Duration, max: Duration },
    #[error("a ttl must be at least one second")]
    TtlTooShort,
    #[error("a task token must allow at least one tool or effect class")]
    EmptyScope,
    #[error("`{0}` is not a tool: write it as SERVER__TOOL, for example `files__read_text_file`")]
    NotATool(String),
    #[error("`{0}` is not an effect class (read, write, egress, irreversible)")]
    NotAnEffect(String),
    #[error("an attenuation must narrow something: give tools, effect classes or a ttl")]
    NothingToNarrow,
    #[error("malformed task token ({stage}): {message}")]
    Malformed {
        stage: &'static str,
        message: String,
    },
    #[error("the task token's signature is invalid")]
    SignatureInvalid,
    #[error("the task token was signed by an unknown root key ({})", key.map_or_else(|| "none named".to_owned(), |k| format!("id {k}")))]
    UnknownRootKey { key: Option<u32> },
    #[error("the task token expired{}", at.map_or_else(String::new, |t| format!(" at {}", humantime::format_rfc3339_seconds(t))))]
    Expired { at: Option<SystemTime> },
    #[error("the task token is not yet valid (issued at {})", humantime::format_rfc3339_seconds(*issued))]
    NotYetValid { issued: SystemTime },
    #[error("the task token is for environment `{token}`, and this gateway is `{gateway}`")]
    WrongEnvironment { token: String, gateway: String },
    #[error("block {block} of the task token fails its check `{check}`")]
    CheckFailed { block: u32, check: String },
    #[error("the task token is sealed: it cannot be attenuated")]
    Sealed,
    #[error("the task token was revoked (id `{0}`)")]
    Revoked(String),
    #[error("{0}")]
    NotAnId(String),
    #[error("task token: {0}")]
    Biscuit(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a task token is minted for.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskGrant {
    pub principal: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    pub tools: Vec<Target>,
    pub effects: Vec<EffectClass>,
    /// The gateway environment the token works in; `None`: any.
    pub environment: Option<String>,
    pub ttl: Duration,
}

/// How to narrow a token (see [`attenuate`]); each part left empty narrows nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attenuation {
    pub tools: Vec<Target>,
    pub effects: Vec<EffectClass>,
    pub ttl: Option<Duration>,
}

/// A freshly minted or attenuated token. `Debug` shows its id only.
pub struct MintedToken {
    /// The token itself: a secret, to be printed once and never logged.
    pub text: String,
    /// Its id: its last block's revocation id in hex (what `token revoke` takes).
    pub id: String,
    /// When it expires, where this process set the expiry.
    pub expires_at: Option<SystemTime>,
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Settings of the token authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSettings {
    /// The longest ttl `issue` accepts; also how long a retired root key is kept.
    pub max_ttl: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            max_ttl: DEFAULT_MAX_TTL,
        }
    }
}

/// Mints and verifies task tokens with the root keys of one data directory.
#[derive(Debug)]
pub struct TokenAuthority {
    keys: keys::RootKeys,
    settings: TokenSettings,
}

/// `files__read_text_file` → `files/read_text_file`: split at the first `__`.
pub fn parse_tool(text: &str) -> Result<Target, TokenError> {
    match text.split_once("__") {
        Some((server, name)) if !server.is_empty() && !name.is_empty() && !server.contains('/') => {
            Ok(Target::new(server, name))
        }
        Some(_) | None => Err(TokenError::NotATool(text.to_owned())),
    }
}

pub fn parse_effect(text: &str) -> Result<EffectClass, TokenError> {
    EffectClass::parse(text).ok_or_else(|| TokenError::NotAnEffect(text.to_owned()))
}

fn tool_name(target: &Target) -> String {
    format!("{}/{}", target.server, target.name)
}

/// Datalog evaluation limits for a token's checks. Facts and iterations
/// bound a hostile block's work; the time limit is only a backstop, and it
/// counts across every query of one verification, so it is set well above
/// what a machine under full load takes (20 ms refused valid tokens while
/// two cores were busy compiling).
fn limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 1000,
        max_iterations: 100,
        max_time: Duration::from_millis(250),
    }
}

fn biscuit_error(e: BiscuitError) -> TokenError {
    TokenError::Biscuit(e.to_string())
}

fn string_set<'a>(items: impl Iterator<Item = &'a str>) -> biscuit_auth::builder::Term {
    set(items.map(string).collect::<BTreeSet<_>>())
}

impl TokenAuthority {
    /// Opens the root keys in `data_dir/keys`, generating the first on first start.
    pub fn open(
        data_dir: &Path,
        settings: TokenSettings,
        now: SystemTime,
    ) -> Result<Self, TokenError> {
        Ok(Self {
            keys: keys::RootKeys::open(data_dir, now)?,
            settings,
        })
    }

    /// A new current root key; tokens signed by the old one stay valid until they expire.
    pub fn rotate(&mut self, now: SystemTime) -> Result<KeyId, TokenError> {
        self.keys.rotate(now, self.settings.max_ttl)
    }

    /// The ids of the root keys that verify, the current one first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.ids()
    }

    /// Mints a token for `grant`, valid from `now` for `grant.ttl`.
    pub fn issue(&self, grant: &TaskGrant, now: SystemTime) -> Result<MintedToken, TokenError> {
        if grant.ttl > self.settings.max_ttl {
            return Err(TokenError::TtlTooLong {
                ttl: grant.ttl,
                max: self.settings.max_ttl,
            });
        }
        if grant.ttl < Duration::from_secs(1) {
            return Err(TokenError::TtlTooShort);
        }
        if grant.tools.is_empty() && grant.effects.is_empty() {
            return Err(TokenError::EmptyScope);
        }
        let expires = now + grant.ttl;
        let mut facts = vec![
            fact("principal", &[string(&grant.principal)]),
            fact("principal_kind", &[string(grant.kind.as_str())]),
            fact("issued", &[date(&now)]),
            fact("expires", &[date(&expires)]),
        ];
        facts.extend(grant.roles.iter().map(|r| fact("role", &[string(r)])));
        facts.extend(grant.tenant.iter().map(|t| fact("tenant", &[string(t)])));
        facts.extend(grant.environment.iter().map(|e| fact("env", &[string(e)])));
        facts.extend(
            grant
                .tools
                .iter()
                .map(|t| fact("grant_tool", &[string(&tool_name(t))])),
        );
        facts.extend(
            grant
                .effects
                .iter()
                .map(|e| fact("grant_effect", &[string(e.as_str())])),
        );
        let mut checks = String::from(
            "check if time($t), expires($x), $t <= $x;\n\
             check if tool($t), grant_tool($t) or effect($e), grant_effect($e);\n",
        );
        if grant.environment.is_some() {
            checks.push_str("check if environment($e), env($e);\n");
        }
        let (key_id, key) = self.keys.current();
        let mut builder = Biscuit::builder().root_key_id(key_id.0);
        for f in facts {
            builder = builder.fact(f).map_err(biscuit_error)?;
        }
        let token = builder
            .code(checks)
            .map_err(biscuit_error)?
            .build(key)
            .map_err(biscuit_error)?;
        let text = token.to_base64().map_err(biscuit_error)?;
        let id = revocation_ids(&token.revocation_identifiers())
            .into_iter()
            .next_back()
            .unwrap_or_default();
        Ok(MintedToken {
            text: format!("{PREFIX}{text}"),
            id,
            expires_at: Some(expires),
        })
    }

    /// Checks the signature, expiry and environment of `text`, and reads who
    /// holds it. Per-call scope is [`VerifiedTask::permits`]'s; revocation
    /// is [`Revocations::any_revoked`]'s, on [`VerifiedTask::revocation_ids`].
    pub fn verify(
        &self,
        text: &str,
        environment: &str,
        now: SystemTime,
    ) -> Result<VerifiedTask, TokenError> {
        let token = self.parse(text)?;
        VerifiedTask::new(token, environment, now)
    }

    /// [`inspect`], with the signature checked against this authority's keys.
    pub fn inspect(&self, text: &str) -> Result<Inspection, TokenError> {
        let mut inspection = inspect(text)?;
        inspection.signature = match self.parse(text) {
            Ok(_) => SignatureStatus::Valid,
            Err(e) => SignatureStatus::Invalid(e.to_string()),
        };
        Ok(inspection)
    }

    fn parse(&self, text: &str) -> Result<Biscuit, TokenError> {
        let body = strip_prefix(text)?;
        let named = Cell::new(None);
        let provider = |id: Option<u32>| -> Result<PublicKey, Format> {
            named.set(id);
            id.and_then(|id| self.keys.public(id))
                .ok_or(Format::UnknownPublicKey)
        };
        Biscuit::from_base64(body, provider).map_err(|e| parse_error(e, named.get()))
    }
}

fn strip_prefix(text: &str) -> Result<&str, TokenError> {
    text.trim()
        .strip_prefix(PREFIX)
        .ok_or(TokenError::Malformed {
            stage: "prefix",
            message: format!("a task token starts with `{PREFIX}`"),
        })
}

fn parse_error(e: BiscuitError, key: Option<u32>) -> TokenError {
    let malformed = |stage, message: String| TokenError::Malformed { stage, message };
    match e {
        BiscuitError::Base64(e) => malformed("base64", format!("{e:?}").to_lowercase()),
        BiscuitError::Format(f) => {
            if let Format::Signature(_) | Format::SealedSignature = f {
                TokenError::SignatureInvalid
            } else if let Format::UnknownPublicKey = f {
                TokenError::UnknownRootKey { key }
            } else if let Format::DeserializationError(_) = f {
                malformed("envelope", f.to_string())
            } else if let Format::BlockDeserializationError(_) = f {
                malformed("block", f.to_string())
            } else {
                malformed("format", f.to_string())
            }
        }
        other @ (BiscuitError::InternalError
        | BiscuitError::AppendOnSealed
        | BiscuitError::AlreadySealed
        | BiscuitError::FailedLogic(_)
        | BiscuitError::Language(_)
        | BiscuitError::RunLimit(_)
        | BiscuitError::ConversionError(_)
        | BiscuitError::Execution(_)) => malformed("decoding", other.to_string()),
    }
}

fn revocation_ids(ids: &[Vec<u8>]) -> Vec<String> {
    ids.iter().map(hex::encode).collect()
}

/// Narrows `text` for a sub-agent, offline: appends a block whose checks
/// every call must also pass. No root key is needed, and none can widen
/// what the token allows.
pub fn attenuate(
    text: &str,
    narrow: &Attenuation,
    now: SystemTime,
) -> Result<MintedToken, TokenError> {
    if narrow.tools.is_empty() && narrow.effects.is_empty() && narrow.ttl.is_none() {
        return Err(TokenError::NothingToNarrow);
    }
    let token =
        UnverifiedBiscuit::from_base64(strip_prefix(text)?).map_err(|e| parse_error(e, None))?;
    let mut block = BlockBuilder::new();
    let mut params = HashMap::new();
    if !narrow.tools.is_empty() || !narrow.effects.is_empty() {
        let tools: Vec<String> = narrow.tools.iter().map(tool_name).collect();
        params.insert(
            "tools".to_owned(),
            string_set(tools.iter().map(String::as_str)),
        );
        params.insert(
            "effects".to_owned(),
            string_set(narrow.effects.iter().map(|e| e.as_str())),
        );
        // Only the parts given: an empty set would print as `{,}` in `inspect`.
        let check = match (narrow.tools.is_empty(), narrow.effects.is_empty()) {
            (false, true) => "check if tool($t), {tools}.contains($t)",
            (true, false) => "check if effect($e), {effects}.contains($e)",
            (false, false) | (true, true) => {
                "check if tool($t), {tools}.contains($t) or effect($e), {effects}.contains($e)"
            }
        };
        block = block
            .code_with_params(check, params.clone(), HashMap::new())
            .map_err(biscuit_error)?;
    }
    let mut expires_at = None;
    if let Some(ttl) = narrow.ttl {
        if ttl < Duration::from_secs(1) {
            return Err(TokenError::TtlTooShort);
        }
        let expires = now + ttl;
        expires_at = Some(expires);
        params.insert("expires".to_owned(), date(&expires));
        block = block
            .code_with_params("check if time($t), $t <= {expires}", params, HashMap::new())
            .map_err(biscuit_error)?;
    }
    let attenuated = token.append(block).map_err(|e| match e {
        BiscuitError::AppendOnSealed => TokenError::Sealed,
        other @ (BiscuitError::InternalError
        | BiscuitError::Format(_)
        | BiscuitError::AlreadySealed
        | BiscuitError::FailedLogic(_)
        | BiscuitError::Language(_)
        | BiscuitError::RunLimit(_)
        | BiscuitError::ConversionError(_)
        | BiscuitError::Base64(_)
        | BiscuitError::Execution(_)) => biscuit_error(other),
    })?;
    let id = revocation_ids(&attenuated.revocation_identifiers())
        .into_iter()
        .next_back()
        .unwrap_or_default();
    Ok(MintedToken {
        text: format!("{PREFIX}{}", attenuated.to_base64().map_err(biscuit_error)?),
        id,
        expires_at,
    })
}

/// What a token says, block by block: printable, and free of the token's secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub root_key_id: Option<u32>,
    pub blocks: Vec<InspectedBlock>,
    pub signature: SignatureStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InspectedBlock {
    /// Its revocation id in hex: block 0's is the token's id.
    pub revocation_id: String,
    /// Its Datalog source.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SignatureStatus {
    /// Read without the root keys: nothing shown is vouched for.
    NotChecked,
    Valid,
    Invalid(String),
}

impl Inspection {
    /// The id of this token: its last block's revocation id.
    pub fn id(&self) -> &str {
        self.blocks.last().map_or("", |b| b.revocation_id.as_str())
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.signature {
            SignatureStatus::NotChecked => writeln!(
                f,
                "signature: NOT VERIFIED (no root keys at hand; nothing below is vouched for)"
            )?,
            SignatureStatus::Valid => writeln!(f, "signature: valid")?,
            SignatureStatus::Invalid(why) => writeln!(f, "signature: INVALID: {why}")?,
        }
        match self.root_key_id {
            Some(id) => writeln!(f, "root key: {id}")?,
            None => writeln!(f, "root key: (none named)")?,
        }
        writeln!(f, "id: {}", self.id())?;
        for (i, block) in self.blocks.iter().enumerate() {
            let role = if i == 0 { " (authority)" } else { "" };
            writeln!(
                f,
                "\nblock {i}{role}, revocation id {}:",
                block.revocation_id
            )?;
            for line in block.source.lines() {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

/// Reads a token's blocks without verifying it (no root key needed).
pub fn inspect(text: &str) -> Result<Inspection, TokenError> {
    let token =
        UnverifiedBiscuit::from_base64(strip_prefix(text)?).map_err(|e| parse_error(e, None))?;
    let ids = revocation_ids(&token.revocation_identifiers());
    let mut blocks = Vec::with_capacity(ids.len());
    for (i, revocation_id) in ids.into_iter().enumerate() {
        let source = token
            .print_block_source(i)
            .map_err(|e| parse_error(e, None))?;
        blocks.push(InspectedBlock {
            revocation_id,
            source,
        });
    }
    Ok(Inspection {
        root_key_id: token.root_key_id(),
        blocks,
        signature: SignatureStatus::NotChecked,
    })
}

/// A task token whose signature, expiry and environment checked out, and
/// who it speaks for. Each call is then checked with [`TaskScope::permits`].
pub struct VerifiedTask {
    token: Biscuit,
    id: String,
    /// Every block's revocation id, authority first.
    pub revocation_ids: Vec<String>,
    pub principal: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    /// The environment the token is bound to, if any.
    pub environment: Option<String>,
    /// The authority block's expiry (an attenuation may end it sooner).
    pub expires_at: SystemTime,
    /// The gateway's environment, supplied to every check.
    gateway_environment: String,
    scopes: Vec<Arc<str>>,
    allow: Policy,
}

impl fmt::Debug for VerifiedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTask")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// How a failed check of a token reads, by what it tests.
enum CheckClass {
    /// Needs the call (tool, effect): judged per call, not at verification.
    Call,
    Time,
    Environment,
    Other,
}

fn classify(rule: &str) -> CheckClass {
    if rule.contains("tool(") || rule.contains("effect(") || rule.contains("call_kind(") {
        CheckClass::Call
    } else if rule.contains("time(") {
        CheckClass::Time
    } else if rule.contains("environment(") {
        CheckClass::Environment
    } else {
        CheckClass::Other
    }
}

fn failed_checks(e: &BiscuitError) -> Option<Vec<(u32, String)>> {
    let checks = match e {
        BiscuitError::FailedLogic(
            Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
        ) => checks,
        BiscuitError::FailedLogic(Logic::InvalidBlockRule(..) | Logic::AuthorizerNotEmpty)
        | BiscuitError::InternalError
        | BiscuitError::Format(_)
        | BiscuitError::AppendOnSealed
        | BiscuitError::AlreadySealed
        | BiscuitError::Language(_)
        | BiscuitError::RunLimit(_)
        | BiscuitError::ConversionError(_)
        | BiscuitError::Base64(_)
        | BiscuitError::Execution(_) => return None,
    };
    Some(
        checks
            .iter()
            .map(|c| match c {
                FailedCheck::Block(b) => (b.block_id, b.rule.clone()),
                // The authorizer adds no checks; name it apart if one ever does.
                FailedCheck::Authorizer(a) => (u32::MAX, a.rule.clone()),
            })
            .collect(),
    )
}

impl VerifiedTask {
    fn new(token: Biscuit, environment: &str, now: SystemTime) -> Result<Self, TokenError> {
        let allow: Policy = "allow if true".try_into().map_err(biscuit_error)?;
        let mut authorizer = AuthorizerBuilder::new()
            .fact(fact("time", &[date(&now)]))
            .and_then(|b| b.fact(fact("environment", &[string(environment)])))
            .and_then(|b| b.policy(allow.clone()))
            .map(|b| b.set_limits(limits()))
            .and_then(|b| b.build(&token))
            .map_err(biscuit_error)?;
        // The identity, from the authority block alone (queries see no other block).
        let one =
            |a: &mut biscuit_auth::Authorizer, rule: &str| -> Result<Vec<String>, TokenError> {
                let rows: Vec<(String,)> = a.query(rule).map_err(biscuit_error)?;
                Ok(rows.into_iter().map(|(s,)| s).collect())
            };
        let authority = |message: &str| TokenError::Malformed {
            stage: "authority block",
            message: message.to_owned(),
        };
        let principal = single(one(&mut authorizer, "p($p) <- principal($p)")?)
            .ok_or_else(|| authority("it must name exactly one principal"))?;
        let kind = match single(one(&mut authorizer, "k($k) <- principal_kind($k)")?).as_deref() {
            Some("user") => PrincipalKind::User,
            Some("service") => PrincipalKind::Service,
            Some(_) | None => {
                return Err(authority("its principal_kind must be `user` or `service`"));
            }
        };
        let roles = one(&mut authorizer, "r($r) <- role($r)")?;
        let tenants = one(&mut authorizer, "t($t) <- tenant($t)")?;
        if tenants.len() > 1 {
            return Err(authority("it names more than one tenant"));
        }
        let envs = one(&mut authorizer, "e($e) <- env($e)")?;
        if envs.len() > 1 {
            return Err(authority("it names more than one environment"));
        }
        let times = |a: &mut biscuit_auth::Authorizer,
                     rule: &str|
         -> Result<Option<SystemTime>, TokenError> {
            let rows: Vec<(SystemTime,)> = a.query(rule).map_err(biscuit_error)?;
            Ok(single(rows.into_iter().map(|(t,)| t).collect()))
        };
        let expires_at = times(&mut authorizer, "x($x) <- expires($x)")?
            .ok_or_else(|| authority("it must hold exactly one expiry"))?;
        let issued = times(&mut authorizer, "i($i) <- issued($i)")?
            .ok_or_else(|| authority("it must hold exactly one issue time"))?;
        if issued > now + CLOCK_SKEW {
            return Err(TokenError::NotYetValid { issued });
        }
        if now > expires_at {
            return Err(TokenError::Expired {
                at: Some(expires_at),
            });
        }
        if let Some(env) = envs.first()
            && env != environment
        {
            return Err(TokenError::WrongEnvironment {
                token: env.clone(),
                gateway: environment.to_owned(),
            });
        }
        // Every check that does not need a call must pass now.
        if let Err(e) = authorizer.authorize() {
            let Some(failed) = failed_checks(&e) else {
                return Err(biscuit_error(e));
            };
            for (block, check) in failed {
                match classify(&check) {
                    CheckClass::Call => {}
                    CheckClass::Time => return Err(TokenError::Expired { at: None }),
                    CheckClass::Environment => {
                        return Err(TokenError::WrongEnvironment {
                            token: envs
                                .first()
                                .cloned()
                                .unwrap_or_else(|| "(set by a later block)".into()),
                            gateway: environment.to_owned(),
                        });
                    }
                    CheckClass::Other => return Err(TokenError::CheckFailed { block, check }),
                }
            }
        }
        // Sorted: the query's order is the fact set's, which is not stable.
        let mut tools = one(&mut authorizer, "g($t) <- grant_tool($t)")?;
        tools.sort();
        let mut effects = one(&mut authorizer, "g($e) <- grant_effect($e)")?;
        effects.sort();
        let scopes = tools.into_iter().chain(effects).map(Arc::from).collect();
        let revocation_ids = revocation_ids(&token.revocation_identifiers());
        Ok(Self {
            id: revocation_ids.last().cloned().unwrap_or_default(),
            revocation_ids,
            token,
            principal,
            kind,
            roles,
            tenant: tenants.into_iter().next(),
            environment: envs.into_iter().next(),
            expires_at,
            gateway_environment: environment.to_owned(),
            scopes,
            allow,
        })
    }

    /// The principal this token speaks for, carrying the token as its scope.
    pub fn into_principal(self) -> Principal {
        let id: Arc<str> = Arc::from(self.principal.as_str());
        Principal::from_identity(Identity {
            id,
            kind: self.kind,
            roles: self.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
            tenant: self.tenant.as_deref().map(Arc::from),
            credential: Credential::TaskToken {
                token: Arc::from(self.id.as_str()),
            },
            task: Some(Arc::new(self)),
        })
    }

    fn check_call(
        &self,
        target: &Target,
        kind: CallKind,
        effect: EffectClass,
        now: SystemTime,
    ) -> Result<(), BiscuitError> {
        let mut builder = AuthorizerBuilder::new()
            .fact(fact("time", &[date(&now)]))?
            .fact(fact("environment", &[string(&self.gateway_environment)]))?
            .fact(fact("effect", &[string(effect.as_str())]))?
            .fact(fact("call_kind", &[string(kind.as_str())]))?;
        if kind == CallKind::Tool {
            builder = builder.fact(fact("tool", &[string(&tool_name(target))]))?;
        }
        builder
            .policy(self.allow.clone())?
            .set_limits(limits())
            .build(&self.token)?
            .authorize()
            .map(|_| ())
    }
}

fn single<T>(mut items: Vec<T>) -> Option<T> {
    if items.len() == 1 { items.pop() } else { None }
}

impl TaskScope for VerifiedTask {
    fn id(&self) -> &str {
        &self.id
    }

    fn scopes(&self) -> &[Arc<str>] {
        &self.scopes
    }

    fn permits(
        &self,
        target: &Target,
        kind: CallKind,
        effect: EffectClass,
        now: SystemTime,
    ) -> Result<(), String> {
        let Err(e) = self.check_call(target, kind, effect, now) else {
            return Ok(());
        };
        let Some(failed) = failed_checks(&e) else {
            return Err(format!("the task token's checks could not run: {e}"));
        };
        let reasons: Vec<String> = failed
            .into_iter()
            .map(|(block, check)| match classify(&check) {
                CheckClass::Time => format!("the task token expired (block {block}: `{check}`)"),
                CheckClass::Call => format!(
                    "the task token does not allow `{}` ({}) (block {block}: `{check}`)",
                    tool_name(target),
                    effect.as_str()
                ),
                CheckClass::Environment | CheckClass::Other => {
                    format!("block {block} of the task token fails `{check}`")
                }
            })
            .collect();
        Err(reasons.join("; "))
    }
}
