"""Benchmark scanning every account of an organisation through the emulator (its own process).

    .venv/bin/python benchmarks/bench_org.py [--accounts 200] [--regions 2] [--groups 50]
                                             [--latency-ms 20] [--concurrency 8]
                                             [--total-shards 4 --shard 0]

The emulator serves a Resource Directory of ``--accounts`` members, each with ``--groups`` groups
in each of ``--regions`` regions and the role sgwatch assumes. sgwatch discovers the members
(``ListAccounts``), assumes the role in each (``AssumeRole``) and scans them all, first at the
default politeness limit, then with the limit off. Printed: calls made against the minimum
(discovery and AssumeRole included), wall time against the floor of each run, and what a second
scan costs (no discovery, no AssumeRole: both are kept by the process). With ``--total-shards M``:
each shard's share of the members, and the scan of shard ``--shard`` alone (every replica lists
the directory; each assumes the role in and scans only its own members).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import structlog

from sgwatch import sharding
from sgwatch.emulator import EmulatorControl, Estate
from sgwatch.emulator.resourcedirectory import organization_estate
from sgwatch.sources import organization
from sgwatch.sources.interfaces import ENI_PAGE_SIZE, INSTANCE_PAGE_SIZE
from sgwatch.sources.live import LiveSettings, scan
from sgwatch.sources.live_settings import ScanTuning

MGMT_ID, MGMT_SECRET = "LTAIbenchmanagement1", "bench-management-secret-not-real"
ROLE = "sgwatch-reader"
DISCOVERY_ACTIONS = ("ListAccounts", "AssumeRole")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pair_calls(estate: Estate, account: str) -> dict[str, int]:
    """The fewest ECS calls that read each region of one account whole (see docs/live-scanning.md)."""
    out = {}
    fields = ("SourcePrefixListId", "DestPrefixListId")
    for name, region in estate.regions(account).items():
        groups = region.groups.values()
        calls = max(1, math.ceil(len(region.groups) / 100))
        calls += sum(max(1, math.ceil(len(g.permissions) / 1000)) for g in groups)
        calls += len({p[f] for g in groups for p in g.permissions for f in fields if p.get(f)})
        enis, instances = region.members.count()
        calls += max(1, math.ceil(enis / ENI_PAGE_SIZE)) + max(1, math.ceil(instances / INSTANCE_PAGE_SIZE))
        out[name] = calls
    return out


@dataclass(frozen=True)
class Floor:
    """The least wall time a scan can take: discovery pages one after another, then the larger of
    the busiest (account, region) at the limit and every call's latency spread over the workers."""

    calls: int
    busiest_pair: int
    discovery_pages: int

    def seconds(self, latency: float, concurrency: int, rps: float) -> float:
        by_rate = self.busiest_pair / rps if rps else 0.0
        by_latency = (self.calls - self.discovery_pages) * latency / concurrency
        return self.discovery_pages * latency + max(by_rate, by_latency)


def _say(*lines: str) -> None:
    # a long run shows its figures as they come
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def select_accounts(uids: list[str], shard: int, total: int) -> list[str]:
    """The members one replica scans: its shard's (a discovered account is keyed by its UID)."""
    owner = sharding.assign(uids, total)
    return [uid for uid in uids if owner[uid] == shard]


def _settings(url: str, regions: list[str], shard: tuple[int, int], **tuning: Any) -> LiveSettings:
    org: dict[str, Any] = {
        "discover": "resource_directory",
        "role_name": ROLE,
        "credentials": {"access_key": {"id": MGMT_ID, "secret": MGMT_SECRET}},
        "sts_endpoint": url,
        "resource_directory_endpoint": url,
        "session_name": f"sgwatch-bench-{time.monotonic_ns()}",  # a fresh session cache per run
    }
    # the replica's own split of what it discovers, as `sgwatch run --shard N --total-shards M` does
    index, total = shard
    return LiveSettings.model_validate(
        {
            "endpoint": url,
            "regions": regions,
            "organization": org,
            "deadline_seconds": 3600,
            "shard": index,
            "total_shards": total,
            **tuning,
        }
    )


