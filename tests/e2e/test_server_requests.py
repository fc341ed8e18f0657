"""What flows from server to client through the gateway: progress, sampling and elicitation requests."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from support import RawSession, everything_stdio, palisade_bin, read_events, wrapped, write_config

CLIENT_SECONDS = 60


class Recorder:
    """A client's side of the server-to-client requests, keeping what arrived."""

    def __init__(self) -> None:
        self.sampled: list[str] = []
        self.elicited: list[str] = []
        self.progress: list[tuple[float, float | None]] = []

    async def sampling(self, _ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.sampled.append(params.messages[0].content.text)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled-by-the-test"), model="test-model"
        )

    async def elicitation(self, _ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicited.append(params.message)
        return types.ElicitResult(action="decline")

    async def on_progress(self, progress: float, total: float | None, _message: str | None) -> None:
        self.progress.append((progress, total))


async def exercise(session: ClientSession, prefix: str, seen: Recorder) -> None:
    await session.initialize()

    result = await session.call_tool(
        prefix + "trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=seen.on_progress
    )
    assert "completed" in result.content[0].text, result
    assert seen.progress == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)], seen.progress

    result = await session.call_tool(prefix + "trigger-sampling-request", {"prompt": "a-test-prompt", "maxTokens": 5})
    assert len(seen.sampled) == 1 and "a-test-prompt" in seen.sampled[0], seen.sampled
    # The server quotes the client's answer back: it made the round trip.
    assert "sampled-by-the-test" in result.content[0].text, result

    result = await session.call_tool(prefix + "trigger-elicitation-request", {})
    assert len(seen.elicited) == 1, seen.elicited
    assert "decline" in str(result.content).lower(), result


def run_session(transport: Any, prefix: str) -> Recorder:
    seen = Recorder()

    async def body() -> None:
        with anyio.fail_after(CLIENT_SECONDS):
            async with transport as (read, write):
                async with ClientSession(
                    read, write, sampling_callback=seen.sampling, elicitation_callback=seen.elicitation
                ) as session:
                    await exercise(session, prefix, seen)

    anyio.run(body)
    return seen


@pytest.mark.parametrize("upstream_kind", ["stdio", "http"])
def test_through_serve(launcher, upstream_kind: str) -> None:
    upstream = everything_stdio() if upstream_kind == "stdio" else {"url": launcher.everything_http()}
    gateway = launcher.gateway({"everything": upstream})
    run_session(streamable_http_client(gateway.url), "everything__")
    records = gateway.call_outcomes(3)
    assert [r["name"] for r in records] == [
        "trigger-long-running-operation",
        "trigger-sampling-request",
        "trigger-elicitation-request",
    ]


def test_through_mcp_wrap(tmp_path) -> None:
    # About routing through the wrapper, not authorization: the layer-1 stages pass through.
    config = write_config(tmp_path / "palisade.toml", data_dir=tmp_path / "palisade", upstreams={})
    params = StdioServerParameters(
        command=palisade_bin(),
        args=["mcp", "--config", str(config), "--name", "everything", *wrapped(everything_stdio())],
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    )
    run_session(stdio_client(params), "")
    records = read_events(tmp_path / "palisade" / "audit.jsonl", "call-outcome", 3)
    assert [r["name"] for r in records] == [
        "trigger-long-running-operation",
        "trigger-sampling-request",
        "trigger-elicitation-request",
    ], records


