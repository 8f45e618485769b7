"""One canonical value for each spelling of a rule's parts, shared by the API reader and baselines.

The ECS wire format (which ``Permission`` field holds what) lives in
:mod:`sgwatch.sources.ecs_rules`; this module only says what a value means. Raises
:class:`NormalizeError` with the value at fault; callers add the file and entry.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from sgwatch.core.memo import Memo
from sgwatch.core.model import ALL_PORTS, NO_PORTS, PORTED, GroupType, NicType, Peer, PeerKind, Policy

# IANA numbers some regions accept in IpProtocol.
_PROTOCOL_NUMBERS = {"-1": "all", "1": "icmp", "6": "tcp", "17": "udp", "47": "gre", "58": "icmpv6"}
_PROTOCOL_NAMES = {"all", "tcp", "udp", "icmp", "icmpv6", "gre"}


class NormalizeError(ValueError):
    """A value the cloud (or a baseline) gave that no rule can hold."""


def protocol(value: object) -> str:
    text = str(value).strip().lower()
    if text in _PROTOCOL_NAMES:
        return text
    if text in _PROTOCOL_NUMBERS:
        return _PROTOCOL_NUMBERS[text]
    if text.isdigit() and 0 <= int(text) <= 255:
        return str(int(text))
    raise NormalizeError(f"unknown protocol {value!r} (expected tcp, udp, icmp, icmpv6, gre, all or 0-255)")


def policy(value: object) -> Policy:
    text = str(value or "accept").strip().lower()
    if text == "accept":
        return "accept"
    if text == "drop":
        return "drop"
    raise NormalizeError(f"unknown policy {value!r} (expected accept or drop)")


def priority(value: object) -> int:
    if value is None or value == "":
        return 1  # the API's default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise NormalizeError(f"priority {value!r} is not a whole number") from None
    if not 1 <= number <= 1000:
        raise NormalizeError(f"priority {number} is out of range (1-100, up to 1000 where raised)")
    return number


def nic_type(value: object) -> NicType:
    text = str(value or "intranet").strip().lower()
    if text in ("intranet", "internet"):
        return text  # type: ignore[return-value]
    raise NormalizeError(f"unknown NicType {value!r} (expected intranet or internet)")


def group_type(value: object) -> GroupType:
    text = str(value or "normal").strip().lower()
    if text in ("normal", "basic"):
        return "normal"
    if text in ("enterprise", "advanced"):
        return "enterprise"
    raise NormalizeError(f"unknown security group type {value!r} (expected normal or enterprise)")


def _parse_range(value: object) -> tuple[int, int] | None:
    """``"22/22"``, ``"22-23"``, ``"22"`` or ``-1/-1`` as a pair; None when no ports are written."""
    text = str(value or "").strip()
    if not text:
        return None
    sep = "/" if "/" in text else ("-" if text.count("-") == 1 and not text.startswith("-") else None)
    parts = text.split(sep) if sep else [text, text]
    try:
        low, high = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise NormalizeError(f"port range {value!r} is not 'from/to'") from None
    if (low, high) != NO_PORTS and not (1 <= low <= high <= 65535):
        raise NormalizeError(f"port range {value!r} is out of 1-65535 or reversed")
    return low, high


def port_range(value: object, proto: str, *, source: bool = False) -> tuple[int, int]:
    """What a rule's ports mean, decided here for the API reader, baselines and every pass alike.

    TCP and UDP: ports omitted, ``-1/-1`` and ``1/65535`` all mean every port, held as
    ``1/65535`` (``-1/-1``, "no restriction", for source ports). ICMP, ICMPv6, GRE and numbered
    protocols have no ports: held as ``-1/-1`` whatever is written. ALL: every-port spellings are
    ``-1/-1``; a narrower range limits its TCP and UDP part (the API itself sends only ``-1/-1``).
    A held ``-1/-1`` matches every port: :func:`sgwatch.core.model.span`.
    """
    ports = _parse_range(value)
    if ports is None or ports in (NO_PORTS, ALL_PORTS):
        return ALL_PORTS if proto in PORTED and not source else NO_PORTS
    return ports if proto in PORTED or proto == "all" else NO_PORTS


def list_port_range(value: object) -> tuple[int, int]:
    """One entry of a port range list: a TCP/UDP destination range, ``-1/-1`` every port."""
    return port_range(value, "tcp")


_V4 = re.compile(
    r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\."
    r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:/(3[0-2]|[12]?\d))?"
)


def _fast_v4(text: str) -> Peer | None:
    """Canonical IPv4 CIDR without the ipaddress module, which costs ~20 µs a call."""
    m = _V4.fullmatch(text)
    if m is None:
        return None
    a, b, c, d, bits = m.groups()
    prefix = 32 if bits is None else int(bits)
    value = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    network = value & (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    if network == value and bits is not None:
        return Peer(PeerKind.CIDR4, text)  # already canonical: the common case
    return Peer(
        PeerKind.CIDR4, f"{network >> 24}.{(network >> 16) & 255}.{(network >> 8) & 255}.{network & 255}/{prefix}"
    )


def _cidr(value: str) -> Peer:
    text = value.strip()
    fast = _fast_v4(text)
    if fast is not None:
        return fast
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise NormalizeError(f"{value!r} is not an IP address or CIDR block") from None
    kind = PeerKind.CIDR4 if net.version == 4 else PeerKind.CIDR6
    return Peer(kind, str(net))


cidr: Callable[[str], Peer] = Memo(_cidr).__getitem__


def peer_from_text(value: str) -> Peer:
    """The baseline's one-string peer: a CIDR, ``sg-…``, ``account/sg-…`` or ``pl-…``."""
    text = value.strip()
    if text.startswith("sg-"):
        return Peer(PeerKind.GROUP, text)
    if "/sg-" in text:
        owner, _, group = text.partition("/")
        return Peer(PeerKind.GROUP, group, owner)
    if text.startswith("pl-"):
        return Peer(PeerKind.PREFIX_LIST, text)
    return cidr(text)
