//! Runs `mcp-load` against `fast-upstream` over both transports: the tools work together (no timings are checked).
#![expect(
    clippy::disallowed_methods,
    reason = "the smoke test runs the bench tools as processes"
)]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test helper fails its test by panicking"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const FAST: &str = env!("CARGO_BIN_EXE_fast-upstream");
const LOAD: &str = env!("CARGO_BIN_EXE_mcp-load");

/// Kills the HTTP upstream when the test ends, passed or not.
struct Upstream(Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_upstream() -> (Upstream, String) {
    let mut child = Command::new(FAST)
        .args(["http", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (Upstream(child), url)
}

fn load(args: &[&str]) -> (serde_json::Value, Output) {
    let output = Command::new(LOAD).args(args).output().unwrap();
    let summary = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&output.stderr));
    });
    (summary, output)
}

#[test]
fn http_calls_succeed_and_an_unknown_tool_fails() {
    let (_upstream, url) = http_upstream();
    let common = [
        "http",
        "--url",
        url.as_str(),
        "--calls",
        "200",
        "--warmup",
        "10",
    ];
    for concurrency in ["1", "8"] {
        let args = [
            &common[..],
            &["--concurrency", concurrency, "--threads", "2"],
        ]
        .concat();
        let (summary, output) = load(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(summary["calls"], 200);
        assert_eq!(summary["errors"], 0);
        assert!(summary["p99_us"].as_f64().unwrap() >= summary["p50_us"].as_f64().unwrap());
    }
    let (summary, output) = load(&[&common[..], &["--tool", "nope"]].concat());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(summary["errors"], 200);
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown tool `nope`"));
}

#[test]
fn stdio_calls_succeed_and_an_unknown_tool_fails() {
    let (summary, output) = load(&[
        "stdio", "--calls", "200", "--warmup", "10", "--", FAST, "stdio",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["calls"], 200);
    assert_eq!(summary["errors"], 0);
    let (summary, output) = load(&[
        "stdio", "--calls", "5", "--tool", "nope", "--", FAST, "stdio",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(summary["errors"], 5);
}

#[test]
fn a_server_that_cannot_start_is_reported() {
    let output = Command::new(LOAD)
        .args(["stdio", "--calls", "1", "--", "/nonexistent/mcp-server"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot open the MCP session"));
}

#[test]
fn the_table_compares_with_the_baseline() {
    let direct = r#"{"calls":1,"errors":0,"p50_us":10.0,"p90_us":10.0,"p99_us":20.0,"max_us":20.0,"calls_per_s":100.0}"#;
    let input = format!("direct\t-\t{direct}\nvia\tdirect\t{direct}\n");
    let mut child = Command::new(LOAD)
        .arg("table")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains(
            "| via | 1 | 0 | 0.010 ms | 0.020 ms | 100 | +0.000 ms / +0.000 ms | 100 % |"
        ),
        "{table}"
    );
}
