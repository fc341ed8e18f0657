"""Layer 2 end to end: the broker injects secrets only toward their bound destinations, and no byte palisade emits holds one.

The upstreams are real processes: an HTTP MCP server (and REST API) that
refuses requests without its key, and a stdio server that reads its key from
the environment and, in a second tool, leaks it in every encoding. The client
is the official Python SDK. Then every byte palisade wrote (what the clients
received, its stdout and stderr, the audit log, the SQLite database, the vault
file) is searched for each secret and each encoding of it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from mcp.shared.exceptions import MCPError

from layer1 import cli, client, jsonl, ok, run, text_of
from support import FIXTURES, Launcher, RawSession, audit_lines, free_port, palisade_bin, python_stdio, wrapped

PASSPHRASE = "correct horse battery staple"
PASS_THROUGH = ["authorize", "approval", "limits", "outbound-filter", "inbound-filter"]


def fresh(prefix: str) -> str:
    """A value no test has seen: found anywhere, it leaked from this run."""
    return prefix + random.token_urlsafe(30).replace("-", "x").replace("_", "y")


def encodings(value: str) -> dict[str, str]:
    """Each form the redactor promises to catch, as the substring it leaves in text."""
    raw = value.encode()
    out = {
        "raw": value,
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "percent": quote(value, safe=""),
        "json": json.dumps(value)[1:-1],
        "split": value[: len(value) // 2] + " " + value[len(value) // 2 :],
        "zero-width": "\u200b".join(value),
    }
    for lead in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * lead + raw).decode().rstrip("=")
            start, end = -(-lead * 8 // 6), (lead + len(raw)) * 8 // 6
            out[f"{name}@{lead}"] = encoded[start:end]
    return out


def leaks(blob: bytes, value: str) -> list[str]:
    """The encodings of `value` found in `blob` (empty: none)."""
    return [name for name, form in encodings(value).items() if form.encode() in blob]


def everything_written(root: Path, data_dir: Path) -> bytes:
    """Every file under the test's log directory and palisade's data directory."""
    blob = b""
    for base in (root / "logs", data_dir):
        for path in sorted(base.rglob("*")):
            if path.is_file():
                blob += path.read_bytes()
    return blob


def env_with_passphrase() -> dict[str, str]:
    return {"PALISADE_VAULT_PASSPHRASE": PASSPHRASE}


def set_secret(config: Path, name: str, value: str, *, command: str = "set") -> None:
    ok(cli(config, "secrets", command, name, stdin=value, env=env_with_passphrase()))


class Keyed:
    """The keyed HTTP server, its key file and its request log."""

    def __init__(self, launcher: Launcher, root: Path, key: str) -> None:
        self.port = free_port()
        self.key_file = root / "http-key"
        self.key_file.write_text(key)
        self.log = root / "http-requests.jsonl"
        proc = launcher.process(
            [sys.executable, str(FIXTURES / "keyed_http_server.py"), str(self.port), str(self.key_file), str(self.log)],
            what="keyed-http",
        )
        deadline = time.monotonic() + 30
        while not self.up():
            assert proc.popen.poll() is None, proc.output()
            assert time.monotonic() < deadline, "the keyed HTTP server did not start"
            time.sleep(0.05)

    def up(self) -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict[str, Any]]:
        return jsonl(self.log)


def secrets_config(root: Path, data_dir: Path, port: int, *, vault: str = "", methods: str = "") -> tuple[Path, str]:
    extra = f"""
{vault}
[secrets.tickets]
upstreams = ["tickets", "web"]
destination = "http://127.0.0.1:{port}/"
{methods}
header = "Authorization"
format = "Bearer {{}}"
rotate_every = "30d"

[secrets.github]
upstreams = ["keyed"]
env = "GITHUB_TOKEN"
"""
    upstreams = {
        "tickets": {"url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": {"secret": "tickets"}}},
        "keyed": {**python_stdio("keyed_stdio_server.py", "GITHUB_TOKEN"), "env": {"GITHUB_TOKEN": {"secret": "github"}}},
        "web": {"builtin": "http_request", "default_effect": "egress"},
    }
    from support import config_text

    path = root / "palisade.toml"
    path.write_text(config_text(data_dir=data_dir, upstreams=upstreams, pass_through=PASS_THROUGH, extra=extra))
    return path, extra


def http_request(url: str, **rest: Any) -> dict[str, Any]:
    return {"url": url, **rest}


async def drive(url: str, keyed_base: str) -> dict[str, str]:
    """One SDK session through every kind of call; returns each call's text."""
    texts: dict[str, str] = {}
    async with client(url, None) as session:
        names = {t.name for t in (await session.list_tools()).tools}
        assert {"tickets__tickets", "keyed__check", "keyed__leak", "web__http_request"} <= names, names
        texts["tickets"] = text_of(await session.call_tool("tickets__tickets", {}))
        texts["check"] = text_of(await session.call_tool("keyed__check", {}))
        texts["leak"] = text_of(await session.call_tool("keyed__leak", {}))
        texts["brokered"] = text_of(
            await session.call_tool(
                "web__http_request",
                http_request(f"{keyed_base}/api/tickets", headers={"Authorization": "{{secret:tickets}}"}),
            )
        )
        texts["reflected"] = text_of(
            await session.call_tool(
                "web__http_request",
                http_request(f"{keyed_base}/api/echo", headers={"Authorization": "Bearer {{secret:tickets}}"}),
            )
        )
    return texts


