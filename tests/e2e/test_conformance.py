"""The MCP conformance suite scores the gateway exactly as it scores the server behind it, run after run.

`fixtures/conformance_server.mjs` (the TypeScript SDK) implements every
scenario of `conformance server` 0.1.8, so the direct run passes them all and
the runs through `palisade serve` (that server as its single unprefixed
upstream, over stdio and over HTTP) have every check to lose. Each check must
come back identical: status, error message and details (the results the
client saw, in their key order), with only the time and the server URL
differing. Three runs against one gateway, with every session ended after
each run, catch what a session leaves behind.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support import (
    CONFORMANCE_BIN,
    E2E,
    FIXTURES,
    Gateway,
    Launcher,
    descendants,
    http_request,
    node_bin,
    retry_until,
    writable_by_the_sandbox,
)

SERVER = FIXTURES / "conformance_server.mjs"
# Makes the suite's client end each session (DELETE) when it closes; see the file.
TERMINATE_SESSIONS = FIXTURES / "terminate_sessions.mjs"

# `--suite all`: the 24 active scenarios and the 4 pending ones, which check
# what a gateway could most easily break: a tool's JSON Schema 2020-12
# keywords ($schema, $defs) listed as they were, and elicitation requests
# relayed from the server to the client and answered.
SUITE = "all"
SCENARIOS = {
    "server-initialize",
    "logging-set-level",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "json-schema-2020-12",
    "elicitation-sep1034-defaults",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
}
# Every one of them passes when the server is tested directly.
DIRECT_PASSES = SCENARIOS
RUNS_THROUGH_GATEWAY = 3

RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")
SUMMARY_LINE = re.compile(r"^[✓✗] (\S+): (\d+) passed, (\d+) failed$", re.M)


def conformance(url: str, workdir: Path) -> dict[str, list[dict[str, Any]]]:
    """Runs `conformance server --url` with its results under `workdir`: each scenario's checks,
    without their timestamps and with `url` written as `<url>`."""
    workdir.mkdir(parents=True)
    done = subprocess.run(
        [node_bin(), "--import", str(TERMINATE_SESSIONS), str(CONFORMANCE_BIN), "server", "--url", url, "--suite", SUITE],
        cwd=workdir,  # conformance writes ./results/<scenario>-<time>/checks.json
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = done.stdout + done.stderr
    (workdir / "conformance.log").write_text(log)
    assert "terminate_sessions:" not in done.stderr, f"a session could not be ended:\n{done.stderr}"
    results = workdir / "results"
    assert results.is_dir(), f"conformance wrote no results (exit {done.returncode}):\n{log}"
    outcome: dict[str, list[dict[str, Any]]] = {}
    for run_dir in sorted(results.iterdir()):
        named = RESULT_DIR.match(run_dir.name)
        assert named, f"unexpected conformance result directory `{run_dir.name}`"
        assert named["scenario"] not in outcome, f"`{named['scenario']}` ran twice"
        # Read with key order kept (json.loads does), so the comparison sees it.
        outcome[named["scenario"]] = normalized(json.loads((run_dir / "checks.json").read_text()), url)
    summary = SUMMARY_LINE.findall(log)
    assert {name for name, _, _ in summary} == set(outcome), "SUMMARY and results directories disagree"
    for name, passes, fails in summary:
        assert passed(outcome[name]) == (int(passes) > 0 and int(fails) == 0), name
    return outcome


def normalized(value: Any, url: str) -> Any:
    if isinstance(value, dict):
        return {k: normalized(v, url) for k, v in value.items() if k != "timestamp"}
    if isinstance(value, list):
        return [normalized(v, url) for v in value]
    if isinstance(value, str):
        return value.replace(url, "<url>")
    return value


def passed(checks: list[dict[str, Any]]) -> bool:
    statuses = [c["status"] for c in checks]
    return "SUCCESS" in statuses and "FAILURE" not in statuses


def failures(checks: list[dict[str, Any]]) -> list[str]:
    return [c.get("errorMessage", c["status"]) for c in checks if c["status"] == "FAILURE"]


def differences(direct: dict[str, Any], through: dict[str, Any]) -> dict[str, Any]:
    """Scenarios whose checks differ, key order included (json.dumps keeps it)."""
    return {
        name: {"direct": direct.get(name), "through gateway": through.get(name)}
        for name in sorted(set(direct) | set(through))
        if json.dumps(direct.get(name)) != json.dumps(through.get(name))
    }


def conformance_http(launcher: Launcher) -> tuple[str, Any]:
    """The conformance server over Streamable HTTP on a loopback port it chooses: its URL and process."""
    proc = launcher.process([node_bin(), str(SERVER), "http"], what="conformance-server-http")
    return proc.wait_for(r"listening on (http://127\.0\.0\.1:\d+/mcp)").group(1), proc


@pytest.fixture(scope="module")
def direct(module_launcher, tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    url, _ = conformance_http(module_launcher)
    return conformance(url, tmp_path_factory.mktemp("direct") / "run")


def test_the_server_passes_every_scenario_directly(direct):
    assert set(direct) == SCENARIOS, "conformance ran other scenarios than these tests know"
    failing = {name: failures(checks) for name, checks in direct.items() if not passed(checks)}
    assert not failing, "the conformance server itself fails:\n" + json.dumps(failing, indent=2)
    assert {name for name, checks in direct.items() if passed(checks)} >= DIRECT_PASSES


def sessions_open(gateway: Gateway) -> int:
    reply = http_request(gateway.base, "GET", "/healthz", seconds=10)
    assert reply.status == 200, reply
    return json.loads(reply.body)["sessions"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_conformance_through_gateway_matches_direct(direct, launcher, tmp_path, transport):
    pid_dir = tmp_path / "upstream-pids"
    pid_dir.mkdir()
    if transport == "stdio":
        # Sandboxed, as stdio upstreams run by default: the server and the SDK read-only, its pid files writable.
        writable_by_the_sandbox(pid_dir)
        upstream: dict[str, Any] = {
            "command": node_bin(),
            "args": [str(SERVER), "stdio", "--pid-dir", str(pid_dir)],
            "bind_ro": [str(FIXTURES), str(E2E / "node_modules")],
            "bind": [str(pid_dir)],
        }
    else:
        url, server = conformance_http(launcher)
        upstream = {"url": url}
    gateway = launcher.gateway({"conformance": {**upstream, "prefix": ""}})

    for run in range(1, RUNS_THROUGH_GATEWAY + 1):
        through = conformance(gateway.url, tmp_path / f"run-{run}")
        differ = differences(direct, through)
        assert not differ, f"run {run} through the gateway differs from the direct run:\n" + json.dumps(
            differ, indent=2, ensure_ascii=False
        )

        # Every session the suite opened it also ended; nothing is left of any.
        assert retry_until(lambda: sessions_open(gateway), lambda n: n == 0, attempts=50, pause=0.1)[-1] == 0
        opened = gateway.events("session-opened", run * len(SCENARIOS))
        closed = gateway.events("session-closed", run * len(SCENARIOS))
        assert len(opened) == len(closed) == run * len(SCENARIOS), (len(opened), len(closed))
        assert {r["reason"] for r in closed} == {"deleted"}, closed
        assert {r["session"] for r in opened} == {r["session"] for r in closed}
        if transport == "stdio":
            assert list(pid_dir.iterdir()), "no upstream process was ever started"
            # The pids it wrote are its sandbox's own; on the host, it is one of the gateway's descendants.
            gateway_pid = gateway.proc.popen.pid

            def servers() -> list[tuple[int, str]]:
                return [(p, cmd) for p, cmd in descendants(gateway_pid) if str(SERVER) in cmd]

            left = retry_until(servers, lambda left: not left, attempts=100, pause=0.1)
            assert not left[-1], f"upstream processes still running after run {run}: {left[-1]}"
        else:
            log = server.stderr_path.read_text()
            upstream_opened = re.findall(r"^session opened (\S+)$", log, re.M)
            upstream_closed = re.findall(r"^session closed (\S+)$", log, re.M)
            assert upstream_opened, "the gateway never opened a session upstream"
            assert sorted(upstream_opened) == sorted(upstream_closed), (
                f"upstream sessions still open after run {run}: {set(upstream_opened) - set(upstream_closed)}"
            )

    # With no session left, a shutdown has no work to wait for.
    gateway.proc.stop()
    assert gateway.proc.popen.returncode == 0, gateway.proc.output()
    stderr = gateway.proc.stderr_path.read_text()
    assert "still running" not in stderr, stderr
