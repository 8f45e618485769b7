"""Which network interfaces sit in which security groups, and how the internet can reach them.

The cloud does not apply a security group on its own: it applies, per elastic network interface
(ENI), the rules of every group on that interface together. This module holds what a source
read about the interfaces of one (account, region) — or why it could not — and the index the
evaluator needs: the distinct group sets, the interfaces of each, and the sets each group is in.

Pure values, no I/O: the ECS wire format is read in :mod:`sgwatch.sources.interfaces`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

GroupSet = tuple[str, ...]  # the group ids of one interface, sorted and unique: the cloud merges them unordered

# What a scan needs to know membership; what a refused or missing read asks to grant.
MEMBERSHIP_PERMISSIONS: tuple[str, ...] = ("ecs:DescribeNetworkInterfaces", "ecs:DescribeInstances")


@dataclass(frozen=True, slots=True)
class Interface:
    """One ENI as the cloud reports it (or, for a classic-network instance, the instance itself)."""

    id: str  # eni-…; the instance id for a classic-network instance, which has no ENI
    instance_id: str  # "" when the ENI is not attached
    type: str  # the API's Type: Primary, Secondary, …; "Classic" for a classic-network instance
    security_group_ids: tuple[str, ...]  # in the API's order
    private_ipv4: tuple[str, ...] = ()
    # EIP on the ENI, EIPs on its private IPs, the instance's own public IP (primary ENI only)
    public_ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()

    @property
    def group_set(self) -> GroupSet:
        return group_set(self.security_group_ids)

    @property
    def has_public_ipv4(self) -> bool:
        return bool(self.public_ipv4)


def group_set(ids: Iterable[str]) -> GroupSet:
    return tuple(sorted(set(ids)))


class MembershipUnknown(NamedTuple):
    """Why the interfaces of a region are not known, and what to grant to know them."""

    code: str
    message: str
    permissions: tuple[str, ...] = MEMBERSHIP_PERMISSIONS


NOT_READ = MembershipUnknown(
    "MembershipNotRead",
    "no DescribeNetworkInterfaces and DescribeInstances answers for this region (a snapshot saved before "
    "sgwatch read membership, or membership was not read): groups are judged on paper",
)


@dataclass(frozen=True)  # no slots: the index is a cached property
class Membership:
    """The interfaces of one (account, region), or why they are unknown.

    Unknown is never "no members": a group whose region's membership is unknown is judged on
    paper, as if every member could be reached.
    """

    account: str
    region: str
    interfaces: tuple[Interface, ...] = ()
    unknown: MembershipUnknown | None = None

    @classmethod
    def known(cls, account: str, region: str, interfaces: Iterable[Interface]) -> Membership:
        return cls(account, region, tuple(sorted(interfaces, key=lambda i: i.id)))

    @classmethod
    def unknown_because(cls, account: str, region: str, why: MembershipUnknown) -> Membership:
        return cls(account, region, (), why)

    @property
    def is_known(self) -> bool:
        return self.unknown is None

    @cached_property
    def index(self) -> GroupSetIndex:
        """The group-set index, built once (thousands of interfaces share a few hundred sets)."""
        if self.unknown is not None:
            raise ValueError(f"membership of {self.account}/{self.region} is unknown: there is no index")
        return GroupSetIndex(self.interfaces)


class GroupSetIndex:
    """Interfaces by group set, and the sets and interfaces of each group."""

    def __init__(self, interfaces: Iterable[Interface]) -> None:
        by_set: dict[GroupSet, list[Interface]] = {}
        for interface in interfaces:
            by_set.setdefault(interface.group_set, []).append(interface)
        self.by_set: dict[GroupSet, tuple[Interface, ...]] = {s: tuple(v) for s, v in sorted(by_set.items())}

    @cached_property
    def _sets_of(self) -> dict[str, tuple[GroupSet, ...]]:
        out: dict[str, list[GroupSet]] = {}
        for gset in self.by_set:
            for gid in gset:
                out.setdefault(gid, []).append(gset)
        return {gid: tuple(sets) for gid, sets in out.items()}

    @property
    def sets(self) -> tuple[GroupSet, ...]:
        return tuple(self.by_set)

    def sets_of(self, group_id: str) -> tuple[GroupSet, ...]:
        """The distinct group sets that hold ``group_id``; () for a group with no member."""
        return self._sets_of.get(group_id, ())

    def interfaces_of(self, group_id: str) -> tuple[Interface, ...]:
        """Every interface in ``group_id``, whatever else it sits in, by id."""
        found = [i for gset in self.sets_of(group_id) for i in self.by_set[gset]]
        return tuple(sorted(found, key=lambda i: i.id))

    def interfaces_in(self, gset: GroupSet) -> tuple[Interface, ...]:
        return self.by_set.get(gset, ())


def lookup(memberships: Mapping[tuple[str, str], Membership], account: str, region: str) -> Membership:
    """The region's membership; a region nobody read is unknown, never empty."""
    found = memberships.get((account, region))
    return found if found is not None else Membership.unknown_because(account, region, NOT_READ)


def for_regions(
    memberships: Mapping[tuple[str, str], Membership], regions: Iterable[tuple[str, str]]
) -> list[Membership]:
    """One entry per region, sorted: what a report says about membership."""
    return [lookup(memberships, account, region) for account, region in sorted(set(regions) | set(memberships))]


__all__ = [
    "MEMBERSHIP_PERMISSIONS",
    "NOT_READ",
    "GroupSet",
    "GroupSetIndex",
    "Interface",
    "Membership",
    "MembershipUnknown",
    "for_regions",
    "group_set",
    "lookup",
]
