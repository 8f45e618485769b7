"""Shared fixtures for the alerting tests: a recording webhook receiver, a settable clock,
finding factories and a real Alertmanager.

Fixtures are registered under their ``name=``: import ``receiver_fixture`` (or
``alertmanager_fixture``) into a test module and ask for ``receiver`` (``alertmanager``).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.tools import find_tool

T0 = datetime(2025, 1, 6, 9, 0, 0, tzinfo=UTC)


# --- clock -------------------------------------------------------------------------------------


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


# --- findings ----------------------------------------------------------------------------------


def rule(description: str = "ssh for ops", peer: str = "0.0.0.0/0", ports: str = "22/22") -> dict[str, Any]:
    return {
        "direction": "ingress",
        "policy": "accept",
        "priority": 1,
        "protocol": "tcp",
        "ports": ports,
        "source_ports": None,
        "peer": peer,
        "nic_type": "intranet",
        "description": description,
        "rule_id": "sgr-1",
    }


def finding(
    fid: str = "f1",
    severity: str = "critical",
    *,
    kind: str = "rule_added",
    description: str = "ssh for ops",
    group: str = "sg-web",
    account: str = "prod",
    region: str = "cn-hangzhou",
    first_seen: str = "2025-01-06T08:55:00Z",
    message: str | None = None,
) -> dict[str, Any]:
    live = rule(description)
    return {
        "id": fid,
        "kind": kind,
        "severity": severity,
        "account": account,
        "region": region,
        "security_group_id": group,
        "direction": "ingress",
        "live": live,
        "baseline": None,
        "new_exposures": [
            {
                "region": region,
                "security_group_id": group,
                "direction": "ingress",
                "family": "ipv4",
                "protocol": "tcp",
                "from_port": 22,
                "to_port": 22,
                "scope": "any",
                "peers": ["0.0.0.0/0"],
                "new": True,
                "severity": severity,
            }
        ],
        "checks": ["SG001", "SG002"],
        "message": message or f"new ingress rule in {group}: accept tcp 22/22 from 0.0.0.0/0",
        "first_seen": first_seen,
    }


def memory_db(path: Path | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


# --- webhook receiver ----------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers ``status``/``body`` (or the next queued answer)."""

    host: str = "127.0.0.1"
    port: int = 0
    status: int = 200
    body: bytes = b'{"errcode":0,"errmsg":"ok"}'
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    queued: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                receiver.requests.append(
                    Recorded("POST", parts.path, parse_qs(parts.query), dict(self.headers.items()), body)
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                status, payload, extra = (
                    receiver.queued.pop(0) if receiver.queued else (receiver.status, receiver.body, {})
                )
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: clients get 'connection refused' until ``up``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def up(self) -> None:
        self.start()

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Queue one answer for the next request (later ones get ``status``/``body``)."""
        self.queued.append((status, body, headers or {}))


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.down()


# --- Alertmanager ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return int(resp.status), resp.read()


@dataclass
class Alertmanager:
    url: str
    process: subprocess.Popen[bytes]

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        _, body = _get(f"{self.url}/api/v2/alerts" + (f"?{query}" if query else ""))
        result: list[dict[str, Any]] = json.loads(body)
        return result


@pytest.fixture(name="alertmanager", scope="module")
def alertmanager_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    binary = find_tool("prometheus-alertmanager") or find_tool("alertmanager")
    if binary is None:
        message = "prometheus-alertmanager not found (scripts/install-system-deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message + "; it is required when CI is set")
        pytest.skip(message)
    work = tmp_path_factory.mktemp("alertmanager")
    config = work / "alertmanager.yml"
    # resolve_timeout only matters for alerts posted without endsAt; the tests set it explicitly.
    config.write_text("global:\n  resolve_timeout: 5m\nroute:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"alertmanager exited with {proc.returncode}: {(work / 'alertmanager.log').read_text()[-2000:]}"
                )
            try:
                status, _ = _get(f"{url}/-/ready", timeout=1)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("alertmanager did not become ready within 30 s")
            time.sleep(0.1)
        yield Alertmanager(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
