"""Change events to alerts: how fast, how many ECS calls, how much CPU per change.

The emulator (a separate process) serves N synthetic groups in one region. One full scan
(without the latency fault, so the setup takes minutes, not an hour) gives the baseline and the
daemon's first picture; then every call costs ``--latency-ms`` (50 ms) and the daemon, in this
process with its default politeness limit and a 1-hour full-scan interval, gets ``--changes``
changes at random times over ``--seconds``: each one a world-open rule added through the
emulator's control API, then its event POSTed to the daemon's events listener as EventBridge
delivers it (a CloudEvent with the bearer token). A local webhook receiver records when each alert arrives.

Printed: change-to-alert latency from the event's arrival to the notification at the receiver
(p50, p99, max; goal p99 < 5 s), ECS calls per change (goal <= 3), CPU per change (the events
worker thread's own, and the whole process's, which includes this driver and the receiver), and
whether any full scan ran after the first (goal: none).

    python benchmarks/bench_events.py                 # 2,000 groups
    python benchmarks/bench_events.py --groups 20000  # the figure in docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog

from sgwatch import baseline
from sgwatch import config as config_file
from sgwatch.daemon import Daemon, RunOptions, scan_interval
from sgwatch.emulator.control import EmulatorControl
from sgwatch.sources import live
from sgwatch.sources.snapshot import parse_scan

AK_ID, AK_SECRET = "LTAIbenchevents00001", "bench-events-secret-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def thread_cpu(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Receiver:
    """A webhook endpoint: when each (group, ports) alert first arrived (monotonic)."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                for event in json.loads(body).get("events", []):
                    finding = event.get("finding", {})
                    rule = finding.get("live") or {}
                    key = (str(finding.get("security_group_id")), str(rule.get("ports")))
                    with receiver.lock:
                        receiver.arrived.setdefault(key, now)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


TOKEN = "bench-events-token-0123456789abcdef"


def record(event_id: str, region: str, gid: str, port: int) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventName": "AuthorizeSecurityGroup",
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventType": "ApiCall",
        "eventRW": "Write",
        "acsRegion": region,
        "serviceName": "Ecs",
        "sourceIpAddress": "203.0.113.7",
        "userAgent": "bench",
        "userIdentity": {"type": "ram-user", "userName": "bench", "accountId": "1234567890"},
        "requestParameters": {
            "RegionId": region,
            "SecurityGroupId": gid,
            "IpProtocol": "tcp",
            "PortRange": f"{port}/{port}",
            "SourceCidrIp": "0.0.0.0/0",
        },
    }


