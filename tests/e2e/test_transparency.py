"""A compliant client and server must not notice palisade: JSON key order survives the trip both ways."""

from __future__ import annotations

import json

from support import RawSession, StdioPeer, palisade_bin, python_stdio, wait_for_text, wrapped, write_config

ARGUMENTS = {"zulu": 1, "alpha": 2, "mike": {"y": 1, "b": 2}}


def key_orders(result: dict) -> list[list[str]]:
    structured = result["structuredContent"]
    return [
        list(result),
        list(structured),
        list(structured["alpha"]),
        list(structured["mid"][0]),
        list(result["content"][0]["_meta"]),
    ]


EXPECTED = [
    ["structuredContent", "content", "isError"],
    ["zeta", "alpha", "mid"],
    ["yak", "bee"],
    ["z", "a"],
    ["zz", "aa"],
]


def check_upstream_saw(log) -> None:
    seen = json.loads(wait_for_text(log).splitlines()[0])
    assert seen["arguments"] == list(ARGUMENTS), seen
    assert seen["params"][:2] == ["name", "arguments"], seen


def test_key_order_is_kept_through_serve(launcher, tmp_path):
    log = tmp_path / "order.log"
    upstream = {**python_stdio("ordered_server.py", str(log)), "prefix": ""}
    gateway = launcher.gateway({"ordered": upstream})
    session = RawSession(gateway.base)
    session.initialize()
    response = session.request("tools/call", {"name": "ordered", "arguments": ARGUMENTS, "_meta": {"k": 1}})
    assert key_orders(response["result"]) == EXPECTED, response
    check_upstream_saw(log)


def test_key_order_is_kept_through_mcp(tmp_path):
    log = tmp_path / "order.log"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams={})
    spec = python_stdio("ordered_server.py", str(log))
    peer = StdioPeer(
        [palisade_bin(), "mcp", "--config", str(config), *wrapped(spec)],
        log_dir=tmp_path / "logs",
        name="palisade-mcp-ordered",
    )
    try:
        peer.initialize()
        response = peer.request("tools/call", {"name": "ordered", "arguments": ARGUMENTS})
        assert key_orders(response["result"]) == EXPECTED, response
        check_upstream_saw(log)
    finally:
        peer.close()


def test_a_2025_03_26_client_is_answered_in_its_own_revision(launcher, tmp_path):
    gateway = launcher.gateway({"old": python_stdio("old_server.py", "2025-03-26")})
    session = RawSession(gateway.base)
    reply = session.post(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-03-26",
                "capabilities": {},
                "clientInfo": {"name": "older-client", "version": "0.0.0"},
            },
        },
        session=False,
    )
    assert reply.response()["result"]["protocolVersion"] == "2025-03-26", reply.body


def test_upstreams_that_speak_older_revisions_are_bridged(launcher, tmp_path):
    upstreams = {
        "a": python_stdio("old_server.py", "2024-11-05"),
        "b": python_stdio("old_server.py", "2025-03-26"),
    }
    gateway = launcher.gateway(upstreams)
    session = RawSession(gateway.base)
    session.initialize()
    tools = [t["name"] for t in session.request("tools/list")["result"]["tools"]]
    assert tools == ["a__hello", "b__hello"], tools
    for name in tools:
        response = session.request("tools/call", {"name": name, "arguments": {}})
        assert response["result"]["content"][0]["text"] == "hello", response


def test_an_upstream_of_an_unknown_revision_is_refused(launcher, tmp_path):
    gateway = launcher.gateway({"odd": python_stdio("old_server.py", "2023-01-01")})
    session = RawSession(gateway.base)
    session.initialize()
    response = session.request("tools/call", {"name": "odd__hello", "arguments": {}})
    assert response["error"]["code"] == -32015, response


def test_a_call_during_an_upstreams_restart_backoff_says_when_to_retry(launcher):
    gateway = launcher.gateway({"c": python_stdio("always_crashing_server.py")})
    session = RawSession(gateway.base)
    session.initialize()
    errors = []
    # Each crash doubles the backoff (100 ms, 200 ms, ...): soon a call lands inside it.
    for _ in range(12):
        response = session.request("tools/call", {"name": "c__crash", "arguments": {}})
        errors.append(response["error"])
        if "retryAfterMs" in response["error"].get("data", {}).get("palisade", {}):
            break
    last = errors[-1]
    assert last["code"] == -32015 and last["data"]["palisade"]["retryAfterMs"] > 0, errors
