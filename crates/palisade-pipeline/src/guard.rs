//! The record that survives the drop: a call's outcome is written, and its reservation given back, even if its future is dropped.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::stage::{Audit, Limit};
use palisade_core::{
    ArgumentDigest, AuditEvent, CallRecord, Clock, Outcome, RedactionSeam, Reservation,
    StageRecord, Taint, Usage,
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
    async fn write(&self, event: &AuditEvent) -> Result<(), String> {
        let line = self.seam.record(event)?;
        match tokio::time::timeout(self.timeout, self.audit.append(&line)).await {
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
    record: Option<CallRecord>,
    pub(crate) stages: Vec<StageRecord>,
    reservation: Option<(Arc<dyn Limit>, Reservation)>,
    /// The call was handed to the executor: it may have run.
    executing: bool,
    writer: Writer,
}

impl OutcomeGuard {
    pub(crate) fn new(record: CallRecord, writer: Writer) -> Self {
        Self {
            record: Some(record),
            stages: Vec::with_capacity(palisade_core::Stage::ORDER.len()),
            reservation: None,
            executing: false,
            writer,
        }
    }

    /// The arguments changed (a rewrite): the records name the ones that run.
    pub(crate) fn set_digest(&mut self, digest: ArgumentDigest) {
        if let Some(record) = &mut self.record {
            record.arguments_sha256 = digest;
        }
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
    pub(crate) async fn write_intent(&self) -> Result<(), String> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        let intent = CallRecord {
            time: crate::run::rfc3339(self.writer.clock.wall()),
            stages: self.stages.clone(),
            ..record.clone()
        };
        self.writer.write(&AuditEvent::CallIntent(intent)).await
    }

    /// Writes the outcome line, then disarms the guard. Dropped during the
    /// write, the guard writes this outcome again rather than lose it.
    pub(crate) async fn write_outcome(
        &mut self,
        outcome: Outcome,
        latency_micros: u64,
        taint: Option<Taint>,
    ) -> Result<(), String> {
        let Some(record) = &mut self.record else {
            return Ok(());
        };
        record.time = crate::run::rfc3339(self.writer.clock.wall());
        record.stages = crate::run::complete(std::mem::take(&mut self.stages));
        record.outcome = Some(outcome);
        record.latency_micros = Some(latency_micros);
        record.taint = taint;
        let event = AuditEvent::CallOutcome(record.clone());
        let written = self.writer.write(&event).await;
        self.record = None;
        written
    }
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        let record = self.record.take().map(|mut record| {
            if record.outcome.is_none() {
                record.time = crate::run::rfc3339(self.writer.clock.wall());
                record.stages = crate::run::complete(std::mem::take(&mut self.stages));
                record.outcome = Some(Outcome::Abandoned);
            }
            record
        });
        let reservation = self.reservation.take();
        if record.is_none() && reservation.is_none() {
            return;
        }
        let (writer, executing) = (self.writer.clone(), self.executing);
        let finish = async move {
            if let Some((limits, reservation)) = reservation {
                // A call that reached the executor may have run: charge it.
                let settled = if executing {
                    let usage = Usage {
                        elapsed: Duration::ZERO,
                        cost_micros: None,
                    };
                    limits.settle(reservation, usage).await
                } else {
                    limits.release(reservation).await
                };
                if let Err(e) = settled {
                    tracing::error!("cannot settle a dropped call's reservation: {e}");
                }
            }
            if let Some(record) = record {
                let call = record.call;
                if let Err(e) = writer.write(&AuditEvent::CallOutcome(record)).await {
                    tracing::error!(%call, "cannot record a dropped call: {e}");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.writer.tasks.track_future(finish));
            }
            Err(_) => tracing::error!("a call was dropped with no runtime left to record it"),
        }
    }
}
