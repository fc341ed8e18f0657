//! The record that survives the drop: a call's outcome is written, and its reservation given back, even if its future is dropped.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::stage::{Audit, Limit};
use palisade_core::{
    ArgumentDigest, AuditEvent, AuditLine, CallRecord, Clock, Durability, Outcome, Redacted,
    RedactionSeam, Reservation, StageRecord, Taint, Usage,
};
use tokio_util::task::TaskTracker;

/// What the guard needs from the pipeline to write on its own.
#[derive(Clone)]
pub(crate) struct Writer {
    pub audit: Arc<dyn Audit>,
    pub seam: RedactionSeam,
    pub clock: Arc<dyn Clock>,
    pub tasks: TaskTracker,
    /// Bounds each write: a stuck sink fails the call closed, it does not hang it.
    pub timeout: Duration,
}

impl Writer {
    async fn write(
        &self,
        line: &Redacted<AuditLine>,
        durability: Durability,
    ) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.audit.append(line, durability)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the audit sink did not answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }
}

/// Owns a call's record and its limits reservation while the pipeline works
/// on it, and writes its lines. Dropped before its outcome is written (the
/// call's future was dropped, even mid-write), it writes the outcome it was
/// writing, or `abandoned`, and settles or releases the reservation, from a
/// tracked task that a shutdown drains.
pub(crate) struct OutcomeGuard {
    /// The call's record; its stages grow as the pipeline runs.
    record: CallRecord,
    state: State,
    reservation: Option<(Arc<dyn Limit>, Reservation)>,
    /// The call was handed to the executor: it may have run.
    executing: bool,
    writer: Writer,
}

enum State {
    /// No outcome written yet.
    Open,
    /// The outcome line, being written.
    Writing(Redacted<AuditLine>),
    Done,
}

impl OutcomeGuard {
    pub(crate) fn new(record: CallRecord, writer: Writer) -> Self {
        Self {
            record,
            state: State::Open,
            reservation: None,
            executing: false,
            writer,
        }
    }

    pub(crate) fn push(&mut self, stage: StageRecord) {
        self.record.stages.push(stage);
    }

    /// The arguments changed (a rewrite): the records name the ones that run.
    pub(crate) fn set_digest(&mut self, digest: ArgumentDigest, arguments: &serde_json::Value) {
        self.record.arguments_sha256 = digest;
        self.record.arguments = Some(arguments.clone());
    }

    /// The redacted result, for the outcome record.
    pub(crate) fn set_result(&mut self, result: &serde_json::Value) {
        self.record.result = Some(result.clone());
    }

    /// What settling charged the call, for the outcome record.
    pub(crate) fn set_cost(&mut self, cost_micros: Option<u64>) {
        self.record.cost_micros = cost_micros;
    }

    pub(crate) fn hold(&mut self, limits: Arc<dyn Limit>, reservation: Reservation) {
        self.reservation = Some((limits, reservation));
    }

    pub(crate) fn take_reservation(&mut self) -> Option<(Arc<dyn Limit>, Reservation)> {
        self.reservation.take()
    }

    pub(crate) fn executing(&mut self) {
        self.executing = true;
    }

    /// Writes the intent line: the record as it stands, before execution.
    pub(crate) async fn write_intent(&mut self) -> Result<(), String> {
        self.record.time = crate::run::rfc3339(self.writer.clock.wall());
        let line = self
            .writer
            .seam
            .record(&AuditEvent::CallIntent(&self.record))?;
        self.writer.write(&line, Durability::Stored).await
    }

    /// Writes the outcome line, then disarms the guard. Dropped during the
    /// write, the guard writes this outcome again rather than lose it.
    pub(crate) async fn write_outcome(
        &mut self,
        outcome: Outcome,
        latency_micros: u64,
        taint: Option<Taint>,
    ) -> Result<(), String> {
        if !matches!(self.state, State::Open) {
            return Ok(());
        }
        self.finish_record(outcome);
        self.record.latency_micros = Some(latency_micros);
        self.record.taint = taint;
        let line = self
            .writer
            .seam
            .record(&AuditEvent::CallOutcome(&self.record))?;
        self.state = State::Writing(line);
        let written = match &self.state {
            State::Writing(line) => self.writer.write(line, Durability::Handed).await,
            State::Open | State::Done => Ok(()),
        };
        self.state = State::Done;
        written
    }

    fn finish_record(&mut self, outcome: Outcome) {
        self.record.time = crate::run::rfc3339(self.writer.clock.wall());
        crate::run::complete(&mut self.record.stages);
        self.record.outcome = Some(outcome);
    }
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        let line = match std::mem::replace(&mut self.state, State::Done) {
            State::Done => None,
            State::Writing(line) => Some(line),
            State::Open => {
                self.finish_record(Outcome::Abandoned);
                match self
                    .writer
                    .seam
                    .record(&AuditEvent::CallOutcome(&self.record))
                {
                    Ok(line) => Some(line),
                    Err(e) => {
                        tracing::error!(call = %self.record.call, "cannot encode a dropped call's record: {e}");
                        None
                    }
                }
            }
        };
        let reservation = self.reservation.take();
        if line.is_none() && reservation.is_none() {
            return;
        }
        let (writer, executing, call) = (self.writer.clone(), self.executing, self.record.call);
        let finish = async move {
            if let Some((limits, reservation)) = reservation {
                // A call that reached the executor may have run: charge it.
                // The record is written already: what it cost is not in it.
                let settled = if executing {
                    limits
                        .settle(reservation, Usage::unanswered(Duration::ZERO))
                        .await
                        .map(|_| ())
                } else {
                    limits.release(reservation).await
                };
                if let Err(e) = settled {
                    tracing::error!(%call, "cannot settle a dropped call's reservation: {e}");
                }
            }
            if let Some(line) = line
                && let Err(e) = writer.write(&line, Durability::Handed).await
            {
                tracing::error!(%call, "cannot record a dropped call: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.writer.tasks.track_future(finish));
            }
            Err(_) => {
                tracing::error!(%call, "a call was dropped with no runtime left to record it")
            }
        }
    }
}
