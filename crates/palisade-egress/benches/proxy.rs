//! The proxy's added latency and a tunnel's throughput, against direct loopback connections measured in the same run; prints a table.
//!
//! `cargo bench -p palisade-egress --bench proxy` (a release build). Each
//! latency sample is one whole exchange on a new connection, as a sandboxed
//! client makes them: connect, request, read to the end.
#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "a benchmark program: a failure is a failed run"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use palisade_egress::rule::{FullRule, Ports};
use palisade_egress::{Attribution, Egress, Record, Recorder, RuleSpec, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const SAMPLES: usize = 2000;
const VOLUME: u64 = 4 << 30;

#[derive(Debug)]
struct Discard;

impl Recorder for Discard {
    fn record(&self, _: Record) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A server that reads a request (up to its blank line, or a ClientHello's
/// first record), then answers: a small HTTP response, or `VOLUME` bytes.
async fn server(tasks: &mut JoinSet<()>, bulk: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            connections.spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                loop {
                    let n = stream.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                    let hello_done = seen.first() == Some(&0x16)
                        && seen.len() >= 5
                        && seen.len() >= 5 + usize::from(u16::from_be_bytes([seen[3], seen[4]]));
                    if hello_done || seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                if bulk {
                    let chunk = vec![1u8; 256 * 1024];
                    let mut left = VOLUME;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        if stream.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                } else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                        .await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut bytes = Vec::new();
    connection.write_tls(&mut bytes).unwrap();
    bytes
}

/// One exchange: connect to `port`, send `request`, read to the end; returns the bytes read.
async fn exchange(port: u16, request: &[u8], skip_connect_answer: bool, after: &[u8]) -> u64 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(request).await.unwrap();
    if skip_connect_answer {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        stream.write_all(after).await.unwrap();
    }
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

async fn latencies(port: u16, request: &[u8], connect: bool, after: &[u8]) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES / 10 {
        exchange(port, request, connect, after).await;
    }
    for _ in 0..SAMPLES {
        let started = Instant::now();
        exchange(port, request, connect, after).await;
        samples.push(started.elapsed());
    }
    samples.sort();
    (samples[SAMPLES / 2], samples[SAMPLES * 99 / 100])
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut tasks = JoinSet::new();
    let http = server(&mut tasks, false).await;
    let bulk = server(&mut tasks, true).await;
    let rule = |port: u16| {
        RuleSpec::Full(FullRule {
            host: "api.test".into(),
            port: Ports::One(port),
            methods: vec![],
            paths: vec![],
            addresses: vec!["127.0.0.1".into()],
        })
    };
    let settings = Settings {
        allow: vec![rule(http), rule(bulk)],
        hosts: [("api.test".to_owned(), vec!["127.0.0.1".parse().unwrap()])].into(),
        limits: palisade_egress::LimitSettings {
            connections: u64::MAX,
            concurrent: u64::MAX,
            bytes: u64::MAX,
            ..palisade_egress::LimitSettings::default()
        },
    };
    let egress = Egress::new(&settings, Arc::new(Discard)).unwrap();
    let scope = egress.scope(Attribution::default(), None);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap().port();
    tasks.spawn(Arc::clone(&egress).serve_listener(listener, scope));
    let hello = client_hello();

    let direct_http = latencies(
        http,
        b"GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n",
        false,
        b"",
    )
    .await;
    let proxied_http = latencies(
        proxy,
        format!("GET http://api.test:{http}/x HTTP/1.1\r\nHost: api.test:{http}\r\n\r\n")
            .as_bytes(),
        false,
        b"",
    )
    .await;
    let direct_tls = latencies(http, &hello, false, b"").await;
    let connect = format!("CONNECT api.test:{http} HTTP/1.1\r\nHost: api.test:{http}\r\n\r\n");
    let proxied_tls = latencies(proxy, connect.as_bytes(), true, &hello).await;

    let started = Instant::now();
    let direct_bytes = exchange(bulk, &hello, false, b"").await;
    let direct_rate = direct_bytes as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let connect = format!("CONNECT api.test:{bulk} HTTP/1.1\r\n\r\n");
    let tunnel_bytes = exchange(proxy, connect.as_bytes(), true, &hello).await;
    let tunnel_rate = tunnel_bytes as f64 / started.elapsed().as_secs_f64();
    assert_eq!(tunnel_bytes, VOLUME);

    let gib = |rate: f64| format!("{:.2} GiB/s", rate / f64::from(1u32 << 30));
    println!(
        "| exchange ({SAMPLES} each, new connection) | direct p50 | proxy p50 | added p50 | direct p99 | proxy p99 |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, direct, proxied) in [
        ("plain HTTP GET", direct_http, proxied_http),
        ("CONNECT + ClientHello", direct_tls, proxied_tls),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            micros(direct.0),
            micros(proxied.0),
            micros(proxied.0.saturating_sub(direct.0)),
            micros(direct.1),
            micros(proxied.1)
        );
    }
    println!();
    println!(
        "| {} GiB one way | direct | through a tunnel | ratio |",
        VOLUME >> 30
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| throughput | {} | {} | {:.2} |",
        gib(direct_rate),
        gib(tunnel_rate),
        tunnel_rate / direct_rate
    );
}
