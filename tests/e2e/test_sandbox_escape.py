"""The sandbox escape suite: `palisade sandbox run` against each way out a payload could try, with the reason it fails asserted.

Each test runs a real payload (shell, Python with ctypes for raw system
calls, a C program for the 32-bit path) in a fresh sandbox and checks what
stopped it: the errno, the signal, or palisade's reason line. The
unprivileged cases run the same binary as `nobody`, in a user namespace.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import palisade_bin

TIGHT = """
[sandbox.profiles.tight]
base = "python"
memory = "64MiB"
cpus = 0.5
pids = 32
timeout = "3s"
tmp_size = "1MiB"
file_size = "256KiB"
max_output = "64KiB"
"""


def sandbox(*command: str, profile: str | None = None, config: Path | None = None, stdin: str | None = None,
            flags: list[str] | None = None, env: dict[str, str] | None = None, timeout: float = 60,
            prefix: list[str] | None = None, binary: str | None = None, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    argv = [*(prefix or []), binary or palisade_bin(), "sandbox", "run"]
    if config is not None:
        argv += ["--config", str(config)]
    if profile is not None:
        argv += ["--profile", profile]
    argv += [*(flags or []), "--", *command]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=env, pass_fds=pass_fds)


@pytest.fixture
def tight(tmp_path) -> Path:
    path = tmp_path / "tight.toml"
    path.write_text(TIGHT)
    return path


def python(code: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return sandbox("python3", "-c", code, profile=kwargs.pop("profile", "python"), **kwargs)


SYSCALL = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return os.strerror(ctypes.get_errno()) if r < 0 else f"returned {r}"
"""


