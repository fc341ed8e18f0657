//! The forward proxy: one client connection carries one `CONNECT` tunnel or one plain-HTTP request, checked against the rules, and ends in one record.
//!
//! The head is read with `httparse` within the header limits. A `CONNECT`
//! is checked, resolved and connected before the client hears `200`; then
//! the TLS ClientHello is read with rustls' `Acceptor` and its SNI must
//! name the `CONNECT` host before a byte goes on. A plain-HTTP request
//! must be in absolute form; it is forwarded in origin form with its
//! hop-by-hop headers removed and `Connection: close`, its body exactly as
//! long as `Content-Length` says, and the response is passed back until the
//! destination closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::destination::{Destination, Host};
use crate::record::{Outcome, Record, Refusal, RefusalCode};
use crate::{Egress, LimitSettings, Scope};

/// Bytes read or written at once in each direction.
const BUFFER: usize = 64 * 1024;
/// The most a ClientHello may take (rustls refuses larger ones itself).
const MAX_HELLO: usize = 64 * 1024;
/// How long connecting to a destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused client is given to take its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The most headers a request may have.
const MAX_HEADERS: usize = 100;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), and
/// the proxy's own.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// How the client hears of a refusal.
#[derive(Debug)]
enum Answer {
    /// An HTTP response with this status (before a tunnel is open).
    Http(u16),
    /// A fatal TLS alert (inside an open tunnel, in answer to a ClientHello).
    TlsAlert(Vec<u8>),
}

#[derive(Debug)]
struct Refused {
    answer: Answer,
    refusal: Refusal,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Self {
            answer: Answer::Http(refusal.code.status()),
            refusal,
        }
    }
}

fn refused(status: u16, code: RefusalCode, detail: impl Into<String>) -> Refused {
    Refused {
        answer: Answer::Http(status),
        refusal: Refusal::new(code, detail),
    }
}

/// What the record will say, filled in as the exchange goes.
#[derive(Debug, Default)]
struct Exchange {
    kind: String,
    host: String,
    port: u16,
    address: Option<SocketAddr>,
    sent: u64,
    received: u64,
    ended: Option<String>,
}

pub(crate) async fn serve(egress: &Arc<Egress>, scope: &Scope, mut client: TcpStream) {
    let started = Instant::now();
    let mut exchange = Exchange::default();
    let total = egress.limits.total_timeout;
    let result = match tokio::time::timeout(
        total,
        exchange_on(egress, scope, &mut client, &mut exchange),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => {
            exchange.ended = Some(format!(
                "the total timeout ({})",
                humantime::format_duration(total)
            ));
            Ok(())
        }
    };
    let outcome = match result {
        Ok(()) => Outcome::Allowed,
        Err(refused) => {
            answer(&mut client, &refused).await;
            Outcome::Refused(refused.refusal)
        }
    };
    let record = Record {
        who: scope.who.clone(),
        kind: exchange.kind,
        host: exchange.host,
        port: exchange.port,
        address: exchange.address,
        outcome,
        sent: exchange.sent,
        received: exchange.received,
        duration: started.elapsed(),
        ended: exchange.ended,
    };
    egress.recorder.record(record).await;
}

async fn answer(client: &mut TcpStream, refused: &Refused) {
    let bytes = match &refused.answer {
        Answer::Http(status) => {
            let body = format!("palisade egress: {}\n", refused.refusal.detail);
            format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason(*status),
                body.len()
            )
            .into_bytes()
        }
        Answer::TlsAlert(alert) => alert.clone(),
    };
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
        client.write_all(&bytes).await?;
        client.shutdown().await
    })
    .await;
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        411 => "Length Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Error",
    }
}

/// A request's head, owned.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    /// Bytes the client sent after the head.
    rest: Vec<u8>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

