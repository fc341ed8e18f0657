"""Layer 1, authorization: Cedar policies and argument constraints, through `palisade serve`, with real upstreams.

The files upstream is the reference filesystem server, rooted wider than the
policy allows, so that every refusal here is palisade's and not the server's.
The actions upstream (fixtures/actions_server.py) logs every call it executes:
a denied call must never appear in its log. Every constraint has a case that
is allowed and one that is refused although the principal may use the tool.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layer1 import LAYER1_PASS_THROUGH, AuthedSession, cli, create_key, jsonl, ok
from support import everything_stdio, filesystem_stdio, python_stdio, wrapped, write_config

DENIED, HELD = -32010, -32012

POLICY = """
@id("dev.read")
permit (principal in Role::"dev", action == Action::"read", resource);

@id("dev.files.write")
permit (principal in Role::"dev", action == Action::"write", resource in Server::"files");

@id("dev.actions")
permit (principal in Role::"dev", action, resource in Server::"actions");

@id("no.payments")
forbid (principal, action, resource == Tool::"actions/transfer_payment");

@id("no.egress.when.tainted")
forbid (principal, action == Action::"egress", resource)
when { context.session.tainted };
"""


@pytest.fixture
def world(launcher, tmp_path):
    """A gateway over the filesystem and actions servers, with the seed's constraints."""
    root = tmp_path / "root"
    project, other = root / "project", root / "other"
    project.mkdir(parents=True)
    other.mkdir()
    (other / "secret.txt").write_text("not for the agent\n")
    (project / "escape").symlink_to(other)
    log = tmp_path / "actions.jsonl"
    policy = tmp_path / "policy.cedar"
    policy.write_text(POLICY)
    extra = f"""
[auth]
anonymous = false

[authz]
policies = ["{policy}"]

[authz.constraints.workspace]
kind = "paths"
tools = ["files__write_file", "files__edit_file", "files__create_directory", "actions__delete_file"]
arguments = ["path"]
allow = ["{project}"]

[authz.constraints.mail]
kind = "email-domains"
tools = ["actions__send_email"]
arguments = ["to", "cc", "bcc"]
allow = ["example.com"]

[authz.constraints.shell]
kind = "commands"
tools = ["actions__run_command"]
arguments = ["command"]
allow = ["ls", "git status"]

[authz.constraints.cloud]
kind = "read-only"
tools = ["actions__cloud_call"]
arguments = ["operation"]
write_roles = ["ops"]
"""
    upstreams = {
        "files": {
            **filesystem_stdio(root),
            "default_effect": "irreversible",
            "effects": {
                "read_text_file": "read",
                "read_file": "read",
                "list_directory": "read",
                "list_allowed_directories": "read",
                "write_file": "write",
                "edit_file": "write",
                "create_directory": "write",
            },
        },
        "actions": {
            **python_stdio("actions_server.py", str(log)),
            "default_effect": "write",
            "effects": {
                "send_email": "egress",
                "lookup": "read",
                "transfer_payment": "irreversible",
                "delete_file": "irreversible",
            },
        },
    }
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "palisade.toml",
        data_dir=data_dir,
        upstreams=upstreams,
        pass_through=LAYER1_PASS_THROUGH,
        extra=extra,
    )
    gateway = launcher.gateway({}, data_dir=data_dir, config=config)
    dev = create_key(config, "alice", "dev")
    ops = create_key(config, "olga", "dev", "ops")
    nobody = create_key(config, "nina")

    class World:
        pass

    w = World()
    w.gateway, w.config, w.root, w.project, w.other, w.log = gateway, config, root, project, other, log
    w.dev, w.ops, w.nobody = dev, ops, nobody
    return w


def session(world, key) -> AuthedSession:
    s = AuthedSession(world.gateway.base, key)
    s.initialize()
    return s


def call(s: AuthedSession, tool: str, arguments: dict) -> dict:
    return s.request("tools/call", {"name": tool, "arguments": arguments})


def refused(answer: dict, code: int = DENIED) -> str:
    assert "error" in answer, f"expected a refusal, got {answer}"
    assert answer["error"]["code"] == code, answer
    return answer["error"]["message"]


def executed(world) -> list[dict]:
    return jsonl(world.log)


def test_paths_stay_inside_the_allowed_directory(world):
    s = session(world, world.dev)
    inside = world.project / "notes.txt"
    assert "error" not in call(s, "files__write_file", {"path": str(inside), "content": "ok"})
    assert inside.read_text() == "ok"
    for escape in [
        str(world.other / "x.txt"),
        f"{world.project}/../other/x.txt",
        f"{world.project}//..//other/x.txt",
        str(world.project / "escape" / "x.txt"),  # a symlink inside that points outside
        f"{world.project}/%2e%2e/other/x.txt",
        f"{world.project}/\u2025/other/x.txt",
        f"{world.project}\u2215..\u2215other/x.txt",
        "notes.txt",
    ]:
        message = refused(call(s, "files__write_file", {"path": escape, "content": "pwned"}))
        assert "workspace" in message, (escape, message)
    assert not (world.other / "x.txt").exists()
    # Reading is not constrained (the policy allows every read of the server's root).
    read = call(s, "files__read_text_file", {"path": str(world.other / "secret.txt")})
    assert "error" not in read, read


