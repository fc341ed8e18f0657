//! Init: PID 1 of the sandbox's namespaces. It builds the root, forks the payload (which confines itself and waits for its run), reaps, relays signals, and ends the namespace when the payload ends.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, StatVfsMountFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::cgroup::{Group, Hierarchy};
use crate::profile::{EGRESS_PORT, SYSTEM};
use crate::supervisor::{Bind, SANDBOX_ID};
use crate::wire::{InitReport, Spec};
use crate::{payload, sys};

/// Where the host's root stays visible while the sandbox's root is built.
const OLD_ROOT: &str = "/.host";

/// `attach_self`: the groups init moves itself into (cgroup v1), before
/// anything else; on v2 the supervisor moves it.
pub(crate) fn main(
    socket: UnixStream,
    payload_link: UnixStream,
    egress: UnixStream,
    spec: &Spec,
    binds: &[Bind],
    attach_self: Option<&Group>,
) -> ! {
    let mut to_supervisor = match socket.try_clone() {
        Ok(s) => s,
        Err(_) => std::process::exit(2),
    };
    let outcome = serve(
        socket,
        payload_link,
        egress,
        &mut to_supervisor,
        spec,
        binds,
        attach_self,
    );
    if let Err(error) = outcome {
        let _ = report(&mut to_supervisor, &InitReport::Failed(error));
        std::process::exit(1);
    }
    std::process::exit(0)
}

fn report(out: &mut UnixStream, message: &InitReport) -> Result<(), String> {
    let mut line = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    line.push(b'\n');
    out.write_all(&line).map_err(|e| e.to_string())
}

fn serve(
    socket: UnixStream,
    payload_link: UnixStream,
    egress: UnixStream,
    out: &mut UnixStream,
    spec: &Spec,
    binds: &[Bind],
    attach_self: Option<&Group>,
) -> Result<(), String> {
    // Dies with the supervisor; and if the supervisor is already gone, the
    // read below sees the end of the socket.
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("prctl: {e}"))?;
    let mut from_supervisor = BufReader::new(socket);
    // "go": the uid and gid maps are written (a user namespace's files
    // cannot be made before).
    wait_for(&mut from_supervisor, "go")?;
    if spec.profile.has_egress() {
        open_egress(&egress)?;
    }
    drop(egress);
    if let Some(group) = attach_self {
        group
            .attach_self()
            .map_err(|e| format!("cannot attach the sandbox to its control groups: {e}"))?;
    }
    // The payload is forked before its run comes: it confines itself while
    // the sandbox waits (in the pool), and then only reads its run and
    // executes it, talking to the supervisor directly, not through init.
    // When init is in its groups already (cgroup v1, where it attached
    // itself, or no cgroups) the payload is forked before the root is
    // built, and drops its privileges and installs seccomp meanwhile; it
    // applies Landlock, whose rules name paths of the new root, once told
    // the root is built. On v2 the supervisor is attaching init while the
    // root is built, and nothing of the payload may run before.
    let (root_built_in, root_built_out) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("pipe: {e}"))?;
    let waited = sys::waited_signals();
    let mut payload_link = Some(payload_link);
    let mut root_built_in = Some(root_built_in);
    let mut fork_payload = |from_supervisor: &mut BufReader<UnixStream>| {
        // "attached": init is in the sandbox's groups.
        wait_for(from_supervisor, "attached")?;
        if spec.cgroups.is_some() {
            // The sandbox sees its own group as the root.
            sys::unshare_cgroup()
                .map_err(|e| format!("cannot create the cgroup namespace: {e}"))?;
        }
        sys::set_signal_mask(Some(&waited)).map_err(|e| format!("sigprocmask: {e}"))?;
        let (Some(link), Some(root_built)) = (payload_link.take(), root_built_in.take()) else {
            return Err("the payload was forked already".to_owned());
        };
        match sys::fork_into(0).map_err(|e| format!("cannot start the payload: {e}"))? {
            None => payload::start(spec, link, root_built),
            // The payload's exec must close the last copy of its link.
            Some(pid) => Ok(pid),
        }
    };
    let early = !matches!(spec.cgroups, Some(Hierarchy::V2 { .. }));
    let early_pid = if early {
        Some(fork_payload(&mut from_supervisor)?)
    } else {
        None
    };
    build_root(spec, binds)?;
    rustix::system::sethostname(b"sandbox").map_err(|e| format!("sethostname: {e}"))?;
    let payload_pid = match early_pid {
        Some(pid) => pid,
        None => fork_payload(&mut from_supervisor)?,
    };
    rustix::io::write(&root_built_out, b"r")
        .map_err(|e| format!("cannot wake the payload: {e}"))?;
    drop(root_built_out);
    report(out, &InitReport::Ready)?;
    let status = reap_until(payload_pid, &waited);
    report(out, &InitReport::Status(status))?;
    // Returning ends PID 1, and the kernel kills whatever else is left:
    // daemons, double forks and stragglers die with the run.
    Ok(())
}

