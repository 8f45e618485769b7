"""Engine benchmark: 20,000 groups and ~1,000,000 rules as an offline snapshot.

Prints JSON load time, engine time (normalise, diff, exposure, severity, posture), render
time, peak RSS, and the time to evaluate one worst-case group of 1,000 public rules.
Targets: engine <= load; peak RSS < 2 GiB; worst-case group < 1 s.

    python benchmarks/bench_engine.py [--groups 20000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sgwatch import baseline as baseline_file
from sgwatch.bulk import gc_paused
from sgwatch.core import exposure
from sgwatch.core.checks import CATALOGUE, CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.membership import Interface, Membership
from sgwatch.core.model import Baseline, Group, Snapshot
from sgwatch.render import json as json_render
from sgwatch.render import markdown, table
from sgwatch.sources.raw import RawResponse
from sgwatch.sources.snapshot import SnapshotBuilder, iter_dir

REGIONS = ("cn-hangzhou", "cn-shanghai", "cn-beijing")
PORTS = (22, 80, 443, 3306, 5432, 6379, 8080, 8443, 9000, 9090, 9200, 11211, 27017)


def perm(
    direction: str, proto: str, ports: str, peer: str, policy: str = "Accept", prio: int = 1, n: int = 0
) -> dict[str, Any]:
    side = "Source" if direction == "ingress" else "Dest"
    p = {
        "SecurityGroupRuleId": f"sgr-{n:09d}",
        "Direction": direction,
        "IpProtocol": proto,
        "PortRange": ports,
        "SourcePortRange": "",
        "Policy": policy,
        "Priority": str(prio),
        "NicType": "intranet",
        "Description": f"rule {n}",
        "CreateTime": "2026-01-01T00:00:00Z",
        f"{side}CidrIp": "",
        f"Ipv6{side}CidrIp": "",
        f"{side}GroupId": "",
        f"{side}GroupOwnerAccount": "",
        f"{side}PrefixListId": "",
    }
    if peer.startswith("sg-"):
        p[f"{side}GroupId"] = peer
    elif ":" in peer:
        p[f"Ipv6{side}CidrIp"] = peer
    else:
        p[f"{side}CidrIp"] = peer
    return p


def public_cidr(rng: random.Random) -> str:
    first = rng.choice([39, 42, 47, 58, 101, 106, 112, 114, 116, 120, 121, 139, 182, 203, 223])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.0/{rng.choice([24, 28, 32])}".replace(".0/32", ".7/32")


def group_rules(rng: random.Random, big: bool, counter: Iterator[int]) -> list[dict[str, Any]]:
    """Mostly private peers and group references; a few public rules; big groups have many public CIDRs."""
    rules = [
        perm("ingress", "TCP", "443/443", "0.0.0.0/0", n=next(counter)),
        perm("ingress", "TCP", "80/80", "0.0.0.0/0", n=next(counter)),
        perm("ingress", "TCP", "22/22", "47.100.12.0/24", n=next(counter)),
    ]
    private, refs = (80, 0) if big else (30, 9)
    for _ in range(private):
        port = rng.choice(PORTS)
        rules.append(
            perm(
                "ingress",
                "TCP",
                f"{port}/{port}",
                f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/24",
                n=next(counter),
            )
        )
    for _ in range(refs):
        port = rng.choice(PORTS)
        rules.append(perm("ingress", "TCP", f"{port}/{port}", f"sg-ref{rng.randrange(5000):05d}", n=next(counter)))
    if big:
        for _ in range(117):
            port = rng.choice(PORTS)
            rules.append(
                perm(
                    "ingress",
                    rng.choice(["TCP", "UDP"]),
                    f"{port}/{port + rng.choice([0, 0, 10])}",
                    public_cidr(rng),
                    rng.choice(["Accept", "Accept", "Drop"]),
                    rng.choice([1, 50, 100]),
                    n=next(counter),
                )
            )
    return rules


def estate(groups: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    counter = iter(range(10**9))
    for i in range(groups):
        big = i % 20 == 0  # 5% of groups hold 200 rules with many public CIDRs
        yield {
            "RequestId": f"R{i}",
            "RegionId": REGIONS[i % 3],
            "SecurityGroupId": f"sg-bench{i:06d}",
            "SecurityGroupName": f"group-{i}",
            "Description": "",
            "VpcId": f"vpc-{i % 50}",
            "InnerAccessPolicy": "Accept",
            "NextToken": "",
            "Permissions": {"Permission": group_rules(rng, big, counter)},
        }


def drift(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    perms = body["Permissions"]["Permission"]
    what = rng.randrange(4)
    if what == 0:
        perms.append(perm("ingress", "TCP", "3306/3306", "0.0.0.0/0", n=10**8 + rng.randrange(10**6)))
    elif what == 1:
        perms.pop(rng.randrange(len(perms)))
    elif what == 2:
        perms[0]["Description"] = "edited"
    else:
        perms.append(perm("egress", "ALL", "-1/-1", "0.0.0.0/0", "Drop", 100, n=10**8 + rng.randrange(10**6)))
    return body


def write_snapshot(out: Path, groups: int) -> int:
    rng = random.Random(7)
    listing: dict[str, list[dict[str, Any]]] = {r: [] for r in REGIONS}
    rules = 0
    for body in estate(groups):
        region = body["RegionId"]
        (out / region).mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.02:
            body = drift(body, rng)
        rules += len(body["Permissions"]["Permission"])
        (out / region / f"{body['SecurityGroupId']}.json").write_text(json.dumps(body, separators=(",", ":")))
        listing[region].append(
            {
                "SecurityGroupId": body["SecurityGroupId"],
                "SecurityGroupType": "normal",
                "VpcId": body["VpcId"],
                "SecurityGroupName": body["SecurityGroupName"],
            }
        )
    for region, items in listing.items():
        for page in range(0, len(items), 100):
            doc = {"RequestId": "L", "RegionId": region, "SecurityGroups": {"SecurityGroup": items[page : page + 100]}}
            (out / region / f"DescribeSecurityGroups-{page // 100 + 1:04d}.json").write_text(json.dumps(doc))
    return rules


def worst_case_group(rng: random.Random) -> Group:
    counter = iter(range(10**6))
    perms = [
        perm(
            rng.choice(["ingress", "egress"]),
            rng.choice(["TCP", "UDP", "ALL"]),
            f"{(p := rng.randrange(1, 60000))}/{p + rng.choice([0, 0, 5, 1000])}",
            public_cidr(rng),
            rng.choice(["Accept", "Drop"]),
            rng.randrange(1, 101),
            n=next(counter),
        )
        for _ in range(1000)
    ]
    builder = SnapshotBuilder()
    builder.add(
        RawResponse(
            "default",
            "DescribeSecurityGroupAttribute",
            {
                "RegionId": "cn-hangzhou",
                "SecurityGroupId": "sg-worst",
                "VpcId": "vpc-1",
                "Permissions": {"Permission": perms},
            },
        )
    )
    return next(iter(builder.finish().groups.values()))


def timed_report(desired: Baseline, snapshot: Path) -> tuple[float, float, float, float, Report, Snapshot]:
    """Load, normalise, assess as `sgwatch report` does: returns load, normalise, analyse, posture times."""
    # One pass over the files, timing JSON apart from normalising.
    load = normalise = 0.0
    builder = SnapshotBuilder()
    files = iter_dir(snapshot)
    while True:
        t = time.perf_counter()
        item = next(files, None)
        load += time.perf_counter() - t
        if item is None:
            break
        t = time.perf_counter()
        if isinstance(item[1], RawResponse):
            builder.add(item[1], item[0])
        normalise += time.perf_counter() - t
    t = time.perf_counter()
    live = builder.finish()
    normalise += time.perf_counter() - t
    now = datetime.now(UTC)
    # The engine as the issue defines it (normalise, diff, exposure, severity), then the
    # posture checks on their own: the same report, posture switched off and on.
    no_posture = CheckSettings(disabled=frozenset(c.id for c in CATALOGUE if c.area == "posture"))
    t = time.perf_counter()
    assess(desired, live, no_posture, now)
    analyse = time.perf_counter() - t
    t = time.perf_counter()
    report = assess(desired, live, CheckSettings(), now)
    posture_time = time.perf_counter() - t - analyse
    return load, normalise, analyse, posture_time, report, live


def with_membership(live: Snapshot, per_group: int = 3, seed: int = 5) -> tuple[Snapshot, int, int]:
    """The live state with interfaces: ~3 per group, in 1 to 3 groups of their region (one of them a
    shared guard in a third of cases), a fifth with a public address. Returns it, the interfaces
    and the distinct group sets."""
    rng = random.Random(seed)
    by_region: dict[tuple[str, str], list[str]] = {}
    for account, region, gid in sorted(live.groups):
        by_region.setdefault((account, region), []).append(gid)
    memberships = {}
    count, sets = 0, set()
    for (account, region), ids in by_region.items():
        guard, pool = ids[0], ids[1:]
        # Sets are few: interfaces of one tier share their groups.
        tiers = [tuple(rng.sample(pool, rng.choice((1, 1, 2)))) for _ in range(max(1, len(ids) // 10))]
        interfaces = []
        for n in range(len(ids) * per_group):
            groups = rng.choice(tiers) + ((guard,) if rng.random() < 0.33 else ())
            public = (f"47.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",) if rng.random() < 0.2 else ()
            private = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",)
            interfaces.append(Interface(f"eni-{region}-{n:07d}", f"i-{n:07d}", "Primary", groups, private, public))
            sets.add(tuple(sorted(set(groups))))
        memberships[(account, region)] = Membership.known(account, region, interfaces)
        count += len(interfaces)
    return replace(live, membership=memberships), count, len(sets)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the snapshot here and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="sgwatch-bench-"))
    try:
        t = time.perf_counter()
        rules = write_snapshot(work / "snapshot", args.groups)
        print(f"estate: {args.groups:,} groups, {rules:,} rules ({time.perf_counter() - t:.1f} s to generate)")

        base_builder = SnapshotBuilder()
        for body in estate(args.groups):
            base_builder.add(RawResponse("default", "DescribeSecurityGroupAttribute", body))
        desired = Baseline(groups=base_builder.finish().groups)
        del base_builder
        print(f"baseline built in memory; RSS so far {rss_mib():,.0f} MiB")

        # The collector is paused, as `sgwatch report` pauses it (sgwatch.bulk).
        with gc_paused(freeze=True):
            load, normalise, analyse, posture_time, report, live = timed_report(desired, work / "snapshot")
        engine_time = normalise + analyse
        t = time.perf_counter()
        out_json = json_render.render(report)
        render_json = time.perf_counter() - t
        t = time.perf_counter()
        markdown.render(report)
        table.render(report)
        render_text = time.perf_counter() - t

        print(f"JSON load (read + parse):   {load:7.2f} s")
        print(
            f"engine:                     {engine_time:7.2f} s  (normalise {normalise:.2f} s, "
            f"diff+exposure+severity {analyse:.2f} s)  ratio engine/load = {engine_time / load:.2f}"
        )
        print(f"posture checks:             {posture_time:7.2f} s")
        print(f"render JSON:                {render_json:7.2f} s  ({len(out_json) / 2**20:,.0f} MiB)")
        print(f"render markdown + table:    {render_text:7.2f} s")
        print(
            f"findings {len(report.findings):,}, exposures {len(report.exposures):,}, posture {len(report.posture):,}"
        )
        print(f"peak RSS:                   {rss_mib():7,.0f} MiB")

        members, interfaces, sets = with_membership(live)
        no_posture = CheckSettings(disabled=frozenset(c.id for c in CATALOGUE if c.area == "posture"))
        with gc_paused(freeze=True):
            t = time.perf_counter()
            assess(desired, members, no_posture, datetime.now(UTC))
            with_members = time.perf_counter() - t
        print(
            f"diff+exposure+severity with membership ({interfaces:,} interfaces, {sets:,} group sets): "
            f"{with_members:.2f} s (without: {analyse:.2f} s; {(with_members / analyse - 1) * 100:+.0f}%)"
        )
        print(f"peak RSS:                   {rss_mib():7,.0f} MiB")

        rng = random.Random(1)
        worst = worst_case_group(rng)
        exposure.answer.cache_clear()
        t = time.perf_counter()
        for direction in ("ingress", "egress"):
            exposure.evaluate(worst, direction)
        print(f"worst-case group (1,000 public rules) evaluated in {time.perf_counter() - t:.3f} s")

        sample = Baseline(groups=dict(list(desired.groups.items())[:2000]))
        texts = baseline_file.render(sample.groups.values(), {})
        yaml_dir = work / "baseline"
        for rel, text in texts.items():
            (yaml_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (yaml_dir / rel).write_text(text)
        t = time.perf_counter()
        with gc_paused():
            loaded = baseline_file.load(yaml_dir)
        n_rules = sum(len(g.rules) for g in loaded.groups.values())
        took = time.perf_counter() - t
        print(
            f"baseline YAML load: {len(loaded.groups):,} groups / {n_rules:,} rules in {took:.2f} s "
            f"({n_rules / took:,.0f} rules/s)"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
