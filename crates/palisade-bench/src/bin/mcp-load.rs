//! `mcp-load`: times `tools/call` against an MCP server, over Streamable HTTP or stdio.
//!
//! Prints one JSON line per run (`calls`, `errors`, `p50_us`, `p99_us`,
//! `calls_per_s`, …) and exits 1 if any call failed, after printing the
//! first failure to stderr. `mcp-load table` turns tab-separated runs into
//! the markdown table `scripts/bench-gateway` prints, and `mcp-load gateways`
//! the table of gateways side by side with their peak memory.
#![forbid(unsafe_code)]
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use palisade_bench::load::{self, CallPlan, Report};
use palisade_bench::{gateways, table};

#[derive(Debug, Parser)]
#[command(about = "Time MCP tools/call over Streamable HTTP or stdio")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Call a Streamable HTTP endpoint with a pool of keep-alive connections.
    Http {
        /// The MCP endpoint, e.g. http://127.0.0.1:8080/mcp.
        #[arg(long)]
        url: String,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Runtime threads of the load generator itself.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Spawn a server and call it over its stdin/stdout, one call at a time.
    Stdio {
        #[command(flatten)]
        plan: PlanArgs,
        /// The server to run, after `--`.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Read `scenario<TAB>baseline<TAB>summary` lines on stdin, print a markdown table.
    Table,
    /// Read `gateway<TAB>c=N<TAB>summary` and `gateway<TAB>peak-rss<TAB>{...}`
    /// lines on stdin, print the gateways side by side and against one of them.
    Gateways {
        /// The gateway the others are divided by (default: the first).
        #[arg(long)]
        reference: Option<String>,
    },
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// Measured calls.
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
    /// Unmeasured calls made first.
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// The tool to call with `{"message": "hello"}`.
    #[arg(long, default_value = "echo")]
    tool: String,
}

impl PlanArgs {
    fn plan(self) -> CallPlan {
        CallPlan {
            tool: self.tool,
            calls: self.calls,
            warmup: self.warmup,
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mcp-load: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let report = match cli.command {
        Mode::Http {
            url,
            concurrency,
            threads,
            plan,
        } => {
            let runtime = palisade_bench::runtime(threads)?;
            runtime.block_on(load::http::run(&url, &plan.plan(), concurrency))
        }
        Mode::Stdio { plan, command } => {
            let Some((program, args)) = command.split_first() else {
                anyhow::bail!("no server command after `--`");
            };
            palisade_bench::runtime(1)?.block_on(load::stdio::run(program, args, &plan.plan()))
        }
        Mode::Table => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            print!("{}", table::render(&table::parse_rows(&input)?));
            return Ok(ExitCode::SUCCESS);
        }
        Mode::Gateways { reference } => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            let comparison = gateways::parse(&input)?;
            print!("{}", gateways::render(&comparison, reference.as_deref())?);
            return Ok(ExitCode::SUCCESS);
        }
    }
    .context("cannot open the MCP session")?;
    Ok(print_report(report))
}

fn print_report(report: Report) -> ExitCode {
    println!(
        "{}",
        serde_json::to_string(&report.summary).unwrap_or_default()
    );
    match report.first_error {
        Some(error) => {
            eprintln!(
                "mcp-load: {} of {} calls failed; the first: {error}",
                report.summary.errors, report.summary.calls
            );
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
