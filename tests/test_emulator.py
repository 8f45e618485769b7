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

from sgwatch.emulator import AccessKey, ControlError, Emulator, EmulatorControl, Estate
from sgwatch.emulator.estate import LISTING_FIELDS, PERMISSION_FIELDS, PREFIX_LIST_FIELDS, PortRangeList, PrefixList
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


def prefix_list(client: Client, pl_id: str | None, region: str = REGION) -> Any:
    request = ecs_models.DescribePrefixListAttributesRequest(region_id=region, prefix_list_id=pl_id)
    return client.describe_prefix_list_attributes_with_options(request, RuntimeOptions())


def port_range_list(client: Client, prl_id: str | None, region: str = REGION) -> Any:
    request = ecs_models.DescribePortRangeListEntriesRequest(region_id=region, port_range_list_id=prl_id)
    return client.describe_port_range_list_entries_with_options(request, RuntimeOptions())


def wire_bodies(client: Client) -> list[Any]:
    """Record each answer's JSON as it arrived: the SDK's models drop keys they do not know."""
    seen: list[Any] = []
    call_api = client.call_api

    def recording(*args: Any) -> Any:
        result = call_api(*args)
        seen.append(result.get("body"))
        return result

    client.call_api = recording  # type: ignore[method-assign]
    return seen


OFFICE: dict[str, Any] = {
    "PrefixListId": "pl-office0000000000001",
    "PrefixListName": "office",
    "AddressFamily": "IPv4",
    "MaxEntries": 10,
    "Description": "office egress",
    "CreationTime": "2021-02-20T07:11Z",
    "Entries": {
        "Entry": [
            {"Cidr": "192.168.1.0/24", "Description": "hangzhou"},
            {"Cidr": "10.20.0.0/16", "Description": ""},
        ]
    },
}


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


def test_prefix_list_answers_with_the_documented_shape(make_emulator: EmulatorFactory) -> None:
    estate = Estate()
    estate.put_prefix_list("default", REGION, PrefixList.from_body(OFFICE))
    emu = make_emulator(estate=estate)
    response = prefix_list(sdk(emu), OFFICE["PrefixListId"])
    body = response.body.to_map()
    assert set(body) == {"RequestId", *PREFIX_LIST_FIELDS}  # no RegionId, as the real API
    assert body["RequestId"]
    assert {k: v for k, v in body.items() if k != "RequestId"} == OFFICE
    assert [e.cidr for e in response.body.entries.entry] == ["192.168.1.0/24", "10.20.0.0/16"]
    assert response.body.max_entries == 10
    assert emu.ok_calls("DescribePrefixListAttributes") == 1
    assert emu.log[-1].region == REGION


def test_prefix_list_errors(make_emulator: EmulatorFactory) -> None:
    estate = Estate()
    estate.put_prefix_list("default", REGION, PrefixList.from_body(OFFICE))
    emu = make_emulator(estate=estate)
    client = sdk(emu)
    with pytest.raises(ClientException) as unknown:
        prefix_list(client, "pl-doesnotexist")
    assert (unknown.value.code, unknown.value.status_code) == ("InvalidPrefixListId.NotFound", 404)
    assert unknown.value.data["Message"] == "The specified prefix list was not found."
    with pytest.raises(ClientException) as other_region:  # a list lives in one region only
        prefix_list(client, OFFICE["PrefixListId"], region="cn-shanghai")
    assert other_region.value.code == "InvalidPrefixListId.NotFound"
    with pytest.raises(ClientException) as missing:
        prefix_list(client, None)
    assert (missing.value.code, missing.value.status_code) == ("MissingPrefixListId", 400)
    assert emu.results[("DescribePrefixListAttributes", "InvalidPrefixListId.NotFound")] == 2


