//! Layer 3: a fresh, one-time Linux sandbox for every tool execution, built from the kernel's own primitives.
//!
//! A sandbox is a supervisor process (forked by the zygote, the palisade
//! binary executed once, so the multi-threaded gateway never forks), an
//! init that is PID 1 of new
//! mount, PID, network, IPC, UTS and cgroup namespaces (and a user
//! namespace when palisade is not root), and the payload: a non-root uid
//! with no capabilities, no-new-privileges, Landlock rules and a seccomp
//! allowlist, in a read-only root with a size-capped `/tmp`, under cgroup
//! memory, CPU and pids limits and a wall-clock deadline. When the payload
//! ends, init ends, and the kernel takes everything else with it.
//!
//! This is the only crate where `unsafe` code is allowed, and only in small
//! functions (most in `sys`): the workspace denies `unsafe_code`, so each
//! block is annotated `#[expect(unsafe_code, reason = "...")]` and carries a
//! `// SAFETY:` comment. It is also the only crate that creates tool
//! processes.

mod cgroup;
mod host;
mod init;
mod launch;
mod parent;
mod payload;
pub mod profile;
mod seccomp;
mod supervisor;
mod sys;
mod wire;
mod zygote;

pub use cgroup::Hierarchy;
pub use host::{Degraded, Feature, Host};
pub use launch::{End, Finished, Prepared, Running, Sandboxes, Settings, command};
pub use parent::die_with_parent;
pub use profile::{Mount, Profile, ProfileSettings};
pub use supervisor::{SUPERVISOR_ARG, supervise};
pub use wire::Run;
