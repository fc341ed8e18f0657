"""Layer 1, approval gates: a human's yes to one exact call, through `palisade serve` and `palisade approvals`.

The agent (alice, role dev) calls a payment tool that the policy permits only
with a human's approval; the human (bob, role approver) decides with the real
CLI against the running gateway's admin API. The upstream logs every call it
executes, so "ran once" and "did not run" are read from what it did, not from
what palisade says.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from layer1 import LAYER1_PASS_THROUGH, AuthedSession, cli, client, create_key, emitted, jsonl, ok, run, text_of
from support import FIXTURES, Gateway, http_request, python_stdio, retry_until, write_config

POLICY = FIXTURES / "approvals_policy.cedar"
TOOL = "actions__transfer_payment"
PENDING = -32012
DENIED = -32010



def request_lines(listed: str) -> list[str]:
    """The lines of `palisade approvals list` that start a request (each is followed by its arguments)."""
    return [l for l in listed.splitlines() if l.startswith("apr_")]

def approvals_gateway(launcher, tmp_path: Path, *, approvals: str = "") -> tuple[Gateway, Path, Path]:
    """A gateway with API keys, the approval policy and the actions upstream; its config and the upstream's log."""
    data_dir = tmp_path / "data"
    log = tmp_path / "executed.jsonl"
    extra = (
        "\n[auth]\nanonymous = false\n"
        f"\n[authz]\npolicies = [{json.dumps(str(POLICY))}]\n"
        f"\n[approvals]\n{approvals}\n"
    )
    config = write_config(
        tmp_path / "palisade.toml",
        data_dir=data_dir,
        upstreams={"actions": {**python_stdio("actions_server.py", str(log)), "default_effect": "irreversible"}},
        pass_through=LAYER1_PASS_THROUGH,
        extra=extra,
    )
    return launcher.gateway({}, data_dir=data_dir, config=config), config, log


def approvals(config: Path, gateway: Gateway, token: str, *args: str) -> Any:
    """`palisade approvals ARGS --url GATEWAY`, as the holder of `token`."""
    return cli(config, "approvals", *args, "--url", gateway.base, env={"PALISADE_TOKEN": token})


