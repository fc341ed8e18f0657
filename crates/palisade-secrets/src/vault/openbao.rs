//! OpenBao / HashiCorp Vault KV v2 as a vault: each environment's secrets under its own path, read over HTTP.
//!
//! A secret `NAME` of environment `ENV` lives at
//! `{mount}/data/{prefix}/{ENV}/NAME` as the KV v2 data `{"value": "…"}`,
//! so an OpenBao policy on `{mount}/data/{prefix}/prod/*` fences
//! production. Each write is a new KV version; a revocation soft-deletes
//! the current version (other readers of the path stop getting it too); a
//! write after it makes a new, readable version.
//!
//! Credentials: a token as given, or an AppRole login whose client token
//! is renewed when two thirds of its lease have passed (checked on use, so
//! no background task) and replaced by a new login when it expired, when
//! renewal fails or no longer extends it, or when OpenBao refuses it. The
//! token travels only in the `X-Vault-Token` header, marked sensitive;
//! no error or log line holds a token, a secret ID or a value, and the
//! bodies OpenBao answers with (which may hold them) are never quoted.
//!
//! Redirects are not followed: the token header would go with them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_core::{Clock, SystemClock};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::{Entry, Known, Meta, Vault, VaultError, VaultFuture};
use crate::binding::SecretName;
use crate::value::SecretValue;

/// Earlier readable versions the redactor is told about, besides the current one.
const EARLIER_KNOWN: usize = 2;
/// The largest answer read from OpenBao; anything longer is refused.
const MAX_ANSWER: usize = 4 << 20;
/// The longest part of an OpenBao error message quoted in an error.
const MAX_MESSAGE: usize = 300;
/// Retry hint when OpenBao is sealed or says it is unavailable without one.
const SEALED_RETRY: Duration = Duration::from_secs(5);

/// Where and how to reach OpenBao, for one environment (plain data; the
/// server's config reader builds it, [`OpenBaoVault::new`] checks it).
#[derive(Debug, Clone)]
pub struct OpenBao {
    /// `https://bao.example:8200`; without credentials, query or fragment.
    pub address: Url,
    /// The KV v2 mount (`secret`).
    pub mount: String,
    /// The path inside the mount under which each environment has its folder (`palisade`).
    pub prefix: String,
    /// Sent as `X-Vault-Namespace` when set.
    pub namespace: Option<String>,
    pub auth: Auth,
    /// For one whole request, connecting included.
    pub timeout: Duration,
    /// PEM certificates to trust besides the system's, for a private CA.
    pub ca_file: Option<PathBuf>,
    pub environment: String,
}

impl OpenBao {
    /// The defaults: mount `secret`, prefix `palisade`, no namespace, 10 s per request.
    pub fn new(address: Url, environment: impl Into<String>, auth: Auth) -> Self {
        Self {
            address,
            mount: "secret".to_owned(),
            prefix: "palisade".to_owned(),
            namespace: None,
            auth,
            timeout: Duration::from_secs(10),
            ca_file: None,
            environment: environment.into(),
        }
    }
}

/// How palisade authenticates to OpenBao.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A token used as given (its owner renews it).
    Token(SecretValue),
    /// An AppRole login at `auth/{mount}/login`.
    AppRole {
        role_id: String,
        secret_id: SecretValue,
        /// Where the AppRole method is enabled (`approle`).
        mount: String,
    },
}

impl Auth {
    /// AppRole at its usual mount, `approle`.
    pub fn approle(role_id: impl Into<String>, secret_id: SecretValue) -> Self {
        Auth::AppRole {
            role_id: role_id.into(),
            secret_id,
            mount: "approle".to_owned(),
        }
    }
}

/// A client token from an AppRole login, and when it must be renewed.
#[derive(Debug)]
struct Session {
    token: SecretValue,
    accessor: String,
    /// When the lease below started: the login or the last renewal.
    since: Instant,
    /// Zero: the token does not expire.
    lease: Duration,
    renewable: bool,
}

/// What to do with a session before using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    Use,
    Renew,
    LogIn,
}

impl Session {
    fn freshness(&self, now: Instant) -> Freshness {
        if self.lease.is_zero() {
            return Freshness::Use;
        }
        let age = now.saturating_duration_since(self.since);
        if age >= self.lease {
            Freshness::LogIn
        } else if age.as_nanos().saturating_mul(3) >= self.lease.as_nanos().saturating_mul(2) {
            if self.renewable {
                Freshness::Renew
            } else {
                Freshness::LogIn
            }
        } else {
            Freshness::Use
        }
    }
}

/// What palisade was doing, for error messages: the words and the
/// capability a policy must grant for it.
#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    List,
    Write,
    Revoke,
    Login,
    Renew,
    LookUp,
    Mount,
}

impl Op {
    fn doing(self) -> &'static str {
        match self {
            Op::Read => "reading",
            Op::List => "listing",
            Op::Write => "writing",
            Op::Revoke => "deleting (revoking)",
            Op::Login => "the AppRole login at",
            Op::Renew => "renewing the token at",
            Op::LookUp => "looking up the token at",
            Op::Mount => "looking up the mount at",
        }
    }

    fn capability(self) -> &'static str {
        match self {
            Op::Read | Op::LookUp | Op::Mount => "read",
            Op::List => "list",
            Op::Write => "create and update",
            Op::Revoke => "delete",
            Op::Login | Op::Renew => "update",
        }
    }
}

