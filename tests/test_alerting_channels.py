"""Each channel's wire format, signatures, error handling and config, against a local receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from sgwatch.alerting import AlertingConfig, Notifier, build_notifier, parse_channels, send_test
from sgwatch.alerting.channels import ChannelBase, parse_channel
from sgwatch.errors import SgwatchError
from tests.alertfixtures import Clock, Receiver, finding, memory_db, receiver_fixture  # noqa: F401

TOKEN = "c0ffee0123456789abcdef0123456789c0ffee0123456789abcdef0123456789"
SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"


def deliver(ch: ChannelBase, findings: list[dict[str, Any]], clock: Clock | None = None) -> Notifier:
    n = Notifier([ch], memory_db(), clock or Clock())
    n.process(findings)
    n.deliver_pending()
    return n


# --- generic webhook ---------------------------------------------------------------------------


def test_webhook_is_signed(receiver: Receiver) -> None:
    ch = parse_channel(
        {
            "type": "webhook",
            "name": "hook",
            "url": receiver.url + "/in",
            "secret": "s3cret-value",
            "headers": {"Authorization": "Bearer abc"},
        }
    )
    clock = Clock()
    deliver(ch, [finding("f1")], clock)
    (req,) = receiver.requests
    expected = hmac.new(b"s3cret-value", req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Sgwatch-Signature"] == f"sha256={expected}"
    doc = req.json()
    assert req.headers["X-Sgwatch-Timestamp"] == str(doc["timestamp"]) == str(int(clock.now.timestamp()))
    assert req.headers["Authorization"] == "Bearer abc"
    assert req.headers["Content-Type"] == "application/json"
    assert doc["source"] == "sgwatch" and doc["events"][0]["event"] == "new"
    assert doc["events"][0]["finding"]["id"] == "f1"
    assert doc["events"][0]["finding"]["first_seen"] == "2025-01-06T08:55:00Z"


def test_webhook_without_secret_is_unsigned(receiver: Receiver) -> None:
    deliver(parse_channel({"type": "webhook", "name": "hook", "url": receiver.url}), [finding("f1")])
    (req,) = receiver.requests
    assert "X-Sgwatch-Signature" not in req.headers and "X-Sgwatch-Timestamp" in req.headers


# --- DingTalk ------------------------------------------------------------------------------------


def test_dingtalk_signature_and_markdown(receiver: Receiver) -> None:
    ch = parse_channel(
        {"type": "dingtalk", "name": "ding", "url": f"{receiver.url}/robot/send?access_token={TOKEN}", "secret": SECRET}
    )
    clock = Clock()
    deliver(ch, [finding("f1", description="@all *look*")], clock)
    (req,) = receiver.requests
    assert req.path == "/robot/send"
    assert req.query["access_token"] == [TOKEN]
    stamp = req.query["timestamp"][0]
    assert stamp == str(int(clock.now.timestamp() * 1000))
    mac = hmac.new(SECRET.encode(), f"{stamp}\n{SECRET}".encode(), hashlib.sha256).digest()
    assert req.query["sign"] == [base64.b64encode(mac).decode()]
    doc = req.json()
    assert doc["msgtype"] == "markdown" and doc["at"]["isAtAll"] is False
    assert "sgwatch drift" in doc["markdown"]["title"]
    text = doc["markdown"]["text"]
    assert "sg-web" in text and "CRITICAL" in text and "＠all ＊look＊" in text


@pytest.mark.parametrize(("errcode", "retryable"), [(310000, False), (130101, True)])
def test_dingtalk_error_codes_and_redaction(receiver: Receiver, errcode: int, retryable: bool) -> None:
    ch = parse_channel(
        {"type": "dingtalk", "name": "ding", "url": f"{receiver.url}/robot/send?access_token={TOKEN}", "secret": SECRET}
    )
    receiver.body = json.dumps({"errcode": errcode, "errmsg": f"sign not match, token {TOKEN}"}).encode()
    with capture_logs() as logs:
        n = deliver(ch, [finding("f1")])
    assert n.stats().total("ding", "failed") == (0 if retryable else 1)
    assert n.stats().retries()["ding"] == (1 if retryable else 0)
    assert n.stats().pending() == {"ding": 1 if retryable else 0}
    logged = json.dumps(logs, default=str)
    assert f"DingTalk error {errcode}" in logged
    assert TOKEN not in logged and SECRET not in logged and "access_token" not in logged
    with pytest.raises(SgwatchError) as info:
        send_test(ch)
    assert TOKEN not in str(info.value) and SECRET not in str(info.value)
    assert str(info.value).startswith(
        f"alert channel 'ding' ({receiver.url}): test notification failed: DingTalk error"
    )


# --- Slack ---------------------------------------------------------------------------------------


def test_slack_blocks(receiver: Receiver) -> None:
    ch = parse_channel({"type": "slack", "name": "slack", "url": f"{receiver.url}/services/T000/B000/{TOKEN}"})
    receiver.body = b"ok"
    n = deliver(ch, [finding("f1"), finding("f2", "high", description="<!channel>")])
    assert n.stats().total("slack", "sent") == 1
    doc = receiver.requests[0].json()
    assert doc["blocks"][0]["type"] == "header"
    sections = [b["text"]["text"] for b in doc["blocks"][1:]]
    assert len(sections) == 2
    assert sections[0].startswith("*🔴 NEW · CRITICAL*") and "sg-web" in sections[0]
    assert "&lt;!channel&gt;" in sections[1]
    assert doc["text"] == "sgwatch drift: 2 new"


def test_slack_refusal_is_permanent_and_redacted(receiver: Receiver) -> None:
    ch = parse_channel({"type": "slack", "name": "slack", "url": f"{receiver.url}/services/T000/B000/{TOKEN}"})
    receiver.status, receiver.body = 404, b"no_service"
    with capture_logs() as logs:
        n = deliver(ch, [finding("f1")])
    assert n.stats().total("slack", "failed") == 1
    logged = json.dumps(logs, default=str)
    assert "HTTP 404" in logged and "no_service" in logged and TOKEN not in logged and "/services" not in logged


# --- WeCom and Lark ----------------------------------------------------------------------------------


def test_wecom_markdown(receiver: Receiver) -> None:
    ch = parse_channel({"type": "wecom", "name": "wecom", "url": f"{receiver.url}/cgi-bin/webhook/send?key={TOKEN}"})
    n = deliver(ch, [finding("f1", description="<@zhangsan> <font color='warning'>")])
    assert n.stats().total("wecom", "sent") == 1
    req = receiver.requests[0]
    assert req.query["key"] == [TOKEN]
    content = req.json()["markdown"]["content"]
    assert req.json()["msgtype"] == "markdown"
    assert "<@" not in content and "<font" not in content and "sg-web" in content


def test_wecom_rate_limit_is_retried(receiver: Receiver) -> None:
    ch = parse_channel({"type": "wecom", "name": "wecom", "url": f"{receiver.url}/send?key={TOKEN}"})
    receiver.answer(200, b'{"errcode":45009,"errmsg":"api freq out of limit"}')
    clock = Clock()
    n = deliver(ch, [finding("f1")], clock)
    assert n.stats().retries()["wecom"] == 1
    clock.advance(seconds=11)
    n.deliver_pending()
    assert n.stats().total("wecom", "sent") == 1 and len(receiver.requests) == 2


def test_lark_signature(receiver: Receiver) -> None:
    ch = parse_channel(
        {
            "type": "lark",
            "name": "lark",
            "url": f"{receiver.url}/open-apis/bot/v2/hook/{TOKEN}",
            "secret": "lark-secret",
        }
    )
    receiver.body = b'{"code":0,"msg":"success"}'
    clock = Clock()
    n = deliver(ch, [finding("f1", description='<at user_id="all">x</at>')], clock)
    assert n.stats().total("lark", "sent") == 1
    doc = receiver.requests[0].json()
    assert doc["timestamp"] == str(int(clock.now.timestamp()))
    key = f"{doc['timestamp']}\nlark-secret".encode()
    assert doc["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert doc["msg_type"] == "text" and "<at" not in doc["content"]["text"]


def test_lark_signature_failure_is_permanent(receiver: Receiver) -> None:
    ch = parse_channel({"type": "lark", "name": "lark", "url": f"{receiver.url}/hook/{TOKEN}", "secret": "x" * 8})
    receiver.body = b'{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}'
    assert deliver(ch, [finding("f1")]).stats().total("lark", "failed") == 1


# --- transport -------------------------------------------------------------------------------------


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    other = Receiver().start()
    try:
        receiver.status, receiver.body = 302, b""
        ch = parse_channel({"type": "webhook", "name": "hook", "url": receiver.url})
        n = deliver(ch, [finding("f1")])
        assert n.stats().total("hook", "failed") == 1 and other.requests == []
    finally:
        other.down()


def test_timeout_is_retryable(receiver: Receiver) -> None:
    receiver.delay = 1.0
    ch = parse_channel({"type": "webhook", "name": "hook", "url": receiver.url, "timeout": 0.2})
    with capture_logs() as logs:
        n = deliver(ch, [finding("f1")])
    assert n.stats().retries()["hook"] == 1 and n.stats().pending() == {"hook": 1}
    assert any("timed out" in str(e.get("error")) for e in logs)


@pytest.mark.parametrize(
    ("headers", "wait"), [({}, 10.0), ({"Retry-After": "120"}, 120.0), ({"Retry-After": "1"}, 10.0)]
)
def test_retry_after_is_honoured(receiver: Receiver, headers: dict[str, str], wait: float) -> None:
    ch = parse_channel({"type": "webhook", "name": "hook", "url": receiver.url})
    receiver.answer(429, b"", headers)
    clock = Clock()
    n = deliver(ch, [finding("f1")], clock)
    (next_at,) = n._conn.execute("SELECT next_attempt_at FROM alert_outbox").fetchone()
    assert next_at - clock.now.timestamp() == wait  # the longer of Retry-After and the backoff


def test_delivery_error_text_never_holds_the_url() -> None:
    ch = parse_channel({"type": "dingtalk", "name": "d", "url": f"http://127.0.0.1:1/robot/send?access_token={TOKEN}"})
    with pytest.raises(SgwatchError) as info:
        send_test(ch)
    assert TOKEN not in str(info.value) and "robot" not in str(info.value)
    assert "cannot reach http://127.0.0.1:1" in str(info.value)


# --- config ----------------------------------------------------------------------------------------


def test_yaml_shape_and_defaults() -> None:
    cfg = AlertingConfig.model_validate(
        {
            "channels": [
                {"type": "alertmanager", "name": "am", "url": "http://alertmanager:9093/", "resolve_timeout": "5m"},
                {
                    "type": "slack",
                    "name": "sec",
                    "url": f"https://hooks.slack.com/services/T/B/{TOKEN}",
                    "renotify_interval": "1h30m",
                },
                {
                    "type": "webhook",
                    "name": "siem",
                    "url": "https://siem.example/in",
                    "renotify_interval": None,
                    "timeout": "2.5s",
                    "max_age": "PT6H",
                },
            ]
        }
    )
    am, slack, hook = cfg.channels
    assert am.url == "http://alertmanager:9093" and am.min_severity == "info"
    assert am.reminder_interval() == timedelta(minutes=2, seconds=30)
    assert slack.renotify_interval == timedelta(minutes=90) and slack.min_severity == "high"
    assert hook.reminder_interval() is None and hook.timeout == timedelta(seconds=2.5)
    assert hook.max_age == timedelta(hours=6)
    assert TOKEN not in repr(cfg) and TOKEN not in cfg.model_dump_json()
    assert cfg.channel("sec") is slack


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "pager", "name": "x", "url": "http://x"}, "does not match any of the expected tags"),
        ({"type": "slack", "name": "x", "url": f"hooks.slack.com/services/{TOKEN}"}, "must be an http(s) URL"),
        # ${NAME} is the config loader's to expand, once; a channel takes the text as it is.
        ({"type": "slack", "name": "x", "url": "${NOT_SET_ANYWHERE}"}, "must be an http(s) URL"),
        ({"type": "slack", "name": "x", "url": "http://x", "min_severity": "urgent"}, "Input should be"),
        ({"type": "slack", "name": "x", "url": "http://x", "timeout": "0s"}, "positive duration"),
        ({"type": "slack", "name": "x", "url": "http://x", "colour": "red"}, "Extra inputs are not permitted"),
        ({"type": "slack", "name": "x", "url": "http://x", "max_findings_per_message": 60}, "less than or equal to 45"),
        ({"type": "alertmanager", "name": "x", "url": f"http://am:{TOKEN}@am:9093"}, "put credentials in basic_auth"),
        (
            {"type": "webhook", "name": "x", "url": "http://x", "headers": {"X-A": f"{TOKEN}\r\nX-Injected: 1"}},
            "holds a line break",
        ),
    ],
)
def test_invalid_config_messages_hold_no_secret(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_channel(data)
    assert message in str(info.value)
    assert TOKEN not in str(info.value)


def test_duplicate_channel_names_are_rejected() -> None:
    with pytest.raises(ValidationError, match="used twice"):
        AlertingConfig.model_validate({"channels": [{"type": "slack", "name": "a", "url": "http://x"}] * 2})


def test_send_test_to_every_chat_channel(receiver: Receiver) -> None:
    for kind in ("webhook", "slack", "dingtalk", "wecom", "lark"):
        send_test(
            parse_channel({"type": kind, "name": kind, "url": f"{receiver.url}/{kind}"}),
            now=datetime(2025, 1, 1, tzinfo=UTC),
        )
    assert [r.path for r in receiver.requests] == ["/webhook", "/slack", "/dingtalk", "/wecom", "/lark"]
    assert all("test" in r.body.decode().lower() for r in receiver.requests)


# --- daemon entry points -------------------------------------------------------------------------


def test_parse_channels_names_the_bad_key_in_one_line() -> None:
    with pytest.raises(SgwatchError) as info:
        parse_channels(
            [
                {"type": "slack", "name": "ok", "url": "http://x"},
                {"type": "dingtalk", "name": "d", "url": f"oapi.dingtalk.com/robot/send?access_token={TOKEN}"},
            ]
        )
    assert str(info.value).startswith("notifications[1].url: must be an http(s) URL") and TOKEN not in str(info.value)
    with pytest.raises(SgwatchError, match=r"^notifications\[0\]: Input tag 'pager' found"):
        parse_channels([{"type": "pager", "name": "p"}])
    with pytest.raises(SgwatchError, match=r"^notifications: channel name 'a' is used twice$"):
        parse_channels([{"type": "slack", "name": "a", "url": "http://x"}] * 2)


def test_build_notifier_from_config_mappings_and_a_state_path(tmp_path: Path, receiver: Receiver) -> None:
    clock = Clock()
    n = build_notifier([{"type": "webhook", "name": "hook", "url": receiver.url}], tmp_path / "state.sqlite", clock)
    n.process([finding("f1")], clock.now)
    n.deliver_pending(clock.now)
    stats = n.stats()
    assert stats.totals() == {("hook", "sent"): 1} and stats.pending() == {"hook": 0}
    # The state file is shared with sgwatch.state: WAL, and our tables only.
    conn = sqlite3.connect(tmp_path / "state.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
        "alert_state",
        "alert_outbox",
    }
