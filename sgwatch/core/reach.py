"""Which interfaces the internet can reach on a serious exposure: membership drift, as facts.

Rules are what teams review in the baseline; instances come and go. So an interface that
becomes reachable on an exposure graded high or critical (it joined an open group, an open
group gained it, it got an EIP) is not a drift of the baseline but a change since the last
complete scan: the daemon keeps these facts in its state and alerts once per fact.

A standing exposure (one the baseline already has, so not graded as new) is graded here with
the same check a new one of those ports would trigger. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sgwatch.core.addresses import Family
from sgwatch.core.changed_by import ChangedBy
from sgwatch.core.checks import RANK, CheckSettings, Severity
from sgwatch.core.compare import grade_ports
from sgwatch.core.findings import Exposure, Report
from sgwatch.core.membership import Interface
from sgwatch.core.model import AcceptedExposure, GroupKey

KIND = "interface_exposed"
ALERTED: frozenset[Severity] = frozenset({"high", "critical"})


@dataclass(frozen=True, slots=True)
class ExposedInterface:
    """One interface the internet reaches through one exposure of its group set."""

    account: str
    region: str
    interface_id: str
    instance_id: str  # "" when the ENI is not attached
    addresses: tuple[str, ...]  # its public addresses of the exposure's family
    security_group_ids: tuple[str, ...]
    direction: str
    family: Family
    protocol: str
    from_port: int
    to_port: int
    scope: str
    severity: Severity
    # The Join, Leave, ENI, instance or EIP call that exposed it (sgwatch.events.attribution);
    # not part of the id.
    changed_by: ChangedBy | None = None

    @property
    def id(self) -> str:
        """Stable while the interface stays exposed on those ports, whichever group is blamed."""
        parts = (
            KIND,
            self.account,
            self.region,
            self.interface_id,
            self.direction,
            self.family,
            self.protocol,
            str(self.from_port),
            str(self.to_port),
        )
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def describe(self) -> str:
        ports = (
            ""
            if self.from_port == -1
            else (f" {self.from_port}" if self.from_port == self.to_port else f" {self.from_port}-{self.to_port}")
        )
        instance = f"instance {self.instance_id}" if self.instance_id else "unattached"
        return (
            f"{instance}, interface {self.interface_id} at {', '.join(self.addresses)} is reachable on "
            f"{self.protocol}{ports} from {self.scope} {self.family} internet"
            f" through {', '.join(self.security_group_ids)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The form the state keeps and the alert lifecycle handles, as it does a finding's."""
        return {
            "id": self.id,
            "kind": KIND,
            "severity": self.severity,
            "account": self.account,
            "region": self.region,
            "security_group_id": ",".join(self.security_group_ids),
            "direction": self.direction,
            "interface_id": self.interface_id,
            "instance_id": self.instance_id,
            "addresses": list(self.addresses),
            "security_group_ids": list(self.security_group_ids),
            "family": self.family,
            "protocol": self.protocol,
            "from_port": self.from_port,
            "to_port": self.to_port,
            "scope": self.scope,
            "message": self.describe(),
            "changed_by": None if self.changed_by is None else self.changed_by.to_dict(),
        }


def severity_of(e: Exposure, settings: CheckSettings) -> Severity | None:
    """A new exposure's grade, or the grade a standing one's ports would get; None when disabled."""
    if e.severity is not None:
        return e.severity
    check = grade_ports(e.direction, e.protocol, e.from_port, e.to_port, e.scope, settings)
    return settings.severity(check) if settings.enabled(check) else None


def _public(interface: Interface, family: Family) -> tuple[str, ...]:
    # IPv6 addresses are taken as reachable, as the group-set evaluator takes them (fail closed).
    return interface.public_ipv4 if family == "ipv4" else interface.ipv6


def _accepted(e: Exposure, accepted: Mapping[GroupKey, Sequence[AcceptedExposure]], today: date) -> bool:
    # Only an exception open to the whole internet covers it for sure: one naming peers may not
    # hold the addresses this exposure is open to, so it still alerts (never a false all-clear).
    for group in e.security_group_ids or (e.security_group_id,):
        for a in accepted.get((e.account, e.region, group), ()):
            if a.direction != e.direction or a.protocol not in ("all", e.protocol) or a.peers or not a.active(today):
                continue
            if (a.from_port, a.to_port) == (-1, -1) or a.from_port <= e.from_port <= e.to_port <= a.to_port:
                return True
    return False


def exposed_interfaces(
    report: Report,
    settings: CheckSettings,
    accepted: Mapping[GroupKey, Sequence[AcceptedExposure]] | None = None,
    today: date | None = None,
) -> list[ExposedInterface]:
    """Every (interface, exposure) the internet reaches at high or critical, once each, by id.

    Ingress only: egress does not make an interface reachable. Regions whose membership is
    unknown give no fact (their exposures have no interfaces): see :func:`judged_regions`.
    """
    interfaces = {(m.account, m.region, i.id): i for m in report.membership if m.is_known for i in m.interfaces}
    found: dict[str, ExposedInterface] = {}
    for e in report.exposures:
        if e.direction != "ingress" or not e.reachable or not e.interfaces:
            continue
        # A new exposure is drift: its finding already alerts, naming the interfaces (one alert,
        # not two). An exposure the team accepted for the group is not news when a member joins.
        if e.new or (accepted and _accepted(e, accepted, today or report.generated_at.date())):
            continue
        severity = severity_of(e, settings)
        if severity not in ALERTED:
            continue
        assert severity is not None
        for interface_id in e.interfaces:
            interface = interfaces.get((e.account, e.region, interface_id))
            addresses = _public(interface, e.family) if interface else ()
            if interface is None or not addresses:
                continue
            fact = ExposedInterface(
                account=e.account,
                region=e.region,
                interface_id=interface_id,
                instance_id=interface.instance_id,
                addresses=addresses,
                security_group_ids=e.security_group_ids or (e.security_group_id,),
                direction=e.direction,
                family=e.family,
                protocol=e.protocol,
                from_port=e.from_port,
                to_port=e.to_port,
                scope=e.scope,
                severity=severity,
            )
            seen = found.get(fact.id)
            if seen is None or RANK[severity] > RANK[seen.severity]:
                found[fact.id] = fact
    return sorted(found.values(), key=lambda f: (-RANK[f.severity], f.account, f.region, f.interface_id, f.id))


def judged_regions(report: Report) -> frozenset[tuple[str, str]]:
    """Where a fact's absence means it went away: every region of a complete report whose
    membership was read. An incomplete scan or unknown membership resolves nothing."""
    if not report.complete:
        return frozenset()
    return frozenset((m.account, m.region) for m in report.membership if m.is_known)
