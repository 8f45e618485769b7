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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, NamedTuple

from sgwatch.core import addresses
from sgwatch.core.addresses import Family, Interval
from sgwatch.core.memo import Memo
from sgwatch.core.model import ALL_PORTS, PORTED, Direction, Group, Peer, PeerKind, Rule, RuleKey, span

Scope = Literal["any", "wide", "narrow"]

_FAMILY_KIND = {"ipv4": PeerKind.CIDR4, "ipv6": PeerKind.CIDR6}
_CIDR_KINDS = frozenset(_FAMILY_KIND.values())
_PORT_SPACE = ALL_PORTS
FAMILIES: tuple[Family, Family] = ("ipv4", "ipv6")


def buckets(family: Family, protocols: Iterable[str]) -> list[str]:
    """The protocols worth telling apart: the named ones, any number a rule names, the rest."""
    named = ["tcp", "udp", "icmp" if family == "ipv4" else "icmpv6", "gre"]
    numbers = sorted({p for p in protocols if p.isdigit()}, key=int)
    return [*named, *numbers, "other"]


def matches_bucket(rule_protocol: str, bucket: str) -> bool:
    return rule_protocol == "all" or rule_protocol == bucket


def default_accepts(group_type: str, direction: Direction) -> bool:
    return direction == "egress" and group_type == "normal"


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of ports over which the same public addresses are accepted by the same rules."""

    from_port: int
    to_port: int
    addresses: tuple[Interval, ...]
    rules: tuple[RuleKey | None, ...]  # the rules that grant it, in decision order; None: the type's default


# (family, protocol bucket) -> sorted, disjoint segments
ExposureMap = dict[tuple[Family, str], list[Segment]]

_Box = tuple[int, int, int, int]  # dport low, dport high, sport low, sport high
_Grant = tuple[int, int, int]  # dport low, dport high, position of the granting rule (-1: the default)
_Shape = tuple[int, str, tuple[_Box, ...]]  # what of a rule decides a painting: priority, policy, port boxes
PortRanges = tuple[tuple[int, int], ...]


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


def _rule_boxes(k: RuleKey, ported: bool, port_lists: Mapping[str, PortRanges]) -> tuple[_Box, ...]:
    """The destination x source port boxes a rule matches: one, or one per entry of its port range list."""
    if not ported:
        return ((0, 0, 0, 0),)
    sl, sh = span(k.src_from_port, k.src_to_port)
    if k.port_list:
        return tuple((dl, dh, sl, sh) for dl, dh in port_lists[k.port_list])
    return ((*span(k.from_port, k.to_port), sl, sh),)


def _shape(k: RuleKey, ported: bool, port_lists: Mapping[str, PortRanges]) -> _Shape:
    return (k.priority, k.policy, _rule_boxes(k, ported, port_lists))


@lru_cache(maxsize=1 << 16)
def _paint(shapes: tuple[_Shape, ...], ported: bool, default_accept: bool) -> tuple[_Grant, ...]:
    """Decide one address segment: the destination ports accepted, and which rule grants them.

    Takes the shapes of the rules covering the segment, in decision order, and answers with
    positions in that order (-1 for the group type's default). Only shapes decide, so every
    segment and group whose rules have the same ports, priorities and policies shares the work.
    """
    space: _Box = (*_PORT_SPACE, *_PORT_SPACE) if ported else (0, 0, 0, 0)
    undecided = [space]
    accepted: list[_Grant] = []
    # Rules of equal precedence decide together, so each of them is credited with what it grants.
    for _, tier in itertools.groupby(enumerate(shapes), key=lambda item: item[1][:2]):
        if not undecided:
            break
        cuts = list(tier)
        for pos, (_, policy, boxes) in cuts:
            if policy != "accept":
                continue
            for cut in boxes:
                for dl, dh, sl, sh in undecided:
                    il, ih = max(dl, cut[0]), min(dh, cut[1])
                    if il <= ih and max(sl, cut[2]) <= min(sh, cut[3]):
                        accepted.append((il, ih, pos))
        for _, (_, _, boxes) in cuts:
            for cut in boxes:
                undecided = [piece for box in undecided for piece in _box_minus(box, cut)]
    if default_accept:
        accepted.extend((dl, dh, -1) for dl, dh, _, _ in undecided)
    return tuple(accepted)


def precedence(key: RuleKey) -> tuple[int, bool, RuleKey]:
    """The order the cloud consults rules in: priority, then drop before accept (then content, to be stable)."""
    return (key.priority, key.policy != "drop", key)


def decision_order(rules: Sequence[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: (r.key.priority, r.key.policy != "drop", r.key))  # precedence, inlined


# A prefix list's entries as (family, public part) pairs, the families with no public part left out.
ListPart = tuple[tuple[Family, tuple[Interval, ...]], ...]


@dataclass(frozen=True, slots=True)
class Lists:
    """The entries of one account and region's prefix lists (canonical CIDRs) and port range
    lists (port ranges), by id: what a rule naming one of them matches."""

    prefix: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ports: Mapping[str, PortRanges] = field(default_factory=dict)


NO_LISTS = Lists()


class Question(NamedTuple):
    """What decides a group's exposure in one direction: its internet rules in decision order, its
    default, the public part of each prefix list those rules name, (id, family, addresses), and
    the entries of each port range list they name."""

    rules: tuple[RuleKey, ...]
    default_accept: bool
    lists: tuple[tuple[str, Family, tuple[Interval, ...]], ...] = ()
    port_lists: tuple[tuple[str, PortRanges], ...] = ()


def _internet_part(peer: Peer) -> tuple[Interval, ...]:
    return addresses.public_part(peer.value)[1] if peer.kind in _CIDR_KINDS else ()


internet_part: Callable[[Peer], tuple[Interval, ...]] = Memo(_internet_part).__getitem__
"""The public addresses a CIDR peer names (none for groups, prefix lists and private blocks)."""


def _list_part(entries: tuple[str, ...]) -> ListPart:
    by_family: dict[Family, list[Interval]] = {"ipv4": [], "ipv6": []}
    for cidr in entries:
        family, part = addresses.public_part(cidr)
        by_family[family].extend(part)
    return tuple((f, tuple(addresses.union(parts))) for f, parts in by_family.items() if parts)


list_part: Callable[[tuple[str, ...]], ListPart] = Memo(_list_part, limit=4096).__getitem__
"""The public addresses of a prefix list's entries, per family."""


def peer_public_part(peer: Peer, family: Family, lists: Lists) -> tuple[Interval, ...]:
    """The public addresses of this family a peer names; a prefix list through its entries."""
    if peer.kind is PeerKind.PREFIX_LIST:
        entries = lists.prefix.get(peer.value)
        return next((part for f, part in list_part(entries) if f == family), ()) if entries else ()
    if peer.kind is not _FAMILY_KIND[family]:
        return ()
    return internet_part(peer)


def questions(
    group: Group,
    lists: Lists = NO_LISTS,
    unresolved: set[tuple[str, str]] | None = None,
    applies: Callable[[RuleKey], bool] | None = None,
) -> dict[Direction, Question]:
    """Per direction, the rules that can match internet traffic, in decision order, and the default.

    In a VPC every rule governs internet traffic; in the classic network only ``internet``
    NIC rules do. Group peers never match a public address, and leaving out private peers too
    makes groups that differ only in private rules share one evaluation. A prefix list counts
    through its entries, a port range list likewise (``lists``); a list missing there is added
    to ``unresolved`` as ("prefix list" or "port range list", id), and its rules decide nothing
    here, so the caller must say the answer is incomplete.

    A rule naming its own side (a quintuple rule's local CIDR) applies to the members whose
    private addresses fall in it. Judged without the members, fail-closed: an accept counts as
    if it applied to every member (it exposes some), a drop is left out (it may not shield all).
    With the members known, ``applies`` says which of those rules apply to them
    (:mod:`sgwatch.core.groupsets`).
    """
    classic = not group.vpc_id
    chosen: dict[Direction, list[RuleKey]] = {"ingress": [], "egress": []}
    used: dict[Direction, dict[str, ListPart]] = {"ingress": {}, "egress": {}}
    ranges: dict[Direction, dict[str, PortRanges]] = {"ingress": {}, "egress": {}}
    prefix_list, of_prefix = PeerKind.PREFIX_LIST, lists.prefix  # every rule passes here: locals
    for k, _, _ in group.rules:
        if k.local and ((k.policy == "drop") if applies is None else not applies(k)):
            continue
        peer = k.peer
        if peer.kind is prefix_list:
            entries = of_prefix.get(peer.value)
            if entries is None:
                if unresolved is not None:
                    unresolved.add(("prefix list", peer.value))
                continue
            if not (part := list_part(entries)):
                continue
            used[k.direction][peer.value] = part
        elif not internet_part(peer):
            continue
        if classic and k.nic_type != "internet":
            continue
        if k.port_list:
            if (entries_of := lists.ports.get(k.port_list)) is None:
                if unresolved is not None:
                    unresolved.add(("port range list", k.port_list))
                continue
            ranges[k.direction][k.port_list] = entries_of
        chosen[k.direction].append(k)
    return {
        d: Question(
            tuple(sorted(keys, key=precedence)),
            default_accepts(group.type, d),
            tuple(sorted((pl, f, iv) for pl, part in used[d].items() for f, iv in part)),
            tuple(sorted(ranges[d].items())),
        )
        for d, keys in chosen.items()
    }


def evaluate(group: Group, direction: Direction, lists: Lists = NO_LISTS) -> ExposureMap:
    """Everything the public internet can reach (or be reached at) through this group."""
    return answer(questions(group, lists)[direction])


@lru_cache(maxsize=8192)
def answer(q: Question) -> ExposureMap:
    """The exposure a question decides. The map is shared between callers: do not change it."""
    # Cached on content: estates repeat the same public rules (80/443, an office /24) in many
    # groups, and the baseline and live sides of an unchanged group are the same question.
    ordered, default_accept, lists, port_lists = q
    of_list = {(pl, family): part for pl, family, part in lists}
    of_ports = dict(port_lists)
    result: ExposureMap = {}
    for family in FAMILIES:
        fam_rules = _family_rules(ordered, family, of_list)
        if not fam_rules and not default_accept:
            continue
        for bucket in buckets(family, (k.protocol for k, _ in fam_rules)):
            chosen = [(k, p) for k, p in fam_rules if k.protocol == bucket or k.protocol == "all"]  # matches_bucket
            if not chosen and not default_accept:
                continue
            # Kept even when empty: an evaluated bucket must not fall back to "other".
            result[(family, bucket)] = _evaluate_bucket(family, chosen, bucket in PORTED, default_accept, of_ports)
    return result


def _family_rules(
    ordered: Sequence[RuleKey], family: Family, of_list: Mapping[tuple[str, Family], tuple[Interval, ...]]
) -> list[tuple[RuleKey, tuple[Interval, ...]]]:
    """The rules naming public addresses of this family, in decision order, with those addresses."""
    kind = _FAMILY_KIND[family]
    out = []
    for key in ordered:
        peer = key.peer
        if peer.kind is kind:
            out.append((key, internet_part(peer)))
        elif peer.kind is PeerKind.PREFIX_LIST and (part := of_list.get((peer.value, family))):
            out.append((key, part))
    return out


def _evaluate_bucket(
    family: Family,
    chosen: Sequence[tuple[RuleKey, Sequence[Interval]]],
    ported: bool,
    default_accept: bool,
    port_lists: Mapping[str, PortRanges],
) -> list[Segment]:
    # Sweep the public address space; between two consecutive boundaries the set of rules
    # covering an address does not change, so stretches with the same set are decided by one
    # painting. Rules are named by their position in `chosen` (decision order) until the end.
    starts: dict[int, list[int]] = defaultdict(list)
    ends: dict[int, list[int]] = defaultdict(list)
    for pos, (_, part) in enumerate(chosen):
        for low, high in part:
            starts[low].append(pos)
            ends[high + 1].append(pos)
    # Rule parts are public addresses already, so only the default needs the public space's
    # own boundaries; without it, a stretch no rule covers decides nothing and is skipped.
    public = addresses.public(family) if default_accept else ()
    points = sorted({*starts, *ends, *(p for low, high in public for p in (low, high + 1))})
    active: set[int] = set()
    stretches: dict[tuple[int, ...], list[Interval]] = {}  # covering rules -> where they are exactly those
    pub_i = 0
    for n, point in enumerate(points[:-1]):
        for pos in ends.get(point, ()):
            active.discard(pos)
        active.update(starts.get(point, ()))
        if not default_accept:
            if not active:
                continue
        else:
            while pub_i < len(public) and public[pub_i][1] < point:
                pub_i += 1
            if pub_i >= len(public) or public[pub_i][0] > point:
                continue  # not public address space
        order = tuple(sorted(active))
        where = stretches.get(order)
        if where is None:
            stretches[order] = [(point, points[n + 1] - 1)]
        else:
            where.append((point, points[n + 1] - 1))
    shapes = [_shape(k, ported, port_lists) for k, _ in chosen]
    runs_of: dict[_Grant, list[Interval]] = defaultdict(list)  # accepted ports and granting rule -> addresses
    for order, where in stretches.items():
        for dl, dh, j in _paint(tuple(map(shapes.__getitem__, order)), ported, default_accept):
            runs_of[(dl, dh, order[j] if j >= 0 else -1)].extend(where)
    return _to_segments(
        {piece: addresses.union(runs) for piece, runs in runs_of.items()}, ported, [k for k, _ in chosen]
    )


def _to_segments(runs_of: dict[_Grant, list[Interval]], ported: bool, keys: list[RuleKey]) -> list[Segment]:
    # A sweep over destination ports: between two cuts the same accepted pieces are active.
    if not runs_of:
        return []
    starts: dict[int, list[_Grant]] = defaultdict(list)
    ends: dict[int, list[_Grant]] = defaultdict(list)
    for piece in runs_of:
        starts[piece[0]].append(piece)
        ends[piece[1] + 1].append(piece)
    active: set[_Grant] = set()
    out: list[Segment] = []
    last: tuple[int, ...] = ()
    for low, nxt in itertools.pairwise(sorted(starts.keys() | ends.keys())):
        active.difference_update(ends.get(low, ()))
        active.update(starts.get(low, ()))
        if not active:
            continue
        high = nxt - 1
        merged = tuple(addresses.union(run for piece in active for run in runs_of[piece]))
        # Decision order, the default (-1) last.
        granting = tuple(sorted({piece[2] for piece in active}, key=lambda p: p if p >= 0 else len(keys)))
        if out and out[-1].to_port + 1 == low and out[-1].addresses == merged and last == granting:
            out[-1] = Segment(out[-1].from_port, high, merged, out[-1].rules)
        else:
            out.append(Segment(low, high, merged, tuple(keys[p] if p >= 0 else None for p in granting)))
        last = granting
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
