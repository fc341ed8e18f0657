"""Real MCP clients (the Python and TypeScript SDKs) through the gateway to real MCP servers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from support import wrapped as mcp_args
from support import (
    COMPLETED_STAGES,
    E2E,
    EVERYTHING_JS,
    FILESYSTEM_JS,
    TS_CLIENT,
    everything_stdio,
    filesystem_stdio,
    node_bin,
    palisade_bin,
    read_events,
    write_config,
)

CLIENT_SECONDS = 60


def run(body, *args: Any) -> Any:
    async def bounded() -> Any:
        with anyio.fail_after(CLIENT_SECONDS):
            return await body(*args)

    return anyio.run(bounded)


def text_of(result: Any) -> str:
    assert not result.is_error, f"tool returned an error: {result}"
    assert result.content, f"tool returned no content: {result}"
    return result.content[0].text


async def direct_tool_names(command: str, args: list[str], errlog: Path) -> list[str]:
    """The tools a server lists when the client talks to it with no gateway in between."""
    with open(errlog, "w") as err:
        async with Client(stdio_client(StdioServerParameters(command=command, args=args), errlog=err)) as client:
            return await all_tool_names(client)


async def all_tool_names(client: Client) -> list[str]:
    """Every tool the server lists, following `nextCursor` across pages."""
    names: list[str] = []
    cursor = None
    for _ in range(100):
        page = await client.list_tools(cursor=cursor)
        names += [tool.name for tool in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            return names
    raise AssertionError(f"tools/list never stopped paginating: {names}")


def assert_completed_record(record: dict[str, Any], server: str, name: str) -> None:
    assert (record["event"], record["kind"], record["server"], record["name"]) == (
        "call-outcome", "tool", server, name
    ), record
    assert record["outcome"] == {"status": "completed", "tool_error": False}, record
    assert [(s["stage"], s["verdict"]) for s in record["stages"]] == COMPLETED_STAGES, record["stages"]
    for stage in record["stages"]:
        assert isinstance(stage["micros"], int) and stage["micros"] >= 0, stage
    assert isinstance(record["latency_micros"], int) and record["latency_micros"] >= 0, record
    for key in ("time", "call", "principal", "session", "effect", "arguments_sha256"):
        assert key in record, f"audit record has no `{key}`: {record}"


def test_python_client_over_http_reaches_two_stdio_upstreams(launcher, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    greeting = shared / "greeting.txt"
    greeting.write_text("hello from the palisade e2e suite\nsecond line\n")
    gateway = launcher.gateway({"everything": everything_stdio(), "files": filesystem_stdio(shared)})

    async def direct() -> tuple[list[str], list[str]]:
        everything = await direct_tool_names(node_bin(), [str(EVERYTHING_JS), "stdio"], tmp_path / "direct-e.log")
        files = await direct_tool_names(node_bin(), [str(FILESYSTEM_JS), str(shared)], tmp_path / "direct-f.log")
        return everything, files

    everything_tools, files_tools = run(direct)
    read_tool = next(name for name in ("read_text_file", "read_file") if name in files_tools)

    async def through_gateway() -> tuple[list[str], str, str]:
        async with Client(gateway.url) as client:
            names = await all_tool_names(client)
            echoed = text_of(await client.call_tool("everything__echo", {"message": "through two upstreams"}))
            read = text_of(await client.call_tool(f"files__{read_tool}", {"path": str(greeting)}))
            return names, echoed, read

    names, echoed, read = run(through_gateway)

    expected = {f"everything__{n}" for n in everything_tools} | {f"files__{n}" for n in files_tools}
    assert sorted(names) == sorted(expected), "tools/list is not the prefixed merge of both upstreams"
    assert echoed == "Echo: through two upstreams"
    assert read == greeting.read_text()

    records = gateway.call_outcomes(2)
    assert len(records) == 2, f"expected one call-outcome record per tools/call, got {records}"
    assert_completed_record(records[0], "everything", "echo")
    assert_completed_record(records[1], "files", read_tool)
    assert records[0]["call"] != records[1]["call"]
    assert records[0]["session"] == records[1]["session"], "two calls of one client session"


def test_python_client_over_http_reaches_http_upstream(launcher):
    upstream = launcher.everything_http()
    gateway = launcher.gateway({"remote": {"url": upstream}})

    async def body() -> tuple[list[str], str]:
        async with Client(gateway.url) as client:
            names = await all_tool_names(client)
            return names, text_of(await client.call_tool("remote__echo", {"message": "over http twice"}))

    names, echoed = run(body)
    assert "remote__echo" in names
    assert all(name.startswith("remote__") for name in names), names
    assert echoed == "Echo: over http twice"
    [record] = gateway.call_outcomes(1)
    assert_completed_record(record, "remote", "echo")


def test_python_client_over_stdio_through_palisade_mcp(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams={})
    wrapped = StdioServerParameters(
        command=palisade_bin(),
        args=["mcp", "--config", str(config), *mcp_args(everything_stdio())],
    )

    async def body() -> tuple[list[str], list[str], str, str]:
        direct = await direct_tool_names(node_bin(), [str(EVERYTHING_JS), "stdio"], tmp_path / "direct.log")
        with open(tmp_path / "palisade-mcp.stderr", "w") as err:
            async with Client(stdio_client(wrapped, errlog=err)) as client:
                names = await all_tool_names(client)
                echoed = text_of(await client.call_tool("echo", {"message": "over stdio"}))
                summed = text_of(await client.call_tool("get-sum", {"a": 19, "b": 23}))
                return direct, names, echoed, summed

    direct, names, echoed, summed = run(body)
    assert sorted(names) == sorted(direct), "palisade mcp must list the upstream's tools unprefixed"
    assert echoed == "Echo: over stdio"
    assert summed == "The sum of 19 and 23 is 42."
    records = read_events(data_dir / "audit.jsonl", "call-outcome", 2)
    assert [r["name"] for r in records] == ["echo", "get-sum"], records
    assert all(r["outcome"]["status"] == "completed" for r in records), records


def test_typescript_client_over_http(launcher):
    gateway = launcher.gateway({"everything": everything_stdio()})
    done = subprocess.run(
        [node_bin(), str(TS_CLIENT), gateway.url, "everything__", "hello from typescript"],
        cwd=E2E,
        capture_output=True,
        text=True,
        timeout=CLIENT_SECONDS,
    )
    assert done.returncode == 0, f"ts_client failed:\n{done.stdout}\n{done.stderr}\n{gateway.proc.output()}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["echo"] == "Echo: hello from typescript"
    assert seen["tools"] > 1
    [record] = gateway.call_outcomes(1)
    assert_completed_record(record, "everything", "echo")
