"""From (baseline, live snapshot) to a report: diff, attribution, findings, posture.

The one entry point is :func:`assess`. Each group's exposures are compared in
:mod:`sgwatch.core.compare` (on its group sets when membership is known,
:mod:`sgwatch.core.groupsets`); this module attributes what is new to the changes that caused
it and builds the report. Everything here is pure: the clock comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import TypeVar

from sgwatch.core import addresses, exposure, managed, membership, posture
from sgwatch.core.checks import RANK, CheckSettings, Severity, worst
from sgwatch.core.compare import NO_REGION_LISTS, Graded, RegionLists, group_exposures
from sgwatch.core.diff import Change, ListRef, diff_group
from sgwatch.core.exposure import FAMILIES, Lists
from sgwatch.core.findings import LATENT, Exposure, Finding, Report, describe_rule
from sgwatch.core.groupsets import RegionSets
from sgwatch.core.memo import same
from sgwatch.core.model import (
    AcceptedExposure,
    Baseline,
    Group,
    GroupKey,
    PeerKind,
    Rule,
    RuleKey,
    ScanError,
    Snapshot,
    span,
)
from sgwatch.core.reuse import GroupResult, Reuse

_UNRESOLVED_CODES = {"prefix list": "PrefixListUnresolved", "port range list": "PortRangeListUnresolved"}


def _lists_named(keys: Iterable[RuleKey | None]) -> set[ListRef]:
    named = set()
    for k in keys:
        if k is not None and k.peer.kind is PeerKind.PREFIX_LIST:
            named.add(ListRef("prefix list", k.peer.value))
        if k is not None and k.port_list:
            named.add(ListRef("port range list", k.port_list))
    return named


def _overlaps(rule: Rule, graded: Graded, lists: Lists) -> bool:
    """Could this (removed or weakened) rule have been what blocked the new exposure?"""
    e, piece = graded.exposure, graded.piece
    k = rule.key
    if k.direction != e.direction:
        return False
    if not exposure.matches_bucket(k.protocol, piece.bucket):
        return False
    if e.from_port != -1:
        # An unread list: nothing known to have blocked it.
        ranges = lists.ports.get(k.port_list, ()) if k.port_list else (span(k.from_port, k.to_port),)
        if all(high < e.from_port or low > e.to_port for low, high in ranges):
            return False
    return bool(addresses.intersect(exposure.peer_public_part(k.peer, e.family, lists), piece.new_addresses))


def _attribute(changes: list[Change], new: list[Graded], lists: Lists) -> dict[int, list[Graded]]:
    """Which change caused which new exposure. Every new exposure lands on some change."""
    by_change: dict[int, list[Graded]] = {}
    for g in new:
        granted_by_lists = _lists_named(g.piece.rules)
        owners = (
            [
                n
                for n, c in enumerate(changes)
                if c.live is not None and c.live.policy == "accept" and c.live.key in g.piece.rules
            ]
            or [n for n, c in enumerate(changes) if c.kind == "group_changed" and granted_by_lists & set(c.lists)]
            or [
                n
                for n, c in enumerate(changes)
                if c.baseline is not None and c.baseline.policy == "drop" and _overlaps(c.baseline, g, lists)
            ]
            or [n for n, c in enumerate(changes) if c.kind == "group_changed"]
            or [n for n, c in enumerate(changes) if c.direction == g.exposure.direction][:1]
        )
        for n in owners:
            by_change.setdefault(n, []).append(g)
    return by_change


def _base_check(change: Change, live: Group | None, base: Group | None, lists: Lists) -> str:
    if change.kind == "group_changed":
        if change.lists:
            return "list-changed"
        opened = "inner_access_policy" in change.fields and live is not None and live.inner_access_policy == "accept"
        return "inner-access-opened" if opened else "group-attribute-changed"
    if change.kind == "rule_changed" and change.live and change.baseline and change.live.key == change.baseline.key:
        return "description-changed"
    rule = change.live if change.kind == "rule_added" else None
    if rule is not None and rule.policy == "accept":
        peer = rule.peer
        if peer.kind is PeerKind.GROUP:
            return "cross-account-reference" if peer.owner else "private-peer-rule"
        if (peer.kind is PeerKind.PREFIX_LIST and peer.value not in lists.prefix) or (
            rule.key.port_list and rule.key.port_list not in lists.ports
        ):
            return "list-unresolved"
        if not any(exposure.peer_public_part(peer, family, lists) for family in FAMILIES):
            return "private-peer-rule"
    if change.kind == "rule_removed" and change.baseline and change.baseline.policy == "accept":
        return "accept-removed"
    return "no-exposure-change"


def _message(change: Change, exposures: list[Exposure]) -> str:
    sg = change.group[2]
    what = {
        "rule_added": lambda: f"rule added: {describe_rule(change.live)}" if change.live else "",
        "rule_removed": lambda: f"rule removed: {describe_rule(change.baseline)}" if change.baseline else "",
        "rule_changed": lambda: (
            f"rule changed: {describe_rule(change.baseline)} -> {describe_rule(change.live)}"
            if change.live and change.baseline and change.live.key != change.baseline.key
            else "rule description changed"
        ),
        "group_changed": lambda: "group changed: " + ", ".join((*change.fields, *(ref.moved for ref in change.lists))),
    }[change.kind]()
    direction = f" {change.direction}" if change.direction else ""
    tail = ""
    if exposures:
        top = max(exposures, key=lambda e: (e.severity is not None, e.scope == "any"))
        more = f" (+{len(exposures) - 1} more)" if len(exposures) > 1 else ""
        tail = f"; new exposure: {top.describe()}{more}"
    return f"{sg}{direction} {what}{tail}"


def _latent(exposures: Sequence[Exposure]) -> str:
    """Why a new exposure is graded no higher than medium, when one is."""
    return f"; {LATENT}" if any(e.reachable is False for e in exposures) else ""


def _finding(
    change: Change,
    check: str | None,
    exposures: list[Exposure],
    settings: CheckSettings,
    message: str,
    also: str | None = None,
) -> Finding:
    checks = [c for c in (also, check) if c and settings.enabled(c)]
    severities: list[Severity] = [settings.severity(c) for c in checks]
    for e in exposures:
        if e.check and e.severity:
            checks.append(e.check)
            severities.append(e.severity)
    account, region, sg = change.group
    return Finding(
        kind=change.kind,
        severity=worst(*severities) if severities else "info",
        account=account,
        region=region,
        security_group_id=sg,
        direction=change.direction,
        live=change.live,
        baseline=change.baseline,
        new_exposures=exposures,
        checks=list(dict.fromkeys(checks)),
        message=message,
        fields=change.fields,
        lists=change.lists,
    )


def assess_group(
    live: Group | None,
    base: Group | None,
    accepted: Sequence[AcceptedExposure],
    settings: CheckSettings,
    lists: RegionLists = NO_REGION_LISTS,
    unresolved: set[tuple[str, str]] | None = None,
    sets: RegionSets | None = None,
    terraform: bool = False,
) -> tuple[list[Finding], list[Exposure]]:
    """Findings and live exposures of one group (live None: removed; base None: added).

    ``terraform``: the desired state is a Terraform state, which should know the group (if
    ``base`` is None: ``unmanaged-group``) and every rule of it (one it lacks: ``unmanaged-rule``).

    ``lists``: the lists of the group's account and region; those its live rules name but
    ``lists.live`` lacks are added to ``unresolved``. ``sets``: the region's group sets, when
    its membership is known (see :func:`group_exposures`).
    """
    if live is None:
        assert base is not None
        change = Change("group_removed", base.key)
        return [_finding(change, "group-removed", [], settings, f"{base.id} group removed")], []
    # A new group is measured against an empty group of its type: a basic group's default
    # egress is the cloud's normal, not a new exposure.
    reference = base if base is not None else replace(live, rules=())
    # Compared once here: a deep compare of two large equal tuples is a good part of the cost
    # of an unchanged group.
    same_rules = reference.rules == live.rules
    moved = sorted(lists.changed & _lists_named(r.key for r in live.rules)) if lists.changed and base else []
    exposures, new = group_exposures(
        live, reference, accepted, settings, same_rules, lists, unresolved, bool(moved), sets
    )
    if base is None:
        change = Change("group_added", live.key)
        news = [g.exposure for g in new]
        tail = f"; {len(news)} new internet exposure(s)" if news else "; no internet exposure"
        managed = " (managed by a cloud service)" if live.managed else ""
        added = "managed-group" if live.managed else ("unmanaged-group" if terraform else "new-group")
        message = f"{live.id} group added{managed}{tail}{_latent(news)}"
        return [_finding(change, added, news, settings, message)], exposures
    changes = diff_group(base, live, same_rules)
    changes += [Change("group_changed", live.key, lists=(ref,)) for ref in moved]
    owners = _attribute(changes, new, lists.live)
    findings = []
    for n, change in enumerate(changes):
        caused = [g.exposure for g in owners.get(n, [])]
        check: str | None = _base_check(change, live, base, lists.live)
        if caused and check == "no-exposure-change":
            check = None  # the exposure's own checks say it all
        also = "unmanaged-rule" if terraform and change.kind == "rule_added" else None
        findings.append(_finding(change, check, caused, settings, _message(change, caused), also))
    return findings, exposures


_T = TypeVar("_T")


def _by_region(entries: Mapping[tuple[str, str, str], _T]) -> dict[tuple[str, str], dict[str, _T]]:
    out: dict[tuple[str, str], dict[str, _T]] = {}
    for (account, region, list_id), value in entries.items():
        out.setdefault((account, region), {})[list_id] = value
    return out


def _region_lists(live: Snapshot, baseline: Baseline) -> dict[tuple[str, str], RegionLists]:
    read, expected = _by_region(live.prefix_lists), _by_region(baseline.prefix_lists)
    ports, expected_ports = _by_region(live.port_lists), _by_region(baseline.port_lists)
    out = {}
    for where in read.keys() | expected.keys() | ports.keys() | expected_ports.keys():
        now, want = read.get(where, {}), expected.get(where, {})
        ranges, want_ranges = ports.get(where, {}), expected_ports.get(where, {})
        # A list that could not be read is unresolved, not changed: nothing is known of it.
        changed = frozenset(
            [ListRef("prefix list", i) for i, e in want.items() if i in now and set(now[i]) != set(e)]
            + [
                ListRef("port range list", i)
                for i, e in want_ranges.items()
                if i in ranges and set(ranges[i]) != set(e)
            ]
        )
        recorded = Lists({**now, **want}, {**ranges, **want_ranges}) if want or want_ranges else Lists(now, ranges)
        out[where] = RegionLists(Lists(now, ranges), recorded, changed)
    return out


def _region_sets(
    live: Snapshot, baseline: Baseline, lists_of: Mapping[tuple[str, str], RegionLists]
) -> dict[tuple[str, str], RegionSets]:
    """The group sets of each region whose membership is known."""
    known = {where: m for where, m in live.membership.items() if m.is_known}
    if not known:
        return {}
    live_by: dict[tuple[str, str], dict[str, Group]] = {where: {} for where in known}
    base_by: dict[tuple[str, str], dict[str, Group]] = {where: {} for where in known}
    for by, groups in ((live_by, live.groups), (base_by, baseline.groups)):
        for (account, region, gid), group in groups.items():
            if (account, region) in by:
                by[(account, region)][gid] = group
    out = {}
    for where, m in known.items():
        lists = lists_of.get(where, NO_REGION_LISTS)
        out[where] = RegionSets(m.index, live_by[where], base_by[where], lists.live, lists.baseline)
    return out


def _signature(
    key: tuple[str, str, str], live: Snapshot, baseline: Baseline, lists: RegionLists, sets: RegionSets | None
) -> tuple[object, ...]:
    """All a group's results depend on besides the settings and the day (see :mod:`sgwatch.core.reuse`)."""
    context = None
    if sets is not None:
        gid = key[2]
        context = tuple(
            (
                gset,
                sets.index.interfaces_in(gset),
                tuple(sets.part(other) for other in gset if other != gid),
            )
            for gset in sets.index.sets_of(gid)
        )
    return (
        live.groups.get(key),
        key in live.untyped,
        baseline.groups.get(key),
        baseline.accepted.get(key, ()),
        lists,
        context,
    )


