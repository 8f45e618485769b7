"""ActionTrail records to ChangeEvents: what is taken, what is ignored, what is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sgwatch.events.model import ChangeEvent
from sgwatch.events.record import Ignored, RecordError, flatten, parse_record


def record(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventId": "6B8C4D1E-0000-4000-8000-000000000001",
        "eventName": "AuthorizeSecurityGroup",
        "eventRW": "Write",
        "eventTime": "2026-12-01T10:00:00Z",
        "acsRegion": "cn-hangzhou",
        "sourceIpAddress": "203.0.113.7",
        "userAgent": "AlibabaCloud (Linux) aliyun-cli/3.0",
        "userIdentity": {
            "type": "ram-user",
            "userName": "alice",
            "accountId": "1234567890123456",
            "accessKeyId": "LTAI5tAbCdEfGhIjKlMn",
        },
        "requestParameters": {
            "RegionId": "cn-hangzhou",
            "SecurityGroupId": "sg-app",
            "IpProtocol": "tcp",
            "PortRange": "3306/3306",
            "SourceCidrIp": "0.0.0.0/0",
        },
    }
    base.update(over)
    return base


def test_an_authorize_record_names_the_group_the_principal_and_the_rule() -> None:
    event = parse_record(record())
    assert isinstance(event, ChangeEvent)
    assert event.targets.security_group_ids == ("sg-app",)
    assert event.event_time == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert event.account_uid == "1234567890123456"
    assert event.principal.name == "alice"
    assert event.principal.access_key_id == "LTAI****KlMn"  # masked, never the whole id
    assert event.request["PortRange"] == "3306/3306"
    assert event.touches == "group"
    assert event.changed_by().to_dict()["event_time"] == "2026-12-01T10:00:00Z"


def test_the_delivery_account_wins_over_the_identity_account() -> None:
    event = parse_record(record(), account_uid="999")
    assert isinstance(event, ChangeEvent) and event.account_uid == "999"


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"eventRW": "Read", "eventName": "DescribeSecurityGroups"}, "read call"),
        ({"eventName": "CreateBucket"}, "not a call sgwatch watches"),
        ({"errorCode": "InvalidSecurityGroupId.NotFound"}, "failed call"),
        ({"requestParameters": {"RegionId": "cn-hangzhou"}}, "names no resource"),
        (
            {"eventName": "AssociateEipAddress", "requestParameters": {"InstanceId": "ngw-1", "InstanceType": "Nat"}},
            "names no resource",
        ),
    ],
)
def test_records_that_change_nothing_watched_are_ignored(over: dict[str, Any], reason: str) -> None:
    result = parse_record(record(**over))
    assert isinstance(result, Ignored) and reason in result.reason


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"eventId": None}, "no eventId"),
        ({"eventTime": "yesterday"}, "eventTime"),
        ({"acsRegion": "../../etc"}, "acsRegion"),
        ({"requestParameters": {"SecurityGroupId": "sg-x/../../y"}}, "SecurityGroupId"),
        ({"requestParameters": "SecurityGroupId=sg-1"}, "requestParameters"),
        ({"userIdentity": ["alice"]}, "userIdentity"),
        ({"requestParameters": {"SecurityGroupIds": [f"sg-{i}" for i in range(60)]}}, "more than 50"),
    ],
)
def test_malformed_records_are_refused_in_one_line(over: dict[str, Any], says: str) -> None:
    with pytest.raises(RecordError) as caught:
        parse_record(record(**over))
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_membership_and_eip_calls_name_interfaces_and_instances() -> None:
    join = parse_record(
        record(eventName="JoinSecurityGroup", requestParameters={"SecurityGroupId": "sg-a", "InstanceId": "i-1"})
    )
    assert isinstance(join, ChangeEvent) and join.targets.instance_ids == ("i-1",) and join.touches == "membership"
    eip = parse_record(
        record(
            eventName="AssociateEipAddress",
            requestParameters={"AllocationId": "eip-1", "InstanceId": "eni-9", "InstanceType": "NetworkInterface"},
        )
    )
    assert isinstance(eip, ChangeEvent) and eip.targets.network_interface_ids == ("eni-9",)
    modify = parse_record(
        record(
            eventName="ModifyInstanceAttribute",
            requestParameters={"InstanceId": "i-2", "SecurityGroupIds": ["sg-a", "sg-b"]},
        )
    )
    assert isinstance(modify, ChangeEvent) and modify.targets.security_group_ids == ("sg-a", "sg-b")


def test_a_create_call_names_the_group_it_made_in_its_response() -> None:
    event = parse_record(
        record(
            eventName="CreateSecurityGroup",
            requestParameters={"RegionId": "cn-hangzhou", "VpcId": "vpc-1"},
            responseElements={"SecurityGroupId": "sg-new", "RequestId": "r"},
        )
    )
    assert isinstance(event, ChangeEvent) and event.targets.security_group_ids == ("sg-new",)


def test_flatten_numbers_lists_and_bounds_text() -> None:
    assert flatten({"A": ["x", "y"], "B": {"C": 1}, "D": None}) == {"A.1": "x", "A.2": "y", "B.C": "1"}
    assert len(flatten({"A": "x" * 10_000})["A"]) == 512
