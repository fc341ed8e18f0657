//! The gateway's egress: one `palisade_egress::Egress` for the environment, whose records become audit events.

use std::sync::{Arc, OnceLock, Weak};

use futures_util::future::BoxFuture;
use palisade_core::AuditEvent;
use palisade_egress::{Egress, Outcome, Record, Recorder};

use crate::config::Config;
use crate::gateway::Gateway;

/// Writes each egress record to the audit log, through the gateway's
/// pipeline (redacted, stamped like every other record). A refusal is a
/// finding for the alert rule its code names.
#[derive(Debug, Default)]
pub struct AuditRecorder {
    gateway: OnceLock<Weak<Gateway>>,
}

impl AuditRecorder {
    /// Where records go from now on (the gateway is built after its egress).
    pub fn attach(&self, gateway: &Arc<Gateway>) {
        let _ = self.gateway.set(Arc::downgrade(gateway));
    }
}

impl Recorder for AuditRecorder {
    fn record(&self, record: Record) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(gateway) = self.gateway.get().and_then(Weak::upgrade) else {
                tracing::warn!("egress {record}: no audit log to record it in");
                return;
            };
            let event = event(&gateway, &record);
            if let Err(failure) = gateway.pipeline.record(&event).await {
                tracing::error!("egress {record}: {failure}");
            }
        })
    }
}

fn event(gateway: &Gateway, record: &Record) -> AuditEvent<'static> {
    let mut connection = serde_json::to_value(record).unwrap_or_default();
    if let (Outcome::Refused(refusal), Some(object)) = (&record.outcome, connection.as_object_mut())
    {
        tracing::warn!("egress refused {record}: {}", refusal.detail);
        if let Some(alert) = refusal.code.alert() {
            object.insert(
                "finding".into(),
                serde_json::json!({
                    "code": format!("egress.{}", serde_json::to_value(refusal.code).unwrap_or_default().as_str().unwrap_or("refused")),
                    "severity": "critical",
                    "alert": alert,
                }),
            );
        }
    }
    AuditEvent::Egress {
        time: gateway.pipeline.now(),
        connection,
    }
}

/// The environment's egress, from `[egress]` and the destinations the
/// config names elsewhere.
pub fn start(config: &Config) -> Result<(Arc<Egress>, Arc<AuditRecorder>), String> {
    let recorder = Arc::new(AuditRecorder::default());
    let egress = Egress::new(&config.egress, Arc::clone(&recorder) as Arc<dyn Recorder>)
        .map_err(|e| e.to_string())?;
    Ok((egress, recorder))
}
