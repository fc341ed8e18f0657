//! The pipeline's guarantees: stage order, fail-closed on error and timeout, audit always.
//!
//! Every stage here is a test double from this file, except where a real
//! implementation is the point: only `palisade-authz` can mint a permit, so
//! the authorizer doubles refuse or forward to `PassThrough` / `EffectRules`,
//! and the approved path goes through `OneTimeApprovals`.
//!
//! That no stage can change a call's head (who, where, which effect) is a
//! compile-time guarantee, checked by the `compile_fail` doc test in
//! `palisade-core/src/stage.rs`; stages that may rewrite only ever get the
//! arguments.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test doubles and helpers: a panic is a failed test"
)]

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_authz::{
    ApprovalGate, ApprovalRequest, Authorization, Authorize, Authorized, EffectRules, GateDecision,
    OneTimeApprovals, PassThrough, RequestDigest, Rule,
};
use palisade_core::redact::redact_strings;
use palisade_core::stage::{
    Audit, InboundFilter, InjectSecrets, Limit, OutboundFilter, Redact, StageError, StageFuture,
};
use palisade_core::*;
use palisade_pipeline::{
    AuditFailure, BuildError, CallResult, ExecError, Execute, Executed, PASSABLE, Pipeline,
    PipelineBuilder,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Test doubles
// ---------------------------------------------------------------------------

/// The order in which the doubles of one pipeline were called.
type Journal = Arc<Mutex<Vec<String>>>;

fn note(journal: &Journal, what: &str) {
    journal.lock().unwrap().push(what.to_owned());
}

/// What a double does when called.
#[derive(Debug, Clone, Default)]
enum Act {
    #[default]
    Allow,
    Deny,
    /// `StageError::Failed`.
    Fail,
    /// `StageError::Unavailable` with this `retry_after`.
    Unavailable(Duration),
    /// Never answers.
    Hang,
    /// The outbound filter replaces the arguments with these.
    Rewrite(Value),
    /// The outbound filter or the approval gate wants a human.
    AskApproval,
    /// The inbound filter allows the result and taints the session.
    Taint,
}

/// The error (or the hang) `act` scripts; `Ok` for every kind of answer.
async fn trouble(act: &Act) -> Result<(), StageError> {
    match act {
        Act::Fail => Err(StageError::new("backend unreachable")),
        Act::Unavailable(after) => Err(StageError::unavailable("backend restarting", Some(*after))),
        Act::Hang => std::future::pending().await,
        Act::Allow | Act::Deny | Act::Rewrite(_) | Act::AskApproval | Act::Taint => Ok(()),
    }
}

/// Which audit lines a sink refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Refuse {
    #[default]
    Nothing,
    Intents,
    Outcomes,
    Everything,
}

/// Keeps the JSON of every audit line it accepts.
#[derive(Debug, Default)]
struct Sink {
    lines: Mutex<Vec<Value>>,
    refuse: Refuse,
    /// The first line of this event never finishes being written.
    stall: Option<&'static str>,
    stalled: AtomicBool,
}

impl Sink {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn refusing(refuse: Refuse) -> Arc<Self> {
        Arc::new(Self {
            refuse,
            ..Self::default()
        })
    }

    fn stalling(event: &'static str) -> Arc<Self> {
        Arc::new(Self {
            stall: Some(event),
            ..Self::default()
        })
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.lines()
            .iter()
            .map(|line| line["event"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The one `call-outcome` line.
    fn outcome(&self) -> Value {
        let outcomes: Vec<Value> = self
            .lines()
            .into_iter()
            .filter(|line| line["event"] == "call-outcome")
            .collect();
        assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
        outcomes.into_iter().next().unwrap()
    }

    /// The one `call-outcome` line's `outcome.status`.
    fn status(&self) -> String {
        self.outcome()["outcome"]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Audit for Sink {
    fn append<'a>(
        &'a self,
        line: &'a Redacted<AuditLine>,
        _durability: Durability,
    ) -> StageFuture<'a, ()> {
        Box::pin(async move {
            let value = line.get().value();
            let event = value["event"].as_str().unwrap_or_default();
            if self.stall == Some(event) && !self.stalled.swap(true, Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let refused = self.refuse == Refuse::Everything
                || (self.refuse == Refuse::Intents && event == "call-intent")
                || (self.refuse == Refuse::Outcomes && event == "call-outcome");
            if refused {
                return Err(StageError::new("disk full"));
            }
            self.lines.lock().unwrap().push(value.clone());
            Ok(())
        })
    }
}

/// An authorizer that records what it saw and refuses, or forwards to a real one.
#[derive(Debug)]
struct Authz {
    inner: Arc<dyn Authorize>,
    act: Act,
    /// Refuses calls with exactly these arguments.
    deny_arguments: Option<Value>,
    /// The arguments of every call it judged, and whether its session was tainted.
    seen: Mutex<Vec<(Value, bool)>>,
    journal: Journal,
}

impl Default for Authz {
    fn default() -> Self {
        Self {
            inner: Arc::new(PassThrough),
            act: Act::Allow,
            deny_arguments: None,
            seen: Mutex::new(vec![]),
            journal: Journal::default(),
        }
    }
}

impl Authz {
    fn forwarding(inner: impl Authorize + 'static) -> Self {
        Self {
            inner: Arc::new(inner),
            ..Self::default()
        }
    }

    fn seen_arguments(&self) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .collect()
    }

    fn seen_tainted(&self) -> Vec<bool> {
        self.seen.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }
}

impl Authorize for Authz {
    fn authorize<'a>(
        &'a self,
        call: &'a Call,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, Authorization> {
        Box::pin(async move {
            note(&self.journal, "authorize");
            self.seen
                .lock()
                .unwrap()
                .push((call.arguments().clone(), ctx.session().is_tainted()));
            trouble(&self.act).await?;
            if matches!(self.act, Act::Deny)
                || self.deny_arguments.as_ref() == Some(call.arguments())
            {
                return Ok(Authorization::deny(Reason::new(
                    ReasonCode::NotAuthorized,
                    "alice may not read this",
                )));
            }
            self.inner.authorize(call, ctx).await
        })
    }
}

/// An approval gate that records the requests it saw, and answers as told
/// or forwards to a real store of one-time approvals.
#[derive(Debug, Default)]
struct Gate {
    approvals: OneTimeApprovals,
    act: Act,
    asked: Mutex<Vec<RequestDigest>>,
    journal: Journal,
}

impl Gate {
    fn asked(&self) -> Vec<RequestDigest> {
        self.asked.lock().unwrap().clone()
    }
}

impl ApprovalGate for Gate {
    fn gate<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, GateDecision> {
        Box::pin(async move {
            note(&self.journal, "approval");
            self.asked.lock().unwrap().push(request.digest());
            trouble(&self.act).await?;
            match &self.act {
                Act::AskApproval => Ok(GateDecision::Pending(Reason::new(
                    ReasonCode::ApprovalRequired,
                    "nobody answered yet",
                ))),
                Act::Deny => Ok(GateDecision::Denied(Reason::new(
                    ReasonCode::NotAuthorized,
                    "a human said no",
                ))),
                Act::Allow
                | Act::Fail
                | Act::Unavailable(_)
                | Act::Hang
                | Act::Rewrite(_)
                | Act::Taint => self.approvals.gate(request, ctx).await,
            }
        })
    }
}

/// Limits that record every check, settle and release with its reservation id.
#[derive(Debug, Default)]
struct Meter {
    act: Act,
    settle_fails: bool,
    next: AtomicU64,
    log: Mutex<Vec<(&'static str, u64)>>,
    usage: Mutex<Vec<Usage>>,
    journal: Journal,
}

impl Meter {
    fn log(&self) -> Vec<(&'static str, u64)> {
        self.log.lock().unwrap().clone()
    }
}

impl Limit for Meter {
    fn check<'a>(
        &'a self,
        _head: &'a CallHead,
        _arguments: &'a Value,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, LimitDecision> {
        Box::pin(async move {
            note(&self.journal, "limits");
            trouble(&self.act).await?;
            if matches!(self.act, Act::Deny) {
                self.log.lock().unwrap().push(("refuse", 0));
                return Ok(LimitDecision::Refused {
                    reason: Reason::new(ReasonCode::LimitExceeded, "3 calls per minute")
                        .retry_after(Duration::from_secs(20)),
                    findings: vec![],
                });
            }
            let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            self.log.lock().unwrap().push(("check", id));
            Ok(LimitDecision::Reserved {
                reservation: Reservation {
                    id,
                    cost_micros: 100,
                },
                findings: vec![],
            })
        })
    }

    fn settle<'a>(&'a self, reservation: Reservation, usage: Usage) -> StageFuture<'a, Settled> {
        Box::pin(async move {
            note(&self.journal, "settle");
            self.log.lock().unwrap().push(("settle", reservation.id));
            self.usage.lock().unwrap().push(usage);
            if self.settle_fails {
                return Err(StageError::new("ledger unreachable"));
            }
            // Charged what it reserved.
            Ok(Settled {
                cost_micros: Some(reservation.cost_micros),
            })
        })
    }

