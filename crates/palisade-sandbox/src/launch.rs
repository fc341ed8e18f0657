//! The gateway's side: get a supervisor from the zygote without forking, hand it a spec and a run, stream the payload's output under its caps, and keep a small pool of sandboxes built ahead.

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Interest,
};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use crate::host::{Degraded, Host};
use crate::profile::{Profile, ProfileSettings};
use crate::supervisor::{BUILD_TIMEOUT, SUPERVISOR_ARG};
use crate::wire::{Ending, Report, Run, Spec};
use crate::zygote::{self, Answer, Forked};

/// `[sandbox]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Degraded modes the operator accepts for features this host lacks.
    #[serde(default)]
    pub degraded: Vec<Degraded>,
    /// Sandboxes kept built ahead for each pooled profile (default 2; 0 turns the pool off).
    pub pool: Option<usize>,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSettings>,
}

/// How a run ended, as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    OutOfMemory,
    /// stdout or stderr passed the profile's `max_output`.
    OutputOver(u64),
    /// The caller stopped it.
    Stopped,
}

impl End {
    fn from_wire(ending: Ending) -> Self {
        match ending {
            Ending::Exited(code) => Self::Exited(code),
            Ending::Signaled(signal) => Self::Signaled(signal),
            Ending::TimedOut => Self::TimedOut,
            Ending::OutOfMemory => Self::OutOfMemory,
            Ending::Stopped => Self::Stopped,
        }
    }

    /// Why the run ended, in words, for people and for tool results.
    pub fn describe(&self, profile: &Profile) -> String {
        match self {
            Self::Exited(code) => format!("exited with status {code}"),
            Self::Signaled(signal) => {
                format!("killed by signal {signal} ({})", signal_name(*signal))
            }
            Self::TimedOut => format!(
                "timed out after {}",
                profile.timeout.map_or_else(
                    || "its deadline".to_owned(),
                    |t| humantime::format_duration(t).to_string()
                )
            ),
            Self::OutOfMemory => format!(
                "out of memory (limit {})",
                crate::profile::show_size(profile.memory)
            ),
            Self::OutputOver(cap) => format!("output over {cap} bytes"),
            Self::Stopped => "stopped".to_owned(),
        }
    }

