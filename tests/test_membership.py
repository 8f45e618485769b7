"""Membership: which interfaces sit in which groups, read live through the SDK, kept in snapshots.

Unknown membership is never "no members" and never makes a report incomplete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from darabonba.runtime import RuntimeOptions

from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.membership import NOT_READ, Interface, Membership, MembershipUnknown, group_set, lookup
from sgwatch.core.model import Baseline, Snapshot
from sgwatch.emulator import AccessKey, Emulator, EmulatorControl, Estate
from sgwatch.emulator.members import eni_entry, instance_entry
from sgwatch.errors import InputError
from sgwatch.render import json as json_render
from sgwatch.render import markdown, table
from sgwatch.sources import snapshot as snapshot_source
from sgwatch.sources.live import scan
from sgwatch.sources.raw import RawScan
from sgwatch.sources.snapshot import parse_scan
from sgwatch.sources.snapshot_writer import write_snapshot
from tests import livefixtures
from tests.livefixtures import AK_ID, AK_SECRET, EmulatorFactory, membership_calls, settings_for

make_emulator = livefixtures.make_emulator
no_proxy = livefixtures.no_proxy

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
SCHEMA = json.loads((ROOT / "sgwatch" / "schemas" / "report.schema.json").read_text())
REGION = "cn-hangzhou"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
WITHOUT_MEMBERSHIP = frozenset(
    {
        "DescribeRegions",
        "DescribeSecurityGroups",
        "DescribeSecurityGroupAttribute",
        "DescribePrefixListAttributes",
        "DescribePortRangeListEntries",
        "DescribeInstances",
    }
)


def expected_interfaces(emu: Emulator, region: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """eni id -> (groups, public IPv4), worked out from the emulator's own records."""
    members = emu.estate.regions("default")[region].members
    out = {}
    for eni_id, eni in members.enis.items():
        public = [eni["AssociatedPublicIp"]["PublicIpAddress"]]
        public += [p["AssociatedPublicIp"]["PublicIpAddress"] for p in eni["PrivateIpSets"]["PrivateIpSet"]]
        instance = members.instances.get(eni["InstanceId"])
        if eni["Type"] == "Primary" and instance is not None:
            public += instance["PublicIpAddress"]["IpAddress"] + [instance["EipAddress"]["IpAddress"]]
        out[eni_id] = (tuple(eni["SecurityGroupIds"]["SecurityGroupId"]), tuple(dict.fromkeys(p for p in public if p)))
    return out


def read(snap: Snapshot, region: str = REGION) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    membership = lookup(snap.membership, "default", region)
    assert membership.is_known, membership.unknown
    return {i.id: (i.security_group_ids, i.public_ipv4) for i in membership.interfaces}


def same_state(snap: Snapshot) -> Baseline:
    return Baseline(groups=dict(snap.groups), prefix_lists=dict(snap.prefix_lists), port_lists=dict(snap.port_lists))


def report_of(raw: RawScan, baseline: Baseline | None = None) -> Report:
    snap = parse_scan(raw)
    return assess(baseline if baseline is not None else same_state(snap), snap, CheckSettings(), NOW)


# -- the model ------------------------------------------------------------------------------------
def test_group_sets_index_interfaces_by_the_groups_they_sit_in() -> None:
    a = Interface("eni-a", "i-1", "Primary", ("sg-web", "sg-guard"), ("10.0.0.1",), ("47.1.1.1",))
    b = Interface("eni-b", "i-2", "Primary", ("sg-guard", "sg-web", "sg-web"))
    c = Interface("eni-c", "i-3", "Secondary", ("sg-db",))
    membership = Membership.known("default", REGION, [c, b, a])
    index = membership.index
    assert a.group_set == b.group_set == ("sg-guard", "sg-web")  # order and repeats do not matter to the cloud
    assert index.sets == (("sg-db",), ("sg-guard", "sg-web"))
    assert index.interfaces_in(("sg-guard", "sg-web")) == (a, b)
    assert index.sets_of("sg-guard") == (("sg-guard", "sg-web"),)
    assert index.interfaces_of("sg-web") == (a, b) and index.interfaces_of("sg-db") == (c,)
    assert index.sets_of("sg-lonely") == () and index.interfaces_of("sg-lonely") == ()
    assert membership.index is index  # built once
    assert a.has_public_ipv4 and not b.has_public_ipv4
    assert group_set(["b", "a", "b"]) == ("a", "b")


