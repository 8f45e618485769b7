"""The terminal view: what drifted, how bad, what it newly exposes, and what to do about it.

Cloud text goes in as ``Text`` (``inert.rich_text``), never as markup: rich parses neither its
brackets nor emoji codes, and its control characters are shown escaped.

Everything fits ``width`` columns: cells wrap at spaces, so an id (which has none) is broken
only when it is wider than its column; the fix commands are wrapped at token boundaries with
shell line continuations, so they can still be pasted. Severity is a word as well as a colour
(``CRIT`` and ``HIGH`` read apart on a terminal without colour, or under ``NO_COLOR``).
"""

from __future__ import annotations

import shlex
from collections import Counter
from io import StringIO

from rich import box
from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from sgwatch.core.checks import RANK
from sgwatch.core.findings import Finding, PostureResult, Report, describe_rule
from sgwatch.core.model import Rule
from sgwatch.events import attribution
from sgwatch.render import remedy
from sgwatch.render.inert import rich_text, visible

STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}
MARK = {"critical": "CRIT", "high": "HIGH", "medium": "MED", "low": "LOW", "info": "INFO"}
# Without a terminal or COLUMNS (a CI log, a file): wide enough for a table, narrow enough to read.
DEFAULT_WIDTH = 100
MIN_WIDTH = 60
EXPOSURES_SHOWN = 10
# Each block costs rich ~10 ms, and past a hundred a terminal is not where they are read.
DETAILS_SHOWN = 100
GROUPS_SHOWN = 8
_LABEL = 7  # "before", "opens", "fix", … in the per-finding details


def mark(severity: str) -> Text:
    return Text(MARK[severity], style=STYLE[severity])


def render(report: Report, *, color: bool = False, width: int = DEFAULT_WIDTH) -> str:
    width = max(width, MIN_WIDTH)
    buf = StringIO()
    console = Console(
        file=buf, force_terminal=color, no_color=not color, width=width, highlight=False, emoji=False, markup=False
    )
    if not report.complete:  # before anything that could read as an all-clear
        console.print(
            Text.assemble(
                ("INCOMPLETE", "bold yellow"),
                f": {len(report.errors)} region(s)/group(s) could not be read; what follows covers only what was read",
            )
        )
    console.print(_summary(report))
    for note in report.membership_notes():
        console.print(rich_text(note))  # names cloud regions: never styled as our own words
    if report.findings:
        console.print(_findings_table(report.findings, width))
        console.print(Text("what to do", style="bold"))
        for n, f in enumerate(report.findings[:DETAILS_SHOWN], 1):
            console.print(_details(n, f, width))
        if (more := len(report.findings) - DETAILS_SHOWN) > 0:
            console.print(f"… and {more} more findings: every one's fix is in the `remedy` of --format json")
    if report.posture:
        console.print(Text("posture (no effect on exit code)", style="bold"))
        console.print(Padding(_posture(report.posture), (0, 0, 0, 2)))
    for e in report.errors:
        target = (" ", rich_text(e.security_group_id)) if e.security_group_id else ()
        where = (rich_text(e.account), " ", rich_text(e.region), *target)
        what = (rich_text(e.code), ": ", rich_text(e.message))
        console.print(Text.assemble(("error", "yellow"), " ", *where, ": ", *what))
    out = buf.getvalue()
    # rich pads every line to the width; a plain report (a CI log, a file) needs no trailing blanks.
    return out if color else "\n".join(line.rstrip() for line in out.split("\n"))


def _summary(report: Report) -> Text:
    counts = [(s, n) for s, n in report.counts().items() if n]
    text = Text.assemble(("sgwatch", "bold"), f" {report.groups} groups, {report.groups_drifted} drifted: ")
    if counts:
        for i, (sev, n) in enumerate(counts):
            text.append(", " if i else "")
            text.append(f"{n} {sev}", style=STYLE[sev])
    elif report.complete:
        text.append("no drift", style="green")
    else:
        text.append("no drift in what could be read", style="yellow")
    return text


