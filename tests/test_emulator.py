"""The ECS emulator answers the real SDK as the cloud would: shapes, paging, auth and faults."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from darabonba.runtime import RuntimeOptions

from sgwatch.emulator import AccessKey, Emulator, EmulatorControl, Estate
from sgwatch.emulator.estate import LISTING_FIELDS, PERMISSION_FIELDS
from tests import livefixtures
from tests.livefixtures import AK_ID, AK_SECRET, EmulatorFactory

# the shared fixtures, bound here so pytest finds them (tests/conftest.py is not ours)
make_emulator = livefixtures.make_emulator
no_proxy = livefixtures.no_proxy

REGION = "cn-hangzhou"


def sdk(emulator: Emulator, ak: str = AK_ID, secret: str = AK_SECRET) -> Client:
    host = emulator.url.split("://", 1)[1]
    config = open_api_models.Config(
        access_key_id=ak,
        access_key_secret=secret,
        endpoint=host,
        protocol="http",
        region_id=REGION,
        read_timeout=5000,
        connect_timeout=2000,
    )
    return Client(config)


def list_page(client: Client, token: str | None = None, max_results: int = 100) -> Any:
    request = ecs_models.DescribeSecurityGroupsRequest(region_id=REGION, max_results=max_results, next_token=token)
    return client.describe_security_groups_with_options(request, RuntimeOptions())


def attribute(
    client: Client, gid: str, token: str | None = None, direction: str = "all", max_results: int = 1000
) -> Any:
    request = ecs_models.DescribeSecurityGroupAttributeRequest(
        region_id=REGION, security_group_id=gid, direction=direction, max_results=max_results, next_token=token
    )
    return client.describe_security_group_attribute_with_options(request, RuntimeOptions())


def big_group(emulator: Emulator) -> str:
    region = emulator.estate.region("default", REGION)
    assert region is not None
    return max(region.groups.values(), key=lambda g: len(g.permissions)).group_id


def test_listing_pages_with_the_server_cap_and_full_shapes(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=45, synthetic_regions=1, list_page_cap=7)
    client = sdk(emu)
    ids: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        body = list_page(client, token).body.to_map()
        pages += 1
        entries = body["SecurityGroups"]["SecurityGroup"]
        assert len(entries) <= 7
        assert all(set(LISTING_FIELDS) <= set(e) for e in entries)
        assert "TotalCount" not in body  # token mode, like the real API
        ids += [e["SecurityGroupId"] for e in entries]
        token = body["NextToken"] or None
        if token is None:
            break
    assert pages == 7
    assert sorted(ids) == sorted(emu.estate.region("default", REGION).groups)  # type: ignore[union-attr]
    assert emu.calls["DescribeSecurityGroups"] == 7


def test_attribute_pages_and_direction_filter(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=10, synthetic_regions=1, attribute_page_cap=25)
    client = sdk(emu)
    gid = big_group(emu)
    stored = emu.estate.group("default", REGION, gid).permissions  # type: ignore[union-attr]
    assert len(stored) > 100

    rules: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        body = attribute(client, gid, token).body.to_map()
        assert len(body["Permissions"]["Permission"]) <= 25
        for key in (
            "RequestId",
            "RegionId",
            "SecurityGroupId",
            "SecurityGroupName",
            "Description",
            "VpcId",
            "InnerAccessPolicy",
            "NextToken",
        ):
            assert key in body
        rules += body["Permissions"]["Permission"]
        token = body["NextToken"] or None
        if token is None:
            break
    assert [r["SecurityGroupRuleId"] for r in rules] == [p["SecurityGroupRuleId"] for p in stored]
    assert all(set(PERMISSION_FIELDS) <= set(r) for r in rules)
    assert any(r["SourceGroupId"] == "" for r in rules)  # empty fields arrive as "", not missing

    egress = attribute(client, gid, direction="egress", max_results=1000).body.to_map()["Permissions"]["Permission"]
    assert egress and all(r["Direction"] == "egress" for r in egress)
    assert len(egress) == sum(1 for p in stored if p["Direction"] == "egress")


def test_out_of_range_max_results_and_unknown_group_are_rejected(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=2, synthetic_regions=1)
    client = sdk(emu)
    with pytest.raises(ClientException) as too_small:
        attribute(client, big_group(emu), max_results=5)
    assert too_small.value.code == "InvalidMaxResults.Malformed"
    with pytest.raises(ClientException) as gone:
        attribute(client, "sg-doesnotexist")
    assert (gone.value.code, gone.value.status_code) == ("InvalidSecurityGroupId.NotFound", 404)


@pytest.mark.parametrize(
    ("ak", "secret", "code", "status"),
    [
        (AK_ID, "wrong-secret", "SignatureDoesNotMatch", 400),
        ("LTAIunknown0000000000", AK_SECRET, "InvalidAccessKeyId.NotFound", 404),
    ],
)
def test_signature_is_verified(make_emulator: EmulatorFactory, ak: str, secret: str, code: str, status: int) -> None:
    emu = make_emulator(synthetic_groups=1, synthetic_regions=1)
    with pytest.raises(ClientException) as err:
        list_page(sdk(emu, ak, secret))
    assert (err.value.code, err.value.status_code) == (code, status)
    assert set(err.value.data) >= {"RequestId", "HostId", "Code", "Message", "Recommend"}


def test_ram_denial_names_the_action(make_emulator: EmulatorFactory) -> None:
    keys = {AK_ID: AccessKey(AK_SECRET, actions=frozenset({"DescribeSecurityGroups"}))}
    emu = make_emulator(synthetic_groups=3, synthetic_regions=1, keys=keys)
    client = sdk(emu)
    gid = list_page(client).body.security_groups.security_group[0].security_group_id
    with pytest.raises(ClientException) as err:
        attribute(client, gid)
    assert (err.value.code, err.value.status_code) == ("Forbidden.RAM", 403)
    assert err.value.access_denied_detail["AuthAction"] == "ecs:DescribeSecurityGroupAttribute"


def test_error_body_shape_on_the_wire(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=1, synthetic_regions=1)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"{emu.url}/?RegionId={REGION}", data=b"", method="POST", headers={"x-acs-action": "DescribeSecurityGroups"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(request, timeout=5)
    body = json.loads(err.value.read())
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["Code"] == "MissingAuthorization"


def test_faults_throttle_with_retry_after_and_5xx(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=1, synthetic_regions=1, throttle_rate=1.0, throttle_retry_after_ms=1200)
    client = sdk(emu)
    with pytest.raises(ThrottlingException) as throttled:
        list_page(client)
    assert (throttled.value.code, throttled.value.retry_after) == ("Throttling.User", 1200)
    EmulatorControl(emu.url).set_faults(throttle_rate=0.0, error_5xx_rate=1.0)
    with pytest.raises(ServerException) as server:
        list_page(client)
    assert server.value.status_code == 500
    EmulatorControl(emu.url).set_faults(error_5xx_rate=0.0, failing_regions=[REGION])
    with pytest.raises(ServerException) as region_down:
        list_page(client)
    assert (region_down.value.code, region_down.value.status_code) == ("ServiceUnavailable", 503)


def test_malformed_body_yields_no_body_in_the_sdk(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=2, synthetic_regions=1, malformed_rate=1.0)
    assert list_page(sdk(emu)).body is None


def test_lowercase_values(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=3, synthetic_regions=1, lowercase=True)
    rules = attribute(sdk(emu), big_group(emu)).body.to_map()["Permissions"]["Permission"]
    assert {r["Policy"] for r in rules} <= {"accept", "drop"}
    assert all(r["IpProtocol"] == r["IpProtocol"].lower() for r in rules)
    assert all(isinstance(r["Priority"], int) for r in rules)


def test_control_api_edits_rules_and_reports_stats(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=2, synthetic_regions=1)
    control = EmulatorControl(emu.url)
    client = sdk(emu)
    gid = big_group(emu)
    before = len(attribute(client, gid).body.to_map()["Permissions"]["Permission"])
    rule = control.add_permission(
        REGION,
        gid,
        {
            "Direction": "ingress",
            "IpProtocol": "TCP",
            "PortRange": "22/22",
            "SourceCidrIp": "0.0.0.0/0",
            "Policy": "Accept",
            "Priority": "1",
        },
    )
    assert rule["SecurityGroupRuleId"].startswith("sgr-") and rule["DestCidrIp"] == ""
    after = attribute(client, gid).body.to_map()["Permissions"]["Permission"]
    assert len(after) == before + 1 and after[-1]["SourceCidrIp"] == "0.0.0.0/0"
    control.remove_permission(REGION, gid, rule["SecurityGroupRuleId"])
    assert len(attribute(client, gid).body.to_map()["Permissions"]["Permission"]) == before

    control.add_group(REGION, "sg-new000000000000000001", {"SecurityGroupName": "fresh"})
    listed = [g["SecurityGroupId"] for g in list_page(client).body.to_map()["SecurityGroups"]["SecurityGroup"]]
    assert "sg-new000000000000000001" in listed
    control.remove_group(REGION, "sg-new000000000000000001")

    stats = control.stats()
    assert stats["calls"] == {"DescribeSecurityGroupAttribute": 3, "DescribeSecurityGroups": 1}
    assert stats["results"]["DescribeSecurityGroupAttribute OK"] == 3
    control.reset_stats()
    assert control.stats()["total_calls"] == 0


def test_seeded_estate_and_faults_are_deterministic() -> None:
    a, b = Estate.synthetic(50, 2, seed=7), Estate.synthetic(50, 2, seed=7)
    assert {k: sorted(r.groups) for k, r in a.regions("default").items()} == {
        k: sorted(r.groups) for k, r in b.regions("default").items()
    }
    assert (
        Estate.synthetic(50, 2, seed=8).regions("default")["cn-hangzhou"].groups.keys()
        != a.regions("default")["cn-hangzhou"].groups.keys()
    )
    rolls = [
        [Emulator(a, seed=3)._roll("throttle", "default", "X", {"SecurityGroupId": f"sg-{i}"}, 0.5) for i in range(40)]
        for _ in range(2)
    ]
    assert rolls[0] == rolls[1] and 5 < sum(rolls[0]) < 35


def test_snapshot_estate_merges_attribute_pages(tmp_path: Any) -> None:
    (tmp_path / "acct").mkdir()
    header = {
        "RegionId": REGION,
        "SecurityGroupId": "sg-1",
        "SecurityGroupName": "n",
        "Description": "",
        "VpcId": "vpc-1",
        "InnerAccessPolicy": "Accept",
        "RequestId": "r",
    }
    page1 = {**header, "NextToken": "t", "Permissions": {"Permission": [{"SecurityGroupRuleId": "sgr-1"}]}}
    page2 = {**header, "NextToken": "", "Permissions": {"Permission": [{"SecurityGroupRuleId": "sgr-2"}]}}
    (tmp_path / "acct" / f"{REGION}.sg-1.json").write_text(json.dumps(page1))
    (tmp_path / "acct" / f"{REGION}.sg-1.2.json").write_text(json.dumps(page2))
    listing = {"RegionId": REGION, "NextToken": "", "SecurityGroups": {"SecurityGroup": [{"SecurityGroupId": "sg-2"}]}}
    (tmp_path / "top.json").write_text(json.dumps(listing))
    estate = Estate.from_snapshot(tmp_path)
    group = estate.group("acct", REGION, "sg-1")
    assert group is not None and [p["SecurityGroupRuleId"] for p in group.permissions] == ["sgr-1", "sgr-2"]
    assert estate.group("default", REGION, "sg-2") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serves_stats(tmp_path: Any) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgwatch.emulator", "--synthetic", "12", "--port", str(port), "--latency-ms", "1"],
        stderr=subprocess.PIPE,
    )
    try:
        control = EmulatorControl(f"http://127.0.0.1:{port}")
        for _ in range(100):
            try:
                stats = control.stats()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("emulator CLI did not come up")
        assert stats["groups"] == 12
        assert control.faults()["latency_ms"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
