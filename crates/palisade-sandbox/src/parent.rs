//! A child that dies with palisade: `PR_SET_PDEATHSIG`, so a SIGKILLed gateway leaves no upstream running.

use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{Signal, getpid, getppid, set_parent_process_death_signal};

/// Makes the process `command` starts receive SIGKILL when palisade dies,
/// however it dies (`kill_on_drop` only covers an orderly exit).
///
/// The kernel sends the signal when the *thread* that spawned the child
/// exits; palisade spawns from its runtime's worker threads, which live as
/// long as the process. If palisade died between fork and the `prctl`, the
/// child sees a new parent and refuses to start.
pub fn die_with_parent(command: &mut Command) {
    let parent = getpid();
    let hook = move || {
        set_parent_process_death_signal(Some(Signal::KILL))?;
        if getppid() != Some(parent) {
            return Err(std::io::Error::from_raw_os_error(3 /* ESRCH */));
        }
        Ok(())
    };
    #[expect(
        unsafe_code,
        reason = "pre_exec's closure runs between fork and exec, where only async-signal-safe code may run"
    )]
    // SAFETY: the closure makes three raw system calls (prctl, getppid, and
    // none else), allocates nothing (rustix's errors convert to
    // `io::Error::from_raw_os_error`, which does not allocate) and takes no lock.
    unsafe {
        command.pre_exec(hook);
    }
}

#[cfg(test)]
#[expect(
    clippy::disallowed_methods,
    reason = "this crate is where processes are made"
)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    use super::*;

    fn spawned_by_a_thread_that_exits(hook: bool) -> std::process::Child {
        std::thread::spawn(move || {
            let mut command = Command::new("sleep");
            command.arg("30");
            if hook {
                die_with_parent(&mut command);
            }
            command.spawn().unwrap()
        })
        .join()
        .unwrap()
    }

    fn killed_within(child: &mut std::process::Child, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = child.try_wait().unwrap() {
                return status.signal() == Some(9);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn the_child_dies_when_what_spawned_it_does() {
        // The kernel signals when the spawning thread exits: a thread that
        // spawns and ends stands in for a gateway that is killed.
        let mut child = spawned_by_a_thread_that_exits(true);
        assert!(killed_within(&mut child, Duration::from_secs(5)));

        let mut control = spawned_by_a_thread_that_exits(false);
        assert!(!killed_within(&mut control, Duration::from_millis(300)));
        control.kill().unwrap();
        control.wait().unwrap();
    }
}
