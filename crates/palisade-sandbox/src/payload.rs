//! The payload's last steps before `execve`: a new session, rlimits, no capabilities, a non-root uid, no-new-privileges, Landlock, seccomp.

use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::unix::net::UnixStream;

use landlock::{
    ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
    path_beneath_rules,
};
use rustix::process::{Resource, Rlimit};
use seccompiler::BpfProgram;

use crate::supervisor::SANDBOX_ID;
use crate::sys;
use crate::wire::{Run, Spec};

/// Runs in the forked payload process; never returns. A failure before the
/// exec is written to `errors` (which the exec closes on success).
pub(crate) fn start(
    spec: &Spec,
    run: &Run,
    program: &CStr,
    argv: &[CString],
    env: &[CString],
    filters: &[BpfProgram; 2],
    mut errors: UnixStream,
) -> ! {
    let error = match confine(spec, run, filters) {
        Ok(()) => {
            let error = sys::exec(program, argv, env);
            format!(
                "cannot execute `{}`: {error}",
                run.argv.first().map_or("", String::as_str)
            )
        }
        Err(error) => error,
    };
    let _ = errors.write_all(error.as_bytes());
    std::process::exit(127)
}

fn confine(spec: &Spec, run: &Run, filters: &[BpfProgram; 2]) -> Result<(), String> {
    let profile = &spec.profile;
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
    if spec.landlock {
        landlock(spec)?;
    }
    rustix::process::chdir(&run.cwd)
        .map_err(|e| format!("cannot enter `{}`: {e}", run.cwd.display()))?;
    sys::cloexec_from(3).map_err(|e| format!("close_range: {e}"))?;
    crate::seccomp::install(filters)
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
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .handle_access(AccessNet::from_all(abi))
        .map_err(fail)?
        .scope(Scope::from_all(abi))
        .map_err(fail)?
        .create()
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
