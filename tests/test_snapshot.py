"""Offline snapshot parsing: pages merged, repeats dropped, rules in content order."""

from __future__ import annotations

from typing import Any

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
