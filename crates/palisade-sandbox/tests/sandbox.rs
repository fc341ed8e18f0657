//! Real sandboxes, with this test program as their supervisor: what a prepared (pooled) sandbox already is before its run, and what the run then sees.
//!
//! The harness is our own (`harness = false` in Cargo.toml): started with
//! [`SUPERVISOR_ARG`], this program becomes a sandbox supervisor, as the
//! palisade binary does. It needs what `palisade sandbox check` needs (root
//! or unprivileged user namespaces); without it the checks are skipped and
//! say so.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a test program: a panic is a failed check"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use palisade_sandbox::{End, Hierarchy, Profile, SUPERVISOR_ARG, Sandboxes, Settings, command};

/// Makes this program a gateway that starts a run of `sleep` and waits to be killed.
const GATEWAY_ARG: &str = "--gateway-that-dies";

fn settings() -> Settings {
    Settings {
        pool: Some(0),
        ..Settings::default()
    }
}

fn main() {
    match std::env::args_os().nth(1) {
        Some(arg) if arg == SUPERVISOR_ARG => palisade_sandbox::supervise(),
        Some(arg) if arg == GATEWAY_ARG => gateway_that_dies(),
        Some(_) | None => {}
    }
    let helper = std::env::current_exe().unwrap();
    let sandboxes = match Sandboxes::start(&settings(), helper) {
        Ok(sandboxes) => sandboxes,
        Err(why) => {
            println!("sandbox tests skipped: this host cannot build sandboxes: {why}");
            return;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let check = |name: &str, check: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>| {
        runtime.block_on(check);
        println!("ok: {name}");
    };
    check(
        "a prepared sandbox's payload is already confined and in its groups",
        Box::pin(a_prepared_payload_is_already_confined_and_in_its_groups(
            &sandboxes,
        )),
    );
    check(
        "the run sees its files, its groups as its root and descriptors 0, 1 and 2 only",
        Box::pin(the_run_sees_its_files_its_groups_and_only_its_stdio(
            &sandboxes,
        )),
    );
    check(
        "a program that is not there, or a missing directory, fails the start",
        Box::pin(a_missing_program_fails_the_start(&sandboxes)),
    );
    check(
        "a dropped prepared sandbox leaves no process",
        Box::pin(a_dropped_sandbox_leaves_no_process(&sandboxes)),
    );
    check(
        "a supervisor killed by its pid ends the run",
        Box::pin(a_killed_supervisor_ends_the_run(&sandboxes)),
    );
    check(
        "a dead zygote takes its sandboxes along and is started again",
        Box::pin(a_dead_zygote_is_started_again(&sandboxes)),
    );
    check(
        "the zygote reaps the supervisors it forked",
        Box::pin(the_zygote_reaps_its_supervisors(&sandboxes)),
    );
    check(
        "a sandbox with egress reaches its listener and nothing else",
        Box::pin(a_sandbox_with_egress_reaches_its_listener_only(&sandboxes)),
    );
    drop(sandboxes);
    the_gateways_death_takes_every_sandbox_process_along();
    println!("ok: the gateway's death takes the zygote, supervisor, init and payload along");
}

fn shell(sandboxes: &Sandboxes) -> Profile {
    sandboxes.profile("shell").unwrap().clone()
}

/// The live (not zombie) processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let mut fields = after_name.split_whitespace();
        let (state, parent) = (fields.next(), fields.next());
        if state != Some("Z") && parent == Some(pid.to_string().as_str()) {
            children.push(child);
        }
    }
    children
}

/// The zygote that `gateway` started.
fn zygote_of(gateway: u32) -> u32 {
    let zygotes = children_of(gateway);
    assert_eq!(zygotes.len(), 1, "one zygote: {zygotes:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", zygotes[0])).unwrap();
    assert!(
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == SUPERVISOR_ARG.as_bytes()),
        "the zygote is the helper started as a supervisor"
    );
    zygotes[0]
}

/// The one supervisor this program runs now, its init and the payload.
fn sandbox_processes() -> (u32, u32, u32) {
    let supervisors = children_of(zygote_of(std::process::id()));
    assert_eq!(supervisors.len(), 1, "one supervisor: {supervisors:?}");
    let inits = children_of(supervisors[0]);
    assert_eq!(inits.len(), 1, "one init: {inits:?}");
    let payloads = children_of(inits[0]);
    assert_eq!(payloads.len(), 1, "one payload: {payloads:?}");
    (supervisors[0], inits[0], payloads[0])
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// The cgroup path of `pid` for each of memory, cpu and pids, as `cgroup_file` lists them.
fn groups_in(hierarchy: &Hierarchy, cgroup_file: &str) -> BTreeMap<&'static str, String> {
    let mut found = BTreeMap::new();
    for line in cgroup_file.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        for wanted in ["memory", "cpu", "pids"] {
            let holds = match hierarchy {
                Hierarchy::V2 { .. } => controllers.is_empty(),
                Hierarchy::V1 { .. } => controllers.split(',').any(|c| c == wanted),
            };
            if holds {
                found.insert(wanted, path.to_owned());
            }
        }
    }
    found
}

async fn a_prepared_payload_is_already_confined_and_in_its_groups(sandboxes: &Arc<Sandboxes>) {
    let prepared = sandboxes.prepare(&shell(sandboxes)).await.unwrap();
    let (supervisor, _init, payload) = sandbox_processes();
    let host = sandboxes.host();
    if host.root {
        assert_eq!(status_field(payload, "Uid"), "1000\t1000\t1000\t1000");
        assert_eq!(status_field(payload, "Gid"), "1000\t1000\t1000\t1000");
        assert_eq!(status_field(payload, "Groups"), "");
    }
    for capabilities in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(payload, capabilities), "0000000000000000");
    }
    assert_eq!(status_field(payload, "NoNewPrivs"), "1");
    assert_eq!(status_field(payload, "Seccomp"), "2");
    assert_eq!(status_field(payload, "Seccomp_filters"), "2");
    if let Some(hierarchy) = &host.cgroups {
        // Seen from the host: the payload waits inside its sandbox's groups.
        let file = std::fs::read_to_string(format!("/proc/{payload}/cgroup")).unwrap();
        let groups = groups_in(hierarchy, &file);
        for controller in ["memory", "cpu", "pids"] {
            let path = groups.get(controller).map(String::as_str).unwrap_or("");
            assert!(
                path.ends_with(&format!("/palisade/s{supervisor}")),
                "{controller}: {file}"
            );
        }
    }
    drop(prepared);
}

