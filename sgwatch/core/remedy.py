"""The ``aliyun`` CLI commands that put a drifted rule back the way the baseline has it.

Built from the normalised rule, never from cloud text pasted into a template: every value is a
separate token, joined with ``shlex.join``, so a description holding ``$(rm -rf ~)`` or a quote
is one quoted argument when the command is pasted into a shell.

Parameter names follow the ECS API reference (2014-05-26): ``AuthorizeSecurityGroup`` /
``RevokeSecurityGroup`` for ingress, ``…Egress`` for egress, each with ``RegionId``,
``SecurityGroupId`` and the rule as ``Permissions.1.<field>`` (the API's recommended form;
the flat ``IpProtocol``/``PortRange``/… parameters may not be mixed with it). A rule with a
known id is revoked by ``SecurityGroupRuleId.1``, which the API recommends over matching
fields. A description-only change is undone with ``ModifySecurityGroupRule`` (egress:
``ModifySecurityGroupEgressRule``), which takes the rule id and flat ``Description``; any
other change is a revoke of the live rule and an authorize of the baseline's.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from sgwatch.core.diff import ChangeKind
from sgwatch.core.model import NO_PORTS, Direction, PeerKind, Rule

# What a wanted change needs instead of a command: the baseline follows the cloud.
ACCEPT_HINT = "if the change is wanted, update the baseline: sgwatch baseline capture"

_ACTION: dict[tuple[str, Direction], str] = {
    ("authorize", "ingress"): "AuthorizeSecurityGroup",
    ("authorize", "egress"): "AuthorizeSecurityGroupEgress",
    ("revoke", "ingress"): "RevokeSecurityGroup",
    ("revoke", "egress"): "RevokeSecurityGroupEgress",
    ("modify", "ingress"): "ModifySecurityGroupRule",
    ("modify", "egress"): "ModifySecurityGroupEgressRule",
}
# The peer's side in the API's words: ingress rules name a Source, egress rules a Dest; a
# quintuple rule's local side is the other one (ingress DestCidrIp, egress SourceCidrIp).
_PEER_SIDE: dict[Direction, str] = {"ingress": "Source", "egress": "Dest"}
_LOCAL_SIDE: dict[Direction, str] = {"ingress": "Dest", "egress": "Source"}


def _ports(start: int, end: int) -> str:
    return f"{start}/{end}"


def _peer_cidr(rule: Rule) -> str:
    return rule.peer.value if rule.peer.kind is PeerKind.CIDR4 else ""


def _peer_cidr6(rule: Rule) -> str:
    return rule.peer.value if rule.peer.kind is PeerKind.CIDR6 else ""


def _peer_group(rule: Rule) -> str:
    return rule.peer.value if rule.peer.kind is PeerKind.GROUP else ""


def _peer_prefix_list(rule: Rule) -> str:
    return rule.peer.value if rule.peer.kind is PeerKind.PREFIX_LIST else ""


# One line per API field of a rule: (parameter name, with {peer} the direction's side, and the
# rule's value; "" leaves the parameter out). A new field of the rule model is one more line
# here; {local} is the local side's (a rule restored without it would open more than it did).
FIELDS: tuple[tuple[str, Callable[[Rule], str]], ...] = (
    ("IpProtocol", lambda r: r.protocol.upper()),
    ("PortRange", lambda r: _ports(r.key.from_port, r.key.to_port)),
    (
        "SourcePortRange",
        lambda r: "" if (r.key.src_from_port, r.key.src_to_port) == NO_PORTS else _ports(*r.key[4:6]),
    ),
    ("{peer}CidrIp", _peer_cidr),
    ("Ipv6{peer}CidrIp", _peer_cidr6),
    ("{peer}GroupId", _peer_group),
    ("{peer}GroupOwnerAccount", lambda r: r.peer.owner if r.peer.kind is PeerKind.GROUP else ""),
    ("{peer}PrefixListId", _peer_prefix_list),
    ("PortRangeListId", lambda r: r.key.port_list),
    ("Policy", lambda r: r.policy),
    ("Priority", lambda r: str(r.priority)),
    ("NicType", lambda r: r.key.nic_type),
    ("{local}CidrIp", lambda r: r.local if r.local and ":" not in r.local else ""),
    ("Ipv6{local}CidrIp", lambda r: r.local if ":" in r.local else ""),
)


def _permission(rule: Rule, *, with_description: bool) -> list[str]:
    side, local = _PEER_SIDE[rule.direction], _LOCAL_SIDE[rule.direction]
    args: list[str] = []
    for name, value_of in FIELDS:
        if value := value_of(rule):
            args += [f"--Permissions.1.{name.format(peer=side, local=local)}", value]
    if with_description and rule.description:
        args += ["--Permissions.1.Description", rule.description]
    return args


def _command(action: str, direction: Direction, region: str, group: str, args: list[str]) -> str:
    tokens = ["aliyun", "ecs", _ACTION[(action, direction)], "--RegionId", region, "--SecurityGroupId", group, *args]
    return shlex.join(tokens)


def authorize(region: str, group: str, rule: Rule) -> str:
    """The command that creates ``rule`` (with its description) in ``group``."""
    return _command("authorize", rule.direction, region, group, _permission(rule, with_description=True))


def revoke(region: str, group: str, rule: Rule) -> str:
    """The command that deletes ``rule``: by its id when known, else by its fields."""
    args = ["--SecurityGroupRuleId.1", rule.rule_id] if rule.rule_id else _permission(rule, with_description=False)
    return _command("revoke", rule.direction, region, group, args)


def restore(kind: ChangeKind, region: str, group: str, live: Rule | None, baseline: Rule | None) -> list[str]:
    """The commands, in order, that make the live rule what the baseline says; [] when no
    rule-level command does it (a group added, removed or changed is a decision, not a command)."""
    if kind == "rule_added" and live is not None:
        return [revoke(region, group, live)]
    if kind == "rule_removed" and baseline is not None:
        return [authorize(region, group, baseline)]
    if kind != "rule_changed" or live is None or baseline is None:
        return []
    if live.key == baseline.key and live.rule_id and baseline.description:
        # The API cannot empty a non-empty field, so only a description coming back is a modify.
        args = ["--SecurityGroupRuleId", live.rule_id, "--Description", baseline.description]
        return [_command("modify", live.direction, region, group, args)]
    return [revoke(region, group, live), authorize(region, group, baseline)]
