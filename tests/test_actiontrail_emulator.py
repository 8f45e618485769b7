"""The emulator's ActionTrail: a record per control-API change, and LookupEvents through the real SDK."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alibabacloud_actiontrail20200706 import models as trail_models
from alibabacloud_actiontrail20200706.client import Client as TrailSdkClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from darabonba.runtime import RuntimeOptions

from sgwatch.emulator import Emulator
from sgwatch.emulator.control import EmulatorControl
from sgwatch.events.model import ChangeEvent
from sgwatch.events.record import parse_record
from tests.livefixtures import AK_ID, AK_SECRET, EmulatorFactory, make_emulator, no_proxy

__all__ = ["make_emulator", "no_proxy"]

R = "cn-hangzhou"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def sdk(emulator: Emulator) -> TrailSdkClient:
    host = emulator.url.split("//", 1)[1]
    return TrailSdkClient(
        open_api_models.Config(
            access_key_id=AK_ID, access_key_secret=AK_SECRET, endpoint=host, protocol="http", region_id=R
        )
    )


def lookup(client: TrailSdkClient, **fields: Any) -> dict[str, Any]:
    conditions = fields.pop("conditions", [])
    request = trail_models.LookupEventsRequest(
        lookup_attribute=[trail_models.LookupEventsRequestLookupAttribute(key=k, value=v) for k, v in conditions],
        **fields,
    )
    body: dict[str, Any] = client.lookup_events_with_options(request, RuntimeOptions()).body.to_map()
    return body


def lookup_error(client: TrailSdkClient, **fields: Any) -> str:
    with pytest.raises(AlibabaCloudException) as caught:
        lookup(client, **fields)
    return str(caught.value.code)


@pytest.fixture
def emulator(make_emulator: EmulatorFactory) -> Emulator:
    emu = make_emulator()
    emu.faults.actiontrail_qps = 0  # these tests are about shapes, not the limit
    return emu


def test_every_control_change_records_the_api_call_it_stands_for(emulator: Emulator) -> None:
    control = EmulatorControl(emulator.url).as_identity(
        "alice", source_ip="203.0.113.9", user_agent="aliyun-cli/3.0", access_key_id="LTAI5tAliceKey000000001"
    )
    control.add_group(R, "sg-web", {"VpcId": "vpc-1", "SecurityGroupName": "web"})
    control.add_group(R, "sg-web", {"VpcId": "vpc-1", "SecurityGroupName": "web-2"})
    rule = control.add_permission(
        R,
        "sg-web",
        {
            "IpProtocol": "TCP",
            "PortRange": "3306/3306",
            "SourceCidrIp": "0.0.0.0/0",
            "Policy": "Accept",
            "Priority": "1",
            "Direction": "ingress",
        },
    )
    egress = control.add_permission(
        R, "sg-web", {"IpProtocol": "ALL", "PortRange": "-1/-1", "DestCidrIp": "0.0.0.0/0", "Direction": "egress"}
    )
    control.remove_permission(R, "sg-web", rule["SecurityGroupRuleId"])
    control.remove_permission(R, "sg-web", egress["SecurityGroupRuleId"])
    control.put_prefix_list(R, "pl-ops", {"Entries": {"Entry": [{"Cidr": "10.0.0.0/8"}]}})
    control.put_prefix_list(R, "pl-ops", {"Entries": {"Entry": [{"Cidr": "192.168.0.0/16"}]}})
    control.remove_prefix_list(R, "pl-ops")
    control.put_port_range_list(R, "prl-db", [{"PortRange": "3306/3306"}])
    control.put_port_range_list(R, "prl-db", [{"PortRange": "5432/5432"}])
    control.remove_port_range_list(R, "prl-db")
    control.put_interface(R, "eni-1", {"SecurityGroupIds": {"SecurityGroupId": ["sg-web"]}})
    control.add_group(R, "sg-db")
    control.join_group(R, "eni-1", "sg-db")
    control.leave_group(R, "eni-1", "sg-db")
    control.put_interface(R, "eni-1", {"SecurityGroupIds": {"SecurityGroupId": ["sg-db"]}})
    control.associate_eip(R, "eni-1", "47.0.0.1")
    control.release_eip(R, "eni-1")
    control.remove_group(R, "sg-web")

    records = control.trail_events()
    assert [r["eventName"] for r in records] == [
        "CreateSecurityGroup",
        "ModifySecurityGroupAttribute",
        "AuthorizeSecurityGroup",
        "AuthorizeSecurityGroupEgress",
        "RevokeSecurityGroup",
        "RevokeSecurityGroupEgress",
        "CreatePrefixList",
        "ModifyPrefixList",
        "DeletePrefixList",
        "CreatePortRangeList",
        "ModifyPortRangeList",
        "DeletePortRangeList",
        "CreateNetworkInterface",
        "CreateSecurityGroup",
        "JoinSecurityGroup",
        "LeaveSecurityGroup",
        "ModifyNetworkInterfaceAttribute",
        "AssociateEipAddress",
        "UnassociateEipAddress",
        "DeleteSecurityGroup",
    ]
    authorize = records[2]
    assert authorize["requestParameters"] | {"RequestId": ""} == {
        "RegionId": R,
        "SecurityGroupId": "sg-web",
        "IpProtocol": "TCP",
        "PortRange": "3306/3306",
        "SourceCidrIp": "0.0.0.0/0",
        "Policy": "Accept",
        "Priority": "1",
        "RequestId": "",
    }
    assert authorize["userIdentity"]["userName"] == "alice"
    assert authorize["userIdentity"]["accessKeyId"] == "LTAI5tAliceKey000000001"
    assert authorize["userIdentity"]["accountId"] == emulator.actiontrail.uid("default")
    assert (authorize["sourceIpAddress"], authorize["userAgent"]) == ("203.0.113.9", "aliyun-cli/3.0")
    assert (authorize["eventRW"], authorize["acsRegion"], authorize["eventType"]) == ("Write", R, "ApiCall")
    assert records[4]["requestParameters"]["SecurityGroupRuleId.1"] == rule["SecurityGroupRuleId"]
    assert records[7]["requestParameters"]["AddEntry.1.Cidr"] == "192.168.0.0/16"
    assert records[7]["requestParameters"]["RemoveEntry.1.Cidr"] == "10.0.0.0/8"
    assert records[14]["requestParameters"]["NetworkInterfaceId"] == "eni-1"
    assert records[16]["requestParameters"]["SecurityGroupId.1"] == "sg-db"
    assert records[17]["serviceName"] == "Vpc"
    assert records[17]["requestParameters"]["InstanceType"] == "NetworkInterface"
    assert len({r["eventId"] for r in records}) == len(records)
    # the shared parser reads each watched one as the change it is, with who made it
    parsed = [parse_record(r) for r in records]
    watched = [p for p in parsed if isinstance(p, ChangeEvent)]
    assert len(watched) == len(records) - 1  # CreateNetworkInterface changes nothing sgwatch watches
    join = next(p for p in watched if p.event_name == "JoinSecurityGroup")
    assert join.targets.security_group_ids == ("sg-db",)
    assert join.targets.network_interface_ids == ("eni-1",)
    assert join.principal.name == "alice" and join.source_ip == "203.0.113.9"
    eip = next(p for p in watched if p.event_name == "AssociateEipAddress")
    assert eip.targets.network_interface_ids == ("eni-1",)


def test_refused_routes_and_reads_record_nothing(emulator: Emulator) -> None:
    control = EmulatorControl(emulator.url)
    control.add_group(R, "sg-a")
    control.permissions(R, "sg-a")
    control.stats()
    with pytest.raises(Exception, match="404"):
        control.remove_permission(R, "sg-a", "sgr-none")
    with pytest.raises(Exception, match="404"):
        control.remove_group(R, "sg-missing")
    assert [r["eventName"] for r in control.trail_events()] == ["CreateSecurityGroup"]
    assert control.trail_events(account="other") == []
    assert control.trail_events()[0]["userIdentity"]["userName"] == "sgwatch-test"  # the default identity


def test_lookup_pages_newest_first_with_tokens_bound_to_the_query(emulator: Emulator) -> None:
    clock = Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    emulator.actiontrail.clock = clock
    control = EmulatorControl(emulator.url)
    for n in range(7):
        clock.now += timedelta(seconds=1 if n != 3 else 0)  # two changes in one second
        control.add_group(R, f"sg-{n}")
    client = sdk(emulator)
    seen: list[tuple[str, str]] = []
    token = None
    pages = 0
    while True:
        body = lookup(client, max_results="3", next_token=token)
        seen += [(r["eventTime"], r["responseElements"]["SecurityGroupId"]) for r in body["Events"]]
        pages += 1
        token = body.get("NextToken")
        if not token:
            break
    assert pages == 3
    assert sorted(g for _, g in seen) == [f"sg-{n}" for n in range(7)], "every event once across the pages"
    assert [t for t, _ in seen] == sorted((t for t, _ in seen), reverse=True)
    times = [r["eventTime"] for r in lookup(client, max_results="50")["Events"]]
    assert times == sorted(times, reverse=True), "BACKWARD (the default) is newest first"
    forward = [r["eventTime"] for r in lookup(client, max_results="50", direction="FORWARD")["Events"]]
    assert forward == sorted(forward)
    first = lookup(client, max_results="2")
    assert lookup_error(client, max_results="2", next_token=first["NextToken"], direction="FORWARD") == (
        "InvalidParameter.NextToken"
    )
    assert lookup_error(client, next_token="not-a-token") == "InvalidParameter.NextToken"


def test_actiontrail_window_conditions_and_bounds(emulator: Emulator) -> None:
    clock = Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    emulator.actiontrail.clock = clock
    control = EmulatorControl(emulator.url)
    control.add_group(R, "sg-a")
    clock.now += timedelta(minutes=5)
    control.as_identity("bob").add_permission(
        R, "sg-a", {"IpProtocol": "TCP", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}
    )
    clock.now += timedelta(minutes=5)
    control.put_interface(R, "eni-9", {"SecurityGroupIds": {"SecurityGroupId": ["sg-a"]}})
    client = sdk(emulator)

    def names(**fields: Any) -> list[str]:
        return [r["eventName"] for r in lookup(client, max_results="50", direction="FORWARD", **fields)["Events"]]

    assert names() == ["CreateSecurityGroup", "AuthorizeSecurityGroup", "CreateNetworkInterface"]
    assert names(start_time="2026-12-01T12:05:00Z", end_time="2026-12-01T12:05:00Z") == ["AuthorizeSecurityGroup"]
    assert names(conditions=[("EventName", "AuthorizeSecurityGroup")]) == ["AuthorizeSecurityGroup"]
    assert names(conditions=[("ResourceName", "sg-a")]) == [
        "CreateSecurityGroup",
        "AuthorizeSecurityGroup",
        "CreateNetworkInterface",
    ]
    assert names(conditions=[("ResourceType", "ACS::ECS::NetworkInterface")]) == ["CreateNetworkInterface"]
    assert names(conditions=[("User", "bob")]) == ["AuthorizeSecurityGroup"]
    assert names(conditions=[("ResourceName", "sg-a"), ("User", "bob")]) == ["AuthorizeSecurityGroup"]  # both hold
    assert names(conditions=[("User", "nobody"), ("User", "bob")]) == ["AuthorizeSecurityGroup"]  # the second wins
    assert names(conditions=[("EventRW", "Read")]) == []
    event_id = control.trail_events()[1]["eventId"]
    assert names(conditions=[("EventId", event_id)]) == ["AuthorizeSecurityGroup"]
    assert lookup_error(client, max_results="51") == "InvalidParameter.MaxResults"
    assert lookup_error(client, max_results="0") == "InvalidParameter.MaxResults"
    assert lookup_error(client, start_time="2026-12-01 12:00") == "InvalidParameter.StartTime"
    assert lookup_error(client, start_time="2026-12-02T00:00:00Z", end_time="2026-12-01T00:00:00Z") == (
        "InvalidParameter.TimeRange"
    )
    assert lookup_error(client, conditions=[("Colour", "red")]) == "InvalidParameter.LookupAttribute"


def test_events_become_visible_after_the_delay(emulator: Emulator) -> None:
    clock = Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    emulator.actiontrail.clock = clock
    EmulatorControl(emulator.url).set_faults(actiontrail_delay_seconds=600)
    EmulatorControl(emulator.url).add_group(R, "sg-late")
    client = sdk(emulator)
    clock.now += timedelta(seconds=599)
    assert lookup(client)["Events"] == []
    clock.now += timedelta(seconds=1)
    assert [r["eventName"] for r in lookup(client)["Events"]] == ["CreateSecurityGroup"]


def test_lookup_is_throttled_past_two_calls_a_second_per_account(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator()
    assert emulator.faults.actiontrail_qps == 2.0
    client = sdk(emulator)
    codes = []
    began = time.monotonic()
    for _ in range(3):
        try:
            lookup(client)
            codes.append("OK")
        except AlibabaCloudException as exc:
            codes.append(str(exc.code))
    if time.monotonic() - began < 1.0:
        assert codes == ["OK", "OK", "Throttling.User"]
    time.sleep(1.05)
    lookup(client)  # the quota refills


def test_ram_denial_names_the_actiontrail_action(make_emulator: EmulatorFactory) -> None:
    from sgwatch.emulator.server import AccessKey

    emulator = make_emulator(keys={AK_ID: AccessKey(AK_SECRET, actions=frozenset({"DescribeRegions"}))})
    with pytest.raises(AlibabaCloudException) as caught:
        lookup(sdk(emulator))
    assert caught.value.code == "Forbidden.RAM"
    assert caught.value.access_denied_detail["AuthAction"] == "actiontrail:LookupEvents"


def test_the_emulator_cli_takes_the_delay() -> None:
    import subprocess
    import sys

    from tests.test_daemon_e2e import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgwatch.emulator", "--port", str(port), "--actiontrail-delay-seconds", "600"],
        stderr=subprocess.PIPE,
    )
    try:
        control = EmulatorControl(f"http://127.0.0.1:{port}")
        for _ in range(200):
            try:
                faults = control.faults()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("emulator CLI did not come up")
        assert faults["actiontrail_delay_seconds"] == 600
        assert faults["actiontrail_qps"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_records_account_is_the_accounts_uid(emulator: Emulator) -> None:
    control = EmulatorControl(emulator.url)
    control.add_group(R, "sg-a", account="123456789012")
    control.add_group(R, "sg-b", account="prod")
    control.add_group(R, "sg-c")
    emulator.actiontrail.uids["default"] = "5550001112223334"
    control.add_group(R, "sg-d")
    numbered, named, default, configured = control.trail_events()
    assert numbered["userIdentity"]["accountId"] == numbered["recipientAccountId"] == "123456789012"
    assert named["recipientAccountId"].isdigit() and len(named["recipientAccountId"]) == 16
    assert named["recipientAccountId"] != default["recipientAccountId"]
    assert configured["recipientAccountId"] == "5550001112223334"
    assert [r["eventName"] for r in control.trail_events(account="prod")] == ["CreateSecurityGroup"]
