//! `fast-upstream`: a minimal MCP server with one `echo` tool, over stdio or Streamable HTTP.
//!
//! It exists so that a benchmark through the gateway measures the gateway:
//! each call costs it a parse, a `match` and a write. Over HTTP every request
//! gets a JSON response (no SSE), notifications get 202, and `initialize`
//! hands out an `Mcp-Session-Id` that is not checked afterwards.
#![forbid(unsafe_code)]

use std::io::{BufRead, Read as _, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use palisade_bench::upstream::{answer, is_initialize};
use palisade_mcp::Message;
use palisade_mcp::protocol::header;

/// The longest stdio line read; a longer one is answered with an error.
const LINE_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(about = "A minimal, fast MCP server with one `echo` tool")]
struct Cli {
    #[command(subcommand)]
    transport: Transport,
}

#[derive(Debug, Subcommand)]
enum Transport {
    /// Serve one session on stdin/stdout.
    Stdio,
    /// Serve Streamable HTTP on POST /mcp.
    Http {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Runtime threads; 1 keeps the upstream on one core.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().transport {
        Transport::Stdio => serve_stdio(),
        Transport::Http { listen, threads } => {
            palisade_bench::runtime(threads).and_then(|rt| rt.block_on(serve_http(listen)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fast-upstream: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Blocking reads and writes: with one conversation, no runtime is faster
/// than none.
fn serve_stdio() -> std::io::Result<()> {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut line = Vec::new();
    while read_line(&mut input, &mut line)? {
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let reply = match Message::parse(text) {
            Ok(message) => answer(message),
            Err(error) => Some(Message::Response(error.to_response())),
        };
        if let Some(reply) = reply {
            let mut bytes = reply.to_bytes();
            bytes.push(b'\n');
            output.write_all(&bytes)?;
            output.flush()?;
        }
    }
    Ok(())
}

/// Reads one line into `line`; `false` at end of input. A line over the
/// limit is skipped to its end and replaced by one that fails to parse.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<bool> {
    line.clear();
    let limit = u64::try_from(LINE_LIMIT).unwrap_or(u64::MAX);
    let read = input.by_ref().take(limit + 1).read_until(b'\n', line)?;
    if read == 0 {
        return Ok(false);
    }
    if line.len() > LINE_LIMIT && line.last() != Some(&b'\n') {
        let mut rest = Vec::new();
        while input.by_ref().take(limit).read_until(b'\n', &mut rest)? > 0 {
            if rest.last() == Some(&b'\n') {
                break;
            }
            rest.clear();
        }
        line.clear();
        line.extend_from_slice(b"oversized");
    }
    Ok(true)
}

async fn serve_http(listen: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("listening on http://{}/mcp", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        // Replies are one write each; Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new()
        .route("/mcp", post(post_mcp))
        .with_state(Arc::new(AtomicU64::new(1)));
    axum::serve(listener, app).await
}

async fn post_mcp(State(sessions): State<Arc<AtomicU64>>, body: Bytes) -> Response<Body> {
    let message = match Message::parse(&body) {
        Ok(message) => message,
        Err(error) => {
            let reply = Message::Response(error.to_response());
            return json(StatusCode::BAD_REQUEST, &reply, None);
        }
    };
    let session = is_initialize(&message).then(|| {
        let n = sessions.fetch_add(1, Ordering::Relaxed);
        format!("fast-{}-{n}", std::process::id())
    });
    match answer(message) {
        Some(reply) => json(StatusCode::OK, &reply, session),
        None => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::ACCEPTED;
            response
        }
    }
}

fn json(status: StatusCode, message: &Message, session: Option<String>) -> Response<Body> {
    let mut response = Response::new(Body::from(message.to_bytes()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(value) = session.and_then(|s| HeaderValue::from_str(&s).ok()) {
        headers.insert(HeaderName::from_static(header::SESSION_ID), value);
    }
    response
}