    fn release<'a>(&'a self, reservation: Reservation) -> StageFuture<'a, ()> {
        Box::pin(async move {
            note(&self.journal, "release");
            self.log.lock().unwrap().push(("release", reservation.id));
            Ok(())
        })
    }
}

/// The outbound filter, secret injection, redaction and inbound filter, as told.
#[derive(Debug, Default)]
struct Stub {
    act: Act,
    journal: Journal,
}

impl Stub {
    fn acting(act: Act) -> Arc<Self> {
        Arc::new(Self {
            act,
            ..Self::default()
        })
    }
}

impl OutboundFilter for Stub {
    fn check_arguments<'a>(
        &'a self,
        _head: &'a CallHead,
        arguments: &'a mut Value,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, Decision> {
        Box::pin(async move {
            note(&self.journal, "outbound-filter");
            trouble(&self.act).await?;
            Ok(match &self.act {
                Act::Rewrite(to) => {
                    *arguments = to.clone();
                    Decision::allow()
                }
                Act::Deny => Decision::deny(Reason::new(
                    ReasonCode::ContentBlocked,
                    "a path outside the share",
                )),
                Act::AskApproval => Decision::needs_approval(Reason::new(
                    ReasonCode::ApprovalRequired,
                    "an unusual path",
                )),
                Act::Allow | Act::Fail | Act::Unavailable(_) | Act::Hang | Act::Taint => {
                    Decision::allow()
                }
            })
        })
    }
}

impl InjectSecrets for Stub {
    fn inject<'a>(
        &'a self,
        _head: &'a CallHead,
        arguments: &'a mut Value,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, Decision> {
        Box::pin(async move {
            note(&self.journal, "inject-secrets");
            trouble(&self.act).await?;
            if let Some(map) = arguments.as_object_mut() {
                map.insert("token".into(), json!("injected-secret"));
            }
            Ok(Decision {
                verdict: Verdict::Allow,
                findings: vec![Finding {
                    stage: Stage::InjectSecrets,
                    code: "secret.injected".into(),
                    message: "one token".into(),
                }],
            })
        })
    }
}

/// Replaces the known secret `hunter2`, as the redaction layer will.
impl Redact for Stub {
    fn redact<'a>(&'a self, result: &'a mut Value) -> StageFuture<'a, Vec<Finding>> {
        Box::pin(async move {
            note(&self.journal, "redact");
            trouble(&self.act).await?;
            redact_strings(result, &|s| s.replace("hunter2", "[REDACTED]"));
            Ok(vec![Finding {
                stage: Stage::Redact,
                code: "secret.password".into(),
                message: "one value".into(),
            }])
        })
    }
}

impl InboundFilter for Stub {
    fn check_result<'a>(
        &'a self,
        _head: &'a CallHead,
        _result: &'a mut Value,
        _ctx: &'a CallContext,
    ) -> StageFuture<'a, InboundDecision> {
        Box::pin(async move {
            note(&self.journal, "inbound-filter");
            trouble(&self.act).await?;
            Ok(match &self.act {
                Act::Deny => InboundDecision {
                    decision: Decision::deny(Reason::new(
                        ReasonCode::ContentBlocked,
                        "instructions in the result",
                    )),
                    taint: None,
                },
                Act::Taint => InboundDecision {
                    decision: Decision::allow(),
                    taint: Some(suspected_injection()),
                },
                Act::Allow
                | Act::Fail
                | Act::Unavailable(_)
                | Act::Hang
                | Act::Rewrite(_)
                | Act::AskApproval => InboundDecision::allow(),
            })
        })
    }
}

fn suspected_injection() -> Taint {
    Taint {
        stage: Stage::InboundFilter,
        code: "injection.suspected".into(),
        detail: "the result asks the model to ignore its instructions".into(),
        source: "files/read".into(),
    }
}

/// The seam's redactor: the same known secret.
#[derive(Debug)]
struct Hunter2;

impl Redactor for Hunter2 {
    fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if text.contains("hunter2") {
            Cow::Owned(text.replace("hunter2", "[REDACTED]"))
        } else {
            Cow::Borrowed(text)
        }
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
enum Answer {
    Result(Value),
    RpcError(Value),
    Fail(ExecError),
    Hang,
}

/// What the executor was given.
#[derive(Debug)]
struct Seen {
    head: CallHead,
    arguments: Value,
    authorized: ArgumentDigest,
    /// The audit lines the sink held when execution began.
    lines: Vec<Value>,
}

/// An upstream that records what it was asked and answers as told.
struct Tool {
    answer: Answer,
    sink: Option<Arc<Sink>>,
    seen: Mutex<Vec<Seen>>,
    journal: Journal,
}

impl Tool {
    fn answering(answer: Answer) -> Self {
        Self {
            answer,
            sink: None,
            seen: Mutex::new(vec![]),
            journal: Journal::default(),
        }
    }

    fn ok() -> Self {
        Self::answering(Answer::Result(
            json!({"content": [{"type": "text", "text": "password is hunter2"}]}),
        ))
    }