/// The sandbox's only way out: brings its loopback up, listens on
/// `127.0.0.1:EGRESS_PORT` and sends the listener to the gateway, which
/// serves its connections as palisade's egress proxy. The namespace has no
/// other interface, so nothing else inside reaches beyond it.
fn open_egress(link: &UnixStream) -> Result<(), String> {
    sys::loopback_up().map_err(|e| fail("bring the loopback interface up", e))?;
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, EGRESS_PORT))
        .map_err(|e| fail(format!("listen on 127.0.0.1:{EGRESS_PORT}"), e))?;
    crate::zygote::send_descriptor(link, &listener)
        .map_err(|e| fail("hand the egress listener to palisade", e))
}

/// Reads the supervisor's go-ahead `word`; exits quietly if the supervisor
/// is gone (it is ending the sandbox).
fn wait_for(from_supervisor: &mut BufReader<UnixStream>, word: &str) -> Result<(), String> {
    let mut line = String::new();
    if from_supervisor
        .read_line(&mut line)
        .map_err(|e| e.to_string())?
        == 0
    {
        std::process::exit(0);
    }
    match serde_json::from_str::<String>(&line) {
        Ok(said) if said == word => Ok(()),
        Ok(_) | Err(_) => Err(format!(
            "the supervisor said {} instead of `{word}`",
            line.trim_end()
        )),
    }
}

/// Reaps every child until the payload ends, relaying signals to it;
/// returns its raw wait status.
fn reap_until(payload: i32, waited: &libc::sigset_t) -> i32 {
    let payload_pid = Pid::from_raw(payload);
    loop {
        let signal = match sys::wait_signal(waited) {
            Ok(signal) => signal,
            Err(_) => continue,
        };
        if signal != libc::SIGCHLD {
            if let (Some(pid), Some(signal)) = (payload_pid, Signal::from_named_raw(signal)) {
                let _ = rustix::process::kill_process(pid, signal);
            }
            continue;
        }
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            if Some(pid) == payload_pid {
                return status.as_raw();
            }
        }
    }
}

fn fail(what: impl std::fmt::Display, error: impl std::fmt::Display) -> String {
    format!("cannot build the sandbox: {what}: {error}")
}

fn host(path: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(path.strip_prefix("/").unwrap_or(path))
}

/// Builds the sandbox's root on a fresh tmpfs and pivots into it.
fn build_root(spec: &Spec, binds: &[Bind]) -> Result<(), String> {
    let profile = &spec.profile;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| fail("make / private", e))?;
    // The new root is a tmpfs mounted over /tmp; pivoting into it leaves the
    // host's root, /tmp included, visible under OLD_ROOT until we detach it.
    mount_fs(
        "tmpfs",
        "/tmp",
        MountFlags::NOSUID | MountFlags::NODEV,
        "size=4m,mode=0755",
    )
    .map_err(|e| fail("mount the root tmpfs", e))?;
    mkdir(&Path::new("/tmp").join(OLD_ROOT.trim_start_matches('/')))?;
    rustix::process::pivot_root("/tmp", format!("/tmp{OLD_ROOT}").as_str())
        .map_err(|e| fail("pivot_root", e))?;
    rustix::process::chdir("/").map_err(|e| fail("chdir /", e))?;

    // The read-only system (`profile::SYSTEM`): what is under /etc after
    // the synthesized /etc exists; a symbolic link mirrored, a missing
    // directory left out.
    let (in_etc, outside): (Vec<&str>, Vec<&str>) =
        SYSTEM.iter().partition(|dir| dir.starts_with("/etc/"));
    for top in outside {
        show_system(top)?;
    }
    build_etc()?;
    for dir in in_etc {
        show_system(dir)?;
    }

    // /tmp: the only place the payload may write, unless a bind says otherwise.
    let mut tmp_flags = MountFlags::NOSUID | MountFlags::NODEV;
    if profile.tmp_noexec {
        tmp_flags |= MountFlags::NOEXEC;
    }
    mkdir(Path::new("/tmp"))?;
    mount_fs(
        "tmpfs",
        "/tmp",
        tmp_flags,
        &format!("size={},mode=1777", profile.tmp_size),
    )
    .map_err(|e| fail("mount /tmp", e))?;
    build_dev(profile.tmp_size)?;

    for b in binds {
        bind(&host(&b.source), &b.target, b.writable, b.directory)?;
    }

    // /proc for the sandbox's own processes, its /proc/sys read-only. It
    // must be mounted while the host's /proc is still visible.
    mkdir(Path::new("/proc"))?;
    mount_fs(
        "proc",
        "/proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "",
    )
    .map_err(|e| fail("mount /proc", e))?;
    rustix::mount::mount_bind("/proc/sys", "/proc/sys").map_err(|e| fail("bind /proc/sys", e))?;
    remount(
        "/proc/sys",
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC,
    )?;

    rustix::mount::unmount(OLD_ROOT, UnmountFlags::DETACH)
        .map_err(|e| fail("detach the host's root", e))?;
    std::fs::remove_dir(OLD_ROOT).map_err(|e| fail("remove the host root's mount point", e))?;
    rustix::mount::mount_remount(
        "/",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        "",
    )
    .map_err(|e| fail("make the root read-only", e))?;
    Ok(())
}

