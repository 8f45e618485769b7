"""From (baseline, live snapshot) to a report: diff, exposure, severity, posture.

The one entry point is :func:`assess`. Everything here is pure: the clock comes in as ``now``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from sgwatch.core import addresses, exposure, membership, posture
from sgwatch.core.addresses import Family, Interval
from sgwatch.core.checks import LATENT_CAP, RANK, CheckSettings, Severity, exposure_class, worst
from sgwatch.core.diff import Change, ListRef, diff_group
from sgwatch.core.exposure import FAMILIES, NO_LISTS, ExposureMap, Lists
from sgwatch.core.findings import LATENT, Exposure, Finding, Report, describe_rule
from sgwatch.core.groupsets import RegionSets, View
from sgwatch.core.model import (
    DIRECTIONS,
    AcceptedExposure,
    Baseline,
    Direction,
    Group,
    PeerKind,
    Rule,
    RuleKey,
    ScanError,
    Snapshot,
    span,
)

_PUBLIC_PROTOCOLS = {"tcp", "udp", "icmp", "icmpv6", "gre"}


@dataclass(frozen=True, slots=True)
class RegionLists:
    """The lists of one account and region: as read now, and as the baseline expects them.

    ``baseline`` is ``live`` with the entries the baseline records laid over it (a list the
    baseline does not record is compared as it is now); ``changed`` names the lists, as (kind, id),
    whose recorded entries differ from those read.
    """

    live: Lists = NO_LISTS
    baseline: Lists = NO_LISTS
    changed: frozenset[ListRef] = frozenset()


_NO_LISTS = RegionLists()
_UNRESOLVED_CODES = {"prefix list": "PrefixListUnresolved", "port range list": "PortRangeListUnresolved"}


def _lists_named(keys: Iterable[RuleKey | None]) -> set[ListRef]:
    named = set()
    for k in keys:
        if k is not None and k.peer.kind is PeerKind.PREFIX_LIST:
            named.add(ListRef("prefix list", k.peer.value))
        if k is not None and k.port_list:
            named.add(ListRef("port range list", k.port_list))
    return named


@dataclass(frozen=True, slots=True)
class _Piece:
    """One run of ports with one verdict, before it becomes an :class:`Exposure`."""

    family: Family
    bucket: str
    from_port: int
    to_port: int
    addresses: tuple[Interval, ...]
    new_addresses: tuple[Interval, ...]
    rules: tuple[RuleKey | None, ...]


def _allowance(
    accepted: Sequence[AcceptedExposure], family: Family, bucket: str, low: int, high: int
) -> list[Interval]:
    """Public addresses the active exceptions accept for these ports."""
    out: list[Interval] = []
    for a in accepted:
        if a.protocol not in ("all", bucket):
            continue
        if low != -1 and (a.from_port, a.to_port) != (-1, -1) and not (a.from_port <= low and high <= a.to_port):
            continue
        if not a.peers:
            out.extend(addresses.public(family))
            continue
        for peer in a.peers:
            fam, part = addresses.public_part(peer)
            if fam == family:
                out.extend(part)
    return addresses.union(out)


def compare(live: ExposureMap, base: ExposureMap, accepted: Sequence[AcceptedExposure]) -> list[_Piece]:
    """Live exposure, port by port, marked with what the baseline and exceptions do not cover."""
    pieces: list[_Piece] = []
    if live is base:  # the evaluator's cache answered both sides: nothing is new
        return [
            _Piece(family, bucket, s.from_port, s.to_port, s.addresses, (), s.rules)
            for (family, bucket), segments in live.items()
            for s in segments
        ]
    for (family, bucket), segments in live.items():
        if not segments:
            continue
        base_segments = base.get((family, bucket))
        if base_segments is None and bucket not in _PUBLIC_PROTOCOLS:
            base_segments = base.get((family, "other"))  # the baseline had no rule naming this number
        base_segments = base_segments or []
        cuts = sorted(
            {p for s in (*segments, *base_segments) for p in (s.from_port, s.to_port + 1)}
            | {p for a in accepted for p in (a.from_port, a.to_port + 1) if a.from_port != -1}
        )
        for seg in segments:
            for low, nxt in itertools.pairwise(cuts):
                high = nxt - 1
                if high < seg.from_port or low > seg.to_port:
                    continue
                low, high = max(low, seg.from_port), min(high, seg.to_port)
                base_addrs: list[Interval] = []
                for b in base_segments:
                    if b.from_port <= low and high <= b.to_port:
                        base_addrs.extend(b.addresses)
                fresh = addresses.subtract(seg.addresses, addresses.union(base_addrs))
                if fresh:
                    fresh = addresses.subtract(fresh, _allowance(accepted, family, bucket, low, high))
                _append(pieces, _Piece(family, bucket, low, high, seg.addresses, tuple(fresh), seg.rules))
    return pieces


def _append(pieces: list[_Piece], piece: _Piece) -> None:
    last = pieces[-1] if pieces else None
    if (
        last
        and last.family == piece.family
        and last.bucket == piece.bucket
        and last.to_port + 1 == piece.from_port
        and last.addresses == piece.addresses
        and bool(last.new_addresses) == bool(piece.new_addresses)
        and last.rules == piece.rules
    ):
        merged = addresses.union((*last.new_addresses, *piece.new_addresses))
        pieces[-1] = _Piece(
            last.family, last.bucket, last.from_port, piece.to_port, last.addresses, tuple(merged), last.rules
        )
    else:
        pieces.append(piece)


def grade(direction: Direction, piece: _Piece, scope: str, settings: CheckSettings) -> str:
    """The check a new exposure triggers (its severity comes from the settings)."""
    if direction == "egress":
        return "egress-opened"
    if scope == "narrow":
        return "narrow-public-exposure"
    kind = exposure_class(piece.bucket, piece.from_port, piece.to_port, settings)
    return f"internet-{kind}" if kind else "internet-unapproved-port"


def _peers(rules: Iterable[RuleKey | None]) -> tuple[str, ...]:
    return tuple(sorted({"default" if k is None else str(k.peer) for k in rules}))


@dataclass(slots=True)
class _Graded:
    exposure: Exposure
    piece: _Piece


_Row = tuple[Family, str, int, int, str, tuple[str, ...], bool, None, None]  # an Exposure after its group fields


@lru_cache(maxsize=8192)
def _steady(q: exposure.Question) -> tuple[_Row, ...]:
    """The exposures of a question nothing new has touched, worked out once for every group that asks it.

    A basic group's default egress to everywhere is left out: it is the cloud's normal, and
    listing it for every group would bury what rules actually grant.
    """
    live = exposure.answer(q)
    rows: list[_Row] = []
    for piece in compare(live, live, ()):
        peers = _peers(piece.rules)
        if peers != ("default",):
            scope = addresses.scope(piece.family, piece.addresses)
            rows.append(
                (piece.family, _protocol(piece.bucket), piece.from_port, piece.to_port, scope, peers, False, None, None)
            )
    return tuple(rows)


def _protocol(bucket: str) -> str:
    return bucket if bucket in _PUBLIC_PROTOCOLS else "other"


def group_exposures(
    group: Group,
    base: Group,
    accepted: Sequence[AcceptedExposure],
    settings: CheckSettings,
    same_rules: bool,
    lists: RegionLists = _NO_LISTS,
    unresolved: set[tuple[str, str]] | None = None,
    lists_moved: bool = False,
    sets: RegionSets | None = None,
) -> tuple[list[Exposure], list[_Graded]]:
    """The group's live exposures worth listing, and those of them that are new, graded.

    The live side reads prefix lists as they are now, the baseline side as the baseline records
    them (``lists``); ``lists_moved``: the group names a list whose entries differ. The live
    side's lists that could not be read go to ``unresolved``.

    ``sets``: the region's group sets when its membership is known; the group is then judged on
    every set of groups its interfaces sit in (a group with no member alone, on paper, with no
    interface to reach). Without them (membership unknown) it is judged alone, on paper.
    """
    same = same_rules and not lists_moved and (base.type, base.vpc_id) == (group.type, group.vpc_id)
    if sets is not None:
        views = sets.views(group, group if same else base, unresolved)
        if views is not None:
            return _set_exposures(group, views, accepted, settings)
    listed: list[Exposure] = []
    new: list[_Graded] = []
    live_qs = exposure.questions(group, lists.live, unresolved)
    base_qs = live_qs if same else exposure.questions(base, lists.baseline)
    for direction in DIRECTIONS:
        live_q, base_q = live_qs[direction], base_qs[direction]
        if base_q == live_q:  # the same internet-facing rules: nothing is new
            listed.extend(Exposure(group.account, group.region, group.id, direction, *row) for row in _steady(live_q))
            continue
        mine = [a for a in accepted if a.direction == direction]
        for piece in compare(exposure.answer(live_q), exposure.answer(base_q), mine):
            e = _exposure(group, direction, piece, settings)
            if e.new:
                new.append(_Graded(e, piece))
            if e.new or e.peers != ("default",):  # see _steady
                listed.append(e)
    if sets is not None:  # membership known, and the group has none: latent wherever it opens
        listed = [_on(e, (group.id,), (), False) for e in listed]
        new = [_Graded(_on(g.exposure, (group.id,), (), False), g.piece) for g in new]
    return listed, new


def _exposure(group: Group, direction: Direction, piece: _Piece, settings: CheckSettings) -> Exposure:
    scope = addresses.scope(piece.family, piece.addresses)
    is_new = bool(piece.new_addresses)
    check = grade(direction, piece, scope, settings) if is_new else None
    if check is not None and not settings.enabled(check):
        check, is_new = None, False
    return Exposure(
        account=group.account,
        region=group.region,
        security_group_id=group.id,
        direction=direction,
        family=piece.family,
        protocol=_protocol(piece.bucket),
        from_port=piece.from_port,
        to_port=piece.to_port,
        scope=scope,
        peers=_peers(piece.rules),
        new=is_new,
        severity=settings.severity(check) if check else None,
        check=check,
    )


def _on(e: Exposure, groups: tuple[str, ...], interfaces: tuple[str, ...], reachable: bool | None) -> Exposure:
    """The exposure as it applies to these interfaces: a new one none can reach is at most medium."""
    severity = e.severity
    if reachable is False and severity is not None and RANK[severity] > RANK[LATENT_CAP]:
        severity = LATENT_CAP
    return e._replace(security_group_ids=groups, interfaces=interfaces, reachable=reachable, severity=severity)


@lru_cache(maxsize=8192)
def _steady_pieces(q: exposure.Question) -> tuple[_Piece, ...]:
    live = exposure.answer(q)
    return tuple(compare(live, live, ()))


def _set_exposures(
    group: Group, views: Sequence[View], accepted: Sequence[AcceptedExposure], settings: CheckSettings
) -> tuple[list[Exposure], list[_Graded]]:
    """Exposures of a group with members: per set of groups on its interfaces, what the merged
    rules decide there. Listed: what the group's own rules grant there and whatever is new."""
    own = {r.key for r in group.rules}
    listed: list[Exposure] = []
    new: list[_Graded] = []
    for view in views:
        variant = view.variant
        ids = variant.interface_ids
        for direction in DIRECTIONS:
            live_q, base_q = view.live[direction], view.base[direction]
            if base_q == live_q:
                pieces = _steady_pieces(live_q)
            else:
                mine = [a for a in accepted if a.direction == direction]
                pieces = tuple(compare(exposure.answer(live_q), exposure.answer(base_q), mine))
            for piece in pieces:
                e = _exposure(group, direction, piece, settings)
                if not e.new and not any(k is not None and k in own for k in piece.rules):
                    continue  # granted by another group's rules (or the default): listed there
                reachable: bool | None = variant.reachable(piece.family)
                if direction == "egress" and not reachable:
                    reachable = None  # a NAT gateway may carry it out: not known to be latent
                e = _on(e, variant.groups, ids, reachable)
                if e.new:
                    new.append(_Graded(e, piece))
                listed.append(e)
    return listed, new


