"""Comparing exposures: what the live rules let in that the baseline's (and its accepted exposures) do not.

For one group, per direction, the live and baseline questions are answered by the evaluator
(:mod:`sgwatch.core.exposure`) and compared port by port; what only the live side lets in is
new, and graded. Where membership is known the questions are those of each set of groups on the
group's interfaces (:mod:`sgwatch.core.groupsets`), and each exposure says which interfaces it
applies to and whether one of them can be reached. Attributing new exposures to changes, and the
report, are :mod:`sgwatch.core.engine`'s.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from sgwatch.core import addresses, exposure
from sgwatch.core.addresses import Family, Interval
from sgwatch.core.checks import LATENT_CAP, RANK, CheckSettings, exposure_class
from sgwatch.core.diff import ListRef
from sgwatch.core.exposure import NO_LISTS, ExposureMap, Lists
from sgwatch.core.findings import Exposure
from sgwatch.core.groupsets import RegionSets, View
from sgwatch.core.model import DIRECTIONS, AcceptedExposure, Direction, Group, RuleKey

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


NO_REGION_LISTS = RegionLists()


@dataclass(frozen=True, slots=True)
class Piece:
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


def compare(live: ExposureMap, base: ExposureMap, accepted: Sequence[AcceptedExposure]) -> list[Piece]:
    """Live exposure, port by port, marked with what the baseline and exceptions do not cover."""
    pieces: list[Piece] = []
    if live is base:  # the evaluator's cache answered both sides: nothing is new
        return [
            Piece(family, bucket, s.from_port, s.to_port, s.addresses, (), s.rules)
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
                _append(pieces, Piece(family, bucket, low, high, seg.addresses, tuple(fresh), seg.rules))
    return pieces


def _append(pieces: list[Piece], piece: Piece) -> None:
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
        pieces[-1] = Piece(
            last.family, last.bucket, last.from_port, piece.to_port, last.addresses, tuple(merged), last.rules
        )
    else:
        pieces.append(piece)


def grade(direction: Direction, piece: Piece, scope: str, settings: CheckSettings) -> str:
    """The check a new exposure triggers (its severity comes from the settings)."""
    return grade_ports(direction, piece.bucket, piece.from_port, piece.to_port, scope, settings)


def grade_ports(
    direction: Direction, protocol: str, from_port: int, to_port: int, scope: str, settings: CheckSettings
) -> str:
    """The check an exposure of these ports triggers, whether new or standing (see :mod:`sgwatch.core.reach`)."""
    if direction == "egress":
        return "egress-opened"
    if scope == "narrow":
        return "narrow-public-exposure"
    kind = exposure_class(protocol, from_port, to_port, settings)
    return f"internet-{kind}" if kind else "internet-unapproved-port"


def _peers(rules: Iterable[RuleKey | None]) -> tuple[str, ...]:
    return tuple(sorted({"default" if k is None else str(k.peer) for k in rules}))


@dataclass(slots=True)
class Graded:
    """A new exposure, graded, with the piece it came from (what attribution needs)."""

    exposure: Exposure
    piece: Piece


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
    lists: RegionLists = NO_REGION_LISTS,
    unresolved: set[tuple[str, str]] | None = None,
    lists_moved: bool = False,
    sets: RegionSets | None = None,
) -> tuple[list[Exposure], list[Graded]]:
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
    new: list[Graded] = []
    live_qs = exposure.questions(group, lists.live, unresolved)
    base_qs = live_qs if same else exposure.questions(base, lists.baseline)
    # Membership known and the group has none: latent wherever it opens.
    alone: tuple[tuple[str, ...], tuple[str, ...], bool] | tuple[()] = () if sets is None else ((group.id,), (), False)
    for direction in DIRECTIONS:
        live_q, base_q = live_qs[direction], base_qs[direction]
        if base_q == live_q:  # the same internet-facing rules: nothing is new
            listed.extend(
                Exposure(group.account, group.region, group.id, direction, *row, *alone) for row in _steady(live_q)
            )
            continue
        mine = [a for a in accepted if a.direction == direction]
        for piece in compare(exposure.answer(live_q), exposure.answer(base_q), mine):
            e = _exposure(group, direction, piece, settings)
            if alone:
                e = _on(e, *alone)
            if e.new:
                new.append(Graded(e, piece))
            if e.new or e.peers != ("default",):  # see _steady
                listed.append(e)
    return listed, new


def _exposure(group: Group, direction: Direction, piece: Piece, settings: CheckSettings) -> Exposure:
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
def _steady_rows(q: exposure.Question) -> tuple[tuple[_Row, frozenset[RuleKey | None]], ...]:
    """As :func:`_steady`, with the rules granting each row: a set's question is asked by each of its groups."""
    live = exposure.answer(q)
    rows: list[tuple[_Row, frozenset[RuleKey | None]]] = []
    for p in compare(live, live, ()):
        scope = addresses.scope(p.family, p.addresses)
        row: _Row = (p.family, _protocol(p.bucket), p.from_port, p.to_port, scope, _peers(p.rules), False, None, None)
        rows.append((row, frozenset(p.rules)))
    return tuple(rows)


def _set_exposures(
    group: Group, views: Sequence[View], accepted: Sequence[AcceptedExposure], settings: CheckSettings
) -> tuple[list[Exposure], list[Graded]]:
    """Exposures of a group with members: per set of groups on its interfaces, what the merged
    rules decide there. Listed: what the group's own rules grant there and whatever is new."""
    own = {r.key for r in group.rules}
    listed: list[Exposure] = []
    new: list[Graded] = []
    for view in views:
        variant = view.variant
        ids = variant.interface_ids
        for direction in DIRECTIONS:
            reach: dict[Family, bool | None] = {f: variant.reachable(f) for f in exposure.FAMILIES}
            if direction == "egress":  # a NAT gateway may carry it out: never known to be latent
                reach = {f: r or None for f, r in reach.items()}
            live_q, base_q = view.live[direction], view.base[direction]
            if base_q == live_q:
                for row, granted in _steady_rows(live_q):
                    if not own.isdisjoint(granted):  # else granted by other groups' rules: listed there
                        where = (variant.groups, ids, reach[row[0]])
                        listed.append(Exposure(group.account, group.region, group.id, direction, *row, *where))
                continue
            mine = [a for a in accepted if a.direction == direction]
            for piece in compare(exposure.answer(live_q), exposure.answer(base_q), mine):
                e = _exposure(group, direction, piece, settings)
                if not e.new and own.isdisjoint(piece.rules):
                    continue  # granted by another group's rules (or the default): listed there
                e = _on(e, variant.groups, ids, reach[piece.family])
                if e.new:
                    new.append(Graded(e, piece))
                listed.append(e)
    return listed, new


__all__ = ["NO_REGION_LISTS", "Graded", "Piece", "RegionLists", "compare", "grade", "group_exposures"]
