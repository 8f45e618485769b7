"""Turn the cloud's spellings of a rule into one :class:`~sgwatch.core.model.Rule`.

Raises :class:`NormalizeError` with the field at fault; callers add the file and entry.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import Any

from sgwatch.core.memo import Memo
from sgwatch.core.model import (
    ALL_PORTS,
    NO_PORTS,
    PORTED,
    Direction,
    GroupType,
    NicType,
    Peer,
    PeerKind,
    Policy,
    Rule,
    RuleKey,
)

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


def port_range(value: object, proto: str, *, source: bool = False) -> tuple[int, int]:
    """Parse ``"22/22"``; ``-1/-1`` means "every port" and is how portless protocols say it."""
    text = str(value or "").strip()
    if not text:
        if source:
            return NO_PORTS
        return NO_PORTS if proto not in PORTED else (1, 65535)
    sep = "/" if "/" in text else ("-" if text.count("-") == 1 and not text.startswith("-") else None)
    parts = text.split(sep) if sep else [text, text]
    try:
        low, high = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise NormalizeError(f"port range {value!r} is not 'from/to'") from None
    if (low, high) == NO_PORTS:
        return NO_PORTS
    if not (1 <= low <= high <= 65535):
        raise NormalizeError(f"port range {value!r} is out of 1-65535 or reversed")
    if proto not in PORTED and proto != "all" and not source:
        # The API answers -1/-1 for these; a stray range carries no meaning.
        return NO_PORTS
    return low, high


def list_port_range(value: object) -> tuple[int, int]:
    """One entry of a port range list; ``-1/-1`` there means every port, as in a TCP rule."""
    ports = port_range(value, "tcp")
    return ALL_PORTS if ports == NO_PORTS else ports


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


def _text(value: object) -> str:
    if not value:
        return ""
    return value.strip() if isinstance(value, str) else str(value).strip()


# The peer fields of each direction: CIDR, IPv6 CIDR, group, group owner, prefix list.
_PEER_FIELDS: dict[str, tuple[str, str, str, str, str]] = {
    direction: (f"{s}CidrIp", f"Ipv6{s}CidrIp", f"{s}GroupId", f"{s}GroupOwnerAccount", f"{s}PrefixListId")
    for direction, s in (("ingress", "Source"), ("egress", "Dest"))
}


# Shared: a referenced group appears in many rules, and a NamedTuple's __new__ runs in Python.
def _same_account_group(group: str) -> Peer:
    return Peer(PeerKind.GROUP, group)


_group_peer: Callable[[str], Peer] = Memo(_same_account_group).__getitem__


def _peer(get: Callable[[str], Any], direction: Direction, account: str) -> Peer:
    f_v4, f_v6, f_group, f_owner, f_prefix = _PEER_FIELDS[direction]
    # Most of these fields are "" (the API sends every field): test before cleaning.
    group = get(f_group)
    if group and (group := _text(group)):
        # The owner is "" for the same account; the API sometimes echoes our own id.
        owner = get(f_owner)
        if not owner or (owner := _text(owner)) == account:
            return _group_peer(group)
        return Peer(PeerKind.GROUP, group, owner)
    v4 = get(f_v4)
    if v4 and (v4 := _text(v4)):
        return cidr(v4)
    v6 = get(f_v6)
    if v6 and (v6 := _text(v6)):
        return cidr(v6)
    prefix = _text(get(f_prefix))
    if prefix:
        return Peer(PeerKind.PREFIX_LIST, prefix)
    side = "source" if direction == "ingress" else "destination"
    raise NormalizeError(f"rule has no {side} peer (CIDR, IPv6 CIDR, group or prefix list)")


# The cloud's values come from small sets; caching each parse turns a million rules into
# a million dictionary lookups.
_protocol: Callable[[object], str] = Memo(protocol).__getitem__
_policy: Callable[[object], Policy] = Memo(policy).__getitem__
_priority: Callable[[object], int] = Memo(priority).__getitem__
_nic_type: Callable[[object], NicType] = Memo(nic_type).__getitem__
_port_range = lru_cache(maxsize=1 << 18)(port_range)  # two arguments: a memo would build a key tuple as this does
_DIRECTION: dict[object, Direction] = {
    "ingress": "ingress",
    "egress": "egress",
    "Ingress": "ingress",
    "Egress": "egress",
    "INGRESS": "ingress",
    "EGRESS": "egress",
}


# tuple.__new__ straight from C: a NamedTuple's own __new__ is a Python function, and a
# million rules make that a second.
_new_key = partial(tuple.__new__, RuleKey)
_new_rule = partial(tuple.__new__, Rule)


def rule_from_api(raw: Mapping[str, Any], account: str = "") -> Rule:
    """One ``Permission`` of a DescribeSecurityGroupAttribute response."""
    get = raw.get
    direction = _DIRECTION.get(get("Direction")) or _DIRECTION.get(str(get("Direction") or "").strip().lower())
    if direction is None:
        raise NormalizeError(f"unknown Direction {get('Direction')!r}")
    try:
        proto = _protocol(get("IpProtocol", ""))
        src = get("SourcePortRange")
        key = _new_key(
            (
                direction,
                proto,
                *_port_range(get("PortRange"), proto),
                *(_port_range(src, proto, source=True) if src else NO_PORTS),
                _peer(get, direction, account),
                _policy(get("Policy")),
                _priority(get("Priority")),
                _nic_type(get("NicType")),
                _text(get("PortRangeListId")),
            )
        )
    except TypeError:  # an unhashable value (a list where a string belongs) cannot be cached
        raise NormalizeError("a rule field holds a list or object where a value belongs") from None
    return _new_rule((key, _text(get("Description")), _text(get("SecurityGroupRuleId"))))


def rule_to_api(rule: Rule) -> dict[str, Any]:
    """The inverse of :func:`rule_from_api`, in the API's field names (used by snapshot tools)."""
    k = rule.key
    side = "Source" if k.direction == "ingress" else "Dest"
    out: dict[str, Any] = {
        "SecurityGroupRuleId": rule.rule_id,
        "Direction": k.direction,
        "IpProtocol": k.protocol.upper() if not k.protocol.isdigit() else k.protocol,
        "PortRange": f"{k.from_port}/{k.to_port}",
        "SourcePortRange": "" if (k.src_from_port, k.src_to_port) == NO_PORTS else f"{k.src_from_port}/{k.src_to_port}",
        "Policy": k.policy.capitalize(),
        "Priority": str(k.priority),
        "NicType": k.nic_type,
        "Description": rule.description,
        "PortRangeListId": k.port_list,
    }
    for field in ("CidrIp", "GroupId", "GroupOwnerAccount", "PrefixListId"):
        out[f"{side}{field}"] = ""
    out[f"Ipv6{side}CidrIp"] = ""
    if k.peer.kind is PeerKind.CIDR4:
        out[f"{side}CidrIp"] = k.peer.value
    elif k.peer.kind is PeerKind.CIDR6:
        out[f"Ipv6{side}CidrIp"] = k.peer.value
    elif k.peer.kind is PeerKind.GROUP:
        out[f"{side}GroupId"] = k.peer.value
        out[f"{side}GroupOwnerAccount"] = k.peer.owner
    else:
        out[f"{side}PrefixListId"] = k.peer.value
    return out
