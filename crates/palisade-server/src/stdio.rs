//! `palisade mcp`: the gateway as a stdio MCP server for one local client.
//!
//! stdout carries only protocol messages; diagnostics go to stderr. Requests
//! are handled concurrently, so a slow tool never holds up a ping or a
//! cancellation.

use std::sync::Arc;

use palisade_core::{Principal, Redacted, SessionEnd};
use palisade_mcp::framing::{FrameError, LineReader, write_line};
use palisade_mcp::jsonrpc::{ErrorObject, INVALID_REQUEST};
use palisade_mcp::protocol::method;
use palisade_mcp::{Message, RequestId, Response};
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::gateway::Gateway;
use crate::session::{Outbox, Session};

const OUTPUT_QUEUE: usize = 1024;

struct StdoutOutbox {
    queue: mpsc::Sender<Vec<u8>>,
}

impl Outbox for StdoutOutbox {
    fn send(&self, message: Redacted<Message>, _related: Option<&RequestId>) -> bool {
        // A client that stops reading loses notifications rather than
        // growing palisade's memory without bound.
        let queued = self.queue.try_send(message.get().to_bytes()).is_ok();
        if !queued {
            tracing::warn!("client is not reading; dropped a message to it");
        }
        queued
    }
}

/// Serves one client, `principal`, on `input`/`output` until the input ends
/// or `shutdown` resolves.
pub async fn serve<R, W>(
    gateway: Arc<Gateway>,
    principal: Principal,
    input: R,
    mut output: W,
    shutdown: impl Future<Output = ()>,
) where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (queue, mut outgoing) = mpsc::channel::<Vec<u8>>(OUTPUT_QUEUE);
    #[expect(
        clippy::disallowed_methods,
        reason = "the writer is awaited below, with a deadline"
    )]
    let writer = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if let Err(e) = write_line(&mut output, &bytes).await {
                tracing::warn!("cannot write to the client: {e}");
                break;
            }
        }
    });
    let outbox: Arc<dyn Outbox> = Arc::new(StdoutOutbox {
        queue: queue.clone(),
    });
    let mut lines = LineReader::new(input, gateway.config.server.max_message_bytes);
    let seam = gateway.seam().clone();
    let send = |message: Message| {
        let queue = queue.clone();
        let message = seam.apply(message);
        async move { write(&queue, message).await }
    };
    let mut session: Option<Arc<Session>> = None;
    let mut end = SessionEnd::ClientGone;
    tokio::pin!(shutdown);
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            () = &mut shutdown => {
                end = SessionEnd::Shutdown;
                break;
            }
        };
        let line = match line {
            None => break,
            Some(Ok(line)) => line,
            Some(Err(FrameError::TooLarge { limit })) => {
                let error = ErrorObject::new(
                    INVALID_REQUEST,
                    format!("message exceeds the {limit}-byte limit"),
                );
                send(Message::Response(Response::error(None, error))).await;
                continue;
            }
            Some(Err(FrameError::Io(e))) => {
                tracing::warn!("cannot read from the client: {e}");
                break;
            }
        };
        let message = match Message::parse(&line) {
            Ok(message) => message,
            Err(e) => {
                send(Message::Response(e.to_response())).await;
                continue;
            }
        };
        match (message, &session) {
            (Message::Request(request), None) if request.method == method::INITIALIZE => {
                let answer = gateway
                    .open_session(request.params, Arc::clone(&outbox), principal.clone())
                    .await;
                let response = match answer {
                    Ok((opened, result)) => {
                        session = Some(opened);
                        Response::result(request.id, result)
                    }
                    Err(error) => Response::error(Some(request.id), error),
                };
                send(Message::Response(response)).await;
            }
            (Message::Request(request), None) if request.method == method::PING => {
                send(Message::Response(Response::result(request.id, json!({})))).await;
            }
            (Message::Request(request), None) => {
                let error = ErrorObject::new(
                    INVALID_REQUEST,
                    "the session is not initialized: send `initialize` first",
                );
                send(Message::Response(Response::error(Some(request.id), error))).await;
            }
            (Message::Request(request), Some(session)) => {
                let session = Arc::clone(session);
                let queue = queue.clone();
                gateway.spawn(async move {
                    if let Some(response) = session.handle_request(request).await {
                        write(&queue, response).await;
                    }
                });
            }
            (Message::Notification(notification), Some(session)) => {
                session.handle_notification(notification).await
            }
            (Message::Response(response), Some(session)) => session.handle_response(response).await,
            (Message::Notification(_) | Message::Response(_), None) => {
                tracing::debug!("ignoring a message sent before initialize");
            }
        }
    }
    if let Some(session) = session {
        session.close(end).await;
    }
    gateway.drain().await;
    drop(outbox);
    drop(queue);
    // Answers still in flight get a moment to reach the client.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}

async fn write(queue: &mpsc::Sender<Vec<u8>>, message: Redacted<Message>) {
    let _ = queue.send(message.get().to_bytes()).await;
}
