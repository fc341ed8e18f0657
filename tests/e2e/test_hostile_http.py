"""Hostile and malformed input against `palisade serve`, over raw HTTP with no SDK to tidy it up."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from support import MCP_POST_HEADERS, Gateway, RawSession, everything_stdio, http_request

MAX_MESSAGE_BYTES = 65536


@pytest.fixture(scope="module")
def gateway(module_launcher) -> Gateway:
    return module_launcher.gateway(
        {"everything": everything_stdio()}, server={"max_message_bytes": MAX_MESSAGE_BYTES}
    )


@pytest.fixture
def session(gateway) -> RawSession:
    s = RawSession(gateway.base)
    s.initialize()
    return s


def error_code(message: dict) -> int:
    assert "error" in message, f"expected a JSON-RPC error, got {message}"
    return message["error"]["code"]


def test_malformed_json_is_a_parse_error(session):
    reply = session.post(None, raw=b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert reply.status == 400, reply
    response = reply.response()
    assert error_code(response) == -32700
    assert response["id"] is None


def test_wrong_jsonrpc_version_is_an_invalid_request(session):
    reply = session.post({"jsonrpc": "1.0", "id": 41, "method": "ping"})
    response = reply.response()
    assert error_code(response) == -32600, reply
    assert response["id"] in (41, None), response


def test_unknown_method_after_initialize_is_method_not_found(gateway, session):
    before = len(gateway.events("method-refused", 0))
    response = session.request("no/such-method", {})
    assert error_code(response) == -32601
    records = gateway.events("method-refused", before + 1)
    assert len(records) == before + 1, f"no method-refused record: {records}"
    record = records[before]
    assert (record["method"], record["reason"], record["session"]) == (
        "no/such-method", "unknown", session.session_id
    ), record


@pytest.mark.parametrize(
    "name",
    ["everything__no-such-tool", "nowhere__echo", "echo", "everything__"],
    ids=["unlisted-tool-of-known-upstream", "unknown-upstream", "no-prefix", "empty-tool-name"],
)
def test_unknown_tool_is_refused_by_the_gateway_and_audited(gateway, session, name):
    """Refused, as the reference SDKs do, with a tool error naming the tool; never forwarded upstream."""
    before = len(gateway.call_outcomes(0))
    response = session.request("tools/call", {"name": name, "arguments": {}})
    result = response["result"]
    assert result.get("isError") is True, f"a call to unknown tool `{name}` succeeded: {response}"
    text = " ".join(part.get("text", "") for part in result.get("content", []))
    assert f"Unknown tool: `{name}`" in text, f"the refusal does not come from palisade: {response}"
    records = gateway.call_outcomes(before + 1)
    assert len(records) == before + 1, f"no call-outcome record for the refused call: {records}"
    record = records[before]
    assert record["outcome"] == {"status": "denied", "stage": "authorize", "code": "unknown-tool"}, record
    assert record["kind"] == "tool", record
    assert all(s["verdict"] == "not-reached" for s in record["stages"] if s["stage"] == "execute"), record


@pytest.mark.parametrize(
    "rid",
    ["a-string-id", 7, 2**53, 1.5, None, {"an": "object"}],
    ids=["string", "int", "big-int", "float", "null", "object"],
)
def test_request_ids_are_echoed_or_refused(session, rid):
    reply = session.post({"jsonrpc": "2.0", "id": rid, "method": "ping"})
    response = reply.response()
    if isinstance(rid, (str, int)):
        # MCP ids are strings or integers: answered, with the id exactly as sent.
        assert reply.status == 200, reply
        assert "result" in response, response
        assert response["id"] == rid and type(response["id"]) is type(rid), response
    elif isinstance(rid, float):
        # A fractional id is outside MCP; echoing it exactly is acceptable, mangling it is not.
        if "result" in response:
            assert response["id"] == rid and isinstance(response["id"], float), response
        else:
            assert error_code(response) == -32600, response
    else:
        # null and object ids are invalid requests; an object id cannot be echoed.
        assert error_code(response) == -32600, response
        assert response["id"] is None, response


def test_oversized_body_is_refused_with_413(session):
    big = "x" * (MAX_MESSAGE_BYTES * 2)
    params = {"name": "everything__echo", "arguments": {"message": big}}
    reply = session.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params})
    assert reply.status == 413, reply
    body = json.loads(reply.body)
    assert "error" in body, body
    assert isinstance(body["error"]["code"], int), body
    # Under the limit the same session still works.
    response = session.request("tools/call", {"name": "everything__echo", "arguments": {"message": "small"}})
    assert response["result"]["content"][0]["text"] == "Echo: small"


def test_post_without_session_after_initialize_is_400(session):
    reply = session.post({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, session=False)
    assert reply.status == 400, reply


def test_unknown_session_is_404(session):
    session.session_id = "00000000-0000-4000-8000-000000000000"
    reply = session.post({"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
    assert reply.status == 404, reply


def test_foreign_origin_is_403(gateway, session):
    reply = session.post({"jsonrpc": "2.0", "id": 3, "method": "ping"}, extra={"Origin": "http://evil.example"})
    assert reply.status == 403, reply
    # Also before any session exists: a page on another site must not be able to open one.
    fresh = RawSession(gateway.base)
    reply = fresh.post(
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}},
        session=False,
        extra={"Origin": "http://evil.example"},
    )
    assert reply.status == 403, reply


def test_client_disconnect_mid_call_leaves_session_usable(gateway, session):
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 77,
            "method": "tools/call",
            "params": {"name": "everything__trigger-long-running-operation", "arguments": {"duration": 5, "steps": 5}},
        }
    ).encode()
    head = session.raw_head("POST", body=body)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head + body)
        time.sleep(0.5)  # the call is under way upstream when the client goes
    # Closed mid-call. The same session still answers.
    response = session.request("tools/call", {"name": "everything__echo", "arguments": {"message": "still here"}})
    assert response["result"]["content"][0]["text"] == "Echo: still here"
    assert "result" in session.request("ping")


def test_get_without_accepting_event_stream_is_refused(session):
    """A GET on /mcp opens a server-to-client stream; one that will not take SSE is refused, not hung."""
    headers = {k: v for k, v in session.headers().items() if k not in MCP_POST_HEADERS}
    headers["Accept"] = "application/json"
    reply = http_request(session.base, "GET", "/mcp", headers=headers, seconds=10)
    assert reply.status in (405, 406), reply


def test_gateway_still_serves_after_hostile_input(gateway):
    """Runs last in this module: everything above must have left the gateway whole."""
    health = http_request(gateway.base, "GET", "/healthz")
    assert health.status == 200, health
    assert isinstance(json.loads(health.body), dict)
    assert gateway.proc.popen.poll() is None, gateway.proc.output()
    fresh = RawSession(gateway.base)
    fresh.initialize()
    response = fresh.request("tools/call", {"name": "everything__echo", "arguments": {"message": "after all that"}})
    assert response["result"]["content"][0]["text"] == "Echo: after all that"


def test_an_id_in_use_cannot_be_reused_until_its_request_ends(gateway, session):
    long_call = {
        "jsonrpc": "2.0",
        "id": 500,
        "method": "tools/call",
        "params": {"name": "everything__trigger-long-running-operation", "arguments": {"duration": 2, "steps": 2}},
    }
    first: list = []
    worker = threading.Thread(target=lambda: first.append(session.post(long_call)))
    worker.start()
    time.sleep(0.5)  # the first request is in progress upstream
    clash = session.post({"jsonrpc": "2.0", "id": 500, "method": "ping"}).response()
    assert error_code(clash) == -32600 and "already in use" in clash["error"]["message"], clash
    worker.join(timeout=30)
    assert first and first[0].status == 200, first
    # Finished: the id is free again.
    assert "result" in session.post({"jsonrpc": "2.0", "id": 500, "method": "ping"}).response()