/// One answer from OpenBao, its body read whole (it may hold secret values).
struct Answer {
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
    retry_after: Option<Duration>,
    /// OpenBao's error text for a failure, the credentials sent taken out.
    message: String,
}

/// The vault on OpenBao for one environment.
#[derive(Debug)]
pub struct OpenBaoVault {
    settings: OpenBao,
    /// `{address}/v1/`, with one trailing slash.
    base: String,
    client: reqwest::Client,
    namespace: Option<HeaderValue>,
    clock: Arc<dyn Clock>,
    /// AppRole only; locked while it is renewed or replaced, so one login
    /// serves concurrent callers.
    session: tokio::sync::Mutex<Option<Session>>,
}

impl OpenBaoVault {
    /// Checks the settings and builds the HTTP client; nothing is sent
    /// until the vault is used (see [`OpenBaoVault::check`]).
    pub fn new(settings: OpenBao) -> Result<Self, VaultError> {
        Self::with_clock(settings, Arc::new(SystemClock))
    }

    /// As [`OpenBaoVault::new`], with the clock that times token renewal.
    pub fn with_clock(settings: OpenBao, clock: Arc<dyn Clock>) -> Result<Self, VaultError> {
        let invalid = |field: &str, why: String| {
            VaultError::Refused(format!("invalid OpenBao setting `{field}`: {why}"))
        };
        let address = &settings.address;
        if !matches!(address.scheme(), "http" | "https") {
            return Err(invalid(
                "address",
                format!("`{address}` is not an http or https URL"),
            ));
        }
        if !address.username().is_empty() || address.password().is_some() {
            return Err(invalid(
                "address",
                "it holds credentials; give them in `auth`".to_owned(),
            ));
        }
        if address.query().is_some() || address.fragment().is_some() {
            return Err(invalid(
                "address",
                format!("`{address}` has a query or a fragment"),
            ));
        }
        if address.scheme() == "http" && !is_loopback(address) {
            tracing::warn!(
                address = %address,
                "OpenBao is reached over plain http: its tokens and values cross the network unencrypted"
            );
        }
        check_path("mount", &settings.mount).map_err(|why| invalid("mount", why))?;
        check_path("prefix", &settings.prefix).map_err(|why| invalid("prefix", why))?;
        check_segment(&settings.environment).map_err(|why| invalid("environment", why))?;
        if let Auth::AppRole { role_id, mount, .. } = &settings.auth {
            check_path("auth.mount", mount).map_err(|why| invalid("auth.mount", why))?;
            if role_id.is_empty() {
                return Err(invalid("auth.role_id", "it is empty".to_owned()));
            }
        }
        let namespace = match &settings.namespace {
            None => None,
            Some(ns) => Some(
                HeaderValue::from_str(ns)
                    .map_err(|_| invalid("namespace", format!("`{}`", ns.escape_debug())))?,
            ),
        };
        if settings.timeout.is_zero() {
            return Err(invalid("timeout", "it is zero".to_owned()));
        }

        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                VaultError::Io(format!(
                    "cannot read the OpenBao CA file `{}`: {e}",
                    path.display()
                ))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                invalid(
                    "ca_file",
                    format!("`{}` holds no PEM certificate: {e}", path.display()),
                )
            })?;
            if certificates.is_empty() {
                return Err(invalid(
                    "ca_file",
                    format!("`{}` holds no PEM certificate", path.display()),
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| VaultError::Io(format!("cannot build the OpenBao HTTP client: {e}")))?;
        let base = format!("{}/v1/", address.as_str().trim_end_matches('/'));
        Ok(Self {
            settings,
            base,
            client,
            namespace,
            clock,
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// Authenticates (logs in, or looks the token up), then checks that the
    /// mount is KV v2 and that this environment's folder may be listed: a
    /// wrong address, token, mount or policy stops a start, not a call.
    pub async fn check(&self) -> Result<(), VaultError> {
        match &self.settings.auth {
            Auth::Token(token) => {
                let path = "auth/token/lookup-self";
                let answer = self.send(Method::GET, path, None, Some(token)).await?;
                if answer.status != StatusCode::OK {
                    return Err(self.failure(Op::LookUp, path, &answer, None));
                }
            }
            Auth::AppRole { .. } => {
                let session = self.log_in().await?;
                *self.session.lock().await = Some(session);
            }
        }

        let path = format!("sys/internal/ui/mounts/{}", self.settings.mount);
        let answer = self.authed(Method::GET, &path, None).await?;
        if answer.status != StatusCode::OK {
            return Err(self.failure(Op::Mount, &path, &answer, None));
        }
        let mount: Envelope<MountInfo> = self.parse(&answer, Op::Mount, &path)?;
        let version = mount.data.options.and_then(|o| o.version);
        if mount.data.kind != "kv" || version.as_deref() != Some("2") {
            return Err(VaultError::Refused(format!(
                "the mount `{}` on OpenBao at `{}` is a `{}` engine (version {}), not KV v2",
                self.settings.mount,
                self.address(),
                mount.data.kind,
                version.as_deref().unwrap_or("none"),
            )));
        }
        self.names().await.map(drop)
    }

    /// The accessor of the AppRole client token in use, if logged in: it
    /// names the token (for `auth/token/lookup-accessor`) without being it.
    pub async fn token_accessor(&self) -> Option<String> {
        self.session
            .lock()
            .await
            .as_ref()
            .map(|s| s.accessor.clone())
    }

    fn address(&self) -> &str {
        self.settings.address.as_str().trim_end_matches('/')
    }

    /// The folder of this environment inside the mount, without a trailing slash.
    fn folder(&self) -> String {
        format!("{}/{}", self.settings.prefix, self.settings.environment)
    }

    fn data_path(&self, name: &SecretName) -> String {
        format!("{}/data/{}/{name}", self.settings.mount, self.folder())
    }

    fn metadata_path(&self, name: &SecretName) -> String {
        format!("{}/metadata/{}/{name}", self.settings.mount, self.folder())
    }

    // ---------------------------------------------------------------- HTTP

    /// One request, its answer read whole. Transport failures are
    /// `Unavailable`; an HTTP error status is the caller's to judge.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&[u8]>,
        token: Option<&SecretValue>,
    ) -> Result<Answer, VaultError> {
        let url = format!("{}{path_and_query}", self.base);
        let mut request = self.client.request(method, &url);
        if let Some(token) = token {
            let mut header = HeaderValue::from_str(token.expose()).map_err(|_| {
                VaultError::Refused(
                    "the OpenBao token holds characters a header cannot carry".to_owned(),
                )
            })?;
            header.set_sensitive(true);
            request = request.header("X-Vault-Token", header);
        }
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace.clone());
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_vec());
        }
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let mut response = request
            .send()
            .await
            .map_err(|e| self.unreachable(path, &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let mut body = Zeroizing::new(Vec::new());
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unreachable(path, &e))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_ANSWER {
                return Err(VaultError::Corrupt(format!(
                    "OpenBao at `{}` answered more than {MAX_ANSWER} bytes for `{path}`",
                    self.address()
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let message = if status.is_success() {
            String::new()
        } else {
            self.message(&body, token)
        };
        Ok(Answer {
            status,
            body,
            retry_after,
            message,
        })
    }

    /// A request with the current token. With AppRole, a refusal may mean
    /// the token was revoked or expired early: if OpenBao no longer knows
    /// the token, one new login and one retry. (A refusal by policy keeps
    /// the token: logging in per denied call would pile up tokens.)
    async fn authed(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, VaultError> {
        let token = self.token().await?;
        let answer = self
            .send(method.clone(), path_and_query, body, Some(&token))
            .await?;
        if answer.status != StatusCode::FORBIDDEN
            || !matches!(self.settings.auth, Auth::AppRole { .. })
        {
            return Ok(answer);
        }
        let lookup = self
            .send(Method::GET, "auth/token/lookup-self", None, Some(&token))
            .await?;
        if lookup.status != StatusCode::FORBIDDEN {
            return Ok(answer);
        }
        {
            let mut session = self.session.lock().await;
            if session.as_ref().is_some_and(|s| s.token.same_as(&token)) {
                tracing::info!("OpenBao no longer accepts the AppRole token; logging in again");
                *session = None;
            }
        }
        let token = self.token().await?;
        self.send(method, path_and_query, body, Some(&token)).await
    }

    /// The token for the next request: the configured one, or the AppRole
    /// session's, renewed or replaced first if its lease says so.
    async fn token(&self) -> Result<SecretValue, VaultError> {
        if let Auth::Token(token) = &self.settings.auth {
            return Ok(token.clone());
        }
        let mut session = self.session.lock().await;
        let now = self.clock.monotonic();
        let freshness = session.as_ref().map(|s| s.freshness(now));
        match (session.as_mut(), freshness) {
            (Some(current), Some(Freshness::Use)) => return Ok(current.token.clone()),
            (Some(current), Some(Freshness::Renew)) => match self.renew(current).await {
                Ok(true) => return Ok(current.token.clone()),
                // Not extended (capped by the token's max TTL): a new login.
                Ok(false) => {}
                // Still valid, and a new login would fail the same way.
                Err(VaultError::Unavailable { detail, .. }) => {
                    tracing::warn!(%detail, "cannot renew the OpenBao token now; using it as it is");
                    return Ok(current.token.clone());
                }
                Err(error) => {
                    tracing::info!(%error, "OpenBao did not renew the AppRole token; logging in again");
                }
            },
            (Some(_), Some(Freshness::LogIn)) | (Some(_), None) | (None, _) => {}
        }
        let fresh = self.log_in().await?;
        let token = fresh.token.clone();
        *session = Some(fresh);
        Ok(token)
    }

    async fn log_in(&self) -> Result<Session, VaultError> {
        let Auth::AppRole {
            role_id,
            secret_id,
            mount,
        } = &self.settings.auth
        else {
            return Err(VaultError::Refused(
                "an OpenBao login needs AppRole credentials".to_owned(),
            ));
        };
        let path = format!("auth/{mount}/login");
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "role_id": role_id,
                "secret_id": secret_id.expose(),
            }))
            .map_err(|e| VaultError::Io(format!("cannot encode the AppRole login: {e}")))?,
        );
        let started = self.clock.monotonic();
        let answer = self.send(Method::POST, &path, Some(&body), None).await?;
        if answer.status != StatusCode::OK {
            return Err(self.failure(Op::Login, &path, &answer, None));
        }
        let auth: AuthAnswer = self.parse_secret(&answer, Op::Login, &path)?;
        let Some(mut auth) = auth.auth else {
            return Err(self.not_understood(Op::Login, &path));
        };
        tracing::debug!(accessor = %auth.accessor, lease_s = auth.lease_duration, "logged in to OpenBao with AppRole");
        Ok(Session {
            token: SecretValue::new(std::mem::take(&mut *auth.client_token)),
            accessor: auth.accessor,
            since: started,
            lease: Duration::from_secs(auth.lease_duration),
            renewable: auth.renewable,
        })
    }

    /// Renews the session's token in place. `Ok(false)`: OpenBao renewed it
    /// for less than its last lease (its max TTL is near), so it should be
    /// replaced.
    async fn renew(&self, session: &mut Session) -> Result<bool, VaultError> {
        let path = "auth/token/renew-self";
        let started = self.clock.monotonic();
        let answer = self
            .send(Method::POST, path, Some(b"{}"), Some(&session.token))
            .await?;
        if answer.status != StatusCode::OK {
            return Err(self.failure(Op::Renew, path, &answer, None));
        }
        let renewed: AuthAnswer = self.parse_secret(&answer, Op::Renew, path)?;
        let Some(auth) = renewed.auth else {
            return Err(self.not_understood(Op::Renew, path));
        };
        let lease = Duration::from_secs(auth.lease_duration);
        if lease < session.lease {
            return Ok(false);
        }
        tracing::debug!(accessor = %session.accessor, lease_s = auth.lease_duration, "renewed the OpenBao token");
        session.since = started;
        session.lease = lease;
        session.renewable = auth.renewable;
        Ok(true)
    }

    // ---------------------------------------------------------------- errors

    fn unreachable(&self, path: &str, error: &reqwest::Error) -> VaultError {
        let detail = if error.is_timeout() {
            format!(
                "OpenBao at `{}` did not answer `{path}` within {}",
                self.address(),
                humantime::format_duration(self.settings.timeout)
            )
        } else {
            format!(
                "OpenBao at `{}` cannot be reached: {}",
                self.address(),
                root_cause(error)
            )
        };
        VaultError::unavailable(detail)
    }

    /// The error for an answer that is not the success the operation
    /// expected. `value`: what was being written, kept out of the message.
    fn failure(
        &self,
        op: Op,
        path: &str,
        answer: &Answer,
        value: Option<&SecretValue>,
    ) -> VaultError {
        let message = match value {
            Some(value) => hide(answer.message.clone(), &[value]),
            None => answer.message.clone(),
        };
        let address = self.address();
        let status = answer.status;
        let code = status.as_u16();
        if status == StatusCode::SERVICE_UNAVAILABLE || message.contains("is sealed") {
            let retry_after = Some(answer.retry_after.unwrap_or(SEALED_RETRY));
            let detail = if message.contains("sealed") {
                format!(
                    "OpenBao at `{address}` is sealed: it must be unsealed before palisade can read secrets"
                )
            } else {
                format!("OpenBao at `{address}` is unavailable (HTTP {code}: {message})")
            };
            return VaultError::Unavailable {
                detail,
                retry_after,
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return VaultError::Unavailable {
                detail: format!(
                    "OpenBao at `{address}` is rate-limiting palisade (HTTP 429: {message})"
                ),
                retry_after: Some(answer.retry_after.unwrap_or(SEALED_RETRY)),
            };
        }
        if matches!(op, Op::Login) && status.is_client_error() {
            return VaultError::Refused(format!(
                "OpenBao at `{address}` refused the AppRole login at `{path}` (HTTP {code}: {message}): \
                 check the role ID and the secret ID, and that the secret ID has not expired or run out of uses"
            ));
        }
        if status == StatusCode::FORBIDDEN {
            let check = match op {
                Op::LookUp | Op::Renew | Op::Login => {
                    "the token is wrong, expired or revoked".to_owned()
                }
                Op::Mount => format!(
                    "check that the mount `{}` exists and that the token's policy grants something under it",
                    self.settings.mount
                ),
                Op::Read | Op::List | Op::Write | Op::Revoke => format!(
                    "check that the token is valid and that its policy grants `{}` on `{path}`",
                    op.capability()
                ),
            };
            return VaultError::Refused(format!(
                "OpenBao at `{address}` refused {} `{path}` (HTTP 403: {message}): {check}",
                op.doing()
            ));
        }
        if status.is_redirection() {
            return VaultError::Refused(format!(
                "OpenBao at `{address}` redirected {} `{path}` (HTTP {code}): palisade does not follow redirects (they would carry the token); give the address of the active node",
                op.doing()
            ));
        }
        if status.is_server_error() {
            return VaultError::Unavailable {
                detail: format!(
                    "OpenBao at `{address}` failed {} `{path}` (HTTP {code}: {message})",
                    op.doing()
                ),
                retry_after: Some(answer.retry_after.unwrap_or(Duration::from_secs(1))),
            };
        }
        if status.is_client_error() {
            let on_kv = matches!(op, Op::Read | Op::List | Op::Write | Op::Revoke | Op::Mount);
            let hint = if status == StatusCode::NOT_FOUND && on_kv {
                format!(
                    " (is `{}` a KV v2 mount, and enabled here?)",
                    self.settings.mount
                )
            } else {
                String::new()
            };
            return VaultError::Refused(format!(
                "OpenBao at `{address}` refused {} `{path}` (HTTP {code}: {message}){hint}",
                op.doing()
            ));
        }
        VaultError::Corrupt(format!(
            "OpenBao at `{address}` answered {} `{path}` with HTTP {code}, which palisade does not expect",
            op.doing()
        ))
    }

    /// OpenBao's own error text (`{"errors": [...]}`), short, without the
    /// token sent or the configured credentials.
    fn message(&self, body: &[u8], token: Option<&SecretValue>) -> String {
        let Ok(errors) = serde_json::from_slice::<ErrorAnswer>(body) else {
            return "not an answer from OpenBao".to_owned();
        };
        let message = errors.errors.join("; ");
        if message.is_empty() {
            return "no error message".to_owned();
        }
        let configured = match &self.settings.auth {
            Auth::Token(token) => token,
            Auth::AppRole { secret_id, .. } => secret_id,
        };
        let mut hidden = vec![configured];
        hidden.extend(token);
        short(hide(message, &hidden))
    }

    fn not_understood(&self, op: Op, path: &str) -> VaultError {
        VaultError::Corrupt(format!(
            "OpenBao at `{}` answered {} `{path}` with something palisade does not understand",
            self.address(),
            op.doing()
        ))
    }

    /// An answer that holds no secret: its parse error may be quoted.
    fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        answer: &Answer,
        op: Op,
        path: &str,
    ) -> Result<T, VaultError> {
        serde_json::from_slice(&answer.body).map_err(|e| {
            VaultError::Corrupt(format!(
                "OpenBao at `{}` answered {} `{path}` with something palisade does not understand: {e}",
                self.address(),
                op.doing()
            ))
        })
    }

    /// An answer that may hold a secret or a token: the parse error (which
    /// can quote what it failed on) is dropped.
    fn parse_secret<T: for<'de> Deserialize<'de>>(
        &self,
        answer: &Answer,
        op: Op,
        path: &str,
    ) -> Result<T, VaultError> {
        serde_json::from_slice(&answer.body).map_err(|_| self.not_understood(op, path))
    }

    // ---------------------------------------------------------------- KV v2

    /// The names in this environment's folder (sub-folders and names
    /// palisade cannot use are left out).
    async fn names(&self) -> Result<Vec<SecretName>, VaultError> {
        let path = format!("{}/metadata/{}", self.settings.mount, self.folder());
        let answer = self
            .authed(Method::GET, &format!("{path}/?list=true"), None)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if answer.status != StatusCode::OK {
            return Err(self.failure(Op::List, &path, &answer, None));
        }
        let listed: Envelope<Keys> = self.parse(&answer, Op::List, &path)?;
        let mut names = Vec::with_capacity(listed.data.keys.len());
        for key in listed.data.keys {
            if key.ends_with('/') {
                continue;
            }
            match SecretName::parse(&key) {
                Ok(name) => names.push(name),
                Err(why) => tracing::warn!(folder = %path, "left out of the vault: {why}"),
            }
        }
        Ok(names)
    }

    /// A secret's metadata; `None` if it has none (it does not exist).
    async fn metadata(&self, name: &SecretName) -> Result<Option<Metadata>, VaultError> {
        let path = self.metadata_path(name);
        let answer = self.authed(Method::GET, &path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if answer.status != StatusCode::OK {
            return Err(self.failure(Op::Read, &path, &answer, None));
        }
        let metadata: Envelope<Metadata> = self.parse(&answer, Op::Read, &path)?;
        Ok(Some(metadata.data))
    }

    /// One version's value (`None`: the current one); `Err(None)` if that
    /// version cannot be read (never written, deleted or destroyed).
    async fn value(
        &self,
        name: &SecretName,
        version: Option<u64>,
    ) -> Result<(SecretValue, u64), Option<VaultError>> {
        let path = self.data_path(name);
        let query = match version {
            Some(v) => format!("{path}?version={v}"),
            None => path.clone(),
        };
        let answer = self.authed(Method::GET, &query, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(None);
        }
        if answer.status != StatusCode::OK {
            return Err(Some(self.failure(Op::Read, &path, &answer, None)));
        }
        let mut read: Envelope<DataAnswer> = self.parse_secret(&answer, Op::Read, &path)?;
        let value = std::mem::take(&mut *read.data.data.value);
        if value.is_empty() {
            return Err(Some(VaultError::Corrupt(format!(
                "the secret at `{path}` on OpenBao at `{}` is empty",
                self.address()
            ))));
        }
        Ok((SecretValue::new(value), read.data.metadata.version))
    }

    fn meta(&self, name: &SecretName, metadata: &Metadata) -> Result<Meta, VaultError> {
        let path = self.metadata_path(name);
        let time = |field: &str, text: &str| {
            unix_seconds(text).ok_or_else(|| {
                VaultError::Corrupt(format!(
                    "the metadata of `{path}` on OpenBao at `{}` has `{field}` = `{}`, not an RFC 3339 time",
                    self.address(),
                    text.escape_debug()
                ))
            })
        };
        Ok(Meta {
            name: name.clone(),
            environment: self.settings.environment.clone(),
            version: metadata.current_version,
            created: time("created_time", &metadata.created_time)?,
            updated: time("updated_time", &metadata.updated_time)?,
            revoked: !metadata.readable(metadata.current_version, self.clock.wall()),
        })
    }

    async fn read_now(&self, name: &SecretName) -> Result<Entry, VaultError> {
        let (value, metadata) = tokio::join!(self.value(name, None), self.metadata(name));
        // The data path's refusal first: it is the one a policy must allow.
        let value = match value {
            Err(Some(error)) => return Err(error),
            Ok(read) => Ok(read),
            Err(None) => Err(None),
        };
        match (value, metadata?) {
            (Ok((value, version)), Some(metadata)) => {
                let mut meta = self.meta(name, &metadata)?;
                // The version read is the one described, even if a write
                // came between the two requests.
                meta.version = version;
                meta.revoked = false;
                Ok(Entry { meta, value })
            }
            (Err(None), Some(_)) => Err(VaultError::Revoked(name.clone())),
            (Err(None), None) | (Ok(_), None) => Err(VaultError::NotFound(name.clone())),
            (Err(Some(error)), _) => Err(error),
        }
    }

    async fn list_now(&self) -> Result<Vec<Meta>, VaultError> {
        let mut metas = Vec::new();
        for name in self.names().await? {
            // Deleted between the list and now: not there any more.
            if let Some(metadata) = self.metadata(&name).await? {
                metas.push(self.meta(&name, &metadata)?);
            }
        }
        Ok(metas)
    }

    async fn write_now(&self, name: &SecretName, value: SecretValue) -> Result<Meta, VaultError> {
        if value.is_empty() {
            return Err(VaultError::Refused(format!(
                "secret `{name}`: the value is empty"
            )));
        }
        let path = self.data_path(name);
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({ "data": { "value": value.expose() } }))
                .map_err(|e| VaultError::Io(format!("cannot encode the secret `{name}`: {e}")))?,
        );
        let answer = self.authed(Method::POST, &path, Some(&body)).await?;
        if answer.status != StatusCode::OK {
            return Err(self.failure(Op::Write, &path, &answer, Some(&value)));
        }
        let written: Envelope<VersionInfo> = self.parse(&answer, Op::Write, &path)?;
        let Some(metadata) = self.metadata(name).await? else {
            return Err(VaultError::NotFound(name.clone()));
        };
        let mut meta = self.meta(name, &metadata)?;
        meta.version = written.data.version;
        if let Some(at) = unix_seconds(&written.data.created_time) {
            meta.updated = at;
        }
        meta.revoked = false;
        Ok(meta)
    }

    async fn revoke_now(&self, name: &SecretName) -> Result<Meta, VaultError> {
        let Some(metadata) = self.metadata(name).await? else {
            return Err(VaultError::NotFound(name.clone()));
        };
        let path = self.data_path(name);
        let answer = self.authed(Method::DELETE, &path, None).await?;
        if !answer.status.is_success() {
            return Err(self.failure(Op::Revoke, &path, &answer, None));
        }
        let mut meta = self.meta(name, &metadata)?;
        meta.revoked = true;
        Ok(meta)
    }

    async fn known_now(&self) -> Result<Known, VaultError> {
        let mut known = Known::default();
        let now = self.clock.wall();
        for name in self.names().await? {
            let Some(metadata) = self.metadata(&name).await? else {
                continue;
            };
            let current = metadata.current_version;
            let earlier = metadata
                .readable_versions(now)
                .filter(|v| *v < current)
                .take(EARLIER_KNOWN);
            let versions = std::iter::once(current)
                .filter(|v| metadata.readable(*v, now))
                .chain(earlier);
            for version in versions {
                match self.value(&name, Some(version)).await {
                    Ok((value, _)) => known.values.push((name.clone(), value)),
                    // Deleted since the metadata was read.
                    Err(None) => {}
                    Err(Some(error)) => return Err(error),
                }
            }
        }
        Ok(known)
    }
}

