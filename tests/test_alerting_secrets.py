"""Secrets stay where they belong: one ${VAR} expansion, and no derived form of a credential in a
log line, an error or an outbox row."""

from __future__ import annotations

import base64
import io
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sgwatch import config, logs
from sgwatch.alerting import Notifier, parse_channel, parse_channels
from tests.alertfixtures import Clock, Receiver, finding, memory_db, receiver_fixture  # noqa: F401

BEARER = "tok-bearer-0123456789abcdef"
PASSWORD = "am-basic-password-42"


@pytest.fixture(name="log_lines")
def log_lines_fixture() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure("debug", stream=out, json=True)
    yield out
    logs.configure("warning", stream=sys.stderr)


def outbox_text(conn: sqlite3.Connection) -> str:
    return "\n".join(str(row) for row in conn.execute("SELECT * FROM alert_outbox"))


def test_a_variable_whose_value_names_another_is_not_expanded_again(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "the-real-accesskey-secret")
    monkeypatch.setenv("SIEM_KEY", "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}")
    monkeypatch.setenv("SIEM_URL", receiver.url + "/in")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "notifications:\n"
        "  - type: webhook\n"
        "    name: siem\n"
        "    url: ${SIEM_URL}\n"
        "    secret: ${SIEM_KEY}\n"
        "    headers: {X-Api-Key: '${SIEM_KEY}'}\n"
    )
    cfg = config.load(cfg_file, environ={})
    (channel,) = parse_channels(cfg.notifications)
    n = Notifier([channel], memory_db(), Clock())
    n.process([finding("f1")])
    assert n.deliver_pending().get("siem", "sent") == 1
    (req,) = receiver.requests
    assert req.headers["X-Api-Key"] == "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}"
    assert b"the-real-accesskey-secret" not in req.body
    assert "the-real-accesskey-secret" not in str(req.headers)


def test_a_receivers_echo_of_the_bare_bearer_token_is_scrubbed(receiver: Receiver, log_lines: io.StringIO) -> None:
    ch = parse_channel(
        {"type": "webhook", "name": "siem", "url": receiver.url, "headers": {"Authorization": f"Bearer {BEARER}"}}
    )
    receiver.answer(503, f'{{"error": "token {BEARER} is not valid here"}}'.encode())
    receiver.answer(401, f"unknown token {BEARER}".encode())
    conn = memory_db()
    clock = Clock()
    n = Notifier([ch], conn, clock)
    n.process([finding("f1")])
    n.deliver_pending()
    kept = outbox_text(conn)  # the retryable failure stays queued with its error text
    assert "HTTP 503" in kept and BEARER not in kept
    clock.advance(minutes=1)
    n.deliver_pending()  # the 401 is permanent: dropped and logged
    text = log_lines.getvalue()
    assert "notification dropped" in text and "HTTP 401" in text
    assert BEARER not in text


def test_the_base64_of_basic_auth_never_reaches_a_log_or_the_outbox(receiver: Receiver, log_lines: io.StringIO) -> None:
    ch = parse_channel(
        {
            "type": "alertmanager",
            "name": "am",
            "url": receiver.url,
            "basic_auth": {"username": "sgw", "password": PASSWORD},
        }
    )
    encoded = base64.b64encode(f"sgw:{PASSWORD}".encode()).decode()
    receiver.answer(500, f"upstream refused Authorization: Basic {encoded}; raw {encoded}".encode())
    conn = memory_db()
    n = Notifier([ch], conn, Clock())
    n.process([finding("f1")])
    n.deliver_pending()
    (req,) = receiver.requests
    assert req.headers["Authorization"] == f"Basic {encoded}"  # it was sent, to the receiver only
    for where in (outbox_text(conn), log_lines.getvalue()):
        assert "HTTP 500" in where and encoded not in where and PASSWORD not in where