    /// The exit status a shell would give: the code, 128 + a signal, 124
    /// for a timeout (as `timeout(1)`), 137 for out of memory, 125 for the
    /// output cap.
    pub fn exit_status(&self) -> i32 {
        match self {
            Self::Exited(code) => *code,
            Self::Signaled(signal) => 128 + signal,
            Self::TimedOut => 124,
            Self::OutOfMemory => 137,
            Self::OutputOver(_) => 125,
            Self::Stopped => 143,
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGBUS => "SIGBUS",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// A finished run's output.
#[derive(Debug, Clone)]
pub struct Finished {
    pub end: End,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Every sandbox palisade starts comes from here.
#[derive(Debug)]
pub struct Sandboxes {
    helper: PathBuf,
    host: Host,
    profiles: BTreeMap<String, Profile>,
    pool_size: usize,
    pool: Mutex<HashMap<String, Vec<Prepared>>>,
    /// The process that forks the supervisors; restarted when it is gone.
    zygote: tokio::sync::Mutex<Option<Zygote>>,
    /// Serves the egress listener of every sandbox whose profile has egress.
    egress: std::sync::OnceLock<Arc<palisade_egress::Egress>>,
}

/// The gateway's side of the zygote.
#[derive(Debug)]
struct Zygote {
    process: Option<std::process::Child>,
    /// Registered with the runtime on first use (`Sandboxes::start` may run outside one).
    socket: Option<std::os::unix::net::UnixStream>,
    registered: Option<UnixStream>,
}

impl Zygote {
    /// Starts the palisade binary as the zygote, as each supervisor used to
    /// be started: no environment, descriptor 3, dying with palisade.
    fn start(helper: &Path) -> Result<Self, String> {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        ours.set_nonblocking(true).map_err(|e| e.to_string())?;
        #[expect(
            clippy::disallowed_methods,
            reason = "this crate is where tool processes are made"
        )]
        let mut command = std::process::Command::new(helper);
        command
            .arg(SUPERVISOR_ARG)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        pass_as_fd3(&mut command, theirs.as_raw_fd());
        crate::die_with_parent(&mut command);
        let process = command.spawn().map_err(|e| {
            format!(
                "cannot start the sandbox zygote ({}): {e}",
                helper.display()
            )
        })?;
        Ok(Self {
            process: Some(process),
            socket: Some(ours),
            registered: None,
        })
    }

    fn socket(&mut self) -> std::io::Result<&UnixStream> {
        if let Some(socket) = self.socket.take() {
            self.registered = Some(UnixStream::from_std(socket)?);
        }
        self.registered
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the zygote's socket is gone"))
    }

    fn kill(&mut self) {
        if let Some(process) = self.process.as_mut() {
            let _ = process.kill();
        }
    }

    /// Asks for one supervisor.
    async fn fork(&mut self) -> Result<Answer, String> {
        let socket = self.socket().map_err(|e| e.to_string())?;
        loop {
            socket.writable().await.map_err(|e| e.to_string())?;
            match socket.try_io(Interest::WRITABLE, || zygote::request(socket)) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e)
                    if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) =>
                {
                    return Ok(Answer::Gone);
                }
                Err(e) => return Err(format!("cannot ask the sandbox zygote: {e}")),
            }
        }
        loop {
            socket.readable().await.map_err(|e| e.to_string())?;
            match socket.try_io(Interest::READABLE, || zygote::receive(socket)) {
                Ok(answer) => return Ok(answer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(Answer::Gone),
                Err(e) => return Err(format!("cannot read the sandbox zygote: {e}")),
            }
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Its socket closes first: the zygote waits for the supervisors it
        // forked (each ends with its sandbox's handle) and exits.
        self.socket = None;
        self.registered = None;
        if let Some(mut process) = self.process.take()
            && matches!(process.try_wait(), Ok(None))
        {
            // Still running: reaped when it ends.
            let _ = std::thread::Builder::new()
                .name("palisade-zygote-reaper".into())
                .spawn(move || {
                    let _ = process.wait();
                });
        }
    }
}

impl Sandboxes {
    /// Runs the preflight (refusing a host that lacks a required feature
    /// the operator did not accept as degraded), sweeps what a crashed
    /// palisade left, and resolves the profiles. `helper` is the palisade
    /// binary, started here as the zygote that forks each sandbox's supervisor.
    pub fn start(settings: &Settings, helper: PathBuf) -> Result<Arc<Self>, String> {
        let profiles = crate::profile::resolve(&settings.profiles)?;
        let host = Host::probe().accept(&settings.degraded)?;
        let swept = host.sweep();
        if swept > 0 {
            tracing::info!(
                "removed the control groups of {swept} sandbox(es) a crashed palisade left"
            );
        }
        let zygote = Zygote::start(&helper)?;
        Ok(Arc::new(Self {
            helper,
            host,
            profiles,
            pool_size: settings.pool.unwrap_or(2),
            pool: Mutex::new(HashMap::new()),
            zygote: tokio::sync::Mutex::new(Some(zygote)),
            egress: std::sync::OnceLock::new(),
        }))
    }

