"""The audit trail: a gateway-started record, call intent before the upstream hears of a call and
its outcome after, session records, refused methods, bounded strings, and upstream stderr relayed clean."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client

from support import (
    COMPLETED_STAGES,
    INTENT_STAGES,
    PASS_THROUGH,
    PROTOCOL_VERSION,
    Gateway,
    RawSession,
    StdioPeer,
    audit_lines,
    everything_stdio,
    filesystem_stdio,
    http_request,
    palisade_bin,
    wrapped,
    python_stdio,
    read_events,
    stop_group,
    unsandboxed,
    wait_for_text,
    write_config,
)

CLIENT_SECONDS = 60
# How long palisade may take to give up when its audit log cannot be written.
REFUSAL_SECONDS = 10
HEX64 = re.compile(r"^[0-9a-f]{64}$")
CALL_FIELDS = ("time", "call", "principal", "session", "kind", "server", "name", "effect", "arguments_sha256", "stages")
UNKNOWN_METHODS = ["foo/exec", "Tools/Call", "tools/call/"]


# ---------------------------------------------------------------------------
# Helpers


def jcs_sha256(arguments: dict[str, Any]) -> str:
    """SHA-256 of the RFC 8785 form of a flat object of strings and small integers."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stage_verdicts(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["stage"], s["verdict"]) for s in record["stages"]]


