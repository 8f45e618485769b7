"""The cloud's unit of evaluation: the set of groups on one network interface.

An interface in several groups is decided by the rules of all of them together: merged, ordered
by priority across groups, drop winning at equal priority, then the set's type default (every
group on one interface is of one type). This module turns a region's membership into those
merged questions, one per group set (and per local side, see :class:`Variant`), cached by set:
thousands of interfaces share a few hundred sets.

A group with no member, or in a region whose membership is unknown, is not here: it is judged
alone, on paper (:func:`sgwatch.core.exposure.questions`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from sgwatch.core.addresses import Family
from sgwatch.core.exposure import Lists, Question, default_accepts, precedence, questions
from sgwatch.core.membership import GroupSet, GroupSetIndex, Interface
from sgwatch.core.model import DIRECTIONS, Direction, Group, GroupType, RuleKey

Questions = dict[Direction, Question]


@dataclass(frozen=True, slots=True)
class Variant:
    """Interfaces of one group set to which the same rules apply.

    A quintuple rule applies only to the interfaces whose private addresses fall in its local
    side, so a set whose interfaces differ in that is split. Fail-closed for an interface with
    several addresses: an accept applies when any of them falls in its local CIDR (it exposes
    that address), a drop only when all of them do (it shields them all).
    """

    groups: GroupSet
    interfaces: tuple[Interface, ...]
    accept_in: frozenset[str] = frozenset()  # local CIDRs an accept rule of which applies here
    drop_in: frozenset[str] = frozenset()

    def applies(self, key: RuleKey) -> bool:
        if not key.local:
            return True
        return key.local in (self.accept_in if key.policy == "accept" else self.drop_in)

    @property
    def interface_ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.interfaces)

    def reachable(self, family: Family) -> bool:
        """Does some interface here have a public address of this family?

        IPv6: any IPv6 address counts. Whether the VPC's IPv6 gateway gives it internet bandwidth
        is not read, so an IPv6 address is taken as reachable (fail closed).
        """
        if family == "ipv4":
            return any(i.public_ipv4 for i in self.interfaces)
        return any(i.ipv6 for i in self.interfaces)


def _inside(addresses: Iterable[str], cidr: str) -> list[bool]:
    net = ipaddress.ip_network(cidr, strict=False)
    out = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            out.append(False)  # not an address: it falls in nothing
            continue
        out.append(address.version == net.version and address in net)
    return out


def variants(gset: GroupSet, interfaces: Sequence[Interface], local_cidrs: Iterable[str]) -> list[Variant]:
    """The set's interfaces, split by which local-sided rules apply to them (one variant without any)."""
    cidrs = sorted(set(local_cidrs))
    if not cidrs:
        return [Variant(gset, tuple(interfaces))]
    by_sign: dict[tuple[frozenset[str], frozenset[str]], list[Interface]] = {}
    for interface in interfaces:
        accept_in, drop_in = set(), set()
        for cidr in cidrs:
            own = interface.private_ipv4 if ipaddress.ip_network(cidr, strict=False).version == 4 else interface.ipv6
            inside = _inside(own, cidr)
            if any(inside):
                accept_in.add(cidr)
            if inside and all(inside):
                drop_in.add(cidr)
        by_sign.setdefault((frozenset(accept_in), frozenset(drop_in)), []).append(interface)
    return [Variant(gset, tuple(members), a, d) for (a, d), members in sorted(by_sign.items(), key=_first_id)]


def _first_id(item: tuple[object, list[Interface]]) -> str:
    return item[1][0].id


def set_type(groups: Iterable[Group]) -> tuple[GroupType, bool]:
    """The type whose default the set takes, and whether its groups mix types.

    The cloud does not put basic and advanced groups on one interface; data that does is judged
    fail-closed, with the basic default (egress accepted).
    """
    types = {g.type for g in groups}
    return ("enterprise" if types == {"enterprise"} else "normal"), len(types) > 1


def merge(parts: Sequence[Questions], group_type: GroupType) -> Questions:
    """One question per direction from the groups' own: their rules in one decision order, the set's default."""
    out: Questions = {}
    for d in DIRECTIONS:
        keys = {k for q in parts for k in q[d].rules}
        out[d] = Question(
            tuple(sorted(keys, key=precedence)),
            default_accepts(group_type, d),
            tuple(sorted({entry for q in parts for entry in q[d].lists})),
            tuple(sorted({entry for q in parts for entry in q[d].port_lists})),
        )
    return out


def evaluate_set(
    groups: Sequence[Group], variant: Variant, lists: Lists, unresolved: set[tuple[str, str]] | None = None
) -> Questions:
    """What decides the interfaces of ``variant`` when ``groups`` hold the set's rules."""
    gtype, _ = set_type(groups)
    return merge([questions(g, lists, unresolved, variant.applies) for g in groups], gtype)


class View(NamedTuple):
    """One variant as a group's drift sees it: who it applies to, and its questions live and as the baseline."""

    variant: Variant
    live: Questions
    base: Questions


