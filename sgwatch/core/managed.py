"""Desired groups whose region is not known (a Terraform state), placed where a scan finds them.

A Terraform state does not record a resource's region (that lives in the provider block), but
group ids are unique: each managed group is matched by id to wherever the scan found it. A
managed group found nowhere is ``group_removed`` only when every region of every account it may
live in was listed completely; otherwise what became of it is unknown, and the report says so
(incomplete), never "removed". Pure: the reader is :mod:`sgwatch.terraform`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from sgwatch.core.findings import Finding
from sgwatch.core.model import (
    AcceptedExposure,
    Baseline,
    Group,
    GroupKey,
    GroupType,
    Peer,
    Policy,
    Rule,
    RuleKey,
    ScanError,
    Snapshot,
)

NOT_FOUND = "ManagedGroupNotFound"


@dataclass(frozen=True, slots=True)
class GroupAttributes:
    """What an ``alicloud_security_group`` resource says of its group."""

    address: str
    name: str
    type: GroupType
    vpc_id: str
    inner_access_policy: Policy
    description: str


@dataclass(frozen=True, slots=True)
class ManagedGroup:
    """One security group as the Terraform states given describe it."""

    id: str
    source: str  # the state file(s) it comes from, for messages
    # None when no state holds the group itself, only rules of it: its attributes are not managed.
    attributes: GroupAttributes | None
    rules: tuple[Rule, ...]  # sorted by key, peer owners as the state spells them
    rule_addresses: Mapping[RuleKey, str]
    account: str | None = None  # the account the config pins its state to; None: any
    accepted: tuple[AcceptedExposure, ...] = ()

    @property
    def address(self) -> str | None:
        return self.attributes.address if self.attributes else None


@dataclass(frozen=True, slots=True)
class Managed:
    """The Terraform side of a baseline: what is managed, and how the report treats the rest."""

    groups: Mapping[str, ManagedGroup]  # by group id
    # Accounts whose every group should be in a state: those of pinned states; every account when
    # a state is not pinned (None here).
    accounts: frozenset[str] | None
    uids: Mapping[str, str] = field(default_factory=dict)  # account name -> UID (config)
    # Whether the scans cover every region of each account (no `regions:` restriction): only
    # then can a group found in none of them be removed.
    every_region: bool = True
    managed_only: bool = False  # groups no state manages are left out of the report
    # Prefix list id -> the entries an alicloud_ecs_prefix_list of a state gives it.
    prefix_lists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def covers(self, account: str) -> bool:
        """Whether a group of this account that no state manages is ``unmanaged-group``."""
        return self.accounts is None or account in self.accounts


@dataclass(slots=True)
class Placed:
    """A Terraform baseline placed on one snapshot."""

    baseline: Baseline  # YAML groups and the managed groups found, at the keys the scan found them
    terraform: Managed
    removed: list[Group] = field(default_factory=list)  # proven gone: every region listed completely
    errors: list[ScanError] = field(default_factory=list)  # managed groups whose fate is unknown
    managed: dict[GroupKey, ManagedGroup] = field(default_factory=dict)
    rule_addresses: dict[GroupKey, Mapping[RuleKey, str]] = field(default_factory=dict)

    def covers(self, account: str) -> bool:
        return self.terraform.covers(account)

    @property
    def managed_only(self) -> bool:
        return self.terraform.managed_only

    def name(self, findings: Iterable[Finding]) -> None:
        """Give each finding the Terraform address a reviewer jumps to (None: no state names it)."""
        for f in findings:
            f.terraform_address = self.address((f.account, f.region, f.security_group_id), f.live, f.baseline)

    def address(self, key: GroupKey, live: Rule | None, base: Rule | None) -> str | None:
        """The Terraform address a finding names: the managed rule's, else its group's."""
        group = self.managed.get(key)
        if group is None:
            return None
        addresses = self.rule_addresses.get(key, {})
        for rule in (base, live):
            if rule is not None and (address := addresses.get(rule.key)):
                return address
        return group.address


def _owner(key: RuleKey, owner: str) -> RuleKey:
    return key._replace(peer=Peer(key.peer.kind, key.peer.value, owner))


def _own_rules(group: ManagedGroup, uid: str) -> tuple[tuple[Rule, ...], Mapping[RuleKey, str]]:
    """The rules, and their addresses, with a reference to the account's own groups spelt as the
    scan spells it (:func:`sgwatch.sources.ecs_rules.rule_from_api`): no owner."""
    if not uid or not any(r.peer.owner == uid for r in group.rules):
        return group.rules, group.rule_addresses
    rules, addresses = [], {}
    for r in group.rules:
        own = r._replace(key=_owner(r.key, "")) if r.peer.owner == uid else r
        rules.append(own)
        if r.key in group.rule_addresses:
            addresses[own.key] = group.rule_addresses[r.key]
    return tuple(sorted(rules, key=lambda r: r.key)), addresses


def _group(placed: Placed, group: ManagedGroup, key: GroupKey, live: Group | None, uid: str) -> Group:
    account, region, _ = key
    rules, placed.rule_addresses[key] = _own_rules(group, uid)
    placed.managed[key] = group
    attrs = group.attributes
    if attrs is None:  # only its rules are managed: the group's own attributes are whatever they are
        base = live if live is not None else Group(account, region, group.id)
        return replace(base, account=account, region=region, rules=rules)
    return Group(
        account=account,
        region=region,
        id=group.id,
        name=attrs.name,
        type=attrs.type,
        vpc_id=attrs.vpc_id,
        inner_access_policy=attrs.inner_access_policy,
        description=attrs.description,
        rules=rules,
    )


def _accounts_of(live: Snapshot) -> set[str]:
    return {a for a, _ in live.regions} | {a for a, _ in live.scope or ()} | {e.account for e in live.errors}


def _listed_completely(live: Snapshot, account: str, group_id: str) -> bool:
    """Every region of ``account`` the scan covered was listed, and nothing of it failed."""
    regions = {r for a, r in (live.scope if live.scope is not None else live.regions) if a == account}
    if not regions:
        return False
    for e in live.errors:
        if e.account == account and (not e.security_group_id or e.security_group_id == group_id):
            return False  # a region (or DescribeRegions, region "") unread, or this group unreadable
    return all((account, region) in live.listed for region in regions)


def place(baseline: Baseline, managed: Managed, live: Snapshot) -> Placed:
    """Put each managed group at the key where ``live`` has it; say what became of the others."""
    found: dict[str, list[GroupKey]] = {}
    for key in live.groups:
        if key[2] in managed.groups:
            found.setdefault(key[2], []).append(key)
    for (account, region), ids in live.listed.items():  # listed but unread: placed, and the read error covers it
        for gid in ids & managed.groups.keys():
            if (account, region, gid) not in live.groups:
                found.setdefault(gid, []).append((account, region, gid))
    groups = dict(baseline.groups)
    accepted = dict(baseline.accepted)
    placed = Placed(replace(baseline, groups=groups, accepted=accepted, terraform=None), managed)
    prefix_lists = dict(baseline.prefix_lists)
    for list_key in live.prefix_lists.keys() - prefix_lists.keys():  # a list's region: where the scan read it
        if list_key[2] in managed.prefix_lists:
            prefix_lists[list_key] = managed.prefix_lists[list_key[2]]
    placed.baseline.prefix_lists = prefix_lists
    every_account = _accounts_of(live)
    for gid, group in sorted(managed.groups.items()):
        keys = sorted(k for k in found.get(gid, ()) if group.account is None or k[0] == group.account)
        if keys:
            key = keys[0]  # ids are unique: one key, unless a snapshot repeats a group
            account, region, _ = key
            groups[key] = _group(placed, group, key, live.groups.get(key), managed.uids.get(account, ""))
            if group.accepted:
                accepted[key] = group.accepted
            continue
        accounts = sorted({group.account} if group.account is not None else every_account)
        where = f"{group.address or 'rules of ' + gid} in {group.source}"
        if managed.every_region and accounts and all(_listed_completely(live, account, gid) for account in accounts):
            account = accounts[0] if len(accounts) == 1 else ""
            placed.removed.append(_group(placed, group, (account, "", gid), None, managed.uids.get(account, "")))
            continue
        why = (
            "the scan does not cover every region (regions: is set)"
            if not managed.every_region
            else "not every region of the account was listed completely"
        )
        placed.errors.append(
            ScanError(
                group.account or (accounts[0] if len(accounts) == 1 else ""),
                "",
                NOT_FOUND,
                f"{where}: found in no scanned region, and {why}: unknown, not removed",
                gid,
            )
        )
    return placed


__all__ = ["NOT_FOUND", "GroupAttributes", "Managed", "ManagedGroup", "Placed", "place"]
