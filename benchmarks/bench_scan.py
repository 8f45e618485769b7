"""Benchmark a live scan against the ECS emulator (run in its own process, as a remote API is).

    .venv/bin/python benchmarks/bench_scan.py [--groups 2000] [--regions 3] [--latency-ms 50]
                                              [--concurrency 16] [--throttle-rate 0.2]

Reports calls made vs the minimum, wall time vs the ideal ``calls x latency / concurrency``,
the same scan with a share of calls throttled (same result expected), and peak RSS.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from typing import Any

import structlog

from sgwatch.emulator import EmulatorControl, Estate
from sgwatch.sources.interfaces import ENI_PAGE_SIZE, INSTANCE_PAGE_SIZE
from sgwatch.sources.live import LiveSettings, scan
from sgwatch.sources.raw import RawScan

AK_ID, AK_SECRET = "LTAIbench00000000001", "bench-secret-not-real"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _minimum_calls(estate: Estate) -> int:
    calls = 0
    for region in estate.regions("default").values():
        calls += max(1, math.ceil(len(region.groups) / 100))
        calls += sum(max(1, math.ceil(len(g.permissions) / 1000)) for g in region.groups.values())
        # and each prefix list a rule names, once per region
        fields = ("SourcePrefixListId", "DestPrefixListId")
        calls += len({p[f] for g in region.groups.values() for p in g.permissions for f in fields if p.get(f)})
        # and membership: one whole listing each of ENIs (500 a page) and instances (100 a page)
        enis, instances = region.members.count()
        calls += max(1, math.ceil(enis / ENI_PAGE_SIZE)) + max(1, math.ceil(instances / INSTANCE_PAGE_SIZE))
    return calls


def _process_cpu(pid: int) -> float:
    """user+system CPU seconds of a child process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fingerprint(raw: RawScan) -> list[Any]:
    return [(r.account, r.action, {k: v for k, v in r.body.items() if k != "RequestId"}) for r in raw.responses]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--groups", type=int, default=2000)
    p.add_argument("--regions", type=int, default=3)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--throttle-rate", type=float, default=0.2)
    p.add_argument("--backoff-base-ms", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rss_at_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the SDK's imports alone
    # a throttled run retries hundreds of calls; their debug lines would bury the figures
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sgwatch.emulator",
            "--synthetic",
            str(args.groups),
            "--regions",
            str(args.regions),
            "--latency-ms",
            str(args.latency_ms),
            "--port",
            str(port),
            "--seed",
            str(args.seed),
            "--key",
            f"{AK_ID}:{AK_SECRET}",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        control = EmulatorControl(f"http://127.0.0.1:{port}")
        for _ in range(200):
            try:
                control.stats()
                break
            except OSError:
                time.sleep(0.05)
        estate = Estate.synthetic(args.groups, args.regions, seed=args.seed)  # the same seeded estate
        minimum = _minimum_calls(estate)
        settings = LiveSettings.model_validate(
            {
                "endpoint": f"http://127.0.0.1:{port}",
                "accounts": [
                    {"name": "default", "credentials": {"type": "access_key", "id": AK_ID, "secret": AK_SECRET}}
                ],
                "regions": sorted(estate.regions("default")),
                "concurrency": args.concurrency,
                "requests_per_second": 0,  # measure the scanner, not the politeness setting
                "backoff_base_ms": args.backoff_base_ms,
                "deadline_seconds": 600,
            }
        )
        ideal = minimum * args.latency_ms / 1000 / args.concurrency

        control.reset_stats()
        started, cpu_started = time.perf_counter(), time.process_time()
        clean = scan(settings)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        calls = control.stats()["total_calls"]

        control.set_faults(throttle_rate=args.throttle_rate)
        control.reset_stats()
        started = time.perf_counter()
        throttled = scan(settings)
        wall_throttled = time.perf_counter() - started
        stats_throttled = control.stats()
        server_cpu = _process_cpu(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    groups_read = sum(1 for r in clean.responses if r.action == "DescribeSecurityGroupAttribute")
    enis, instances = estate.member_counts()
    same = (
        _fingerprint(clean) == _fingerprint(throttled)
        and not clean.errors
        and not throttled.errors
        and not clean.membership_failures
        and not throttled.membership_failures
    )
    lines = [
        f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        f"estate: {args.groups} groups in {args.regions} regions, {args.latency_ms:.0f} ms per call, "
        f"concurrency {args.concurrency}",
        f"groups read: {groups_read}, errors: {len(clean.errors)}; membership: {enis} ENIs, {instances} instances, "
        f"{len(clean.membership_failures)} region(s) unknown",
        f"calls made: {calls} (minimum {minimum}) {'OK' if calls == minimum else 'EXTRA CALLS'}",
        f"wall time: {wall:.2f} s (ideal {ideal:.2f} s, ratio {wall / ideal:.2f}, goal <= 1.2); "
        f"scanner CPU {cpu:.2f} s ({cpu / calls * 1000:.2f} ms per call)",
        f"throttled {args.throttle_rate:.0%}: {wall_throttled:.2f} s ({wall_throttled / wall:.2f}x unthrottled, "
        f"goal <= 2), calls {stats_throttled['total_calls']}, throttles {throttled.stats.throttles}, "
        f"same result: {same}",
        f"emulator CPU over both runs: {server_cpu:.2f} s (shares the same 2 cores)",
        f"peak RSS of the scanning process: {rss_mb:.0f} MiB ({rss_at_start:.0f} MiB after imports)",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if same and calls == minimum else 1


if __name__ == "__main__":
    raise SystemExit(main())
