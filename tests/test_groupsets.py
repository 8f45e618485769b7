"""Exposure as the cloud decides it: per interface, over every group on it, weighed by public reachability."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sgwatch.core import addresses, exposure
from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import LATENT, Report
from sgwatch.core.groupsets import evaluate_set, variants
from sgwatch.core.membership import Interface, Membership
from sgwatch.core.model import Baseline, Group, Rule, Snapshot
from sgwatch.render import json as json_render
from sgwatch.sources.raw import RawResponse
from sgwatch.sources.snapshot import SnapshotBuilder
from tests.strategies import PORT_LISTS, PREFIX_LISTS, groups
from tests.test_exposure import ADDRS, SPORT_PROBES, _rule, oracle

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "sgwatch" / "schemas" / "report.schema.json").read_text())
NOW = datetime(2026, 12, 1, tzinfo=UTC)
WHERE = ("default", "cn-hangzhou")
APP_OPEN = "accept 100 tcp 3306/3306 0.0.0.0/0"
GUARD_DROP = "drop 1 tcp 3306/3306 0.0.0.0/0"


def group(gid: str, *specs: str, **kw: object) -> Group:
    return Group(*WHERE, gid, vpc_id="vpc-1", rules=tuple(_rule(s) for s in specs), **kw)  # type: ignore[arg-type]


def eni(eni_id: str, *groups_: str, public: str = "", private: str = "10.0.0.5", ipv6: str = "") -> Interface:
    return Interface(
        eni_id,
        "i-" + eni_id,
        "Primary",
        groups_,
        (private,),
        (public,) if public else (),
        (ipv6,) if ipv6 else (),
    )


def run(
    base: list[Group], live: list[Group], interfaces: list[Interface] | None, config: CheckSettings | None = None
) -> Report:
    snap = Snapshot(groups={g.key: g for g in live})
    snap.listed[WHERE] = frozenset(g.id for g in live)
    if interfaces is not None:
        snap.membership[WHERE] = Membership.known(*WHERE, interfaces)
    return assess(Baseline(groups={g.key: g for g in base}), snap, config or CheckSettings(), NOW)


def finding(report: Report, sg: str) -> dict[str, object]:
    (found,) = [f.to_dict() for f in report.findings if f.security_group_id == sg]
    return found


def test_revoking_the_guard_s_drop_is_critical_and_names_the_interfaces_it_opens() -> None:
    app, guard = group("sg-app", APP_OPEN), group("sg-guard", GUARD_DROP)
    interfaces = [eni("eni-1", "sg-app", "sg-guard", public="47.1.1.1"), eni("eni-2", "sg-app", "sg-guard")]
    report = run([app, guard], [app, group("sg-guard")], interfaces)
    f = finding(report, "sg-guard")
    assert (f["kind"], f["severity"], f["checks"]) == ("rule_removed", "critical", ["internet-database-port"])
    assert f["interfaces"] == ["eni-1", "eni-2"] and "reachable via eni-1, eni-2" in str(f["message"])
    (e,) = f["new_exposures"]  # type: ignore[misc]
    assert e["security_group_id"] == "sg-guard" and e["security_group_ids"] == ["sg-app", "sg-guard"]
    assert (e["from_port"], e["reachable"]) == (3306, True)
    assert not [x for x in report.findings if x.security_group_id == "sg-app"]  # sg-app did not change


def test_with_the_guard_in_place_posture_is_quiet_unless_a_member_lacks_the_guard() -> None:
    app, guard = group("sg-app", APP_OPEN), group("sg-guard", GUARD_DROP)
    guarded = [eni("eni-1", "sg-app", "sg-guard", public="47.1.1.1")]
    report = run([app, guard], [app, guard], guarded)
    assert not report.findings and not report.posture and not report.exposures
    unguarded = [*guarded, eni("eni-2", "sg-app", public="47.1.1.2")]
    report = run([app, guard], [app, guard], unguarded)
    (p,) = report.posture
    assert (p.check, p.severity, p.security_group_id) == ("posture-internet-database-port", "critical", "sg-app")
    assert "reachable via eni-2" in p.message
    (e,) = report.exposures
    assert (e.security_group_ids, e.interfaces, e.reachable) == (("sg-app",), ("eni-2",), True)


def test_an_instance_in_an_open_group_is_shown_reachable_with_its_interface() -> None:
    web = group("sg-web", "accept 1 tcp 443/443 0.0.0.0/0")
    report = run([web], [web], [eni("eni-9", "sg-web", public="47.1.1.9")])
    (e,) = report.exposures
    assert e.to_dict()["interfaces"] == ["eni-9"] and e.to_dict()["reachable"] is True


def test_a_new_exposure_no_member_can_reach_is_at_most_medium_and_says_why() -> None:
    db = group("sg-db")
    report = run([db], [group("sg-db", APP_OPEN)], [eni("eni-1", "sg-db")])
    f = finding(report, "sg-db")
    assert (f["severity"], f["checks"]) == ("medium", ["internet-database-port"])
    assert LATENT in str(f["message"]) and f["interfaces"] == ["eni-1"]
    (p,) = report.posture
    assert p.severity == "medium" and LATENT in p.message
    # A group without any member is latent too; with a public member it keeps today's grade.
    assert finding(run([db], [group("sg-db", APP_OPEN)], []), "sg-db")["severity"] == "medium"
    public = run([db], [group("sg-db", APP_OPEN)], [eni("eni-1", "sg-db", public="47.1.1.1")])
    assert finding(public, "sg-db")["severity"] == "critical"


def test_an_ipv6_address_counts_as_reachable_fail_closed() -> None:
    cache = group("sg-cache")
    live = group("sg-cache", "accept 1 tcp 6379/6379 ::/0", "accept 1 tcp 6379/6379 0.0.0.0/0")
    report = run([cache], [live], [eni("eni-c", "sg-cache", ipv6="2408:4005:3a0:1::10")])
    by_family = {e.family: e for e in report.exposures}
    assert (by_family["ipv6"].reachable, by_family["ipv6"].severity) == (True, "critical")
    assert (by_family["ipv4"].reachable, by_family["ipv4"].severity) == (False, "medium")


def test_unknown_membership_keeps_today_s_grading_and_null_fields() -> None:
    app, guard = group("sg-app", APP_OPEN), group("sg-guard", GUARD_DROP)
    report = run([app, guard], [app, group("sg-guard")], None)
    f = finding(report, "sg-guard")
    assert (f["severity"], f["checks"], f["interfaces"]) == ("low", ["no-exposure-change"], None)
    e = next(e.to_dict() for e in report.exposures if e.security_group_id == "sg-app")
    assert (e["security_group_ids"], e["interfaces"], e["reachable"]) == (["sg-app"], None, None)
    assert [p.severity for p in report.posture] == ["critical"]


def test_a_new_managed_group_is_info_and_its_exposure_is_still_shown() -> None:
    managed = group("sg-ack", "accept 1 tcp 443/443 0.0.0.0/0", managed=True)
    report = run([], [managed], None)
    f = finding(report, "sg-ack")
    assert f["checks"] == ["managed-group", "internet-unapproved-port"]
    assert "managed by a cloud service" in str(f["message"]) and report.exposures
    quiet = run([], [group("sg-ack", managed=True)], None)
    assert finding(quiet, "sg-ack")["severity"] == "info"


def test_a_quintuple_rule_applies_to_the_interfaces_whose_addresses_fall_in_its_local_side() -> None:
    opened = _rule("accept 1 tcp 22/22 0.0.0.0/0")
    opened = opened._replace(key=opened.key._replace(local="10.0.1.0/24"))
    live = replace(group("sg-mixed"), rules=(opened,))
    inside = eni("eni-in", "sg-mixed", private="10.0.1.7", public="47.1.1.1")
    outside = eni("eni-out", "sg-mixed", private="10.0.2.7", public="47.1.1.2")
    report = run([group("sg-mixed")], [live], [inside, outside])
    (e,) = report.exposures
    assert (e.interfaces, e.reachable, e.severity) == (("eni-in",), True, "high")
    # Only the outside interface is reachable: the rule opens nothing there, latent elsewhere.
    report = run([group("sg-mixed")], [live], [replace(inside, public_ipv4=()), outside])
    (e,) = report.exposures
    assert (e.interfaces, e.reachable, e.severity) == (("eni-in",), False, "medium")


def test_a_set_mixing_basic_and_advanced_groups_is_said_and_judged_fail_closed() -> None:
    basic, advanced = group("sg-a"), group("sg-b", type="enterprise")
    report = run([basic, advanced], [basic, advanced], [eni("eni-1", "sg-a", "sg-b")])
    assert [e.code for e in report.errors] == ["GroupSetMixedTypes"]


def test_the_report_with_membership_validates_against_the_schema() -> None:
    app, guard = group("sg-app", APP_OPEN), group("sg-guard", GUARD_DROP)
    interfaces = [eni("eni-1", "sg-app", "sg-guard", public="47.1.1.1"), eni("eni-2", "sg-app")]
    for members in (interfaces, [], None):
        document = json.loads(json_render.render(run([app, guard], [app, group("sg-guard")], members)))
        jsonschema.validate(document, SCHEMA)
        assert document["version"] == "4"


# The oracle, extended to sets: the merged evaluation of the groups on an interface equals the
# brute force over the union of their rules (those that apply to it) with the set's default.
def _union(members: list[Group], applies: object) -> Group:
    kept: list[Rule] = []
    for g in members:
        for r in g.rules:
            if r.key.local and not applies(r.key):  # type: ignore[operator]
                continue
            kept.append(r._replace(key=r.key._replace(local="")))
    gtype = "enterprise" if {g.type for g in members} == {"enterprise"} else "normal"
    return replace(members[0], type=gtype, rules=tuple(kept))


@settings(max_examples=200, deadline=None)
@given(
    first=groups(max_rules=6, gid="sg-1"),
    second=groups(max_rules=6, gid="sg-2"),
    address=st.sampled_from(["10.0.1.9", "10.0.2.5", "172.16.0.1", "192.168.1.1"]),
    direction=st.sampled_from(["ingress", "egress"]),
    family=st.sampled_from(["ipv4", "ipv6"]),
    proto=st.sampled_from(["tcp", "udp", "icmp", "icmpv6", "gre", "132"]),
    dport=st.sampled_from([1, 22, 80, 443, 3306, 5000, 65535]),
    data=st.data(),
)
def test_a_merged_set_agrees_with_the_oracle_over_the_union_of_its_rules(
    first: Group,
    second: Group,
    address: str,
    direction: str,
    family: str,
    proto: str,
    dport: int,
    data: st.DataObject,
) -> None:
    assume((family, proto) not in {("ipv4", "icmpv6"), ("ipv6", "icmp")})
    second = replace(second, type=first.type, vpc_id=first.vpc_id)  # one interface: one type, one network
    members = [first, second]
    cidrs = {r.key.local for g in members for r in g.rules if r.key.local}
    (variant,) = variants(("sg-1", "sg-2"), [Interface("eni-1", "", "Primary", ("sg-1", "sg-2"), (address,))], cidrs)
    lists = exposure.Lists(PREFIX_LISTS, PORT_LISTS)
    result = exposure.answer(evaluate_set(members, variant, lists)[direction])  # type: ignore[index]
    union = _union(members, variant.applies)
    addr = data.draw(st.sampled_from(ADDRS[family]))
    port = dport if proto in ("tcp", "udp") else -1
    expected = addresses.is_public_address(family, addr) and any(  # type: ignore[arg-type]
        oracle(union, direction, family, proto, port, s, addr) for s in SPORT_PROBES
    )
    assert exposure.accepts(result, family, proto, port, addr) == expected  # type: ignore[arg-type]


def test_service_managed_in_the_listing_marks_the_group_managed() -> None:
    builder = SnapshotBuilder()
    listing = [
        {"SecurityGroupId": gid, "SecurityGroupType": "normal", "VpcId": "vpc-1", "ServiceManaged": managed}
        for gid, managed in (("sg-ack", True), ("sg-own", False))
    ]
    builder.add(
        RawResponse(
            "default",
            "DescribeSecurityGroups",
            {"RegionId": "cn-hangzhou", "SecurityGroups": {"SecurityGroup": listing}},
        )
    )
    for gid in ("sg-ack", "sg-own"):
        attribute = {
            "RegionId": "cn-hangzhou",
            "SecurityGroupId": gid,
            "VpcId": "vpc-1",
            "Permissions": {"Permission": []},
        }
        builder.add(RawResponse("default", "DescribeSecurityGroupAttribute", attribute))
    snap = builder.finish()
    assert {key[2]: g.managed for key, g in snap.groups.items()} == {"sg-ack": True, "sg-own": False}
    report = assess(Baseline(), snap, CheckSettings(), NOW)
    assert sorted((f.security_group_id, f.severity, tuple(f.checks)) for f in report.findings) == [
        ("sg-ack", "info", ("managed-group",)),
        ("sg-own", "medium", ("new-group",)),
    ]