def test_prefix_list_honours_ram_and_faults(make_emulator: EmulatorFactory) -> None:
    estate = Estate()
    estate.put_prefix_list("default", REGION, PrefixList.from_body(OFFICE))
    keys = {AK_ID: AccessKey(AK_SECRET, actions=frozenset({"DescribeSecurityGroups"}))}
    emu = make_emulator(estate=estate, keys=keys)
    with pytest.raises(ClientException) as denied:
        prefix_list(sdk(emu), OFFICE["PrefixListId"])
    assert (denied.value.code, denied.value.status_code) == ("Forbidden.RAM", 403)
    assert denied.value.access_denied_detail["AuthAction"] == "ecs:DescribePrefixListAttributes"

    emu = make_emulator(estate=estate, throttle_rate=1.0)
    with pytest.raises(ClientException) as throttled:
        prefix_list(sdk(emu), OFFICE["PrefixListId"])
    assert throttled.value.code == "Throttling.User"
    EmulatorControl(emu.url).set_faults(throttle_rate=0.0, malformed_rate=1.0)
    assert prefix_list(sdk(emu), OFFICE["PrefixListId"]).body is None


def test_snapshot_estate_serves_prefix_lists(tmp_path: Any, make_emulator: EmulatorFactory) -> None:
    (tmp_path / "acct").mkdir()
    saved = {**OFFICE, "RegionId": REGION, "RequestId": "r"}  # as sgwatch saves one
    (tmp_path / "acct" / f"{REGION}.{OFFICE['PrefixListId']}.json").write_text(json.dumps(saved))
    top = {**OFFICE, "PrefixListId": "pl-top", "RegionId": "cn-shanghai", "Entries": {"Entry": []}}
    (tmp_path / "cn-shanghai.pl-top.json").write_text(json.dumps(top))
    estate = Estate.from_snapshot(tmp_path)
    stored = estate.prefix_list("acct", REGION, OFFICE["PrefixListId"])
    assert stored is not None and stored.body() == OFFICE
    default = estate.prefix_list("default", "cn-shanghai", "pl-top")
    assert default is not None and default.entries == []
    assert estate.prefix_list_count() == 2

    emu = make_emulator(snapshot=tmp_path, keys={AK_ID: AccessKey(AK_SECRET, account="acct")})
    body = prefix_list(sdk(emu), OFFICE["PrefixListId"]).body.to_map()
    assert "RegionId" not in body and body["Entries"] == OFFICE["Entries"]


def test_snapshot_prefix_list_without_region_is_refused(tmp_path: Any) -> None:
    listing = {"RegionId": REGION, "NextToken": "", "SecurityGroups": {"SecurityGroup": []}}
    (tmp_path / "listing.json").write_text(json.dumps(listing))
    bad = tmp_path / "pl-noregion.json"
    bad.write_text(json.dumps(OFFICE))  # the API's answer verbatim: it has no RegionId
    with pytest.raises(ValueError, match=r"pl-noregion\.json: .*RegionId"):
        Estate.from_snapshot(tmp_path)
    bad.write_text(json.dumps({**OFFICE, "RegionId": REGION, "Entries": {"Entry": "10.0.0.0/8"}}))
    with pytest.raises(ValueError, match=r"pl-noregion\.json: Entries must be"):
        Estate.from_snapshot(tmp_path)


