"""`palisade check`: a valid config is accepted and shown; an invalid one is refused by file and field."""

from __future__ import annotations

import subprocess

from support import config_text, everything_stdio, palisade_bin, write_config


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


def test_config_without_pass_through_is_refused(tmp_path):
    lines = config_text(data_dir=tmp_path, upstreams={}).splitlines()
    text = "\n".join(line for line in lines if "pass_through" not in line)
    config = tmp_path / "implicit.toml"
    config.write_text(text + "\n")
    done = check(config)
    assert done.returncode != 0, done.stdout
    assert "implicit.toml" in done.stderr, done.stderr
    assert "pass_through" in done.stderr, done.stderr


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
