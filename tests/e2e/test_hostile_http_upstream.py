"""A remote Streamable HTTP upstream that answers with faults: each is a JSON-RPC error, and the gateway goes on."""

from __future__ import annotations

import sys

import pytest

from support import FIXTURES, RawSession, free_port, http_request


@pytest.fixture(scope="module")
def session(module_launcher) -> RawSession:
    port = free_port()
    upstream = module_launcher.process([sys.executable, str(FIXTURES / "hostile_http_server.py"), str(port)], what="hostile-http")
    upstream.wait_for(rf"listening on port {port}")
    gateway = module_launcher.gateway(
        {"hostile": {"url": f"http://127.0.0.1:{port}/mcp"}}, server={"max_message_bytes": 1048576}
    )
    s = RawSession(gateway.base)
    s.initialize()
    return s


@pytest.mark.parametrize("tool", ["garbage", "huge", "fail", "cut"])
def test_a_faulty_answer_is_a_json_rpc_error(session, tool):
    response = session.request("tools/call", {"name": f"hostile__{tool}", "arguments": {}})
    assert "error" in response, f"{tool}: {response}"
    assert response["error"]["code"] == -32015, response
    # And the upstream stays usable.
    ok = session.request("tools/call", {"name": "hostile__ok", "arguments": {}})
    assert ok["result"]["content"][0]["text"] == "fine", ok


def test_an_upstream_error_passes_through_as_the_upstream_wrote_it(session):
    """Even one that uses the code palisade gives an unavailable upstream."""
    response = session.request("tools/call", {"name": "hostile__mimic", "arguments": {}})
    assert response["error"] == {"code": -32015, "message": "the upstream's own error", "data": {"from": "upstream"}}


def test_an_upstream_that_never_answers_notifications_does_not_hang_the_gateway(launcher):
    port = free_port()
    upstream = launcher.process(
        [sys.executable, str(FIXTURES / "hostile_http_server.py"), str(port), "--hang-notifications"],
        what="hostile-http-hang",
    )
    upstream.wait_for(rf"listening on port {port}")
    gateway = launcher.gateway({"hostile": {"url": f"http://127.0.0.1:{port}/mcp", "request_timeout": "2s"}})
    session = RawSession(gateway.base)
    # The handshake's `initialized` notification never gets an answer: the
    # session still opens, and calls fail instead of hanging.
    session.initialize()
    response = session.request("tools/call", {"name": "hostile__ok", "arguments": {}})
    assert "error" in response or response["result"].get("isError"), response
    assert "result" in session.request("ping")
    assert http_request(gateway.base, "DELETE", "/mcp", headers=session.headers(), seconds=30).status == 200
