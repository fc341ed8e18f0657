//! The broker: hands a secret to an upstream or a brokered request only as its binding allows.
//!
//! Every use goes through [`Broker::entry`], which checks, in order: the
//! secret has a binding; the binding is for the environment this gateway
//! serves; the upstream asking is one the binding lists; the vault has a
//! current, unrevoked value. The value is then taught to the redactor
//! before it goes anywhere, and placed only where the binding says
//! (header, query parameter, environment variable) toward only its
//! destination. Each use reads the vault (the file vault answers from
//! memory unless its file changed), so a rotation or a revocation applies
//! to the next call of a running gateway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_core::stage::{InjectSecrets, StageError, StageFuture};
use palisade_core::{CallContext, CallHead, Decision, Finding, Reason, ReasonCode, Stage};
use reqwest::header::HeaderValue;
use serde_json::Value;
use url::Url;

use crate::binding::{Binding, Mismatch, Placement, SecretName};
use crate::redact::SecretRedactor;
use crate::value::SecretValue;
use crate::vault::{Entry, Meta, Vault, VaultError};

/// How often a vault that cannot tell cheaply whether it changed
/// (OpenBao) is read whole again for the redactor.
const KNOWN_REFRESH: Duration = Duration::from_secs(30);
/// Last use is reported at most this often per secret.
const USE_REPORT_EVERY: Duration = Duration::from_secs(60);

/// One place an upstream's configuration names a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub secret: SecretName,
    pub placement: Placement,
}

/// Why a secret was not handed out. `detail` names the secret and the
/// rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    pub secret: Option<SecretName>,
    /// A stable code for the finding: `secret.unbound`, `secret.revoked`, …
    pub code: &'static str,
    pub detail: String,
    /// The vault could not be reached; the caller may retry.
    pub retry_after: Option<Duration>,
}

impl Refusal {
    pub(crate) fn new(secret: Option<&SecretName>, code: &'static str, detail: String) -> Self {
        Self {
            secret: secret.cloned(),
            code,
            detail,
            retry_after: None,
        }
    }

    /// The deny (or, for an unreachable vault, the stage error) it becomes.
    pub fn into_decision(self) -> Result<Decision, StageError> {
        if let Some(retry) = self.retry_after {
            return Err(StageError::unavailable(self.detail, Some(retry)));
        }
        let finding = Finding {
            stage: Stage::InjectSecrets,
            code: self.code.to_owned(),
            message: self.detail.clone(),
        };
        Ok(Decision {
            findings: vec![finding],
            ..Decision::deny(Reason::new(ReasonCode::NotAuthorized, self.detail))
        })
    }
}

/// A secret resolved for an environment variable of a spawned upstream.
pub struct EnvSecret {
    pub variable: String,
    pub secret: SecretName,
    pub version: u64,
    value: SecretValue,
}

impl std::fmt::Debug for EnvSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSecret")
            .field("variable", &self.variable)
            .field("secret", &self.secret)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl EnvSecret {
    /// Sets the variable on the command that spawns the upstream.
    pub fn apply(&self, command: &mut tokio::process::Command) {
        command.env(&self.variable, self.value.expose());
    }

    /// Sets the variable in an environment a sandbox's payload will get.
    pub fn insert_into(&self, env: &mut BTreeMap<String, String>) {
        env.insert(self.variable.clone(), self.value.expose().to_owned());
    }
}

/// Called with a secret's name and the time of a use (throttled).
pub type UseReporter = Arc<dyn Fn(&SecretName, u64) + Send + Sync>;

/// What the broker is built from.
#[derive(Clone)]
pub struct BrokerSettings {
    pub vault: Arc<dyn Vault>,
    pub bindings: Vec<Binding>,
    /// Each upstream's references to secrets, by upstream name.
    pub references: BTreeMap<String, Vec<Reference>>,
    /// Upstreams that are the built-in `http_request` tool, with the URL
    /// prefixes each may reach without a secret (beyond the destinations
    /// of the secrets bound to it).
    pub http_request: BTreeMap<String, Vec<String>>,
    pub redactor: Arc<SecretRedactor>,
    pub on_use: Option<UseReporter>,
    /// The largest response body `http_request` returns.
    pub max_response_bytes: usize,
    /// The environment's egress: `http_request` goes out under its rules.
    pub egress: Arc<palisade_egress::Egress>,
}

