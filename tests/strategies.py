"""Hypothesis strategies for rules and groups, shared by the engine's property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from sgwatch.core import normalize
from sgwatch.core.model import Group, Peer, PeerKind, Rule, RuleKey

CIDRS4 = [
    "0.0.0.0/0",
    "1.2.3.0/24",
    "1.2.3.4/32",
    "8.0.0.0/6",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "192.168.1.0/24",
    "47.96.0.0/12",
    "0.0.0.0/1",
    "128.0.0.0/1",
    "203.0.113.7/32",
]
CIDRS6 = ["::/0", "2001:db8::/32", "2400:cb00::/32", "fc00::/7", "2000::/3", "2400::/12"]
PORTS = [
    (-1, -1),
    (1, 65535),
    (22, 22),
    (80, 80),
    (443, 443),
    (3306, 3306),
    (20, 30),
    (1000, 5000),
    (3300, 3310),
    (8080, 8090),
]
# Prefix lists the generated rules may name, with entries the probes above know.
PREFIX_LISTS: dict[str, tuple[str, ...]] = {
    "pl-office": ("1.2.3.0/24", "10.0.0.0/8"),
    "pl-world": ("0.0.0.0/0", "::/0"),
    "pl-v6": ("2400:cb00::/32",),
    "pl-private": ("192.168.1.0/24", "fc00::/7"),
}
# Port range lists the generated rules may name instead of a port range.
PORT_LISTS: dict[str, tuple[tuple[int, int], ...]] = {
    "prl-web": ((80, 80), (443, 443)),
    "prl-mixed": ((20, 25), (3306, 3306), (8000, 8999)),
}
SPORTS = [(-1, -1), (-1, -1), (-1, -1), (1024, 65535), (53, 53)]
# A quintuple rule's own side: most rules have none.
LOCALS = ["", "", "", "", "10.0.1.0/24", "192.168.1.0/24", "fd00::/64"]
PROTOCOLS = ["tcp", "tcp", "udp", "icmp", "icmpv6", "gre", "all", "132"]


@st.composite
def peers(draw: st.DrawFn) -> Peer:
    kind = draw(st.sampled_from(["v4", "v4", "v6", "group", "pl"]))
    if kind == "v4":
        return normalize.cidr(draw(st.sampled_from(CIDRS4)))
    if kind == "v6":
        return normalize.cidr(draw(st.sampled_from(CIDRS6)))
    if kind == "group":
        return Peer(
            PeerKind.GROUP, draw(st.sampled_from(["sg-app", "sg-db"])), draw(st.sampled_from(["", "", "1234567890"]))
        )
    return Peer(PeerKind.PREFIX_LIST, draw(st.sampled_from(sorted(PREFIX_LISTS))))


@st.composite
def rules(draw: st.DrawFn, direction: str | None = None) -> Rule:
    proto = draw(st.sampled_from(PROTOCOLS))
    port_list = draw(st.sampled_from(["", "", "", *sorted(PORT_LISTS)])) if proto in ("tcp", "udp") else ""
    spelled = (-1, -1) if port_list else draw(st.sampled_from(PORTS)) if proto in ("tcp", "udp") else (-1, -1)
    # Keys as the normaliser holds them: every spelling of "all ports" as the one canonical value.
    ports = normalize.port_range("/".join(map(str, spelled)), proto)
    sports = draw(st.sampled_from(SPORTS)) if proto in ("tcp", "udp") else (-1, -1)
    key = RuleKey(
        direction=direction or draw(st.sampled_from(["ingress", "egress"])),  # type: ignore[arg-type]
        protocol=proto,
        from_port=ports[0],
        to_port=ports[1],
        src_from_port=sports[0],
        src_to_port=sports[1],
        peer=draw(peers()),
        policy=draw(st.sampled_from(["accept", "drop"])),
        priority=draw(st.sampled_from([1, 1, 2, 50, 100])),
        nic_type=draw(st.sampled_from(["intranet", "intranet", "internet"])),
        port_list=port_list,
        local=draw(st.sampled_from(LOCALS)),
    )
    return Rule(key, draw(st.sampled_from(["", "web", "db"])), "")


@st.composite
def groups(draw: st.DrawFn, max_rules: int = 12, gid: str = "sg-1") -> Group:
    rs = draw(st.lists(rules(), max_size=max_rules, unique_by=lambda r: r.key))
    return Group(
        account="default",
        region="cn-hangzhou",
        id=gid,
        type=draw(st.sampled_from(["normal", "enterprise"])),
        vpc_id=draw(st.sampled_from(["vpc-1", "vpc-1", ""])),
        inner_access_policy=draw(st.sampled_from(["accept", "drop"])),
        rules=tuple(rs),
    )
