"""Layer 5, limits, through `palisade serve` with the official Python SDK client: the seed's table, tokens and the budget, loops, restarts, three gateways on one Redis, and Redis going away.

Every upstream here is fixtures/limits_server.py, which logs each call it
executes: a refused call must never appear in its log, and what ran must
match what palisade admitted. Time is the real clock (these are processes);
where a rate refills while a test runs, the assertion is GCRA's own bound:
in any stretch of time t, at most burst + t × rate calls pass.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from layer1 import cli, client, create_key, jsonl, ok, run, text_of
from support import Gateway, free_port, http_request, python_stdio, retry_until, write_config

LIMITED = -32011
INTERNAL = -32603

# Every stage but limits passed through: what is measured here is layer 5 alone.
PASS = ["authorize", "outbound-filter", "approval", "inject-secrets", "redact", "inbound-filter"]

SEED = """
[auth]
anonymous = false

[limits]
time_zone = "UTC"

[limits.rules.tool_calls]
rate = "30/1m"

[limits.rules.file_writes]
rate = "10/1m"
tools = ["files/write_file"]

[limits.rules.emails]
rate = "5/1h"
tools = ["mail/send_*"]

[limits.rules.cloud_mutations]
rate = "3/1h"
tools = ["aws/*"]
effects = ["write", "irreversible"]

[limits.rules.model_tokens]
quota = "100000/1d"
counts = "tokens"

[limits.tiers.pro]
roles = ["pro"]
rules = { tool_calls = "120/1m", emails = "off" }
"""


def upstreams(log: Path) -> dict[str, dict[str, Any]]:
    def server(name: str, effects: dict[str, str]) -> dict[str, Any]:
        return {**python_stdio("limits_server.py", name, str(log)), "effects": effects}

    return {
        "files": server("files", {"read_file": "read", "write_file": "write"}),
        "mail": server("mail", {"send_email": "write"}),
        "aws": server("aws", {"describe": "read", "mutate": "write", "bill": "read"}),
        "llm": server("llm", {"complete": "read"}),
        "jobs": server("jobs", {"status": "read", "poll": "read", "step": "read"}),
    }


def limits_gateway(launcher: Any, tmp_path: Path, extra: str, *, data_dir: Path | None = None) -> tuple[Gateway, Path, Path]:
    data_dir = data_dir or tmp_path / "data"
    log = tmp_path / "executed.jsonl"
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams=upstreams(log), pass_through=PASS, extra=extra)
    return launcher.gateway({}, data_dir=data_dir, config=config), config, log


def executed(log: Path, tool: str) -> int:
    return sum(1 for line in jsonl(log) if line["tool"] == tool)


async def refused(c: Any, tool: str, arguments: dict[str, Any]) -> MCPError:
    with pytest.raises(MCPError) as error:
        await c.call_tool(tool, arguments)
    return error.value


def retry_ms(error: MCPError) -> int:
    return error.data["palisade"]["retryAfterMs"]


def test_each_seed_limit_is_enforced_and_a_tier_overrides_it(launcher, tmp_path):
    gateway, config, log = limits_gateway(launcher, tmp_path, SEED)
    alice, bob = create_key(config, "alice"), create_key(config, "bob", "pro")

    async def agent() -> dict[str, int]:
        started = time.monotonic()
        async with client(gateway.url, alice) as c:
            for i in range(10):
                await c.call_tool("files__write_file", {"path": f"/w/{i}", "content": "x"})
            error = await refused(c, "files__write_file", {"path": "/w/10", "content": "x"})
            assert error.code == LIMITED and error.data["palisade"]["executed"] is False, error
            assert "limit `file_writes` (10 calls per 1 min" in error.message, error.message
            assert 4_000 < retry_ms(error) <= 6_000, error.data  # one call every 6 s

            for i in range(5):
                await c.call_tool("mail__send_email", {"to": f"u{i}@example.com", "subject": "hi"})
            error = await refused(c, "mail__send_email", {"to": "u5@example.com", "subject": "hi"})
            assert "limit `emails` (5 calls per 1 h" in error.message, error.message
            assert 700_000 < retry_ms(error) <= 720_000, error.data  # one every 12 min

            for i in range(3):
                await c.call_tool("aws__mutate", {"resource": f"r{i}"})
            error = await refused(c, "aws__mutate", {"resource": "r3"})
            assert "limit `cloud_mutations`" in error.message, error.message
            # A read of the same upstream is not a mutation.
            await c.call_tool("aws__describe", {"resource": "r0"})

            # Refused calls drew on nothing: 19 tool calls so far. Read until
            # tool_calls refuses.
            reads = 0
            while True:
                try:
                    await c.call_tool("files__read_file", {"path": f"/r/{reads}"})
                except MCPError as e:
                    assert "limit `tool_calls` (30 calls per 1 min 0 s, bursts of 30)" in e.message, e.message
                    break
                reads += 1
                assert reads < 100, "tool_calls never refused"
            elapsed = time.monotonic() - started

        async with client(gateway.url, bob) as c:
            for i in range(12):  # the pro tier turns emails off and allows 120 calls a minute
                await c.call_tool("mail__send_email", {"to": f"b{i}@example.com", "subject": "hi"})
        return {"reads": reads, "elapsed": elapsed}

    seen = run(agent)
    # 19 admitted before the reads; GCRA's bound over the elapsed time.
    assert 19 + seen["reads"] >= 30, seen
    assert 19 + seen["reads"] <= 30 + seen["elapsed"] / 2 + 1, seen
    assert executed(log, "write_file") == 10 and executed(log, "mutate") == 3, "refused calls never ran"
    assert executed(log, "send_email") == 5 + 12 and executed(log, "read_file") == seen["reads"]

    alerts = gateway.events("limit-alert", 4)
    kinds = {(a["kind"], a["limit"]) for a in alerts}
    assert ("near-limit", "file_writes") in kinds and ("limit-reached", "file_writes") in kinds, alerts
    assert ("limit-reached", "emails") in kinds and ("limit-reached", "tool_calls") in kinds, alerts
    assert all(a["principal"] == "alice" for a in alerts), alerts

    status = json.loads(ok(cli(config, "limits", "status", "--principal", "alice", "--format", "json")))
    lines = {line["limit"]: line for line in status}
    assert lines["file_writes"]["used"] == 10 and lines["file_writes"]["capacity"] == 10, status
    assert lines["emails"]["used"] == 5, status
    assert "principal=bob" not in json.dumps(status), "--principal shows only that principal"


def test_tokens_and_the_budget_reserve_settle_and_survive_a_restart(launcher, tmp_path):
    extra = """
