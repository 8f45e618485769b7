"""Soak: the daemon scanning 2,000 groups in the emulator, many times at a short interval.

Prints RSS after warm-up and at the end (goal: growth <= 5%), CPU seconds per scan, and scan
durations. Everything runs on 127.0.0.1; the emulator and the daemon are separate processes.

    python benchmarks/soak.py [--scans 200] [--groups 2000] [--interval 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

AK_ID, AK_SECRET = "LTAIsoak0000000001", "soak-secret-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def scans_done(base: str) -> float:
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "sgwatch_scans_total"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=AK_ID,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=AK_SECRET,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        SGWATCH_SCAN__REQUESTS_PER_SECOND="0",
        SGWATCH_JITTER="0",
    )
    work = Path(tempfile.mkdtemp(prefix="sgwatch-soak-"))
    emu_port, port = free_port(), free_port()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sgwatch.emulator",
            "--synthetic",
            str(args.groups),
            "--regions",
            "3",
            "--port",
            str(emu_port),
            "--key",
            f"{AK_ID}:{AK_SECRET}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    daemon = None
    try:
        time.sleep(2)
        endpoint = f"http://127.0.0.1:{emu_port}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sgwatch",
                "baseline",
                "capture",
                "--endpoint",
                endpoint,
                "--output",
                str(work / "baseline"),
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        base = f"http://127.0.0.1:{port}"
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sgwatch",
                "run",
                "--baseline",
                str(work / "baseline"),
                "--endpoint",
                endpoint,
                "--interval",
                str(args.interval),
                "--listen",
                f"127.0.0.1:{port}",
                "--state",
                str(work / "s.sqlite"),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        started = time.monotonic()
        warm_rss = warm_cpu = None
        warm_at = 0.0
        samples: list[float] = []
        while True:
            done = scans_done(base)
            if warm_rss is None and done >= args.warmup:
                warm_rss, warm_cpu, warm_at = rss_mib(daemon.pid), cpu_seconds(daemon.pid), done
                print(f"after {done:.0f} warm-up scans: RSS {warm_rss:.1f} MiB", flush=True)
            if warm_rss is not None:
                samples.append(rss_mib(daemon.pid))
            if done >= args.scans:
                break
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited with {daemon.returncode}")
            time.sleep(1)
        end_rss, end_cpu = rss_mib(daemon.pid), cpu_seconds(daemon.pid)
        wall = time.monotonic() - started
        assert warm_rss is not None and warm_cpu is not None
        print(f"{done:.0f} scans of {args.groups:,} groups in {wall:.0f} s ({wall / done:.2f} s per scan)")
        print(
            f"RSS after warm-up {warm_rss:.1f} MiB, at the end {end_rss:.1f} MiB, max {max(samples):.1f} MiB: "
            f"growth {100 * (end_rss - warm_rss) / warm_rss:+.1f}% (goal <= 5%)"
        )
        print(f"daemon CPU per scan after warm-up: {(end_cpu - warm_cpu) / (done - warm_at):.3f} s")
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=15)
        emulator.terminate()
        emulator.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
