"""Posture checks against plain references."""

from __future__ import annotations

from hypothesis import given, settings

from sgwatch.core import addresses, posture
from sgwatch.core.exposure import decision_order
from sgwatch.core.model import NO_PORTS, Group, Rule
from tests.strategies import groups


def _covers(earlier: Rule, rule: Rule) -> bool:
    """Does `earlier` match every packet `rule` matches? Spelled out, without the index."""
    a, b = earlier.key, rule.key
    if a.port_list or b.port_list:
        return False  # a port range list's entries are not known to the posture checks
    if (a.direction, a.nic_type, a.peer.kind) != (b.direction, b.nic_type, b.peer.kind):
        return False
    if a.local not in ("", b.local):
        return False  # a rule of some members covers only rules of the same members
    if a.peer.is_cidr:
        _, (alow, ahigh) = addresses.network_interval(a.peer.value)
        _, (blow, bhigh) = addresses.network_interval(b.peer.value)
        if not (alow <= blow and bhigh <= ahigh):
            return False
    elif a.peer != b.peer:
        return False

    def ports(low: int, high: int) -> tuple[int, int]:
        return (0, 65535) if (low, high) == NO_PORTS else (low, high)

    (adl, adh), (bdl, bdh) = ports(a.from_port, a.to_port), ports(b.from_port, b.to_port)
    (asl, ash), (bsl, bsh) = ports(a.src_from_port, a.src_to_port), ports(b.src_from_port, b.src_to_port)
    return (
        a.protocol in (b.protocol, "all")
        and adl <= bdl
        and bdh <= adh
        and asl <= bsl
        and bsh <= ash
        and (a.priority, a.policy) != (b.priority, b.policy)
    )


def _shadowed_by_brute_force(group: Group) -> list[tuple[Rule, Rule]]:
    ordered = decision_order(group.rules)
    out = []
    for i, rule in enumerate(ordered):
        cover = next((e for e in ordered[:i] if _covers(e, rule)), None)
        if cover is not None:
            out.append((rule, cover))
    return out


@settings(max_examples=300)
@given(groups(max_rules=20))
def test_indexed_shadow_check_agrees_with_brute_force(group: Group) -> None:
    assert posture.shadowed(group) == _shadowed_by_brute_force(group)