def test_unknown_membership_is_never_an_empty_one() -> None:
    unknown = lookup({}, "default", REGION)
    assert not unknown.is_known and unknown.unknown == NOT_READ and unknown.interfaces == ()
    assert "ecs:DescribeNetworkInterfaces" in unknown.unknown.permissions
    with pytest.raises(ValueError, match="unknown"):
        _ = unknown.index
    assert Snapshot().membership == {}  # the default everywhere: unknown


# -- live, through the SDK ------------------------------------------------------------------------
def test_live_scan_reads_every_interface_over_several_pages(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=60, synthetic_regions=2, seed=4, interface_page_cap=10, instance_page_cap=10)
    raw = scan(settings_for(emu))
    assert raw.errors == [] and raw.membership_failures == {}
    calls = membership_calls(emu)
    assert calls["DescribeNetworkInterfaces"] > 2 * 2 and calls["DescribeInstances"] > 2 * 2  # really paged
    assert {a: emu.calls[a] for a in calls} == calls  # one whole listing each, no more
    snap = parse_scan(raw)
    for region in ("cn-hangzhou", "cn-shanghai"):
        assert read(snap, region) == expected_interfaces(emu, region)
    interfaces = [i for m in snap.membership.values() for i in m.interfaces]
    public = [i for i in interfaces if i.public_ipv4]
    assert 0.05 < len(public) / len(interfaces) < 0.4  # some with public addresses, most without
    groups_with_members = {g for m in snap.membership.values() for s in m.index.sets for g in s}
    assert 0.4 < len(groups_with_members) / len(snap.groups) < 1  # most groups have members, not all
    report = report_of(raw)
    assert report.complete and [m.is_known for m in report.membership] == [True, True]
    assert report.membership_notes() == []


def test_an_instance_public_ip_is_only_in_describe_instances_and_lands_on_its_primary_eni(
    make_emulator: EmulatorFactory,
) -> None:
    estate = Estate.synthetic(1, [REGION], seed=2, members=False)
    (gid,) = estate.regions("default")[REGION].groups
    emu = make_emulator(estate=estate)
    control = EmulatorControl(emu.url)
    primary = eni_entry("eni-web", instance_id="i-web", eni_type="Primary", groups=[gid], private_ip="10.0.0.5")
    control.put_interface(REGION, "eni-web", primary)
    control.put_instance(REGION, "i-web", instance_entry("i-web", REGION, primary_eni=primary, public_ips=["47.1.2.3"]))
    client = Client(
        open_api_models.Config(
            access_key_id=AK_ID,
            access_key_secret=AK_SECRET,
            endpoint=emu.url.split("://", 1)[1],
            protocol="http",
            region_id=REGION,
        )
    )
    listing = client.describe_network_interfaces_with_options(
        ecs_models.DescribeNetworkInterfacesRequest(region_id=REGION, max_results=500), RuntimeOptions()
    ).body.to_map()
    assert "47.1.2.3" not in json.dumps(listing) and "RegionId" not in listing  # as the reference documents
    (interface,) = lookup(parse_scan(scan(settings_for(emu))).membership, "default", REGION).interfaces
    assert interface == Interface("eni-web", "i-web", "Primary", (gid,), ("10.0.0.5",), ("47.1.2.3",))


def test_control_routes_change_membership_as_the_next_scan_sees_it(make_emulator: EmulatorFactory) -> None:
    estate = Estate.synthetic(2, [REGION], seed=2, members=False)
    guard, app = sorted(estate.regions("default")[REGION].groups)
    emu = make_emulator(estate=estate)
    control = EmulatorControl(emu.url)
    primary = eni_entry("eni-1", instance_id="i-1", eni_type="Primary", groups=[app], private_ip="10.0.0.9")
    control.put_interface(REGION, "eni-1", primary)
    control.put_instance(REGION, "i-1", instance_entry("i-1", REGION, primary_eni=primary))

    def interface() -> Interface:
        (found,) = lookup(parse_scan(scan(settings_for(emu))).membership, "default", REGION).interfaces
        return found

    assert interface().security_group_ids == (app,) and interface().public_ipv4 == ()
    control.join_group(REGION, "eni-1", guard)
    assert interface().group_set == tuple(sorted((app, guard)))
    assert emu.estate.regions("default")[REGION].members.instances["i-1"]["SecurityGroupIds"]["SecurityGroupId"] == [
        app,
        guard,
    ]  # a primary ENI's instance follows
    control.associate_eip(REGION, "eni-1", "39.9.9.9")
    assert interface().public_ipv4 == ("39.9.9.9",)
    control.release_eip(REGION, "eni-1")
    control.leave_group(REGION, "eni-1", app)
    assert interface().security_group_ids == (guard,) and interface().public_ipv4 == ()


