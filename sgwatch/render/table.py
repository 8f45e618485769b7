"""The terminal view: what drifted, how bad, and what it newly exposes.

Cloud text goes in as ``Text`` (``inert.rich_text``), never as markup: rich parses neither its
brackets nor emoji codes, and its control characters are shown escaped.
"""

from __future__ import annotations

from collections import Counter
from io import StringIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sgwatch.core.findings import Report
from sgwatch.render.inert import rich_text

STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def render(report: Report, *, color: bool = False, width: int = 140) -> str:
    buf = StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width, highlight=False)
    counts = report.counts()
    summary = ", ".join(f"[{STYLE[s]}]{n} {s}[/]" for s, n in counts.items() if n) or "[green]no drift[/]"
    console.print(f"[bold]sgwatch[/] {report.groups} groups, {report.groups_drifted} drifted: {summary}")
    if not report.complete:
        console.print(f"[bold yellow]incomplete:[/] {len(report.errors)} region(s)/group(s) could not be read")
    for note in report.membership_notes():
        console.print(rich_text(note))  # names cloud regions: never styled as our own words
    if report.findings:
        table = Table(show_lines=False, expand=True)
        for name, kw in (("severity", {}), ("kind", {}), ("region", {}), ("group", {}), ("change", {"ratio": 1})):
            table.add_column(name, overflow="fold", **kw)  # type: ignore[arg-type]
        for f in report.findings:
            table.add_row(
                Text(f.severity, style=STYLE[f.severity]),
                f.kind,
                rich_text(f.region),
                rich_text(f.security_group_id),
                rich_text(f.message),
            )
        console.print(table)
    if report.posture:
        by_check = Counter((p.severity, p.check) for p in report.posture)
        posture = ", ".join(f"{check} ×{n}" for (_, check), n in sorted(by_check.items(), reverse=True))
        console.print(f"posture (no effect on exit code): {posture}")
    for e in report.errors:
        target = (" ", rich_text(e.security_group_id)) if e.security_group_id else ()
        where = (rich_text(e.account), " ", rich_text(e.region), *target)
        what = (rich_text(e.code), ": ", rich_text(e.message))
        console.print(Text.assemble(("error", "yellow"), " ", *where, ": ", *what))
    return buf.getvalue()
