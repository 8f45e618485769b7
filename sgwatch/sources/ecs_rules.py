"""The ECS wire format of a rule: one ``Permission`` of DescribeSecurityGroupAttribute, both ways.

Which field holds what depends on the direction: an ingress rule's peer is its ``Source…``
side and its own side (quintuple rules) the ``Dest…`` CIDRs; an egress rule the other way
round. What each value means is :mod:`sgwatch.core.normalize`'s business, shared with baselines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import Any

from sgwatch.core import normalize
from sgwatch.core.memo import Memo
from sgwatch.core.model import DIRECTIONS, NO_PORTS, Direction, NicType, Peer, PeerKind, Policy, Rule, RuleKey
from sgwatch.core.normalize import NormalizeError

# Per direction: (the peer's side, the rule's own side) as field-name prefixes.
_SIDES: dict[str, tuple[str, str]] = {"ingress": ("Source", "Dest"), "egress": ("Dest", "Source")}

# The peer fields of each direction: CIDR, IPv6 CIDR, group, group owner, prefix list.
_PEER_FIELDS: dict[str, tuple[str, str, str, str, str]] = {
    direction: (f"{s}CidrIp", f"Ipv6{s}CidrIp", f"{s}GroupId", f"{s}GroupOwnerAccount", f"{s}PrefixListId")
    for direction, (s, _) in _SIDES.items()
}
# The local fields of each direction (quintuple rules): CIDR, IPv6 CIDR.
_LOCAL_FIELDS: dict[str, tuple[str, str]] = {
    direction: (f"{s}CidrIp", f"Ipv6{s}CidrIp") for direction, (_, s) in _SIDES.items()
}


def _text(value: object) -> str:
    if not value:
        return ""
    return value.strip() if isinstance(value, str) else str(value).strip()


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
        return normalize.cidr(v4)
    v6 = get(f_v6)
    if v6 and (v6 := _text(v6)):
        return normalize.cidr(v6)
    prefix = _text(get(f_prefix))
    if prefix:
        return Peer(PeerKind.PREFIX_LIST, prefix)
    side = "source" if direction == "ingress" else "destination"
    raise NormalizeError(f"rule has no {side} peer (CIDR, IPv6 CIDR, group or prefix list)")


def _local(v4: object, v6: object) -> str:
    text = _text(v4) or _text(v6)
    return normalize.cidr(text).value if text else ""


# The cloud's values come from small sets; caching each parse turns a million rules into
# a million dictionary lookups.
_protocol: Callable[[object], str] = Memo(normalize.protocol).__getitem__
_policy: Callable[[object], Policy] = Memo(normalize.policy).__getitem__
_priority: Callable[[object], int] = Memo(normalize.priority).__getitem__
_nic_type: Callable[[object], NicType] = Memo(normalize.nic_type).__getitem__
# Two arguments: a memo would build a key tuple as this does.
_port_range = lru_cache(maxsize=1 << 18)(normalize.port_range)
# The Direction as sent -> the direction and its local fields (quintuple rules): one lookup.
_DIRECTION: dict[object, tuple[Direction, str, str]] = {
    spelled: (direction, *_LOCAL_FIELDS[direction])
    for direction in DIRECTIONS
    for spelled in (direction, direction.capitalize(), direction.upper())
}


# tuple.__new__ straight from C: a NamedTuple's own __new__ is a Python function, and a
# million rules make that a second.
_new_key = partial(tuple.__new__, RuleKey)
_new_rule = partial(tuple.__new__, Rule)


def rule_from_api(raw: Mapping[str, Any], account: str = "") -> Rule:
    """One ``Permission`` of a DescribeSecurityGroupAttribute response."""
    get = raw.get
    side = _DIRECTION.get(get("Direction")) or _DIRECTION.get(str(get("Direction") or "").strip().lower())
    if side is None:
        raise NormalizeError(f"unknown Direction {get('Direction')!r}")
    direction, f_local4, f_local6 = side
    try:
        proto = _protocol(get("IpProtocol", ""))
        src = get("SourcePortRange")
        # Almost every rule has no local side: two lookups, and nothing else, for those.
        local4, local6 = get(f_local4), get(f_local6)
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
                # Inlined: a call per rule for a field almost always "" costs what the local side adds.
                _text(port_list) if (port_list := get("PortRangeListId")) else "",
                _local(local4, local6) if local4 or local6 else "",
            )
        )
    except TypeError:  # an unhashable value (a list where a string belongs) cannot be cached
        raise NormalizeError("a rule field holds a list or object where a value belongs") from None
    # _text inlined for the strings the API sends: two calls a rule are a few percent of it.
    desc, rule_id = get("Description"), get("SecurityGroupRuleId")
    return _new_rule(
        (
            key,
            desc.strip() if type(desc) is str else _text(desc),
            rule_id.strip() if type(rule_id) is str else _text(rule_id),
        )
    )


def rule_to_api(rule: Rule) -> dict[str, Any]:
    """The inverse of :func:`rule_from_api`, in the API's field names (used by snapshot tools)."""
    k = rule.key
    side, own = _SIDES[k.direction]
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
    out[f"{own}CidrIp"] = out[f"Ipv6{own}CidrIp"] = ""
    if k.local:
        out[f"Ipv6{own}CidrIp" if ":" in k.local else f"{own}CidrIp"] = k.local
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