def test_a_refused_interface_listing_leaves_membership_unknown_and_the_report_complete(
    make_emulator: EmulatorFactory,
) -> None:
    full = make_emulator(synthetic_groups=20, synthetic_regions=2, seed=6)
    refused = make_emulator(
        synthetic_groups=20, synthetic_regions=2, seed=6, keys={AK_ID: AccessKey(AK_SECRET, actions=WITHOUT_MEMBERSHIP)}
    )
    baseline = same_state(parse_scan(scan(settings_for(full))))
    for group in list(baseline.groups.values())[:3]:  # some drift, so exit codes mean something
        baseline.groups[group.key] = group.__class__(**{**_fields(group), "rules": group.rules[1:]})
    raw = scan(settings_for(refused))
    assert raw.errors == []  # not a scan error
    assert set(raw.membership_failures) == {("default", "cn-hangzhou"), ("default", "cn-shanghai")}
    why = raw.membership_failures[("default", REGION)]
    assert why.code == "Forbidden.RAM" and why.permissions == ("ecs:DescribeNetworkInterfaces",)
    assert "grant ecs:DescribeNetworkInterfaces" in why.message
    assert refused.results[("DescribeNetworkInterfaces", "Forbidden.RAM")] == 2  # once a region: not retried

    known, unknown = report_of(scan(settings_for(full)), baseline), report_of(raw, baseline)
    assert unknown.complete and known.complete
    assert [f.to_dict() for f in unknown.findings] == [f.to_dict() for f in known.findings]  # judged as today
    assert unknown.worst() == known.worst() and unknown.findings
    document = json.loads(json_render.render(unknown))
    jsonschema.validate(document, SCHEMA)
    assert document["complete"] is True
    assert document["membership"][0] == {
        "account": "default",
        "region": "cn-hangzhou",
        "known": False,
        "interfaces": None,
        "code": "Forbidden.RAM",
        "message": why.message,
        "permissions": ["ecs:DescribeNetworkInterfaces"],
    }
    assert [m["known"] for m in json.loads(json_render.render(known))["membership"]] == [True, True]
    terminal = table.render(unknown, width=400)
    assert (
        "membership unknown in default/cn-hangzhou, default/cn-shanghai (Forbidden.RAM): groups judged on paper; "
        "grant ecs:DescribeNetworkInterfaces" in terminal
    )
    assert "membership unknown" not in table.render(known, width=400)
    assert "grant ecs:DescribeNetworkInterfaces" in markdown.render(unknown)


def _fields(group: Any) -> dict[str, Any]:
    return {name: getattr(group, name) for name in group.__dataclass_fields__}


def test_instances_missing_from_describe_instances_make_membership_unknown(make_emulator: EmulatorFactory) -> None:
    # DescribeInstances answers an identity without the permission with an empty list, not a refusal.
    emu = make_emulator(synthetic_groups=10, synthetic_regions=1, seed=3)
    emu.estate.regions("default")[REGION].members.instances.clear()
    raw = scan(settings_for(emu))
    assert raw.errors == [] and raw.membership_failures == {}
    membership = lookup(parse_scan(raw).membership, "default", REGION)
    assert membership.unknown is not None and membership.unknown.code == "InstancesNotListed"
    assert membership.unknown.permissions == ("ecs:DescribeInstances",)