    /// From now on, every run whose profile has egress is served by
    /// `egress`, attributed to its `Run::who`. Without it, the caller takes
    /// the listener ([`Running::take_egress`]) and serves it. Once only.
    pub fn attach_egress(&self, egress: Arc<palisade_egress::Egress>) -> Result<(), String> {
        self.egress
            .set(egress)
            .map_err(|_| "the sandboxes already have an egress".to_owned())
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    pub fn profiles(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    fn spec(&self, profile: &Profile) -> Spec {
        Spec {
            profile: profile.clone(),
            cgroups: self
                .host
                .cgroups
                .clone()
                .filter(|_| !self.host.degraded.contains(&Degraded::NoCgroups)),
            user_namespace: !self.host.root,
            landlock: !self.host.degraded.contains(&Degraded::NoLandlock)
                && self.host.landlock_abi > 0,
        }
    }

    /// A new supervisor from the zygote; a zygote that is gone is started
    /// again, once.
    async fn fork_supervisor(&self) -> Result<Forked, String> {
        let mut zygote = self.zygote.lock().await;
        for attempt in 0..2 {
            let current = match zygote.as_mut() {
                Some(current) => current,
                None => zygote.insert(Zygote::start(&self.helper)?),
            };
            let answer = tokio::time::timeout(BUILD_TIMEOUT, current.fork()).await;
            match answer {
                Ok(Ok(Answer::Forked(forked))) => return Ok(forked),
                Ok(Ok(Answer::Failed(error))) => return Err(error),
                Ok(Ok(Answer::Gone)) if attempt == 0 => {
                    tracing::warn!("the sandbox zygote is gone; starting a new one");
                    *zygote = None;
                }
                Ok(Ok(Answer::Gone)) => {
                    *zygote = None;
                    return Err("the sandbox zygote died as soon as it started".to_owned());
                }
                Ok(Err(error)) => {
                    current.kill();
                    *zygote = None;
                    return Err(error);
                }
                Err(_) => {
                    current.kill();
                    *zygote = None;
                    return Err(format!(
                        "the sandbox zygote did not answer within {BUILD_TIMEOUT:?}"
                    ));
                }
            }
        }
        Err("the sandbox zygote is gone".to_owned())
    }

    /// Builds a sandbox for `profile` that waits for its command.
    pub async fn prepare(&self, profile: &Profile) -> Result<Prepared, String> {
        let Forked {
            pid,
            control,
            stdin,
            stdout,
            stderr,
            egress,
        } = self.fork_supervisor().await?;
        let ours = std::os::unix::net::UnixStream::from(control);
        ours.set_nonblocking(true).map_err(|e| e.to_string())?;
        let (read, mut write) = UnixStream::from_std(ours)
            .map_err(|e| e.to_string())?
            .into_split();
        let pipe = |e: std::io::Error| format!("cannot take the sandbox's pipes: {e}");
        let stdin = ChildStdin::from_std(std::process::ChildStdin::from(stdin)).map_err(pipe)?;
        let stdout =
            ChildStdout::from_std(std::process::ChildStdout::from(stdout)).map_err(pipe)?;
        let stderr =
            ChildStderr::from_std(std::process::ChildStderr::from(stderr)).map_err(pipe)?;
        let mut line = serde_json::to_vec(&self.spec(profile)).map_err(|e| e.to_string())?;
        line.push(b'\n');
        write
            .write_all(&line)
            .await
            .map_err(|e| format!("the sandbox supervisor hung up: {e}"))?;
        let mut prepared = Prepared {
            supervisor: pid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
            read: BufReader::new(read),
            write: Some(write),
            profile: profile.clone(),
            egress: None,
        };
        match tokio::time::timeout(BUILD_TIMEOUT, prepared.report()).await {
            Ok(Ok(Report::Ready)) if profile.has_egress() => {
                // Init sent its listener before the sandbox was ready.
                let listener = zygote::receive_descriptor(&egress)
                    .map_err(|e| format!("cannot take the sandbox's egress listener: {e}"))?
                    .ok_or("the sandbox sent no egress listener")?;
                prepared.egress = Some(std::net::TcpListener::from(listener));
                Ok(prepared)
            }
            Ok(Ok(Report::Ready)) => Ok(prepared),
            Ok(Ok(Report::Failed(error))) => Err(error),
            Ok(Ok(other @ (Report::Started | Report::Ended(_)))) => Err(format!(
                "the sandbox supervisor said {other:?} before it was ready"
            )),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(format!(
                "the sandbox was not built within {BUILD_TIMEOUT:?}"
            )),
        }
    }

    /// Starts `run` in a fresh sandbox of `profile`, taken from the pool when
    /// the profile is a named, pooled one.
    pub async fn spawn(self: &Arc<Self>, profile: &Profile, run: Run) -> Result<Running, String> {
        let pooled = self.take_pooled(&profile.name, profile);
        let mut prepared = match pooled {
            Some(prepared) => prepared,
            None => self.prepare(profile).await?,
        };
        self.refill(profile);
        let served = match (self.egress.get(), prepared.egress.take()) {
            (Some(egress), Some(listener)) => Some(serve_egress(
                egress,
                listener,
                profile,
                &run,
                prepared.supervisor,
            )?),
            (None, listener) => {
                prepared.egress = listener;
                None
            }
            (Some(_), None) => None,
        };
        let mut running = prepared.start(run).await?;
        running.egress_served = served;
        Ok(running)
    }

    fn take_pooled(&self, name: &str, profile: &Profile) -> Option<Prepared> {
        let mut pool = self.pool.lock().ok()?;
        let waiting = pool.get_mut(name)?;
        while let Some(prepared) = waiting.pop() {
            if prepared.profile == *profile {
                return Some(prepared);
            }
        }
        None
    }

    fn refill(self: &Arc<Self>, profile: &Profile) {
        if self.pool_size == 0 || self.profiles.get(&profile.name) != Some(profile) {
            return;
        }
        let this = Arc::clone(self);
        let profile = profile.clone();
        #[expect(
            clippy::disallowed_methods,
            reason = "a pool refill: dropped sandboxes die with their handles"
        )]
        tokio::spawn(async move {
            let missing = {
                let Ok(pool) = this.pool.lock() else { return };
                this.pool_size
                    .saturating_sub(pool.get(&profile.name).map_or(0, Vec::len))
            };
            for _ in 0..missing {
                match this.prepare(&profile).await {
                    Ok(prepared) => {
                        if let Ok(mut pool) = this.pool.lock() {
                            pool.entry(profile.name.clone()).or_default().push(prepared);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            "cannot build a sandbox for the pool of `{}`: {error}",
                            profile.name
                        );
                        return;
                    }
                }
            }
        });
    }

