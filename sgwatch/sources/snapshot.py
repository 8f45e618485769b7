"""Offline snapshots: a directory of the ECS API's own JSON responses.

Layout: ``DIR/*.json`` (account ``default``) or ``DIR/<account>/**.json``; a first folder named
like the response's region is a region folder, not an account. Each file holds one
DescribeSecurityGroups, DescribeSecurityGroupAttribute (pages of the same group are merged),
DescribePrefixListAttributes or DescribePortRangeListEntries response (the entries of a list that
rules name; the API leaves out the region, and the port list's id, so such a file carries the
``RegionId`` and ``PortRangeListId`` sgwatch adds), or a DescribeNetworkInterfaces or
DescribeInstances page (membership; with the ``RegionId`` sgwatch adds);
``errors.json`` lists what a live scan could not read, ``membership-errors.json`` the regions
whose membership it could not read (which leaves the report complete: see
:mod:`sgwatch.core.membership`).

The region of a response is the one a live scan asked about (``RawResponse.region``; a body naming
another is an error), else the body's ``RegionId``; it, the account folder and every id must be
identifiers (:mod:`sgwatch.sources.identifiers`), for they name files. Pages are whole or the
region's listing / the group's rules are unreadable (:func:`sgwatch.sources.paging.missing_page`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import eq, itemgetter
from pathlib import Path
from typing import Any, TypeVar

from sgwatch import inputlimits
from sgwatch.core import normalize
from sgwatch.core.membership import Interface, Membership, MembershipUnknown
from sgwatch.core.memo import Carried
from sgwatch.core.model import Group, GroupKey, Policy, Rule, RuleKey, ScanError, Snapshot
from sgwatch.core.normalize import NormalizeError
from sgwatch.errors import InputError
from sgwatch.sources import ecs_rules, identifiers, interfaces, paging
from sgwatch.sources.parsecache import Digest, MembershipSource, ParseCache, digest
from sgwatch.sources.raw import DEFAULT_ACCOUNT, MEMBERSHIP_ERRORS_FILE, Action, RawResponse, RawScan, classify

ERRORS_FILE = "errors.json"
_T = TypeVar("_T")
MEMBERSHIP_ACTIONS: tuple[Action, ...] = ("DescribeNetworkInterfaces", "DescribeInstances")


@dataclass(slots=True)
class _Partial:
    account: str
    region: str
    id: str
    attrs: dict[str, Any] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    pages: list[paging.Page] = field(default_factory=list)
    failed: bool = False
    # the digests of its pages, while all of them have one (ParseCache): None once one has not
    digests: list[Digest] | None = field(default_factory=list)


@dataclass(slots=True)
class _Members:
    """One region's membership pages as they fold in."""

    enis: list[Interface] = field(default_factory=list)
    instances: list[interfaces.InstanceView] = field(default_factory=list)
    # action -> its pages as read: a listing is whole only by the one paging rule
    pages: dict[str, list[paging.Page]] = field(default_factory=dict)
    failed: MembershipUnknown | None = None
    # action -> the digests of its pages (ParseCache); a page without one takes its action out
    digests: dict[str, list[Digest] | None] = field(default_factory=dict)


class _Fault:
    """Where a bad value came from: a file (the user's input: fatal) or a live call (a scan error)."""

    def __init__(self, origin: str | None) -> None:
        self.origin = origin

    def __call__(self, errors: list[ScanError], account: str, region: str, sg: str, where: str, msg: str) -> None:
        if self.origin is not None:
            raise InputError(f"{self.origin}: {where}: {msg}")
        errors.append(ScanError(account, region, "InvalidResponse", f"{where}: {msg}", sg))


_NO_PORT_LIST_ID = (
    "response has no PortRangeListId (this API leaves it out: sgwatch adds it when it saves one; add it to a "
    "hand-saved answer)"
)


def _list(body: Mapping[str, Any], outer: str, inner: str) -> list[Any]:
    value = body.get(outer) or {}
    items = value.get(inner, []) if isinstance(value, Mapping) else []
    return items if isinstance(items, list) else []


def _inner(value: object) -> Policy:
    return "drop" if str(value or "").strip().lower() == "drop" else "accept"


