"""Offline snapshot parsing: pages merged, repeats dropped, rules in content order, prefix lists read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sgwatch.errors import InputError
from sgwatch.sources import snapshot
from sgwatch.sources.raw import RawResponse
from sgwatch.sources.snapshot import SnapshotBuilder


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
