"""Cloud text reaches every human format inert: no control character, no markup, no broken table."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sgwatch import cli
from sgwatch.alerting.channels import parse_channel
from sgwatch.alerting.message import Event, make_event
from sgwatch.core import normalize
from sgwatch.core.checks import SEVERITIES, CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.model import Baseline, Group, Peer, PeerKind, Rule, RuleKey, ScanError, Snapshot
from sgwatch.render import json as json_render
from sgwatch.render import junit, markdown, remedy, sarif, table
from sgwatch.render.inert import markdown_cell, rich_text, visible, xml_text

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEMO = Path(__file__).resolve().parent.parent / "config" / "demo"
WIPE = "\x1b[2J\x1b[3J\x1b[H"  # clear screen, clear scrollback, cursor home
# What a hostile group id, name, peer, description or API error may hold.
FRAGMENTS = [
    WIPE,
    "\x9b2J",  # the 8-bit CSI
    "\x1b]0;pwned\x07",  # OSC: set the window title
    "\x1b]8;;https://evil.example\x1b\\",  # OSC 8 hyperlink
    "[red]",
    "[/]",
    "[bold blink]",
    "[link=https://evil.example]",
    ":skull:",
    "`",
    "``",
    "|",
    "\\",
    "\\|",
    "<!channel>",
    "<@U123>",
    "@all",
    "@here",
    "*",
    "**",
    "_",
    "~~",
    "[x](https://evil.example)",
    "![i](https://evil.example/i.png)",
    "<b>",
    "</code>",
    "&amp;",
    "&#124;",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x7f",
    "\x85",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u200b",
    "\ufeff",
    "\u2028",
    "\u2029",
    "长",
    "\u0301",
]
hostile = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=6).map("".join)
# A lone surrogate, as a file name with invalid UTF-8 decodes: for the escapers alone (a finding's
# id cannot hash one).
hostile_chars = st.lists(st.sampled_from([*FRAGMENTS, "\udc9b", "\ud800"]) | st.text(max_size=6), max_size=6).map(
    "".join
)


@dataclass(frozen=True)
class Cloud:
    """Every piece of text in a report that the cloud (or a snapshot's author) controls."""

    account: str = "default"
    region: str = "cn-hangzhou"
    group: str = "sg-1"
    name: str = "web"
    description: str = "ssh for ops"
    peer: str = "sg-peer"
    owner: str = "1234567890"
    code: str = "Throttling"
    message: str = "try again"


clouds = st.builds(Cloud, **{f.name: hostile for f in fields(Cloud)})


def _rule(port: int, peer: Peer, description: str) -> Rule:
    key = RuleKey("ingress", "tcp", port, port, -1, -1, peer, "accept", 1, "intranet")
    return Rule(key, description=description)


def report_of(c: Cloud) -> Report:
    """A report through the real engine: a changed group, an added one, a removed one, an unread one."""
    world = normalize.cidr("0.0.0.0/0")
    base = Group(c.account, c.region, c.group, name="old", rules=(_rule(22, world, c.description),))
    live = Group(
        c.account,
        c.region,
        c.group,
        name=c.name,
        description=c.description,
        rules=(_rule(3306, world, c.description), _rule(80, Peer(PeerKind.GROUP, c.peer, c.owner), c.description)),
    )
    added = Group(c.account, c.region, c.group + "+", name=c.name, rules=(_rule(22, world, c.description),))
    gone = Group(c.account, c.region, c.group + "-", name=c.name)
    baseline = Baseline(groups={g.key: g for g in (base, gone)})
    snap = Snapshot(
        groups={g.key: g for g in (live, added)},
        errors=[ScanError(c.account, c.region, c.code, c.message, security_group_id=c.group + "?")],
    )
    snap.listed[(c.account, c.region)] = frozenset({live.id, added.id})
    return assess(baseline, snap, CheckSettings(), NOW)


def cloud_strings(report: Report) -> list[str]:
    """Every cloud-controlled string the human formats show, as the report holds it."""
    out = []
    for f in report.findings:
        out += [f.region, f.security_group_id, f.message]
    for e in report.errors:
        out += [e.account, e.region, e.security_group_id, e.code, e.message]
    return out


# --- what "inert" means, checked on the output --------------------------------------------------

SGR = re.compile(r"\x1b\[[0-9;]*m")
# Our own styled words in the table: a styled run holding anything else is cloud text styled.
OURS = {
    "sgwatch",
    "INCOMPLETE",
    "error",
    "no drift",
    "no drift in what could be read",
    "#",
    "sev",
    "group",
    "change",
    "checks",
    "what to do",
    "posture (no effect on exit code)",
    "(none)",
    "no new internet exposure",
    "no single command: restore it by hand",
    *SEVERITIES,
    *table.MARK.values(),
}


def unsafe_chars(text: str, allowed: str = "\n") -> list[str]:
    return [
        ch
        for ch in text
        if ch not in allowed and (unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp"))
    ]


def without_our_zwsp(text: str) -> str:
    return text.replace("@\u200b", "@")


def styled_runs(coloured: str) -> list[str]:
    runs = re.findall(r"\x1b\[[0-9;]*[1-9][0-9;]*m(.*?)\x1b\[0m", coloured, flags=re.S)
    return [r.strip() for r in runs if r.strip()]


def unescaped(text: str, specials: str) -> list[str]:
    """Characters of ``specials`` in Markdown ``text`` that no backslash escapes."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in specials:
            out.append(text[i])
        i += 1
    return out


def cells(row: str) -> list[str]:
    """A GFM table row split at its unescaped pipes (the first and last are the row's edges)."""
    parts, cur, i = [], "", 0
    while i < len(row):
        if row[i] == "\\":
            cur += row[i : i + 2]
            i += 2
            continue
        if row[i] == "|":
            parts.append(cur)
            cur = ""
        else:
            cur += row[i]
        i += 1
    parts.append(cur)
    return parts[1:-1]


def unmarkdown(text: str) -> str:
    """What a Markdown renderer shows for an escaped cell: tags of ours out, backslash escapes undone."""
    text = text.replace("<code>", "").replace("</code>", "")
    return without_our_zwsp(re.sub(r"\\(.)", r"\1", text))


MARKDOWN_SPECIAL = "`*_[]<>|~&!\\"


def check_markdown(report: Report) -> None:
    out = markdown.render(report)
    assert not unsafe_chars(without_our_zwsp(out)), out
    assert not re.search(r"@\w", out), "a mention formed"
    lines = out.split("\n")
    head = lines.index("| | severity | kind | group | change | checks |")
    width = len(cells(lines[head]))
    rows = [line for line in lines[head + 2 :] if line.startswith("| ")]
    assert len(rows) == len(report.findings)
    for row, f in zip(rows, report.findings, strict=True):
        parts = cells(row)
        assert len(parts) == width, row  # every row has the header's unescaped pipes
        group, change = parts[3].strip(), parts[4].strip()
        for cell in (group.replace("<code>", "").replace("</code>", ""), change):
            assert not unescaped(cell, MARKDOWN_SPECIAL), cell
        assert unmarkdown(group) == f"{visible(f.region)} {visible(f.security_group_id)}"
        assert unmarkdown(change) == visible(f.message).strip()
    start = lines.index("### Could not read") + 2
    items = lines[start : start + len(report.errors)]
    for line, e in zip(items, report.errors, strict=True):
        body = line.removeprefix("- ")
        assert not unescaped(body.replace("<code>", "").replace("</code>", ""), MARKDOWN_SPECIAL), line
        group = f" {visible(e.security_group_id)}" if e.security_group_id else ""
        assert (
            unmarkdown(body)
            == f"{visible(e.account)} {visible(e.region)}{group} {visible(e.code)}: {visible(e.message)}"
        )


def check_table(report: Report) -> None:
    # Wide enough that no cell folds: every cloud string must then appear whole, as ``visible`` shows it.
    plain = table.render(report, color=False, width=2000)
    coloured = table.render(report, color=True, width=2000)
    assert not unsafe_chars(plain), plain
    assert not unsafe_chars(SGR.sub("", coloured)), coloured  # colour adds only SGR sequences
    # ... and changes no character (the plain report also drops rich's trailing padding)
    assert [line.rstrip() for line in SGR.sub("", coloured).split("\n")] == plain.split("\n")
    for text in cloud_strings(report):
        assert visible(text).strip() in plain  # markup in it was not consumed
    assert set(styled_runs(coloured)) <= OURS | {f"{n} {s}" for s, n in report.counts().items()}


def unread_lines(errors: list[ScanError]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        cli._echo_unread("not read", errors)
    return buf.getvalue()


def check_stderr(report: Report) -> None:
    err = unread_lines(report.errors)
    assert err.count("\n") == len(report.errors)
    assert not unsafe_chars(err), err
    for e in report.errors:
        assert visible(e.message) in err


# --- properties -----------------------------------------------------------------------------------


@given(clouds)
def test_markdown_report_is_inert_and_its_table_balanced(c: Cloud) -> None:
    check_markdown(report_of(c))


@given(clouds)
def test_table_report_is_inert_with_and_without_colour(c: Cloud) -> None:
    check_table(report_of(c))


@given(clouds)
def test_stderr_lines_are_inert(c: Cloud) -> None:
    check_stderr(report_of(c))


def check_junit(report: Report) -> None:
    out = junit.render(report, fail_on="info")
    root = ET.fromstring(out)  # well-formed XML 1.0, whatever the cloud wrote
    texts = [t for el in root.iter() for t in (el.text or "", *el.attrib.values())]
    assert not any(unsafe_chars(t, allowed="\n") for t in texts)
    shown = "\n".join(texts)
    for text in cloud_strings(report):
        assert xml_text(text).strip() in shown  # carried (escaped), not dropped


def check_sarif_and_remedy(report: Report) -> None:
    doc = json.loads(sarif.render(report))
    assert len(doc["runs"][0]["results"]) == len(report.findings)
    for f in report.findings:
        rules = [r for r in (f.baseline, f.live) if r is not None]
        for command in remedy.restore(f.kind, f.region, f.security_group_id, f.live, f.baseline):
            tokens = shlex.split(command)  # one token per value: no cloud text became shell syntax
            assert tokens[:2] == ["aliyun", "ecs"]
            assert tokens[tokens.index("--SecurityGroupId") + 1] == f.security_group_id
            if "--Permissions.1.Description" in tokens:
                assert tokens[tokens.index("--Permissions.1.Description") + 1] in {r.description for r in rules}


@given(clouds)
def test_junit_report_is_well_formed_xml_and_inert(c: Cloud) -> None:
    check_junit(report_of(c))


@given(clouds)
def test_sarif_results_and_remedy_commands_keep_cloud_text_as_single_arguments(c: Cloud) -> None:
    check_sarif_and_remedy(report_of(c))


@given(hostile_chars)
def test_xml_text_is_legal_xml_character_data(text: str) -> None:
    el = ET.Element("x", a=xml_text(text))
    el.text = xml_text(text)
    back = ET.fromstring(ET.tostring(el, encoding="unicode"))
    assert (back.text or "") == xml_text(text) == back.attrib["a"]


@given(hostile_chars)
def test_visible_shows_every_unsafe_character_escaped(text: str) -> None:
    out = visible(text)
    assert not unsafe_chars(out, allowed="")
    if "\\" not in text:  # nothing is lost: each unsafe character is its own escape, the rest stays
        back = re.sub(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})", lambda m: chr(int(m[0][2:], 16)), out)
        assert back == text


@given(hostile_chars)
def test_markdown_cell_has_no_unescaped_markup(text: str) -> None:
    out = markdown_cell(text)
    assert not unescaped(out, MARKDOWN_SPECIAL)
    assert not unsafe_chars(without_our_zwsp(out), allowed="")
    assert unmarkdown(out) == visible(text)


@given(hostile_chars)
def test_rich_text_is_never_markup(text: str) -> None:
    assert rich_text(text).plain == visible(text).expandtabs()
    assert not rich_text(text).spans


def test_json_report_keeps_the_exact_text() -> None:
    c = Cloud(group="sg-" + WIPE + "[red]`|<!channel>", message="a\nb\u202e")
    doc = json.loads(json_render.render(report_of(c)))
    assert {f["security_group_id"] for f in doc["findings"]} >= {c.group}
    assert doc["errors"][0]["message"] == c.message


def events_of(report: Report) -> list[Event]:
    return [make_event("new", NOW, f.to_dict() | {"first_seen": "2026-12-01T11:00:00Z"}) for f in report.findings]


def check_alertmanager(report: Report) -> None:
    am = parse_channel({"type": "alertmanager", "name": "am", "url": "http://127.0.0.1:9"})
    for alert in json.loads(am.build(events_of(report), NOW).body):
        for value in [*alert["labels"].values(), *alert["annotations"].values()]:
            assert "<" not in value and ">" not in value, value
            assert not re.search(r"@\w", value), value
            assert not unsafe_chars(without_our_zwsp(value), allowed=""), value


@given(clouds)
def test_alertmanager_labels_and_annotations_are_inert(c: Cloud) -> None:
    check_alertmanager(report_of(c))


@given(clouds)
def test_chat_messages_are_inert(c: Cloud) -> None:
    events = events_of(report_of(c))
    for kind in ("slack", "dingtalk", "wecom", "lark"):
        ch = parse_channel({"type": kind, "name": "c", "url": "http://127.0.0.1:9/hook"})
        doc = json.loads(ch.build(events, NOW).body)
        texts = [doc["text"], *(b["text"]["text"] for b in doc["blocks"])] if kind == "slack" else []
        texts += [doc["markdown"].get("text") or doc["markdown"]["content"]] if "markdown" in doc else []
        texts += [doc["content"]["text"]] if kind == "lark" else []
        for text in texts:
            assert "<" not in text and not re.search(r"@\w", text), text
            assert not unsafe_chars(without_our_zwsp(text)), text


# --- the three reported payloads ------------------------------------------------------------------


def test_a_screen_wiping_group_id_is_shown_not_obeyed_in_the_table() -> None:
    report = report_of(Cloud(group="sg-" + WIPE + "x"))
    for colour in (False, True):
        out = SGR.sub("", table.render(report, color=colour))
        assert "\x1b" not in out
        assert "sg-\\x1b[2J\\x1b[3J\\x1b[Hx" in out


def test_rich_markup_in_cloud_text_is_text_not_styling() -> None:
    report = report_of(Cloud(group="sg-[red]x[/]", region="cn-[bold]y", message="[blink]z :skull:"))
    plain = table.render(report, width=300)
    assert "sg-[red]x[/]" in plain and "cn-[bold]y" in plain and "[blink]z :skull:" in plain
    coloured = table.render(report, color=True, width=300)
    assert "\x1b[31m" not in coloured.replace("\x1b[31mhigh", "")  # only "high" is red here, never the id
    assert set(styled_runs(coloured)) <= OURS | {f"{n} {s}" for s, n in report.counts().items()}


def test_a_backtick_and_pipe_in_a_group_id_cannot_break_the_pr_table_or_ping_the_channel() -> None:
    report = report_of(Cloud(group="sg-`x` | <!channel> @here |"))
    out = markdown.render(report)
    assert "<!channel>" not in out and "@here" not in out
    check_markdown(report)


def test_a_group_id_holding_markup_reaches_no_alertmanager_label_raw() -> None:
    report = report_of(Cloud(group="sg-<!channel>", account="<@U123>", region="cn-<b>"))
    am = parse_channel({"type": "alertmanager", "name": "am", "url": "http://127.0.0.1:9"})
    labels = json.loads(am.build(events_of(report), NOW).body)[0]["labels"]
    assert labels["security_group_id"].startswith("sg-‹!channel›")
    assert labels["account"] == "‹@\u200bU123›" and labels["region"] == "cn-‹b›"
    check_alertmanager(report)


def test_the_error_line_and_unread_lines_on_stderr_are_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(DEMO / "snapshot", snap)
    # A file name is text too: a snapshot folder from someone else may name a file to attack the reader.
    (snap / "cn-hangzhou" / "sg-\x1b]0;pwned\x07\x9b2J\u202e.json").write_text("{bad")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--baseline", str(DEMO / "baseline"), "--snapshot", str(snap)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sgwatch: error: ") and err.count("\n") == 1
    assert not unsafe_chars(err), err
    assert "sg-\\x1b]0;pwned\\x07\\x9b2J\\u202e.json" in err
    check_stderr(report_of(Cloud(code="E\x9b1", message="boom " + WIPE + "\x1b]0;t\x07\u2028")))
