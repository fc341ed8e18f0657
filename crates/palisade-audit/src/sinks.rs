//! Streaming the audit log to SIEMs: each sink follows the log (its files, or its node's rows on PostgreSQL) from a cursor of its own, at least once, with each entry's sequence number for de-duplication.
//!
//! The log is the durable spool: a sink never holds records the log does
//! not, and a call never waits for a sink. Each sink runs on a thread of its
//! own: it reads whole lines after its cursor (entries from `audit.jsonl`,
//! checkpoints from `audit.checkpoints.jsonl`, so the checkpoints also live
//! outside the data directory), sends them in batches, and moves its cursor
//! (`audit.sinks/NAME.json`, replaced atomically) only after the receiver
//! accepted a batch. A receiver that is down is retried with backoff from
//! the same cursor; when it returns, it gets everything since. A crash
//! between a send and the cursor's move sends that batch again: receivers
//! de-duplicate by `seq` (entries) and `checkpoint` (checkpoints).
//!
//! On PostgreSQL a sink reads the node's rows after its cursor's numbers
//! instead (the gateway's role may read them), so each gateway streams its
//! own node's chain.
//!
//! Several processes sharing a data directory stream each sink once: the
//! process holding the `flock` on the sink's cursor file streams it, the
//! others wait for it.
//!
//! Formats: syslog (RFC 5424 over TCP or TLS, octet-counted framing as in
//! RFC 6587 §3.4.1, one JSON event per message), Splunk HEC (`/services/
//! collector/event`, one JSON object per event), OTLP logs over HTTP (the
//! JSON encoding of `ExportLogsServiceRequest`), and a webhook (a JSON
//! array of events per POST).

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

use crate::log::Paths;
use crate::postgres::{Rows, Target};

/// Lines sent in one batch at most.
const BATCH: usize = 500;

/// How often a sink at the end of the log looks again.
const POLL: Duration = Duration::from_millis(200);

/// Backoff between attempts while a receiver is down.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long one delivery may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// One configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    /// Its name in the config (`[audit.sinks.NAME]`), which names its cursor.
    pub name: String,
    pub kind: Kind,
    pub format: Format,
}

/// How events are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// palisade's own records, each with its `seq` (or `checkpoint`) added.
    #[default]
    Palisade,
    /// OCSF 1.3 events ([`crate::ocsf`]).
    Ocsf,
}

/// Where a sink delivers, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// RFC 5424 over TCP (`address` is `host:port`), or over TLS (RFC
    /// 5425) when `tls` is set, the receiver's certificate checked against
    /// the CA file it names.
    Syslog { address: String, tls: Option<Tls> },
    /// Splunk's HTTP Event Collector: `url` is the `/services/collector/event` endpoint.
    SplunkHec { url: String, token: String },
    /// OTLP logs over HTTP/JSON: `url` is the `/v1/logs` endpoint.
    Otlp {
        url: String,
        headers: Vec<(String, String)>,
    },
    /// Any HTTP endpoint taking a JSON array of events.
    Webhook {
        url: String,
        headers: Vec<(String, String)>,
    },
}

/// TLS toward a syslog receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM file of the CA(s) the receiver's certificate must chain to.
    pub ca: PathBuf,
    /// The name its certificate must carry (default: the address's host).
    pub server_name: Option<String>,
}

/// A sink's progress: the next entry and checkpoint to send, and where they
/// start in the files (unused on PostgreSQL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    entries_offset: u64,
    next_seq: u64,
    checkpoints_offset: u64,
    next_checkpoint: u64,
    /// The PostgreSQL node whose chain it follows; none for the files. A
    /// cursor of another chain starts again from its beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    postgres: Option<String>,
}

/// The running sinks; dropping it (or [`Streams::stop`]) stops them.
#[derive(Debug)]
pub struct Streams {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Streams {
    /// Starts one thread per sink, following the log in `paths`, or node
    /// `postgres.node`'s chain on PostgreSQL; `node` names the host in
    /// every event. Cursors are kept in `paths`' directory either way.
    pub fn start(
        paths: &Paths,
        postgres: Option<&Target>,
        sinks: &[Sink],
        node: &str,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let state = paths
            .entries
            .parent()
            .map_or_else(|| PathBuf::from("audit.sinks"), |d| d.join("audit.sinks"));
        std::fs::create_dir_all(&state)?;
        let mut threads = Vec::new();
        for sink in sinks {
            let follower = Follower {
                sink: sink.clone(),
                entries: paths.entries.clone(),
                checkpoints: paths.checkpoints.clone(),
                postgres: postgres.cloned(),
                cursor_path: state.join(format!("{}.json", sink.name)),
                node: node.to_owned(),
                stop: Arc::clone(&stop),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("palisade-sink-{}", sink.name))
                    .spawn(move || follower.run())?,
            );
        }
        Ok(Self { stop, threads })
    }

