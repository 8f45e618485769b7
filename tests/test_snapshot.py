"""Offline snapshot parsing: pages merged, repeats dropped, rules in content order, prefix lists read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sgwatch import baseline
from sgwatch.errors import InputError
from sgwatch.sources import snapshot
from sgwatch.sources.raw import RawResponse, RawScan
from sgwatch.sources.snapshot import SnapshotBuilder
from sgwatch.sources.snapshot_writer import write_snapshot
from tests.test_cli import sgwatch


def _perm(port: int, description: str, rule_id: str) -> dict[str, Any]:
    return {
        "SecurityGroupRuleId": rule_id,
        "Direction": "ingress",
        "IpProtocol": "TCP",
        "PortRange": f"{port}/{port}",
        "SourceCidrIp": "10.0.0.0/8",
        "Policy": "Accept",
        "Priority": "1",
        "Description": description,
    }


def _page(*perms: dict[str, Any]) -> RawResponse:
    body = {"RegionId": "cn-hangzhou", "SecurityGroupId": "sg-1", "Permissions": {"Permission": list(perms)}}
    return RawResponse("default", "DescribeSecurityGroupAttribute", body)


def test_pages_merge_and_a_repeated_rule_is_kept_once_as_first_read() -> None:
    builder = SnapshotBuilder()
    builder.add(_page(_perm(443, "web", "sgr-443"), _perm(22, "ssh", "sgr-22")))
    builder.add(_page(_perm(22, "ssh again", "sgr-22"), _perm(80, "http", "sgr-80")))
    (group,) = builder.finish().groups.values()
    assert [(r.key.from_port, r.description) for r in group.rules] == [(22, "ssh"), (80, "http"), (443, "web")]


def test_rules_are_in_content_order_whatever_order_the_api_used() -> None:
    ports = [8080, 22, 443, 3306, 80]
    one, other = SnapshotBuilder(), SnapshotBuilder()
    one.add(_page(*(_perm(p, "", f"sgr-{p}") for p in ports)))
    other.add(_page(*(_perm(p, "", f"sgr-{p}") for p in reversed(ports))))
    (a,), (b,) = one.finish().groups.values(), other.finish().groups.values()
    assert a.rules == b.rules and [r.key.from_port for r in a.rules] == sorted(ports)


def _prefix_list(entries: list[Any], region: str | None = "cn-hangzhou") -> dict[str, Any]:
    body: dict[str, Any] = {
        "RequestId": "R",
        "PrefixListId": "pl-office",
        "PrefixListName": "office",
        "AddressFamily": "IPv4",
        "MaxEntries": 10,
        "Entries": {"Entry": entries},
    }
    if region:
        body["RegionId"] = region
    return body


def test_a_prefix_list_is_read_as_canonical_cidrs(tmp_path: Path) -> None:
    (tmp_path / "cn-hangzhou.pl-office.json").write_text(
        json.dumps(_prefix_list([{"Cidr": "47.100.12.7/24", "Description": "hq"}, {"Cidr": "10.0.0.0/8"}]))
    )
    snap = snapshot.load(tmp_path)
    assert snap.prefix_lists == {("default", "cn-hangzhou", "pl-office"): ("10.0.0.0/8", "47.100.12.0/24")}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_prefix_list([{"Cidr": "10.0.0.0/8"}], region=None), "add it to a hand-saved answer"),
        (_prefix_list([{"Cidr": "10.0.0.0/8"}, {"Cidr": "not-a-cidr"}]), "pl-office Entries.Entry[1]"),
        (_prefix_list(["10.0.0.0/8"]), "pl-office Entries.Entry[0]: expected an object"),
    ],
)
def test_a_bad_prefix_list_file_is_one_line_naming_it(tmp_path: Path, body: dict[str, Any], says: str) -> None:
    (tmp_path / "pl.json").write_text(json.dumps(body))
    with pytest.raises(InputError) as caught:
        snapshot.load(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'pl.json'}: ") and says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_prefix_list_that_a_live_scan_could_not_read_in_part_is_left_out() -> None:
    builder = SnapshotBuilder()
    builder.add(RawResponse("default", "DescribePrefixListAttributes", _prefix_list([{"Cidr": "x"}])))
    snap = builder.finish()
    assert snap.prefix_lists == {}
    assert [(e.code, e.region) for e in snap.errors] == [("InvalidResponse", "cn-hangzhou")]


def test_a_port_range_list_is_read_as_port_ranges(tmp_path: Path) -> None:
    body = {
        "RequestId": "R",
        "RegionId": "cn-hangzhou",
        "PortRangeListId": "prl-web",
        "Entries": [{"PortRange": "443/443", "Description": "https"}, {"PortRange": "80/80"}, {"PortRange": "-1/-1"}],
    }
    (tmp_path / "cn-hangzhou.prl-web.json").write_text(json.dumps(body))
    assert snapshot.load(tmp_path).port_lists == {
        ("default", "cn-hangzhou", "prl-web"): ((1, 65535), (80, 80), (443, 443))
    }


def test_a_port_range_list_without_its_id_is_one_line_saying_what_to_add(tmp_path: Path) -> None:
    (tmp_path / "prl.json").write_text(json.dumps({"RegionId": "cn-hangzhou", "Entries": [{"PortRange": "80/80"}]}))
    with pytest.raises(InputError, match=r"prl\.json: PortRangeListId: response has no PortRangeListId"):
        snapshot.load(tmp_path)


# -- a page the snapshot lacks: unreadable, never removed ------------------------------------

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo" / "snapshot"


def _demo_without_a_page(tmp_path: Path, case: str) -> Path:
    """The demo snapshot, less one page: what was on it must not read as removed."""
    snap = tmp_path / "snap"
    shutil.copytree(DEMO, snap)
    if case == "attribute page":  # sg-legacy-db.json promises page 2 (NextToken "page2")
        (snap / "cn-hangzhou" / "sg-legacy-db.2.json").unlink()
        return snap
    listing_file = snap / "cn-hangzhou" / "DescribeSecurityGroups.json"
    listing = json.loads(listing_file.read_text())
    listing["SecurityGroups"]["SecurityGroup"] = [
        g for g in listing["SecurityGroups"]["SecurityGroup"] if g["SecurityGroupId"] != "sg-egress"
    ]
    if case == "listing page":
        listing["NextToken"] = "page2"  # sg-egress would be on page 2, which was not saved
    else:  # "TotalCount": the old paging mode says 5 groups, the pages hold 4
        listing.pop("NextToken")
        listing.update(TotalCount=5, PageNumber=1, PageSize=4)
    listing_file.write_text(json.dumps(listing))
    (snap / "cn-hangzhou" / "sg-egress.json").unlink()
    return snap


@pytest.mark.parametrize(
    ("case", "group", "says"),
    [
        ("attribute page", "sg-legacy-db", "sg-legacy-db.json) has a NextToken but no page follows"),
        ("listing page", None, "DescribeSecurityGroups.json) has a NextToken but no page follows"),
        ("TotalCount", None, "DescribeSecurityGroups.json) hold 4 items of the TotalCount 5"),
    ],
)
def test_a_missing_page_makes_the_report_incomplete_never_a_removal(
    tmp_path: Path, case: str, group: str | None, says: str
) -> None:
    baseline.capture(snapshot.load(DEMO), tmp_path / "baseline")  # in sync with the whole demo
    result = sgwatch(
        "report",
        "--baseline",
        tmp_path / "baseline",
        "--snapshot",
        _demo_without_a_page(tmp_path, case),
        "--format",
        "json",
    )
    assert result.returncode == 3, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["complete"] is False
    assert [f for f in report["findings"] if f["kind"] in ("group_removed", "rule_removed")] == []
    ((error),) = report["errors"]
    assert (error["region"], error["security_group_id"], error["code"]) == ("cn-hangzhou", group, "PageMissing")
    assert says in error["message"]


def test_pages_saved_whole_are_complete() -> None:
    snap = snapshot.load(DEMO)
    assert snap.complete and len(snap.groups[("default", "cn-hangzhou", "sg-legacy-db")].rules) > 1


# -- names that are not identifiers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"RegionId": "../../x"}, "RegionId: '../../x' is not a region id (e.g. cn-hangzhou)"),
        ({"RegionId": "/etc/x"}, "RegionId: '/etc/x' is not a region id (e.g. cn-hangzhou)"),
        ({"RegionId": ["cn-hangzhou"]}, "RegionId: list ['cn-hangzhou'] is not a region id (e.g. cn-hangzhou)"),
        (
            {"SecurityGroupId": "sg-1/../../x"},
            "SecurityGroupId: 'sg-1/../../x' is not a security group id (e.g. sg-bp1fg655nh68xyz9i4bk)",
        ),
    ],
)
def test_a_name_that_is_not_an_identifier_is_one_line_naming_file_and_value(
    tmp_path: Path, body: dict[str, Any], says: str
) -> None:
    attribute = {**_page(_perm(22, "ssh", "sgr-22")).body, **body}
    (tmp_path / "sg.json").write_text(json.dumps(attribute))
    with pytest.raises(InputError) as caught:
        snapshot.load(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'sg.json'}: {says}"
    assert "\n" not in str(caught.value)


def test_a_listing_entry_that_is_not_a_group_id_is_refused(tmp_path: Path) -> None:
    listing = {"RegionId": "cn-hangzhou", "SecurityGroups": {"SecurityGroup": [{"SecurityGroupId": "sg-a\x1b[2J"}]}}
    (tmp_path / "list.json").write_text(json.dumps(listing))
    with pytest.raises(
        InputError, match=r"SecurityGroup\[0\]\.SecurityGroupId: 'sg-a\\x1b\[2J' is not a security group id"
    ):
        snapshot.load(tmp_path)


def test_a_live_answer_is_about_the_region_asked_whatever_its_body_says() -> None:
    builder = SnapshotBuilder()
    page = _page(_perm(22, "ssh", "sgr-22"))
    builder.add(RawResponse(page.account, page.action, {**page.body, "RegionId": "../../x"}, region="cn-hangzhou"))
    snap = builder.finish()
    assert snap.groups == {}
    assert [(e.region, e.code) for e in snap.errors] == [("cn-hangzhou", "InvalidResponse")]
    assert "names region '../../x', not cn-hangzhou" in snap.errors[0].message


@pytest.mark.parametrize(("field", "value"), [("region", "../x"), ("account", ".."), ("SecurityGroupId", "sg-1/../x")])
def test_the_snapshot_writer_refuses_a_name_that_is_not_an_identifier(tmp_path: Path, field: str, value: str) -> None:
    page = _page(_perm(22, "ssh", "sgr-22"))
    good = RawResponse(page.account, page.action, page.body, region="cn-hangzhou")
    bad = RawResponse(
        value if field == "account" else page.account,
        page.action,
        {**page.body, "SecurityGroupId": value} if field == "SecurityGroupId" else page.body,
        region=value if field == "region" else "cn-hangzhou",
    )
    with pytest.raises(InputError, match=r"not saved: .* is not a"):
        write_snapshot(RawScan(responses=[good, bad]), tmp_path / "out")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # not even the good answer: names first
