"""The machine contract: the report as JSON (schema in sgwatch/schemas/report.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from sgwatch.core.findings import Report
from sgwatch.render import remedy


def report_dict(report: Report) -> dict[str, Any]:
    """The report's JSON form: the core's facts, and each finding's fix commands (``remedy``)."""
    data = report.to_dict()
    fixes = {f.id: remedy.of(f) for f in report.findings}
    for finding in data["findings"]:
        finding["remedy"] = fixes[finding["id"]]
    return data


def render(report: Report) -> str:
    # Compact: large estates give large reports, and the C encoder is used only without indent.
    return json.dumps(report_dict(report), ensure_ascii=False, separators=(",", ":")) + "\n"
