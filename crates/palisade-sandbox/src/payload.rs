//! The payload: forked by init while the sandbox is built, it confines itself (a new session, rlimits, no capabilities, a non-root uid, no-new-privileges, Landlock, seccomp), then waits for its run and executes it.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
    path_beneath_rules,
};
use rustix::process::{Resource, Rlimit};

use crate::profile::EGRESS_PORT;
use crate::supervisor::SANDBOX_ID;
use crate::sys;
use crate::wire::{PayloadReport, Run, Spec};

/// Runs in the payload process, which init forks while the sandbox is
/// built; never returns. It confines itself completely (Landlock once
/// `root_built` says the root is there), says so, and waits for its run on
/// `link`, the socket to the supervisor. A failure is written to `link`; a
/// successful exec closes it (close-on-exec).
pub(crate) fn start(spec: &Spec, link: UnixStream, root_built: OwnedFd) -> ! {
    let mut to_supervisor = &link;
    let confined = drop_privileges(spec).and_then(|()| {
        let mut byte = [0u8; 1];
        match rustix::io::read(&root_built, &mut byte) {
            Ok(1) => {}
            // Init is gone, and the sandbox with it.
            Ok(_) | Err(_) => std::process::exit(127),
        }
        drop(root_built);
        // Its working directory was the host's until now.
        rustix::process::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
        if spec.landlock {
            landlock(spec)?;
        }
        Ok(())
    });
    if let Err(error) = confined {
        let _ = say(&mut to_supervisor, &PayloadReport::Failed(error));
        std::process::exit(127)
    }
    if say(&mut to_supervisor, &PayloadReport::Confined).is_err() {
        std::process::exit(127)
    }
    let mut from_supervisor = BufReader::new(&link);
    let mut line = String::new();
    match from_supervisor.read_line(&mut line) {
        // The supervisor is gone, and with it the sandbox.
        Ok(0) | Err(_) => std::process::exit(127),
        Ok(_) => {}
    }
    let error = match serde_json::from_str::<Run>(&line) {
        Ok(run) => run_program(&run, spec.profile.has_egress()),
        Err(e) => format!("bad run message: {e}"),
    };
    let _ = say(&mut to_supervisor, &PayloadReport::Failed(error));
    std::process::exit(127)
}

fn say(out: &mut impl Write, message: &PayloadReport) -> Result<(), String> {
    let mut line = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    line.push(b'\n');
    out.write_all(&line).map_err(|e| e.to_string())
}

/// The proxy variables of a sandbox with egress, over the run's own: they
/// help the programs that read them; the namespace is what holds the rest.
fn proxy_env() -> Vec<(String, String)> {
    let proxy = format!("http://127.0.0.1:{EGRESS_PORT}");
    ["http_proxy", "https_proxy", "all_proxy"]
        .into_iter()
        .flat_map(|name| [name.to_owned(), name.to_ascii_uppercase()])
        .map(|name| (name, proxy.clone()))
        .chain(["no_proxy", "NO_PROXY"].map(|name| (name.to_owned(), String::new())))
        .collect()
}

/// Writes the run's files into `/tmp`, enters its directory and executes
/// its program: all under the confinement already in place. Returns only
/// on failure, with what went wrong.
fn run_program(run: &Run, egress: bool) -> String {
    let prepared = write_files(run).and_then(|()| {
        let program = find_program(run)?;
        let argv = c_strings(run.argv.iter().map(String::as_str), "argument")?;
        let mut vars = run.env.clone();
        if egress {
            vars.extend(proxy_env());
        }
        let env: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let env = c_strings(env.iter().map(String::as_str), "environment variable")?;
        rustix::process::chdir(&run.cwd)
            .map_err(|e| format!("cannot enter `{}`: {e}", run.cwd.display()))?;
        Ok((program, argv, env))
    });
    match prepared {
        Ok((program, argv, env)) => {
            let error = sys::exec(&program, &argv, &env);
            format!(
                "cannot execute `{}`: {error}",
                run.argv.first().map_or("", String::as_str)
            )
        }
        Err(error) => error,
    }
}

fn c_strings<'a>(items: impl Iterator<Item = &'a str>, what: &str) -> Result<Vec<CString>, String> {
    items
        .map(|item| CString::new(item).map_err(|_| format!("an {what} holds a NUL byte")))
        .collect()
}