def call_pair(path: Path, call: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The intent and outcome records of one call, checked to be one of each and in that order."""
    records = audit_lines(path)
    intents = [(i, r) for i, r in enumerate(records) if r.get("event") == "call-intent" and r["call"] == call]
    outcomes = [(i, r) for i, r in enumerate(records) if r.get("event") == "call-outcome" and r["call"] == call]
    assert len(intents) == 1 and len(outcomes) == 1, f"call {call}: expected one intent and one outcome: {records}"
    (at_intent, intent), (at_outcome, outcome) = intents[0], outcomes[0]
    assert at_intent < at_outcome, f"call {call}: the outcome line comes before the intent line: {records}"
    return intent, outcome


def assert_call_record(record: dict[str, Any], *, kind: str, server: str, name: str) -> None:
    for key in CALL_FIELDS:
        assert key in record, f"{record.get('event')} record has no `{key}`: {record}"
    assert (record["kind"], record["server"], record["name"]) == (kind, server, name), record
    assert isinstance(record["call"], int), record
    assert HEX64.match(record["arguments_sha256"]), record
    for stage in record["stages"]:
        assert isinstance(stage["micros"], int) and stage["micros"] >= 0, stage


def assert_ran(path: Path, outcome: dict[str, Any], *, kind: str, server: str, name: str) -> dict[str, Any]:
    """A call that completed: its intent came first and listed the stages before execution, same call."""
    intent, again = call_pair(path, outcome["call"])
    assert again == outcome
    assert_call_record(intent, kind=kind, server=server, name=name)
    assert_call_record(outcome, kind=kind, server=server, name=name)
    assert stage_verdicts(intent) == INTENT_STAGES, intent["stages"]
    assert "outcome" not in intent, f"an intent record cannot know the outcome: {intent}"
    assert stage_verdicts(outcome) == COMPLETED_STAGES, outcome["stages"]
    assert outcome["outcome"]["status"] == "completed", outcome
    assert isinstance(outcome["latency_micros"], int) and outcome["latency_micros"] >= 0, outcome
    for key in ("principal", "session", "effect", "arguments_sha256"):
        assert intent[key] == outcome[key], f"`{key}` differs between intent and outcome: {intent} / {outcome}"
    return intent


def one_outcome(path: Path, *, status: str, seconds: float = 10) -> dict[str, Any]:
    """The single call-outcome record, once there is one."""
    records = read_events(path, "call-outcome", 1, seconds=seconds)
    assert len(records) == 1, f"expected one call-outcome record, got {audit_lines(path)}"
    assert records[0]["outcome"]["status"] == status, records[0]
    return records[0]


def error_code(message: dict[str, Any]) -> int:
    assert "error" in message, f"expected a JSON-RPC error, got {message}"
    return message["error"]["code"]


def received_methods(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def post_in_background(session: RawSession, message: dict[str, Any]) -> threading.Thread:
    """Sends a request whose answer the test does not wait for (a call that hangs)."""

    def send() -> None:
        try:
            session.post(message)
        except OSError:
            pass  # the gateway may close the stream without an answer: what the test checks is the record

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def hanging_call(rid: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": "slow__hang", "arguments": {}}}


def wait_exit(popen: subprocess.Popen[Any], seconds: float) -> int | None:
    try:
        return popen.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


@contextmanager
def palisade_mcp(tmp_path: Path, command: list[str], *, name: str | None = None) -> Iterator[tuple[StdioPeer, Path]]:
    """`palisade mcp` with `command` (sandbox flags, `--`, the server), with a config of its own; yields the peer and its audit log."""
    data_dir = tmp_path / "mcp-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path / "mcp.toml", data_dir=data_dir, upstreams={})
    argv = [palisade_bin(), "mcp", "--config", str(config)]
    if name is not None:
        argv += ["--name", name]
    peer = StdioPeer([*argv, *command], log_dir=tmp_path / "logs", name="palisade-mcp")
    try:
        yield peer, data_dir / "audit.jsonl"
    finally:
        peer.close()


def method_log_upstream(log: Path, **extra: Any) -> dict[str, Any]:
    return {**python_stdio("method_log_server.py", str(log)), **extra}


def python_argv(script: str, *args: str) -> list[str]:
    """`palisade mcp`'s arguments for a fixture: its sandbox flags, `--`, the server."""
    return wrapped(python_stdio(script, *args))


# ---------------------------------------------------------------------------
# Starting


def test_gateway_started_is_the_first_record(launcher, tmp_path):
    gateway = launcher.gateway({"only": method_log_upstream(tmp_path / "methods.log")})
    records = read_events(gateway.audit_path, "gateway-started", 1)
    assert records, f"no gateway-started record: {audit_lines(gateway.audit_path)}"
    first = audit_lines(gateway.audit_path)[0]
    assert first["event"] == "gateway-started", first
    version = subprocess.run([palisade_bin(), "--version"], capture_output=True, text=True, timeout=30).stdout
    assert isinstance(first["version"], str) and first["version"] and first["version"] in version, first
    assert set(PASS_THROUGH) <= set(first["pass_through"]), first
    assert isinstance(first["degraded"], list), first
    assert isinstance(first["time"], str) and first["time"], first


def test_serve_refuses_to_start_when_its_audit_log_cannot_be_written(launcher, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    audit = data_dir / "audit.jsonl"
    audit.symlink_to("/dev/full")
    shared = tmp_path / "shared"
    shared.mkdir()
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams={"files": filesystem_stdio(shared)})
    proc = launcher.process([palisade_bin(), "serve", "--config", str(config)], what="palisade-serve")
    code = wait_exit(proc.popen, REFUSAL_SECONDS)
    assert code is not None, f"palisade serve kept running with an unwritable audit log\n{proc.output()}"
    assert code != 0, proc.output()
    stderr = proc.stderr_path.read_text(errors="replace")
    assert str(audit) in stderr, f"stderr does not name the audit file {audit}\n{stderr}"
    assert "listening on" not in stderr, f"palisade served before it could audit\n{stderr}"


def test_mcp_refuses_to_start_when_its_audit_log_cannot_be_written(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    audit = data_dir / "audit.jsonl"
    audit.symlink_to("/dev/full")
    started = tmp_path / "started"  # pid_server.py writes a file here when it runs
    started.mkdir()
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams={})
    argv = [palisade_bin(), "mcp", "--config", str(config), *python_argv("pid_server.py", str(started))]
    stderr_path = tmp_path / "palisade-mcp.stderr"
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": {"name": "palisade-e2e", "version": "0"}},
    }
    with open(stderr_path, "wb") as err, open(tmp_path / "palisade-mcp.stdout", "wb") as out:
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err, start_new_session=True)
    try:
        # A client that starts right away: a palisade that ran would start the upstream for it.
        try:
            assert popen.stdin is not None
            popen.stdin.write(json.dumps(init).encode() + b"\n")
            popen.stdin.flush()
        except OSError:
            pass  # palisade already exited: what this test expects
        code = wait_exit(popen, REFUSAL_SECONDS)
        stderr = stderr_path.read_text(errors="replace")
        assert code is not None, f"palisade mcp kept running with an unwritable audit log\n{stderr}"
        assert code != 0, stderr
        assert str(audit) in stderr, f"stderr does not name the audit file {audit}\n{stderr}"
        assert list(started.iterdir()) == [], "the upstream command ran although nothing could be audited"
    finally:
        if popen.stdin is not None:
            try:
                popen.stdin.close()
            except OSError:
                pass
        stop_group(popen)


