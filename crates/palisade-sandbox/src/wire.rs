//! What the gateway and a sandbox's supervisor say to each other over its control socket, one JSON line each.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::Hierarchy;
use crate::profile::Profile;

/// The first line: how to build the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub profile: Profile,
    /// `None` in the `no-cgroups` degraded mode.
    pub cgroups: Option<Hierarchy>,
    /// A user namespace maps the sandbox's uid when palisade is not root.
    pub user_namespace: bool,
    pub landlock: bool,
}

/// The second line, sent when the sandbox is ready: what to run in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Run {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Small files written into the sandbox's `/tmp` before the payload starts.
    pub files: Vec<(String, Vec<u8>)>,
    /// On whose behalf it runs: what its egress connections are attributed
    /// to. The gateway's alone; never sent to the sandbox.
    #[serde(skip)]
    pub who: palisade_egress::Attribution,
}

/// What the supervisor reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Report {
    /// The sandbox is built and waits for its `Run`.
    Ready,
    /// The payload was started.
    Started,
    /// The run is over.
    Ended(Ending),
    /// The sandbox could not be built or the payload not started.
    Failed(String),
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    OutOfMemory,
    /// The gateway stopped the run (it ended its session, or the output cap).
    Stopped,
}

/// What init tells its supervisor over their private socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum InitReport {
    /// The root is built and the payload forked.
    Ready,
    /// The payload's raw wait status.
    Status(i32),
    Failed(String),
}

/// What the payload tells the supervisor over its own socket, which its
/// `execve` closes (close-on-exec): the end of the socket with nothing
/// said after the run is the exec's success.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PayloadReport {
    /// Every confinement is in place; it waits for its `Run`.
    Confined,
    /// It could not confine itself, or not start the run's program.
    Failed(String),
}
