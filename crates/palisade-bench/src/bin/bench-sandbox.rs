//! `bench-sandbox`: how long a fresh sandbox takes to run a trivial payload, palisade cold and pooled, beside bubblewrap and the bare payload in the same run.
//!
//! Four ways of running each payload (`/bin/true`, and `python3 -c pass`):
//!
//! - `direct`: the payload spawned with no sandbox, and waited for (what the
//!   payload itself costs: fork, exec, its own start and exit);
//! - `bwrap`: `bwrap --unshare-all --die-with-parent --new-session` with the
//!   same read-only system as palisade's profiles (`/usr` and its symlinks,
//!   `/tmp`, `/proc`, `/dev`, `/etc/ld.so.cache`), spawned and waited for;
//! - `palisade cold`: `Sandboxes::prepare` (the zygote forks a supervisor,
//!   which builds the sandbox), `Prepared::start`, then `Running::wait`, with the
//!   output read to its end, as `Sandboxes::run` does;
//! - `palisade pooled`: a sandbox prepared before the clock starts (as the
//!   pool keeps them), then `start` and `wait`. The next one is prepared
//!   outside the timed part.
//!
//! For palisade two more instants are taken: when `prepare` returned (the
//! sandbox is built and waits), and when `start` returned, which is when
//! the supervisor reported `Started`: it does once the payload's `execve`
//! succeeded (the payload's close-on-exec socket closed), so the time
//! to it is start-to-exec. bubblewrap says nothing at exec, so for it and
//! for `direct` only the time to the end is measured.
//!
//! Every iteration runs each payload every way, in an order that rotates, so
//! that noise on the machine hits all of them alike. Warm-up iterations are
//! not measured. Any run that does not exit 0 is an error: the program says
//! why and exits non-zero.
//!
//! Then the pieces: the helper binary started as a zygote with no control
//! socket (it exits at once: process creation, exec and dynamic loading of
//! the palisade binary, nothing of the sandbox), which the zygote pays once,
//! not per sandbox.
#![forbid(unsafe_code)]
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use palisade_sandbox::{Degraded, End, Profile, Run, SUPERVISOR_ARG, Sandboxes, Settings};
use tokio::io::AsyncReadExt as _;

#[derive(Debug, Parser)]
#[command(
    about = "Measure sandbox start latency: palisade cold and pooled, beside bubblewrap and the bare payload"
)]
struct Cli {
    /// Measured iterations (each runs every payload every way once).
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Unmeasured iterations first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// The palisade binary, which becomes each sandbox's supervisor
    /// (default: `palisade` beside this program).
    #[arg(long)]
    helper: Option<PathBuf>,
    /// The bubblewrap binary.
    #[arg(long, default_value = "bwrap")]
    bwrap: PathBuf,
    /// The Python of the second payload; it must live under `/usr`, the part
    /// of the host both sandboxes show.
    #[arg(long, default_value = "/usr/bin/python3")]
    python: String,
    /// A degraded mode to accept for a feature this host lacks (no-cgroups, no-landlock).
    #[arg(long, value_parser = parse_degraded)]
    degraded: Vec<Degraded>,
}

fn parse_degraded(text: &str) -> Result<Degraded, String> {
    text.parse()
}

/// Design targets (docs/benchmarks.md), in milliseconds.
const COLD_TARGET_MS: f64 = 4.0;
const POOLED_TARGET_MS: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Direct,
    Bwrap,
    Cold,
    Pooled,
}

impl Way {
    const ALL: [Self; 4] = [Self::Direct, Self::Bwrap, Self::Cold, Self::Pooled];

    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct (no sandbox)",
            Self::Bwrap => "bwrap",
            Self::Cold => "palisade cold",
            Self::Pooled => "palisade pooled",
        }
    }
}

/// One payload and the profile palisade runs it under.
struct Payload {
    label: String,
    profile: Profile,
    run: Run,
}

