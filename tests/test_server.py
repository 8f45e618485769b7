"""The daemon's HTTP server under abuse: wrong methods, idle floods, scrape storms, slow clients, stop.

Servers that are flooded run in a child process with a low descriptor limit, as the daemon does
in a pod; everything talks to loopback only. Timing goals live in benchmarks/bench_http.py: the
bounds here are only long enough to tell "answered" from "starved" on a loaded machine.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from sgwatch import config
from sgwatch.errors import InputError
from sgwatch.listen import ListenAddress, parse_listen
from sgwatch.server import Limits, Server, SharedRenders

ROOT = Path(__file__).resolve().parent.parent
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CHILD = """
import resource, sys
nofile = int(sys.argv[2])
if nofile:
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
from prometheus_client import CollectorRegistry, Gauge
from sgwatch.server import Server
registry = CollectorRegistry()
gauge = Gauge("sgwatch_test_series", "one series per group", ["group"], registry=registry)
for i in range(int(sys.argv[3])):
    gauge.labels(group=f"sg-{i:06d}").set(i)
server = Server(f"127.0.0.1:{sys.argv[1]}", registry, lambda: (True, {}), lambda: (True, {}))
server.start()
print("ready", flush=True)
sys.stdin.read()  # serve until the test closes our stdin
server.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(url: str, method: str = "GET", timeout: float = 10.0, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@contextmanager
def child_server(nofile: int = 0, series: int = 100) -> Iterator[tuple[str, int]]:
    """A Server in its own process (optionally with RLIMIT_NOFILE lowered): its base URL and pid."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port), str(nofile), str(series)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline().strip() == b"ready", "the server process did not start"
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def local_server(
    registry: CollectorRegistry | None = None, limits: Limits | None = None, listen: str | ListenAddress | None = None
) -> Iterator[Server]:
    if registry is None:
        registry = CollectorRegistry()
        Counter("sgwatch_test", "a counter", registry=registry).inc()
    server = Server(
        listen or ListenAddress("127.0.0.1", 0),
        registry,
        lambda: (True, {"scheduler_running": True}),
        lambda: (False, {"first_scan_attempted": False}),
        limits=limits or Limits(),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def idle_sockets(port: int, count: int, family: int = socket.AF_INET, host: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` connections that never send a byte; non-blocking, so a full backlog cannot hang the test."""
    socks = []
    for i in range(count):
        if i % 4 == 0:
            time.sleep(0.01)  # trickle in, as a flood does over time, so a short backlog cannot hide it
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        code = s.connect_ex((host, port))
        assert code in (0, errno.EINPROGRESS, errno.EAGAIN), os.strerror(code)
        socks.append(s)
    return socks


def closed_by_peer(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# --- methods -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_other_than_get_and_head_get_405_with_allow(path: str, method: str) -> None:
    with local_server() as server:
        status, headers, _ = request(f"http://127.0.0.1:{server.port}{path}", method)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(("path", "status"), [("/metrics", 200), ("/healthz", 200), ("/readyz", 503)])
def test_head_answers_like_get_without_a_body(path: str, status: int) -> None:
    with local_server() as server:
        url = f"http://127.0.0.1:{server.port}{path}"
        got, headers, body = request(url, "HEAD")
        assert (got, body) == (status, b"")
        assert int(headers["Content-Length"]) == len(request(url)[2])


def test_unknown_path_is_404_and_probes_answer_json() -> None:
    with local_server() as server:
        base = f"http://127.0.0.1:{server.port}"
        assert request(base + "/nope")[0] == 404
        status, headers, body = request(base + "/healthz")
        assert (status, headers["Content-Type"], body) == (
            200,
            "application/json",
            b'{"ok": true, "scheduler_running": true}\n',
        )
        status, _, body = request(base + "/readyz")
        assert (status, body) == (503, b'{"ok": false, "first_scan_attempted": false}\n')


def test_metrics_is_the_prometheus_exposition_with_content_negotiation() -> None:
    with local_server() as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        status, headers, body = request(url)
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert [f.name for f in text_string_to_metric_families(body.decode())] == [
            "sgwatch_test",
            "sgwatch_test_created",
        ]
        _, headers, body = request(url, Accept="application/openmetrics-text; version=1.0.0")
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
        _, headers, _ = request(url, **{"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip"


# --- connection abuse ----------------------------------------------------------------------


def test_idle_connections_neither_starve_healthz_nor_take_the_descriptors() -> None:
    # The setup: a descriptor limit the idle sockets exceed (400 there, 256 here).
    with child_server(nofile=256) as (base, pid):
        port = int(base.rsplit(":", 1)[1])
        socks = idle_sockets(port, 300)
        try:
            status, _, body = request(base + "/healthz", timeout=20)
            assert (status, body) == (200, b'{"ok": true}\n')
            if Path(f"/proc/{pid}/fd").is_dir():
                held = len(os.listdir(f"/proc/{pid}/fd"))
                assert held <= Limits().connections + 40, f"the server holds {held} descriptors"
        finally:
            for s in socks:
                s.close()


def test_at_the_connection_limit_the_longest_idle_connection_makes_room() -> None:
    with local_server(limits=Limits(connections=10, overflow=0, evict_after=0.1)) as server:
        socks = idle_sockets(server.port, 30)
        try:
            status, _, _ = request(f"http://127.0.0.1:{server.port}/healthz", timeout=20)
            assert status == 200
            assert server.evicted >= 20
            assert closed_by_peer(socks[0], within=5)  # the oldest went first
        finally:
            for s in socks:
                s.close()


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    with local_server(limits=Limits(idle_timeout=0.5)) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            started = time.monotonic()
            assert closed_by_peer(s, within=10)
            assert time.monotonic() - started >= 0.4
        assert server.timed_out >= 1


def test_a_request_trickling_in_is_closed_after_the_read_timeout() -> None:
    limits = Limits(idle_timeout=30, read_timeout=1.0)
    with local_server(limits=limits) as server, socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        deadline = time.monotonic() + 10
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                s.sendall(b"X-Slow: 1\r\n")  # a line now and then keeps the idle timeout away
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            else:
                closed = closed_by_peer(s, within=0.2)
        assert closed, "a request that never finishes kept its connection for 10 s"


def test_a_keepalive_connection_serves_several_requests() -> None:
    with local_server() as server, socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        s.settimeout(10)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2
        assert data.index(b'"ok": true') < data.index(b"sgwatch_test_total")  # in order


def test_100_concurrent_scrapes_all_succeed() -> None:
    with child_server(series=2000) as (base, _):
        barrier = threading.Barrier(100)
        results: list[Any] = []

        def scrape() -> None:
            barrier.wait()
            try:
                status, _, body = request(base + "/metrics", timeout=60)
                results.append((status, body.count(b"\nsgwatch_test_series{")))
            except OSError as exc:
                results.append(exc)

        threads = [threading.Thread(target=scrape) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    assert results == [(200, 2000)] * 100


class _Blocking(Collector):
    """A collector whose render waits until the test lets it go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def collect(self) -> Iterator[Any]:
        self.entered.release()
        self.release.wait(30)
        yield from ()


@contextmanager
def scrapes_held_in_a_render(limits: Limits, count: int) -> Iterator[Server]:
    """A server with ``count`` scrapes connected: one inside a render that waits, the rest behind it."""
    registry = CollectorRegistry()
    blocking = _Blocking()
    registry.register(blocking)
    with local_server(registry, limits) as server:
        base = f"http://127.0.0.1:{server.port}"
        scrapes = [threading.Thread(target=request, args=(base + "/metrics",)) for _ in range(count)]
        for t in scrapes:
            t.start()
        try:
            assert blocking.entered.acquire(timeout=20)
            deadline = time.monotonic() + 20
            while len(server._channels()) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            yield server
        finally:
            blocking.release.set()
            for t in scrapes:
                t.join(30)


def test_probes_do_not_wait_behind_metrics_renders() -> None:
    # Two workers: one renders, one waits to share the next render, four scrapes queue for a worker.
    with scrapes_held_in_a_render(Limits(workers=2), 6) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert request(base + "/healthz", timeout=10)[0] == 200
        assert request(base + "/readyz", timeout=10)[0] == 503


def test_when_every_connection_is_busy_probes_are_answered_and_scrapes_get_503() -> None:
    with scrapes_held_in_a_render(Limits(connections=2, overflow=2, workers=2), 2) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert request(base + "/healthz", timeout=10)[0] == 200
        status, headers, body = request(base + "/metrics", timeout=10)
        assert (status, headers["Retry-After"]) == (503, "1") and b"retry" in body
        assert server.shed == 1


def test_callers_during_a_render_share_the_next_one_never_an_older_one() -> None:
    shared = SharedRenders()
    renders: list[int] = []
    first_in = threading.Event()
    release = threading.Event()

    def render() -> bytes:
        renders.append(len(renders) + 1)
        if len(renders) == 1:
            first_in.set()
            release.wait(30)
        return str(len(renders)).encode()

    got: list[bytes] = []
    leader = threading.Thread(target=lambda: got.append(shared.get("k", render)))
    leader.start()
    assert first_in.wait(20)
    joiners = [threading.Thread(target=lambda: got.append(shared.get("k", render))) for _ in range(5)]
    for t in joiners:
        t.start()
    time.sleep(1.0)  # let them reach get(); one late would only cost a third render
    release.set()
    for t in [leader, *joiners]:
        t.join(30)
    assert sorted(got) == [b"1"] + [b"2"] * 5
    assert renders == [1, 2]
    assert shared.get("k", render) == b"3"  # nothing running: a fresh render


def test_stop_is_prompt_and_closes_every_connection() -> None:
    registry = CollectorRegistry()
    blocking = _Blocking()
    registry.register(blocking)
    server = Server(ListenAddress("127.0.0.1", 0), registry, lambda: (True, {}), lambda: (True, {}))
    server.start()
    port = server.port
    cut: list[OSError] = []

    def scrape_in_flight() -> None:
        try:
            request(f"http://127.0.0.1:{port}/metrics", timeout=30)
        except OSError as exc:  # stop closes it without an answer
            cut.append(exc)

    scrape = threading.Thread(target=scrape_in_flight, daemon=True)
    scrape.start()
    assert blocking.entered.acquire(timeout=20)  # a render in flight
    with socket.create_connection(("127.0.0.1", port)) as idle:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3
        assert closed_by_peer(idle, within=5)
    blocking.release.set()
    scrape.join(10)
    assert cut, "the in-flight scrape was not cut off by stop"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


# --- addresses -----------------------------------------------------------------------------


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_listen_address_serves() -> None:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    with local_server(listen=f"[::1]:{port}") as server:
        assert server.port == port
        status, _, body = request(f"http://[::1]:{port}/healthz")
        assert (status, body) == (200, b'{"ok": true, "scheduler_running": true}\n')


def test_a_busy_port_is_one_input_error() -> None:
    with local_server() as server, pytest.raises(InputError, match=r"cannot listen.*pick a free port"):
        Server(f"127.0.0.1:{server.port}", CollectorRegistry(), lambda: (True, {}), lambda: (True, {}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9108", ListenAddress("0.0.0.0", 9108)),
        (":9108", ListenAddress("", 9108)),
        ("localhost:1", ListenAddress("localhost", 1)),
        ("sgwatch.monitoring.svc:65535", ListenAddress("sgwatch.monitoring.svc", 65535)),
        ("[::1]:9108", ListenAddress("::1", 9108)),
        ("[::]:9108", ListenAddress("::", 9108)),
    ],
)
def test_parse_listen_reads_host_port_and_bracketed_ipv6(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("foo", "no port"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:99999", "outside 0-65535"),
        ("127.0.0.1:-1", "port must be a number"),
        ("127.0.0.1:９１０８", "port must be a number"),  # str.isdigit says yes; int() would read 9108
        ("::1:9108", "in brackets"),
        ("[::1]", "]:PORT"),
        ("[::1:9108", "]:PORT"),
        ("[1.2.3.4]:80", "not an IPv6 address"),
        ("999.1.1.1:80", "neither a host name nor an IPv4 address"),
        ("bad host:80", "neither a host name"),
        ("-bad:80", "neither a host name"),
    ],
)
def test_parse_listen_refuses_with_what_is_allowed(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_listen(text)


@pytest.mark.parametrize("value", ["foo", "127.0.0.1:", "127.0.0.1:99999"])
def test_listen_flag_error_is_one_line_and_exit_2(value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGWATCH_")}
    result = subprocess.run(
        [sys.executable, "-m", "sgwatch", "run", "--listen", value],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--listen" in lines[0] and "0-65535" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_config_listen_uses_the_same_reading(tmp_path: Path) -> None:
    path = tmp_path / "sgwatch.yaml"
    path.write_text("listen: '[::1]:9108'\n")
    assert config.load(path, environ={}).listen == "[::1]:9108"
    path.write_text("listen: '127.0.0.1:99999'\n")
    with pytest.raises(InputError, match=r"listen: '127.0.0.1:99999': port 99999 is outside 0-65535"):
        config.load(path, environ={})


def test_a_yaml_number_is_not_a_listen_address() -> None:
    with pytest.raises(ValueError):
        config.Config(listen=9108)  # type: ignore[arg-type]


def test_a_failed_render_fails_its_sharers_and_frees_the_slot() -> None:
    shared = SharedRenders()
    entered, release = threading.Event(), threading.Event()

    def broken() -> bytes:
        entered.set()
        release.wait(30)
        raise ValueError("collector bug")

    errors: list[BaseException] = []

    def call(render: Any) -> None:
        try:
            shared.get("k", render)
        except Exception as exc:
            errors.append(exc)

    leader = threading.Thread(target=call, args=(broken,))
    leader.start()
    assert entered.wait(20)
    next_leader = threading.Thread(target=call, args=(broken,))  # renders after the first, itself
    next_leader.start()
    time.sleep(0.3)
    sharer = threading.Thread(target=call, args=(broken,))  # shares the second render's outcome
    sharer.start()
    time.sleep(0.3)
    release.set()
    for t in (leader, next_leader, sharer):
        t.join(30)
    assert sorted(type(e).__name__ for e in errors) == ["RuntimeError", "ValueError", "ValueError"]
    assert shared.get("k", lambda: b"ok") == b"ok"  # nothing left running
