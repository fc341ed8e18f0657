"""Peers that are slow or silent: an upstream that never answers, a client that trickles, one that stops reading."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

from support import RawSession, everything_stdio, palisade_bin, python_stdio, wait_for_text, wrapped


def test_upstream_that_never_answers_times_out_and_is_cancelled(launcher, tmp_path):
    cancellations = tmp_path / "cancellations.jsonl"
    upstream = {**python_stdio("hanging_server.py", str(cancellations)), "request_timeout": "1s"}
    gateway = launcher.gateway({"slow": upstream})
    session = RawSession(gateway.base)
    session.initialize()

    response = session.request("tools/call", {"name": "slow__hang", "arguments": {}})
    assert response["error"]["code"] == -32015, response
    assert response["error"]["data"]["palisade"]["stage"] == "execute", response

    # The upstream was told to stop, with the id palisade gave the call there.
    sent = wait_for_text(cancellations, attempts=40)
    cancel = json.loads(sent.splitlines()[0])
    assert isinstance(cancel["requestId"], int), cancel

    # The session and the upstream still work.
    assert [t["name"] for t in session.request("tools/list")["result"]["tools"]] == ["slow__hang"]
    [record] = gateway.call_outcomes(1)
    assert record["outcome"] == {"status": "timed-out"}, record
    execute = next(s for s in record["stages"] if s["stage"] == "execute")
    assert execute["verdict"] == "failed" and "did not answer in time" in execute["reason"], execute


def test_a_trickling_client_does_not_hold_up_others(launcher):
    gateway = launcher.gateway({"everything": everything_stdio()})
    slow = RawSession(gateway.base)
    slow.initialize()
    fast = RawSession(gateway.base)
    fast.initialize()

    body = json.dumps(
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
         "params": {"name": "everything__echo", "arguments": {"message": "slowly"}}}
    ).encode()
    head = slow.raw_head("POST", body=body)
    events: list[str] = []
    answer: list[bytes] = []

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
            sock.sendall(head)
            for byte in body:
                sock.sendall(bytes([byte]))
                time.sleep(0.01)
            events.append("slow sent")
            sock.settimeout(30)
            data = b""
            while b"Echo: slowly" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            answer.append(data)

    thread = threading.Thread(target=trickle)
    thread.start()
    time.sleep(0.2)  # the trickle is under way
    for i in range(5):
        response = fast.request("tools/call", {"name": "everything__echo", "arguments": {"message": f"fast {i}"}})
        assert response["result"]["content"][0]["text"] == f"Echo: fast {i}"
    events.append("fast done")
    thread.join(timeout=60)
    assert events == ["fast done", "slow sent"], events
    assert answer and b"Echo: slowly" in answer[0], answer


def test_a_client_that_stops_reading_loses_no_answer(tmp_path):
    """Thousands of requests written while nothing reads stdout: palisade holds back, drops no answer."""
    count = 3000  # far more answers than the pipe and palisade's queue hold unread
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "flood", "version": "0"}}}
    lines = [init] + [{"jsonrpc": "2.0", "id": 1000 + i, "method": "ping"} for i in range(count)]
    data = b"".join(json.dumps(m).encode() + b"\n" for m in lines)
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [palisade_bin(), "mcp", *wrapped(everything_stdio())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, start_new_session=True,
            env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
        )
    try:
        writer = threading.Thread(target=lambda: (proc.stdin.write(data), proc.stdin.flush()), daemon=True)
        writer.start()
        time.sleep(1)  # palisade fills its queue and the pipe, with nobody reading
        seen = set()
        deadline = time.monotonic() + 60
        while len(seen) < count + 1 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"stdout closed early; stderr:\n{(tmp_path / 'stderr').read_text()}"
            message = json.loads(line)
            if "id" in message:
                assert "result" in message, message
                seen.add(message["id"])
        assert seen == {0, *range(1000, 1000 + count)}, f"{count + 1 - len(seen)} answers missing"
        writer.join(timeout=10)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_client_that_stalls_mid_body_is_cut_off(launcher):
    gateway = launcher.gateway({"everything": everything_stdio()}, server={"body_timeout": "1s"})
    session = RawSession(gateway.base)
    session.initialize()
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    head = session.raw_head("POST", body=body)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head + body[:10])  # and then nothing more
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"request body not received" in reply, reply
    # Everyone else is served as before.
    assert "result" in session.request("ping")


def test_a_client_that_leaves_mid_call_gets_the_upstream_call_cancelled(launcher, tmp_path):
    cancellations = tmp_path / "cancellations.jsonl"
    gateway = launcher.gateway({"slow": python_stdio("hanging_server.py", str(cancellations))})
    session = RawSession(gateway.base)
    session.initialize()
    assert [t["name"] for t in session.request("tools/list")["result"]["tools"]] == ["slow__hang"]
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 31, "method": "tools/call", "params": {"name": "slow__hang", "arguments": {}}}
    ).encode()
    head = session.raw_head("POST", body=body)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head + body)
        time.sleep(0.5)  # the call is waiting upstream when the client goes
    sent = wait_for_text(cancellations, attempts=50)
    assert sent.strip(), "the upstream was never told the client left"
    assert "result" in session.request("ping")
    [record] = gateway.call_outcomes(1)
    assert record["outcome"] == {"status": "cancelled"}, record
