"""What every source hands the engine: the cloud's own responses, untouched.

An offline snapshot directory and a live scan both end as a :class:`RawScan`; one parser
(:func:`sgwatch.sources.snapshot.parse_scan`) turns it into a :class:`~sgwatch.core.model.Snapshot`.
Keeping the raw JSON is what lets ``sgwatch snapshot save`` replay any live state offline.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from sgwatch.core.membership import MembershipUnknown
from sgwatch.core.model import ScanError

Action = Literal[
    "DescribeRegions",
    "DescribeSecurityGroups",
    "DescribeSecurityGroupAttribute",
    "DescribePrefixListAttributes",
    "DescribePortRangeListEntries",
    "DescribeNetworkInterfaces",
    "DescribeInstances",
]

DEFAULT_ACCOUNT = "default"
# Where a snapshot keeps the regions whose membership a scan could not read (beside errors.json).
MEMBERSHIP_ERRORS_FILE = "membership-errors.json"


@dataclass(slots=True)
class RawResponse:
    account: str
    action: Action
    body: dict[str, Any]  # the response JSON exactly as the API returned it
    # The region the scanner asked about: a live answer's region is the request's, never the
    # body's. "" (a saved file) takes the body's "RegionId"; the parser checks both.
    region: str = ""


@dataclass(slots=True)
class ScanStats:
    # (action, result) -> count; result is "ok", "throttled", "error"
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries: int = 0
    throttles: int = 0
    duration_seconds: float = 0.0
    # (action, seconds) of every attempt, retries included: the latency histogram's observations
    latencies: list[tuple[Action, float]] = field(default_factory=list)


@dataclass(slots=True)
class RawScan:
    responses: list[RawResponse] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    # (account, region) pairs the source was asked to cover, read or not
    regions: list[tuple[str, str]] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    # Groups listed, then gone by the time their rules were read (InvalidSecurityGroupId.NotFound):
    # deleted, not unreadable.
    vanished: set[tuple[str, str, str]] = field(default_factory=set)
    # (account, region) -> why its interfaces could not be read. Not an error of the scan: the
    # rules were read, the report is complete, those groups are judged on paper.
    membership_failures: dict[tuple[str, str], MembershipUnknown] = field(default_factory=dict)
    # account name -> its UID, where the config gives one: a group reference whose owner is the
    # account's own UID is the same account, not a cross-account reference
    account_uids: dict[str, str] = field(default_factory=dict)


# Where each answer keeps its entries: (object, list in it); None: the list is the body's own
# field. The one table of it: the call path's shape check, the listing parsers and the pager read it.
ENTRIES: dict[Action, tuple[str | None, str]] = {
    "DescribeRegions": ("Regions", "Region"),
    "DescribeSecurityGroups": ("SecurityGroups", "SecurityGroup"),
    "DescribeSecurityGroupAttribute": ("Permissions", "Permission"),
    "DescribePrefixListAttributes": ("Entries", "Entry"),
    "DescribePortRangeListEntries": (None, "Entries"),
    "DescribeNetworkInterfaces": ("NetworkInterfaceSets", "NetworkInterfaceSet"),
    "DescribeInstances": ("Instances", "Instance"),
}


def classify(body: dict[str, Any]) -> Action | None:
    """Tell which API produced a response body, from its shape."""
    if "Permissions" in body and "SecurityGroupId" in body:
        return "DescribeSecurityGroupAttribute"
    if "SecurityGroups" in body:
        return "DescribeSecurityGroups"
    if "Regions" in body:
        return "DescribeRegions"
    if "PrefixListId" in body and ("Entries" in body or "AddressFamily" in body):
        return "DescribePrefixListAttributes"
    if isinstance(body.get("Entries"), list):  # a port range list's entries: a bare array
        return "DescribePortRangeListEntries"
    if "NetworkInterfaceSets" in body:
        return "DescribeNetworkInterfaces"
    if "Instances" in body:
        return "DescribeInstances"
    return None
