//! `palisade`: the command line. Parses flags, loads the config, hands over to `palisade-server`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use palisade_server::config::Upstream;
use palisade_server::{Config, Gateway, Mode};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "palisade", version, about = "A security gateway for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one Streamable HTTP MCP endpoint that aggregates the configured upstreams.
    Serve {
        /// palisade.toml; without it, the embedded default (loopback only, no upstreams).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Wrap one stdio MCP server for a local client: `palisade mcp -- npx -y some-server`.
    Mcp {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The upstream's name in audit records; defaults to the command's file name.
        #[arg(long)]
        name: Option<String>,
        /// The server command and its arguments, after `--`.
        #[arg(required = true, last = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Validate a config file and print the effective configuration.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default()?,
    })
}

fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => {
            let config = load(config.as_deref())?;
            #[expect(
                clippy::print_stdout,
                reason = "printing the effective config is what `check` is for"
            )]
            {
                print!("{}", config.to_toml());
            }
            for degraded in palisade_server::gateway::DEGRADED {
                eprintln!("palisade: degraded: {degraded}");
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
        Command::Serve { config } => {
            let config = load(config.as_deref())?;
            init_logging("warn,palisade_server=info");
            runtime()?.block_on(serve(config))
        }
        Command::Mcp {
            config,
            name,
            command,
        } => {
            let mut config = load(config.as_deref())?;
            if !config.upstreams.is_empty() {
                anyhow::bail!(
                    "`palisade mcp` wraps the command given after `--`; remove [upstreams] from the config or use `palisade serve`"
                );
            }
            let mut words = command.into_iter();
            let program = words.next().context("no server command after `--`")?;
            let name = name.unwrap_or_else(|| derive_name(&program));
            config
                .upstreams
                .push(Upstream::from_command(&name, program, words.collect()));
            init_logging("warn");
            runtime()?.block_on(wrap(config))
        }
    }
}

/// An upstream name from a command: its file name, lowercased, with other characters as `-`.
fn derive_name(program: &str) -> String {
    let base = Path::new(program)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("upstream");
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "upstream".into()
    } else {
        name
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let gateway = Gateway::new(config, Mode::Aggregate)?;
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
    eprintln!(
        "palisade: listening on http://{addr}{}",
        gateway.config.server.path
    );
    palisade_server::http::serve(gateway, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn wrap(config: Config) -> anyhow::Result<ExitCode> {
    let gateway = Gateway::new(config, Mode::Wrap)?;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    palisade_server::stdio::serve(gateway, stdin, tokio::io::stdout(), shutdown_signal()).await;
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