def test_an_injected_delete_outside_the_workspace_is_denied_and_inside_it_waits_for_a_human(world):
    s = session(world, world.dev)
    message = refused(call(s, "actions__delete_file", {"path": "/etc/passwd"}))
    assert "workspace" in message
    held = call(s, "actions__delete_file", {"path": str(world.project / "notes.txt")})
    refused(held, HELD)
    assert held["error"]["data"]["palisade"]["approvalRequest"].startswith("apr_"), held
    assert executed(world) == [], "neither delete ran"


def test_email_goes_only_to_approved_domains(world):
    s = session(world, world.dev)
    assert "error" not in call(s, "actions__send_email", {"to": "bob@example.com", "subject": "hi", "body": "x"})
    for arguments in [
        {"to": "evil@attacker.com"},
        {"to": '"ceo@example.com" <evil@attacker.com>'},
        {"to": "bob@example.com", "cc": "evil@attacker.com"},
        {"to": "bob@example.com", "bcc": ["ok@example.com", "evil@attacker.com"]},
        {"to": "bob@example.com.attacker.com"},
        {"to": "bob@evilexample.com"},
        {"to": '"a@example.com"@attacker.com'},
        {"to": 42},
    ]:
        message = refused(call(s, "actions__send_email", {**arguments, "subject": "x", "body": "y"}))
        assert "mail" in message, (arguments, message)
    sent = [e["arguments"]["to"] for e in executed(world)]
    assert sent == ["bob@example.com"], sent


def test_shell_commands_come_from_the_allowlist(world):
    s = session(world, world.dev)
    for allowed in ["ls -la", "git status --porcelain"]:
        assert "error" not in call(s, "actions__run_command", {"command": allowed}), allowed
    for attack in ["ls; rm -rf /", "ls && curl evil", "ls $(whoami)", "sh -c ls", "env ls", "lsblk", "git push", "ls `id`", "ls > /etc/x"]:
        message = refused(call(s, "actions__run_command", {"command": attack}))
        assert "shell" in message, (attack, message)
    ran = [e["arguments"]["command"] for e in executed(world)]
    assert ran == ["ls -la", "git status --porcelain"], ran


def test_cloud_calls_are_read_only_unless_write_is_granted(world):
    dev, ops = session(world, world.dev), session(world, world.ops)
    assert "error" not in call(dev, "actions__cloud_call", {"service": "ec2", "operation": "DescribeInstances"})
    refused(call(dev, "actions__cloud_call", {"service": "ec2", "operation": "TerminateInstances"}))
    assert "error" not in call(ops, "actions__cloud_call", {"service": "ec2", "operation": "TerminateInstances"})
    operations = [e["arguments"]["operation"] for e in executed(world)]
    assert operations == ["DescribeInstances", "TerminateInstances"], operations


def test_each_principal_sees_only_what_it_may_call_and_everything_else_is_denied(world):
    dev, nobody = session(world, world.dev), session(world, world.nobody)
    shown = {t["name"] for t in dev.request("tools/list")["result"]["tools"]}
    assert {"files__read_text_file", "files__write_file", "actions__send_email"} <= shown, shown
    assert "actions__transfer_payment" not in shown, "a forbid without conditions hides it"
    assert "files__move_file" not in shown, "irreversible on files is not permitted"
    assert nobody.request("tools/list")["result"]["tools"] == [], "a principal without roles is permitted nothing"
    message = refused(call(nobody, "actions__lookup", {"query": "x"}))
    assert "no policy" in message or "not authorized" in message, message
    refused(call(dev, "actions__transfer_payment", {"amount": 10, "to": "x"}))
    assert executed(world) == []


def test_every_deny_is_audited_with_the_policy_or_constraint_that_decided(world):
    s = session(world, world.dev)
    refused(call(s, "actions__send_email", {"to": "evil@attacker.com"}))
    refused(call(s, "actions__transfer_payment", {"amount": 1, "to": "x"}))
    outcomes = world.gateway.call_outcomes(2)
    denied = [o for o in outcomes if o["outcome"]["status"] == "denied"]
    assert len(denied) == 2, outcomes
    text = json.dumps(denied)
    assert "constraint.mail" in text, text
    for record in denied:
        stage = next(s for s in record["stages"] if s["stage"] == "authorize")
        assert stage["verdict"] == "deny", record


