"""Attribution: which ActionTrail event made each drift finding, or None, never a guess."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgwatch import cli, state
from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Finding, Report
from sgwatch.core.model import Baseline, Group, Rule, Snapshot
from sgwatch.core.reach import ExposedInterface
from sgwatch.events import attribution
from sgwatch.events.model import ChangeEvent
from sgwatch.events.record import parse_record
from sgwatch.render import json as json_render
from sgwatch.sources.ecs_rules import rule_from_api
from sgwatch.state import State

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "sgwatch" / "schemas" / "report.schema.json").read_text())
DEMO = ROOT / "config" / "demo"
SCAN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
UID = "1234567890123456"
REGION = "cn-hangzhou"
_ids = itertools.count(1)


def api_rule(**fields: str) -> Rule:
    """A rule as DescribeSecurityGroupAttribute returns it, through the API reader."""
    return rule_from_api({"Direction": "ingress", "Policy": "Accept", "Priority": "1", "NicType": "intranet", **fields})


SSH_WORLD = api_rule(IpProtocol="TCP", PortRange="22/22", SourceCidrIp="0.0.0.0/0", SecurityGroupRuleId="sgr-ssh")


def event(
    name: str,
    params: Mapping[str, Any],
    *,
    user: str = "alice",
    ip: str = "203.0.113.7",
    at: datetime = SCAN - timedelta(minutes=5),
    region: str = REGION,
    agent: str = "aliyun-cli/3.0.200",
    response: Mapping[str, Any] | None = None,
    event_id: str | None = None,
) -> ChangeEvent:
    """A ChangeEvent the way both paths get one: an ActionTrail record through parse_record."""
    record: dict[str, Any] = {
        "eventId": event_id or f"ev-{next(_ids)}",
        "eventName": name,
        "eventRW": "Write",
        "eventTime": at.isoformat().replace("+00:00", "Z"),
        "acsRegion": region,
        "sourceIpAddress": ip,
        "userAgent": agent,
        "requestParameters": {"RegionId": region, **params},
        "userIdentity": {
            "type": "ram-user",
            "userName": user,
            "accountId": UID,
            "accessKeyId": "LTAI5tAbCdEfGhIjKlMn1234",
        },
    }
    if response is not None:
        record["responseElements"] = response
    parsed = parse_record(record, account_uid=UID)
    assert isinstance(parsed, ChangeEvent), parsed
    return parsed


def report(before: tuple[Rule, ...], after: tuple[Rule, ...], *, group: str = "sg-1", region: str = REGION) -> Report:
    base = Group("acct", region, group, vpc_id="vpc-1", rules=before)
    live = Group("acct", region, group, vpc_id="vpc-1", rules=after)
    snap = Snapshot(groups={live.key: live}, listed={("acct", region): frozenset({group})})
    return assess(Baseline(groups={base.key: base}), snap, CheckSettings(), SCAN)


def attributed(rep: Report, *events: ChangeEvent, account: str = "acct") -> list[Finding]:
    attribution.attribute_report(rep, attribution.query_of((account, e) for e in events))
    return rep.findings


def only(rep: Report, *events: ChangeEvent) -> Finding:
    [f] = attributed(rep, *events)
    return f


# --- rule content, every spelling of it --------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        # the older top-level form, in the spellings the API accepts
        {"SecurityGroupId": "sg-1", "IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"},
        {
            "SecurityGroupId": "sg-1",
            "IpProtocol": "TCP",
            "PortRange": "22/22",
            "SourceCidrIp": "0.0.0.0/0",
            "Policy": "accept",
            "Priority": "1",
            "NicType": "intranet",
        },
        # the batch form of AuthorizeSecurityGroupRequestPermissions, among other rules
        {
            "SecurityGroupId": "sg-1",
            "Permissions": [
                {"IpProtocol": "udp", "PortRange": "53/53", "SourceCidrIp": "10.0.0.0/8"},
                {"IpProtocol": "Tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0", "Description": "x"},
            ],
        },
        # as some records carry it: already flattened
        {
            "SecurityGroupId": "sg-1",
            "Permissions.1.IpProtocol": "6",
            "Permissions.1.PortRange": "22/22",
            "Permissions.1.SourceCidrIp": "0.0.0.0/0",
        },
        # CIDR wins over a group the same call names (the API's precedence)
        {
            "SecurityGroupId": "sg-1",
            "IpProtocol": "tcp",
            "PortRange": "22/22",
            "SourceCidrIp": "0.0.0.0/0",
            "SourceGroupId": "sg-other",
        },
    ],
)
def test_an_authorize_of_the_rule_is_its_cause(params: dict[str, Any]) -> None:
    f = only(report((), (SSH_WORLD,)), event("AuthorizeSecurityGroup", params))
    assert f.kind == "rule_added"
    assert f.changed_by is not None
    assert f.changed_by.principal.name == "alice"
    assert f.changed_by.source_ip == "203.0.113.7"
    assert f.changed_by.event_name == "AuthorizeSecurityGroup"
    assert f.changed_by.principal.access_key_id != "LTAI5tAbCdEfGhIjKlMn1234"  # masked
    assert f.changed_by.principal.access_key_id.endswith("1234")


def test_all_ports_is_decided_by_the_normaliser_in_every_spelling() -> None:
    every = api_rule(IpProtocol="TCP", PortRange="-1/-1", SourceCidrIp="0.0.0.0/0")
    for ports in ("1/65535", "-1/-1"):
        params = {"SecurityGroupId": "sg-1", "IpProtocol": "tcp", "PortRange": ports, "SourceCidrIp": "0.0.0.0/0"}
        assert only(report((), (every,)), event("AuthorizeSecurityGroup", params)).changed_by is not None
    all_proto = api_rule(IpProtocol="ALL", PortRange="-1/-1", SourceCidrIp="0.0.0.0/0")
    params = {"SecurityGroupId": "sg-1", "IpProtocol": "-1", "SourceCidrIp": "0.0.0.0/0"}  # no PortRange at all
    assert only(report((), (all_proto,)), event("AuthorizeSecurityGroup", params)).changed_by is not None


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("AuthorizeSecurityGroup", {"IpProtocol": "tcp", "PortRange": "23/23", "SourceCidrIp": "0.0.0.0/0"}),
        ("AuthorizeSecurityGroup", {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/1"}),
        (
            "AuthorizeSecurityGroup",
            {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0", "Policy": "drop"},
        ),
        (
            "AuthorizeSecurityGroup",
            {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0", "Priority": "2"},
        ),
        (
            "AuthorizeSecurityGroup",
            {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0", "NicType": "internet"},
        ),
        # the same content in the other direction is another rule
        ("AuthorizeSecurityGroupEgress", {"IpProtocol": "tcp", "PortRange": "22/22", "DestCidrIp": "0.0.0.0/0"}),
        # a call on the group that is not about rules
        ("ModifySecurityGroupAttribute", {"SecurityGroupName": "x"}),
        ("AuthorizeSecurityGroup", {"IpProtocol": "bogus", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}),
    ],
)
def test_another_rule_is_not_its_cause(name: str, params: dict[str, Any]) -> None:
    assert only(report((), (SSH_WORLD,)), event(name, {"SecurityGroupId": "sg-1", **params})).changed_by is None


def test_egress_is_matched_with_its_own_fields() -> None:
    out = rule_from_api(
        {
            "Direction": "egress",
            "IpProtocol": "TCP",
            "PortRange": "25/25",
            "DestCidrIp": "0.0.0.0/0",
            "Policy": "accept",
        }
    )
    params = {
        "SecurityGroupId": "sg-1",
        "Permissions.1.IpProtocol": "tcp",
        "Permissions.1.PortRange": "25/25",
        "Permissions.1.DestCidrIp": "0.0.0.0/0",
    }
    f = only(report((), (out,)), event("AuthorizeSecurityGroupEgress", params))
    assert f.changed_by is not None and f.changed_by.event_name == "AuthorizeSecurityGroupEgress"


def test_a_revoke_by_content_or_by_rule_id_removed_the_rule() -> None:
    params = {"SecurityGroupId": "sg-1", "IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}
    f = only(report((SSH_WORLD,), ()), event("RevokeSecurityGroup", params, user="bob"))
    assert f.kind == "rule_removed" and f.changed_by is not None and f.changed_by.principal.name == "bob"
    by_id = {"SecurityGroupId": "sg-1", "SecurityGroupRuleId": ["sgr-ssh"]}
    f = only(report((SSH_WORLD,), ()), event("RevokeSecurityGroup", by_id, user="carol"))
    assert f.changed_by is not None and f.changed_by.principal.name == "carol"
    # an Authorize of a removed rule is the opposite of its cause
    assert only(report((SSH_WORLD,), ()), event("AuthorizeSecurityGroup", params)).changed_by is None


def test_a_modify_of_the_rule_id_changed_it() -> None:
    described = SSH_WORLD._replace(description="who opened this")
    params = {"SecurityGroupId": "sg-1", "SecurityGroupRuleId": "sgr-ssh", "Description": "who opened this"}
    f = only(report((SSH_WORLD,), (described,)), event("ModifySecurityGroupRule", params, user="dave"))
    assert f.kind == "rule_changed" and f.changed_by is not None and f.changed_by.principal.name == "dave"
    # the same id, other content (diff_rules pairs them by id)
    wider = api_rule(IpProtocol="TCP", PortRange="22/23", SourceCidrIp="0.0.0.0/0", SecurityGroupRuleId="sgr-ssh")
    params = {"SecurityGroupId": "sg-1", "SecurityGroupRuleId": "sgr-ssh", "PortRange": "22/23"}
    f = only(report((SSH_WORLD,), (wider,)), event("ModifySecurityGroupRule", params, user="erin"))
    assert f.kind == "rule_changed" and f.changed_by is not None and f.changed_by.principal.name == "erin"
    # a Modify of another id is not it
    params["SecurityGroupRuleId"] = "sgr-other"
    assert only(report((SSH_WORLD,), (wider,)), event("ModifySecurityGroupRule", params)).changed_by is None


def test_groups_created_deleted_and_their_policy() -> None:
    live = Group("acct", REGION, "sg-new", vpc_id="vpc-1")
    snap = Snapshot(groups={live.key: live}, listed={("acct", REGION): frozenset({"sg-new"})})
    created = event("CreateSecurityGroup", {"VpcId": "vpc-1"}, response={"SecurityGroupId": "sg-new"})
    rep = assess(Baseline(), snap, CheckSettings(), SCAN)
    [f] = attributed(rep, created)
    assert f.kind == "group_added" and f.changed_by is not None
    gone = Group("acct", REGION, "sg-old", vpc_id="vpc-1")
    snap = Snapshot(listed={("acct", REGION): frozenset()})
    rep = assess(Baseline(groups={gone.key: gone}), snap, CheckSettings(), SCAN)
    [f] = attributed(rep, event("DeleteSecurityGroup", {"SecurityGroupId": "sg-old"}, user="zed"))
    assert f.kind == "group_removed" and f.changed_by is not None and f.changed_by.principal.name == "zed"
    base = Group("acct", REGION, "sg-1", vpc_id="vpc-1", type="enterprise", inner_access_policy="drop")
    live = Group("acct", REGION, "sg-1", vpc_id="vpc-1", type="enterprise", inner_access_policy="accept")
    snap = Snapshot(groups={live.key: live}, listed={("acct", REGION): frozenset({"sg-1"})})
    rep = assess(Baseline(groups={base.key: base}), snap, CheckSettings(), SCAN)
    policy = event("ModifySecurityGroupPolicy", {"SecurityGroupId": "sg-1", "InnerAccessPolicy": "Accept"})
    [f] = attributed(rep, policy)
    assert f.kind == "group_changed" and f.changed_by is not None


# --- time, place, and ambiguity -------------------------------------------------------------------

SSH_PARAMS = {"SecurityGroupId": "sg-1", "IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"at": SCAN + timedelta(minutes=10)},  # after the scan that found it
        {"at": SCAN - timedelta(days=91)},  # older than ActionTrail keeps
        {"region": "cn-shanghai"},
    ],
)
def test_an_event_of_another_time_or_region_is_not_the_cause(kwargs: dict[str, Any]) -> None:
    assert only(report((), (SSH_WORLD,)), event("AuthorizeSecurityGroup", SSH_PARAMS, **kwargs)).changed_by is None


def test_an_event_of_another_group_or_account_is_not_the_cause() -> None:
    other = event("AuthorizeSecurityGroup", {**SSH_PARAMS, "SecurityGroupId": "sg-2"})
    assert only(report((), (SSH_WORLD,)), other).changed_by is None
    [f] = attributed(report((), (SSH_WORLD,)), event("AuthorizeSecurityGroup", SSH_PARAMS), account="other")
    assert f.changed_by is None


def test_no_event_is_null_in_the_json_and_the_schema_holds_both() -> None:
    rep = report((), (SSH_WORLD,))
    attributed(rep)
    doc = json_render.report_dict(rep)
    assert doc["findings"][0]["changed_by"] is None
    jsonschema.validate(doc, SCHEMA)
    attributed(rep, event("AuthorizeSecurityGroup", SSH_PARAMS))
    doc = json_render.report_dict(rep)
    jsonschema.validate(doc, SCHEMA)
    assert doc["findings"][0]["changed_by"]["principal"]["name"] == "alice"
    assert doc["findings"][0]["changed_by"]["event_time"] == "2026-12-01T11:55:00Z"


def test_two_principals_who_could_both_have_made_it_is_null() -> None:
    alice = event("AuthorizeSecurityGroup", SSH_PARAMS, at=SCAN - timedelta(hours=2))
    bob = event("AuthorizeSecurityGroup", SSH_PARAMS, user="bob", at=SCAN - timedelta(hours=1))
    assert only(report((), (SSH_WORLD,)), alice, bob).changed_by is None


def test_one_principal_twice_is_its_latest_call() -> None:
    first = event("AuthorizeSecurityGroup", SSH_PARAMS, at=SCAN - timedelta(hours=2))
    second = event("AuthorizeSecurityGroup", SSH_PARAMS, at=SCAN - timedelta(hours=1))
    f = only(report((), (SSH_WORLD,)), first, second)
    assert f.changed_by is not None and f.changed_by.event_id == second.event_id


def test_only_calls_after_the_last_undo_count() -> None:
    # bob added it, then revoked it; alice added it again: alice, not an ambiguity
    bob = event("AuthorizeSecurityGroup", SSH_PARAMS, user="bob", at=SCAN - timedelta(hours=3))
    undo = event("RevokeSecurityGroup", SSH_PARAMS, user="bob", at=SCAN - timedelta(hours=2))
    alice = event("AuthorizeSecurityGroup", SSH_PARAMS, at=SCAN - timedelta(hours=1))
    f = only(report((), (SSH_WORLD,)), bob, undo, alice)
    assert f.changed_by is not None and f.changed_by.principal.name == "alice"
    # the last word is a revoke: whatever put the rule back left no event, so nobody is named
    assert only(report((), (SSH_WORLD,)), bob, undo).changed_by is None


def test_the_finding_id_does_not_change_with_attribution() -> None:
    plain = report((), (SSH_WORLD,))
    named = report((), (SSH_WORLD,))
    attributed(named, event("AuthorizeSecurityGroup", SSH_PARAMS))
    assert named.findings[0].changed_by is not None and plain.findings[0].changed_by is None
    assert named.findings[0].id == plain.findings[0].id
    assert named.findings[0].to_dict()["id"] == plain.findings[0].to_dict()["id"]


GROUPS = ["sg-1", "sg-2"]
REGIONS = ["cn-hangzhou", "cn-shanghai"]
ACCOUNTS = ["acct", "other"]
PORTS = [22, 80]


@st.composite
def random_event(draw: st.DrawFn) -> tuple[str, ChangeEvent]:
    port = draw(st.sampled_from(PORTS))
    name = draw(st.sampled_from(["AuthorizeSecurityGroup", "RevokeSecurityGroup", "AuthorizeSecurityGroupEgress"]))
    peer = "DestCidrIp" if name.endswith("Egress") else "SourceCidrIp"
    params = {
        "SecurityGroupId": draw(st.sampled_from(GROUPS)),
        "IpProtocol": "tcp",
        "PortRange": f"{port}/{port}",
        peer: "0.0.0.0/0",
    }
    e = event(
        name,
        params,
        user=draw(st.sampled_from(["alice", "bob"])),
        region=draw(st.sampled_from(REGIONS)),
        at=SCAN - timedelta(minutes=draw(st.integers(-30, 600))),
    )
    return draw(st.sampled_from(ACCOUNTS)), e


@settings(max_examples=150, deadline=None)
@given(st.lists(random_event(), max_size=12))
def test_an_attribution_is_always_an_event_of_the_finding_its_group_region_and_account(
    events: list[tuple[str, ChangeEvent]],
) -> None:
    rules = tuple(api_rule(IpProtocol="TCP", PortRange=f"{p}/{p}", SourceCidrIp="0.0.0.0/0") for p in PORTS)
    by_id = {e.event_id: (account, e) for account, e in events}
    for region in REGIONS:
        for group in GROUPS:
            rep = report((), rules, group=group, region=region)
            attribution.attribute_report(rep, attribution.query_of(events))
            for f in rep.findings:
                if f.changed_by is None:
                    continue
                account, e = by_id[f.changed_by.event_id]
                assert (account, e.region) == (f.account, f.region)
                assert f.security_group_id in e.targets.security_group_ids
                assert e.event_name == "AuthorizeSecurityGroup" and e.event_time <= SCAN + attribution.CLOCK_SKEW
                assert f.live is not None and e.request["PortRange"] == f"{f.live.key.from_port}/{f.live.key.to_port}"
                # exactly one principal made this rule since it was last revoked
                touching = sorted(
                    (
                        x
                        for a, x in events
                        if a == account
                        and x.region == region
                        and group in x.targets.security_group_ids
                        and x.event_name != "AuthorizeSecurityGroupEgress"
                        and x.request["PortRange"] == e.request["PortRange"]
                        and x.event_time <= SCAN + attribution.CLOCK_SKEW
                    ),
                    key=lambda x: (x.event_time, x.event_id),
                )
                assert touching[-1].event_name == "AuthorizeSecurityGroup"
                tail = list(itertools.takewhile(lambda x: x.event_name == "AuthorizeSecurityGroup", reversed(touching)))
                assert {x.principal.name for x in tail} == {f.changed_by.principal.name}


# --- exposed interfaces: membership calls ---------------------------------------------------------


def fact(**kw: Any) -> ExposedInterface:
    base: dict[str, Any] = {
        "account": "acct",
        "region": REGION,
        "interface_id": "eni-1",
        "instance_id": "i-1",
        "addresses": ("47.1.1.1",),
        "security_group_ids": ("sg-open",),
        "direction": "ingress",
        "family": "ipv4",
        "protocol": "tcp",
        "from_port": 22,
        "to_port": 22,
        "scope": "any",
        "severity": "high",
    }
    return ExposedInterface(**{**base, **kw})


def test_an_interface_that_joined_an_open_group_names_who_joined_it() -> None:
    join = event("JoinSecurityGroup", {"InstanceId": "i-1", "SecurityGroupId": "sg-open"}, user="ops")
    [f] = attribution.attribute_facts([fact()], attribution.query_of([("acct", join)]), SCAN)
    assert f.changed_by is not None and f.changed_by.principal.name == "ops"
    assert f.id == fact().id and f.to_dict()["changed_by"]["event_name"] == "JoinSecurityGroup"
    eip = event(
        "AssociateEipAddress", {"AllocationId": "eip-1", "InstanceId": "eni-1", "InstanceType": "NetworkInterface"}
    )
    [f] = attribution.attribute_facts([fact()], attribution.query_of([("acct", eip)]), SCAN)
    assert f.changed_by is not None and f.changed_by.event_name == "AssociateEipAddress"


def test_membership_calls_that_do_not_expose_it_name_nobody() -> None:
    cases = [
        event("JoinSecurityGroup", {"InstanceId": "i-1", "SecurityGroupId": "sg-closed"}),  # another group
        event("ModifyInstanceAttribute", {"InstanceId": "i-1", "InstanceName": "web"}),  # a rename
        event("JoinSecurityGroup", {"InstanceId": "i-2", "SecurityGroupId": "sg-open"}),  # another instance
    ]
    for e in cases:
        [f] = attribution.attribute_facts([fact()], attribution.query_of([("acct", e)]), SCAN)
        assert f.changed_by is None, e.event_name
    associate = event("AssociateEipAddress", {"InstanceId": "i-1"}, at=SCAN - timedelta(hours=2))
    dissociate = event("UnassociateEipAddress", {"InstanceId": "i-1"}, at=SCAN - timedelta(hours=1))
    [f] = attribution.attribute_facts([fact()], attribution.query_of([("acct", associate), ("acct", dissociate)]), SCAN)
    assert f.changed_by is None


def test_actiontrail_window_is_bounded_by_the_state_and_by_actiontrail() -> None:
    now = SCAN
    assert attribution.actiontrail_window(now, now) == (now - attribution.WINDOW, now)
    read = now - timedelta(days=3)
    assert attribution.actiontrail_window(read, now) == (now - attribution.WINDOW, read + attribution.CLOCK_SKEW)
    assert attribution.actiontrail_window(now - timedelta(days=91), now) is None


# --- the state keeps events ------------------------------------------------------------------------


def test_state_keeps_events_once_and_answers_by_resource_and_time(tmp_path: Path) -> None:
    db = State(tmp_path / "s.sqlite")
    e1 = event("AuthorizeSecurityGroup", SSH_PARAMS, agent="\x1b[2J evil", at=SCAN - timedelta(hours=1))
    e2 = event("JoinSecurityGroup", {"NetworkInterfaceId": "eni-1", "SecurityGroupId": "sg-9"}, region="cn-shanghai")
    assert db.record_events("acct", [e1, e2], SCAN) == 2
    assert db.record_events("acct", [e1], SCAN) == 0  # delivered twice: kept once
    db.close()
    db = State(tmp_path / "s.sqlite")  # a restart forgets nothing
    got = db.change_events({("acct", REGION, "sg-1")}, SCAN - timedelta(days=1), SCAN)
    assert got == [("acct", e1)]
    assert db.change_events({("acct", REGION, "sg-1")}, SCAN - timedelta(minutes=30), SCAN) == []
    assert db.change_events({("other", REGION, "sg-1")}, SCAN - timedelta(days=1), SCAN) == []
    assert db.change_events(
        {("acct", "cn-shanghai", "sg-9"), ("acct", "cn-shanghai", "eni-1")}, SCAN - timedelta(days=1), SCAN
    ) == [("acct", e2)]
    assert db.change_events(set(), SCAN - timedelta(days=1), SCAN) == []


def test_state_prunes_old_events_and_bounds_their_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = State(tmp_path / "s.sqlite")
    old = event("AuthorizeSecurityGroup", SSH_PARAMS, at=SCAN - timedelta(days=100))
    db.record_events("acct", [old], SCAN - timedelta(days=99))
    db.record_events("acct", [event("AuthorizeSecurityGroup", SSH_PARAMS)], SCAN)
    everything = (SCAN - timedelta(days=400), SCAN + timedelta(days=1))
    assert old.event_id not in {e.event_id for _, e in db.change_events({("acct", REGION, "sg-1")}, *everything)}
    monkeypatch.setattr(state, "EVENTS_MAX_COUNT", 3)
    many = [event("AuthorizeSecurityGroup", SSH_PARAMS, at=SCAN - timedelta(minutes=m)) for m in range(10)]
    db.record_events("acct", many, SCAN)
    kept = db.change_events({("acct", REGION, "sg-1")}, *everything)
    assert sorted(e.event_id for _, e in kept) == sorted(e.event_id for e in many[:3])  # the newest
    rows = db.db.execute("SELECT COUNT(*) FROM change_event_targets").fetchone()[0]
    assert rows == 3  # the index goes with its events


def test_a_full_scan_minutes_after_the_event_is_attributed_from_the_state(tmp_path: Path) -> None:
    db = State(tmp_path / "s.sqlite")
    db.record_events("acct", [event("AuthorizeSecurityGroup", SSH_PARAMS)], SCAN)
    rep = report((), (SSH_WORLD,))
    attribution.attribute_report(rep, db.change_events, db.open_findings())
    assert rep.findings[0].changed_by is not None
    lives = db.record(rep, SCAN)
    assert lives[rep.findings[0].id].data["changed_by"]["principal"]["name"] == "alice"
    # The next scans: the finding stays open; its first scan still bounds the events.
    later = report((), (SSH_WORLD,))
    late = event("AuthorizeSecurityGroup", SSH_PARAMS, user="mallory", at=SCAN + timedelta(minutes=20))
    db.record_events("acct", [late], SCAN + timedelta(minutes=30))
    attribution.attribute_report(later, db.change_events, db.open_findings(), at=SCAN + timedelta(minutes=30))
    assert later.findings[0].changed_by is not None and later.findings[0].changed_by.principal.name == "alice"
    # Its events pruned, it keeps the attribution it had.
    db.db.execute("DELETE FROM change_events")
    again = report((), (SSH_WORLD,))
    attribution.attribute_report(again, db.change_events, db.open_findings(), at=SCAN + timedelta(hours=1))
    assert again.findings[0].changed_by == rep.findings[0].changed_by


# --- report --actiontrail ---------------------------------------------------------------------------


def demo_snapshot(tmp_path: Path, read_at: datetime) -> Path:
    snap = tmp_path / "snapshot"
    shutil.copytree(DEMO / "snapshot", snap)
    for p in snap.rglob("*"):
        os.utime(p, (read_at.timestamp(), read_at.timestamp()))
    return snap


def run_report(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_report_actiontrail_names_who_made_the_demo_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    read_at = now - timedelta(hours=1)
    snapshot = demo_snapshot(tmp_path, read_at)
    calls: list[tuple[str, str, datetime, datetime]] = []
    # sg-bastion's new rule: tcp 22 from 0.0.0.0/0 (see the demo snapshot)
    ssh = {
        "SecurityGroupId": "sg-bastion",
        "Permissions": [
            {
                "IpProtocol": "TCP",
                "PortRange": "22/22",
                "SourceCidrIp": "0.0.0.0/0",
                "Policy": "Accept",
                "Priority": "1",
            }
        ],
    }
    records = {
        "cn-hangzhou": [
            event("AuthorizeSecurityGroup", ssh, user="alice", at=read_at - timedelta(hours=2)),
            # after the snapshot was read: not behind what it shows
            event(
                "RevokeSecurityGroup",
                {"SecurityGroupId": "sg-app", "SecurityGroupRuleId.1": "sgr-app-ssh"},
                at=read_at + timedelta(minutes=30),
            ),
        ]
    }

    def lookup(account: str, region: str, start: datetime, end: datetime) -> list[ChangeEvent]:
        calls.append((account, region, start, end))
        return [e for e in records.get(region, []) if start <= e.event_time <= end]

    monkeypatch.setattr(cli, "actiontrail_lookup", lambda cfg, endpoint: lookup)
    code, out, err = run_report(
        [
            "report",
            "--baseline",
            str(DEMO / "baseline"),
            "--snapshot",
            str(snapshot),
            "--format",
            "json",
            "--actiontrail",
        ],
        capsys,
    )
    assert code == 1, err
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    named = {(f["security_group_id"], f["kind"]): f["changed_by"] for f in doc["findings"] if f["changed_by"]}
    assert list(named) == [("sg-bastion", "rule_added")]
    assert named["sg-bastion", "rule_added"]["principal"]["name"] == "alice"
    assert sorted({(a, r) for a, r, _, _ in calls}) == [("default", "cn-hangzhou"), ("default", "cn-shanghai")]
    for _, _, start, end in calls:
        assert abs((end - (read_at + attribution.CLOCK_SKEW)).total_seconds()) < 1  # the snapshot's time
        assert abs((start - (now - attribution.WINDOW)).total_seconds()) < 60
    # the same findings, the same ids as without --actiontrail
    code, plain, _ = run_report(
        ["report", "--baseline", str(DEMO / "baseline"), "--snapshot", str(snapshot), "--format", "json"], capsys
    )
    assert [f["id"] for f in json.loads(plain)["findings"]] == [f["id"] for f in doc["findings"]]
    assert all(f["changed_by"] is None for f in json.loads(plain)["findings"])


def test_report_actiontrail_lookup_failures_and_old_snapshots_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sgwatch.errors import AuthError

    def refused(account: str, region: str, start: datetime, end: datetime) -> list[ChangeEvent]:
        raise AuthError("Forbidden.RAM: actiontrail:LookupEvents is not allowed")

    monkeypatch.setattr(cli, "actiontrail_lookup", lambda cfg, endpoint: refused)
    snapshot = demo_snapshot(tmp_path, datetime.now(UTC) - timedelta(hours=1))
    args = [
        "report",
        "--baseline",
        str(DEMO / "baseline"),
        "--snapshot",
        str(snapshot),
        "--format",
        "json",
        "--actiontrail",
    ]
    code, out, err = run_report(args, capsys)
    assert code == 1 and json.loads(out)["findings"]
    assert "default cn-hangzhou: Forbidden.RAM" in err and "not attributed" in err
    assert "Traceback" not in err
    old = demo_snapshot(tmp_path / "old", datetime.now(UTC) - timedelta(days=120))
    code, out, err = run_report([*args[:4], str(old), *args[5:]], capsys)
    assert code == 1 and "older than ActionTrail keeps events" in err


def test_the_matching_itself_keeps_to_the_findings_account_region_and_group() -> None:
    # A query that answers more than it was asked (every event it has) changes nothing.
    others = [
        ("acct", event("AuthorizeSecurityGroup", SSH_PARAMS, region="cn-shanghai")),
        ("other", event("AuthorizeSecurityGroup", SSH_PARAMS)),
        ("acct", event("AuthorizeSecurityGroup", {**SSH_PARAMS, "SecurityGroupId": "sg-2"})),
        ("acct", event("AuthorizeSecurityGroup", SSH_PARAMS, at=SCAN + timedelta(hours=1))),
    ]
    rep = report((), (SSH_WORLD,))
    attribution.attribute_report(rep, lambda keys, since, until: others)
    assert rep.findings[0].changed_by is None


def test_a_stored_changed_by_reads_back_and_anything_else_is_nobody() -> None:
    from sgwatch.core.changed_by import ChangedBy

    cb = event("AuthorizeSecurityGroup", SSH_PARAMS).changed_by()
    assert ChangedBy.from_dict(json.loads(json.dumps(cb.to_dict()))) == cb
    for bad in (None, "alice", {}, {"principal": "alice"}, {**cb.to_dict(), "event_time": "yesterday"}):
        assert ChangedBy.from_dict(bad) is None
    assert attribution.who({"principal": "x"}) == "" and attribution.detail({}) == ""
