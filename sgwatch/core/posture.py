"""Posture: risk already in the live state, whether or not the baseline has it.

Posture results are reported apart from drift and never change the exit code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from sgwatch.core import addresses
from sgwatch.core.checks import CheckSettings
from sgwatch.core.exposure import decision_order
from sgwatch.core.findings import Exposure, PostureResult, describe_rule
from sgwatch.core.model import NO_PORTS, AcceptedExposure, Group, GroupKey, Rule


def _result(settings: CheckSettings, check: str, group: Group, rule: Rule | None, message: str) -> PostureResult:
    return PostureResult(check, settings.severity(check), group.account, group.region, group.id, rule, message)


def _exposure_check(e: Exposure, settings: CheckSettings) -> str | None:
    if e.direction != "ingress" or e.scope == "narrow":
        return None
    if e.protocol in ("icmp", "icmpv6"):
        return "posture-icmp-from-anywhere"
    if e.protocol == "other" or (e.from_port, e.to_port) == (1, 65535):
        return "posture-internet-all-traffic"
    if e.protocol not in ("tcp", "udp"):
        return None
    if any(e.from_port <= p <= e.to_port for p in settings.database_ports):
        return "posture-internet-database-port"
    if any(e.from_port <= p <= e.to_port for p in settings.admin_ports):
        return "posture-internet-remote-admin"
    return None


def _covers(first: Rule, later: Rule) -> bool:
    """Does ``first`` match every packet ``later`` matches?"""
    a, b = first.key, later.key
    if a.direction != b.direction or a.nic_type != b.nic_type:
        return False
    if a.protocol != "all" and a.protocol != b.protocol:
        return False
    if (a.from_port, a.to_port) != NO_PORTS and not (
        (b.from_port, b.to_port) != NO_PORTS and a.from_port <= b.from_port and b.to_port <= a.to_port
    ):
        return False
    if (a.src_from_port, a.src_to_port) != NO_PORTS and not (
        (b.src_from_port, b.src_to_port) != NO_PORTS
        and a.src_from_port <= b.src_from_port
        and b.src_to_port <= a.src_to_port
    ):
        return False
    if a.peer == b.peer:
        return True
    if not (a.peer.is_cidr and b.peer.kind is a.peer.kind):
        return False
    _, (al, ah) = addresses.network_interval(a.peer.value)
    _, (bl, bh) = addresses.network_interval(b.peer.value)
    return al <= bl and bh <= ah


def shadowed(group: Group) -> list[tuple[Rule, Rule]]:
    """(rule, the higher-precedence rule that covers it) for rules that decide nothing."""
    ordered = decision_order(group.rules)
    out: list[tuple[Rule, Rule]] = []
    for n, rule in enumerate(ordered):
        for earlier in ordered[:n]:
            # Equal precedence and equal policy decide alike: redundant, not shadowed.
            if (earlier.priority, earlier.policy) == (rule.priority, rule.policy):
                continue
            if _covers(earlier, rule):
                out.append((rule, earlier))
                break
    return out


def check_group(group: Group, exposures: Iterable[Exposure], settings: CheckSettings) -> list[PostureResult]:
    out: list[PostureResult] = []
    for e in exposures:
        check = _exposure_check(e, settings)
        if check and settings.enabled(check):
            out.append(_result(settings, check, group, None, f"{group.id}: {e.describe()} via {', '.join(e.peers)}"))
    if settings.enabled("posture-cidr-instead-of-group") and group.vpc_id:
        for rule in group.rules:
            k = rule.key
            if (
                k.direction == "ingress"
                and k.policy == "accept"
                and k.peer.is_cidr
                and not addresses.public_part(k.peer.value)[1]
                and k.protocol in ("tcp", "all")
                and (k.from_port, k.to_port) != NO_PORTS
                and k.to_port - k.from_port < 100
                and any(k.from_port <= p <= k.to_port for p in settings.database_ports)
            ):
                out.append(
                    _result(
                        settings,
                        "posture-cidr-instead-of-group",
                        group,
                        rule,
                        f"{group.id}: {describe_rule(rule)}: authorise the application tier's "
                        "security group instead of a CIDR",
                    )
                )
    if settings.enabled("posture-shadowed-rule"):
        for rule, by in shadowed(group):
            out.append(
                _result(
                    settings,
                    "posture-shadowed-rule",
                    group,
                    rule,
                    f"{group.id}: {describe_rule(rule)} is shadowed by {describe_rule(by)}",
                )
            )
    limit = settings.rule_limit
    if settings.enabled("posture-rule-limit") and len(group.rules) >= limit * settings.rule_limit_ratio:
        out.append(
            _result(
                settings,
                "posture-rule-limit",
                group,
                None,
                f"{group.id}: {len(group.rules)} rules of a limit of {limit}",
            )
        )
    return out


def expired(
    key: GroupKey, accepted: Sequence[AcceptedExposure], today: date, settings: CheckSettings
) -> list[PostureResult]:
    if not settings.enabled("posture-expired-exception"):
        return []
    account, region, sg = key
    return [
        PostureResult(
            "posture-expired-exception",
            settings.severity("posture-expired-exception"),
            account,
            region,
            sg,
            None,
            f"{sg}: accepted exposure {a.protocol} {a.from_port}/{a.to_port} ({a.reason}; owner {a.owner}) "
            f"expired on {a.expires}",
        )
        for a in accepted
        if not a.active(today)
    ]
