"""Layer 6's log through `palisade serve` and the official Python SDK client: what a gateway writes verifies, an edit is found where it is, one entry can be proven alone, a kill -9 under load loses no acknowledged record, and a checkpoint copy kept elsewhere catches a rewritten tail.

The upstream is fixtures/limits_server.py (a plain tool server that logs
what it executes). Every stage that can be is passed through: what is tested
here is the log, not the layers writing into it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import anyio

from layer1 import cli, client, create_key, ok, run
from mcp.shared.exceptions import MCPError
from support import PASS_THROUGH, Gateway, audit_entries, audit_lines, http_request, palisade_bin, python_stdio, write_config


def audit_gateway(launcher: Any, tmp_path: Path, extra: str = "", pass_through: list[str] = PASS_THROUGH) -> tuple[Gateway, Path]:
    data_dir = tmp_path / "data"
    upstreams = {"files": {**python_stdio("limits_server.py", "files", str(tmp_path / "executed.jsonl")), "effects": {"read_file": "read"}}}
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams=upstreams, pass_through=pass_through, extra=extra)
    return launcher.gateway({}, data_dir=data_dir, config=config), config


def reads(gateway: Gateway, paths: list[str]) -> None:
    async def agent() -> None:
        async with client(gateway.url, None) as c:
            for path in paths:
                await c.call_tool("files__read_file", {"path": path})

    run(agent)


def refused_unaudited(gateway: Gateway, path: str, executed: Path, *, ran: str) -> None:
    """A call of `path` is refused because the log cannot hold it, and did not run (`ran` did, before)."""
    try:
        reads(gateway, [path])
    except Exception as e:  # the SDK's error, inside the task group's
        said = "".join(traceback.format_exception(e))
        assert "palisade cannot write its audit log" in said, said
    else:
        raise AssertionError(f"a session opened and {path} ran with no audit log to hold it")
    text = executed.read_text()
    assert ran in text and path not in text, "a call ran that the log could not hold"


def checkpoints(gateway: Gateway) -> list[dict[str, Any]]:
    path = gateway.data_dir / "audit.checkpoints.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_gateways_log_verifies_and_an_edit_is_found_where_it_is(launcher, tmp_path):
    gateway, config = audit_gateway(launcher, tmp_path)
    reads(gateway, [f"/r/{i}" for i in range(12)])
    gateway.proc.stop()  # SIGTERM: the gateway drains and signs what it wrote

    out = ok(cli(config, "audit", "verify"))
    assert "nothing altered" in out and "not yet signed" not in out, out
    entries = audit_entries(gateway.audit_path)
    assert [e["seq"] for e in entries] == list(range(len(entries))), "sequence numbers have gaps"
    outcomes = [e for e in entries if e["record"].get("event") == "call-outcome"]
    assert len(outcomes) == 12, [e["record"].get("event") for e in entries]
    assert checkpoints(gateway)[-1]["end"] == len(entries), checkpoints(gateway)[-1]
    report = json.loads(ok(cli(config, "audit", "verify", "--format", "json")))
    assert report["ok"] is True and report["report"]["entries"] == len(entries), report

    # One entry proven alone: the proof holds that entry and hashes, no other record.
    target = outcomes[5]
    proof_text = ok(cli(config, "audit", "prove", str(target["seq"])))
    proof = json.loads(proof_text)
    assert json.loads(proof["entry"])["record"]["arguments"] == {"path": "/r/5"}, proof
    assert "/r/4" not in proof_text and "/r/6" not in proof_text, "a proof shows other entries"
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(proof_text)
    out = ok(cli(config, "audit", "check-proof", str(proof_file)))
    assert f"entry {target['seq']} is in checkpoint" in out, out
    proof["entry"] = proof["entry"].replace("/r/5", "/r/9")
    proof_file.write_text(json.dumps(proof))
    forged = cli(config, "audit", "check-proof", str(proof_file))
    assert forged.returncode == 1 and "does not hold" in forged.stdout, forged

    # An edited record (what a tampering administrator would do) is found at the next entry's link.
    lines = gateway.audit_path.read_text().splitlines()
    k = target["seq"]
    lines[k] = lines[k].replace('"/r/5"', '"/etc/shadow"')
    gateway.audit_path.write_text("\n".join(lines) + "\n")
    broken = cli(config, "audit", "verify")
    assert broken.returncode == 1, broken
    assert f"broken at entry {k + 1} " in broken.stdout and f"entry {k} was altered" in broken.stdout, broken.stdout
    # A range is checked a checkpoint at a time: one covers every call here.
    assert cli(config, "audit", "verify", "--to", "1").returncode == 1


def test_kill_9_under_load_loses_no_acknowledged_record(launcher, tmp_path):
    gateway, config = audit_gateway(launcher, tmp_path)
    answered: list[str] = []
    stop = threading.Event()

    async def agent(n: int) -> None:
        try:
            async with client(gateway.url, None) as c:
                i = 0
                while not stop.is_set():
                    path = f"/{n}/{i}"
                    await c.call_tool("files__read_file", {"path": path})
                    answered.append(path)  # the answer came: its outcome was acknowledged first
                    i += 1
        except BaseException:  # the gateway is gone: this client is done
            pass

    async def load() -> None:
        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(agent, n)

    worker = threading.Thread(target=lambda: anyio.run(load))
    worker.start()
    deadline = time.monotonic() + 30
    while len(answered) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(gateway.proc.popen.pid, signal.SIGKILL)
    gateway.proc.popen.wait(timeout=10)
    stop.set()
    worker.join(timeout=60)
    assert len(answered) >= 200, f"only {len(answered)} calls answered before the kill"

    # The restarted gateway adopts what followed its last checkpoint and signs it.
    again = launcher.gateway({}, data_dir=gateway.data_dir, config=config)
    again.proc.stop()
    out = ok(cli(config, "audit", "verify"))
    assert "nothing altered" in out, out
    recorded = {
        r["arguments"]["path"]
        for r in audit_lines(gateway.audit_path)
        if r.get("event") == "call-outcome" and r.get("outcome", {}).get("status") == "completed"
    }
    lost = [p for p in answered if p not in recorded]
    assert lost == [], f"{len(lost)} answered calls have no outcome record: {lost[:5]}"


def test_a_checkpoint_copy_kept_elsewhere_catches_a_rewritten_tail(launcher, tmp_path):
    copy = tmp_path / "elsewhere" / "checkpoints.jsonl"
    copy.parent.mkdir()
    gateway, config = audit_gateway(launcher, tmp_path, f'[audit]\ncheckpoint_copy = "{copy}"\ncheckpoint_interval = "1h"\n')
    reads(gateway, ["/a", "/b"])
    gateway.proc.stop()
    out = ok(cli(config, "audit", "verify"))
    assert "checkpoints match the copy" in out, out

    # Cut the last checkpoint and the entries it covers, consistently.
    cps = (gateway.data_dir / "audit.checkpoints.jsonl").read_text().splitlines()
    last = json.loads(cps[-1])
    assert last["end"] > last["first"], "the closing checkpoint covers the calls"
    (gateway.data_dir / "audit.checkpoints.jsonl").write_text("".join(c + "\n" for c in cps[:-1]))
    entries = gateway.audit_path.read_text().splitlines()
    gateway.audit_path.write_text("".join(e + "\n" for e in entries[: last["first"]]))
    # Alone the log looks whole; the copy shows the cut.
    alone = cli(config, "audit", "verify", "--copy", "/dev/null")
    assert alone.returncode == 0, alone
    caught = cli(config, "audit", "verify")
    assert caught.returncode == 1 and "tail was removed or rewritten" in caught.stdout, caught.stdout


def test_bad_audit_settings_are_named_at_load(tmp_path):
    for extra, wanted in [
        ('[audit]\ncheckpoint_interval = "0s"\n', "`audit.checkpoint_interval`: must be greater than zero"),
        ('[audit]\ncheckpoint_interval = "soon"\n', "`audit.checkpoint_interval`: expected a duration"),
        ("[audit]\ncheckpoint_entries = 0\n", "`audit.checkpoint_entries`: must be at least 1"),
        ("[audit]\ncheckpoint_every = 3\n", "`audit.checkpoint_every`: unknown field"),
    ]:
        config = write_config(tmp_path / "p.toml", data_dir=tmp_path / "d", upstreams={}, extra=extra)
        done = cli(config, "check")
        assert done.returncode != 0 and wanted in done.stderr, (extra, done.stderr)


def test_each_user_sees_their_own_calls_with_the_verdict_and_why(launcher, tmp_path):
    extra = '[auth]\nanonymous = false\n\n[limits.rules.once]\nrate = "1/1h"\ntools = ["files/read_file"]\n'
    gateway, config = audit_gateway(launcher, tmp_path, extra, [s for s in PASS_THROUGH if s != "limits"])
    alice, bob = create_key(config, "alice"), create_key(config, "bob")

    async def calls(token: str, paths: list[str]) -> int:
        refused = 0
        async with client(gateway.url, token) as c:
            for path in paths:
                try:
                    await c.call_tool("files__read_file", {"path": path})
                except MCPError:
                    refused += 1
        return refused

    assert run(calls, alice, ["/alice/1", "/alice/2"]) == 1
    assert run(calls, bob, ["/bob/1"]) == 0

    text = ok(cli(config, "activity", "--user", "alice"))
    lines = text.splitlines()
    assert len(lines) == 2 and "/bob" not in text, text
    assert "files/read_file  read  completed" in lines[0], lines
    assert "denied  (limits denied: " in lines[1] and "`once`" in lines[1], lines
    actions = json.loads(ok(cli(config, "activity", "--user", "alice", "--since", "1h", "--format", "json")))
    assert [a["arguments"]["path"] for a in actions] == ["/alice/1", "/alice/2"], actions
    assert [a["status"] for a in actions] == ["completed", "denied"], actions
    assert "no calls by `carol`" in ok(cli(config, "activity", "--user", "carol"))

    def activity(token: str | None, query: str = "") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        reply = http_request(gateway.base, "GET", f"/activity{query}", headers=headers)
        return reply.status, json.loads(reply.body or b"null")

    status, body = activity(bob)
    assert status == 200 and body["principal"] == "bob", body
    assert [a["arguments"]["path"] for a in body["actions"]] == ["/bob/1"], body
    status, body = activity(alice, "?since=1h&limit=1")
    assert status == 200 and [a["status"] for a in body["actions"]] == ["denied"], body
    # No one can ask for someone else's: the credential decides whose.
    status, body = activity(bob, "?principal=alice")
    assert status == 400 and "unknown parameter `principal`" in body["error"], body
    assert activity(None)[0] == 401
    assert activity("pk_live_forged")[0] == 401
    assert activity(alice, "?since=yesterday")[0] == 400

    # Two tenants' principals may share an id: each sees only their tenant's calls.
    carol_acme, carol_globex = create_key(config, "carol", tenant="acme"), create_key(config, "carol", tenant="globex")
    # (The `once` limit counts by principal id, so the second carol is refused: a call all the same.)
    assert run(calls, carol_acme, ["/acme/1"]) == 0
    assert run(calls, carol_globex, ["/globex/1"]) == 1
    for token, mine in [(carol_acme, "/acme/1"), (carol_globex, "/globex/1")]:
        status, body = activity(token)
        assert status == 200 and [a["arguments"]["path"] for a in body["actions"]] == [mine], body
    acme = json.loads(ok(cli(config, "activity", "--user", "carol", "--tenant", "acme", "--format", "json")))
    assert [a["arguments"]["path"] for a in acme] == ["/acme/1"], acme
    assert "no calls by `carol`" in ok(cli(config, "activity", "--user", "carol")), "a tenant's calls shown without --tenant"

    # Each action names its entry, which `audit prove` shows alone once signed.
    gateway.proc.stop()
    proof = json.loads(ok(cli(config, "audit", "prove", str(actions[0]["seq"]))))
    assert json.loads(proof["entry"])["record"]["arguments"] == {"path": "/alice/1"}, proof


def test_a_full_disk_refuses_what_it_cannot_record_and_the_chain_goes_on_once_there_is_room(launcher, tmp_path):
    """The data directory on a 1 MiB tmpfs of the gateway's own mount namespace, filled up under it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # Unsandboxed: a sandbox cannot be built inside the test's user namespace.
    upstream = {**python_stdio("limits_server.py", "files", str(tmp_path / "executed.jsonl")), "effects": {"read_file": "read"}, "sandbox": "off"}
    for key in ("bind", "bind_ro"):
        upstream.pop(key, None)
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams={"files": upstream}, pass_through=PASS_THROUGH)
    # unshare execs sh, which execs palisade: one pid, whose /proc/PID/root shows its mounts.
    script = f'mount -t tmpfs -o size=1m palisade-full "{data_dir}" && exec "$0" serve --config "$1"'
    proc = launcher.process(["unshare", "-Urm", "sh", "-c", script, palisade_bin(), str(config)], what="palisade-serve-full")
    port = int(proc.wait_for(r"listening on https?://127\.0\.0\.1:(\d+)/mcp").group(1))
    gateway = Gateway(proc=proc, port=port, data_dir=data_dir, config=config)
    inside = Path(f"/proc/{proc.popen.pid}/root") / data_dir.relative_to("/")
    assert (inside / "audit.jsonl").exists() and not (data_dir / "audit.jsonl").exists(), "the log is not on the tmpfs"

    reads(gateway, ["/before"])
    filler = inside / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)

    refused_unaudited(gateway, "/full", tmp_path / "executed.jsonl", ran="/before")
    assert re.search(r"No space left on device", proc.output()), proc.output()[-3000:]

    filler.unlink()
    reads(gateway, ["/after"])
    # What the log holds, copied out of the namespace: whole, chained, signed, the refused call absent.
    copy = tmp_path / "copy"
    shutil.copytree(inside, copy / "data", ignore=shutil.ignore_patterns("filler", "*.lock"))
    copy_config = copy / "palisade.toml"
    copy_config.write_text(config.read_text().replace(str(data_dir), str(copy / "data")))
    assert "nothing altered" in ok(cli(copy_config, "audit", "verify"))
    paths = [e["record"]["arguments"]["path"] for e in audit_entries(copy / "data" / "audit.jsonl") if e["record"].get("event") == "call-outcome"]
    assert paths == ["/before", "/after"], paths