def post_event(url: str, rec: dict[str, Any]) -> int:
    """POST one EventBridge-shaped CloudEvent carrying ``rec``, as EventBridge's HTTP target does."""
    body = {
        "specversion": "1.0",
        "id": rec["eventId"],
        "source": "acs.actiontrail",
        "type": "actiontrail:ActionTrail:ApiCall",
        "subject": f"acs:ecs:{rec['acsRegion']}::securitygroup/{rec['requestParameters']['SecurityGroupId']}",
        "time": rec["eventTime"],
        "datacontenttype": "application/json;charset=utf-8",
        "aliyunregionid": rec["acsRegion"],
        "data": rec,
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/cloudevents+json", "Authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, default=2000)
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60.0, help="the changes happen at random times over this")
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    work = Path(tempfile.mkdtemp(prefix="sgwatch-bench-events-"))
    port, events_port = free_port(), free_port()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sgwatch.emulator",
            "--synthetic",
            str(args.groups),
            "--regions",
            "1",
            "--port",
            str(port),
            "--seed",
            str(args.seed),
            "--key",
            f"{AK_ID}:{AK_SECRET}",
        ],
        stderr=subprocess.DEVNULL,
    )
    daemon: Daemon | None = None
    try:
        control = EmulatorControl(f"http://127.0.0.1:{port}")
        ready_by = time.monotonic() + 300  # generating 20,000 groups takes a while on a busy machine
        while True:
            try:
                control.stats()
                break
            except OSError:
                if time.monotonic() > ready_by:
                    raise SystemExit("the emulator did not start") from None
                time.sleep(0.2)
        receiver = Receiver()
        endpoint = f"http://127.0.0.1:{port}"
        account = {"name": "default", "credentials": {"type": "access_key", "id": AK_ID, "secret": AK_SECRET}}
        # The setup scan: no latency, no politeness limit, so 20,000 groups take minutes.
        setup = live.LiveSettings.model_validate(
            {"endpoint": endpoint, "accounts": [account], "concurrency": 16, "requests_per_second": 0}
        )
        started = time.perf_counter()
        raw = live.scan(setup)
        snap = parse_scan(raw)
        if raw.errors or not snap.listed:
            raise SystemExit(f"the setup scan did not read the estate: {raw.errors[:3]}")
        region = sorted(snap.listed)[0][1]
        baseline.capture(snap, work / "baseline")
        setup_seconds = time.perf_counter() - started

        first = [(raw, snap)]

        def scanner(cfg: config_file.Config) -> Any:
            # the setup scan's answer, once; any later full scan reads the cloud (and is counted)
            return first.pop() if first else (live.scan(cfg.live()), None)

        daemon = Daemon(
            RunOptions(
                config_path=None,
                overrides={
                    "baseline": str(work / "baseline"),
                    "state": str(work / "state.sqlite"),
                    "listen": "127.0.0.1:0",
                    "endpoint": endpoint,
                    "regions": [region],
                    "accounts": [account],
                    # the push path as EventBridge uses it; events on: full scans every hour
                    "events": {"listen": f"127.0.0.1:{events_port}", "token": TOKEN},
                    "limits": {"max_input_bytes": 1 << 30},  # 20,000 groups' baseline is one large file
                    "notifications": [{"type": "webhook", "name": "hook", "url": receiver.url, "min_severity": "info"}],
                },
            ),
            scanner=scanner,
        )
        daemon.scan()
        full_scans = sum(daemon.telemetry.scans.values())
        daemon.events.start()
        assert daemon.events_server is not None
        daemon.events_server.start()
        events_url = f"http://127.0.0.1:{events_port}/events"
        control.set_faults(latency_ms=args.latency_ms)
        control.reset_stats()

        rng = random.Random(args.seed)
        groups = sorted(gid for (_, r, gid) in snap.groups if r == region)
        chosen = rng.sample(groups, args.changes)
        times = sorted(rng.uniform(0, args.seconds) for _ in range(args.changes))
        submitted: dict[tuple[str, str], float] = {}
        worker = daemon.events._thread
        assert worker is not None and worker.native_id is not None
        worker_cpu, process_cpu = thread_cpu(worker.native_id), time.process_time()
        t0 = time.monotonic()
        for n, (gid, at) in enumerate(zip(chosen, times, strict=True)):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            tcp_port = 20000 + n
            control.add_permission(
                region,
                gid,
                {
                    "IpProtocol": "TCP",
                    "PortRange": f"{tcp_port}/{tcp_port}",
                    "SourceCidrIp": "0.0.0.0/0",
                    "Policy": "Accept",
                    "Priority": "1",
                    "Direction": "ingress",
                },
            )
            arrived = time.monotonic()
            status = post_event(events_url, record(f"bench-{n}", region, gid, tcp_port))
            if status != 202:
                raise SystemExit(f"POST /events answered {status}")
            submitted[(gid, f"{tcp_port}/{tcp_port}")] = arrived
        daemon.events.wait_idle(120)
        deadline = time.monotonic() + 30
        while len(receiver.arrived.keys() & submitted.keys()) < len(submitted) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker_cpu = thread_cpu(worker.native_id) - worker_cpu
        process_cpu = time.process_time() - process_cpu
        stats = control.stats()
        latencies = [receiver.arrived[k] - t for k, t in submitted.items() if k in receiver.arrived]
        later_scans = sum(daemon.telemetry.scans.values()) - full_scans
        rereads = dict(daemon.telemetry.reread.rereads)
    finally:
        if daemon is not None:
            if daemon.events_server is not None:
                daemon.events_server.stop()
            daemon.events.stop()
            daemon.state.close()
        emulator.terminate()
        emulator.wait(timeout=10)

    calls = stats["total_calls"]
    missing = len(submitted) - len(latencies)
    interval = scan_interval(daemon.loaded.config) if daemon else 0
    ok = bool(latencies) and not missing and percentile(latencies, 0.99) < 5 and calls <= 3 * args.changes
    lines = [
        f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        f"estate: {args.groups:,} groups in one region ({region}); setup scan {setup_seconds:.0f} s; "
        f"then {args.latency_ms:.0f} ms per call, full-scan interval {interval:.0f} s",
        f"changes: {args.changes} at random times over {args.seconds:.0f} s; alerts received: {len(latencies)}"
        + (f" ({missing} MISSING)" if missing else ""),
        f"change to alert (event arrival to the receiver): p50 {statistics.median(latencies):.2f} s, "
        f"p99 {percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s (goal p99 < 5 s)"
        if latencies
        else "change to alert: no alert arrived",
        f"ECS calls: {calls} ({calls / args.changes:.2f} per change, goal <= 3): {stats['calls']}",
        f"re-reads by result: {rereads}",
        f"CPU per change: events worker {worker_cpu / args.changes * 1000:.1f} ms, "
        f"whole process {process_cpu / args.changes * 1000:.1f} ms (with this driver and the receiver)",
        f"full scans after the first: {later_scans} (goal 0); DescribeSecurityGroups calls: "
        f"{stats['calls'].get('DescribeSecurityGroups', 0)}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if ok and later_scans == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
