"""Effective exposure: exactly what the public internet can reach, by the cloud's own rules.

For a group and a direction, every (protocol, port, public address) is decided as the cloud
decides a packet: among the matching rules the smallest ``Priority`` wins, ``drop`` wins at
equal priority, and when nothing matches the group type's default applies. Instead of probing
points, the evaluator paints boxes: rules are taken in decision order and each claims the part
of the still-undecided space it covers. The space is split along the address axis at every rule
boundary (a sweep), and within one address segment into destination x source port boxes, so a
group of 1,000 public rules costs thousands of box operations, not billions of probes.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sgwatch.core import addresses
from sgwatch.core.addresses import Family, Interval
from sgwatch.core.model import NO_PORTS, PORTED, Direction, Group, PeerKind, Rule

Scope = Literal["any", "wide", "narrow"]
DEFAULT = -1  # stands in for a rule index when the group type's default decided

_FAMILY_KIND = {"ipv4": PeerKind.CIDR4, "ipv6": PeerKind.CIDR6}
_PORT_SPACE = (1, 65535)
FAMILIES: tuple[Family, Family] = ("ipv4", "ipv6")


def buckets(family: Family, rules: Iterable[Rule]) -> list[str]:
    """The protocols worth telling apart: the named ones, any number a rule names, the rest."""
    named = ["tcp", "udp", "icmp" if family == "ipv4" else "icmpv6", "gre"]
    numbers = sorted({r.protocol for r in rules if r.protocol.isdigit()}, key=int)
    return [*named, *numbers, "other"]


def matches_bucket(rule_protocol: str, bucket: str) -> bool:
    return rule_protocol == "all" or rule_protocol == bucket


def default_accepts(group: Group, direction: Direction) -> bool:
    return direction == "egress" and group.type == "normal"


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of ports over which the same public addresses are accepted by the same rules."""

    from_port: int
    to_port: int
    addresses: tuple[Interval, ...]
    rules: frozenset[int]  # indices into the group's rules; DEFAULT for the type's default


# (family, protocol bucket) -> sorted, disjoint segments
ExposureMap = dict[tuple[Family, str], list[Segment]]

_Box = tuple[int, int, int, int]  # dport low, dport high, sport low, sport high


def _box_minus(box: _Box, cut: _Box) -> list[_Box]:
    dl, dh, sl, sh = box
    cl, ch, xl, xh = cut
    if cl > dh or ch < dl or xl > sh or xh < sl:
        return [box]
    pieces: list[_Box] = []
    if dl < cl:
        pieces.append((dl, cl - 1, sl, sh))
    if ch < dh:
        pieces.append((ch + 1, dh, sl, sh))
    il, ih = max(dl, cl), min(dh, ch)
    if sl < xl:
        pieces.append((il, ih, sl, xl - 1))
    if xh < sh:
        pieces.append((il, ih, xh + 1, sh))
    return pieces


def _rule_box(rule: Rule, ported: bool) -> _Box:
    if not ported:
        return (0, 0, 0, 0)
    k = rule.key
    dport = _PORT_SPACE if (k.from_port, k.to_port) == NO_PORTS or k.port_list else (k.from_port, k.to_port)
    sport = _PORT_SPACE if (k.src_from_port, k.src_to_port) == NO_PORTS else (k.src_from_port, k.src_to_port)
    return (dport[0], dport[1], sport[0], sport[1])


def _paint(ordered: Sequence[tuple[int, Rule]], ported: bool, default_accept: bool) -> list[tuple[int, int, int]]:
    """Decide one address segment; returns accepted (dport low, dport high, rule index)."""
    space: _Box = (*_PORT_SPACE, *_PORT_SPACE) if ported else (0, 0, 0, 0)
    undecided = [space]
    accepted: list[tuple[int, int, int]] = []
    for index, rule in ordered:
        if not undecided:
            break
        cut = _rule_box(rule, ported)
        remaining: list[_Box] = []
        for box in undecided:
            dl, dh, sl, sh = box
            il, ih = max(dl, cut[0]), min(dh, cut[1])
            xl, xh = max(sl, cut[2]), min(sh, cut[3])
            if il > ih or xl > xh:
                remaining.append(box)
                continue
            if rule.policy == "accept":
                accepted.append((il, ih, index))
            remaining.extend(_box_minus(box, cut))
        undecided = remaining
    if default_accept:
        accepted.extend((dl, dh, DEFAULT) for dl, dh, _, _ in undecided)
    return accepted


def decision_order(rules: Sequence[Rule]) -> list[tuple[int, Rule]]:
    """Rules in the order the cloud consults them: priority, then drop before accept."""
    return sorted(enumerate(rules), key=lambda ir: (ir[1].priority, ir[1].policy != "drop", ir[0]))


