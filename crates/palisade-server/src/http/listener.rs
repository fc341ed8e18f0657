//! The accept loop: each TCP connection served over HTTP/1.1 by hyper in a
//! task of its own, under the caps and deadlines of `connections`, every
//! request checked for its host before the router sees it.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use palisade_mcp::Message;
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_REQUEST};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Server;
use super::connections::{Busy, Conn, Connections, Limits, Refusal, Slot};
use super::guards::check_host;

/// How long the accept loop pauses when `accept` itself fails (out of
/// descriptors, say), so that connections can finish and give theirs back.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a new connection may wait for the connections evicted to make
/// room for it to close.
const ROOM_WAIT: Duration = Duration::from_millis(250);
/// At most one warning about turned-away connections in this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Listener {
    listener: TcpListener,
    server: Arc<Server>,
    router: Router,
    connections: Arc<Connections>,
    open: Open,
    /// The whole answer a turned-away connection gets.
    refusal: Bytes,
    last_warning: Option<Instant>,
}

/// The connections being served, each a task in `tasks`.
pub(super) struct Open {
    tasks: JoinSet<()>,
    /// Cancelled at shutdown: every connection finishes what it is doing and closes.
    stop: CancellationToken,
}

impl Listener {
    pub(super) fn new(listener: TcpListener, server: Arc<Server>, router: Router) -> Self {
        let config = &server.gateway.config.server;
        let limits = Limits {
            max: config.max_connections,
            per_client: config.max_connections_per_client,
            header_read: config.header_read_timeout,
            idle: config.idle_timeout,
        };
        let refusal = refusal(&server);
        Listener {
            listener,
            router,
            connections: Arc::new(Connections::new(limits)),
            server,
            open: Open {
                tasks: JoinSet::new(),
                stop: CancellationToken::new(),
            },
            refusal,
            last_warning: None,
        }
    }

    /// Accepts connections until `shutdown` completes, then stops listening
    /// and hands back the connections still open.
    pub(super) async fn accept_until(mut self, shutdown: impl Future<Output = ()>) -> Open {
        let mut shutdown = pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(ended) = self.open.tasks.join_next(), if !self.open.tasks.is_empty() => {
                    if let Err(e) = ended
                        && e.is_panic()
                    {
                        tracing::error!("a connection's task panicked: {e}");
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.take(stream, peer).await,
                    Err(e) => self.accept_failed(e).await,
                },
            }
        }
        self.open
    }

    async fn take(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Small writes (an SSE event, a short answer) go out at once, not
        // after the delayed ACK of the one before.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        match self.admit(peer.ip()).await {
            Ok(slot) => {
                let limits = self.connections.limits();
                match slot.made_room() {
                    Some(Refusal::ClientFull) => self.warn(&format!(
                        "{} reached `server.max_connections_per_client` ({}): closed its idlest connection to take a new one",
                        peer.ip(),
                        limits.per_client
                    )),
                    Some(Refusal::Full | Refusal::Closing) => self.warn(&format!(
                        "reached `server.max_connections` ({}): closed the idlest connection to take a new one",
                        limits.max
                    )),
                    None => {}
                }
                let served = connection(
                    stream,
                    slot,
                    limits,
                    Arc::clone(&self.server),
                    self.router.clone(),
                );
                self.open.tasks.spawn(served);
            }
            Err(refusal) => {
                let limits = self.connections.limits();
                let why = match refusal {
                    Refusal::Full => format!(
                        "all {} connections (`server.max_connections`) are busy",
                        limits.max
                    ),
                    Refusal::ClientFull => format!(
                        "{} has {} connections open (`server.max_connections_per_client`), all busy",
                        peer.ip(),
                        limits.per_client
                    ),
                    Refusal::Closing => {
                        "the connections closed to make room for it did not go in time".to_owned()
                    }
                };
                self.warn(&format!("turning a connection away: {why}"));
                turn_away(&stream, &self.refusal);
            }
        }
    }

    /// A place for a connection from `client`. While the connections evicted
    /// for it are closing, accepting pauses (the backlog waits) so that
    /// their tasks get to run.
    async fn admit(&self, client: std::net::IpAddr) -> Result<Slot, Refusal> {
        let deadline = Instant::now() + ROOM_WAIT;
        loop {
            match self.connections.admit(client, &self.open.stop) {
                Err(Refusal::Closing) if Instant::now() < deadline => {
                    let _ = tokio::time::timeout_at(deadline, self.connections.freed()).await;
                }
                admitted => return admitted,
            }
        }
    }

    async fn accept_failed(&mut self, error: io::Error) {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
        ) {
            return;
        }
        // Most likely out of descriptors: close an idle connection to free
        // one, and give the others a moment to finish.
        let evicted = self.connections.evict_one();
        self.warn(&format!(
            "cannot accept connections: {error}{}",
            if evicted { "; closed an idle one" } else { "" }
        ));
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }

    fn warn(&mut self, message: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            tracing::debug!("{message}");
        } else {
            self.last_warning = Some(now);
            tracing::warn!("{message}");
        }
    }
}

