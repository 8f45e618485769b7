"""Baseline loading: file size, time and peak memory for N rules, valid and with one bad entry at the end.

Each load runs in a fresh process (peak RSS is per process), the way `sgwatch report` and the
daemon read a baseline. Prints a table, the memory per rule, and the largest file that fits a
memory limit with the default `limits.max_input_bytes`.

    python benchmarks/bench_baseline_memory.py [--rules 10000,100000,1000000] [--limit-mib 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from sgwatch.inputlimits import DEFAULT_MAX_INPUT_BYTES

RULES_PER_GROUP = 50

CHILD = """
import json, resource, sys, time
from pathlib import Path
from sgwatch import baseline
from sgwatch.bulk import gc_paused
from sgwatch.errors import InputError
start = time.perf_counter()
error = ""
try:
    with gc_paused():
        loaded = baseline.load(Path(sys.argv[1]), max_bytes=1 << 40)
except InputError as exc:
    error = str(exc).split(": ", 1)[1][:60]
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_mib": usage.ru_maxrss / 1024, "error": error}))
"""


def write_baseline(path: Path, rules: int, bad_last: bool) -> None:
    groups = max(1, rules // RULES_PER_GROUP)
    with path.open("w") as f:
        f.write("account: default\nregion: cn-hangzhou\nsecurity_groups:\n")
        for g in range(groups):
            f.write(f"  - id: sg-{g:08d}\n    name: web-{g}\n    type: normal\n    vpc_id: vpc-1\n")
            f.write("    inner_access_policy: accept\n    ingress:\n")
            for r in range(RULES_PER_GROUP):
                ports = "22/99999" if bad_last and g == groups - 1 and r == RULES_PER_GROUP - 1 else f"{r + 1}/{r + 1}"
                f.write(
                    f"      - {{policy: accept, priority: {r % 100 + 1}, protocol: tcp, ports: {ports}, "
                    f"peer: 10.{g % 256}.{r}.0/24, description: rule {g} {r}, id: sgr-{g:07d}{r:03d}}}\n"
                )
            f.write("    egress: []\n")


def measure(path: Path) -> dict[str, float | str]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
    result: dict[str, float | str] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", default="10000,100000,1000000", help="comma-separated rule counts")
    parser.add_argument("--limit-mib", type=float, default=1024, help="the memory limit to size against")
    args = parser.parse_args()
    counts = [int(n) for n in args.rules.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            for bad in (False, True):
                path = Path(tmp) / f"b-{n}-{bad}.yaml"
                write_baseline(path, n, bad)
                size = path.stat().st_size
                got = measure(path)
                path.unlink()
                rows.append((n, "bad last entry" if bad else "valid", size, got))
    print(f"{'rules':>9} {'case':15} {'file MiB':>9} {'wall s':>7} {'cpu s':>7} {'peak RSS MiB':>13}  error")
    for n, case, size, got in rows:
        print(
            f"{n:>9,} {case:15} {size / 2**20:>9.1f} {got['seconds']:>7.1f} {got['cpu']:>7.1f} "
            f"{got['rss_mib']:>13.0f}  {got['error']}"
        )
    valid = [(n, size, float(got["rss_mib"])) for n, case, size, got in rows if case == "valid"]
    if len(valid) >= 2:
        (n0, s0, r0), (n1, s1, r1) = valid[0], valid[-1]
        per_rule_kib = (r1 - r0) * 1024 / (n1 - n0)
        per_rule_bytes = (s1 - s0) / (n1 - n0)
        base_mib = r0 - n0 * per_rule_kib / 1024
        fits = (args.limit_mib - base_mib) * 1024 / per_rule_kib
        default_rules = DEFAULT_MAX_INPUT_BYTES / per_rule_bytes
        default_peak = base_mib + default_rules * per_rule_kib / 1024
        print(f"memory per rule: {per_rule_kib:.2f} KiB; file bytes per rule: {per_rule_bytes:.0f}")
        fits_mib = fits * per_rule_bytes / 2**20
        print(f"{args.limit_mib:.0f} MiB holds ~{fits:,.0f} rules in one file (~{fits_mib:.0f} MiB of YAML)")
        print(
            f"default limits.max_input_bytes {DEFAULT_MAX_INPUT_BYTES / 2**20:.0f} MiB: "
            f"~{default_rules:,.0f} rules, peak ~{default_peak:.0f} MiB"
        )


if __name__ == "__main__":
    main()