def test_a_classic_network_instance_is_its_own_interface(make_emulator: EmulatorFactory) -> None:
    estate = Estate.synthetic(1, [REGION], seed=2, members=False)
    (gid,) = estate.regions("default")[REGION].groups
    emu = make_emulator(estate=estate)
    EmulatorControl(emu.url).put_instance(
        REGION,
        "i-classic",
        {
            "InstanceId": "i-classic",
            "InstanceNetworkType": "classic",
            "SecurityGroupIds": {"SecurityGroupId": [gid]},
            "InnerIpAddress": {"IpAddress": ["10.1.2.3"]},
            "PublicIpAddress": {"IpAddress": ["47.5.6.7"]},
        },
    )
    (interface,) = lookup(parse_scan(scan(settings_for(emu))).membership, "default", REGION).interfaces
    assert interface == Interface("i-classic", "i-classic", "Classic", (gid,), ("10.1.2.3",), ("47.5.6.7",))


# -- snapshots --------------------------------------------------------------------------------
def test_snapshot_round_trip_keeps_membership(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    emu = make_emulator(synthetic_groups=30, synthetic_regions=2, seed=8, interface_page_cap=10)
    raw = scan(settings_for(emu))
    write_snapshot(raw, tmp_path)
    first = json.loads((tmp_path / "default" / "cn-hangzhou.DescribeNetworkInterfaces.json").read_text())
    assert first["RegionId"] == REGION and first["NextToken"]  # region added; more pages follow
    assert (tmp_path / "default" / "cn-hangzhou.DescribeNetworkInterfaces.2.json").exists()
    assert (tmp_path / "default" / "cn-hangzhou.DescribeInstances.json").exists()
    assert not (tmp_path / "membership-errors.json").exists()
    loaded = snapshot_source.load(tmp_path)
    assert loaded.membership == parse_scan(raw).membership
    assert all(m.is_known and m.interfaces for m in loaded.membership.values())

    replay = make_emulator(snapshot=tmp_path, interface_page_cap=10)  # the emulator serves what was saved
    assert parse_scan(scan(settings_for(replay))).membership == loaded.membership


def test_a_snapshot_keeps_why_membership_is_unknown(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    emu = make_emulator(
        synthetic_groups=6, synthetic_regions=1, keys={AK_ID: AccessKey(AK_SECRET, actions=WITHOUT_MEMBERSHIP)}
    )
    raw = scan(settings_for(emu))
    write_snapshot(raw, tmp_path)
    saved = json.loads((tmp_path / "membership-errors.json").read_text())
    assert [(e["region"], e["code"], e["permissions"]) for e in saved] == [
        (REGION, "Forbidden.RAM", ["ecs:DescribeNetworkInterfaces"])
    ]
    loaded = lookup(snapshot_source.load(tmp_path).membership, "default", REGION)
    assert loaded.unknown == raw.membership_failures[("default", REGION)]
    # a later save of a full read leaves no stale membership-errors file behind
    write_snapshot(RawScan(), tmp_path)
    assert not (tmp_path / "membership-errors.json").exists()


def test_an_old_snapshot_has_unknown_membership_and_a_complete_report(tmp_path: Path) -> None:
    old = tmp_path / "snap"
    shutil.copytree(DEMO / "snapshot", old)
    for saved in [*old.rglob("DescribeNetworkInterfaces*.json"), *old.rglob("DescribeInstances*.json")]:
        saved.unlink()  # as every snapshot saved before sgwatch read membership
    snap = snapshot_source.load(old)
    assert snap.membership == {} and snap.groups == snapshot_source.load(DEMO / "snapshot").groups
    baseline_report = assess(same_state(snap), snap, CheckSettings(), NOW)
    assert baseline_report.complete
    assert [(m.region, m.unknown) for m in baseline_report.membership] == [
        ("cn-hangzhou", NOT_READ),
        ("cn-shanghai", NOT_READ),
    ]


def _copy_with(tmp_path: Path, name: str, body: dict[str, Any]) -> Path:
    snap = tmp_path / "snap"
    shutil.copytree(DEMO / "snapshot", snap)
    (snap / "cn-hangzhou" / name).write_text(json.dumps(body))
    return snap


ENI = eni_entry("eni-x", instance_id="i-x", eni_type="Primary", groups=["sg-web"], private_ip="10.0.0.1")


def test_a_listing_whose_last_page_has_a_next_token_is_unknown(tmp_path: Path) -> None:
    snap = _copy_with(
        tmp_path,
        "DescribeNetworkInterfaces.json",
        {"RegionId": REGION, "NextToken": "more", "NetworkInterfaceSets": {"NetworkInterfaceSet": [ENI]}},
    )
    (snap / "cn-hangzhou" / "DescribeInstances.json").write_text(
        json.dumps({"RegionId": REGION, "Instances": {"Instance": [instance_entry("i-x", REGION, primary_eni=ENI)]}})
    )
    membership = lookup(snapshot_source.load(snap).membership, "default", REGION)
    assert membership.unknown is not None and membership.unknown.code == "ListingIncomplete"
    (snap / "cn-hangzhou" / "DescribeNetworkInterfaces.json").write_text(
        json.dumps({"RegionId": REGION, "NextToken": "", "NetworkInterfaceSets": {"NetworkInterfaceSet": [ENI]}})
    )
    (interface,) = lookup(snapshot_source.load(snap).membership, "default", REGION).interfaces
    assert interface.group_set == ("sg-web",)


def test_one_listing_without_the_other_is_unknown(tmp_path: Path) -> None:
    snap = _copy_with(
        tmp_path,
        "DescribeNetworkInterfaces.json",
        {"RegionId": REGION, "NetworkInterfaceSets": {"NetworkInterfaceSet": []}},
    )
    (snap / "cn-hangzhou" / "DescribeInstances.json").unlink()
    membership = lookup(snapshot_source.load(snap).membership, "default", REGION)
    assert membership.unknown == MembershipUnknown(
        "MembershipNotRead", "no DescribeInstances answer for this region", ("ecs:DescribeInstances",)
    )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"NetworkInterfaceSets": {"NetworkInterfaceSet": []}},
            'response has no RegionId (this API leaves it out: sgwatch adds "RegionId"',
        ),
        (
            {
                "RegionId": REGION,
                "NetworkInterfaceSets": {"NetworkInterfaceSet": [{**ENI, "PrivateIpAddress": "10.0.0.999"}]},
            },
            "NetworkInterfaceSets.NetworkInterfaceSet[0].PrivateIpAddress: '10.0.0.999' is not an IPv4 address",
        ),
        (
            {"RegionId": REGION, "NetworkInterfaceSets": {"NetworkInterfaceSet": [{"Type": "Primary"}]}},
            "NetworkInterfaceSets.NetworkInterfaceSet[0]: has no NetworkInterfaceId",
        ),
    ],
)
def test_a_bad_saved_answer_is_one_line_naming_the_file(tmp_path: Path, body: dict[str, Any], needle: str) -> None:
    snap = _copy_with(tmp_path, "DescribeNetworkInterfaces.json", body)
    with pytest.raises(InputError) as err:
        snapshot_source.load(snap)
    assert needle in str(err.value) and "DescribeNetworkInterfaces.json" in str(err.value)
    result = _cli("report", "--baseline", DEMO / "baseline", "--snapshot", snap)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# -- the CLI, live ------------------------------------------------------------------------------
