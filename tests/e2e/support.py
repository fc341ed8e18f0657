"""Helpers for palisade's end-to-end tests: start real processes, write configs, speak raw MCP.

Nothing here builds anything or fakes a part: the gateway is the binary named by
PALISADE_BIN, the servers and clients are the published MCP packages installed
by scripts/test.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

E2E = Path(__file__).resolve().parent
REPO = E2E.parents[1]
FIXTURES = E2E / "fixtures"
MCP_PACKAGES = E2E / "node_modules" / "@modelcontextprotocol"
EVERYTHING_JS = MCP_PACKAGES / "server-everything" / "dist" / "index.js"
FILESYSTEM_JS = MCP_PACKAGES / "server-filesystem" / "dist" / "index.js"
CONFORMANCE_BIN = E2E / "node_modules" / ".bin" / "conformance"
TS_CLIENT = E2E / "ts_client.mjs"
LOOPBACK_ONLY = FIXTURES / "loopback_only.cjs"

# Every stage the gateway lets an operator pass through; the tests run them all
# that way, because a config must name its pass-through stages explicitly.
PASS_THROUGH = [
    "authorize",
    "limits",
    "outbound-filter",
    "approval",
    "inject-secrets",
    "redact",
    "inbound-filter",
]

# What each stage of a call that ran says it did, when every stage that can be
# is passed through: the pipeline's order, with `execute` allowing and `settle`
# passed through along with `limits`. A `call-outcome` record lists all of
# them; a `call-intent` record only those before `execute`.
COMPLETED_STAGES = [
    *[(stage, "pass-through") for stage in PASS_THROUGH[:5]],
    ("execute", "allow"),
    *[(stage, "pass-through") for stage in PASS_THROUGH[5:]],
    ("settle", "pass-through"),
]
INTENT_STAGES = COMPLETED_STAGES[:5]

# How long a process may take to say it is ready. A deadline for a hang, not a
# performance assertion.
STARTUP_SECONDS = 60
PROTOCOL_VERSION = "2025-06-18"


def palisade_bin() -> str:
    return os.path.abspath(os.environ["PALISADE_BIN"])


def node_bin() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("`node` is not on PATH")
    return node


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Processes


class ProcessDied(AssertionError):
    pass


class Proc:
    """A child process whose stdout and stderr go to files, so no pipe can fill and stall it."""

    def __init__(
        self,
        argv: list[str],
        *,
        log_dir: Path,
        name: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.argv = argv
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                # Its own process group, so teardown also ends the upstreams it spawned.
                start_new_session=True,
            )

    def output(self) -> str:
        out = self.stdout_path.read_text(errors="replace")
        err = self.stderr_path.read_text(errors="replace")
        return f"--- {self.name} stdout ---\n{out}\n--- {self.name} stderr ---\n{err}"

    def wait_for(self, pattern: str, *, stream: str = "stderr", seconds: float = STARTUP_SECONDS) -> re.Match[str]:
        path = self.stderr_path if stream == "stderr" else self.stdout_path
        regex = re.compile(pattern)
        deadline = time.monotonic() + seconds
        while True:
            found = regex.search(path.read_text(errors="replace"))
            if found:
                return found
            if self.popen.poll() is not None:
                raise ProcessDied(
                    f"{self.name} exited with {self.popen.returncode} before printing /{pattern}/\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not print /{pattern}/ within {seconds}s\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_group(self.popen)


def stop_group(popen: subprocess.Popen[Any]) -> None:
    """Ends a child started with start_new_session=True, and everything in its process group."""
    if popen.poll() is None:
        try:
            os.killpg(popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    # Children may outlive their parent in the group; make sure they do not.
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if popen.poll() is None:
        popen.wait(timeout=10)


# ---------------------------------------------------------------------------
# Configs


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def config_text(
    *,
    data_dir: Path,
    upstreams: dict[str, dict[str, Any]],
    server: dict[str, Any] | None = None,
    pass_through: list[str] | None = None,
    extra: str = "",
) -> str:
    """A config file; `extra` is TOML appended as written (tables such as `[auth]`)."""
    lines = [f"data_dir = {toml_value(str(data_dir))}", "", "[server]"]
    for key, value in {"listen": "127.0.0.1:0", **(server or {})}.items():
        lines.append(f"{key} = {toml_value(value)}")
    stages = PASS_THROUGH if pass_through is None else pass_through
    lines += ["", "[pipeline]", f"pass_through = {toml_value(stages)}"]
    for name, upstream in upstreams.items():
        lines += ["", f"[upstreams.{name}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in upstream.items()]
    return "\n".join(lines) + "\n" + extra


def write_config(path: Path, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(**kwargs))
    return path


# Stdio upstreams run sandboxed by default (the `upstream` profile: the
# host's system directories read-only, its own /tmp, no network); each helper
# binds, read-only, what its server is made of. A test that needs its server
# to touch the host (files under tmp_path, the host's process table) says
# `sandbox = "off"` with its reason.


def everything_stdio() -> dict[str, Any]:
    return {"command": "node", "args": [str(EVERYTHING_JS), "stdio"], "bind_ro": [str(E2E / "node_modules")]}


def filesystem_stdio(root: Path, *, bind: list[Path] | None = None) -> dict[str, Any]:
    """server-filesystem serving `root`, with `bind` (default: `root`) bound writable."""
    bound = bind if bind is not None else [root]
    for top in bound:
        writable_by_the_sandbox(top)
    return {
        "command": "node",
        "args": [str(FILESYSTEM_JS), str(root)],
        "bind_ro": [str(E2E / "node_modules")],
        "bind": [str(p) for p in bound],
    }


def writable_by_the_sandbox(top: Path) -> None:
    """Lets the sandbox's uid 1000 (as root, a real uid of the host) write in `top` and the directories under it."""
    for directory, _dirs, _files in os.walk(top):
        os.chmod(directory, 0o777)


