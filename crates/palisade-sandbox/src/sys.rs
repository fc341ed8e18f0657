//! The few system calls that rustix does not wrap safely, each in a small function with its soundness argument.
//!
//! Everything here runs in the zygote, supervisor, init or payload
//! processes, which are single-threaded: the palisade binary executed as
//! the zygote (see [`crate::zygote`]) and what it forks, never the
//! multi-threaded gateway.

use std::ffi::{CStr, CString};
use std::io;

/// Forks into new namespaces (`flags` are `CLONE_NEW*`; 0 is a plain fork).
/// Returns the child's pid in the parent and `None` in the child.
///
/// The caller must be single-threaded: the child is a copy of it, and a
/// lock another thread held would stay held forever.
pub fn fork_into(flags: libc::c_int) -> io::Result<Option<i32>> {
    let flags = libc::c_ulong::try_from(flags | libc::SIGCHLD)
        .map_err(|_| io::Error::other("bad clone flags"))?;
    #[expect(
        unsafe_code,
        reason = "raw clone, to fork straight into new namespaces"
    )]
    // SAFETY: clone without CLONE_VM and with a null stack is fork: the child
    // gets a copy-on-write copy of the single-threaded caller's memory, so no
    // Rust invariant is shared between the two processes. The null pointers
    // are the parent and child tid arguments, unused without CLONE_*TID.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            0,
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(
            i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?,
        )),
    }
}

/// Replaces this process with `path`; returns only on failure.
pub fn exec(path: &CStr, argv: &[CString], env: &[CString]) -> io::Error {
    let argv: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    #[expect(unsafe_code, reason = "execve has no safe wrapper in std or rustix")]
    // SAFETY: `path` is a valid C string, and `argv` and `env` are arrays of
    // valid C strings ending in a null pointer, all borrowed for the call.
    unsafe {
        libc::execve(path.as_ptr(), argv.as_ptr(), env.as_ptr());
    }
    io::Error::last_os_error()
}

/// The signals init waits for instead of handling.
pub fn waited_signals() -> libc::sigset_t {
    let mut set = empty_set();
    for signal in [
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        #[expect(unsafe_code, reason = "sigaddset on a set we own")]
        // SAFETY: `set` is an initialised sigset_t and `signal` a valid signal number.
        unsafe {
            libc::sigaddset(&raw mut set, signal);
        }
    }
    set
}

fn empty_set() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    #[expect(unsafe_code, reason = "sigemptyset initialises the set")]
    // SAFETY: sigemptyset writes the whole set, after which it is initialised.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    }
}

/// Sets the signal mask to `set` (`None`: nothing blocked).
pub fn set_signal_mask(set: Option<&libc::sigset_t>) -> io::Result<()> {
    let empty = empty_set();
    let set = set.unwrap_or(&empty);
    #[expect(unsafe_code, reason = "sigprocmask on a valid set")]
    // SAFETY: `set` points to an initialised sigset_t; the old mask is not asked for.
    let result = unsafe { libc::sigprocmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits for one of the (blocked) signals in `set`.
pub fn wait_signal(set: &libc::sigset_t) -> io::Result<i32> {
    #[expect(unsafe_code, reason = "sigwaitinfo on a valid set")]
    // SAFETY: `set` points to an initialised sigset_t; the info is not asked for.
    let signal = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
    if signal < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(signal)
    }
}

/// Empties the capability bounding set (every capability the kernel knows).
pub fn drop_bounding_set() -> io::Result<()> {
    for capability in 0..64 {
        #[expect(
            unsafe_code,
            reason = "prctl(PR_CAPBSET_DROP) for every capability number"
        )]
        // SAFETY: PR_CAPBSET_DROP takes an integer and touches no memory of ours.
        let result = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) };
        if result != 0 {
            let error = io::Error::last_os_error();
            // EINVAL: past the last capability this kernel has.
            if error.raw_os_error() == Some(libc::EINVAL) {
                return Ok(());
            }
            return Err(error);
        }
    }
    Ok(())
}

/// Marks every descriptor from `first` on close-on-exec.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    #[expect(unsafe_code, reason = "close_range has no wrapper in rustix")]
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors; it closes nothing that Rust code still owns.
    let result = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Brings the network namespace's `lo` up (`SIOCSIFFLAGS`); a new
/// namespace starts with it down.
pub fn loopback_up() -> io::Result<()> {
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    #[expect(unsafe_code, reason = "ifreq is a C union with no safe constructor")]
    // SAFETY: an all-zero ifreq is a valid value of the C struct.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    #[expect(unsafe_code, reason = "SIOCSIFFLAGS has no wrapper in rustix")]
    // SAFETY: the ioctl reads an ifreq, which lives for the call, on a
    // socket this function owns.
    let result = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SIOCSIFFLAGS,
            &request,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The Landlock ABI version the kernel offers (0 when it has none).
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    #[expect(unsafe_code, reason = "landlock_create_ruleset's version query")]
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the
    // call only returns a number.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(abi).unwrap_or(0).max(0)
}

/// Ignores `signal` (the disposition survives `execve`).
pub fn ignore_signal(signal: libc::c_int) {
    #[expect(unsafe_code, reason = "setting a signal's disposition to SIG_IGN")]
    // SAFETY: SIG_IGN installs no handler, so no code of ours can run in
    // signal context.
    unsafe {
        libc::signal(signal, libc::SIG_IGN);
    }
}

/// Restores `signal`'s default disposition.
pub fn default_signal(signal: libc::c_int) {
    #[expect(unsafe_code, reason = "setting a signal's disposition to SIG_DFL")]
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in
    // signal context.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Moves this process into a new cgroup namespace.
pub fn unshare_cgroup() -> io::Result<()> {
    #[expect(
        unsafe_code,
        reason = "rustix marks unshare unsafe for the flags that split descriptor tables or memory"
    )]
    // SAFETY: CLONE_NEWCGROUP only changes which cgroup this process sees as
    // its root; it shares or unshares no memory, descriptors or credentials.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
        .map_err(io::Error::from)
}
