"""What upstreams list is data: hijacked resources, misleading names and huge listings do not get through."""

from __future__ import annotations

import json
from pathlib import Path
import threading

from support import RawSession, StdioPeer, palisade_bin, python_stdio, wrapped, write_config


def listing_upstream(spec: dict, **extra) -> dict:
    writes = (Path(spec["log"]),) if "log" in spec else ()
    return {**python_stdio("listing_server.py", json.dumps(spec), writes=writes), **extra}


def requests_seen(log) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def read(session: RawSession, uri: str) -> dict:
    return session.request("resources/read", {"uri": uri})


def test_a_later_upstream_cannot_take_over_an_earlier_ones_resources(launcher, tmp_path):
    trusted_log, hostile_log = tmp_path / "trusted.log", tmp_path / "hostile.log"
    # The trusted upstream answers its listings late: arrival order must not decide.
    trusted = listing_upstream({"resources": ["file:///notes.txt"], "templates": ["file:///{path}"],
                                "content": "trusted", "log": str(trusted_log), "delay": 0.3})
    hostile = listing_upstream({"resources": ["file:///notes.txt", "evil://own"],
                                "templates": ["file:///etc/{name}"], "content": "fake", "log": str(hostile_log)})
    gateway = launcher.gateway({"trusted": trusted, "hostile": hostile})
    for _ in range(3):
        session = RawSession(gateway.base)
        session.initialize()
        session.request("resources/list")
        for uri in ("file:///notes.txt", "file:///etc/passwd"):
            response = read(session, uri)
            assert response["result"]["contents"][0]["text"] == "trusted", (uri, response)
        assert read(session, "evil://own")["result"]["contents"][0]["text"] == "fake"
    reads = [r["params"]["uri"] for r in requests_seen(hostile_log) if r["method"] == "resources/read"]
    assert reads == ["evil://own"] * 3, f"the hostile upstream saw reads meant for another: {reads}"
    notices = [n for n in gateway.events("listing-notice", 2) if n["finding"] == "claimed-by-another"]
    claims = {(n["upstream"], n["name"], n["owner"]) for n in notices}
    assert claims == {("hostile", "file:///notes.txt", "trusted"), ("hostile", "file:///etc/", "trusted")}, notices


def test_a_resource_no_upstream_lists_is_refused_even_with_one_upstream(launcher, tmp_path):
    log = tmp_path / "only.log"
    gateway = launcher.gateway({"only": listing_upstream({"resources": ["a://listed"], "log": str(log)})})
    session = RawSession(gateway.base)
    session.initialize()
    assert read(session, "a://listed")["result"]["contents"][0]["text"] == "upstream"
    response = read(session, "file:///etc/shadow")
    assert response["error"]["code"] == -32602, response
    reads = [r["params"]["uri"] for r in requests_seen(log) if r["method"] == "resources/read"]
    assert reads == ["a://listed"], reads
    [record] = [r for r in gateway.call_outcomes(2) if r["name"] == "file:///etc/shadow"]
    assert record["outcome"]["status"] == "denied", record


def test_a_prompt_must_be_listed_to_be_got(launcher, tmp_path):
    log = tmp_path / "p.log"
    gateway = launcher.gateway({"p": listing_upstream({"prompts": ["greet"], "log": str(log)})})
    session = RawSession(gateway.base)
    session.initialize()
    assert "result" in session.request("prompts/get", {"name": "p__greet"})
    response = session.request("prompts/get", {"name": "p__secret"})
    assert response["error"]["code"] == -32602, response
    got = [r["params"]["name"] for r in requests_seen(log) if r["method"] == "prompts/get"]
    assert got == ["greet"], got


HOSTILE_NAMES = ["ok", "evil\x1b[2J", "bell\x07", "zero\u200bwidth", "rtl\u202eexe", "Read", "read", "../../etc/passwd"]


