"""The pull path: the cursor in the state file, and the poller feeding a sink, with an injected clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sgwatch.emulator import Emulator
from sgwatch.emulator.control import EmulatorControl
from sgwatch.events.intake import Accepted
from sgwatch.events.model import ChangeEvent
from sgwatch.events.poller import OVERLAP, Poller
from sgwatch.state import State
from tests.livefixtures import EmulatorFactory, make_emulator, no_proxy, settings_for

__all__ = ["make_emulator", "no_proxy"]

R = "cn-hangzhou"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Sink:
    def __init__(self) -> None:
        self.taken: list[tuple[str, str, str]] = []  # (account, event name, first group)
        self.fail = False

    def __call__(self, account: str, events: Sequence[ChangeEvent]) -> None:
        if self.fail:
            raise RuntimeError("the handler is down")
        self.taken += [(account, e.event_name, (e.targets.security_group_ids or ("",))[0]) for e in events]


@pytest.fixture
def rig(make_emulator: EmulatorFactory, tmp_path: Path) -> tuple[Emulator, Clock, Sink, State, Poller]:
    emulator = make_emulator()
    clock = Clock(T0)
    emulator.actiontrail.clock = clock  # the emulator's trail and the daemon share one clock
    state = State(tmp_path / "state.sqlite")
    sink = Sink()
    live = settings_for(emulator, regions=[R])
    return emulator, clock, sink, state, Poller(lambda: live, state, sink, clock)


def test_cursor_survives_a_restart_and_never_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    state = State(path)
    assert state.trail_cursor("default", R) is None
    state.advance_trail_cursor("default", R, T0, [("e1", T0), ("e0", T0 - timedelta(hours=1))], T0 - OVERLAP)
    state.close()
    state = State(path)
    cursor = state.trail_cursor("default", R)
    assert cursor is not None and cursor.time == T0 and cursor.seen == {"e1"}  # e0 is past the overlap
    state.advance_trail_cursor("default", R, T0 - timedelta(minutes=1), [("e2", T0)], T0 - OVERLAP)
    cursor = state.trail_cursor("default", R)
    assert cursor is not None and cursor.time == T0 and cursor.seen == {"e1", "e2"}
    assert state.trail_cursor("default", "cn-shanghai") is None


def test_each_event_is_taken_once_even_at_the_cursors_second(rig: tuple[Emulator, Clock, Sink, State, Poller]) -> None:
    emulator, clock, sink, state, poller = rig
    control = EmulatorControl(emulator.url).as_identity("alice")
    assert poller.poll().taken == 0  # the cursor starts now
    clock.tick(10)
    control.add_group(R, "sg-a")
    summary = poller.poll()
    assert sink.taken == [("default", "CreateSecurityGroup", "sg-a")]
    assert summary.taken == 1
    assert poller.poll().taken == 0, "read again in the overlap, not taken again"
    control.add_permission(R, "sg-a", {"IpProtocol": "TCP", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"})
    summary = poller.poll()  # same second as the cursor
    assert sink.taken[1:] == [("default", "AuthorizeSecurityGroup", "sg-a")]
    assert summary.repeated == 1
    cursor = state.trail_cursor("default", R)
    assert cursor is not None and cursor.time == T0 + timedelta(seconds=10) and len(cursor.seen) == 2


def test_events_that_become_visible_late_are_taken_when_they_do(
    rig: tuple[Emulator, Clock, Sink, State, Poller],
) -> None:
    emulator, clock, sink, _, poller = rig
    emulator.faults.actiontrail_delay_seconds = 600
    poller.poll()
    clock.tick(1)
    EmulatorControl(emulator.url).add_group(R, "sg-late")
    for _ in range(9):
        clock.tick(60)
        poller.poll()
    assert sink.taken == []  # 540 s after the change: not visible yet
    clock.tick(60)
    poller.poll()
    assert sink.taken == [("default", "CreateSecurityGroup", "sg-late")]


def test_an_event_indexed_out_of_order_within_the_overlap_is_taken(
    rig: tuple[Emulator, Clock, Sink, State, Poller],
) -> None:
    emulator, clock, sink, _, poller = rig
    control = EmulatorControl(emulator.url)
    poller.poll()
    clock.tick(120)
    control.add_group(R, "sg-new")
    poller.poll()
    earlier = control.trail_events()[0]
    at = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    within = {
        **earlier,
        "eventId": "late-1",
        "eventTime": at(clock.now - timedelta(minutes=4)),
        "requestParameters": {"RegionId": R, "SecurityGroupId": "sg-w"},
    }
    beyond = {
        **earlier,
        "eventId": "late-2",
        "eventTime": at(clock.now - timedelta(minutes=6)),
        "requestParameters": {"RegionId": R, "SecurityGroupId": "sg-b"},
    }
    emulator.actiontrail.add_record("default", within)
    emulator.actiontrail.add_record("default", beyond)
    clock.tick(60)
    poller.poll()
    # one indexed later than the overlap allows is left to the full scan (docs/events-actiontrail.md)
    assert [g for _, _, g in sink.taken] == ["sg-new", "sg-w"]


def test_a_failed_poll_keeps_the_cursor_and_the_next_one_catches_up(
    rig: tuple[Emulator, Clock, Sink, State, Poller],
) -> None:
    emulator, clock, sink, state, poller = rig
    control = EmulatorControl(emulator.url)
    poller.poll()
    before = state.trail_cursor("default", R)
    clock.tick(5)
    control.add_group(R, "sg-a")
    emulator.faults.error_5xx_rate = 1.0
    summary = poller.poll()
    assert summary.taken == 0 and len(summary.failed) == 1
    assert summary.failed[0][:2] == ("default", R) and "InternalError" in summary.failed[0][2]
    assert state.trail_cursor("default", R) == before
    emulator.faults.error_5xx_rate = 0.0
    clock.tick(60)
    assert poller.poll().taken == 1
    assert sink.taken == [("default", "CreateSecurityGroup", "sg-a")]


def test_a_sink_that_fails_gets_the_events_again(rig: tuple[Emulator, Clock, Sink, State, Poller]) -> None:
    emulator, clock, sink, _, poller = rig
    poller.poll()
    clock.tick(5)
    EmulatorControl(emulator.url).add_group(R, "sg-a")
    sink.fail = True
    with pytest.raises(RuntimeError):
        poller.poll()
    sink.fail = False
    poller.poll()
    assert sink.taken == [("default", "CreateSecurityGroup", "sg-a")]


def test_a_restarted_poller_takes_nothing_twice(
    rig: tuple[Emulator, Clock, Sink, State, Poller], tmp_path: Path
) -> None:
    emulator, clock, sink, state, poller = rig
    control = EmulatorControl(emulator.url)
    poller.poll()
    clock.tick(5)
    control.add_group(R, "sg-a")
    poller.poll()
    state.close()
    state = State(tmp_path / "state.sqlite")
    live = settings_for(emulator, regions=[R])
    again = Poller(lambda: live, state, sink, clock)
    clock.tick(60)
    control.add_group(R, "sg-b")
    again.poll()
    assert [g for _, _, g in sink.taken] == ["sg-a", "sg-b"]


def test_without_configured_regions_it_polls_the_regions_scans_read(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emulator = make_emulator()
    clock = Clock(T0)
    emulator.actiontrail.clock = clock
    state = State(tmp_path / "s.sqlite")
    live = settings_for(emulator, regions=[])
    poller = Poller(lambda: live, state, Sink(), clock)
    assert poller.regions(live, live.accounts[0]) == []
    state.db.execute("INSERT INTO regions VALUES ('default', 'cn-beijing', '2026-12-01T00:00:00Z')")
    assert poller.regions(live, live.accounts[0]) == ["cn-beijing"]
    poller.poll()
    assert state.trail_cursor("default", "cn-beijing") is not None


def test_the_daemon_polls_into_the_events_intake(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    from sgwatch.daemon import Daemon, RunOptions
    from tests.livefixtures import AK_ID, AK_SECRET
    from tests.test_daemon_e2e import DEMO

    emulator = make_emulator()
    clock = Clock(T0)
    emulator.actiontrail.clock = clock
    overrides = {
        "baseline": str(DEMO / "baseline"),
        "state": str(tmp_path / "state.sqlite"),
        "listen": "127.0.0.1:0",
        "endpoint": emulator.url,
        "regions": [R],
        "accounts": [{"name": "default", "credentials": {"type": "access_key", "id": AK_ID, "secret": AK_SECRET}}],
        "events": {"actiontrail": True},
    }
    handled: list[tuple[str, str, str, str]] = []

    def handler(events: Sequence[Accepted]) -> None:
        handled.extend((a.account, a.via, a.event.event_name, a.event.targets.security_group_ids[0]) for a in events)

    daemon = Daemon(RunOptions(config_path=None, overrides=overrides), clock=clock, event_handler=handler)
    try:
        daemon.poll_actiontrail()
        clock.tick(30)
        EmulatorControl(emulator.url).as_identity("carol").add_group(R, "sg-c")
        daemon.poll_actiontrail()
        assert handled == [("default", "pull", "CreateSecurityGroup", "sg-c")]
        assert daemon.telemetry.events.received["accepted"] == 1
        assert daemon.scheduler.get_job("actiontrail") is None  # scheduled by run(), with the scan
        daemon._schedule(daemon.loaded.config, first=True)
        job = daemon.scheduler.get_job("actiontrail")
        assert job is not None and job.trigger.interval.total_seconds() == 60
    finally:
        daemon.state.close()

    off = Daemon(RunOptions(config_path=None, overrides={**overrides, "events": {}}), clock=clock)
    assert off.trail_poller is None
    off.poll_actiontrail()  # nothing to do, nothing called
    off.state.close()
    assert emulator.calls["LookupEvents"] == 2


def test_the_log_sink_shows_the_callers_text_inert() -> None:
    from structlog.testing import capture_logs

    from sgwatch.events.poller import log_sink
    from sgwatch.events.record import parse_record

    record = {
        "eventId": "e-1",
        "eventName": "AuthorizeSecurityGroup",
        "eventTime": "2026-12-01T12:00:00Z",
        "acsRegion": R,
        "sourceIpAddress": "203.0.113.9\u202e",
        "userIdentity": {"type": "ram-user", "userName": "ev\x1b[2Jil"},
        "requestParameters": {"RegionId": R, "SecurityGroupId": "sg-a"},
    }
    event = parse_record(record)
    assert isinstance(event, ChangeEvent)
    with capture_logs() as logs:
        log_sink("default", [event])
    (line,) = logs
    assert line["changed_by"] == "ev\\x1b[2Jil" and line["source_ip"] == "203.0.113.9\\u202e"
    assert line["security_group_ids"] == ["sg-a"] and line["event_id"] == "e-1"


def test_a_poll_ends_between_regions_when_the_daemon_stops(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    emulator = make_emulator()
    clock = Clock(T0)
    state = State(tmp_path / "s.sqlite")
    live = settings_for(emulator, regions=[R, "cn-shanghai"])
    poller = Poller(lambda: live, state, Sink(), clock)
    asked: list[bool] = []

    def stopping() -> bool:
        asked.append(True)
        return len(asked) > 1  # the signal arrives while the first region is read

    poller.poll(stopping)
    assert emulator.calls["LookupEvents"] == 1
    assert state.trail_cursor("default", R) is not None and state.trail_cursor("default", "cn-shanghai") is None