impl Open {
    /// Tells every connection to finish its request in progress and close,
    /// waits up to `grace` for them, then drops those still open.
    pub(super) async fn close(mut self, grace: Duration) {
        self.stop.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} connections still open {grace:?} after shutdown; closing them",
                self.tasks.len()
            );
            self.tasks.shutdown().await;
        }
    }
}

/// The answer to a connection over a cap: HTTP 503 with a JSON-RPC error,
/// made once, through the redaction seam like every answer.
fn refusal(server: &Server) -> Bytes {
    let message = Message::Response(palisade_mcp::Response::error(
        None,
        ErrorObject::new(
            INVALID_REQUEST,
            "too many connections to palisade; try again later",
        ),
    ));
    let body = server.gateway.seam().apply(message).get().to_bytes();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut answer = head.into_bytes();
    answer.extend_from_slice(&body);
    answer.into()
}

/// Answers a connection that cannot be taken, without waiting for it: what
/// it has sent already is read first (closing a socket with unread data
/// resets it, and the client would not see the answer), then the refusal is
/// written if the socket takes it at once, and the connection is closed.
fn turn_away(stream: &TcpStream, refusal: &[u8]) {
    let mut scratch = [0_u8; 4096];
    for _ in 0..4 {
        match stream.try_read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = stream.try_write(refusal);
}

/// Serves one connection until it ends, is evicted, outlives a deadline, or
/// is told to stop at shutdown. Over TLS, the handshake must finish within
/// the header-read deadline, like a request head.
async fn connection(
    stream: TcpStream,
    slot: Slot,
    limits: Limits,
    server: Arc<Server>,
    router: Router,
) {
    let conn = Arc::clone(slot.conn());
    let watched = Watched {
        stream,
        conn: Arc::clone(&conn),
    };
    let tls = server.gateway.tls.as_ref().map(|c| c.acceptor());
    let gate = Gate {
        server,
        router: TowerToHyperService::new(router),
        conn: Arc::clone(&conn),
    };
    match tls {
        None => drive(TokioIo::new(watched), gate, &conn, limits).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.header_read, acceptor.accept(watched)).await {
                Ok(Ok(stream)) => drive(TokioIo::new(stream), gate, &conn, limits).await,
                Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(
                    "closing a connection that did not finish its TLS handshake in time"
                ),
            }
        }
    }
    drop(slot);
}

async fn drive<I>(io: I, gate: Gate, conn: &Conn, limits: Limits)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    // `connections` keeps the deadlines: hyper's would also close a
    // kept-alive connection after the header-read time.
    builder.header_read_timeout(None);
    let mut http = pin!(builder.serve_connection(io, gate));
    let mut closing = false;
    loop {
        tokio::select! {
            served = http.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!("connection ended: {e}");
                }
                break;
            }
            () = conn.stop().cancelled(), if !closing => {
                if !conn.is_busy() {
                    break;
                }
                // The request under way is answered first.
                http.as_mut().graceful_shutdown();
                closing = true;
            }
            () = conn.expired(limits), if !closing => {
                tracing::debug!("closing a connection that sent no request in time");
                break;
            }
        }
    }
}

/// The hyper service of one connection: marks it busy for each request,
/// refuses a foreign host, and hands the rest to the router.
struct Gate {
    server: Arc<Server>,
    router: TowerToHyperService<Router>,
    conn: Arc<Conn>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Gate {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        let busy = self.conn.begin();
        let allowed = &self.server.gateway.config.server.allowed_hosts;
        let routed = match check_host(allowed, request.headers(), request.uri()) {
            Ok(()) => Ok(self.router.call(request)),
            Err(refused) => Err(refused.respond(&self.server)),
        };
        Box::pin(async move {
            let response = match routed {
                Ok(answer) => match answer.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                Err(refused) => refused,
            };
            Ok(response.map(|body| Body::new(Tracked { body, _busy: busy })))
        })
    }
}

/// A response body that keeps its connection busy until it is written (or dropped).
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, telling the connection when bytes arrive: on an
/// idle kept-alive connection, that starts its header-read deadline.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