impl std::fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("vault", &self.vault.describe())
            .field("bindings", &self.bindings.len())
            .finish_non_exhaustive()
    }
}

/// The secrets broker of one gateway.
pub struct Broker {
    pub(crate) vault: Arc<dyn Vault>,
    pub(crate) bindings: BTreeMap<SecretName, Binding>,
    references: BTreeMap<String, Vec<Reference>>,
    pub(crate) http_request: BTreeMap<String, Vec<Url>>,
    pub(crate) redactor: Arc<SecretRedactor>,
    on_use: Option<UseReporter>,
    /// The vault generation (or the time) the redactor last learnt all values at.
    refreshed: Mutex<Option<Refreshed>>,
    reported: Mutex<HashMap<SecretName, Instant>>,
    pub(crate) http: reqwest::Client,
    pub(crate) max_response_bytes: usize,
    pub(crate) egress: Arc<palisade_egress::Egress>,
}

#[derive(Debug, Clone, Copy)]
enum Refreshed {
    Generation(u64),
    At(Instant),
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("vault", &self.vault.describe())
            .field("bindings", &self.bindings.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("`secrets.{0}`: {1}")]
    Binding(SecretName, String),
    #[error("`upstreams.http_request`: invalid allowed URL `{0}`: {1}")]
    AllowUrl(String, String),
    #[error("cannot build the HTTP client for `http_request`: {0}")]
    Client(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Broker {
    /// Builds the broker and teaches the redactor every value the vault
    /// holds; a vault that cannot be opened stops the start.
    pub async fn start(settings: BrokerSettings) -> Result<Arc<Self>, BrokerError> {
        let mut bindings = BTreeMap::new();
        for binding in settings.bindings {
            binding
                .validate()
                .map_err(|e| BrokerError::Binding(binding.name.clone(), e))?;
            bindings.insert(binding.name.clone(), binding);
        }
        let mut http_request = BTreeMap::new();
        for (upstream, prefixes) in settings.http_request {
            let mut urls = Vec::new();
            for prefix in prefixes {
                let url = Url::parse(&prefix)
                    .map_err(|e| BrokerError::AllowUrl(prefix.clone(), e.to_string()))?;
                urls.push(url);
            }
            http_request.insert(upstream, urls);
        }
        let http = settings
            .egress
            .client(reqwest::Client::builder())
            // A redirect would carry an injected header to wherever the
            // server points; the agent sees the 3xx instead.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| BrokerError::Client(e.to_string()))?;
        let broker = Arc::new(Self {
            vault: settings.vault,
            bindings,
            references: settings.references,
            http_request,
            redactor: settings.redactor,
            on_use: settings.on_use,
            refreshed: Mutex::new(None),
            reported: Mutex::new(HashMap::new()),
            http,
            max_response_bytes: settings.max_response_bytes,
            egress: settings.egress,
        });
        broker.refresh(true).await?;
        Ok(broker)
    }

    pub fn vault(&self) -> &Arc<dyn Vault> {
        &self.vault
    }

    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.values()
    }

    pub fn redactor(&self) -> &Arc<SecretRedactor> {
        &self.redactor
    }

    /// Whether `upstream` is a built-in `http_request` tool.
    pub fn serves_http_request(&self, upstream: &str) -> bool {
        self.http_request.contains_key(upstream)
    }

    /// The secrets `upstream`'s configuration references.
    pub fn references(&self, upstream: &str) -> &[Reference] {
        self.references.get(upstream).map_or(&[], Vec::as_slice)
    }

    /// Teaches the redactor the vault's values again if the vault changed
    /// (or, when it cannot tell, every 30 s). `force`: now, regardless.
    pub async fn refresh(&self, force: bool) -> Result<(), VaultError> {
        let generation = self.vault.generation();
        let stale = match (*lock(&self.refreshed), generation) {
            _ if force => true,
            (None, _) => true,
            (Some(Refreshed::Generation(seen)), Some(now)) => seen != now,
            (Some(Refreshed::At(at)), None) => at.elapsed() >= KNOWN_REFRESH,
            (Some(Refreshed::Generation(_)), None) | (Some(Refreshed::At(_)), Some(_)) => true,
        };
        if !stale {
            return Ok(());
        }
        let known = self.vault.known().await?;
        self.redactor.set_known(&known);
        *lock(&self.refreshed) = Some(match generation {
            Some(g) => Refreshed::Generation(g),
            None => Refreshed::At(Instant::now()),
        });
        Ok(())
    }

    /// Every secret's metadata with its binding (if any), for `show` and health.
    pub async fn list(&self) -> Result<Vec<(Meta, Option<Binding>)>, VaultError> {
        let metas = self.vault.list().await?;
        Ok(metas
            .into_iter()
            .map(|m| {
                let binding = self.bindings.get(&m.name).cloned();
                (m, binding)
            })
            .collect())
    }

    /// Secrets older than their rotation schedule, and by how much.
    pub async fn overdue(&self) -> Result<Vec<(SecretName, Duration)>, VaultError> {
        let now = now_secs();
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|(meta, _)| !meta.revoked)
            .filter_map(|(meta, binding)| {
                let late = binding?.overdue(meta.updated, now)?;
                Some((meta.name, late))
            })
            .collect())
    }

    /// The current value of `name` for `upstream`, if its binding allows
    /// that upstream; taught to the redactor before it is returned.
    pub(crate) async fn entry(
        &self,
        upstream: &str,
        name: &SecretName,
    ) -> Result<(Entry, &Binding), Refusal> {
        let Some(binding) = self.bindings.get(name) else {
            return Err(Refusal::new(
                Some(name),
                "secret.unbound",
                format!(
                    "secret `{name}` has no binding (`[secrets.{name}]`), so nothing may use it"
                ),
            ));
        };
        if binding.environment != self.vault.environment() {
            return Err(Refusal::new(
                Some(name),
                "secret.environment",
                format!(
                    "secret `{name}` belongs to environment `{}`; this gateway serves `{}`",
                    binding.environment,
                    self.vault.environment()
                ),
            ));
        }
        if !binding.upstreams.iter().any(|u| u == upstream) {
            return Err(Refusal::new(
                Some(name),
                "secret.not-for-upstream",
                format!("secret `{name}` is not bound to `{upstream}`"),
            ));
        }
        let entry = self.vault.read(name).await.map_err(|e| {
            let (code, retry) = match &e {
                VaultError::NotFound(_) => ("secret.missing", None),
                VaultError::Revoked(_) => ("secret.revoked", None),
                VaultError::Unavailable { retry_after, .. } => (
                    "secret.vault-unavailable",
                    retry_after.or(Some(Duration::from_secs(1))),
                ),
                VaultError::Locked(_)
                | VaultError::Corrupt(_)
                | VaultError::Refused(_)
                | VaultError::Io(_) => ("secret.vault-error", None),
            };
            Refusal {
                retry_after: retry,
                ..Refusal::new(Some(name), code, format!("secret `{name}`: {e}"))
            }
        })?;
        // A value the redactor cannot recognise is never sent: a copy that
        // came back would reach the model unredacted.
        if entry.value.len() < crate::redact::exact::MIN_LEN {
            return Err(Refusal::new(
                Some(name),
                "secret.too-short",
                format!(
                    "secret `{name}` is shorter than {} bytes, too short to be redacted reliably, so palisade does not send it",
                    crate::redact::exact::MIN_LEN
                ),
            ));
        }
        self.redactor.learn(&[(name.clone(), entry.value.clone())]);
        self.report_use(name);
        Ok((entry, binding))
    }

    fn report_use(&self, name: &SecretName) {
        let Some(report) = &self.on_use else { return };
        {
            let mut reported = lock(&self.reported);
            if reported
                .get(name)
                .is_some_and(|at| at.elapsed() < USE_REPORT_EVERY)
            {
                return;
            }
            reported.insert(name.clone(), Instant::now());
        }
        report(name, now_secs());
    }

    /// A header value for an HTTP upstream's request to `url`.
    pub async fn header(
        &self,
        upstream: &str,
        url: &Url,
        method: &str,
        header: &str,
        name: &SecretName,
        format: Option<&str>,
    ) -> Result<HeaderValue, Refusal> {
        let (entry, binding) = self.entry(upstream, name).await?;
        let bound_format = match &binding.placement {
            Placement::Header {
                name: bound,
                format,
            } if bound.eq_ignore_ascii_case(header) => format.as_str(),
            other
            @ (Placement::Header { .. } | Placement::Query { .. } | Placement::Env { .. }) => {
                return Err(Refusal::new(
                    Some(name),
                    "secret.placement",
                    format!(
                        "secret `{name}` goes in the {}, not in header `{header}`",
                        other.describe()
                    ),
                ));
            }
        };
        check_destination(binding, url, method)?;
        let text = zeroize::Zeroizing::new(format.unwrap_or(bound_format).replacen(
            "{}",
            entry.value.expose(),
            1,
        ));
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            Refusal::new(
                Some(name),
                "secret.not-a-header",
                format!("secret `{name}` cannot be sent in a header (it holds control characters)"),
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The environment variables of a spawned upstream that come from secrets.
    pub async fn env(&self, upstream: &str) -> Result<Vec<EnvSecret>, Refusal> {
        let mut out = Vec::new();
        for reference in self.references(upstream) {
            let Placement::Env { name: variable } = &reference.placement else {
                continue;
            };
            let (entry, binding) = self.entry(upstream, &reference.secret).await?;
            match &binding.placement {
                Placement::Env { name } if name == variable => {}
                other @ (Placement::Header { .. }
                | Placement::Query { .. }
                | Placement::Env { .. }) => {
                    return Err(Refusal::new(
                        Some(&reference.secret),
                        "secret.placement",
                        format!(
                            "secret `{}` goes in the {}, not in environment variable `{variable}`",
                            reference.secret,
                            other.describe()
                        ),
                    ));
                }
            }
            out.push(EnvSecret {
                variable: variable.clone(),
                secret: reference.secret.clone(),
                version: entry.meta.version,
                value: entry.value,
            });
        }
        Ok(out)
    }

    /// The versions of the secrets `upstream` references, read now: a
    /// revoked or missing one is a refusal.
    pub async fn current_versions(
        &self,
        upstream: &str,
    ) -> Result<BTreeMap<SecretName, u64>, Refusal> {
        let mut versions = BTreeMap::new();
        for reference in self.references(upstream) {
            let (entry, _) = self.entry(upstream, &reference.secret).await?;
            versions.insert(reference.secret.clone(), entry.meta.version);
        }
        Ok(versions)
    }

    /// The overdue finding for a secret used now, if it is overdue.
    fn overdue_finding(&self, binding: &Binding, meta: &Meta) -> Option<Finding> {
        let late = binding.overdue(meta.updated, now_secs())?;
        Some(Finding {
            stage: Stage::InjectSecrets,
            code: "secret.rotation-overdue".into(),
            message: format!(
                "secret `{}` is {} past its rotation schedule",
                binding.name,
                humantime::format_duration(Duration::from_secs(late.as_secs()))
            ),
        })
    }

    async fn judge(&self, head: &CallHead, arguments: &Value) -> Result<Vec<Finding>, Refusal> {
        let upstream = head.target.server.as_ref();
        if self.serves_http_request(upstream) {
            let request = crate::http_request::Request::parse(arguments)
                .map_err(|e| Refusal::new(None, "http-request.invalid", e))?;
            let plan = self.plan(upstream, &request).await?;
            let mut findings = Vec::new();
            for (binding, meta) in &plan.secrets {
                findings.push(Finding {
                    stage: Stage::InjectSecrets,
                    code: "secret.bound".into(),
                    message: format!(
                        "secret `{}` (version {}) toward {}",
                        binding.name,
                        meta.version,
                        binding
                            .destination
                            .as_ref()
                            .map_or_else(String::new, |d| d.describe())
                    ),
                });
                findings.extend(self.overdue_finding(binding, meta));
            }
            return Ok(findings);
        }
        if let Some(at) = crate::http_request::find_placeholder(arguments) {
            return Err(Refusal::new(
                None,
                "secret.placeholder-elsewhere",
                format!(
                    "a `{{{{secret:…}}}}` placeholder at `{at}`: placeholders are substituted only by the built-in `http_request` tool, and this call is to `{upstream}`"
                ),
            ));
        }
        let mut findings = Vec::new();
        for reference in self.references(upstream) {
            let (entry, binding) = self.entry(upstream, &reference.secret).await?;
            findings.extend(self.overdue_finding(binding, &entry.meta));
        }
        Ok(findings)
    }
}

pub(crate) fn check_destination(binding: &Binding, url: &Url, method: &str) -> Result<(), Refusal> {
    let name = &binding.name;
    let Some(destination) = &binding.destination else {
        return Err(Refusal::new(
            Some(name),
            "secret.no-destination",
            format!("secret `{name}` has no network destination"),
        ));
    };
    destination.admits(url, method).map_err(|why: Mismatch| {
        Refusal::new(
            Some(name),
            "secret.destination-mismatch",
            format!(
                "secret `{name}` is bound to {}: {why}",
                destination.describe()
            ),
        )
    })
}

/// What a brokered request will use: each secret's binding and metadata.
#[derive(Debug)]
pub(crate) struct Plan<'b> {
    pub secrets: Vec<(&'b Binding, Meta)>,
    pub values: Vec<(SecretName, SecretValue)>,
}

impl Broker {
    /// Checks every placeholder of `request` against its binding, and the
    /// URL against what the tool may reach; reads the values it needs.
    pub(crate) async fn plan(
        &self,
        upstream: &str,
        request: &crate::http_request::Request,
    ) -> Result<Plan<'_>, Refusal> {
        let mut plan = Plan {
            secrets: Vec::new(),
            values: Vec::new(),
        };
        let mut seen = BTreeSet::new();
        for use_ in &request.placeholders {
            if !seen.insert(use_.secret.clone()) {
                continue;
            }
            let (entry, binding) = self.entry(upstream, &use_.secret).await?;
            let placed = match (&binding.placement, &use_.place) {
                (Placement::Header { name, .. }, crate::http_request::Place::Header(header)) => {
                    name.eq_ignore_ascii_case(header)
                }
                (Placement::Query { name }, crate::http_request::Place::Query(param)) => {
                    name == param
                }
                (
                    Placement::Header { .. } | Placement::Query { .. } | Placement::Env { .. },
                    crate::http_request::Place::Header(_) | crate::http_request::Place::Query(_),
                ) => false,
            };
            if !placed {
                return Err(Refusal::new(
                    Some(&use_.secret),
                    "secret.placement",
                    format!(
                        "secret `{}` goes in the {}, not in the {}",
                        use_.secret,
                        binding.placement.describe(),
                        use_.place.describe()
                    ),
                ));
            }
            check_destination(binding, &request.url, &request.method)?;
            plan.values.push((use_.secret.clone(), entry.value));
            plan.secrets.push((binding, entry.meta));
        }
        if plan.secrets.is_empty() {
            self.reachable_without_secret(upstream, &request.url, &request.method)?;
        }
        Ok(plan)
    }

    /// A request carrying no secret may go to a destination of a secret
    /// bound to this tool, or under one of its allowed URL prefixes.
    fn reachable_without_secret(
        &self,
        upstream: &str,
        url: &Url,
        method: &str,
    ) -> Result<(), Refusal> {
        let bound = self
            .bindings
            .values()
            .filter(|b| b.upstreams.iter().any(|u| u == upstream))
            .filter_map(|b| b.destination.as_ref())
            .any(|d| d.admits(url, method).is_ok());
        let allowed = self.http_request.get(upstream).is_some_and(|prefixes| {
            prefixes.iter().any(|p| {
                p.scheme() == url.scheme()
                    && p.host_str() == url.host_str()
                    && p.port_or_known_default() == url.port_or_known_default()
                    && url.username().is_empty()
                    && url.password().is_none()
                    && url.path().starts_with(p.path())
            })
        });
        if bound || allowed {
            Ok(())
        } else {
            Err(Refusal::new(
                None,
                "http-request.not-allowed",
                format!(
                    "`{upstream}` may not reach `{}://{}`: it is neither a bound secret's destination nor under `allow`",
                    url.scheme(),
                    url.host_str().unwrap_or("?")
                ),
            ))
        }
    }
}