class SnapshotBuilder:
    """Folds responses into a snapshot one at a time, so a large estate is never all raw JSON at once."""

    def __init__(
        self,
        errors: Iterable[ScanError] = (),
        vanished: Iterable[GroupKey] = (),
        membership_failures: Mapping[tuple[str, str], MembershipUnknown] | None = None,
        uids: Mapping[str, str] | None = None,
        cache: ParseCache | None = None,
    ) -> None:
        # account name -> its UID: the owner a rule names for the account's own groups
        self._own = dict(uids or {})
        self._cache = cache
        self._meta_digests: dict[GroupKey, Digest | None] = {}
        self.snap = Snapshot(errors=list(errors))
        self.vanished = set(vanished)
        self._members: dict[tuple[str, str], _Members] = {}
        for where, why in (membership_failures or {}).items():
            self.membership_failed(where, why)
        self._partial: dict[GroupKey, _Partial] = {}
        self._listed: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._listing_pages: dict[tuple[str, str], list[paging.Page]] = defaultdict(list)
        self._meta: dict[GroupKey, Mapping[str, Any]] = {}

    def add(self, resp: RawResponse, origin: str | None = None) -> None:
        if resp.action == "DescribeRegions":
            return  # which regions exist is the scan's business; it holds no groups
        fault = _Fault(origin)
        body, account = resp.body, resp.account
        region = self._region(resp, fault)
        if region is None:
            return
        if resp.action in MEMBERSHIP_ACTIONS:
            self._member_page(resp.action, body, account, region, fault)
            return
        if resp.action == "DescribePrefixListAttributes":
            self._prefix_list(body, account, region, fault)
            return
        if resp.action == "DescribePortRangeListEntries":
            self._port_list(body, account, region, fault)
            return
        if resp.action == "DescribeSecurityGroups":
            listing = self._listed[(account, region)]
            items = _list(body, "SecurityGroups", "SecurityGroup")
            self._listing_pages[(account, region)].append(paging.Page.of(body, len(items), origin or ""))
            for i, item in enumerate(items):
                where = f"SecurityGroups.SecurityGroup[{i}]"
                if not isinstance(item, Mapping):
                    fault(self.snap.errors, account, region, "", where, "expected an object (one group)")
                    continue
                if not item.get("SecurityGroupId"):
                    continue
                try:
                    sg = identifiers.check("security group", item.get("SecurityGroupId"))
                except identifiers.IdentifierError as exc:
                    fault(self.snap.errors, account, region, "", f"{where}.SecurityGroupId", str(exc))
                    continue
                listing.add(sg)
                meta = self._meta[(account, region, sg)] = {k: v for k, v in item.items() if k != "Permissions"}
                if self._cache is not None:
                    self._meta_digests[(account, region, sg)] = digest(meta)
        elif resp.action == "DescribeSecurityGroupAttribute":
            try:
                sg = identifiers.check("security group", body.get("SecurityGroupId"))
            except identifiers.IdentifierError as exc:
                fault(self.snap.errors, account, region, "", "SecurityGroupId", str(exc))
                return
            part = self._partial.setdefault((account, region, sg), _Partial(account, region, sg))
            part.attrs.update({k: v for k, v in body.items() if k not in ("Permissions", "RequestId", "NextToken")})
            perms, before = _list(body, "Permissions", "Permission"), len(part.rules)
            part.pages.append(paging.Page.of(body, len(perms), origin or ""))
            owner = self._own.get(account, account)
            cache, page = self._cache, None
            if cache is not None and (page := digest(body)) is not None:
                kept = cache.rules.get(page, owner)
                if kept is not None:
                    part.rules.extend(kept)
                    part.digests = _noted(part.digests, page)
                    return
            try:  # all at once, the loop in C; on a bad entry, again one by one to say which
                part.rules.extend(map(ecs_rules.rule_from_api, perms, repeat(owner)))
                if cache is not None and page is not None:
                    cache.rules.put(page, owner, tuple(part.rules[before:]))
                part.digests = _noted(part.digests, page)
                return
            except (NormalizeError, AttributeError):
                del part.rules[before:]
            part.digests = None
            for i, perm in enumerate(perms):
                try:
                    try:
                        part.rules.append(ecs_rules.rule_from_api(perm, self._own.get(account, account)))
                    except AttributeError:  # no .get: a string or list where a rule belongs
                        raise NormalizeError("expected an object (one rule)") from None
                except NormalizeError as exc:
                    fault(self.snap.errors, account, region, sg, f"{sg} Permissions.Permission[{i}]", str(exc))
                    part.failed = True

    def _region(self, resp: RawResponse, fault: _Fault) -> str | None:
        """The region of a response: the one a live scan asked about, else the body's; None if bad."""
        body, account = resp.body, resp.account
        if (bad := identifiers.problem("account", account)) is not None:
            fault(self.snap.errors, account, "", "", "account", bad)
            return None
        said = body.get("RegionId")
        if resp.region and said not in (None, "") and said != resp.region:
            msg = f"the answer names region {identifiers.shown(said)}, not {resp.region}, the region asked about"
            fault(self.snap.errors, account, resp.region, "", "RegionId", msg)
            return None
        region = resp.region or said
        if region in (None, ""):
            hint = (
                ' (this API leaves it out: sgwatch adds "RegionId" when it saves one; add it to a hand-saved answer)'
                if resp.action in ("DescribePrefixListAttributes", "DescribePortRangeListEntries", *MEMBERSHIP_ACTIONS)
                else ""
            )
            fault(self.snap.errors, account, "", "", "RegionId", f"response has no RegionId{hint}")
            return None
        try:
            return identifiers.check("region", region)
        except identifiers.IdentifierError as exc:
            fault(self.snap.errors, account, "", "", "RegionId", str(exc))
            return None

    def membership_failed(self, where: tuple[str, str], why: MembershipUnknown) -> None:
        """The region's membership could not be read (a refused or failed call): unknown, whatever pages came."""
        members = self._members.setdefault(where, _Members())
        if members.failed is None:
            members.failed = why

    def _member_page(self, action: Action, body: Mapping[str, Any], account: str, region: str, fault: _Fault) -> None:
        members = self._members.setdefault((account, region), _Members())
        cache, page = self._cache, None
        held = 0
        try:
            if action == "DescribeNetworkInterfaces":
                enis, page = _parsed(None if cache is None else cache.enis, body, interfaces.enis_of_page)
                members.enis.extend(enis)
                held = len(enis)
            else:
                kept = None if cache is None else cache.instances
                instances, page = _parsed(kept, body, interfaces.instances_of_page)
                members.instances.extend(instances)
                held = len(instances)
        except interfaces.InterfaceError as exc:
            if fault.origin is not None:
                raise InputError(f"{fault.origin}: {exc}") from None
            self.membership_failed((account, region), MembershipUnknown("InvalidResponse", f"{action}: {exc}"))
            page = None
        members.pages.setdefault(action, []).append(paging.Page.of(body, held, fault.origin or ""))
        members.digests[action] = _noted(members.digests.setdefault(action, []), page)

    def _membership(self, account: str, region: str, members: _Members) -> Membership:
        if members.failed is not None:
            return Membership.unknown_because(account, region, members.failed)
        for action in MEMBERSHIP_ACTIONS:
            if action not in members.pages:
                why = MembershipUnknown("MembershipNotRead", f"no {action} answer for this region", (f"ecs:{action}",))
                return Membership.unknown_because(account, region, why)
            if (missing := paging.missing_page(members.pages[action])) is not None:
                why = MembershipUnknown("ListingIncomplete", f"{action}: {missing}", (f"ecs:{action}",))
                return Membership.unknown_because(account, region, why)
        pages = [members.digests.get(action) for action in MEMBERSHIP_ACTIONS]
        if self._cache is None or pages[0] is None or pages[1] is None:
            return interfaces.assemble(account, region, members.enis, members.instances)
        source: MembershipSource = (tuple(pages[0]), tuple(pages[1]))
        kept = self._cache.memberships.get((account, region), source)
        if kept is None:
            kept = interfaces.assemble(account, region, members.enis, members.instances)
            self._cache.memberships.put((account, region), source, kept)
        return kept

    def _prefix_list(self, body: Mapping[str, Any], account: str, region: str, fault: _Fault) -> None:
        try:
            pl = identifiers.check("prefix list", body.get("PrefixListId"))
        except identifiers.IdentifierError as exc:
            fault(self.snap.errors, account, region, "", "PrefixListId", str(exc))
            return
        cidrs: set[str] = set()
        for i, entry in enumerate(_list(body, "Entries", "Entry")):
            try:
                if not isinstance(entry, Mapping):
                    raise NormalizeError("expected an object (one entry)")
                cidrs.add(normalize.cidr(str(entry.get("Cidr") or "")).value)
            except NormalizeError as exc:
                # Not kept: a list read in part would understate what its rules let in.
                fault(self.snap.errors, account, region, "", f"{pl} Entries.Entry[{i}]", str(exc))
                return
        self.snap.prefix_lists[(account, region, pl)] = tuple(sorted(cidrs))

    def _port_list(self, body: Mapping[str, Any], account: str, region: str, fault: _Fault) -> None:
        if body.get("PortRangeListId") in (None, ""):
            fault(self.snap.errors, account, region, "", "PortRangeListId", _NO_PORT_LIST_ID)
            return
        try:
            prl = identifiers.check("port range list", body.get("PortRangeListId"))
        except identifiers.IdentifierError as exc:
            fault(self.snap.errors, account, region, "", "PortRangeListId", str(exc))
            return
        ranges: set[tuple[int, int]] = set()
        for i, entry in enumerate(body.get("Entries") or []):
            try:
                if not isinstance(entry, Mapping):
                    raise NormalizeError("expected an object (one entry)")
                ranges.add(normalize.list_port_range(entry.get("PortRange")))
            except NormalizeError as exc:
                fault(self.snap.errors, account, region, "", f"{prl} Entries[{i}]", str(exc))  # not kept: see above
                return
        self.snap.port_lists[(account, region, prl)] = tuple(sorted(ranges))

    def finish(self) -> Snapshot:
        snap = self.snap
        for key, part in self._partial.items():
            if part.failed:
                continue  # an unreadable rule makes the whole group unknown, not smaller
            missing = paging.missing_page(part.pages)
            if missing is not None:  # rules on a page not read are unknown, not removed
                snap.errors.append(
                    ScanError(
                        part.account,
                        part.region,
                        "PageMissing",
                        f"DescribeSecurityGroupAttribute: {missing}: the group's rules are not all known",
                        part.id,
                    )
                )
                continue
            snap.groups[key] = self._group(key, part)
            if key not in self._meta:
                snap.untyped.add(key)
        for (account, region), pages in self._listing_pages.items():
            missing = paging.missing_page(pages)
            if missing is not None:  # a region error: no group of the region can be called removed
                snap.errors.append(
                    ScanError(
                        account,
                        region,
                        "PageMissing",
                        f"DescribeSecurityGroups: {missing}: the listing is not whole, so no group of the region "
                        "can be declared removed",
                    )
                )
        for (account, region), listed in self._listed.items():
            ids = {sg for sg in listed if (account, region, sg) not in self.vanished}
            snap.listed[(account, region)] = frozenset(ids)
            for sg in sorted(ids):
                if (account, region, sg) not in self._partial:
                    snap.errors.append(
                        ScanError(
                            account, region, "AttributesMissing", "group is listed but its rules could not be read", sg
                        )
                    )
        for (account, region), members in sorted(self._members.items()):
            snap.membership[(account, region)] = self._membership(account, region, members)
        return snap

    def _group(self, key: GroupKey, part: _Partial) -> Group:
        """The group, the very one of the last scan when its pages and listing entry are as then (ParseCache)."""
        cache, source = self._cache, None
        listed = self._meta_digests.get(key)
        if cache is not None and part.digests is not None and (listed is not None or key not in self._meta):
            owner = self._own.get(part.account, part.account)
            source = (tuple(part.digests), owner, listed)
            kept = cache.groups.get(key, source)
            if kept is not None:
                return kept
        group = self._build_group(key, part)
        if cache is not None and source is not None:
            cache.groups.put(key, source, group)
        return group

    def _build_group(self, key: GroupKey, part: _Partial) -> Group:
        item = self._meta.get(key, {})
        tags = tuple(
            (str(t.get("TagKey", "")), str(t.get("TagValue", "")))
            for t in _list(item, "Tags", "Tag")
            if isinstance(t, Mapping)
        )
        try:
            gtype = normalize.group_type(item.get("SecurityGroupType"))
        except NormalizeError:
            gtype = "normal"
        return Group(
            account=part.account,
            region=part.region,
            id=part.id,
            name=str(part.attrs.get("SecurityGroupName") or item.get("SecurityGroupName") or ""),
            type=gtype,
            vpc_id=str(part.attrs.get("VpcId") or item.get("VpcId") or ""),
            inner_access_policy=_inner(part.attrs.get("InnerAccessPolicy")),
            description=str(part.attrs.get("Description") or item.get("Description") or ""),
            rules=_dedupe(part.rules),
            tags=tags,
            managed=item.get("ServiceManaged") in (True, "true", "True"),
        )