/// One measured run, each instant from the start of the clock.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// `prepare` returned (palisade cold only).
    prepared: Option<Duration>,
    /// `start` returned: the supervisor reported `Started` (palisade only).
    started: Option<Duration>,
    /// The payload ended and everything of the sandbox with it.
    ended: Duration,
}

/// Nearest-rank percentile of `values`, in milliseconds; `None` when empty.
fn percentile_ms(values: &mut [Duration], p: f64) -> Option<f64> {
    values.sort_unstable();
    let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
    values
        .get(rank.saturating_sub(1))
        .map(|d| d.as_secs_f64() * 1000.0)
}

/// p50 and p95 of one column, in milliseconds.
fn quantiles(mut values: Vec<Duration>) -> Option<(f64, f64)> {
    Some((
        percentile_ms(&mut values, 50.0)?,
        percentile_ms(&mut values, 95.0)?,
    ))
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench-sandbox: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<bool> {
    let helper = match &cli.helper {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot find this program's path")?
            .with_file_name("palisade"),
    };
    if !helper.is_file() {
        bail!(
            "no palisade binary at {} (build it, or name it with --helper)",
            helper.display()
        );
    }
    let settings = Settings {
        degraded: cli.degraded.clone(),
        pool: Some(0),
        ..Settings::default()
    };
    let sandboxes = Sandboxes::start(&settings, helper.clone()).map_err(anyhow::Error::msg)?;
    let payloads = payloads(&sandboxes, &cli.python)?;
    check_bwrap(&cli.bwrap)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // samples[payload][way]
    let mut samples: Vec<Vec<Vec<Sample>>> = payloads
        .iter()
        .map(|_| Way::ALL.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut errors: Vec<String> = Vec::new();
    let total = cli.warmup + cli.runs;
    for iteration in 0..total {
        let measured = iteration >= cli.warmup;
        if iteration % 50 == 0 {
            eprintln!(
                "bench-sandbox: iteration {} of {total}{}",
                iteration + 1,
                if measured { "" } else { " (warm-up)" }
            );
        }
        for (p, payload) in payloads.iter().enumerate() {
            // The pooled sandbox is built before any clock starts.
            let mut pooled = Some(
                runtime
                    .block_on(sandboxes.prepare(&payload.profile))
                    .map_err(anyhow::Error::msg)
                    .context("cannot prepare a sandbox for the pooled run")?,
            );
            for k in 0..Way::ALL.len() {
                let index = (k + iteration) % Way::ALL.len();
                let Some(&way) = Way::ALL.get(index) else {
                    continue;
                };
                let outcome = match way {
                    Way::Direct => run_direct(payload),
                    Way::Bwrap => run_bwrap(&cli.bwrap, payload),
                    Way::Cold => runtime.block_on(run_palisade(&sandboxes, payload, None)),
                    Way::Pooled => {
                        runtime.block_on(run_palisade(&sandboxes, payload, pooled.take()))
                    }
                };
                match outcome {
                    Ok(sample) if measured => {
                        if let Some(column) = samples.get_mut(p).and_then(|s| s.get_mut(index)) {
                            column.push(sample);
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let message = format!("{} · {}: {error:#}", payload.label, way.name());
                        eprintln!("bench-sandbox: {message}");
                        errors.push(message);
                    }
                }
            }
        }
        if errors.len() > 20 {
            bail!("too many failed runs; stopping");
        }
    }

    let helper_exec = measure_helper_exec(&helper, cli.runs.max(1))?;
    println!(
        "{}",
        render(&payloads, &samples, cli.runs, &helper_exec, &sandboxes)
    );
    if !errors.is_empty() {
        eprintln!(
            "bench-sandbox: {} run(s) failed (see above); they are left out of the table",
            errors.len()
        );
        return Ok(false);
    }
    Ok(true)
}

fn payloads(sandboxes: &Arc<Sandboxes>, python: &str) -> anyhow::Result<Vec<Payload>> {
    let profile = |name: &str| {
        sandboxes
            .profile(name)
            .cloned()
            .with_context(|| format!("no built-in sandbox profile `{name}`"))
    };
    let shell = profile("shell")?;
    let python_profile = profile("python")?;
    if !python.starts_with("/usr/") || !Path::new(python).is_file() {
        bail!("--python {python}: a Python under /usr is needed (both sandboxes show only /usr)");
    }
    Ok(vec![
        Payload {
            label: "/bin/true".to_owned(),
            run: palisade_sandbox::command(&shell, vec!["/bin/true".to_owned()]),
            profile: shell,
        },
        Payload {
            label: format!(
                "{} -c pass",
                Path::new(python)
                    .file_name()
                    .map_or_else(|| python.into(), |name| name.to_string_lossy())
            ),
            run: palisade_sandbox::command(
                &python_profile,
                vec![python.to_owned(), "-c".to_owned(), "pass".to_owned()],
            ),
            profile: python_profile,
        },
    ])
}

/// bubblewrap with the mounts of palisade's read-only system, then `argv`.
fn bwrap_args(argv: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--tmpfs",
        "/tmp",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--ro-bind",
        "/etc/ld.so.cache",
        "/etc/ld.so.cache",
        "--",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend(argv.iter().cloned());
    args
}

#[expect(
    clippy::disallowed_methods,
    reason = "the anchor and the bare payload are run as plain processes, to compare with the sandbox"
)]
fn command(program: &Path, args: &[String], run: &Run) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(&run.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn check_bwrap(bwrap: &Path) -> anyhow::Result<()> {
    let run = Run::default();
    let output = command(bwrap, &["--version".to_owned()], &run)
        .output()
        .with_context(|| format!("cannot run {} (install bubblewrap)", bwrap.display()))?;
    if !output.status.success() {
        bail!("{} --version failed", bwrap.display());
    }
    Ok(())
}

/// Runs `command` to its end; an error unless it exits 0.
fn finish(mut command: Command) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let output = command.output()?;
    let ended = start.elapsed();
    if !output.status.success() {
        bail!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(Sample {
        ended,
        ..Sample::default()
    })
}

fn run_direct(payload: &Payload) -> anyhow::Result<Sample> {
    let (program, args) = payload.run.argv.split_first().context("an empty command")?;
    let mut command = command(Path::new(program), args, &payload.run);
    command.current_dir("/tmp");
    finish(command)
}

fn run_bwrap(bwrap: &Path, payload: &Payload) -> anyhow::Result<Sample> {
    finish(command(bwrap, &bwrap_args(&payload.run.argv), &payload.run))
}

/// palisade cold (`prepared` is `None`: prepared inside the timed part) or
/// pooled (prepared before it).
async fn run_palisade(
    sandboxes: &Arc<Sandboxes>,
    payload: &Payload,
    prepared: Option<palisade_sandbox::Prepared>,
) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let (prepared, prepared_at) = match prepared {
        Some(prepared) => (prepared, None),
        None => {
            let prepared = sandboxes
                .prepare(&payload.profile)
                .await
                .map_err(anyhow::Error::msg)?;
            (prepared, Some(start.elapsed()))
        }
    };
    let mut running = prepared
        .start(payload.run.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let started = start.elapsed();
    drop(running.stdin.take());
    let (mut stdout, mut stderr) = (running.stdout.take(), running.stderr.take());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (end, _, _) = tokio::join!(
        running.wait(),
        async {
            if let Some(pipe) = stdout.as_mut() {
                let _ = pipe.read_to_end(&mut out).await;
            }
        },
        async {
            if let Some(pipe) = stderr.as_mut() {
                let _ = pipe.read_to_end(&mut err).await;
            }
        }
    );
    let ended = start.elapsed();
    match end.map_err(anyhow::Error::msg)? {
        End::Exited(0) => {}
        other @ (End::Exited(_)
        | End::Signaled(_)
        | End::TimedOut
        | End::OutOfMemory
        | End::OutputOver(_)
        | End::Stopped) => bail!(
            "{}: {}",
            other.describe(&payload.profile),
            String::from_utf8_lossy(&err).trim()
        ),
    }
    Ok(Sample {
        prepared: prepared_at,
        started: Some(started),
        ended,
    })
}

/// The helper binary as a zygote with no control socket on descriptor 3:
/// it exits as soon as it finds none (status 2; 0 or 1 when a tool such as a
/// tracer left something else open there). Process creation, exec and
/// dynamic loading of the palisade binary, and nothing else.
fn measure_helper_exec(helper: &Path, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let run = Run::default();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut command = command(helper, &[SUPERVISOR_ARG.to_owned()], &run);
        let start = Instant::now();
        let output = command.output()?;
        times.push(start.elapsed());
        if !matches!(output.status.code(), Some(0..=2)) {
            bail!(
                "{} {SUPERVISOR_ARG} with no control socket: {} (expected exit status 0, 1 or 2)",
                helper.display(),
                output.status
            );
        }
    }
    Ok(times)
}

fn ms(value: f64) -> String {
    format!("{value:.2} ms")
}

fn pair(q: Option<(f64, f64)>) -> (String, String) {
    q.map_or_else(
        || ("—".to_owned(), "—".to_owned()),
        |(p50, p95)| (ms(p50), ms(p95)),
    )
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}×", value / base)
    } else {
        "n/a".to_owned()
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn render(
    payloads: &[Payload],
    samples: &[Vec<Vec<Sample>>],
    runs: usize,
    helper_exec: &[Duration],
    sandboxes: &Sandboxes,
) -> String {
    let mut out = String::new();
    let column = |p: usize, way: Way, pick: fn(&Sample) -> Option<Duration>| {
        let index = Way::ALL.iter().position(|w| *w == way).unwrap_or(0);
        let values: Vec<Duration> = samples
            .get(p)
            .and_then(|s| s.get(index))
            .map(|s| s.iter().filter_map(pick).collect())
            .unwrap_or_default();
        quantiles(values)
    };
    let ended = |s: &Sample| Some(s.ended);
    let started = |s: &Sample| s.started;
    out.push_str(
        "| payload | how | runs | to exec p50 | to exec p95 | to end p50 | to end p95 | to end vs bwrap p50 / p95 |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut verdicts = String::new();
    for (p, payload) in payloads.iter().enumerate() {
        let bwrap = column(p, Way::Bwrap, ended);
        for (index, way) in Way::ALL.iter().enumerate() {
            let count = samples
                .get(p)
                .and_then(|s| s.get(index))
                .map_or(0, Vec::len);
            let (exec50, exec95) = pair(column(p, *way, started));
            let end = column(p, *way, ended);
            let (end50, end95) = pair(end);
            let versus = match (way, end, bwrap) {
                (Way::Cold | Way::Pooled, Some((a50, a95)), Some((b50, b95))) => {
                    format!("{} / {}", ratio(a50, b50), ratio(a95, b95))
                }
                (Way::Bwrap, _, _) => "baseline".to_owned(),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {count} | {exec50} | {exec95} | {end50} | {end95} | {versus} |",
                payload.label,
                way.name()
            );
        }
        let (cold_exec, cold_end) = (column(p, Way::Cold, started), column(p, Way::Cold, ended));
        let (pooled_exec, pooled_end) = (
            column(p, Way::Pooled, started),
            column(p, Way::Pooled, ended),
        );
        let b50 = bwrap.map_or(f64::NAN, |b| b.0);
        let b95 = bwrap.map_or(f64::NAN, |b| b.1);
        if let (Some(ce), Some(cd), Some(pe), Some(pd)) =
            (cold_exec, cold_end, pooled_exec, pooled_end)
        {
            let _ = writeln!(
                verdicts,
                "- `{}`: cold p50 ≤ {COLD_TARGET_MS} ms: to exec {} ({}), to end {} ({}); \
                 pooled p50 ≤ {POOLED_TARGET_MS} ms: to exec {} ({}), to end {} ({}); \
                 never slower than bwrap (to end, p50 and p95, cold and pooled): {}.",
                payload.label,
                ms(ce.0),
                verdict(ce.0 <= COLD_TARGET_MS),
                ms(cd.0),
                verdict(cd.0 <= COLD_TARGET_MS),
                ms(pe.0),
                verdict(pe.0 <= POOLED_TARGET_MS),
                ms(pd.0),
                verdict(pd.0 <= POOLED_TARGET_MS),
                verdict(cd.0 <= b50 && cd.1 <= b95 && pd.0 <= b50 && pd.1 <= b95),
            );
        }
    }
    out.push('\n');
    out.push_str(
        "Phases of palisade's runs, p50 (each phase's own p50, so they need not add up):\n\n\
         | payload | how | prepare (supervisor forked, sandbox built, payload confined) | start → exec (run sent → Started) | exec → end (payload, teardown, reports) |\n\
         |---|---|---:|---:|---:|\n",
    );
    for (p, payload) in payloads.iter().enumerate() {
        for way in [Way::Cold, Way::Pooled] {
            let index = Way::ALL.iter().position(|w| *w == way).unwrap_or(0);
            let list: &[Sample] = samples
                .get(p)
                .and_then(|s| s.get(index))
                .map_or(&[], Vec::as_slice);
            let prepare: Vec<Duration> = list.iter().filter_map(|s| s.prepared).collect();
            let to_exec: Vec<Duration> = list
                .iter()
                .filter_map(|s| Some(s.started?.saturating_sub(s.prepared.unwrap_or_default())))
                .collect();
            let to_end: Vec<Duration> = list
                .iter()
                .filter_map(|s| Some(s.ended.saturating_sub(s.started?)))
                .collect();
            let p50 =
                |values: Vec<Duration>| quantiles(values).map_or("—".to_owned(), |q| ms(q.0));
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                payload.label,
                way.name(),
                p50(prepare),
                p50(to_exec),
                p50(to_end)
            );
        }
    }
    let (h50, h95) = pair(quantiles(helper_exec.to_vec()));
    let _ = writeln!(
        out,
        "\nThe helper binary alone (spawned as a zygote with no control socket, so it exits at once; \
         what the zygote saves each sandbox; \
         {} runs): p50 {h50}, p95 {h95}.",
        helper_exec.len()
    );
    let host = sandboxes.host();
    let cgroups = host
        .cgroups
        .as_ref()
        .map_or_else(|| "none".to_owned(), palisade_sandbox::Hierarchy::describe);
    let _ = writeln!(
        out,
        "\n{runs} measured iterations, each running every payload every way once, in rotating order. \
         \"to exec\": from the call until the supervisor reported `Started` (the payload's execve \
         succeeded); \"to end\": until the payload exited and the sandbox's processes were gone. \
         Cold includes `prepare`; pooled starts from a sandbox already built. palisade: cgroups {cgroups}, \
         Landlock ABI {}, running as {}; degraded: {}. bwrap sets up namespaces and mounts only \
         (no cgroups, seccomp or Landlock).",
        host.landlock_abi,
        if host.root { "root" } else { "a user" },
        if host.degraded.is_empty() {
            "none".to_owned()
        } else {
            host.degraded
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    out.push_str("\nTargets:\n");
    out.push_str(&verdicts);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_in_milliseconds() {
        let mut values: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&mut values, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&mut values, 95.0), Some(95.0));
        assert_eq!(percentile_ms(&mut [], 50.0), None);
        assert_eq!(quantiles(vec![Duration::from_millis(3)]), Some((3.0, 3.0)));
    }

    #[test]
    fn bwrap_gets_the_read_only_system_then_the_command() {
        let args = bwrap_args(&["/bin/true".to_owned()]);
        assert_eq!(args.first().map(String::as_str), Some("--unshare-all"));
        assert_eq!(
            args.iter()
                .rev()
                .take(2)
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["/bin/true", "--"]
        );
        assert!(args.windows(3).any(|w| w == ["--ro-bind", "/usr", "/usr"]));
    }
}
