//! The built-in `http_request` tool: the agent names a secret with `{{secret:NAME}}`, the broker sends it.
//!
//! A placeholder is substituted only as the whole value of the header (or
//! query parameter) its binding names, only toward its bound destination,
//! only for an upstream the binding lists. A placeholder anywhere else (a
//! header name, the host, the path, the body, half a header value) refuses
//! the call: it never goes out literally and is never guessed at. Redirects
//! are not followed. The response is capped in size, withheld when it is
//! not text, and withheld when it reflects an injected value.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use url::Url;

use crate::binding::SecretName;
use crate::broker::{Broker, Refusal};
use crate::redact::exact::Exact;

const OPEN: &str = "{{secret:";
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// Headers the agent may not set: they belong to the connection, or would
/// let a request pose as something else.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
];

/// The tool's definition, as `tools/list` shows it.
pub fn tool_definition() -> Value {
    json!({
        "name": "http_request",
        "title": "HTTP request (secrets brokered by palisade)",
        "description": "Sends one HTTP request and returns the status, headers and body. To authenticate, write {{secret:NAME}} as the whole value of the header (or query parameter) the secret is bound to; palisade inserts the secret only when the request goes to that secret's bound destination. You never see secret values.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": METHODS, "default": "GET"},
                "url": {"type": "string", "description": "an absolute http(s) URL"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"type": "string"}
            },
            "required": ["url"],
            "additionalProperties": false
        },
        "annotations": {"openWorldHint": true}
    })
}

/// Where a placeholder sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Header(String),
    Query(String),
}

impl Place {
    pub fn describe(&self) -> String {
        match self {
            Place::Header(name) => format!("header `{name}`"),
            Place::Query(name) => format!("query parameter `{name}`"),
        }
    }
}

/// One placeholder in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceholderUse {
    pub secret: SecretName,
    pub place: Place,
}

/// A parsed `http_request` call, placeholders still in place.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub placeholders: Vec<PlaceholderUse>,
}

/// The secret a string names when it is exactly `{{secret:NAME}}`, or
/// `Bearer {{secret:NAME}}`-like: one placeholder at the end after a short
/// scheme word. Anything else holding `{{secret:` is an error.
fn whole_placeholder(text: &str) -> Result<Option<(Option<String>, SecretName)>, String> {
    let Some(open) = text.find(OPEN) else {
        return Ok(None);
    };
    let rest = text.get(open + OPEN.len()..).unwrap_or_default();
    let Some(close) = rest.find("}}") else {
        return Err("an unterminated `{{secret:` placeholder".into());
    };
    let name = rest.get(..close).unwrap_or_default();
    let after = rest.get(close + 2..).unwrap_or_default();
    let before = text.get(..open).unwrap_or_default();
    let name = SecretName::parse(name)?;
    if !after.is_empty() || after.contains(OPEN) {
        return Err("a placeholder must end the value".into());
    }
    let prefix = match before {
        "" => None,
        word if word.ends_with(' ')
            && word.trim_end().len() <= 16
            && word
                .trim_end()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Some(word.to_owned())
        }
        _ => return Err(
            "a placeholder must be the whole value, or follow one scheme word such as `Bearer `"
                .into(),
        ),
    };
    Ok(Some((prefix, name)))
}

/// The JSON pointer of the first string (or key) holding a placeholder.
pub fn find_placeholder(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> Option<String> {
        match value {
            Value::String(s) => s.contains(OPEN).then(|| display(path)),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                let found = walk(item, path);
                path.truncate(len);
                found
            }),
            Value::Object(map) => map.iter().find_map(|(key, item)| {
                let len = path.len();
                path.push('/');
                path.push_str(key);
                let found = if key.contains(OPEN) {
                    Some(display(path))
                } else {
                    walk(item, path)
                };
                path.truncate(len);
                found
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => None,
        }
    }
    fn display(path: &str) -> String {
        if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        }
    }
    walk(value, &mut String::new())
}