def test_control_api_replaces_and_removes_prefix_lists(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=1, synthetic_regions=1, synthetic_prefix_lists=False)
    control = EmulatorControl(emu.url)
    client = sdk(emu)
    pl_id = OFFICE["PrefixListId"]
    attributes = {k: v for k, v in OFFICE.items() if k != "PrefixListId"}
    assert control.put_prefix_list(REGION, pl_id, attributes) == OFFICE
    assert prefix_list(client, pl_id).body.to_map()["Entries"] == OFFICE["Entries"]

    wider = {"PrefixListName": "office", "Entries": {"Entry": [{"Cidr": "0.0.0.0/0"}]}}
    stored = control.put_prefix_list(REGION, pl_id, wider)
    assert stored["Entries"] == {"Entry": [{"Cidr": "0.0.0.0/0", "Description": ""}]}
    assert stored["MaxEntries"] == 10 and stored["AddressFamily"] == "IPv4"  # a PUT replaces it all
    body = prefix_list(client, pl_id).body.to_map()
    assert body["Entries"]["Entry"] == [{"Cidr": "0.0.0.0/0", "Description": ""}]
    assert body["Description"] == ""
    assert control.prefix_list(REGION, pl_id) == stored

    with pytest.raises(ControlError, match="400"):
        control.put_prefix_list(REGION, pl_id, {"PrefixListId": "pl-other"})
    with pytest.raises(ControlError, match="400"):
        control.put_prefix_list(REGION, pl_id, {"Entries": ["10.0.0.0/8"]})

    control.put_prefix_list(REGION, "pl-elsewhere", {}, account="other")
    with pytest.raises(ClientException):  # another account's list is not this key's
        prefix_list(client, "pl-elsewhere")

    control.remove_prefix_list(REGION, pl_id)
    with pytest.raises(ClientException) as gone:
        prefix_list(client, pl_id)
    assert gone.value.code == "InvalidPrefixListId.NotFound"
    with pytest.raises(ControlError, match="404"):
        control.remove_prefix_list(REGION, pl_id)
    assert control.stats()["prefix_lists"] == 1


def test_synthetic_prefix_lists_leave_groups_alone_and_resolve_every_reference() -> None:
    plain = Estate.synthetic(60, 2, seed=7, prefix_lists=False)
    with_lists = Estate.synthetic(60, 2, seed=7)
    assert plain.prefix_list_count() == 0
    for name, region in plain.regions("default").items():
        other = with_lists.regions("default")[name]
        assert {g: region.groups[g].permissions for g in region.groups} == {
            g: other.groups[g].permissions for g in other.groups
        }
        referenced = {
            p[f"{side}PrefixListId"]
            for g in other.groups.values()
            for p in g.permissions
            for side in ("Source", "Dest")
            if p[f"{side}PrefixListId"]
        }
        assert referenced and set(other.prefix_lists) == referenced
        assert all(1 <= len(pl.entries) <= pl.max_entries for pl in other.prefix_lists.values())
    again = Estate.synthetic(60, 2, seed=7)
    assert [pl.body() for r in again.regions("default").values() for pl in r.prefix_lists.values()] == [
        pl.body() for r in with_lists.regions("default").values() for pl in r.prefix_lists.values()
    ]


WEB_PORTS_ID = "prl-2ze9mxy3hhmu0yx3web1"
WEB_PORTS: list[dict[str, str]] = [
    {"PortRange": "80/80", "Description": "http"},
    {"PortRange": "8000/8999", "Description": ""},
]


def web_ports_estate() -> Estate:
    estate = Estate()
    estate.put_port_range_list(
        "default", REGION, PortRangeList.from_body({"PortRangeListId": WEB_PORTS_ID, "Entries": WEB_PORTS})
    )
    return estate


