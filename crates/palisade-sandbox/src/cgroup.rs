//! Control groups for one sandbox: memory, CPU and pids limits, on cgroup v2 or the v1 controllers.
//!
//! Each sandbox gets `palisade/s<supervisor pid>` under every controller it
//! uses; the supervisor removes it when the run ends, and [`sweep`] removes
//! the groups of supervisors that died without doing so.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// Where the controllers palisade needs are mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hierarchy {
    /// The unified hierarchy, with memory, cpu and pids delegated below its root.
    V2 { root: PathBuf },
    /// One v1 mount per controller (possibly shared, as in `cpu,cpuacct`).
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        pids: PathBuf,
    },
}

const PARENT: &str = "palisade";

impl Hierarchy {
    /// Reads `/proc/self/mountinfo`: v1 wins where its memory controller is
    /// mounted (a hybrid host's unified mount holds no controllers).
    pub fn detect() -> Result<Self, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        Self::from_mountinfo(&mountinfo)
    }

    fn from_mountinfo(mountinfo: &str) -> Result<Self, String> {
        let (mut memory, mut cpu, mut pids, mut unified) = (None, None, None, None);
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or_default();
            let options = right.nth(1).unwrap_or_default();
            match fstype {
                "cgroup2" => unified = Some(PathBuf::from(point)),
                "cgroup" => {
                    for option in options.split(',') {
                        let slot = match option {
                            "memory" => &mut memory,
                            "cpu" => &mut cpu,
                            "pids" => &mut pids,
                            _ => continue,
                        };
                        *slot = Some(PathBuf::from(point));
                    }
                }
                _ => {}
            }
        }
        match (memory, cpu, pids, unified) {
            (Some(memory), Some(cpu), Some(pids), _) => Ok(Self::V1 { memory, cpu, pids }),
            (None, None, None, Some(root)) => {
                let controllers =
                    fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                let missing: Vec<&str> = ["memory", "cpu", "pids"]
                    .into_iter()
                    .filter(|c| !controllers.split_whitespace().any(|have| have == *c))
                    .collect();
                if missing.is_empty() {
                    Ok(Self::V2 { root })
                } else {
                    Err(format!(
                        "the cgroup v2 hierarchy at {} lacks the {} controller(s)",
                        root.display(),
                        missing.join(", ")
                    ))
                }
            }
            _ => Err(
                "no cgroup hierarchy with the memory, cpu and pids controllers is mounted".into(),
            ),
        }
    }

    /// A short description for `sandbox check` and `/healthz`.
    pub fn describe(&self) -> String {
        match self {
            Self::V2 { root } => format!("v2 at {}", root.display()),
            Self::V1 { .. } => "v1 (memory, cpu, pids)".to_owned(),
        }
    }

    fn parents(&self) -> Vec<PathBuf> {
        let mut parents: Vec<PathBuf> = match self {
            Self::V2 { root } => vec![root.join(PARENT)],
            Self::V1 { memory, cpu, pids } => {
                vec![memory.join(PARENT), cpu.join(PARENT), pids.join(PARENT)]
            }
        };
        parents.dedup();
        parents
    }

    /// Checks that palisade may create groups here (it must be root, or own
    /// a delegated subtree).
    pub fn check_writable(&self) -> Result<(), String> {
        for parent in self.parents() {
            let base = parent.parent().unwrap_or(&parent);
            if let Err(e) = ensure_parent(&parent, self) {
                return Err(format!(
                    "cannot create control groups under {}: {e}",
                    base.display()
                ));
            }
        }
        Ok(())
    }
}

fn ensure_parent(parent: &Path, hierarchy: &Hierarchy) -> io::Result<()> {
    match fs::create_dir(parent) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if let Hierarchy::V2 { root } = hierarchy {
        for dir in [root.as_path(), parent] {
            let control = dir.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control)?;
            for controller in ["memory", "cpu", "pids"] {
                if !enabled.split_whitespace().any(|c| c == controller) {
                    fs::write(&control, format!("+{controller}"))?;
                }
            }
        }
    }
    Ok(())
}

/// The groups of one sandbox.
#[derive(Debug)]
pub struct Group {
    dirs: Vec<PathBuf>,
    memory_dir: PathBuf,
    v2: bool,
}