    /// Fills the pool of `name` now (for start-up, and for benchmarks).
    pub async fn warm(self: &Arc<Self>, name: &str) -> Result<(), String> {
        let profile = self
            .profile(name)
            .ok_or_else(|| format!("no sandbox profile `{name}`"))?
            .clone();
        for _ in 0..self.pool_size {
            let prepared = self.prepare(&profile).await?;
            if let Ok(mut pool) = self.pool.lock() {
                pool.entry(name.to_owned()).or_default().push(prepared);
            }
        }
        Ok(())
    }

    /// Runs to the end, streaming stdin in and the output out under the
    /// profile's cap.
    pub async fn run_streaming(
        self: &Arc<Self>,
        profile: &Profile,
        run: Run,
        stdin: impl AsyncRead + Unpin + Send + 'static,
        stdout: impl AsyncWrite + Unpin,
        stderr: impl AsyncWrite + Unpin,
    ) -> Result<End, String> {
        let mut running = self.spawn(profile, run).await?;
        let cap = profile.max_output;
        if let Some(mut input) = running.stdin.take() {
            let mut stdin = stdin;
            #[expect(
                clippy::disallowed_methods,
                reason = "feeds the payload's stdin; ends with the pipe"
            )]
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut stdin, &mut input).await;
                let _ = input.shutdown().await;
            });
        }
        let out = running.stdout.take();
        let err = running.stderr.take();
        let (over_out, over_err) = tokio::join!(relay(out, stdout, cap), relay(err, stderr, cap));
        if over_out || over_err {
            running.stop();
            let _ = running.wait().await;
            return Ok(End::OutputOver(cap));
        }
        running.wait().await
    }

    /// Runs to the end with `stdin` as input, collecting the output.
    pub async fn run(
        self: &Arc<Self>,
        profile: &Profile,
        run: Run,
        stdin: Vec<u8>,
    ) -> Result<Finished, String> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let end = self
            .run_streaming(
                profile,
                run,
                std::io::Cursor::new(stdin),
                &mut stdout,
                &mut stderr,
            )
            .await?;
        Ok(Finished {
            end,
            stdout,
            stderr,
        })
    }
}

/// Serves a sandbox's egress listener for as long as the returned guard lives.
fn serve_egress(
    egress: &Arc<palisade_egress::Egress>,
    listener: std::net::TcpListener,
    profile: &Profile,
    run: &Run,
    supervisor: u32,
) -> Result<AbortOnDrop, String> {
    let rules = palisade_egress::Rules::parse(
        &profile.egress,
        &format!("sandbox.profiles.{}.egress", profile.name),
    )
    .map_err(|e| e.to_string())?;
    let mut who = run.who.clone();
    who.sandbox = Some(supervisor.to_string());
    if who.origin.is_empty() {
        who.origin = "sandbox";
    }
    let scope = egress.scope(who, Some(rules));
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|e| format!("cannot serve the sandbox's egress listener: {e}"))?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the sandbox's egress: aborted when its run is dropped"
    )]
    let task = tokio::spawn(Arc::clone(egress).serve_listener(listener, scope));
    Ok(AbortOnDrop(task.abort_handle()))
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Copies until EOF; true when the source passed `cap` bytes (what fits is copied).
async fn relay(
    source: Option<impl AsyncRead + Unpin>,
    mut sink: impl AsyncWrite + Unpin,
    cap: u64,
) -> bool {
    let Some(mut source) = source else {
        return false;
    };
    let mut total: u64 = 0;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match source.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let room = usize::try_from(cap.saturating_sub(total)).unwrap_or(usize::MAX);
        let take = n.min(room);
        if sink
            .write_all(buffer.get(..take).unwrap_or_default())
            .await
            .is_err()
        {
            return false;
        }
        let _ = sink.flush().await;
        total = total.saturating_add(n as u64);
        if total > cap {
            return true;
        }
    }
}

