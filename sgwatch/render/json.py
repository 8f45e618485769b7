"""The machine contract: the report as JSON (schema in sgwatch/schemas/report.schema.json)."""

from __future__ import annotations

import json

from sgwatch.core.findings import Report


def render(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
