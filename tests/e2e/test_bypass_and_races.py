"""Attempts to get around the pipeline or the limits: requests disguised as notifications, racing initializes."""

from __future__ import annotations

import json
import threading

from support import RawSession, everything_stdio, python_stdio


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
    assert len(gateway.audit_records(1)) == 1, "the disguised calls were audited as if they ran"


def test_concurrent_initializes_cannot_overshoot_the_session_cap(launcher, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    gateway = launcher.gateway({"p": python_stdio("pid_server.py", str(pids))}, server={"max_sessions": 2})
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
    assert sorted(statuses) == [200, 200] + [503] * 10, statuses
    assert len(list(pids.iterdir())) == 2, "refused sessions started upstream processes"


def test_a_cursor_at_the_end_of_the_integers_is_answered(launcher):
    gateway = launcher.gateway({"everything": everything_stdio()})
    session = RawSession(gateway.base)
    session.initialize()
    response = session.request("tools/list", {"cursor": f"o:{2**64 - 1}"})
    assert response["result"]["tools"] == [] and "nextCursor" not in response["result"], response
    assert "result" in session.request("ping")
