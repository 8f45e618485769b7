"""Soak: the daemon's scan, many times over, against 2,000 emulated groups: CPU per scan and RSS.

The emulator runs in its own process (its CPU is not counted); the daemon (``sgwatch.daemon.Daemon``
with the defaults a user gets, its caches included) runs here and its scans are called one after
another, so every figure is this process's CPU. Printed:

- CPU per SDK call: process CPU of the scan phase (``sources.live.scan``) / calls made;
- CPU of a first scan, of a quiet scan (nothing changed) and of a scan with 1% of the groups
  changed, each whole and without the scan phase (parse, assess, state, alerts), and its ratio
  to the first scan's;
- RSS over all scans (start after the first scan, max, end), while at every scan 1% of the
  groups change and one group is deleted and another created (so the caches must let go of
  the vanished ones).

    python benchmarks/soak.py [--scans 200] [--groups 2000] [--regions 3]

No client-side rate limit (``scan.requests_per_second: 0``): at the default 10 calls/s a scan
of 2,000 groups waits 200 s, which changes wall time, not CPU. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from sgwatch.emulator import EmulatorControl
from sgwatch.sources.raw import RawScan

AK_ID, AK_SECRET = "LTAIsoak0000000001", "soak-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ScanPhase:
    """Wraps ``live.scan``: the CPU and the calls of the scan phase of the last scan."""

    def __init__(self) -> None:
        from sgwatch.sources import live

        self.cpu = 0.0
        self.calls = 0
        self._scan: Callable[..., RawScan] = live.scan
        live.scan = self  # type: ignore[assignment]  # the daemon's scanner calls live.scan

    def __call__(self, *args: Any, **kwargs: Any) -> RawScan:
        started = time.process_time()
        raw = self._scan(*args, **kwargs)
        self.cpu = time.process_time() - started
        self.calls = sum(raw.stats.requests.values())
        return raw


class Churn:
    """Changes to the emulated estate between two scans: rules of a share of the groups, one group replaced."""

    def __init__(self, control: EmulatorControl, groups: list[tuple[str, str]]) -> None:
        self.control = control
        self.groups = groups  # (region, group id)
        self.added: dict[tuple[str, str], str] = {}  # group -> the rule id added to it
        self.created: tuple[str, str] | None = None
        self.turn = 0

    def rules(self, share: float) -> int:
        """Add a rule to ``share`` of the groups, or take back the one added before."""
        count = max(1, round(len(self.groups) * share))
        start = (self.turn * count) % len(self.groups)
        self.turn += 1
        for region, gid in (self.groups + self.groups)[start : start + count]:
            rule = self.added.pop((region, gid), None)
            if rule is not None:
                self.control.remove_permission(region, gid, rule)
                continue
            port = 20000 + self.turn % 1000
            made = self.control.add_permission(
                region,
                gid,
                {
                    "Direction": "ingress",
                    "Policy": "Accept",
                    "IpProtocol": "TCP",
                    "PortRange": f"{port}/{port}",
                    "SourceCidrIp": "10.9.0.0/16",
                    "Priority": "1",
                },
            )
            self.added[(region, gid)] = str(made["SecurityGroupRuleId"])
        return count

    def replace_group(self) -> None:
        """Delete the group created last time and create another: ids that vanish."""
        if self.created is not None:
            self.control.remove_group(*self.created)
        region = self.groups[self.turn % len(self.groups)][0]
        self.created = (region, f"sg-soak{self.turn:012d}")
        self.control.add_group(*self.created, {"SecurityGroupName": "soak", "SecurityGroupType": "normal"})


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--regions", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.01, help="share of groups changed a scan (default 1%%)")
    args = parser.parse_args()
    for name in [k for k in os.environ if "proxy" in k.lower()]:
        del os.environ[name]
    os.environ.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=AK_ID,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=AK_SECRET,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        SGWATCH_SCAN__REQUESTS_PER_SECOND="0",
    )
    # the daemon's warnings (every drift of the first scan) would bury the figures
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    work = Path(tempfile.mkdtemp(prefix="sgwatch-soak-"))
    emu_port = free_port()
    endpoint = f"http://127.0.0.1:{emu_port}"
    emulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "sgwatch.emulator", "--synthetic", str(args.groups)),
            *("--regions", str(args.regions), "--port", str(emu_port), "--key", f"{AK_ID}:{AK_SECRET}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        control = EmulatorControl(endpoint)
        for _ in range(100):
            try:
                control.stats()
                break
            except OSError:
                time.sleep(0.1)
        baseline = work / "b"
        subprocess.run(
            [sys.executable, "-m", "sgwatch", "baseline", "capture", "--endpoint", endpoint, "--output", str(baseline)],
            check=True,
            capture_output=True,
        )
        load = os.getloadavg()
        print(
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
        )
        # Imported once the credentials are in the environment: the credentials library reads them early.
        from sgwatch import daemon as daemon_module

        phase = ScanPhase()
        daemon = daemon_module.Daemon(
            daemon_module.RunOptions(
                None,
                {
                    "baseline": str(baseline),
                    "endpoint": endpoint,
                    "state": str(work / "state.sqlite"),
                    "listen": "127.0.0.1:0",
                },
            )
        )
        groups = sorted((region, gid) for _, region, gid in daemon.loaded.baseline.groups)
        churn = Churn(control, groups)

        def scan() -> tuple[float, float]:
            started = time.process_time()
            daemon.scan()
            return time.process_time() - started, phase.cpu

        first = scan()
        rss = [rss_mib()]
        quiet = scan()
        changed = churn.rules(args.changed)
        some = scan()
        rows = [("first scan", first), ("quiet scan (0% changed)", quiet), (f"{args.changed:.0%} changed", some)]
        print(f"{args.groups:,} groups, {phase.calls:,} SDK calls a scan ({changed} groups changed in the third)")
        print(f"CPU per SDK call (scan phase / calls): {1000 * quiet[1] / phase.calls:.2f} ms")
        print(f"{'scan':<26} {'CPU':>8} {'/ first':>8} {'without the scan phase':>24} {'/ first':>8}")
        for label, (cpu, scan_cpu) in rows:
            rest, first_rest = cpu - scan_cpu, first[0] - first[1]
            print(f"{label:<26} {cpu:7.2f}s {cpu / first[0]:8.0%} {rest:23.2f}s {rest / first_rest:8.0%}")
        cpus = []
        for _ in range(args.scans - 3):
            churn.rules(args.changed)
            churn.replace_group()
            cpus.append(scan()[0])
            rss.append(rss_mib())
        print(
            f"RSS over {args.scans} scans ({args.changed:.0%} of groups and one group id changed at each): "
            f"after the first {rss[0]:.1f} MiB, max {max(rss):.1f} MiB, end {rss[-1]:.1f} MiB "
            f"({100 * (rss[-1] - rss[0]) / rss[0]:+.1f}%)"
        )
        if cpus:
            cpus.sort()
            print(f"CPU of those scans: median {cpus[len(cpus) // 2]:.2f}s, max {cpus[-1]:.2f}s")
        kept = len(daemon.reuse)
        print(f"groups kept by the engine's cache at the end: {kept:,} (groups in the estate: {args.groups:,})")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
