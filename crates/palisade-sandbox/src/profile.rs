//! Sandbox profiles: what a sandbox shows of the host, and the limits it runs under.
//!
//! A profile starts from a built-in (`shell`, `python`, `node`, `upstream`)
//! and changes what its settings name. Every profile sees the read-only
//! system set (`/usr`, `/bin`, `/lib*`, a few `/etc` files); anything else of
//! the host is visible only through the profile's own binds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_egress::{RuleSpec, Rules};
use serde::{Deserialize, Serialize};

/// One host path shown inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

impl Mount {
    /// Parses `SRC[:DST]`; both must be absolute, and `DST` defaults to `SRC`.
    pub fn parse(spec: &str, writable: bool) -> Result<Self, String> {
        let (source, target) = match spec.split_once(':') {
            Some((source, target)) => (source, target),
            None => (spec, spec),
        };
        for (what, path) in [("source", source), ("target", target)] {
            if !path.starts_with('/') {
                return Err(format!(
                    "bind `{spec}`: the {what} `{path}` must be an absolute path"
                ));
            }
            if path.split('/').any(|part| part == "..") {
                return Err(format!("bind `{spec}`: the {what} may not contain `..`"));
            }
        }
        let target = PathBuf::from(target);
        for reserved in ["/proc", "/dev"] {
            if target.starts_with(reserved) {
                return Err(format!(
                    "bind `{spec}`: `{reserved}` inside the sandbox is palisade's own"
                ));
            }
        }
        if target == Path::new("/") {
            return Err(format!(
                "bind `{spec}`: the sandbox's root is palisade's own"
            ));
        }
        Ok(Self {
            source: PathBuf::from(source),
            target,
            writable,
        })
    }
}

/// A resolved profile: everything one sandbox needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub mounts: Vec<Mount>,
    /// Bytes of memory (cgroup limit; `RLIMIT_AS` when cgroups are off).
    pub memory: u64,
    /// The least `RLIMIT_AS` when cgroups are off: a runtime that reserves
    /// address space far beyond what it uses (V8: ~1 GiB) cannot start
    /// under its memory alone.
    pub address_space_floor: u64,
    /// CPUs' worth of time per wall-clock second.
    pub cpus: f64,
    /// Processes and threads at once.
    pub pids: u64,
    /// Wall-clock limit for one run; `None` for a session-long sandbox.
    pub timeout: Option<Duration>,
    pub tmp_size: u64,
    pub tmp_noexec: bool,
    pub file_size: u64,
    pub open_files: u64,
    /// Bytes of stdout and of stderr each that a run may write.
    pub max_output: u64,
    pub env: BTreeMap<String, String>,
    /// The destinations the sandbox may reach through palisade's egress
    /// proxy; empty: no network at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<RuleSpec>,
}

/// The port of the proxy listener inside a sandbox with egress
/// (`127.0.0.1:3128`, the port HTTP proxies traditionally use).
pub const EGRESS_PORT: u16 = 3128;

const MIB: u64 = 1024 * 1024;

/// The names of the built-in profiles.
pub const BUILT_IN: [&str; 4] = ["shell", "python", "node", "upstream"];

impl Profile {
    /// A built-in profile, with the defaults of a code-execution container:
    /// no network, read-only root, 50 MiB `/tmp`, 0.5 CPU, 256 MiB, 30 s.
    pub fn built_in(name: &str) -> Option<Self> {
        let mut profile = Self {
            name: name.to_owned(),
            mounts: Vec::new(),
            memory: 256 * MIB,
            address_space_floor: 0,
            cpus: 0.5,
            pids: 64,
            timeout: Some(Duration::from_secs(30)),
            tmp_size: 50 * MIB,
            tmp_noexec: false,
            file_size: 50 * MIB,
            open_files: 256,
            max_output: MIB,
            env: BTreeMap::new(),
            egress: Vec::new(),
        };
        match name {
            "shell" => {}
            "python" => {
                profile
                    .env
                    .insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
                profile.env.insert("PYTHONUNBUFFERED".into(), "1".into());
            }
            "node" => {
                // V8 reserves address space far beyond what it uses; the
                // cgroup limit is what bounds it.
                profile.pids = 128;
                profile.address_space_floor = 4096 * MIB;
            }
            "upstream" => {
                // An MCP server lives as long as its session, and may be a
                // Node program with a dozen threads.
                profile.timeout = None;
                profile.memory = 512 * MIB;
                profile.cpus = 1.0;
                profile.pids = 256;
                profile.max_output = u64::MAX;
                // MCP servers are often Node programs.
                profile.address_space_floor = 4096 * MIB;
            }
            _ => return None,
        }
        Some(profile)
    }

