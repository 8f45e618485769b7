"""At least once, never twice for the reader: an idempotency key stable across retries and restarts,
attempts recorded before they are made, and chat robots never sent an ambiguous attempt again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sgwatch.alerting import Notifier, open_database, parse_channel
from sgwatch.alerting.channels import ChannelBase
from sgwatch.alerting.transport import HttpRequest, HttpResponse, post
from tests.alertfixtures import Clock, Receiver, finding, memory_db, receiver_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
KEY = "Idempotency-Key"


def webhook(r: Receiver, **kw: Any) -> ChannelBase:
    return parse_channel({"type": "webhook", "name": "hook", "url": r.url + "/in", "retry_initial": "10s", **kw})


def slack(r: Receiver, **kw: Any) -> ChannelBase:
    return parse_channel({"type": "slack", "name": "chat", "url": r.url + "/services/T/B/x", **kw})


def dedup(r: Receiver) -> list[str]:
    """What a receiver that drops repeated keys would keep: the keys of the messages it accepts."""
    seen: list[str] = []
    for req in r.requests:
        assert req.headers[KEY] == req.json().get("idempotency_key", req.headers[KEY])
        if req.headers[KEY] not in seen:
            seen.append(req.headers[KEY])
    return seen


def test_a_receiver_slower_than_the_timeout_gets_one_key_for_every_attempt(receiver: Receiver) -> None:
    receiver.delay = 0.6
    clock = Clock()
    conn = memory_db()
    n = Notifier([webhook(receiver, timeout="200ms")], conn, clock)
    n.process([finding("f1")])
    for _ in range(4):
        n.deliver_pending()
        clock.advance(minutes=10)
    receiver.delay = 0
    assert n.deliver_pending().get("hook", "sent") == 1
    assert len(receiver.requests) == 5  # four timed out (the receiver got each one), the fifth answered
    assert len(dedup(receiver)) == 1  # a receiver deduplicating on the key shows one alert
    assert receiver.requests[0].json()["events"][0]["finding"]["id"] == "f1"


def test_every_message_has_its_own_key(receiver: Receiver) -> None:
    clock = Clock()
    n = Notifier([webhook(receiver, max_findings_per_message=1, renotify_interval="1h")], memory_db(), clock)
    n.process([finding("f1"), finding("f2")])
    n.deliver_pending()
    clock.advance(hours=1)
    n.deliver_pending()  # the reminders: news of their own, so new keys
    assert len(receiver.requests) == 4 and len(dedup(receiver)) == 4


class Killed(BaseException):
    """The process dying mid-POST: nothing after the request runs."""


def test_attempt_is_recorded_before_the_post_and_a_restart_resends_with_the_same_key(
    receiver: Receiver, tmp_path: Path
) -> None:
    db = tmp_path / "state.sqlite"
    clock = Clock()
    sent: list[HttpRequest] = []

    def dies_mid_post(request: HttpRequest, timeout: float, secrets: list[str]) -> HttpResponse:
        sent.append(request)
        (attempts, started) = (
            sqlite3.connect(db).execute("SELECT attempts, attempt_started_at FROM alert_outbox").fetchone()
        )
        assert attempts == 1 and started == clock.now.timestamp()  # on disk before the request goes out
        post(request, timeout, secrets)
        raise Killed

    first = Notifier([webhook(receiver)], open_database(db), clock, transport=dies_mid_post)
    first.process([finding("f1")])
    with pytest.raises(Killed):
        first.deliver_pending()

    clock.advance(seconds=30)
    again = Notifier([webhook(receiver)], open_database(db), clock)
    assert again.deliver_pending().get("hook", "sent") == 1
    assert [r.headers[KEY] for r in receiver.requests] == [sent[0].headers[KEY]] * 2
    assert len(dedup(receiver)) == 1
    assert again.pending() == {"hook": 0}


def test_a_chat_robot_never_gets_an_attempt_cut_off_by_a_crash_again(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    clock = Clock()

    def dies_mid_post(request: HttpRequest, timeout: float, secrets: list[str]) -> HttpResponse:
        post(request, timeout, secrets)
        raise Killed

    first = Notifier([slack(receiver)], open_database(db), clock, transport=dies_mid_post)
    first.process([finding("f1")])
    with pytest.raises(Killed):
        first.deliver_pending()
    again = Notifier([slack(receiver)], open_database(db), clock)
    report = again.deliver_pending()
    assert report.get("chat", "unconfirmed") == 1 and report.get("chat", "sent") == 0
    assert len(receiver.requests) == 1 and again.pending() == {"chat": 0}


def test_a_chat_robot_is_not_sent_again_after_a_timeout_but_after_a_refused_connection(receiver: Receiver) -> None:
    clock = Clock()
    n = Notifier([slack(receiver, timeout="200ms", renotify_interval="4h")], memory_db(), clock)
    url = receiver.url
    receiver.down()
    n.process([finding("f1")])
    assert n.deliver_pending().retries["chat"] == 1  # refused: nothing reached Slack, retried
    receiver.port = int(url.rsplit(":", 1)[1])
    receiver.up()
    receiver.delay = 0.6
    clock.advance(minutes=1)
    report = n.deliver_pending()
    assert report.get("chat", "unconfirmed") == 1 and len(receiver.requests) == 1
    receiver.delay = 0
    for _ in range(6):
        clock.advance(minutes=10)
        n.deliver_pending()
    assert len(receiver.requests) == 1  # no retry: it may have been posted
    assert n.stats().total("chat", "unconfirmed") == 1
    clock.advance(hours=4)
    n.deliver_pending()  # the finding is still open: the reminder announces it
    assert len(receiver.requests) == 2 and "STILL OPEN" in receiver.requests[1].body.decode()


def test_rows_queued_before_keys_existed_get_one(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE alert_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, "
        "created_at REAL NOT NULL, next_attempt_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
        "last_error TEXT, events TEXT NOT NULL)"
    )
    clock = Clock()
    ts = clock.now.timestamp()
    events = '[{"event": "new", "at": "2025-01-06T09:00:00Z", "finding": {"id": "f1"}, "previous_severity": null}]'
    conn.execute("INSERT INTO alert_outbox VALUES (1, 'hook', ?, ?, 0, NULL, ?)", (ts, ts, events))
    conn.commit()
    receiver.answer(503)
    n = Notifier([webhook(receiver)], open_database(db), clock)
    n.deliver_pending()
    clock.advance(minutes=1)
    assert n.deliver_pending().get("hook", "sent") == 1
    assert len(receiver.requests) == 2 and len(dedup(receiver)) == 1


CHILD = """
import sys
from pathlib import Path
from sgwatch.alerting import Notifier, open_database, parse_channel
from tests.alertfixtures import finding
ch = parse_channel({"type": "webhook", "name": "hook", "url": sys.argv[1], "timeout": "60s"})
n = Notifier([ch], open_database(Path(sys.argv[2])))
n.process([finding("f1")])
n.deliver_pending()
"""


def test_kill_9_during_a_slow_post_then_restart_resends_with_the_same_key(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    receiver.delay = 3.0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, receiver.url + "/in", str(db)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not receiver.requests:
            assert child.poll() is None and time.monotonic() < deadline, "the child never posted"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    receiver.delay = 0
    again = Notifier([webhook(receiver)], open_database(db))  # the real clock, as the child's
    assert again.deliver_pending().get("hook", "sent") == 1
    assert len(receiver.requests) == 2 and len(dedup(receiver)) == 1
