//! The proxy against real loopback sockets: what it forwards, what it refuses and with which status and record, its limits, and that it keeps no descriptor.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test: a panic is a failed check"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use palisade_egress::rule::{FullRule, Ports};
use palisade_egress::{
    Attribution, Egress, LimitSettings, Outcome, Record, Recorder, RefusalCode, RuleSpec, Rules,
    Settings,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

#[derive(Debug, Default)]
struct Records(Mutex<Vec<Record>>);

impl Recorder for Records {
    fn record(&self, record: Record) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push(record);
        Box::pin(async {})
    }
}

/// A destination that remembers what it received and answers `answer`
/// (or echoes, when `answer` is empty) until the client closes.
struct Destination {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
    _tasks: JoinSet<()>,
}

async fn destination(answer: &'static [u8]) -> Destination {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    let seen = Arc::clone(&received);
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = Arc::clone(&seen);
            connections.spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut answered = false;
                loop {
                    let n = match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    seen.lock().unwrap().extend_from_slice(&buffer[..n]);
                    if answer.is_empty() {
                        if stream.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    } else if !answered {
                        answered = true;
                        let _ = stream.write_all(answer).await;
                        let _ = stream.shutdown().await;
                    }
                }
            });
        }
    });
    Destination {
        port,
        received,
        _tasks: tasks,
    }
}

