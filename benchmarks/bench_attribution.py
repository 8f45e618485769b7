"""Attribution: the time to name who made each change, for N rule_added findings and N events.

Each group gets one new rule and one AuthorizeSecurityGroup event of it (every other event is
another group's), kept in a real state file, the way the daemon attributes a scan's findings
before recording them. Prints the state write, the attribution and the per-finding cost.

    python benchmarks/bench_attribution.py [--findings 1000,20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.model import Baseline, Group, Snapshot
from sgwatch.events import attribution
from sgwatch.events.model import ChangeEvent
from sgwatch.events.record import parse_record
from sgwatch.sources.ecs_rules import rule_from_api
from sgwatch.state import State

SCAN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REGION = "cn-hangzhou"


def record(n: int) -> ChangeEvent:
    params = {"SecurityGroupId": f"sg-{n}", "IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}
    parsed = parse_record(
        {
            "eventId": f"ev-{n}",
            "eventName": "AuthorizeSecurityGroup",
            "eventTime": (SCAN - timedelta(seconds=n)).isoformat(),
            "acsRegion": REGION,
            "sourceIpAddress": "203.0.113.7",
            "userAgent": "aliyun-cli",
            "requestParameters": params,
            "userIdentity": {"type": "ram-user", "userName": f"user{n % 7}", "accountId": "1234567890123456"},
        }
    )
    assert isinstance(parsed, ChangeEvent)
    return parsed


def run(findings: int) -> None:
    rule = rule_from_api(
        {"Direction": "ingress", "IpProtocol": "TCP", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}
    )
    base = {g.key: g for g in (Group("acct", REGION, f"sg-{n}", vpc_id="v") for n in range(findings))}
    live = {k: Group(*k, vpc_id="v", rules=(rule,)) for k in base}
    snap = Snapshot(groups=live, listed={("acct", REGION): frozenset(k[2] for k in live)})
    report = assess(Baseline(groups=base), snap, CheckSettings(), SCAN)
    with tempfile.TemporaryDirectory() as tmp:
        state = State(Path(tmp) / "state.sqlite")
        events = [record(n) for n in range(findings)]
        t0 = time.perf_counter()
        state.record_events("acct", events, SCAN)
        stored = time.perf_counter() - t0
        t0 = time.perf_counter()
        attribution.attribute_report(report, state.change_events, state.open_findings())
        took = time.perf_counter() - t0
        state.close()
    named = sum(1 for f in report.findings if f.changed_by is not None)
    assert named == findings, named
    print(
        f"{findings:>7} findings, {findings} events: store {stored:6.2f} s, attribute {took:6.2f} s "
        f"({took / findings * 1e6:6.1f} µs a finding), {named} named"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", default="1000,20000")
    args = parser.parse_args()
    for n in (int(x) for x in args.findings.split(",")):
        run(n)


if __name__ == "__main__":
    main()