impl Vault for OpenBaoVault {
    fn describe(&self) -> String {
        let namespace = match &self.settings.namespace {
            Some(ns) => format!(", namespace `{ns}`"),
            None => String::new(),
        };
        format!(
            "OpenBao at `{}`{namespace}, mount `{}`, path `{}/`",
            self.address(),
            self.settings.mount,
            self.folder()
        )
    }

    fn environment(&self) -> &str {
        &self.settings.environment
    }

    fn read<'a>(&'a self, name: &'a SecretName) -> VaultFuture<'a, Entry> {
        Box::pin(self.read_now(name))
    }

    fn list(&self) -> VaultFuture<'_, Vec<Meta>> {
        Box::pin(self.list_now())
    }

    fn write<'a>(&'a self, name: &'a SecretName, value: SecretValue) -> VaultFuture<'a, Meta> {
        Box::pin(self.write_now(name, value))
    }

    fn revoke<'a>(&'a self, name: &'a SecretName) -> VaultFuture<'a, Meta> {
        Box::pin(self.revoke_now(name))
    }

    fn known(&self) -> VaultFuture<'_, Known> {
        Box::pin(self.known_now())
    }
}

// -------------------------------------------------------------------- answers

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct MountInfo {
    #[serde(rename = "type")]
    kind: String,
    options: Option<MountOptions>,
}

