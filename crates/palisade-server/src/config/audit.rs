//! `[audit]`: which records wait for the disk, how often the log is checkpointed, and where a copy of each checkpoint goes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::read::{Fields, Secret};
use super::validate::Validator;
use super::{ConfigError, as_humantime};

/// `[audit]` as written.
#[derive(Debug, Default)]
pub(super) struct RawAudit {
    on_failure: Option<String>,
    postgres: Option<String>,
    node: Option<String>,
    sync: Option<String>,
    checkpoint_interval: Option<String>,
    checkpoint_entries: Option<usize>,
    checkpoint_copy: Option<PathBuf>,
    sinks: Vec<(String, RawSink)>,
}

/// `[audit.sinks.NAME]` as written.
#[derive(Debug, Default)]
struct RawSink {
    kind: Option<String>,
    format: Option<String>,
    url: Option<String>,
    address: Option<String>,
    token: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    tls_ca: Option<PathBuf>,
    server_name: Option<String>,
}

impl RawAudit {
    pub(super) fn read(mut f: Fields<'_, '_>) -> Result<Self, ConfigError> {
        let raw = RawAudit {
            on_failure: f.string("on_failure")?,
            postgres: f.secret_string("postgres")?,
            node: f.string("node")?,
            sync: f.string("sync")?,
            checkpoint_interval: f.duration("checkpoint_interval")?,
            checkpoint_entries: f.whole("checkpoint_entries")?,
            checkpoint_copy: f.path("checkpoint_copy")?,
            sinks: f
                .named_tables("sinks")?
                .into_iter()
                .map(|(name, mut t)| {
                    let sink = RawSink {
                        kind: t.string("kind")?,
                        format: t.string("format")?,
                        url: t.string("url")?,
                        address: t.string("address")?,
                        token: t.secret_string("token")?,
                        headers: t.string_table("headers", Secret::Hidden)?,
                        tls_ca: t.path("tls_ca")?,
                        server_name: t.string("server_name")?,
                    };
                    t.finish()?;
                    Ok((name, sink))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        f.finish()?;
        Ok(raw)
    }
}

/// The audit log's settings.
#[derive(Debug, Clone, Serialize)]
pub struct AuditConfig {
    /// What happens to an action whose record cannot be written: `refuse`
    /// (the default) or `continue`.
    #[serde(serialize_with = "on_failure_name")]
    pub on_failure: palisade_audit::alerts::OnFailure,
    /// A `postgres://` URL: the log goes to PostgreSQL instead of the data
    /// directory. Printed masked by `palisade check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// The node whose chain this gateway writes there (the host's name by
    /// default); each gateway needs its own.
    pub node: String,
    /// Which records wait for `fdatasync` before they count as written:
    /// `intents`, `all` or `background`.
    #[serde(serialize_with = "sync_name")]
    pub sync: palisade_audit::SyncMode,
    /// A signed checkpoint at least this often (an empty one when idle).
    #[serde(serialize_with = "as_humantime")]
    pub checkpoint_interval: Duration,
    /// … and after at most about this many entries.
    pub checkpoint_entries: usize,
    /// A file every checkpoint is also appended to, kept where the
    /// gateway's data directory is not (so rewriting the log's tail shows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_copy: Option<PathBuf>,
    /// SIEM sinks that follow the log, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// One `[audit.sinks.NAME]`.
#[derive(Debug, Clone, Serialize)]
pub struct SinkConfig {
    /// `syslog`, `splunk-hec`, `otlp` or `webhook`.
    pub kind: String,
    /// `palisade` (its own records) or `ocsf`.
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// syslog: `host:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// splunk-hec: the HEC token. Printed masked.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "masked")]
    pub token: Option<String>,
    /// otlp and webhook: request headers. Values printed masked.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "masked_values"
    )]
    pub headers: BTreeMap<String, String>,
    /// syslog over TLS: the CA file the receiver's certificate must chain to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

fn masked<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str(super::MASKED),
        None => s.serialize_none(),
    }
}

fn masked_values<S: serde::Serializer>(
    headers: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(headers.len()))?;
    for name in headers.keys() {
        map.serialize_entry(name, super::MASKED)?;
    }
    map.end()
}

