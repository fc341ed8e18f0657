"""`palisade check`: a valid config is accepted and shown; an invalid one is refused by file and field."""

from __future__ import annotations

import subprocess

from support import PASS_THROUGH, Proc, config_text, everything_stdio, free_port, palisade_bin, write_config


def check(config) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [palisade_bin(), "check", "--config", str(config)], capture_output=True, text=True, timeout=60
    )


def test_valid_config_is_accepted_and_printed(tmp_path):
    config = write_config(tmp_path / "palisade.toml", data_dir=tmp_path, upstreams={"everything": everything_stdio()})
    done = check(config)
    assert done.returncode == 0, done.stderr
    assert "everything" in done.stdout, done.stdout


def test_unknown_field_is_refused_naming_file_and_field(tmp_path):
    text = config_text(data_dir=tmp_path, upstreams={}).replace("listen =", "lisen =")
    config = tmp_path / "typo.toml"
    config.write_text(text)
    done = check(config)
    assert done.returncode != 0, done.stdout
    assert "typo.toml" in done.stderr, done.stderr
    assert "lisen" in done.stderr, done.stderr


def test_a_command_that_cannot_be_found_is_refused_at_start(tmp_path):
    config = write_config(
        tmp_path / "missing.toml", data_dir=tmp_path, upstreams={"gone": {"command": "no-such-mcp-server-anywhere"}}
    )
    for verb in ("check", "serve"):
        done = subprocess.run(
            [palisade_bin(), verb, "--config", str(config)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0, f"{verb} started with a missing command: {done.stdout}"
        assert "`upstreams.gone.command`" in done.stderr and "no-such-mcp-server-anywhere" in done.stderr, done.stderr


def test_the_wrapped_command_must_exist(tmp_path):
    done = subprocess.run(
        [palisade_bin(), "mcp", "--", "no-such-mcp-server-anywhere"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "cannot run `no-such-mcp-server-anywhere`" in done.stderr, done.stderr
    assert done.stdout == "", "nothing but protocol messages may reach stdout"


def test_check_never_prints_credentials(tmp_path):
    upstream = {"command": "node", "args": ["x.js"]}
    text = config_text(data_dir=tmp_path, upstreams={"a": upstream})
    text += '\n[upstreams.a.env]\nAPI_KEY = "sk-test-do-not-print"\n'
    config = tmp_path / "secret.toml"
    config.write_text(text)
    done = check(config)
    assert done.returncode == 0, done.stderr
    assert "sk-test-do-not-print" not in done.stdout + done.stderr
    assert "API_KEY" in done.stdout


def test_unknown_field_is_named_by_its_path_with_the_fields_expected(tmp_path):
    text = config_text(data_dir=tmp_path, upstreams={}).replace("listen =", "lisen =")
    config = tmp_path / "palisade.toml"
    config.write_text(text)
    done = check(config)
    assert done.returncode != 0, done.stdout
    line = done.stderr.strip()
    assert line.startswith(f"palisade: {config}: `server.lisen`: unknown field (line 4, column 1); "), line
    expected = line.split("expected one of ", 1)[-1].split(", ")
    # Every field of [server] is offered, starting with the one meant.
    assert expected[0] == "listen" and {"path", "max_sessions", "session_idle_timeout"} <= set(expected), line
    assert "TOML parse error" not in line and "|" not in line, "serde's rendering, not palisade's"


def test_wrong_types_are_named_by_path_in_plain_words(tmp_path):
    cases = [
        ({"server": {"max_sessions": "10"}}, "`server.max_sessions`: expected a whole number, got the string `10`"),
        (
            {"upstreams": {"files": {"command": "node", "args": ["a", "b", 3]}}},
            "`upstreams.files.args[2]`: expected a string, got the whole number `3`",
        ),
        (
            {"upstreams": {"files": {"command": "node", "inherit_env": "yes"}}},
            "`upstreams.files.inherit_env`: expected true or false, got the string `yes`",
        ),
        (
            {"upstreams": {"files": {"command": "node", "request_timeout": 30}}},
            '`upstreams.files.request_timeout`: expected a duration in quotes, such as "30s" or "500ms", got the whole number `30`',
        ),
    ]
    for i, (kwargs, expected) in enumerate(cases):
        config = tmp_path / f"types{i}.toml"
        config.write_text(config_text(data_dir=tmp_path, upstreams=kwargs.get("upstreams", {}), server=kwargs.get("server")))
        done = check(config)
        assert done.returncode != 0, done.stdout
        assert f"palisade: {config}: {expected} (line " in done.stderr, done.stderr
        assert "invalid type" not in done.stderr, done.stderr


def test_an_empty_config_runs_every_stage_and_passing_one_through_is_explicit(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    done = check(empty)
    assert done.returncode == 0, done.stderr
    assert "pass_through = []" in done.stdout, done.stdout

    partial = tmp_path / "partial.toml"
    partial.write_text(f'data_dir = "{tmp_path / "d"}"\n[pipeline]\npass_through = ["limits", "redact"]\n')
    done = check(partial)
    assert done.returncode == 0, done.stderr
    assert 'pass_through = ["limits", "redact"]' in done.stdout, done.stdout

    twice = tmp_path / "twice.toml"
    twice.write_text('[pipeline]\npass_through = ["limits", "limits"]\n')
    done = check(twice)
    assert done.returncode != 0, done.stdout
    assert "stage `limits` is listed twice" in done.stderr, done.stderr


def test_a_missing_config_file_states_the_os_error_once(tmp_path):
    missing = tmp_path / "nope.toml"
    done = check(missing)
    assert done.returncode != 0
    assert done.stderr == f"palisade: cannot read `{missing}`: No such file or directory (os error 2)\n", done.stderr


def test_mcp_without_dashes_says_where_the_command_goes():
    done = subprocess.run([palisade_bin(), "mcp", "npx", "server"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "palisade: put the server command after `--`, so that its flags are not taken for palisade's: "
        "`palisade mcp -- npx server`\n"
    ), done.stderr
    done = subprocess.run(
        [palisade_bin(), "mcp", "--name", "files", "npx", "-y", "@scope/server files"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "`palisade mcp --name files -- npx -y '@scope/server files'`" in done.stderr, done.stderr


def test_every_subcommand_documents_config_in_help():
    for verb in ("serve", "mcp", "check"):
        done = subprocess.run([palisade_bin(), verb, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        option = next((line for line in done.stdout.splitlines() if "--config" in line), "")
        assert "-c, --config <FILE>" in option, done.stdout
        assert "Without it, the embedded default" in option, done.stdout


def test_listen_flag_overrides_the_config_and_stays_on_loopback(tmp_path):
    config = write_config(tmp_path / "palisade.toml", data_dir=tmp_path, upstreams={})
    port = free_port()
    done = subprocess.run(
        [palisade_bin(), "check", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f'listen = "127.0.0.1:{port}"' in done.stdout, done.stdout

    gateway = Proc(
        [palisade_bin(), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        log_dir=tmp_path / "logs",
        name="palisade",
    )
    try:
        gateway.wait_for(rf"listening on http://127\.0\.0\.1:{port}/mcp")
    finally:
        gateway.stop()

    refused = "palisade: `--listen`: `0.0.0.0:9000` is not a loopback address, and anonymous callers are served; configure `[auth]` (API keys or `[auth.jwt]`) with `anonymous = false` to listen beyond loopback\n"
    for verb in ("check", "serve"):
        done = subprocess.run(
            [palisade_bin(), verb, "--config", str(config), "--listen", "0.0.0.0:9000"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0, done.stdout
        assert done.stderr == refused, done.stderr
