"""Benchmark the daemon's HTTP server under scrape storms and idle floods (loopback only, bounded).

    .venv/bin/python benchmarks/bench_http.py [--series 2000] [--storms 100,1000] [--idle 300,1000]
                                              [--nofile 400] [--seconds 20] [--limit evict_after=2 ...]

The server runs in its own process with RLIMIT_NOFILE lowered (400: the issue's daemon), a
registry of ``--series`` series; the storms come from another process, so the prober in this
one measures the server, not its own event loop. Printed per phase: /healthz latency
p50/p99/max and failures, scrapes ok / reset / timed out / failed, and the slowest scrape.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import resource, sys
nofile = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
from prometheus_client import CollectorRegistry, Gauge
from sgwatch.server import Limits, Server
registry = CollectorRegistry()
gauge = Gauge("sgwatch_bench_series", "one series per group", ["group", "severity"], registry=registry)
for i in range(int(sys.argv[3])):
    gauge.labels(group=f"sg-{i:08d}", severity="high").set(i)
limits = Limits(**{k: type(getattr(Limits(), k))(v) for k, v in (a.split("=") for a in sys.argv[4:])})
server = Server(f"127.0.0.1:{sys.argv[1]}", registry, lambda: (True, {}), lambda: (True, {}), limits=limits)
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
"""


@dataclass
class Probes:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    def line(self) -> str:
        if not self.latencies:
            return f"/healthz: no answer ({self.failures} failed)"
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        return (
            f"/healthz p50 {statistics.median(ms):7.1f} ms  p99 {p99:7.1f} ms  max {ms[-1]:7.1f} ms  "
            f"({len(ms)} probes, {self.failures} failed)"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _probe_once(port: int, timeout: float) -> float | None:
    """One /healthz on a new connection, as the kubelet does: seconds, or None on failure."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return None
    return time.monotonic() - started if data[9:12] == b"200" else None  # HTTP/1.x 200


def _probe_while(port: int, running: threading.Event | None, count: int, timeout: float) -> Probes:
    probes = Probes()
    for _ in range(count):
        if running is not None and not running.is_set():
            break
        took = _probe_once(port, timeout)
        if took is None:
            probes.failures += 1
        else:
            probes.latencies.append(took)
        time.sleep(0.05)
    return probes


async def _scrape(port: int, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            body = await reader.read()
            writer.close()
    except ConnectionResetError:
        return "reset", time.monotonic() - started
    except TimeoutError:
        return "timeout", time.monotonic() - started
    except OSError as exc:
        return f"failed:{type(exc).__name__}", time.monotonic() - started
    status = body[9:12]
    kind = "ok" if status == b"200" else "busy" if status == b"503" else f"failed:{status!r}"
    return kind, time.monotonic() - started


def _storm(port: int, count: int, timeout: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    _raise_nofile()

    async def run() -> list[tuple[str, float]]:
        return await asyncio.gather(*(_scrape(port, timeout) for _ in range(count)))

    out.put(asyncio.run(run()))


def _storm_phase(port: int, count: int, seconds: float) -> None:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    storm = multiprocessing.Process(target=_storm, args=(port, count, seconds, out))
    started = time.monotonic()
    storm.start()
    running = threading.Event()
    running.set()
    probes: list[Probes] = []
    prober = threading.Thread(target=lambda: probes.append(_probe_while(port, running, 10_000, seconds)))
    prober.start()
    results = out.get(timeout=seconds + 30)
    wall = time.monotonic() - started
    running.clear()
    prober.join(seconds + 5)
    storm.join(10)
    kinds = {k: sum(1 for r, _ in results if r == k) for k in ("ok", "busy", "reset", "timeout")}
    failures = collections.Counter(r.split(":", 1)[1] for r, _ in results if r.startswith("failed:"))
    kinds["failed"] = sum(failures.values())
    slowest = max(t for _, t in results)
    answered = [t for r, t in results if r in ("ok", "busy")]
    print(f"{count:5d} concurrent scrapes: {wall:5.1f} s wall")
    print(f"      {probes[0].line() if probes else '/healthz: prober did not finish'}")
    print(
        f"      scrapes 200 {kinds['ok']}  503 {kinds['busy']}  reset {kinds['reset']}  "
        f"timed out {kinds['timeout']}  failed {kinds['failed']}  slowest answer {max(answered, default=0):5.2f} s"
        f"  (slowest of all {slowest:5.2f} s)"
    )
    if failures:
        print(f"      failures: {', '.join(f'{n} {why}' for why, n in failures.most_common())}")


def _idle_phase(port: int, count: int, seconds: float, pid: int) -> None:
    socks = []
    for i in range(count):
        if i % 4 == 0:
            time.sleep(0.01)  # a flood arrives over time: a short backlog must not hide it
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    time.sleep(0.2)
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd")) if Path(f"/proc/{pid}/fd").is_dir() else -1
        probes = _probe_while(port, None, 20, seconds)
        poller = select.poll()
        for sock in socks:
            poller.register(sock.fileno(), select.POLLIN)
        closed = len(poller.poll(0))  # readable with nothing sent: closed by the server
        print(f"{count:5d} idle connections held: server holds {fds} descriptors")
        print(f"      {probes.line()}")
        print(f"      of them closed by the server to admit others or by the idle timeout: {closed}")
    finally:
        for sock in socks:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=2000, help="series in the served registry")
    parser.add_argument("--storms", default="100,1000", help="concurrent scrapes per storm, comma-separated")
    parser.add_argument("--idle", default="300,1000", help="idle connections per flood, comma-separated")
    parser.add_argument("--nofile", type=int, default=400, help="the server's RLIMIT_NOFILE")
    parser.add_argument("--seconds", type=float, default=20.0, help="per-request timeout and phase bound")
    parser.add_argument("--limit", action="append", default=[], help="a server Limits field, e.g. evict_after=2")
    args = parser.parse_args()
    _raise_nofile()

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(args.nofile), str(args.series), *args.limit],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)
        if not ready or server.stdout.readline().strip() != b"ready":
            sys.exit("bench_http: the server did not start")
        limits = " ".join(args.limit) or "defaults"
        print(f"server: {args.series} series, RLIMIT_NOFILE {args.nofile}, limits {limits}")
        print(f"idle       {_probe_while(port, None, 40, args.seconds).line()}")
        for count in (int(x) for x in args.storms.split(",") if x):
            _storm_phase(port, count, args.seconds)
        for count in (int(x) for x in args.idle.split(",") if x):
            _idle_phase(port, count, args.seconds, server.pid)
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            started = time.monotonic()
            server.wait(10)
            print(f"server stopped in {time.monotonic() - started:.2f} s")
        except subprocess.TimeoutExpired:
            server.kill()
            print("server did not stop within 10 s: killed")


if __name__ == "__main__":
    main()
