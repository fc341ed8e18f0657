"""Hostile connections to `palisade serve`: floods of idle and trickling sockets, one address hogging
connections, and requests naming a host that is not palisade's (DNS rebinding).

Every socket here is on loopback; every loop is bounded, and each test takes seconds.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import pytest

from support import Launcher, RawSession, everything_stdio, http_request, palisade_bin, write_config

# Well within what a client should wait for while the gateway is under attack.
SERVED_WITHIN = 5.0


def connect(port: int, *, source: str | None = None) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", port), timeout=5, source_address=(source, 0) if source else None
    )


def closed_by_server(sock: socket.socket, *, seconds: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `seconds`; whatever it sends first is read past."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            return False
        try:
            if sock.recv(65536) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True


def count_closed(socks: list[socket.socket], *, seconds: float) -> int:
    """How many of `socks` the server has closed once `seconds` have passed (or all are closed)."""
    closed: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(closed) < len(socks):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        open_socks = [s for i, s in enumerate(socks) if i not in closed]
        readable, _, _ = select.select(open_socks, [], [], min(left, 0.2))
        for sock in readable:
            try:
                gone = sock.recv(65536) == b""
            except (ConnectionResetError, BrokenPipeError):
                gone = True
            if gone:
                closed.add(socks.index(sock))
    return len(closed)


def raw_get(port: int, path: str, *, host: str | None, source: str | None = None, extra: str = "") -> bytes:
    """A GET on a fresh socket, read until the server closes it (the request asks it to)."""
    head = f"GET {path} HTTP/1.1\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    head += f"{extra}Connection: close\r\n\r\n"
    with connect(port, source=source) as sock:
        try:
            sock.sendall(head.encode())
        except OSError:  # closed (turned away) before the request was written
            return b""
        data = b""
        deadline = time.monotonic() + SERVED_WITHIN
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length from a kept-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-body: {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def served_quickly(base: str) -> None:
    """A fresh client gets `/healthz`, a session and its tool list, each within SERVED_WITHIN."""
    started = time.monotonic()
    health = http_request(base, "GET", "/healthz", seconds=SERVED_WITHIN)
    assert health.status == 200, health
    session = RawSession(base)
    session.initialize()
    tools = session.request("tools/list")["result"]["tools"]
    assert "everything__echo" in [t["name"] for t in tools], tools
    elapsed = time.monotonic() - started
    assert elapsed < 3 * SERVED_WITHIN, f"a fresh client took {elapsed:.1f}s to be served"


def trickle(port: int, stop: threading.Event, lines: int) -> None:
    """Sends a request head one header line a second, never finishing it, until closed or stopped."""
    try:
        with connect(port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for i in range(lines):
                if stop.wait(1.0):
                    return
                sock.sendall(f"X-Trickle-{i}: y\r\n".encode())
    except OSError:
        return  # the server closed it


# ---------------------------------------------------------------------------
# Connection caps and deadlines


def test_idle_and_trickling_connections_cannot_lock_out_new_clients(launcher):
    cap = 20
    gateway = launcher.gateway(
        {"everything": everything_stdio()},
        # A long header deadline: what keeps the gateway answering here is the cap, not the timeout.
        server={"max_connections": cap, "max_connections_per_client": cap, "header_read_timeout": "60s"},
    )
    idle = [connect(gateway.port) for _ in range(60)]
    stop = threading.Event()
    tricklers = [threading.Thread(target=trickle, args=(gateway.port, stop, 20)) for _ in range(5)]
    try:
        for t in tricklers:
            t.start()
        time.sleep(0.5)  # every trickler has begun its head
        served_quickly(gateway.base)
        # The cap held: of the 60 idle sockets, no more than the cap are still open.
        closed = count_closed(idle, seconds=3)
        assert closed >= len(idle) - cap, f"only {closed} of {len(idle)} idle connections were closed"
    finally:
        stop.set()
        for sock in idle:
            sock.close()
        for t in tricklers:
            t.join(timeout=10)
    assert gateway.proc.popen.poll() is None, gateway.proc.output()


def test_a_flood_at_the_open_file_limit_leaves_the_gateway_answering(launcher, tmp_path):
    """The reported outage: more idle sockets than palisade has descriptors. The default cap fits the limit."""
    config = write_config(
        tmp_path / "low-limit" / "palisade.toml",
        data_dir=tmp_path / "low-limit" / "data",
        upstreams={"everything": everything_stdio()},
    )
    proc = launcher.process(
        ["sh", "-c", 'ulimit -n 160 && exec "$0" serve --config "$1"', palisade_bin(), str(config)],
        what="palisade-low-limit",
    )
    port = int(proc.wait_for(r"listening on http://127\.0\.0\.1:(\d+)/mcp").group(1))
    base = f"http://127.0.0.1:{port}"
    flood = []
    try:
        for _ in range(250):
            flood.append(connect(port))
        served_quickly(base)
    finally:
        for sock in flood:
            sock.close()
    assert proc.popen.poll() is None, proc.output()


def test_a_silent_or_trickling_connection_is_closed_after_the_header_read_timeout(launcher):
    gateway = launcher.gateway(
        {"everything": everything_stdio()}, server={"header_read_timeout": "1s", "idle_timeout": "3s"}
    )
    started = time.monotonic()
    silent = connect(gateway.port)
    trickling = connect(gateway.port)
    trickling.sendall(b"GET /healthz HTTP/1.1\r\n")
    for i in range(3):  # still trickling when the deadline passes
        time.sleep(0.3)
        trickling.sendall(f"X-Trickle-{i}: y\r\n".encode())
    with silent, trickling:
        assert closed_by_server(trickling, seconds=3), "a trickling request head was never cut off"
        assert closed_by_server(silent, seconds=3), "a connection that sent nothing was never closed"
        elapsed = time.monotonic() - started
        assert 0.8 <= elapsed <= 4, f"closed after {elapsed:.1f}s, not the 1s header-read timeout"


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(launcher):
    gateway = launcher.gateway(
        {"everything": everything_stdio()}, server={"header_read_timeout": "1s", "idle_timeout": "3s"}
    )
    with connect(gateway.port) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n\r\n".encode())
        assert read_response(sock).startswith(b"HTTP/1.1 200"), "the first request was not answered"
        answered = time.monotonic()
        # Kept alive past the header-read timeout: between requests, the idle timeout applies.
        assert not closed_by_server(sock, seconds=2), "a kept-alive connection was closed before its idle timeout"
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n\r\n".encode())
        assert read_response(sock).startswith(b"HTTP/1.1 200"), "the kept-alive connection did not serve again"
        answered = time.monotonic()
        assert closed_by_server(sock, seconds=6), "a kept-alive connection was never closed"
        idle = time.monotonic() - answered
        assert 2.5 <= idle <= 5, f"closed after {idle:.1f}s idle, not the 3s idle timeout"


def test_one_client_address_is_held_to_its_share(launcher):
    per_client = 4
    gateway = launcher.gateway(
        {"everything": everything_stdio()},
        server={"max_connections": 40, "max_connections_per_client": per_client, "body_timeout": "30s"},
    )
    session = RawSession(gateway.base)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    head = session.raw_head("POST", body=body)
    # Busy connections from 127.0.0.2: each stalls mid-body, so its request is in progress.
    busy = [connect(gateway.port, source="127.0.0.2") for _ in range(per_client)]
    idle = [connect(gateway.port, source="127.0.0.4") for _ in range(per_client)]
    try:
        for sock in busy:
            sock.sendall(head + body[:5])
        time.sleep(0.5)  # their heads are read
        # One more from the same address finds its share busy, and is turned away.
        refused = raw_get(gateway.port, "/healthz", host="127.0.0.1", source="127.0.0.2")
        assert not refused.startswith(b"HTTP/1.1 200"), refused
        assert refused == b"" or refused.startswith(b"HTTP/1.1 503"), refused
        # Another address is served as usual.
        other = raw_get(gateway.port, "/healthz", host="127.0.0.1", source="127.0.0.3")
        assert other.startswith(b"HTTP/1.1 200"), other
        # An address whose share is idle gets served by closing its own oldest idle connection.
        again = raw_get(gateway.port, "/healthz", host="127.0.0.1", source="127.0.0.4")
        assert again.startswith(b"HTTP/1.1 200"), again
        assert closed_by_server(idle[0], seconds=3), "the oldest idle connection of a full address was kept"
        assert count_closed(idle[1:], seconds=0.5) == 0, "more idle connections than needed were closed"
        # The busy ones were never touched.
        assert count_closed(busy, seconds=0.5) == 0, "a busy connection was closed to make room"
    finally:
        for sock in busy + idle:
            sock.close()


# ---------------------------------------------------------------------------
# DNS rebinding: the Host header


EVIL = "evil.attacker.com"


@pytest.fixture(scope="module")
def rebinding_gateway(module_launcher: Launcher):
    return module_launcher.gateway({"everything": everything_stdio()})


def assert_misdirected(reply) -> None:
    assert reply.status == 421, reply
    assert reply.headers.get("content-type") == "application/json", reply
    message = json.loads(reply.body)
    assert message["jsonrpc"] == "2.0" and isinstance(message["error"]["code"], int), message
    assert "everything" not in reply.body.decode(), reply


@pytest.mark.parametrize(
    ("method", "path", "with_session"),
    [
        ("GET", "/healthz", False),
        ("GET", "/mcp", True),
        ("POST", "/mcp", False),
        ("POST", "/mcp", True),
        ("DELETE", "/mcp", True),
        ("GET", "/no-such-path", False),
    ],
    ids=["healthz", "get-stream", "post-initialize", "post-in-session", "delete", "unknown-path"],
)
def test_a_foreign_host_is_refused_on_every_route(rebinding_gateway, method, path, with_session):
    gateway = rebinding_gateway
    session = RawSession(gateway.base)
    if with_session:
        session.initialize()
    headers = session.headers(extra={"Host": f"{EVIL}:{gateway.port}"})
    body = None
    if method == "POST":
        message = (
            {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
            if with_session
            else {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
        )
        body = json.dumps(message).encode()
    if method == "GET" and path == "/mcp":
        headers["Accept"] = "text/event-stream"
    before = json.loads(http_request(gateway.base, "GET", "/healthz").body)["sessions"]
    reply = http_request(gateway.base, method, path, body=body, headers=headers, seconds=10)
    assert_misdirected(reply)
    after = json.loads(http_request(gateway.base, "GET", "/healthz").body)["sessions"]
    assert after == before, "a request naming a foreign host opened or ended a session"
    if with_session:
        assert "result" in session.request("ping"), "the session did not survive"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]"])
def test_loopback_hosts_are_served(rebinding_gateway, host):
    gateway = rebinding_gateway
    for value in (host, f"{host}:{gateway.port}"):
        reply = http_request(gateway.base, "GET", "/healthz", headers={"Host": value})
        assert reply.status == 200, (value, reply)


def test_a_listed_host_name_is_served(launcher):
    """A name in `allowed_hosts` (a reverse proxy's, say) is served on every route; others still are not."""
    gateway = launcher.gateway({"everything": everything_stdio()}, server={"allowed_hosts": ["palisade.test"]})
    for value in ("palisade.test", f"PALISADE.test:{gateway.port}"):
        reply = http_request(gateway.base, "GET", "/healthz", headers={"Host": value})
        assert reply.status == 200, (value, reply)
    session = RawSession(gateway.base)
    session.initialize()
    listed = session.post(
        {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, extra={"Host": f"palisade.test:{gateway.port}"}
    )
    assert listed.status == 200 and "result" in listed.response(), listed
    assert_misdirected(http_request(gateway.base, "GET", "/healthz", headers={"Host": "other.test"}))


def test_a_request_without_one_host_of_ours_is_refused(rebinding_gateway):
    port = rebinding_gateway.port
    for missing in (
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
    ):
        with connect(port) as sock:
            sock.sendall(missing)
            reply = sock.recv(65536)
        assert reply.split(b"\r\n")[0] in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.0 400 Bad Request"), reply
        assert b"Host" in reply and b'"error"' in reply, reply
    twice = raw_get(port, "/healthz", host="127.0.0.1", extra=f"Host: {EVIL}\r\n")
    assert twice.startswith(b"HTTP/1.1 400"), twice
    # A request in absolute form names its host in the target too.
    absolute = raw_get(port, f"http://{EVIL}:{port}/healthz", host=f"127.0.0.1:{port}")
    assert absolute.startswith(b"HTTP/1.1 421"), absolute
    assert b"everything" not in absolute, absolute