def test_resources_and_prompts_are_authorized_too(launcher, tmp_path):
    policy = tmp_path / "p.cedar"
    policy.write_text('@id("readers") permit (principal in Role::"reader", action == Action::"read", resource);\n')
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "palisade.toml",
        data_dir=data_dir,
        upstreams={"everything": everything_stdio()},
        pass_through=LAYER1_PASS_THROUGH,
        extra=f'\n[auth]\nanonymous = false\n[authz]\npolicies = ["{policy}"]\n',
    )
    gateway = launcher.gateway({}, data_dir=data_dir, config=config)
    reader, stranger = create_key(config, "rita", "reader"), create_key(config, "sam")
    r, s = AuthedSession(gateway.base, reader), AuthedSession(gateway.base, stranger)
    r.initialize()
    s.initialize()
    resources = r.request("resources/list")["result"]["resources"]
    assert resources, "a reader sees the resources"
    uri = resources[0]["uri"]
    assert "result" in r.request("resources/read", {"uri": uri})
    assert s.request("resources/list")["result"]["resources"] == []
    assert s.request("resources/read", {"uri": uri})["error"]["code"] == DENIED
    prompts = r.request("prompts/list")["result"]["prompts"]
    assert prompts
    name = next(p["name"] for p in prompts if not p.get("arguments"))
    assert "result" in r.request("prompts/get", {"name": name})
    assert s.request("prompts/get", {"name": name})["error"]["code"] == DENIED


def test_policy_check_and_explain_name_file_line_and_deciding_policies(world, tmp_path):
    checked = ok(cli(world.config, "policy", "check"))
    assert "dev.read" in checked and "workspace" in checked, checked
    explained = ok(
        cli(
            world.config,
            "policy",
            "explain",
            "--principal",
            "alice",
            "--role",
            "dev",
            "--tool",
            "actions__send_email",
            "--args",
            json.dumps({"to": "evil@attacker.com"}),
        )
    )
    assert "decision: deny" in explained and "mail" in explained, explained
    allowed = ok(cli(world.config, "policy", "explain", "--principal", "alice", "--role", "dev", "--tool", "files__read_text_file", "--args", "{}"))
    assert "decision: allow" in allowed and "dev.read" in allowed, allowed
    bad = tmp_path / "bad.cedar"
    bad.write_text('permit (principal, action == Action::"read", resource)\nwhen { context.nosuch };\n')
    config = tmp_path / "bad.toml"
    config.write_text(world.config.read_text().replace(str(tmp_path / "policy.cedar"), str(bad)))
    failed = cli(config, "policy", "check")
    assert failed.returncode != 0 and f"{bad}:2:" in failed.stderr, failed.stderr


def test_a_bad_policy_on_reload_is_refused_and_the_old_set_stays(world, tmp_path):
    import signal

    policy = tmp_path / "policy.cedar"
    s = session(world, world.dev)
    assert "error" not in call(s, "actions__lookup", {"query": "before"})
    policy.write_text("permit (principal, action, resource) when { context.nosuch };\n")
    world.gateway.proc.popen.send_signal(signal.SIGHUP)
    world.gateway.proc.wait_for(r"reload: invalid policies")
    assert "error" not in call(s, "actions__lookup", {"query": "after a bad reload"})
    policy.write_text('@id("nothing") forbid (principal, action, resource);\n')
    world.gateway.proc.popen.send_signal(signal.SIGHUP)
    world.gateway.proc.wait_for(r"reloaded the policies")
    refused(call(s, "actions__lookup", {"query": "after a good reload"}))


def test_the_readme_laptop_policy_keeps_the_wrapped_filesystem_server_usable(tmp_path):
    """`palisade mcp` with [wrap] effects and a workspace constraint, as the README shows it."""
    from support import StdioPeer, palisade_bin

    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "a.txt").write_text("hello\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    config = tmp_path / "files.toml"
    config.write_text(
        f"""data_dir = "{tmp_path / 'data'}"
[wrap]
name = "files"
default_effect = "irreversible"
effects = {{ read_text_file = "read", list_directory = "read", list_allowed_directories = "read",
            write_file = "write", edit_file = "write", create_directory = "write",
            move_file = "irreversible" }}

[authz.constraints.workspace]
kind = "paths"
tools = ["write_file", "edit_file", "create_directory", "move_file"]
arguments = ["path", "source", "destination"]
allow = ["{projects}"]

[pipeline]
pass_through = ["limits", "outbound-filter", "inject-secrets", "redact", "inbound-filter"]
"""
    )
    peer = StdioPeer(
        [palisade_bin(), "mcp", "--config", str(config), *wrapped(filesystem_stdio(tmp_path, bind=[projects, outside]))],
        log_dir=tmp_path / "logs",
        name="palisade-mcp",
    )
    try:
        peer.initialize()

        def call(name: str, arguments: dict) -> dict:
            return peer.request("tools/call", {"name": name, "arguments": arguments})

        read = call("read_text_file", {"path": str(projects / "a.txt")})
        assert "hello" in json.dumps(read["result"]), read
        assert "error" not in call("write_file", {"path": str(projects / "b.txt"), "content": "new"})
        assert (projects / "b.txt").read_text() == "new"
        refused(call("write_file", {"path": str(outside / "c.txt"), "content": "no"}))
        assert not (outside / "c.txt").exists()
        held = call("move_file", {"source": str(projects / "a.txt"), "destination": str(projects / "d.txt")})
        refused(held, HELD)
        assert (projects / "a.txt").exists(), "a held move has not run"
        refused(call("move_file", {"source": str(projects / "a.txt"), "destination": str(outside / "d.txt")}))
    finally:
        peer.close()
