"""The report as SARIF 2.1.0, for code-scanning views (GitHub, GitLab, Azure DevOps).

One result per drift finding: ``ruleId`` is the finding's leading check, ``level`` follows its
severity, and the location is the baseline file that holds the group when there is one (the
file a reviewer would edit to accept the change), with the group as a logical location
(``account/region/group``) always. Posture results are not results here: they never fail a
pipeline, and code scanning would show them as alerts to close.

SARIF is JSON: ``json.dumps`` escapes whatever cloud text holds, so it is carried exactly, as in
the JSON report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sgwatch import __version__
from sgwatch.core.checks import BY_ID, CATALOGUE, CIS_BENCHMARK, RANK
from sgwatch.core.findings import Finding, Report
from sgwatch.events import attribution
from sgwatch.render import remedy
from sgwatch.render.inert import visible
from sgwatch.sources import identifiers

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub code scanning ranks security alerts by this rule property (a CVSS-like 0.0-10.0).
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.5"}
_DRIFT = [c for c in CATALOGUE if c.area == "drift"]
_INDEX = {c.id: n for n, c in enumerate(_DRIFT)}


def leading_check(f: Finding) -> str:
    """The check a finding is filed under: its most severe by default severity (first on a tie)."""
    known = [c for c in f.checks if c in _INDEX]
    return max(known, key=lambda c: RANK[BY_ID[c].severity], default=f.checks[0] if f.checks else "drift")


def _rule(check_id: str) -> dict[str, Any]:
    c = BY_ID[check_id]
    props: dict[str, Any] = {"tags": ["security", "security-group"], "security-severity": SECURITY_SEVERITY[c.severity]}
    if c.cis:
        props["cis"] = [f"{CIS_BENCHMARK} {r}" for r in c.cis]
    return {
        "id": c.id,
        "name": "".join(part.capitalize() for part in c.id.split("-")),
        "shortDescription": {"text": c.title},
        "defaultConfiguration": {"level": LEVEL[c.severity]},
        "properties": props,
    }


def baseline_file(baseline: Path | None, account: str, region: str) -> Path | None:
    """The baseline file that holds (or, for a region new to it, would hold) ``account``'s ``region``.

    Cloud names choose no path: only an account and a region that are identifiers are named, and
    only as the ``<account>/<region>.yaml`` that ``baseline capture`` writes; nothing is opened."""
    if baseline is None:
        return None
    if baseline.is_file():
        return baseline
    if not (identifiers.is_valid("account", account) and identifiers.is_valid("region", region)):
        return None
    return baseline / account / f"{region}.yaml"


def _uri(path: Path) -> str:
    # Code scanning matches a repository-relative path; elsewhere an absolute file URI is exact.
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _result(f: Finding, baseline: Path | None) -> dict[str, Any]:
    check = leading_check(f)
    logical = {
        "fullyQualifiedName": f"{f.account}/{f.region}/{f.security_group_id}",
        "name": f.security_group_id,
        "kind": "resource",
    }
    location: dict[str, Any] = {"logicalLocations": [logical]}
    if (path := baseline_file(baseline, f.account, f.region)) is not None:
        location["physicalLocation"] = {"artifactLocation": {"uri": _uri(path)}}
    commands = remedy.of(f)
    text = f.message
    if f.changed_by is not None:
        # A viewer shows the message as text: the caller's user agent is shown with its escapes.
        text += f"\nchanged {visible(attribution.detail(f.changed_by))}"
    text += "".join(f"\nfix: {c}" for c in commands) + f"\nor, {remedy.ACCEPT_HINT}"
    result: dict[str, Any] = {
        "ruleId": check,
        "level": LEVEL[f.severity],
        "message": {"text": text},
        "locations": [location],
        "partialFingerprints": {"sgwatchFindingId/v1": f.id},
        "properties": {
            "severity": f.severity,
            "kind": f.kind,
            "checks": list(f.checks),
            "new_exposures": [e.describe() for e in f.new_exposures],
            "remedy": commands,
            "cis": [f"{CIS_BENCHMARK} {r.id}: {r.title}" for r in f.cis()],
            "changed_by": None if f.changed_by is None else f.changed_by.to_dict(),
        },
    }
    if check in _INDEX:
        result["ruleIndex"] = _INDEX[check]
    return result


def render(report: Report, baseline: Path | None = None) -> str:
    notifications = [
        {
            "level": "error",
            "message": {
                "text": f"{e.account} {e.region} {e.security_group_id} {e.code}: {e.message}".replace("  ", " ")
            },
            "descriptor": {"id": e.code or "ReadError"},
        }
        for e in report.errors
    ]
    run = {
        "tool": {
            "driver": {
                "name": "sgwatch",
                "version": __version__,
                "rules": [_rule(c.id) for c in _DRIFT],
            }
        },
        "invocations": [
            {
                # An incomplete scan did not execute successfully: "no results" must not read as clean.
                "executionSuccessful": report.complete,
                "toolExecutionNotifications": notifications,
            }
        ],
        "results": [_result(f, baseline) for f in report.findings],
    }
    doc = {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
