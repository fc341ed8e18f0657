"""Hostile input on `palisade mcp`'s stdio, and upstreams that misbehave behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import StdioPeer, everything_stdio, palisade_bin, python_stdio, retry_until, wrapped, write_config

MAX_MESSAGE_BYTES = 65536


@pytest.fixture
def wrap(tmp_path) -> Iterator:
    """Starts `palisade mcp` with ARGS (sandbox flags, `--`, the server) and a config of its own; stops every one at teardown."""
    peers: list[StdioPeer] = []

    def start(command: list[str]) -> StdioPeer:
        n = len(peers)
        data_dir = tmp_path / f"data-{n}"
        data_dir.mkdir()
        config = write_config(
            tmp_path / f"palisade-{n}.toml",
            data_dir=data_dir,
            upstreams={},
            server={"max_message_bytes": MAX_MESSAGE_BYTES},
        )
        peer = StdioPeer(
            [palisade_bin(), "mcp", "--config", str(config), *command],
            log_dir=tmp_path / "logs",
            name=f"palisade-mcp-{n}",
        )
        peers.append(peer)
        peer.initialize()
        return peer

    try:
        yield start
    finally:
        for peer in peers:
            peer.close()


def everything() -> list[str]:
    return wrapped(everything_stdio())


def python_fixture(script: str, *args: str) -> list[str]:
    return wrapped(python_stdio(script, *args))


def tool_names(response: dict) -> list[str]:
    assert "result" in response, response
    return [tool["name"] for tool in response["result"]["tools"]]


def test_garbage_line_gets_parse_error_and_stream_goes_on(wrap):
    peer = wrap(everything())
    peer.send_raw(b"this is {not json\n")
    error = peer.receive(lambda m: "error" in m and m.get("id") is None)
    assert error["error"]["code"] == -32700, error
    assert "result" in peer.request("ping")
    response = peer.request("tools/call", {"name": "echo", "arguments": {"message": "after garbage"}})
    assert response["result"]["content"][0]["text"] == "Echo: after garbage"


def test_oversized_line_gets_error_and_stream_goes_on(wrap):
    peer = wrap(everything())
    big = {
        "jsonrpc": "2.0",
        "id": 900,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "x" * (MAX_MESSAGE_BYTES * 2)}},
    }
    peer.send(big)
    error = peer.receive(lambda m: "error" in m and m.get("id") in (900, None))
    assert isinstance(error["error"]["code"], int), error
    # The oversized call never reached the upstream, and the stream is still in step.
    response = peer.request("tools/call", {"name": "echo", "arguments": {"message": "small again"}})
    assert response["result"]["content"][0]["text"] == "Echo: small again"


def test_upstream_garbage_on_stdout_is_an_error_not_a_crash(wrap):
    peer = wrap(python_fixture("garbage_server.py"))
    assert tool_names(peer.request("tools/list")) == ["garble"]
    response = peer.request("tools/call", {"name": "garble", "arguments": {}})
    assert "error" in response, f"garbage from the upstream must reach the client as an error: {response}"
    assert isinstance(response["error"]["code"], int)
    assert "result" in peer.request("ping")
    # The gateway may restart the upstream after garbage, with backoff; it must come back.
    seen = retry_until(
        lambda: peer.request("tools/list"),
        lambda r: "garble" in [t.get("name") for t in r.get("result", {}).get("tools", [])],
        attempts=40,
        pause=0.5,
    )
    assert tool_names(seen[-1]) == ["garble"], "the upstream's tools did not come back:\n" + "\n".join(
        json.dumps(r) for r in seen[-3:]
    )
    assert peer.popen.poll() is None, peer.stderr()


def test_crashed_upstream_errors_then_restarts(wrap, tmp_path: Path):
    marker = tmp_path / "crashed-once"
    peer = wrap(python_fixture("crashing_server.py", str(marker)))
    first = peer.request("tools/call", {"name": "crash_once", "arguments": {}})
    assert "error" in first, f"a call whose upstream died must get a JSON-RPC error: {first}"
    assert marker.exists(), "the upstream never received the call"
    # The restart has backoff: try again, a bounded number of times.
    seen = retry_until(
        lambda: peer.request("tools/call", {"name": "crash_once", "arguments": {}}),
        lambda r: "result" in r,
        attempts=40,
        pause=0.5,
    )
    last = seen[-1]
    assert "result" in last, "the upstream was not restarted:\n" + "\n".join(json.dumps(r) for r in seen)
    assert last["result"]["content"][0]["text"] == "alive after restart"
    assert peer.popen.poll() is None, peer.stderr()
