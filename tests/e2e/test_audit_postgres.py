"""Layer 6's log on a real PostgreSQL server: tables owned by another role, the gateway's role may only read and insert, one chain per node; rows a superuser changes past the grants and the triggers are found by `palisade audit verify`, a kill -9 under load loses no answered call, a second gateway on one node is refused, each node streams its own rows to the SIEM sinks, and a user sees their calls from every node.

Each test gets a fresh database (test_shared_state's fixture) and two roles
of its own: the tables' owner, who runs `palisade audit init-postgres`, and
the gateway's role. The server from scripts/postgres trusts loopback
connections, so a role's URL is the server's URL with that user.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from layer1 import cli, client, create_key, ok
from support import free_port, http_request, palisade_bin
from test_audit_log import audit_gateway, reads, refused_unaudited
from test_audit_sinks import Receiver, wait_for, webhook
from test_shared_state import database, psql  # noqa: F401  (database is a fixture)


def as_user(url: str, user: str) -> str:
    """`url` logging in as `user` (no password: the test server trusts loopback)."""
    scheme, _, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    host = authority.rsplit("@", 1)[-1]
    return f"{scheme}://{user}@{host}/{path}"


def query(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql], capture_output=True, text=True, timeout=60)


@pytest.fixture
def roles(database: str) -> Iterator[dict[str, str]]:  # noqa: F811
    """The owner's and the gateway's URLs on a fresh database with the audit tables made."""
    tag = uuid.uuid4().hex[:10]
    owner, gateway = f"audit_owner_{tag}", f"audit_gw_{tag}"
    psql(database, f"CREATE ROLE {owner} LOGIN; CREATE ROLE {gateway} LOGIN; GRANT CREATE ON SCHEMA public TO {owner}")
    try:
        done = subprocess.run(
            [palisade_bin(), "audit", "init-postgres", "--url", as_user(database, owner), "--gateway-role", gateway],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"`{gateway}` may read and insert" in done.stdout, done.stdout
        yield {"super": database, "owner": as_user(database, owner), "gateway": as_user(database, gateway)}
    finally:
        psql(database, f"DROP OWNED BY {owner}, {gateway} CASCADE")
        psql(database, f"DROP ROLE IF EXISTS {owner}; DROP ROLE IF EXISTS {gateway}")


def pg_gateway(launcher: Any, tmp_path: Path, url: str, node: str, extra: str = "") -> tuple[Any, Path]:
    settings = f'[audit]\npostgres = "{url}"\nnode = "{node}"\n{extra}'
    tmp_path.mkdir(parents=True, exist_ok=True)  # the upstream's log is bound into its sandbox: it must exist
    return audit_gateway(launcher, tmp_path, settings)


def serve_refused(config: Path) -> str:
    """`palisade serve` that must refuse to start; returns what it said."""
    done = subprocess.run([palisade_bin(), "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, f"the gateway started: {done.stderr}"
    return done.stderr


def test_the_gateway_may_only_insert_and_a_superusers_edits_are_found(launcher, tmp_path, roles):
    copy = tmp_path / "elsewhere" / "checkpoints.jsonl"
    copy.parent.mkdir()
    gateway, config = pg_gateway(launcher, tmp_path, roles["gateway"], "gw-a", f'checkpoint_copy = "{copy}"\n')
    reads(gateway, [f"/r/{i}" for i in range(12)])
    gateway.proc.stop()
    assert not (gateway.data_dir / "audit.jsonl").exists(), "the log went to the data directory, not PostgreSQL"

    out = ok(cli(config, "audit", "verify"))
    assert "node `gw-a`" in out and "nothing altered" in out and "checkpoints match the copy" in out, out
    activity = json.loads(ok(cli(config, "activity", "--user", "anonymous", "--format", "json")))
    assert len(activity) == 12 and all(a["status"] == "completed" for a in activity), activity
    rows = query(roles["super"], "SELECT seq, line FROM palisade_audit_entries WHERE node = 'gw-a' ORDER BY seq").stdout.splitlines()
    entries = [json.loads(r.split("|", 1)[1]) for r in rows]
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    target = next(e for e in entries if e["record"].get("event") == "call-outcome" and e["record"]["arguments"] == {"path": "/r/5"})
    k = target["seq"]

    # One entry proven alone, from the rows.
    proof_text = ok(cli(config, "audit", "prove", str(k)))
    assert "/r/4" not in proof_text and "/r/6" not in proof_text, "a proof shows other entries"
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(proof_text)
    assert f"entry {k} is in checkpoint" in ok(cli(config, "audit", "check-proof", str(proof_file)))

    # The gateway's own role cannot change a row: neither the grant nor the trigger lets it.
    for sql in [
        f"UPDATE palisade_audit_entries SET line = 'x' WHERE node = 'gw-a' AND seq = {k}",
        f"DELETE FROM palisade_audit_entries WHERE node = 'gw-a' AND seq = {k}",
        "TRUNCATE palisade_audit_checkpoints",
    ]:
        refused = query(roles["gateway"], sql)
        assert refused.returncode != 0 and "permission denied" in refused.stderr, (sql, refused.stderr)
    # The owner is stopped by the triggers.
    refused = query(roles["owner"], f"DELETE FROM palisade_audit_entries WHERE node = 'gw-a' AND seq = {k}")
    assert refused.returncode != 0 and "append-only" in refused.stderr, refused.stderr

    # A gateway whose role could rewrite the log does not start.
    too_strong = tmp_path / "strong"
    too_strong.mkdir()
    strong_config = too_strong / "palisade.toml"
    strong_config.write_text(config.read_text().replace(roles["gateway"], roles["super"]).replace('"gw-a"', '"gw-s"'))
    said = serve_refused(strong_config)
    assert "may UPDATE on palisade_audit_entries" in said and "SELECT and INSERT only" in said, said

    # A superuser passes grants and triggers: each change is still found, and where.
    def tamper(sql: str) -> subprocess.CompletedProcess[str]:
        done = query(roles["super"], f"SET session_replication_role = replica; {sql}")
        assert done.returncode == 0, (sql, done.stderr)
        return cli(config, "audit", "verify")

    original = query(roles["super"], f"SELECT line FROM palisade_audit_entries WHERE node = 'gw-a' AND seq = {k}").stdout.strip()
    edited = tamper(f"UPDATE palisade_audit_entries SET line = replace(line, '/r/5', '/etc/shadow') WHERE node = 'gw-a' AND seq = {k}")
    assert edited.returncode == 1, edited.stdout
    assert f"broken at entry {k + 1} (palisade_audit_entries row {k + 2})" in edited.stdout, edited.stdout
    assert f"entry {k} was altered" in edited.stdout, edited.stdout

    restore = original.replace("'", "''")
    assert tamper(f"UPDATE palisade_audit_entries SET line = '{restore}' WHERE node = 'gw-a' AND seq = {k}").returncode == 0

    deleted = tamper(f"DELETE FROM palisade_audit_entries WHERE node = 'gw-a' AND seq = {k}")
    assert deleted.returncode == 1 and f"holds entry {k + 1} where entry {k} belongs" in deleted.stdout, deleted.stdout
    assert tamper(f"INSERT INTO palisade_audit_entries VALUES ('gw-a', {k}, '{restore}')").returncode == 0

    # Reordered: two entries swap places.
    swapped = tamper(
        f"UPDATE palisade_audit_entries SET seq = -1 WHERE node = 'gw-a' AND seq = {k};"
        f"UPDATE palisade_audit_entries SET seq = {k} WHERE node = 'gw-a' AND seq = {k + 1};"
        f"UPDATE palisade_audit_entries SET seq = {k + 1} WHERE node = 'gw-a' AND seq = -1"
    )
    assert swapped.returncode == 1 and f"broken at entry {k} " in swapped.stdout, swapped.stdout
    tamper(
        f"UPDATE palisade_audit_entries SET seq = -1 WHERE node = 'gw-a' AND seq = {k};"
        f"UPDATE palisade_audit_entries SET seq = {k} WHERE node = 'gw-a' AND seq = {k + 1};"
        f"UPDATE palisade_audit_entries SET seq = {k + 1} WHERE node = 'gw-a' AND seq = -1"
    )
    assert cli(config, "audit", "verify").returncode == 0

    # A checkpoint's signature does not survive an edit.
    forged = tamper("""UPDATE palisade_audit_checkpoints SET line = replace(line, '"time":"20', '"time":"19') WHERE node = 'gw-a' AND n = 1""")
    assert forged.returncode == 1 and "checkpoint 1 (palisade_audit_checkpoints row 2)" in forged.stdout, forged.stdout
    tamper("""UPDATE palisade_audit_checkpoints SET line = replace(line, '"time":"19', '"time":"20') WHERE node = 'gw-a' AND n = 1""")

    # The tail cut consistently (last checkpoint and its entries) looks whole on its own; the copy catches it.
    last = json.loads(query(roles["super"], "SELECT line FROM palisade_audit_checkpoints WHERE node = 'gw-a' ORDER BY n DESC LIMIT 1").stdout)
    assert last["end"] > last["first"], "the closing checkpoint covers the calls"
    n, first = last["n"], last["first"]
    tamper(f"DELETE FROM palisade_audit_checkpoints WHERE node = 'gw-a' AND n = {n}; DELETE FROM palisade_audit_entries WHERE node = 'gw-a' AND seq >= {first}")
    assert cli(config, "audit", "verify", "--copy", "/dev/null").returncode == 0
    caught = cli(config, "audit", "verify")
    assert caught.returncode == 1 and "tail was removed or rewritten" in caught.stdout, caught.stdout


def test_nodes_write_their_own_chains_a_kill_9_loses_nothing_and_one_node_has_one_writer(launcher, tmp_path, roles):
    a, config_a = pg_gateway(launcher, tmp_path / "a", roles["gateway"], "gw-a")
    b, config_b = pg_gateway(launcher, tmp_path / "b", roles["gateway"], "gw-b")

    # A second gateway on node gw-a while the first writes it: refused, by name.
    (tmp_path / "a2").mkdir()
    config_a2 = tmp_path / "a2" / "palisade.toml"
    config_a2.write_text(config_a.read_text().replace(str(a.data_dir), str(tmp_path / "a2" / "data")))
    said = serve_refused(config_a2)
    assert "another gateway is writing the audit chain of node `gw-a`" in said, said

    answered: list[str] = []
    stop = threading.Event()

    async def agent(gateway: Any, name: str) -> None:
        try:
            async with client(gateway.url, None) as c:
                i = 0
                while not stop.is_set():
                    path = f"/{name}/{i}"
                    await c.call_tool("files__read_file", {"path": path})
                    answered.append(path)
                    i += 1
        except BaseException:  # the gateway is gone: this client is done
            pass

    async def load() -> None:
        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(agent, a, f"a{n}")
            for n in range(2):
                tg.start_soon(agent, b, f"b{n}")

    worker = threading.Thread(target=lambda: anyio.run(load))
    worker.start()
    deadline = time.monotonic() + 30
    while len([p for p in answered if p.startswith("/a")]) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(a.proc.popen.pid, signal.SIGKILL)
    a.proc.popen.wait(timeout=10)
    time.sleep(0.5)
    stop.set()
    worker.join(timeout=60)
    b.proc.stop()
    on_a = [p for p in answered if p.startswith("/a")]
    assert len(on_a) >= 150 and len(answered) > len(on_a), f"{len(on_a)} calls answered by gw-a, {len(answered) - len(on_a)} by gw-b"

    # Restarted, node gw-a adopts what followed its last checkpoint and signs it.
    again = launcher.gateway({}, data_dir=a.data_dir, config=config_a)
    again.proc.stop()
    for config, node, data in [(config_a, "gw-a", a.data_dir), (config_b, "gw-b", b.data_dir)]:
        out = ok(cli(config, "audit", "verify"))
        assert f"node `{node}`" in out and "nothing altered" in out, out
    # Node gw-b's chain checked from gateway a's config, with gw-b's key.
    out = ok(cli(config_a, "audit", "verify", "--node", "gw-b", "--key", str(b.data_dir / "keys" / "audit.ed25519.pub")))
    assert "node `gw-b`" in out and "nothing altered" in out, out
    wrong_key = cli(config_a, "audit", "verify", "--node", "gw-b")
    assert wrong_key.returncode == 1 and "not by the expected key" in wrong_key.stdout, wrong_key.stdout

    rows = query(roles["super"], "SELECT node, line FROM palisade_audit_entries ORDER BY node, seq").stdout.splitlines()
    recorded = set()
    for row in rows:
        node, line = row.split("|", 1)
        record = json.loads(line)["record"]
        if record.get("event") == "call-outcome" and record.get("outcome", {}).get("status") == "completed":
            recorded.add((node, record["arguments"]["path"]))
    lost = [p for p in answered if (("gw-a" if p.startswith("/a") else "gw-b"), p) not in recorded]
    assert lost == [], f"{len(lost)} answered calls have no outcome row: {lost[:5]}"


def test_a_missing_database_or_table_is_named_at_start(launcher, tmp_path, database):  # noqa: F811
    # No tables yet: the gateway says how to make them.
    gateway_role = f"audit_gw_{uuid.uuid4().hex[:10]}"
    psql(database, f"CREATE ROLE {gateway_role} LOGIN")
    try:
        config = tmp_path / "palisade.toml"
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n[audit]\npostgres = "{as_user(database, gateway_role)}"\nnode = "n1"\n')
        said = serve_refused(config)
        assert "has no audit tables" in said and "palisade audit init-postgres" in said, said
    finally:
        psql(database, f"DROP ROLE IF EXISTS {gateway_role}")
    # Nothing listening: the address is named, the password is not.
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[audit]\npostgres = "postgres://u:hunter2@127.0.0.1:1/db"\nnode = "n1"\n')
    said = serve_refused(config)
    assert "cannot connect to postgresql at 127.0.0.1:1" in said and "hunter2" not in said, said
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[audit]\npostgres = "mysql://h/db"\n')
    done = cli(config, "check")
    assert done.returncode != 0 and "`audit.postgres`: must be a postgres:// or postgresql:// URL" in done.stderr, done.stderr


def test_a_log_that_cannot_be_written_refuses_calls_unless_the_operator_chose_to_continue(launcher, tmp_path, roles):
    refuse, _ = pg_gateway(launcher, tmp_path / "r", roles["gateway"], "gw-r")
    carry_on, _ = pg_gateway(launcher, tmp_path / "c", roles["gateway"], "gw-c", 'on_failure = "continue"\n')
    reads(refuse, ["/r/before"])
    reads(carry_on, ["/c/before"])

    # The owner takes the gateway's INSERT away: every append now fails, as a full or lost database would.
    role = roles["gateway"].split("://", 1)[1].split("@", 1)[0]
    psql(roles["owner"], f"REVOKE INSERT ON palisade_audit_entries FROM {role}")
    refused_unaudited(refuse, "/r/unaudited", tmp_path / "r" / "executed.jsonl", ran="/r/before")

    reads(carry_on, ["/c/unaudited"])
    assert "/c/unaudited" in (tmp_path / "c" / "executed.jsonl").read_text()
    health = json.loads(http_request(carry_on.base, "GET", "/healthz").body)
    assert any(d.startswith("audit: ") and "could not be written" in d for d in health["degraded"]), health["degraded"]
    assert not any(d.startswith("audit: ") for d in json.loads(http_request(refuse.base, "GET", "/healthz").body)["degraded"])

    # Writable again: the refusing gateway serves again, its chain intact.
    psql(roles["owner"], f"GRANT INSERT ON palisade_audit_entries TO {role}")
    reads(refuse, ["/r/after"])
    refuse.proc.stop()
    carry_on.proc.stop()
    out = ok(cli(tmp_path / "r" / "palisade.toml", "audit", "verify"))
    assert "node `gw-r`" in out and "nothing altered" in out, out


def test_each_node_streams_its_own_rows_to_the_sinks_and_a_sink_that_was_down_catches_up(launcher, tmp_path, roles):
    hook = Receiver(webhook)
    late_port = free_port()  # nothing listens here yet: this receiver is down
    sinks = (
        'checkpoint_interval = "1s"\n'
        f'[audit.sinks.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{hook.port}/audit"\nheaders = {{ X-Team = "secops" }}\n'
        f'[audit.sinks.late]\nkind = "webhook"\nurl = "http://127.0.0.1:{late_port}/audit"\nheaders = {{ X-Team = "secops" }}\n'
    )
    a, _ = pg_gateway(launcher, tmp_path / "a", roles["gateway"], "gw-a", sinks)
    b, _ = pg_gateway(launcher, tmp_path / "b", roles["gateway"], "gw-b")  # a node without sinks, in the same tables
    late = None
    try:
        reads(a, [f"/a/{i}" for i in range(8)])
        reads(b, ["/b/0", "/b/1"])

        def rows(table: str, column: str, node: str) -> set[int]:
            out = query(roles["super"], f"SELECT {column} FROM {table} WHERE node = '{node}'").stdout
            return {int(v) for v in out.split()}

        def arrived() -> bool:
            return rows("palisade_audit_entries", "seq", "gw-a") <= hook.seqs() and bool(hook.checkpoints())

        wait_for("gw-a's rows at the webhook", arrived)
        assert hook.problems == [], hook.problems
        assert max(hook.seqs()) == max(rows("palisade_audit_entries", "seq", "gw-a")), "the sink sent an entry no row holds"
        assert hook.checkpoints() <= rows("palisade_audit_checkpoints", "n", "gw-a")
        paths = {e["arguments"]["path"] for e in hook.events if e.get("event") == "call-outcome"}
        assert paths == {f"/a/{i}" for i in range(8)}, f"the sink got another node's records or missed some: {paths}"
        assert not (tmp_path / "a" / "data" / "audit.jsonl").exists() and not (a.data_dir / "audit.jsonl").exists()

        # The receiver that was down comes up and gets everything since the start.
        late = Receiver(webhook, port=late_port)
        wait_for("the late receiver to catch up", lambda: rows("palisade_audit_entries", "seq", "gw-a") <= late.seqs() and bool(late.checkpoints()))
        assert late.problems == [], late.problems
    finally:
        a.proc.stop()
        b.proc.stop()
        hook.close()
        if late:
            late.close()


def test_a_user_sees_their_calls_from_every_node_and_only_theirs(launcher, tmp_path, roles):
    auth = "[auth]\nanonymous = false\n"
    a, a_config = pg_gateway(launcher, tmp_path / "a", roles["gateway"], "gw-a", auth)
    b, b_config = pg_gateway(launcher, tmp_path / "b", roles["gateway"], "gw-b", auth)
    alice_a, alice_b, bob_b = create_key(a_config, "alice"), create_key(b_config, "alice"), create_key(b_config, "bob")

    async def calls(gateway: Any, token: str, paths: list[str]) -> None:
        async with client(gateway.url, token) as c:
            for path in paths:
                await c.call_tool("files__read_file", {"path": path})

    for gateway, token, paths in [(a, alice_a, ["/alice/1", "/alice/2"]), (b, alice_b, ["/alice/3"]), (b, bob_b, ["/bob/1"])]:
        anyio.run(calls, gateway, token, paths)

    actions = json.loads(ok(cli(a_config, "activity", "--user", "alice", "--format", "json")))
    assert [(x["arguments"]["path"], x["node"]) for x in actions] == [("/alice/1", "gw-a"), ("/alice/2", "gw-a"), ("/alice/3", "gw-b")], actions
    text = ok(cli(a_config, "activity", "--user", "alice", "--limit", "1"))
    assert len(text.splitlines()) == 1 and "on node `gw-b`" in text, text

    reply = http_request(b.base, "GET", "/activity", headers={"Authorization": f"Bearer {alice_b}"})
    body = json.loads(reply.body)
    assert reply.status == 200 and [x["arguments"]["path"] for x in body["actions"]] == ["/alice/1", "/alice/2", "/alice/3"], body
    reply = http_request(a.base, "GET", "/activity", headers={"Authorization": f"Bearer {alice_a}"})
    assert "/bob/" not in reply.body.decode(), reply.body

    # Each action's node and seq name its entry, which that node's chain (and key) proves alone.
    a.proc.stop()
    b.proc.stop()
    third = actions[2]
    proof = json.loads(ok(cli(b_config, "audit", "prove", str(third["seq"]))))
    assert json.loads(proof["entry"])["record"]["arguments"] == {"path": "/alice/3"}, proof
