"""The sandbox escape suite: `palisade sandbox run` against every way out a payload could try, each reason asserted.

Every test runs a real payload in a fresh sandbox: a shell, Python making raw
system calls through ctypes (`fixtures/sandbox/probe.py`, passed with
`python3 -c` so that no host path has to be visible inside), or a small C
program compiled here for what neither can do (the 32-bit system call path,
a setuid-root binary). Each asserts what stopped the attempt: the errno and
its text, the signal, or the CLI's `palisade: sandbox: <reason>` line; and,
where the attempt aims at the host (a listener, a socket, a process), that
nothing arrived there. Limits are small (a `tight` profile in a config
file) so that the whole file runs in well under a minute. The unprivileged
cases run the same binary as `nobody`, where there are no cgroups and the
sandbox lives in a user namespace.
"""

from __future__ import annotations

import json
import os
import pty
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import FIXTURES, PASS_THROUGH, StdioPeer, palisade_bin

PROBE = (FIXTURES / "sandbox" / "probe.py").read_text()
SOURCES = FIXTURES / "sandbox"

# The limits the escape attempts run into: small, so that hitting them is quick.
TIGHT = """\
[sandbox.profiles.tight]
base = "python"
memory = "64MiB"
cpus = 0.5
pids = 32
timeout = "3s"
tmp_size = "1MiB"
tmp_noexec = true
file_size = "256KiB"
open_files = 64
max_output = "64KiB"
"""
TIGHT_PIDS = 32

# What the supervisor's command line carries (crates/palisade-sandbox/src/supervisor.rs).
SUPERVISOR_ARG = "__palisade-sandbox-supervisor"

PYTHON_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}


# ---------------------------------------------------------------------------
# Running the sandbox


def sandbox(
    *command: str,
    profile: str | None = None,
    config: Path | None = None,
    bind: tuple[str, ...] = (),
    bind_ro: tuple[str, ...] = (),
    degraded: tuple[str, ...] = (),
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
    timeout: float = 60,
    user: Unprivileged | None = None,
) -> subprocess.CompletedProcess[str]:
    """One `palisade sandbox run`, to its end; as `nobody` when `user` is given."""
    argv = [*user.prefix, user.binary] if user else [palisade_bin()]
    argv += ["sandbox", "run"]
    if config is not None:
        argv += ["--config", str(config)]
    if profile is not None:
        argv += ["--profile", profile]
    for spec in bind:
        argv += ["--bind", spec]
    for spec in bind_ro:
        argv += ["--bind-ro", spec]
    for mode in degraded:
        argv += ["--degraded", mode]
    argv += ["--", *command]
    return subprocess.run(
        argv,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        pass_fds=pass_fds,
        cwd=user.home if user else None,
    )