class RegionSets:
    """A region's group sets, evaluated on demand and cached.

    Drift of one group on a set is judged with that group's baseline rules against its live
    ones, the other groups of the set as they are now, less the accept rules their baseline
    does not have: those are new exposures of their own group, judged there (so two groups that
    add the same accept both report it, and a group that changed nothing reports nothing).
    """

    def __init__(
        self,
        index: GroupSetIndex,
        live: Mapping[str, Group],
        baseline: Mapping[str, Group],
        live_lists: Lists,
        base_lists: Lists,
    ) -> None:
        self.index = index
        self.live = live
        self.baseline = baseline
        self.live_lists = live_lists
        self.base_lists = base_lists
        self.mixed: set[GroupSet] = set()  # sets whose groups mix basic and advanced
        self._variants: dict[GroupSet, list[Variant]] = {}
        self._settled: dict[str, Group] = {}
        # (set, variant's position, the group whose own rules lead ("*": none, all as settled),
        # "live" or "base") -> the set's merged questions
        self._cache: dict[tuple[GroupSet, int, str, str], Questions] = {}
        # (group id, "live" or "base") -> a settled group's own questions where no local side applies
        self._own: dict[tuple[str, str], Questions] = {}
        self._parts: dict[str, tuple[object, ...]] = {}

    def part(self, group_id: str) -> tuple[object, ...]:
        """All the evaluation of a set reads of ``group_id`` when it judges another group of the set.

        The group as settled (an accept its baseline lacks is its own drift, not the set's), its
        type (the set's default) and the local sides of its live and baseline rules (the set's
        variants). Equal parts: the other group's views are what they were (core.reuse).
        """
        found = self._parts.get(group_id)
        if found is None:
            live, base = self.live.get(group_id), self.baseline.get(group_id)
            local = frozenset(r.key.local for g in (live, base) if g is not None for r in g.rules if r.key.local)
            found = (None, None, local) if live is None else (self._settle(live), live.type, local)
            self._parts[group_id] = found
        return found

    def _settle(self, group: Group) -> Group:
        """The group as now, without the accept rules its baseline lacks."""
        found = self._settled.get(group.id)
        if found is None:
            base = self.baseline.get(group.id)
            if base is not None and base.rules == group.rules:
                found = group
            else:
                known = {r.key for r in base.rules} if base is not None else set()
                kept = tuple(r for r in group.rules if r.policy == "drop" or r.key in known)
                found = group if len(kept) == len(group.rules) else replace(group, rules=kept)
            self._settled[group.id] = found
        return found

    def _variants_of(self, gset: GroupSet) -> list[Variant]:
        found = self._variants.get(gset)
        if found is None:
            cidrs = {
                r.key.local
                for gid in gset
                for g in (self.live.get(gid), self.baseline.get(gid))
                if g is not None
                for r in g.rules
                if r.key.local
            }
            found = variants(gset, self.index.interfaces_in(gset), cidrs)
            self._variants[gset] = found
            if set_type(self.live[gid] for gid in gset if gid in self.live)[1]:
                self.mixed.add(gset)
        return found

    def _questions(self, key: tuple[GroupSet, int, str, str], variant: Variant, groups: Sequence[Group]) -> Questions:
        found = self._cache.get(key)
        if found is None:
            role = key[3]
            gtype, _ = set_type(groups)
            found = self._cache[key] = merge([self._own_questions(g, variant, role) for g in groups], gtype)
        return found

    def _own_questions(self, group: Group, variant: Variant, role: str) -> Questions:
        # A group sits in many sets (a shared guard in all of them): its own questions are the
        # same in every set where no local side applies, so they are worked out once.
        lists = self.live_lists if role == "live" else self.base_lists
        if variant.accept_in or variant.drop_in or self._settled.get(group.id) is not group:
            return questions(group, lists, None, variant.applies)
        found = self._own.get((group.id, role))
        if found is None:
            found = self._own[(group.id, role)] = questions(group, lists, None, variant.applies)
        return found

    def views(self, group: Group, base: Group, unresolved: set[tuple[str, str]] | None) -> list[View] | None:
        """Per variant holding ``group``, its questions live and as the baseline; None: no member."""
        sets = self.index.sets_of(group.id)
        if not sets:
            return None
        if unresolved is not None:
            questions(group, self.live_lists, unresolved)  # the group's own unread lists, said once
        out = []
        for gset in sets:
            # A group an interface names but the scan did not read contributes nothing: its own
            # report says it could not be read.
            others = [self._settle(self.live[gid]) for gid in gset if gid != group.id and gid in self.live]
            # A group without new accepts is, in the set, as settled as the others: every such
            # group of the set shares one evaluation.
            lead = "*" if self._settle(group) is group else group.id
            for n, variant in enumerate(self._variants_of(gset)):
                live_qs = self._questions((gset, n, lead, "live"), variant, [group, *others])
                base_qs = (
                    live_qs if base is group else self._questions((gset, n, group.id, "base"), variant, [base, *others])
                )
                out.append(View(variant, live_qs, base_qs))
        return out


__all__ = ["RegionSets", "Variant", "View", "evaluate_set", "merge", "set_type", "variants"]
