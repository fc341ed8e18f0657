//! A stdio upstream: a child process speaking newline-delimited JSON-RPC.
//!
//! A child that writes anything but JSON-RPC to stdout has broken the
//! protocol: it is killed, its callers get an error, and it is restarted
//! on the next request. Its stderr is not inherited: each line passes the
//! redaction seam, with control characters escaped, and is logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::RedactionSeam;
use palisade_mcp::Message;
use palisade_mcp::framing::{FrameError, LineReader, write_line};
use tokio::io::BufReader;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use super::{Failure, LinkContext, Pending, dispatch};
use crate::config::{Setting, StdioSandbox, Transport};
use crate::printable::escape_controls;

pub(super) struct StdioLink {
    pub pending: Arc<Pending>,
    /// The version of each secret in the child's environment: a rotation
    /// restarts the child with the new one.
    pub secret_versions: BTreeMap<palisade_secrets::SecretName, u64>,
    writer: mpsc::Sender<Vec<u8>>,
    child: Arc<tokio::sync::Mutex<Process>>,
    name: Arc<str>,
}

/// The upstream's process: in its sandbox, or (`sandbox = "off"`) plain.
enum Process {
    Plain(Child),
    Sandboxed(Box<palisade_sandbox::Running>),
}

impl Process {
    fn start_kill(&mut self) {
        match self {
            Process::Plain(child) => {
                let _ = child.start_kill();
            }
            Process::Sandboxed(running) => running.stop(),
        }
    }

    /// Waits for the end; says how it ended.
    async fn wait(&mut self) -> String {
        match self {
            Process::Plain(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            },
            Process::Sandboxed(running) => match running.wait().await {
                Ok(end) => format!("in its sandbox: {}", end.describe(running.profile())),
                Err(e) => e,
            },
        }
    }
}

impl StdioLink {
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of a stdio transport, as configured"
    )]
    pub async fn spawn(
        ctx: &LinkContext,
        command: &str,
        args: &[String],
        env: &BTreeMap<String, Setting>,
        inherit_env: bool,
        cwd: Option<&Path>,
        secrets: &[palisade_secrets::broker::EnvSecret],
        sandbox: Option<&StdioSandbox>,
    ) -> Result<Self, Failure> {
        let (process, stdin, stdout, stderr) = match sandbox {
            Some(sandbox) => {
                spawn_sandboxed(ctx, sandbox, command, args, env, inherit_env, cwd, secrets).await?
            }
            None => spawn_plain(ctx, command, args, env, inherit_env, cwd, secrets)?,
        };
        Self::with_pipes(ctx, process, stdin, stdout, stderr, secrets)
    }

    fn with_pipes(
        ctx: &LinkContext,
        process: Process,
        stdin: ChildStdin,
        stdout: ChildStdout,
        stderr: ChildStderr,
        secrets: &[palisade_secrets::broker::EnvSecret],
    ) -> Result<Self, Failure> {
        let pending = Pending::new();
        let child = Arc::new(tokio::sync::Mutex::new(process));
        let (writer, queue) = mpsc::channel(256);
        #[expect(
            clippy::disallowed_methods,
            reason = "the link's own I/O task: it ends when the process does"
        )]
        tokio::spawn(write_loop(
            stdin,
            queue,
            Arc::clone(&pending),
            ctx.name.clone(),
        ));
        #[expect(
            clippy::disallowed_methods,
            reason = "the link's own I/O task: it ends when the process does"
        )]
        tokio::spawn(relay_stderr(stderr, ctx.seam.clone(), ctx.name.clone()));
        #[expect(
            clippy::disallowed_methods,
            reason = "the link's own I/O task: it ends when the process does"
        )]
        tokio::spawn(read_loop(
            ctx.clone(),
            stdout,
            Arc::clone(&pending),
            Arc::clone(&child),
        ));
        Ok(Self {
            pending,
            secret_versions: secrets
                .iter()
                .map(|s| (s.secret.clone(), s.version))
                .collect(),
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
        self.pending.fail_all(&Failure::shut_down(format!(
            "upstream `{}` was shut down",
            self.name
        )));
        let mut child = self.child.lock().await;
        child.start_kill();
        let _ = child.wait().await;
    }
}

impl Drop for StdioLink {
    fn drop(&mut self) {
        // A link dropped without `close` (a handshake abandoned because its
        // client left) must not leave its process behind.
        if let Ok(mut child) = self.child.try_lock() {
            child.start_kill();
        }
    }
}

type Pipes = (Process, ChildStdin, ChildStdout, ChildStderr);

