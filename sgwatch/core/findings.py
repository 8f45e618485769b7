"""What the engine concludes: exposures, drift findings, posture results, the report.

These are the JSON contract's objects (see schemas/report.schema.json); ``to_dict`` gives
exactly the published shape.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sgwatch import timestamps
from sgwatch.core.addresses import Family
from sgwatch.core.changed_by import ChangedBy
from sgwatch.core.checks import RANK, SEVERITIES, CisRecommendation, Severity, cis_evidenced
from sgwatch.core.diff import ChangeKind, ListRef
from sgwatch.core.membership import Membership
from sgwatch.core.model import NO_PORTS, Direction, Rule, RuleKey, ScanError

REPORT_VERSION = "4"


def rule_dict(rule: Rule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    k = rule.key
    return {
        "direction": k.direction,
        "policy": k.policy,
        "priority": k.priority,
        "protocol": k.protocol,
        "ports": f"{k.from_port}/{k.to_port}",
        "source_ports": None if (k.src_from_port, k.src_to_port) == NO_PORTS else f"{k.src_from_port}/{k.src_to_port}",
        "peer": str(k.peer),
        "peer_kind": k.peer.kind.value,
        "nic_type": k.nic_type,
        "port_list": k.port_list or None,
        "local": k.local or None,
        "description": rule.description,
        "rule_id": rule.rule_id or None,
    }


def describe_rule(rule: Rule) -> str:
    k = rule.key
    ports = "" if (k.from_port, k.to_port) == NO_PORTS else f" {k.from_port}/{k.to_port}"
    word = "from" if k.direction == "ingress" else "to"
    local = f" {'to' if k.direction == 'ingress' else 'from'} {k.local}" if k.local else ""
    return f"{k.policy} {k.protocol}{ports} {word} {k.peer}{local} (priority {k.priority})"


_OLD_KEY_FIELDS = RuleKey._fields[:-1]  # every field but `local`, which came later


def key_text(key: RuleKey) -> str:
    """A rule key as finding ids spell it: a key without a local side as before that field
    existed, so that state and alerts keep the ids they know."""
    if key.local:
        return repr(key)
    return "RuleKey(" + ", ".join(f"{name}={value!r}" for name, value in zip(_OLD_KEY_FIELDS, key, strict=False)) + ")"


# Values, and many of them (one per port run per group): a tuple builds ~5x faster than a
# frozen dataclass.
class Exposure(NamedTuple):
    account: str
    region: str
    security_group_id: str
    direction: Direction
    family: Family
    protocol: str  # tcp, udp, icmp, icmpv6, gre, other
    from_port: int
    to_port: int
    scope: str  # any, wide, narrow
    peers: tuple[str, ...]
    new: bool
    severity: Severity | None  # only new exposures are graded
    check: str | None = None
    # The groups whose merged rules decide it (the set on its interfaces); () for the group
    # alone, judged on paper.
    security_group_ids: tuple[str, ...] = ()
    # The interfaces it applies to: () when the group has no member, None when membership is unknown.
    interfaces: tuple[str, ...] | None = None
    # Does one of them have a public address of the family? None when membership is unknown.
    reachable: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "region": self.region,
            "security_group_id": self.security_group_id,
            "direction": self.direction,
            "family": self.family,
            "protocol": self.protocol,
            "from_port": self.from_port,
            "to_port": self.to_port,
            "scope": self.scope,
            "peers": list(self.peers),
            "new": self.new,
            "severity": self.severity,
            "check": self.check,
            "security_group_ids": list(self.security_group_ids or (self.security_group_id,)),
            "interfaces": None if self.interfaces is None else list(self.interfaces),
            "reachable": self.reachable,
        }

    def describe(self) -> str:
        ports = (
            ""
            if self.from_port == -1
            else (f" {self.from_port}" if self.from_port == self.to_port else f" {self.from_port}-{self.to_port}")
        )
        word = "from" if self.direction == "ingress" else "to"
        return f"{self.protocol}{ports} {word} {self.scope} {self.family} internet{self.reach()}"

    def reach(self, shown: int = 3) -> str:
        """ " (latent: …)" or " (reachable via eni-…)"; "" when membership is unknown."""
        if self.reachable is None or self.interfaces is None:
            return ""
        if not self.reachable:
            return f" ({LATENT})"
        more = f" and {len(self.interfaces) - shown} more" if len(self.interfaces) > shown else ""
        return f" (reachable via {', '.join(self.interfaces[:shown])}{more})"


LATENT = "latent: no member has a public address"


@dataclass(slots=True)
class Finding:
    kind: ChangeKind
    severity: Severity
    account: str
    region: str
    security_group_id: str
    direction: Direction | None
    live: Rule | None
    baseline: Rule | None
    new_exposures: list[Exposure]
    checks: list[str]
    message: str
    fields: tuple[str, ...] = ()
    lists: tuple[ListRef, ...] = ()
    # The call that made the change (sgwatch.events.attribution); None when no event fits. Not
    # part of the id: the same drift is one finding whoever is named for it.
    changed_by: ChangedBy | None = None
    # The Terraform resource that manages what changed (the rule's, else its group's): None when
    # the baseline is not a Terraform state or no state names it.
    terraform_address: str | None = None

    @property
    def interfaces(self) -> tuple[str, ...] | None:
        """The interfaces its new exposures apply to; None when no new exposure knows its members."""
        known = [e.interfaces for e in self.new_exposures if e.interfaces is not None]
        return tuple(sorted({i for ids in known for i in ids})) if known else None

    @property
    def id(self) -> str:
        # Stable across runs for the same drift: made of what the drift is, not when it was seen
        # (a list change spelled as when it was a field named "<list> entries").
        moved = ",".join((*self.fields, *(ref.moved for ref in self.lists)))
        parts = [self.kind, self.account, self.region, self.security_group_id, moved]
        for rule in (self.baseline, self.live):
            parts.append(key_text(rule.key) if rule else "-")
        if self.kind == "rule_changed" and self.live and self.baseline and self.live.key == self.baseline.key:
            parts.append(self.live.description)
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "account": self.account,
            "region": self.region,
            "security_group_id": self.security_group_id,
            "direction": self.direction,
            "live": rule_dict(self.live),
            "baseline": rule_dict(self.baseline),
            "new_exposures": [e.to_dict() for e in self.new_exposures],
            "interfaces": None if (ids := self.interfaces) is None else list(ids),
            "checks": list(self.checks),
            "message": self.message,
            "cis": [{"id": r.id, "title": r.title} for r in self.cis()],
            "changed_by": None if self.changed_by is None else self.changed_by.to_dict(),
            "terraform_address": self.terraform_address,
        }

    def cis(self) -> list[CisRecommendation]:
        """The CIS recommendations this drift breaks: its checks' that its new exposures open."""
        opened = [
            (e.protocol, e.from_port, e.to_port)
            for e in self.new_exposures
            if e.direction == "ingress" and e.scope == "any"  # CIS: "from 0.0.0.0/0"
        ]
        return cis_evidenced(self.checks, opened)


