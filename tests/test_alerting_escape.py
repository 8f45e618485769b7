"""Cloud text is hostile: every channel's message must render it inert."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from sgwatch.alerting.channels import parse_channel
from sgwatch.alerting.escape import clean, markdown_text, plain_text, slack_text
from sgwatch.alerting.message import make_event
from tests.alertfixtures import finding

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
HOSTILE = [
    "<!channel> please look",
    "<!here|here> and <!everyone>",
    "<@U12345> <#C999|general>",
    "@all @here @channel",
    '<at user_id="all">everyone</at>',
    "[click me](https://evil.example/login) and ![img](https://evil.example/x.png)",
    "<https://evil.example|totally-safe.example>",
    "**bold** _it_ ~strike~ `code` ```block```",
    "# heading\n> quote\n- list",
    "line1\nline2\r\nline3\ttab",
    "bell\x07 nul\x00 esc\x1b[31m red",
    "\u202eevil reversed\u202c and zero\u200bwidth\ufeff",
    '<font color="warning">red</font> &amp; &lt;',
]
MARKDOWN_SPECIAL = set("\\`*_~[]()#<>|!&@")


def test_clean_strips_controls_bidi_and_newlines() -> None:
    out = clean("a\nb\r\nc\td\x07e\x1b[0m\u202ef\u200bg\ufeffh")
    assert out == "a b c d e [0mfgh"
    assert all(unicodedata.category(ch)[0] != "C" for ch in out)


def test_clean_truncates_with_an_ellipsis() -> None:
    out = clean("x" * 5000, 100)
    assert len(out) == 100 and out.endswith("…")
    assert clean("short", 100) == "short"


def test_slack_escaping() -> None:
    out = slack_text("<!channel> & <@U123> *bold* `code` @here")
    assert "<" not in out and ">" not in out
    assert "&lt;!channel&gt;" in out and "&amp;" in out
    assert "*" not in out and "`" not in out
    assert "@here" not in out  # a zero-width space follows the @


def test_markdown_escaping() -> None:
    out = markdown_text("[click](http://evil.example) **x** `y` @all <b>")
    assert not MARKDOWN_SPECIAL & set(out)
    assert "click" in out and "evil.example" in out  # still readable


def test_plain_text_escaping() -> None:
    out = plain_text('<at user_id="all">x</at> @all')
    assert "<at" not in out and "@all" not in out


@given(st.text(max_size=400))
def test_markdown_text_is_always_inert(text: str) -> None:
    out = markdown_text(text, 120)
    assert len(out) <= 120
    assert not MARKDOWN_SPECIAL & set(out)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in out)


@given(st.text(max_size=400))
def test_slack_text_is_always_inert(text: str) -> None:
    out = slack_text(text, 120)
    assert "<" not in out and ">" not in out and "`" not in out and "*" not in out
    assert re.fullmatch(r"([^&]|&(amp|lt|gt);)*", out)
    assert not re.search(r"@(?=\w)", out)


def _message(kind: str, description: str) -> str:
    url = "http://127.0.0.1:9/hook"
    ch = parse_channel({"type": kind, "name": "c", "url": url})
    f = finding("f1", description=description, message=f"group note: {description}")
    req = ch.build([make_event("new", NOW, f)], NOW)
    doc = json.loads(req.body)
    if kind == "slack":
        return "\n".join(b["text"]["text"] for b in doc["blocks"]) + doc["text"]
    if kind == "dingtalk":
        return str(doc["markdown"]["text"])
    if kind == "wecom":
        return str(doc["markdown"]["content"])
    return str(doc["content"]["text"])


def test_hostile_descriptions_in_every_chat_channel() -> None:
    for text in HOSTILE:
        for kind in ("slack", "dingtalk", "wecom", "lark"):
            out = _message(kind, text)
            assert (
                "\u202e" not in out
                and "\x07" not in out
                and "\x1b" not in out
                and "\u200b" not in out.replace("@\u200b", "")
            )
            assert "@all" not in out and "@here" not in out and "@channel" not in out
            assert "<!" not in out and "<@" not in out and "<at" not in out and "<font" not in out
            assert "<https" not in out
            if kind in ("dingtalk", "wecom"):
                assert "](" not in out and "`" not in out and "[click" not in out
                # Our own emphasis pairs up; cloud text added none of its own.
                assert "**bold**" not in out
            if kind == "slack":
                assert "*bold*" not in out and "`code`" not in out


def test_cloud_text_never_starts_a_line() -> None:
    out = _message("dingtalk", "x\n# Heading\n- item\n> quote")
    assert "\n# Heading" not in out and "\n- item" not in out and "\n> quote" not in out


def test_very_long_descriptions_are_truncated() -> None:
    for kind, cap in (("slack", 40000), ("dingtalk", 20000), ("wecom", 4096), ("lark", 30000)):
        out = _message(kind, "A" * 100_000)
        assert "…" in out and len(out.encode()) < cap
        assert "A" * 301 not in out  # descriptions stop at 200 characters, messages at 300


def test_wecom_message_stays_under_4096_bytes_with_many_findings() -> None:
    ch = parse_channel({"type": "wecom", "name": "w", "url": "http://127.0.0.1:9/x", "max_findings_per_message": 50})
    events = [make_event("new", NOW, finding(f"f{i}", description="长" * 500)) for i in range(50)]
    doc = json.loads(ch.build(events, NOW).body)
    assert len(doc["markdown"]["content"].encode()) <= 4096


def test_webhook_payload_keeps_data_but_bounds_text() -> None:
    ch = parse_channel({"type": "webhook", "name": "h", "url": "http://127.0.0.1:9/x"})
    f = finding("f1", description="a\x00b\u202e" + "z" * 5000)
    doc = json.loads(ch.build([make_event("new", NOW, f)], NOW).body)
    desc = doc["events"][0]["finding"]["live"]["description"]
    assert desc.startswith("a b") and desc.endswith("…") and len(desc) <= 200
    assert doc["events"][0]["finding"]["new_exposures"][0]["from_port"] == 22


def test_alertmanager_annotations_are_inert() -> None:
    ch = parse_channel({"type": "alertmanager", "name": "am", "url": "http://127.0.0.1:9"})
    f = finding("f1", description="<!channel> @all\n\u202e" + "q" * 5000)
    alert = json.loads(ch.build([make_event("new", NOW, f)], NOW).body)[0]
    text = json.dumps(alert["annotations"], ensure_ascii=False)
    assert "<!channel>" not in text and "@all" not in text and "\u202e" not in text and "\\n" not in text
    assert len(alert["annotations"]["description"]) <= 1000