    fn runs(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Execute for Tool {
    async fn execute(&self, call: Authorized) -> Result<Executed, ExecError> {
        note(&self.journal, "execute");
        let lines = self.sink.as_ref().map(|s| s.lines()).unwrap_or_default();
        self.seen.lock().unwrap().push(Seen {
            head: call.head().clone(),
            arguments: call.arguments().clone(),
            authorized: call.authorized_digest(),
            lines,
        });
        match &self.answer {
            Answer::Result(value) => Ok(Executed::Result(value.clone())),
            Answer::RpcError(value) => Ok(Executed::RpcError(value.clone())),
            Answer::Fail(error) => Err(error.clone()),
            Answer::Hang => std::future::pending().await,
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The stages a pipeline implements; every other one is passed through.
#[derive(Default)]
struct Setup {
    authorize: Option<Arc<dyn Authorize>>,
    limits: Option<Arc<dyn Limit>>,
    outbound: Option<Arc<dyn OutboundFilter>>,
    approval: Option<Arc<dyn ApprovalGate>>,
    secrets: Option<Arc<dyn InjectSecrets>>,
    redact: Option<Arc<dyn Redact>>,
    inbound: Option<Arc<dyn InboundFilter>>,
    redactor: Option<Arc<dyn Redactor>>,
}

impl Setup {
    fn builder(self, sink: &Arc<Sink>) -> PipelineBuilder {
        let mut b = Pipeline::builder()
            .audit(sink.clone())
            .stage_timeout(Duration::from_millis(50));
        b = match self.authorize {
            Some(s) => b.authorize(s),
            None => b.pass_through(Stage::Authorize),
        };
        b = match self.limits {
            Some(s) => b.limits(s),
            None => b.pass_through(Stage::Limits),
        };
        b = match self.outbound {
            Some(s) => b.outbound_filter(s),
            None => b.pass_through(Stage::OutboundFilter),
        };
        b = match self.approval {
            Some(s) => b.approval(s),
            None => b.pass_through(Stage::Approval),
        };
        b = match self.secrets {
            Some(s) => b.inject_secrets(s),
            None => b.pass_through(Stage::InjectSecrets),
        };
        b = match self.redact {
            Some(s) => b.redact(s),
            None => b.pass_through(Stage::Redact),
        };
        b = match self.inbound {
            Some(s) => b.inbound_filter(s),
            None => b.pass_through(Stage::InboundFilter),
        };
        match self.redactor {
            Some(r) => b.redactor(r),
            None => b,
        }
    }

    fn build(self, sink: &Arc<Sink>) -> Pipeline {
        self.builder(sink).build().unwrap()
    }
}

fn head(id: u64, effect: EffectClass) -> CallHead {
    CallHead {
        id: CallId(id),
        principal: Principal::new("alice"),
        session: SessionId::new("s1"),
        kind: CallKind::Tool,
        target: Target::new("files", "read"),
        effect,
        params: None,
        parent: None,
    }
}

fn motd() -> Value {
    json!({"path": "/etc/motd"})
}

fn call(id: u64) -> Call {
    Call::new(head(id, EffectClass::Read), motd())
}

fn call_with(id: u64, effect: EffectClass, arguments: Value) -> Call {
    Call::new(head(id, effect), arguments)
}

/// Reads pass, writes wait for a human, egress is refused.
fn rules() -> EffectRules {
    EffectRules {
        read: Rule::Allow,
        write: Rule::RequireApproval,
        egress: Rule::Deny,
        irreversible: Rule::RequireApproval,
    }
}

/// A record's stages as `stage=verdict`.
fn stages(line: &Value) -> Vec<String> {
    line["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}={}",
                s["stage"].as_str().unwrap(),
                s["verdict"].as_str().unwrap()
            )
        })
        .collect()
}

/// The finding codes a record's `stage` reported.
fn findings(line: &Value, stage: &str) -> Vec<String> {
    line["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == stage)
        .flat_map(|s| s["findings"].as_array().cloned().unwrap_or_default())
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

/// `stage=verdict` for `stage`'s first record.
fn verdict(line: &Value, stage: &str) -> String {
    stages(line)
        .into_iter()
        .find(|s| s.starts_with(&format!("{stage}=")))
        .unwrap_or_else(|| panic!("no `{stage}` in {line}"))
}

/// What the agent was told, in a line.
fn told(result: &CallResult) -> String {
    match result {
        CallResult::Returned(_) => "returned".into(),
        CallResult::Refused { stage, reason } => {
            format!("refused at {stage}: {}", reason.code.as_str())
        }
        CallResult::Unfinished(e) => format!("unfinished: {e}"),
        CallResult::Withheld { stage, reason } => {
            format!("withheld at {stage}: {}", reason.code.as_str())
        }
    }
}

fn reason_of(result: &CallResult) -> &Reason {
    match result {
        CallResult::Refused { reason, .. } | CallResult::Withheld { reason, .. } => reason,
        CallResult::Returned(_) | CallResult::Unfinished(_) => panic!("no reason: {result:?}"),
    }
}

const ALL_ALLOWED: [&str; 9] = [
    "authorize=allow",
    "limits=allow",
    "outbound-filter=allow",
    "approval=allow",
    "inject-secrets=allow",
    "execute=allow",
    "redact=allow",
    "inbound-filter=allow",
    "settle=allow",
];

// ---------------------------------------------------------------------------
// 1. Stage order and the two records
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_allowed_call_runs_every_stage_in_order_and_its_intent_is_recorded_before_it_runs() {
    let journal = Journal::default();
    let sink = Sink::new();
    let authz = Arc::new(Authz {
        journal: journal.clone(),
        ..Authz::default()
    });
    let gate = Arc::new(Gate {
        journal: journal.clone(),
        ..Gate::default()
    });
    let meter = Arc::new(Meter {
        journal: journal.clone(),
        ..Meter::default()
    });
    let stub = || {
        Arc::new(Stub {
            act: Act::Allow,
            journal: journal.clone(),
        })
    };
    let pipeline = Setup {
        authorize: Some(authz.clone()),
        limits: Some(meter.clone()),
        outbound: Some(stub()),
        approval: Some(gate.clone()),
        secrets: Some(stub()),
        redact: Some(stub()),
        inbound: Some(stub()),
        redactor: Some(Arc::new(Hunter2)),
    }
    .build(&sink);
    let tool = Tool {
        sink: Some(sink.clone()),
        journal: journal.clone(),
        ..Tool::ok()
    };

    let result = pipeline.run(call(7), SessionFacts::new(), &tool).await;

    let CallResult::Returned(Executed::Result(value)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(value["content"][0]["text"], "password is [REDACTED]");
    // Every stage, in order. The gate is not consulted for a call that
    // needs no approval (its record says `allow`).
    assert_eq!(
        *journal.lock().unwrap(),
        [
            "authorize",
            "limits",
            "outbound-filter",
            "inject-secrets",
            "execute",
            "redact",
            "inbound-filter",
            "settle"
        ]
    );
    assert!(gate.asked().is_empty());

    // The executor got the authorized call, secrets injected after the digest was taken.
    let seen = tool.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].head, head(7, EffectClass::Read));
    assert_eq!(
        seen[0].arguments,
        json!({"path": "/etc/motd", "token": "injected-secret"})
    );
    assert_eq!(seen[0].authorized, ArgumentDigest::of(&motd()));

    // When it ran, the intent (and nothing else) was already recorded.
    let digest = ArgumentDigest::of(&motd()).to_hex();
    let [intent] = seen[0].lines.as_slice() else {
        panic!("{:#?}", seen[0].lines)
    };
    assert_eq!(intent["event"], "call-intent");
    assert_eq!(intent["call"], 7);
    assert_eq!(intent["arguments_sha256"], digest.as_str());
    assert!(intent.get("outcome").is_none(), "{intent}");
    assert_eq!(stages(intent), ALL_ALLOWED[..5]);

    // Afterwards: exactly the intent, then the outcome with every stage.
    assert_eq!(sink.events(), ["call-intent", "call-outcome"]);
    assert_eq!(sink.lines()[0], *intent);
    let outcome = sink.outcome();
    assert_eq!(stages(&outcome), ALL_ALLOWED);
    assert_eq!(
        outcome["outcome"],
        json!({"status": "completed", "tool_error": false})
    );
    assert_eq!(outcome["call"], 7);
    assert_eq!(outcome["principal"], "alice");
    assert_eq!(outcome["server"], "files");
    assert_eq!(outcome["name"], "read");
    assert_eq!(outcome["arguments_sha256"], digest.as_str());
    assert!(outcome["latency_micros"].is_u64());
    assert_eq!(findings(&outcome, "redact"), ["secret.password"]);
    assert_eq!(findings(&outcome, "inject-secrets"), ["secret.injected"]);
    // Records carry the arguments as the agent sent them (never what the
    // secrets stage put in) and the result after the redact stage.
    let text = serde_json::to_string(&sink.lines()).unwrap();
    assert!(!text.contains("injected-secret"), "{text}");
    assert!(text.contains("/etc/motd"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(outcome["result"].is_object(), "{outcome}");
    assert_eq!(meter.log(), [("check", 1), ("settle", 1)]);
}

// ---------------------------------------------------------------------------
// 2. Authorization and approval
// ---------------------------------------------------------------------------

#[tokio::test]
async fn authorization_denies_or_holds_before_anything_runs() {
    struct Case {
        name: &'static str,
        effect: EffectClass,
        /// The approval gate's answer; `None`: the gate is passed through.
        gate: Option<Act>,
        told: &'static str,
        outcome: Value,
        stages: &'static [&'static str],
        gate_asked: usize,
    }
    let cases = [
        Case {
            name: "denied by the rules",
            effect: EffectClass::Egress,
            gate: None,
            told: "refused at authorize: not-authorized",
            outcome: json!({"status": "denied", "stage": "authorize", "code": "not-authorized"}),
            stages: &["authorize=deny", "limits=not-reached"],
            gate_asked: 0,
        },
        Case {
            name: "needs approval, no gate",
            effect: EffectClass::Write,
            gate: None,
            told: "refused at approval: approval-required",
            outcome: json!({"status": "denied", "stage": "approval", "code": "approval-required"}),
            stages: &[
                "authorize=needs-approval",
                "limits=pass-through",
                "outbound-filter=pass-through",
                "approval=needs-approval",
                "inject-secrets=not-reached",
            ],
            gate_asked: 0,
        },
        Case {
            name: "needs approval, the gate says pending",
            effect: EffectClass::Write,
            gate: Some(Act::AskApproval),
            told: "refused at approval: approval-required",
            outcome: json!({"status": "denied", "stage": "approval", "code": "approval-required"}),
            stages: &[
                "authorize=needs-approval",
                "limits=pass-through",
                "outbound-filter=pass-through",
                "approval=needs-approval",
                "inject-secrets=not-reached",
            ],
            gate_asked: 1,
        },
        Case {
            name: "needs approval, a human refuses",
            effect: EffectClass::Write,
            gate: Some(Act::Deny),
            told: "refused at approval: not-authorized",
            outcome: json!({"status": "denied", "stage": "approval", "code": "not-authorized"}),
            stages: &[
                "authorize=needs-approval",
                "limits=pass-through",
                "outbound-filter=pass-through",
                "approval=deny",
                "inject-secrets=not-reached",
            ],
            gate_asked: 1,
        },
    ];
    for case in cases {
        let sink = Sink::new();
        let gate = case.gate.map(|act| {
            Arc::new(Gate {
                act,
                ..Gate::default()
            })
        });
        let pipeline = Setup {
            authorize: Some(Arc::new(rules())),
            approval: gate.clone().map(|g| g as Arc<dyn ApprovalGate>),
            ..Setup::default()
        }
        .build(&sink);
        let tool = Tool::ok();
        let result = pipeline
            .run(
                call_with(1, case.effect, motd()),
                SessionFacts::new(),
                &tool,
            )
            .await;
        let name = case.name;
        assert_eq!(told(&result), case.told, "{name}");
        assert_eq!(tool.runs(), 0, "{name}: the executor must not run");
        assert_eq!(sink.events(), ["call-outcome"], "{name}: no intent line");
        let outcome = sink.outcome();
        assert_eq!(outcome["outcome"], case.outcome, "{name}");
        let got = stages(&outcome);
        assert_eq!(got[..case.stages.len()], *case.stages, "{name}");
        // Then nothing ran; limits being passed through, so is settle.
        let (settle, rest) = got[case.stages.len()..].split_last().unwrap();
        assert!(
            rest.iter().all(|s| s.ends_with("=not-reached")),
            "{name}: {got:?}"
        );
        assert_eq!(settle, "settle=pass-through", "{name}");
        assert_eq!(
            gate.map(|g| g.asked().len()).unwrap_or_default(),
            case.gate_asked,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_granted_one_time_approval_runs_its_request_once() {
    let sink = Sink::new();
    let gate = Arc::new(Gate::default()); // forwards to `OneTimeApprovals`
    let pipeline = Setup {
        authorize: Some(Arc::new(rules())),
        approval: Some(gate.clone()),
        ..Setup::default()
    }
    .build(&sink);
    let tool = Tool::ok();
    let session = SessionFacts::new();
    let write = |id| {
        call_with(
            id,
            EffectClass::Write,
            json!({"path": "/srv/a", "text": "hi"}),
        )
    };

    // Held: nobody granted it yet.
    let first = pipeline.run(write(1), session.clone(), &tool).await;
    assert_eq!(told(&first), "refused at approval: approval-required");
    let [request] = gate.asked()[..] else {
        panic!("{:?}", gate.asked())
    };

    // A human approves exactly that request. Other arguments do not get it.
    gate.approvals.grant(request);
    let other = call_with(
        2,
        EffectClass::Write,
        json!({"path": "/srv/b", "text": "hi"}),
    );
    let result = pipeline.run(other, session.clone(), &tool).await;
    assert_eq!(told(&result), "refused at approval: approval-required");
    assert_eq!(tool.runs(), 0);

    // The agent's retry (a new call id, the same request) runs, once.
    let result = pipeline.run(write(3), session.clone(), &tool).await;
    assert_eq!(told(&result), "returned");
    assert_eq!(tool.runs(), 1);
    let outcome = sink.lines().last().cloned().unwrap();
    assert_eq!(outcome["call"], 3);
    assert_eq!(outcome["outcome"]["status"], "completed");
    assert_eq!(verdict(&outcome, "authorize"), "authorize=needs-approval");
    assert_eq!(verdict(&outcome, "approval"), "approval=allow");

    // Replayed: the approval is spent, the call is held again.
    let result = pipeline.run(write(4), session, &tool).await;
    assert_eq!(told(&result), "refused at approval: approval-required");
    assert_eq!(tool.runs(), 1);
    let asked = gate.asked();
    assert_eq!(asked.len(), 4);
    assert_eq!((asked[2], asked[3]), (request, request));
    assert_ne!(asked[1], request);
}

// ---------------------------------------------------------------------------
// 3. Outbound rewrites are authorized again
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rewritten_arguments_are_authorized_again_and_are_what_runs() {
    let rewritten = json!({"path": "/srv/share/motd"});
    let sink = Sink::new();
    let authz = Arc::new(Authz::default());
    let pipeline = Setup {
        authorize: Some(authz.clone()),
        outbound: Some(Stub::acting(Act::Rewrite(rewritten.clone()))),
        ..Setup::default()
    }
    .build(&sink);
    let tool = Tool::ok();
    let result = pipeline.run(call(1), SessionFacts::new(), &tool).await;

    assert_eq!(told(&result), "returned");
    assert_eq!(authz.seen_arguments(), [motd(), rewritten.clone()]);
    let seen = tool.seen.lock().unwrap();
    assert_eq!(seen[0].arguments, rewritten);
    assert_eq!(seen[0].authorized, ArgumentDigest::of(&rewritten));
    let outcome = sink.outcome();
    assert_eq!(
        stages(&outcome)[..4],
        [
            "authorize=allow",
            "authorize=allow",
            "limits=pass-through",
            "outbound-filter=allow"
        ]
    );
    assert_eq!(
        findings(&outcome, "outbound-filter"),
        ["arguments.rewritten"]
    );
    assert_eq!(outcome["outcome"]["status"], "completed");
}

#[tokio::test]
async fn a_rewrite_the_policy_refuses_never_runs() {
    let rewritten = json!({"path": "/etc/shadow"});
    let sink = Sink::new();
    let authz = Arc::new(Authz {
        deny_arguments: Some(rewritten.clone()),
        ..Authz::default()
    });
    let pipeline = Setup {
        authorize: Some(authz.clone()),
        outbound: Some(Stub::acting(Act::Rewrite(rewritten.clone()))),
        ..Setup::default()
    }
    .build(&sink);
    let tool = Tool::ok();
    let result = pipeline.run(call(1), SessionFacts::new(), &tool).await;

    assert_eq!(told(&result), "refused at authorize: not-authorized");
    assert_eq!(tool.runs(), 0);
    assert_eq!(authz.seen_arguments(), [motd(), rewritten]);
    assert_eq!(sink.events(), ["call-outcome"]);
    let outcome = sink.outcome();
    assert_eq!(
        stages(&outcome)[..5],
        [
            "authorize=allow",
            "authorize=deny",
            "limits=pass-through",
            "outbound-filter=allow",
            "approval=not-reached"
        ]
    );
    assert_eq!(
        outcome["outcome"],
        json!({"status": "denied", "stage": "authorize", "code": "not-authorized"})
    );
}

/// PIPELINE BUG (fails today): the intent and outcome records keep the
/// digest of the arguments as the agent sent them, taken before the outbound
/// filter rewrote them; the audit log cannot tell which arguments ran.
#[tokio::test]
async fn the_records_carry_the_digest_of_the_arguments_that_ran() {
    let rewritten = json!({"path": "/srv/share/motd"});
    let sink = Sink::new();
    let pipeline = Setup {
        outbound: Some(Stub::acting(Act::Rewrite(rewritten.clone()))),
        ..Setup::default()
    }
    .build(&sink);
    let result = pipeline
        .run(call(1), SessionFacts::new(), &Tool::ok())
        .await;
    assert_eq!(told(&result), "returned");
    let ran = ArgumentDigest::of(&rewritten).to_hex();
    for line in sink.lines() {
        assert_eq!(
            line["arguments_sha256"],
            ran.as_str(),
            "{} records the digest of the arguments before the rewrite",
            line["event"]
        );
    }
}

// ---------------------------------------------------------------------------
// 4. No intent, no call
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_call_whose_intent_cannot_be_recorded_never_runs() {
    for refuse in [Refuse::Intents, Refuse::Everything] {
        let sink = Sink::refusing(refuse);
        let meter = Arc::new(Meter::default());
        let pipeline = Setup {
            limits: Some(meter.clone()),
            ..Setup::default()
        }
        .build(&sink);
        let tool = Tool::ok();
        let result = pipeline.run(call(1), SessionFacts::new(), &tool).await;
        let CallResult::Refused {
            stage: Stage::Audit,
            reason,
        } = &result
        else {
            panic!("{refuse:?}: {result:?}")
        };
        assert_eq!(reason.code, ReasonCode::AuditUnavailable, "{refuse:?}");
        assert!(reason.detail.contains("disk full"), "{}", reason.detail);
        assert_eq!(tool.runs(), 0, "{refuse:?}");
        // Nothing ran: the reservation goes back.
        assert_eq!(meter.log(), [("check", 1), ("release", 1)], "{refuse:?}");
        if refuse == Refuse::Intents {
            let outcome = sink.outcome();
            assert_eq!(
                outcome["outcome"],
                json!({"status": "denied", "stage": "audit", "code": "audit-unavailable"})
            );
            assert_eq!(verdict(&outcome, "execute"), "execute=not-reached");
        } else {
            assert!(sink.lines().is_empty());
        }
    }
}

#[tokio::test]
async fn a_call_whose_outcome_cannot_be_recorded_ran_but_its_answer_is_withheld() {
    let sink = Sink::refusing(Refuse::Outcomes);
    let meter = Arc::new(Meter::default());
    let pipeline = Setup {
        limits: Some(meter.clone()),
        ..Setup::default()
    }
    .build(&sink);
    let tool = Tool::ok();
    let result = pipeline.run(call(1), SessionFacts::new(), &tool).await;
    assert_eq!(told(&result), "withheld at audit: audit-unavailable");
    assert!(reason_of(&result).detail.contains("disk full"));
    assert_eq!(tool.runs(), 1);
    assert_eq!(sink.events(), ["call-intent"]);
    assert_eq!(meter.log(), [("check", 1), ("settle", 1)]);

    // A refusal whose record is lost is still a refusal.
    let pipeline = Setup {
        authorize: Some(Arc::new(Authz {
            act: Act::Deny,
            ..Authz::default()
        })),
        ..Setup::default()
    }
    .build(&sink);
    let result = pipeline.run(call(2), SessionFacts::new(), &tool).await;
    assert_eq!(told(&result), "refused at authorize: not-authorized");
}

/// PIPELINE BUG (fails today): the intent and outcome appends have no time
/// budget (`OutcomeGuard::write_intent`/`write_outcome` do not go through
/// `Pipeline::within`, unlike `Pipeline::record`), so a sink that hangs
/// hangs every call instead of failing it closed.
#[tokio::test(start_paused = true)]
async fn a_hanging_audit_sink_fails_the_call_closed_within_the_stage_budget() {
    let sink = Sink::stalling("call-intent");
    let pipeline = Setup::default().build(&sink);
    let tool = Tool::ok();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        pipeline.run(call(1), SessionFacts::new(), &tool),
    )
    .await;
    let Ok(result) = result else {
        panic!("the call still hangs after 60 s on a 50 ms stage budget")
    };
    assert_eq!(told(&result), "refused at audit: audit-unavailable");
    assert_eq!(tool.runs(), 0);
}

// ---------------------------------------------------------------------------
// 5. A dropped call is still recorded
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_recorded_as_abandoned() {
    let sink = Sink::new();
    let pipeline = Setup::default().build(&sink);
    let tool = Tool::answering(Answer::Hang);
    let run = pipeline.run(call(5), SessionFacts::new(), &tool);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), run)
            .await
            .is_err()
    );
    assert_eq!(tool.runs(), 1);
    pipeline.tasks().close();
    pipeline.tasks().wait().await;
    assert_eq!(sink.events(), ["call-intent", "call-outcome"]);
    let outcome = sink.outcome();
    assert_eq!(outcome["call"], 5);
    assert_eq!(outcome["outcome"], json!({"status": "abandoned"}));
    assert_eq!(
        verdict(&outcome, "inject-secrets"),
        "inject-secrets=pass-through"
    );
    assert_eq!(verdict(&outcome, "execute"), "execute=not-reached");
}

/// PIPELINE BUG (fails today): a call dropped while it runs leaves its
/// reservation neither settled nor released (the `CallContext` holding it is
/// simply dropped), so the budget it reserved is never charged or given back.
#[tokio::test(start_paused = true)]
async fn a_dropped_call_still_settles_its_reservation() {
    let sink = Sink::new();
    let meter = Arc::new(Meter::default());
    let pipeline = Setup {
        limits: Some(meter.clone()),
        ..Setup::default()
    }
    .build(&sink);
    let tool = Tool::answering(Answer::Hang);
    let run = pipeline.run(call(5), SessionFacts::new(), &tool);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), run)
            .await
            .is_err()
    );
    pipeline.tasks().close();
    pipeline.tasks().wait().await;
    assert_eq!(sink.status(), "abandoned");
    // The request was sent, so it may have run: charged, never refunded.
    assert_eq!(meter.log(), [("check", 1), ("settle", 1)]);
}

/// PIPELINE BUG (fails today): `OutcomeGuard::write_outcome` takes the
/// record out of the guard before the append finishes, so a call dropped
/// while its outcome is being written leaves no outcome line at all.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_its_outcome_is_written_is_still_recorded() {
    let sink = Sink::stalling("call-outcome");
    let pipeline = Setup::default().build(&sink);
    let tool = Tool::ok();
    let run = pipeline.run(call(5), SessionFacts::new(), &tool);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), run)
            .await
            .is_err()
    );
    assert_eq!(tool.runs(), 1);
    pipeline.tasks().close();
    pipeline.tasks().wait().await;
    assert_eq!(
        sink.events(),
        ["call-intent", "call-outcome"],
        "the call ran, and its outcome was never recorded"
    );
}

