//! A remote upstream over Streamable HTTP: POST per message, JSON or SSE answers, a GET stream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use palisade_mcp::protocol::header;
use palisade_mcp::{Message, RequestId, sse};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use palisade_secrets::SecretName;

use super::{Failure, LinkContext, Pending, dispatch, lock};
use crate::config::Setting;

pub(super) struct HttpLink {
    pub pending: Arc<Pending>,
    ctx: LinkContext,
    url: reqwest::Url,
    headers: HeaderMap,
    /// Headers whose values the broker supplies per request: the current
    /// version, toward this URL only.
    secret_headers: Vec<(HeaderName, SecretName, Option<String>)>,
    session: Arc<Mutex<Session>>,
    event_stream: Mutex<Option<JoinHandle<()>>>,
    /// Set when the link closes; every exchange still reading stops.
    closed: watch::Sender<bool>,
}

#[derive(Debug, Default, Clone)]
struct Session {
    id: Option<HeaderValue>,
    protocol_version: Option<HeaderValue>,
}

impl HttpLink {
    pub fn new(
        ctx: &LinkContext,
        url: &str,
        configured: &BTreeMap<String, Setting>,
    ) -> Result<Self, Failure> {
        let bad = |what: String| Failure::new(format!("upstream `{}`: {what}", ctx.name));
        let url = reqwest::Url::parse(url).map_err(|e| bad(format!("invalid url `{url}`: {e}")))?;
        let mut headers = HeaderMap::new();
        let mut secret_headers = Vec::new();
        for (name, value) in configured {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("invalid header name `{name}`")))?;
            match value {
                Setting::Literal(value) => {
                    let mut value = HeaderValue::from_str(value)
                        .map_err(|_| bad(format!("invalid value for header `{name}`")))?;
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
                Setting::Secret { secret, format } => {
                    secret_headers.push((name, secret.clone(), format.clone()));
                }
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        Ok(Self {
            pending: Pending::new(),
            ctx: ctx.clone(),
            url,
            headers,
            secret_headers,
            session: Arc::new(Mutex::new(Session::default())),
            event_stream: Mutex::new(None),
            closed: watch::Sender::new(false),
        })
    }

    pub fn set_protocol_version(&self, version: &str) {
        lock(&self.session).protocol_version = HeaderValue::from_str(version).ok();
    }

    /// The headers of one request with `method`: secrets read now, so a
    /// rotation or a revocation applies to the next request.
    async fn headers(&self, method: &str) -> Result<HeaderMap, Failure> {
        let mut headers = self.headers.clone();
        for (name, secret, format) in &self.secret_headers {
            let value = self
                .ctx
                .broker
                .header(
                    &self.ctx.name,
                    &self.url,
                    method,
                    name.as_str(),
                    secret,
                    format.as_deref(),
                )
                .await
                .map_err(|refusal| Failure {
                    retry_after: refusal.retry_after,
                    ..Failure::new(format!("upstream `{}`: {refusal}", self.ctx.name))
                })?;
            headers.insert(name.clone(), value);
        }
        let session = lock(&self.session).clone();
        if let Some(id) = session.id {
            headers.insert(header::SESSION_ID, id);
        }
        if let Some(version) = session.protocol_version {
            headers.insert(header::PROTOCOL_VERSION, version);
        }
        Ok(headers)
    }

    pub async fn send(&self, message: Message) -> Result<(), Failure> {
        if !self.pending.is_alive() {
            return Err(Failure::new(format!(
                "upstream `{}` session ended",
                self.ctx.name
            )));
        }
        let request_id = match &message {
            Message::Request(r) => match &r.id {
                RequestId::Number(n) => n.as_u64(),
                RequestId::String(_) => None,
            },
            Message::Notification(_) | Message::Response(_) => None,
        };
        let post = self
            .ctx
            .http
            .post(self.url.clone())
            .headers(self.headers("POST").await?)
            .body(message.to_bytes());
        match request_id {
            // A request's answer may stream for a long time: read it in the background.
            Some(id) => {
                let exchange = Exchange {
                    ctx: self.ctx.clone(),
                    pending: Arc::clone(&self.pending),
                    session: Arc::clone(&self.session),
                };
                let mut closed = self.closed.subscribe();
                let limit = self.ctx.request_timeout;
                // An exchange ends with its answer, its request's time limit,
                // or the link: never later.
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the link's own I/O task: it ends when the link closes"
                )]
                tokio::spawn(async move {
                    tokio::select! {
                        _ = closed.wait_for(|closed| *closed) => {}
                        _ = tokio::time::timeout(limit, exchange.request(post, id)) => {}
                    }
                });
                Ok(())
            }
            None => {
                let response = post
                    .timeout(self.ctx.request_timeout)
                    .send()
                    .await
                    .map_err(|e| self.unreachable(&e))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(Failure::new(format!(
                        "upstream `{}` answered HTTP {status} to a notification",
                        self.ctx.name
                    )))
                }
            }
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        let failure = Failure::new(format!("cannot reach upstream `{}`: {e}", self.ctx.name));
        self.pending.fail_all(&failure);
        failure
    }

    /// Opens the GET stream for messages the upstream sends outside any request.
    /// A server without one (HTTP 405) is fine.
    pub async fn open_event_stream(&self) {
        let exchange = Exchange {
            ctx: self.ctx.clone(),
            pending: Arc::clone(&self.pending),
            session: Arc::clone(&self.session),
        };
        let mut headers = match self.headers("GET").await {
            Ok(headers) => headers,
            Err(failure) => {
                tracing::warn!(upstream = %self.ctx.name, "no GET event stream: {}", failure.message);
                return;
            }
        };
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.remove(CONTENT_TYPE);
        let get = self.ctx.http.get(self.url.clone()).headers(headers);
        #[expect(
            clippy::disallowed_methods,
            reason = "the link's own I/O task: it ends when the link closes"
        )]
        let task = tokio::spawn(async move {
            match get.send().await {
                Ok(response) if response.status().is_success() => {
                    let _ = exchange.read_events(response, None).await;
                }
                Ok(response) => {
                    tracing::debug!(upstream = %exchange.ctx.name, status = %response.status(), "no GET event stream");
                }
                Err(e) => {
                    tracing::debug!(upstream = %exchange.ctx.name, "GET event stream failed: {e}")
                }
            }
        });
        *lock(&self.event_stream) = Some(task);
    }

    pub async fn close(&self) {
        if let Some(task) = lock(&self.event_stream).take() {
            task.abort();
        }
        self.closed.send_replace(true);
        self.pending.fail_all(&Failure::shut_down(format!(
            "upstream `{}` session was closed",
            self.ctx.name
        )));
        if lock(&self.session).id.is_some()
            && let Ok(headers) = self.headers("DELETE").await
        {
            let delete = self.ctx.http.delete(self.url.clone()).headers(headers);
            let _ = tokio::time::timeout(Duration::from_secs(2), delete.send()).await;
        }
    }
}

