"""Layer 1, durable state shared by replicas: two `palisade serve` processes on one PostgreSQL database.

Keys, revocations and approval requests live in the store, so a key made
through one replica's config authenticates on both, a revocation takes effect
on both at the next request, and an approval asked through one is decided
through the other. Each test gets a fresh database on the server named by
PALISADE_TEST_POSTGRES (`scripts/postgres start` prints one). Task-token root
keys live in each replica's data directory, so these tests use API keys.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from layer1 import LAYER1_PASS_THROUGH, AuthedSession, cli, create_key, ok
from support import PROTOCOL_VERSION, python_stdio, write_config
from test_approvals import POLICY, call, canonical, held_id, session_for, transfers

INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "e2e", "version": "0"}},
}


def postgres_server() -> str | None:
    """The server to test on. Unset: a failure under CI (the backend must be tested), a skip elsewhere."""
    url = os.environ.get("PALISADE_TEST_POSTGRES", "").strip()
    if url:
        return url
    how = "start one with `scripts/postgres start` and `export PALISADE_TEST_POSTGRES=$(scripts/postgres url)` (scripts/test does both)"
    if os.environ.get("CI"):
        pytest.fail(f"PALISADE_TEST_POSTGRES is not set, and CI is: shared state must be tested on PostgreSQL; {how}")
    return None


def with_database(url: str, name: str) -> str:
    """`url` naming the database `name` instead of its own."""
    base, sep, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}{sep}{query}"


def psql(url: str, sql: str) -> None:
    done = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"psql `{sql}`: {done.stderr}"


@pytest.fixture
def database() -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    server = postgres_server()
    if server is None:
        pytest.skip("PALISADE_TEST_POSTGRES is not set (and CI is not): no PostgreSQL to test on")
    if shutil.which("psql") is None:
        pytest.fail("`psql` is not on PATH: it creates each test's database (install the PostgreSQL client)")
    name = f"palisade_e2e_{uuid.uuid4().hex[:16]}"
    psql(server, f"CREATE DATABASE {name}")
    try:
        yield with_database(server, name)
    finally:
        # Requested before `launcher`, so the gateways have stopped by now; FORCE ends any straggler.
        psql(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def replica(launcher, root: Path, url: str) -> tuple:
    """One `palisade serve` on the shared database, with its own data directory and upstream log."""
    data_dir = root / "data"
    root.mkdir(parents=True, exist_ok=True)  # the upstream's log directory, bound into its sandbox
    log = root / "executed.jsonl"
    extra = (
        "\n[auth]\nanonymous = false\n"
        f"\n[authz]\npolicies = [{json.dumps(str(POLICY))}]\n"
        f"\n[storage]\nurl = {json.dumps(url)}\n"
    )
    config = write_config(
        root / "palisade.toml",
        data_dir=data_dir,
        upstreams={"actions": {**python_stdio("actions_server.py", str(log)), "default_effect": "irreversible"}},
        pass_through=LAYER1_PASS_THROUGH,
        extra=extra,
    )
    return launcher.gateway({}, data_dir=data_dir, config=config), config, log


def test_two_gateways_on_one_database_share_keys_revocations_and_approvals(database, launcher, tmp_path):
    a, config_a, log_a = replica(launcher, tmp_path / "a", database)
    b, config_b, log_b = replica(launcher, tmp_path / "b", database)
    assert a.data_dir != b.data_dir
    assert not any((g.data_dir / "state.db").exists() for g in (a, b)), "the state is in PostgreSQL, not in SQLite"

    # A key made once, through A's config, authenticates on both.
    alice = create_key(config_a, "alice", "dev")
    bob = create_key(config_a, "bob", "approver")
    mallory = create_key(config_a, "mallory", "dev")
    for gateway in (a, b):
        assert session_for(gateway, mallory).request("tools/list")["result"]["tools"], gateway.base
    assert "mallory" in ok(cli(config_b, "keys", "list")), "B's config reads the same keys"

    # Revoked through A's config: both refuse the next request, in an open session too.
    open_on_b = session_for(b, mallory)
    ok(cli(config_a, "keys", "revoke", mallory.split("_")[1]))
    for gateway in (a, b):
        assert AuthedSession(gateway.base, mallory).post(INIT, session=False).status == 401, gateway.base
    assert open_on_b.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).status == 401

    # Asked through A, listed and approved through B, run once on A.
    arguments = {"to": "carol", "amount": 250}
    on_a = session_for(a, alice)
    request = held_id(call(on_a, arguments))

    def approvals(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(config_b, "approvals", *args, "--url", b.base, env={"PALISADE_TOKEN": bob})

    listed = ok(approvals("list"))
    [line] = [l for l in listed.splitlines() if l.startswith(request)]
    assert "pending" in line and "alice" in line, listed
    shown = json.loads(ok(approvals("show", request)))
    assert shown["arguments"] == canonical(arguments) and shown["principal"] == "alice", shown
    ok(approvals("approve", request, "--reason", "approved on the other replica"))
    [decided] = b.events("approval-decided", 1)
    assert decided["request"] == request and decided["principal"] == "bob", decided

    assert call(on_a, arguments)["result"]["content"][0]["text"] == "transfer_payment done"
    assert transfers(log_a) == [arguments] and transfers(log_b) == [], "ran once, on A"
    assert json.loads(ok(approvals("show", request)))["state"] == "consumed", "B sees A spend it"
    again = held_id(call(on_a, arguments))
    assert again != request, "a replay on A needs a new approval"
    assert transfers(log_a) == [arguments]
