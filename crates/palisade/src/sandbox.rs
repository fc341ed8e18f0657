//! `palisade sandbox run|check`: try a profile on a command, and see what this host's kernel offers the sandbox.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use palisade_sandbox::{Degraded, End, Host, ProfileSettings, Sandboxes, Settings};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Run a command in a fresh one-time sandbox; the exit status is the command's.
    Run {
        /// The profile: a built-in (shell, python, node, upstream) or one of `[sandbox.profiles]`.
        #[arg(long, default_value = "shell")]
        profile: String,
        /// Show a host path inside, writable: SRC or SRC:DST (repeatable).
        #[arg(long = "bind", value_name = "SRC[:DST]")]
        bind: Vec<String>,
        /// Show a host path inside, read-only: SRC or SRC:DST (repeatable).
        #[arg(long = "bind-ro", value_name = "SRC[:DST]")]
        bind_ro: Vec<String>,
        /// Override the profile's wall-clock limit (`10s`, `2m`, `none`).
        #[arg(long)]
        timeout: Option<String>,
        /// Override the profile's memory limit (`64MiB`).
        #[arg(long)]
        memory: Option<String>,
        /// Accept a named degraded mode for a feature this host lacks (no-cgroups, no-landlock).
        #[arg(long, value_parser = parse_degraded)]
        degraded: Vec<Degraded>,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Check what this host supports: user namespaces, seccomp, Landlock, cgroups, tmpfs.
    Check {
        /// Accept a named degraded mode for a feature this host lacks.
        #[arg(long, value_parser = parse_degraded)]
        degraded: Vec<Degraded>,
    },
}

pub fn parse_degraded(text: &str) -> Result<Degraded, String> {
    text.parse()
}

/// `[sandbox]` of the config file, alone: `sandbox run` needs nothing else of it.
pub fn settings(path: Option<&Path>) -> anyhow::Result<Settings> {
    let Some(path) = path else {
        return Ok(Settings::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    match table.remove("sandbox") {
        Some(section) => section
            .try_into()
            .with_context(|| format!("{}: [sandbox]", path.display())),
        None => Ok(Settings::default()),
    }
}

pub fn run(config: Option<&Path>, command: SandboxCommand) -> anyhow::Result<ExitCode> {
    match command {
        SandboxCommand::Check { degraded } => check(config, &degraded),
        SandboxCommand::Run {
            profile,
            bind,
            bind_ro,
            timeout,
            memory,
            degraded,
            command,
        } => {
            let mut settings = settings(config)?;
            settings.degraded.extend(degraded);
            settings.pool = Some(0);
            let helper = std::env::current_exe().context("cannot find palisade's own binary")?;
            let sandboxes = Sandboxes::start(&settings, helper).map_err(anyhow::Error::msg)?;
            let base = sandboxes
                .profile(&profile)
                .with_context(|| {
                    format!(
                        "no sandbox profile `{profile}` (built-in: {}; or define [sandbox.profiles.{profile}])",
                        palisade_sandbox::profile::BUILT_IN.join(", ")
                    )
                })?
                .clone();
            let changes = ProfileSettings {
                bind,
                bind_ro,
                timeout,
                memory,
                ..ProfileSettings::default()
            };
            let profile = base.with(&profile, &changes).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                !profile.has_egress(),
                "sandbox profile `{}` has `egress`: its only way out is the gateway's egress proxy, which `palisade sandbox run` does not start; run the command through the gateway (the built-in `exec` tool), or try it with a profile without `egress`",
                profile.name
            );
            let run = palisade_sandbox::command(&profile, command);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let end = runtime.block_on(sandboxes.run_streaming(
                &profile,
                run,
                tokio::io::stdin(),
                tokio::io::stdout(),
                tokio::io::stderr(),
            ));
            let end = match end {
                Ok(end) => end,
                Err(error) => {
                    eprintln!("palisade: sandbox: {error}");
                    let status = if error.starts_with("cannot execute") {
                        127
                    } else {
                        126
                    };
                    std::process::exit(status);
                }
            };
            if !matches!(end, End::Exited(_)) {
                eprintln!("palisade: sandbox: {}", end.describe(&profile));
            }
            // The stdin reader may block in a thread: leave without waiting for it.
            std::process::exit(end.exit_status())
        }
    }
}

#[expect(clippy::print_stdout, reason = "the report is the command's output")]
fn check(config: Option<&Path>, degraded: &[Degraded]) -> anyhow::Result<ExitCode> {
    let mut accepted = settings(config)?.degraded;
    accepted.extend_from_slice(degraded);
    let host = Host::probe();
    println!(
        "palisade sandbox: running as {}",
        if host.root {
            "root (no user namespace needed)"
        } else {
            "an unprivileged user (user namespaces)"
        }
    );
    for feature in &host.features {
        let mark = if feature.present { "ok  " } else { "MISSING" };
        let mode = match (feature.present, feature.degraded) {
            (false, Some(mode)) => format!(" (degraded mode `{mode}` accepts it)"),
            (false, None) => " (required)".to_owned(),
            (true, _) => String::new(),
        };
        println!("  {mark} {:<16} {}{mode}", feature.name, feature.detail);
    }
    match host.accept(&accepted) {
        Ok(host) if host.degraded.is_empty() => {
            println!("every isolation feature is present");
            Ok(ExitCode::SUCCESS)
        }
        Ok(host) => {
            let modes: Vec<&str> = host.degraded.iter().map(|m| m.name()).collect();
            println!("runs DEGRADED: {}", modes.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("palisade: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
