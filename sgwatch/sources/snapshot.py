"""Offline snapshots: a directory of the ECS API's own JSON responses.

Layout: ``DIR/*.json`` (account ``default``) or ``DIR/<account>/**.json``; a first folder named
like the response's region is a region folder, not an account. Each file holds one
DescribeSecurityGroups or DescribeSecurityGroupAttribute response (pages of the same group are
merged); ``errors.json`` lists what a live scan could not read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgwatch.core import normalize
from sgwatch.core.model import Group, GroupKey, Policy, Rule, ScanError, Snapshot
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


def _list(body: Mapping[str, Any], outer: str, inner: str) -> list[Any]:
    value = body.get(outer) or {}
    items = value.get(inner, []) if isinstance(value, Mapping) else []
    return items if isinstance(items, list) else []


def _inner(value: object) -> Policy:
    return "drop" if str(value or "").strip().lower() == "drop" else "accept"


def parse_scan(raw: RawScan, origins: Mapping[int, str] | None = None) -> Snapshot:
    """Turn raw responses into a snapshot. ``origins`` maps response index to its file name."""
    origins = origins or {}
    snap = Snapshot(errors=list(raw.errors))
    partial: dict[GroupKey, _Partial] = {}
    listed: dict[tuple[str, str], set[str]] = defaultdict(set)
    meta: dict[GroupKey, Mapping[str, Any]] = {}
    for n, resp in enumerate(raw.responses):
        fault = _Fault(origins.get(n))
        body, account = resp.body, resp.account
        region = str(body.get("RegionId") or "")
        if not region:
            fault(snap.errors, account, "", "", "RegionId", "response has no RegionId")
            continue
        if resp.action == "DescribeSecurityGroups":
            listing = listed[(account, region)]
            for item in _list(body, "SecurityGroups", "SecurityGroup"):
                sg = str(item.get("SecurityGroupId") or "")
                if sg:
                    listing.add(sg)
                    meta[(account, region, sg)] = item
        elif resp.action == "DescribeSecurityGroupAttribute":
            sg = str(body.get("SecurityGroupId") or "")
            part = partial.setdefault((account, region, sg), _Partial(account, region, sg))
            part.attrs.update({k: v for k, v in body.items() if k != "Permissions"})
            part.pages += 1
            for i, perm in enumerate(_list(body, "Permissions", "Permission")):
                try:
                    part.rules.append(normalize.rule_from_api(perm, account))
                except NormalizeError as exc:
                    fault(snap.errors, account, region, sg, f"{sg} Permissions.Permission[{i}]", str(exc))
                    part.failed = True
    for key, part in partial.items():
        if part.failed:
            continue  # an unreadable rule makes the whole group unknown, not smaller
        item = meta.get(key, {})
        tags = tuple(
            (str(t.get("TagKey", "")), str(t.get("TagValue", "")))
            for t in _list(item, "Tags", "Tag")
            if isinstance(t, Mapping)
        )
        try:
            gtype = normalize.group_type(item.get("SecurityGroupType"))
        except NormalizeError:
            gtype = "normal"
        group = Group(
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
        snap.groups[key] = group
        if key not in meta:
            snap.untyped.add(key)
    for (account, region), ids in listed.items():
        snap.listed[(account, region)] = frozenset(ids)
        for sg in sorted(ids):
            if (account, region, sg) not in snap.groups and (account, region, sg) not in partial:
                snap.errors.append(
                    ScanError(
                        account, region, "AttributesMissing", "group is listed but its rules could not be read", sg
                    )
                )
    return snap


def _dedupe(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    # Overlapping pages can repeat a rule; the same content is one rule.
    seen: dict[object, Rule] = {}
    for r in rules:
        seen.setdefault(r.key, r)
    return tuple(seen.values())


def _account_for(rel: Path, body: Mapping[str, Any]) -> str:
    if len(rel.parts) < 2 or rel.parts[0] == str(body.get("RegionId") or ""):
        return DEFAULT_ACCOUNT
    return rel.parts[0]


def read_dir(path: Path) -> tuple[RawScan, dict[int, str]]:
    """Read every JSON file under ``path``; raises InputError naming the file at fault."""
    if not path.is_dir():
        raise InputError(f"{path}: snapshot directory not found (give the folder of saved API responses)")
    raw = RawScan()
    origins: dict[int, str] = {}
    files = sorted(p for p in path.rglob("*.json") if p.is_file())
    if not files:
        raise InputError(f"{path}: snapshot directory has no .json files")
    for file in files:
        rel = file.relative_to(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{file}: cannot read: {exc}") from None
        if file.name == ERRORS_FILE:
            raw.errors.extend(_errors(file, data))
            continue
        if not isinstance(data, dict):
            raise InputError(f"{file}: expected a JSON object (one API response)")
        action = classify(data)
        if action is None or action == "DescribeRegions":
            raise InputError(
                f"{file}: not a DescribeSecurityGroups or DescribeSecurityGroupAttribute response "
                "(no SecurityGroups or Permissions key)"
            )
        origins[len(raw.responses)] = str(file)
        raw.responses.append(RawResponse(_account_for(rel, data), action, data))
    return raw, origins


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


def load(path: Path) -> Snapshot:
    raw, origins = read_dir(path)
    return parse_scan(raw, origins)