def python_binds() -> list[str]:
    """What a fixture in the e2e venv needs: the fixtures, the venv, and the interpreter it links to."""
    return sorted({str(FIXTURES), sys.prefix, sys.base_prefix})


def python_stdio(script: str, *args: str, writes: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A fixture server; each path argument and each of `writes` that is a directory, else its directory, is bound writable (its logs)."""
    upstream: dict[str, Any] = {"command": sys.executable, "args": [str(FIXTURES / script), *args], "bind_ro": python_binds()}
    paths = [Path(a) for a in args if a.startswith("/")] + list(writes)
    logs = sorted({str(p if p.is_dir() else p.parent) for p in paths if p.is_dir() or p.parent.is_dir()})
    for directory in logs:
        os.chmod(directory, 0o777)
    if logs:
        upstream["bind"] = logs
    return upstream


def wrapped(upstream: dict[str, Any]) -> list[str]:
    """`palisade mcp`'s arguments for a stdio upstream: its sandbox flags, `--`, its command."""
    flags = [flag for path in upstream.get("bind_ro", []) for flag in ("--bind-ro", path)]
    flags += [flag for path in upstream.get("bind", []) for flag in ("--bind", path)]
    if upstream.get("sandbox") == "off":
        flags.append("--no-sandbox")
    return [*flags, "--", upstream["command"], *upstream.get("args", [])]


def unsandboxed(upstream: dict[str, Any]) -> dict[str, Any]:
    """`upstream` run as an ordinary child process (`sandbox = "off"`, reported as degraded)."""
    return {**{k: v for k, v in upstream.items() if k not in ("bind", "bind_ro")}, "sandbox": "off"}


# ---------------------------------------------------------------------------
# Running gateways and servers


@dataclass
class Gateway:
    proc: Proc
    port: int
    data_dir: Path
    config: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def audit_path(self) -> Path:
        return self.data_dir / "audit.jsonl"

    def audit_records(self, expected: int, *, seconds: float = 10) -> list[dict[str, Any]]:
        return read_audit(self.audit_path, expected, seconds=seconds)

    def events(self, event: str, expected: int, *, seconds: float = 10) -> list[dict[str, Any]]:
        return read_events(self.audit_path, event, expected, seconds=seconds)

    def call_outcomes(self, expected: int, *, seconds: float = 10) -> list[dict[str, Any]]:
        """The `call-outcome` records, once there are at least `expected` (or the deadline passes)."""
        return self.events("call-outcome", expected, seconds=seconds)


def audit_entries(path: Path) -> list[dict[str, Any]]:
    """Every complete entry of an audit log, parsed — `{"prev", "record", "seq"}` — in file order (a line still being written is left out)."""
    if not path.exists():
        return []
    text = path.read_text()
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def audit_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete record of an audit log, in file order (a line still being written is left out)."""
    return [entry["record"] for entry in audit_entries(path)]


def read_audit(path: Path, expected: int, *, seconds: float = 10) -> list[dict[str, Any]]:
    """An audit log's records of every kind, once at least `expected` lines are there (or the deadline passes)."""
    deadline = time.monotonic() + seconds
    while True:
        records = audit_lines(path)
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def read_events(path: Path, event: str, expected: int, *, seconds: float = 10) -> list[dict[str, Any]]:
    """An audit log's records of one `event` kind, once at least `expected` are there (or the deadline passes)."""
    deadline = time.monotonic() + seconds
    while True:
        records = [r for r in audit_lines(path) if r.get("event") == event]
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


@dataclass
class Launcher:
    """Starts processes in a directory and stops every one of them at teardown."""

    root: Path
    procs: list[Proc] = field(default_factory=list)
    counter: int = 0

    def _name(self, what: str) -> str:
        self.counter += 1
        return f"{self.counter:02d}-{what}"

    def process(
        self, argv: list[str], *, what: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Proc:
        proc = Proc(argv, log_dir=self.root / "logs", name=self._name(what), env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def gateway(
        self,
        upstreams: dict[str, dict[str, Any]],
        *,
        server: dict[str, Any] | None = None,
        data_dir: Path | None = None,
        pass_through: list[str] | None = None,
        extra: str = "",
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Gateway:
        """`palisade serve` on a free loopback port; `data_dir`, if given, is where its audit log goes.

        `config`, if given, is an existing file to serve (its `data_dir` must be `data_dir`)."""
        name = self._name("gateway")
        data_dir = data_dir or self.root / name / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        if config is None:
            config = write_config(
                self.root / name / "palisade.toml",
                data_dir=data_dir,
                upstreams=upstreams,
                server=server,
                pass_through=pass_through,
                extra=extra,
            )
        proc = self.process([palisade_bin(), "serve", "--config", str(config)], what="palisade-serve", env=env)
        found = proc.wait_for(r"listening on https?://127\.0\.0\.1:(\d+)/mcp")
        return Gateway(proc=proc, port=int(found.group(1)), data_dir=data_dir, config=config)

    def everything_http(self) -> str:
        """server-everything over Streamable HTTP on a free loopback port; returns its /mcp URL."""
        last: Exception | None = None
        for _ in range(3):  # a free port can be taken between choosing and binding it
            port = free_port()
            proc = self.process(
                [node_bin(), "--require", str(LOOPBACK_ONLY), str(EVERYTHING_JS), "streamableHttp"],
                what="everything-http",
                env={"PORT": str(port)},
            )
            try:
                proc.wait_for(rf"listening on port {port}")
                return f"http://127.0.0.1:{port}/mcp"
            except ProcessDied as died:
                last = died
        raise AssertionError(f"server-everything did not start over HTTP: {last}")

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


# ---------------------------------------------------------------------------
# Raw Streamable HTTP


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The JSON-RPC messages in the body, whether it is plain JSON or an SSE stream."""
        ctype = self.headers.get("content-type", "")
        text = self.body.decode()
        if ctype.startswith("text/event-stream"):
            out = []
            for event in re.split(r"\r?\n\r?\n", text):
                data = "\n".join(
                    line[5:].lstrip(" ") for line in re.split(r"\r?\n", event) if line.startswith("data:")
                )
                if data.strip():
                    out.append(json.loads(data))
            return out
        if not text.strip():
            return []
        parsed = json.loads(text)
        return parsed if isinstance(parsed, list) else [parsed]

    def response(self) -> dict[str, Any]:
        """The single JSON-RPC response (a message with a result or an error) in the body."""
        found = [m for m in self.messages if "result" in m or "error" in m]
        assert len(found) == 1, f"expected one JSON-RPC response, got HTTP {self.status}: {self.body!r}"
        return found[0]


def http_request(
    base: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    seconds: float = 60,
) -> HttpReply:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=seconds)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


MCP_POST_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


class RawSession:
    """An MCP session over Streamable HTTP, driven request by request with no SDK in between."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session_id: str | None = None
        self.protocol_version = PROTOCOL_VERSION
        self.next_id = 1

    def headers(self, *, session: bool = True, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(MCP_POST_HEADERS)
        if session and self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
            headers["MCP-Protocol-Version"] = self.protocol_version
        headers.update(extra or {})
        return headers

    def post(
        self, message: Any, *, session: bool = True, extra: dict[str, str] | None = None, raw: bytes | None = None
    ) -> HttpReply:
        body = raw if raw is not None else json.dumps(message).encode()
        return http_request(self.base, "POST", "/mcp", body=body, headers=self.headers(session=session, extra=extra))

    def raw_head(self, method: str, *, body: bytes = b"", accept: str | None = None) -> bytes:
        """The head of an HTTP/1.1 request on this session, for tests that drive the socket themselves."""
        extra = {"Host": self.base.removeprefix("http://")}
        if method == "POST":
            extra["Content-Length"] = str(len(body))
        if accept is not None:
            extra["Accept"] = accept
        headers = self.headers(extra=extra)
        if method != "POST":
            headers.pop("Content-Type", None)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return f"{method} /mcp HTTP/1.1\r\n{lines}\r\n".encode()

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = self.next_id
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        reply = self.post(message)
        assert reply.status == 200, f"{method}: HTTP {reply.status}: {reply.body!r}"
        response = reply.response()
        assert response["id"] == rid, response
        return response

    def initialize(self) -> dict[str, Any]:
        reply = self.post(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "palisade-e2e-raw", "version": "0.0.0"},
                },
            },
            session=False,
        )
        assert reply.status == 200, f"initialize: HTTP {reply.status}: {reply.body!r}"
        response = reply.response()
        assert "result" in response, response
        self.session_id = reply.headers.get("mcp-session-id")
        assert self.session_id, f"initialize answered without an Mcp-Session-Id header: {reply.headers}"
        self.protocol_version = response["result"]["protocolVersion"]
        done = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert done.status == 202, f"notifications/initialized: HTTP {done.status}: {done.body!r}"
        return response["result"]


# ---------------------------------------------------------------------------
# Raw stdio


class StdioPeer:
    """Talks newline-delimited JSON-RPC to a child's stdin and stdout, one line at a time."""

    def __init__(self, argv: list[str], *, log_dir: Path, name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"{name}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.next_id = 1
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def send_raw(self, data: bytes, *, seconds: float = 30) -> None:
        """Writes in a thread: a gateway that stops reading must fail the test, not hang it."""
        assert self.popen.stdin is not None
        stdin = self.popen.stdin
        errors: list[BaseException] = []

        def write() -> None:
            try:
                stdin.write(data)
                stdin.flush()
            except BaseException as e:  # reported to the test below
                errors.append(e)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(seconds)
        assert not writer.is_alive(), f"gateway did not read {len(data)} bytes of stdin within {seconds}s"
        assert not errors, f"writing to the gateway's stdin failed: {errors[0]!r}\n{self.stderr()}"

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def receive(self, wanted: Callable[[dict[str, Any]], bool], *, seconds: float = 30) -> dict[str, Any]:
        """The next message for which `wanted` holds; other messages (notifications) are passed over."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message within {seconds}s\n--- stderr ---\n{self.stderr()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"gateway closed stdout (exit {self.popen.poll()})\n--- stderr ---\n{self.stderr()}"
                )
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"gateway wrote a line that is not JSON to stdout: {line!r}") from None
            if wanted(message):
                return message

    def request(self, method: str, params: dict[str, Any] | None = None, *, seconds: float = 30) -> dict[str, Any]:
        rid = self.next_id
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.receive(lambda m: m.get("id") == rid and ("result" in m or "error" in m), seconds=seconds)

    def initialize(self) -> dict[str, Any]:
        response = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "palisade-e2e-stdio", "version": "0.0.0"},
            },
        )
        assert "result" in response, response
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return response["result"]

    def close(self) -> None:
        if self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        stop_group(self.popen)


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every living process under `pid`, with its command line: a sandbox's processes are host processes too."""
    found: list[tuple[int, str]] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except FileNotFoundError:
                continue
            for child in children:
                try:
                    with open(f"/proc/{child}/cmdline", "rb") as f:
                        cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                except FileNotFoundError:
                    continue
                if alive(child):
                    found.append((child, cmdline))
                queue.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state in /proc says it is gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:  # reaped between the two looks
        return False


def wait_for_text(path: Path, *, attempts: int = 50, pause: float = 0.1) -> str:
    """A file's text once it has some (or "" when it never does)."""
    return retry_until(
        lambda: path.read_text() if path.exists() else "",
        lambda text: text.strip() != "",
        attempts=attempts,
        pause=pause,
    )[-1]


def retry_until(attempt: Callable[[], Any], ok: Callable[[Any], bool], *, attempts: int, pause: float) -> list[Any]:
    """Calls `attempt` until `ok` holds for its result, at most `attempts` times; returns every result."""
    seen = []
    for _ in range(attempts):
        result = attempt()
        seen.append(result)
        if ok(result):
            return seen
        time.sleep(pause)
    return seen
