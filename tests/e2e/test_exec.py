"""Layer 3 through the gateway: the built-in `exec` tool on `palisade serve`'s embedded default, and stdio upstreams that run sandboxed.

A new user's first tool is `exec`: the official Python SDK calls it through
`palisade serve` with no config at all. Stdio upstreams run sandboxed by
default (profile `upstream`) and see only what the config binds, however
hostile they are; `sandbox = "off"` / `--no-sandbox` is the reported exception.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from support import FIXTURES, StdioPeer, audit_lines, filesystem_stdio, palisade_bin, read_events, write_config

CLIENT_SECONDS = 90


def run(body, *args: Any) -> Any:
    async def bounded() -> Any:
        with anyio.fail_after(CLIENT_SECONDS):
            return await body(*args)

    return anyio.run(bounded)


def embedded_serve(launcher, tmp_path: Path):
    """`palisade serve` with no config: the embedded default, its state under a fresh XDG_DATA_HOME."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "PALISADE_TEST_CANARY": "canary-7d1e0"}
    proc = launcher.process([palisade_bin(), "serve", "--listen", "127.0.0.1:0"], what="serve-embedded", env=env)
    found = proc.wait_for(r"listening on http://127\.0\.0\.1:(\d+)/mcp")
    return f"http://127.0.0.1:{found.group(1)}/mcp", tmp_path / "xdg" / "palisade" / "audit.jsonl"


def test_the_python_sdk_runs_code_through_exec_on_the_embedded_default(launcher, tmp_path):
    url, audit = embedded_serve(launcher, tmp_path)

    async def session() -> tuple[list[str], dict[str, Any]]:
        async with Client(url) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            results = {}
            results["python"] = await client.call_tool("exec", {
                "language": "python",
                "code": "import sys, json, sqlite3\nc = sqlite3.connect('/tmp/db')\nc.execute('create table t(a)')\n"
                        "print(json.dumps({'sum': sum(range(10)), 'stdin': sys.stdin.read(), 'file': open('data.txt').read()}))",
                "stdin": "from stdin",
                "files": {"data.txt": "from a file"},
            })
            results["shell"] = await client.call_tool("exec", {
                "language": "shell", "code": "seq 1000 | sort -rn | head -3 | tr '\\n' ' '; id -u",
            })
            results["node"] = await client.call_tool("exec", {
                "language": "node", "code": "const fs = require('fs'); fs.writeFileSync('/tmp/n', 'x'); console.log(fs.readFileSync('/tmp/n', 'utf8') + 1)",
            })
            results["hostile"] = await client.call_tool("exec", {
                "language": "python",
                "code": "import os, socket\nout = []\n"
                        "for path in ('/etc/shadow', '/root', '/home'):\n"
                        "    out.append(os.path.exists(path))\n"
                        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    out.append('connected')\n"
                        "except OSError as e:\n    out.append(type(e).__name__)\n"
                        "out.append(os.environ.get('PALISADE_TEST_CANARY'))\nprint(out)",
            })
            results["timeout"] = await client.call_tool("exec", {"language": "shell", "code": "echo started; exec sleep 600"})
            return names, results

    names, results = run(session)
    assert names == ["exec"], "the embedded default serves exactly one tool"
    python = results["python"]
    assert not python.is_error, python
    assert python.structured_content["exit_code"] == 0
    assert json.loads(python.structured_content["stdout"]) == {"sum": 45, "stdin": "from stdin", "file": "from a file"}
    assert results["shell"].structured_content["stdout"].split() == ["1000", "999", "998", "1000"]
    assert results["node"].structured_content["stdout"].strip() == "x1"
    hostile = results["hostile"].structured_content["stdout"].strip()
    assert hostile.startswith("[False, False, False, '") and hostile.endswith("', None]"), hostile
    assert "connected" not in hostile
    timed_out = results["timeout"]
    assert timed_out.is_error and timed_out.structured_content["exit_code"] is None
    assert timed_out.structured_content["ended"] == "timed out after 30s"
    assert timed_out.structured_content["stdout"] == "started\n"
    outcomes = read_events(audit, "call-outcome", 5, seconds=15)
    assert [(r["server"], r["name"], r["effect"]) for r in outcomes] == [("exec", "exec", "write")] * 5, (
        "every exec call is audited, as a write"
    )


def listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_hostile_sandboxed_upstream_finds_nothing_of_the_host(launcher, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret 4f1c")
    host_port = listener()
    upstream = {
        "command": "python3",
        "args": [str(FIXTURES / "escaping_server.py"), str(secret), str(host_port.getsockname()[1])],
        # No `sandbox` key: the default is the `upstream` profile.
        "bind_ro": [str(FIXTURES)],
        "env": {"PYTHONDONTWRITEBYTECODE": "1"},
    }
    gateway = launcher.gateway({"hostile": upstream}, env={**os.environ, "PALISADE_TEST_CANARY": "canary-7d1e0"})

    async def session() -> dict[str, str]:
        async with Client(gateway.url) as client:
            result = await client.call_tool("hostile__escape", {})
            return json.loads(result.content[0].text)

    found = run(session)
    host_port.close()
    assert found["uid"] == "ok: 1000"
    for attempt in ("read_secret_file", "read_shadow", "list_root_home"):
        assert found[attempt].startswith("FileNotFoundError"), (attempt, found[attempt])
    for attempt in ("write_etc", "write_usr", "write_root"):
        assert "Read-only file system" in found[attempt], (attempt, found[attempt])
    assert found["connect_host_loopback"].startswith(("ConnectionRefusedError", "PermissionError", "OSError")), found
    assert found["host_processes"] == "ok: None", "the sandbox sees only its own few processes"
    for attempt in ("ptrace_attach_1", "mount", "unshare_user"):
        assert "Operation not permitted" in found[attempt], (attempt, found[attempt])
    assert found["canary_env"].startswith("KeyError"), found["canary_env"]
    assert "host secret 4f1c" not in json.dumps(found)


def test_server_filesystem_runs_sandboxed_with_its_directory_bound(launcher, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("inside the bound directory")
    # The sandbox writes as uid 1000 (as root, a real uid of the host; unprivileged, the user's own).
    os.chown(shared, 1000, 1000)
    outside = tmp_path / "outside.txt"
    outside.write_text("not bound")
    upstream = filesystem_stdio(shared)  # sandboxed by default, `shared` bound writable
    gateway = launcher.gateway({"files": upstream})

    async def session() -> tuple[str, Any, Any]:
        async with Client(gateway.url) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            read_tool = next(n for n in ("files__read_text_file", "files__read_file") if n in names)
            inside = await client.call_tool(read_tool, {"path": str(shared / "note.txt")})
            written = await client.call_tool("files__write_file", {"path": str(shared / "new.txt"), "content": "made inside"})
            escaped = await client.call_tool(read_tool, {"path": str(outside)})
            return inside.content[0].text, written, escaped

    inside, written, escaped = run(session)
    assert inside == "inside the bound directory"
    assert not written.is_error and (shared / "new.txt").read_text() == "made inside"
    assert escaped.is_error, "a path outside the bound directory is refused"


def escape_through_palisade_mcp(tmp_path: Path, name: str, flags: list[str]) -> tuple[dict[str, str], str]:
    """The hostile server behind `palisade mcp FLAGS`: what its escape attempts found, and palisade's stderr."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret 4f1c")
    host_port = listener()
    data_dir = tmp_path / f"data-{name}"
    config = write_config(tmp_path / f"{name}.toml", data_dir=data_dir, upstreams={})
    argv = [palisade_bin(), "mcp", "--config", str(config), *flags, "--", "python3",
            str(FIXTURES / "escaping_server.py"), str(secret), str(host_port.getsockname()[1])]
    peer = StdioPeer(argv, log_dir=tmp_path / "logs", name=name)
    try:
        peer.initialize()
        response = peer.request("tools/call", {"name": "escape", "arguments": {}})
    finally:
        peer.close()
        host_port.close()
    assert "result" in response, (response, peer.stderr())
    return json.loads(response["result"]["content"][0]["text"]), peer.stderr()


def test_palisade_mcp_sandboxes_its_server_unless_told_not_to(tmp_path):
    found, stderr = escape_through_palisade_mcp(tmp_path, "default", ["--bind-ro", str(FIXTURES)])
    assert found["uid"] == "ok: 1000", found
    assert found["read_secret_file"].startswith("FileNotFoundError"), found
    assert "Read-only file system" in found["write_etc"], found
    assert "Operation not permitted" in found["unshare_user"], found
    assert "degraded" not in stderr, stderr
    records = audit_lines(tmp_path / "data-default" / "audit.jsonl")
    assert records and not [r for r in records if r.get("degraded")], records
    # The same server with --no-sandbox reaches the host: the check above can fail.
    found, stderr = escape_through_palisade_mcp(tmp_path, "unsandboxed", ["--no-sandbox"])
    assert found["read_secret_file"] == "ok: 'host secret 4f1c'", found
    assert "degraded: sandbox: upstream `escaping-server` runs as an ordinary child process" in stderr, stderr
    # Every record says so, not only the start record.
    records = audit_lines(tmp_path / "data-unsandboxed" / "audit.jsonl")
    events = {r["event"] for r in records}
    assert {"gateway-started", "session-opened", "call-intent", "call-outcome"} <= events, events
    for record in records:
        assert record.get("degraded") == [
            "sandbox: upstream `escaping-server` runs as an ordinary child process, not in a sandbox (`sandbox = \"off\"`)"
        ], record


def test_a_command_its_sandbox_would_not_show_is_refused_at_start_with_the_bind_to_add(tmp_path):
    home = tmp_path / "home" / "me" / "bin"
    home.mkdir(parents=True)
    server = home / "my-server"
    server.write_text("#!/bin/sh\nexit 0\n")
    server.chmod(0o755)
    config = write_config(tmp_path / "palisade.toml", data_dir=tmp_path / "data", upstreams={"mine": {"command": str(server)}})
    done = subprocess.run([palisade_bin(), "check", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done
    assert f"`upstreams.mine.command`: `{server}` cannot run in the sandbox profile `upstream`: it needs the host's `/tmp`" in done.stderr, done.stderr
    assert "add the directory to `bind_ro`" in done.stderr, done.stderr
    # palisade mcp says the same in its own words, before starting anything.
    done = subprocess.run([palisade_bin(), "mcp", "--", str(server)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert done.returncode != 0, done
    assert "bind the directory with `--bind-ro DIR`, or run the server unsandboxed with `--no-sandbox`" in done.stderr, done.stderr
    # Bound, it is found; marked off, it is reported as degraded.
    config = write_config(tmp_path / "bound.toml", data_dir=tmp_path / "data", upstreams={
        "mine": {"command": str(server), "bind_ro": [str(home)]},
        "plain": {"command": str(server), "sandbox": "off"},
    })
    done = subprocess.run([palisade_bin(), "check", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'sandbox = "upstream"' in done.stdout and f'bind_ro = ["{home}"]' in done.stdout, done.stdout
    degraded = [line for line in done.stderr.splitlines() if "degraded" in line]
    assert degraded == ["palisade: degraded: sandbox: upstream `plain` runs as an ordinary child process, not in a sandbox (`sandbox = \"off\"`)"], done.stderr