def _overlaps(rule: Rule, graded: _Graded, lists: Lists) -> bool:
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


def _attribute(changes: list[Change], new: list[_Graded], lists: Lists) -> dict[int, list[_Graded]]:
    """Which change caused which new exposure. Every new exposure lands on some change."""
    by_change: dict[int, list[_Graded]] = {}
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
    change: Change, check: str | None, exposures: list[Exposure], settings: CheckSettings, message: str
) -> Finding:
    checks = [check] if check and settings.enabled(check) else []
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
    lists: RegionLists = _NO_LISTS,
    unresolved: set[tuple[str, str]] | None = None,
    sets: RegionSets | None = None,
) -> tuple[list[Finding], list[Exposure]]:
    """Findings and live exposures of one group (live None: removed; base None: added).

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
        added = "managed-group" if live.managed else "new-group"
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
        findings.append(_finding(change, check, caused, settings, _message(change, caused)))
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
        lists = lists_of.get(where, _NO_LISTS)
        out[where] = RegionSets(m.index, live_by[where], base_by[where], lists.live, lists.baseline)
    return out


def assess(baseline: Baseline, live: Snapshot, settings: CheckSettings, now: datetime) -> Report:
    """The whole estate: every drift finding, every live exposure, every posture result."""
    today = now.date()
    errors = list(live.errors)
    unreadable_regions = {(e.account, e.region) for e in errors if not e.security_group_id}
    unreadable_groups = {(e.account, e.region, e.security_group_id) for e in errors if e.security_group_id}
    report = Report(generated_at=now, groups=0, errors=errors)
    seen_regions = live.regions
    lists_of = _region_lists(live, baseline)
    sets_of = _region_sets(live, baseline, lists_of)
    for key in sorted(live.groups.keys() | baseline.groups.keys()):
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
        report.groups += 1
        accepted = [a for a in baseline.accepted.get(key, ()) if a.active(today)]
        unresolved: set[tuple[str, str]] = set()
        findings, exposures = assess_group(
            lgroup,
            bgroup,
            accepted,
            settings,
            lists_of.get((account, region), _NO_LISTS),
            unresolved,
            sets_of.get((account, region)),
        )
        errors.extend(
            ScanError(
                account,
                region,
                _UNRESOLVED_CODES[kind],
                f"rules name {kind} {list_id}, whose entries were not read: what it lets in is unknown",
                key[2],
            )
            for kind, list_id in sorted(unresolved)
        )
        report.findings.extend(findings)
        report.exposures.extend(exposures)
        if lgroup is not None:
            report.posture.extend(posture.check_group(lgroup, exposures, settings))
        report.posture.extend(posture.expired(key, baseline.accepted.get(key, ()), today, settings))
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
    return report


__all__ = ["assess", "assess_group", "compare", "grade"]
