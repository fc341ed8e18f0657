"""Helpers for the layer-1 end-to-end tests: the CLI, credentials, and the official client with a bearer token."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from support import PASS_THROUGH, RawSession, palisade_bin

# Layer 1 runs for real in these tests: authorization and the approval gate
# are not passed through; the layers not built yet still are.
LAYER1_PASS_THROUGH = [s for s in PASS_THROUGH if s not in ("authorize", "approval")]


def cli(config: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`palisade ARGS --config CONFIG`, its output captured."""
    return subprocess.run(
        [palisade_bin(), *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def create_key(config: Path, principal: str, *roles: str, tenant: str | None = None) -> str:
    args = ["keys", "create", "--principal", principal]
    for role in roles:
        args += ["--role", role]
    if tenant:
        args += ["--tenant", tenant]
    key = ok(cli(config, *args)).strip()
    assert key.startswith("pk_"), key
    return key


def client(url: str, token: str | None) -> Client:
    """The official Python SDK client over Streamable HTTP, presenting `token`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(streamable_http_client(url, http_client=create_mcp_http_client(headers=headers)))


def run(body: Any, *args: Any) -> Any:
    async def bounded() -> Any:
        with anyio.fail_after(60):
            return await body(*args)

    return anyio.run(bounded)


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def emitted(*paths: Path) -> bytes:
    """Every byte palisade wrote to these files (audit log, captured stderr), for secret searches."""
    return b"".join(p.read_bytes() for p in paths if p.exists())


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class AuthedSession(RawSession):
    """A raw MCP session that presents `token` on every request."""

    def __init__(self, base: str, token: str | None) -> None:
        super().__init__(base)
        self.token = token

    def headers(self, *, session: bool = True, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = super().headers(session=session, extra=None)
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers
