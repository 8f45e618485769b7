"""The ECS wire format of membership: DescribeNetworkInterfaces and DescribeInstances answers.

Which groups an interface sits in and which addresses it has come from
``DescribeNetworkInterfaces`` (``SecurityGroupIds``, ``PrivateIpSets`` with each private IP's
``AssociatedPublicIp``, the ENI's ``AssociatedPublicIp``, ``Ipv6Sets``). The API reference
documents both ``AssociatedPublicIp`` fields as EIPs only: an instance's own public IP, assigned
at creation, is not among them, so ``DescribeInstances`` is read too (``PublicIpAddress``,
``EipAddress``), and it puts that address on the instance's primary ENI. A classic-network
instance has no ENI at all: it is its own interface, with the instance's groups and addresses.

DescribeInstances answers a RAM identity without the permission with an empty list rather than
a refusal, so an instance whose primary ENI is listed but which DescribeInstances leaves out
makes the region's membership unknown, never "no public address".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sgwatch.core.membership import Interface, Membership, MembershipUnknown
from sgwatch.sources.raw import ENTRIES, Action

ENI_PAGE_SIZE = 500  # DescribeNetworkInterfaces: MaxResults 10..500 (below 10 it answers 10 a page)
INSTANCE_PAGE_SIZE = 100  # DescribeInstances: MaxResults 10..100
CLASSIC = "Classic"  # sgwatch's Type for a classic-network instance, its own interface


class InterfaceError(ValueError):
    """A value in an answer that cannot be an interface's: ``where`` names the entry."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What DescribeInstances says of one instance: its primary interface, as the instance sees it."""

    instance_id: str
    own: Interface  # the primary ENI (or, classic, the instance) with the instance's public IPs
    public_ipv4: tuple[str, ...]


def _inner(body: Mapping[str, Any], outer: str, inner: str, where: str) -> list[Any]:
    value = body.get(outer)
    if value is None or value == "":
        return []
    items = value.get(inner, []) if isinstance(value, Mapping) else None
    if items is None or items == "":
        return []
    if not isinstance(items, list):
        raise InterfaceError(where, f'{outer} must be {{"{inner}": [...]}}')
    return items


# Where each listing keeps its entries, and the id every entry must have.
_LISTINGS: dict[Action, tuple[str, str]] = {  # the id field of an entry, and what an entry is
    "DescribeNetworkInterfaces": ("NetworkInterfaceId", "network interface"),
    "DescribeInstances": ("InstanceId", "instance"),
}


def _where(action: Action) -> tuple[str, str]:
    outer, inner = ENTRIES[action]
    assert outer is not None  # both listings keep their entries in an object
    return outer, inner


def _entries(action: Action, body: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any], str]]:
    """(where, entry, id) for each entry of a listing page; InterfaceError names a bad one."""
    (outer, inner), (id_field, what) = _where(action), _LISTINGS[action]
    for n, entry in enumerate(_inner(body, outer, inner, outer)):
        where = f"{outer}.{inner}[{n}]"
        if not isinstance(entry, Mapping):
            raise InterfaceError(where, f"expected an object (one {what})")
        if not (key := _text(entry.get(id_field), f"{where}.{id_field}")):
            raise InterfaceError(where, f"has no {id_field}")
        yield where, entry, key


def entry_count(action: Action, body: Mapping[str, Any]) -> int:
    """How many entries a listing page holds, for the paging rule; a bad shape counts 0 (the
    parser of the kept pages names it)."""
    try:
        return len(_inner(body, *_where(action), ""))
    except InterfaceError:
        return 0


