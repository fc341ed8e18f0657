//! The pipeline's guarantees: stage order, fail-closed on error and timeout, audit always.
#![expect(clippy::unwrap_used, reason = "test doubles: a panic is a failed test")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::stage::{Audit, Limit, OutboundFilter, Redact, StageError, StageFuture};
use palisade_core::*;
use palisade_pipeline::{
    CallResult, ExecError, Execute, Executed, Permit, Pipeline, PipelineBuilder,
};
use serde_json::{Value, json};

/// Keeps every record it is given, or refuses them all.
#[derive(Debug, Default)]
struct Records {
    kept: Mutex<Vec<CallRecord>>,
    refuse: bool,
}

impl Audit for Records {
    fn append<'a>(&'a self, record: &'a CallRecord) -> StageFuture<'a, ()> {
        Box::pin(async move {
            if self.refuse {
                return Err(StageError::new("disk full"));
            }
            self.kept.lock().unwrap().push(record.clone());
            Ok(())
        })
    }
}

/// A stage that answers as told, and counts how often it ran.
#[derive(Debug)]
enum Behaviour {
    Allow,
    Deny,
    Fail,
    Hang,
}

#[derive(Debug)]
struct Scripted {
    behaviour: Behaviour,
    runs: Mutex<u32>,
    settled: Mutex<Vec<bool>>,
}

impl Scripted {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour,
            runs: Mutex::new(0),
            settled: Mutex::new(vec![]),
        })
    }

    async fn decide(&self) -> Result<Decision, StageError> {
        *self.runs.lock().unwrap() += 1;
        match self.behaviour {
            Behaviour::Allow => Ok(Decision::allow()),
            Behaviour::Deny => Ok(Decision::deny(
                Reason::new(ReasonCode::LimitExceeded, "3 calls per minute")
                    .retry_after(Duration::from_secs(20)),
            )),
            Behaviour::Fail => Err(StageError::new("backend unreachable")),
            Behaviour::Hang => std::future::pending().await,
        }
    }
}

impl Limit for Scripted {
    fn check<'a>(&'a self, _call: &'a Call) -> StageFuture<'a, Decision> {
        Box::pin(self.decide())
    }
    fn settle<'a>(&'a self, _call: &'a Call, succeeded: bool) -> StageFuture<'a, ()> {
        Box::pin(async move {
            self.settled.lock().unwrap().push(succeeded);
            Ok(())
        })
    }
}

impl OutboundFilter for Scripted {
    fn check_arguments<'a>(&'a self, call: &'a mut Call) -> StageFuture<'a, Decision> {
        call.arguments = json!({"rewritten": true});
        Box::pin(self.decide())
    }
}

/// Replaces a known secret in results, as the redaction layer will.
#[derive(Debug)]
struct RedactHunter2;

impl Redact for RedactHunter2 {
    fn redact<'a>(&'a self, result: &'a mut Value) -> StageFuture<'a, Vec<Finding>> {
        Box::pin(async move {
            let text = result.to_string().replace("hunter2", "[REDACTED]");
            *result = serde_json::from_str(&text).map_err(|e| StageError::new(e.to_string()))?;
            Ok(vec![Finding {
                stage: Stage::Redact,
                code: "secret.password".into(),
                message: "one value".into(),
            }])
        })
    }
}

/// An upstream that records what it was asked and answers with fixed text.
#[derive(Default)]
struct Tool {
    seen: Mutex<Vec<Value>>,
    fail: bool,
}

impl Execute for Tool {
    async fn execute(&self, permit: Permit, call: &Call) -> Result<Executed, ExecError> {
        permit.redeem(call).map_err(|e| ExecError(e.to_string()))?;
        self.seen.lock().unwrap().push(call.arguments.clone());
        if self.fail {
            return Err(ExecError("upstream exited".into()));
        }
        Ok(Executed::Result(
            json!({"content": [{"type": "text", "text": "password is hunter2"}]}),
        ))
    }
}

fn call() -> Call {
    Call {
        id: CallId(7),
        principal: Principal::new("alice"),
        session: SessionId::new("s1"),
        tool: ToolRef::new("files", "read"),
        arguments: json!({"path": "/etc/motd"}),
        effect: EffectClass::Read,
    }
}

