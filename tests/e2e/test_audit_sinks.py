"""Layer 6's SIEM streaming through `palisade serve`: a real rsyslog (Debian's package) on loopback over TCP, and local receivers that speak Splunk HEC and OTLP/HTTP logs as those services do and check the wire format; every entry and checkpoint arrives with its sequence number, a receiver that is down does not slow calls and gets everything once it is back, and a restarted gateway continues from where each sink was.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from layer1 import cli, ok
from support import audit_entries, free_port
from test_audit_log import audit_gateway, reads

HEC_TOKEN = "6b1d5c1e-hec-token-for-tests"


class Receiver:
    """An HTTP receiver on loopback that checks each request with `check` and keeps what it returns."""

    def __init__(self, check, port: int | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    got = check(self.path, self.headers, body)
                except Exception as e:  # a malformed request: refused, and remembered
                    with outer.lock:
                        outer.problems.append(f"{type(e).__name__}: {e}")
                    self.send_response(400)
                    self.end_headers()
                    return
                with outer.lock:
                    outer.events.extend(got)
                reply = b'{"text":"Success","code":0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seqs(self) -> set[int]:
        with self.lock:
            return {e["seq"] for e in self.events if "seq" in e}

    def checkpoints(self) -> set[int]:
        with self.lock:
            return {e["checkpoint"] for e in self.events if "checkpoint" in e}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hec(path: str, headers: Any, body: bytes) -> list[dict[str, Any]]:
    """Splunk HEC's /services/collector/event: `Authorization: Splunk TOKEN`, JSON objects one after another."""
    assert path == "/services/collector/event", path
    assert headers.get("Authorization") == f"Splunk {HEC_TOKEN}", headers.get("Authorization")
    decoder, text, at, out = json.JSONDecoder(), body.decode(), 0, []
    while at < len(text):
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            break
        obj, at = decoder.raw_decode(text, at)
        assert set(obj) >= {"time", "host", "source", "sourcetype", "event"}, obj
        assert isinstance(obj["time"], (int, float)) and obj["sourcetype"] == "palisade:audit", obj
        key = "seq" if "seq" in obj["event"] else "checkpoint"
        assert obj["fields"][key] == obj["event"][key], obj
        out.append(obj["event"])
    return out


def otlp(path: str, headers: Any, body: bytes) -> list[dict[str, Any]]:
    """OTLP/HTTP logs, JSON encoding: ExportLogsServiceRequest."""
    assert path == "/v1/logs", path
    assert headers.get("Content-Type", "").startswith("application/json"), headers.get("Content-Type")
    request = json.loads(body)
    out = []
    for rl in request["resourceLogs"]:
        names = {a["key"]: a["value"] for a in rl["resource"]["attributes"]}
        assert names["service.name"] == {"stringValue": "palisade"}, names
        for sl in rl["scopeLogs"]:
            for record in sl["logRecords"]:
                assert int(record["timeUnixNano"]) > 0 and 1 <= record["severityNumber"] <= 24, record
                event = json.loads(record["body"]["stringValue"])
                attrs = {a["key"]: a["value"] for a in record["attributes"]}
                key = "seq" if "seq" in event else "checkpoint"
                assert attrs[f"palisade.{key}"] == {"intValue": str(event[key])}, attrs
                out.append(event)
    return out


def webhook(path: str, headers: Any, body: bytes) -> list[dict[str, Any]]:
    assert headers.get("X-Team") == "secops", headers.get("X-Team")
    events = json.loads(body)
    assert isinstance(events, list) and events, events
    return events


def tls_files(work: Path) -> dict[str, Path]:
    """A CA and a server certificate for localhost and 127.0.0.1 signed by it, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "palisade test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": work / "ca.pem", "cert": work / "cert.pem", "key": work / "key.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


def ocsf_webhook(path: str, headers: Any, body: bytes) -> list[dict[str, Any]]:
    """A webhook taking OCSF 1.3 events: each keeps palisade's record under unmapped, calls are API Activity, sessions Authentication."""
    out = []
    for e in json.loads(body):
        assert e["metadata"]["version"] == "1.3.0" and e["type_uid"] == e["class_uid"] * 100 + e["activity_id"], e
        record = e["unmapped"]["palisade"]
        if record.get("event") in ("call-intent", "call-outcome"):
            assert (e["class_uid"], e["category_uid"]) == (6003, 6) and e["api"]["operation"] == "files/read_file", e
        if record.get("event") in ("session-opened", "session-closed"):
            assert e["class_uid"] == 3002 and e["user"]["uid"] == record["principal"], e
        kind, _, n = e["metadata"]["uid"].partition("-")
        assert kind in ("seq", "checkpoint") and int(n) == e["metadata"]["sequence"], e["metadata"]
        out.append({kind: int(n), "class_uid": e["class_uid"]})
    return out