struct Proxy {
    address: SocketAddr,
    records: Arc<Records>,
    _tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(
        allow: Vec<RuleSpec>,
        own: Option<Vec<RuleSpec>>,
        limits: LimitSettings,
    ) -> Self {
        let hosts: BTreeMap<String, Vec<IpAddr>> = [
            ("api.test", "127.0.0.1"),
            ("evil.test", "127.0.0.1"),
            ("inside.test", "10.1.2.3"),
            ("metadata.test", "169.254.169.254"),
            ("mapped.test", "::ffff:127.0.0.1"),
        ]
        .into_iter()
        .map(|(name, address)| (name.to_owned(), vec![address.parse().unwrap()]))
        .collect();
        let settings = Settings {
            allow,
            hosts,
            limits,
        };
        let records = Arc::new(Records::default());
        let egress = Egress::new(&settings, Arc::clone(&records) as Arc<dyn Recorder>).unwrap();
        let own = own.map(|specs| Rules::parse(&specs, "sandbox.profiles.test.egress").unwrap());
        let scope = egress.scope(
            Attribution {
                origin: "sandbox",
                sandbox: Some("1".into()),
                ..Attribution::default()
            },
            own,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        tasks.spawn(egress.serve_listener(listener, scope));
        Self {
            address,
            records,
            _tasks: tasks,
        }
    }

    /// Sends `request` on a new connection and reads what comes back until the proxy closes.
    async fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.address).await.unwrap();
        stream.write_all(request).await.unwrap();
        // Half-closed: a tunnel ends when the destination has echoed all.
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap_or_default();
        answer
    }

    async fn status(&self, request: &str) -> String {
        let answer = self.exchange(request.as_bytes()).await;
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// The record of the `n`th connection, waiting for it to end.
    async fn record(&self, n: usize) -> Record {
        for _ in 0..200 {
            if let Some(record) = self.records.0.lock().unwrap().get(n) {
                return record.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no record {n}: {:?}", self.records.0.lock().unwrap());
    }
}

fn short(rule: &str) -> RuleSpec {
    RuleSpec::Short(rule.into())
}

fn local(host: &str, port: u16) -> RuleSpec {
    RuleSpec::Full(FullRule {
        host: host.into(),
        port: Ports::One(port),
        methods: vec![],
        paths: vec![],
        addresses: vec!["127.0.0.0/8".into()],
    })
}

fn refusal(record: &Record) -> RefusalCode {
    match &record.outcome {
        Outcome::Refused(refusal) => refusal.code,
        Outcome::Allowed => panic!("allowed: {record:?}"),
    }
}

/// A ClientHello as rustls writes it for `name` (no SNI for `None`).
fn client_hello(name: Option<&str>) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server = match name {
        Some(name) => rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap(),
        None => {
            config.enable_sni = false;
            rustls::pki_types::ServerName::try_from("unnamed.test".to_owned()).unwrap()
        }
    };
    let mut connection = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let mut bytes = Vec::new();
    connection.write_tls(&mut bytes).unwrap();
    bytes
}

#[tokio::test]
async fn plain_http_is_forwarded_in_origin_form_without_hop_headers() {
    let api = destination(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").await;
    let proxy = Proxy::start(
        vec![local("api.test", api.port)],
        None,
        LimitSettings::default(),
    )
    .await;
    let request = format!(
        "POST http://API.test.:{port}/v1/items?x=1 HTTP/1.1\r\nHost: api.test:{port}\r\nProxy-Authorization: Basic c2VjcmV0\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: yes\r\nContent-Length: 4\r\n\r\nbody",
        port = api.port
    );
    let answer = proxy.exchange(request.as_bytes()).await;
    assert_eq!(answer, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
    let forwarded = String::from_utf8(api.received.lock().unwrap().clone()).unwrap();
    assert_eq!(
        forwarded,
        format!(
            "POST /v1/items?x=1 HTTP/1.1\r\nHost: api.test:{}\r\nX-Kept: yes\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
            api.port
        )
    );
    let record = proxy.record(0).await;
    assert_eq!(record.outcome, Outcome::Allowed);
    assert_eq!(
        (record.kind.as_str(), record.host.as_str()),
        ("POST", "api.test")
    );
    assert_eq!(
        record.address,
        Some(SocketAddr::from(([127, 0, 0, 1], api.port)))
    );
    assert_eq!(record.sent, forwarded.len() as u64);
    assert_eq!(record.received, answer.len() as u64);
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["verdict"], "allowed", "{json}");
    assert_eq!(json["who"]["origin"], "sandbox", "{json}");
}

#[tokio::test]
async fn hostile_requests_are_refused_with_a_status_and_a_record_and_reach_nothing() {
    let api = destination(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    let p = api.port;
    let allow = vec![
        local("api.test", p),
        short(&format!("127.0.0.1:{p}")),
        short(&format!("inside.test:{p}")),
        short(&format!("metadata.test:{p}")),
        short(&format!("mapped.test:{p}")),
        RuleSpec::Full(FullRule {
            host: "api.test".into(),
            port: Ports::One(p + 1),
            methods: vec!["GET".into()],
            paths: vec!["/v1/".into()],
            addresses: vec!["127.0.0.0/8".into()],
        }),
    ];
    let limits = LimitSettings {
        max_header_bytes: 1024,
        ..LimitSettings::default()
    };
    let proxy = Proxy::start(allow, None, limits).await;
    let cases: Vec<(String, &str, RefusalCode)> = vec![
        (
            format!("GET /index HTTP/1.1\r\nHost: api.test:{p}\r\n\r\n"),
            "400",
            RefusalCode::Malformed,
        ),
        (
            format!("GET http://evil.test:{p}/ HTTP/1.1\r\n\r\n"),
            "403",
            RefusalCode::NotAllowlisted,
        ),
        (
            format!("GET http://api.test:{p}@evil.test:{p}/ HTTP/1.1\r\n\r\n"),
            "400",
            RefusalCode::Malformed,
        ),
        (
            format!("CONNECT api.test:{p}@evil.test:{p} HTTP/1.1\r\n\r\n"),
            "400",
            RefusalCode::Malformed,
        ),
        (
            format!("GET http://api.test:{p}/ HTTP/1.1\r\nHost: evil.test:{p}\r\n\r\n"),
            "400",
            RefusalCode::Malformed,
        ),
        (
            format!("GET https://api.test:{p}/ HTTP/1.1\r\n\r\n"),
            "400",
            RefusalCode::Malformed,
        ),
        (
            format!(
                "POST http://api.test:{p}/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            "411",
            RefusalCode::Malformed,
        ),
        (
            format!(
                "POST http://api.test:{p}/ HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nbody"
            ),
            "400",
            RefusalCode::Malformed,
        ),
        (
            format!("GET http://api.test:{p}/ HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            "400",
            RefusalCode::Malformed,
        ),
        // A name that resolves into a private range, or to the metadata
        // service, under a rule that names no such address.
        (
            format!("CONNECT inside.test:{p} HTTP/1.1\r\n\r\n"),
            "403",
            RefusalCode::AddressNotAllowed,
        ),
        (
            format!("CONNECT metadata.test:{p} HTTP/1.1\r\n\r\n"),
            "403",
            RefusalCode::AddressNotAllowed,
        ),
        (
            format!("CONNECT mapped.test:{p} HTTP/1.1\r\n\r\n"),
            "403",
            RefusalCode::AddressNotAllowed,
        ),
        // An address where only names are allowed (another port's rule is a name).
        (
            format!("CONNECT 127.0.0.2:{p} HTTP/1.1\r\n\r\n"),
            "403",
            RefusalCode::NotAllowlisted,
        ),
        // Methods and paths hold plain HTTP to them; a tunnel cannot be.
        (
            format!("CONNECT api.test:{} HTTP/1.1\r\n\r\n", p + 1),
            "403",
            RefusalCode::MethodOrPath,
        ),
        (
            format!("POST http://api.test:{}/v1/x HTTP/1.1\r\n\r\n", p + 1),
            "403",
            RefusalCode::MethodOrPath,
        ),
        (
            format!("GET http://api.test:{}/v1/../admin HTTP/1.1\r\n\r\n", p + 1),
            "403",
            RefusalCode::MethodOrPath,
        ),
        (
            format!(
                "GET http://api.test:{}/v1/%2e%2e/admin HTTP/1.1\r\n\r\n",
                p + 1
            ),
            "403",
            RefusalCode::MethodOrPath,
        ),
        (
            "\u{16}\u{3}\u{1}\u{0}\u{4}garbage\r\n\r\n".into(),
            "400",
            RefusalCode::Malformed,
        ),
        (
            format!(
                "GET http://api.test:{p}/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(2000)
            ),
            "431",
            RefusalCode::Limit,
        ),
    ];
    for (n, (request, status, code)) in cases.iter().enumerate() {
        let line = proxy.status(request).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?}: {line}"
        );
        let record = proxy.record(n).await;
        assert_eq!(refusal(&record), *code, "{request:?}: {record:?}");
    }
    assert!(
        api.received.lock().unwrap().is_empty(),
        "a refused request reached the destination"
    );
    let json = serde_json::to_value(proxy.record(1).await).unwrap();
    assert_eq!(
        (json["verdict"].as_str(), json["code"].as_str()),
        (Some("refused"), Some("not-allowlisted")),
        "{json}"
    );
    assert!(
        json["detail"].as_str().unwrap().contains("evil.test"),
        "{json}"
    );
}

#[tokio::test]
async fn names_and_addresses_in_every_notation_reach_the_rule_that_names_them() {
    let echo = destination(b"").await;
    let p = echo.port;
    let proxy = Proxy::start(
        vec![local("api.test", p), short(&format!("127.0.0.1:{p}"))],
        None,
        LimitSettings::default(),
    )
    .await;
    for target in [
        "API.Test.",
        "api.test",
        "127.0.0.1",
        "2130706433",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
    ] {
        let line = proxy
            .status(&format!("CONNECT {target}:{p} HTTP/1.1\r\n\r\n"))
            .await;
        assert_eq!(line, "HTTP/1.1 200 Connection established", "{target}");
    }
}

#[tokio::test]
async fn a_tunnel_carries_only_a_client_hello_that_names_its_host() {
    let echo = destination(b"").await;
    let p = echo.port;
    let proxy = Proxy::start(vec![local("api.test", p)], None, LimitSettings::default()).await;
    let connect = format!("CONNECT api.test:{p} HTTP/1.1\r\n\r\n");
    let tunnel = |hello: Vec<u8>| {
        let mut bytes = connect.clone().into_bytes();
        bytes.extend_from_slice(&hello);
        bytes
    };
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n".as_slice();

    // Named as the CONNECT named it: the hello reaches the destination, whose echo comes back.
    let hello = client_hello(Some("api.test"));
    let answer = proxy.exchange(&tunnel(hello.clone())).await;
    assert_eq!(&answer[..established.len()], established);
    assert_eq!(&answer[established.len()..], hello.as_slice());
    assert_eq!(proxy.record(0).await.outcome, Outcome::Allowed);

    // Domain fronting, no SNI, and not TLS at all: a TLS alert, nothing forwarded.
    let before = echo.received.lock().unwrap().len();
    for (n, (hello, code)) in [
        (client_hello(Some("evil.test")), RefusalCode::SniMismatch),
        (client_hello(None), RefusalCode::SniMismatch),
        (
            b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
            RefusalCode::NotTls,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = proxy.exchange(&tunnel(hello)).await;
        assert_eq!(&answer[..established.len()], established);
        let alert = &answer[established.len()..];
        assert_eq!(alert.first(), Some(&0x15), "a TLS alert record: {alert:?}");
        assert_eq!(refusal(&proxy.record(n + 1).await), code);
    }
    assert_eq!(
        echo.received.lock().unwrap().len(),
        before,
        "a refused tunnel forwarded bytes"
    );
}

#[tokio::test]
async fn a_sandbox_profile_narrows_the_environment() {
    let echo = destination(b"").await;
    let p = echo.port;
    let proxy = Proxy::start(
        vec![local("api.test", p), local("evil.test", p)],
        Some(vec![local("api.test", p)]),
        LimitSettings::default(),
    )
    .await;
    assert_eq!(
        proxy
            .status(&format!("CONNECT api.test:{p} HTTP/1.1\r\n\r\n"))
            .await,
        "HTTP/1.1 200 Connection established"
    );
    let line = proxy
        .status(&format!("CONNECT evil.test:{p} HTTP/1.1\r\n\r\n"))
        .await;
    assert_eq!(line, "HTTP/1.1 403 Forbidden");
    let Outcome::Refused(refused) = proxy.record(1).await.outcome else {
        panic!("allowed")
    };
    assert!(
        refused.detail.contains("sandbox profile"),
        "{}",
        refused.detail
    );
}

#[tokio::test]
async fn limits_end_slow_clients_extra_connections_and_byte_floods() {
    let echo = destination(b"").await;
    let p = echo.port;
    let limits = LimitSettings {
        connections: 3,
        bytes: 256 * 1024,
        header_timeout: Duration::from_millis(300),
        ..LimitSettings::default()
    };
    let proxy = Proxy::start(vec![local("api.test", p)], None, limits).await;
    // A slow client: half a head, then nothing.
    let mut slow = TcpStream::connect(proxy.address).await.unwrap();
    slow.write_all(b"CONNECT api.te").await.unwrap();
    let mut answer = Vec::new();
    slow.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(refusal(&proxy.record(0).await), RefusalCode::Limit);

    // A flood through an allowed tunnel stops at the execution's byte limit.
    let mut tunnel = TcpStream::connect(proxy.address).await.unwrap();
    let mut request = format!("CONNECT api.test:{p} HTTP/1.1\r\n\r\n").into_bytes();
    request.extend_from_slice(&client_hello(Some("api.test")));
    tunnel.write_all(&request).await.unwrap();
    let (mut read, mut write) = tunnel.into_split();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..64 {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut echoed = Vec::new();
    let _ = read.read_to_end(&mut echoed).await;
    assert!(
        echoed.len() < 512 * 1024,
        "{} bytes came back",
        echoed.len()
    );
    let record = proxy.record(1).await;
    assert_eq!(record.outcome, Outcome::Allowed);
    assert!(
        record
            .ended
            .as_deref()
            .unwrap_or_default()
            .contains("byte limit"),
        "{record:?}"
    );
    assert!(record.sent + record.received <= 256 * 1024, "{record:?}");

    // The execution's third connection is its last.
    assert_eq!(
        proxy
            .status(&format!("CONNECT api.test:{p} HTTP/1.1\r\n\r\n"))
            .await,
        "HTTP/1.1 200 Connection established"
    );
    assert!(
        proxy
            .status(&format!("CONNECT api.test:{p} HTTP/1.1\r\n\r\n"))
            .await
            .starts_with("HTTP/1.1 429 ")
    );
}

#[tokio::test]
async fn the_proxy_keeps_no_descriptor_after_its_connections_end() {
    let echo = destination(b"").await;
    let p = echo.port;
    let proxy = Proxy::start(vec![local("api.test", p)], None, LimitSettings::default()).await;
    let descriptors = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // Warm up: the runtime's own descriptors settle.
    proxy
        .status(&format!("CONNECT api.test:{p} HTTP/1.1\r\n\r\n"))
        .await;
    proxy.record(0).await;
    let before = descriptors();
    let mut hello = format!("CONNECT api.test:{p} HTTP/1.1\r\n\r\n").into_bytes();
    hello.extend_from_slice(&client_hello(Some("api.test")));
    for round in 0..20 {
        proxy.exchange(&hello).await;
        proxy
            .status(&format!("CONNECT evil.test:{p} HTTP/1.1\r\n\r\n"))
            .await;
        proxy.exchange(b"\x00\x01garbage\r\n\r\n").await;
        proxy.record(1 + round * 3 + 2).await;
    }
    let mut after = descriptors();
    for _ in 0..100 {
        if after <= before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = descriptors();
    }
    assert!(
        after <= before,
        "{before} descriptors before, {after} after"
    );
}