fn pass_as_fd3(command: &mut std::process::Command, fd: i32) {
    use std::os::unix::process::CommandExt;
    let hook = move || {
        #[expect(unsafe_code, reason = "dup2 and fcntl between fork and exec")]
        // SAFETY: both are async-signal-safe system calls on descriptors
        // this child owns; nothing is allocated.
        let result = unsafe {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            }
        };
        if result < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    #[expect(unsafe_code, reason = "pre_exec's closure runs between fork and exec")]
    // SAFETY: the hook makes one async-signal-safe system call and allocates nothing.
    unsafe {
        command.pre_exec(hook);
    }
}

/// A built sandbox waiting for its command; dropping it destroys it.
#[derive(Debug)]
pub struct Prepared {
    supervisor: u32,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    read: BufReader<OwnedReadHalf>,
    write: Option<OwnedWriteHalf>,
    profile: Profile,
    /// A profile with egress: the listener on `127.0.0.1:EGRESS_PORT` inside
    /// the sandbox's network namespace, whose connections palisade's egress
    /// proxy serves.
    egress: Option<std::net::TcpListener>,
}

impl Prepared {
    async fn report(&mut self) -> Result<Report, String> {
        let mut line = String::new();
        match self.read.read_line(&mut line).await {
            Ok(0) => Err("the sandbox supervisor exited without a word".to_owned()),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| format!("bad report from the sandbox supervisor: {e}")),
            Err(e) => Err(format!("cannot read the sandbox supervisor: {e}")),
        }
    }

    /// Starts `run` in it.
    pub async fn start(mut self, run: Run) -> Result<Running, String> {
        let mut line = serde_json::to_vec(&run).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let Some(write) = self.write.as_mut() else {
            return Err("the sandbox was already used".to_owned());
        };
        write
            .write_all(&line)
            .await
            .map_err(|e| format!("the sandbox supervisor hung up: {e}"))?;
        match self.report().await? {
            Report::Started => {}
            Report::Failed(error) => return Err(error),
            other @ (Report::Ready | Report::Ended(_)) => {
                return Err(format!(
                    "the sandbox supervisor said {other:?} instead of starting"
                ));
            }
        }
        Ok(Running {
            stdin: self.stdin.take(),
            stdout: self.stdout.take(),
            stderr: self.stderr.take(),
            prepared: self,
            egress_served: None,
        })
    }
}

/// A payload that runs; dropping it kills the sandbox.
#[derive(Debug)]
pub struct Running {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    prepared: Prepared,
    /// The egress proxy serving this run's listener, until the run is dropped.
    egress_served: Option<AbortOnDrop>,
}

impl Running {
    /// Asks the supervisor to end the run (it kills the whole sandbox).
    pub fn stop(&mut self) {
        self.prepared.write = None;
    }

    /// Waits for the end of the run.
    pub async fn wait(&mut self) -> Result<End, String> {
        let report = self.prepared.report().await;
        // The control socket ends when the supervisor has exited (the
        // zygote reaps it); nothing more is said on it.
        let mut rest = [0u8; 64];
        while matches!(self.prepared.read.read(&mut rest).await, Ok(1..)) {}
        match report? {
            Report::Ended(ending) => Ok(End::from_wire(ending)),
            Report::Failed(error) => Err(error),
            other @ (Report::Ready | Report::Started) => {
                Err(format!("the sandbox supervisor said {other:?} at the end"))
            }
        }
    }

    /// The profile it runs under.
    pub fn profile(&self) -> &Profile {
        &self.prepared.profile
    }

    /// The egress listener inside the sandbox (once; `None` without egress).
    /// The caller serves its connections for as long as the run lasts.
    pub fn take_egress(&mut self) -> Option<std::net::TcpListener> {
        self.prepared.egress.take()
    }

    /// The supervisor's pid (for tests that kill it).
    pub fn supervisor_pid(&self) -> Option<u32> {
        Some(self.prepared.supervisor)
    }
}

/// The run of `argv` in `profile`: in `/tmp`, with a minimal environment
/// (`PATH`, `HOME`, `LANG`) and the profile's variables, nothing of palisade's.
pub fn command(profile: &Profile, argv: Vec<String>) -> Run {
    let mut env: BTreeMap<String, String> = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/tmp"),
        ("LANG", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.extend(profile.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Run {
        argv,
        env,
        cwd: PathBuf::from("/tmp"),
        files: Vec::new(),
        who: palisade_egress::Attribution::default(),
    }
}