fn find_program(run: &Run) -> Result<CString, String> {
    let Some(name) = run.argv.first() else {
        return Err("no command to run".into());
    };
    if name.contains('/') {
        return CString::new(name.as_str()).map_err(|_| "the command holds a NUL byte".into());
    }
    let path = run
        .env
        .get("PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin", String::as_str);
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = Path::new(dir).join(name);
        if rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok()
            && candidate.is_file()
        {
            return CString::new(candidate.as_os_str().as_encoded_bytes())
                .map_err(|_| "bad path".into());
        }
    }
    Err(format!(
        "cannot execute `{name}`: not found in the sandbox's PATH ({path})"
    ))
}

/// The payload is uid and gid 1000 by now, so what it writes is the sandbox
/// user's, as `/tmp`'s other files.
fn write_files(run: &Run) -> Result<(), String> {
    for (name, content) in &run.files {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(format!("input file `{name}`: a plain file name is needed"));
        }
        std::fs::write(Path::new("/tmp").join(name), content)
            .map_err(|e| format!("input file `{name}`: {e}"))?;
    }
    Ok(())
}

/// Everything but Landlock, in this order: each step may need the privilege
/// the next one drops; seccomp comes last of these, as it denies the calls
/// the others make. Landlock, reading the run, writing its files, `chdir`
/// and `execve` are all the allowlist has to permit afterwards.
fn drop_privileges(spec: &Spec) -> Result<(), String> {
    let profile = &spec.profile;
    let filters = crate::seccomp::filters()?;
    sys::set_signal_mask(None).map_err(|e| format!("sigprocmask: {e}"))?;
    rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
    let mut limits = vec![
        (Resource::Fsize, profile.file_size),
        (Resource::Nofile, profile.open_files),
        (Resource::Core, 0),
    ];
    if spec.cgroups.is_none() {
        // The no-cgroups degraded mode: rlimits are all that is left.
        limits.push((
            Resource::As,
            profile.memory.max(profile.address_space_floor),
        ));
        // Counted per user namespace (Linux 5.14 and later): the payload's
        // processes, not all of palisade's user's.
        limits.push((Resource::Nproc, profile.pids));
        if let Some(timeout) = profile.timeout {
            limits.push((Resource::Cpu, timeout.as_secs().max(1)));
        }
    }
    for (resource, value) in limits {
        // Never above the hard limit palisade itself runs under: raising
        // one needs a privilege the payload does not have, and a lower
        // limit only confines it more.
        let value = rustix::process::getrlimit(resource)
            .maximum
            .map_or(value, |hard| value.min(hard));
        rustix::process::setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(|e| format!("setrlimit {resource:?}: {e}"))?;
    }
    // Past the file-size limit a write fails with EFBIG instead of killing.
    sys::ignore_signal(libc::SIGXFSZ);
    sys::drop_bounding_set()
        .map_err(|e| format!("cannot empty the capability bounding set: {e}"))?;
    rustix::thread::clear_ambient_capability_set()
        .map_err(|e| format!("cannot clear ambient capabilities: {e}"))?;
    let (uid, gid) = (
        rustix::process::Uid::from_raw(SANDBOX_ID),
        rustix::process::Gid::from_raw(SANDBOX_ID),
    );
    if !spec.user_namespace {
        rustix::thread::set_thread_groups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    }
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    let none = rustix::thread::CapabilitySet::empty();
    rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: none,
            permitted: none,
            inheritable: none,
        },
    )
    .map_err(|e| format!("cannot drop capabilities: {e}"))?;
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
    sys::cloexec_from(3).map_err(|e| format!("close_range: {e}"))?;
    crate::seccomp::install(&filters)
}

fn landlock(spec: &Spec) -> Result<(), String> {
    let abi = ABI::V6;
    let fail = |e: landlock::RulesetError| format!("landlock: {e}");
    let mut writable: Vec<std::path::PathBuf> = vec!["/dev/shm".into()];
    writable.extend(
        spec.profile
            .mounts
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.target.clone()),
    );
    let mut tmp = AccessFs::from_all(abi);
    if spec.profile.tmp_noexec {
        tmp &= !AccessFs::Execute;
    }
    // No TCP bind and no TCP connect, but to the egress listener (its port;
    // the namespace has no interface but loopback).
    let egress = spec
        .profile
        .has_egress()
        .then(|| NetPort::new(EGRESS_PORT, AccessNet::ConnectTcp));
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .handle_access(AccessNet::from_all(abi))
        .map_err(fail)?
        .scope(Scope::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(egress.into_iter().map(Ok::<_, landlock::RulesetError>))
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/tmp"], tmp))
        .map_err(fail)?
        .add_rules(path_beneath_rules(writable, AccessFs::from_all(abi)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
            ],
            AccessFs::from_file(abi),
        ))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    Ok(())
}
