"""The check catalogue: stable ids, default severities and the guideline each comes from.

Guideline numbers refer to the list in docs/checks.md, which follows the Alibaba Cloud
security group best-practice guide; ``cis`` names the CIS Alibaba Cloud Foundations Benchmark
recommendations a check can evidence. Ids never change meaning; severities and port sets can be
overridden from config through :class:`CheckSettings`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sgwatch.core.addresses import any_port_in

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")
RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


# The most a new exposure is graded when no interface it applies to has a public address of its family.
LATENT_CAP: Severity = "medium"


def worst(*severities: Severity) -> Severity:
    return max(severities, key=RANK.__getitem__)


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    severity: Severity
    area: Literal["drift", "posture"]
    guideline: int | None
    title: str
    cis: tuple[str, ...] = ()  # recommendation numbers in CIS_RECOMMENDATIONS


@dataclass(frozen=True, slots=True)
class CisRecommendation:
    id: str
    title: str
    port: int  # the TCP port whose opening to the whole internet the recommendation forbids


CIS_BENCHMARK = "CIS Alibaba Cloud Foundations Benchmark v1.0.0"
# Section 4 (Virtual Machines). Only the recommendations a security group rule can break are here.
CIS_RECOMMENDATIONS: dict[str, CisRecommendation] = {
    r.id: r
    for r in (
        CisRecommendation("4.3", "Ensure no security groups allow ingress from 0.0.0.0/0 to port 22", 22),
        CisRecommendation("4.4", "Ensure no security groups allow ingress from 0.0.0.0/0 to port 3389", 3389),
    )
}
_ADMIN_CIS = ("4.3", "4.4")


CATALOGUE: tuple[Check, ...] = (
    # Drift: what a change does compared with the baseline.
    Check(
        "internet-all-traffic",
        "critical",
        "drift",
        1,
        "New exposure of all ports or all protocols to the whole internet",
        cis=_ADMIN_CIS,
    ),
    Check(
        "internet-database-port",
        "critical",
        "drift",
        3,
        "New exposure of a database or cache port to the whole internet",
    ),
    Check(
        "internet-remote-admin",
        "high",
        "drift",
        2,
        "New exposure of remote administration to the whole internet",
        cis=_ADMIN_CIS,
    ),
    Check(
        "internet-unapproved-port",
        "high",
        "drift",
        1,
        "New whole-internet exposure of a port neither baseline nor exceptions accept",
        cis=_ADMIN_CIS,
    ),
    Check("internet-icmp", "medium", "drift", 6, "New ICMP exposure to the whole internet"),
    Check("narrow-public-exposure", "medium", "drift", 2, "New exposure to a narrow public address range"),
    Check("egress-opened", "medium", "drift", 7, "Egress to the internet opened where the baseline blocked it"),
    Check("inner-access-opened", "medium", "drift", 5, "InnerAccessPolicy changed from drop to accept"),
    Check("cross-account-reference", "medium", "drift", 8, "New reference to a security group in another account"),
    Check("new-group", "medium", "drift", 9, "A security group exists that the baseline does not know"),
    Check(
        "managed-group",
        "info",
        "drift",
        None,
        "A security group a cloud service created and manages (ServiceManaged) exists that the baseline does not know",
    ),
    Check(
        "list-unresolved",
        "medium",
        "drift",
        None,
        "A new accept rule names a prefix list or port range list whose entries could not be read: what it lets in is unknown",
    ),
    Check(
        "list-changed",
        "low",
        "drift",
        None,
        "A prefix list or port range list the group's rules name holds other entries than the baseline records",
    ),
    Check("accept-removed", "low", "drift", None, "An accept rule was removed (tightening; possible outage)"),
    Check("no-exposure-change", "low", "drift", None, "A rule changed without changing internet exposure"),
    Check(
        "private-peer-rule",
        "low",
        "drift",
        4,
        "A new rule whose peers are private addresses, groups or prefix lists of private entries",
    ),
    Check("group-removed", "low", "drift", None, "A security group in the baseline no longer exists"),
    Check(
        "unmanaged-group",
        "medium",
        "drift",
        9,
        "A security group exists that no Terraform state given as the baseline manages",
    ),
    Check(
        "unmanaged-rule",
        "low",
        "drift",
        None,
        "A rule in a Terraform-managed group that the state does not know (added by hand; its exposure adds its "
        "own check and severity)",
    ),
    Check("group-attribute-changed", "low", "drift", None, "The group's type or VPC changed"),
    Check("description-changed", "info", "drift", None, "Only a rule's description changed"),
    # Posture: risk in the live state, whatever the baseline says.
    Check(
        "posture-internet-all-traffic",
        "critical",
        "posture",
        1,
        "All ports or protocols open to the whole internet",
        cis=_ADMIN_CIS,
    ),
    Check(
        "posture-internet-database-port",
        "critical",
        "posture",
        3,
        "A database or cache port open to the whole internet",
    ),
    Check(
        "posture-internet-remote-admin",
        "high",
        "posture",
        2,
        "Remote administration open to the whole internet",
        cis=_ADMIN_CIS,
    ),
    Check(
        "posture-expired-exception",
        "medium",
        "posture",
        None,
        "An accepted exposure in the baseline has expired",
    ),
    Check("posture-rule-limit", "medium", "posture", 9, "The group is close to the rule limit"),
    Check("posture-icmp-from-anywhere", "low", "posture", 6, "ICMP accepted from the whole internet"),
    Check(
        "posture-cidr-instead-of-group",
        "low",
        "posture",
        4,
        "A database port opened to a private CIDR where a group reference would do",
    ),
    Check("posture-shadowed-rule", "low", "posture", None, "A rule decides nothing: a higher-priority rule covers it"),
)
BY_ID: dict[str, Check] = {c.id: c for c in CATALOGUE}

DATABASE_PORTS = frozenset(
    {
        1433,
        1434,
        1521,
        2379,
        2380,
        3306,
        5432,
        5984,
        6379,
        7000,
        7001,
        7199,
        8086,
        9042,
        9160,
        9200,
        9300,
        11211,
        26257,
        27017,
        27018,
        27019,
        28017,
        50000,
        8529,
    }
)
ADMIN_PORTS = frozenset({22, 23, 3389, 5900, 5901, 5985, 5986, 2222, 10022, 873})


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """What a user can tune: port sets, severities, disabled checks, the rule limit."""

    database_ports: frozenset[int] = DATABASE_PORTS
    admin_ports: frozenset[int] = ADMIN_PORTS
    severities: Mapping[str, Severity] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    rule_limit: int = 200
    rule_limit_ratio: float = 0.8

    def severity(self, check_id: str) -> Severity:
        return self.severities.get(check_id, BY_ID[check_id].severity)

    def enabled(self, check_id: str) -> bool:
        return check_id not in self.disabled


def cis_evidenced(checks: Iterable[str], opened: Iterable[tuple[str, int, int]]) -> list[CisRecommendation]:
    """The recommendations ``checks`` map to that an ingress opening to the whole internet breaks.

    ``opened``: (protocol, from port, to port) of what is open from every address; ``all``/``other``
    protocols open every port. A remote-admin finding for port 5900 names no recommendation.
    """
    ids = {cis for check in checks if check in BY_ID for cis in BY_ID[check].cis}
    spans = [
        (1, 65535) if proto in ("all", "other") else (lo, hi) for proto, lo, hi in opened if proto in _PORTED_OR_ALL
    ]
    return [r for cid, r in CIS_RECOMMENDATIONS.items() if cid in ids and any(lo <= r.port <= hi for lo, hi in spans)]


_PORTED_OR_ALL = frozenset({"tcp", "all", "other"})


def exposure_class(
    protocol: str, from_port: int, to_port: int, settings: CheckSettings
) -> Literal["all-traffic", "database-port", "remote-admin", "icmp"] | None:
    """What a whole-internet exposure opens, shared by the drift and posture checks.

    None: ports no catalogue entry names (drift calls them unapproved; posture says nothing).
    """
    if protocol in ("icmp", "icmpv6"):
        return "icmp"
    if protocol == "other" or (protocol in ("tcp", "udp") and (from_port, to_port) == (1, 65535)):
        return "all-traffic"
    if protocol not in ("tcp", "udp"):
        return None
    if any_port_in(settings.database_ports, from_port, to_port):
        return "database-port"
    if any_port_in(settings.admin_ports, from_port, to_port):
        return "remote-admin"
    return None