def canonical(value: Any) -> str:
    """RFC 8785 canonical JSON, for values whose strings are plain ASCII and that hold no numbers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_sampling_and_elicitation_are_recorded_with_a_digest_of_the_prompt(launcher) -> None:
    """Each sampling and elicitation request an upstream sends is recorded before it reaches the
    client; a sampling record holds the SHA-256 of the prompt the upstream sent, never its text."""
    gateway = launcher.gateway({"everything": everything_stdio()})
    prompt = f"palisade-e2e-prompt-{uuid.uuid4().hex}"
    # What server-everything's trigger-sampling-request sends for `prompt`
    # (node_modules/@modelcontextprotocol/server-everything/dist/tools/trigger-sampling-request.js).
    text = f"Resource trigger-sampling-request context: {prompt}"
    system_prompt = "You are a helpful test server."
    messages = [{"role": "user", "content": {"type": "text", "text": text}}]
    seen = Recorder()

    async def body() -> None:
        with anyio.fail_after(CLIENT_SECONDS):
            async with streamable_http_client(gateway.url) as (read, write):
                async with ClientSession(
                    read, write, sampling_callback=seen.sampling, elicitation_callback=seen.elicitation
                ) as session:
                    await session.initialize()
                    await session.call_tool("everything__trigger-sampling-request", {"prompt": prompt, "maxTokens": 5})
                    await session.call_tool("everything__trigger-elicitation-request", {})

    anyio.run(body)
    assert seen.sampled == [text] and len(seen.elicited) == 1, (seen.sampled, seen.elicited)
    sampling, elicitation = gateway.events("server-request", 2)
    expected = canonical({"messages": messages, "systemPrompt": system_prompt})
    assert sampling["method"] == "sampling/createMessage" and sampling["relayed"] is True, sampling
    assert sampling["upstream"] == "everything" and sampling["session"] and sampling["principal"], sampling
    assert sampling["prompt"] == {
        "sha256": hashlib.sha256(expected.encode()).hexdigest(),
        "messages": 1,
        "bytes": len(expected.encode()),
    }, sampling
    assert elicitation["method"] == "elicitation/create" and elicitation["relayed"] is True, elicitation
    assert "prompt" not in elicitation, elicitation
    # The agent's own argument is in its call's record; what the upstream made of it is not anywhere.
    log = gateway.audit_path.read_text()
    assert text not in log and system_prompt not in log


ROOT_URI = "file:///srv/palisade-e2e-root"


async def list_roots(_ctx: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri=ROOT_URI, name="e2e")])


@pytest.mark.parametrize("upstream_kind", ["stdio", "http"])
def test_roots_requests_reach_the_client(launcher, upstream_kind: str) -> None:
    upstream = everything_stdio() if upstream_kind == "stdio" else {"url": launcher.everything_http()}
    gateway = launcher.gateway({"everything": upstream})
    texts: list[str] = []

    async def body() -> None:
        with anyio.fail_after(CLIENT_SECONDS):
            async with streamable_http_client(gateway.url) as (read, write):
                async with ClientSession(read, write, list_roots_callback=list_roots) as session:
                    await session.initialize()
                    result = await session.call_tool("everything__get-roots-list", {})
                    texts.extend(part.text for part in result.content)

    anyio.run(body)
    assert any(ROOT_URI in text for text in texts), texts


def test_messages_outside_any_request_reach_the_get_stream(launcher) -> None:
    """What an upstream sends on its own (a list change after its handshake, log
    messages on a timer) reaches the client's GET stream, even when sent before
    the client opened it."""
    gateway = launcher.gateway({"everything": everything_stdio()})
    session = RawSession(gateway.base)
    session.initialize()
    answer = session.request("tools/call", {"name": "everything__toggle-simulated-logging", "arguments": {}})
    assert "result" in answer, answer
    head = session.raw_head("GET", accept="text/event-stream")
    wanted = {"notifications/tools/list_changed", "notifications/message"}
    seen: set[str] = set()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as stream:
        stream.sendall(head)
        data = b""
        deadline = time.monotonic() + 20  # the server logs every 5 s
        while not wanted <= seen and time.monotonic() < deadline:
            chunk = stream.recv(65536)
            if not chunk:
                break
            data += chunk
            for line in data.split(b"\n"):
                if line.startswith(b"data: "):
                    try:
                        seen.add(json.loads(line[6:]).get("method", ""))
                    except json.JSONDecodeError:
                        pass  # a frame cut at the chunk boundary: read on
    assert wanted <= seen, f"the GET stream carried only {sorted(seen)}"