/// Shows the host's system directory `dir` read-only at the same place:
/// bound when it is a directory, mirrored when it is a symbolic link.
fn show_system(dir: &str) -> Result<(), String> {
    let on_host = host(Path::new(dir));
    match std::fs::symlink_metadata(&on_host) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(&on_host).map_err(|e| fail(dir, e))?;
            std::os::unix::fs::symlink(target, dir).map_err(|e| fail(dir, e))
        }
        Ok(meta) if meta.is_dir() => bind(&on_host, Path::new(dir), false, true),
        Ok(_) | Err(_) => Ok(()),
    }
}

fn build_etc() -> Result<(), String> {
    mkdir(Path::new("/etc"))?;
    let id = SANDBOX_ID;
    let written = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{id}:{id}:sandbox:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        (
            "group",
            format!("root:x:0:\nsandbox:x:{id}:\nnogroup:x:65534:\n"),
        ),
        ("hostname", "sandbox\n".to_owned()),
        (
            "hosts",
            "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost\n".to_owned(),
        ),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\n".to_owned(),
        ),
    ];
    for (name, content) in written {
        std::fs::write(Path::new("/etc").join(name), content)
            .map_err(|e| fail(format!("/etc/{name}"), e))?;
    }
    for name in ["ld.so.cache", "ld.so.conf", "localtime"] {
        let on_host = host(&Path::new("/etc").join(name));
        let inside = Path::new("/etc").join(name);
        match std::fs::symlink_metadata(&on_host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&on_host).map_err(|e| fail(name, e))?;
                std::os::unix::fs::symlink(target, &inside).map_err(|e| fail(name, e))?;
            }
            Ok(meta) if meta.is_file() => {
                std::fs::copy(&on_host, &inside).map_err(|e| fail(name, e))?;
            }
            Ok(_) | Err(_) => {}
        }
    }
    Ok(())
}

fn build_dev(shm_size: u64) -> Result<(), String> {
    mkdir(Path::new("/dev"))?;
    mount_fs(
        "tmpfs",
        "/dev",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        "size=64k,mode=0755",
    )
    .map_err(|e| fail("mount /dev", e))?;
    for device in ["null", "zero", "full", "random", "urandom"] {
        let inside = Path::new("/dev").join(device);
        std::fs::write(&inside, b"").map_err(|e| fail(inside.display(), e))?;
        rustix::mount::mount_bind(host(&inside), &inside).map_err(|e| fail(inside.display(), e))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, Path::new("/dev").join(link))
            .map_err(|e| fail(link, e))?;
    }
    mkdir(Path::new("/dev/shm"))?;
    mount_fs(
        "tmpfs",
        "/dev/shm",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        &format!("size={shm_size},mode=1777"),
    )
    .map_err(|e| fail("mount /dev/shm", e))?;
    rustix::mount::mount_remount(
        "/dev",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NOEXEC,
        "",
    )
    .map_err(|e| fail("make /dev read-only", e))
}

fn mount_fs(fstype: &str, target: &str, flags: MountFlags, data: &str) -> rustix::io::Result<()> {
    let data = CString::new(data).map_err(|_| rustix::io::Errno::INVAL)?;
    rustix::mount::mount(fstype, target, fstype, flags, data.as_c_str())
}

fn mkdir(path: &Path) -> Result<(), String> {
    match rustix::fs::mkdir(path, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(fail(format!("mkdir {}", path.display()), e)),
    }
}

fn remount(target: &str, flags: MountFlags) -> Result<(), String> {
    rustix::mount::mount_remount(target, flags, "")
        .map_err(|e| fail(format!("remount {target}"), e))
}

/// Binds `source` (a path under OLD_ROOT) at `target`, nosuid and nodev,
/// read-only unless `writable`, keeping the flags the source's mount has
/// locked (a user namespace may not clear them).
fn bind(source: &Path, target: &Path, writable: bool, directory: bool) -> Result<(), String> {
    let shown = target.display();
    if directory {
        std::fs::create_dir_all(target).map_err(|e| fail(format!("mount point {shown}"), e))?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("mount point {shown}"), e))?;
        }
        std::fs::write(target, b"").map_err(|e| fail(format!("mount point {shown}"), e))?;
    }
    rustix::mount::mount_bind(source, target).map_err(|e| fail(format!("bind {shown}"), e))?;
    let locked = rustix::fs::statvfs(source)
        .map_err(|e| fail(format!("statvfs {shown}"), e))?
        .f_flag;
    let mut flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV;
    if !writable || locked.contains(StatVfsMountFlags::RDONLY) {
        flags |= MountFlags::RDONLY;
    }
    for (have, keep) in [
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ] {
        if locked.contains(have) {
            flags |= keep;
        }
    }
    rustix::mount::mount_remount(target, flags, "").map_err(|e| fail(format!("remount {shown}"), e))
}