// ---------------------------------------------------------------------------
// 6. Reservations: settled when the call may have run, released when it never did
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_reservation_is_settled_when_the_call_may_have_run_and_released_when_it_never_did() {
    struct Case {
        name: &'static str,
        authorize: Act,
        outbound: Act,
        inbound: Act,
        answer: Answer,
        told: &'static str,
        log: &'static [(&'static str, u64)],
        settle: &'static str,
    }
    let ok = || Answer::Result(json!({"content": []}));
    let fail = |e| Answer::Fail(e);
    let cases = [
        Case {
            name: "allowed",
            authorize: Act::Allow,
            outbound: Act::Allow,
            inbound: Act::Allow,
            answer: ok(),
            told: "returned",
            log: &[("check", 1), ("settle", 1)],
            settle: "settle=allow",
        },
        Case {
            name: "refused by authorization: limits never run",
            authorize: Act::Deny,
            outbound: Act::Allow,
            inbound: Act::Allow,
            answer: ok(),
            told: "refused at authorize: not-authorized",
            log: &[],
            settle: "settle=not-reached",
        },
        Case {
            name: "refused by the outbound filter",
            authorize: Act::Allow,
            outbound: Act::Deny,
            inbound: Act::Allow,
            answer: ok(),
            told: "refused at outbound-filter: content-blocked",
            log: &[("check", 1), ("release", 1)],
            settle: "settle=allow",
        },
        Case {
            name: "held for approval",
            authorize: Act::Allow,
            outbound: Act::AskApproval,
            inbound: Act::Allow,
            answer: ok(),
            told: "refused at approval: approval-required",
            log: &[("check", 1), ("release", 1)],
            settle: "settle=allow",
        },
        Case {
            name: "result blocked by the inbound filter: it ran, no refund",
            authorize: Act::Allow,
            outbound: Act::Allow,
            inbound: Act::Deny,
            answer: ok(),
            told: "withheld at inbound-filter: content-blocked",
            log: &[("check", 1), ("settle", 1)],
            settle: "settle=allow",
        },
        Case {
            name: "never sent",
            authorize: Act::Allow,
            outbound: Act::Allow,
            inbound: Act::Allow,
            answer: fail(ExecError::NotSent {
                detail: "upstream restarting".into(),
                retry_after: None,
            }),
            told: "unfinished: upstream restarting",
            log: &[("check", 1), ("release", 1)],
            settle: "settle=allow",
        },
        Case {
            name: "sent, then timed out: it may have run",
            authorize: Act::Allow,
            outbound: Act::Allow,
            inbound: Act::Allow,
            answer: fail(ExecError::TimedOut {
                detail: "no answer in 30 s".into(),
            }),
            told: "unfinished: no answer in 30 s",
            log: &[("check", 1), ("settle", 1)],
            settle: "settle=allow",
        },
        Case {
            name: "sent, then the connection failed: it may have run",
            authorize: Act::Allow,
            outbound: Act::Allow,
            inbound: Act::Allow,
            answer: fail(ExecError::Lost {
                detail: "upstream exited".into(),
            }),
            told: "unfinished: upstream exited",
            log: &[("check", 1), ("settle", 1)],
            settle: "settle=allow",
        },
        Case {
            name: "the executor refused the authorized call: never sent",
            authorize: Act::Allow,
            outbound: Act::Allow,
            inbound: Act::Allow,
            answer: fail(ExecError::Refused {
                detail: "permit mismatch".into(),
            }),
            told: "unfinished: permit mismatch",
            log: &[("check", 1), ("release", 1)],
            settle: "settle=allow",
        },
    ];
    for case in cases {
        let name = case.name;
        let sink = Sink::new();
        let meter = Arc::new(Meter::default());
        let pipeline = Setup {
            authorize: Some(Arc::new(Authz {
                act: case.authorize,
                ..Authz::default()
            })),
            limits: Some(meter.clone()),
            outbound: Some(Stub::acting(case.outbound)),
            inbound: Some(Stub::acting(case.inbound)),
            ..Setup::default()
        }
        .build(&sink);
        let tool = Tool::answering(case.answer);
        let result = pipeline.run(call(1), SessionFacts::new(), &tool).await;
        assert_eq!(told(&result), case.told, "{name}");
        assert_eq!(meter.log(), case.log, "{name}");
        assert_eq!(verdict(&sink.outcome(), "settle"), case.settle, "{name}");
        // What settling charged is in the outcome; a released call cost nothing.
        let charged = case.log.contains(&("settle", 1)).then_some(100);
        assert_eq!(sink.outcome()["cost_micros"].as_u64(), charged, "{name}");
        if case.log.contains(&("settle", 1)) {
            let usage = meter.usage.lock().unwrap();
            assert_eq!(usage.len(), 1, "{name}");
            // Only an answer the agent gets counts towards loops: not a
            // withheld one, nor a call that ended without one.
            assert_eq!(
                usage[0].answer.is_some(),
                case.told.starts_with("returned"),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn a_settle_that_fails_is_recorded_but_does_not_change_the_answer() {
    let sink = Sink::new();
    let meter = Arc::new(Meter {
        settle_fails: true,
        ..Meter::default()
    });
    let pipeline = Setup {
        limits: Some(meter.clone()),
        ..Setup::default()
    }
    .build(&sink);
    let result = pipeline
        .run(call(1), SessionFacts::new(), &Tool::ok())
        .await;
    assert_eq!(told(&result), "returned");
    assert_eq!(meter.log(), [("check", 1), ("settle", 1)]);
    let outcome = sink.outcome();
    assert_eq!(verdict(&outcome, "settle"), "settle=failed");
    assert!(outcome.get("cost_micros").is_none(), "{outcome}");
    assert_eq!(
        outcome["outcome"],
        json!({"status": "completed", "tool_error": false})
    );
}

// ---------------------------------------------------------------------------
// 7. Fail closed
// ---------------------------------------------------------------------------

// Paused time: the timeouts fire without the test waiting for them.
#[tokio::test(start_paused = true)]
async fn a_stage_that_fails_or_times_out_fails_the_call_closed() {
    let troubles = [
        (Act::Fail, "backend unreachable", None),
        (
            Act::Unavailable(Duration::from_secs(7)),
            "backend restarting",
            Some(Duration::from_secs(7)),
        ),
        (Act::Hang, "exceeded its 50 ms budget", None),
    ];
    let stages = [
        Stage::Authorize,
        Stage::Limits,
        Stage::OutboundFilter,
        Stage::Approval,
        Stage::InjectSecrets,
        Stage::Redact,
        Stage::InboundFilter,
    ];
    for stage in stages {
        for (act, needle, retry_after) in &troubles {
            let ctx = format!("{stage} / {act:?}");
            let act = || act.clone();
            let sink = Sink::new();
            let stub = |here: Stage| Stub::acting(if here == stage { act() } else { Act::Allow });
            // The gate is consulted only for a call that needs approval.
            let authorizer = if stage == Stage::Approval {
                Authz::forwarding(EffectRules {
                    read: Rule::RequireApproval,
                    ..rules()
                })
            } else {
                Authz::default()
            };
            let pipeline = Setup {
                authorize: Some(Arc::new(Authz {
                    act: if stage == Stage::Authorize {
                        act()
                    } else {
                        Act::Allow
                    },
                    ..authorizer
                })),
                limits: Some(Arc::new(Meter {
                    act: if stage == Stage::Limits {
                        act()
                    } else {
                        Act::Allow
                    },
                    ..Meter::default()
                })),
                outbound: Some(stub(Stage::OutboundFilter)),
                approval: Some(Arc::new(Gate {
                    act: if stage == Stage::Approval {
                        act()
                    } else {
                        Act::Allow
                    },
                    ..Gate::default()
                })),
                secrets: Some(stub(Stage::InjectSecrets)),
                redact: Some(stub(Stage::Redact)),
                inbound: Some(stub(Stage::InboundFilter)),
                redactor: Some(Arc::new(Hunter2)),
            }
            .build(&sink);
            let tool = Tool::ok();
            let result = pipeline.run(call(1), SessionFacts::new(), &tool).await;

            let after_execution = matches!(stage, Stage::Redact | Stage::InboundFilter);
            let (kind, status) = if after_execution {
                ("withheld", json!({"status": "withheld", "stage": stage}))
            } else {
                (
                    "refused",
                    json!({"status": "denied", "stage": stage, "code": "stage-failed"}),
                )
            };
            assert_eq!(
                told(&result),
                format!("{kind} at {stage}: stage-failed"),
                "{ctx}"
            );
            let reason = reason_of(&result);
            assert!(reason.detail.contains(needle), "{ctx}: {}", reason.detail);
            assert_eq!(reason.retry_after, *retry_after, "{ctx}");
            assert_eq!(tool.runs(), usize::from(after_execution), "{ctx}");
            let outcome = sink.outcome();
            assert_eq!(
                verdict(&outcome, stage.as_str()),
                format!("{stage}=failed"),
                "{ctx}"
            );
            let mut got = outcome["outcome"].clone();
            if let Some(map) = got.as_object_mut() {
                map.remove("detail");
            }
            assert_eq!(got, status, "{ctx}");
        }
    }
}

// ---------------------------------------------------------------------------
// 8. How a call that ran ended
// ---------------------------------------------------------------------------

#[tokio::test]
async fn each_way_a_call_can_end_has_its_own_outcome() {
    let cases = [
        (
            Answer::Fail(ExecError::NotSent {
                detail: "connection refused".into(),
                retry_after: Some(Duration::from_secs(1)),
            }),
            json!({"status": "upstream-unavailable", "detail": "connection refused"}),
            "execute=failed",
        ),
        (
            Answer::Fail(ExecError::Lost {
                detail: "upstream exited".into(),
            }),
            json!({"status": "upstream-unavailable", "detail": "upstream exited"}),
            "execute=failed",
        ),
        (
            Answer::Fail(ExecError::TimedOut {
                detail: "no answer in 30 s".into(),
            }),
            json!({"status": "timed-out"}),
            "execute=failed",
        ),
        (
            Answer::Fail(ExecError::Cancelled),
            json!({"status": "cancelled"}),
            "execute=failed",
        ),
        (
            Answer::Fail(ExecError::SessionEnded),
            json!({"status": "session-ended"}),
            "execute=failed",
        ),
        (
            Answer::Fail(ExecError::Refused {
                detail: "permit mismatch".into(),
            }),
            // Refused before sending: nothing ran, so nothing is withheld.
            json!({"status": "denied", "stage": "execute", "code": "stage-failed"}),
            "execute=failed",
        ),
        (
            Answer::Result(json!({"task": {"taskId": "t1", "status": "working"}})),
            json!({"status": "task-created", "task": "t1"}),
            "execute=allow",
        ),
        (
            Answer::Result(json!({"content": [], "isError": true})),
            json!({"status": "completed", "tool_error": true}),
            "execute=allow",
        ),
        (
            Answer::Result(json!({"content": [], "task": {"taskId": "t1"}})),
            json!({"status": "completed", "tool_error": false}),
            "execute=allow",
        ),
        (
            Answer::RpcError(json!({"code": -32602, "message": "bad params"})),
            json!({"status": "upstream-error", "code": -32602}),
            "execute=allow",
        ),
    ];
    for (answer, outcome, execute) in cases {
        let sink = Sink::new();
        let pipeline = Setup::default().build(&sink);
        let tool = Tool::answering(answer.clone());
        let result = pipeline.run(call(1), SessionFacts::new(), &tool).await;
        match (&answer, &result) {
            (Answer::Fail(sent), CallResult::Unfinished(got)) => assert_eq!(sent, got),
            (Answer::Result(sent), CallResult::Returned(Executed::Result(got)))
            | (Answer::RpcError(sent), CallResult::Returned(Executed::RpcError(got))) => {
                assert_eq!(sent, got);
            }
            (answer, result) => panic!("{answer:?} gave {result:?}"),
        }
        assert_eq!(tool.runs(), 1);
        let line = sink.outcome();
        assert_eq!(line["outcome"], outcome, "{answer:?}");
        assert_eq!(verdict(&line, "execute"), execute, "{answer:?}");
    }
}

// ---------------------------------------------------------------------------
// 9. Taint
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_inbound_filters_taint_reaches_the_session_and_the_record() {
    let sink = Sink::new();
    let authz = Arc::new(Authz::default());
    let pipeline = Setup {
        authorize: Some(authz.clone()),
        inbound: Some(Stub::acting(Act::Taint)),
        ..Setup::default()
    }
    .build(&sink);
    let session = SessionFacts::new();
    let result = pipeline.run(call(1), session.clone(), &Tool::ok()).await;
    assert_eq!(told(&result), "returned");
    assert!(session.is_tainted());
    assert_eq!(session.taints(), [suspected_injection()]);
    let outcome = sink.outcome();
    assert_eq!(
        outcome["taint"],
        json!({
            "stage": "inbound-filter",
            "code": "injection.suspected",
            "detail": "the result asks the model to ignore its instructions",
            "source": "files/read",
        })
    );
    assert!(
        sink.lines()[0].get("taint").is_none(),
        "the intent has none"
    );

    // The session's next call is judged knowing it; another session's is not.
    let _ = pipeline.run(call(2), session, &Tool::ok()).await;
    let _ = pipeline
        .run(call(3), SessionFacts::new(), &Tool::ok())
        .await;
    assert_eq!(authz.seen_tainted(), [false, true, false]);
}

// ---------------------------------------------------------------------------
// 10. Redaction
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_redact_stage_cleans_what_the_caller_gets() {
    let sink = Sink::new();
    let pipeline = Setup {
        redact: Some(Stub::acting(Act::Allow)),
        redactor: Some(Arc::new(Hunter2)),
        ..Setup::default()
    }
    .build(&sink);
    let result = pipeline
        .run(call(1), SessionFacts::new(), &Tool::ok())
        .await;
    assert_eq!(
        result,
        CallResult::Returned(Executed::Result(
            json!({"content": [{"type": "text", "text": "password is [REDACTED]"}]})
        ))
    );
    // An upstream's error passes the same stage.
    let tool = Tool::answering(Answer::RpcError(
        json!({"code": -32000, "message": "wrong password hunter2"}),
    ));
    let result = pipeline.run(call(2), SessionFacts::new(), &tool).await;
    assert_eq!(
        result,
        CallResult::Returned(Executed::RpcError(
            json!({"code": -32000, "message": "wrong password [REDACTED]"})
        ))
    );
}

#[tokio::test]
async fn audit_lines_pass_the_redaction_seam() {
    let secret_call = |id| {
        let mut head = head(id, EffectClass::Read);
        head.principal = Principal::new("alice-hunter2");
        head.target = Target::new("files", "read-hunter2");
        Call::new(head, motd())
    };
    let run_all = async |pipeline: &Pipeline| {
        let _ = pipeline
            .run(secret_call(1), SessionFacts::new(), &Tool::ok())
            .await;
        let reason = Reason::new(ReasonCode::UnknownTool, "no tool `read-hunter2`");
        let _ = pipeline
            .refuse(&secret_call(2), Stage::Authorize, reason)
            .await;
        let event = AuditEvent::SessionOpened {
            time: pipeline.now(),
            session: SessionId::new("s-hunter2"),
            principal: Principal::new("alice-hunter2"),
            protocol_version: "2025-11-25".into(),
        };
        pipeline.record(&event).await.unwrap();
    };

    let sink = Sink::new();
    let pipeline = Setup {
        redact: Some(Stub::acting(Act::Allow)),
        redactor: Some(Arc::new(Hunter2)),
        ..Setup::default()
    }
    .build(&sink);
    assert!(!pipeline.seam().is_pass_through());
    run_all(&pipeline).await;
    assert_eq!(
        sink.events(),
        [
            "call-intent",
            "call-outcome",
            "call-outcome",
            "session-opened"
        ]
    );
    let text = serde_json::to_string(&sink.lines()).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(sink.lines()[0]["principal"], "alice-[REDACTED]");
    assert_eq!(sink.lines()[0]["name"], "read-[REDACTED]");

    // The control: without a redactor, the seam passes the secret through.
    let sink = Sink::new();
    let pipeline = Setup::default().build(&sink);
    assert!(pipeline.seam().is_pass_through());
    run_all(&pipeline).await;
    let text = serde_json::to_string(&sink.lines()).unwrap();
    assert!(text.contains("alice-hunter2"));
}

// ---------------------------------------------------------------------------
// 11. The builder
// ---------------------------------------------------------------------------

#[test]
fn stages_must_be_implemented_or_explicitly_passed_through() {
    let sink = Sink::new();
    let err = Pipeline::builder().audit(sink.clone()).build().unwrap_err();
    assert_eq!(err, BuildError::Unimplemented(Stage::Authorize));
    assert_eq!(
        err.to_string(),
        "stage `authorize` has no implementation yet; list it in `pipeline.pass_through` to run without it"
    );
    for stage in [Stage::Execute, Stage::Settle, Stage::Audit] {
        let err = Setup::default()
            .builder(&sink)
            .pass_through(stage)
            .build()
            .unwrap_err();
        assert_eq!(err, BuildError::NotPassable(stage));
    }
    assert_eq!(
        BuildError::NotPassable(Stage::Execute).to_string(),
        "stage `execute` cannot be passed through"
    );
    let err = Setup {
        limits: Some(Arc::new(Meter::default())),
        ..Setup::default()
    }
    .builder(&sink)
    .pass_through(Stage::Limits)
    .build()
    .unwrap_err();
    assert_eq!(err, BuildError::Both(Stage::Limits));
    assert_eq!(
        err.to_string(),
        "stage `limits` is both implemented and listed in `pipeline.pass_through`"
    );
    let mut no_audit = Pipeline::builder();
    for stage in PASSABLE {
        no_audit = no_audit.pass_through(stage);
    }
    assert_eq!(no_audit.build().unwrap_err(), BuildError::NoAudit);
}

#[test]
fn a_redact_stage_needs_a_redactor_for_the_seam() {
    let sink = Sink::new();
    let err = Setup {
        redact: Some(Stub::acting(Act::Allow)),
        ..Setup::default()
    }
    .builder(&sink)
    .build()
    .unwrap_err();
    assert_eq!(err, BuildError::NoRedactor);
    assert!(
        Setup {
            redact: Some(Stub::acting(Act::Allow)),
            redactor: Some(Arc::new(Hunter2)),
            ..Setup::default()
        }
        .builder(&sink)
        .build()
        .is_ok()
    );
}

#[test]
fn passed_through_stages_are_reported() {
    let sink = Sink::new();
    let all = Setup::default().build(&sink);
    assert_eq!(all.passed_through(), PASSABLE);
    let some = Setup {
        limits: Some(Arc::new(Meter::default())),
        redact: Some(Stub::acting(Act::Allow)),
        redactor: Some(Arc::new(Hunter2)),
        ..Setup::default()
    }
    .build(&sink);
    assert_eq!(
        some.passed_through(),
        [
            Stage::Authorize,
            Stage::OutboundFilter,
            Stage::Approval,
            Stage::InjectSecrets,
            Stage::InboundFilter
        ]
    );
    let none = Setup {
        authorize: Some(Arc::new(Authz::default())),
        limits: Some(Arc::new(Meter::default())),
        outbound: Some(Stub::acting(Act::Allow)),
        approval: Some(Arc::new(Gate::default())),
        secrets: Some(Stub::acting(Act::Allow)),
        redact: Some(Stub::acting(Act::Allow)),
        inbound: Some(Stub::acting(Act::Allow)),
        redactor: Some(Arc::new(Hunter2)),
    }
    .build(&sink);
    assert!(none.passed_through().is_empty());
}

// ---------------------------------------------------------------------------
// 12. Calls that never reach the pipeline, and bounded records
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_call_refused_before_the_pipeline_is_still_recorded() {
    let sink = Sink::new();
    let pipeline = Setup::default().build(&sink);
    let reason = Reason::new(ReasonCode::UnknownTool, "no upstream serves `x`");
    let result = pipeline.refuse(&call(1), Stage::Authorize, reason).await;
    assert_eq!(told(&result), "refused at authorize: unknown-tool");
    assert_eq!(sink.events(), ["call-outcome"]);
    let outcome = sink.outcome();
    assert_eq!(
        outcome["outcome"],
        json!({"status": "denied", "stage": "authorize", "code": "unknown-tool"})
    );
    let got = stages(&outcome);
    assert_eq!(got[0], "authorize=deny");
    assert!(
        got[1..].iter().all(|s| s.ends_with("=not-reached")),
        "{got:?}"
    );

    // Its record lost: the agent is told the audit log is unavailable.
    let pipeline = Setup::default().build(&Sink::refusing(Refuse::Everything));
    let reason = Reason::new(ReasonCode::UnknownTool, "no upstream serves `x`");
    let result = pipeline.refuse(&call(1), Stage::Authorize, reason).await;
    assert_eq!(told(&result), "refused at audit: audit-unavailable");
}

#[tokio::test]
async fn a_call_that_could_not_be_made_is_recorded_with_its_outcome() {
    let sink = Sink::new();
    let pipeline = Setup::default().build(&sink);
    let outcome = Outcome::Invalid {
        detail: "arguments are not an object".into(),
    };
    pipeline.record_unmade(&call(1), outcome).await.unwrap();
    assert_eq!(sink.events(), ["call-outcome"]);
    assert_eq!(
        sink.outcome()["outcome"],
        json!({"status": "invalid", "detail": "arguments are not an object"})
    );

    let pipeline = Setup::default().build(&Sink::refusing(Refuse::Everything));
    let err = pipeline
        .record_unmade(&call(1), Outcome::Abandoned)
        .await
        .unwrap_err();
    assert!(matches!(err, AuditFailure(detail) if detail.contains("disk full")));
}

#[tokio::test]
async fn a_huge_tool_name_is_recorded_bounded() {
    let huge = "x".repeat(4 << 20);
    let huge_call = |id| {
        let mut head = head(id, EffectClass::Read);
        head.target = Target::new("files", huge.as_str());
        Call::new(head, motd())
    };
    let sink = Sink::new();
    let pipeline = Setup::default().build(&sink);
    let result = pipeline
        .run(huge_call(1), SessionFacts::new(), &Tool::ok())
        .await;
    assert_eq!(told(&result), "returned");
    let reason = Reason::new(ReasonCode::UnknownTool, "no such tool");
    let _ = pipeline
        .refuse(&huge_call(2), Stage::Authorize, reason)
        .await;

    let lines = sink.lines();
    assert_eq!(lines.len(), 3);
    for line in lines {
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.len() < 4096, "{} bytes", text.len());
        assert_eq!(line["name"]["bytes"], 4 << 20);
        let sha = line["name"]["sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 64);
        assert!(huge.starts_with(line["name"]["truncated"].as_str().unwrap()));
    }
}

// ---------------------------------------------------------------------------
// Approval gates that hold the call open
// ---------------------------------------------------------------------------

/// A gate that holds calls up to `hold` and has a human approve after
/// `decides_after`; it keeps the argument text each request showed.
#[derive(Debug, Default)]
struct HoldingGate {
    hold: Duration,
    decides_after: Duration,
    approvals: OneTimeApprovals,
    shown: Mutex<Vec<Option<String>>>,
}

impl ApprovalGate for HoldingGate {
    fn gate<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        ctx: &'a CallContext,
    ) -> StageFuture<'a, GateDecision> {
        Box::pin(async move {
            let shown = request.canonical_arguments().map(str::to_owned);
            self.shown.lock().unwrap().push(shown);
            tokio::time::sleep(self.decides_after).await;
            self.approvals.grant(request.digest());
            self.approvals.gate(request, ctx).await
        })
    }

    fn hold(&self) -> Duration {
        self.hold
    }
}

#[tokio::test(start_paused = true)]
async fn a_gate_may_hold_the_call_beyond_the_stage_budget_but_not_beyond_its_hold() {
    // (hold, when the human decides, what the agent is told); the stage
    // budget is 50 ms.
    let check = async |hold: u64, decides_after: u64, expected: &str| {
        let sink = Sink::new();
        let gate = Arc::new(HoldingGate {
            hold: Duration::from_secs(hold),
            decides_after: Duration::from_secs(decides_after),
            ..HoldingGate::default()
        });
        let pipeline = Setup {
            authorize: Some(Arc::new(rules())),
            approval: Some(gate.clone()),
            ..Setup::default()
        }
        .build(&sink);
        let tool = Tool::ok();
        let write = call_with(
            1,
            EffectClass::Write,
            json!({"text": "hi", "path": "/srv/a"}),
        );
        let result = pipeline.run(write, SessionFacts::new(), &tool).await;
        assert_eq!(
            told(&result),
            expected,
            "hold {hold} s, decided after {decides_after} s"
        );
        assert_eq!(tool.runs(), usize::from(expected == "returned"));
        // The human saw the canonical text of exactly these arguments.
        assert_eq!(
            *gate.shown.lock().unwrap(),
            [Some(r#"{"path":"/srv/a","text":"hi"}"#.to_owned())]
        );
    };
    check(10, 5, "returned").await;
    check(10, 11, "refused at approval: stage-failed").await;
    check(0, 1, "refused at approval: stage-failed").await;
}