[auth]
anonymous = false
[limits.rules.model_tokens]
quota = "100000/1d"
counts = "tokens"
[limits.budget]
daily_limit_usd = 1
costs = { "aws/bill" = "0.30" }
models = { "llm/complete" = "gpt-4o-mini" }
estimate_tokens = 1000
"""
    data_dir = tmp_path / "data"
    gateway, config, log = limits_gateway(launcher, tmp_path, extra, data_dir=data_dir)
    alice = create_key(config, "alice")

    async def spend() -> None:
        async with client(gateway.url, alice) as c:
            for i in range(3):
                await c.call_tool("aws__bill", {"item": f"i{i}"})
            error = await refused(c, "aws__bill", {"item": "i3"})
            assert error.code == LIMITED, error
            assert "daily budget exceeded: $0.90 spent + $0.30 estimate > $1.00 limit" in error.message, error.message
            assert "resets at midnight UTC" in error.message, error.message
            # 60,000 tokens reported, then 40,000: the quota is used up exactly.
            first = await c.call_tool("llm__complete", {"prompt": "a", "input": 50_000, "output": 10_000})
            assert text_of(first) == "completion for a", first
            await c.call_tool("llm__complete", {"prompt": "b", "input": 30_000, "output": 10_000})
            error = await refused(c, "llm__complete", {"prompt": "c", "input": 1, "output": 1})
            assert "quota `model_tokens` (100000 tokens per day) is used up: 100000 of 100000" in error.message, error.message

    run(spend)
    assert executed(log, "bill") == 3 and executed(log, "complete") == 2
    # The embedded counters reach the state store within 250 ms.
    def status() -> dict[str, Any]:
        listed = json.loads(ok(cli(config, "limits", "status", "--principal", "alice", "--format", "json")))
        return {line["limit"]: line for line in listed}

    lines = retry_until(status, lambda l: l["model_tokens"]["used"] == 100_000, attempts=20, pause=0.1)[-1]
    assert lines["model_tokens"]["used"] == 100_000, lines
    # $0.90 for the bills, and 100,000 gpt-4o-mini tokens: 80,000 in at
    # $0.15/M and 20,000 out at $0.60/M, $0.024.
    assert lines["daily budget"]["used"] == 924_000 and lines["daily budget"]["unit"] == "micro-dollars", lines

    gateway.proc.stop()
    again, _, _ = limits_gateway(launcher, tmp_path, extra, data_dir=data_dir)

    async def after_restart() -> None:
        async with client(again.url, alice) as c:
            error = await refused(c, "llm__complete", {"prompt": "d", "input": 1, "output": 1})
            assert "quota `model_tokens`" in error.message, error.message
            error = await refused(c, "aws__bill", {"item": "i4"})
            assert "$0.924 spent + $0.30 estimate > $1.00 limit" in error.message, error.message

    run(after_restart)
    assert executed(log, "bill") == 3 and executed(log, "complete") == 2, "a restart handed out a fresh day"


def test_loops_repeats_cycles_and_retries_are_told_apart(launcher, tmp_path):
    gateway, config, log = limits_gateway(launcher, tmp_path, "\n[auth]\nanonymous = false\n")
    alice = create_key(config, "alice")

    async def agent() -> None:
        async with client(gateway.url, alice) as c:
            # The same call, the same answer: refused the fourth time.
            for _ in range(3):
                await c.call_tool("jobs__status", {"job": "j1"})
            error = await refused(c, "jobs__status", {"job": "j1"})
            assert error.code == LIMITED and error.data["palisade"]["reason"] == "loop-detected", error
            assert "made 3 times in the last 10 calls" in error.message, error.message
            assert "change the arguments or try a different approach" in error.message, error.message
            # Other arguments are another call.
            await c.call_tool("jobs__status", {"job": "j2"})

        async with client(gateway.url, alice) as c:
            # A new session starts a new window. A poll whose answer changes is
            # a retry that may be getting somewhere: it goes on longer.
            for _ in range(5):
                await c.call_tool("jobs__poll", {"job": "j1"})

        async with client(gateway.url, alice) as c:
            # A B A B A B, each answering something new (so no call is a
            # stalled repeat): the next A would start a fourth round.
            for _ in range(3):
                await c.call_tool("jobs__step", {"n": "a"})
                await c.call_tool("jobs__step", {"n": "b"})
            error = await refused(c, "jobs__step", {"n": "a"})
            assert "the last 6 calls repeat a cycle of 2 calls 3 times" in error.message, error.message

    run(agent)
    assert executed(log, "status") == 4 and executed(log, "poll") == 5 and executed(log, "step") == 6
    alerts = [a for a in gateway.events("limit-alert", 2) if a["kind"] == "loop-detected"]
    assert len(alerts) == 2, alerts


def redis_server() -> str | None:
    url = os.environ.get("PALISADE_TEST_REDIS", "").strip()
    if url:
        return url
    how = "start one with `scripts/redis start` and `export PALISADE_TEST_REDIS=$(scripts/redis url)` (scripts/test does both)"
    if os.environ.get("CI"):
        pytest.fail(f"PALISADE_TEST_REDIS is not set, and CI is: shared limits must be tested on Redis; {how}")
    return None


def test_three_gateways_on_one_redis_never_exceed_a_limit_or_a_budget(launcher, tmp_path):
    url = redis_server()
    if url is None:
        pytest.skip("PALISADE_TEST_REDIS is not set")
    prefix = f"e2e-{uuid.uuid4().hex}"
    extra = f"""
