"""Offline snapshots: a directory of the ECS API's own JSON responses.

Layout: ``DIR/*.json`` (account ``default``) or ``DIR/<account>/**.json``; a first folder named
like the response's region is a region folder, not an account. Each file holds one
DescribeSecurityGroups, DescribeSecurityGroupAttribute (pages of the same group are merged),
DescribePrefixListAttributes or DescribePortRangeListEntries response (the entries of a list that
rules name; the API leaves out the region, and the port list's id, so such a file carries the
``RegionId`` and ``PortRangeListId`` sgwatch adds);
``errors.json`` lists what a live scan could not read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import eq, itemgetter
from pathlib import Path
from typing import Any

from sgwatch import inputlimits
from sgwatch.core import normalize
from sgwatch.core.model import Group, GroupKey, Policy, Rule, RuleKey, ScanError, Snapshot
from sgwatch.core.normalize import NormalizeError
from sgwatch.errors import InputError
from sgwatch.sources.raw import DEFAULT_ACCOUNT, RawResponse, RawScan, classify

ERRORS_FILE = "errors.json"


@dataclass(slots=True)
class _Partial:
    account: str
    region: str
    id: str
    attrs: dict[str, Any] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    pages: int = 0
    failed: bool = False


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

    def __init__(self, errors: Iterable[ScanError] = (), vanished: Iterable[GroupKey] = ()) -> None:
        self.snap = Snapshot(errors=list(errors))
        self.vanished = set(vanished)
        self._partial: dict[GroupKey, _Partial] = {}
        self._listed: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._meta: dict[GroupKey, Mapping[str, Any]] = {}

    def add(self, resp: RawResponse, origin: str | None = None) -> None:
        if resp.action == "DescribeRegions":
            return  # which regions exist is the scan's business; it holds no groups
        fault = _Fault(origin)
        body, account = resp.body, resp.account
        region = str(body.get("RegionId") or "")
        if not region:
            hint = (
                ' (this API leaves it out: sgwatch adds "RegionId" when it saves one; add it to a hand-saved answer)'
                if resp.action in ("DescribePrefixListAttributes", "DescribePortRangeListEntries")
                else ""
            )
            fault(self.snap.errors, account, "", "", "RegionId", f"response has no RegionId{hint}")
            return
        if resp.action == "DescribePrefixListAttributes":
            self._prefix_list(body, account, region, fault)
            return
        if resp.action == "DescribePortRangeListEntries":
            self._port_list(body, account, region, fault)
            return
        if resp.action == "DescribeSecurityGroups":
            listing = self._listed[(account, region)]
            for item in _list(body, "SecurityGroups", "SecurityGroup"):
                sg = str(item.get("SecurityGroupId") or "")
                if sg:
                    listing.add(sg)
                    self._meta[(account, region, sg)] = {k: v for k, v in item.items() if k != "Permissions"}
        elif resp.action == "DescribeSecurityGroupAttribute":
            sg = str(body.get("SecurityGroupId") or "")
            part = self._partial.setdefault((account, region, sg), _Partial(account, region, sg))
            part.attrs.update({k: v for k, v in body.items() if k not in ("Permissions", "RequestId", "NextToken")})
            part.pages += 1
            perms, before = _list(body, "Permissions", "Permission"), len(part.rules)
            try:  # all at once, the loop in C; on a bad entry, again one by one to say which
                part.rules.extend(map(normalize.rule_from_api, perms, repeat(account)))
                return
            except (NormalizeError, AttributeError):
                del part.rules[before:]
            for i, perm in enumerate(perms):
                try:
                    try:
                        part.rules.append(normalize.rule_from_api(perm, account))
                    except AttributeError:  # no .get: a string or list where a rule belongs
                        raise NormalizeError("expected an object (one rule)") from None
                except NormalizeError as exc:
                    fault(self.snap.errors, account, region, sg, f"{sg} Permissions.Permission[{i}]", str(exc))
                    part.failed = True

    def _prefix_list(self, body: Mapping[str, Any], account: str, region: str, fault: _Fault) -> None:
        pl = str(body.get("PrefixListId") or "").strip()
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
        prl = str(body.get("PortRangeListId") or "").strip()
        if not prl:
            fault(self.snap.errors, account, region, "", "PortRangeListId", _NO_PORT_LIST_ID)
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
            snap.groups[key] = self._group(key, part)
            if key not in self._meta:
                snap.untyped.add(key)
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
        return snap

    def _group(self, key: GroupKey, part: _Partial) -> Group:
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
        )


def parse_scan(raw: RawScan, origins: Mapping[int, str] | None = None) -> Snapshot:
    """Turn raw responses into a snapshot. ``origins`` maps response index to its file name."""
    builder = SnapshotBuilder(raw.errors, raw.vanished)
    for n, resp in enumerate(raw.responses):
        builder.add(resp, (origins or {}).get(n))
    snap = builder.finish()
    if raw.regions:
        snap.scope = frozenset(raw.regions)
    return snap


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
) -> Iterator[tuple[str, RawResponse | list[ScanError]]]:
    """Each JSON file under ``path`` as a response (or the scan errors file); InputError names the file.

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
        if not isinstance(data, dict):
            raise InputError(f"{file}: expected a JSON object (one API response)")
        action = classify(data)
        if action is None or action == "DescribeRegions":
            raise InputError(
                f"{file}: not a DescribeSecurityGroups, DescribeSecurityGroupAttribute, DescribePrefixListAttributes "
                "or DescribePortRangeListEntries response (no SecurityGroups, Permissions or Entries key)"
            )
        yield str(file), RawResponse(_account_for(file.relative_to(path), data), action, data)


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


def load(path: Path, max_bytes: int = inputlimits.DEFAULT_MAX_INPUT_BYTES) -> Snapshot:
    builder = SnapshotBuilder()
    for origin, item in iter_dir(path, max_bytes):
        if isinstance(item, list):
            builder.snap.errors.extend(item)
        else:
            builder.add(item, origin)
    return builder.finish()
