//! The zygote: the palisade binary executed once per `Sandboxes`, a small single-threaded process that forks one supervisor per sandbox, so the binary is not executed (and relocated) for every sandbox.
//!
//! The gateway starts it as it used to start each supervisor: an empty
//! environment, its end of a socket pair as descriptor 3, and a
//! parent-death signal. For each sandbox the gateway sends one byte; the
//! zygote makes the supervisor's control socket, its stdin, stdout and
//! stderr pipes and its egress link, forks, and answers with the
//! supervisor's pid and, as `SCM_RIGHTS`, the gateway's ends of all five.
//! The gateway still never forks. A supervisor dies with the zygote
//! (parent-death signal, checked against a race with `getppid`), the
//! zygote with the gateway. The zygote ignores `SIGCHLD`, so the kernel
//! reaps each supervisor as it exits, and each supervisor restores the
//! default before it forks init, which it waits for.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::sys;

/// What the gateway sends to ask for a supervisor.
pub(crate) const FORK: u8 = b'f';
/// The first byte of an answer: a supervisor, or a failure in words.
const FORKED: u8 = 0;
const FAILED: u8 = 1;

/// The gateway's ends of a new supervisor's descriptors, and its pid.
#[derive(Debug)]
pub(crate) struct Forked {
    pub pid: u32,
    pub control: OwnedFd,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Where init sends the listener of a sandbox with egress.
    pub egress: OwnedFd,
}

/// Serves the gateway on `control` until it hangs up; then waits for the
/// supervisors still running and exits.
pub(crate) fn serve(control: OwnedFd) -> ! {
    let _ = sys::cloexec_from(3);
    // The kernel reaps every supervisor as it exits: no zombies pile up.
    sys::ignore_signal(libc::SIGCHLD);
    let zygote = rustix::process::getpid();
    let code = loop {
        let mut request = [0u8; 1];
        match rustix::io::read(&control, &mut request) {
            Ok(1) if request == [FORK] => {}
            Err(Errno::INTR) => continue,
            // The gateway dropped its `Sandboxes`.
            Ok(0) => break 0,
            Ok(_) => break 1,
            // No control socket (descriptor 3 is not one).
            Err(_) => break 2,
        }
        let answer = match Ends::new() {
            Ok(ends) => match sys::fork_into(0) {
                Ok(None) => {
                    // A supervisor holds nothing of the zygote's.
                    drop(control);
                    supervisor(zygote, ends)
                }
                Ok(Some(pid)) => send_forked(&control, pid, &ends),
                Err(e) => send_failed(&control, &format!("cannot fork a supervisor: {e}")),
            },
            Err(e) => send_failed(
                &control,
                &format!("cannot make a supervisor's descriptors: {e}"),
            ),
        };
        // The gateway's ends are its own now; the zygote's copies close here.
        if answer.is_err() {
            break 1;
        }
    };
    // With SIGCHLD ignored, wait returns ECHILD once no supervisor is left.
    while !matches!(
        rustix::process::wait(WaitOptions::empty()),
        Err(Errno::CHILD)
    ) {}
    std::process::exit(code)
}

/// A supervisor's descriptors, both ends, all close-on-exec.
struct Ends {
    supervisor_control: UnixStream,
    gateway_control: UnixStream,
    stdin: (OwnedFd, OwnedFd),
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
    supervisor_egress: UnixStream,
    gateway_egress: UnixStream,
}

impl Ends {
    fn new() -> std::io::Result<Self> {
        let (supervisor_control, gateway_control) = UnixStream::pair()?;
        let (supervisor_egress, gateway_egress) = UnixStream::pair()?;
        let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
        Ok(Self {
            supervisor_control,
            gateway_control,
            stdin: pipe()?,
            stdout: pipe()?,
            stderr: pipe()?,
            supervisor_egress,
            gateway_egress,
        })
    }
}