class PostureResult(NamedTuple):
    check: str
    severity: Severity
    account: str
    region: str
    security_group_id: str
    rule: Rule | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "account": self.account,
            "region": self.region,
            "security_group_id": self.security_group_id,
            "rule": rule_dict(self.rule),
            "message": self.message,
        }


@dataclass(slots=True)
class Report:
    generated_at: datetime
    groups: int
    findings: list[Finding] = field(default_factory=list)
    exposures: list[Exposure] = field(default_factory=list)
    posture: list[PostureResult] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    # One entry per (account, region) covered: its interfaces, or why they are unknown. Unknown
    # membership leaves the report complete: those groups are judged on paper.
    membership: list[Membership] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.errors

    def membership_notes(self, shown: int = 3) -> list[str]:
        """Plain text, one line per reason membership is unknown: where, why, what to grant."""
        by_reason: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for m in self.membership:
            if m.unknown is not None:
                by_reason.setdefault((m.unknown.code, m.unknown.permissions), []).append(f"{m.account}/{m.region}")
        notes = []
        for (code, permissions), where in sorted(by_reason.items()):
            more = f" and {len(where) - shown} more" if len(where) > shown else ""
            grant = f"; grant {', '.join(permissions)}" if permissions else ""
            notes.append(
                f"membership unknown in {', '.join(where[:shown])}{more} ({code}): groups judged on paper{grant}"
            )
        return notes

    @property
    def groups_drifted(self) -> int:
        return len({(f.account, f.region, f.security_group_id) for f in self.findings})

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(reversed(SEVERITIES), 0)
        for f in self.findings:
            counts[f.severity] += 1
        return counts

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=RANK.__getitem__, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "generated_at": timestamps.iso(self.generated_at),
            "complete": self.complete,
            "summary": {"groups": self.groups, "groups_drifted": self.groups_drifted, "findings": self.counts()},
            "findings": [f.to_dict() for f in self.findings],
            "exposures": [e.to_dict() for e in self.exposures],
            "posture": [p.to_dict() for p in self.posture],
            "errors": [
                {
                    "account": e.account,
                    "region": e.region,
                    "security_group_id": e.security_group_id or None,
                    "code": e.code,
                    "message": e.message,
                }
                for e in self.errors
            ],
            "membership": [membership_dict(m) for m in self.membership],
        }


def membership_dict(membership: Membership) -> dict[str, Any]:
    why = membership.unknown
    return {
        "account": membership.account,
        "region": membership.region,
        "known": why is None,
        "interfaces": len(membership.interfaces) if why is None else None,
        "code": why.code if why else None,
        "message": why.message if why else None,
        "permissions": list(why.permissions) if why else [],
    }
