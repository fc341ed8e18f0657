//! Layer 5 in the gateway: opens the configured counter store, keeps the embedded one persisted, and turns alerts into audit records.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::{AuditEvent, Clock};
use palisade_limits::backend::Backend;
use palisade_limits::local::LocalBackend;
use palisade_limits::{Alert, Limits};
use palisade_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LimitsStore};
use crate::gateway::Gateway;

/// How often the embedded counters are written to the state store.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Alerts waiting to be recorded; beyond this they are counted and dropped
/// (they are de-duplicated per counter first, so only a storm fills it).
const ALERT_QUEUE: usize = 1024;

/// The limits stage and what keeps it running.
#[derive(Debug)]
pub struct LimitsLayer {
    pub limits: Arc<Limits>,
    local: Option<Arc<LocalBackend>>,
    alerts: std::sync::Mutex<Option<mpsc::Receiver<Alert>>>,
    stop: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("cannot read the limit counters from the state store: {0}")]
    Load(String),
    #[error("cannot connect to the limits Redis at {url}: {detail}")]
    Redis { url: String, detail: String },
}

/// Opens the counter store `[limits]` names: the embedded one, loaded from
/// the state store, or Redis. Redis not answering at start is not fatal:
/// each limit then fails as configured, and health says so.
pub async fn start(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Result<LimitsLayer, LimitsError> {
    let settings = config.limits.settings.clone();
    let (local, backend): (Option<Arc<LocalBackend>>, Arc<dyn Backend>) = match &config.limits.store
    {
        LimitsStore::Embedded => {
            let local = Arc::new(LocalBackend::new());
            let now = clock
                .wall()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            let loaded = local
                .load(&**store, now)
                .await
                .map_err(|e| LimitsError::Load(e.to_string()))?;
            if loaded > 0 {
                tracing::info!(counters = loaded, "limits: restored the counters in force");
            }
            (Some(Arc::clone(&local)), local)
        }
        LimitsStore::Redis { url } => {
            let redis = palisade_limits::redis::RedisBackend::connect(url).map_err(|e| {
                LimitsError::Redis {
                    url: palisade_limits::redis::masked(url),
                    detail: e.to_string(),
                }
            })?;
            (None, Arc::new(redis))
        }
    };
    let (sender, receiver) = mpsc::channel(ALERT_QUEUE);
    let sink: palisade_limits::AlertSink = Arc::new(move |alert: Alert| {
        if sender.try_send(alert).is_err() {
            tracing::warn!("limits: the alert queue is full; an alert was dropped");
        }
    });
    let limits = Arc::new(Limits::new(settings, backend, clock).with_alerts(sink));
    Ok(LimitsLayer {
        limits,
        local,
        alerts: std::sync::Mutex::new(Some(receiver)),
        stop: CancellationToken::new(),
    })
}

impl LimitsLayer {
    /// The work that runs beside the gateway until [`LimitsLayer::stop`]:
    /// alerts recorded as they come, embedded counters flushed.
    pub fn run(self: &Arc<Self>, gateway: &Arc<Gateway>) {
        let receiver = self
            .alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut receiver) = receiver {
            let (stop, weak) = (self.stop.clone(), Arc::downgrade(gateway));
            gateway.spawn(async move {
                loop {
                    let alert = tokio::select! {
                        () = stop.cancelled() => break,
                        alert = receiver.recv() => alert,
                    };
                    let (Some(alert), Some(gateway)) = (alert, weak.upgrade()) else {
                        break;
                    };
                    record(&gateway, &alert).await;
                }
                // What came before the stop is still recorded.
                while let (Ok(alert), Some(gateway)) = (receiver.try_recv(), weak.upgrade()) {
                    record(&gateway, &alert).await;
                }
            });
        }
        if self.local.is_some() {
            let (layer, store) = (Arc::clone(self), Arc::clone(&gateway.store));
            gateway.spawn(async move {
                loop {
                    tokio::select! {
                        () = layer.stop.cancelled() => break,
                        () = tokio::time::sleep(FLUSH_EVERY) => {}
                    }
                    layer.flush(&*store).await;
                }
                layer.flush(&*store).await;
            });
        }
    }

    /// Writes the embedded counters now.
    pub async fn flush(&self, store: &dyn Store) {
        if let Some(local) = &self.local
            && let Err(e) = local.flush(store).await
        {
            tracing::warn!("limits: cannot persist the counters (tried again shortly): {e}");
        }
    }

    /// Ends the work [`LimitsLayer::run`] started, after a last flush.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

async fn record(gateway: &Gateway, alert: &Alert) {
    tracing::warn!(
        kind = ?alert.kind,
        limit = %alert.limit,
        principal = %alert.principal,
        "limits: {}",
        alert.message
    );
    let event = AuditEvent::LimitAlert {
        time: gateway.pipeline.now(),
        alert: serde_json::to_value(alert).unwrap_or_default(),
    };
    if let Err(failure) = gateway.pipeline.record(&event).await {
        tracing::error!("cannot record a limits alert: {failure}");
    }
    let value = serde_json::to_value(alert).unwrap_or_default();
    crate::alerts::notify(gateway, "limit-alert", value).await;
}