def test_port_range_list_answers_with_the_documented_shape(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(estate=web_ports_estate())
    client = sdk(emu)
    wire = wire_bodies(client)
    response = port_range_list(client, WEB_PORTS_ID)
    assert set(wire[0]) == {"RequestId", "Entries"}  # neither RegionId nor PortRangeListId, as the real API
    assert wire[0]["Entries"] == WEB_PORTS and wire[0]["RequestId"]
    assert [(e.port_range, e.description) for e in response.body.entries] == [("80/80", "http"), ("8000/8999", "")]
    assert response.body.to_map()["Entries"] == WEB_PORTS
    assert emu.ok_calls("DescribePortRangeListEntries") == 1
    assert emu.log[-1].region == REGION


def test_port_range_list_errors(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(estate=web_ports_estate())
    client = sdk(emu)
    with pytest.raises(ClientException) as unknown:
        port_range_list(client, "prl-doesnotexist")
    assert (unknown.value.code, unknown.value.status_code) == ("InvalidPortRangeListId.NotFound", 404)
    assert unknown.value.data["Message"] == "The specified port range list does not exist."
    with pytest.raises(ClientException) as other_region:  # a list lives in one region only
        port_range_list(client, WEB_PORTS_ID, region="cn-shanghai")
    assert other_region.value.code == "InvalidPortRangeListId.NotFound"
    with pytest.raises(ClientException) as missing:
        port_range_list(client, None)
    assert (missing.value.code, missing.value.status_code) == ("MissingPortRangeListId", 400)
    assert emu.results[("DescribePortRangeListEntries", "InvalidPortRangeListId.NotFound")] == 2


def test_port_range_list_honours_ram_and_faults(make_emulator: EmulatorFactory) -> None:
    # the prefix-list permission is not this one: each list API needs its own grant
    granted = frozenset({"DescribeSecurityGroups", "DescribeSecurityGroupAttribute", "DescribePrefixListAttributes"})
    emu = make_emulator(estate=web_ports_estate(), keys={AK_ID: AccessKey(AK_SECRET, actions=granted)})
    with pytest.raises(ClientException) as denied:
        port_range_list(sdk(emu), WEB_PORTS_ID)
    assert (denied.value.code, denied.value.status_code) == ("Forbidden.RAM", 403)
    assert denied.value.access_denied_detail["AuthAction"] == "ecs:DescribePortRangeListEntries"
    assert emu.results[("DescribePortRangeListEntries", "Forbidden.RAM")] == 1

    emu = make_emulator(estate=web_ports_estate(), throttle_rate=1.0)
    with pytest.raises(ClientException) as throttled:
        port_range_list(sdk(emu), WEB_PORTS_ID)
    assert throttled.value.code == "Throttling.User"
    EmulatorControl(emu.url).set_faults(throttle_rate=0.0, failing_regions=[REGION])
    with pytest.raises(ServerException) as region_down:
        port_range_list(sdk(emu), WEB_PORTS_ID)
    assert region_down.value.code == "ServiceUnavailable"
    EmulatorControl(emu.url).set_faults(failing_regions=[], malformed_rate=1.0)
    assert port_range_list(sdk(emu), WEB_PORTS_ID).body is None
    assert emu.calls["DescribePortRangeListEntries"] == 3


def test_snapshot_estate_serves_port_range_lists(tmp_path: Any, make_emulator: EmulatorFactory) -> None:
    (tmp_path / "acct").mkdir()
    # as sgwatch saves one: the answer plus the RegionId and PortRangeListId it leaves out
    saved = {"RequestId": "r", "Entries": WEB_PORTS, "RegionId": REGION, "PortRangeListId": WEB_PORTS_ID}
    (tmp_path / "acct" / f"{REGION}.{WEB_PORTS_ID}.json").write_text(json.dumps(saved))
    (tmp_path / "acct" / f"{REGION}.{OFFICE['PrefixListId']}.json").write_text(
        json.dumps({**OFFICE, "RegionId": REGION})
    )
    empty = {"RequestId": "r", "Entries": [], "RegionId": "cn-shanghai", "PortRangeListId": "prl-empty"}
    (tmp_path / "cn-shanghai.prl-empty.json").write_text(json.dumps(empty))
    estate = Estate.from_snapshot(tmp_path)
    stored = estate.port_range_list("acct", REGION, WEB_PORTS_ID)
    assert stored is not None and stored.entries == WEB_PORTS
    default = estate.port_range_list("default", "cn-shanghai", "prl-empty")
    assert default is not None and default.entries == []
    assert estate.port_range_list_count() == 2
    assert estate.prefix_list("acct", REGION, OFFICE["PrefixListId"]) is not None  # the other shapes still load

    emu = make_emulator(snapshot=tmp_path, keys={AK_ID: AccessKey(AK_SECRET, account="acct")})
    client = sdk(emu)
    wire = wire_bodies(client)
    assert port_range_list(client, WEB_PORTS_ID).body.to_map()["Entries"] == WEB_PORTS
    assert set(wire[0]) == {"RequestId", "Entries"}


def test_snapshot_port_range_list_without_region_or_id_is_refused(tmp_path: Any) -> None:
    listing = {"RegionId": REGION, "NextToken": "", "SecurityGroups": {"SecurityGroup": []}}
    (tmp_path / "listing.json").write_text(json.dumps(listing))
    bad = tmp_path / "prl-noregion.json"
    bad.write_text(json.dumps({"RequestId": "r", "PortRangeListId": WEB_PORTS_ID, "Entries": WEB_PORTS}))
    with pytest.raises(ValueError, match=r"prl-noregion\.json: DescribePortRangeListEntries .*\"RegionId\""):
        Estate.from_snapshot(tmp_path)
    bad.write_text(json.dumps({"RequestId": "r", "Entries": WEB_PORTS, "RegionId": REGION}))  # the answer verbatim
    with pytest.raises(ValueError, match=r"prl-noregion\.json: .*\"PortRangeListId\""):
        Estate.from_snapshot(tmp_path)
    bad.write_text(json.dumps({"PortRangeListId": WEB_PORTS_ID, "RegionId": REGION, "Entries": ["80/80"]}))
    with pytest.raises(ValueError, match=r"prl-noregion\.json: Entries must be"):
        Estate.from_snapshot(tmp_path)


def test_control_api_replaces_and_removes_port_range_lists(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=5, synthetic_regions=1)
    control = EmulatorControl(emu.url)
    assert control.stats()["port_range_lists"] == 0  # no synthetic rule names one
    client = sdk(emu)
    stored = control.put_port_range_list(REGION, WEB_PORTS_ID, WEB_PORTS)
    assert stored == {"PortRangeListId": WEB_PORTS_ID, "PortRangeListName": "", "Entries": WEB_PORTS}
    assert port_range_list(client, WEB_PORTS_ID).body.to_map()["Entries"] == WEB_PORTS

    wider = {"PortRangeListName": "web", "Entries": [{"PortRange": "1/65535"}]}
    stored = control.put_port_range_list(REGION, WEB_PORTS_ID, wider)
    assert stored["Entries"] == [{"PortRange": "1/65535", "Description": ""}]  # a PUT replaces it all
    assert port_range_list(client, WEB_PORTS_ID).body.to_map()["Entries"] == [
        {"PortRange": "1/65535", "Description": ""}
    ]
    assert control.port_range_list(REGION, WEB_PORTS_ID) == {**stored, "PortRangeListName": "web"} == stored

    with pytest.raises(ControlError, match="400"):
        control.put_port_range_list(REGION, WEB_PORTS_ID, {"PortRangeListId": "prl-other", "Entries": []})
    with pytest.raises(ControlError, match="400"):
        control.put_port_range_list(REGION, WEB_PORTS_ID, {"Entries": {"Entry": [{"PortRange": "80/80"}]}})
    assert control.port_range_list(REGION, WEB_PORTS_ID) == stored  # a refused PUT leaves the list alone

    control.put_port_range_list(REGION, "prl-elsewhere", [], account="other")
    with pytest.raises(ClientException):  # another account's list is not this key's
        port_range_list(client, "prl-elsewhere")

    control.remove_port_range_list(REGION, WEB_PORTS_ID)
    with pytest.raises(ClientException) as gone:
        port_range_list(client, WEB_PORTS_ID)
    assert gone.value.code == "InvalidPortRangeListId.NotFound"
    with pytest.raises(ControlError, match="404"):
        control.remove_port_range_list(REGION, WEB_PORTS_ID)
    with pytest.raises(ControlError, match="404"):
        control.port_range_list(REGION, WEB_PORTS_ID)
    assert control.stats()["port_range_lists"] == 1