#[derive(Deserialize)]
struct MountOptions {
    version: Option<String>,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct AuthAnswer {
    auth: Option<AuthData>,
}

#[derive(Deserialize)]
struct AuthData {
    client_token: Zeroizing<String>,
    accessor: String,
    lease_duration: u64,
    renewable: bool,
}

#[derive(Deserialize)]
struct DataAnswer {
    data: ValueData,
    metadata: VersionInfo,
}

#[derive(Deserialize)]
struct ValueData {
    value: Zeroizing<String>,
}

#[derive(Deserialize)]
struct VersionInfo {
    version: u64,
    created_time: String,
}

#[derive(Deserialize)]
struct Metadata {
    current_version: u64,
    created_time: String,
    updated_time: String,
    #[serde(default)]
    versions: BTreeMap<String, VersionState>,
}

#[derive(Deserialize)]
struct VersionState {
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

impl Metadata {
    /// Whether `version` can be read now: kept, not destroyed, and not
    /// deleted (a deletion time in the future is a scheduled one).
    fn readable(&self, version: u64, now: SystemTime) -> bool {
        self.versions
            .get(&version.to_string())
            .is_some_and(|state| state.readable(now))
    }

    /// Readable versions, newest first.
    fn readable_versions(&self, now: SystemTime) -> impl Iterator<Item = u64> + '_ {
        let mut versions: Vec<u64> = self
            .versions
            .iter()
            .filter(|(_, state)| state.readable(now))
            .filter_map(|(number, _)| number.parse().ok())
            .collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        versions.into_iter()
    }
}

impl VersionState {
    fn readable(&self, now: SystemTime) -> bool {
        if self.destroyed {
            return false;
        }
        if self.deletion_time.is_empty() {
            return true;
        }
        // An unreadable deletion time counts as deleted.
        humantime::parse_rfc3339(&self.deletion_time).is_ok_and(|at| at > now)
    }
}

// -------------------------------------------------------------------- helpers

/// `message` with every occurrence of the `hidden` values replaced.
fn hide(mut message: String, hidden: &[&SecretValue]) -> String {
    for secret in hidden.iter().map(|s| s.expose()).filter(|s| !s.is_empty()) {
        message = message.replace(secret, "[redacted]");
    }
    message
}

/// At most `MAX_MESSAGE` bytes of `message`, cut at a character boundary.
fn short(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

fn unix_seconds(text: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(text).ok()?;
    at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.clamp(1, 3600)))
}

