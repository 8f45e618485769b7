"""What a notification says, before any channel formats it.

An *event* is the unit the lifecycle queues: a JSON-able dict
``{"event", "at", "finding", "previous_severity"}`` where ``finding`` is the finding's JSON form
plus ``first_seen`` (and ``resolved_at`` once resolved). Channels turn a list of events into one
message; everything here is still unescaped text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from sgwatch import timestamps
from sgwatch.alerting.escape import clean
from sgwatch.events import attribution

EventKind = Literal["new", "reminder", "severity_changed", "resolved", "test"]

SEVERITY_MARK = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵", "info": "⚪"}
EVENT_WORD: dict[str, str] = {
    "new": "NEW",
    "reminder": "STILL OPEN",
    "severity_changed": "SEVERITY CHANGED",
    "resolved": "RESOLVED",
    "test": "TEST",
}


class Event(TypedDict):
    event: EventKind
    at: str
    finding: dict[str, Any]
    previous_severity: str | None


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, whole seconds, as Alertmanager and most receivers expect."""
    return timestamps.iso(moment, seconds=True)


def parse_iso(text: object, default: datetime) -> datetime:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    if not isinstance(text, str) or not text:
        return default
    try:
        return timestamps.parse_iso(text)
    except ValueError:
        return default


def make_event(kind: EventKind, at: datetime, finding: dict[str, Any], previous_severity: str | None = None) -> Event:
    return {"event": kind, "at": iso(at), "finding": finding, "previous_severity": previous_severity}


def rule_text(rule: dict[str, Any] | None) -> str:
    if not rule:
        return ""
    ports = str(rule.get("ports") or "")
    ports = "" if ports in ("", "-1/-1") else f" {ports}"
    word = "to" if rule.get("direction") == "egress" else "from"
    text = f"{rule.get('policy', '?')} {rule.get('protocol', '?')}{ports} {word} {rule.get('peer', '?')}"
    if rule.get("priority") is not None:
        text += f", priority {rule['priority']}"
    return text


def exposure_text(exp: dict[str, Any]) -> str:
    lo, hi = exp.get("from_port", -1), exp.get("to_port", -1)
    ports = "" if lo == -1 else (f" {lo}" if lo == hi else f" {lo}-{hi}")
    word = "to" if exp.get("direction") == "egress" else "from"
    peers = [str(p) for p in exp.get("peers") or []]
    shown = ", ".join(peers[:3]) + (f" +{len(peers) - 3} more" if len(peers) > 3 else "")
    text = f"{exp.get('protocol', '?')}{ports} {word} {exp.get('scope', '?')} {exp.get('family', '?')} internet"
    if shown:
        text += f": {shown}"
    if exp.get("severity"):
        text += f", {exp['severity']}"
    return text


@dataclass(frozen=True, slots=True)
class View:
    """One event as text fields; every field may hold hostile text and is escaped by the channel."""

    event: EventKind
    at: str
    finding_id: str
    severity: str
    previous_severity: str | None
    kind: str
    account: str
    region: str
    security_group_id: str
    direction: str
    rules: list[tuple[str, str, str]]  # (label, rule, description)
    exposures: list[str]
    checks: list[str]
    message: str
    first_seen: str
    resolved_at: str
    # Who made the change: "by alice from 203.0.113.7", and the whole of it; "" when nobody is known.
    changed_by: str = ""
    changed_by_detail: str = ""

    @property
    def headline(self) -> str:
        return f"{EVENT_WORD[self.event]} {self.severity.upper()} {self.kind} in {self.security_group_id}"


def view(event: Event) -> View:
    f = event["finding"]
    rules: list[tuple[str, str, str]] = []
    live, base = f.get("live"), f.get("baseline")
    if live and base:
        rules = [
            ("baseline", rule_text(base), str(base.get("description") or "")),
            ("live", rule_text(live), str(live.get("description") or "")),
        ]
    elif live or base:
        rule = live or base
        assert rule is not None
        rules = [("rule", rule_text(rule), str(rule.get("description") or ""))]
    return View(
        event=event["event"],
        at=event["at"],
        finding_id=str(f.get("id") or ""),
        severity=str(f.get("severity") or "info"),
        previous_severity=event.get("previous_severity"),
        kind=str(f.get("kind") or ""),
        account=str(f.get("account") or ""),
        region=str(f.get("region") or ""),
        security_group_id=str(f.get("security_group_id") or ""),
        direction=str(f.get("direction") or ""),
        rules=rules,
        exposures=[exposure_text(e) for e in f.get("new_exposures") or [] if isinstance(e, dict)],
        checks=[str(c) for c in f.get("checks") or []],
        message=str(f.get("message") or ""),
        first_seen=str(f.get("first_seen") or ""),
        resolved_at=str(f.get("resolved_at") or ""),
        changed_by=attribution.who(f.get("changed_by") or {}),
        changed_by_detail=attribution.detail(f.get("changed_by") or {}),
    )


