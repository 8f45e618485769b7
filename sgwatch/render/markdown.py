"""A report for a pull-request comment. Cloud text is escaped: it is not ours to format."""

from __future__ import annotations

from collections import Counter

from sgwatch.core.findings import Report
from sgwatch.render.inert import markdown_cell

_ICON = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵", "info": "⚪"}
MAX_ROWS = 200


def _code(text: str) -> str:
    # Not a `code span`: a backtick in cloud text cannot be escaped inside one, and would end it.
    return f"<code>{markdown_cell(text)}</code>"


def render(report: Report) -> str:
    counts = report.counts()
    lines = [
        "## sgwatch drift report",
        "",
        f"{report.groups} groups checked, **{report.groups_drifted} drifted**, "
        + ", ".join(f"{n} {sev}" for sev, n in counts.items() if n)
        + ("" if any(counts.values()) else "no drift")
        + ("" if report.complete else " — ⚠️ **incomplete**: some regions or groups could not be read"),
        "",
    ]
    if report.findings:
        lines += ["| | severity | kind | group | change | checks |", "|---|---|---|---|---|---|"]
        for f in report.findings[:MAX_ROWS]:
            group = f"{_code(f.region)} {_code(f.security_group_id)}"
            lines.append(
                f"| {_ICON[f.severity]} | {f.severity} | {f.kind} | {group} | {markdown_cell(f.message)} | "
                f"{', '.join(f.checks)} |"
            )
        if len(report.findings) > MAX_ROWS:
            lines.append(f"\n…and {len(report.findings) - MAX_ROWS} more findings (see the JSON report).")
        lines.append("")
    if report.posture:
        lines += ["<details><summary>Posture (does not affect the exit code)</summary>", ""]
        by_check = Counter((p.severity, p.check) for p in report.posture)
        lines += ["| severity | check | count |", "|---|---|---|"]
        lines += [f"| {sev} | {check} | {n} |" for (sev, check), n in sorted(by_check.items())]
        lines += ["", "</details>", ""]
    if notes := report.membership_notes():
        lines += [f"- {markdown_cell(note)}" for note in notes] + [""]
    if report.errors:
        lines += ["### Could not read", ""]
        lines += [
            f"- {_code(e.account)} {_code(e.region)} {_code(e.security_group_id) + ' ' if e.security_group_id else ''}"
            f"{markdown_cell(e.code)}: {markdown_cell(e.message)}"
            for e in report.errors
        ]
        lines.append("")
    return "\n".join(lines)
