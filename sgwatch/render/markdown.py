"""A report for a pull-request comment. Cloud text is escaped: it is not ours to format."""

from __future__ import annotations

from collections import Counter

from sgwatch.core.findings import Finding, Report, describe_rule
from sgwatch.core.model import Rule
from sgwatch.events import attribution
from sgwatch.render import remedy
from sgwatch.render.inert import markdown_cell

_ICON = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵", "info": "⚪"}
MAX_ROWS = 200


def _code(text: str) -> str:
    # Not a `code span`: a backtick in cloud text cannot be escaped inside one, and would end it.
    return f"<code>{markdown_cell(text)}</code>"


def _rule(rule: Rule | None) -> str:
    if rule is None:
        return "(none)"
    described = _code(describe_rule(rule))
    return described + (f" “{markdown_cell(rule.description)}”" if rule.description else "")


def _what_to_do(n: int, f: Finding) -> list[str]:
    head = f"{n}. **{f.severity}** {_code(f.region)} {_code(f.security_group_id)}: {markdown_cell(f.message)}"
    items = []
    if f.changed_by is not None:
        items.append(f"changed {markdown_cell(attribution.detail(f.changed_by))}")
    if f.live is not None or f.baseline is not None:
        items += [f"before: {_rule(f.baseline)}", f"after: {_rule(f.live)}"]
    if f.terraform_address:
        items.append(f"terraform: {_code(f.terraform_address)}")
    if f.new_exposures:
        items.append("opens: " + "; ".join(_code(e.describe()) for e in f.new_exposures))
    if cis := f.cis():
        items.append("CIS: " + "; ".join(f"{r.id} {markdown_cell(r.title)}" for r in cis))
    commands = remedy.of(f)
    items += [f"fix: {_code(c)}" for c in commands] or ["fix: no single command; restore it by hand"]
    return [head, *(f"   - {item}" for item in items), ""]


def render(report: Report) -> str:
    counts = report.counts()
    # An incomplete report says so in its first line, before any count that could read as an all-clear.
    lines = (
        ["## sgwatch drift report", ""]
        if report.complete
        else [
            "## ⚠️ sgwatch drift report: incomplete",
            "",
            f"**Incomplete**: {len(report.errors)} region(s)/group(s) could not be read (listed below); "
            "what follows covers only what was read.",
            "",
        ]
    )
    lines += [
        f"{report.groups} groups checked, **{report.groups_drifted} drifted**, "
        + ", ".join(f"{n} {sev}" for sev, n in counts.items() if n)
        + ("" if any(counts.values()) else "no drift" if report.complete else "no drift in what could be read"),
        "",
    ]
    if report.findings:
        lines += ["| | severity | kind | group | change | checks |", "|---|---|---|---|---|---|"]
        for f in report.findings[:MAX_ROWS]:
            group = f"{_code(f.region)} {_code(f.security_group_id)}"
            if f.terraform_address:
                group += f"<br>{_code(f.terraform_address)}"
            by = f"<br>{markdown_cell(attribution.who(f.changed_by))}" if f.changed_by is not None else ""
            lines.append(
                f"| {_ICON[f.severity]} | {f.severity} | {f.kind} | {group} | {markdown_cell(f.message)}{by} | "
                f"{', '.join(f.checks)} |"
            )
        if len(report.findings) > MAX_ROWS:
            lines.append(f"\n…and {len(report.findings) - MAX_ROWS} more findings (see the JSON report).")
        lines += ["", "<details><summary>What to do</summary>", ""]
        for n, f in enumerate(report.findings[:MAX_ROWS], 1):
            lines += _what_to_do(n, f)
        lines += [f"Or, when a change is wanted: {remedy.ACCEPT_HINT}.", "", "</details>", ""]
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