@pytest.fixture(params=["tcp", "tls"])
def rsyslog(request, tmp_path: Path) -> Iterator[tuple[int, Path, Path | None]]:
    """rsyslogd in the foreground, taking RFC 5424 over TCP (or TLS, with rsyslog-gnutls) on a loopback port and writing each raw message to a file; yields the port, the file, and the CA file for TLS."""
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(binary).exists():
        pytest.fail("rsyslogd is not installed (Debian: apt-get install rsyslog); scripts/test installs it")
    work = tmp_path / "rsyslog"
    work.mkdir()
    out = work / "received.log"
    port = free_port()
    conf = work / "rsyslog.conf"
    ca: Path | None = None
    if request.param == "tls":
        files = tls_files(work)
        ca = files["ca"]
        head = (
            f'global(workDirectory="{work}" DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{files["ca"]}"'
            f' DefaultNetstreamDriverCertFile="{files["cert"]}" DefaultNetstreamDriverKeyFile="{files["key"]}")\n'
            'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")\n'
        )
    else:
        head = f'global(workDirectory="{work}")\nmodule(load="imtcp")\n'
    conf.write_text(
        head
        + f'input(type="imtcp" port="{port}" address="127.0.0.1")\n'
        'template(name="raw" type="string" string="%rawmsg%\\n")\n'
        f'*.* action(type="omfile" file="{out}" template="raw" flushOnTXEnd="on")\n'
    )
    proc = subprocess.Popen(
        [binary, "-n", "-f", str(conf), "-i", str(work / "rsyslog.pid")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"rsyslogd exited: {proc.stdout.read().decode() if proc.stdout else ''}")
            time.sleep(0.1)
    try:
        yield port, out, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def syslog_seqs(path: Path) -> tuple[set[int], set[int], list[str]]:
    """The sequence numbers and checkpoints in rsyslog's file, and lines that are not palisade's RFC 5424 messages."""
    seqs: set[int] = set()
    cps: set[int] = set()
    bad: list[str] = []
    if not path.exists():
        return seqs, cps, bad
    shape = re.compile(r'^<(\d+)>1 \S+ \S+ palisade \d+ (\S+) \[palisade@32473 (seq|checkpoint)="(\d+)"\] (\{.*\})$')
    for line in path.read_text().splitlines():
        m = shape.match(line)
        if not m:
            bad.append(line)
            continue
        event = json.loads(m.group(5))
        n = int(m.group(4))
        assert event[m.group(3)] == n and int(m.group(1)) // 8 == 13, line
        (seqs if m.group(3) == "seq" else cps).add(n)
    return seqs, cps, bad


def wait_for(what: str, done, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_every_entry_and_checkpoint_reaches_each_sink_and_a_sink_that_was_down_catches_up(launcher, tmp_path, rsyslog):
    syslog_port, syslog_file, ca = rsyslog
    tls = f'tls_ca = "{ca}"\nserver_name = "localhost"\n' if ca else ""
    otlp_receiver = Receiver(otlp)
    hook = Receiver(webhook)
    ocsf = Receiver(ocsf_webhook)
    hec_port = free_port()  # nothing listens here yet: the HEC receiver is down
    extra = (
        '[audit]\ncheckpoint_interval = "1s"\n'
        f'[audit.sinks.siem]\nkind = "syslog"\naddress = "127.0.0.1:{syslog_port}"\n{tls}'
        f'[audit.sinks.splunk]\nkind = "splunk-hec"\nurl = "http://127.0.0.1:{hec_port}/services/collector/event"\ntoken = "{HEC_TOKEN}"\n'
        f'[audit.sinks.otel]\nkind = "otlp"\nurl = "http://127.0.0.1:{otlp_receiver.port}/v1/logs"\n'
        f'[audit.sinks.hook]\nkind = "webhook"\nurl = "http://127.0.0.1:{hook.port}/audit"\nheaders = {{ X-Team = "secops" }}\n'
        f'[audit.sinks.ocsf]\nkind = "webhook"\nformat = "ocsf"\nurl = "http://127.0.0.1:{ocsf.port}/ocsf"\n'
    )
    gateway, config = audit_gateway(launcher, tmp_path, extra)
    # The token is masked in what `palisade check` prints.
    checked = ok(cli(config, "check"))
    assert HEC_TOKEN not in checked and "[audit.sinks.splunk]" in checked, checked

    started = time.monotonic()
    reads(gateway, [f"/r/{i}" for i in range(10)])
    assert time.monotonic() - started < 20, "calls waited for a sink that is down"

    def written() -> set[int]:
        return {e["seq"] for e in audit_entries(gateway.audit_path)}

    wait_for("otlp and the webhook", lambda: written() <= otlp_receiver.seqs() and written() <= hook.seqs() and otlp_receiver.checkpoints())
    wait_for("rsyslog", lambda: written() <= syslog_seqs(syslog_file)[0])
    wait_for("the ocsf webhook", lambda: written() <= ocsf.seqs())
    assert ocsf.problems == [], ocsf.problems
    assert {6003, 3002} <= {e["class_uid"] for e in ocsf.events}, {e["class_uid"] for e in ocsf.events}
    seqs, cps, bad = syslog_seqs(syslog_file)
    assert bad == [] and cps, (bad[:3], cps)
    assert otlp_receiver.problems == [] and hook.problems == [], (otlp_receiver.problems, hook.problems)
    assert max(otlp_receiver.seqs()) == max(written()), "a receiver got an entry the log does not hold"
    outcome = next(e for e in hook.events if e.get("event") == "call-outcome")
    assert outcome["arguments"]["path"].startswith("/r/"), outcome

    # HEC comes up: it gets everything it missed, the checkpoints too.
    hec_receiver = Receiver(hec, port=hec_port)
    try:
        wait_for("splunk hec to catch up", lambda: written() <= hec_receiver.seqs() and hec_receiver.checkpoints())
        assert hec_receiver.problems == [], hec_receiver.problems

        # A restarted gateway continues each sink from its cursor: nothing is sent again but the new records
        # (at least once: a batch in flight at the stop may come twice; receivers de-duplicate by seq).
        gateway.proc.stop()
        before = len(hec_receiver.events)
        seen = hec_receiver.seqs()
        again = launcher.gateway({}, data_dir=gateway.data_dir, config=config)
        reads(again, ["/after/restart"])
        wait_for("the new records at hec", lambda: written() <= hec_receiver.seqs())
        resent = [e["seq"] for e in hec_receiver.events[before:] if "seq" in e and e["seq"] in seen]
        assert len(resent) <= 2, f"{len(resent)} entries sent again after a restart"
        again.proc.stop()
    finally:
        hec_receiver.close()
        otlp_receiver.close()
        hook.close()
        ocsf.close()


def test_bad_sink_settings_are_named_at_load(tmp_path):
    for extra, wanted in [
        ('[audit.sinks.a]\nurl = "https://h/x"\n', "`audit.sinks.a.kind`: missing"),
        ('[audit.sinks.a]\nkind = "kafka"\n', "`audit.sinks.a.kind`: `kafka`: expected"),
        ('[audit.sinks.a]\nkind = "syslog"\naddress = "h"\n', "`audit.sinks.a.address`: `h`: expected `host:port`"),
        ('[audit.sinks.a]\nkind = "splunk-hec"\nurl = "https://h/services/collector/event"\n', "`audit.sinks.a.token`: missing"),
        ('[audit.sinks.a]\nkind = "otlp"\nurl = "http://siem.example.com/v1/logs"\n', "plain http only to a loopback address"),
        ('[audit.sinks.a]\nkind = "webhook"\nurl = "https://h/x"\naddress = "h:1"\n', "`audit.sinks.a.address`: does not apply to a `webhook` sink"),
        ('[audit.sinks."a/b"]\nkind = "webhook"\nurl = "https://h/x"\n', "a sink's name is 1 to 64 letters"),
        ('[audit.sinks.a]\nkind = "webhook"\nurl = "https://h/x"\nformat = "cef"\n', "`audit.sinks.a.format`: `cef`: expected"),
    ]:
        config = tmp_path / "p.toml"
        config.write_text(f'data_dir = "{tmp_path / "d"}"\n{extra}')
        done = cli(config, "check")
        assert done.returncode != 0 and wanted in done.stderr, (extra, done.stderr)
