"""The normalised rule model every other part of sgwatch speaks.

Values arrive from the cloud in several spellings (``Accept``/``accept``, ``TCP``/``6``, ``""``
for absent); :mod:`sgwatch.core.normalize` turns them into these frozen values once, so the
diff and the evaluator compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, NamedTuple

from sgwatch.core.membership import Membership

if TYPE_CHECKING:
    from sgwatch.core.managed import Managed

Direction = Literal["ingress", "egress"]
Policy = Literal["accept", "drop"]
GroupType = Literal["normal", "enterprise"]
NicType = Literal["intranet", "internet"]

DIRECTIONS: tuple[Direction, Direction] = ("ingress", "egress")

# Protocols with ports; every other protocol is matched on the protocol alone.
PORTED = frozenset({"tcp", "udp"})
ALL_PORTS = (1, 65535)
NO_PORTS = (-1, -1)


def span(low: int, high: int) -> tuple[int, int]:
    """The ports a held range matches: ``-1/-1`` (no ports named) is every port.

    How each spelling is held is decided once, by :func:`sgwatch.core.normalize.port_range`.
    """
    return ALL_PORTS if low == -1 else (low, high)


class PeerKind(StrEnum):
    CIDR4 = "cidr4"
    CIDR6 = "cidr6"
    GROUP = "group"
    PREFIX_LIST = "prefix_list"


class Peer(NamedTuple):
    """The other side of a rule: an address block, a security group or a prefix list."""

    kind: PeerKind
    value: str  # canonical CIDR ("0.0.0.0/0", "2001:db8::/32"), group id or prefix-list id
    owner: str = ""  # owner account of a referenced group, "" when it is the same account

    def __str__(self) -> str:
        if self.kind is PeerKind.GROUP and self.owner:
            return f"{self.owner}/{self.value}"
        return self.value

    @property
    def is_cidr(self) -> bool:
        return self.kind in (PeerKind.CIDR4, PeerKind.CIDR6)


# Tuples, not dataclasses: a million of them are hashed, compared and sorted per scan, and
# tuple operations run in C.
class RuleKey(NamedTuple):
    """A rule's identity for the diff: its content, without id or description."""

    direction: Direction
    protocol: str  # tcp, udp, icmp, icmpv6, gre, all, or an IANA number as text
    from_port: int
    to_port: int
    src_from_port: int  # -1/-1 when no SourcePortRange is set
    src_to_port: int
    peer: Peer
    policy: Policy
    priority: int
    nic_type: NicType
    port_list: str = ""  # PortRangeListId, when the rule's ports come from a port list
    # The rule's own side (quintuple rules): the canonical CIDR the member's private address
    # must fall in, "" when the rule applies to every member. Last, so that keys without one
    # sort, and are named in finding ids, as before the field existed.
    local: str = ""


class Rule(NamedTuple):
    key: RuleKey
    description: str = ""
    rule_id: str = ""

    # Shorthands: the evaluator and the renderers read these a great deal.
    @property
    def direction(self) -> Direction:
        return self.key.direction

    @property
    def protocol(self) -> str:
        return self.key.protocol

    @property
    def policy(self) -> Policy:
        return self.key.policy

    @property
    def priority(self) -> int:
        return self.key.priority

    @property
    def peer(self) -> Peer:
        return self.key.peer

    @property
    def local(self) -> str:
        return self.key.local


GroupKey = tuple[str, str, str]  # (account, region, security_group_id)


@dataclass(frozen=True, slots=True)
class Group:
    account: str
    region: str
    id: str
    name: str = ""
    type: GroupType = "normal"
    vpc_id: str = ""
    inner_access_policy: Policy = "accept"
    description: str = ""
    rules: tuple[Rule, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    # Created and managed by a cloud service (DescribeSecurityGroups' ServiceManaged): users
    # cannot change its rules.
    managed: bool = False

    @property
    def key(self) -> GroupKey:
        return (self.account, self.region, self.id)


@dataclass(frozen=True, slots=True)
class ScanError:
    """Something a source could not read. It makes a report incomplete, never empty."""

    account: str
    region: str
    code: str
    message: str
    security_group_id: str = ""


@dataclass(slots=True)
class Snapshot:
    """The live state as one source saw it.

    ``listed`` holds, per (account, region), the group ids the region's DescribeSecurityGroups
    listing named. Only a region with a listing can prove that a group is gone; without one a
    missing group is unknown, not removed.
    """

    groups: dict[GroupKey, Group] = field(default_factory=dict)
    listed: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    errors: list[ScanError] = field(default_factory=list)
    # Groups read without a DescribeSecurityGroups listing: their type is unknown.
    untyped: set[GroupKey] = field(default_factory=set)
    # The (account, region) pairs the source was asked to cover; None: whatever it holds.
    # Baseline groups outside the scope are not compared (a scan of one region is not a
    # report that every other region is empty).
    scope: frozenset[tuple[str, str]] | None = None
    # (account, region, prefix-list id) -> the list's entries as canonical CIDRs. A rule's
    # prefix list that is not here could not be read: its exposure is unknown.
    prefix_lists: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)
    # (account, region, port-range-list id) -> its entries as (from, to) port ranges; likewise.
    port_lists: dict[tuple[str, str, str], tuple[tuple[int, int], ...]] = field(default_factory=dict)
    # (account, region) -> the interfaces read there, or why not. A region not here is unknown
    # (membership.lookup), never "no members": its groups are judged on paper.
    membership: dict[tuple[str, str], Membership] = field(default_factory=dict)

    @property
    def regions(self) -> set[tuple[str, str]]:
        return {(g.account, g.region) for g in self.groups.values()} | set(self.listed)

    @property
    def complete(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class AcceptedExposure:
    """An internet exposure the team accepts on purpose (a web tier's 80/443), with who and why."""

    direction: Direction
    protocol: str  # as a rule's protocol: tcp, udp, icmp, all, …
    from_port: int
    to_port: int
    peers: tuple[str, ...]  # public CIDRs it may come from; empty means the whole internet
    reason: str
    owner: str
    expires: date | None = None

    def active(self, today: date) -> bool:
        return self.expires is None or today <= self.expires


@dataclass(slots=True)
class Baseline:
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    accepted: dict[GroupKey, tuple[AcceptedExposure, ...]] = field(default_factory=dict)
    # (account, region, prefix-list id) -> the entries the team expects, as canonical CIDRs. A
    # list not here is read as it is now: rules naming it are compared, its entries are not.
    prefix_lists: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)
    # (account, region, port-range-list id) -> the port ranges the team expects; likewise.
    port_lists: dict[tuple[str, str, str], tuple[tuple[int, int], ...]] = field(default_factory=dict)
    # Groups a Terraform state manages, placed on each scan by id (sgwatch.core.managed).
    terraform: Managed | None = None
