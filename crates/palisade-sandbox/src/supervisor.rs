//! The supervisor: one process per sandbox, forked by the zygote, that builds the sandbox, enforces its deadline and reports how it ended.
//!
//! The gateway never forks: the zygote forks this process, with the control
//! socket to the gateway and pipes as its standard streams. The supervisor
//! forks init straight into fresh namespaces, maps its uid (without root),
//! has init in the sandbox's control groups before init forks anything (on
//! v1 init attaches itself, on v2 the supervisor attaches it while init
//! builds the root), and waits until the payload (which init forks) has
//! confined itself. Then it relays: the `Run` to the payload over their own
//! socket, the payload's exec and end to the gateway. It dies with the
//! zygote, which dies with the gateway (parent-death signals), and init
//! dies with it, which takes the whole PID namespace down.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

use crate::cgroup::{Group, Hierarchy};
use crate::init;
use crate::sys;
use crate::wire::{Ending, InitReport, PayloadReport, Report, Run, Spec};

/// The sandbox's uid and gid inside.
pub(crate) const SANDBOX_ID: u32 = 1000;

/// The argument that makes the palisade binary a supervisor.
pub const SUPERVISOR_ARG: &str = "__palisade-sandbox-supervisor";

/// Runs the sandbox zygote, which forks the supervisors, and exits; call it
/// first thing in `main` when `argv[1]` is [`SUPERVISOR_ARG`].
pub fn supervise() -> ! {
    #[expect(
        unsafe_code,
        reason = "taking ownership of the descriptor the spawner passed"
    )]
    // SAFETY: the gateway starts the zygote with its socket as descriptor 3
    // (see `launch`), and nothing else in this fresh process image owns
    // that descriptor.
    let control = unsafe { OwnedFd::from_raw_fd(3) };
    crate::zygote::serve(control)
}

/// Runs one supervisor on its control socket (in a child the zygote forked) and exits.
/// `egress`: the link to the gateway init sends the egress listener on.
pub(crate) fn supervise_on_socket(control: UnixStream, egress: UnixStream) -> ! {
    let mut out = match control.try_clone() {
        Ok(out) => out,
        Err(_) => std::process::exit(2),
    };
    let code = match supervise_on(control, egress) {
        Ok(()) => 0,
        Err(error) => {
            let _ = send(&mut out, &Report::Failed(error));
            1
        }
    };
    std::process::exit(code)
}

fn send<T: serde::Serialize>(out: &mut impl Write, message: &T) -> Result<(), String> {
    let mut line = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    line.push(b'\n');
    out.write_all(&line)
        .map_err(|e| format!("the gateway hung up: {e}"))
}

fn receive<T: serde::de::DeserializeOwned>(
    reader: &mut impl BufRead,
    what: &str,
) -> Result<Option<T>, String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Ok(None),
        Ok(_) => serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| format!("bad {what} message: {e}")),
        Err(e) => Err(format!("cannot read the {what} message: {e}")),
    }
}

/// A host path to show inside, resolved on the host before init pivots away from it.
#[derive(Debug, Clone)]
pub(crate) struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
    pub directory: bool,
}

fn resolve_binds(spec: &Spec) -> Result<Vec<Bind>, String> {
    spec.profile
        .mounts
        .iter()
        .map(|mount| {
            let source = std::fs::canonicalize(&mount.source)
                .map_err(|e| format!("bind {}: {e}", mount.source.display()))?;
            let directory = source.is_dir();
            Ok(Bind {
                source,
                target: mount.target.clone(),
                writable: mount.writable,
                directory,
            })
        })
        .collect()
}