    /// Whether the sandbox reaches the network (only through palisade's proxy).
    pub fn has_egress(&self) -> bool {
        !self.egress.is_empty()
    }

    /// This profile changed by `settings`.
    pub fn with(mut self, name: &str, settings: &ProfileSettings) -> Result<Self, String> {
        self.name = name.to_owned();
        let size = |what: &str, value: &Option<String>, into: &mut u64| -> Result<(), String> {
            if let Some(text) = value {
                *into =
                    parse_size(text).map_err(|e| format!("sandbox.profiles.{name}.{what}: {e}"))?;
            }
            Ok(())
        };
        size("memory", &settings.memory, &mut self.memory)?;
        size("tmp_size", &settings.tmp_size, &mut self.tmp_size)?;
        size("file_size", &settings.file_size, &mut self.file_size)?;
        size("max_output", &settings.max_output, &mut self.max_output)?;
        if let Some(cpus) = settings.cpus {
            if !(0.01..=1024.0).contains(&cpus) {
                return Err(format!(
                    "sandbox.profiles.{name}.cpus: {cpus} is not between 0.01 and 1024"
                ));
            }
            self.cpus = cpus;
        }
        if let Some(pids) = settings.pids {
            if pids == 0 {
                return Err(format!("sandbox.profiles.{name}.pids: must be at least 1"));
            }
            self.pids = pids;
        }
        if let Some(open_files) = settings.open_files {
            self.open_files = open_files;
        }
        if let Some(timeout) = &settings.timeout {
            self.timeout = match timeout.as_str() {
                "none" => None,
                text => Some(humantime::parse_duration(text).map_err(|e| {
                    format!("sandbox.profiles.{name}.timeout: `{text}`: {e} (or \"none\")")
                })?),
            };
        }
        if let Some(noexec) = settings.tmp_noexec {
            self.tmp_noexec = noexec;
        }
        for (specs, writable) in [(&settings.bind_ro, false), (&settings.bind, true)] {
            for spec in specs {
                let mount = Mount::parse(spec, writable)
                    .map_err(|e| format!("sandbox.profiles.{name}: {e}"))?;
                self.mounts.push(mount);
            }
        }
        self.env
            .extend(settings.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(egress) = &settings.egress {
            Rules::parse(egress, &format!("sandbox.profiles.{name}.egress"))
                .map_err(|e| e.to_string())?;
            self.egress = egress.clone();
        }
        if self.memory < 4 * MIB {
            return Err(format!(
                "sandbox.profiles.{name}.memory: at least 4 MiB is needed to start a process"
            ));
        }
        Ok(self)
    }
}

/// The host's system directories every sandbox shows read-only at the same
/// place (those the host has): programs, libraries, and the public CA
/// certificates TLS clients look for (not `/etc/ssl/private`).
pub const SYSTEM: [&str; 9] = [
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/alternatives",
    "/etc/ssl/certs",
];

/// Symbolic links followed before [`Profile::host_file`] gives up, as the kernel's limit.
const MAX_LINKS: usize = 40;

impl Profile {
    /// The host path behind `inside`, a path inside the sandbox, by the
    /// system set and the profile's binds (the deepest mount wins), with
    /// no symbolic link followed; `None` when the sandbox does not show it.
    fn host_path(&self, inside: &Path) -> Option<PathBuf> {
        let system = SYSTEM.iter().map(|dir| (Path::new(*dir), Path::new(*dir)));
        let binds = self
            .mounts
            .iter()
            .map(|m| (m.target.as_path(), m.source.as_path()));
        let (target, source) = system
            .chain(binds)
            .filter(|(target, _)| inside.starts_with(target))
            .max_by_key(|(target, _)| target.components().count())?;
        let rest = inside.strip_prefix(target).ok()?;
        Some(if rest.as_os_str().is_empty() {
            source.to_path_buf()
        } else {
            source.join(rest)
        })
    }

