//! Layer 6's alerts in the gateway: records each alert the rules raise, and posts alerts (layer 5's too) to the webhook.

use std::sync::Arc;
use std::time::Duration;

use palisade_audit::alerts::{AlertSink, Fired};
use palisade_core::AuditEvent;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// Alerts waiting to be recorded; beyond this they are dropped with a
/// warning (the rules fold a storm into one alert first, so only many
/// principals at once fill it).
const QUEUE: usize = 1024;
/// How long a webhook post may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The queue between the rules (which run as records are appended) and
/// the task that records what they raise.
#[derive(Debug)]
pub struct AlertsLayer {
    receiver: std::sync::Mutex<Option<mpsc::Receiver<Fired>>>,
    stop: CancellationToken,
}

impl AlertsLayer {
    pub fn new() -> (Self, AlertSink) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let sink: AlertSink = Arc::new(move |fired: Fired| {
            if sender.try_send(fired).is_err() {
                tracing::warn!("alerts: the queue is full; an alert was dropped");
            }
        });
        let layer = Self {
            receiver: std::sync::Mutex::new(Some(receiver)),
            stop: CancellationToken::new(),
        };
        (layer, sink)
    }

    /// Records alerts as they come, until [`AlertsLayer::stop`].
    pub fn run(&self, gateway: &Arc<Gateway>) {
        let receiver = self
            .receiver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut receiver) = receiver else { return };
        let (stop, weak) = (self.stop.clone(), Arc::downgrade(gateway));
        gateway.spawn(async move {
            loop {
                let fired = tokio::select! {
                    () = stop.cancelled() => break,
                    fired = receiver.recv() => fired,
                };
                let (Some(fired), Some(gateway)) = (fired, weak.upgrade()) else {
                    break;
                };
                record(&gateway, &fired).await;
            }
            while let (Ok(fired), Some(gateway)) = (receiver.try_recv(), weak.upgrade()) {
                record(&gateway, &fired).await;
            }
        });
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

async fn record(gateway: &Gateway, fired: &Fired) {
    tracing::warn!(
        rule = %fired.rule,
        severity = ?fired.severity,
        principal = %fired.principal,
        "alert: {}",
        fired.message
    );
    let alert = serde_json::to_value(fired).unwrap_or_default();
    let event = AuditEvent::Alert {
        time: gateway.pipeline.now(),
        alert: alert.clone(),
    };
    if let Err(failure) = gateway.pipeline.record(&event).await {
        tracing::error!("cannot record an alert: {failure}");
    }
    notify(gateway, "alert", alert).await;
}

/// Posts an alert to `[alerts] webhook`, if one is set: one try, through
/// the egress client (so the webhook's host must be allowed), the body
/// through the redaction seam. A webhook that fails is logged.
pub async fn notify(gateway: &Gateway, event: &str, alert: Value) {
    let Some(url) = &gateway.config.alerts.webhook else {
        return;
    };
    let body = json!({ "event": event, "time": gateway.pipeline.now(), "alert": alert });
    let body = gateway.seam().apply(body).into_inner();
    let sent = gateway
        .http()
        .post(url)
        .timeout(WEBHOOK_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    if let Err(e) = sent {
        tracing::error!("alerts: the webhook did not take the alert: {e}");
    }
}