def internet_rules(group: Group, direction: Direction) -> list[tuple[int, Rule]]:
    """The rules that can match internet traffic, in decision order.

    In a VPC every rule governs internet traffic; in the classic network only ``internet``
    NIC rules do. Group and prefix-list peers never match a public address.
    """
    classic = not group.vpc_id
    chosen = [
        r
        for r in group.rules
        if r.direction == direction and r.peer.is_cidr and not (classic and r.key.nic_type != "internet")
    ]
    # Indices must point into group.rules, so re-enumerate against the full tuple.
    position = {id(r): i for i, r in enumerate(group.rules)}
    return sorted(
        ((position[id(r)], r) for r in chosen),
        key=lambda ir: (ir[1].priority, ir[1].policy != "drop", ir[0]),
    )


def evaluate(group: Group, direction: Direction) -> ExposureMap:
    """Everything the public internet can reach (or be reached at) through this group."""
    ordered = internet_rules(group, direction)
    default_accept = default_accepts(group, direction)
    result: ExposureMap = {}
    for family in FAMILIES:
        kind = _FAMILY_KIND[family]
        fam_rules: list[tuple[int, Rule, Sequence[Interval]]] = []
        for index, rule in ordered:
            if rule.peer.kind is not kind:
                continue
            _, part = addresses.public_part(rule.peer.value)
            if part:
                fam_rules.append((index, rule, part))
        if not fam_rules and not default_accept:
            continue
        for bucket in buckets(family, (r for _, r, _ in fam_rules)):
            chosen = [(i, r, p) for i, r, p in fam_rules if matches_bucket(r.protocol, bucket)]
            if not chosen and not default_accept:
                continue
            # Kept even when empty: an evaluated bucket must not fall back to "other".
            result[(family, bucket)] = _evaluate_bucket(family, chosen, bucket in PORTED, default_accept)
    return result


def _evaluate_bucket(
    family: Family,
    chosen: list[tuple[int, Rule, Sequence[Interval]]],
    ported: bool,
    default_accept: bool,
) -> list[Segment]:
    # Sweep the public address space; between two consecutive boundaries the set of rules
    # covering an address does not change, so one painting decides the whole stretch.
    starts: dict[int, list[int]] = defaultdict(list)
    ends: dict[int, list[int]] = defaultdict(list)
    for pos, (_, _, part) in enumerate(chosen):
        for low, high in part:
            starts[low].append(pos)
            ends[high + 1].append(pos)
    public = addresses.public(family)
    points = sorted({*starts, *ends, *(p for low, high in public for p in (low, high + 1))})
    active: set[int] = set()
    memo: dict[frozenset[int], list[tuple[int, int, int]]] = {}
    by_ports: dict[tuple[int, int, int], list[Interval]] = defaultdict(list)
    pub_i = 0
    for n, point in enumerate(points[:-1]):
        for pos in ends.get(point, ()):
            active.discard(pos)
        active.update(starts.get(point, ()))
        seg = (point, points[n + 1] - 1)
        while pub_i < len(public) and public[pub_i][1] < seg[0]:
            pub_i += 1
        if pub_i >= len(public) or public[pub_i][0] > seg[0]:
            continue  # not public address space
        key = frozenset(active)
        painted = memo.get(key)
        if painted is None:
            ordered = [(chosen[p][0], chosen[p][1]) for p in sorted(active)]
            painted = memo[key] = _paint(ordered, ported, default_accept)
        for piece in painted:
            by_ports[piece].append(seg)
    return _to_segments(by_ports, ported)


def _to_segments(by_ports: dict[tuple[int, int, int], list[Interval]], ported: bool) -> list[Segment]:
    if not by_ports:
        return []
    cuts = sorted({p for (low, high, _) in by_ports for p in (low, high + 1)})
    pieces = sorted(by_ports.items())
    out: list[Segment] = []
    for low, nxt in itertools.pairwise(cuts):
        high = nxt - 1
        addrs: list[Interval] = []
        rules: set[int] = set()
        for (pl, ph, index), segs in pieces:
            if pl <= low and high <= ph:
                addrs.extend(segs)
                rules.add(index)
        if not addrs:
            continue
        merged = tuple(addresses.union(addrs))
        frozen = frozenset(rules)
        if out and out[-1].to_port + 1 == low and out[-1].addresses == merged and out[-1].rules == frozen:
            out[-1] = Segment(out[-1].from_port, high, merged, frozen)
        else:
            out.append(Segment(low, high, merged, frozen))
    if not ported:
        return [Segment(-1, -1, s.addresses, s.rules) for s in out]
    return out


def accepts(exposure: ExposureMap, family: Family, protocol: str, port: int, address: int) -> bool:
    """Point query, for tests and the oracle: is this packet from the internet accepted?"""
    bucket = protocol if (family, protocol) in exposure else "other"
    for seg in exposure.get((family, bucket), ()):
        if (seg.from_port == -1 or seg.from_port <= port <= seg.to_port) and any(
            low <= address <= high for low, high in seg.addresses
        ):
            return True
    return False
