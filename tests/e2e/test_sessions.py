"""Session lifecycle over Streamable HTTP: one upstream process per session, ended with it, and a cap.

Most tests follow the upstream by the host pid it reports, so they run it
unsandboxed (a sandboxed server knows only its sandbox's pids); the session
logic is the same for both. The last tests follow sandboxed servers from the
host, as the gateway's descendants.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

from support import RawSession, alive, descendants, http_request, palisade_bin, python_stdio, unsandboxed, wrapped, write_config


def whoami(session: RawSession) -> int:
    response = session.request("tools/call", {"name": "p__whoami", "arguments": {}})
    return int(response["result"]["content"][0]["text"])


def test_each_session_has_its_own_upstream_and_delete_ends_it(launcher, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    gateway = launcher.gateway({"p": unsandboxed(python_stdio("pid_server.py", str(pids)))})
    first, second = RawSession(gateway.base), RawSession(gateway.base)
    first.initialize()
    second.initialize()
    a, b = whoami(first), whoami(second)
    assert a != b, "two sessions shared one upstream process"
    assert {int(p.name) for p in pids.iterdir()} == {a, b}

    reply = http_request(gateway.base, "DELETE", "/mcp", headers=first.headers())
    assert reply.status == 200, reply
    deadline = time.monotonic() + 10
    while alive(a) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(a), "the ended session's upstream process was left running"
    assert alive(b), "ending one session ended another's upstream"

    gone = first.post({"jsonrpc": "2.0", "id": 9, "method": "ping"})
    assert gone.status == 404, gone
    assert whoami(second) == b


INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}


def wait_until(check, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def test_at_the_cap_the_least_recently_used_idle_session_makes_room(launcher, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    gateway = launcher.gateway({"p": unsandboxed(python_stdio("pid_server.py", str(pids)))}, server={"max_sessions": 2})
    oldest, newer = RawSession(gateway.base), RawSession(gateway.base)
    oldest.initialize()
    first_pid = whoami(oldest)
    newer.initialize()
    whoami(newer)  # used after `oldest`: `oldest` is the least recently used
    extra = RawSession(gateway.base)
    extra.initialize()
    assert whoami(extra) > 0
    gone = oldest.post({"jsonrpc": "2.0", "id": 9, "method": "ping"})
    assert gone.status == 404, gone
    assert newer.request("ping")["result"] == {}
    assert wait_until(lambda: not alive(first_pid)), "the evicted session's upstream was left running"
    [closed] = gateway.events("session-closed", 1)
    assert closed["session"] == oldest.session_id and closed["reason"] == "evicted", closed


def test_at_the_cap_with_every_session_working_a_new_one_is_refused(launcher, tmp_path):
    cancellations = tmp_path / "cancellations.jsonl"
    gateway = launcher.gateway({"slow": python_stdio("hanging_server.py", str(cancellations))}, server={"max_sessions": 1})
    busy = RawSession(gateway.base)
    busy.initialize()
    call = threading.Thread(
        target=lambda: busy.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                  "params": {"name": "slow__hang", "arguments": {}}}),
        daemon=True,
    )
    call.start()
    gateway.events("call-intent", 1)  # written before the upstream hears of the call: it is in progress
    refused = RawSession(gateway.base).post(INITIALIZE, session=False)
    assert refused.status == 503, refused
    assert busy.request("ping")["result"] == {}, "the working session was evicted"


def test_sessions_start_only_the_upstreams_they_use(launcher, tmp_path):
    pids_a, pids_b = tmp_path / "a", tmp_path / "b"
    pids_a.mkdir()
    pids_b.mkdir()
    gateway = launcher.gateway({
        "a": unsandboxed(python_stdio("pid_server.py", str(pids_a))),
        "b": unsandboxed(python_stdio("pid_server.py", str(pids_b))),
    })
    first = RawSession(gateway.base)
    first.initialize()  # the first session meets every upstream: palisade learns what each offers
    assert wait_until(lambda: len(list(pids_a.iterdir())) == 1 and len(list(pids_b.iterdir())) == 1)
    second = RawSession(gateway.base)
    capabilities = second.initialize()["capabilities"]
    assert "tools" in capabilities, capabilities
    time.sleep(0.5)
    assert len(list(pids_a.iterdir())) == 1 and len(list(pids_b.iterdir())) == 1, "a new session started upstreams it did not use"
    response = second.request("tools/call", {"name": "a__whoami", "arguments": {}})
    assert "result" in response, response
    assert len(list(pids_a.iterdir())) == 2, "the upstream a session used did not start"
    assert len(list(pids_b.iterdir())) == 1, "an upstream the session did not use started"
    names = [t["name"] for t in second.request("tools/list")["result"]["tools"]]
    assert names == ["a__whoami", "b__whoami"], names


def test_a_killed_gateway_leaves_no_upstream_behind(launcher, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    gateway = launcher.gateway({"p": unsandboxed(python_stdio("pid_server.py", str(pids)))})
    session = RawSession(gateway.base)
    session.initialize()
    pid = whoami(session)
    gateway.proc.popen.kill()  # SIGKILL: palisade gets no chance to clean up
    gateway.proc.popen.wait(timeout=10)
    assert wait_until(lambda: not alive(pid)), "a SIGKILLed palisade left its upstream running"


def test_gateway_shutdown_leaves_no_upstream_behind(launcher, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    gateway = launcher.gateway({"p": unsandboxed(python_stdio("pid_server.py", str(pids)))})
    session = RawSession(gateway.base)
    session.initialize()
    pid = whoami(session)
    gateway.proc.popen.terminate()  # SIGTERM: a graceful shutdown
    gateway.proc.popen.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "palisade exited and left its upstream running"


def test_palisade_mcp_ends_its_upstream_when_the_client_leaves(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    # Host pids are what this test follows: the server runs unsandboxed.
    spec = unsandboxed(python_stdio("pid_server.py", str(pids)))
    # About the upstream's life, not authorization: the layer-1 stages pass through.
    config = write_config(tmp_path / "palisade.toml", data_dir=tmp_path / "palisade", upstreams={})
    proc = subprocess.Popen(
        [palisade_bin(), "mcp", "--config", str(config), *wrapped(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    )
    try:
        for message in (
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}},
        ):
            proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
        pid = int(answer["result"]["content"][0]["text"])
        proc.stdin.close()  # the client goes away
        assert proc.wait(timeout=10) == 0
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "palisade mcp exited and left its upstream running"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_shutdown_is_not_held_up_by_an_open_event_stream(launcher, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    gateway = launcher.gateway({"p": unsandboxed(python_stdio("pid_server.py", str(pids)))})
    session = RawSession(gateway.base)
    session.initialize()
    pid = whoami(session)
    head = session.raw_head("GET", accept="text/event-stream")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as stream:
        stream.sendall(head)
        assert stream.recv(4096).startswith(b"HTTP/1.1 200"), "the GET stream did not open"
        gateway.proc.popen.terminate()
        # The stream ends (palisade closes it) well before the bound.
        gateway.proc.popen.wait(timeout=20)
    assert not alive(pid)


def sandboxed_servers(gateway) -> list[int]:
    """The host pids of the sandboxed pid_server.py processes under `gateway`."""
    return [pid for pid, cmd in descendants(gateway.proc.popen.pid) if "pid_server.py" in cmd]


def test_sandboxed_upstreams_live_and_end_with_their_sessions(launcher, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    gateway = launcher.gateway({"p": python_stdio("pid_server.py", str(pids))})
    first, second = RawSession(gateway.base), RawSession(gateway.base)
    first.initialize()
    second.initialize()
    # Each is PID 2 or so of its own sandbox: the same number, two processes.
    whoami(first), whoami(second)
    assert len(list(pids.iterdir())) >= 1
    assert wait_until(lambda: len(sandboxed_servers(gateway)) == 2), sandboxed_servers(gateway)
    reply = http_request(gateway.base, "DELETE", "/mcp", headers=first.headers())
    assert reply.status == 200, reply
    assert wait_until(lambda: len(sandboxed_servers(gateway)) == 1), "the ended session's sandbox was left running"
    [survivor] = sandboxed_servers(gateway)
    whoami(second)
    assert sandboxed_servers(gateway) == [survivor], "ending one session ended another's sandbox"
    # A killed gateway takes its sandboxes with it (each supervisor dies with its parent).
    everything = [pid for pid, _ in descendants(gateway.proc.popen.pid)]
    gateway.proc.popen.kill()
    gateway.proc.popen.wait(timeout=10)
    assert wait_until(lambda: not [p for p in everything if alive(p)]), [p for p in everything if alive(p)]
