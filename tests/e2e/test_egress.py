"""Layer 3's egress: sandboxed programs reach the allowlisted servers only through palisade's proxy, and brokered requests obey the same allowlist.

The "external" hosts are names palisade's `[egress.hosts]` maps to loopback
servers this module starts: `api.test` (plain HTTP) and `secure.test` (TLS)
are allowed, `evil.test` is not, and must never see a request. Inside the
sandbox the only way out is the listener on 127.0.0.1:3128 in its own
network namespace; programs that ignore the proxy variables, raw sockets,
UDP and DNS reach nothing.
"""

from __future__ import annotations

import datetime
import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp import Client

from support import Launcher, audit_lines

CLIENT_SECONDS = 90


class Server:
    """A loopback HTTP(S) server that answers `hello from NAME` and remembers each request."""

    def __init__(self, name: str, context: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                server.requests.append(self.path)
                if self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("to=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = f"hello from {server.name}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def tls_context(tmp: Path, host: str) -> ssl.SSLContext:
    """A server context with a self-signed certificate for `host`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{host}.pem", tmp / f"{host}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


class World:
    def __init__(self, launcher: Launcher, tmp: Path) -> None:
        self.api = Server("api")
        self.evil = Server("evil")
        self.secure = Server("secure", tls_context(tmp, "secure.test"))
        rules = (
            f'{{ host = "api.test", port = {self.api.port}, addresses = ["127.0.0.1"] }}, '
            f'{{ host = "secure.test", port = {self.secure.port}, addresses = ["127.0.0.1"] }}'
        )
        extra = f"""
[egress]
allow = [{rules}]

[egress.hosts]
"api.test" = ["127.0.0.1"]
"secure.test" = ["127.0.0.1"]
"evil.test" = ["127.0.0.1"]
"inside.test" = ["10.1.2.3"]

[sandbox.profiles.shell]
egress = [{rules}]

[sandbox.profiles.python]
egress = [{rules}]
"""
        upstreams = {
            "run": {"builtin": "exec"},
            # `evil.test` is among the tool's URLs, so only the egress
            # allowlist's address check stands between it and the server.
            "web": {
                "builtin": "http_request",
                "allow": [f"http://api.test:{self.api.port}/", f"http://evil.test:{self.evil.port}/"],
            },
        }
        self.gateway = launcher.gateway(upstreams, extra=extra)

    def close(self) -> None:
        for server in (self.api, self.evil, self.secure):
            server.close()

    def records(self) -> list[dict[str, Any]]:
        return [r for r in audit_lines(self.gateway.audit_path) if r.get("event") == "egress"]


@pytest.fixture(scope="module")
def world(module_launcher: Launcher, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = World(module_launcher, tmp_path_factory.mktemp("egress"))
    try:
        yield made
    finally:
        made.close()


def call(world: World, tool: str, arguments: dict[str, Any]) -> Any:
    async def session() -> Any:
        with anyio.fail_after(CLIENT_SECONDS):
            async with Client(world.gateway.url) as client:
                return await client.call_tool(tool, arguments)

    return anyio.run(session)


def shell(world: World, code: str) -> list[str]:
    result = call(world, "run__exec", {"language": "shell", "code": code})
    assert not result.is_error, result
    return result.structured_content["stdout"].splitlines()


def python(world: World, code: str) -> list[str]:
    result = call(world, "run__exec", {"language": "python", "code": code})
    assert not result.is_error, result
    assert result.structured_content["exit_code"] == 0, result.structured_content
    return result.structured_content["stdout"].splitlines()


def test_curl_reaches_the_allowlisted_server_through_the_proxy_and_nothing_else(world: World) -> None:
    api, evil, secure = world.api.port, world.evil.port, world.secure.port
    lines = shell(
        world,
        "\n".join(
            [
                f"curl -sS http://api.test:{api}/hello",
                f"curl -sS -k https://secure.test:{secure}/hello",
                f"curl -s -o /dev/null -w 'evil %{{http_code}}\\n' http://evil.test:{evil}/steal",
                f"curl -s -k -o /dev/null -w 'evil-tls %{{http_code}}\\n' https://evil.test:{evil}/steal; echo \"exit $?\"",
                # Ignoring the proxy: no name resolves, no address is reachable.
                f"curl -sS --noproxy '*' --max-time 5 http://api.test:{api}/ 2>/dev/null; echo \"direct-name $?\"",
                f"curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:{api}/ 2>/dev/null; echo \"direct-address $?\"",
                # A redirect to a forbidden host is followed through the proxy, which refuses it.
                f"curl -s -L -o /dev/null -w 'redirect %{{http_code}}\\n' 'http://api.test:{api}/redirect?to=http://evil.test:{evil}/steal'",
            ]
        ),
    )
    assert lines[0] == "hello from api", lines
    assert lines[1] == "hello from secure", lines
    assert lines[2] == "evil 403", lines
    # CONNECT to an unlisted host is refused before any tunnel: curl sees the 403.
    assert lines[3].startswith("evil-tls 000") or lines[3].startswith("evil-tls 403"), lines
    assert lines[4] == "exit 56", lines
    assert lines[5] == "direct-name 6", lines  # could not resolve host
    assert lines[6] == "direct-address 7", lines  # could not connect
    assert lines[7] == "redirect 403", lines
    assert world.evil.requests == [], "the forbidden server was reached"


def test_python_urllib_and_raw_sockets_get_no_other_way_out(world: World) -> None:
    api, evil = world.api.port, world.evil.port
    code = f"""
import socket, urllib.request, urllib.error
print(urllib.request.urlopen("http://api.test:{api}/py", timeout=10).read().decode().strip())
try:
    urllib.request.urlopen("http://evil.test:{evil}/py", timeout=10)
    print("evil reached")
except urllib.error.HTTPError as e:
    print("evil", e.code, e.read().decode().strip()[:60])
# A raw socket that speaks CONNECT itself goes where the rules allow.
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(b"CONNECT evil.test:{evil} HTTP/1.1\\r\\nHost: evil.test:{evil}\\r\\n\\r\\n")
print("raw-connect", s.recv(64).split(b"\\r\\n")[0].decode())
s.close()
for what, target in (("direct", ("127.0.0.1", {api})), ("outside", ("192.0.2.1", 80))):
    try:
        socket.create_connection(target, timeout=3)
        print(what, "connected")
    except OSError as e:
        print(what, type(e).__name__)
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"x", ("192.0.2.1", 53))
    print("udp sent")
except OSError as e:
    print("udp", type(e).__name__)
try:
    socket.getaddrinfo("api.test", 80)
    print("dns resolved")
except socket.gaierror:
    print("dns gaierror")
"""
    lines = python(world, code)
    assert lines[0] == "hello from api", lines
    assert lines[1].startswith("evil 403 palisade egress"), lines
    assert lines[2] == "raw-connect HTTP/1.1 403 Forbidden", lines
    assert lines[3] in ("direct PermissionError", "direct ConnectionRefusedError"), lines
    assert lines[4].startswith("outside ") and lines[4] != "outside connected", lines
    assert lines[5].startswith("udp ") and lines[5] != "udp sent", lines
    assert lines[6] == "dns gaierror", lines
    assert world.evil.requests == []


def test_a_ClientHello_naming_another_host_than_CONNECT_is_refused(world: World) -> None:
    secure = world.secure.port
    code = f"""
import socket, ssl
for sni in ("secure.test", "evil.test"):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(b"CONNECT secure.test:{secure} HTTP/1.1\\r\\nHost: secure.test:{secure}\\r\\n\\r\\n")
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        head += s.recv(1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        t = context.wrap_socket(s, server_hostname=sni)
        t.sendall(b"GET /sni HTTP/1.1\\r\\nHost: secure.test\\r\\nConnection: close\\r\\n\\r\\n")
        print(sni, t.recv(4096).split(b"\\r\\n")[0].decode())
    except (ssl.SSLError, OSError) as e:
        print(sni, "refused", type(e).__name__)
"""
    lines = python(world, code)
    assert lines[0] == "secure.test HTTP/1.0 200 OK", lines
    assert lines[1].startswith("evil.test refused"), lines


def test_every_connection_is_an_audit_record_tied_to_its_execution(world: World) -> None:
    before = len(world.records())
    shell(world, f"curl -sS http://api.test:{world.api.port}/audited; curl -s http://evil.test:{world.evil.port}/audited")
    # Records are written as connections end.
    for _ in range(100):
        records = world.records()[before:]
        if len(records) >= 2:
            break
        time.sleep(0.1)
    allowed = [r for r in records if r["host"] == "api.test"]
    refused = [r for r in records if r["host"] == "evil.test"]
    assert allowed and refused, records
    ok = allowed[0]
    assert ok["verdict"] == "allowed" and ok["port"] == world.api.port, ok
    assert ok["address"] == f"127.0.0.1:{world.api.port}", ok
    assert ok["sent"] > 0 and ok["received"] > 0 and ok["duration"] >= 0, ok
    who = ok["who"]
    assert who["origin"] == "sandbox" and who["upstream"] == "run" and who["session"] and who["sandbox"], who
    bad = refused[0]
    assert bad["verdict"] == "refused" and bad["code"] == "not-allowlisted", bad
    assert bad["finding"] == {
        "code": "egress.not-allowlisted",
        "severity": "critical",
        "alert": "outbound request to a non-allowlisted domain",
    }, bad


def test_brokered_http_requests_obey_the_same_allowlist(world: World) -> None:
    fine = call(world, "web__http_request", {"url": f"http://api.test:{world.api.port}/brokered"})
    assert not fine.is_error and "hello from api" in fine.content[0].text, fine
    # On the tool's own list, but `evil.test` resolves to an address no egress rule allows.
    refused = call(world, "web__http_request", {"url": f"http://evil.test:{world.evil.port}/brokered"})
    assert refused.is_error and "egress" in refused.content[0].text, refused
    assert world.evil.requests == []
    records = [r for r in world.records() if r["who"]["origin"] == "http_request"]
    assert any(r["host"] == "api.test" and r["verdict"] == "allowed" for r in records), records
    assert any(r["host"] == "evil.test" and r["verdict"] == "refused" for r in records), records
