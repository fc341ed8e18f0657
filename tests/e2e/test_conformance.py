"""The MCP conformance suite scores the gateway exactly as it scores the server behind it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from support import CONFORMANCE_BIN

# Scenarios that server-everything passes when tested directly (9 of 24 with
# conformance 0.1.8); fewer means the reference run itself went wrong.
DIRECT_PASSES_AT_LEAST = 9
# The two scenarios whose direct pass is an artifact, with the tool each one calls.
# conformance 0.1.8 calls tools that server-everything does not have; its SDK
# answers a call to an unknown tool with an `isError` result, which these two
# checks accept. A gateway that answers an unknown tool with JSON-RPC error
# -32602, as the MCP spec says, fails them; the test allows that difference and
# checks that it is the only reason they differ.
UNKNOWN_TOOL_ARTIFACTS = {"tools-call-simple-text": "test_simple_text", "tools-call-error": "test_error_handling"}
RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def conformance(url: str, workdir: Path) -> dict[str, dict[str, object]]:
    """Runs `conformance server --url` with its results under `workdir`; per scenario, pass or fail and why."""
    workdir.mkdir(parents=True)
    done = subprocess.run(
        [str(CONFORMANCE_BIN), "server", "--url", url],
        cwd=workdir,  # conformance writes ./results/<scenario>-<time>/checks.json
        capture_output=True,
        text=True,
        timeout=600,
    )
    (workdir / "conformance.log").write_text(done.stdout + done.stderr)
    results = workdir / "results"
    assert results.is_dir(), f"conformance wrote no results (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    outcome: dict[str, dict[str, object]] = {}
    for run_dir in sorted(results.iterdir()):
        named = RESULT_DIR.match(run_dir.name)
        assert named, f"unexpected conformance result directory `{run_dir.name}`"
        checks = json.loads((run_dir / "checks.json").read_text())
        failed = [c for c in checks if c["status"] == "FAILURE"]
        passed = [c for c in checks if c["status"] == "SUCCESS"]
        outcome[named["scenario"]] = {
            "passed": bool(passed) and not failed,
            "why": [c.get("errorMessage", c["status"]) for c in failed],
            "checks": checks,
        }
    summary = re.findall(r"^[✓✗] (\S+): (\d+) passed, (\d+) failed$", done.stdout + done.stderr, re.M)
    assert {name for name, _, _ in summary} == set(outcome), "SUMMARY and results directories disagree"
    for name, passes, fails in summary:
        assert outcome[name]["passed"] == (int(passes) > 0 and int(fails) == 0), name
    return outcome


def test_conformance_through_gateway_matches_direct(launcher, tmp_path):
    upstream = launcher.everything_http()
    direct = conformance(upstream, tmp_path / "direct")
    passes = sorted(name for name, result in direct.items() if result["passed"])
    assert len(passes) >= DIRECT_PASSES_AT_LEAST, f"direct run passed only {passes}"

    gateway = launcher.gateway({"remote": {"url": upstream}})
    through = conformance(gateway.url, tmp_path / "through")

    assert sorted(through) == sorted(direct), "the two runs did not cover the same scenarios"

    for name, tool in UNKNOWN_TOOL_ARTIFACTS.items():
        direct_texts = [
            part.get("text", "")
            for check in direct[name]["checks"]
            for part in check.get("details", {}).get("result", {}).get("content", [])
        ]
        assert direct[name]["passed"] and any(f"Tool {tool} not found" in t for t in direct_texts), (
            f"{name}: the direct pass is no longer the unknown-tool artifact; drop it from UNKNOWN_TOOL_ARTIFACTS\n"
            + json.dumps(direct[name], indent=2)
        )
        # Through the gateway: either the same pass, or a failure on exactly that -32602.
        assert through[name]["passed"] or any("-32602" in why and tool in why for why in through[name]["why"]), (
            f"{name}: through the gateway, expected a pass or a failure on JSON-RPC error -32602 for `{tool}`\n"
            + json.dumps(through[name], indent=2)
        )

    def brief(result: dict[str, object]) -> dict[str, object]:
        return {"passed": result["passed"], "why": result["why"]}

    differ = {
        name: {"direct": brief(direct[name]), "through gateway": brief(through[name])}
        for name in direct
        if name not in UNKNOWN_TOOL_ARTIFACTS and direct[name]["passed"] != through[name]["passed"]
    }
    assert not differ, "conformance differs through the gateway:\n" + json.dumps(differ, indent=2, ensure_ascii=False)