impl SinkConfig {
    fn sink(&self, name: &str) -> palisade_audit::sinks::Sink {
        use palisade_audit::sinks::{Kind, Sink, Tls};
        let headers = || {
            self.headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let url = self.url.clone().unwrap_or_default();
        let kind = match self.kind.as_str() {
            "syslog" => Kind::Syslog {
                address: self.address.clone().unwrap_or_default(),
                tls: self.tls_ca.clone().map(|ca| Tls {
                    ca,
                    server_name: self.server_name.clone(),
                }),
            },
            "splunk-hec" => Kind::SplunkHec {
                url,
                token: self.token.clone().unwrap_or_default(),
            },
            "otlp" => Kind::Otlp {
                url,
                headers: headers(),
            },
            _ => Kind::Webhook {
                url,
                headers: headers(),
            },
        };
        Sink {
            name: name.to_owned(),
            kind,
            format: if self.format == "ocsf" {
                palisade_audit::sinks::Format::Ocsf
            } else {
                palisade_audit::sinks::Format::Palisade
            },
        }
    }
}

/// `sync`'s names.
const SYNC_MODES: [(&str, palisade_audit::SyncMode); 3] = [
    ("intents", palisade_audit::SyncMode::Intents),
    ("all", palisade_audit::SyncMode::All),
    ("background", palisade_audit::SyncMode::Background),
];

fn on_failure_name<S: serde::Serializer>(
    mode: &palisade_audit::alerts::OnFailure,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(match mode {
        palisade_audit::alerts::OnFailure::Refuse => "refuse",
        palisade_audit::alerts::OnFailure::Continue => "continue",
    })
}

fn sync_name<S: serde::Serializer>(
    mode: &palisade_audit::SyncMode,
    s: S,
) -> Result<S::Ok, S::Error> {
    let name = SYNC_MODES
        .iter()
        .find(|(_, m)| m == mode)
        .map_or("intents", |(n, _)| *n);
    s.serialize_str(name)
}

/// This machine's host name, the default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "palisade".to_owned())
}

impl AuditConfig {
    /// The SIEM sinks, ready to start.
    pub fn sinks(&self) -> Vec<palisade_audit::sinks::Sink> {
        self.sinks
            .iter()
            .map(|(name, sink)| sink.sink(name))
            .collect()
    }

    /// Where the PostgreSQL log is, when there is one.
    pub fn postgres_target(&self) -> Option<palisade_audit::postgres::Target> {
        self.postgres
            .as_ref()
            .map(|url| palisade_audit::postgres::Target {
                url: url.clone(),
                node: self.node.clone(),
            })
    }

    pub fn settings(&self) -> palisade_audit::Settings {
        palisade_audit::Settings {
            sync: self.sync,
            checkpoint_interval: self.checkpoint_interval,
            checkpoint_entries: self.checkpoint_entries,
            copy: self.checkpoint_copy.clone(),
        }
    }
}

impl Validator<'_> {
    pub(super) fn audit(&self, raw: Option<RawAudit>) -> Result<AuditConfig, ConfigError> {
        let raw = raw.unwrap_or_default();
        let defaults = palisade_audit::Settings::default();
        let checkpoint_entries = match raw.checkpoint_entries {
            None => defaults.checkpoint_entries,
            Some(0) => return Err(self.err("audit.checkpoint_entries", "must be at least 1")),
            Some(n) if n > 1 << 20 => {
                return Err(self.err(
                    "audit.checkpoint_entries",
                    "must be at most 1048576 (a checkpoint's entries are held in memory until it is signed)",
                ));
            }
            Some(n) => n,
        };
        let sync = match raw.sync.as_deref() {
            None => defaults.sync,
            Some(name) => SYNC_MODES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, mode)| *mode)
                .ok_or_else(|| {
                    self.err(
                        "audit.sync",
                        format!("`{name}`: expected \"intents\", \"all\" or \"background\""),
                    )
                })?,
        };
        let node = match raw.node {
            Some(node) => node,
            None => host_name(),
        };
        if node.is_empty() || node.len() > 128 || node.chars().any(char::is_control) {
            return Err(self.err(
                "audit.node",
                "must be 1 to 128 characters, none of them control characters",
            ));
        }
        if let Some(url) = &raw.postgres {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(self.err(
                    "audit.postgres",
                    "must be a postgres:// or postgresql:// URL",
                ));
            }
            palisade_audit::postgres::parse_url(url).map_err(|e| self.err("audit.postgres", e))?;
        }
        let mut sinks = BTreeMap::new();
        for (name, sink) in raw.sinks {
            let sink = self.sink(&name, sink)?;
            sinks.insert(name, sink);
        }
        let on_failure = match raw.on_failure.as_deref() {
            None | Some("refuse") => palisade_audit::alerts::OnFailure::Refuse,
            Some("continue") => palisade_audit::alerts::OnFailure::Continue,
            Some(other) => {
                return Err(self.err(
                    "audit.on_failure",
                    format!("`{other}`: expected \"refuse\" or \"continue\""),
                ));
            }
        };
        Ok(AuditConfig {
            on_failure,
            sinks,
            postgres: raw.postgres,
            node,
            sync,
            checkpoint_interval: self.duration(
                "audit.checkpoint_interval",
                raw.checkpoint_interval.as_deref(),
                defaults.checkpoint_interval,
            )?,
            checkpoint_entries,
            checkpoint_copy: raw.checkpoint_copy.map(|p| self.relative(p)),
        })
    }
}