async fn exchange_on(
    egress: &Egress,
    scope: &Scope,
    client: &mut TcpStream,
    exchange: &mut Exchange,
) -> Result<(), Refused> {
    let limits = &egress.limits;
    // Counted from the start (a slow client holds a connection too); a
    // connection over a limit is refused once its head names where it went.
    let entered = scope.enter(limits);
    let head = match tokio::time::timeout(limits.header_timeout, read_head(client, limits)).await {
        Ok(head) => head?,
        Err(_) => {
            return Err(refused(
                408,
                RefusalCode::Limit,
                format!(
                    "the request's head did not arrive within {}",
                    humantime::format_duration(limits.header_timeout)
                ),
            ));
        }
    };
    exchange.kind = if head.method == "CONNECT" {
        "connect".into()
    } else {
        head.method.clone()
    };
    exchange.host = head.target.chars().take(256).collect();
    let _open = entered?;
    if head.method == "CONNECT" {
        tunnel(egress, scope, client, head, exchange).await
    } else {
        forward(egress, scope, client, head, exchange).await
    }
}

/// Reads up to the end of the head, refusing heads over the limit.
async fn read_head(client: &mut TcpStream, limits: &LimitSettings) -> Result<Head, Refused> {
    let mut buffer = Vec::with_capacity(4096);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer) {
            Ok(httparse::Status::Complete(length)) => {
                let head = Head {
                    method: request.method.unwrap_or_default().to_owned(),
                    target: request.path.unwrap_or_default().to_owned(),
                    headers: request
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), h.value.to_vec()))
                        .collect(),
                    rest: buffer.get(length..).unwrap_or_default().to_vec(),
                };
                return Ok(head);
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(refused(
                    431,
                    RefusalCode::Limit,
                    format!("the request has more than {MAX_HEADERS} headers"),
                ));
            }
            Err(e) => {
                return Err(refused(
                    400,
                    RefusalCode::Malformed,
                    format!("the request is not HTTP/1.x: {e}"),
                ));
            }
        }
        if buffer.len() >= limits.max_header_bytes {
            return Err(refused(
                431,
                RefusalCode::Limit,
                format!(
                    "the request's head is over {} bytes",
                    limits.max_header_bytes
                ),
            ));
        }
        let mut chunk = [0u8; 4096];
        let room = (limits.max_header_bytes - buffer.len()).min(chunk.len());
        let n = client
            .read(chunk.get_mut(..room).unwrap_or_default())
            .await
            .map_err(|e| {
                refused(
                    400,
                    RefusalCode::Malformed,
                    format!("reading the request: {e}"),
                )
            })?;
        if n == 0 {
            return Err(refused(
                400,
                RefusalCode::Malformed,
                "the client closed the connection before its request's head ended",
            ));
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// A `CONNECT` tunnel.
async fn tunnel(
    egress: &Egress,
    scope: &Scope,
    client: &mut TcpStream,
    head: Head,
    exchange: &mut Exchange,
) -> Result<(), Refused> {
    let destination = Destination::parse_authority(&head.target, None)?;
    exchange.host = destination.host.to_string();
    exchange.port = destination.port;
    let permit = egress.permit(scope, &destination, None)?;
    let addresses = egress.addresses(&destination, &permit).await?;
    let upstream = connect(&destination, &addresses, exchange).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .map_err(|e| {
            refused(
                400,
                RefusalCode::Malformed,
                format!("the client went away: {e}"),
            )
        })?;
    let mut hello = head.rest;
    let named = tokio::time::timeout(
        egress.limits.header_timeout,
        client_hello(client, &mut hello),
    )
    .await
    .map_err(|_| Refused {
        answer: Answer::TlsAlert(alert(ALERT_HANDSHAKE_FAILURE)),
        refusal: Refusal::new(RefusalCode::Limit, "no TLS ClientHello arrived in time"),
    })??;
    let agrees = match (&destination.host, &named) {
        (Host::Name(_), Some(name)) => Host::parse(name).ok().as_ref() == Some(&destination.host),
        // An address the rules allow: a ClientHello carries no SNI for it.
        (Host::Address(_), None) => true,
        (Host::Name(_) | Host::Address(_), _) => false,
    };
    if !agrees {
        let detail = match named {
            Some(name) => format!(
                "the TLS ClientHello names `{}`, but the tunnel was opened to `{}`",
                name.escape_debug(),
                destination.host
            ),
            None => format!(
                "the TLS ClientHello names no host (SNI), but the tunnel was opened to `{}`",
                destination.host
            ),
        };
        return Err(Refused {
            answer: Answer::TlsAlert(alert(ALERT_UNRECOGNIZED_NAME)),
            refusal: Refusal::new(RefusalCode::SniMismatch, detail),
        });
    }
    relay(
        egress,
        scope,
        client,
        upstream,
        &hello,
        None,
        &destination,
        exchange,
    )
    .await
}

const ALERT_HANDSHAKE_FAILURE: u8 = 40;
const ALERT_UNRECOGNIZED_NAME: u8 = 112;

/// A fatal TLS alert record (TLS 1.2 framing, which TLS 1.3 keeps for alerts).
fn alert(description: u8) -> Vec<u8> {
    vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

/// Reads the ClientHello (appending to `hello`, which may already hold its
/// start) and returns the name it carries.
async fn client_hello(
    client: &mut TcpStream,
    hello: &mut Vec<u8>,
) -> Result<Option<String>, Refused> {
    let not_tls = |alert_bytes: Vec<u8>, detail: String| Refused {
        answer: Answer::TlsAlert(alert_bytes),
        refusal: Refusal::new(RefusalCode::NotTls, detail),
    };
    let mut acceptor = rustls::server::Acceptor::default();
    let mut fed = 0;
    loop {
        while fed < hello.len() {
            let mut unread = hello.get(fed..).unwrap_or_default();
            match acceptor.read_tls(&mut unread) {
                Ok(0) => break,
                Ok(n) => fed += n,
                Err(e) => {
                    return Err(not_tls(
                        alert(ALERT_HANDSHAKE_FAILURE),
                        format!("the tunnel's first bytes are not a TLS ClientHello: {e}"),
                    ));
                }
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(accepted.client_hello().server_name().map(str::to_owned));
            }
            Ok(None) => {}
            Err((e, mut rustls_alert)) => {
                let mut bytes = Vec::new();
                let _ = rustls_alert.write_all(&mut bytes);
                return Err(not_tls(
                    bytes,
                    format!("the tunnel's first bytes are not a TLS ClientHello: {e}"),
                ));
            }
        }
        if hello.len() >= MAX_HELLO {
            return Err(not_tls(
                alert(ALERT_HANDSHAKE_FAILURE),
                format!("the ClientHello is over {MAX_HELLO} bytes"),
            ));
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return Err(not_tls(
                Vec::new(),
                "the client closed the tunnel before a TLS ClientHello".into(),
            ));
        }
        hello.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// A plain-HTTP request, forwarded in origin form.
async fn forward(
    egress: &Egress,
    scope: &Scope,
    client: &mut TcpStream,
    head: Head,
    exchange: &mut Exchange,
) -> Result<(), Refused> {
    let malformed = |detail: String| refused(400, RefusalCode::Malformed, detail);
    if head.target.starts_with('/') {
        return Err(malformed(format!(
            "`{} {}`: a proxy takes absolute URLs (`{} http://host/path`)",
            head.method,
            head.target.escape_debug(),
            head.method
        )));
    }
    let url = url::Url::parse(&head.target).map_err(|e| {
        malformed(format!(
            "`{}` is not a URL: {e}",
            head.target.escape_debug()
        ))
    })?;
    if url.scheme() != "http" {
        return Err(malformed(format!(
            "`{}` URLs are not forwarded; `https` goes through a `CONNECT` tunnel",
            url.scheme()
        )));
    }
    let destination = Destination::from_url(&url)?;
    exchange.host = destination.host.to_string();
    exchange.port = destination.port;
    let mut hosts = head.values("host");
    if let (Some(host), extra) = (hosts.next(), hosts.next()) {
        let named = std::str::from_utf8(host)
            .ok()
            .and_then(|h| Destination::parse_authority(h, Some(destination.port)).ok());
        if extra.is_some() || named.as_ref() != Some(&destination) {
            return Err(malformed(format!(
                "the `Host` header does not name `{destination}`, the URL's host"
            )));
        }
    }
    if head.values("upgrade").next().is_some() {
        return Err(malformed(
            "protocol upgrades (`Upgrade`) are not proxied".into(),
        ));
    }
    if head.values("transfer-encoding").next().is_some() {
        return Err(refused(
            411,
            RefusalCode::Malformed,
            "request bodies with `Transfer-Encoding` are not proxied; send `Content-Length`",
        ));
    }
    let mut lengths = head.values("content-length").map(|v| {
        std::str::from_utf8(v)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
    });
    let length = match lengths.next() {
        None => 0,
        Some(first) => match first {
            Some(n) if lengths.all(|other| other == Some(n)) => n,
            Some(_) | None => {
                return Err(malformed(
                    "the `Content-Length` header is not one number".into(),
                ));
            }
        },
    };
    let permit = egress.permit(scope, &destination, Some((&head.method, url.path())))?;
    let addresses = egress.addresses(&destination, &permit).await?;
    let upstream = connect(&destination, &addresses, exchange).await?;

    let origin = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", destination.host),
        None => destination.host.to_string(),
    };
    let named_hop: Vec<String> = head
        .values("connection")
        .chain(head.values("proxy-connection"))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out =
        format!("{} {origin} HTTP/1.1\r\nHost: {authority}\r\n", head.method).into_bytes();
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str())
            || lower.starts_with("proxy-")
            || named_hop.contains(&lower)
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    let early = head
        .rest
        .get(
            ..head
                .rest
                .len()
                .min(usize::try_from(length).unwrap_or(usize::MAX)),
        )
        .unwrap_or_default();
    out.extend_from_slice(early);
    let remaining = length - early.len() as u64;
    relay(
        egress,
        scope,
        client,
        upstream,
        &out,
        Some(remaining),
        &destination,
        exchange,
    )
    .await
}

/// Sends `first` on to the destination, then copies both ways: a tunnel
/// (`body` is `None`) until both sides are done, a plain-HTTP request with
/// `body` more bytes from the client until the destination closes.
#[expect(
    clippy::too_many_arguments,
    reason = "one exchange's parts, each used once"
)]
async fn relay(
    egress: &Egress,
    scope: &Scope,
    client: &mut TcpStream,
    mut upstream: TcpStream,
    first: &[u8],
    body: Option<u64>,
    destination: &Destination,
    exchange: &mut Exchange,
) -> Result<(), Refused> {
    if !scope.spend(first.len() as u64, egress.limits.bytes) {
        exchange.ended = Some(byte_limit(&egress.limits));
        return Ok(());
    }
    upstream
        .write_all(first)
        .await
        .map_err(|e| unreachable_now(destination, e))?;
    exchange.sent += first.len() as u64;
    let (client_read, client_write) = client.split();
    let upstream = upstream.split();
    exchange.ended = match body {
        None => {
            pump(
                egress,
                scope,
                (client_read, client_write),
                upstream,
                true,
                exchange,
            )
            .await
        }
        Some(rest) => {
            let client = (client_read.take(rest), client_write);
            pump(egress, scope, client, upstream, false, exchange).await
        }
    };
    Ok(())
}