def canonical(arguments: dict[str, Any]) -> str:
    """RFC 8785 canonical JSON, for arguments of strings and small integers."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def transfers(log: Path) -> list[dict[str, Any]]:
    return [entry["arguments"] for entry in jsonl(log) if entry["tool"] == "transfer_payment"]


def call(session: AuthedSession, arguments: dict[str, Any]) -> dict[str, Any]:
    return session.request("tools/call", {"name": TOOL, "arguments": arguments})


def held_id(response: dict[str, Any]) -> str:
    """The approval request id of a call answered pending."""
    error = response.get("error")
    assert error and error["code"] == PENDING, response
    request = error["data"]["palisade"]["approvalRequest"]
    assert request.startswith("apr_") and request in error["message"], error
    return request


def transfer_outcomes(gateway: Gateway, expected: int) -> list[dict[str, Any]]:
    """The `call-outcome` records of payment calls, once there are `expected` of them (or the deadline passes)."""
    found = retry_until(
        lambda: [o for o in gateway.call_outcomes(0, seconds=0) if (o["server"], o["name"]) == ("actions", "transfer_payment")],
        lambda outcomes: len(outcomes) >= expected,
        attempts=100,
        pause=0.1,
    )[-1]
    assert len(found) == expected, found
    return found


def stage(record: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in record["stages"] if s["stage"] == name]
    return found


def session_for(gateway: Gateway, token: str) -> AuthedSession:
    session = AuthedSession(gateway.base, token)
    session.initialize()
    return session


def test_the_round_trip_from_the_cli_runs_the_approved_call_once_and_a_replay_needs_a_new_approval(launcher, tmp_path):
    gateway, config, log = approvals_gateway(launcher, tmp_path)
    alice, bob = create_key(config, "alice", "dev"), create_key(config, "bob", "approver")
    arguments = {"to": "carol", "amount": 125}
    asked_by: list[str] = []

    async def agent() -> tuple[str, str, str]:
        async with client(gateway.url, alice) as c:
            with pytest.raises(MCPError) as held:
                await c.call_tool(TOOL, arguments)
            assert held.value.code == PENDING, held.value
            first = held.value.data["palisade"]["approvalRequest"]
            assert first in held.value.message and "a payment needs a human's approval" in held.value.message
            assert transfers(log) == [], "a held call does not run"

            listed = ok(await anyio.to_thread.run_sync(lambda: approvals(config, gateway, bob, "list")))
            [line] = [l for l in request_lines(listed) if first in l]
            assert "pending" in line and "alice" in line and "transfer_payment" in line, listed
            shown = json.loads(ok(await anyio.to_thread.run_sync(lambda: approvals(config, gateway, bob, "show", first))))
            assert shown["id"] == first and shown["state"] == "pending", shown
            assert (shown["principal"], shown["server"], shown["tool"]) == ("alice", "actions", "transfer_payment"), shown
            assert shown["arguments"] == canonical(arguments), shown
            assert shown["arguments_sha256"] == hashlib.sha256(canonical(arguments).encode()).hexdigest(), shown
            assert shown["approvers"] == ["approver"] and shown["reason"] == "a payment needs a human's approval", shown
            assert shown["session"] and shown["created"] < shown["expires"], shown
            asked_by.extend(shown["policies"])

            approve = lambda: approvals(config, gateway, bob, "approve", first, "--reason", "invoice 42 checked")
            decided = json.loads(ok(await anyio.to_thread.run_sync(approve)))
            assert decided["state"] == "approved" and decided["decision"]["by"] == "bob", decided
            assert decided["decision"]["reason"] == "invoice 42 checked", decided

            done = await c.call_tool(TOOL, arguments)
            assert text_of(done) == "transfer_payment done", done
            assert transfers(log) == [arguments], "the approved call ran, once"

            with pytest.raises(MCPError) as replay:
                await c.call_tool(TOOL, arguments)
            assert replay.value.code == PENDING, replay.value
            second = replay.value.data["palisade"]["approvalRequest"]
            assert second != first, "a replay is a new request"
            return first, second, ok(await anyio.to_thread.run_sync(lambda: approvals(config, gateway, bob, "list", "--all")))

    first, second, everything = run(agent)
    assert transfers(log) == [arguments], "the replay did not run"
    states = {l.split()[0]: l.split()[1] for l in request_lines(everything)}
    assert states == {first: "consumed", second: "pending"}, everything

    [decision] = gateway.events("approval-decided", 1)
    assert decision["principal"] == "bob" and decision["requester"] == "alice", decision
    assert decision["request"] == first and decision["decision"] == "approved", decision
    assert decision["reason"] == "invoice 42 checked", decision
    held, completed, replayed = transfer_outcomes(gateway, 3)
    assert held["outcome"] == {"status": "denied", "stage": "approval", "code": "approval-required"}, held
    assert first in stage(held, "approval")["reason"], held
    assert completed["outcome"]["status"] == "completed" and stage(completed, "approval")["verdict"] == "allow", completed
    assert stage(completed, "execute")["verdict"] == "allow", completed
    assert replayed["outcome"]["code"] == "approval-required" and second in stage(replayed, "approval")["reason"], replayed
    digest = hashlib.sha256(canonical(arguments).encode()).hexdigest()
    assert {o["arguments_sha256"] for o in (held, completed, replayed)} == {digest}
    assert {o["principal"] for o in (held, completed, replayed)} == {"alice"}
    # The issue: a request holds "the policy that asked".
    assert asked_by == ["payment.transfer"], "the request names the policy that asked for approval"


def test_changed_arguments_after_approval_are_a_new_request_and_never_use_the_approved_one(launcher, tmp_path):
    gateway, config, log = approvals_gateway(launcher, tmp_path)
    alice, bob = create_key(config, "alice", "dev"), create_key(config, "bob", "approver")
    session = session_for(gateway, alice)
    approved_arguments = {"to": "carol", "amount": 125}
    first = held_id(call(session, approved_arguments))
    ok(approvals(config, gateway, bob, "approve", first))

    for changed in ({"to": "carol", "amount": 125000}, {"to": "mallory", "amount": 125}, {"to": "carol", "amount": 125, "memo": "x"}):
        other = held_id(call(session, changed))
        assert other != first, f"{changed} got the approved request"
        shown = json.loads(ok(approvals(config, gateway, bob, "show", other)))
        assert shown["arguments"] == canonical(changed) and shown["state"] == "pending", shown
    assert transfers(log) == [], "no changed call ran"
    assert json.loads(ok(approvals(config, gateway, bob, "show", first)))["state"] == "approved", "the approval is still unspent"

    # The approval is for the exact arguments: they run, once.
    assert call(session, approved_arguments)["result"]["content"][0]["text"] == "transfer_payment done"
    assert transfers(log) == [approved_arguments]
    assert json.loads(ok(approvals(config, gateway, bob, "show", first)))["state"] == "consumed"
    # Another session of the same principal is another request, too.
    elsewhere = held_id(call(session_for(gateway, alice), approved_arguments))
    assert elsewhere != first
    assert transfers(log) == [approved_arguments]


def test_an_approver_cannot_approve_their_own_request(launcher, tmp_path):
    gateway, config, log = approvals_gateway(launcher, tmp_path)
    alice = create_key(config, "alice", "dev", "approver")
    session = session_for(gateway, alice)
    arguments = {"to": "alice-offshore", "amount": 5000}
    request = held_id(call(session, arguments))

    refused = approvals(config, gateway, alice, "approve", request, "--reason", "trust me")
    assert refused.returncode != 0, refused
    assert "403" in refused.stderr and f"`alice` asked for approval request `{request}` and cannot decide it" in refused.stderr, refused.stderr
    # A second key of hers is still her.
    second_key = create_key(config, "alice", "approver")
    again = approvals(config, gateway, second_key, "approve", request)
    assert again.returncode != 0 and "cannot decide it" in again.stderr, again.stderr

    assert json.loads(ok(approvals(config, gateway, alice, "show", request)))["state"] == "pending"
    assert held_id(call(session, arguments)) == request, "the retry is still waiting for the same request"
    assert transfers(log) == []
    assert gateway.events("approval-decided", 1, seconds=0.5) == [], "no decision was made"


def test_a_caller_without_the_approver_role_and_a_guessed_id_are_refused_and_a_denial_stands(launcher, tmp_path):
    gateway, config, log = approvals_gateway(launcher, tmp_path)
    alice, bob = create_key(config, "alice", "dev"), create_key(config, "bob", "approver")
    carol = create_key(config, "carol", "dev")
    session = session_for(gateway, alice)
    arguments = {"to": "carol", "amount": 7}
    request = held_id(call(session, arguments))

    for args in (("list",), ("show", request), ("approve", request), ("deny", request)):
        refused = approvals(config, gateway, carol, *args)
        assert refused.returncode != 0, (args, refused)
        assert "403" in refused.stderr and "`carol` lacks the `approver` role" in refused.stderr, (args, refused.stderr)
    direct = http_request(
        gateway.base,
        "POST",
        f"/admin/approvals/{request}/approve",
        body=b"{}",
        headers={"Authorization": f"Bearer {carol}", "Content-Type": "application/json"},
    )
    assert direct.status == 403, direct
    anonymous = http_request(gateway.base, "GET", "/admin/approvals")
    assert anonymous.status == 401, anonymous

    guessed = "apr_" + request[4:16] + "0" * 32
    for args in (("show", guessed), ("approve", guessed), ("deny", guessed)):
        missing = approvals(config, gateway, bob, *args)
        assert missing.returncode != 0 and "404" in missing.stderr, (args, missing)
        assert f"there is no approval request `{guessed}`" in missing.stderr, missing.stderr
    shaped_wrong = approvals(config, gateway, bob, "approve", "../../admin/keys")
    assert shaped_wrong.returncode != 0 and "is not an approval id" in shaped_wrong.stderr, shaped_wrong.stderr
    assert json.loads(ok(approvals(config, gateway, bob, "show", request)))["state"] == "pending"

    denied = json.loads(ok(approvals(config, gateway, bob, "deny", request, "--reason", "not this month")))
    assert denied["state"] == "denied" and denied["decision"]["by"] == "bob", denied
    for _ in range(2):
        refusal = call(session, arguments)["error"]
        assert refusal["code"] == DENIED, refusal
        assert f"approval request `{request}` was denied by `bob`: not this month" in refusal["message"], refusal
        assert refusal["data"]["palisade"]["approvalRequest"] == request, refusal
    late = approvals(config, gateway, bob, "approve", request)
    assert late.returncode != 0 and "409" in late.stderr and "is denied, not pending" in late.stderr, late.stderr
    assert transfers(log) == []
    [decision] = gateway.events("approval-decided", 1)
    assert (decision["decision"], decision["principal"], decision["request"]) == ("denied", "bob", request), decision
    outcomes = transfer_outcomes(gateway, 3)
    assert [o["outcome"]["status"] for o in outcomes] == ["denied"] * 3, outcomes
    assert [stage(o, "approval")["verdict"] for o in outcomes] == ["needs-approval", "deny", "deny"], outcomes


def test_a_request_past_its_ttl_cannot_be_approved_and_an_unused_approval_expires(launcher, tmp_path):
    gateway, config, log = approvals_gateway(launcher, tmp_path, approvals='ttl = "2s"')
    alice, bob = create_key(config, "alice", "dev"), create_key(config, "bob", "approver")
    session = session_for(gateway, alice)
    arguments = {"to": "carol", "amount": 3}

    def state(request: str) -> str:
        return json.loads(ok(approvals(config, gateway, bob, "show", request)))["state"]

    def expire(request: str) -> None:
        states = retry_until(lambda: state(request), lambda s: s == "expired", attempts=60, pause=0.2)
        assert states[-1] == "expired", states

    undecided = held_id(call(session, arguments))
    expire(undecided)
    late = approvals(config, gateway, bob, "approve", undecided)
    assert late.returncode != 0 and "409" in late.stderr and f"`{undecided}` is expired, not pending" in late.stderr, late.stderr
    # The expired request is over: the retry asks anew.
    unused = held_id(call(session, arguments))
    assert unused != undecided
    ok(approvals(config, gateway, bob, "approve", unused))
    expire(unused)
    refusal = call(session, arguments)["error"]
    assert refusal["code"] == DENIED and f"`{unused}` was approved but not used before it expired" in refusal["message"], refusal
    assert transfers(log) == [], "nothing ran on an expired approval"
    anew = held_id(call(session, arguments))
    assert anew not in (undecided, unused)
    assert transfers(log) == []


def test_a_held_call_completes_when_approved_while_it_waits(launcher, tmp_path):
    gateway, config, log = approvals_gateway(launcher, tmp_path, approvals='hold = "20s"')
    alice, bob = create_key(config, "alice", "dev"), create_key(config, "bob", "approver")
    arguments = {"to": "carol", "amount": 42}
    answers: list[Any] = []
    progress: list[tuple[float, str | None]] = []

    async def heard(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async def agent() -> None:
        async with client(gateway.url, alice) as c:
            answers.append(await c.call_tool(TOOL, arguments, progress_callback=heard))

    waiting = threading.Thread(target=run, args=(agent,), daemon=True)
    waiting.start()
    listed = retry_until(
        lambda: ok(approvals(config, gateway, bob, "list")),
        lambda text: "pending" in text,
        attempts=100,
        pause=0.1,
    )[-1]
    [line] = request_lines(listed)
    request = line.split()[0]
    assert waiting.is_alive() and answers == [], "the call is held, not answered"
    # While it waits, the client hears that it is held (every 5 s), so it does not give up.
    retry_until(lambda: list(progress), lambda heard_so_far: len(heard_so_far) > 0, attempts=150, pause=0.1)
    assert progress and "approves" in (progress[0][1] or ""), progress
    assert transfers(log) == []
    ok(approvals(config, gateway, bob, "approve", request, "--reason", "ok"))
    waiting.join(30)
    assert not waiting.is_alive()
    assert len(answers) == 1 and text_of(answers[0]) == "transfer_payment done", answers
    assert transfers(log) == [arguments], "the held call ran once"
    assert json.loads(ok(approvals(config, gateway, bob, "show", request)))["state"] == "consumed"
    [outcome] = transfer_outcomes(gateway, 1)
    assert outcome["outcome"]["status"] == "completed" and stage(outcome, "approval")["verdict"] == "allow", outcome


def test_no_key_appears_in_anything_palisade_wrote(launcher, tmp_path):
    gateway, config, log = approvals_gateway(launcher, tmp_path)
    alice, bob = create_key(config, "alice", "dev"), create_key(config, "bob", "approver")
    carol = create_key(config, "carol", "dev")
    session = session_for(gateway, alice)
    arguments = {"to": "carol", "amount": 1}
    first = held_id(call(session, arguments))
    outputs = [
        approvals(config, gateway, bob, "list"),
        approvals(config, gateway, bob, "show", first),
        approvals(config, gateway, carol, "approve", first),
        approvals(config, gateway, alice, "approve", first),
        approvals(config, gateway, bob, "approve", first, "--reason", "fine"),
    ]
    assert "result" in call(session, arguments)
    second = held_id(call(session, arguments))
    outputs.append(approvals(config, gateway, bob, "deny", second, "--reason", "once is enough"))
    outputs.append(approvals(config, gateway, alice[:-4] + "AAAA", "list"))
    assert [o.returncode == 0 for o in outputs] == [True, True, False, False, True, True, False], outputs
    assert transfers(log) == [arguments]
    gateway.events("approval-decided", 2)
    gateway.proc.stop()
    written = emitted(gateway.audit_path, gateway.proc.stderr_path, gateway.proc.stdout_path)
    written += "".join(o.stdout + o.stderr for o in outputs).encode()
    assert b"approval-decided" in written and first.encode() in written, "the search looks at the right bytes"
    for key in (alice, bob, carol, alice[:-4] + "AAAA"):
        secret = key.split("_", 2)[2]
        assert key.encode() not in written and secret.encode() not in written, f"a key of {key[:16]}… leaked"
