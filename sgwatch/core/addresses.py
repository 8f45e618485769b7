"""The public internet as integer intervals, per address family.

Special-purpose ranges (RFC 1918, CGNAT, loopback, link-local, multicast, documentation,
ULA, …) are not "the internet": a rule that lets them in exposes nothing to the world.
Intervals are inclusive ``(low, high)`` pairs of address integers, sorted and disjoint.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from functools import cache, lru_cache
from typing import Literal

from sgwatch.core.memo import Memo

Family = Literal["ipv4", "ipv6"]
Interval = tuple[int, int]

_SPECIAL_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
# Only 2000::/3 is allocated as global unicast; within it, documentation and ORCHID-style
# special blocks are not reachable hosts.
_GLOBAL_V6 = "2000::/3"
_SPECIAL_V6 = ("2001:db8::/32", "3fff::/20", "2001:10::/28", "2001:20::/28")

WIDE_V4 = 2**24  # a /8
WIDE_V6 = 2**96  # a /32


def parse_network(cidr: str) -> tuple[Family, Interval]:
    """A canonical CIDR's family and first and last address (see network_interval for a cached one)."""
    addr, _, bits = cidr.partition("/")
    parts = addr.split(".")
    digits = addr.replace(".", "")
    if len(parts) == 4 and bits.isdigit() and digits.isdigit() and digits.isascii():
        # The common case, canonical IPv4 text, without the ipaddress module's overhead.
        value = (int(parts[0]) << 24) | (int(parts[1]) << 16) | (int(parts[2]) << 8) | int(parts[3])
        host = (1 << (32 - int(bits))) - 1
        return "ipv4", (value & ~host & 0xFFFFFFFF, (value & ~host & 0xFFFFFFFF) | host)
    net = ipaddress.ip_network(cidr, strict=False)
    family: Family = "ipv4" if net.version == 4 else "ipv6"
    return family, (int(net.network_address), int(net.broadcast_address))


network_interval: Callable[[str], tuple[Family, Interval]] = Memo(parse_network).__getitem__


def subtract(intervals: Sequence[Interval], holes: Sequence[Interval]) -> list[Interval]:
    """``intervals`` minus ``holes``; both sorted and disjoint."""
    out: list[Interval] = []
    j = 0
    for low, high in intervals:
        cur = low
        while j < len(holes) and holes[j][1] < cur:
            j += 1
        k = j
        while k < len(holes) and holes[k][0] <= high:
            if holes[k][0] > cur:
                out.append((cur, holes[k][0] - 1))
            cur = max(cur, holes[k][1] + 1)
            k += 1
        if cur <= high:
            out.append((cur, high))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low <= high:
            out.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def union(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for low, high in sorted(intervals):
        if out and low <= out[-1][1] + 1:
            if high > out[-1][1]:
                out[-1] = (out[-1][0], high)
        else:
            out.append((low, high))
    return out


def size(intervals: Iterable[Interval]) -> int:
    return sum(high - low + 1 for low, high in intervals)


@cache
def public(family: Family) -> tuple[Interval, ...]:
    if family == "ipv4":
        holes = union(network_interval(c)[1] for c in _SPECIAL_V4)
        return tuple(subtract([(0, 2**32 - 1)], holes))
    holes = union(network_interval(c)[1] for c in _SPECIAL_V6)
    return tuple(subtract([network_interval(_GLOBAL_V6)[1]], holes))


@cache
def public_size(family: Family) -> int:
    return size(public(family))


def is_public_address(family: Family, address: int) -> bool:
    return any(low <= address <= high for low, high in public(family))


# Text prefixes of private IPv4 blocks, with the shortest prefix length that stays inside them:
# most rules in an estate are private, and this answers them without parsing.
_PRIVATE_TEXT = (("10.", 8), ("192.168.", 16), ("127.", 8))


def public_part(cidr: str) -> tuple[Family, tuple[Interval, ...]]:
    """The part of a CIDR block that lies on the public internet (often empty).

    Not cached: the evaluator caches it per peer (exposure.internet_part).
    """
    _, _, bits = cidr.partition("/")
    for prefix, shortest in _PRIVATE_TEXT:
        if cidr.startswith(prefix) and bits.isdigit() and int(bits) >= shortest:
            return "ipv4", ()
    family, (low, high) = parse_network(cidr)
    space, highs = public(family), _public_highs(family)
    out = []
    # Bisect to the first public interval that can overlap rather than walk the list.
    for i in range(bisect.bisect_left(highs, low), len(space)):
        s_low, s_high = space[i]
        if s_low > high:
            break
        out.append((max(low, s_low), min(high, s_high)))
    return family, tuple(out)


@cache
def _public_highs(family: Family) -> tuple[int, ...]:
    return tuple(high for _, high in public(family))


def scope(family: Family, intervals: Sequence[Interval]) -> Literal["any", "wide", "narrow"]:
    """How much of the public internet a set of public addresses covers."""
    total = size(intervals)
    if total >= public_size(family):
        return "any"
    return "wide" if total >= (WIDE_V4 if family == "ipv4" else WIDE_V6) else "narrow"


@lru_cache(maxsize=64)
def _sorted_ports(ports: frozenset[int]) -> tuple[int, ...]:
    return tuple(sorted(ports))


def any_port_in(ports: frozenset[int], low: int, high: int) -> bool:
    """Is any of ``ports`` within [low, high]?"""
    ordered = _sorted_ports(ports)
    i = bisect.bisect_left(ordered, low)
    return i < len(ordered) and ordered[i] <= high