async fn connect(
    destination: &Destination,
    addresses: &[SocketAddr],
    exchange: &mut Exchange,
) -> Result<TcpStream, Refused> {
    let mut last = String::from("no address");
    for address in addresses {
        exchange.address = Some(*address);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("{address}: {e}"),
            Err(_) => {
                last = format!(
                    "{address}: no answer within {}",
                    humantime::format_duration(CONNECT_TIMEOUT)
                )
            }
        }
    }
    Err(refused(
        502,
        RefusalCode::Unreachable,
        format!("`{destination}` could not be reached ({last})"),
    ))
}

fn unreachable_now(destination: &Destination, e: std::io::Error) -> Refused {
    Refused {
        answer: Answer::TlsAlert(Vec::new()),
        refusal: Refusal::new(
            RefusalCode::Unreachable,
            format!("`{destination}` closed the connection: {e}"),
        ),
    }
}

fn byte_limit(limits: &LimitSettings) -> String {
    format!(
        "the execution's byte limit ({} bytes, both ways)",
        limits.bytes
    )
}

/// Why a pumping direction stopped early.
#[derive(Debug)]
enum End {
    Idle,
    Bytes,
    Reset,
}

/// Copies both ways until both are done (or, with `half_close` off, until
/// the destination is), within the idle timeout and the execution's byte
/// limit; returns why it ended early, if it did.
async fn pump<CR, CW, UR, UW>(
    egress: &Egress,
    scope: &Scope,
    client: (CR, CW),
    upstream: (UR, UW),
    half_close: bool,
    exchange: &mut Exchange,
) -> Option<String>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let limits = &egress.limits;
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let (mut client_read, mut client_write) = client;
    let (mut upstream_read, mut upstream_write) = upstream;
    let (mut sent, mut received) = (0u64, 0u64);
    let shared = Shared {
        started,
        last: &last,
        scope,
        limits,
    };
    let up = copy(
        &mut client_read,
        &mut upstream_write,
        &mut sent,
        &shared,
        half_close,
    );
    let down = copy(
        &mut upstream_read,
        &mut client_write,
        &mut received,
        &shared,
        true,
    );
    let ended = tokio::try_join!(up, down).err();
    exchange.sent += sent;
    exchange.received += received;
    match ended {
        None | Some(End::Reset) => None,
        Some(End::Idle) => Some(format!(
            "the idle timeout ({})",
            humantime::format_duration(limits.idle_timeout)
        )),
        Some(End::Bytes) => Some(byte_limit(limits)),
    }
}