# ---------------------------------------------------------------------------
# Calls


def test_an_allowed_call_is_recorded_before_the_upstream_hears_of_it_and_after_it_ends(launcher, tmp_path):
    data_dir = tmp_path / "data"
    audit = data_dir / "audit.jsonl"
    # The server reads palisade's own audit log, which its sandbox would hide.
    peek = unsandboxed(python_stdio("peek_server.py", str(audit)))
    gateway = launcher.gateway({"peek": peek}, data_dir=data_dir)
    session = RawSession(gateway.base)
    session.initialize()
    arguments = {"b": "two", "a": 1}
    response = session.request("tools/call", {"name": "peek__peek", "arguments": arguments})
    result = response["result"]
    assert result.get("isError") is not True, response
    seen_by_upstream = json.loads(result["content"][0]["text"])

    outcome = one_outcome(audit, status="completed")
    assert outcome["outcome"] == {"status": "completed", "tool_error": False}, outcome
    intent = assert_ran(audit, outcome, kind="tool", server="peek", name="peek")
    assert outcome["call"] in seen_by_upstream, (
        f"the upstream got call {outcome['call']} before its call-intent record was in the log: {seen_by_upstream}"
    )
    assert intent["session"] == session.session_id, intent
    assert intent["arguments_sha256"] == jcs_sha256(arguments), intent


def test_malformed_tool_calls_are_invalid_params_and_recorded_as_invalid(launcher, tmp_path):
    log = tmp_path / "methods.log"
    gateway = launcher.gateway({"only": method_log_upstream(log)})
    session = RawSession(gateway.base)
    session.initialize()
    malformed = {
        "no-params": None,
        "no-name": {"arguments": {}},
        "number-name": {"name": 123, "arguments": {}},
        "array-arguments": {"name": "only__act", "arguments": [1, 2]},
    }
    for what, params in malformed.items():
        response = session.request("tools/call", params)
        assert error_code(response) == -32602, f"{what}: {response}"
    # A valid call last: by its answer, anything forwarded before it has reached the upstream.
    answer = session.request("tools/call", {"name": "only__act", "arguments": {}})
    assert answer["result"]["content"][0]["text"] == "acted", answer

    outcomes = gateway.call_outcomes(len(malformed) + 1)
    assert len(outcomes) == len(malformed) + 1, outcomes
    invalid = [r for r in outcomes if r["outcome"]["status"] == "invalid"]
    assert len(invalid) == len(malformed), f"each malformed call leaves an `invalid` outcome: {outcomes}"
    for record in invalid:
        assert "detail" in record["outcome"], record
        assert record["session"] == session.session_id, record
    assert outcomes[-1]["outcome"] == {"status": "completed", "tool_error": False}, outcomes[-1]
    intents = gateway.events("call-intent", 1)
    assert [r["call"] for r in intents] == [outcomes[-1]["call"]], "a malformed call got as far as execution"
    assert received_methods(log).count("tools/call") == 1, received_methods(log)


def test_an_unknown_tool_is_denied_at_authorize_and_a_huge_name_is_recorded_bounded(launcher, tmp_path):
    log = tmp_path / "methods.log"
    gateway = launcher.gateway({"only": method_log_upstream(log)}, server={"max_message_bytes": 8 * 1024 * 1024})
    session = RawSession(gateway.base)
    session.initialize()
    denied = {"status": "denied", "stage": "authorize", "code": "unknown-tool"}

    response = session.request("tools/call", {"name": "only__nope", "arguments": {}})
    assert response["result"].get("isError") is True, response
    [record] = gateway.call_outcomes(1)
    assert record["outcome"] == denied, record
    assert record["kind"] == "tool" and record["server"] == "only" and record["name"] == "nope", record

    huge = "x" * 4_000_000
    response = session.request("tools/call", {"name": huge, "arguments": {}})
    assert response["result"].get("isError") is True, "a call to a 4 MB tool name succeeded"
    records = gateway.call_outcomes(2)
    assert len(records) == 2, records
    record = records[1]
    assert record["outcome"] == denied, record
    name = record["name"]
    assert isinstance(name, dict), f"a 4 MB name is kept whole: {str(name)[:200]}"
    assert name["bytes"] == len(huge) and name["sha256"] == hashlib.sha256(huge.encode()).hexdigest(), name
    assert len(name["truncated"].encode()) <= 256 and huge.startswith(name["truncated"]), name
    lines = [line for line in gateway.audit_path.read_bytes().splitlines() if b'"call-outcome"' in line]
    assert len(lines[-1]) < 4096, f"the audit line of a 4 MB name is {len(lines[-1])} bytes"

    assert gateway.events("call-intent", 0) == [], "a call to an unknown tool got as far as execution"
    assert "tools/call" not in received_methods(log), received_methods(log)