def parse_scan(raw: RawScan, origins: Mapping[int, str] | None = None, cache: ParseCache | None = None) -> Snapshot:
    """Turn raw responses into a snapshot. ``origins`` maps response index to its file name.

    ``cache``: what the last scan worked out, reused where a response says what it said then
    (:class:`~sgwatch.sources.parsecache.ParseCache`; the snapshot is the same with or without).
    Pass it only with whole scans: what a scan did not see is dropped from it.
    """
    if cache is not None:
        cache.begin()
    builder = SnapshotBuilder(raw.errors, raw.vanished, raw.membership_failures, raw.account_uids, cache)
    for n, resp in enumerate(raw.responses):
        builder.add(resp, (origins or {}).get(n))
    snap = builder.finish()
    if cache is not None:
        cache.end()
    if raw.regions:
        snap.scope = frozenset(raw.regions)
    return snap


def _parsed(
    carried: Carried[Digest, None, tuple[_T, ...]] | None,
    body: Mapping[str, Any],
    parse: Callable[[Mapping[str, Any]], Sequence[_T]],
) -> tuple[tuple[_T, ...], Digest | None]:
    """``parse(body)``, or what it gave for an equal body last scan; and the body's digest (None: not cached)."""
    page = digest(body) if carried is not None else None
    if carried is None or page is None:
        return tuple(parse(body)), None
    kept = carried.get(page, None)
    if kept is None:
        kept = tuple(parse(body))  # raises before anything is kept
        carried.put(page, None, kept)
    return kept, page


