"""One rule, many spellings: the cloud's values normalise to one model."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sgwatch.core import normalize
from sgwatch.core.model import Peer, PeerKind
from sgwatch.core.normalize import NormalizeError


def perm(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "Direction": "ingress",
        "IpProtocol": "TCP",
        "PortRange": "22/22",
        "SourceCidrIp": "0.0.0.0/0",
        "Policy": "Accept",
        "Priority": "1",
        "NicType": "intranet",
        "Description": "",
        "SourcePortRange": "",
        "SecurityGroupRuleId": "sgr-1",
        "Ipv6SourceCidrIp": "",
        "SourceGroupId": "",
        "SourcePrefixListId": "",
    }
    base.update(over)
    return base


def test_case_numbers_and_types_normalise_to_one_key() -> None:
    a = normalize.rule_from_api(perm())
    b = normalize.rule_from_api(perm(IpProtocol="6", Policy="accept", Priority=1, NicType=""))
    c = normalize.rule_from_api(perm(IpProtocol="tcp", Policy="ACCEPT", Priority=" 1 "))
    assert a.key == b.key == c.key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ALL", "all"),
        ("-1", "all"),
        ("icmp", "icmp"),
        ("58", "icmpv6"),
        ("47", "gre"),
        ("132", "132"),
        ("UDP", "udp"),
    ],
)
def test_protocols(raw: str, expected: str) -> None:
    assert normalize.protocol(raw) == expected


def test_empty_and_missing_fields_are_the_same() -> None:
    minimal = {"Direction": "ingress", "IpProtocol": "TCP", "PortRange": "80/80", "SourceCidrIp": "1.2.3.4"}
    full = perm(PortRange="80/80", SourceCidrIp="1.2.3.4/32", SecurityGroupRuleId="")
    assert normalize.rule_from_api(minimal).key == normalize.rule_from_api(full).key


def test_ipv6_group_and_prefix_list_peers() -> None:
    v6 = normalize.rule_from_api(perm(SourceCidrIp="", Ipv6SourceCidrIp="2001:DB8::/32"))
    assert v6.peer == Peer(PeerKind.CIDR6, "2001:db8::/32")
    grp = normalize.rule_from_api(perm(SourceCidrIp="", SourceGroupId="sg-a", SourceGroupOwnerAccount="999"), "111")
    assert grp.peer == Peer(PeerKind.GROUP, "sg-a", "999") and str(grp.peer) == "999/sg-a"
    own = normalize.rule_from_api(perm(SourceCidrIp="", SourceGroupId="sg-a", SourceGroupOwnerAccount="111"), "111")
    assert own.peer.owner == ""
    egress = normalize.rule_from_api(
        {"Direction": "egress", "IpProtocol": "ALL", "PortRange": "-1/-1", "DestPrefixListId": "pl-1", "Policy": "Drop"}
    )
    assert egress.peer.kind is PeerKind.PREFIX_LIST and egress.policy == "drop"


def test_portless_protocols_and_source_ports() -> None:
    icmp = normalize.rule_from_api(perm(IpProtocol="ICMP", PortRange="-1/-1"))
    assert (icmp.key.from_port, icmp.key.to_port) == (-1, -1)
    src = normalize.rule_from_api(perm(SourcePortRange="1024/65535"))
    assert (src.key.src_from_port, src.key.src_to_port) == (1024, 65535)


@pytest.mark.parametrize(
    "bad",
    [
        perm(IpProtocol="tcpx"),
        perm(PortRange="0/70000"),
        perm(PortRange="90/80"),
        perm(Policy="maybe"),
        perm(Priority="high"),
        perm(SourceCidrIp="1.2.3.999"),
        perm(SourceCidrIp=""),
        perm(Direction="sideways"),
    ],
)
def test_bad_values_raise_with_the_field(bad: dict[str, object]) -> None:
    with pytest.raises(NormalizeError):
        normalize.rule_from_api(bad)


def test_api_round_trip() -> None:
    rule = normalize.rule_from_api(perm(Ipv6SourceCidrIp="::/0", SourceCidrIp="", Description="x"))
    assert normalize.rule_from_api(normalize.rule_to_api(rule)) == rule


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_fast_ipv4_parser_agrees_with_ipaddress(address: int, prefix: int) -> None:
    text = f"{ipaddress.IPv4Address(address)}/{prefix}"
    assert normalize.cidr(text).value == str(ipaddress.ip_network(text, strict=False))
    assert normalize.cidr(str(ipaddress.IPv4Address(address))).value == f"{ipaddress.IPv4Address(address)}/32"


@pytest.mark.parametrize("bad", ["1.2.3.4/33", "1.2.3.256", "01.2.3.4", "1.2.3", "1.2.3.4/x", "a.b.c.d"])
def test_fast_ipv4_parser_rejects_or_defers(bad: str) -> None:
    try:
        expected: str | None = str(ipaddress.ip_network(bad, strict=False))
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(NormalizeError):
            normalize.cidr(bad)
    else:
        assert normalize.cidr(bad).value == expected