def test_a_call_the_client_cancels_is_recorded_as_cancelled(launcher, tmp_path):
    cancellations = tmp_path / "cancellations.jsonl"
    gateway = launcher.gateway({"slow": python_stdio("hanging_server.py", str(cancellations))})
    session = RawSession(gateway.base)
    session.initialize()
    worker = post_in_background(session, hanging_call(41))
    intents = gateway.events("call-intent", 1)
    assert len(intents) == 1, f"the call never got as far as execution: {audit_lines(gateway.audit_path)}"
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 41, "reason": "test"}}
    assert session.post(cancel).status == 202

    outcome = one_outcome(gateway.audit_path, status="cancelled")
    assert outcome["outcome"] == {"status": "cancelled"}, outcome
    assert outcome["call"] == intents[0]["call"], (intents, outcome)
    assert_call_record(outcome, kind="tool", server="slow", name="hang")
    assert wait_for_text(cancellations, attempts=50).strip(), "the upstream was never told of the cancellation"
    assert "result" in session.request("ping")
    worker.join(timeout=10)


def test_a_call_past_its_request_timeout_is_recorded_as_timed_out(launcher, tmp_path):
    upstream = {**python_stdio("hanging_server.py", str(tmp_path / "cancellations.jsonl")), "request_timeout": "300ms"}
    gateway = launcher.gateway({"slow": upstream})
    session = RawSession(gateway.base)
    session.initialize()
    response = session.request("tools/call", {"name": "slow__hang", "arguments": {}})
    assert "error" in response or response["result"].get("isError"), response

    outcome = one_outcome(gateway.audit_path, status="timed-out")
    assert outcome["outcome"] == {"status": "timed-out"}, outcome
    intent, _ = call_pair(gateway.audit_path, outcome["call"])
    assert stage_verdicts(intent) == INTENT_STAGES, intent
    assert_call_record(outcome, kind="tool", server="slow", name="hang")


def test_deleting_a_session_mid_call_ends_the_call_and_the_session(launcher, tmp_path):
    gateway = launcher.gateway({"slow": python_stdio("hanging_server.py", str(tmp_path / "cancellations.jsonl"))})
    session = RawSession(gateway.base)
    session.initialize()
    worker = post_in_background(session, hanging_call(7))
    intents = gateway.events("call-intent", 1)
    assert len(intents) == 1, f"the call never got as far as execution: {audit_lines(gateway.audit_path)}"
    deleted = http_request(gateway.base, "DELETE", "/mcp", headers=session.headers(), seconds=10)
    assert deleted.status in (200, 202, 204), deleted

    outcome = one_outcome(gateway.audit_path, status="session-ended")
    assert outcome["outcome"] == {"status": "session-ended"}, outcome
    assert outcome["call"] == intents[0]["call"], (intents, outcome)
    closed = gateway.events("session-closed", 1)
    assert [(r["session"], r["reason"]) for r in closed] == [(session.session_id, "deleted")], closed
    worker.join(timeout=10)


