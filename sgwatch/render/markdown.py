"""A report for a pull-request comment. Cloud text is escaped: it is not ours to format."""

from __future__ import annotations

import re
from collections import Counter

from sgwatch.core.findings import Report

_ICON = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵", "info": "⚪"}
# Only what changes meaning inside a table cell; "-" and "." matter only at a line start.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
MAX_ROWS = 200


def escape(text: str) -> str:
    """Neutralise markdown, HTML and mentions in text that came from the cloud."""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    # A zero-width space after "@" keeps @all / @someone from notifying anyone.
    return _SPECIAL.sub(r"\\\1", text).replace("@", "@\u200b")


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
            group = f"`{f.region}` `{f.security_group_id}`"
            lines.append(
                f"| {_ICON[f.severity]} | {f.severity} | {f.kind} | {group} | {escape(f.message)} | "
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
        lines += [f"- {escape(note)}" for note in notes] + [""]
    if report.errors:
        lines += ["### Could not read", ""]
        lines += [
            f"- `{e.account}` `{e.region}` {f'`{e.security_group_id}` ' if e.security_group_id else ''}"
            f"{e.code}: {escape(e.message)}"
            for e in report.errors
        ]
        lines.append("")
    return "\n".join(lines)
