"""Layer 1, authentication: who connects to `palisade serve` and `palisade mcp`, and how each is refused.

API keys made with `palisade keys`, task tokens made with `palisade token`, the
MCP authorization rules for a resource server (RFC 9728 metadata, 401 with
`WWW-Authenticate`), sessions kept to their principal, TLS beyond loopback.
Every credential is searched for in every byte palisade wrote.
"""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from layer1 import AuthedSession, cli, client, create_key, emitted, ok, run, text_of
from support import PROTOCOL_VERSION, audit_lines, everything_stdio, http_request, palisade_bin, wrapped, write_config

AUTH = "\n[auth]\nanonymous = false\n"
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "e2e", "version": "0"}},
}


def keyed_gateway(launcher, tmp_path: Path, *, extra: str = AUTH, upstreams=None):
    """A gateway that requires credentials, and its config (for the CLI)."""
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "palisade.toml",
        data_dir=data_dir,
        upstreams=upstreams if upstreams is not None else {"everything": everything_stdio()},
        extra=extra,
    )
    return launcher.gateway({}, data_dir=data_dir, config=config), config


def test_an_api_key_authenticates_the_official_client_and_revocation_takes_effect_on_the_next_request(launcher, tmp_path):
    gateway, config = keyed_gateway(launcher, tmp_path)
    key = create_key(config, "alice", "dev")
    listed = ok(cli(config, "keys", "list"))
    key_id = key.split("_")[1]
    assert key_id in listed and "alice" in listed and "live" in listed, listed
    assert key.split("_", 2)[2] not in listed, "the secret part of a key is shown once, at creation"

    async def call() -> str:
        async with client(gateway.url, key) as c:
            return text_of(await c.call_tool("everything__echo", {"message": "hi"}))

    assert run(call) == "Echo: hi"
    [opened] = gateway.events("session-opened", 1)
    assert opened["principal"] == "alice", opened
    [outcome] = gateway.call_outcomes(1)
    assert outcome["principal"] == "alice" and outcome["outcome"]["status"] == "completed", outcome

    # A session opened before the revocation ends with it: its next request is refused.
    session = AuthedSession(gateway.base, key)
    session.initialize()
    ok(cli(config, "keys", "revoke", key_id))
    assert "revoked" in ok(cli(config, "keys", "list"))
    refused = session.post({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
    assert refused.status == 401, refused
    assert 'error="invalid_token"' in refused.headers["www-authenticate"], refused.headers
    again = AuthedSession(gateway.base, key).post(INIT, session=False)
    assert again.status == 401, again

    failed = gateway.events("authentication-failed", 2)
    assert failed and all(f["credential"] == "api-key" for f in failed), failed
    gateway.proc.stop()
    assert key.encode() not in emitted(gateway.audit_path, gateway.proc.stderr_path)
    assert key.split("_", 2)[2].encode() not in emitted(gateway.audit_path, gateway.proc.stderr_path)


def test_without_a_credential_the_client_is_told_where_to_authenticate(launcher, tmp_path):
    gateway, _ = keyed_gateway(launcher, tmp_path)
    missing = AuthedSession(gateway.base, None).post(INIT, session=False)
    assert missing.status == 401, missing
    challenge = missing.headers["www-authenticate"]
    metadata_url = f"{gateway.base}/.well-known/oauth-protected-resource/mcp"
    assert challenge == f'Bearer resource_metadata="{metadata_url}"', challenge

    metadata = http_request(gateway.base, "GET", "/.well-known/oauth-protected-resource/mcp")
    assert metadata.status == 200
    document = json.loads(metadata.body)
    assert document["resource"] == gateway.url and document["bearer_methods_supported"] == ["header"], document

    for header, status, code in [
        ("Basic YWxpY2U6cHc=", 400, "invalid_request"),
        ("Bearer pk_aaaaaaaaaaaa_" + "A" * 43, 401, "invalid_token"),
        ("Bearer not-a-credential", 401, "invalid_token"),
        ("Bearer pt_AAAA", 401, "invalid_token"),
        ("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.", 401, "invalid_token"),
    ]:
        reply = http_request(
            gateway.base,
            "POST",
            "/mcp",
            body=json.dumps(INIT).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json", "Authorization": header},
        )
        assert reply.status == status, (header, reply)
        assert f'error="{code}"' in reply.headers["www-authenticate"], (header, reply.headers)
    failures = gateway.events("authentication-failed", 6)
    assert len(failures) >= 6, failures
    assert {f["credential"] for f in failures} >= {"none", "api-key", "task-token", "jwt"}, failures
    assert not gateway.events("session-opened", 1, seconds=0.2), "no session opens without a credential"


def test_a_session_belongs_to_the_principal_that_opened_it(launcher, tmp_path):
    gateway, config = keyed_gateway(launcher, tmp_path)
    alice, bob = create_key(config, "alice", "dev"), create_key(config, "bob", "dev")
    session = AuthedSession(gateway.base, alice)
    session.initialize()
    session.token = bob
    stolen = session.post({"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
    assert stolen.status == 403, stolen
    assert 'error="insufficient_scope"' in stolen.headers["www-authenticate"]
    second_alice_key = create_key(config, "alice", "dev")
    session.token = second_alice_key
    assert session.request("tools/list")["result"]["tools"], "a principal's other key continues its session"


def test_task_tokens_are_minted_attenuated_offline_and_revoked(launcher, tmp_path):
    gateway, config = keyed_gateway(launcher, tmp_path)
    issued = cli(config, "token", "issue", "--principal", "carol", "--tools", "everything__echo,everything__get-sum", "--ttl", "15m")
    token = ok(issued).strip()
    assert token.startswith("pt_"), token
    found = re.search(r"task token ([0-9a-f]{128})", issued.stderr)
    assert found, issued.stderr
    token_id = found.group(1)

    narrowed = ok(cli(config, "token", "attenuate", "-", "--tools", "everything__echo", "--ttl", "5m", stdin=token)).strip()
    assert narrowed.startswith("pt_") and narrowed != token
    inspected = ok(cli(config, "token", "inspect", "-", stdin=narrowed))
    assert "everything/echo" in inspected, inspected

    def call(credential: str, tool: str, arguments: dict) -> dict:
        session = AuthedSession(gateway.base, credential)
        session.initialize()
        return session.request("tools/call", {"name": tool, "arguments": arguments})

    assert call(token, "everything__get-sum", {"a": 1, "b": 2}).get("result"), "the full token may use both tools"
    assert call(narrowed, "everything__echo", {"message": "x"}).get("result")
    refused = call(narrowed, "everything__get-sum", {"a": 1, "b": 2})
    assert refused.get("error"), "the attenuated token is narrowed to echo"

    ok(cli(config, "token", "revoke", token_id))
    for credential in (token, narrowed):
        reply = AuthedSession(gateway.base, credential).post(INIT, session=False)
        assert reply.status == 401, reply
    gateway.proc.stop()
    for secret in (token, narrowed):
        assert secret.encode() not in emitted(gateway.audit_path, gateway.proc.stderr_path)


def test_palisade_mcp_is_the_local_user_or_the_holder_of_palisade_token(tmp_path):
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "palisade.toml", data_dir=data_dir, upstreams={})
    key = create_key(config, "dave", "dev")
    argv = [palisade_bin(), "mcp", "--config", str(config), *wrapped(everything_stdio())]
    messages = json.dumps(INIT) + "\n"

    def principal(env: dict[str, str]) -> tuple[int, str]:
        done = subprocess.run(argv, input=messages, capture_output=True, text=True, timeout=60, env=env)
        opened = [r for r in audit_lines(data_dir / "audit.jsonl") if r.get("event") == "session-opened"]
        return done.returncode, opened[-1]["principal"] if opened else ""

    import os

    base = {k: v for k, v in os.environ.items() if k != "PALISADE_TOKEN"}
    code, who = principal({**base, "USER": "laptop-user"})
    assert (code, who) == (0, "laptop-user")
    code, who = principal({**base, "PALISADE_TOKEN": key})
    assert (code, who) == (0, "dave")
    bad = subprocess.run(argv, input=messages, capture_output=True, text=True, timeout=60, env={**base, "PALISADE_TOKEN": "pk_bogus"})
    assert bad.returncode != 0 and "PALISADE_TOKEN" in bad.stderr, bad.stderr
    assert "pk_bogus" not in bad.stderr


def test_beyond_loopback_needs_credentials_and_tls_or_an_explicit_opt_out(tmp_path):
    def check(extra: str, listen: str = "0.0.0.0:0") -> subprocess.CompletedProcess[str]:
        config = tmp_path / "c.toml"
        config.write_text(f'data_dir = "{tmp_path / "d"}"\n[server]\nlisten = "{listen}"\n{extra}\n[pipeline]\npass_through = ["authorize", "limits", "outbound-filter", "inject-secrets", "redact", "inbound-filter"]\n')
        return subprocess.run([palisade_bin(), "check", "--config", str(config)], capture_output=True, text=True, timeout=30)

    anonymous = check("")
    assert anonymous.returncode != 0 and "anonymous callers are served" in anonymous.stderr, anonymous.stderr
    plaintext = check("[auth]\nanonymous = false")
    assert plaintext.returncode != 0 and "need TLS" in plaintext.stderr, plaintext.stderr
    opted = check("plaintext_beyond_loopback = true\n[auth]\nanonymous = false")
    assert opted.returncode == 0, opted.stderr


def test_tls_is_served_and_reloaded_on_sighup_keeping_the_old_pair_when_the_new_one_is_bad(launcher, tmp_path):
    cert, key = _self_signed(tmp_path / "one", "one.palisade.test")
    extra = f'\n[server.tls]\ncert = "{cert}"\nkey = "{key}"\n'
    gateway = launcher.gateway({}, server={"listen": "127.0.0.1:0"}, extra=extra)

    def served_name() -> str:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        import socket

        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                der = tls.getpeercert(binary_form=True)
        from cryptography import x509

        return x509.load_der_x509_certificate(der).subject.rfc4514_string()

    assert served_name() == "CN=one.palisade.test"
    two_cert, two_key = _self_signed(tmp_path / "two", "two.palisade.test")
    cert.write_bytes(two_cert.read_bytes())
    key.write_bytes(two_key.read_bytes())
    gateway.proc.popen.send_signal(signal.SIGHUP)
    _eventually(lambda: served_name() == "CN=two.palisade.test")
    cert.write_text("not a certificate")
    gateway.proc.popen.send_signal(signal.SIGHUP)
    gateway.proc.wait_for(r"reload: cannot read the TLS certificate chain")
    assert served_name() == "CN=two.palisade.test", "a bad pair leaves the one in force"


def _eventually(ok_now, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not ok_now():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_oidc_tokens_are_checked_against_the_issuers_keys_and_a_wrong_audience_is_refused(launcher, tmp_path):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    audience, issuer = "https://palisade.test/mcp", "https://idp.test"
    extra = f'\n[auth]\nanonymous = false\n[auth.jwt]\nissuer = "{issuer}"\naudience = "{audience}"\njwks = "{jwks}"\nalgorithms = "RS"\n'
    gateway, _ = keyed_gateway(launcher, tmp_path, extra=extra)
    now = int(time.time())

    def token(**changes) -> str:
        claims = {"iss": issuer, "aud": audience, "sub": "erin", "roles": ["dev"], "iat": now, "exp": now + 300}
        claims.update(changes)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})

    good = AuthedSession(gateway.base, token())
    good.initialize()
    assert good.request("tools/list")["result"]["tools"]
    [opened] = gateway.events("session-opened", 1)
    assert opened["principal"] == "erin", opened

    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    unsigned = b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps({"iss": issuer, "aud": audience, "sub": "root", "exp": now + 300}).encode()) + "."
    import hashlib
    import hmac

    head = b64(b'{"alg":"HS256","typ":"JWT","kid":"k1"}') + "." + b64(json.dumps({"iss": issuer, "aud": audience, "sub": "root", "exp": now + 300}).encode())
    confused = head + "." + b64(hmac.new(public_pem, head.encode(), hashlib.sha256).digest())
    for bad in [
        token(aud="https://another.example/mcp"),
        token(iss="https://evil.example"),
        token(exp=now - 600),
        token(nbf=now + 600),
        unsigned,
        confused,
        token()[:-4] + "AAAA",
    ]:
        reply = AuthedSession(gateway.base, bad).post(INIT, session=False)
        assert reply.status == 401, (bad[:40], reply)
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    gateway.proc.stop()
    assert token().encode() not in emitted(gateway.audit_path, gateway.proc.stderr_path)


def test_a_jwks_that_cannot_be_fetched_stops_the_start_with_a_clear_error(tmp_path):
    from support import free_port

    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "d"}"\n[auth]\nanonymous = false\n[auth.jwt]\nissuer = "https://idp.test"\n'
        f'audience = "https://palisade.test/mcp"\njwks = "http://127.0.0.1:{port}/jwks.json"\n'
        '[pipeline]\npass_through = ["limits", "outbound-filter", "inject-secrets", "redact", "inbound-filter"]\n'
        '[server]\nlisten = "127.0.0.1:0"\n'
    )
    done = subprocess.run([palisade_bin(), "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stderr
    assert "auth.jwt" in done.stderr and "listening" not in done.stderr, done.stderr