/// The forked child: becomes the sandbox's supervisor; never returns.
fn supervisor(zygote: Pid, ends: Ends) -> ! {
    let Ends {
        supervisor_control,
        gateway_control,
        stdin,
        stdout,
        stderr,
        supervisor_egress,
        gateway_egress,
    } = ends;
    drop((gateway_control, gateway_egress));
    let dies_with_the_zygote = rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .is_ok()
        && rustix::process::getppid() == Some(zygote);
    if !dies_with_the_zygote {
        std::process::exit(2);
    }
    // The zygote's SIGCHLD is ignored; the supervisor waits for init.
    sys::default_signal(libc::SIGCHLD);
    let stdio = rustix::stdio::dup2_stdin(&stdin.0)
        .and_then(|()| rustix::stdio::dup2_stdout(&stdout.1))
        .and_then(|()| rustix::stdio::dup2_stderr(&stderr.1));
    drop((stdin, stdout, stderr));
    if stdio.is_err() {
        std::process::exit(2);
    }
    crate::supervisor::supervise_on_socket(supervisor_control, supervisor_egress)
}

fn send_forked(control: &OwnedFd, pid: i32, ends: &Ends) -> Result<(), Errno> {
    let mut message = vec![FORKED];
    message.extend_from_slice(&pid.to_le_bytes());
    let fds = [
        ends.gateway_control.as_fd(),
        ends.stdin.1.as_fd(),
        ends.stdout.0.as_fd(),
        ends.stderr.0.as_fd(),
        ends.gateway_egress.as_fd(),
    ];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(5))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if !ancillary.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Errno::NOBUFS);
    }
    rustix::net::sendmsg(
        control,
        &[IoSlice::new(&message)],
        &mut ancillary,
        SendFlags::NOSIGNAL,
    )
    .map(|_| ())
}

fn send_failed(control: &OwnedFd, error: &str) -> Result<(), Errno> {
    let mut message = vec![FAILED];
    message.extend_from_slice(error.as_bytes());
    rustix::net::send(control, &message, SendFlags::NOSIGNAL).map(|_| ())
}

/// What the gateway reads from the zygote.
#[derive(Debug)]
pub(crate) enum Answer {
    Forked(Forked),
    Failed(String),
    /// The zygote is gone.
    Gone,
}

/// Receives one answer without blocking (`WouldBlock` when none is there yet).
pub(crate) fn receive(control: impl AsFd) -> std::io::Result<Answer> {
    let mut message = [0u8; 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(5))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        control,
        &mut [IoSliceMut::new(&mut message)],
        &mut ancillary,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for item in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = item {
            fds.extend(received);
        }
    }
    let message = message.get(..received.bytes).unwrap_or_default();
    let answer = match message.split_first() {
        None => Answer::Gone,
        Some((&FORKED, pid)) => {
            let pid = <[u8; 4]>::try_from(pid)
                .ok()
                .map(i32::from_le_bytes)
                .and_then(|pid| u32::try_from(pid).ok());
            let mut fds = fds.into_iter();
            match (
                pid,
                fds.next(),
                fds.next(),
                fds.next(),
                fds.next(),
                fds.next(),
                fds.next(),
            ) {
                (
                    Some(pid),
                    Some(control),
                    Some(stdin),
                    Some(stdout),
                    Some(stderr),
                    Some(egress),
                    None,
                ) => Answer::Forked(Forked {
                    pid,
                    control,
                    stdin,
                    stdout,
                    stderr,
                    egress,
                }),
                _ => Answer::Failed("the sandbox zygote sent a malformed answer".to_owned()),
            }
        }
        Some((&FAILED, error)) => Answer::Failed(String::from_utf8_lossy(error).into_owned()),
        Some(_) => Answer::Failed("the sandbox zygote sent a malformed answer".to_owned()),
    };
    Ok(answer)
}

/// Sends one descriptor (a sandbox's egress listener) over `link`.
pub(crate) fn send_descriptor(link: impl AsFd, fd: impl AsFd) -> Result<(), Errno> {
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if !ancillary.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Errno::NOBUFS);
    }
    rustix::net::sendmsg(
        link,
        &[IoSlice::new(b"l")],
        &mut ancillary,
        SendFlags::NOSIGNAL,
    )
    .map(|_| ())
}

/// Receives the one descriptor [`send_descriptor`] sent, without blocking.
pub(crate) fn receive_descriptor(link: impl AsFd) -> std::io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        link,
        &mut [IoSliceMut::new(&mut byte)],
        &mut ancillary,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for item in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = item {
            received = received.or_else(|| fds.next());
        }
    }
    Ok(received)
}

/// Sends the request for a supervisor without blocking.
pub(crate) fn request(control: impl AsFd) -> std::io::Result<()> {
    rustix::net::send(control, &[FORK], SendFlags::DONTWAIT | SendFlags::NOSIGNAL)?;
    Ok(())
}