[auth]
anonymous = false
[limits]
store = "{url}"
key_prefix = "{prefix}"
[limits.rules.reads]
rate = "40/1h"
tools = ["files/*"]
[limits.budget]
daily_limit_usd = 5
costs = {{ "aws/bill" = "0.25" }}
[limits.loops]
max_similar = 0
"""
    log = tmp_path / "executed.jsonl"
    gateways = []
    for n in range(3):
        data_dir = tmp_path / f"data{n}"
        config = write_config(tmp_path / f"palisade{n}.toml", data_dir=data_dir, upstreams=upstreams(log), pass_through=PASS, extra=extra)
        gateways.append((launcher.gateway({}, data_dir=data_dir, config=config), config))
    # One key store per gateway: the same principal made on each.
    keys = [(create_key(config, "alice"), create_key(config, "bob")) for _, config in gateways]

    async def storm(tool: str, who: int) -> int:
        admitted = 0

        async def one(n: int) -> None:
            nonlocal admitted
            gateway, _ = gateways[n % 3]
            async with client(gateway.url, keys[n % 3][who]) as c:
                for i in range(2):
                    try:
                        await c.call_tool(tool, {"path": f"/{n}/{i}", "item": f"{n}/{i}"})
                        admitted += 1
                    except MCPError as e:
                        assert e.code == LIMITED, e

        async with anyio.create_task_group() as group:
            for n in range(64):
                group.start_soon(one, n)
        return admitted

    reads = run(storm, "files__read_file", 0)
    bills = run(storm, "aws__bill", 1)
    assert reads == 40 and executed(log, "read_file") == 40, "40 an hour, whichever gateway"
    assert bills == 20 and executed(log, "bill") == 20, "$5.00 at $0.25 a call, whichever gateway"
    status = json.loads(ok(cli(gateways[1][1], "limits", "status", "--principal", "bob", "--format", "json")))
    [budget] = [line for line in status if line["limit"] == "daily budget"]
    assert budget["used"] == 5_000_000 and budget["capacity"] == 5_000_000, status


def test_when_redis_goes_away_limits_fail_closed_health_says_so_and_they_come_back(launcher, tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed, and CI is (scripts/redis start installs it)")
        pytest.skip("redis-server is not installed")
    port = free_port()

    def start_redis() -> Any:
        proc = launcher.process(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "not-shown-anywhere"],
            what="redis",
        )
        proc.wait_for(r"Ready to accept connections", stream="stdout")
        return proc

    redis = start_redis()
    extra = f"""
