"""Notifier lifecycle and outbox: dedup, reminders, resolution, restarts, outages, expiry."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sgwatch.alerting import Notifier, WebhookChannel
from sgwatch.alerting.channels import parse_channel
from tests.alertfixtures import Clock, Receiver, finding, memory_db, receiver_fixture  # noqa: F401


def webhook(r: Receiver, **kw: Any) -> WebhookChannel:
    data = {
        "type": "webhook",
        "name": "hook",
        "url": r.url + "/hook",
        "min_severity": "high",
        "renotify_interval": "1h",
        "retry_initial": "10s",
        "retry_max": "5m",
        "max_age": "2h",
        **kw,
    }
    ch = parse_channel(data)
    assert isinstance(ch, WebhookChannel)
    return ch


def events(r: Receiver) -> list[tuple[str, str]]:
    """(event, finding id) of every delivered event, in order."""
    return [(e["event"], e["finding"]["id"]) for req in r.requests for e in req.json()["events"]]


def make(r: Receiver, clock: Clock, path: Path | None = None, **kw: Any) -> Notifier:
    return Notifier([webhook(r, **kw)], memory_db(path), clock)


def test_first_appearance_notifies_once(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock)
    assert n.process([finding("f1")]) == 1
    report = n.deliver_pending()
    assert report.get("hook", "sent") == 1
    assert events(receiver) == [("new", "f1")]
    # Same findings on the next scan: nothing new to say.
    clock.advance(minutes=5)
    assert n.process([finding("f1")]) == 0
    assert n.deliver_pending().get("hook", "sent") == 0
    assert len(receiver.requests) == 1
    assert n.stats().total("hook", "sent") == 1
    assert n.stats().pending() == {"hook": 0}


def test_reminder_after_interval_then_resolution(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock)
    n.process([finding("f1")])
    n.deliver_pending()
    clock.advance(minutes=59)
    n.process([finding("f1")])
    n.deliver_pending()
    assert events(receiver) == [("new", "f1")]
    clock.advance(minutes=1)
    # Reminders come from deliver_pending too, so they do not wait for the next scan.
    n.deliver_pending()
    assert events(receiver) == [("new", "f1"), ("reminder", "f1")]
    clock.advance(minutes=30)
    n.process([])
    n.deliver_pending()
    assert events(receiver)[-1] == ("resolved", "f1")
    resolved = receiver.requests[-1].json()["events"][0]["finding"]
    assert resolved["resolved_at"] == "2025-01-06T10:30:00Z"
    assert resolved["first_seen"] == "2025-01-06T08:55:00Z"
    # Resolved means forgotten: the same id coming back is news again.
    clock.advance(minutes=1)
    n.process([finding("f1")])
    n.deliver_pending()
    assert events(receiver)[-1] == ("new", "f1")


def test_restart_neither_resends_nor_forgets(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    clock = Clock()
    first = make(receiver, clock, db)
    first.process([finding("f1"), finding("f2", "high")])
    first.deliver_pending()
    assert sorted(events(receiver)) == [("new", "f1"), ("new", "f2")]

    clock.advance(minutes=5)
    second = make(receiver, clock, db)
    second.process([finding("f1")])
    second.deliver_pending()
    # f1 was not re-sent; f2's disappearance is still known to need a resolution.
    assert events(receiver)[2:] == [("resolved", "f2")]


def test_restart_delivers_what_was_queued_before(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    clock = Clock()
    make(receiver, clock, db).process([finding("f1")])  # queued, never delivered: the daemon died
    assert receiver.requests == []
    again = make(receiver, clock, db)
    assert again.stats().pending() == {"hook": 1}
    again.process([finding("f1")])
    again.deliver_pending()
    assert events(receiver) == [("new", "f1")]


def test_receiver_down_for_an_hour_loses_nothing(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock, renotify_interval="30m")
    receiver.down()
    n.process([finding("f1")])
    report = n.deliver_pending()
    assert report.retries["hook"] == 1 and report.get("hook", "sent") == 0
    assert report.pending == {"hook": 1}
    # Backoff: not due again until retry_initial has passed.
    clock.advance(seconds=5)
    assert n.deliver_pending().retries["hook"] == 0
    for i in range(12):
        clock.advance(minutes=5)
        n.process([finding("f1"), finding("f2")] if i >= 6 else [finding("f1")])  # f2 appears mid-outage
        n.deliver_pending()
    assert n.stats().total("hook", "sent") == 0
    assert n.stats().retries()["hook"] >= 5
    receiver.up()
    clock.advance(minutes=6)  # past the longest backoff (retry_max 5m)
    report = n.deliver_pending()
    assert report.get("hook", "sent") == 2
    assert events(receiver) == [("new", "f1"), ("new", "f2")]
    assert report.pending == {"hook": 0}
    # The backlog suppressed reminders; they come once it has drained.
    n.deliver_pending()
    assert sorted(events(receiver)[2:]) == [("reminder", "f1"), ("reminder", "f2")]


def test_retries_5xx_with_backoff_and_429(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock)
    receiver.answer(500, b"boom")
    receiver.answer(503, b"")
    receiver.answer(429, b"slow down")
    n.process([finding("f1")])
    waits = []
    for _ in range(10):
        before = len(receiver.requests)
        n.deliver_pending()
        if n.stats().total("hook", "sent"):
            break
        assert len(receiver.requests) == before + 1
        row = n._conn.execute("SELECT next_attempt_at FROM alert_outbox").fetchone()
        waits.append(row[0] - clock.now.timestamp())
        clock.now = clock.now.fromtimestamp(row[0], clock.now.tzinfo)
    assert waits == [10.0, 20.0, 40.0]
    assert n.stats().total("hook", "sent") == 1
    assert n.stats().total("hook", "failed") == 0
    assert len(receiver.requests) == 4


def test_4xx_is_permanent_and_does_not_block_the_queue(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock)
    receiver.answer(400, b"bad payload")
    n.process([finding("f1")])
    clock.advance(seconds=1)
    n.process([finding("f1"), finding("f2")])
    report = n.deliver_pending()
    assert report.get("hook", "failed") == 1
    assert report.get("hook", "sent") == 1
    assert [e for e in events(receiver)] == [("new", "f1"), ("new", "f2")]  # first was refused
    assert report.pending == {"hook": 0}


def test_expiry_after_max_age(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock, max_age="30m")
    receiver.down()
    n.process([finding("f1")])
    for _ in range(7):
        n.deliver_pending()
        clock.advance(minutes=5)
    report = n.deliver_pending()
    assert n.stats().total("hook", "expired") == 1
    assert report.pending == {"hook": 0}
    receiver.up()
    n.deliver_pending()
    assert receiver.requests == []


def test_min_severity_filtering(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock, min_severity="high")
    n.process([finding("low", "low"), finding("med", "medium"), finding("hi", "high"), finding("crit", "critical")])
    n.deliver_pending()
    assert sorted(fid for _, fid in events(receiver)) == ["crit", "hi"]
    # A finding below the floor that is later graded higher becomes news then.
    clock.advance(minutes=1)
    n.process([finding("low", "low"), finding("med", "critical"), finding("hi", "high"), finding("crit", "critical")])
    n.deliver_pending()
    assert events(receiver)[2:] == [("new", "med")]
    # A finding never notified produces no resolution either.
    clock.advance(minutes=1)
    n.process([finding("med", "critical"), finding("hi", "high"), finding("crit", "critical")])
    n.deliver_pending()
    assert len(events(receiver)) == 3


def test_severity_change_of_a_notified_finding(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock)
    n.process([finding("f1", "high")])
    clock.advance(minutes=1)
    n.process([finding("f1", "critical")])
    n.deliver_pending()
    assert events(receiver) == [("new", "f1"), ("severity_changed", "f1")]
    changed = receiver.requests[-1].json()["events"][0]
    assert changed["previous_severity"] == "high" and changed["finding"]["severity"] == "critical"


def test_unscanned_regions_are_not_resolved(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock)
    n.process([finding("f1", region="cn-hangzhou"), finding("f2", region="cn-beijing")])
    clock.advance(minutes=5)
    n.process([], unscanned=[("prod", "cn-hangzhou")])
    n.deliver_pending()
    assert sorted(events(receiver)) == [("new", "f1"), ("new", "f2"), ("resolved", "f2")]


def test_send_resolved_false(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock, send_resolved=False)
    n.process([finding("f1")])
    clock.advance(minutes=1)
    n.process([])
    n.deliver_pending()
    assert events(receiver) == [("new", "f1")]


def test_many_findings_are_split_into_bounded_messages(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock, max_findings_per_message=4)
    assert n.process([finding(f"f{i}") for i in range(10)]) == 3
    n.deliver_pending()
    assert [len(r.json()["events"]) for r in receiver.requests] == [4, 4, 2]


def test_channels_are_independent(receiver: Receiver) -> None:
    clock = Clock()
    other = Receiver().start()
    try:
        chans = [webhook(receiver), webhook(other, name="other", min_severity="info")]
        n = Notifier(chans, memory_db(), clock)
        other.down()
        n.process([finding("f1", "medium"), finding("f2", "critical")])
        report = n.deliver_pending()
        assert report.get("hook", "sent") == 1 and report.retries["other"] == 1
        assert events(receiver) == [("new", "f2")]
        assert report.pending == {"hook": 0, "other": 1}
    finally:
        other.down()


def test_shares_the_connection_with_other_tables(tmp_path: Path, receiver: Receiver) -> None:
    conn = memory_db(tmp_path / "shared.db")
    conn.execute("CREATE TABLE findings (id TEXT PRIMARY KEY)")
    conn.commit()
    n = Notifier([webhook(receiver)], conn, Clock())
    n.process([finding("f1")])
    assert not conn.in_transaction  # short transactions: nothing left open for the daemon to trip on
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"findings", "alert_state", "alert_outbox"} <= tables


@pytest.mark.parametrize("bad", [{"name": "a b"}, {"renotify_interval": "-5m"}, {"timeout": "soon"}])
def test_invalid_channel_config_is_rejected(receiver: Receiver, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        webhook(receiver, **bad)


def test_metric_samples_cover_every_channel_and_result(receiver: Receiver) -> None:
    n = make(receiver, Clock())
    assert n.stats().samples() == [("hook", res, 0) for res in ("sent", "failed", "expired", "unconfirmed")]
    n.process([finding("f1")])
    n.deliver_pending()
    assert ("hook", "sent", 1) in n.stats().samples()


def test_delivery_does_not_hold_the_database_during_http(receiver: Receiver) -> None:
    clock = Clock()
    n = make(receiver, clock)
    receiver.delay = 0.5
    n.process([finding("f1")])
    worker = threading.Thread(target=n.deliver_pending)
    worker.start()
    deadline = time.monotonic() + 5
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert receiver.requests, "the first pass never reached the receiver"
    started = time.monotonic()
    # While the first pass waits on the receiver: a scan can still queue, a second pass does nothing.
    clock.advance(seconds=1)
    assert n.process([finding("f1"), finding("f2")]) == 1
    assert n.deliver_pending().counts == {}
    assert time.monotonic() - started < 0.4
    worker.join()
    n.deliver_pending()
    assert events(receiver) == [("new", "f1"), ("new", "f2")]
