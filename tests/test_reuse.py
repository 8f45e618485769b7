"""Quiet scans reuse what the last scan worked out: the same snapshot and report as without, and never a stale one.

One real scan of a small emulated estate (with membership, so group sets are in play) gives
the cloud's own bodies; each case changes a copy of them as the next scan would see it, then
parses and assesses it once with the caches the last scan left and once from nothing.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgwatch.baseline import capture
from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.memo import Carried, same
from sgwatch.core.model import AcceptedExposure, Baseline, Snapshot
from sgwatch.core.reuse import Reuse
from sgwatch.daemon import Daemon, RunOptions
from sgwatch.emulator import Emulator, Estate
from sgwatch.render.json import render
from sgwatch.sources import live
from sgwatch.sources.parsecache import ParseCache, digest
from sgwatch.sources.raw import RawResponse, RawScan
from sgwatch.sources.snapshot import parse_scan
from tests.livefixtures import AK_ID, AK_SECRET, PROXY_VARS, settings_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = CheckSettings()


@pytest.fixture(scope="module")
def scanned() -> Iterator[RawScan]:
    saved = {name: os.environ.pop(name) for name in PROXY_VARS if name in os.environ}
    emulator = Emulator(Estate.synthetic(48, regions=2, seed=7), keys={AK_ID: AK_SECRET})
    emulator.start()
    try:
        yield live.scan(settings_for(emulator))
    finally:
        emulator.stop()
        os.environ.update(saved)


def _baseline(raw: RawScan) -> Baseline:
    snap = parse_scan(raw)
    groups = dict(snap.groups)
    key = sorted(groups)[0]
    accepted = {key: (AcceptedExposure("ingress", "tcp", 443, 443, (), "web", "team-web"),)}
    return Baseline(groups=groups, accepted=accepted, prefix_lists=dict(snap.prefix_lists))


# -- changes a next scan may see ---------------------------------------------------------------
def _of(raw: RawScan, action: str) -> list[RawResponse]:
    return [r for r in raw.responses if r.action == action]


def _perms(resp: RawResponse) -> list[dict[str, Any]]:
    perms: list[dict[str, Any]] = resp.body["Permissions"]["Permission"]
    return perms


def _attribute(raw: RawScan, rng: random.Random) -> RawResponse:
    return rng.choice(_of(raw, "DescribeSecurityGroupAttribute"))


def open_ssh(raw: RawScan, rng: random.Random) -> None:
    perms = _perms(_attribute(raw, rng))
    opened = copy.deepcopy(perms[0]) if perms else {}
    opened.update(
        Direction="ingress",
        Policy="Accept",
        IpProtocol="TCP",
        PortRange="22/22",
        SourceCidrIp="0.0.0.0/0",
        Priority=1,
        SourceGroupId="",
        SourcePrefixListId="",
        PortRangeListId="",
        DestCidrIp="",
        Ipv6SourceCidrIp="",
        Ipv6DestCidrIp="",
    )
    perms.append(opened)


def add_drop(raw: RawScan, rng: random.Random) -> None:
    """A drop shields every interface of the group: the other groups of its sets are judged again."""
    perms = _perms(_attribute(raw, rng))
    if perms:
        dropped = copy.deepcopy(rng.choice(perms))
        dropped.update(Policy="Drop", Priority=1, Description="drop")
        perms.append(dropped)


def remove_rule(raw: RawScan, rng: random.Random) -> None:
    perms = _perms(_attribute(raw, rng))
    if perms:
        perms.pop(rng.randrange(len(perms)))


def change_port(raw: RawScan, rng: random.Random) -> None:
    perms = _perms(_attribute(raw, rng))
    if perms:
        port = rng.randint(1, 65535)
        rng.choice(perms)["PortRange"] = f"{port}/{port}"


def priority_true(raw: RawScan, rng: random.Random) -> None:
    """``True == 1`` for a dict compare: a body saying ``true`` must not read as one saying ``1``."""
    perms = _perms(_attribute(raw, rng))
    if perms:
        rng.choice(perms)["Priority"] = True if rng.random() < 0.5 else 1.0


def describe(raw: RawScan, rng: random.Random) -> None:
    perms = _perms(_attribute(raw, rng))
    if perms:
        rng.choice(perms)["Description"] = f"edited {rng.random()}"


def inner_policy(raw: RawScan, rng: random.Random) -> None:
    resp = _attribute(raw, rng)
    resp.body["InnerAccessPolicy"] = "Drop" if resp.body.get("InnerAccessPolicy") == "Accept" else "Accept"


def delete_group(raw: RawScan, rng: random.Random) -> None:
    resp = _attribute(raw, rng)
    gid = resp.body["SecurityGroupId"]
    raw.responses.remove(resp)
    for page in _of(raw, "DescribeSecurityGroups"):
        items = page.body["SecurityGroups"]["SecurityGroup"]
        items[:] = [g for g in items if g.get("SecurityGroupId") != gid]
        page.body["TotalCount"] = page.body.get("TotalCount", 0)  # the listing's count is checked page by page


def listing_type(raw: RawScan, rng: random.Random) -> None:
    page = rng.choice(_of(raw, "DescribeSecurityGroups"))
    items = page.body["SecurityGroups"]["SecurityGroup"]
    if items:
        item = rng.choice(items)
        item["SecurityGroupType"] = "enterprise" if item.get("SecurityGroupType") == "normal" else "normal"


def tag_value(raw: RawScan, rng: random.Random) -> None:
    page = rng.choice(_of(raw, "DescribeSecurityGroups"))
    items = page.body["SecurityGroups"]["SecurityGroup"]
    if items:
        rng.choice(items)["Tags"] = {"Tag": [{"TagKey": "env", "TagValue": rng.choice([1, True, "1"])}]}


def move_interface(raw: RawScan, rng: random.Random) -> None:
    """An interface joins another group: the sets of both groups change."""
    pages = [p for p in _of(raw, "DescribeNetworkInterfaces") if p.body["NetworkInterfaceSets"]["NetworkInterfaceSet"]]
    if not pages:
        return
    page = rng.choice(pages)
    eni = rng.choice(page.body["NetworkInterfaceSets"]["NetworkInterfaceSet"])
    groups = [r.body["SecurityGroupId"] for r in _of(raw, "DescribeSecurityGroupAttribute") if r.region == page.region]
    eni["SecurityGroupIds"] = {"SecurityGroupId": [rng.choice(groups)]}


def request_ids(raw: RawScan, rng: random.Random) -> None:
    for resp in raw.responses:
        resp.body["RequestId"] = f"{rng.random()}"


def prefix_entry(raw: RawScan, rng: random.Random) -> None:
    lists = _of(raw, "DescribePrefixListAttributes")
    if lists:
        entries = rng.choice(lists).body["Entries"]["Entry"]
        entries.append({"Cidr": f"{rng.randint(1, 200)}.{rng.randint(0, 255)}.0.0/16", "Description": ""})


CHANGES: list[Callable[[RawScan, random.Random], None]] = [
    open_ssh,
    add_drop,
    remove_rule,
    change_port,
    priority_true,
    describe,
    inner_policy,
    delete_group,
    listing_type,
    tag_value,
    move_interface,
    request_ids,
    prefix_entry,
]


def _changed(raw: RawScan, changes: list[tuple[int, int]]) -> RawScan:
    out = copy.deepcopy(raw)
    for kind, seed in changes:
        CHANGES[kind](out, random.Random(seed))
    return out


def _same_snapshot(a: Snapshot, b: Snapshot) -> None:
    assert a == b
    assert {k: g.rules for k, g in a.groups.items()} == {k: g.rules for k, g in b.groups.items()}


changes_st = st.lists(st.tuples(st.integers(0, len(CHANGES) - 1), st.integers(0, 2**32)), max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=changes_st, second=changes_st)
def test_cached_and_uncached_agree(
    scanned: RawScan, first: list[tuple[int, int]], second: list[tuple[int, int]]
) -> None:
    baseline = _baseline(scanned)
    before, after = _changed(scanned, first), _changed(scanned, first + second)
    cache, reuse = ParseCache(), Reuse()
    assess(baseline, parse_scan(before, cache=cache), SETTINGS, NOW, reuse)
    cached = parse_scan(after, cache=cache)
    fresh = parse_scan(after)
    _same_snapshot(cached, fresh)
    assert render(assess(baseline, cached, SETTINGS, NOW, reuse)) == render(assess(baseline, fresh, SETTINGS, NOW))


def test_an_unchanged_scan_is_served_from_the_caches(scanned: RawScan) -> None:
    cache, reuse = ParseCache(), Reuse()
    baseline = _baseline(scanned)
    first = parse_scan(scanned, cache=cache)
    assess(baseline, first, SETTINGS, NOW, reuse)
    again = _changed(scanned, [(CHANGES.index(request_ids), 1)])
    second = parse_scan(again, cache=cache)
    assert all(second.groups[k] is first.groups[k] for k in first.groups)
    assert all(second.membership[k] is first.membership[k] for k in first.membership)
    assert cache.groups.misses == 0 and cache.rules.misses == 0
    assess(baseline, second, SETTINGS, NOW, reuse)
    assert reuse.groups.hits == len(first.groups) and reuse.groups.misses == 0


def test_a_changed_body_is_not_served_from_the_cache(scanned: RawScan) -> None:
    cache = ParseCache()
    changed = copy.deepcopy(scanned)
    resp = _of(changed, "DescribeSecurityGroupAttribute")[0]
    perm = _perms(resp)[0]
    key = ("default", resp.region, resp.body["SecurityGroupId"])
    perm["Priority"] = 1
    first = parse_scan(changed, cache=cache)
    perm["Priority"] = True  # equal to 1 as a dict compares; not the same answer
    second = parse_scan(changed, cache=cache)
    assert key not in second.groups  # the bad rule makes the group unreadable, as without a cache
    assert [e.security_group_id for e in second.errors] == [key[2]]
    perm["Priority"] = 7
    third = parse_scan(changed, cache=cache)
    assert third.groups[key] != first.groups[key]
    assert third.groups[key] == parse_scan(changed).groups[key]


def test_vanished_groups_leave_the_caches(scanned: RawScan) -> None:
    cache, reuse = ParseCache(), Reuse()
    baseline = _baseline(scanned)
    assess(baseline, parse_scan(scanned, cache=cache), SETTINGS, NOW, reuse)
    full_parse, full_assess = len(cache.groups), len(reuse)
    fewer = _changed(scanned, [(CHANGES.index(delete_group), n) for n in range(6)])
    snap = parse_scan(fewer, cache=cache)
    assess(Baseline(groups=dict(snap.groups)), snap, SETTINGS, NOW, reuse)
    assert len(cache.groups) == len(snap.groups) < full_parse
    assert len(reuse) == len(snap.groups) < full_assess


def test_settings_day_and_baseline_changes_invalidate(scanned: RawScan) -> None:
    cache, reuse = ParseCache(), Reuse()
    baseline = _baseline(scanned)
    snap = parse_scan(scanned, cache=cache)
    assess(baseline, snap, SETTINGS, NOW, reuse)
    stricter = CheckSettings(severities={"new-group": "critical", "rule-added-public": "critical"}, rule_limit=5)
    assert render(assess(baseline, snap, stricter, NOW, reuse)) == render(assess(baseline, snap, stricter, NOW))
    assert reuse.groups.hits == 0
    # the accepted exposure expires between two days: the next day's report is not the last one's
    key = sorted(baseline.accepted)[0]
    expiring = Baseline(
        groups=baseline.groups,
        accepted={key: (AcceptedExposure("ingress", "tcp", 443, 443, (), "web", "team-web", date(2026, 12, 1)),)},
        prefix_lists=baseline.prefix_lists,
    )
    assess(expiring, snap, SETTINGS, NOW, reuse)
    later = NOW.replace(day=2)
    assert render(assess(expiring, snap, SETTINGS, later, reuse)) == render(assess(expiring, snap, SETTINGS, later))
    # a reload: new baseline objects, one group's rules different
    reloaded = copy.deepcopy(baseline)
    changed = sorted(reloaded.groups)[3]
    reloaded.groups[changed] = replace(reloaded.groups[changed], rules=())
    report = assess(reloaded, snap, SETTINGS, NOW, reuse)
    assert render(report) == render(assess(reloaded, snap, SETTINGS, NOW))
    assert any(f.security_group_id == changed[2] for f in report.findings)


def test_carried_keeps_one_pass() -> None:
    carried: Carried[str, int, str] = Carried()
    carried.begin()
    carried.put("a", 1, "A")
    carried.put("b", 1, "B")
    carried.end()
    carried.begin()
    assert carried.get("a", 2) is None  # worked out from another source
    assert carried.get("b", 1) == "B"
    carried.end()
    assert len(carried) == 1  # "a" was not used by the pass: gone
    carried.begin()
    carried.put("c", 1, "C")  # a pass that never ends (an exception) is forgotten
    carried.begin()
    assert carried.get("b", 1) == "B" and carried.get("c", 1) is None
    kept: Carried[str, tuple[int, ...], tuple[int, ...]] = Carried()
    first = (1, 2)
    assert same(kept, "x", first) is first
    assert same(kept, "x", (1, 2)) is first
    assert same(kept, "x", (1, 3)) == (1, 3)


def test_digest_keeps_types_apart_and_ignores_request_ids() -> None:
    body = {"RequestId": "r1", "NextToken": "t1", "Permissions": {"Permission": [{"Priority": 1}]}}
    same_answer = {"RequestId": "r2", "NextToken": "t2", "Permissions": {"Permission": [{"Priority": 1}]}}
    assert digest(body) == digest(same_answer)
    for other in (True, 1.0, "1"):
        assert digest(body) != digest({"Permissions": {"Permission": [{"Priority": other}]}})
    assert digest({"Permissions": lambda: None}) is None  # not a JSON value: never cached


def test_the_daemon_keeps_the_engine_cache_across_scans(tmp_path: Path, scanned: RawScan) -> None:
    cache = ParseCache()
    baseline = tmp_path / "baseline"
    capture(parse_scan(scanned), baseline)
    overrides = {"baseline": str(baseline), "state": str(tmp_path / "state.sqlite"), "listen": "127.0.0.1:0"}
    seen: list[Snapshot] = []

    def scanner(_: object) -> tuple[RawScan, Snapshot]:
        raw = _changed(scanned, [(CHANGES.index(request_ids), len(seen))])
        seen.append(parse_scan(raw, cache=cache))
        return raw, seen[-1]

    daemon = Daemon(RunOptions(config_path=None, overrides=overrides), clock=lambda: NOW, scanner=scanner)
    try:
        daemon.scan()
        assert daemon.reuse.groups.misses == len(seen[0].groups) > 0
        daemon.scan()
        assert daemon.reuse.groups.hits == len(seen[1].groups) and daemon.reuse.groups.misses == 0
        assert daemon.telemetry.last is not None and daemon.telemetry.last_result == "complete"
    finally:
        daemon.state.close()