[auth]
anonymous = false
[limits]
store = "redis://:not-shown-anywhere@127.0.0.1:{port}/0"
[limits.rules.writes]
rate = "100/1m"
effects = ["write"]
[limits.rules.reads]
rate = "100/1m"
effects = ["read"]
on_unavailable = "open"
"""
    gateway, config, log = limits_gateway(launcher, tmp_path, extra)
    alice = create_key(config, "alice")

    def health() -> dict[str, Any]:
        return json.loads(http_request(gateway.base, "GET", "/healthz").body)

    async def calls(expect_down: bool) -> None:
        async with client(gateway.url, alice) as c:
            if not expect_down:
                await c.call_tool("files__write_file", {"path": f"/w/{time.time()}", "content": "x"})
                return
            error = await refused(c, "files__write_file", {"path": "/w/down", "content": "x"})
            assert error.code == INTERNAL and error.data["palisade"]["executed"] is False, error
            assert error.data["palisade"]["retryAfterMs"] >= 1_000, error.data
            # A read is configured to fail open: it runs, and says it was unchecked.
            done = await c.call_tool("files__read_file", {"path": "/r/down"})
            assert text_of(done) == "read_file done", done

    run(calls, False)
    assert health()["limits"]["degraded"] is False, health()
    redis.stop()
    run(calls, True)
    shown = health()
    assert shown["limits"]["degraded"] is True and "127.0.0.1" in shown["limits"]["detail"], shown
    assert "not-shown-anywhere" not in json.dumps(shown), "the Redis password reached /healthz"
    assert executed(log, "write_file") == 1, "a write ran with its limit unchecked"
    outcomes = gateway.call_outcomes(3)
    degraded = [o for o in outcomes if "limits.degraded" in json.dumps(o)]
    assert degraded, outcomes

    start_redis()
    seen = retry_until(lambda: run(calls, False) or health(), lambda h: h["limits"]["degraded"] is False, attempts=20, pause=0.25)
    assert seen[-1]["limits"]["degraded"] is False, seen
    emitted = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert b"not-shown-anywhere" not in emitted, "the Redis password reached the data directory"


@pytest.mark.parametrize(
    ("table", "wanted"),
    [
        ('[limits.rules.r]\nrate = "30/minute"', "`limits.rules.r.rate`"),
        ('[limits.rules.r]\nrate = "0/1m"', "admits nothing"),
        ("[limits.budget]\ndaily_limit_usd = -5", "`limits.budget.daily_limit_usd`"),
        ("[limits.budget]\ndaily_limit_usd = 0.5", "a float cannot hold cents exactly"),
        ('[limits]\ntime_zone = "Mars/Olympus"', "`limits.time_zone`"),
        ('[limits]\nrate_limit = "30/1m"', "`limits.rate_limit`"),
        ('[limits.budget]\ndaily_limit_usd = 5\nmodels = { "llm/complete" = "no-such-model" }', "no-such-model"),
        ('[limits]\nstore = "rediss://127.0.0.1:6379"', "TLS to Redis"),
    ],
)
def test_limits_that_do_not_parse_are_named_at_load_time(tmp_path, table, wanted):
    config = write_config(tmp_path / "palisade.toml", data_dir=tmp_path / "data", upstreams={}, pass_through=PASS, extra="\n" + table + "\n")
    done = cli(config, "check")
    assert done.returncode != 0, done.stdout
    assert wanted in done.stderr, done.stderr
    assert "panicked" not in done.stderr, done.stderr