async fn the_run_sees_its_files_its_groups_and_only_its_stdio(sandboxes: &Arc<Sandboxes>) {
    let profile = shell(sandboxes);
    let mut run = command(
        &profile,
        vec![
            "sh".into(),
            "-c".into(),
            "cat input.txt; stat -c '%u:%g' input.txt; pwd; cat /proc/self/cgroup; ls /proc/self/fd; grep SigIgn /proc/self/status"
                .into(),
        ],
    );
    run.files
        .push(("input.txt".into(), b"from the gateway\n".to_vec()));
    let finished = sandboxes.run(&profile, run, Vec::new()).await.unwrap();
    let stdout = String::from_utf8(finished.stdout).unwrap();
    assert_eq!(finished.end, End::Exited(0), "{stdout}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("from the gateway"));
    assert_eq!(lines.next(), Some("1000:1000"));
    assert_eq!(lines.next(), Some("/tmp"));
    let rest: Vec<&str> = lines.collect();
    if let Some(hierarchy) = &sandboxes.host().cgroups {
        // Inside, its own groups are the root of the cgroup namespace: the
        // namespace was made after the attach.
        let groups = groups_in(hierarchy, &rest.join("\n"));
        for controller in ["memory", "cpu", "pids"] {
            assert_eq!(
                groups.get(controller).map(String::as_str),
                Some("/"),
                "{stdout}"
            );
        }
    }
    // `ls` lists its own descriptor of /proc/self/fd as 3.
    let fds: Vec<&str> = rest
        .iter()
        .copied()
        .filter(|line| line.parse::<u32>().is_ok())
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{stdout}");
    // The zygote ignores SIGCHLD; nothing it forks passes that on.
    let ignored = rest
        .iter()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(
        ignored & (1 << (libc::SIGCHLD - 1)),
        0,
        "SIGCHLD is not ignored: {stdout}"
    );
}

/// The listener inside is the only way out: the gateway's end answers on
/// it; another loopback port, a bind and UDP beyond the namespace fail.
async fn a_sandbox_with_egress_reaches_its_listener_only(sandboxes: &Arc<Sandboxes>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    let mut profile = shell(sandboxes);
    profile.egress = vec![palisade_egress::RuleSpec::Short("api.test:443".into())];
    let script = [
        "echo \"$HTTPS_PROXY $ALL_PROXY no_proxy=[$NO_PROXY]\"",
        "exec 3<>/dev/tcp/127.0.0.1/3128 && echo ping >&3 && read -r answer <&3 && echo \"proxy said $answer\"",
        "(exec 4<>/dev/tcp/127.0.0.1/8080) 2>/dev/null || echo other-port-refused",
        "(exec 5<>/dev/udp/192.0.2.1/53 && echo x >&5) 2>/dev/null || echo udp-refused",
        "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 9999))' 2>/dev/null || echo bind-refused",
        "getent hosts example.com || echo dns-refused",
    ]
    .join("\n");
    let run = command(&profile, vec!["bash".into(), "-c".into(), script]);
    let mut running = sandboxes.spawn(&profile, run).await.unwrap();
    let listener = tokio::net::TcpListener::from_std({
        let Some(listener) = running.take_egress() else {
            panic!("a profile with egress has a listener");
        };
        listener.set_nonblocking(true).unwrap();
        listener
    })
    .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(read)
        .read_line(&mut line)
        .await
        .unwrap();
    assert_eq!(line, "ping\n");
    write.write_all(b"pong\n").await.unwrap();
    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(running.stdout.as_mut().unwrap(), &mut stdout)
        .await
        .unwrap();
    assert_eq!(running.wait().await.unwrap(), End::Exited(0), "{stdout}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "http://127.0.0.1:3128 http://127.0.0.1:3128 no_proxy=[]",
            "proxy said pong",
            "other-port-refused",
            "udp-refused",
            "bind-refused",
            "dns-refused",
        ],
        "{stdout}"
    );
    // Without egress there is no listener.
    let plain = shell(sandboxes);
    let mut running = sandboxes
        .spawn(&plain, command(&plain, vec!["true".into()]))
        .await
        .unwrap();
    assert!(running.take_egress().is_none());
    assert_eq!(running.wait().await.unwrap(), End::Exited(0));
}

async fn a_missing_program_fails_the_start(sandboxes: &Arc<Sandboxes>) {
    let profile = shell(sandboxes);
    let run = command(&profile, vec!["no-such-program-here".into()]);
    let error = sandboxes.run(&profile, run, Vec::new()).await.unwrap_err();
    assert!(error.contains("not found in the sandbox's PATH"), "{error}");
    let mut run = command(&profile, vec!["true".into()]);
    run.cwd = PathBuf::from("/no/such/directory");
    let error = sandboxes.run(&profile, run, Vec::new()).await.unwrap_err();
    assert!(
        error.contains("cannot enter `/no/such/directory`"),
        "{error}"
    );
}

async fn a_dropped_sandbox_leaves_no_process(sandboxes: &Arc<Sandboxes>) {
    let prepared = sandboxes.prepare(&shell(sandboxes)).await.unwrap();
    let (supervisor, init, payload) = sandbox_processes();
    drop(prepared);
    assert!(
        all_gone_within(
            &[supervisor, init, payload],
            std::time::Duration::from_secs(5)
        ),
        "the sandbox of {supervisor} outlived its handle"
    );
}

fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

fn all_gone_within(pids: &[u32], limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while !pids.iter().all(|pid| gone(*pid)) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}

fn sleep_run(sandboxes: &Sandboxes) -> palisade_sandbox::Run {
    command(&shell(sandboxes), vec!["sleep".into(), "1000".into()])
}