def _noted(digests: list[Digest] | None, page: Digest | None) -> list[Digest] | None:
    """The digests of what was built so far, with ``page``'s; None once a page has none (not cached)."""
    if digests is None or page is None:
        return None
    digests.append(page)
    return digests


def _dedupe(rules: Sequence[Rule]) -> tuple[Rule, ...]:
    # Sorted by content, so that equal groups compare equal in one step. Overlapping pages can
    # repeat a rule; the same content is one rule, the first read. Sorted, repeats are
    # neighbours: one C-level pass finds whether there are any before paying for a dict.
    ordered = sorted(rules, key=itemgetter(0))
    keys = list(map(itemgetter(0), ordered))
    if not any(map(eq, keys, islice(keys, 1, None))):
        return tuple(ordered)
    first: dict[RuleKey, Rule] = {}
    for rule in rules:
        first.setdefault(rule.key, rule)
    return tuple(sorted(first.values(), key=itemgetter(0)))


def _account_for(rel: Path, body: Mapping[str, Any]) -> str:
    if len(rel.parts) < 2 or rel.parts[0] == str(body.get("RegionId") or ""):
        return DEFAULT_ACCOUNT
    return rel.parts[0]


def iter_dir(
    path: Path, max_bytes: int = inputlimits.DEFAULT_MAX_INPUT_BYTES
) -> Iterator[tuple[str, RawResponse | list[ScanError] | dict[tuple[str, str], MembershipUnknown]]]:
    """Each JSON file under ``path`` as a response (or a scan errors file); InputError names the file.

    Files past ``max_bytes``, nested too deep or holding oversized numbers are refused (inputlimits)."""
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long, a permission denied on the way
        raise InputError(f"{str(path)[:200]}: cannot read the snapshot: {exc.strerror or exc}") from None
    if not is_dir:
        raise InputError(f"{path}: snapshot directory not found (give the folder of saved API responses)")
    files = sorted((p for p in path.rglob("*.json") if p.is_file()), key=lambda p: _page_order(p.relative_to(path)))
    if not files:
        raise InputError(f"{path}: snapshot directory has no .json files")
    for file in files:
        try:
            data = inputlimits.load_json(inputlimits.read_bytes(file, max_bytes), str(file))
        except FileNotFoundError:
            raise InputError(f"{file}: cannot read: file is gone") from None
        if file.name == ERRORS_FILE:
            yield str(file), _errors(file, data)
            continue
        if file.name == MEMBERSHIP_ERRORS_FILE:
            yield str(file), _membership_errors(file, data)
            continue
        if not isinstance(data, dict):
            raise InputError(f"{file}: expected a JSON object (one API response)")
        action = classify(data)
        if action is None or action == "DescribeRegions":
            raise InputError(
                f"{file}: not a DescribeSecurityGroups, DescribeSecurityGroupAttribute, DescribePrefixListAttributes, "
                "DescribePortRangeListEntries, DescribeNetworkInterfaces or DescribeInstances response (no "
                "SecurityGroups, Permissions, Entries, NetworkInterfaceSets or Instances key)"
            )
        account = _account_for(file.relative_to(path), data)
        if (bad := identifiers.problem("account", account)) is not None:
            raise InputError(
                f"{file}: its folder is neither the response's region nor an account name: {bad}; "
                "rename the folder, or fix the response's RegionId"
            )
        yield str(file), RawResponse(account, action, data)