impl InjectSecrets for Broker {
    fn inject<'a>(
        &'a self,
        head: &'a CallHead,
        arguments: &'a mut Value,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, Decision> {
        Box::pin(async move {
            // The redactor learns what changed in the vault before anything runs.
            if let Err(e) = self.refresh(false).await {
                tracing::warn!("cannot refresh the redactor's known secrets: {e}");
            }
            match self.judge(head, arguments).await {
                Ok(findings) => Ok(Decision {
                    findings,
                    ..Decision::allow()
                }),
                Err(refusal) => refusal.into_decision(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::Destination;
    use crate::vault::file::{FileVault, SharedFileVault, Unlock};

    fn name(n: &str) -> SecretName {
        SecretName::parse(n).unwrap()
    }

    fn binding(n: &str, environment: &str, placement: Placement) -> Binding {
        let destination = match placement {
            Placement::Env { .. } => None,
            Placement::Header { .. } | Placement::Query { .. } => {
                Some(Destination::parse("https://api.test/v1/", &[]).unwrap())
            }
        };
        Binding {
            name: name(n),
            environment: environment.into(),
            upstreams: vec!["u".into()],
            destination,
            placement,
            rotate_every: None,
        }
    }

    #[derive(Debug)]
    struct Unrecorded;

    impl palisade_egress::Recorder for Unrecorded {
        fn record(&self, _: palisade_egress::Record) -> futures_util::future::BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    async fn broker(dir: &std::path::Path, values: &[(&str, &str)]) -> Arc<Broker> {
        let vault = FileVault::new(dir.join("v.age"), "dev", Unlock::unknown());
        for (n, v) in values {
            vault
                .write_for_tests(&name(n), SecretValue::new((*v).into()))
                .unwrap();
        }
        let header = |h: &str| Placement::Header {
            name: h.into(),
            format: "Bearer {}".into(),
        };
        Broker::start(BrokerSettings {
            vault: Arc::new(SharedFileVault(Arc::new(vault))),
            bindings: vec![
                binding("short", "dev", Placement::Env { name: "S".into() }),
                binding("api", "dev", header("Authorization")),
                binding("prod", "prod", header("Authorization")),
            ],
            references: BTreeMap::from([(
                "u".to_owned(),
                vec![Reference {
                    secret: name("short"),
                    placement: Placement::Env { name: "S".into() },
                }],
            )]),
            http_request: BTreeMap::new(),
            redactor: Arc::new(SecretRedactor::with_detector(None)),
            on_use: None,
            max_response_bytes: 1024,
            egress: palisade_egress::Egress::new(
                &palisade_egress::Settings::default(),
                Arc::new(Unrecorded),
            )
            .unwrap(),
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn each_rule_of_a_binding_refuses_with_its_own_code() {
        let dir = std::env::temp_dir().join(format!("palisade-broker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let b = broker(
            &dir,
            &[
                ("short", "abc"),
                ("api", "tk_live_long_enough_1"),
                ("prod", "tk_prod_value_0001"),
            ],
        )
        .await;
        let url = |u: &str| Url::parse(u).unwrap();
        let code = |r: Result<HeaderValue, Refusal>| r.unwrap_err().code;

        // Too short for the redactor: never sent.
        assert_eq!(b.env("u").await.unwrap_err().code, "secret.too-short");
        // The bound header toward the destination: sent, and known to the redactor.
        let ok = b
            .header(
                "u",
                &url("https://api.test/v1/x"),
                "GET",
                "authorization",
                &name("api"),
                None,
            )
            .await
            .unwrap();
        assert!(ok.is_sensitive());
        assert_eq!(
            palisade_core::Redactor::redact_text(b.redactor().as_ref(), "tk_live_long_enough_1"),
            "[REDACTED:secret:api]"
        );
        let cases = [
            (
                "u",
                "https://api.test/v1/x",
                "X-Other",
                "api",
                "secret.placement",
            ),
            (
                "u",
                "https://evil.test/v1/x",
                "Authorization",
                "api",
                "secret.destination-mismatch",
            ),
            (
                "other",
                "https://api.test/v1/x",
                "Authorization",
                "api",
                "secret.not-for-upstream",
            ),
            (
                "u",
                "https://api.test/v1/x",
                "Authorization",
                "prod",
                "secret.environment",
            ),
            (
                "u",
                "https://api.test/v1/x",
                "Authorization",
                "nope",
                "secret.unbound",
            ),
        ];
        for (upstream, u, header, secret, expected) in cases {
            let got = code(
                b.header(upstream, &url(u), "GET", header, &name(secret), None)
                    .await,
            );
            assert_eq!(got, expected, "{upstream} {u} {header} {secret}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
