"""The evaluator against a brute-force oracle that decides one packet at a time."""

from __future__ import annotations

import ipaddress

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sgwatch.core import addresses, exposure, normalize
from sgwatch.core.model import Group, PeerKind, Rule, RuleKey
from tests.strategies import CIDRS4, CIDRS6, PORT_LISTS, PREFIX_LISTS, groups


def oracle(group: Group, direction: str, family: str, proto: str, dport: int, sport: int, addr: int) -> bool:
    """Decide one packet the way the cloud's documentation says, rule by rule.

    Without members, a rule limited to its own side (quintuple) is judged fail-closed: an
    accept as if it applied to the member, a drop as if it did not.
    """
    matching = []
    for rule in group.rules:
        k = rule.key
        if k.direction != direction or k.peer.kind is PeerKind.GROUP:
            continue
        if k.local and k.policy == "drop":
            continue
        if not group.vpc_id and k.nic_type != "internet":
            continue
        blocks = PREFIX_LISTS[k.peer.value] if k.peer.kind is PeerKind.PREFIX_LIST else (k.peer.value,)
        nets = [ipaddress.ip_network(b) for b in blocks]
        if not any(
            ("ipv4" if net.version == 4 else "ipv6") == family
            and int(net.network_address) <= addr <= int(net.broadcast_address)
            for net in nets
        ):
            continue
        if k.protocol not in ("all", proto):
            continue
        if proto in ("tcp", "udp"):
            if k.port_list and not any(low <= dport <= high for low, high in PORT_LISTS[k.port_list]):
                continue
            if not k.port_list and (k.from_port, k.to_port) != (-1, -1) and not k.from_port <= dport <= k.to_port:
                continue
            if (k.src_from_port, k.src_to_port) != (-1, -1) and not k.src_from_port <= sport <= k.src_to_port:
                continue
        matching.append(rule)
    if not matching:
        return direction == "egress" and group.type == "normal"
    best = min(r.priority for r in matching)
    return all(r.policy == "accept" for r in matching if r.priority == best)