    /// The host file that `inside` names in this profile's sandbox,
    /// following symbolic links the way the sandbox would see them (an
    /// absolute target is a path inside the sandbox, not on the host).
    /// `Err` says which path the sandbox does not show. For diagnostics
    /// before a start: the sandbox itself is the authority.
    pub fn host_file(&self, inside: &Path) -> Result<PathBuf, PathBuf> {
        let mut pending: Vec<std::ffi::OsString> = Vec::new();
        let push = |path: &Path, pending: &mut Vec<std::ffi::OsString>| {
            for part in path.components().rev() {
                if let std::path::Component::Normal(name) = part {
                    pending.push(name.to_owned());
                } else if part == std::path::Component::ParentDir {
                    pending.push("..".into());
                }
            }
        };
        push(inside, &mut pending);
        let mut at = PathBuf::from("/");
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                at.pop();
                continue;
            }
            let next = at.join(&name);
            let Some(host) = self.host_path(&next) else {
                // A directory on the way to a mount point is palisade's own.
                let on_the_way = SYSTEM
                    .iter()
                    .map(Path::new)
                    .chain(self.mounts.iter().map(|m| m.target.as_path()))
                    .any(|target| target.starts_with(&next));
                if on_the_way {
                    at = next;
                    continue;
                }
                return Err(next);
            };
            match std::fs::read_link(&host) {
                Ok(target) if links < MAX_LINKS => {
                    links += 1;
                    if target.is_absolute() {
                        at = PathBuf::from("/");
                    }
                    push(&target, &mut pending);
                }
                _ => at = next,
            }
        }
        self.host_path(&at).ok_or(at)
    }
}

/// A profile as the config file writes it: `[sandbox.profiles.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSettings {
    /// The built-in to start from (default: `shell`).
    pub base: Option<String>,
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    pub timeout: Option<String>,
    pub tmp_size: Option<String>,
    pub tmp_noexec: Option<bool>,
    pub file_size: Option<String>,
    pub open_files: Option<u64>,
    pub max_output: Option<String>,
    #[serde(default)]
    pub bind: Vec<String>,
    #[serde(default)]
    pub bind_ro: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Destinations reachable through palisade's egress proxy (`"api.example.com:443"`, or tables).
    pub egress: Option<Vec<RuleSpec>>,
}

/// Resolves every profile: the built-ins, then the configured ones (which
/// may replace a built-in of the same name).
pub fn resolve(
    configured: &BTreeMap<String, ProfileSettings>,
) -> Result<BTreeMap<String, Profile>, String> {
    let mut profiles: BTreeMap<String, Profile> = BUILT_IN
        .iter()
        .filter_map(|name| Profile::built_in(name).map(|p| ((*name).to_owned(), p)))
        .collect();
    for (name, settings) in configured {
        let base_name = settings.base.as_deref().unwrap_or(match name.as_str() {
            built_in if BUILT_IN.contains(&built_in) => built_in,
            _ => "shell",
        });
        let base = Profile::built_in(base_name).ok_or_else(|| {
            format!(
                "sandbox.profiles.{name}.base: `{base_name}` is not a built-in profile (one of {})",
                BUILT_IN.join(", ")
            )
        })?;
        profiles.insert(name.clone(), base.with(name, settings)?);
    }
    Ok(profiles)
}

/// Parses `256MiB`, `50M`, `1G`, `4096` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 64MiB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1024,
        "M" | "MiB" => MIB,
        "G" | "GiB" => 1024 * MIB,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// The size in the largest unit that divides it.