def test_secrets_reach_only_their_upstreams_and_no_byte_palisade_emits_holds_one(launcher: Launcher, tmp_path: Path) -> None:
    tickets_key, github_key = fresh("tk_"), fresh("ghs_")
    keyed = Keyed(launcher, tmp_path, tickets_key)
    data_dir = tmp_path / "data"
    config, _ = secrets_config(tmp_path, data_dir, keyed.port)
    set_secret(config, "tickets", tickets_key)
    set_secret(config, "github", github_key)
    gateway = launcher.gateway({}, config=config, data_dir=data_dir, env=env_with_passphrase())

    texts = run(drive, gateway.url, keyed.base)
    # The keys did their work: the HTTP upstream saw its header, the
    # stdio upstream its variable, the brokered request its header.
    assert texts["tickets"] == "3 open tickets", texts
    assert texts["check"] == f"GITHUB_TOKEN is set ({len(github_key)} characters)", texts
    assert texts["brokered"].startswith("HTTP 200") and '"open": 3' in texts["brokered"], texts
    # A server that echoes the key back gets its answer withheld.
    assert "contains the injected secret `tickets`" in texts["reflected"], texts
    # The leaking tool's result reaches the client redacted, every encoding.
    assert "[REDACTED:secret:github]" in texts["leak"], texts
    assert not leaks(texts["leak"].encode(), github_key), texts["leak"]

    # The same leak over raw HTTP, to search the exact bytes on the wire
    # (SSE or JSON), and a stdio client through `palisade mcp`.
    raw = RawSession(gateway.base)
    raw.initialize()
    wire = raw.post(
        {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "keyed__leak", "arguments": {}, "_meta": {"progressToken": 1}}}
    ).body
    assert b"REDACTED:secret:github" in wire, wire
    stdio_out = wrap_and_leak(config, tmp_path, github_key)
    assert b"REDACTED:secret:github" in stdio_out, stdio_out

    # The HTTP upstream got the key only as the bound header, and the
    # placeholder never went out literally.
    sent = keyed.requests()
    assert sent and all({k.lower(): v for k, v in r["headers"].items()}.get("authorization") == f"Bearer {tickets_key}" for r in sent), sent
    assert not any("{{secret" in json.dumps(r) for r in sent), sent

    gateway.proc.stop()
    blob = everything_written(tmp_path, data_dir) + wire + stdio_out + json.dumps(texts).encode()
    # The keyed server's own request log holds the key by design: leave it out.
    blob = blob.replace(keyed.log.read_bytes(), b"")
    for value in (tickets_key, github_key):
        assert leaks(blob, value) == [], f"{value[:4]}… leaked as {leaks(blob, value)}"

    # The audit records carry arguments and results, redacted, and each
    # brokered call says which secret went where.
    outcomes = [r for r in audit_lines(gateway.audit_path) if r.get("event") == "call-outcome"]
    codes = {f["code"] for r in outcomes for s in r.get("stages", []) for f in s.get("findings", [])}
    assert {"secret.bound", "secret.known"} <= codes, codes


