"""What a targeted re-read changes in the daemon's picture of the estate, and what to judge again.

Pure functions over the last full scan's :class:`Snapshot` and :class:`Report`:

- :func:`plan`: a :class:`~sgwatch.events.handler.Batch` to the re-read :class:`Request`;
- :func:`apply`: the re-read's answers folded into the snapshot (a new one; the old is left as
  it was), and the groups to judge again: those re-read, those whose list changed, and every
  group sharing a group set with them, before or after the change;
- :func:`merge`: the report of those groups (``engine.assess(..., only=...)``, the full scan's
  own judgement, hence the same finding ids) put in place of theirs in the full report.

A group whose re-read failed is left exactly as it was: neither judged again nor resolved.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from operator import attrgetter

from sgwatch.core.checks import RANK
from sgwatch.core.findings import Report
from sgwatch.core.membership import Interface, Membership
from sgwatch.core.model import Group, GroupKey, PeerKind, Snapshot
from sgwatch.events.handler import Batch
from sgwatch.sources import interfaces
from sgwatch.sources.raw import RawResponse
from sgwatch.sources.reread import ListRef, Request, Result
from sgwatch.sources.snapshot import SnapshotBuilder


def _lists_of(snap: Snapshot, account: str, region: str) -> frozenset[ListRef]:
    held: set[ListRef] = set()
    for a, r, pl in snap.prefix_lists:
        if (a, r) == (account, region):
            held.add(("DescribePrefixListAttributes", pl))
    for a, r, prl in snap.port_lists:
        if (a, r) == (account, region):
            held.add(("DescribePortRangeListEntries", prl))
    return frozenset(held)


def naming_lists(
    snap: Snapshot, account: str, region: str, prefix: Collection[str], ports: Collection[str]
) -> set[str]:
    """The groups of the region whose rules name one of these lists."""
    found = set()
    for (a, r, gid), group in snap.groups.items():
        if (a, r) != (account, region):
            continue
        for rule in group.rules:
            k = rule.key
            if (k.peer.kind is PeerKind.PREFIX_LIST and k.peer.value in prefix) or (
                k.port_list and k.port_list in ports
            ):
                found.add(gid)
                break
    return found


def plan(snap: Snapshot, batch: Batch) -> Request:
    """What to read for ``batch``: the groups named, a membership call's groups the daemon does
    not know, and the lists named (again: a list event's whole point)."""
    account, region = batch.account, batch.region
    known = {gid for gid in (*batch.groups, *batch.members_of) if (account, region, gid) in snap.groups}
    groups = frozenset(batch.groups | (batch.members_of - known))
    lists: list[ListRef] = [("DescribePrefixListAttributes", pl) for pl in batch.prefix_lists]
    lists += [("DescribePortRangeListEntries", prl) for prl in batch.port_range_lists]
    return Request(
        account=account,
        region=region,
        groups=groups,
        deleted=frozenset(batch.deleted),
        unlisted=frozenset(gid for gid in groups if (account, region, gid) not in snap.groups),
        lists=frozenset(lists),
        held_lists=_lists_of(snap, account, region),
        interfaces=frozenset(batch.interfaces),
        instances=frozenset(batch.instances),
    )


@dataclass(frozen=True, slots=True)
class Applied:
    snapshot: Snapshot
    judge: frozenset[GroupKey]  # the groups to assess again
    read: frozenset[GroupKey]  # the groups re-read (or confirmed gone)
    failed: frozenset[GroupKey]  # the groups whose re-read failed: left as they were
    membership_failed: bool  # interfaces asked for and not read (left as they were)
    appeared: frozenset[GroupKey]  # read now, absent from the snapshot before
    vanished: frozenset[GroupKey]  # in the snapshot before, confirmed gone now


def _seen_by_others(group: Group | None, base: Group | None) -> object:
    """What of ``group`` the other groups of its sets are judged with (``core.groupsets``: its drop
    rules and the rules its baseline has, its type, the local sides of its rules): a change
    that leaves this as it was (a new accept, the common case) changes no other group's result."""
    if group is None:
        return None
    known = {r.key for r in base.rules} if base is not None else set()
    return (
        group.type,
        group.inner_access_policy,
        tuple(r for r in group.rules if r.policy == "drop" or r.key in known),
        frozenset(r.key.local for r in group.rules if r.key.local),
    )


def apply(
    snap: Snapshot,
    request: Request,
    result: Result,
    uids: dict[str, str] | None = None,
    also: Iterable[str] = (),
    baseline: Mapping[GroupKey, Group] | None = None,
) -> Applied:
    """``result`` folded into a copy of ``snap``. ``also``: groups to judge again though not re-read;
    ``baseline``: the baseline's groups (without it, every set of a re-read group is judged again)."""
    account, region = request.account, request.region
    where = (account, region)
    builder = SnapshotBuilder(uids=uids)
    members: list[RawResponse] = []
    for resp in result.responses:
        if resp.action in ("DescribeNetworkInterfaces", "DescribeInstances"):
            members.append(resp)
        else:
            builder.add(resp)
    mini = builder.finish()
    failed = {e.security_group_id for e in (*result.errors, *mini.errors) if e.security_group_id}
    groups = dict(snap.groups)
    untyped = set(snap.untyped)
    listed = dict(snap.listed)
    region_listed = set(listed.get(where, frozenset()))
    read: set[GroupKey] = set()
    for key, group in mini.groups.items():
        if key[2] in failed or key[2] not in request.groups:
            continue
        old = snap.groups.get(key)
        if key in mini.untyped and old is not None:
            # the attribute answer does not say the type, tags or whether a service manages it
            group = replace(group, type=old.type, tags=old.tags, managed=old.managed)
        elif key in mini.untyped:
            untyped.add(key)
        else:
            untyped.discard(key)
        groups[key] = group
        region_listed.add(key[2])
        read.add(key)
    for gid in result.gone:
        if gid in failed:
            continue
        key = (account, region, gid)
        groups.pop(key, None)
        untyped.discard(key)
        region_listed.discard(gid)
        read.add(key)
    if where in listed:  # without a listing of the region, a group's absence proves nothing
        listed[where] = frozenset(region_listed)
    # A group read now is no longer the one the full scan could not read.
    errors = [
        e for e in snap.errors if not (e.security_group_id and (e.account, e.region, e.security_group_id) in read)
    ]
    prefix_lists = {**snap.prefix_lists, **mini.prefix_lists}
    port_lists = {**snap.port_lists, **mini.port_lists}
    membership = dict(snap.membership)
    judge = set(read)
    moved = {(account, region, gid) for gid in also}
    changed_lists = {k[2] for k in mini.prefix_lists} | {k[2] for k in mini.port_lists}
    if changed_lists:
        moved |= {(account, region, gid) for gid in naming_lists(snap, account, region, changed_lists, changed_lists)}
    membership_failed = result.membership is not None
    old_members = snap.membership.get(where)
    if members and not membership_failed and old_members is not None and old_members.is_known:
        fresh = _members(account, region, members)
        if fresh is None or not fresh.is_known:
            membership_failed = True
        else:
            replaced = set(request.interfaces) | {i.id for i in fresh.interfaces}
            gone_hosts = set(request.instances)
            before = [i for i in old_members.interfaces if i.id in replaced or i.instance_id in gone_hosts]
            kept = [i for i in old_members.interfaces if not (i.id in replaced or i.instance_id in gone_hosts)]
            membership[where] = Membership.known(account, region, [*kept, *fresh.interfaces])
            moved |= {(account, region, gid) for i in (*before, *fresh.interfaces) for gid in i.security_group_ids}
    judge |= moved
    # Every group sharing a set with a group that changed as the others see it, before or after
    # (one step: a set's exposure is its own groups' rules together, whatever other sets those
    # groups are in).
    desired = baseline if baseline is not None else {}
    changed = [
        key[2]
        for key in judge
        if key in moved
        or baseline is None
        or _seen_by_others(snap.groups.get(key), desired.get(key)) != _seen_by_others(groups.get(key), desired.get(key))
    ]
    for m in (old_members, membership.get(where)):
        if m is not None and m.is_known:
            for gid in changed:
                for gset in m.index.sets_of(gid):
                    judge.update((account, region, other) for other in gset)
    judge -= {(account, region, gid) for gid in failed}
    updated = replace(
        snap,
        groups=groups,
        listed=listed,
        errors=errors,
        untyped=untyped,
        prefix_lists=prefix_lists,
        port_lists=port_lists,
        membership=membership,
    )
    return Applied(
        snapshot=updated,
        judge=frozenset(judge),
        read=frozenset(read),
        failed=frozenset((account, region, gid) for gid in failed),
        membership_failed=membership_failed,
        appeared=frozenset(k for k in read if k in groups and k not in snap.groups),
        vanished=frozenset(k for k in read if k not in groups and k in snap.groups),
    )


def _members(account: str, region: str, responses: Iterable[RawResponse]) -> Membership | None:
    enis: list[Interface] = []
    instances: list[interfaces.InstanceView] = []
    try:
        for resp in responses:
            if resp.action == "DescribeNetworkInterfaces":
                enis.extend(interfaces.enis_of_page(resp.body))
            else:
                instances.extend(interfaces.instances_of_page(resp.body))
    except interfaces.InterfaceError:
        return None
    return interfaces.assemble(account, region, enis, instances)


_key = attrgetter("account", "region", "security_group_id")


def merge(full: Report, partial: Report, judged: Collection[GroupKey], snap: Snapshot, added: int) -> Report:
    """``full`` with the judged groups' findings, exposures, posture and errors from ``partial``.
    ``added``: groups counted now and not before (new ones less removed ones)."""
    findings = [f for f in full.findings if _key(f) not in judged] + partial.findings
    findings.sort(key=lambda f: (-RANK[f.severity], f.account, f.region, f.security_group_id, f.kind))
    errors = [e for e in full.errors if not (e.security_group_id and _key(e) in judged)]
    errors += [e for e in partial.errors if e.security_group_id and _key(e) in judged]
    return Report(
        generated_at=partial.generated_at,
        groups=full.groups + added,
        findings=findings,
        exposures=[e for e in full.exposures if _key(e) not in judged] + partial.exposures,
        posture=[p for p in full.posture if _key(p) not in judged] + partial.posture,
        errors=errors,
        membership=[snap.membership.get((m.account, m.region), m) for m in full.membership],
    )


__all__ = ["Applied", "apply", "merge", "naming_lists", "plan"]
