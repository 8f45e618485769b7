"""The plain-JSON call path (sgwatch.sources.ecs_calls) sends what the SDK's generated methods send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as open_api_models
from darabonba.runtime import RuntimeOptions

from sgwatch.sources import ecs_calls
from sgwatch.sources.raw import Action

# each read call of a scan: the generated method with its request model, and the same as a query
CASES: list[tuple[Action, Callable[[EcsClient, RuntimeOptions], Any], ecs_calls.Query]] = [
    (
        "DescribeRegions",
        lambda c, rt: c.describe_regions_with_options(ecs_models.DescribeRegionsRequest(accept_language="en-US"), rt),
        {"AcceptLanguage": "en-US"},
    ),
    (
        "DescribeSecurityGroups",
        lambda c, rt: c.describe_security_groups_with_options(
            ecs_models.DescribeSecurityGroupsRequest(region_id="cn-hangzhou", max_results=100, next_token="t1"), rt
        ),
        {"RegionId": "cn-hangzhou", "MaxResults": 100, "NextToken": "t1"},
    ),
    (
        "DescribeSecurityGroupAttribute",
        lambda c, rt: c.describe_security_group_attribute_with_options(
            ecs_models.DescribeSecurityGroupAttributeRequest(
                region_id="cn-hangzhou", security_group_id="sg-1", direction="all", max_results=1000
            ),
            rt,
        ),
        {
            "RegionId": "cn-hangzhou",
            "SecurityGroupId": "sg-1",
            "Direction": "all",
            "MaxResults": 1000,
            "NextToken": None,
        },
    ),
    (
        "DescribePrefixListAttributes",
        lambda c, rt: c.describe_prefix_list_attributes_with_options(
            ecs_models.DescribePrefixListAttributesRequest(region_id="cn-hangzhou", prefix_list_id="pl-1"), rt
        ),
        {"RegionId": "cn-hangzhou", "PrefixListId": "pl-1"},
    ),
    (
        "DescribePortRangeListEntries",
        lambda c, rt: c.describe_port_range_list_entries_with_options(
            ecs_models.DescribePortRangeListEntriesRequest(region_id="cn-hangzhou", port_range_list_id="prl-1"), rt
        ),
        {"RegionId": "cn-hangzhou", "PortRangeListId": "prl-1"},
    ),
    (
        "DescribeNetworkInterfaces",
        lambda c, rt: c.describe_network_interfaces_with_options(
            ecs_models.DescribeNetworkInterfacesRequest(region_id="cn-hangzhou", max_results=500, next_token="t2"), rt
        ),
        {"RegionId": "cn-hangzhou", "MaxResults": 500, "NextToken": "t2"},
    ),
    (
        "DescribeInstances",
        lambda c, rt: c.describe_instances_with_options(
            ecs_models.DescribeInstancesRequest(region_id="cn-hangzhou", max_results=100), rt
        ),
        {"RegionId": "cn-hangzhou", "MaxResults": 100, "NextToken": None},
    ),
]


@pytest.mark.parametrize(("action", "generated", "query"), CASES, ids=[c[0] for c in CASES])
def test_the_plain_call_sends_what_the_generated_method_sends(
    action: Action, generated: Callable[[EcsClient, RuntimeOptions], Any], query: ecs_calls.Query
) -> None:
    client = EcsClient(open_api_models.Config(access_key_id="LTAIpin", access_key_secret="x", region_id="cn-hangzhou"))
    sent: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def record(params: Any, request: Any, runtime: RuntimeOptions) -> dict[str, Any]:
        sent.append((params.to_map(), request.to_map()))
        return {"body": {"RequestId": "r"}, "headers": {}, "statusCode": 200}

    client.call_api = record  # type: ignore[method-assign]
    runtime = RuntimeOptions(read_timeout=1000, connect_timeout=1000)
    generated(client, runtime)
    assert ecs_calls.call(client, action, query, runtime) == {"RequestId": "r"}
    assert sent[0] == sent[1]
    assert sent[0][0]["action"] == action


@pytest.mark.parametrize(
    ("action", "body", "problem"),
    [
        ("DescribeSecurityGroupAttribute", {"Permissions": {"Permission": [{"Policy": "Accept"}]}}, None),
        ("DescribeSecurityGroupAttribute", {"Permissions": {}}, None),
        ("DescribeSecurityGroupAttribute", {"Permissions": "all"}, "Permissions is not an object"),
        (
            "DescribeSecurityGroupAttribute",
            {"Permissions": {"Permission": "x"}},
            "Permissions.Permission is not a list",
        ),
        (
            "DescribeSecurityGroups",
            {"SecurityGroups": {"SecurityGroup": [{}, 7]}},
            "SecurityGroups.SecurityGroup holds something that is not an object",
        ),
        ("DescribePortRangeListEntries", {"Entries": [{"PortRange": "22/22"}]}, None),
        ("DescribePortRangeListEntries", {"Entries": ["22/22"]}, "Entries holds something that is not an object"),
        ("DescribeInstances", {"Instances": []}, "Instances is not an object"),
    ],
)
def test_shape_problems_are_named(action: Action, body: dict[str, Any], problem: str | None) -> None:
    assert ecs_calls.shape_problem(action, body) == problem