impl Request {
    pub fn parse(arguments: &Value) -> Result<Self, String> {
        let Some(args) = arguments.as_object() else {
            return Err("`http_request` takes an object of method, url, headers, body".into());
        };
        for key in args.keys() {
            if !matches!(key.as_str(), "method" | "url" | "headers" | "body") {
                return Err(format!(
                    "`http_request`: unknown argument `{}`",
                    key.escape_debug()
                ));
            }
        }
        let method = match args.get("method") {
            None => "GET".to_owned(),
            Some(Value::String(m)) if METHODS.contains(&m.to_ascii_uppercase().as_str()) => {
                m.to_ascii_uppercase()
            }
            Some(other) => {
                return Err(format!(
                    "`http_request`: `method` must be one of {}, got {other}",
                    METHODS.join(", ")
                ));
            }
        };
        let Some(Value::String(url_text)) = args.get("url") else {
            return Err("`http_request`: `url` (a string) is required".into());
        };
        if url_text.contains(OPEN) {
            // The query is the one part of a URL a secret may go in.
            let (base, _) = url_text.split_once('?').unwrap_or((url_text, ""));
            if base.contains(OPEN) {
                return Err("`http_request`: a `{{secret:…}}` placeholder in the URL's scheme, host or path is refused; only a whole query parameter value may be one".into());
            }
        }
        let url =
            Url::parse(url_text).map_err(|e| format!("`http_request`: invalid `url`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`http_request`: scheme `{}` is not http or https",
                url.scheme()
            ));
        }
        if url.fragment().is_some_and(|f| f.contains("secret:")) {
            return Err("`http_request`: a placeholder in the URL fragment is refused".into());
        }
        let mut placeholders = Vec::new();
        for (name, value) in url.query_pairs() {
            if name.contains(OPEN) {
                return Err(
                    "`http_request`: a placeholder in a query parameter name is refused".into(),
                );
            }
            match whole_placeholder(&value) {
                Ok(None) => {}
                Ok(Some((None, secret))) => placeholders.push(PlaceholderUse {
                    secret,
                    place: Place::Query(name.into_owned()),
                }),
                Ok(Some((Some(_), _))) | Err(_) => {
                    return Err(format!(
                        "`http_request`: query parameter `{}`: a placeholder must be its whole value",
                        name.escape_debug()
                    ));
                }
            }
        }
        let mut headers = Vec::new();
        match args.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    if name.contains(OPEN) {
                        return Err(
                            "`http_request`: a placeholder in a header name is refused".into()
                        );
                    }
                    if HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return Err(format!(
                            "`http_request`: invalid header name `{}`",
                            name.escape_debug()
                        ));
                    }
                    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                        return Err(format!(
                            "`http_request`: header `{name}` is set by palisade, not by the agent"
                        ));
                    }
                    let Value::String(value) = value else {
                        return Err(format!("`http_request`: header `{name}` must be a string"));
                    };
                    match whole_placeholder(value) {
                        Ok(None) => {}
                        Ok(Some((_, secret))) => placeholders.push(PlaceholderUse {
                            secret,
                            place: Place::Header(name.clone()),
                        }),
                        Err(why) => return Err(format!("`http_request`: header `{name}`: {why}")),
                    }
                    headers.push((name.clone(), value.clone()));
                }
            }
            Some(_) => return Err("`http_request`: `headers` must be an object of strings".into()),
        }
        let body = match args.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(body)) if body.contains(OPEN) => {
                return Err("`http_request`: a `{{secret:…}}` placeholder in the body is refused; secrets go in their bound header or query parameter".into());
            }
            Some(Value::String(body)) => Some(body.clone()),
            Some(_) => return Err("`http_request`: `body` must be a string".into()),
        };
        Ok(Self {
            method,
            url,
            headers,
            body,
            placeholders,
        })
    }
}

/// The egress refusal behind a failed request (the resolver's, or a
/// redirect's), if that is why it failed.
fn egress_refusal(error: &reqwest::Error) -> Option<palisade_egress::Refusal> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<palisade_egress::Refusal>() {
            return Some(refusal.clone());
        }
        source = e.source();
    }
    None
}

/// A tool result that is an error the agent reads.
fn tool_error(text: String) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