impl Validator<'_> {
    fn sink(&self, name: &str, raw: RawSink) -> Result<SinkConfig, ConfigError> {
        let at = |k: &str| format!("audit.sinks.{name}.{k}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.err(
                format!("audit.sinks.{name}"),
                "a sink's name is 1 to 64 letters, digits, `-` or `_` (it names the sink's cursor file)",
            ));
        }
        let kind = raw.kind.ok_or_else(|| {
            self.err(
                at("kind"),
                "missing: \"syslog\", \"splunk-hec\", \"otlp\" or \"webhook\"",
            )
        })?;
        let refuse = |key: &str, present: bool| -> Result<(), ConfigError> {
            if present {
                return Err(self.err(at(key), format!("does not apply to a `{kind}` sink")));
            }
            Ok(())
        };
        match kind.as_str() {
            "syslog" => {
                let Some(address) = &raw.address else {
                    return Err(self.err(at("address"), "missing: the receiver's `host:port`"));
                };
                let port = address.rsplit_once(':').and_then(|(h, p)| {
                    (!h.is_empty()).then_some(())?;
                    p.parse::<u16>().ok().filter(|p| *p > 0)
                });
                if port.is_none() {
                    return Err(
                        self.err(at("address"), format!("`{address}`: expected `host:port`"))
                    );
                }
                refuse("url", raw.url.is_some())?;
                refuse("token", raw.token.is_some())?;
                refuse("headers", raw.headers.is_some())?;
                refuse(
                    "server_name",
                    raw.server_name.is_some() && raw.tls_ca.is_none(),
                )?;
            }
            "splunk-hec" | "otlp" | "webhook" => {
                let Some(url) = &raw.url else {
                    return Err(self.err(at("url"), "missing: the receiver's URL"));
                };
                self.sink_url(&at("url"), url)?;
                if kind == "splunk-hec" && raw.token.is_none() {
                    return Err(self.err(at("token"), "missing: the HEC token"));
                }
                refuse("token", kind != "splunk-hec" && raw.token.is_some())?;
                refuse("headers", kind == "splunk-hec" && raw.headers.is_some())?;
                refuse("address", raw.address.is_some())?;
                refuse("tls_ca", raw.tls_ca.is_some())?;
                refuse("server_name", raw.server_name.is_some())?;
            }
            other => {
                return Err(self.err(
                    at("kind"),
                    format!(
                        "`{other}`: expected \"syslog\", \"splunk-hec\", \"otlp\" or \"webhook\""
                    ),
                ));
            }
        }
        let format = raw.format.unwrap_or_else(|| "palisade".into());
        if !matches!(format.as_str(), "palisade" | "ocsf") {
            return Err(self.err(
                at("format"),
                format!("`{format}`: expected \"palisade\" or \"ocsf\""),
            ));
        }
        Ok(SinkConfig {
            kind,
            format,
            url: raw.url,
            address: raw.address,
            token: raw.token,
            headers: raw.headers.unwrap_or_default(),
            tls_ca: raw.tls_ca.map(|p| self.relative(p)),
            server_name: raw.server_name,
        })
    }

    /// `https://`, or `http://` to a loopback address only: audit records
    /// do not cross a network in the clear.
    fn sink_url(&self, key: &str, url: &str) -> Result<(), ConfigError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| self.err(key, format!("`{url}`: {e}")))?;
        let loopback = match parsed.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        };
        match parsed.scheme() {
            "https" => Ok(()),
            "http" if loopback => Ok(()),
            "http" => Err(self.err(
                key,
                format!(
                    "`{url}`: plain http only to a loopback address; audit records go over https"
                ),
            )),
            other => Err(self.err(key, format!("`{url}`: expected https:// (not {other}://)"))),
        }
    }
}