/// Everything passed through except what the test sets.
fn builder(audit: Arc<Records>) -> PipelineBuilder {
    Pipeline::builder()
        .audit(audit)
        .pass_through(Stage::Authorize)
        .pass_through(Stage::Approval)
        .pass_through(Stage::InjectSecrets)
        .pass_through(Stage::InboundFilter)
        .stage_timeout(Duration::from_millis(50))
}

fn verdicts(record: &CallRecord) -> Vec<(&'static str, &'static str)> {
    record
        .stages
        .iter()
        .map(|s| {
            let v = match &s.verdict {
                StageVerdict::Allow => "allow",
                StageVerdict::PassThrough => "pass-through",
                StageVerdict::Deny { .. } => "deny",
                StageVerdict::NeedsApproval { .. } => "needs-approval",
                StageVerdict::Failed { .. } => "failed",
                StageVerdict::NotReached => "not-reached",
            };
            (s.stage.as_str(), v)
        })
        .collect()
}

#[tokio::test]
async fn allowed_call_runs_every_stage_in_order_and_is_audited() {
    let audit = Arc::new(Records::default());
    let limits = Scripted::new(Behaviour::Allow);
    let filter = Scripted::new(Behaviour::Allow);
    let pipeline = builder(audit.clone())
        .limits(limits.clone())
        .outbound_filter(filter.clone())
        .redact(Arc::new(RedactHunter2))
        .build()
        .unwrap();
    let tool = Tool::default();
    let result = pipeline.run(call(), &tool).await;

    let CallResult::Executed(Executed::Result(value)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(value["content"][0]["text"], "password is [REDACTED]");
    // The tool saw the arguments as the outbound filter left them.
    assert_eq!(
        tool.seen.lock().unwrap().as_slice(),
        &[json!({"rewritten": true})]
    );
    assert_eq!(limits.settled.lock().unwrap().as_slice(), &[true]);

    let kept = audit.kept.lock().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        verdicts(&kept[0]),
        vec![
            ("authorize", "pass-through"),
            ("limits", "allow"),
            ("outbound-filter", "allow"),
            ("approval", "pass-through"),
            ("inject-secrets", "pass-through"),
            ("execute", "allow"),
            ("redact", "allow"),
            ("inbound-filter", "pass-through"),
            ("settle", "allow"),
        ]
    );
    assert_eq!(kept[0].outcome, Outcome::Completed { tool_error: false });
    assert_eq!(kept[0].stages[6].findings[0].code, "secret.password");
}

#[tokio::test]
async fn a_deny_stops_the_call_before_execution_and_is_audited() {
    let audit = Arc::new(Records::default());
    let limits = Scripted::new(Behaviour::Deny);
    let filter = Scripted::new(Behaviour::Allow);
    let pipeline = builder(audit.clone())
        .limits(limits.clone())
        .outbound_filter(filter.clone())
        .pass_through(Stage::Redact)
        .build()
        .unwrap();
    let tool = Tool::default();
    let result = pipeline.run(call(), &tool).await;

    let CallResult::Denied { stage, reason } = result else {
        panic!("{result:?}")
    };
    assert_eq!(
        (stage, reason.code),
        (Stage::Limits, ReasonCode::LimitExceeded)
    );
    assert_eq!(reason.retry_after, Some(Duration::from_secs(20)));
    assert!(
        tool.seen.lock().unwrap().is_empty(),
        "the tool must not run"
    );
    assert_eq!(
        *filter.runs.lock().unwrap(),
        0,
        "no stage after the deny runs"
    );
    let kept = audit.kept.lock().unwrap();
    let v = verdicts(&kept[0]);
    assert_eq!(v[1], ("limits", "deny"));
    assert!(
        v[2..8].iter().all(|(_, verdict)| *verdict == "not-reached"),
        "{v:?}"
    );
    assert_eq!(
        kept[0].outcome,
        Outcome::Denied {
            stage: Stage::Limits,
            code: ReasonCode::LimitExceeded
        }
    );
}

