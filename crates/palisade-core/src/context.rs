//! What one call carries from stage to stage: obligations, findings so far, session facts; and what limits reserve.
//!
//! Stages never talk to each other. What one stage must hand a later one
//! travels here, written by the pipeline from each stage's answer and read
//! by the stages after it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::stage::Stage;
use crate::verdict::Finding;

/// Something authorization requires of a later stage for this call
/// (`filter.strict`, `audit.arguments`): addressed to a stage, read by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Obligation {
    pub stage: Stage,
    /// A stable, machine-readable name the addressed stage understands.
    pub code: String,
    pub detail: String,
}

/// Untrusted or suspicious content entered the session: authorization may
/// then require approval, or refuse egress and irreversible effects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taint {
    pub stage: Stage,
    pub code: String,
    pub detail: String,
    /// Where the content came from (`SERVER/TOOL`): what policies see as
    /// `context.session.sources`.
    pub source: String,
}

/// Facts about a session that outlive one call. Shared by every call of the session.
#[derive(Debug, Default)]
pub struct SessionFacts {
    taints: Mutex<Vec<Taint>>,
}

/// Taints kept per session; the first ones are what matter, later ones repeat them.
const MAX_TAINTS: usize = 64;

impl SessionFacts {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks the session tainted. Taint is never removed for the session's life.
    pub fn taint(&self, taint: Taint) {
        let mut taints = self.taints.lock().unwrap_or_else(|p| p.into_inner());
        if taints.len() < MAX_TAINTS {
            taints.push(taint);
        }
    }

    pub fn is_tainted(&self) -> bool {
        !self
            .taints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The distinct sources of the session's taints, in the order they came.
    pub fn sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = Vec::new();
        for taint in self.taints.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if !sources.contains(&taint.source) {
                sources.push(taint.source.clone());
            }
        }
        sources
    }

    pub fn taints(&self) -> Vec<Taint> {
        self.taints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What the limits layer set aside for a call before it ran. Settled with
/// the call's [`Usage`] once it ran, released if it never did.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reservation must be settled or released"]
pub struct Reservation {
    /// The limits layer's own handle for it.
    pub id: u64,
    /// What was reserved, in micro-units of the budget's currency.
    pub cost_micros: u64,
}

/// What settling a reservation charged the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// What the budget charged, in micro-units of its currency; `None` when
    /// no budget drew on the call.
    pub cost_micros: Option<u64>,
}

/// What a call that ran actually used, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// From the request leaving palisade to its answer (or its end).
    pub elapsed: Duration,
    /// SHA-256 of the answer (result or error) in canonical form, when there
    /// was one: the same call answered the same way again is a loop that
    /// makes no progress.
    pub answer: Option<[u8; 32]>,
    /// The answer's `_meta`, where a tool reports what it used (model
    /// tokens, cost); the limits layer reads what it knows in it.
    pub meta: Option<serde_json::Value>,
}

impl Usage {
    /// A call that may have run but gave no answer.
    pub fn unanswered(elapsed: Duration) -> Self {
        Self {
            elapsed,
            answer: None,
            meta: None,
        }
    }

    /// A call that answered `answer`.
    pub fn answered(elapsed: Duration, answer: &serde_json::Value) -> Self {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        match serde_json_canonicalizer::to_vec(answer) {
            Ok(canonical) => hasher.update(&canonical),
            Err(_) => hasher.update(answer.to_string().as_bytes()),
        }
        Self {
            elapsed,
            answer: Some(hasher.finalize().into()),
            meta: answer.get("_meta").cloned(),
        }
    }
}

/// The per-call context threaded through every stage. The limits
/// reservation is not here: the pipeline's drop guard holds it, so that a
/// call whose future is dropped still settles or releases it.
#[derive(Debug)]
pub struct CallContext {
    session: Arc<SessionFacts>,
    obligations: Vec<Obligation>,
    findings: Vec<Finding>,
}

impl CallContext {
    pub fn new(session: Arc<SessionFacts>) -> Self {
        Self {
            session,
            obligations: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn session(&self) -> &SessionFacts {
        &self.session
    }

    /// Obligations addressed to `stage`.
    pub fn obligations_for(&self, stage: Stage) -> impl Iterator<Item = &Obligation> {
        self.obligations.iter().filter(move |o| o.stage == stage)
    }

    pub fn obligations(&self) -> &[Obligation] {
        &self.obligations
    }

    /// Every finding of the stages that ran before this one.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    // The pipeline's side: what it learnt from a stage's answer.

    pub fn add_obligations(&mut self, obligations: impl IntoIterator<Item = Obligation>) {
        self.obligations.extend(obligations);
    }

    pub fn add_findings(&mut self, findings: impl IntoIterator<Item = Finding>) {
        self.findings.extend(findings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_is_shared_by_the_session_and_bounded() {
        let facts = SessionFacts::new();
        let ctx = CallContext::new(Arc::clone(&facts));
        assert!(!ctx.session().is_tainted());
        for i in 0..100 {
            facts.taint(Taint {
                stage: Stage::InboundFilter,
                code: "injection".into(),
                detail: format!("{i}"),
                source: format!("web/{}", i % 2),
            });
        }
        assert!(ctx.session().is_tainted());
        assert_eq!(facts.taints().len(), MAX_TAINTS);
        assert_eq!(facts.sources(), ["web/0", "web/1"]);
    }

    #[test]
    fn obligations_reach_the_stage_they_address() {
        let mut ctx = CallContext::new(SessionFacts::new());
        ctx.add_obligations([
            Obligation {
                stage: Stage::OutboundFilter,
                code: "filter.strict".into(),
                detail: String::new(),
            },
            Obligation {
                stage: Stage::Approval,
                code: "approval.two-person".into(),
                detail: String::new(),
            },
        ]);
        let codes: Vec<_> = ctx
            .obligations_for(Stage::OutboundFilter)
            .map(|o| o.code.as_str())
            .collect();
        assert_eq!(codes, ["filter.strict"]);
    }
}