def _run(control: EmulatorControl, settings: LiveSettings) -> tuple[float, dict[str, int], int]:
    control.reset_stats()
    started = time.perf_counter()
    raw = scan(settings)
    wall = time.perf_counter() - started
    calls = dict(control.stats()["calls"])
    return wall, calls, len(raw.errors)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--regions", type=int, default=2)
    p.add_argument("--groups", type=int, default=50, help="groups per (account, region)")
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=ScanTuning().concurrency)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--total-shards", type=int, default=1, help="split the members across this many replicas")
    p.add_argument("--shard", type=int, default=0, help="the replica whose scan is measured (0 .. total-1)")
    p.add_argument(
        "--runs",
        default="defaults,off",
        help="which runs, comma-separated: defaults (the politeness limit at its default), off (no limit)",
    )
    args = p.parse_args()
    if not 0 <= args.shard < args.total_shards:
        p.error(f"--shard {args.shard}: the shard is 0 .. {args.total_shards - 1}")
    runs = {"defaults": ScanTuning().requests_per_second, "off": 0.0}
    chosen = [r.strip() for r in args.runs.split(",") if r.strip()]
    if unknown := sorted(set(chosen) - runs.keys()):
        p.error(f"--runs: unknown run(s) {', '.join(unknown)}; choose from defaults, off")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        *(sys.executable, "-m", "sgwatch.emulator", "--organization", str(args.accounts)),
        *("--synthetic", str(args.groups * args.regions), "--regions", str(args.regions), "--seed", str(args.seed)),
        *("--latency-ms", str(args.latency_ms), "--port", str(port), "--key", f"{MGMT_ID}:{MGMT_SECRET}"),
        *("--role-name", ROLE),
    ]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        control = EmulatorControl(url)
        for _ in range(600):
            try:
                control.stats()
                break
            except OSError:
                time.sleep(0.1)
        # the same seeded estate as the emulator's
        estate, all_uids = organization_estate(args.accounts, args.groups * args.regions, args.regions, seed=args.seed)
        uids = select_accounts(all_uids, args.shard, args.total_shards)
        if args.total_shards > 1:
            shares = [len(select_accounts(all_uids, i, args.total_shards)) for i in range(args.total_shards)]
            even = len(all_uids) / args.total_shards
            worst = max(abs(n - even) for n in shares) / even
            _say(
                f"shards: {args.total_shards}; accounts per shard {shares} (even {even:g}; "
                f"furthest {worst:.1%} from even: {'OK' if worst <= 0.2 else 'OVER 20%'}); measuring shard {args.shard}"
            )
        regions = sorted(estate.regions(all_uids[0]))
        pairs = [n for uid in uids for n in _pair_calls(estate, uid).values()]
        pages = max(1, math.ceil(len(all_uids) / organization.PAGE_SIZE))
        minimum = pages + len(uids) + sum(pairs)  # ListAccounts pages, one AssumeRole per member, ECS
        floor = Floor(minimum, max(pairs), pages)
        latency = args.latency_ms / 1000

        _say(
            f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
            f"estate: {len(uids)} accounts x {args.regions} regions x {args.groups} groups, "
            f"{args.latency_ms:.0f} ms per call, concurrency {args.concurrency}; minimum {minimum} calls "
            f"({pages} ListAccounts, {len(uids)} AssumeRole, {sum(pairs)} ECS)",
        )
        ok = True
        for label in chosen:
            rps = runs[label]
            name = "limit off" if label == "off" else label
            settings = _settings(
                url,
                regions,
                (args.shard, args.total_shards),
                concurrency=args.concurrency,
                requests_per_second=rps,
            )
            wall, calls, errors = _run(control, settings)
            total = sum(calls.values())
            ideal = floor.seconds(latency, args.concurrency, rps)
            discovery = ", ".join(f"{a} {calls.get(a, 0)}" for a in DISCOVERY_ACTIONS)
            ok &= total == minimum and not errors
            _say(
                f"{name}: {wall:.1f} s (floor {ideal:.1f} s, ratio {wall / ideal:.2f}); calls {total} "
                f"(minimum {minimum}) {'OK' if total == minimum else 'EXTRA CALLS'}; {discovery}; errors {errors}"
            )
            again_wall, again, again_errors = _run(control, settings)
            kept = sum(again.get(a, 0) for a in DISCOVERY_ACTIONS)
            ok &= kept == 0 and not again_errors
            _say(
                f"{name}, next scan: {again_wall:.1f} s, calls {sum(again.values())} "
                f"(discovery and AssumeRole {kept}: kept by the process)"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
