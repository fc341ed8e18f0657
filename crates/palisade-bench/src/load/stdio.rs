//! stdio: spawns the server (or the gateway in front of it) and sends one call at a time.
//!
//! stdio carries one conversation, so calls are sequential: latency and
//! throughput are two views of the same run. Requests the server makes
//! while a call is in flight are answered; its notifications are skipped.
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark tool starts the gateway it measures"
)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use palisade_mcp::framing::{LineReader, write_line};
use palisade_mcp::{Message, RequestId};
use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{
    CallPlan, LoadError, Outcome, REPLY_LIMIT, Report, answer_server_request, call_request,
    check_call_result, initialize_request, initialized_notification, result_of,
};

/// How long the server may take to exit once its stdin is closed.
const EXIT_LIMIT: Duration = Duration::from_secs(5);

/// Runs `program args…`, opens a session over its stdio, warms up, then
/// measures `plan.calls` calls. The server's stderr is passed through.
pub async fn run(program: &str, args: &[String], plan: &CallPlan) -> Result<Report, LoadError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(LoadError::Io(std::io::Error::other(
            "the child has no stdio pipes",
        )));
    };
    let mut peer = Peer {
        stdin,
        stdout: LineReader::new(BufReader::new(stdout), REPLY_LIMIT),
        next_id: 0,
    };
    let report = measure(&mut peer, plan).await;
    drop(peer);
    stop(&mut child).await;
    report
}

async fn measure(peer: &mut Peer, plan: &CallPlan) -> Result<Report, LoadError> {
    let id = peer.fresh_id();
    peer.send(&initialize_request(id.clone())).await?;
    result_of(peer.reply_to(&id).await?, &id)?;
    peer.send(&initialized_notification()).await?;
    for _ in 0..plan.warmup {
        // Warm-up failures show again, counted, in the measured calls.
        let _ = peer.call(&plan.tool).await;
    }
    let mut outcome = Outcome::default();
    let started = Instant::now();
    for _ in 0..plan.calls {
        let result = peer.call(&plan.tool).await;
        // A broken pipe fails every later call too: stop at the first.
        let fatal = matches!(
            result,
            Err(LoadError::Io(_) | LoadError::Frame(_) | LoadError::NoReply(_))
        );
        outcome.record(result);
        if fatal {
            break;
        }
    }
    Ok(outcome.report(started.elapsed()))
}

/// Closes the server's stdin and waits for it to exit, then kills it.
async fn stop(child: &mut Child) {
    if tokio::time::timeout(EXIT_LIMIT, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[derive(Debug)]
struct Peer {
    stdin: ChildStdin,
    stdout: LineReader<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Peer {
    fn fresh_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId::from(self.next_id)
    }

    async fn send(&mut self, message: &Message) -> Result<(), LoadError> {
        Ok(write_line(&mut self.stdin, &message.to_bytes()).await?)
    }

    async fn call(&mut self, tool: &str) -> Result<Duration, LoadError> {
        let id = self.fresh_id();
        let message = call_request(id.clone(), tool);
        let started = Instant::now();
        self.send(&message).await?;
        let reply = self.reply_to(&id).await?;
        let latency = started.elapsed();
        check_call_result(&result_of(reply, &id)?)?;
        Ok(latency)
    }

    /// Reads until the response to `id`, answering the server's own requests.
    async fn reply_to(&mut self, id: &RequestId) -> Result<Message, LoadError> {
        while let Some(line) = self.stdout.next_line().await {
            let message = Message::parse(&line?)?;
            match &message {
                Message::Response(r) if r.id.as_ref() == Some(id) || r.id.is_none() => {
                    return Ok(message);
                }
                Message::Request(request) => {
                    self.send(&answer_server_request(request)).await?;
                }
                Message::Response(_) | Message::Notification(_) => {}
            }
        }
        Err(LoadError::NoReply(id.clone()))
    }
}