struct Shared<'a> {
    started: Instant,
    /// Milliseconds after `started` of the last byte either way.
    last: &'a AtomicU64,
    scope: &'a Scope,
    limits: &'a LimitSettings,
}

impl Shared<'_> {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    count: &mut u64,
    shared: &Shared<'_>,
    half_close: bool,
) -> Result<(), End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let idle = shared.limits.idle_timeout;
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let n = match tokio::time::timeout(idle, from.read(&mut buffer)).await {
            Err(_) => {
                let quiet = shared
                    .now()
                    .saturating_sub(shared.last.load(Ordering::Relaxed));
                if Duration::from_millis(quiet) >= idle {
                    return Err(End::Idle);
                }
                continue;
            }
            Ok(Err(_)) => return Err(End::Reset),
            Ok(Ok(0)) => {
                if half_close {
                    let _ = to.shutdown().await;
                }
                return Ok(());
            }
            Ok(Ok(n)) => n,
        };
        shared.last.store(shared.now(), Ordering::Relaxed);
        if !shared.scope.spend(n as u64, shared.limits.bytes) {
            return Err(End::Bytes);
        }
        to.write_all(buffer.get(..n).unwrap_or_default())
            .await
            .map_err(|_| End::Reset)?;
        *count += n as u64;
    }
}

impl Scope {
    /// Counts a connection against the execution's limits; the guard
    /// counts it closed when dropped.
    fn enter(&self, limits: &LimitSettings) -> Result<OpenGuard<'_>, Refused> {
        let opened = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let guard = OpenGuard(&self.open);
        if opened > limits.connections {
            return Err(refused(
                429,
                RefusalCode::Limit,
                format!(
                    "this execution has opened the {} connections it may",
                    limits.connections
                ),
            ));
        }
        if open > limits.concurrent {
            return Err(refused(
                429,
                RefusalCode::Limit,
                format!(
                    "this execution has {} connections open, the most it may",
                    limits.concurrent
                ),
            ));
        }
        Ok(guard)
    }

    /// Counts `n` bytes; false once the execution's total is over `limit`.
    fn spend(&self, n: u64, limit: u64) -> bool {
        self.bytes.fetch_add(n, Ordering::Relaxed).saturating_add(n) <= limit
    }
}

struct OpenGuard<'a>(&'a AtomicU64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