impl Group {
    /// Creates the groups of the supervisor `pid` and writes `profile`'s limits.
    pub fn create(hierarchy: &Hierarchy, pid: u32, profile: &Profile) -> io::Result<Self> {
        let name = format!("s{pid}");
        let period: u64 = 100_000;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "cpus is checked to lie between 0.01 and 1024"
        )]
        let quota = (profile.cpus * period as f64).round() as u64;
        let group = match hierarchy {
            Hierarchy::V2 { root } => {
                let dir = root.join(PARENT).join(&name);
                ensure_parent(&root.join(PARENT), hierarchy)?;
                create_fresh(&dir)?;
                let group = Self {
                    dirs: vec![dir.clone()],
                    memory_dir: dir.clone(),
                    v2: true,
                };
                fs::write(dir.join("memory.max"), profile.memory.to_string())?;
                // Swap would let a payload slip past its memory limit.
                let _ = fs::write(dir.join("memory.swap.max"), "0");
                fs::write(dir.join("pids.max"), profile.pids.to_string())?;
                fs::write(dir.join("cpu.max"), format!("{quota} {period}"))?;
                group
            }
            Hierarchy::V1 { memory, cpu, pids } => {
                let mut dirs = Vec::new();
                for base in [memory, cpu, pids] {
                    let dir = base.join(PARENT).join(&name);
                    if dirs.contains(&dir) {
                        continue;
                    }
                    ensure_parent(&base.join(PARENT), hierarchy)?;
                    create_fresh(&dir)?;
                    dirs.push(dir);
                }
                let memory_dir = memory.join(PARENT).join(&name);
                let group = Self {
                    dirs,
                    memory_dir: memory_dir.clone(),
                    v2: false,
                };
                fs::write(
                    memory_dir.join("memory.limit_in_bytes"),
                    profile.memory.to_string(),
                )?;
                // Present only with swap accounting; the same figure leaves no swap.
                let _ = fs::write(
                    memory_dir.join("memory.memsw.limit_in_bytes"),
                    profile.memory.to_string(),
                );
                let cpu_dir = cpu.join(PARENT).join(&name);
                fs::write(cpu_dir.join("cpu.cfs_period_us"), period.to_string())?;
                fs::write(cpu_dir.join("cpu.cfs_quota_us"), quota.to_string())?;
                fs::write(
                    pids.join(PARENT).join(&name).join("pids.max"),
                    profile.pids.to_string(),
                )?;
                group
            }
        };
        Ok(group)
    }

    /// Moves process `pid` (and so everything it will start) into the groups.
    pub fn attach(&self, pid: i32) -> io::Result<()> {
        for dir in &self.dirs {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling thread into the groups: for a single-threaded
    /// caller, the whole process and everything it will start. On v1 this
    /// goes through `tasks`, which for the caller's own thread takes no
    /// global lock, so it does not wait for the RCU grace period that
    /// moving another process through `cgroup.procs` waits for.
    pub fn attach_self(&self) -> io::Result<()> {
        let file = if self.v2 { "cgroup.procs" } else { "tasks" };
        for dir in &self.dirs {
            fs::write(dir.join(file), "0")?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer has killed a process here.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        fs::read_to_string(self.memory_dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|line| {
                    let (name, value) = line.split_once(' ')?;
                    (name == key).then(|| value.trim().parse().ok())?
                })
            })
            .unwrap_or(0)
    }

    /// Removes the groups, waiting briefly for the kernel to finish reaping.
    pub fn remove(self) -> io::Result<()> {
        remove_dirs(&self.dirs)
    }
}

/// Creates `dir`; one left by a dead supervisor whose pid this one reuses
/// is removed first (it can hold no process: a pid names one process).
fn create_fresh(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_dir(dir)?;
            fs::create_dir(dir)
        }
        other => other,
    }
}

fn remove_dirs(dirs: &[PathBuf]) -> io::Result<()> {
    for dir in dirs {
        let mut tries = 0;
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                // Busy while the last processes of the namespace are reaped.
                Err(e) if tries < 500 => {
                    let _ = e;
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Removes the groups of supervisors that no longer run, killing whatever a
/// crashed supervisor left in them. Returns how many sandboxes it removed.
pub fn sweep(hierarchy: &Hierarchy) -> usize {
    let mut removed = std::collections::BTreeSet::new();
    for parent in hierarchy.parents() {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix('s').and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if supervisor_alive(pid) {
                continue;
            }
            let dir = entry.path();
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            if remove_dirs(std::slice::from_ref(&dir)).is_ok() {
                removed.insert(pid);
            }
        }
    }
    removed.len()
}

/// Whether `pid` is a live sandbox supervisor (not a reused pid).
fn supervisor_alive(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == crate::SUPERVISOR_ARG.as_bytes())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_controllers_win_over_an_empty_unified_mount() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 31 0:32 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
36 31 0:33 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            Hierarchy::from_mountinfo(mountinfo).unwrap(),
            Hierarchy::V1 {
                memory: "/sys/fs/cgroup/memory".into(),
                cpu: "/sys/fs/cgroup/cpu,cpuacct".into(),
                pids: "/sys/fs/cgroup/pids".into(),
            }
        );
        let error = Hierarchy::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n").unwrap_err();
        assert!(error.contains("no cgroup hierarchy"), "{error}");
    }
}
