"""Who made the change, in every report format and on every alert channel, with the caller's text inert."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from sgwatch.alerting.channels import AlertmanagerChannel, parse_channel
from sgwatch.alerting.message import make_event
from sgwatch.core.findings import Report
from sgwatch.events import attribution
from sgwatch.render import json as json_render
from sgwatch.render import junit, markdown, sarif, table
from tests.test_attribution import SCHEMA, SSH_PARAMS, SSH_WORLD, event, report

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# What a caller controls: its user name (a RAM user's display is the caller's own choice of name),
# and the user agent it sends.
NAME = "alice@all<!channel>\u202e"
AGENT = (
    'Mozilla/5.0 \x1b[2J\x1b]8;;http://evil.example\x07[click](http://evil.example) <at user_id="all"> *bold* [red]x'
)


def attributed_report() -> Report:
    rep = report((), (SSH_WORLD,))
    attribution.attribute_report(
        rep, attribution.query_of([("acct", event("AuthorizeSecurityGroup", SSH_PARAMS, user=NAME, agent=AGENT))])
    )
    assert rep.findings[0].changed_by is not None
    return rep


def plain_report() -> Report:
    rep = report((), (SSH_WORLD,))
    attribution.attribute_report(rep, attribution.query_of([]))
    return rep


def no_raw_controls(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text


# --- report formats -------------------------------------------------------------------------------


def test_table_says_by_whom_and_from_where_with_the_callers_text_shown_escaped() -> None:
    out = table.render(attributed_report(), width=160)
    no_raw_controls(out)
    assert "by alice@all<!channel>\\u202e from 203.0.113.7" in out  # the short form in the table
    assert "\\x1b[2J" in out and "AuthorizeSecurityGroup" in out  # the detail row shows the agent escaped
    assert "from 203.0.113.7" not in table.render(plain_report(), width=160)


def test_markdown_escapes_the_callers_text() -> None:
    out = markdown.render(attributed_report())
    no_raw_controls(out)
    assert "203.0.113.7" in out
    # every character that could open a link, HTML or a mention is backslash-escaped
    assert "<!channel>" not in out and "[click](" not in out and " <at " not in out
    assert "@\u200ball" in out and "\\[click\\]" in out and "\\<at user\\_id" in out


def test_junit_carries_the_detail_as_legal_xml() -> None:
    out = junit.render(attributed_report())
    root = ET.fromstring(out.split("\n", 1)[1])
    text = "".join(root.itertext())
    assert "changed by alice" in text and "from 203.0.113.7" in text
    no_raw_controls(out)


def test_sarif_carries_changed_by_as_data_and_shows_it_inert_in_the_message() -> None:
    rep = attributed_report()
    doc = json.loads(sarif.render(rep))
    [result] = doc["runs"][0]["results"]
    assert result["properties"]["changed_by"] == rep.findings[0].changed_by.to_dict()  # type: ignore[union-attr]
    no_raw_controls(result["message"]["text"])
    assert "203.0.113.7" in result["message"]["text"]
    assert (
        result["partialFingerprints"]
        == json.loads(sarif.render(plain_report()))["runs"][0]["results"][0]["partialFingerprints"]
    )


def test_json_keeps_the_exact_text_and_validates() -> None:
    doc = json.loads(json_render.render(attributed_report()))
    jsonschema.validate(doc, SCHEMA)
    changed_by = doc["findings"][0]["changed_by"]
    assert changed_by["user_agent"] == AGENT and changed_by["principal"]["name"] == NAME


# --- alert channels -------------------------------------------------------------------------------

URL = "http://127.0.0.1:9/hook"
CHANNELS = ["webhook", "slack", "dingtalk", "wecom", "lark", "alertmanager"]


def alert_event(with_changed_by: bool = True) -> Any:
    rep = attributed_report() if with_changed_by else plain_report()
    finding = {**rep.findings[0].to_dict(), "first_seen": "2026-12-01T12:00:00Z"}
    return make_event("new", NOW, finding)


def body(kind: str, ev: Any) -> str:
    ch = parse_channel({"type": kind, "name": kind, "url": URL.rsplit("/", 1)[0] if kind == "alertmanager" else URL})
    return ch.build([ev], NOW).body.decode()


@pytest.mark.parametrize("kind", CHANNELS)
def test_every_channel_says_who_and_from_where(kind: str) -> None:
    text = body(kind, alert_event())
    data = json.loads(text)
    flat = json.dumps(data, ensure_ascii=False)
    assert "203.0.113.7" in flat and "alice" in flat
    no_raw_controls(flat)
    assert "\\u001b" not in flat  # not even JSON-escaped: the caller's controls are gone
    assert "from 203.0.113.7" not in body(kind, alert_event(with_changed_by=False))


@pytest.mark.parametrize("kind", ["slack", "dingtalk", "wecom", "lark"])
def test_chat_channels_keep_the_callers_text_inert(kind: str) -> None:
    flat = json.dumps(json.loads(body(kind, alert_event())), ensure_ascii=False)
    assert "<!channel>" not in flat and "<at " not in flat
    assert "@all" not in flat  # a mention needs "@all" unbroken
    if kind in ("dingtalk", "wecom"):  # markdown dialects: no link can form
        assert "[click](" not in flat


def test_webhook_payload_carries_changed_by_as_data() -> None:
    doc = json.loads(body("webhook", alert_event()))
    changed_by = doc["events"][0]["finding"]["changed_by"]
    assert changed_by["source_ip"] == "203.0.113.7" and changed_by["event_name"] == "AuthorizeSecurityGroup"
    assert changed_by["principal"]["access_key_id"].endswith("1234") and "LTAI5tAbCd" not in json.dumps(doc)


def test_alertmanager_names_who_in_annotations_and_keeps_its_labels() -> None:
    ch = parse_channel({"type": "alertmanager", "name": "am", "url": "http://127.0.0.1:9"})
    assert isinstance(ch, AlertmanagerChannel)
    named, plain = ch.alert(alert_event(), NOW), ch.alert(alert_event(with_changed_by=False), NOW)
    assert named["labels"] == plain["labels"]  # labels group and dedup: who is named never changes them
    assert (
        named["annotations"]["changed_by"].startswith("by alice")
        and "203.0.113.7" in named["annotations"]["changed_by"]
    )
    assert "AuthorizeSecurityGroup" in named["annotations"]["changed_by_detail"]
    assert "changed_by" not in plain["annotations"]
    assert all("<" not in v for v in named["annotations"].values())