/// The state a background exchange needs.
struct Exchange {
    ctx: LinkContext,
    pending: Arc<Pending>,
    session: Arc<Mutex<Session>>,
}

impl Exchange {
    async fn request(self, post: reqwest::RequestBuilder, id: u64) {
        let name = self.ctx.name.clone();
        let fail = |message: String| {
            if let Some(reply) = self.pending.remove(id) {
                let _ = reply.send(Err(Failure::new(message)));
            }
        };
        let response = match post.send().await {
            Ok(r) => r,
            Err(e) => {
                let failure = Failure::new(format!("cannot reach upstream `{name}`: {e}"));
                self.pending.fail_all(&failure);
                return;
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND && lock(&self.session).id.is_some() {
            // The upstream forgot our session: the next request re-initializes.
            self.pending.fail_all(&Failure::new(format!(
                "upstream `{name}` ended the session"
            )));
            return;
        }
        if !status.is_success() {
            return fail(format!("upstream `{name}` answered HTTP {status}"));
        }
        if let Some(session_id) = response.headers().get(header::SESSION_ID) {
            let mut session = lock(&self.session);
            if session.id.is_none() {
                session.id = Some(session_id.clone());
            }
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let outcome = if is_sse {
            self.read_events(response, Some(id)).await
        } else {
            self.read_json(response).await
        };
        if let Err(why) = outcome {
            return fail(format!("upstream `{name}`: {why}"));
        }
        // The answer must have arrived by the end of the exchange.
        fail(format!(
            "upstream `{name}` closed the response without answering"
        ));
    }

    async fn read_json(&self, response: reqwest::Response) -> Result<(), String> {
        let limit = self.ctx.max_message_bytes;
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("response body failed: {e}"))?;
            if body.len() + chunk.len() > limit {
                return Err(format!("response exceeds the {limit}-byte limit"));
            }
            body.extend_from_slice(&chunk);
        }
        let message =
            Message::parse(&body).map_err(|e| format!("response is not JSON-RPC: {e}"))?;
        dispatch(&self.ctx, &self.pending, message, None);
        Ok(())
    }

    async fn read_events(
        &self,
        response: reqwest::Response,
        related: Option<u64>,
    ) -> Result<(), String> {
        let mut parser = sse::Parser::new(self.ctx.max_message_bytes);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("event stream failed: {e}"))?;
            for event in parser.feed(&chunk).map_err(|e| e.to_string())? {
                if event.event.as_deref().is_some_and(|e| e != "message") || event.data.is_empty() {
                    continue;
                }
                let message = Message::parse(event.data.as_bytes())
                    .map_err(|e| format!("event is not JSON-RPC: {e}"))?;
                let answered = matches!(&message, Message::Response(r) if r.id == related.map(RequestId::from));
                dispatch(&self.ctx, &self.pending, message, related);
                if answered {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