fn supervise_on(control: UnixStream, egress: UnixStream) -> Result<(), String> {
    // Nothing palisade's parent left open may reach the payload.
    sys::cloexec_from(3).map_err(|e| format!("close_range: {e}"))?;
    let mut out = control.try_clone().map_err(|e| e.to_string())?;
    let mut from_gateway = BufReader::new(control);
    let Some(spec) = receive::<Spec>(&mut from_gateway, "spec")? else {
        return Ok(());
    };
    let binds = resolve_binds(&spec)?;
    let mut group = None;
    let outcome = run_sandbox(
        &spec,
        &binds,
        egress,
        &mut group,
        &mut from_gateway,
        &mut out,
    );
    if let Some(Err(e)) = group.map(Group::remove) {
        tracing::warn!("cannot remove the sandbox's control groups: {e}");
    }
    match outcome? {
        Some(ending) => send(&mut out, &Report::Ended(ending)),
        None => Ok(()),
    }
}

fn create_group(hierarchy: &Hierarchy, spec: &Spec) -> Result<Group, String> {
    Group::create(hierarchy, std::process::id(), &spec.profile)
        .map_err(|e| format!("cannot create the sandbox's control groups: {e}"))
}

fn run_sandbox(
    spec: &Spec,
    binds: &[Bind],
    egress: UnixStream,
    group: &mut Option<Group>,
    from_gateway: &mut BufReader<UnixStream>,
    out: &mut UnixStream,
) -> Result<Option<Ending>, String> {
    let (mine, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
    // The payload's own line to the supervisor: the run goes in, a failure
    // comes out, and its exec closes it (close-on-exec).
    let (payload_link, payload_end) = UnixStream::pair().map_err(|e| e.to_string())?;
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    if spec.user_namespace {
        flags |= libc::CLONE_NEWUSER;
    }
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    // On cgroup v1 init moves itself into the groups (its only thread,
    // through `tasks`), which takes no global lock: moving another process
    // (`cgroup.procs`) waits for an RCU grace period, several milliseconds.
    if let Some(hierarchy @ Hierarchy::V1 { .. }) = &spec.cgroups {
        *group = Some(create_group(hierarchy, spec)?);
    }
    let Some(init_pid) =
        sys::fork_into(flags).map_err(|e| format!("cannot create the namespaces: {e}"))?
    else {
        // The control socket is close-on-exec: the payload never holds it.
        drop(mine);
        drop(payload_link);
        init::main(theirs, payload_end, egress, spec, binds, group.as_ref());
    };
    // Init holds the egress link now.
    drop(egress);
    drop(theirs);
    drop(payload_end);
    let mut init = Init {
        pid: init_pid,
        reaped: false,
    };
    if spec.user_namespace {
        let proc = format!("/proc/{init_pid}");
        let maps = [
            ("setgroups", "deny".to_owned()),
            ("uid_map", format!("{SANDBOX_ID} {} 1", uid.as_raw())),
            ("gid_map", format!("{SANDBOX_ID} {} 1", gid.as_raw())),
        ];
        for (file, text) in maps {
            std::fs::write(format!("{proc}/{file}"), text)
                .map_err(|e| format!("cannot write the user namespace's {file}: {e}"))?;
        }
    }
    let mut to_init = mine.try_clone().map_err(|e| e.to_string())?;
    let mut from_init = BufReader::new(mine);
    // Init builds the root while the groups are made and it is attached to
    // them (the first attach waits for an RCU grace period, a few
    // milliseconds); it forks the payload only after "attached". On v1 init
    // has attached itself already.
    to_init
        .write_all(b"\"go\"\n")
        .map_err(|e| format!("init died: {e}"))?;
    if let Some(hierarchy @ Hierarchy::V2 { .. }) = &spec.cgroups {
        group
            .insert(create_group(hierarchy, spec)?)
            .attach(init_pid)
            .map_err(|e| format!("cannot attach the sandbox to its control groups: {e}"))?;
    }
    let group = group.as_ref();
    // If init is gone, what it said is read next.
    let _ = to_init.write_all(b"\"attached\"\n");
    match receive::<InitReport>(&mut from_init, "init")? {
        Some(InitReport::Ready) => {}
        Some(InitReport::Failed(error)) => return Err(error),
        Some(InitReport::Status(_)) | None => {
            return Err("init died while building the sandbox".into());
        }
    }
    let mut to_payload = payload_link.try_clone().map_err(|e| e.to_string())?;
    let mut from_payload = BufReader::new(payload_link);
    match receive::<PayloadReport>(&mut from_payload, "payload")? {
        Some(PayloadReport::Confined) => {}
        Some(PayloadReport::Failed(error)) => return Err(error),
        None => return Err("the payload died while confining itself".into()),
    }
    send(out, &Report::Ready)?;
    let Some(run) = receive::<Run>(from_gateway, "run")? else {
        return Ok(None);
    };
    send(&mut to_payload, &run)?;
    let deadline = spec.profile.timeout.map(|t| Instant::now() + t);
    // The link ends without a word when the exec succeeds.
    match receive::<PayloadReport>(&mut from_payload, "payload")? {
        None => send(out, &Report::Started)?,
        Some(PayloadReport::Failed(error)) => return Err(error),
        Some(PayloadReport::Confined) => {
            return Err("the payload said it was confined twice".into());
        }
    }
    drop((to_payload, from_payload));
    let ending = loop {
        if !from_init.buffer().is_empty() {
            break read_status(&mut from_init, group, &mut init);
        }
        let timeout = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    init.kill();
                    break Ending::TimedOut;
                }
                Some(left)
            }
            None => None,
        };
        let timespec = timeout.map(|left| Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        });
        let gateway_fd = from_gateway.get_ref().as_fd();
        let init_fd = from_init.get_ref().as_fd();
        let mut fds = [
            PollFd::new(&gateway_fd, PollFlags::IN),
            PollFd::new(&init_fd, PollFlags::IN),
        ];
        match poll(&mut fds, timespec.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let (gateway_ready, init_ready) =
            (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if init_ready {
            break read_status(&mut from_init, group, &mut init);
        }
        if gateway_ready {
            // The gateway sends nothing after the run: this is its hang-up.
            init.kill();
            break Ending::Stopped;
        }
    };
    init.reap();
    Ok(Some(ending))
}

