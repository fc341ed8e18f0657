//! `palisade`: the command line. Parses flags, loads the config, hands over to `palisade-server`.
#![forbid(unsafe_code)]

mod approvals;
mod audit;
mod keys;
mod limits;
mod policy;
mod quarantine;
mod sandbox;
mod sanitize;
mod scan;
mod secrets;
mod token;
mod tools;

use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand};
use palisade_secrets::SecretRedactor;
use palisade_server::config::{Unseen, Upstream};
use palisade_server::logging::RedactedStderr;
use palisade_server::{Config, Gateway, Mode};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "palisade", version, about = "A security gateway for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config`, the same for every subcommand.
#[derive(Debug, Args)]
struct ConfigFile {
    /// The config file, palisade.toml (reference: docs/configuration.md).
    /// Without it, the embedded default: listen on 127.0.0.1:8716, data in
    /// $XDG_DATA_HOME/palisade (else ~/.local/share/palisade), no upstreams,
    /// every stage without an implementation passed through. `palisade check`
    /// prints it.
    #[arg(long, short, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

/// `--listen`, for the subcommands that serve HTTP (or check a config for it).
#[derive(Debug, Args)]
struct Listen {
    /// Listen on IP:PORT instead of the config's `server.listen`; loopback
    /// only, as in the file. Port 0 picks a free port.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one Streamable HTTP MCP endpoint that aggregates the configured upstreams.
    Serve {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        listen: Listen,
    },
    /// Wrap one stdio MCP server for a local client: `palisade mcp -- npx -y some-server`.
    Mcp {
        #[command(flatten)]
        config: ConfigFile,
        /// The upstream's name in audit records; by default derived from the command.
        #[arg(long)]
        name: Option<String>,
        /// Run the server in this sandbox profile for its whole session (`upstream` unless given).
        #[arg(long)]
        profile: Option<String>,
        /// Run the server as an ordinary child process, with palisade's privileges (reported as degraded).
        #[arg(long, conflicts_with_all = ["profile", "bind", "bind_ro", "degraded"])]
        no_sandbox: bool,
        /// Accept a degraded sandbox mode for a feature this host lacks: no-cgroups (unprivileged), no-landlock.
        #[arg(long, value_name = "MODE", value_parser = sandbox::parse_degraded)]
        degraded: Vec<palisade_sandbox::Degraded>,
        /// Show a host path to the sandboxed server, writable: SRC or SRC:DST (repeatable).
        #[arg(long = "bind", value_name = "SRC[:DST]")]
        bind: Vec<String>,
        /// Show a host path to the sandboxed server, read-only: SRC or SRC:DST (repeatable).
        #[arg(long = "bind-ro", value_name = "SRC[:DST]")]
        bind_ro: Vec<String>,
        /// The server command and its arguments, after `--`.
        #[arg(required = true, last = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Approve or deny held calls on a running `palisade serve` (credential: PALISADE_TOKEN).
    Approvals {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        args: approvals::ApprovalsArgs,
    },
    /// Create, list and revoke API keys (in the config's state store).
    Keys {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        args: keys::KeysArgs,
    },
    /// Tool definitions hidden until approved: list them, see what changed, approve them (in the config's state store).
    Tools {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        args: tools::ToolsArgs,
    },
    /// Mint, narrow, inspect and revoke task tokens (keys in the config's data directory).
    Token {
        #[command(flatten)]
        config: ConfigFile,
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Check the policies of a config, or explain the decision on one call.
    Policy {
        #[command(flatten)]
        config: ConfigFile,
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Set, list, show, rotate and revoke secrets (in the config's vault; values are never printed).
    Secrets {
        #[command(flatten)]
        config: ConfigFile,
        #[command(subcommand)]
        command: secrets::SecretsCommand,
    },
    /// Run a command in a one-time sandbox, or check what this host supports.
    Sandbox {
        #[command(flatten)]
        config: ConfigFile,
        #[command(subcommand)]
        command: sandbox::SandboxCommand,
    },
    /// Scan files (or stdin, `-`) for secrets; exit status 1 on findings. Values are never printed.
    Scan(scan::ScanArgs),
    /// Print what the model would read of some content and what the inbound filter finds; exit status 1 when suspicious.
    Sanitize {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        args: sanitize::SanitizeArgs,
    },
    /// What the agent did on one user's behalf, from the audit log: each call, its verdict and why.
    Activity {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        args: audit::ActivityArgs,
    },
    /// Alerts raised over the audit log (and by the limits): list them, or show the rules.
    Alerts {
        #[command(flatten)]
        config: ConfigFile,
        #[command(subcommand)]
        command: audit::AlertsCommand,
    },
    /// The tamper-evident audit log: verify it, prove one entry, check a proof.
    Audit {
        #[command(flatten)]
        config: ConfigFile,
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Usage against rate limits, quotas and the daily budget (in the config's counter store).
    Limits {
        #[command(flatten)]
        config: ConfigFile,
        #[command(subcommand)]
        command: limits::LimitsCommand,
    },
    /// Content the inbound filter quarantined: list, show, release (in the config's state store).
    Quarantine {
        #[command(flatten)]
        config: ConfigFile,
        #[command(subcommand)]
        command: quarantine::QuarantineCommand,
    },
    /// Validate a config file and print the effective configuration.
    Check {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        listen: Listen,
    },
}

fn main() -> ExitCode {
    // A sandbox's supervisor is this binary re-executed: nothing else of
    // palisade (no runtime, no logging) starts in it.
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(palisade_sandbox::SUPERVISOR_ARG)) {
        palisade_sandbox::supervise();
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(fixed) = mcp_without_dashes(&args, &e) {
                eprintln!(
                    "palisade: put the server command after `--`, so that its flags are not taken for palisade's: `{fixed}`"
                );
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Error texts pass the redactor too: one naming a value by
            // mistake still does not print it.
            let text = format!("palisade: {e:#}");
            eprintln!(
                "{}",
                palisade_core::Redactor::redact_text(redactor().as_ref(), &text)
            );
            ExitCode::FAILURE
        }
    }
}

/// `palisade mcp npx server` (no `--`): clap refuses `npx` as an unexpected
/// argument. Gives the command line with `--` before that word, if that one
/// parses, to show instead of clap's generic error.
fn mcp_without_dashes(args: &[OsString], error: &clap::Error) -> Option<String> {
    if args.get(1).map(OsString::as_os_str) != Some(OsStr::new("mcp"))
        || args.iter().any(|a| a == "--")
        || error.kind() != ErrorKind::UnknownArgument
    {
        return None;
    }
    let Some(ContextValue::String(word)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    if word.starts_with('-') {
        // A mistyped flag of palisade's own: clap's error suggests the right one.
        return None;
    }
    let at = args.iter().skip(2).position(|a| a == word.as_str())? + 2;
    let mut fixed: Vec<OsString> = args.to_vec();
    fixed.insert(at, "--".into());
    if !matches!(
        Cli::try_parse_from(&fixed),
        Ok(Cli {
            command: Command::Mcp { .. }
        })
    ) {
        return None;
    }
    let words = fixed
        .iter()
        .skip(1)
        .map(|a| shell_word(&a.to_string_lossy()));
    Some(
        std::iter::once("palisade".to_owned())
            .chain(words)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// `word` as a POSIX shell would need it typed.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn load(path: Option<&Path>, listen: Option<&str>) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default()?,
    };
    if let Some(listen) = listen {
        config.override_listen(listen)?;
    }
    let file = path.map_or_else(|| "(embedded default)".into(), |p| p.display().to_string());
    config.find_commands(&file)?;
    Ok(config)
}

/// The process's one redactor: log lines, error texts and, once a gateway
/// runs, everything it sends pass it; the gateway's broker teaches it the
/// vault's values.
fn redactor() -> &'static Arc<SecretRedactor> {
    static REDACTOR: OnceLock<Arc<SecretRedactor>> = OnceLock::new();
    REDACTOR.get_or_init(|| Arc::new(SecretRedactor::new()))
}

/// Log lines go to stderr through the redaction seam. What upstreams write
/// to their stderr is logged under `palisade::upstream`, at info.
fn init_logging(default: &str, config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(RedactedStderr::new(palisade_server::secrets::seam(
            config,
            redactor(),
        )))
        .with_target(false)
        .init();
}

/// `check`'s look at the vault, when it opens without a prompt: secrets
/// past their rotation schedule, and bound secrets the vault does not hold.
fn check_vault(config: &Config) -> anyhow::Result<()> {
    let vault = match palisade_server::secrets::open_vault(config, None) {
        Ok(vault) => vault,
        Err(e) => {
            eprintln!("palisade: note: the vault was not opened, so rotation was not checked: {e}");
            return Ok(());
        }
    };
    let metas = match runtime()?.block_on(vault.list()) {
        Ok(metas) => metas,
        Err(e) => {
            eprintln!("palisade: note: cannot list {}: {e}", vault.describe());
            return Ok(());
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for binding in config
        .secrets
        .iter()
        .filter(|b| b.environment == config.environment)
    {
        match metas.iter().find(|m| m.name == binding.name) {
            None => eprintln!(
                "palisade: warning: secret `{}` is bound but {} does not hold it: `palisade secrets set {}`",
                binding.name,
                vault.describe(),
                binding.name
            ),
            Some(meta) if meta.revoked => {
                eprintln!("palisade: warning: secret `{}` is revoked", binding.name)
            }
            Some(meta) => {
                if let Some(late) = binding.overdue(meta.updated, now) {
                    eprintln!(
                        "palisade: warning: secret `{}` is {} past its rotation schedule: `palisade secrets rotate {}`",
                        binding.name,
                        humantime::format_duration(std::time::Duration::from_secs(late.as_secs())),
                        binding.name
                    );
                }
            }
        }
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Token { config, command } => {
            let config = load(config.config.as_deref(), None)?;
            // Only `revoke` writes to the state store; the others need no database.
            match &command {
                token::TokenCommand::Revoke(args) => runtime()?.block_on(async {
                    let store = palisade_server::access::open_store(&config).await?;
                    token::revoke(args, store).await?;
                    Ok(ExitCode::SUCCESS)
                }),
                token::TokenCommand::Issue(_)
                | token::TokenCommand::Attenuate(_)
                | token::TokenCommand::Inspect(_)
                | token::TokenCommand::Rotate => token::run(&command, &config.data_dir, None),
            }
        }
        Command::Secrets { config, command } => {
            let config = load(config.config.as_deref(), None)?;
            runtime()?.block_on(secrets::run(&config, command))
        }
        Command::Scan(args) => scan::run(&args),
        Command::Sandbox { config, command } => sandbox::run(config.config.as_deref(), command),
        Command::Check { config, listen } => {
            let config = load(config.config.as_deref(), listen.listen.as_deref())?;
            // The policies and constraints too: a file that `serve` would
            // refuse is refused here.
            if !config
                .pipeline
                .pass_through
                .contains(&palisade_core::Stage::Authorize)
            {
                palisade_server::access::authorizer(
                    &config,
                    std::sync::Arc::new(palisade_core::SystemClock),
                )?;
            }
            #[expect(
                clippy::print_stdout,
                reason = "printing the effective config is what `check` is for"
            )]
            {
                print!("{}", config.to_toml());
            }
            for warning in palisade_server::secrets::literal_credentials(&config) {
                eprintln!("palisade: warning: {warning}");
            }
            check_vault(&config)?;
            for degraded in palisade_server::gateway::degraded(&config, None) {
                eprintln!("palisade: degraded: {degraded}");
            }
            if palisade_server::sandbox::needed(&config) {
                match palisade_sandbox::Host::probe().accept(&config.sandbox.degraded) {
                    Ok(host) => {
                        for mode in host.degraded {
                            eprintln!(
                                "palisade: degraded: sandbox: degraded mode `{mode}` ([sandbox] degraded)"
                            );
                        }
                    }
                    Err(why) => eprintln!("palisade: error: {why}"),
                }
            }
            let passed: Vec<&str> = config
                .pipeline
                .pass_through
                .iter()
                .map(|s| s.as_str())
                .collect();
            if !passed.is_empty() {
                eprintln!(
                    "palisade: stages passed through (no checks): {}",
                    passed.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Approvals { config, args } => {
            let config = load(config.config.as_deref(), None)?;
            let scheme = if config.server.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let url = format!("{scheme}://{}", config.server.listen);
            runtime()?.block_on(approvals::run(args, url))
        }
        Command::Policy { config, command } => {
            let config = load(config.config.as_deref(), None)?;
            policy::run(&command, &config)
        }
        Command::Keys { config, args } => {
            let config = load(config.config.as_deref(), None)?;
            runtime()?.block_on(async {
                let store = palisade_server::access::open_store(&config).await?;
                let mut out = std::io::stdout();
                keys::run(store, &args, std::time::SystemTime::now(), &mut out).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Sanitize { config, args } => {
            let policies = match config.config.as_deref() {
                Some(_) => load(config.config.as_deref(), None)?.filter.policies,
                None => palisade_filter::policy::Policies::default(),
            };
            sanitize::run(&args, &policies)
        }
        Command::Activity { config, args } => {
            let config = load(config.config.as_deref(), None)?;
            let mut out = std::io::stdout();
            audit::activity(&config, &args, &mut out)
        }
        Command::Alerts { config, command } => {
            let config = load(config.config.as_deref(), None)?;
            let mut out = std::io::stdout();
            audit::alerts(&config, &command, &mut out)
        }
        Command::Audit { config, command } => {
            let config = load(config.config.as_deref(), None)?;
            let mut out = std::io::stdout();
            audit::run(&config, &command, &mut out)
        }
        Command::Limits { config, command } => {
            let config = load(config.config.as_deref(), None)?;
            runtime()?.block_on(async {
                let mut out = std::io::stdout();
                limits::run(&config, &command, &mut out).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Quarantine { config, command } => {
            let config = load(config.config.as_deref(), None)?;
            runtime()?.block_on(async {
                let store = palisade_server::access::open_store(&config).await?;
                let quarantine = palisade_filter::quarantine::Quarantine::new(store);
                let mut out = std::io::stdout();
                quarantine::run(&quarantine, &command, &mut out).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Tools { config, args } => {
            let config = load(config.config.as_deref(), None)?;
            runtime()?.block_on(async {
                let store = palisade_server::access::open_store(&config).await?;
                let pins = palisade_filter::pins::Pins::new(
                    store,
                    std::sync::Arc::new(palisade_core::SystemClock),
                );
                let mut out = std::io::stdout();
                tools::run(&pins, &args, &mut out).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Serve { config, listen } => {
            let embedded = config.config.is_none();
            let mut config = load(config.config.as_deref(), listen.listen.as_deref())?;
            if embedded {
                // One useful, safe tool out of the box: code in a sandbox,
                // where this host can build one without a degraded mode.
                match palisade_sandbox::Host::probe().accept(&[]) {
                    Ok(_) => config.upstreams.push(Upstream::exec_tool()),
                    Err(why) => eprintln!(
                        "palisade: the built-in `exec` tool is not served: {why}\n(a config with `[upstreams.exec] builtin = \"exec\"` and `[sandbox] degraded = [...]` serves it anyway)"
                    ),
                }
            }
            init_logging("warn,palisade_server=info,palisade::upstream=info", &config);
            runtime()?.block_on(serve(config))
        }
        Command::Mcp {
            config,
            name,
            profile,
            no_sandbox,
            degraded,
            bind,
            bind_ro,
            command,
        } => {
            let mut config = load(config.config.as_deref(), None)?;
            if !config.upstreams.is_empty() {
                anyhow::bail!(
                    "`palisade mcp` wraps the command given after `--`; remove [upstreams] from the config or use `palisade serve`"
                );
            }
            let name = name
                .or_else(|| config.wrap.name.clone())
                .unwrap_or_else(|| derive_name(&command));
            let mut words = command.into_iter();
            let program = words.next().context("no server command after `--`")?;
            let shown = program.clone();
            // A name must be on the host's PATH; a path, when sandboxed, is one inside the sandbox.
            if (no_sandbox || !program.contains('/'))
                && palisade_server::config::find_program(&program, None).is_none()
            {
                anyhow::bail!(
                    "cannot run `{program}`: it is not an executable file, nor found on PATH"
                );
            }
            // The operator's word on the wrapped server's tools, from `[wrap]`.
            let mut upstream = Upstream::from_command(&name, program, words.collect());
            upstream.default_effect = config.wrap.default_effect;
            upstream.effects = config.wrap.effects.clone();
            if !no_sandbox {
                config.sandbox.degraded.extend(degraded);
                let mut mounts = Vec::new();
                for (specs, writable) in [(bind, true), (bind_ro, false)] {
                    for spec in specs {
                        mounts.push(
                            palisade_sandbox::Mount::parse(&spec, writable)
                                .map_err(anyhow::Error::msg)?,
                        );
                    }
                }
                upstream.sandbox(palisade_server::config::StdioSandbox {
                    profile: profile.unwrap_or_else(|| "upstream".to_owned()),
                    mounts,
                });
                match config.unseen_in_sandbox(&upstream) {
                    Some((profile, Unseen::Hidden(what))) => anyhow::bail!(
                        "`{shown}` cannot run in the sandbox profile `{profile}`: {what}, which the sandbox does not show (it shows {} and what `--bind`/`--bind-ro` add); bind the directory with `--bind-ro DIR`, or run the server unsandboxed with `--no-sandbox`",
                        palisade_sandbox::profile::SYSTEM.join(", "),
                    ),
                    Some((profile, Unseen::Missing(what))) => {
                        anyhow::bail!(
                            "`{shown}` cannot run in the sandbox profile `{profile}`: {what}"
                        )
                    }
                    None => {}
                }
            }
            config.upstreams.push(upstream);
            init_logging("warn,palisade::upstream=info", &config);
            runtime()?.block_on(wrap(config))
        }
    }
}

/// Programs that run another program: the name is taken from what they run.
const LAUNCHERS: [&str; 16] = [
    "node", "nodejs", "npx", "npm", "pnpm", "bun", "bunx", "deno", "python", "python3", "uv",
    "uvx", "pipx", "docker", "podman", "java",
];
/// Subcommands of those launchers that come before what they run.
const LAUNCHER_VERBS: [&str; 5] = ["run", "exec", "x", "dlx", "start"];

/// An upstream name for audit records, from the wrapped command: the server's
/// own name where a launcher runs it (`npx -y @scope/server-files` gives
/// `server-files`), else the program's file name.
fn derive_name(command: &[String]) -> String {
    let base = |word: &str| -> String {
        let word = word.rsplit('/').next().unwrap_or(word);
        // `name@1.2.3` (a pinned package) and `server.py` (a script) name the same server.
        let word = word.split('@').next().unwrap_or(word);
        word.split('.').next().unwrap_or(word).to_owned()
    };
    let mut words = command.iter().map(String::as_str);
    let program = base(words.next().unwrap_or_default());
    let subject = if LAUNCHERS.contains(&program.as_str()) {
        words
            .find(|w| !w.starts_with('-') && !LAUNCHER_VERBS.contains(w))
            .map(|w| base(w.trim_start_matches('@')))
            .unwrap_or(program)
    } else {
        program
    };
    let mut name = String::new();
    for c in subject.chars().take(64) {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        "upstream".into()
    } else {
        name
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let gateway = Gateway::start_with(config, Mode::Aggregate, Arc::clone(redactor())).await?;
    if let Some(sandboxes) = &gateway.sandboxes {
        // Built ahead, so that a call waits only for its payload.
        palisade_server::sandbox::warm(sandboxes).await;
    }
    let (listener, addr) = palisade_server::http::bind(&gateway)
        .await
        .with_context(|| format!("cannot listen on {}", gateway.config.server.listen))?;
    let passed: Vec<&str> = gateway
        .pipeline
        .passed_through()
        .iter()
        .map(|s| s.as_str())
        .collect();
    if !passed.is_empty() {
        tracing::warn!(
            "stages passed through (no checks yet): {}",
            passed.join(", ")
        );
    }
    if !addr.ip().is_loopback() && gateway.tls.is_none() {
        tracing::warn!(
            "serving plaintext HTTP beyond loopback (`server.plaintext_beyond_loopback`): bearer credentials are readable on the network unless a TLS-terminating proxy is in front"
        );
    }
    let scheme = if gateway.tls.is_some() {
        "https"
    } else {
        "http"
    };
    reload_on_hangup(&gateway);
    eprintln!(
        "palisade: listening on {scheme}://{addr}{}; data in {}, audit log {}",
        gateway.config.server.path,
        gateway.config.data_dir.display(),
        gateway.config.audit_path().display()
    );
    palisade_server::http::serve(gateway, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP reloads the certificate and the policies, each kept as it was if
/// the new one does not load.
fn reload_on_hangup(gateway: &std::sync::Arc<Gateway>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload by restarting");
            return;
        };
        let weak = std::sync::Arc::downgrade(gateway);
        // Not tracked work: it waits for signals until the process ends, and
        // a shutdown must not wait for it.
        #[expect(
            clippy::disallowed_methods,
            reason = "a signal listener that lives as long as the process"
        )]
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                for failure in gateway.reload() {
                    tracing::error!("reload: {failure}");
                }
            }
        });
    }
}

async fn wrap(config: Config) -> anyhow::Result<ExitCode> {
    let gateway = Gateway::start_with(config, Mode::Wrap, Arc::clone(redactor())).await?;
    let principal = gateway
        .access
        .local_principal()
        .await
        .map_err(|failure| anyhow::anyhow!("PALISADE_TOKEN: {}", failure.description))?;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    palisade_server::stdio::serve(
        gateway,
        principal,
        stdin,
        tokio::io::stdout(),
        shutdown_signal(),
    )
    .await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::derive_name;

    #[test]
    fn names_come_from_the_server_not_its_launcher() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[
                    "npx",
                    "-y",
                    "@modelcontextprotocol/server-filesystem",
                    "/srv",
                ],
                "server-filesystem",
            ),
            (&["/usr/bin/node", "dist/index.js", "stdio"], "index"),
            (
                &["uvx", "mcp-server-git@1.2", "--repo", "."],
                "mcp-server-git",
            ),
            (&["uv", "run", "weather.py"], "weather"),
            (&["python3", "-m", "my_server"], "my-server"),
            (&["/opt/bin/My Server"], "my-server"),
            (&["npx"], "npx"),
            (&["///"], "upstream"),
        ];
        for (command, expected) in cases {
            let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
            assert_eq!(derive_name(&command), *expected, "{command:?}");
        }
    }
}
