"""The machine contract: the report as JSON (schema in sgwatch/schemas/report.schema.json)."""

from __future__ import annotations

import json

from sgwatch.core.findings import Report


def render(report: Report) -> str:
    # Compact: large estates give large reports, and the C encoder is used only without indent.
    return json.dumps(report.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
