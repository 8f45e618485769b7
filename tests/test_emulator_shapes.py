"""The emulator tells saved responses apart on its own: a fake must not share the parser it tests."""

from __future__ import annotations

import ast
import inspect

import pytest

from sgwatch.emulator import estate as estate_module
from sgwatch.emulator.estate import Estate, response_kind

REGION = "cn-hangzhou"
ATTRIBUTE = {
    "RegionId": REGION,
    "SecurityGroupId": "sg-1",
    "Permissions": {"Permission": [{"Direction": "ingress", "IpProtocol": "TCP", "PortRange": "22/22"}]},
}
LISTING = {"RegionId": REGION, "SecurityGroups": {"SecurityGroup": [{"SecurityGroupId": "sg-1"}]}}
PREFIX_LIST = {"RegionId": REGION, "PrefixListId": "pl-1", "Entries": {"Entry": [{"Cidr": "10.0.0.0/8"}]}}
PORT_LIST = {"RegionId": REGION, "PortRangeListId": "prl-1", "Entries": [{"PortRange": "80/80"}]}


def test_the_estate_module_does_not_import_sgwatch_s_classify() -> None:
    tree = ast.parse(inspect.getsource(estate_module))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "classify" not in imported


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (ATTRIBUTE, "DescribeSecurityGroupAttribute"),
        (LISTING, "DescribeSecurityGroups"),
        ({"Regions": {"Region": []}}, "DescribeRegions"),
        (PREFIX_LIST, "DescribePrefixListAttributes"),
        (PORT_LIST, "DescribePortRangeListEntries"),
        ({"RequestId": "r"}, None),
    ],
)
def test_each_saved_shape_is_recognised(body: dict[str, object], kind: str | None) -> None:
    assert response_kind(body) == kind


def test_each_saved_shape_is_folded_in() -> None:
    estate = Estate()
    for body in (LISTING, ATTRIBUTE, PREFIX_LIST, PORT_LIST):
        estate.add_response("default", dict(body))
    group = estate.group("default", REGION, "sg-1")
    assert group is not None and len(group.permissions) == 1
    assert estate.prefix_list("default", REGION, "pl-1") is not None
    assert estate.port_range_list("default", REGION, "prl-1") is not None