/// The innermost cause of a transport error (`Connection refused (os error 111)`).
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn is_loopback(address: &Url) -> bool {
    match address.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A path inside OpenBao (`secret`, `kv/team`): segments of letters,
/// digits, `_`, `-` and `.`, none of them `.` or `..`.
fn check_path(field: &str, path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("it is empty".to_owned());
    }
    for segment in path.split('/') {
        let plain = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            return Err(format!(
                "`{}` is not a path of letters, digits, `_`, `-` and `.` separated by `/` (in {field})",
                path.escape_debug()
            ));
        }
    }
    Ok(())
}

/// An environment: one segment, so that it cannot reach another's folder.
fn check_segment(environment: &str) -> Result<(), String> {
    let mut chars = environment.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a lowercase letter or digit followed by a-z 0-9 _ -",
            environment.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(address: &str) -> OpenBao {
        OpenBao::new(
            Url::parse(address).unwrap(),
            "dev",
            Auth::Token(SecretValue::new("s.test-token-1".into())),
        )
    }

    #[test]
    fn a_session_is_used_then_renewed_then_replaced() {
        let since = Instant::now();
        let session = |lease: u64, renewable: bool| Session {
            token: SecretValue::new("t".into()),
            accessor: "a".into(),
            since,
            lease: Duration::from_secs(lease),
            renewable,
        };
        let check = |s: &Session, after: u64, expected: Freshness| {
            assert_eq!(
                s.freshness(since + Duration::from_secs(after)),
                expected,
                "lease {:?}, after {after} s",
                s.lease
            );
        };
        let hour = session(3600, true);
        check(&hour, 0, Freshness::Use);
        check(&hour, 2399, Freshness::Use);
        check(&hour, 2400, Freshness::Renew);
        check(&hour, 3599, Freshness::Renew);
        check(&hour, 3600, Freshness::LogIn);
        check(&hour, 90_000, Freshness::LogIn);
        // Not renewable: replaced at the same point instead.
        let fixed = session(3600, false);
        check(&fixed, 2399, Freshness::Use);
        check(&fixed, 2400, Freshness::LogIn);
        // No lease: never expires.
        check(&session(0, false), 1_000_000, Freshness::Use);
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        let refused = |change: fn(&mut OpenBao), field: &str| {
            let mut s = settings("http://127.0.0.1:8200");
            change(&mut s);
            match OpenBaoVault::new(s) {
                Err(VaultError::Refused(m)) => {
                    assert!(m.contains(&format!("`{field}`")), "{m}");
                    assert!(!m.contains("s.test-token-1"), "{m}");
                }
                other => panic!("accepted ({field}): {other:?}"),
            }
        };
        refused(|s| s.mount = "../sys".into(), "mount");
        refused(|s| s.mount = String::new(), "mount");
        refused(|s| s.mount = "secret/".into(), "mount");
        refused(|s| s.prefix = "palisade/../other".into(), "prefix");
        refused(|s| s.prefix = "a b".into(), "prefix");
        refused(|s| s.environment = "Prod".into(), "environment");
        refused(|s| s.environment = "prod/../dev".into(), "environment");
        refused(|s| s.environment = String::new(), "environment");
        refused(|s| s.namespace = Some("team\n".into()), "namespace");
        refused(|s| s.timeout = Duration::ZERO, "timeout");
        refused(
            |s| s.address = Url::parse("http://user:pw@127.0.0.1:8200").unwrap(),
            "address",
        );
        refused(
            |s| s.address = Url::parse("http://127.0.0.1:8200/?x=1").unwrap(),
            "address",
        );
        refused(
            |s| s.address = Url::parse("file:///tmp/bao").unwrap(),
            "address",
        );
        refused(
            |s| s.auth = Auth::approle("", SecretValue::new("s".into())),
            "auth.role_id",
        );

        let mut s = settings("https://bao.example:8200/");
        s.mount = "kv/team-a".into();
        s.prefix = "apps/palisade".into();
        s.namespace = Some("team-a".into());
        let vault = OpenBaoVault::new(s).unwrap();
        assert_eq!(vault.base, "https://bao.example:8200/v1/");
        let n = SecretName::parse("gh.token").unwrap();
        assert_eq!(
            vault.data_path(&n),
            "kv/team-a/data/apps/palisade/dev/gh.token"
        );
        assert_eq!(
            vault.metadata_path(&n),
            "kv/team-a/metadata/apps/palisade/dev/gh.token"
        );
        assert_eq!(
            vault.describe(),
            "OpenBao at `https://bao.example:8200`, namespace `team-a`, mount `kv/team-a`, path `apps/palisade/dev/`"
        );
    }

    #[test]
    fn error_texts_lose_credentials_and_stay_short() {
        let token = SecretValue::new("hvs.secret-token".into());
        let value = SecretValue::new("the-value".into());
        assert_eq!(
            hide(
                "bad hvs.secret-token near the-value".into(),
                &[&token, &value]
            ),
            "bad [redacted] near [redacted]"
        );
        let long = short("é".repeat(400));
        assert!(long.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", long.len());
        assert!(long.ends_with('…'));
        assert_eq!(short("short".into()), "short");

        let vault = OpenBaoVault::new(settings("http://127.0.0.1:8200")).unwrap();
        let body = br#"{"errors":["token s.test-token-1 is bad","and so on"]}"#;
        assert_eq!(
            vault.message(body, None),
            "token [redacted] is bad; and so on"
        );
        assert_eq!(vault.message(b"<html>", None), "not an answer from OpenBao");
        // What a 403 says, and that a sealed server is unavailable.
        let answer = |status: u16, message: &str| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: Zeroizing::new(Vec::new()),
            retry_after: None,
            message: message.to_owned(),
        };
        let e = vault.failure(
            Op::Write,
            "secret/data/palisade/dev/k",
            &answer(403, "permission denied"),
            Some(&value),
        );
        let m = e.to_string();
        assert!(matches!(e, VaultError::Refused(_)), "{m}");
        assert!(
            m.contains("grants `create and update` on `secret/data/palisade/dev/k`"),
            "{m}"
        );
        let e = vault.failure(Op::Read, "p", &answer(503, "Vault is sealed"), None);
        assert!(
            matches!(&e, VaultError::Unavailable { detail, retry_after: Some(_) } if detail.contains("is sealed")),
            "{e:?}"
        );
        let e = vault.failure(Op::Read, "p", &answer(500, "internal error"), None);
        assert!(matches!(e, VaultError::Unavailable { .. }), "{e:?}");
        let e = vault.failure(Op::Write, "p", &answer(400, "echo the-value"), Some(&value));
        assert!(
            matches!(&e, VaultError::Refused(m) if !m.contains("the-value")),
            "{e:?}"
        );
        let e = vault.failure(Op::Read, "p", &answer(307, ""), None);
        assert!(e.to_string().contains("does not follow redirects"), "{e}");
    }

    #[test]
    fn deleted_destroyed_and_scheduled_versions() {
        let now = humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let state = |deletion_time: &str, destroyed: bool| VersionState {
            deletion_time: deletion_time.to_owned(),
            destroyed,
        };
        assert!(state("", false).readable(now));
        assert!(!state("", true).readable(now));
        assert!(!state("2025-12-31T23:59:59.5Z", false).readable(now));
        // A deletion scheduled for later (delete_version_after) has not happened.
        assert!(state("2026-01-02T00:00:00Z", false).readable(now));
        assert!(!state("not a time", false).readable(now));

        let metadata = Metadata {
            current_version: 4,
            created_time: "2025-01-01T00:00:00Z".into(),
            updated_time: "2025-06-01T00:00:00.123456789Z".into(),
            versions: BTreeMap::from([
                ("1".into(), state("", false)),
                ("2".into(), state("", true)),
                ("3".into(), state("", false)),
                ("4".into(), state("2025-07-01T00:00:00Z", false)),
                ("10".into(), state("", false)),
            ]),
        };
        assert!(!metadata.readable(4, now));
        assert!(!metadata.readable(5, now));
        assert_eq!(
            metadata.readable_versions(now).collect::<Vec<_>>(),
            [10, 3, 1]
        );
        assert_eq!(unix_seconds(&metadata.updated_time), Some(1_748_736_000));
    }

    #[test]
    fn retry_after_is_seconds_within_bounds() {
        let check = |value: &str, expected: Option<u64>| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            assert_eq!(
                retry_after(&headers),
                expected.map(Duration::from_secs),
                "{value}"
            );
        };
        check("7", Some(7));
        check("0", Some(1));
        check("999999", Some(3600));
        check("Wed, 21 Oct 2015 07:28:00 GMT", None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