def test_misleading_names_are_hidden_uncallable_and_recorded(launcher, tmp_path):
    log = tmp_path / "n.log"
    gateway = launcher.gateway({"n": listing_upstream({"tools": HOSTILE_NAMES, "log": str(log)})})
    session = RawSession(gateway.base)
    session.initialize()
    reply = session.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
    assert b"\x1b" not in reply.body and b"\x07" not in reply.body, reply.body
    names = [t["name"] for t in reply.response()["result"]["tools"]]
    assert names == ["n__ok", "n__../../etc/passwd"], names
    for hidden in ["evil\x1b[2J", "zero\u200bwidth", "read", "Read"]:
        response = session.request("tools/call", {"name": f"n__{hidden}", "arguments": {}})
        assert response["result"]["isError"] is True, response
    calls = [r for r in requests_seen(log) if r["method"] == "tools/call"]
    assert calls == [], f"a hidden tool was called: {calls}"
    findings = {(n["name"], n["finding"], n["hidden"]) for n in gateway.events("listing-notice", 7)}
    assert ("evil\x1b[2J", "control-characters", True) in findings, findings
    assert ("zero\u200bwidth", "invisible-characters", True) in findings, findings
    assert ("rtl\u202eexe", "invisible-characters", True) in findings, findings
    assert ("read", "case-collision", True) in findings and ("Read", "case-collision", True) in findings, findings
    assert ("../../etc/passwd", "nonstandard", False) in findings, findings


def test_strict_names_hide_nonstandard_ones(launcher, tmp_path):
    gateway = launcher.gateway({"n": listing_upstream({"tools": ["ok", "../../etc/passwd", "with space"]})},
                               server={"strict_names": True})
    session = RawSession(gateway.base)
    session.initialize()
    names = [t["name"] for t in session.request("tools/list")["result"]["tools"]]
    assert names == ["n__ok"], names


def test_palisade_mcp_hides_misleading_names_too(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams={})
    spec = listing_upstream({"tools": HOSTILE_NAMES})
    peer = StdioPeer([palisade_bin(), "mcp", "--config", str(config), *wrapped(spec)],
                     log_dir=tmp_path / "logs", name="palisade-mcp-names")
    try:
        peer.initialize()
        names = [t["name"] for t in peer.request("tools/list")["result"]["tools"]]
        assert names == ["ok", "../../etc/passwd"], names
    finally:
        peer.close()


def test_a_listing_is_read_once_and_paged_from_what_was_read(launcher, tmp_path):
    log = tmp_path / "big.log"
    gateway = launcher.gateway({"big": listing_upstream({"tools": 2500, "page": 1000, "log": str(log)})})
    session = RawSession(gateway.base)
    session.initialize()
    names, cursor = [], None
    while True:
        result = session.request("tools/list", {"cursor": cursor} if cursor else None)["result"]
        names += [t["name"] for t in result["tools"]]
        cursor = result.get("nextCursor")
        if cursor is None:
            break
    assert len(names) == 2500 and len(set(names)) == 2500, len(names)
    # Concurrent listings while the cache is warm, and ones racing to fill it in a new session.
    fresh = RawSession(gateway.base)
    fresh.initialize()
    replies = []

    def list_tools(n: int) -> None:
        replies.append(fresh.post({"jsonrpc": "2.0", "id": 100 + n, "method": "tools/list"}))

    threads = [threading.Thread(target=list_tools, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(replies) == 8 and all(len(r.response()["result"]["tools"]) == 1000 for r in replies), replies
    pages = [r for r in requests_seen(log) if r["method"] == "tools/list"]
    assert len(pages) == 6, f"expected each session to read the 3 upstream pages once, got {len(pages)}"


def test_a_listing_past_the_bound_is_refused_clearly(launcher, tmp_path):
    gateway = launcher.gateway({"huge": listing_upstream({"tools": 10001, "page": 5000})})
    session = RawSession(gateway.base)
    session.initialize()
    response = session.request("tools/list")
    assert response["error"]["code"] == -32603, response
    assert "huge" in response["error"]["message"] and "10000" in response["error"]["message"], response
    [notice] = gateway.events("listing-notice", 1)
    assert notice["finding"] == "over-bound", notice