def test_resources_prompts_and_completions_are_recorded_like_tool_calls(launcher):
    gateway = launcher.gateway({"everything": everything_stdio()})
    document = "demo://resource/static/document/features.md"
    template = "demo://resource/dynamic/text/{resourceId}"

    async def body() -> tuple[Any, ...]:
        with anyio.fail_after(CLIENT_SECONDS):
            async with Client(gateway.url) as client:
                read = await client.read_resource(document)
                prompt = await client.get_prompt("everything__args-prompt", {"city": "Paris"})
                by_prompt = await client.complete(
                    types.PromptReference(type="ref/prompt", name="everything__completable-prompt"),
                    {"name": "department", "value": "En"},
                )
                by_resource = await client.complete(
                    types.ResourceTemplateReference(type="ref/resource", uri=template),
                    {"name": "resourceId", "value": "3"},
                )
                return read, prompt, by_prompt, by_resource

    read, prompt, by_prompt, by_resource = anyio.run(body)
    assert "Everything Server - Features" in read.contents[0].text, read
    assert prompt.messages[0].content.text == "What's weather in Paris?", prompt
    assert by_prompt.completion.values == ["Engineering"], by_prompt
    assert by_resource.completion.values == ["3"], by_resource

    expected = [
        ("resource", document),
        ("prompt", "args-prompt"),
        ("completion", "ref/prompt:completable-prompt"),
        ("completion", f"ref/resource:{template}"),
    ]
    outcomes = gateway.call_outcomes(len(expected))
    assert [(r["kind"], r["name"]) for r in outcomes] == expected, outcomes
    for (kind, name), outcome in zip(expected, outcomes):
        assert_ran(gateway.audit_path, outcome, kind=kind, server="everything", name=name)
    assert len({r["call"] for r in outcomes}) == len(expected), "two calls share a call number"


# ---------------------------------------------------------------------------
# Methods


def test_unknown_methods_are_refused_through_serve_with_one_upstream(launcher, tmp_path):
    log = tmp_path / "methods.log"
    gateway = launcher.gateway({"only": method_log_upstream(log)})
    session = RawSession(gateway.base)
    session.initialize()
    for method in UNKNOWN_METHODS:
        response = session.request(method, {"name": "only__act", "arguments": {}})
        assert error_code(response) == -32601, f"{method}: {response}"
    answer = session.request("tools/call", {"name": "only__act", "arguments": {}})
    assert answer["result"]["content"][0]["text"] == "acted", answer

    received = received_methods(log)
    assert not set(UNKNOWN_METHODS) & set(received), f"the upstream received {received}"
    refused = gateway.events("method-refused", len(UNKNOWN_METHODS))
    assert [(r["method"], r["reason"]) for r in refused] == [(m, "unknown") for m in UNKNOWN_METHODS], refused
    for record in refused:
        assert record["session"] == session.session_id and "principal" in record and "time" in record, record


def test_unknown_methods_are_refused_through_mcp(tmp_path):
    log = tmp_path / "methods.log"
    with palisade_mcp(tmp_path, python_argv("method_log_server.py", str(log))) as (peer, audit):
        peer.initialize()
        for method in UNKNOWN_METHODS:
            response = peer.request(method, {"name": "act", "arguments": {}})
            assert error_code(response) == -32601, f"{method}: {response}"
        answer = peer.request("tools/call", {"name": "act", "arguments": {}})
        assert answer["result"]["content"][0]["text"] == "acted", answer

        received = received_methods(log)
        assert not set(UNKNOWN_METHODS) & set(received), f"the upstream received {received}"
        refused = read_events(audit, "method-refused", len(UNKNOWN_METHODS))
        assert [(r["method"], r["reason"]) for r in refused] == [(m, "unknown") for m in UNKNOWN_METHODS], refused


def test_an_allowed_extension_method_is_forwarded_and_others_are_not(launcher, tmp_path):
    log = tmp_path / "methods.log"
    gateway = launcher.gateway({"ext": method_log_upstream(log, extension_methods=["x/echo"])})
    session = RawSession(gateway.base)
    session.initialize()
    response = session.request("x/echo", {"say": "hi"})
    assert response.get("result") == {"echoed": {"say": "hi"}}, response
    other = session.request("x/other", {"say": "hi"})
    assert error_code(other) == -32601, other

    received = received_methods(log)
    assert "x/echo" in received and "x/other" not in received, received
    refused = gateway.events("method-refused", 1)
    assert [r["method"] for r in refused] == ["x/other"], refused


# ---------------------------------------------------------------------------
# Sessions