    /// Stops every sink after its current attempt; what it has not sent
    /// it sends after the next start.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One event to deliver: an entry (`seq`) or a checkpoint (`checkpoint`).
struct Event {
    /// The record (an entry's) or the checkpoint, as JSON.
    body: Map<String, Value>,
    /// What a receiver de-duplicates by: `seq` N or `checkpoint` N.
    key: (&'static str, u64),
    time: SystemTime,
    name: String,
    severity: Severity,
}

#[derive(Debug, Clone, Copy)]
enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    fn of(body: &Map<String, Value>) -> Self {
        match body.get("severity").and_then(Value::as_str) {
            Some("critical") => Severity::Critical,
            Some("high") => Severity::Error,
            Some("medium") => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// RFC 5424's severity number.
    fn syslog(self) -> u8 {
        match self {
            Severity::Critical => 2,
            Severity::Error => 3,
            Severity::Warning => 4,
            Severity::Info => 6,
        }
    }

    /// OTLP's SeverityNumber and text.
    fn otlp(self) -> (u8, &'static str) {
        match self {
            Severity::Critical => (21, "FATAL"),
            Severity::Error => (17, "ERROR"),
            Severity::Warning => (13, "WARN"),
            Severity::Info => (9, "INFO"),
        }
    }
}

impl Event {
    /// The event as receivers see it: the record's fields and the key,
    /// or the record as an OCSF event.
    fn json(&self, format: Format) -> Value {
        match format {
            Format::Palisade => {
                let mut body = self.body.clone();
                body.insert(self.key.0.to_owned(), json!(self.key.1));
                Value::Object(body)
            }
            Format::Ocsf => {
                let millis = self
                    .time
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                crate::ocsf::shape(&self.body, self.key, millis)
            }
        }
    }
}

/// Parses an entry line into its event.
fn entry_event(line: &[u8]) -> Option<Event> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let seq = value.get("seq")?.as_u64()?;
    let body = value.get("record")?.as_object()?.clone();
    let time = body
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .unwrap_or_else(SystemTime::now);
    Some(Event {
        name: body
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("record")
            .to_owned(),
        severity: Severity::of(&body),
        body,
        key: ("seq", seq),
        time,
    })
}

/// Parses a checkpoint line into its event.
fn checkpoint_event(line: &[u8]) -> Option<Event> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let n = value.get("n")?.as_u64()?;
    let mut body = Map::new();
    body.insert("event".into(), json!("audit-checkpoint"));
    body.insert("line".into(), json!(String::from_utf8_lossy(line)));
    let time = value
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .unwrap_or_else(SystemTime::now);
    Some(Event {
        body,
        key: ("checkpoint", n),
        time,
        name: "audit-checkpoint".into(),
        severity: Severity::Info,
    })
}

/// One sink's thread.
struct Follower {
    sink: Sink,
    entries: PathBuf,
    checkpoints: PathBuf,
    /// Where the log is instead of the files.
    postgres: Option<Target>,
    cursor_path: PathBuf,
    node: String,
    stop: Arc<AtomicBool>,
}

impl Follower {
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(sink = %self.sink.name, "audit sink not started: {e}");
                return;
            }
        };
        runtime.block_on(self.follow());
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d`, waking early when stopped; `false` once stopped.
    async fn pause(&self, d: Duration) -> bool {
        let end = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < end {
            if self.stopped() {
                return false;
            }
            tokio::time::sleep(POLL.min(end - tokio::time::Instant::now())).await;
        }
        !self.stopped()
    }

    async fn follow(&self) {
        // The cursor file's lock: one process streams this sink.
        let lock = match std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(self.cursor_path.with_extension("lock"))
        {
            Ok(lock) => lock,
            Err(e) => {
                tracing::error!(sink = %self.sink.name, "audit sink not started: cannot open its lock: {e}");
                return;
            }
        };
        while lock.try_lock().is_err() {
            if !self.pause(Duration::from_secs(2)).await {
                return;
            }
        }
        let mut cursor = self.load();
        let mut rows = match self.postgres.as_ref().map(Rows::new).transpose() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(sink = %self.sink.name, "audit sink not started: {e}");
                return;
            }
        };
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .ok();
        let mut retry = RETRY_FIRST;
        let mut down_since: Option<String> = None;
        let mut syslog: Option<Syslog> = None;
        // syslog has no acknowledgement: a batch written to a connection
        // that then breaks may be lost in the kernel's buffers. After a
        // break the batch before the failed one is sent again too.
        let mut before_last: Option<Cursor> = None;
        while !self.stopped() {
            let (events, next) = match self.read(&cursor, rows.as_mut()).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(sink = %self.sink.name, "audit sink cannot read the log: {e}");
                    if !self.pause(RETRY_MAX).await {
                        return;
                    }
                    continue;
                }
            };
            if events.is_empty() {
                if next != cursor {
                    cursor = next;
                    self.save(&cursor);
                }
                if !self.pause(POLL).await {
                    return;
                }
                continue;
            }
            match self.deliver(&events, http.as_ref(), &mut syslog).await {
                Ok(()) => {
                    if let Some(why) = down_since.take() {
                        tracing::warn!(sink = %self.sink.name, "audit sink delivering again (it failed: {why})");
                    }
                    before_last = Some(std::mem::replace(&mut cursor, next));
                    self.save(&cursor);
                    retry = RETRY_FIRST;
                }
                Err(why) => {
                    if syslog.take().is_some()
                        && let Some(earlier) = before_last.take()
                    {
                        cursor = earlier;
                    }
                    if down_since.is_none() {
                        tracing::warn!(sink = %self.sink.name, "audit sink cannot deliver, retrying from entry {}: {why}", cursor.next_seq);
                    }
                    down_since = Some(why);
                    if !self.pause(retry).await {
                        return;
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn load(&self) -> Cursor {
        let chain = self.postgres.as_ref().map(|t| t.node.clone());
        std::fs::read(&self.cursor_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok())
            .filter(|cursor| cursor.postgres == chain)
            .unwrap_or(Cursor {
                postgres: chain,
                ..Cursor::default()
            })
    }

    fn save(&self, cursor: &Cursor) {
        let tmp = self.cursor_path.with_extension("json.tmp");
        let written = serde_json::to_vec(cursor)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.cursor_path));
        if let Err(e) = written {
            tracing::error!(sink = %self.sink.name, "audit sink cannot save its cursor: {e}");
        }
    }

    /// The next batch: checkpoints first (few, and what makes a cut tail
    /// visible elsewhere), then entries; and the cursor after it. From the
    /// files, or from `rows` when the log is on PostgreSQL.
    async fn read(
        &self,
        cursor: &Cursor,
        mut rows: Option<&mut Rows>,
    ) -> Result<(Vec<Event>, Cursor), String> {
        let mut next = cursor.clone();
        let mut events = Vec::new();
        let lines = match rows.as_deref_mut() {
            Some(rows) => rows.after(true, cursor.next_checkpoint, BATCH).await?,
            None => {
                let (lines, offset) =
                    whole_lines(&self.checkpoints, cursor.checkpoints_offset, BATCH)
                        .map_err(|e| format!("`{}`: {e}", self.checkpoints.display()))?;
                next.checkpoints_offset = offset;
                lines
            }
        };
        for line in &lines {
            if let Some(event) = checkpoint_event(line)
                && event.key.1 >= cursor.next_checkpoint
            {
                next.next_checkpoint = event.key.1 + 1;
                events.push(event);
            }
        }
        let room = BATCH.saturating_sub(events.len()).max(1);
        let lines = match rows {
            Some(rows) => rows.after(false, cursor.next_seq, room).await?,
            None => {
                let (lines, offset) = whole_lines(&self.entries, cursor.entries_offset, room)
                    .map_err(|e| format!("`{}`: {e}", self.entries.display()))?;
                next.entries_offset = offset;
                lines
            }
        };
        for line in &lines {
            if let Some(event) = entry_event(line)
                && event.key.1 >= cursor.next_seq
            {
                next.next_seq = event.key.1 + 1;
                events.push(event);
            }
        }
        Ok((events, next))
    }

    async fn deliver(
        &self,
        events: &[Event],
        http: Option<&reqwest::Client>,
        syslog: &mut Option<Syslog>,
    ) -> Result<(), String> {
        match &self.sink.kind {
            Kind::Syslog { address, tls } => {
                if syslog.is_none() {
                    *syslog = Some(Syslog::connect(address, tls.as_ref()).await?);
                }
                let Some(conn) = syslog.as_mut() else {
                    return Err("not connected".into());
                };
                let mut out = Vec::new();
                for event in events {
                    let message = syslog_message(event, &self.node, self.sink.format);
                    out.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    out.extend_from_slice(&message);
                }
                conn.send(&out).await
            }
            Kind::SplunkHec { url, token } => {
                let mut body = Vec::new();
                for event in events {
                    let time = event
                        .time
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    let object = json!({
                        "time": time,
                        "host": self.node,
                        "source": "palisade",
                        "sourcetype": "palisade:audit",
                        "event": event.json(self.sink.format),
                        "fields": {event.key.0: event.key.1},
                    });
                    body.extend_from_slice(object.to_string().as_bytes());
                    body.push(b'\n');
                }
                post(
                    http,
                    url,
                    &[("Authorization".into(), format!("Splunk {token}"))],
                    body,
                )
                .await
            }
            Kind::Otlp { url, headers } => {
                let records: Vec<Value> = events
                    .iter()
                    .map(|event| {
                        let nanos = event
                            .time
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos());
                        let (number, text) = event.severity.otlp();
                        json!({
                            "timeUnixNano": nanos.to_string(),
                            "severityNumber": number,
                            "severityText": text,
                            "body": {"stringValue": event.json(self.sink.format).to_string()},
                            "attributes": [
                                {"key": format!("palisade.{}", event.key.0), "value": {"intValue": event.key.1.to_string()}},
                                {"key": "event.name", "value": {"stringValue": event.name}},
                            ],
                        })
                    })
                    .collect();
                let body = json!({"resourceLogs": [{
                    "resource": {"attributes": [
                        {"key": "service.name", "value": {"stringValue": "palisade"}},
                        {"key": "host.name", "value": {"stringValue": self.node}},
                    ]},
                    "scopeLogs": [{"scope": {"name": "palisade.audit"}, "logRecords": records}],
                }]});
                post(http, url, headers, body.to_string().into_bytes()).await
            }
            Kind::Webhook { url, headers } => {
                let body: Vec<Value> = events.iter().map(|e| e.json(self.sink.format)).collect();
                post(
                    http,
                    url,
                    headers,
                    Value::Array(body).to_string().into_bytes(),
                )
                .await
            }
        }
    }
}

/// Reads up to `max` whole lines from `offset`; returns them and the offset
/// after them. A line being written (no newline yet) is left for next time.
fn whole_lines(path: &Path, offset: u64, max: usize) -> std::io::Result<(Vec<Vec<u8>>, u64)> {
    use std::io::BufRead;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() < offset {
        // The file is shorter than what was sent (moved aside and started
        // again): follow the new one from its start.
        return whole_lines(path, 0, max);
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut lines = Vec::new();
    let mut at = offset;
    let mut line = Vec::new();
    while lines.len() < max {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        at += n as u64;
        line.pop();
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
    }
    Ok((lines, at))
}

async fn post(
    http: Option<&reqwest::Client>,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(), String> {
    let http = http.ok_or("no HTTP client")?;
    let mut request = http
        .post(url)
        .header("Content-Type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {status}"))
    }
}

/// RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`,
/// facility 13 (log audit); the key as structured data.
fn syslog_message(event: &Event, node: &str, format: Format) -> Vec<u8> {
    let pri = 13 * 8 + u16::from(event.severity.syslog());
    let time = humantime::format_rfc3339_micros(event.time);
    let field = |s: &str, max: usize| -> String {
        let printable: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(max)
            .collect();
        if printable.is_empty() {
            "-".into()
        } else {
            printable
        }
    };
    format!(
        "<{pri}>1 {time} {} palisade {} {} [palisade@32473 {}=\"{}\"] {}",
        field(node, 255),
        std::process::id(),
        field(&event.name, 32),
        event.key.0,
        event.key.1,
        event.json(format)
    )
    .into_bytes()
}

