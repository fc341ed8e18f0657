//! The gateway: validated config, the pipeline, and how a client session is opened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_authz::approvals::{ApprovalSettings, StoredApprovals};
use palisade_authz::policy::PolicyAuthorizer;
use palisade_authz::{ApprovalGate, Authorize};
use palisade_core::stage::{InboundFilter, InjectSecrets};
use palisade_core::{AuditEvent, Bounded, Principal, RedactionSeam, SessionEnd, SessionId, Stage};
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS};
use palisade_mcp::protocol;
use palisade_pipeline::Pipeline;
use palisade_store::Store;
use serde_json::{Map, Value, json};
use tokio_util::task::TaskTracker;

use crate::config::{self, Config};
use crate::denial::{AUDIT_UNAVAILABLE, UPSTREAM_UNAVAILABLE};
use crate::session::{Outbox, Session, SessionSink};
use crate::upstream::{EventSink, LinkContext, Upstream, lock};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory `{path}`: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] palisade_audit::OpenError),
    #[error("cannot start the audit sinks: {0}")]
    Sinks(std::io::Error),
    #[error("invalid pipeline: {0}")]
    Pipeline(#[from] palisade_pipeline::BuildError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    #[error("`approvals`: {0}")]
    Approvals(#[from] palisade_authz::approvals::SettingsError),
    #[error("secrets: {0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("egress: {0}")]
    Egress(String),
    #[error("limits: {0}")]
    Limits(#[from] crate::limits::LimitsError),
    #[error("filter: {0}")]
    Filter(String),
    #[error("cannot write the audit log `{path}`: {failure}")]
    AuditWrite {
        path: std::path::PathBuf,
        failure: palisade_pipeline::AuditFailure,
    },
}

/// How upstreams are presented to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `palisade serve`: many upstreams behind prefixes.
    Aggregate,
    /// `palisade mcp`: one upstream, presented as itself.
    Wrap,
}

#[derive(Debug)]
pub struct Gateway {
    pub config: Config,
    pub access: Arc<crate::access::Access>,
    /// Durable state: keys, revocations, approvals.
    pub store: Arc<dyn Store>,
    pub approvals: Arc<StoredApprovals>,
    /// The output schemas layer 4 holds tool responses to (learnt from listings, or configured).
    pub output_schemas: Arc<palisade_filter::schema::ToolSchemas>,
    /// The inbound filter, for what does not pass the pipeline (requests
    /// from upstreams toward the client's model); `None` when passed through.
    pub inbound: Option<Arc<palisade_filter::inbound::Inbound>>,
    /// Layer 4's tool definition pins (in the store), with their cache.
    pub pins: Arc<palisade_filter::pins::Pins>,
    /// Layer 5, and the work that keeps its counters and alerts.
    pub limits: Arc<crate::limits::LimitsLayer>,
    /// The policies and constraints, unless `authorize` is passed through.
    pub policies: Option<Arc<PolicyAuthorizer>>,
    /// The listener's certificate, when `[server.tls]` is set.
    pub tls: Option<crate::tls::Certificates>,
    /// The secrets broker: vault, bindings, and the redactor it teaches.
    pub broker: Arc<palisade_secrets::Broker>,
    withheld_env: Arc<[String]>,
    /// Layer 3, when a built-in `exec` or a sandboxed upstream needs it.
    pub sandboxes: Option<Arc<palisade_sandbox::Sandboxes>>,
    pub mode: Mode,
    pub upstreams: Vec<Arc<config::Upstream>>,
    pub pipeline: Pipeline,
    http: reqwest::Client,
    /// Layer 3's egress: the one allowlist for everything palisade sends out or relays.
    pub egress: Arc<palisade_egress::Egress>,
    next_call: AtomicU64,
    /// Layer 6's log, which the pipeline writes; checkpointed at shutdown.
    pub audit: Arc<palisade_audit::AuditLog>,
    /// Records lost under `[audit] on_failure = "continue"`.
    pub audit_lost: Arc<std::sync::atomic::AtomicU64>,
    /// Layer 6's SIEM sinks following the log; stopped at shutdown.
    sinks: std::sync::Mutex<Option<palisade_audit::sinks::Streams>>,
    /// Layer 6's alerts: what records them as the rules raise them.
    pub alerts: Arc<crate::alerts::AlertsLayer>,
    /// Work spawned on behalf of sessions; drained at shutdown.
    tasks: TaskTracker,
    /// Each upstream's `initialize` result, once a session has connected it.
    learnt: Mutex<Vec<Option<Value>>>,
}

impl Gateway {
    /// Builds the gateway and records that it started: if even that record
    /// cannot be written, palisade does not start.
    pub async fn start(config: Config, mode: Mode) -> Result<Arc<Self>, StartError> {
        Self::start_with(
            config,
            mode,
            Arc::new(palisade_secrets::SecretRedactor::new()),
        )
        .await
    }

    /// As [`Gateway::start`], with the redactor palisade's log lines
    /// already pass (see [`crate::secrets::seam`]).
    pub async fn start_with(
        config: Config,
        mode: Mode,
        redactor: Arc<palisade_secrets::SecretRedactor>,
    ) -> Result<Arc<Self>, StartError> {
        let store = crate::access::open_store(&config).await?;
        let (egress, recorder) = crate::egress::start(&config).map_err(StartError::Egress)?;
        let broker = crate::secrets::broker(
            &config,
            Arc::clone(&redactor),
            Arc::clone(&store),
            Arc::clone(&egress),
        )
        .await?;
        let clock: Arc<dyn palisade_core::Clock> = Arc::new(palisade_core::SystemClock);
        let limits = Arc::new(crate::limits::start(&config, &store, Arc::clone(&clock)).await?);
        let access =
            crate::access::Access::build(&config, Arc::clone(&store), Arc::clone(&clock)).await?;
        let approvals = Arc::new(StoredApprovals::new(
            Arc::clone(&store),
            clock,
            ApprovalSettings {
                ttl: config.approvals.ttl,
                hold: config.approvals.hold,
                ..ApprovalSettings::default()
            },
        )?);
        let policies = if config.pipeline.pass_through.contains(&Stage::Authorize) {
            None
        } else {
            Some(Arc::new(crate::access::authorizer(
                &config,
                Arc::new(palisade_core::SystemClock),
            )?))
        };
        let gateway = Self::new(
            config, mode, access, store, approvals, policies, broker, egress, limits,
        )?;
        recorder.attach(&gateway);
        gateway.limits.run(&gateway);
        gateway.alerts.run(&gateway);
        let degraded = degraded(&gateway.config, gateway.sandboxes.as_deref());
        for what in &degraded {
            tracing::warn!("degraded: {what}");
        }
        let event = AuditEvent::GatewayStarted {
            time: gateway.pipeline.now(),
            version: env!("CARGO_PKG_VERSION"),
            pass_through: gateway.pipeline.passed_through(),
            degraded,
        };
        gateway
            .pipeline
            .record(&event)
            .await
            .map_err(|failure| StartError::AuditWrite {
                path: gateway.config.audit_path(),
                failure,
            })?;
        let overdue = gateway.overdue_secrets().await;
        if !overdue.is_empty() {
            for (name, late) in &overdue {
                tracing::warn!("secret `{name}` is {late} past its rotation schedule");
            }
            let event = AuditEvent::SecretsOverdue {
                time: gateway.pipeline.now(),
                secrets: overdue,
            };
            if let Err(failure) = gateway.pipeline.record(&event).await {
                tracing::error!("{failure}");
            }
        }
        Ok(gateway)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the parts start_with builds, in the order it builds them"
    )]
    fn new(
        config: Config,
        mode: Mode,
        access: Arc<crate::access::Access>,
        store: Arc<dyn Store>,
        approvals: Arc<StoredApprovals>,
        policies: Option<Arc<PolicyAuthorizer>>,
        broker: Arc<palisade_secrets::Broker>,
        egress: Arc<palisade_egress::Egress>,
        limits: Arc<crate::limits::LimitsLayer>,
    ) -> Result<Arc<Self>, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let audit = Arc::new(match config.audit.postgres_target() {
            Some(target) => palisade_audit::AuditLog::open_postgres(
                config.audit_paths(),
                &target,
                config.audit.settings(),
                Arc::new(palisade_core::SystemClock),
            )?,
            None => palisade_audit::AuditLog::open(
                config.audit_paths(),
                config.audit.settings(),
                Arc::new(palisade_core::SystemClock),
            )?,
        });
        let sinks = config.audit.sinks();
        let sinks = if sinks.is_empty() {
            None
        } else {
            Some(
                palisade_audit::sinks::Streams::start(
                    &config.audit_paths(),
                    config.audit.postgres_target().as_ref(),
                    &sinks,
                    &config.audit.node,
                )
                .map_err(StartError::Sinks)?,
            )
        };
        let (alerts, alert_sink) = crate::alerts::AlertsLayer::new();
        let watched = palisade_audit::alerts::Watched::new(
            Arc::clone(&audit),
            Arc::new(palisade_audit::alerts::Alerts::new(
                config.alerts.rules.clone(),
            )),
            alert_sink,
            config.audit.on_failure,
        );
        let audit_lost = watched.lost();
        let tasks = TaskTracker::new();
        let sandboxes = crate::sandbox::start(&config)?;
        if let Some(sandboxes) = &sandboxes {
            sandboxes
                .attach_egress(Arc::clone(&egress))
                .map_err(StartError::Sandbox)?;
        }
        let mut builder = Pipeline::builder()
            .audit(Arc::new(watched) as Arc<dyn palisade_core::stage::Audit>)
            .degraded(degraded(&config, sandboxes.as_deref()))
            .tasks(tasks.clone())
            .stage_timeout(config.pipeline.stage_timeout);
        for stage in &config.pipeline.pass_through {
            builder = builder.pass_through(*stage);
        }
        if let Some(policies) = &policies {
            builder = builder.authorize(Arc::clone(policies) as Arc<dyn Authorize>);
        }
        if !config.pipeline.pass_through.contains(&Stage::Limits) {
            builder =
                builder.limits(Arc::clone(&limits.limits) as Arc<dyn palisade_core::stage::Limit>);
        }
        if !config.pipeline.pass_through.contains(&Stage::Approval) {
            builder = builder.approval(Arc::clone(&approvals) as Arc<dyn ApprovalGate>);
        }
        if !config.pipeline.pass_through.contains(&Stage::InjectSecrets) {
            builder = builder.inject_secrets(Arc::clone(&broker) as Arc<dyn InjectSecrets>);
        }
        if !config.pipeline.pass_through.contains(&Stage::Redact) {
            let redactor = Arc::clone(broker.redactor());
            builder = builder
                .redactor(Arc::clone(&redactor) as Arc<dyn palisade_core::Redactor>)
                .redact(Arc::new(palisade_secrets::redact::RedactStage(redactor)));
        }
        let output_schemas = Arc::new(crate::filter::output_schemas(&config)?);
        let memory = Arc::new(palisade_filter::memory::SessionMemory::new());
        if !config
            .pipeline
            .pass_through
            .contains(&Stage::OutboundFilter)
        {
            builder = builder.outbound_filter(Arc::new(palisade_filter::outbound::Outbound::new(
                config.filter.outbound.clone(),
                Some(Arc::clone(broker.redactor()) as Arc<dyn palisade_core::Redactor>),
                Arc::clone(&memory),
            )));
        }
        let inbound = (!config.pipeline.pass_through.contains(&Stage::InboundFilter)).then(|| {
            Arc::new(palisade_filter::inbound::Inbound::new(
                config.filter.policies.clone(),
                Arc::clone(&output_schemas),
                memory,
                Some(palisade_filter::quarantine::Quarantine::new(Arc::clone(
                    &store,
                ))),
            ))
        });
        if let Some(inbound) = &inbound {
            builder = builder.inbound_filter(Arc::clone(inbound) as Arc<dyn InboundFilter>);
        }
        let pipeline = builder.build()?;
        // Remote upstreams go out under the environment's egress rules.
        let http = egress
            .client(
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .pool_idle_timeout(Duration::from_secs(60)),
            )
            .build()?;
        let upstreams: Vec<_> = config.upstreams.iter().cloned().map(Arc::new).collect();
        let upstream_count = upstreams.len();
        let tls = config
            .server
            .tls
            .as_ref()
            .map(crate::tls::Certificates::load)
            .transpose()?;
        let withheld_env = crate::secrets::withheld_env(&config).into();
        let pins = Arc::new(palisade_filter::pins::Pins::new(
            Arc::clone(&store),
            Arc::new(palisade_core::SystemClock),
        ));
        Ok(Arc::new(Self {
            limits,
            output_schemas,
            inbound,
            pins,
            broker,
            withheld_env,
            sandboxes,
            access,
            store,
            approvals,
            policies,
            tls,
            config,
            mode,
            upstreams,
            pipeline,
            http,
            egress,
            next_call: AtomicU64::new(random_u64()),
            learnt: Mutex::new(vec![None; upstream_count]),
            audit,
            sinks: std::sync::Mutex::new(sinks),
            audit_lost,
            alerts: Arc::new(alerts),
            tasks,
        }))
    }

    /// Secrets past their rotation schedule: each name, and by how much.
    /// A vault that cannot be read now reports none (the next call says why).
    pub async fn overdue_secrets(&self) -> Vec<(String, String)> {
        match self.broker.overdue().await {
            Ok(overdue) => overdue
                .into_iter()
                .map(|(name, late)| {
                    let late = Duration::from_secs(late.as_secs());
                    (
                        name.to_string(),
                        humantime::format_duration(late).to_string(),
                    )
                })
                .collect(),
            Err(e) => {
                tracing::warn!("cannot list the secrets to check their rotation: {e}");
                Vec::new()
            }
        }
    }

    /// The redaction seam everything leaving palisade passes.
    pub fn seam(&self) -> &RedactionSeam {
        self.pipeline.seam()
    }

    /// Reads again what an operator may change while palisade runs (the TLS
    /// certificate; the policies). Each part is replaced only by a version
    /// that loads: on an error the one in force stays, and the error is
    /// returned to be reported.
    pub fn reload(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(policies) = &self.policies {
            let reloaded = crate::access::policy_sources(&self.config).and_then(|sources| {
                policies
                    .reload(&sources)
                    .map_err(crate::access::AccessError::Policy)
            });
            match reloaded {
                Ok(()) => {
                    tracing::info!(policies = policies.engine().len(), "reloaded the policies")
                }
                Err(e) => failures.push(format!("{e}\nthe policies in force stay")),
            }
        }
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("reloaded the TLS certificate"),
                Err(e) => failures.push(format!("{e}; the certificate in force stays")),
            }
        }
        failures
    }

    /// Runs `work` as a task the gateway waits for at shutdown.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        #[expect(
            clippy::disallowed_methods,
            reason = "the one place session work is spawned: tracked"
        )]
        tokio::spawn(self.tasks.track_future(work));
    }

    /// Waits (a bounded time) for spawned work to finish: the records of
    /// calls ended by a shutdown are written before palisade exits.
    pub async fn drain(&self) {
        self.limits.stop();
        self.alerts.stop();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("work still running 5 s after shutdown; leaving it");
        }
        self.pipeline.tasks().close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.pipeline.tasks().wait()).await;
        // Sign what was written since the last checkpoint, so a verifier
        // finds no unsigned tail after a clean stop.
        if let Err(e) = self.audit.checkpoint().await {
            tracing::warn!("no closing audit checkpoint: {e}");
        }
        // The sinks stop after their current attempt; what they have not
        // sent, they send after the next start.
        let sinks = self.sinks.lock().ok().and_then(|mut s| s.take());
        if let Some(sinks) = sinks {
            let _ = tokio::task::spawn_blocking(move || drop(sinks)).await;
        }
    }

    /// The client palisade's own requests go out with (egress rules apply).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn next_call_id(&self) -> palisade_core::CallId {
        palisade_core::CallId(self.next_call.fetch_add(1, Ordering::Relaxed))
    }

    /// Opens a session for a client's `initialize`: connects every upstream
    /// (concurrently) and answers with the merged (or, wrapping, the
    /// upstream's own) initialize result.
    pub async fn open_session(
        self: &Arc<Self>,
        params: Option<Value>,
        outbox: Arc<dyn Outbox>,
        principal: Principal,
    ) -> Result<(Arc<Session>, Value), ErrorObject> {
        let Some(Value::Object(mut params)) = params else {
            return Err(ErrorObject::new(
                INVALID_PARAMS,
                "`initialize` needs a `params` object",
            ));
        };
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let version = protocol::negotiate(requested);
        params.insert("protocolVersion".into(), json!(version));
        let client_init = Value::Object(params);

        let id = SessionId::new(random_token());
        // Recorded before any upstream starts: a session whose record cannot
        // be kept is not opened, and nothing runs for it.
        let opened = AuditEvent::SessionOpened {
            time: self.pipeline.now(),
            session: id.clone(),
            principal: principal.clone(),
            protocol_version: Bounded::new(version),
        };
        if let Err(failure) = self.pipeline.record(&opened).await {
            tracing::error!("{failure}");
            return Err(ErrorObject::new(
                AUDIT_UNAVAILABLE,
                "palisade cannot write its audit log, so it opens no session",
            ));
        }
        let sink = Arc::new(SessionSink::default());
        let max_message_bytes = self.config.server.max_message_bytes;
        let upstreams: Vec<Arc<Upstream>> = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let ctx = LinkContext {
                    index,
                    name: spec.name.as_str().into(),
                    max_message_bytes,
                    events: Arc::clone(&sink) as Arc<dyn EventSink>,
                    http: self.http.clone(),
                    request_timeout: spec.request_timeout,
                    seam: self.seam().clone(),
                    broker: Arc::clone(&self.broker),
                    withheld_env: Arc::clone(&self.withheld_env),
                    sandboxes: self.sandboxes.clone(),
                    who: palisade_egress::Attribution {
                        origin: "upstream",
                        principal: Some(principal.to_string()),
                        session: Some(id.to_string()),
                        upstream: Some(spec.name.clone()),
                        ..palisade_egress::Attribution::default()
                    },
                };
                let learnt = lock(&self.learnt).get(index).cloned().flatten();
                Arc::new(Upstream::new(
                    Arc::clone(spec),
                    ctx,
                    client_init.clone(),
                    learnt,
                ))
            })
            .collect();

        // Aggregating, an upstream whose capabilities palisade already knows
        // (from an earlier session) starts on this session's first use of
        // it, not now: a session costs only the upstreams it uses. Wrapping,
        // the one upstream answers the client's `initialize` itself.
        let lazy = |u: &Upstream| self.mode == Mode::Aggregate && u.init_result().is_some();
        let connected = futures_util::future::join_all(
            upstreams
                .iter()
                .map(|u| async move { if lazy(u) { Ok(()) } else { u.connect().await } }),
        )
        .await;
        {
            let mut learnt = lock(&self.learnt);
            for (slot, upstream) in learnt.iter_mut().zip(&upstreams) {
                if slot.is_none() {
                    *slot = upstream.init_result();
                }
            }
        }
        for (upstream, result) in upstreams.iter().zip(&connected) {
            if let Err(failure) = result {
                tracing::warn!(upstream = %upstream.spec.name, "{}", failure.message);
            }
        }
        let result = match (self.mode, upstreams.first(), connected.first()) {
            (Mode::Wrap, Some(upstream), Some(Ok(()))) => {
                let mut result = upstream.init_result().unwrap_or_else(|| json!({}));
                if let Some(object) = result.as_object_mut() {
                    object.insert("protocolVersion".into(), json!(version));
                }
                result
            }
            (Mode::Wrap, _, Some(Err(failure))) => {
                for upstream in &upstreams {
                    upstream.close().await;
                }
                let closed = AuditEvent::SessionClosed {
                    time: self.pipeline.now(),
                    session: id,
                    principal,
                    reason: SessionEnd::NotStarted,
                };
                if let Err(failure) = self.pipeline.record(&closed).await {
                    tracing::error!("{failure}");
                }
                return Err(ErrorObject::new(
                    UPSTREAM_UNAVAILABLE,
                    format!("cannot start the wrapped server: {}", failure.message),
                ));
            }
            (Mode::Wrap | Mode::Aggregate, _, _) => self.merged_initialize(version, &upstreams),
        };
        let session_principal = principal.clone();
        let session = Session::start(id, Arc::clone(self), principal, upstreams, outbox);
        sink.attach(&session);
        tracing::info!(session = %session.id, principal = %session_principal, version, "session opened");
        Ok((session, result))
    }

    fn merged_initialize(&self, version: &str, upstreams: &[Arc<Upstream>]) -> Value {
        let has = |name: &str| {
            upstreams
                .iter()
                .filter_map(|u| u.capability(name))
                .collect::<Vec<_>>()
        };
        let any_flag = |caps: &[Value], flag: &str| {
            caps.iter()
                .any(|c| c.get(flag).and_then(Value::as_bool) == Some(true))
        };
        let mut capabilities = Map::new();
        for kind in ["tools", "prompts"] {
            let caps = has(kind);
            if !caps.is_empty() {
                capabilities.insert(
                    kind.into(),
                    json!({ "listChanged": any_flag(&caps, "listChanged") }),
                );
            }
        }
        let resources = has("resources");
        if !resources.is_empty() {
            capabilities.insert(
                "resources".into(),
                json!({ "subscribe": any_flag(&resources, "subscribe"), "listChanged": any_flag(&resources, "listChanged") }),
            );
        }
        for kind in ["logging", "completions"] {
            if !has(kind).is_empty() {
                capabilities.insert(kind.into(), json!({}));
            }
        }
        // An aggregate with upstreams always offers tools, even before they connect.
        if !upstreams.is_empty() && !capabilities.contains_key("tools") {
            capabilities.insert("tools".into(), json!({ "listChanged": true }));
        }
        let instructions: Vec<String> = upstreams
            .iter()
            .filter_map(|u| {
                let text = u.init_result()?.get("instructions")?.as_str()?.to_owned();
                Some(format!(
                    "## {} (tools prefixed `{}`)\n{text}",
                    u.spec.name, u.spec.prefix
                ))
            })
            .collect();
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": { "name": "palisade", "version": env!("CARGO_PKG_VERSION") },
        });
        if !instructions.is_empty()
            && let Some(object) = result.as_object_mut()
        {
            object.insert("instructions".into(), json!(instructions.join("\n\n")));
        }
        result
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not recoverable; a zero id would be
    // guessable, so refuse to go on.
    #[expect(
        clippy::panic,
        reason = "no secure randomness means no safe session ids"
    )]
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("operating system randomness unavailable: {e}");
    }
    bytes
}

/// A 128-bit random session id, in hex.
pub fn random_token() -> String {
    random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>()) >> 1
}

/// Isolation that palisade's design requires and this config or host does not
/// give; shown by `palisade check`, `/healthz` and the start record, so nobody
/// mistakes it for done.
pub fn degraded(config: &Config, sandboxes: Option<&palisade_sandbox::Sandboxes>) -> Vec<String> {
    let mut out: Vec<String> = config
        .upstreams
        .iter()
        .filter(|u| matches!(u.transport, crate::config::Transport::Stdio { sandbox: None, .. }))
        .map(|u| {
            format!(
                "sandbox: upstream `{}` runs as an ordinary child process, not in a sandbox (`sandbox = \"off\"`)",
                u.name
            )
        })
        .collect();
    if let Some(sandboxes) = sandboxes {
        out.extend(
            sandboxes
                .host()
                .degraded
                .iter()
                .map(|mode| format!("sandbox: degraded mode `{mode}` ([sandbox] degraded)")),
        );
    }
    out
}