def test_serve_records_a_session_opening_and_its_deletion(launcher, tmp_path):
    gateway = launcher.gateway({"only": method_log_upstream(tmp_path / "methods.log")})
    session = RawSession(gateway.base)
    session.initialize()
    [opened] = gateway.events("session-opened", 1)
    assert opened["session"] == session.session_id, opened
    assert opened["protocol_version"] == PROTOCOL_VERSION, opened
    assert isinstance(opened["principal"], str) and isinstance(opened["time"], str), opened
    assert gateway.events("session-closed", 0) == [], "a session was recorded closed while open"

    deleted = http_request(gateway.base, "DELETE", "/mcp", headers=session.headers(), seconds=10)
    assert deleted.status in (200, 202, 204), deleted
    [closed] = gateway.events("session-closed", 1)
    assert (closed["session"], closed["reason"], closed["principal"]) == (
        session.session_id, "deleted", opened["principal"]
    ), closed


def test_stopping_serve_closes_its_sessions_with_reason_shutdown(launcher, tmp_path):
    gateway: Gateway = launcher.gateway({"only": method_log_upstream(tmp_path / "methods.log")})
    session = RawSession(gateway.base)
    session.initialize()
    assert "result" in session.request("tools/list")
    os.kill(gateway.proc.popen.pid, signal.SIGTERM)  # palisade alone, not its process group
    assert wait_exit(gateway.proc.popen, 20) is not None, gateway.proc.output()
    closed = gateway.events("session-closed", 1, seconds=2)
    assert [(r["session"], r["reason"]) for r in closed] == [(session.session_id, "shutdown")], closed


def test_mcp_records_its_session_and_a_client_that_goes(tmp_path):
    log = tmp_path / "methods.log"
    with palisade_mcp(tmp_path, python_argv("method_log_server.py", str(log)), name="logged") as (peer, audit):
        peer.initialize()
        answer = peer.request("tools/call", {"name": "act", "arguments": {}})
        assert answer["result"]["content"][0]["text"] == "acted", answer
        assert peer.popen.stdin is not None
        peer.popen.stdin.close()  # the client goes
        assert wait_exit(peer.popen, 20) is not None, f"palisade mcp outlived its client\n{peer.stderr()}"

        records = audit_lines(audit)
        events = [r["event"] for r in records]
        assert events == ["gateway-started", "session-opened", "call-intent", "call-outcome", "session-closed"], records
        opened, closed = records[1], records[-1]
        assert opened["protocol_version"] == PROTOCOL_VERSION, opened
        assert closed["reason"] == "client-gone", closed
        assert len({r["session"] for r in records[1:]}) == 1, f"one stdio session, several ids: {records}"
        assert_ran(audit, records[3], kind="tool", server="logged", name="act")


# ---------------------------------------------------------------------------
# Upstream stderr


def assert_stderr_relayed(stderr_path: Path, name: str, read: Any) -> None:
    """Both lines the upstream wrote appear as palisade log messages; no raw control byte gets through."""
    deadline = time.monotonic() + 20
    plain = f"upstream `{name}` stderr: hello-from-stderr"
    coloured = re.compile(rf"upstream `{re.escape(name)}` stderr: .*\[31mred")
    while True:
        text = read()
        if plain in text and coloured.search(text):
            break
        assert time.monotonic() < deadline, f"palisade did not relay the upstream's stderr:\n{text}"
        time.sleep(0.05)
    raw = stderr_path.read_bytes()
    assert b"\x1b" not in raw, "an ESC byte from the upstream reached palisade's stderr"
    assert b"\x07" not in raw, "a BEL byte from the upstream reached palisade's stderr"


def test_upstream_stderr_is_relayed_escaped_through_serve(launcher):
    gateway = launcher.gateway({"noisy": python_stdio("stderr_server.py")})
    session = RawSession(gateway.base)
    session.initialize()  # the session's upstream starts, and writes to its stderr
    assert [t["name"] for t in session.request("tools/list")["result"]["tools"]] == ["noisy__quiet"]
    assert_stderr_relayed(gateway.proc.stderr_path, "noisy", lambda: gateway.proc.stderr_path.read_text(errors="replace"))


def test_upstream_stderr_is_relayed_escaped_through_mcp(tmp_path):
    with palisade_mcp(tmp_path, python_argv("stderr_server.py"), name="noisy") as (peer, _audit):
        peer.initialize()
        assert [t["name"] for t in peer.request("tools/list")["result"]["tools"]] == ["quiet"]
        assert_stderr_relayed(peer.stderr_path, "noisy", peer.stderr)