def test_check_reports_each_feature():
    done = subprocess.run([palisade_bin(), "sandbox", "check"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for feature in ("user namespaces", "seccomp", "landlock", "cgroups", "tmpfs"):
        assert re.search(rf"ok\s+{feature}", done.stdout), done.stdout


def test_common_workloads_run_in_the_built_in_profiles():
    py = python("import json, sqlite3, subprocess, threading\n"
                "c = sqlite3.connect('/tmp/db'); c.execute('create table t(a)'); c.execute('insert into t values (1)')\n"
                "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
                "print(json.dumps([c.execute('select a from t').fetchone()[0], subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout]))")
    assert py.returncode == 0, py.stderr
    assert py.stdout.strip() == '[1, "child\\n"]'
    shell = sandbox("sh", "-c", "seq 1000 | sort -rn | head -3 | tr '\\n' ,")
    assert (shell.returncode, shell.stdout) == (0, "1000,999,998,")
    node = sandbox("node", "-e", "const fs = require('fs'); fs.writeFileSync('/tmp/a', 'n');"
                   "console.log(require('child_process').execSync('cat /tmp/a').toString())", profile="node")
    assert (node.returncode, node.stdout.strip()) == (0, "n"), node.stderr


def test_writes_outside_tmp_fail_on_a_read_only_root():
    done = sandbox("sh", "-c", "echo x > /escaped; for p in /etc /usr /dev /usr/lib; do echo x > $p/escaped; done; "
                   "echo x > /proc/sys/kernel/hostname; echo x > /tmp/ok && echo tmp-ok")
    assert done.stdout.strip() == "tmp-ok"
    for path in ("/escaped", "/etc/escaped", "/usr/escaped", "/dev/escaped", "/usr/lib/escaped"):
        assert re.search(rf"{re.escape(path)}: (Read-only file system|Permission denied)", done.stderr), (path, done.stderr)
    assert re.search(r"hostname: (Read-only file system|Permission denied)", done.stderr), done.stderr


def test_tmp_is_capped_and_files_are_limited(tight, tmp_path):
    full = sandbox("sh", "-c", "for i in 1 2 3 4 5 6; do head -c 200000 /dev/zero > /tmp/f$i || exit 9; done",
                   config=tight, profile="tight")
    assert full.returncode == 9 and "No space left on device" in full.stderr, full
    big = sandbox("sh", "-c", "head -c 300000 /dev/zero > /tmp/big", config=tight, profile="tight")
    assert big.returncode != 0 and "File too large" in big.stderr, big


def test_no_network_of_any_kind():
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen()
    port = host.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(1)
    code = f"""
import socket
def attempt(f):
    try:
        return f"ok {{f()}}"
    except OSError as e:
        return type(e).__name__ + ": " + (e.strerror or str(e))
print("tcp", attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)))
print("tcp6", attempt(lambda: socket.create_connection(("::1", {port}), timeout=2)))
print("udp", attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {udp.getsockname()[1]}))))
print("dns", attempt(lambda: socket.getaddrinfo("example.com", 80)))
print("outside", attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)))
print("interfaces", sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]))
"""
    done = python(code)
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    for name in ("tcp", "tcp6", "dns", "outside"):
        assert not lines[name].startswith("ok"), (name, lines[name])
    assert lines["interfaces"] == "['lo']"
    with pytest.raises(socket.timeout):
        udp.recvfrom(10)  # whatever the sandbox's sendto said, nothing reached the host
    bash = sandbox("bash", "-c", f"echo x > /dev/tcp/127.0.0.1/{port}")
    assert bash.returncode != 0
    host.settimeout(0.2)
    with pytest.raises(socket.timeout):
        host.accept()
    host.close()
    udp.close()


def test_a_host_abstract_unix_socket_is_out_of_reach():
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0palisade-escape-{os.getpid()}"
    server.bind(name)
    server.listen()
    done = python(f"import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({name!r})\n    print('connected')\n"
                  "except OSError as e:\n    print(type(e).__name__)")
    server.close()
    assert done.stdout.strip() in ("ConnectionRefusedError", "PermissionError", "FileNotFoundError"), done


def test_a_fork_bomb_hits_the_pids_limit(tight):
    code = ("import os, errno\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError as e:\n"
            "        print('stopped', n, errno.errorcode[e.errno]); break\n    if pid == 0:\n        import time; time.sleep(10); os._exit(0)\n    n += 1")
    started = time.monotonic()
    done = python(code, config=tight, profile="tight")
    words = done.stdout.split()
    assert words[0] == "stopped" and words[2] == "EAGAIN", done
    assert int(words[1]) < 32
    assert time.monotonic() - started < 20, "the host stayed responsive and the run ended"


def test_memory_past_the_limit_is_reported_as_out_of_memory(tight):
    done = python("x = bytearray(200 * 1024 * 1024)\nprint('allocated')", config=tight, profile="tight")
    assert done.returncode == 137, done
    assert "allocated" not in done.stdout
    assert done.stderr.strip().endswith("palisade: sandbox: out of memory (limit 64 MiB)"), done.stderr


def test_cpu_is_held_to_its_quota(tight):
    code = ("import os, time\n"
            "def spin():\n    end = time.monotonic() + 1.5\n    while time.monotonic() < end: pass\n"
            "start = time.monotonic()\npids = [os.fork() for _ in range(2)]\n"
            "if 0 in pids: spin(); os._exit(0)\n"
            "for p in pids: os.waitpid(p, 0)\n"
            "t = os.times()\nprint((t.children_user + t.children_system) / (time.monotonic() - start))")
    done = python(code, config=tight, profile="tight")
    assert done.returncode == 0, done
    assert float(done.stdout) < 0.75, f"two busy processes used {done.stdout.strip()} CPUs under a 0.5 quota"


def test_the_deadline_kills_the_whole_tree(tight):
    started = time.monotonic()
    done = sandbox("sh", "-c", "sleep 100 & sleep 100", config=tight, profile="tight")
    assert done.returncode == 124, done
    assert done.stderr.strip().endswith("palisade: sandbox: timed out after 3s")
    assert time.monotonic() - started < 15


def test_no_privilege_can_be_gained():
    done = sandbox("sh", "-c", "id -u; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
                   "cp /bin/sh /tmp/sh && chmod u+s /tmp/sh && /tmp/sh -c 'id -u'; su -c id root; echo su=$?")
    lines = done.stdout.split("\n")
    assert lines[0] == "1000"
    status = dict(re.findall(r"^(\w+):\s+(\S+)", done.stdout, re.M))
    assert status == {"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
                      "NoNewPrivs": "1", "Seccomp": "2"}, done.stdout
    assert lines[6] == "1000", "a setuid copy in /tmp (nosuid) runs as the sandbox's uid"
    assert "su=0" not in done.stdout


DENIED = {
    "ptrace": (101, 16, 1), "process_vm_readv": (310, 1, 0, 1, 0, 1, 0), "pidfd_getfd": (438, 0, 0, 0),
    "mount": (165, 0, 0, 0, 0, 0), "pivot_root": (155, 0, 0), "chroot": (161, 0), "unshare": (272, 0x10000000),
    "setns": (308, 0, 0), "keyctl": (250, 0), "bpf": (321, 0, 0, 0), "perf_event_open": (298, 0, 0, 0, 0, 0),
    "io_uring_setup": (425, 1, 0), "userfaultfd": (323, 0), "init_module": (175, 0, 0, 0), "finit_module": (313, 0, 0, 0),
    "setuid": (105, 0), "kexec_load": (246, 0, 0, 0, 0),
}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="system call numbers are x86-64's")
def test_dangerous_system_calls_are_refused():
    code = SYSCALL + "\n".join(f"print({name!r}, call({', '.join(map(str, args))}))" for name, args in DENIED.items())
    code += "\nprint('clone3', call(435, 0, 0))\nimport fcntl, termios\n"
    code += "try:\n    fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('TIOCSTI ok')\nexcept OSError as e:\n    print('TIOCSTI', e.strerror)\n"
    done = python(code)
    results = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    for name in DENIED:
        assert results[name] == "Operation not permitted", (name, results[name])
    assert results["clone3"] == "Function not implemented", "clone3 answers ENOSYS, so libc falls back to clone"
    assert results["TIOCSTI"] == "Operation not permitted"


@pytest.mark.skipif(shutil.which("gcc") is None or os.uname().machine != "x86_64", reason="needs gcc on x86-64")
def test_the_32_bit_system_call_path_kills_the_process(tmp_path):
    source = tmp_path / "int80.c"
    source.write_text("int main(void) { long r; __asm__ volatile (\"int $0x80\" : \"=a\"(r) : \"a\"(20)); return r > 0 ? 0 : 3; }\n")
    subprocess.run(["gcc", "-static", "-O0", "-o", str(tmp_path / "int80"), str(source)], check=True, timeout=60)
    tmp_path.chmod(0o755)  # the sandbox's uid must be able to enter the bound directory
    done = sandbox("/probe/int80", flags=["--bind-ro", f"{tmp_path}:/probe"])
    assert done.returncode == 128 + 31, done
    assert done.stderr.strip().endswith("killed by signal 31 (SIGSYS)")


def test_host_secrets_data_and_environment_are_invisible(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.txt").write_text("host data 91ac")
    env = {**os.environ, "PALISADE_TEST_CANARY": "canary-5e2a"}
    done = sandbox("sh", "-c", f"cat /etc/shadow; ls /root /home; cat {data}/secret.txt; env; cat /proc/1/environ; "
                   "ls /; cat /etc/passwd", env=env)
    for missing in ("/etc/shadow", "/root", "/home", f"{data}/secret.txt"):
        assert re.search(rf"{re.escape(missing)}'?: No such file or directory", done.stderr), (missing, done.stderr)
    assert "canary-5e2a" not in done.stdout + done.stderr
    assert "host data 91ac" not in done.stdout
    assert "root:x:0:0" in done.stdout and "sandbox:x:1000:1000" in done.stdout
    assert "PALISADE" not in done.stdout


def test_host_processes_can_be_neither_seen_nor_signalled():
    done = sandbox("sh", "-c", f"ls /proc | grep -E '^[0-9]+$' | wc -l; kill -0 {os.getpid()}; echo kill=$?")
    assert int(done.stdout.split()[0]) <= 6, "init, sh, ls, grep, wc and no host process"
    assert "kill=1" in done.stdout and "No such process" in done.stderr


def host_processes(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_daemons_do_not_survive_the_run():
    done = sandbox("sh", "-c", "setsid sleep 61.31 & (sleep 61.32 &) ; nohup sleep 61.33 >/dev/null 2>&1 & echo left")
    assert done.stdout.strip() == "left"
    time.sleep(0.3)
    assert host_processes("sleep 61.3") == []


def test_inherited_descriptors_are_not_passed_in(tmp_path):
    leaked = tmp_path / "leaked"
    leaked.write_text("descriptor")
    fd = os.open(leaked, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        done = sandbox("sh", "-c", "ls /proc/self/fd", pass_fds=(fd,))
    finally:
        os.close(fd)
    assert sorted(done.stdout.split()) == ["0", "1", "2", "3"], done.stdout  # 3 is ls's own directory


def mounts() -> int:
    return len(Path("/proc/self/mountinfo").read_text().splitlines())


def sandbox_cgroups() -> list[str]:
    found = []
    for parent in Path("/sys/fs/cgroup").glob("**/palisade"):
        found += [p.name for p in parent.iterdir() if p.is_dir() and p.name.startswith("s")]
    return found


def shmem_kib() -> int:
    return int(re.search(r"^Shmem:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))


def test_nothing_is_left_after_many_runs():
    before = (mounts(), len(os.listdir("/proc")), shmem_kib())
    for _ in range(200):
        done = sandbox("sh", "-c", "echo x > /tmp/f; true")
        assert done.returncode == 0, done
    time.sleep(0.5)
    assert mounts() == before[0], "no mount is left in the host's namespace"
    assert len(os.listdir("/proc")) <= before[1] + 5, "no process is left"
    assert sandbox_cgroups() == [] or all(not Path(p).exists() for p in sandbox_cgroups()), sandbox_cgroups()
    assert shmem_kib() - before[2] < 10 * 1024, "the tmpfs memory is returned"


def test_killing_the_supervisor_kills_the_sandbox():
    proc = subprocess.Popen([palisade_bin(), "sandbox", "run", "--", "sleep", "62.71"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not host_processes("sleep 62.71") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes("sleep 62.71"), "the payload started"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 2
    while host_processes("sleep 62.71") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes("sleep 62.71") == []


@pytest.fixture
def unprivileged(tmp_path) -> tuple[list[str], str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to become nobody")
    where = Path("/tmp") / f"palisade-unprivileged-{os.getpid()}"
    where.mkdir(exist_ok=True)
    where.chmod(0o755)
    binary = where / "palisade"
    shutil.copy(palisade_bin(), binary)
    binary.chmod(0o755)
    yield ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"], str(binary)
    shutil.rmtree(where, ignore_errors=True)


def test_unprivileged_runs_need_the_named_degraded_mode(unprivileged):
    prefix, binary = unprivileged
    refused = sandbox("id", prefix=prefix, binary=binary)
    assert refused.returncode == 1 and "--degraded no-cgroups" in refused.stderr, refused
    done = sandbox("sh", "-c", "id -u; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; echo x > /etc/x",
                   prefix=prefix, binary=binary, flags=["--degraded", "no-cgroups"])
    assert done.stdout.split("\n")[:3] == ["1000", "CapEff:\t0000000000000000", "NoNewPrivs:\t1"], done
    assert "Read-only file system" in done.stderr
    denied = sandbox("python3", "-c", SYSCALL + "print(call(272, 0x10000000), call(165, 0, 0, 0, 0, 0))",
                     prefix=prefix, binary=binary, flags=["--degraded", "no-cgroups"], profile="python")
    assert denied.stdout.strip() == "Operation not permitted Operation not permitted", denied
    capped = sandbox("python3", "-c", "x = bytearray(400 * 1024 * 1024)", prefix=prefix, binary=binary,
                     flags=["--degraded", "no-cgroups", "--memory", "64MiB"], profile="python")
    assert capped.returncode != 0 and "MemoryError" in capped.stderr, "RLIMIT_AS bounds memory without cgroups"