pub fn show_size(bytes: u64) -> String {
    for (unit, scale) in [("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{} {unit}", bytes / scale);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_file_follows_links_as_the_sandbox_sees_them() {
        let dir = std::env::temp_dir().join(format!("palisade-host-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("venv/bin")).unwrap();
        std::fs::create_dir_all(dir.join("runtime/bin")).unwrap();
        std::fs::write(dir.join("runtime/bin/python3"), "").unwrap();
        // A venv's interpreter links to a runtime outside the venv.
        std::os::unix::fs::symlink(dir.join("runtime/bin/python3"), dir.join("venv/bin/python"))
            .unwrap();
        std::os::unix::fs::symlink("../bin/../bin/python", dir.join("venv/bin/py")).unwrap();
        let mut profile = Profile::built_in("upstream").unwrap();
        profile
            .mounts
            .push(Mount::parse(&format!("{}", dir.join("venv").display()), false).unwrap());
        let python = dir.join("venv/bin/python");
        assert_eq!(profile.host_file(&python), Err(dir.join("runtime")));
        assert_eq!(
            profile.host_file(&dir.join("venv/bin/py")),
            Err(dir.join("runtime"))
        );
        profile
            .mounts
            .push(Mount::parse(&format!("{}", dir.join("runtime").display()), false).unwrap());
        assert_eq!(
            profile.host_file(&python),
            Ok(dir.join("runtime/bin/python3"))
        );
        // A bind to another place inside maps back to its source.
        profile.mounts.push(
            Mount::parse(&format!("{}:/opt/rt", dir.join("runtime").display()), false).unwrap(),
        );
        assert_eq!(
            profile.host_file(Path::new("/opt/rt/bin/python3")),
            Ok(dir.join("runtime/bin/python3"))
        );
        assert_eq!(
            profile.host_file(Path::new("/usr/bin/env")),
            Ok(PathBuf::from("/usr/bin/env"))
        );
        assert_eq!(
            profile.host_file(Path::new("/root/.cargo/bin/x")),
            Err(PathBuf::from("/root"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn built_ins_have_the_container_defaults() {
        let python = Profile::built_in("python").unwrap();
        assert_eq!(python.memory, 256 * MIB);
        assert_eq!(python.tmp_size, 50 * MIB);
        assert_eq!(python.timeout, Some(Duration::from_secs(30)));
        assert!((python.cpus - 0.5).abs() < f64::EPSILON);
        assert_eq!(Profile::built_in("upstream").unwrap().timeout, None);
        assert!(Profile::built_in("ruby").is_none());
        // Without cgroups, V8's reservations need room; a shell or Python does not.
        assert_eq!(python.address_space_floor, 0);
        for name in ["node", "upstream"] {
            assert_eq!(
                Profile::built_in(name).unwrap().address_space_floor,
                4096 * MIB
            );
        }
    }

    #[test]
    fn settings_change_what_they_name_and_binds_are_checked() {
        let settings: ProfileSettings = toml::from_str(
            r#"
            base = "python"
            memory = "64MiB"
            timeout = "3s"
            bind_ro = ["/srv/data:/data"]
            bind = ["/srv/out"]
            "#,
        )
        .unwrap();
        let profiles = resolve(&BTreeMap::from([("tight".to_owned(), settings)])).unwrap();
        let tight = &profiles["tight"];
        assert_eq!(tight.memory, 64 * MIB);
        assert_eq!(tight.timeout, Some(Duration::from_secs(3)));
        assert!(tight.env.contains_key("PYTHONDONTWRITEBYTECODE"));
        assert_eq!(
            tight.mounts,
            vec![
                Mount {
                    source: "/srv/data".into(),
                    target: "/data".into(),
                    writable: false
                },
                Mount {
                    source: "/srv/out".into(),
                    target: "/srv/out".into(),
                    writable: true
                },
            ]
        );
        for bad in ["relative", "/a:/proc/x", "/a/../b", "/x:/"] {
            assert!(Mount::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        let settings = ProfileSettings {
            memory: Some("lots".into()),
            ..ProfileSettings::default()
        };
        let error = resolve(&BTreeMap::from([("p".to_owned(), settings)])).unwrap_err();
        assert!(error.contains("sandbox.profiles.p.memory"), "{error}");
        let settings = ProfileSettings {
            base: Some("ruby".into()),
            ..ProfileSettings::default()
        };
        let error = resolve(&BTreeMap::from([("p".to_owned(), settings)])).unwrap_err();
        assert!(error.contains("not a built-in"), "{error}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50MiB").unwrap(), 50 * MIB);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1024 * MIB);
        assert!(parse_size("1T").is_err());
        assert_eq!(show_size(256 * MIB), "256 MiB");
    }
}