fn read_status(
    from_init: &mut BufReader<UnixStream>,
    group: Option<&Group>,
    init: &mut Init,
) -> Ending {
    let oom = || group.is_some_and(|g| g.oom_kills() > 0);
    match receive::<InitReport>(from_init, "init") {
        Ok(Some(InitReport::Status(raw))) => {
            if libc::WIFEXITED(raw) {
                Ending::Exited(libc::WEXITSTATUS(raw))
            } else if libc::WIFSIGNALED(raw) {
                let signal = libc::WTERMSIG(raw);
                if signal == libc::SIGKILL && oom() {
                    Ending::OutOfMemory
                } else {
                    Ending::Signaled(signal)
                }
            } else {
                Ending::Exited(-1)
            }
        }
        // Init itself was killed: by the OOM killer, or from outside.
        Ok(_) | Err(_) => {
            let signal = init.reap();
            if oom() {
                Ending::OutOfMemory
            } else {
                Ending::Signaled(signal.unwrap_or(libc::SIGKILL))
            }
        }
    }
}

struct Init {
    pid: i32,
    reaped: bool,
}

impl Init {
    fn kill(&self) {
        if let Some(pid) = Pid::from_raw(self.pid) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }

    /// Waits for init; returns the signal that killed it, if one did.
    fn reap(&mut self) -> Option<i32> {
        if self.reaped {
            return None;
        }
        self.reaped = true;
        let pid = Pid::from_raw(self.pid)?;
        loop {
            match waitpid(Some(pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => return status.terminating_signal(),
                Ok(None) => return None,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            self.reap();
        }
    }
}

/// How long the gateway waits for a supervisor to build its sandbox.
pub(crate) const BUILD_TIMEOUT: Duration = Duration::from_secs(10);
