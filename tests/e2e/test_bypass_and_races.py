"""Attempts to get around the pipeline or the limits: requests disguised as notifications, racing initializes."""

from __future__ import annotations

import json
import socket
import threading
import time

from support import RawSession, alive, everything_stdio, http_request, python_stdio, retry_until, unsandboxed


def test_a_tool_call_sent_as_a_notification_never_reaches_the_upstream(launcher, tmp_path):
    log = tmp_path / "received.jsonl"
    gateway = launcher.gateway({"only": python_stdio("recording_server.py", str(log))})
    session = RawSession(gateway.base)
    session.initialize()

    disguised = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "act", "arguments": {}}}
    assert session.post(disguised).status == 202
    prefixed = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "only__act", "arguments": {}}}
    assert session.post(prefixed).status == 202
    # A real call afterwards: by the time it is answered, anything forwarded before it has arrived.
    answer = session.request("tools/call", {"name": "only__act", "arguments": {}})
    assert answer["result"]["content"][0]["text"] == "acted"

    received = [json.loads(line) for line in log.read_text().splitlines()]
    calls = [m for m in received if m.get("method") == "tools/call"]
    assert len(calls) == 1 and "id" in calls[0], calls
    assert len(gateway.call_outcomes(1)) == 1, "the disguised calls were audited as if they ran"
    assert len(gateway.events("call-intent", 1)) == 1, "the disguised calls were audited as if they ran"


def test_concurrent_initializes_cannot_overshoot_the_session_cap(launcher, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    gateway = launcher.gateway({"p": unsandboxed(python_stdio("pid_server.py", str(pids)))}, server={"max_sessions": 2})
    statuses: list[int] = []
    init = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}},
    }

    def attempt() -> None:
        statuses.append(RawSession(gateway.base).post(init, session=False).status)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # At the cap a new session evicts an idle one, so many get in, one after
    # another; but never more than two at once, each with its one process.
    assert len(statuses) == 12 and set(statuses) <= {200, 503} and 200 in statuses, statuses
    health = json.loads(http_request(gateway.base, "GET", "/healthz").body)
    assert health["sessions"] <= 2, health
    def running() -> int:
        return sum(1 for p in pids.iterdir() if alive(int(p.name)))
    retry_until(running, lambda n: n <= 2, attempts=100, pause=0.1)
    assert running() <= 2, "evicted sessions left their upstream processes running"


def test_a_cursor_at_the_end_of_the_integers_is_answered(launcher):
    gateway = launcher.gateway({"everything": everything_stdio()})
    session = RawSession(gateway.base)
    session.initialize()
    response = session.request("tools/list", {"cursor": f"o:{2**64 - 1}"})
    assert response["result"]["tools"] == [] and "nextCursor" not in response["result"], response
    assert "result" in session.request("ping")


def test_a_call_whose_client_left_before_it_reached_the_upstream_never_reaches_it(launcher, tmp_path):
    """The client leaves while palisade is still reading the upstream's tool list."""
    log = tmp_path / "received.jsonl"
    gateway = launcher.gateway({"only": python_stdio("recording_server.py", str(log), "--slow-list")})
    session = RawSession(gateway.base)
    session.initialize()
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "only__act", "arguments": {}}}
    ).encode()
    head = session.raw_head("POST", body=body)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head + body)
        time.sleep(0.4)  # palisade is waiting on the slow tools/list
    # Once the listing is done, a later request is answered after anything the left call could send.
    time.sleep(1.5)
    assert "result" in session.request("tools/list")
    received = [json.loads(line) for line in log.read_text().splitlines()]
    assert not [m for m in received if m.get("method") == "tools/call"], received


def test_a_request_from_an_upstream_that_no_stream_can_carry_is_refused_at_once(launcher):
    """A JSON-only client with no GET stream cannot receive a sampling request:
    the upstream hears so at once instead of waiting out its timeout."""
    gateway = launcher.gateway({"everything": {**everything_stdio(), "request_timeout": "60s"}})
    session = RawSession(gateway.base)
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        # Declares sampling, so the server does send its request.
        "params": {"protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
                   "clientInfo": {"name": "json-only", "version": "0"}},
    }
    opened = session.post(init, session=False)
    assert opened.status == 200, opened
    session.session_id = opened.headers["mcp-session-id"]
    assert session.post({"jsonrpc": "2.0", "method": "notifications/initialized"}).status == 202
    message = {
        "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "everything__trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 5}},
    }
    headers = {**session.headers(), "Accept": "application/json"}
    reply = http_request(gateway.base, "POST", "/mcp", body=json.dumps(message).encode(), headers=headers, seconds=20)
    assert reply.status == 200, reply
    answer = reply.response()
    assert answer["id"] == 4 and ("error" in answer or answer["result"].get("isError")), answer
