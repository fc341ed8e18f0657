//! Streamable HTTP: one MCP session, `concurrency` workers over a keep-alive connection pool.
//!
//! Every worker sends its next `tools/call` as soon as the previous one is
//! answered, so concurrency 1 measures latency and higher concurrency
//! measures throughput. A reply may be JSON or an SSE stream; for a stream
//! the clock stops at the event that carries the response, and the rest of
//! the stream is read so the connection goes back to the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use palisade_mcp::protocol::header;
use palisade_mcp::sse::Parser;
use palisade_mcp::{Message, RequestId};
use tokio::task::JoinSet;

use super::{
    CallPlan, LoadError, Outcome, REPLY_LIMIT, Report, call_request, check_call_result,
    initialize_request, initialized_notification, negotiated_version, result_of,
};

/// How long the rest of an SSE stream may take to end once its response arrived.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a session at `url`, warms up, then measures `plan.calls` calls.
pub async fn run(url: &str, plan: &CallPlan, concurrency: usize) -> Result<Report, LoadError> {
    let concurrency = concurrency.max(1);
    let mut defaults = HeaderMap::new();
    defaults.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    defaults.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let client = reqwest::Client::builder()
        .default_headers(defaults)
        .pool_max_idle_per_host(concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let session = Arc::new(Session::open(client, url).await?);
    let tool: Arc<str> = Arc::from(plan.tool.as_str());
    drive(&session, &tool, plan.warmup, concurrency).await;
    let started = Instant::now();
    let outcome = drive(&session, &tool, plan.calls, concurrency).await;
    Ok(outcome.report(started.elapsed()))
}

async fn drive(session: &Arc<Session>, tool: &Arc<str>, calls: u64, concurrency: usize) -> Outcome {
    let taken = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (session, tool, taken) = (Arc::clone(session), Arc::clone(tool), Arc::clone(&taken));
        workers.spawn(async move {
            let mut outcome = Outcome::default();
            while taken.fetch_add(1, Ordering::Relaxed) < calls {
                outcome.record(session.call(&tool).await);
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(outcome) => total.merge(outcome),
            Err(error) => total.record(Err(LoadError::Worker(error.to_string()))),
        }
    }
    total
}

/// An initialized session: the headers every later request carries.
#[derive(Debug)]
struct Session {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    next_id: AtomicU64,
}

impl Session {
    async fn open(client: reqwest::Client, url: &str) -> Result<Self, LoadError> {
        let id = RequestId::from(0);
        let response = send(
            &client,
            url,
            HeaderMap::new(),
            &initialize_request(id.clone()),
        )
        .await?;
        let mut headers = HeaderMap::new();
        if let Some(session_id) = response.headers().get(header::SESSION_ID) {
            headers.insert(
                HeaderName::from_static(header::SESSION_ID),
                session_id.clone(),
            );
        }
        let (reply, _) = read_reply(response, &id).await?;
        let version = negotiated_version(&result_of(reply, &id)?)?;
        let version = HeaderValue::from_str(&version).map_err(|_| LoadError::NoVersion)?;
        headers.insert(HeaderName::from_static(header::PROTOCOL_VERSION), version);
        let response = send(&client, url, headers.clone(), &initialized_notification()).await?;
        drop(response.bytes().await?);
        Ok(Self {
            client,
            url: url.to_owned(),
            headers,
            next_id: AtomicU64::new(1),
        })
    }

    /// One `tools/call`, timed from just before sending to the arrival of its response.
    async fn call(&self, tool: &str) -> Result<Duration, LoadError> {
        let id = RequestId::from(self.next_id.fetch_add(1, Ordering::Relaxed));
        let message = call_request(id.clone(), tool);
        let started = Instant::now();
        let response = send(&self.client, &self.url, self.headers.clone(), &message).await?;
        let (reply, answered) = read_reply(response, &id).await?;
        let latency = answered.duration_since(started);
        check_call_result(&result_of(reply, &id)?)?;
        Ok(latency)
    }
}

/// Posts one message; a status outside 2xx is an error carrying the body.
async fn send(
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    message: &Message,
) -> Result<reqwest::Response, LoadError> {
    let response = client
        .post(url)
        .headers(headers)
        .body(message.to_bytes())
        .send()
        .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let mut body = response.text().await.unwrap_or_default();
    body.truncate(300);
    Err(LoadError::Status {
        status: status.as_u16(),
        body,
    })
}

/// The response to request `id`, and when it arrived.
async fn read_reply(
    response: reqwest::Response,
    id: &RequestId,
) -> Result<(Message, Instant), LoadError> {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/json" => {
            let body = response.bytes().await?;
            let answered = Instant::now();
            Ok((Message::parse(&body)?, answered))
        }
        "text/event-stream" => read_event_stream(response, id).await,
        _ => Err(LoadError::ContentType(content_type)),
    }
}

/// Reads events until the one that answers `id`, then lets the stream end.
async fn read_event_stream(
    mut response: reqwest::Response,
    id: &RequestId,
) -> Result<(Message, Instant), LoadError> {
    let mut parser = Parser::new(REPLY_LIMIT);
    while let Some(chunk) = response.chunk().await? {
        for event in parser.feed(&chunk)? {
            // Priming events (an id, empty data) carry no message.
            if event.data.trim().is_empty() {
                continue;
            }
            let message = Message::parse(event.data.as_bytes())?;
            if matches!(&message, Message::Response(r) if r.id.as_ref() == Some(id)) {
                let answered = Instant::now();
                drain(response).await;
                return Ok((message, answered));
            }
        }
    }
    Err(LoadError::NoReply(id.clone()))
}

/// Reads the rest of a stream, briefly, so its connection can be reused.
async fn drain(mut response: reqwest::Response) {
    let rest = async { while let Ok(Some(_)) = response.chunk().await {} };
    // A stream that stays open only costs its connection.
    let _ = tokio::time::timeout(DRAIN_LIMIT, rest).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(content_type: &str, body: &str) -> reqwest::Response {
        let mut response = http::Response::new(body.to_owned());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        reqwest::Response::from(response)
    }

    async fn check(content_type: &str, body: &str) -> Result<Message, String> {
        let id = RequestId::from(5);
        read_reply(reply(content_type, body), &id)
            .await
            .map(|(message, _)| message)
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn reads_json_and_event_stream_replies() {
        let json = r#"{"jsonrpc":"2.0","id":5,"result":{}}"#;
        let got = check("application/json; charset=utf-8", json)
            .await
            .unwrap();
        assert_eq!(got.to_bytes(), json.as_bytes());
        // A priming event, a notification and another id come before the response.
        let stream = "id: p\ndata: \n\n\
            event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n\
            data: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}\n\n\
            id: 9\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"ok\":true}}\n\n";
        let got = check("text/event-stream", stream).await.unwrap();
        assert_eq!(
            got.to_bytes(),
            br#"{"jsonrpc":"2.0","id":5,"result":{"ok":true}}"#
        );
    }

    #[tokio::test]
    async fn refuses_replies_without_the_response() {
        let cases = [
            ("text/plain", "hi", "unexpected content type `text/plain`"),
            ("application/json", "{", "not JSON-RPC"),
            (
                "text/event-stream",
                "data: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}\n\n",
                "closed before answering request 5",
            ),
        ];
        for (content_type, body, needle) in cases {
            let err = check(content_type, body).await.unwrap_err();
            assert!(err.contains(needle), "{content_type} {body:?} -> {err}");
        }
    }
}