def _page_order(rel: Path) -> list[tuple[int, int, str]]:
    """``sg-1.json`` before ``sg-1.2.json`` before ``sg-1.10.json``: pages in the order they were read."""
    parts = [*rel.parent.parts, *rel.name.removesuffix(".json").split(".")]
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _errors(file: Path, data: object) -> list[ScanError]:
    if not isinstance(data, list):
        raise InputError(f"{file}: expected a JSON list of scan errors")
    out = []
    for i, e in enumerate(data):
        if not isinstance(e, dict) or not {"region", "code"} <= e.keys():
            raise InputError(f"{file}: entry {i}: a scan error needs at least 'region' and 'code'")
        out.append(
            ScanError(
                str(e.get("account") or DEFAULT_ACCOUNT),
                str(e["region"]),
                str(e["code"]),
                str(e.get("message") or ""),
                str(e.get("security_group_id") or ""),
            )
        )
    return out


def _membership_errors(file: Path, data: object) -> dict[tuple[str, str], MembershipUnknown]:
    if not isinstance(data, list):
        raise InputError(f"{file}: expected a JSON list of membership read errors")
    out = {}
    for i, e in enumerate(data):
        if not isinstance(e, dict) or not {"region", "code"} <= e.keys():
            raise InputError(f"{file}: entry {i}: a membership read error needs at least 'region' and 'code'")
        permissions = e.get("permissions", [])
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise InputError(f"{file}: entry {i}: 'permissions' must be a list of RAM actions")
        where = (str(e.get("account") or DEFAULT_ACCOUNT), str(e["region"]))
        out[where] = MembershipUnknown(str(e["code"]), str(e.get("message") or ""), tuple(permissions))
    return out


def load(
    path: Path, max_bytes: int = inputlimits.DEFAULT_MAX_INPUT_BYTES, uids: Mapping[str, str] | None = None
) -> Snapshot:
    """``uids``: account name -> UID (the config's ``uid:``), so a rule naming its own account's UID
    as the group owner reads as the same account."""
    builder = SnapshotBuilder(uids=uids)
    for origin, item in iter_dir(path, max_bytes):
        if isinstance(item, list):
            builder.snap.errors.extend(item)
        elif isinstance(item, dict):
            for where, why in item.items():
                builder.membership_failed(where, why)
        else:
            builder.add(item, origin)
    return builder.finish()