def wrap_and_leak(config: Path, root: Path, value: str) -> bytes:
    """`palisade mcp` (stdio to the client) around the leaking server, with the
    value in its environment from outside: palisade knows it from the vault."""
    wrap_config = root / "wrap.toml"
    text = config.read_text()
    body = text.split("[upstreams.", 1)[0]
    wrap_config.write_text(body)
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "leak", "arguments": {}}},
    ]
    proc = subprocess.Popen(
        [palisade_bin(), "mcp", "--config", str(wrap_config), *wrapped(python_stdio("keyed_stdio_server.py", "LEAKED"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env_with_passphrase(), "LEAKED": value},
    )
    assert proc.stdin and proc.stdout
    out = b""
    for message in messages:
        proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()
        if "id" in message:
            line = proc.stdout.readline()
            while line and b'"id":' + str(message["id"]).encode() not in line.replace(b" ", b""):
                out += line
                line = proc.stdout.readline()
            out += line
    proc.stdin.close()  # end of input: palisade mcp shuts down
    assert proc.wait(timeout=30) is not None
    assert proc.stderr
    return out + proc.stdout.read() + proc.stderr.read()


# Each way a placeholder can aim a secret elsewhere, with what must be refused.
MISMATCHES = [
    ("other host", lambda b: http_request(b.replace("127.0.0.1", "localhost") + "/api/tickets", headers={"Authorization": "{{secret:tickets}}"})),
    ("other port", lambda b: http_request("http://127.0.0.1:1/api/tickets", headers={"Authorization": "{{secret:tickets}}"})),
    ("other scheme", lambda b: http_request(b.replace("http://", "https://") + "/api/tickets", headers={"Authorization": "{{secret:tickets}}"})),
    ("userinfo", lambda b: http_request(b.replace("http://", "http://evil@") + "/api/tickets", headers={"Authorization": "{{secret:tickets}}"})),
    ("host in userinfo", lambda b: http_request("http://127.0.0.1@localhost:1/api", headers={"Authorization": "{{secret:tickets}}"})),
    ("other header", lambda b: http_request(b + "/api/tickets", headers={"X-Debug": "{{secret:tickets}}"})),
    ("header name", lambda b: http_request(b + "/api/tickets", headers={"{{secret:tickets}}": "x"})),
    ("in the host", lambda b: http_request("http://{{secret:tickets}}.example.test/", headers={})),
    ("in the path", lambda b: http_request(b + "/api/{{secret:tickets}}")),
    ("in the body", lambda b: http_request(b + "/api/tickets", method="POST", body=json.dumps({"k": {"n": "{{secret:tickets}}"}}))),
    ("query, not bound there", lambda b: http_request(b + "/api/query?key={{secret:tickets}}")),
    ("unknown secret", lambda b: http_request(b + "/api/tickets", headers={"Authorization": "{{secret:nope}}"})),
    ("secret of another upstream", lambda b: http_request(b + "/api/tickets", headers={"Authorization": "{{secret:github}}"})),
    ("half a value", lambda b: http_request(b + "/api/tickets", headers={"Authorization": "x{{secret:tickets}}y"})),
]


def test_a_placeholder_aimed_anywhere_but_its_destination_is_refused_and_audited(launcher: Launcher, tmp_path: Path) -> None:
    key = fresh("tk_")
    keyed = Keyed(launcher, tmp_path, key)
    data_dir = tmp_path / "data"
    config, _ = secrets_config(tmp_path, data_dir, keyed.port, methods='methods = ["GET", "POST"]')
    set_secret(config, "tickets", key)
    set_secret(config, "github", fresh("ghs_"))
    gateway = launcher.gateway({}, config=config, data_dir=data_dir, env=env_with_passphrase())

    async def refused(session: Any, tool: str, arguments: dict[str, Any]) -> str:
        """The refusal's text: a denied call (a JSON-RPC error) or a tool error."""
        try:
            result = await session.call_tool(tool, arguments)
        except MCPError as denied:
            return f"denied: {denied}"
        assert result.isError, f"{tool} {arguments}: {text_of(result)}"
        return f"tool error: {text_of(result)}"

    async def attempt() -> dict[str, str]:
        results = {}
        async with client(gateway.url, None) as session:
            for what, build in MISMATCHES:
                results[what] = await refused(session, "web__http_request", build(keyed.base))
            # A method the binding does not list.
            results["method"] = await refused(
                session, "web__http_request", http_request(keyed.base + "/api/tickets", method="DELETE", headers={"Authorization": "{{secret:tickets}}"})
            )
            # A placeholder in another tool's arguments is never passed on.
            results["other tool"] = await refused(session, "keyed__check", {"note": "{{secret:tickets}}"})
        return results

    results = run(attempt)
    for what, text in results.items():
        assert text.startswith("denied: "), f"{what}: {text}"
        assert key not in text, what
    # Nothing with the key, and no literal placeholder, reached the server.
    sent = keyed.requests()
    # (The `tickets` upstream's own MCP session carries its key, as bound.)
    assert not any(r["path"].startswith("/api") for r in sent), sent
    assert not any("secret:" in json.dumps(r) for r in sent), sent
    # Each refusal is an audited deny naming the rule, never the value.
    outcomes = gateway.call_outcomes(len(results))
    assert len(outcomes) == len(results), outcomes
    assert all('"deny"' in json.dumps(r) for r in outcomes), [r.get("outcome") for r in outcomes]
    audit = gateway.audit_path.read_bytes()
    assert key.encode() not in audit
    for code in (b"secret.destination-mismatch", b"secret.placement", b"secret.unbound", b"secret.not-for-upstream", b"secret.placeholder-elsewhere"):
        assert code in audit, code


async def outcome(session: Any, tool: str) -> str:
    """A call's text, or `error: …` when it was refused or failed."""
    try:
        result = await session.call_tool(tool, {})
    except MCPError as refused:
        return f"error: {refused}"
    return ("error: " if result.isError else "") + text_of(result)


def test_rotation_and_revocation_apply_to_the_next_call_without_a_restart(launcher: Launcher, tmp_path: Path) -> None:
    first, second, gh1, gh2 = fresh("tk_"), fresh("tk_"), fresh("ghs_"), fresh("ghs_")
    keyed = Keyed(launcher, tmp_path, first)
    data_dir = tmp_path / "data"
    config, _ = secrets_config(tmp_path, data_dir, keyed.port)
    set_secret(config, "tickets", first)
    set_secret(config, "github", gh1)
    gateway = launcher.gateway({}, config=config, data_dir=data_dir, env=env_with_passphrase())

    async def calls() -> list[str]:
        out = []
        async with client(gateway.url, None) as session:
            out.append(text_of(await session.call_tool("tickets__tickets", {})))
            out.append(text_of(await session.call_tool("keyed__check", {})))
            # Rotate both while the session runs; the server now wants the new key.
            keyed.key_file.write_text(second)
            set_secret(config, "tickets", second, command="rotate")
            set_secret(config, "github", gh2 + "-longer", command="rotate")
            out.append(text_of(await session.call_tool("tickets__tickets", {})))
            out.append(text_of(await session.call_tool("keyed__check", {})))
            ok(cli(config, "secrets", "revoke", "tickets", env=env_with_passphrase()))
            out.append(await outcome(session, "tickets__tickets"))
        return out

    before, check_before, after, check_after, revoked = run(calls)
    assert before == "3 open tickets" and after == "3 open tickets", (before, after)
    assert check_before == f"GITHUB_TOKEN is set ({len(gh1)} characters)"
    # The stdio server was restarted with the rotated value.
    assert check_after == f"GITHUB_TOKEN is set ({len(gh2) + 7} characters)", check_after
    assert revoked.startswith("error:") and "revoked" in revoked, revoked
    shown = ok(cli(config, "secrets", "show", "tickets", env=env_with_passphrase()))
    assert "version:     2" in shown and "revoked" in shown and "last use:" in shown, shown
    assert first not in shown and second not in shown
    gateway.proc.stop()
    blob = everything_written(tmp_path, data_dir).replace(keyed.log.read_bytes(), b"")
    for value in (first, second, gh1, gh2):
        assert leaks(blob, value) == [], leaks(blob, value)


def test_a_vault_that_does_not_open_stops_the_start_and_changes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config, _ = secrets_config(tmp_path, data_dir, free_port())
    set_secret(config, "tickets", fresh("tk_"))
    vault = data_dir / "secrets.default.age"
    before = vault.read_bytes()
    wrong = cli(config, "secrets", "list", env={"PALISADE_VAULT_PASSPHRASE": "wrong"})
    assert wrong.returncode == 1 and "does not open the vault" in wrong.stderr, wrong.stderr
    serve = subprocess.run(
        [palisade_bin(), "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PALISADE_VAULT_PASSPHRASE": "wrong"},
    )
    assert serve.returncode != 0 and "does not open the vault" in serve.stderr, serve.stderr
    no_pass = subprocess.run(
        [palisade_bin(), "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "PALISADE_VAULT_PASSPHRASE"},
    )
    assert no_pass.returncode != 0 and "PALISADE_VAULT_PASSPHRASE" in no_pass.stderr, no_pass.stderr
    vault.write_bytes(before[: len(before) // 2])
    damaged = cli(config, "secrets", "list", env=env_with_passphrase())
    assert damaged.returncode == 1 and "vault" in damaged.stderr, damaged.stderr
    assert cli(config, "secrets", "set", "tickets", stdin="short", env=env_with_passphrase()).returncode == 1


def test_check_refuses_a_reference_its_binding_does_not_allow(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config, extra = secrets_config(tmp_path, data_dir, free_port())
    text = config.read_text()
    cases = [
        (text.replace('upstreams = ["tickets", "web"]', 'upstreams = ["web"]'), "is not bound to `tickets`"),
        (text.replace('{ "secret" = "tickets" }', '{ "secret" = "missing" }'), "no `[secrets.missing]`"),
        (text.replace('env = "GITHUB_TOKEN"', 'env = "OTHER"'), "goes in the environment variable `OTHER`"),
        (text.replace(f'destination = "http://127.0.0.1:', 'destination = "http://127.0.0.2:'), "is not: host"),
    ]
    for bad, message in cases:
        config.write_text(bad)
        done = cli(config, "check")
        assert done.returncode == 1 and message in done.stderr, (message, done.stderr)


def test_scan_reports_where_never_what(tmp_path: Path) -> None:
    token = "AKIA" + "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    dirty = tmp_path / "dirty.env"
    dirty.write_text(f"# deploy\nAWS_ACCESS_KEY_ID={token}\n")
    clean = tmp_path / "clean.txt"
    clean.write_text("nothing to see here\n")
    found = subprocess.run([palisade_bin(), "scan", str(dirty), str(clean)], capture_output=True, text=True, timeout=30)
    assert found.returncode == 1, found
    assert f"{dirty}:2:19: aws-access-key-id" in found.stdout, found.stdout
    assert token not in found.stdout + found.stderr
    as_json = subprocess.run([palisade_bin(), "scan", "--format", "json", "-"], input=dirty.read_text(), capture_output=True, text=True, timeout=30)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)[0]["line"] == 2, as_json.stdout
    quiet = subprocess.run([palisade_bin(), "scan", str(clean)], capture_output=True, text=True, timeout=30)
    assert quiet.returncode == 0 and quiet.stdout == "", quiet


def openbao() -> tuple[str, str]:
    url = os.environ.get("PALISADE_TEST_OPENBAO", "").strip()
    token = os.environ.get("PALISADE_TEST_OPENBAO_TOKEN", "").strip()
    if not (url and token):
        how = "start one with `scripts/openbao start` and export PALISADE_TEST_OPENBAO and PALISADE_TEST_OPENBAO_TOKEN (scripts/test does)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but OpenBao is not: {how}")
        pytest.skip(f"OpenBao not running: {how}")
    return url, token


def test_openbao_backed_secrets_work_end_to_end_with_rotation_and_revocation(launcher: Launcher, tmp_path: Path) -> None:
    url, token = openbao()
    first, second = fresh("tk_"), fresh("tk_")
    keyed = Keyed(launcher, tmp_path, first)
    data_dir = tmp_path / "data"
    environment = "e2e" + random.token_hex(4)
    vault = f'[vault]\nbackend = "openbao"\naddress = "{url}"\ntoken_env = "E2E_BAO_TOKEN"\n'
    config, _ = secrets_config(tmp_path, data_dir, keyed.port, vault=vault)
    config.write_text(f'environment = "{environment}"\n' + config.read_text())
    env = {"E2E_BAO_TOKEN": token}
    ok(cli(config, "secrets", "set", "tickets", stdin=first, env=env))
    ok(cli(config, "secrets", "set", "github", stdin=fresh("ghs_"), env=env))
    gateway = launcher.gateway({}, config=config, data_dir=data_dir, env=env)

    async def calls() -> list[str]:
        out = []
        async with client(gateway.url, None) as session:
            out.append(text_of(await session.call_tool("tickets__tickets", {})))
            keyed.key_file.write_text(second)
            ok(cli(config, "secrets", "rotate", "tickets", stdin=second, env=env))
            out.append(text_of(await session.call_tool("tickets__tickets", {})))
            brokered = await session.call_tool("web__http_request", http_request(keyed.base + "/api/tickets", headers={"Authorization": "{{secret:tickets}}"}))
            out.append(text_of(brokered))
            ok(cli(config, "secrets", "revoke", "tickets", env=env))
            out.append(await outcome(session, "tickets__tickets"))
        return out

    before, after, brokered, revoked = run(calls)
    assert before == "3 open tickets" and after == "3 open tickets", (before, after)
    assert brokered.startswith("HTTP 200"), brokered
    assert revoked.startswith("error:") and "revoked" in revoked, revoked
    listed = ok(cli(config, "secrets", "list", env=env))
    assert "tickets" in listed and "revoked" in listed, listed
    gateway.proc.stop()
    blob = everything_written(tmp_path, data_dir).replace(keyed.log.read_bytes(), b"")
    for value in (first, second, token):
        assert leaks(blob, value) == [], leaks(blob, value)