def _text(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InterfaceError(where, f"expected text, not {type(value).__name__}")
    return value.strip()


def _address(value: object, version: int, where: str) -> str:
    text = _text(value, where)
    if not text:
        return ""
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        raise InterfaceError(where, f"{text[:64]!r} is not an IPv{version} address") from None
    if parsed.version != version:
        raise InterfaceError(where, f"{text[:64]!r} is not an IPv{version} address")
    return str(parsed)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _groups(entry: Mapping[str, Any], where: str) -> tuple[str, ...]:
    items = _inner(entry, "SecurityGroupIds", "SecurityGroupId", where)
    return _unique(_text(g, f"{where}.SecurityGroupIds[{n}]") for n, g in enumerate(items))


def _public(entry: Mapping[str, Any], where: str) -> str:
    associated = entry.get("AssociatedPublicIp")
    if not isinstance(associated, Mapping):
        return ""
    return _address(associated.get("PublicIpAddress"), 4, f"{where}.AssociatedPublicIp")


def _ipv6(entry: Mapping[str, Any], where: str) -> tuple[str, ...]:
    items = _inner(entry, "Ipv6Sets", "Ipv6Set", where)
    return _unique(
        _address(item.get("Ipv6Address") if isinstance(item, Mapping) else item, 6, f"{where}.Ipv6Sets[{n}]")
        for n, item in enumerate(items)
    )


def _private_sets(entry: Mapping[str, Any], where: str) -> tuple[list[str], list[str]]:
    """The private IPv4 addresses and the public ones associated with them."""
    private, public = [], []
    for n, item in enumerate(_inner(entry, "PrivateIpSets", "PrivateIpSet", where)):
        here = f"{where}.PrivateIpSets[{n}]"
        if not isinstance(item, Mapping):
            raise InterfaceError(here, "expected an object (one private IP)")
        private.append(_address(item.get("PrivateIpAddress"), 4, here))
        public.append(_public(item, here))
    return private, public


def enis_of_page(body: Mapping[str, Any]) -> list[Interface]:
    """The interfaces of one DescribeNetworkInterfaces page. InterfaceError names a bad entry."""
    out = []
    for where, entry, eni in _entries("DescribeNetworkInterfaces", body):
        private, public = _private_sets(entry, where)
        out.append(
            Interface(
                id=eni,
                instance_id=_text(entry.get("InstanceId"), f"{where}.InstanceId"),
                type=_text(entry.get("Type"), f"{where}.Type"),
                security_group_ids=_groups(entry, where),
                private_ipv4=_unique(
                    [_address(entry.get("PrivateIpAddress"), 4, f"{where}.PrivateIpAddress"), *private]
                ),
                public_ipv4=_unique([_public(entry, where), *public]),
                ipv6=_ipv6(entry, where),
            )
        )
    return out


def _addresses(entry: Mapping[str, Any], outer: str, version: int, where: str) -> list[str]:
    items = _inner(entry, outer, "IpAddress", f"{where}.{outer}")
    return [_address(a, version, f"{where}.{outer}[{n}]") for n, a in enumerate(items)]


def instances_of_page(body: Mapping[str, Any]) -> list[InstanceView]:
    """The instances of one DescribeInstances page. InterfaceError names a bad entry."""
    out = []
    for where, entry, instance in _entries("DescribeInstances", body):
        eip = entry.get("EipAddress")
        public = _unique(
            [
                *_addresses(entry, "PublicIpAddress", 4, where),
                _address(eip.get("IpAddress"), 4, f"{where}.EipAddress") if isinstance(eip, Mapping) else "",
            ]
        )
        primary: Mapping[str, Any] = {}
        for m, nic in enumerate(_inner(entry, "NetworkInterfaces", "NetworkInterface", where)):
            if not isinstance(nic, Mapping):
                raise InterfaceError(f"{where}.NetworkInterfaces[{m}]", "expected an object (one network interface)")
            if _text(nic.get("Type"), f"{where}.NetworkInterfaces[{m}].Type") == "Primary":
                primary = nic
        nic_where = f"{where}.NetworkInterfaces.Primary"
        vpc = entry.get("VpcAttributes")
        private = [
            _address(primary.get("PrimaryIpAddress"), 4, nic_where),
            *_private_sets(primary, nic_where)[0],
            *(_addresses(vpc, "PrivateIpAddress", 4, f"{where}.VpcAttributes") if isinstance(vpc, Mapping) else []),
            *_addresses(entry, "InnerIpAddress", 4, where),
        ]
        classic = _text(entry.get("InstanceNetworkType"), f"{where}.InstanceNetworkType").lower() == "classic"
        eni = _text(primary.get("NetworkInterfaceId"), f"{nic_where}.NetworkInterfaceId")
        own = Interface(
            id=eni or instance,
            instance_id=instance,
            type=CLASSIC if classic and not eni else "Primary",
            security_group_ids=_groups(entry, where),
            private_ipv4=_unique(private),
            public_ipv4=public,
            ipv6=_ipv6(primary, nic_where),
        )
        out.append(InstanceView(instance, own, public))
    return out


def assemble(account: str, region: str, enis: Sequence[Interface], instances: Sequence[InstanceView]) -> Membership:
    """One region's membership from its complete ENI and instance listings."""
    by_id: dict[str, Interface] = {}
    for eni in enis:
        by_id.setdefault(eni.id, eni)  # an ENI may shift across pages while we list: the first read
    listed = {view.instance_id: view for view in instances}
    primary_of = {e.instance_id: e.id for e in by_id.values() if e.type == "Primary" and e.instance_id}
    missing = sorted(set(primary_of) - set(listed))
    if missing:
        return Membership.unknown_because(
            account,
            region,
            MembershipUnknown(
                "InstancesNotListed",
                f"DescribeInstances did not list {len(missing)} instance(s) whose primary ENI "
                f"DescribeNetworkInterfaces lists (first: {missing[0]}); it answers an identity without the "
                "permission with an empty list, so their public IPs are unknown",
                ("ecs:DescribeInstances",),
            ),
        )
    for view in instances:
        eni_id = primary_of.get(view.instance_id, view.own.id)
        listed_eni = by_id.get(eni_id)
        if listed_eni is None:
            # created after the ENI listing, or classic: what the instance says is all there is
            by_id[view.own.id] = view.own
        elif view.public_ipv4:
            by_id[eni_id] = replace(listed_eni, public_ipv4=_unique([*listed_eni.public_ipv4, *view.public_ipv4]))
    return Membership.known(account, region, by_id.values())


__all__ = [
    "CLASSIC",
    "ENI_PAGE_SIZE",
    "INSTANCE_PAGE_SIZE",
    "InstanceView",
    "InterfaceError",
    "assemble",
    "enis_of_page",
    "instances_of_page",
]