def interesting_addresses(family: str) -> list[int]:
    pool = CIDRS4 if family == "ipv4" else CIDRS6
    points: set[int] = set()
    for c in pool:
        _, (low, high) = addresses.network_interval(c)
        points.update({low, high, max(low - 1, 0), high + 1, (low + high) // 2})
    limit = 2**32 - 1 if family == "ipv4" else 2**128 - 1
    return sorted(p for p in points if 0 <= p <= limit)


ADDRS = {f: interesting_addresses(f) for f in ("ipv4", "ipv6")}
SPORT_PROBES = [1, 52, 53, 54, 1023, 1024, 2000, 65535]


@settings(max_examples=300, deadline=None)
@given(
    group=groups(),
    direction=st.sampled_from(["ingress", "egress"]),
    family=st.sampled_from(["ipv4", "ipv6"]),
    proto=st.sampled_from(["tcp", "udp", "icmp", "icmpv6", "gre", "132", "50"]),
    dport=st.sampled_from([1, 21, 22, 23, 80, 443, 3306, 3305, 3311, 5000, 8085, 65535]),
    data=st.data(),
)
def test_evaluator_agrees_with_oracle(
    group: Group, direction: str, family: str, proto: str, dport: int, data: st.DataObject
) -> None:
    # ICMPv6 does not travel over IPv4, nor ICMP over IPv6: no such packet to decide.
    assume((family, proto) not in {("ipv4", "icmpv6"), ("ipv6", "icmp")})
    result = exposure.evaluate(group, direction, exposure.Lists(PREFIX_LISTS, PORT_LISTS))  # type: ignore[arg-type]
    addr = data.draw(st.sampled_from(ADDRS[family]))
    port = dport if proto in ("tcp", "udp") else -1
    expected = addresses.is_public_address(family, addr) and any(  # type: ignore[arg-type]
        oracle(group, direction, family, proto, port, s, addr) for s in SPORT_PROBES
    )
    assert exposure.accepts(result, family, proto, port, addr) == expected  # type: ignore[arg-type]


def _rule(spec: str) -> Rule:
    policy, prio, proto, ports, peer = spec.split()
    low, high = normalize.port_range(ports, proto)
    return Rule(
        RuleKey(
            "ingress",
            proto,
            low,
            high,
            -1,
            -1,
            normalize.peer_from_text(peer),
            policy,  # type: ignore[arg-type]
            int(prio),
            "intranet",
        )
    )


def _group(*specs: str, type_: str = "normal") -> Group:
    return Group(
        "default",
        "cn-hangzhou",
        "sg-1",
        type=type_,
        vpc_id="vpc-1",  # type: ignore[arg-type]
        rules=tuple(_rule(s) for s in specs),
    )


def _tcp(group: Group, port: int, addr: str = "8.8.8.8") -> bool:
    result = exposure.evaluate(group, "ingress")
    return exposure.accepts(result, "ipv4", "tcp", port, int(ipaddress.ip_address(addr)))


def test_drop_at_higher_priority_guards_database_port() -> None:
    guarded = _group("accept 100 tcp 1/65535 0.0.0.0/0", "drop 1 tcp 3306/3306 0.0.0.0/0")
    assert not _tcp(guarded, 3306)
    assert _tcp(guarded, 3307)
    unguarded = _group("accept 100 tcp 1/65535 0.0.0.0/0")
    assert _tcp(unguarded, 3306)


def test_drop_wins_at_equal_priority() -> None:
    assert not _tcp(_group("accept 5 tcp 22/22 0.0.0.0/0", "drop 5 tcp 22/22 8.0.0.0/8"), 22, "8.8.8.8")
    assert _tcp(_group("accept 5 tcp 22/22 0.0.0.0/0", "drop 5 tcp 22/22 8.0.0.0/8"), 22, "9.9.9.9")


def test_private_peers_are_not_internet() -> None:
    group = _group("accept 1 tcp 3306/3306 10.0.0.0/8", "accept 1 tcp 6379/6379 sg-app")
    assert exposure.evaluate(group, "ingress") == {}


def test_segments_carry_scope_and_granting_rules() -> None:
    group = _group("accept 1 tcp 80/80 0.0.0.0/0", "accept 1 tcp 22/22 203.0.114.0/24")
    segs = exposure.evaluate(group, "ingress")[("ipv4", "tcp")]
    assert [(s.from_port, s.to_port, addresses.scope("ipv4", s.addresses), s.rules) for s in segs] == [
        (22, 22, "narrow", (group.rules[1].key,)),
        (80, 80, "any", (group.rules[0].key,)),
    ]


def test_advanced_group_blocks_egress_by_default() -> None:
    basic = exposure.evaluate(_group(), "egress")
    advanced = exposure.evaluate(_group(type_="enterprise"), "egress")
    assert exposure.accepts(basic, "ipv4", "tcp", 443, int(ipaddress.ip_address("1.1.1.1")))
    assert not exposure.accepts(advanced, "ipv4", "tcp", 443, int(ipaddress.ip_address("1.1.1.1")))


@given(
    st.one_of(
        st.integers(0, 2**32 - 1),
        st.integers(10 << 24, (11 << 24) - 1),  # 10/8
        st.integers((192 << 24) | (168 << 16), (192 << 24) | (169 << 16) - 1),  # 192.168/16
        st.integers(127 << 24, (128 << 24) - 1),
    ),
    st.integers(0, 32),
)
def test_public_part_shortcut_agrees_with_interval_arithmetic(address: int, prefix: int) -> None:
    cidr = str(ipaddress.ip_network(f"{ipaddress.IPv4Address(address)}/{prefix}", strict=False))
    _, interval = addresses.network_interval(cidr)
    expected = tuple(addresses.intersect([interval], addresses.public("ipv4")))
    assert addresses.public_part(cidr) == ("ipv4", expected)
