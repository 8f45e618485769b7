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


_Extent = tuple[str, str, str, int, int, int, int, str, int, int]


def _extent(rule: Rule) -> _Extent:
    """What a rule matches, flattened so that covering is a handful of integer compares."""
    k = rule.key
    dports = (0, 65535) if (k.from_port, k.to_port) == NO_PORTS else (k.from_port, k.to_port)
    sports = (0, 65535) if (k.src_from_port, k.src_to_port) == NO_PORTS else (k.src_from_port, k.src_to_port)
    if k.peer.is_cidr:
        _, (low, high) = addresses.network_interval(k.peer.value)
        peer = k.peer.kind.value
    else:
        low = high = 0
        peer = str(k.peer)
    return (k.nic_type, k.protocol, peer, dports[0], dports[1], sports[0], sports[1], k.direction, low, high)


def _covers(a: _Extent, b: _Extent) -> bool:
    """Does the rule of extent ``a`` match every packet the rule of extent ``b`` matches?"""
    return (
        a[0] == b[0]
        and (a[1] == "all" or a[1] == b[1])
        and a[2] == b[2]
        and a[3] <= b[3]
        and b[4] <= a[4]
        and a[5] <= b[5]
        and b[6] <= a[6]
        and a[8] <= b[8]
        and b[9] <= a[9]
    )


def shadowed(group: Group) -> list[tuple[Rule, Rule]]:
    """(rule, the higher-precedence rule that covers it) for rules that decide nothing.

    Only cover by one rule is found; a rule covered by the union of several is not reported.
    """
    out: list[tuple[Rule, Rule]] = []
    for direction in ("ingress", "egress"):
        ordered = [(r, _extent(r)) for r in decision_order(group.rules) if r.direction == direction]
        for n, (rule, ext) in enumerate(ordered):
            for earlier, eext in ordered[:n]:
                # Equal precedence and equal policy decide alike: redundant, not shadowed.
                if earlier.priority == rule.priority and earlier.policy == rule.policy:
                    continue
                if _covers(eext, ext):
                    out.append((rule, earlier))
                    break
    return out


def _database_from_private_cidr(rule: Rule, settings: CheckSettings) -> bool:
    k = rule.key
    return (
        k.direction == "ingress"
        and k.policy == "accept"
        and k.peer.is_cidr
        and not addresses.public_part(k.peer.value)[1]
        and k.protocol in ("tcp", "all")
        and (k.from_port, k.to_port) != NO_PORTS
        and k.to_port - k.from_port < 100
        and any(k.from_port <= p <= k.to_port for p in settings.database_ports)
    )


def check_group(group: Group, exposures: Iterable[Exposure], settings: CheckSettings) -> list[PostureResult]:
    out: list[PostureResult] = []
    for e in exposures:
        check = _exposure_check(e, settings)
        if check and settings.enabled(check):
            out.append(_result(settings, check, group, None, f"{group.id}: {e.describe()} via {', '.join(e.peers)}"))
    if settings.enabled("posture-cidr-instead-of-group") and group.vpc_id:
        flagged = [r for r in group.rules if _database_from_private_cidr(r, settings)]
        if flagged:
            more = f" (and {len(flagged) - 1} more such rules)" if len(flagged) > 1 else ""
            out.append(
                _result(
                    settings,
                    "posture-cidr-instead-of-group",
                    group,
                    flagged[0],
                    f"{group.id}: {describe_rule(flagged[0])}{more}: authorise the application tier's "
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
