//! The preflight: which isolation features this host has, and which degraded modes the operator accepted for those it lacks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cgroup::{self, Hierarchy};

/// A named, explicit weakening the operator accepts for a missing feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Degraded {
    /// No control groups: memory and CPU are bounded by rlimits only, and
    /// processes only by the timeout.
    NoCgroups,
    /// No Landlock: mounts and seccomp alone confine the filesystem.
    NoLandlock,
}

impl Degraded {
    pub const ALL: [Self; 2] = [Self::NoCgroups, Self::NoLandlock];

    pub fn name(self) -> &'static str {
        match self {
            Self::NoCgroups => "no-cgroups",
            Self::NoLandlock => "no-landlock",
        }
    }
}

impl fmt::Display for Degraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Degraded {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.name() == text)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a degraded mode (one of: {})",
                    Self::ALL.map(Self::name).join(", ")
                )
            })
    }
}

/// One feature's state, as `sandbox check` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub present: bool,
    pub detail: String,
    /// The degraded mode that accepts its absence; `None` when it is required outright.
    pub degraded: Option<Degraded>,
}

/// What the preflight found.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub root: bool,
    pub features: Vec<Feature>,
    pub cgroups: Option<Hierarchy>,
    pub landlock_abi: i32,
    /// The degraded modes in force (accepted and needed).
    pub degraded: Vec<Degraded>,
}

impl Host {
    /// Probes the host.
    pub fn probe() -> Self {
        let root = rustix::process::geteuid().is_root();
        let mut features = Vec::new();
        let userns = if root {
            Ok("not needed: palisade runs as root".to_owned())
        } else {
            match std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
                Ok(text) if text.trim() == "0" => {
                    Err("user.max_user_namespaces is 0: set it above 0 (sysctl)".to_owned())
                }
                Ok(_) | Err(_) => match std::fs::read_to_string(
                    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
                ) {
                    Ok(text) if text.trim() == "1" => Err(
                        "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)"
                            .to_owned(),
                    ),
                    _ => Ok("available".to_owned()),
                },
            }
        };
        features.push(feature("user namespaces", userns, None));
        let seccomp = match rustix::fs::stat("/proc/sys/kernel/seccomp/actions_avail") {
            Ok(_) => Ok("filter mode".to_owned()),
            Err(_) => {
                Err("the kernel has no seccomp filter mode (CONFIG_SECCOMP_FILTER)".to_owned())
            }
        };
        features.push(feature("seccomp", seccomp, None));
        let landlock_abi = crate::sys::landlock_abi();
        let landlock = if landlock_abi >= 1 {
            Ok(format!("ABI {landlock_abi}"))
        } else {
            Err("not enabled in this kernel (add `landlock` to the lsm= boot parameter)".to_owned())
        };
        features.push(feature("landlock", landlock, Some(Degraded::NoLandlock)));
        let cgroups = Hierarchy::detect().and_then(|h| {
            if root {
                h.check_writable().map(|()| h)
            } else {
                Err("palisade is not root, and cannot create control groups".to_owned())
            }
        });
        let hierarchy = cgroups.as_ref().ok().cloned();
        features.push(feature(
            "cgroups",
            cgroups.map(|h| h.describe()),
            Some(Degraded::NoCgroups),
        ));
        let tmpfs = match std::fs::read_to_string("/proc/filesystems") {
            Ok(list) if list.lines().any(|l| l.ends_with("\ttmpfs")) => Ok("available".to_owned()),
            _ => Err("the kernel has no tmpfs".to_owned()),
        };
        features.push(feature("tmpfs", tmpfs, None));
        Self {
            root,
            features,
            cgroups: hierarchy,
            landlock_abi,
            degraded: Vec::new(),
        }
    }

    /// Accepts the missing features that `accepted` names; any other
    /// missing feature is an error naming what to do.
    pub fn accept(mut self, accepted: &[Degraded]) -> Result<Self, String> {
        let mut problems = Vec::new();
        for feature in &self.features {
            if feature.present {
                continue;
            }
            match feature.degraded {
                Some(mode) if accepted.contains(&mode) => self.degraded.push(mode),
                Some(mode) => problems.push(format!(
                    "{}: {} (to run without it, accept the degraded mode `{mode}`: `[sandbox] degraded = [\"{mode}\"]` or `--degraded {mode}`)",
                    feature.name, feature.detail
                )),
                None => problems.push(format!(
                    "{}: {} (palisade cannot sandbox without it)",
                    feature.name, feature.detail
                )),
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(format!(
                "the sandbox cannot start on this host:\n  {}",
                problems.join("\n  ")
            ))
        }
    }

    /// Removes what crashed supervisors left behind.
    pub fn sweep(&self) -> usize {
        self.cgroups.as_ref().map_or(0, cgroup::sweep)
    }
}

fn feature(
    name: &'static str,
    probe: Result<String, String>,
    degraded: Option<Degraded>,
) -> Feature {
    let (present, detail) = match probe {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Feature {
        name,
        present,
        detail,
        degraded,
    }
}