impl Broker {
    /// Runs one `http_request` call for `upstream`, checking everything
    /// again (the pipeline's stage did too): what is sent is what was judged.
    /// `who`: the call its connection is attributed to in the egress record.
    pub async fn http_request(
        &self,
        upstream: &str,
        arguments: &Value,
        who: palisade_egress::Attribution,
    ) -> Value {
        let request = match Request::parse(arguments) {
            Ok(request) => request,
            Err(why) => return tool_error(why),
        };
        let plan = match self.plan(upstream, &request).await {
            Ok(plan) => plan,
            Err(Refusal { detail, .. }) => return tool_error(detail),
        };
        let secret_of = |text: &str| -> Option<&crate::value::SecretValue> {
            let (_, name) = whole_placeholder(text).ok().flatten()?;
            plan.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
        };
        let mut url = request.url.clone();
        if request
            .placeholders
            .iter()
            .any(|p| matches!(p.place, Place::Query(_)))
        {
            let pairs: Vec<(String, String)> = request
                .url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut query = url.query_pairs_mut();
            query.clear();
            for (k, v) in &pairs {
                match secret_of(v) {
                    Some(secret) => query.append_pair(k, secret.expose()),
                    None => query.append_pair(k, v),
                };
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                return tool_error(format!("invalid header name `{}`", name.escape_debug()));
            };
            let header_value = match (secret_of(value), whole_placeholder(value).ok().flatten()) {
                (Some(_), Some((_, secret))) => {
                    let format = self.format_for(&secret, value);
                    match self
                        .header(
                            upstream,
                            &request.url,
                            &request.method,
                            name,
                            &secret,
                            Some(&format),
                        )
                        .await
                    {
                        Ok(v) => v,
                        Err(refusal) => return tool_error(refusal.detail),
                    }
                }
                _ => match HeaderValue::from_str(value) {
                    Ok(v) => v,
                    Err(_) => return tool_error(format!("invalid value for header `{name}`")),
                },
            };
            headers.append(header, header_value);
        }
        let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => return tool_error(format!("invalid method `{}`", request.method)),
        };
        // The environment's egress rules hold for brokered calls too; the
        // client's resolver checks the addresses it connects to.
        let scope = self.egress.scope(who, None);
        let started = std::time::Instant::now();
        let record = |address, outcome, sent: u64, received: u64| palisade_egress::Record {
            who: scope.who().clone(),
            kind: request.method.clone(),
            host: request.url.host_str().unwrap_or_default().to_owned(),
            port: request.url.port_or_known_default().unwrap_or_default(),
            address,
            outcome,
            sent,
            received,
            duration: started.elapsed(),
            ended: None,
        };
        if let Err(refusal) = self.egress.check_url(&scope, &request.method, &url) {
            let detail = refusal.detail.clone();
            self.egress
                .report(record(
                    None,
                    palisade_egress::Outcome::Refused(refusal),
                    0,
                    0,
                ))
                .await;
            return tool_error(format!("palisade's egress refused the request: {detail}"));
        }
        let sent = request.body.as_ref().map_or(0, |b| b.len() as u64);
        let mut builder = self.http.request(method, url).headers(headers);
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = match builder.send().await {
            Ok(r) => {
                let address = r.remote_addr();
                let received = r.content_length().unwrap_or(0);
                self.egress
                    .report(record(
                        address,
                        palisade_egress::Outcome::Allowed,
                        sent,
                        received,
                    ))
                    .await;
                r
            }
            Err(e) => {
                let refused = egress_refusal(&e);
                let outcome =
                    palisade_egress::Outcome::Refused(refused.clone().unwrap_or_else(|| {
                        palisade_egress::Refusal::new(
                            palisade_egress::RefusalCode::Unreachable,
                            e.to_string(),
                        )
                    }));
                self.egress.report(record(None, outcome, 0, 0)).await;
                if let Some(refusal) = refused {
                    return tool_error(format!(
                        "palisade's egress refused the request: {}",
                        refusal.detail
                    ));
                }
                let what = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "failed".to_owned()
                };
                return tool_error(format!(
                    "the request to `{}` {what}",
                    request.url.host_str().unwrap_or("?")
                ));
            }
        };
        self.answer(response, &plan.values).await
    }

    /// The format of a header value: the binding's, unless the agent wrote
    /// its own scheme word before the placeholder.
    fn format_for(&self, secret: &SecretName, value: &str) -> String {
        match whole_placeholder(value) {
            Ok(Some((Some(prefix), _))) => format!("{prefix}{{}}"),
            Ok(Some((None, _))) | Ok(None) | Err(_) => self
                .bindings
                .get(secret)
                .and_then(|b| match &b.placement {
                    crate::binding::Placement::Header { format, .. } => Some(format.clone()),
                    crate::binding::Placement::Query { .. }
                    | crate::binding::Placement::Env { .. } => None,
                })
                .unwrap_or_else(|| "{}".into()),
        }
    }

    async fn answer(
        &self,
        response: reqwest::Response,
        injected: &[(SecretName, crate::value::SecretValue)],
    ) -> Value {
        let status = response.status();
        let mut header_map = Map::new();
        for (name, value) in response.headers() {
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            header_map.insert(name.as_str().to_owned(), Value::String(text));
        }
        let limit = self.max_response_bytes;
        let mut body = Vec::new();
        let mut truncated = false;
        let mut stream = response.bytes_stream();
        let read = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|_| ())?;
                let room = limit.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(chunk.get(..room).unwrap_or_default());
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<(), ()>(())
        })
        .await;
        if !matches!(read, Ok(Ok(()))) {
            return tool_error(format!(
                "the response (status {}) broke off or timed out",
                status.as_u16()
            ));
        }
        let text = match String::from_utf8(body) {
            Ok(text) => text,
            Err(e) if truncated && e.utf8_error().error_len().is_none() => {
                // Cut inside a character by the cap: keep what is whole.
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
            Err(e) => {
                return tool_error(format!(
                    "the response (status {}) is {} bytes of binary data; palisade returns text only",
                    status.as_u16(),
                    e.as_bytes().len()
                ));
            }
        };
        // Reflection: a server that echoes what it was sent would hand the
        // injected value straight to the model. The redactor would replace
        // it anyway; this says so and withholds the whole answer.
        let reflected = Exact::build(injected);
        let headers_text = Value::Object(header_map.clone()).to_string();
        if let Some(hit) = reflected
            .find(&text)
            .into_iter()
            .chain(reflected.find(&headers_text))
            .next()
        {
            let name = reflected.name(hit.secret).map_or("?", |n| n.as_str());
            return tool_error(format!(
                "the response (status {}) contains the injected secret `{name}` ({}); palisade withheld it",
                status.as_u16(),
                hit.encoding.as_str()
            ));
        }
        let summary = format!(
            "HTTP {}{}\n\n{}",
            status.as_u16(),
            if truncated {
                format!(" (body cut at {limit} bytes)")
            } else {
                String::new()
            },
            text
        );
        json!({
            "content": [{"type": "text", "text": summary}],
            "structuredContent": {
                "status": status.as_u16(),
                "headers": header_map,
                "body": text,
                "truncated": truncated,
            },
            "isError": status.is_client_error() || status.is_server_error(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: Value) -> Result<Request, String> {
        Request::parse(&args)
    }

    #[test]
    fn placeholders_are_found_where_they_may_be() {
        let r = parse(json!({
            "url": "https://api.test/v1/x?key={{secret:maps}}&q=1",
            "headers": {"Authorization": "Bearer {{secret:tickets}}", "Accept": "text/plain"},
        }))
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.placeholders,
            [
                PlaceholderUse {
                    secret: SecretName::parse("maps").unwrap(),
                    place: Place::Query("key".into())
                },
                PlaceholderUse {
                    secret: SecretName::parse("tickets").unwrap(),
                    place: Place::Header("Authorization".into())
                },
            ]
        );
    }

    #[test]
    fn placeholders_elsewhere_are_refused() {
        let refused = [
            json!({"url": "https://{{secret:t}}.evil.test/"}),
            json!({"url": "https://api.test/{{secret:t}}"}),
            json!({"url": "https://api.test/?{{secret:t}}=1"}),
            json!({"url": "https://api.test/?k=x{{secret:t}}"}),
            json!({"url": "https://api.test/", "headers": {"{{secret:t}}": "x"}}),
            json!({"url": "https://api.test/", "headers": {"X-A": "a {{secret:t}} b"}}),
            json!({"url": "https://api.test/", "headers": {"X-A": "{{secret:t}}{{secret:u}}"}}),
            json!({"url": "https://api.test/", "headers": {"X-A": "{{secret:T!}}"}}),
            json!({"url": "https://api.test/", "headers": {"X-A": "{{secret:t"}}),
            json!({"url": "https://api.test/", "body": "{\"k\": \"{{secret:t}}\"}"}),
            json!({"url": "https://api.test/", "headers": {"Host": "evil.test"}}),
            json!({"url": "file:///etc/passwd"}),
            json!({"url": "https://api.test/", "method": "TRACE"}),
            json!({"url": "https://api.test/", "extra": 1}),
            json!("https://api.test/"),
        ];
        for args in refused {
            assert!(parse(args.clone()).is_err(), "{args}");
        }
    }

    #[test]
    fn placeholders_are_found_anywhere_in_other_tools_arguments() {
        assert_eq!(
            find_placeholder(&json!({"a": [1, {"b": "x{{secret:t}}"}]})),
            Some("/a/1/b".into())
        );
        assert_eq!(
            find_placeholder(&json!({"{{secret:t}}": 1})),
            Some("/{{secret:t}}".into())
        );
        assert_eq!(find_placeholder(&json!({"a": "{{secret"})), None);
    }
}