@pytest.fixture
def refusing_emulator() -> Iterator[Emulator]:
    emu = Emulator(snapshot=DEMO / "snapshot", keys={AK_ID: AccessKey(AK_SECRET, actions=WITHOUT_MEMBERSHIP)})
    emu.start()
    yield emu
    emu.stop()


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGWATCH_") and "proxy" not in k.lower()}
    env.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=AK_ID,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=AK_SECRET,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        SGWATCH_SCAN__REQUESTS_PER_SECOND="0",
    )
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_demo_shows_membership() -> None:
    membership = snapshot_source.load(DEMO / "snapshot").membership
    hangzhou = {i.instance_id: i for i in lookup(membership, "default", REGION).interfaces}
    assert hangzhou["i-web01"].public_ipv4 == ("47.100.20.11",)  # an EIP
    assert hangzhou["i-web02"].public_ipv4 == ("47.100.20.12",)  # its own public IP, from DescribeInstances
    assert hangzhou["i-app01"].public_ipv4 == () and hangzhou["i-app01"].group_set == ("sg-app", "sg-egress")


def test_cli_live_report_without_the_permission_exits_as_today(refusing_emulator: Emulator, tmp_path: Path) -> None:
    live = _cli("report", "--baseline", DEMO / "baseline", "--endpoint", refusing_emulator.url, "--format", "json")
    paper = tmp_path / "snapshot"  # the demo without its membership: every group judged on paper
    shutil.copytree(DEMO / "snapshot", paper)
    for answer in paper.glob("*/Describe[NI]*.json"):
        answer.unlink()
    offline = _cli("report", "--baseline", DEMO / "baseline", "--snapshot", paper, "--format", "json")
    assert live.returncode == offline.returncode == 1, live.stderr  # drift, not incomplete (3)
    document = json.loads(live.stdout)
    assert document["complete"] is True and document["findings"] == json.loads(offline.stdout)["findings"]
    assert {(m["code"], tuple(m["permissions"])) for m in document["membership"]} == {
        ("Forbidden.RAM", ("ecs:DescribeNetworkInterfaces",))
    }
    terminal = _cli("report", "--baseline", DEMO / "baseline", "--endpoint", refusing_emulator.url)
    assert terminal.returncode == 1
    assert "(Forbidden.RAM): groups judged on paper; grant ecs:DescribeNetworkInterfaces" in " ".join(
        terminal.stdout.split()
    )


