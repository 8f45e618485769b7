"""One rule, many spellings: the cloud's values normalise to one model."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgwatch.baseline import RuleSpec
from sgwatch.core import normalize
from sgwatch.core.findings import Finding
from sgwatch.core.model import Peer, PeerKind, Rule, RuleKey
from sgwatch.core.normalize import NormalizeError
from sgwatch.sources import ecs_rules
from sgwatch.sources.raw import RawResponse
from sgwatch.sources.snapshot import SnapshotBuilder


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
    a = ecs_rules.rule_from_api(perm())
    b = ecs_rules.rule_from_api(perm(IpProtocol="6", Policy="accept", Priority=1, NicType=""))
    c = ecs_rules.rule_from_api(perm(IpProtocol="tcp", Policy="ACCEPT", Priority=" 1 "))
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
    assert ecs_rules.rule_from_api(minimal).key == ecs_rules.rule_from_api(full).key


def test_ipv6_group_and_prefix_list_peers() -> None:
    v6 = ecs_rules.rule_from_api(perm(SourceCidrIp="", Ipv6SourceCidrIp="2001:DB8::/32"))
    assert v6.peer == Peer(PeerKind.CIDR6, "2001:db8::/32")
    grp = ecs_rules.rule_from_api(perm(SourceCidrIp="", SourceGroupId="sg-a", SourceGroupOwnerAccount="999"), "111")
    assert grp.peer == Peer(PeerKind.GROUP, "sg-a", "999") and str(grp.peer) == "999/sg-a"
    own = ecs_rules.rule_from_api(perm(SourceCidrIp="", SourceGroupId="sg-a", SourceGroupOwnerAccount="111"), "111")
    assert own.peer.owner == ""
    egress = ecs_rules.rule_from_api(
        {"Direction": "egress", "IpProtocol": "ALL", "PortRange": "-1/-1", "DestPrefixListId": "pl-1", "Policy": "Drop"}
    )
    assert egress.peer.kind is PeerKind.PREFIX_LIST and egress.policy == "drop"


def test_portless_protocols_and_source_ports() -> None:
    icmp = ecs_rules.rule_from_api(perm(IpProtocol="ICMP", PortRange="-1/-1"))
    assert (icmp.key.from_port, icmp.key.to_port) == (-1, -1)
    src = ecs_rules.rule_from_api(perm(SourcePortRange="1024/65535"))
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
        ecs_rules.rule_from_api(bad)


def test_api_round_trip() -> None:
    rule = ecs_rules.rule_from_api(perm(Ipv6SourceCidrIp="::/0", SourceCidrIp="", Description="x"))
    assert ecs_rules.rule_from_api(ecs_rules.rule_to_api(rule)) == rule


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


# -- one rule, every spelling: API and baseline alike ------------------------------------------

_EVERY_PORT = {"tcp": [None, "", "-1/-1", "1/65535"], "icmp": [None, "", "-1/-1"], "all": [None, "", "-1/-1"]}


Spellings = tuple[dict[str, object], dict[str, object], dict[str, object], str]


@st.composite
def spelled_rule(draw: st.DrawFn) -> Spellings:
    """One rule spelled twice as the API could send it, and once as a baseline could write it."""
    proto = draw(st.sampled_from(["tcp", "udp", "icmp", "all"]))
    every = _EVERY_PORT["tcp" if proto == "udp" else proto]
    ports = draw(st.sampled_from(["22/22", "8000/8999", "every"] if proto in ("tcp", "udp") else ["every"]))
    policy = draw(st.sampled_from(["accept", "drop"]))
    priority = draw(st.sampled_from([1, 50, 100]))
    direction = draw(st.sampled_from(["ingress", "egress"]))
    peer = draw(st.sampled_from(["10.0.0.0/8", "0.0.0.0/0", "2001:db8::/32"]))
    local = draw(st.sampled_from(["", "fd00::/64"] if ":" in peer else ["", "10.0.1.0/24"]))
    remote, own = ("Source", "Dest") if direction == "ingress" else ("Dest", "Source")
    family = "Ipv6" if ":" in peer else ""

    def spelled_ports() -> str | None:
        return draw(st.sampled_from(every)) if ports == "every" else ports

    def api() -> dict[str, object]:
        out: dict[str, object] = {
            "Direction": draw(st.sampled_from([direction, direction.capitalize()])),
            "IpProtocol": draw(st.sampled_from([proto, proto.upper()])),
            "Policy": draw(st.sampled_from([policy, policy.capitalize(), policy.upper()])),
            # The API's Priority is a string; JSON may hold a number.
            "Priority": draw(st.sampled_from([priority, str(priority), f" {priority} "])),
            f"{family}{remote}CidrIp": peer,
        }
        if (spelled := spelled_ports()) is not None:
            out["PortRange"] = spelled
        if local:
            out[f"{family}{own}CidrIp"] = local
        return out

    spec: dict[str, object] = {
        "protocol": draw(st.sampled_from([proto, proto.upper()])),
        "policy": draw(st.sampled_from([policy, policy.capitalize()])),
        "priority": priority,
        "peer": peer,
    }
    if spelled := spelled_ports():
        spec["ports"] = spelled
    if local:
        spec["local"] = local
    return api(), api(), spec, direction


@settings(max_examples=300, deadline=None)
@given(spelled_rule())
def test_every_spelling_of_a_rule_is_one_key(spellings: Spellings) -> None:
    first, second, spec, direction = spellings
    key = ecs_rules.rule_from_api(first).key
    assert ecs_rules.rule_from_api(second).key == key
    assert RuleSpec.model_validate(spec).to_rule(direction).key == key  # type: ignore[arg-type]


def test_all_ports_is_held_one_way_per_protocol() -> None:
    # The one rule the API reader, baselines and every pass share.
    for spelled in (None, "", "-1/-1", "1/65535"):
        assert normalize.port_range(spelled, "tcp") == (1, 65535)
        assert normalize.port_range(spelled, "udp", source=True) == (-1, -1)
        assert normalize.port_range(spelled, "icmp") == (-1, -1)
        assert normalize.port_range(spelled, "all") == (-1, -1)
        assert normalize.list_port_range(spelled) == (1, 65535)
    assert normalize.port_range("22/22", "gre") == (-1, -1)  # no ports in GRE: a stray range means nothing
    assert normalize.port_range("22/22", "all") == (22, 22)  # limits its TCP and UDP part
    with pytest.raises(NormalizeError):
        normalize.port_range("0/70000", "icmp")


def test_two_rules_differing_only_in_their_local_side_are_two_rules() -> None:
    plain = ecs_rules.rule_from_api(perm())
    quintuple = ecs_rules.rule_from_api(perm(DestCidrIp="10.0.1.7/24"))
    other = ecs_rules.rule_from_api(perm(DestCidrIp="10.0.2.0/24"))
    v6 = ecs_rules.rule_from_api(perm(SourceCidrIp="", Ipv6SourceCidrIp="::/0", Ipv6DestCidrIp="FD00::/64"))
    assert (plain.key.local, quintuple.key.local, other.key.local, v6.key.local) == (
        "",
        "10.0.1.0/24",
        "10.0.2.0/24",
        "fd00::/64",
    )
    assert len({plain.key, quintuple.key, other.key}) == 3
    # Egress: the rule's own side is its source.
    egress = ecs_rules.rule_from_api(
        {
            "Direction": "egress",
            "IpProtocol": "TCP",
            "PortRange": "443/443",
            "DestCidrIp": "0.0.0.0/0",
            "SourceCidrIp": "10.0.1.0/24",
        }
    )
    assert (egress.peer.value, egress.key.local) == ("0.0.0.0/0", "10.0.1.0/24")
    assert ecs_rules.rule_from_api(ecs_rules.rule_to_api(quintuple)) == quintuple
    assert ecs_rules.rule_from_api(ecs_rules.rule_to_api(egress)) == egress
    with pytest.raises(NormalizeError):
        ecs_rules.rule_from_api(perm(DestCidrIp="10.0.1.999/24"))


def test_finding_ids_of_rules_without_a_local_side_are_those_of_before() -> None:
    # Computed with the code before the local side existed: state and alerts keep their ids.
    rule = Rule(
        RuleKey("ingress", "tcp", 3306, 3306, -1, -1, Peer(PeerKind.CIDR4, "0.0.0.0/0"), "accept", 1, "intranet"),
        "db",
        "sgr-1",
    )
    finding = Finding("rule_added", "critical", "default", "cn-hangzhou", "sg-1", "ingress", rule, None, [], [], "m")
    assert finding.id == "eda3ead9488ed56f"
    quintuple = rule._replace(key=rule.key._replace(local="10.0.1.0/24"))
    assert (
        Finding("rule_added", "critical", "default", "cn-hangzhou", "sg-1", "ingress", quintuple, None, [], [], "m").id
        != finding.id
    )


def test_a_snapshot_keeps_two_rules_that_differ_only_in_their_local_side() -> None:
    builder = SnapshotBuilder()
    body = {
        "RegionId": "cn-hangzhou",
        "SecurityGroupId": "sg-1",
        "Permissions": {
            "Permission": [perm(SecurityGroupRuleId=""), perm(SecurityGroupRuleId="", DestCidrIp="10.0.1.0/24")]
        },
    }
    builder.add(RawResponse("default", "DescribeSecurityGroupAttribute", body))
    (group,) = builder.finish().groups.values()
    assert sorted(r.key.local for r in group.rules) == ["", "10.0.1.0/24"]
