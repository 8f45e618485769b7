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
import re
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sgwatch.sources.raw import MEMBERSHIP_ERRORS_FILE, RawResponse, RawScan

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
ERRORS_FILE = "errors.json"


def _segment(value: str, fallback: str) -> str:
    # ids come from the cloud; keep them from escaping the snapshot directory
    cleaned = _SAFE.sub("_", value).strip(".")
    return cleaned or fallback


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
    if response.action == "DescribeRegions":
        return "DescribeRegions"
    region = _segment(str(body.get("RegionId", "")), "unknown-region")
    if response.action in ("DescribeSecurityGroups", "DescribeNetworkInterfaces", "DescribeInstances"):
        return f"{region}.{response.action}"
    if response.action == "DescribePrefixListAttributes":
        return f"{region}.{_segment(str(body.get('PrefixListId', '')), 'unknown-prefix-list')}"
    if response.action == "DescribePortRangeListEntries":
        return f"{region}.{_segment(str(body.get('PortRangeListId', '')), 'unknown-port-range-list')}"
    return f"{region}.{_segment(str(body.get('SecurityGroupId', '')), 'unknown-group')}"


def write_snapshot(raw: RawScan, out_dir: Path) -> None:
    """Write every raw response (in scan order, so page N of a group is file N) and the errors."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: Counter[tuple[str, str]] = Counter()
    for response in raw.responses:
        if response.action == "DescribeRegions":
            continue
        account = _segment(response.account, "default")
        stem = _stem(response)
        seen[(account, stem)] += 1
        n = seen[(account, stem)]
        name = f"{stem}.json" if n == 1 else f"{stem}.{n}.json"
        _dump(out_dir / account / name, response.body)
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