fn spawn_plain(
    ctx: &LinkContext,
    command: &str,
    args: &[String],
    env: &BTreeMap<String, Setting>,
    inherit_env: bool,
    cwd: Option<&Path>,
    secrets: &[palisade_secrets::broker::EnvSecret],
) -> Result<Pipes, Failure> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the spawner of unsandboxed (`sandbox = \"off\"`) upstreams, a degraded mode"
    )]
    let mut cmd = Command::new(command);
    cmd.args(args)
        .env_clear()
        .envs(Transport::child_env(env, inherit_env, &ctx.withheld_env))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    for secret in secrets {
        secret.apply(&mut cmd);
    }
    // A gateway that is SIGKILLed must not leave its upstreams running.
    palisade_sandbox::die_with_parent(cmd.as_std_mut());
    let mut child = cmd.spawn().map_err(|e| {
        Failure::new(format!(
            "cannot start upstream `{}` (`{command}`): {e}",
            ctx.name
        ))
    })?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Failure::new(format!(
            "upstream `{}` started without pipes",
            ctx.name
        )));
    };
    Ok((Process::Plain(child), stdin, stdout, stderr))
}

/// Starts the upstream in a sandbox of its profile, with its binds, for
/// its whole session. Its environment is the configured one, with `HOME`
/// and `TMPDIR` in the sandbox's `/tmp`.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of a stdio transport, as configured"
)]
async fn spawn_sandboxed(
    ctx: &LinkContext,
    sandbox: &StdioSandbox,
    command: &str,
    args: &[String],
    env: &BTreeMap<String, Setting>,
    inherit_env: bool,
    cwd: Option<&Path>,
    secrets: &[palisade_secrets::broker::EnvSecret],
) -> Result<Pipes, Failure> {
    let fail = |why: String| {
        Failure::new(format!(
            "cannot start upstream `{}` in its sandbox: {why}",
            ctx.name
        ))
    };
    let Some(sandboxes) = ctx.sandboxes.as_ref() else {
        return Err(fail("the sandbox is not running".into()));
    };
    let Some(base) = sandboxes.profile(&sandbox.profile) else {
        return Err(fail(format!("no sandbox profile `{}`", sandbox.profile)));
    };
    let mut profile = base.clone();
    profile.mounts.extend(sandbox.mounts.iter().cloned());
    let argv = std::iter::once(command.to_owned())
        .chain(args.iter().cloned())
        .collect();
    let mut run = palisade_sandbox::command(&profile, argv);
    for (k, v) in Transport::child_env(env, inherit_env, &ctx.withheld_env) {
        run.env.insert(k, v);
    }
    for secret in secrets {
        secret.insert_into(&mut run.env);
    }
    for variable in ["HOME", "TMPDIR"] {
        run.env.insert(variable.to_owned(), "/tmp".to_owned());
    }
    if let Some(dir) = cwd {
        run.cwd = dir.to_path_buf();
    }
    run.who = palisade_egress::Attribution {
        origin: "sandbox",
        ..ctx.who.clone()
    };
    let mut running = sandboxes.spawn(&profile, run).await.map_err(fail)?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (
        running.stdin.take(),
        running.stdout.take(),
        running.stderr.take(),
    ) else {
        return Err(fail("it started without pipes".into()));
    };
    Ok((Process::Sandboxed(Box::new(running)), stdin, stdout, stderr))
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
    child: Arc<tokio::sync::Mutex<Process>>,
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
                    Ok(how) => how,
                    Err(_) => "closed its stdout".to_owned(),
                };
                // What a server that worked unsandboxed most often lacks.
                let hint = match &*process {
                    Process::Sandboxed(running) => format!(
                        "; it ran in the sandbox profile `{}`: no network, and of the host only the system directories and its binds (`bind`, `bind_ro`; `sandbox = \"off\"` runs it unsandboxed)",
                        running.profile().name
                    ),
                    Process::Plain(_) => String::new(),
                };
                break Failure::new(format!("upstream `{}` exited ({how}){hint}", ctx.name));
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
    child.lock().await.start_kill();
}

/// Longest stderr line relayed whole; longer ones are cut.
const MAX_STDERR_LINE: usize = 8 * 1024;

/// Logs what the upstream writes to its stderr, a line at a time, through
/// the redaction seam: a server that prints a credential it was given must
/// not put it in palisade's logs, and one that prints escape sequences must
/// not drive the operator's terminal.
async fn relay_stderr(stderr: ChildStderr, seam: RedactionSeam, name: Arc<str>) {
    let mut lines = LineReader::new(BufReader::new(stderr), MAX_STDERR_LINE);
    while let Some(line) = lines.next_line().await {
        let text = match line {
            Ok(line) => {
                escape_controls(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']))
            }
            Err(FrameError::TooLarge { limit }) => {
                format!("(a line over {limit} bytes, not shown)")
            }
            Err(FrameError::Io(_)) => return,
        };
        let text = seam.text(&text);
        tracing::info!(target: "palisade::upstream", "upstream `{name}` stderr: {}", text.get());
    }
}