# -- the emulator's side --------------------------------------------------------------------------
def test_synthetic_membership_leaves_the_seeded_groups_and_rules_alone() -> None:
    plain, with_members = Estate.synthetic(50, 2, seed=7, members=False), Estate.synthetic(50, 2, seed=7)
    for name, region in with_members.regions("default").items():
        other = plain.regions("default")[name]
        assert {g: s.permissions for g, s in region.groups.items()} == {
            g: s.permissions for g, s in other.groups.items()
        }
        assert other.members.count() == (0, 0) and region.members.count()[0] > len(region.groups)
        for eni in region.members.enis.values():  # one VPC and one type per ENI, as the cloud demands
            groups = [region.groups[g] for g in eni["SecurityGroupIds"]["SecurityGroupId"]]
            assert 1 <= len(groups) <= 3 and len({(g.vpc_id, g.listing["SecurityGroupType"]) for g in groups}) == 1
    assert Estate.synthetic(50, 2, seed=7).regions("default")["cn-hangzhou"].members.enis == (
        with_members.regions("default")["cn-hangzhou"].members.enis
    )


def test_the_emulator_pages_as_the_reference_says(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=40, synthetic_regions=1, seed=5)
    client = Client(
        open_api_models.Config(
            access_key_id=AK_ID,
            access_key_secret=AK_SECRET,
            endpoint=emu.url.split("://", 1)[1],
            protocol="http",
            region_id=REGION,
        )
    )

    def page(max_results: int | None, token: str | None = None) -> dict[str, Any]:
        request = ecs_models.DescribeInstancesRequest(region_id=REGION, max_results=max_results, next_token=token)
        return client.describe_instances_with_options(request, RuntimeOptions()).body.to_map()

    total = emu.estate.regions("default")[REGION].members.count()[1]
    assert total > 20
    assert len(page(None)["Instances"]["Instance"]) == 10  # no MaxResults: 10 a page
    assert len(page(3)["Instances"]["Instance"]) == 10  # below 10: 10
    assert len(page(1000)["Instances"]["Instance"]) == min(total, 100)  # above the maximum: the maximum
    first = page(10)
    rest = page(100, first["NextToken"])
    ids = [i["InstanceId"] for i in first["Instances"]["Instance"] + rest["Instances"]["Instance"]]
    assert len(ids) == len(set(ids)) == total and rest["NextToken"] == ""


def test_a_hand_written_membership_errors_file_needs_only_region_and_code(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(DEMO / "snapshot", snap)
    (snap / "membership-errors.json").write_text(json.dumps([{"region": REGION, "code": "Forbidden.RAM"}]))
    membership = lookup(snapshot_source.load(snap).membership, "default", REGION)
    assert membership.unknown == MembershipUnknown("Forbidden.RAM", "", ())
    (snap / "membership-errors.json").write_text(json.dumps([{"code": "Forbidden.RAM"}]))
    with pytest.raises(InputError, match=r"membership-errors\.json: entry 0: a membership read error needs"):
        snapshot_source.load(snap)
