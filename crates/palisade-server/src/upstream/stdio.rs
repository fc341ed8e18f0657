//! A stdio upstream: a child process speaking newline-delimited JSON-RPC.
//!
//! A child that writes anything but JSON-RPC to stdout has broken the
//! protocol: it is killed, its callers get an error, and it is restarted
//! on the next request. Its stderr is passed through to palisade's stderr.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use palisade_mcp::Message;
use palisade_mcp::framing::{FrameError, LineReader, write_line};
use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use super::{Failure, LinkContext, Pending, dispatch};
use crate::config::Transport;

pub(super) struct StdioLink {
    pub pending: Arc<Pending>,
    writer: mpsc::Sender<Vec<u8>>,
    child: Arc<tokio::sync::Mutex<Child>>,
    name: Arc<str>,
}

impl StdioLink {
    pub fn spawn(
        ctx: &LinkContext,
        command: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
        inherit_env: bool,
        cwd: Option<&Path>,
    ) -> Result<Self, Failure> {
        let mut cmd = Command::new(command);
        cmd.args(args)
            .env_clear()
            .envs(Transport::child_env(env, inherit_env))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            Failure::new(format!(
                "cannot start upstream `{}` (`{command}`): {e}",
                ctx.name
            ))
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Failure::new(format!(
                "upstream `{}` started without pipes",
                ctx.name
            )));
        };
        let pending = Pending::new();
        let child = Arc::new(tokio::sync::Mutex::new(child));
        let (writer, queue) = mpsc::channel(256);
        tokio::spawn(write_loop(
            stdin,
            queue,
            Arc::clone(&pending),
            ctx.name.clone(),
        ));
        tokio::spawn(read_loop(
            ctx.clone(),
            stdout,
            Arc::clone(&pending),
            Arc::clone(&child),
        ));
        Ok(Self {
            pending,
            writer,
            child,
            name: ctx.name.clone(),
        })
    }

    pub async fn send(&self, message: Message) -> Result<(), Failure> {
        if !self.pending.is_alive() {
            return Err(Failure::new(format!("upstream `{}` has exited", self.name)));
        }
        self.writer.send(message.to_bytes()).await.map_err(|_| {
            Failure::new(format!(
                "upstream `{}` stopped reading its input",
                self.name
            ))
        })
    }

    pub async fn close(&self) {
        self.pending.fail_all(&Failure::new(format!(
            "upstream `{}` was shut down",
            self.name
        )));
        let mut child = self.child.lock().await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

impl Drop for StdioLink {
    fn drop(&mut self) {
        // A link dropped without `close` (a handshake abandoned because its
        // client left) must not leave its process behind.
        if let Ok(mut child) = self.child.try_lock() {
            let _ = child.start_kill();
        }
    }
}

async fn write_loop(
    mut stdin: ChildStdin,
    mut queue: mpsc::Receiver<Vec<u8>>,
    pending: Arc<Pending>,
    name: Arc<str>,
) {
    while let Some(bytes) = queue.recv().await {
        if let Err(e) = write_line(&mut stdin, &bytes).await {
            pending.fail_all(&Failure::new(format!(
                "cannot write to upstream `{name}`: {e}"
            )));
            return;
        }
    }
}

async fn read_loop(
    ctx: LinkContext,
    stdout: ChildStdout,
    pending: Arc<Pending>,
    child: Arc<tokio::sync::Mutex<Child>>,
) {
    let mut lines = LineReader::new(BufReader::new(stdout), ctx.max_message_bytes);
    let failure = loop {
        let line = match lines.next_line().await {
            Some(Ok(line)) => line,
            Some(Err(FrameError::TooLarge { limit })) => {
                break Failure::new(format!(
                    "upstream `{}` broke the protocol: it sent a message over the {limit}-byte limit",
                    ctx.name
                ));
            }
            Some(Err(FrameError::Io(e))) => {
                break Failure::new(format!("cannot read from upstream `{}`: {e}", ctx.name));
            }
            None => {
                let mut process = child.lock().await;
                let how = match tokio::time::timeout(Duration::from_secs(1), process.wait()).await {
                    Ok(Ok(status)) => status.to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "closed its stdout".to_owned(),
                };
                break Failure::new(format!("upstream `{}` exited ({how})", ctx.name));
            }
        };
        match Message::parse(&line) {
            Ok(message) => dispatch(&ctx, &pending, message, None),
            Err(e) => {
                break Failure::new(format!(
                    "upstream `{}` broke the protocol: it wrote something that is not JSON-RPC to stdout ({e})",
                    ctx.name
                ));
            }
        }
    };
    // A link palisade closed itself is not news.
    if pending.is_alive() {
        tracing::warn!(upstream = %ctx.name, "{}", failure.message);
    }
    pending.fail_all(&failure);
    let _ = child.lock().await.start_kill();
}