/// A connection to a syslog receiver.
enum Syslog {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl Syslog {
    async fn connect(address: &str, tls: Option<&Tls>) -> Result<Self, String> {
        let tcp = tokio::time::timeout(SEND_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| format!("connecting to {address} timed out"))?
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let Some(tls) = tls else {
            return Ok(Self::Tcp(tcp));
        };
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(&tls.ca)
            .and_then(|items| items.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the CA file `{}`: {e}", tls.ca.display()))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("a certificate in `{}`: {e}", tls.ca.display()))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let host = tls.server_name.clone().unwrap_or_else(|| {
            address
                .rsplit_once(':')
                .map_or(address, |(h, _)| h)
                .trim_matches(['[', ']'])
                .to_owned()
        });
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("`{host}` is not a server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {address}: {e}"))?;
        Ok(Self::Tls(Box::new(stream)))
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        async fn write<W: tokio::io::AsyncWrite + Unpin>(
            w: &mut W,
            bytes: &[u8],
        ) -> std::io::Result<()> {
            w.write_all(bytes).await?;
            w.flush().await
        }
        let written = match self {
            Syslog::Tcp(s) => tokio::time::timeout(SEND_TIMEOUT, write(s, bytes)).await,
            Syslog::Tls(s) => tokio::time::timeout(SEND_TIMEOUT, write(s.as_mut(), bytes)).await,
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("syslog write failed: {e}")),
            Err(_) => Err("syslog write timed out".into()),
        }
    }
}