async fn a_killed_supervisor_ends_the_run(sandboxes: &Arc<Sandboxes>) {
    let prepared = sandboxes.prepare(&shell(sandboxes)).await.unwrap();
    let (supervisor, init, payload) = sandbox_processes();
    let mut running = prepared.start(sleep_run(sandboxes)).await.unwrap();
    assert_eq!(running.supervisor_pid(), Some(supervisor));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(supervisor).unwrap()).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), running.wait()).await;
    assert!(ended.is_ok(), "wait returns once the supervisor is killed");
    assert!(
        all_gone_within(
            &[supervisor, init, payload],
            std::time::Duration::from_secs(2)
        ),
        "the sandbox died with its supervisor"
    );
}

async fn a_dead_zygote_is_started_again(sandboxes: &Arc<Sandboxes>) {
    let prepared = sandboxes.prepare(&shell(sandboxes)).await.unwrap();
    let (supervisor, init, payload) = sandbox_processes();
    let zygote = zygote_of(std::process::id());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(zygote).unwrap()).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert!(
        all_gone_within(
            &[zygote, supervisor, init, payload],
            std::time::Duration::from_secs(2)
        ),
        "the zygote's supervisors and their sandboxes died with it"
    );
    // The sandbox it held is gone: its start fails, and says so.
    assert!(prepared.start(sleep_run(sandboxes)).await.is_err());
    // The next sandbox comes from a new zygote.
    let profile = shell(sandboxes);
    let run = command(&profile, vec!["true".into()]);
    let finished = sandboxes.run(&profile, run, Vec::new()).await.unwrap();
    assert_eq!(finished.end, End::Exited(0));
    assert_ne!(zygote_of(std::process::id()), zygote);
}

async fn the_zygote_reaps_its_supervisors(sandboxes: &Arc<Sandboxes>) {
    let profile = shell(sandboxes);
    for _ in 0..5 {
        let run = command(&profile, vec!["true".into()]);
        let finished = sandboxes.run(&profile, run, Vec::new()).await.unwrap();
        assert_eq!(finished.end, End::Exited(0));
    }
    let zygote = zygote_of(std::process::id());
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let mut fields = after_name.split_whitespace();
        if fields.nth(1) == Some(zygote.to_string().as_str()) {
            left.push(pid);
        }
    }
    assert_eq!(
        left,
        Vec::<u32>::new(),
        "no supervisor, live or zombie, is left"
    );
}

/// Run as a child of the test with [`GATEWAY_ARG`]: a gateway with one
/// running sandbox, which the test kills with SIGKILL.
fn gateway_that_dies() -> ! {
    let helper = std::env::current_exe().unwrap();
    let sandboxes = Sandboxes::start(&settings(), helper).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let running = runtime.block_on(async {
        let prepared = sandboxes.prepare(&shell(&sandboxes)).await.unwrap();
        prepared.start(sleep_run(&sandboxes)).await.unwrap()
    });
    println!("running");
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(running);
    std::process::exit(1)
}

#[expect(
    clippy::disallowed_methods,
    reason = "the test starts a gateway of its own to kill it"
)]
fn the_gateways_death_takes_every_sandbox_process_along() {
    use std::io::BufRead as _;
    let mut gateway = std::process::Command::new(std::env::current_exe().unwrap())
        .arg(GATEWAY_ARG)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(gateway.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "running\n");
    let gateway_pid = gateway.id();
    let zygote = zygote_of(gateway_pid);
    let supervisors = children_of(zygote);
    assert_eq!(supervisors.len(), 1, "{supervisors:?}");
    let init = children_of(supervisors[0]);
    assert_eq!(init.len(), 1, "{init:?}");
    let payload = children_of(init[0]);
    assert_eq!(payload.len(), 1, "{payload:?}");
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    assert!(
        all_gone_within(
            &[zygote, supervisors[0], init[0], payload[0]],
            std::time::Duration::from_secs(2)
        ),
        "every process of the sandbox died with the gateway"
    );
}
