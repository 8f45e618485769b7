"""Severity and completeness: a dangerous change is loud, a harmless one is quiet, a gap is never 'removed'."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings

from sgwatch import baseline as baseline_file
from sgwatch.baseline import RuleSpec
from sgwatch.core.checks import CheckSettings
from sgwatch.core.diff import ListRef
from sgwatch.core.engine import assess
from sgwatch.core.findings import Finding, Report
from sgwatch.core.model import AcceptedExposure, Baseline, Group, Rule, ScanError, Snapshot
from sgwatch.sources import ecs_rules
from sgwatch.sources.raw import RawResponse
from sgwatch.sources.snapshot import SnapshotBuilder
from tests.test_exposure import _group, _rule
from tests.test_normalize import Spellings, spelled_rule

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = ("default", "cn-hangzhou", "sg-1")


def run(
    base: Group | None,
    live: Group | None,
    *,
    accepted: tuple[AcceptedExposure, ...] = (),
    listed: bool = True,
    errors: list[ScanError] | None = None,
    settings: CheckSettings | None = None,
    lists: dict[str, tuple[str, ...]] | None = None,
) -> Report:
    baseline = Baseline(groups={KEY: base} if base else {}, accepted={KEY: accepted} if accepted else {})
    snap = Snapshot(groups={KEY: live} if live else {}, errors=errors or [])
    snap.prefix_lists = {("default", "cn-hangzhou", pl): entries for pl, entries in (lists or {}).items()}
    if listed:
        snap.listed[("default", "cn-hangzhou")] = frozenset({KEY[2]} if live else set())
    return assess(baseline, snap, settings or CheckSettings(), NOW)


def kinds(report: Report) -> list[tuple[str, str, list[str]]]:
    return sorted((f.kind, f.severity, f.checks) for f in report.findings)


def with_rules(*specs: str, **kw: object) -> Group:
    return _group(*specs, **kw)  # type: ignore[arg-type]


def egress(spec: str) -> Rule:
    r = _rule(spec)
    return r._replace(key=r.key._replace(direction="egress"))


def test_removing_the_guard_drop_is_critical_and_adding_a_shadowed_accept_is_quiet() -> None:
    guarded = with_rules("accept 100 tcp 1/65535 0.0.0.0/0", "drop 1 tcp 3306/3306 0.0.0.0/0")
    assert kinds(run(guarded, with_rules("accept 100 tcp 1/65535 0.0.0.0/0"))) == [
        ("rule_removed", "critical", ["internet-database-port"])
    ]
    quiet = with_rules("drop 1 tcp 3306/3306 0.0.0.0/0")
    shadowed = with_rules("drop 1 tcp 3306/3306 0.0.0.0/0", "accept 100 tcp 3306/3306 0.0.0.0/0")
    assert kinds(run(quiet, shadowed)) == [("rule_added", "low", ["no-exposure-change"])]


@pytest.mark.parametrize(
    ("spec", "severity", "check"),
    [
        ("accept 1 tcp 22/22 0.0.0.0/0", "high", "internet-remote-admin"),
        ("accept 1 tcp 3389/3389 ::/0", "high", "internet-remote-admin"),
        ("accept 1 tcp 6379/6379 0.0.0.0/0", "critical", "internet-database-port"),
        ("accept 1 all -1/-1 0.0.0.0/0", "critical", "internet-all-traffic"),
        ("accept 1 tcp 1/65535 0.0.0.0/1", "critical", "internet-all-traffic"),
        ("accept 1 tcp 8443/8443 0.0.0.0/0", "high", "internet-unapproved-port"),
        ("accept 1 tcp 22/22 47.100.12.0/24", "medium", "narrow-public-exposure"),
        ("accept 1 tcp 22/22 10.0.0.0/8", "low", "private-peer-rule"),
        ("accept 1 tcp 22/22 sg-app", "low", "private-peer-rule"),
        ("accept 1 tcp 22/22 999/sg-app", "medium", "cross-account-reference"),
        ("drop 1 tcp 22/22 0.0.0.0/0", "low", "no-exposure-change"),
    ],
)
def test_added_rule_severity(spec: str, severity: str, check: str) -> None:
    report = run(with_rules(), with_rules(spec))
    assert [(f.kind, f.severity) for f in report.findings] == [("rule_added", severity)]
    assert check in report.findings[0].checks


def test_new_exposure_objects_carry_scope_family_and_peers() -> None:
    report = run(with_rules(), with_rules("accept 1 tcp 3306/3306 ::/0"))
    (e,) = report.findings[0].new_exposures
    assert (e.family, e.protocol, e.from_port, e.to_port, e.scope, e.peers, e.new) == (
        "ipv6",
        "tcp",
        3306,
        3306,
        "any",
        ("::/0",),
        True,
    )


def test_egress_whitelist_drop_removed_is_medium() -> None:
    whitelist = replace(
        with_rules(), rules=(egress("drop 2 all -1/-1 0.0.0.0/0"), egress("accept 1 tcp 443/443 1.1.1.1/32"))
    )
    opened = replace(whitelist, rules=whitelist.rules[1:])
    assert kinds(run(whitelist, opened)) == [("rule_removed", "medium", ["egress-opened"])]


def test_group_changes() -> None:
    drop = replace(with_rules(), inner_access_policy="drop")
    assert kinds(run(drop, with_rules())) == [("group_changed", "medium", ["inner-access-opened"])]
    advanced = with_rules(type_="enterprise")
    report = run(advanced, with_rules())  # basic: egress default becomes accept
    assert [(f.kind, f.severity) for f in report.findings] == [("group_changed", "medium")]
    assert "egress-opened" in report.findings[0].checks


def test_priority_change_without_exposure_change_is_low_and_description_is_info() -> None:
    a = _rule("accept 1 tcp 443/443 0.0.0.0/0")._replace(rule_id="sgr-1")
    b = a._replace(key=a.key._replace(priority=5))
    c = a._replace(description="now documented")
    base = replace(with_rules(), rules=(a,))
    assert kinds(run(base, replace(base, rules=(b,)))) == [("rule_changed", "low", ["no-exposure-change"])]
    assert kinds(run(base, replace(base, rules=(c,)))) == [("rule_changed", "info", ["description-changed"])]


def test_accept_removed_is_low() -> None:
    assert kinds(run(with_rules("accept 1 tcp 80/80 0.0.0.0/0"), with_rules())) == [
        ("rule_removed", "low", ["accept-removed"])
    ]


def test_new_group_without_exposure_is_medium_and_with_exposure_takes_its_severity() -> None:
    assert kinds(run(None, with_rules("accept 1 tcp 22/22 sg-x"))) == [("group_added", "medium", ["new-group"])]
    assert kinds(run(None, with_rules("accept 1 tcp 22/22 0.0.0.0/0")))[0][1] == "high"


def test_accepted_exposure_suppresses_until_it_expires() -> None:
    live = with_rules("accept 1 tcp 8080/8080 0.0.0.0/0")
    ok = AcceptedExposure("ingress", "tcp", 8080, 8080, (), "load test", "team-perf", date(2027, 1, 1))
    assert kinds(run(with_rules(), live, accepted=(ok,))) == [("rule_added", "low", ["no-exposure-change"])]
    old = replace(ok, expires=date(2026, 1, 1))
    report = run(with_rules(), live, accepted=(old,))
    assert kinds(report) == [("rule_added", "high", ["internet-unapproved-port"])]
    assert [p.check for p in report.posture if p.check == "posture-expired-exception"] == ["posture-expired-exception"]


def test_unreadable_group_is_never_removed() -> None:
    err = ScanError("default", "cn-hangzhou", "AttributesMissing", "could not read", "sg-1")
    report = run(with_rules("accept 1 tcp 80/80 0.0.0.0/0"), None, errors=[err])
    assert report.findings == [] and not report.complete


def test_failed_region_is_never_emptied() -> None:
    err = ScanError("default", "cn-hangzhou", "ServiceUnavailable", "503")
    report = run(with_rules("accept 1 tcp 80/80 0.0.0.0/0"), None, errors=[err], listed=False)
    assert report.findings == [] and not report.complete


def test_region_without_listing_cannot_prove_removal() -> None:
    other = ("default", "cn-hangzhou", "sg-2")
    baseline = Baseline(groups={KEY: with_rules(), other: replace(with_rules(), id="sg-2")})
    snap = Snapshot(groups={KEY: with_rules()})
    report = assess(baseline, snap, CheckSettings(), NOW)
    assert report.findings == [] and [e.code for e in report.errors] == ["NotInSnapshot"]
    region_gone = assess(Baseline(groups={KEY: with_rules()}), Snapshot(), CheckSettings(), NOW)
    assert [e.code for e in region_gone.errors] == ["RegionNotInSnapshot"] and region_gone.findings == []


def test_group_removed_when_the_listing_proves_it() -> None:
    assert kinds(run(with_rules(), None)) == [("group_removed", "low", ["group-removed"])]


def test_settings_override_ports_and_severities() -> None:
    settings = CheckSettings(database_ports=frozenset({9999}), severities={"internet-unapproved-port": "medium"})
    report = run(with_rules(), with_rules("accept 1 tcp 9999/9999 0.0.0.0/0"), settings=settings)
    assert kinds(report) == [("rule_added", "critical", ["internet-database-port"])]
    report = run(with_rules(), with_rules("accept 1 tcp 3306/3306 0.0.0.0/0"), settings=settings)
    assert kinds(report) == [("rule_added", "medium", ["internet-unapproved-port"])]


def test_finding_ids_are_stable_and_distinct() -> None:
    live = with_rules("accept 1 tcp 22/22 0.0.0.0/0", "accept 1 tcp 80/80 0.0.0.0/0")
    first, second = run(with_rules(), live), run(with_rules(), live)
    assert [f.id for f in first.findings] == [f.id for f in second.findings]
    assert len({f.id for f in first.findings}) == 2


def test_posture_flags_shadowed_rules_and_rule_limit() -> None:
    live = with_rules("drop 1 tcp 3306/3306 0.0.0.0/0", "accept 50 tcp 3306/3306 10.0.0.0/8")
    report = run(live, live, settings=CheckSettings(rule_limit=2))
    checks = sorted(p.check for p in report.posture)
    assert "posture-shadowed-rule" in checks and "posture-rule-limit" in checks
    assert report.findings == []


# -- prefix lists: a rule that names one lets in what its entries say ------------------------------
LISTS = {"pl-world": ("0.0.0.0/0",), "pl-office": ("10.0.0.0/8", "47.100.12.0/24"), "pl-lan": ("10.0.0.0/8",)}


def test_a_rule_naming_a_prefix_list_of_the_internet_is_graded_by_its_entries() -> None:
    base = with_rules("accept 1 tcp 443/443 0.0.0.0/0")
    report = run(base, with_rules("accept 1 tcp 443/443 0.0.0.0/0", "accept 1 tcp 3306/3306 pl-world"), lists=LISTS)
    assert kinds(report) == [("rule_added", "critical", ["internet-database-port"])]
    (finding,) = report.findings
    assert [(e.from_port, e.scope, e.peers) for e in finding.new_exposures] == [(3306, "any", ("pl-world",))]
    assert report.complete


def test_a_prefix_list_of_one_office_is_narrow_and_of_private_entries_is_quiet() -> None:
    base = with_rules()
    office = run(base, with_rules("accept 1 tcp 22/22 pl-office"), lists=LISTS)
    assert kinds(office) == [("rule_added", "medium", ["narrow-public-exposure"])]
    lan = run(base, with_rules("accept 1 tcp 3306/3306 pl-lan"), lists=LISTS)
    assert kinds(lan) == [("rule_added", "low", ["private-peer-rule"])]


def test_an_unread_prefix_list_makes_the_report_incomplete_never_quietly_private() -> None:
    report = run(with_rules(), with_rules("accept 1 tcp 3306/3306 pl-unknown"), lists=LISTS)
    assert kinds(report) == [("rule_added", "medium", ["list-unresolved"])]
    assert not report.complete
    assert [(e.code, e.security_group_id) for e in report.errors] == [("PrefixListUnresolved", "sg-1")]
    assert "pl-unknown" in report.errors[0].message


def test_entries_added_to_a_prefix_list_are_exposure_not_drift() -> None:
    # The baseline names the list, not its entries: the same rules are no drift, and the
    # exposure the list's entries now grant is listed and caught by posture.
    group = with_rules("accept 1 tcp 3306/3306 pl-world")
    report = run(group, group, lists=LISTS)
    assert report.findings == []
    assert [(e.from_port, e.peers, e.new) for e in report.exposures] == [(3306, ("pl-world",), False)]
    assert "posture-internet-database-port" in {p.check for p in report.posture}


def test_removing_a_drop_that_named_a_prefix_list_owns_the_exposure_it_let_through() -> None:
    guarded = with_rules("accept 100 tcp 1/65535 0.0.0.0/0", "drop 1 tcp 3306/3306 pl-world")
    opened = with_rules("accept 100 tcp 1/65535 0.0.0.0/0", "drop 1 tcp 22/22 0.0.0.0/0")
    report = run(guarded, opened, lists=LISTS)
    removed = [f for f in report.findings if f.kind == "rule_removed"]
    assert [(f.severity, f.checks) for f in removed] == [("critical", ["internet-database-port"])]


def run_with_recorded_lists(
    group: Group, recorded: dict[str, tuple[str, ...]], now: dict[str, tuple[str, ...]]
) -> Report:
    baseline = Baseline(
        groups={KEY: group}, prefix_lists={("default", "cn-hangzhou", pl): e for pl, e in recorded.items()}
    )
    snap = Snapshot(groups={KEY: group}, listed={("default", "cn-hangzhou"): frozenset({KEY[2]})})
    snap.prefix_lists = {("default", "cn-hangzhou", pl): e for pl, e in now.items()}
    return assess(baseline, snap, CheckSettings(), NOW)


def test_the_world_added_to_a_recorded_prefix_list_is_drift_of_every_group_naming_it() -> None:
    group = with_rules("accept 1 tcp 3389/3389 pl-ops", "accept 1 tcp 443/443 0.0.0.0/0")
    report = run_with_recorded_lists(
        group, {"pl-ops": ("47.100.12.0/24",)}, {"pl-ops": ("0.0.0.0/0", "47.100.12.0/24")}
    )
    assert kinds(report) == [("group_changed", "high", ["list-changed", "internet-remote-admin"])]
    (finding,) = report.findings
    assert finding.message.startswith("sg-1 group changed: prefix list pl-ops entries; new exposure: tcp 3389")
    assert [(e.from_port, e.scope, e.peers) for e in finding.new_exposures] == [(3389, "any", ("pl-ops",))]
    assert report.complete


def test_a_recorded_prefix_list_that_only_narrowed_is_low_and_one_not_recorded_is_read_as_it_is() -> None:
    group = with_rules("accept 1 tcp 22/22 pl-ops")
    narrowed = run_with_recorded_lists(
        group, {"pl-ops": ("47.100.12.0/24", "58.0.0.0/24")}, {"pl-ops": ("47.100.12.0/24",)}
    )
    assert kinds(narrowed) == [("group_changed", "low", ["list-changed"])]
    assert run_with_recorded_lists(group, {}, {"pl-ops": ("0.0.0.0/0",)}).findings == []
    # unread now: unknown, so incomplete, and not called a change
    unread = run_with_recorded_lists(group, {"pl-ops": ("47.100.12.0/24",)}, {})
    assert unread.findings == [] and [e.code for e in unread.errors] == ["PrefixListUnresolved"]


# -- port range lists: a rule naming one matches the list's ranges, not every port ---------------
def with_port_list(spec: str, port_list: str) -> Rule:
    r = _rule(spec)
    return r._replace(key=r.key._replace(from_port=-1, to_port=-1, port_list=port_list))


def run_with_port_lists(base: Group, live: Group, ports: dict[str, tuple[tuple[int, int], ...]]) -> Report:
    snap = Snapshot(groups={KEY: live}, listed={("default", "cn-hangzhou"): frozenset({KEY[2]})})
    snap.port_lists = {("default", "cn-hangzhou", prl): ranges for prl, ranges in ports.items()}
    return assess(Baseline(groups={KEY: base}), snap, CheckSettings(), NOW)


def test_a_rule_naming_a_port_range_list_exposes_the_list_s_ports_only() -> None:
    live = replace(with_rules(), rules=(with_port_list("accept 1 tcp 1/65535 0.0.0.0/0", "prl-web"),))
    report = run_with_port_lists(with_rules(), live, {"prl-web": ((80, 80), (443, 443))})
    assert kinds(report) == [("rule_added", "high", ["internet-unapproved-port"])]
    assert [(e.from_port, e.to_port) for e in report.findings[0].new_exposures] == [(80, 80), (443, 443)]
    assert report.complete


def test_a_port_range_list_with_a_database_port_is_critical_and_an_unread_one_incomplete() -> None:
    live = replace(with_rules(), rules=(with_port_list("accept 1 tcp 1/65535 0.0.0.0/0", "prl-db"),))
    assert kinds(run_with_port_lists(with_rules(), live, {"prl-db": ((3306, 3306),)})) == [
        ("rule_added", "critical", ["internet-database-port"])
    ]
    unread = run_with_port_lists(with_rules(), live, {})
    assert kinds(unread) == [("rule_added", "medium", ["list-unresolved"])]
    assert [(e.code, e.security_group_id) for e in unread.errors] == [("PortRangeListUnresolved", "sg-1")]


def test_a_database_port_added_to_a_recorded_port_range_list_is_critical_drift() -> None:
    group = replace(with_rules(), rules=(with_port_list("accept 1 tcp 1/65535 0.0.0.0/0", "prl-web"),))
    baseline = Baseline(groups={KEY: group}, port_lists={("default", "cn-hangzhou", "prl-web"): ((80, 80), (443, 443))})
    snap = Snapshot(groups={KEY: group}, listed={("default", "cn-hangzhou"): frozenset({KEY[2]})})
    snap.port_lists = {("default", "cn-hangzhou", "prl-web"): ((80, 80), (443, 443), (3306, 3306))}
    report = assess(baseline, snap, CheckSettings(), NOW)
    assert kinds(report) == [("group_changed", "critical", ["list-changed", "internet-database-port"])]
    assert report.findings[0].message.startswith("sg-1 group changed: port range list prl-web entries; new exposure")
    snap.port_lists = dict(baseline.port_lists)
    assert assess(baseline, snap, CheckSettings(), NOW).findings == []


# -- spellings and quintuple rules ---------------------------------------------------------------


def test_a_baseline_rule_without_ports_is_the_api_s_all_ports_rule(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        "region: cn-hangzhou\nsecurity_groups:\n  - id: sg-1\n    vpc_id: vpc-1\n"
        "    ingress:\n      - {protocol: tcp, peer: 10.0.0.0/8}\n"
    )
    builder = SnapshotBuilder()
    permission = {
        "Direction": "ingress",
        "IpProtocol": "TCP",
        "PortRange": "1/65535",
        "SourceCidrIp": "10.0.0.0/8",
        "Policy": "Accept",
        "Priority": "1",
        "NicType": "intranet",
        "DestCidrIp": "",
    }
    builder.add(
        RawResponse(
            "default",
            "DescribeSecurityGroups",
            {
                "RegionId": "cn-hangzhou",
                "SecurityGroups": {
                    "SecurityGroup": [{"SecurityGroupId": "sg-1", "SecurityGroupType": "normal", "VpcId": "vpc-1"}]
                },
            },
        )
    )
    builder.add(
        RawResponse(
            "default",
            "DescribeSecurityGroupAttribute",
            {
                "RegionId": "cn-hangzhou",
                "SecurityGroupId": "sg-1",
                "VpcId": "vpc-1",
                "InnerAccessPolicy": "Accept",
                "Permissions": {"Permission": [permission]},
            },
        )
    )
    report = assess(baseline_file.load(tmp_path), builder.finish(), CheckSettings(), NOW)
    assert report.findings == [] and report.complete


@settings(max_examples=100, deadline=None)
@given(spelled_rule())
def test_the_baseline_s_spelling_of_the_api_s_rule_is_no_drift(spellings: Spellings) -> None:
    api, _, spec, direction = spellings
    base = with_rules()
    base = replace(base, rules=(RuleSpec.model_validate(spec).to_rule(direction),))  # type: ignore[arg-type]
    live = replace(base, rules=(ecs_rules.rule_from_api(api),))
    assert run(base, live).findings == []


def local(spec: str, cidr: str) -> Rule:
    r = _rule(spec)
    return r._replace(key=r.key._replace(local=cidr))


def test_a_change_of_a_rule_s_local_side_is_drift() -> None:
    base = replace(with_rules(), rules=(local("accept 1 tcp 8080/8080 10.0.0.0/8", "10.0.1.0/24"),))
    live = replace(with_rules(), rules=(local("accept 1 tcp 8080/8080 10.0.0.0/8", "10.0.2.0/24"),))
    assert sorted(f.kind for f in run(base, live).findings) == ["rule_added", "rule_removed"]
    (added,) = [f for f in run(base, live).findings if f.kind == "rule_added"]
    assert added.live is not None and added.live.key.local == "10.0.2.0/24"
    assert "to 10.0.2.0/24" in added.message


def test_an_accept_with_a_local_side_exposes_and_a_drop_with_one_does_not_shield() -> None:
    # Judged without the members, fail-closed: the accept applies to some member, the drop may
    # miss some.
    opened = replace(with_rules(), rules=(local("accept 1 tcp 3306/3306 0.0.0.0/0", "10.0.1.0/24"),))
    assert kinds(run(with_rules(), opened)) == [("rule_added", "critical", ["internet-database-port"])]
    guarded = with_rules("accept 100 tcp 1/65535 0.0.0.0/0", "drop 1 tcp 3306/3306 0.0.0.0/0")
    narrowed = replace(guarded, rules=(guarded.rules[0], local("drop 1 tcp 3306/3306 0.0.0.0/0", "10.0.1.0/24")))
    findings = run(guarded, narrowed).findings
    assert [(f.severity, f.checks) for f in findings if f.kind == "rule_removed"] == [
        ("critical", ["internet-database-port"])
    ]
    assert any(e.from_port <= 3306 <= e.to_port for e in run(narrowed, narrowed).exposures)


def test_a_list_change_is_a_typed_field_of_the_change_and_keeps_its_id() -> None:
    group = with_rules("accept 1 tcp 3389/3389 pl-ops")
    report = run_with_recorded_lists(group, {"pl-ops": ("47.100.12.0/24",)}, {"pl-ops": ("0.0.0.0/0",)})
    (finding,) = report.findings
    assert (finding.fields, finding.lists) == ((), (ListRef("prefix list", "pl-ops"),))
    # The id of before, when the change was the field "prefix list pl-x entries".
    pinned = Finding(
        "group_changed",
        "critical",
        "default",
        "cn-hangzhou",
        "sg-1",
        None,
        None,
        None,
        [],
        [],
        "m",
        lists=(ListRef("prefix list", "pl-x"),),
    )
    assert pinned.id == "86090972c61c1f60"