def _findings_table(findings: list[Finding], width: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), expand=True, show_edge=False)
    longest_id = max(max(len(visible(f.security_group_id)), len(visible(f.region))) for f in findings)
    longest_check = max((len(c) for f in findings for c in f.checks), default=6)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("sev", no_wrap=True)
    table.add_column("group", min_width=min(longest_id, width // 4), overflow="fold")
    table.add_column("change", ratio=1, overflow="fold")
    table.add_column("checks", min_width=min(longest_check, width // 4), overflow="fold")
    for n, f in enumerate(findings, 1):
        table.add_row(
            str(n),
            mark(f.severity),
            Text.assemble(rich_text(f.region), "\n", rich_text(f.security_group_id)),
            _change(f),
            Text("\n".join(f.checks)),
        )
    return table


def _change(f: Finding) -> Text:
    text = rich_text(f.message)
    if f.terraform_address:
        text.append_text(Text.assemble("\n", Text("terraform: ", style="dim"), rich_text(f.terraform_address)))
    if f.changed_by is not None:
        text.append("\n")
        text.append_text(rich_text(attribution.who(f.changed_by)))  # names and addresses are the caller's text
    return text


def _rule_text(rule: Rule | None) -> Text:
    if rule is None:
        return Text("(none)", style="dim")
    text = rich_text(describe_rule(rule))
    if rule.description:
        text.append(' "')
        text.append_text(rich_text(rule.description))
        text.append('"')
    return text


def _details(n: int, f: Finding, width: int) -> RenderableType:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=_LABEL)
    grid.add_column(ratio=1, overflow="fold")
    if f.live is not None or f.baseline is not None:
        grid.add_row("before", _rule_text(f.baseline))
        grid.add_row("after", _rule_text(f.live))
    if f.changed_by is not None:
        grid.add_row("changed", rich_text(attribution.detail(f.changed_by)))
    shown = f.new_exposures[:EXPOSURES_SHOWN]
    more = len(f.new_exposures) - len(shown)
    opens = "\n".join(e.describe() for e in shown) + (f"\n… and {more} more (see the JSON report)" if more else "")
    grid.add_row("opens", Text(opens) if opens else Text("no new internet exposure", style="dim"))
    if cis := f.cis():
        grid.add_row("CIS", Text("\n".join(f"{r.id} {r.title}" for r in cis)))
    commands = remedy.of(f)
    value_width = width - 2 - _LABEL - 1
    fix = Text("\n".join(line for cmd in commands for line in wrap_command(cmd, value_width)))
    grid.add_row("fix", fix if commands else Text("no single command: restore it by hand", style="dim"))
    grid.add_row("or", Text(remedy.ACCEPT_HINT))
    head = Text.assemble(f"#{n} ", mark(f.severity), " ", rich_text(f.region), " ", rich_text(f.security_group_id))
    out = Table.grid()
    out.add_row(head)
    out.add_row(Padding(grid, (0, 0, 0, 2)))
    return out


def wrap_command(command: str, width: int) -> list[str]:
    """``command`` as lines of at most ``width`` characters, continued with `` \\``: pasted into
    a shell, the lines are one command. A flag stays on the line of its value; a token wider than
    a line is left for the terminal to fold (it cannot be split without changing it)."""
    tokens = [shlex.quote(t) for t in shlex.split(command)]
    words: list[str] = []
    for token in tokens:
        if words and words[-1].startswith("--") and not token.startswith("--") and " " not in words[-1]:
            words[-1] += " " + token
        else:
            words.append(token)
    lines: list[str] = []
    current = ""
    for word in words:
        indent = "  " if lines else ""
        candidate = f"{current} {word}" if current else indent + word
        if current and len(candidate) + 2 > width:
            lines.append(current + " \\")
            current = "  " + word
        else:
            current = candidate
    lines.append(current)
    return [visible(line) for line in lines]


def _posture(results: list[PostureResult]) -> Table:
    by_check: dict[tuple[str, str], Counter[str]] = {}
    for p in results:
        by_check.setdefault((p.severity, p.check), Counter())[f"{p.region}/{p.security_group_id}"] += 1
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_column(ratio=1, overflow="fold")
    for (sev, check), groups in sorted(by_check.items(), key=lambda item: (-RANK[item[0][0]], item[0][1])):
        named = [g + (f" ×{n}" if n > 1 else "") for g, n in groups.items()]
        shown = ", ".join(visible(g) for g in named[:GROUPS_SHOWN])
        more = f", and {len(named) - GROUPS_SHOWN} more" if len(named) > GROUPS_SHOWN else ""
        grid.add_row(mark(sev), Text(check), Text(shown + more))
    return grid