def shown(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"


def reason(done: subprocess.CompletedProcess[str]) -> str:
    """The CLI's last line of stderr: `palisade: sandbox: <reason>` for any end but a normal exit."""
    lines = done.stderr.rstrip("\n").splitlines()
    return lines[-1] if lines else ""


def probe(name: str, *args: str, profile: str = "python", **kwargs: Any) -> dict[str, Any]:
    """Runs one probe of fixtures/sandbox/probe.py inside; what each of its attempts came to."""
    done = sandbox("python3", "-c", PROBE, name, *args, profile=profile, **kwargs)
    assert done.returncode == 0, shown(done)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tight(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "sandbox.toml"
    path.write_text(TIGHT)
    return path


def marker() -> str:
    """A number of seconds for `sleep` that no other process on the host has in its argv."""
    return f"{random.randint(600, 699)}.{random.randint(10**6, 10**7 - 1)}"


def host_processes(*argv: str) -> list[str]:
    """The host's live (not zombie) processes whose argv starts with `argv`."""
    wanted = b"".join(arg.encode() + b"\0" for arg in argv)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and cmdline.startswith(wanted):
            found.append(pid + ": " + cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def supervisor_bin() -> str:
    """argv[0] of a supervisor: the CLI re-executes its own binary, symbolic links resolved."""
    return os.path.realpath(palisade_bin())


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def gone_within(seconds: float, *argv: str) -> list[str]:
    """The processes with this argv still on the host after waiting up to `seconds` for them to go."""
    deadline = time.monotonic() + seconds
    while (left := host_processes(*argv)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def landlock_abi() -> int:
    done = subprocess.run([palisade_bin(), "sandbox", "check"], capture_output=True, text=True, timeout=30)
    found = re.search(r"landlock\s+ABI (\d+)", done.stdout)
    return int(found.group(1)) if found else 0


def tcp_refusal() -> str:
    """How a TCP connect fails inside: Landlock's network rules (ABI 4 and later) refuse it before the
    fresh namespace's loopback, which is down, would."""
    return "EACCES: Permission denied" if landlock_abi() >= 4 else "ENETUNREACH: Network is unreachable"


def compile_c(source: str, into: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    into.mkdir(parents=True, exist_ok=True)
    into.chmod(0o755)  # the sandbox's uid must be able to enter the bound directory
    binary = into / Path(source).stem
    subprocess.run(["gcc", "-O0", "-o", str(binary), str(SOURCES / source)], check=True, timeout=60)
    binary.chmod(0o755)
    return binary


# ---------------------------------------------------------------------------
# What `sandbox check` and the CLI contract promise


def test_check_reports_every_feature_and_passes_on_this_host():
    """`sandbox check` prints a line for each isolation feature and exits 0 when all are present."""
    done = subprocess.run([palisade_bin(), "sandbox", "check"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, shown(done)
    for feature, detail in [
        ("user namespaces", r"\S"),
        ("seccomp", r"filter"),
        ("landlock", r"ABI \d+"),
        ("cgroups", r"v[12]\b.*"),
        ("tmpfs", r"\S"),
    ]:
        assert re.search(rf"^\s+ok\s+{feature}\s+{detail}", done.stdout, re.M), (feature, done.stdout)
    assert "every isolation feature is present" in done.stdout


def test_exit_status_stdin_and_the_reason_line_follow_the_contract(tight):
    """The payload's code is the CLI's; stdin reaches it; a signal is 128+N, a missing command 127,
    an output flood 125, each with its `palisade: sandbox:` reason as the last line of stderr."""
    exited = sandbox("sh", "-c", "cat; exit 7", stdin="from the test\n")
    assert (exited.returncode, exited.stdout) == (7, "from the test\n"), shown(exited)
    assert "palisade: sandbox:" not in exited.stderr, "a normal exit has no reason line"

    killed = sandbox("sh", "-c", "kill -TERM $$")
    assert killed.returncode == 128 + signal.SIGTERM, shown(killed)
    assert reason(killed) == "palisade: sandbox: killed by signal 15 (SIGTERM)", shown(killed)

    missing = sandbox("no-such-command-anywhere")
    assert missing.returncode == 127, shown(missing)
    assert reason(missing).startswith("palisade: sandbox: cannot execute `no-such-command-anywhere`"), shown(missing)

    flood = sandbox("head", "-c", "200000", "/dev/zero", config=tight, profile="tight")
    assert flood.returncode == 125, shown(flood)
    assert reason(flood) == "palisade: sandbox: output over 65536 bytes", shown(flood)
    assert len(flood.stdout) == 65536, "what fits under the cap is relayed, nothing more"


def test_the_payload_runs_as_uid_1000_in_tmp_with_only_its_own_environment():
    """uid and gid 1000 with no supplementary groups, cwd /tmp, and the environment the profile gives
    (PATH, HOME, LANG and the python profile's variables): nothing of the CLI's."""
    env = {**os.environ, "PALISADE_TEST_CANARY": "canary-e1f0"}
    done = sandbox("python3", "-c", "import json, os; print(json.dumps([os.getuid(), os.getgid(), os.getgroups(),"
                   " os.getcwd(), dict(os.environ)]))", profile="python", env=env)
    assert done.returncode == 0, shown(done)
    assert json.loads(done.stdout) == [1000, 1000, [], "/tmp", PYTHON_ENV]


def test_the_filesystem_shows_only_the_system_set():
    """/ holds the read-only system, a synthetic /etc and /dev, a fresh 50 MiB /tmp and /proc: no /sys,
    /home, /root, and none of the host's /tmp."""
    script = ("ls -A /; echo --; ls -A /etc; echo --; ls -A /dev; echo --; ls -A /tmp; echo --; "
              "stat -f -c '%b %S' /tmp; ls -d /sys /home /root")
    done = sandbox("sh", "-c", script)
    root, etc, dev, tmp, tmp_size = [part.split() for part in done.stdout.split("--\n")]
    assert {"usr", "etc", "tmp", "dev", "proc", "bin"} <= set(root), root
    assert set(root) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "tmp", "dev", "proc"}, root
    # ld.so.conf is copied as well as ld.so.cache (init.rs), beyond the list in the brief.
    assert {"passwd", "group", "hostname", "hosts", "nsswitch.conf"} <= set(etc), etc
    assert set(etc) <= {"passwd", "group", "hostname", "hosts", "ld.so.cache", "ld.so.conf", "localtime",
                        "alternatives", "ssl", "nsswitch.conf"}, etc
    assert set(dev) == {"null", "zero", "full", "random", "urandom", "shm", "fd", "stdin", "stdout", "stderr"}, dev
    assert tmp == [], "a fresh tmpfs, not the host's /tmp"
    assert int(tmp_size[0]) * int(tmp_size[1]) == 50 * 1024 * 1024, tmp_size
    for path in ("/sys", "/home", "/root"):
        assert f"ls: cannot access '{path}': No such file or directory" in done.stderr, shown(done)


# ---------------------------------------------------------------------------
# Common workloads, each in its built-in profile


def test_python_runs_json_sqlite_subprocess_and_threads():
    """The python profile runs the standard library: json, sqlite3 on a file in /tmp, subprocess, threading."""
    code = """
import json, sqlite3, subprocess, threading
db = sqlite3.connect("/tmp/work.db")
db.execute("create table t (n integer)")
db.executemany("insert into t values (?)", [(n,) for n in range(100)])
db.commit()
total = db.execute("select sum(n) from t").fetchone()[0]
found = []
threads = [threading.Thread(target=lambda n=n: found.append(n * n)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
child = subprocess.run(["sh", "-c", "echo from a child"], capture_output=True, text=True, check=True)
print(json.dumps({"sum": total, "squares": sorted(found), "child": child.stdout}))
"""
    done = sandbox("python3", "-c", code, profile="python")
    assert done.returncode == 0, shown(done)
    assert json.loads(done.stdout) == {"sum": 4950, "squares": [0, 1, 4, 9], "child": "from a child\n"}


def test_a_coreutils_pipeline_runs_in_the_shell_profile():
    """seq | sort -r | head | tr, in the default shell profile."""
    done = sandbox("sh", "-c", "seq 1000 | sort -r | head -3 | tr '\\n9' ',n'")
    expected = ",".join(sorted((str(n) for n in range(1, 1001)), reverse=True)[:3]).replace("9", "n") + ","
    assert (done.returncode, done.stdout) == (0, expected), shown(done)


def test_node_runs_fs_and_child_process():
    """The node profile runs Node: fs on a file in /tmp and a child process."""
    code = ("const fs = require('fs'); fs.writeFileSync('/tmp/n.txt', 'written by node');"
            "const out = require('child_process').execFileSync('cat', ['/tmp/n.txt']).toString();"
            "console.log(JSON.stringify({out, uid: process.getuid()}));")
    done = sandbox("node", "-e", code, profile="node")
    assert done.returncode == 0, shown(done)
    assert json.loads(done.stdout) == {"out": "written by node", "uid": 1000}


# ---------------------------------------------------------------------------
# Writes and sizes


def test_writes_outside_tmp_fail_on_a_read_only_root():
    """Creating or changing a file in /, /etc, /usr, /lib, /dev and /proc/sys fails with EROFS; /tmp is writable."""
    code = """
import errno, json, os
def write(path):
    try:
        with open(path, "w") as f:
            f.write("escaped")
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno] + ": " + e.strerror
paths = ["/escaped", "/etc/escaped", "/etc/passwd", "/usr/escaped", "/usr/bin/escaped", "/lib/escaped",
         "/etc/ssl/escaped", "/etc/ssl/certs/escaped", "/dev/escaped", "/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/tmp/allowed"]
print(json.dumps({path: write(path) for path in paths}))
"""
    done = sandbox("python3", "-c", code, profile="python")
    assert done.returncode == 0, shown(done)
    results = json.loads(done.stdout)
    assert results.pop("/tmp/allowed") == "ok"
    if not Path("/etc/ssl/certs").is_dir():  # a host without CA certificates shows none
        del results["/etc/ssl/escaped"], results["/etc/ssl/certs/escaped"]
    assert results == {path: "EROFS: Read-only file system" for path in results}, results
    shell = sandbox("sh", "-c", "mkdir /escaped; touch /etc/hosts; rm /usr/bin/env; "
                    "echo 1 > /proc/sys/kernel/ns_last_pid")
    for message in ("mkdir: cannot create directory ‘/escaped’: Read-only file system",
                    "touch: cannot touch '/etc/hosts': Read-only file system",
                    "rm: cannot remove '/usr/bin/env': Read-only file system",
                    "/proc/sys/kernel/ns_last_pid: Read-only file system"):
        assert message in shell.stderr, (message, shown(shell))


def test_filling_tmp_past_its_cap_fails_with_enospc(tight):
    """Files under the 256 KiB file-size limit fill the 1 MiB /tmp until a write fails with ENOSPC."""
    code = """
import errno, os
for i in range(8):
    try:
        with open(f"/tmp/fill{i}", "wb") as f:
            f.write(b"x" * 250 * 1024)
    except OSError as e:
        print(i, errno.errorcode[e.errno], e.strerror)
        break
else:
    print("never full")
"""
    done = sandbox("python3", "-c", code, config=tight, profile="tight")
    assert done.returncode == 0, shown(done)
    count, name, text = done.stdout.split(" ", 2)
    assert (name, text.strip()) == ("ENOSPC", "No space left on device"), shown(done)
    assert 3 <= int(count) <= 4, "about 1 MiB went in first"


def test_a_file_past_the_size_limit_fails_with_efbig_and_no_sigxfsz(tight):
    """A write past the 256 KiB RLIMIT_FSIZE fails with EFBIG; SIGXFSZ is ignored, so the payload carries on."""
    code = """
import errno, os
with open("/tmp/big", "wb") as f:
    f.write(b"x" * 256 * 1024)
    try:
        os.write(f.fileno(), b"x")
        print("wrote past the limit")
    except OSError as e:
        print(errno.errorcode[e.errno], e.strerror)
print("still running", os.path.getsize("/tmp/big"))
"""
    done = sandbox("python3", "-c", code, config=tight, profile="tight")
    assert done.returncode == 0, shown(done)
    assert done.stdout.splitlines() == ["EFBIG File too large", f"still running {256 * 1024}"], shown(done)
    shell = sandbox("sh", "-c", "head -c 300000 /dev/zero > /tmp/big; echo head=$?", config=tight, profile="tight")
    assert "head=1" in shell.stdout and "File too large" in shell.stderr, shown(shell)


def test_tmp_noexec_refuses_to_run_a_program_written_there(tight):
    """With `tmp_noexec`, a binary copied into /tmp cannot be executed: EACCES (shell status 126)."""
    done = sandbox("sh", "-c", "cp /bin/true /tmp/t && chmod +x /tmp/t && /tmp/t; echo status=$?",
                   config=tight, profile="tight")
    assert "status=126" in done.stdout and "/tmp/t: Permission denied" in done.stderr, shown(done)


# ---------------------------------------------------------------------------
# Network


def test_no_network_path_leads_out():
    """TCP and UDP to the host's loopback listeners (IPv4 and IPv6), to the outside, DNS and bash's
    /dev/tcp all fail, each for its reason; only `lo` exists, and nothing reaches the host's listeners."""
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        tcp6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        tcp6 = None  # no IPv6 on this host: the attempt still runs, against a port nobody holds
    port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
    port6 = tcp6.getsockname()[1] if tcp6 else port
    try:
        results = probe("network", str(port), str(udp_port), str(port6))
        bash = sandbox("bash", "-c", f"echo x > /dev/tcp/127.0.0.1/{port}; echo x > /dev/udp/127.0.0.1/{udp_port}; "
                       f"echo x > /dev/tcp/localhost/{port}")
        for listener in (tcp, udp, tcp6):
            if listener is not None:
                listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            tcp.accept()
        if tcp6 is not None:
            with pytest.raises(BlockingIOError):
                tcp6.accept()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(64)
    finally:
        for listener in (tcp, udp, tcp6):
            if listener is not None:
                listener.close()
    refused = tcp_refusal()
    assert results["tcp 127.0.0.1"] == refused, results
    assert results["tcp 1.1.1.1:443"] == refused, results
    if refused.startswith("EACCES"):
        assert results["tcp ::1"] == refused, results
    else:
        assert results["tcp ::1"] in ("ENETUNREACH: Network is unreachable",
                                      "EADDRNOTAVAIL: Cannot assign requested address"), results
    # UDP is outside Landlock's rules: the namespace's loopback is down, so nothing routes.
    assert results["udp 127.0.0.1"] == "ENETUNREACH: Network is unreachable", results
    assert results["udp 8.8.8.8:53"] == "ENETUNREACH: Network is unreachable", results
    assert results["udp ::1"] == "EADDRNOTAVAIL: Cannot assign requested address", results
    assert results["dns example.com"] == "gaierror: Name or service not known", results
    assert results["resolv.conf"] is False, "no resolver is configured inside"
    assert results["interfaces"] == ["lo"], results
    tcp_text = refused.split(": ", 1)[1]
    assert bash.stderr.count(f"bash: connect: {tcp_text}\n") == 2, shown(bash)
    assert "bash: connect: Network is unreachable\n" in bash.stderr, shown(bash)
    for target, text in ((f"tcp/127.0.0.1/{port}", tcp_text), (f"udp/127.0.0.1/{udp_port}", "Network is unreachable"),
                         (f"tcp/localhost/{port}", tcp_text)):
        assert re.search(rf"^bash: (line 1: )?/dev/{re.escape(target)}: {text}$", bash.stderr, re.M), shown(bash)


def test_host_unix_sockets_are_out_of_reach(tmp_path):
    """A host abstract socket is not in the sandbox's network namespace (ECONNREFUSED), a host socket
    file is not in its filesystem (ENOENT); neither listener sees a connection."""
    abstract_name = f"palisade-escape-{os.getpid()}-{random.randint(0, 10**9)}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    path = tmp_path / "host.sock"
    by_path = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    by_path.bind(str(path))
    by_path.listen()
    try:
        results = probe("unix", abstract_name, str(path))
        for listener in (abstract, by_path):
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        abstract.close()
        by_path.close()
    assert results == {"abstract": "ECONNREFUSED: Connection refused",
                       "path": "ENOENT: No such file or directory"}, results


# ---------------------------------------------------------------------------
# Resource limits


def test_a_fork_bomb_stops_at_the_pids_limit(tight):
    """Forking without end fails with EAGAIN once the 32-process limit is reached."""
    results = probe("fork-bomb", config=tight, profile="tight")
    assert results["stopped by"] == "EAGAIN: Resource temporarily unavailable", results
    assert 16 <= results["forked"] < TIGHT_PIDS, results


def test_a_shell_fork_bomb_leaves_the_host_responsive(tight, tmp_path):
    """bash's fork bomb hits the pids limit (`fork: retry: Resource temporarily unavailable`) while the
    host keeps starting processes promptly; the bomb's shell stays in charge, and nothing is left after."""
    bomb = "bomb() { bomb | bomb & }; bomb; sleep 2; echo still in charge"
    name = f"fork-bomb-{marker()}"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    argv = [palisade_bin(), "sandbox", "run", "--config", str(tight), "--profile", "tight",
            "--", "bash", "-c", bomb, name]
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    slowest, most = 0.0, 0
    try:
        while proc.poll() is None:
            started = time.monotonic()
            subprocess.run(["true"], check=True, timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            most = max(most, len(host_processes("bash", "-c", bomb)))
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    done = subprocess.CompletedProcess(argv, proc.returncode, out.read_text(), err.read_text())
    # bash retries a failed fork with a growing pause: on a loaded machine the
    # deadline may end the run first. Either end is the sandbox holding.
    ended_itself = done.returncode == 0 and done.stdout == "still in charge\n"
    timed_out = done.returncode == 124 and done.stderr.rstrip().endswith("palisade: sandbox: timed out after 3s")
    assert ended_itself or timed_out, shown(done)
    assert "fork: retry: Resource temporarily unavailable" in done.stderr, shown(done)
    assert most <= TIGHT_PIDS, f"{most} of the bomb's shells on the host at once"
    assert slowest < 1.0, f"starting a process on the host took {slowest:.2f}s during the bomb"
    assert gone_within(2, "bash", "-c", bomb) == []


def test_memory_past_the_limit_is_reported_as_out_of_memory(tight):
    """Touching 200 MiB under a 64 MiB limit is killed by the cgroup OOM killer: exit 137 and the reason."""
    done = sandbox("python3", "-c", "x = b'\\1' * (200 * 1024 * 1024)\nprint('allocated')",
                   config=tight, profile="tight")
    assert done.returncode == 137, shown(done)
    assert "allocated" not in done.stdout
    assert reason(done) == "palisade: sandbox: out of memory (limit 64 MiB)", shown(done)


def test_cpu_is_held_to_the_quota(tight):
    """Two processes busy for 1 s of wall-clock time get at most ~0.6 s of CPU per second under `cpus = 0.5`
    (unconfined, they would take both cores: ~2)."""
    results = probe("cpu", "1.0", config=tight, profile="tight")
    assert results["wall"] >= 1.0, results
    assert 0.1 < results["cpus"] <= 0.6, f"two busy processes used {results['cpus']:.2f} CPUs under a 0.5 quota"


def test_the_deadline_kills_the_run_and_everything_in_it(tight):
    """A run past its 3 s timeout ends with exit 124 and `timed out after 3s`; its children die with it."""
    seconds = marker()
    started = time.monotonic()
    done = sandbox("sh", "-c", f"sleep {seconds} & exec sleep {seconds}", config=tight, profile="tight")
    took = time.monotonic() - started
    assert done.returncode == 124, shown(done)
    assert reason(done) == "palisade: sandbox: timed out after 3s", shown(done)
    assert 3 <= took < 8, f"the run took {took:.1f}s"
    assert gone_within(2, "sleep", seconds) == []


# ---------------------------------------------------------------------------
# Privilege


def test_setuid_binaries_give_no_privilege():
    """su, passwd and mount (setuid root on the host) run without root inside: /usr and /tmp are nosuid
    and no-new-privileges is set, so mount says it must be run by the superuser and `id -u` stays 1000."""
    script = ("su -c 'id -u' root </dev/null; echo su=$?; passwd </dev/null; echo passwd=$?; "
              "mount -t tmpfs none /tmp; echo mount=$?; id -u; stat -c '%A %U' /usr/bin/su; "
              "grep NoNewPrivs /proc/self/status; "
              "awk '$5 == \"/usr\" || $5 == \"/tmp\" { print $5, $6 }' /proc/self/mountinfo")
    done = sandbox("sh", "-c", script)
    lines = done.stdout.splitlines()
    statuses = dict(line.split("=") for line in lines if re.fullmatch(r"\w+=\d+", line))
    assert statuses["su"] != "0" and statuses["passwd"] != "0" and statuses["mount"] != "0", shown(done)
    assert "mount: /tmp: must be superuser to use mount." in done.stderr, shown(done)
    assert "1000" in lines and "-rwsr-xr-x root" in lines, shown(done)
    assert "NoNewPrivs:\t1" in lines, shown(done)
    options = dict(line.split(" ", 1) for line in lines if line.startswith(("/usr ", "/tmp ")))
    for mount in ("/usr", "/tmp"):
        assert "nosuid" in options[mount].split(","), (mount, options)


def test_a_setuid_copy_of_a_shell_in_tmp_gives_nothing():
    """`chmod u+s` works on a copy of bash in /tmp, but the copy belongs to the sandbox's user, cannot be
    given to root (EPERM), and runs as 1000 on a nosuid /tmp."""
    script = ("cp /bin/bash /tmp/sh && chmod u+s /tmp/sh && stat -c '%A %U' /tmp/sh; chown root /tmp/sh; "
              "/tmp/sh -p -c 'id -u; id -un'")
    done = sandbox("sh", "-c", script)
    assert done.stdout.splitlines() == ["-rwsr-xr-x sandbox", "1000", "sandbox"], shown(done)
    assert "chown: changing ownership of '/tmp/sh': Operation not permitted" in done.stderr, shown(done)


def test_a_setuid_root_binary_bound_in_runs_as_the_sandbox_user(unprivileged):
    """A setuid-root program that gives euid 0 to `nobody` on the host gives euid 1000 inside (binds are nosuid)."""
    binary = compile_c("euid.c", unprivileged.home / "setuid")
    binary.chmod(0o4755)
    on_host = subprocess.run([*unprivileged.prefix, str(binary)], capture_output=True, text=True, timeout=30)
    if on_host.stdout.strip() != "uid 65534 euid 0":
        pytest.skip(f"the setuid bit does not take effect where the test writes: {on_host.stdout!r}")
    done = sandbox("sh", "-c", "stat -c '%A %U' /probe/euid; /probe/euid", bind_ro=(f"{binary.parent}:/probe",))
    assert done.stdout.splitlines() == ["-rwsr-xr-x root", "uid 1000 euid 1000"], shown(done)


# ---------------------------------------------------------------------------
# System calls


DENIED = [
    "ptrace(PTRACE_TRACEME)", "ptrace(PTRACE_ATTACH, child)", "process_vm_readv(self)",
    "pidfd_open(child)", "pidfd_getfd(-1, 0)",
    "mount(tmpfs, /tmp)", "umount2(/usr)", "pivot_root(/tmp, /tmp)", "chroot(/tmp)",
    "unshare(CLONE_NEWUSER)", "unshare(CLONE_NEWNET)", "setns(-1, 0)",
    "keyctl(KEYCTL_GET_KEYRING_ID)", "bpf(BPF_MAP_CREATE)", "perf_event_open(self)", "io_uring_setup(1)",
    "userfaultfd(UFFD_USER_MODE_ONLY)", "init_module", "finit_module(/dev/null)",
    "clone(CLONE_NEWUSER)", "clone(CLONE_NEWNET)", "clone(CLONE_NEWNS | CLONE_NEWPID)",
]


def assert_filtered(results: dict[str, Any]) -> None:
    for call in DENIED:
        assert results[call] == "EPERM: Operation not permitted", (call, results[call])
    assert results["clone3"] == "ENOSYS: Function not implemented", "ENOSYS, so that libc falls back to clone"
    assert results["clone(SIGCHLD)"] == "ok", "clone without namespace flags (fork) is allowed"
    assert results["status"] == {"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0000000000000000",
                                 "CapPrm": "0000000000000000", "CapBnd": "0000000000000000"}, results["status"]


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"),
                    reason="the probe knows the system call numbers of x86-64 and aarch64")
def test_dangerous_system_calls_are_refused_by_the_filter():
    """ptrace, process_vm_readv, pidfd_getfd, mount, pivot_root, chroot, unshare, setns, keyctl, bpf,
    perf_event_open, io_uring_setup, userfaultfd, init_module and finit_module fail with EPERM, each with
    arguments the kernel itself would accept or answer otherwise; clone3 with ENOSYS; clone with namespace
    flags with EPERM while a plain fork works."""
    assert_filtered(probe("syscalls"))


def test_tiocsti_cannot_type_into_the_terminal():
    """Run from a terminal, the payload holds no terminal (its descriptors are pipes), TIOCSTI and TIOCLINUX
    fail with EPERM on each of them while an allowed ioctl reaches the kernel (ENOTTY), and nothing was
    typed into the terminal."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        proc = subprocess.Popen(
            [palisade_bin(), "sandbox", "run", "--profile", "python", "--", "python3", "-c", PROBE, "ioctls"],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
        )
        os.set_blocking(master, False)
        output = b""
        deadline = time.monotonic() + 60
        while True:
            ended = proc.poll() is not None
            try:
                while chunk := os.read(master, 65536):
                    output += chunk
            except BlockingIOError:
                pass
            if ended:
                break
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.02)
        os.set_blocking(slave, False)
        with pytest.raises(BlockingIOError):
            os.read(slave, 64)  # nothing waits in the terminal's input
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, output
    results = json.loads(output.decode().strip().splitlines()[-1])
    for fd in (0, 1, 2):
        assert results[f"isatty({fd})"] is False, results
        assert results[f"TIOCSTI({fd})"] == "EPERM: Operation not permitted", results
        assert results[f"TIOCLINUX({fd})"] == "EPERM: Operation not permitted", results
        assert results[f"TIOCGWINSZ({fd})"] == "ENOTTY: Inappropriate ioctl for device", results


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="int 0x80 is x86-64's 32-bit path")
def test_the_32_bit_system_call_path_is_killed_with_sigsys(tmp_path):
    """getpid through `int $0x80`, which works on the host, kills the payload with SIGSYS inside: exit 159."""
    binary = compile_c("int80.c", tmp_path / "bin")
    on_host = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30)
    if on_host.returncode != 0:
        pytest.skip(f"this kernel has no 32-bit system call path: {on_host}")
    done = sandbox("/probe/int80", bind_ro=(f"{binary.parent}:/probe",))
    assert done.returncode == 128 + 31, shown(done)
    assert done.stdout == "", "killed before the call returned"
    assert reason(done) == "palisade: sandbox: killed by signal 31 (SIGSYS)", shown(done)


# ---------------------------------------------------------------------------
# The host: its files, environment and processes


def test_host_secrets_files_and_environment_are_invisible(tmp_path):
    """/etc/shadow, /root, /home, /etc/ssl/private, a file in the test's data directory, this repository and
    the CLI's environment are out of sight (ENOENT; init's environ unreadable); a bound directory shows only itself."""
    data = tmp_path / "data"
    (data / "public").mkdir(parents=True)
    (data / "secret.txt").write_text("host secret 7c1d")
    (data / "public" / "shown.txt").write_text("bound on purpose")
    data.chmod(0o755)
    (data / "public").chmod(0o755)
    env = {**os.environ, "PALISADE_TEST_CANARY": "canary-5e2a"}
    paths = ["/etc/shadow", "/root", "/home", str(data / "secret.txt"), str(Path(__file__).resolve()),
             "/data/shown.txt", "/data/../secret.txt", "/etc/ssl/private/ssl-cert-snakeoil.key"]
    done = sandbox("python3", "-c", PROBE, "secrets", *paths, profile="python", env=env,
                   bind_ro=(f"{data / 'public'}:/data",))
    assert done.returncode == 0, shown(done)
    results = json.loads(done.stdout)
    for path in paths[:6]:
        expected = "ok bound on purpose" if path == "/data/shown.txt" else "ENOENT: No such file or directory"
        assert results[path] == expected, (path, results[path])
    assert results["/data/../secret.txt"] == "ENOENT: No such file or directory", "`..` of a bind is the sandbox's root"
    # The public CA certificates are shown (TLS clients look there); the host's private keys are not.
    assert results["/etc/ssl/private/ssl-cert-snakeoil.key"] == "ENOENT: No such file or directory", results
    assert results["environ"] == PYTHON_ENV, results["environ"]
    assert results["/proc/self/environ"] == "ok " + "".join(f"{k}={PYTHON_ENV[k]}\0" for k in sorted(PYTHON_ENV))
    assert results["/proc/1/environ"] in ("EACCES: Permission denied", "ok "), results["/proc/1/environ"]
    assert "canary-5e2a" not in done.stdout + done.stderr
    assert "host secret 7c1d" not in done.stdout
    shell = sandbox("sh", "-c", "env; cat /proc/1/environ", env=env)
    assert "canary-5e2a" not in shell.stdout + shell.stderr
    assert "cat: /proc/1/environ: Permission denied" in shell.stderr, shown(shell)


def test_host_processes_can_be_neither_seen_nor_signalled():
    """/proc and ps show only init and the payload; the test's own pid is unknown inside (ESRCH), and init
    cannot be killed (EPERM)."""
    results = probe("processes", str(os.getpid()))
    assert results["/proc pids"] == [1, results["pid"]], results
    assert results["kill(host pid, 0)"] == "ESRCH: No such process", results
    assert results[f"/proc/{os.getpid()}"] is False, results
    assert results["kill(1, SIGKILL)"] == "EPERM: Operation not permitted", results
    ps = sandbox("ps", "-eo", "pid=")
    assert sorted(int(pid) for pid in ps.stdout.split()) == [1, 2], shown(ps)
    shell = sandbox("sh", "-c", f"kill -0 {os.getpid()}; echo kill=$?")
    assert "kill=1" in shell.stdout and "kill: No such process" in shell.stderr, shown(shell)


def test_daemons_do_not_survive_the_run():
    """A `setsid` daemon, a double fork and a `nohup ... &` all run inside, and none is on the host
    once the run is over: init's end takes the PID namespace down."""
    seconds = marker()
    script = (f"setsid sleep {seconds} & (sleep {seconds} & ) ; nohup sleep {seconds} >/dev/null 2>&1 & "
              f"sleep 0.3; ps -eo args | grep -c '^sleep {seconds}$'")
    done = sandbox("sh", "-c", script)
    assert done.returncode == 0 and done.stdout.strip() == "3", f"the three daemons ran inside\n{shown(done)}"
    assert gone_within(2, "sleep", seconds) == []


def test_inherited_descriptors_are_not_passed_in(tmp_path):
    """A descriptor the CLI inherits without O_CLOEXEC is closed before the payload starts: it holds
    0, 1, 2 (pipes) and only the descriptors it opens itself."""
    leaked = tmp_path / "leaked-descriptor"
    leaked.write_text("inherited")
    opened = os.open(leaked, os.O_RDONLY)
    fd = os.dup2(opened, 57, inheritable=True)
    os.close(opened)
    try:
        assert os.get_inheritable(fd)
        results = probe("descriptors", pass_fds=(fd,))
        listing = sandbox("sh", "-c", "ls /proc/self/fd; ls -l /proc/self/fd", pass_fds=(fd,))
    finally:
        os.close(fd)
    fds = results["fds"]
    assert sorted(fds) == ["0", "1", "2", "3"], fds
    for std in ("0", "1", "2"):
        assert re.fullmatch(r"ok pipe:\[\d+\]", fds[std]), fds
    assert re.fullmatch(r"ok /proc/\d+/fd", fds["3"]), "3 is the probe's own listing of /proc/self/fd"
    assert listing.stdout.split("\n")[:4] == ["0", "1", "2", "3"], shown(listing)
    assert "leaked-descriptor" not in listing.stdout and "57" not in listing.stdout.split(), shown(listing)


# ---------------------------------------------------------------------------
# What runs leave behind


def mount_count() -> int:
    return len(Path("/proc/self/mountinfo").read_text().splitlines())


def sandbox_groups() -> set[Path]:
    """The per-sandbox control groups (`palisade/s<pid>`) on cgroup v1 or v2."""
    root = Path("/sys/fs/cgroup")
    parents = [*root.glob("*/palisade"), root / "palisade"]
    return {child for parent in parents if parent.is_dir() for child in parent.iterdir() if child.is_dir()}


def shmem_kib() -> int:
    found = re.search(r"^Shmem:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    assert found
    return int(found.group(1))


def namespaces() -> set[str]:
    """Every namespace some host process is in (a namespace with no process and no mount is gone)."""
    found = set()
    for ns in Path("/proc").glob("[0-9]*/ns/*"):
        try:
            found.add(os.readlink(ns))
        except OSError:  # the process ended while we looked
            pass
    return found


def test_a_thousand_runs_leave_nothing_behind():
    """1,000 runs of /bin/true (each writing to its /tmp) leave no process, no mount, no namespace, no control
    group and no tmpfs memory behind on the host."""
    seconds = marker()  # /bin/true ignores its argument; it tells these runs' processes apart
    before_groups, before_mounts, before_shmem = sandbox_groups(), mount_count(), shmem_kib()
    before_namespaces = namespaces()
    before_supervisors = set(host_processes(supervisor_bin(), SUPERVISOR_ARG))
    # One shell runs the CLI 1,000 times: the sandboxes' own cost, not Python's, sets the pace.
    script = (
        'for run in $(seq 1000); do '
        '"$0" sandbox run -- sh -c "head -c 65536 /dev/urandom > /tmp/f && exec /bin/true $1" '
        '|| { echo "run $run: exit $?"; exit 1; }; done'
    )
    done = subprocess.run(["sh", "-c", script, palisade_bin(), seconds], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, shown(done)
    assert gone_within(2, "/bin/true", seconds) == []
    assert set(gone_within(2, supervisor_bin(), SUPERVISOR_ARG)) <= before_supervisors, "no supervisor is left"
    assert mount_count() == before_mounts, "no mount is left in the host's namespace"
    assert sandbox_groups() <= before_groups, sorted(map(str, sandbox_groups() - before_groups))
    # Other work on the machine may start and end processes meanwhile; none of the 1,000 sandboxes'
    # five namespaces each may be among what is left.
    left = namespaces() - before_namespaces
    assert len(left) < 20, sorted(left)
    grown = shmem_kib() - before_shmem
    assert grown < 10 * 1024, f"Shmem grew by {grown} KiB: the sandboxes' tmpfs memory was not returned"


def sandbox_chain(cli: subprocess.Popen, seconds: str) -> tuple[int, int]:
    """Waits for the CLI's payload; returns its zygote (the CLI's child, the palisade binary executed once)
    and the supervisor that zygote forked for this sandbox."""
    deadline = time.monotonic() + 20
    while not host_processes("sleep", seconds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes("sleep", seconds), "the payload started"
    helpers = [int(line.split(":")[0]) for line in host_processes(supervisor_bin(), SUPERVISOR_ARG)]
    zygotes = [pid for pid in helpers if parent_of(pid) == cli.pid]
    assert len(zygotes) == 1, f"the CLI ({cli.pid}) started one zygote: {helpers}"
    supervisors = [pid for pid in helpers if parent_of(pid) == zygotes[0]]
    assert len(supervisors) == 1, f"the zygote ({zygotes[0]}) forked one supervisor: {helpers}"
    return zygotes[0], supervisors[0]


def test_killing_the_supervisor_kills_the_sandbox():
    """SIGKILL to a sandbox's supervisor mid-run ends its payload within 2 s, and the CLI says the run
    failed; SIGKILL to the CLI ends its zygote, supervisor and payload. The control groups a killed
    supervisor could not remove are swept by the next start."""
    seconds = marker()
    cli = subprocess.Popen([palisade_bin(), "sandbox", "run", "--", "sleep", seconds],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _zygote, supervisor = sandbox_chain(cli, seconds)
        os.kill(supervisor, signal.SIGKILL)
        assert gone_within(2, "sleep", seconds) == [], "the payload outlived its supervisor"
        _, stderr = cli.communicate(timeout=20)
        assert cli.returncode != 0, stderr
    finally:
        cli.kill()
        cli.wait()

    seconds = marker()
    cli = subprocess.Popen([palisade_bin(), "sandbox", "run", "--", "sleep", seconds],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        zygote, second = sandbox_chain(cli, seconds)
    finally:
        cli.kill()
        cli.wait()
    assert gone_within(2, "sleep", seconds) == [], "the payload outlived the CLI"
    left = gone_within(2, supervisor_bin(), SUPERVISOR_ARG)
    assert not [line for line in left if line.startswith((f"{zygote}:", f"{second}:"))], left
    after = sandbox("true")
    assert after.returncode == 0, shown(after)
    groups = [group for group in sandbox_groups() if group.name in (f"s{supervisor}", f"s{second}")]
    assert not groups, "swept at the next start"


# ---------------------------------------------------------------------------
# Unprivileged: user namespaces, no cgroups


class Unprivileged:
    """The palisade binary, copied where `nobody` can run it, and how to run as `nobody`."""

    prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]

    def __init__(self, home: Path) -> None:
        self.home = home
        self.binary = str(home / "palisade")
        self.config = home / "sandbox.toml"


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[Unprivileged]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("becoming `nobody` needs root and setpriv")
    home = Path(tempfile.mkdtemp(prefix="palisade-sandbox-"))
    try:
        home.chmod(0o755)
        user = Unprivileged(home)
        shutil.copy(palisade_bin(), user.binary)
        Path(user.binary).chmod(0o755)
        user.config.write_text(TIGHT)
        user.config.chmod(0o644)
        yield user
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_unprivileged_runs_refuse_without_the_degraded_mode(unprivileged):
    """As a user that cannot create cgroups, `sandbox check` exits 1 naming cgroups and `no-cgroups`, and
    `sandbox run` refuses, naming `--degraded no-cgroups`; with it, check passes as degraded."""
    check = subprocess.run([*unprivileged.prefix, unprivileged.binary, "sandbox", "check"],
                           capture_output=True, text=True, timeout=30, cwd=unprivileged.home)
    assert check.returncode == 1, shown(check)
    assert re.search(r"^\s+MISSING\s+cgroups\s+.*`no-cgroups`", check.stdout, re.M), shown(check)
    assert re.search(r"^\s+ok\s+user namespaces", check.stdout, re.M), shown(check)
    refused = sandbox("id", user=unprivileged)
    assert refused.returncode == 1, shown(refused)
    assert "--degraded no-cgroups" in refused.stderr, shown(refused)
    assert "cannot create control groups" in refused.stderr, shown(refused)
    accepted = subprocess.run(
        [*unprivileged.prefix, unprivileged.binary, "sandbox", "check", "--degraded", "no-cgroups"],
        capture_output=True, text=True, timeout=30, cwd=unprivileged.home,
    )
    assert accepted.returncode == 0 and "runs DEGRADED: no-cgroups" in accepted.stdout, shown(accepted)


def test_unprivileged_degraded_runs_stay_confined(unprivileged):
    """With `--degraded no-cgroups` the payload is uid 1000 mapped to `nobody` in a user namespace, with
    no capabilities, a read-only root, no network and the same seccomp filter."""
    done = sandbox("sh", "-c", "id -u; cat /proc/self/uid_map; echo x > /etc/x", user=unprivileged,
                   degraded=("no-cgroups",))
    lines = done.stdout.splitlines()
    assert lines[0] == "1000" and lines[1].split() == ["1000", "65534", "1"], shown(done)
    assert "cannot create /etc/x: Read-only file system" in done.stderr, shown(done)
    syscalls = probe("syscalls", user=unprivileged, degraded=("no-cgroups",))
    assert_filtered(syscalls)
    network = probe("network", "9", "9", "9", user=unprivileged, degraded=("no-cgroups",))
    assert network["tcp 127.0.0.1"] == tcp_refusal() and network["interfaces"] == ["lo"], network


def test_unprivileged_degraded_runs_keep_memory_and_time_limits(unprivileged):
    """Without cgroups, RLIMIT_AS bounds memory (MemoryError under 64 MiB) and the deadline still ends
    the run with exit 124 and its reason."""
    memory = sandbox("python3", "-c", "x = b'\\1' * (200 * 1024 * 1024)", config=unprivileged.config,
                     profile="tight", user=unprivileged, degraded=("no-cgroups",))
    assert memory.returncode == 1 and "MemoryError" in memory.stderr, shown(memory)
    late = sandbox("sleep", "30", config=unprivileged.config, profile="tight", user=unprivileged,
                   degraded=("no-cgroups",))
    assert late.returncode == 124, shown(late)
    assert reason(late) == "palisade: sandbox: timed out after 3s", shown(late)


def test_unprivileged_degraded_runs_still_bound_a_fork_bomb(unprivileged):
    """Without the pids controller a fork bomb must still stop at the profile's 32 processes with EAGAIN
    (RLIMIT_NPROC is what is left). The probe stops itself at 200 children, so the host is never at risk."""
    results = probe("fork-bomb", "200", config=unprivileged.config, profile="tight", user=unprivileged,
                    degraded=("no-cgroups",))
    assert results["stopped by"] == "EAGAIN: Resource temporarily unavailable", results
    assert results["forked"] < TIGHT_PIDS, results


def test_unprivileged_degraded_runs_start_node(unprivileged):
    """V8 reserves about 1 GiB of address space: the node and upstream profiles keep RLIMIT_AS at 4 GiB or more
    without cgroups, so Node starts as a user that cannot create cgroups."""
    done = sandbox("node", "-e", "console.log('node ' + process.getuid())", profile="node", user=unprivileged,
                   degraded=("no-cgroups",))
    assert done.returncode == 0 and done.stdout == "node 1000\n", shown(done)


def test_unprivileged_palisade_mcp_runs_its_server_sandboxed_with_the_named_degraded_mode(unprivileged):
    """A laptop user's `palisade mcp`: refused with the flag to add, then, with `--degraded no-cgroups`,
    the hostile server runs sandboxed in a user namespace and finds nothing of the host."""
    fixtures = unprivileged.home / "fixtures"
    fixtures.mkdir(exist_ok=True)
    for name in ("escaping_server.py", "minimal_server.py"):
        shutil.copy(FIXTURES / name, fixtures / name)
    fixtures.chmod(0o755)
    secret = unprivileged.home / "secret.txt"
    secret.write_text("host secret 91ab")
    secret.chmod(0o644)  # nobody could read it unsandboxed
    data = unprivileged.home / "data"
    data.mkdir(exist_ok=True)
    os.chown(data, 65534, 65534)
    config = unprivileged.home / "mcp.toml"
    config.write_text(f'data_dir = "{data}"\n[pipeline]\npass_through = {json.dumps(PASS_THROUGH)}\n')
    config.chmod(0o644)
    server = ["--bind-ro", str(fixtures), "--", "python3", str(fixtures / "escaping_server.py"), str(secret), "9"]
    base = [*unprivileged.prefix, unprivileged.binary, "mcp", "--config", str(config)]
    refused = subprocess.run([*base, *server], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                             cwd=unprivileged.home)
    assert refused.returncode != 0, shown(refused)
    assert "`no-cgroups`" in refused.stderr and "--degraded no-cgroups" in refused.stderr, shown(refused)
    peer = StdioPeer([*base, "--degraded", "no-cgroups", *server], log_dir=unprivileged.home / "logs", name="mcp")
    try:
        peer.initialize()
        response = peer.request("tools/call", {"name": "escape", "arguments": {}})
    finally:
        peer.close()
    assert "result" in response, (response, peer.stderr())
    found = json.loads(response["result"]["content"][0]["text"])
    assert found["uid"] == "ok: 1000", found
    assert found["read_secret_file"].startswith("FileNotFoundError"), found
    assert "Read-only file system" in found["write_etc"], found
    assert "degraded mode `no-cgroups`" in peer.stderr(), peer.stderr()