def title(events: Sequence[Event]) -> str:
    counts: dict[str, int] = {}
    for e in events:
        counts[e["event"]] = counts.get(e["event"], 0) + 1
    if set(counts) == {"test"}:
        return "sgwatch test notification"
    parts = [f"{n} {EVENT_WORD[k].lower()}" for k, n in counts.items()]
    return "sgwatch drift: " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class TextFormat:
    """How one chat dialect marks up *our* text; ``esc`` makes cloud text inert in it."""

    esc: Callable[[object, int], str]
    bold: Callable[[str], str]
    newline: str
    bullet: str
    item_separator: str


DESCRIPTION_LIMIT = 200
MESSAGE_LIMIT = 300
FIELD_LIMIT = 128
CHANGED_BY_LIMIT = 400  # who, from where, when, the call, the masked key and a user agent


def render_item(v: View, fmt: TextFormat) -> str:
    e = fmt.esc
    mark = "✅" if v.event == "resolved" else SEVERITY_MARK.get(v.severity, "")
    head = fmt.bold(f"{mark} {EVENT_WORD[v.event]} · {e(v.severity.upper(), 16)}".strip())
    # "rule_added" would need its underscore escaped in every dialect; a space reads better.
    head += f" {e(v.kind.replace('_', ' '), 32)} in {e(v.security_group_id, FIELD_LIMIT)}"
    head += f" ({e(v.account, 64)}/{e(v.region, 64)})"
    if v.direction:
        head += f" {e(v.direction, 16)}"
    lines = [head]
    if v.event == "test":
        lines.append(f"{fmt.bullet}{e(v.message, MESSAGE_LIMIT)}")
        return fmt.newline.join(lines)
    if v.changed_by_detail:
        lines.append(f"{fmt.bullet}changed {e(v.changed_by_detail, CHANGED_BY_LIMIT)}")
    if v.event == "severity_changed" and v.previous_severity:
        lines.append(f"{fmt.bullet}severity: {e(v.previous_severity, 16)} → {e(v.severity, 16)}")
    for label, rule, desc in v.rules:
        line = f"{fmt.bullet}{label}: {e(rule, 200)}"
        if desc:
            line += f" — description: “{e(desc, DESCRIPTION_LIMIT)}”"
        lines.append(line)
    for exp in v.exposures[:5]:
        lines.append(f"{fmt.bullet}new exposure: {e(exp, 200)}")
    if len(v.exposures) > 5:
        lines.append(f"{fmt.bullet}… {len(v.exposures) - 5} more exposures")
    if v.checks:
        lines.append(f"{fmt.bullet}checks: {e(', '.join(v.checks), 200)}")
    if v.message:
        lines.append(f"{fmt.bullet}{e(v.message, MESSAGE_LIMIT)}")
    times = f"first seen {e(v.first_seen, 40)}"
    if v.resolved_at:
        times += f", resolved {e(v.resolved_at, 40)}"
    lines.append(f"{fmt.bullet}{times} · id {e(v.finding_id, 40)}")
    return fmt.newline.join(lines)


def render_text(events: Sequence[Event], fmt: TextFormat, heading: Callable[[str], str]) -> str:
    items = [render_item(view(ev), fmt) for ev in events]
    return heading(clean(title(events), 200)) + fmt.item_separator + fmt.item_separator.join(items)


def fit_bytes(text: str, max_bytes: int) -> str:
    """Cut ``text`` to ``max_bytes`` of UTF-8 with an ellipsis: a receiver rejects a larger message outright."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    cut = data[: max_bytes - len("…".encode())].decode(errors="ignore")
    return cut + "…"
