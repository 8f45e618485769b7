"""The ``aliyun`` CLI commands that put a drifted rule back the way the baseline has it.

Built from the normalised rule in the API's own field names (``sources.ecs_rules.rule_to_api``,
the one place that spells a rule for the API), never from cloud text pasted into a template:
every value is a separate token, joined with ``shlex.join``, so a description holding ``$(rm -rf ~)`` or a quote
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

from sgwatch.core.diff import ChangeKind
from sgwatch.core.findings import Finding
from sgwatch.core.model import Direction, Rule
from sgwatch.sources import ecs_rules

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
# Not command parameters: the rule's id and direction are the command's; its description is
# restored only where the API takes one.
_NOT_PARAMETERS = ("SecurityGroupRuleId", "Direction", "Description")


def _permission(rule: Rule, *, with_description: bool) -> list[str]:
    args: list[str] = []
    for name, value in ecs_rules.rule_to_api(rule).items():
        if name in _NOT_PARAMETERS or value == "":
            continue
        # the API reference spells the policy lowercase (accept | drop); the cloud answers it capitalised
        args += [f"--Permissions.1.{name}", value.lower() if name == "Policy" else value]
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


def of(finding: Finding) -> list[str]:
    """The commands that put ``finding``'s rule back the way the baseline has it (see :func:`restore`)."""
    return restore(finding.kind, finding.region, finding.security_group_id, finding.live, finding.baseline)