def _assess_key(
    key: tuple[str, str, str],
    lgroup: Group | None,
    bgroup: Group | None,
    accepted: Sequence[AcceptedExposure],
    settings: CheckSettings,
    today: date,
    lists: RegionLists,
    sets: RegionSets | None,
    terraform: bool,
) -> GroupResult:
    unresolved: set[tuple[str, str]] = set()
    active = [a for a in accepted if a.active(today)]
    findings, exposures = assess_group(lgroup, bgroup, active, settings, lists, unresolved, sets, terraform)
    results = posture.check_group(lgroup, exposures, settings) if lgroup is not None else []
    results.extend(posture.expired(key, accepted, today, settings))
    # The mixed sets among its own: found while evaluating them, needed again when reused.
    mixed = (
        frozenset(g for g in sets.index.sets_of(key[2]) if g in sets.mixed)
        if sets is not None and sets.mixed
        else frozenset()
    )
    return GroupResult(findings, exposures, frozenset(unresolved), results, mixed)


def assess(
    baseline: Baseline,
    live: Snapshot,
    settings: CheckSettings,
    now: datetime,
    reuse: Reuse | None = None,
    only: Collection[GroupKey] | None = None,
) -> Report:
    """The whole estate: every drift finding, every live exposure, every posture result.

    ``reuse``: what the last scan worked out, kept for groups whose inputs are unchanged
    (:class:`~sgwatch.core.reuse.Reuse`; the report is the same with or without). Pass it only
    with whole scans: groups a scan did not assess are dropped from it.
    ``only``: assess just these groups, against the whole snapshot (their group sets and lists as
    they are): what a targeted re-read changed, judged exactly as a full scan judges it.
    """
    if only is not None and reuse is not None:
        raise ValueError("reuse is for whole scans: a partial assessment would drop the rest of it")
    today = now.date()
    if reuse is not None:
        reuse.begin(settings, today)
    placed = managed.place(baseline, baseline.terraform, live) if baseline.terraform is not None else None
    if placed is not None:
        baseline = placed.baseline
    errors = list(live.errors) + (placed.errors if placed else [])
    unreadable_regions = {(e.account, e.region) for e in errors if not e.security_group_id}
    unreadable_groups = {(e.account, e.region, e.security_group_id) for e in errors if e.security_group_id}
    report = Report(generated_at=now, groups=0, errors=errors)
    seen_regions = live.regions
    lists_of = _region_lists(live, baseline)
    if reuse is not None:
        lists_of = {where: same(reuse.lists, where, lists) for where, lists in lists_of.items()}
    sets_of = _region_sets(live, baseline, lists_of)
    keys = (
        live.groups.keys() | baseline.groups.keys()
        if only is None
        else {k for k in only if k in live.groups or k in baseline.groups}
    )
    for key in sorted(keys):
        account, region, _ = key
        if live.scope is not None and (account, region) not in live.scope:
            continue
        lgroup, bgroup = live.groups.get(key), baseline.groups.get(key)
        if lgroup is not None and bgroup is not None and key in live.untyped:
            lgroup = replace(lgroup, type=bgroup.type)  # an attribute response does not say the type
        if lgroup is None:
            if key in unreadable_groups or (account, region) in unreadable_regions:
                continue  # could not be read: never "removed"
            listing = live.listed.get((account, region))
            if listing is None:
                if (account, region) not in seen_regions:
                    continue  # the region error below covers it
                errors.append(
                    ScanError(
                        account,
                        region,
                        "NotInSnapshot",
                        "group is in the baseline but the snapshot has no listing of the region",
                        key[2],
                    )
                )
                continue
            if key[2] in listing:
                continue  # listed but unread: the parser has recorded the error
        unmanaged = bgroup is None and placed is not None and placed.covers(account)
        if unmanaged and placed is not None and placed.managed_only:
            continue
        report.groups += 1
        lists, sets = lists_of.get((account, region), NO_REGION_LISTS), sets_of.get((account, region))
        accepted = baseline.accepted.get(key, ())
        terraform = unmanaged or (placed is not None and key in placed.managed)
        result = None
        if reuse is not None:
            signature = (*_signature(key, live, baseline, lists, sets), terraform)
            result = reuse.groups.get(key, signature)
            if result is None:
                result = _assess_key(key, lgroup, bgroup, accepted, settings, today, lists, sets, terraform)
                reuse.groups.put(key, signature, result)
            elif sets is not None:
                sets.mixed.update(result.mixed)
        else:
            result = _assess_key(key, lgroup, bgroup, accepted, settings, today, lists, sets, terraform)
        if placed is not None:
            placed.name(result.findings)
        errors.extend(
            ScanError(
                account,
                region,
                _UNRESOLVED_CODES[kind],
                f"rules name {kind} {list_id}, whose entries were not read: what it lets in is unknown",
                key[2],
            )
            for kind, list_id in sorted(result.unresolved)
        )
        report.findings.extend(result.findings)
        report.exposures.extend(result.exposures)
        report.posture.extend(result.posture)
    if placed is not None and only is None:  # a partial assessment speaks only for the groups it judged
        for gone in placed.removed:
            report.groups += 1
            findings, _ = assess_group(None, gone, (), settings)
            placed.name(findings)
            report.findings.extend(findings)
    expected = {(g.account, g.region) for g in baseline.groups.values()}
    if live.scope is not None:
        expected &= live.scope
    for (account, region), sets in sorted(sets_of.items()):
        errors.extend(
            ScanError(
                account,
                region,
                "GroupSetMixedTypes",
                f"interfaces sit in basic and advanced groups together ({', '.join(gset)}), which the cloud does "
                "not allow: judged with the basic default (egress accepted)",
            )
            for gset in sorted(sets.mixed)
        )
    missing = sorted(expected - seen_regions - unreadable_regions)
    errors.extend(
        ScanError(a, r, "RegionNotInSnapshot", "baseline covers this region but the live state has no data for it")
        for a, r in missing
    )
    report.findings.sort(key=lambda f: (-RANK[f.severity], f.account, f.region, f.security_group_id, f.kind))
    report.membership = membership.for_regions(live.membership, live.scope if live.scope is not None else seen_regions)
    if reuse is not None:
        reuse.end()
    return report


__all__ = ["assess", "assess_group"]
