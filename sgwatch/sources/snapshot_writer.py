"""Write a :class:`~sgwatch.sources.raw.RawScan` as an offline snapshot directory.

Layout (one JSON file per API response, pretty-printed with sorted keys)::

    OUT/
      errors.json                                   only when the scan had errors
      membership-errors.json                        only when some region's membership could not be read
      <account>/
        <region>.DescribeSecurityGroups.json        first listing page
        <region>.DescribeSecurityGroups.2.json      further pages
        <region>.<sg-id>.json                       DescribeSecurityGroupAttribute, first page
        <region>.<sg-id>.2.json                     further pages of the same group
        <region>.<pl-id>.json                       DescribePrefixListAttributes, with "RegionId" added
        <region>.<prl-id>.json                      DescribePortRangeListEntries, with "RegionId" and
                                                    "PortRangeListId" added
        <region>.DescribeNetworkInterfaces.json     membership: ENI listing pages (.2.json, …),
        <region>.DescribeInstances.json             instance listing pages; both with "RegionId" added

Files sit directly in each account folder (no region sub-folders), so a loader that reads
``DIR/<account>/*.json`` and tells the APIs apart with :func:`sgwatch.sources.raw.classify` sees
everything. The account "default" also gets its own folder; a loader treats files directly in
``DIR`` as account "default", so both spellings read the same. DescribeRegions answers are not
written: the snapshot loader refuses them, and every covered region already has its listing file
(an empty region's listing is an empty page).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sgwatch.errors import InputError
from sgwatch.sources import identifiers
from sgwatch.sources.raw import MEMBERSHIP_ERRORS_FILE, RawResponse, RawScan

ERRORS_FILE = "errors.json"
# The id a file of each kind of answer is named after, and the field that holds it.
_NAMED_BY: dict[str, tuple[identifiers.Kind, str]] = {
    "DescribeSecurityGroupAttribute": ("security group", "SecurityGroupId"),
    "DescribePrefixListAttributes": ("prefix list", "PrefixListId"),
    "DescribePortRangeListEntries": ("port range list", "PortRangeListId"),
}


def _segment(kind: identifiers.Kind, value: object, response: RawResponse) -> str:
    # Names come from the cloud: one that is not an identifier is refused, never cleaned up
    # (two cleaned names could be one file; the scanner refuses such answers before this).
    bad = identifiers.problem(kind, value)
    if bad is not None:
        raise InputError(f"{response.account} {response.action}: not saved: {bad}")
    return str(value)


def _dump(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    # write then rename: a reader never sees half a file
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stem(response: RawResponse) -> str:
    body = response.body
    region = _segment("region", response.region or body.get("RegionId"), response)
    if response.action not in _NAMED_BY:
        return f"{region}.{response.action}"  # DescribeSecurityGroups, and listings to come
    kind, name = _NAMED_BY[response.action]
    return f"{region}.{_segment(kind, body.get(name), response)}"


def write_snapshot(raw: RawScan, out_dir: Path) -> None:
    """Write every raw response (in scan order, so page N of a group is file N) and the errors."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: Counter[tuple[str, str]] = Counter()
    files: list[tuple[Path, RawResponse]] = []
    for response in raw.responses:  # every name checked before the first file is written
        if response.action == "DescribeRegions":
            continue
        account = _segment("account", response.account, response)
        stem = _stem(response)
        seen[(account, stem)] += 1
        n = seen[(account, stem)]
        files.append((out_dir / account / (f"{stem}.json" if n == 1 else f"{stem}.{n}.json"), response))
    for path, response in files:
        _dump(path, response.body)
    errors_path = out_dir / ERRORS_FILE
    if raw.errors:
        _dump(errors_path, [asdict(error) for error in raw.errors])
    else:
        errors_path.unlink(missing_ok=True)  # a stale errors file would mark a good snapshot incomplete
    membership_path = out_dir / MEMBERSHIP_ERRORS_FILE
    if raw.membership_failures:
        _dump(
            membership_path,
            [
                {
                    "account": account,
                    "region": region,
                    "code": why.code,
                    "message": why.message,
                    "permissions": list(why.permissions),
                }
                for (account, region), why in sorted(raw.membership_failures.items())
            ],
        )
    else:
        membership_path.unlink(missing_ok=True)  # likewise: stale, it would hide a membership read