// Paused time: the timeout fires without the test waiting for it.
#[tokio::test(start_paused = true)]
async fn a_stage_error_or_timeout_fails_closed() {
    for (behaviour, needle) in [
        (Behaviour::Fail, "backend unreachable"),
        (Behaviour::Hang, "exceeded its 50 ms budget"),
    ] {
        let audit = Arc::new(Records::default());
        let pipeline = builder(audit.clone())
            .limits(Scripted::new(Behaviour::Allow))
            .outbound_filter(Scripted::new(behaviour))
            .pass_through(Stage::Redact)
            .build()
            .unwrap();
        let tool = Tool::default();
        let result = pipeline.run(call(), &tool).await;
        let CallResult::Denied { stage, reason } = result else {
            panic!("{result:?}")
        };
        assert_eq!(
            (stage, reason.code),
            (Stage::OutboundFilter, ReasonCode::StageFailed)
        );
        assert!(reason.detail.contains(needle), "{}", reason.detail);
        assert!(tool.seen.lock().unwrap().is_empty());
        let kept = audit.kept.lock().unwrap();
        assert_eq!(verdicts(&kept[0])[2], ("outbound-filter", "failed"));
    }
}

#[tokio::test]
async fn settle_runs_even_when_execution_fails() {
    let audit = Arc::new(Records::default());
    let limits = Scripted::new(Behaviour::Allow);
    let pipeline = builder(audit.clone())
        .limits(limits.clone())
        .pass_through(Stage::OutboundFilter)
        .pass_through(Stage::Redact)
        .build()
        .unwrap();
    let tool = Tool {
        fail: true,
        ..Tool::default()
    };
    let result = pipeline.run(call(), &tool).await;
    assert!(
        matches!(result, CallResult::Denied { stage: Stage::Execute, reason } if reason.code == ReasonCode::UpstreamUnavailable)
    );
    assert_eq!(limits.settled.lock().unwrap().as_slice(), &[false]);
    let kept = audit.kept.lock().unwrap();
    assert_eq!(verdicts(&kept[0])[5], ("execute", "failed"));
    assert_eq!(verdicts(&kept[0])[8], ("settle", "allow"));
}

#[tokio::test]
async fn a_call_that_cannot_be_audited_does_not_return_its_result() {
    let audit = Arc::new(Records {
        refuse: true,
        ..Records::default()
    });
    let pipeline = builder(audit)
        .pass_through(Stage::Limits)
        .pass_through(Stage::OutboundFilter)
        .pass_through(Stage::Redact)
        .build()
        .unwrap();
    let result = pipeline.run(call(), &Tool::default()).await;
    let CallResult::Denied { stage, reason } = result else {
        panic!("{result:?}")
    };
    assert_eq!(
        (stage, reason.code),
        (Stage::Audit, ReasonCode::StageFailed)
    );
    assert!(reason.detail.contains("disk full"));
}

#[test]
fn stages_must_be_implemented_or_explicitly_passed_through() {
    let audit = Arc::new(Records::default());
    let err = Pipeline::builder()
        .audit(audit.clone())
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stage `authorize` has no implementation yet; list it in `pipeline.pass_through` to run without it"
    );
    let err = builder(audit.clone())
        .pass_through(Stage::Execute)
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "stage `execute` cannot be passed through");
    let err = builder(audit)
        .limits(Scripted::new(Behaviour::Allow))
        .pass_through(Stage::Limits)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stage `limits` is both implemented and listed in `pipeline.pass_through`"
    );
}

#[test]
fn passed_through_stages_are_reported() {
    let pipeline = builder(Arc::new(Records::default()))
        .pass_through(Stage::Limits)
        .pass_through(Stage::OutboundFilter)
        .pass_through(Stage::Redact)
        .build()
        .unwrap();
    assert_eq!(pipeline.passed_through().len(), 7);
}

#[tokio::test]
async fn a_call_refused_before_the_pipeline_is_still_audited() {
    let audit = Arc::new(Records::default());
    let pipeline = builder(audit.clone())
        .pass_through(Stage::Limits)
        .pass_through(Stage::OutboundFilter)
        .pass_through(Stage::Redact)
        .build()
        .unwrap();
    let reason = Reason::new(ReasonCode::UnknownTool, "no upstream serves `x`");
    let result = pipeline.refuse(call(), Stage::Authorize, reason).await;
    assert!(matches!(
        result,
        CallResult::Denied {
            stage: Stage::Authorize,
            ..
        }
    ));
    let kept = audit.kept.lock().unwrap();
    assert_eq!(verdicts(&kept[0])[0], ("authorize", "deny"));
    assert!(
        verdicts(&kept[0])[1..]
            .iter()
            .all(|(_, v)| *v == "not-reached")
    );
    assert_eq!(
        kept[0].outcome,
        Outcome::Denied {
            stage: Stage::Authorize,
            code: ReasonCode::UnknownTool
        }
    );
}
