"""sgwatch.sources.actiontrail against the emulator, through the real SDK."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sgwatch.emulator import Emulator
from sgwatch.emulator.control import EmulatorControl
from sgwatch.emulator.server import AccessKey
from sgwatch.sources.actiontrail import RAM_ACTION, LookupFailed, TrailClient
from sgwatch.sources.live_settings import LiveSettings
from tests.livefixtures import AK_ID, AK_SECRET, EmulatorFactory, make_emulator, no_proxy, settings_for

__all__ = ["make_emulator", "no_proxy"]

R = "cn-hangzhou"
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def setup(emulator: Emulator) -> tuple[Clock, EmulatorControl, LiveSettings]:
    clock = Clock(START)
    emulator.actiontrail.clock = clock
    return clock, EmulatorControl(emulator.url), settings_for(emulator, regions=[R])


def window(clock: Clock) -> tuple[datetime, datetime]:
    return START - timedelta(minutes=5), clock.now


def test_reads_every_page_oldest_first_and_parses_the_changes(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator()
    clock, control, live = setup(emulator)
    alice = control.as_identity("alice", source_ip="203.0.113.9")
    for n in range(60):
        clock.now += timedelta(seconds=1)
        alice.add_group(R, f"sg-{n:02d}")
    alice.add_group("cn-shanghai", "sg-elsewhere")
    control.put_interface(R, "eni-1", {"SecurityGroupIds": {"SecurityGroupId": ["sg-00"]}})  # not watched
    got = TrailClient(live).lookup_events(live.accounts[0], R, *window(clock))
    assert got.pages == 2 and got.complete
    assert got.records == 62
    assert got.other_region == 1 and got.ignored == 1 and got.malformed == 0
    assert [e.targets.security_group_ids for e in got.events] == [(f"sg-{n:02d}",) for n in range(60)]
    first = got.events[0]
    assert (first.event_name, first.region, first.principal.name, first.source_ip) == (
        "CreateSecurityGroup",
        R,
        "alice",
        "203.0.113.9",
    )
    assert first.principal.access_key_id.startswith("LTAI") and "****" in first.principal.access_key_id
    assert len(got.seen) == 62
    # within 2 QPS: two calls, never throttled
    assert emulator.results[("LookupEvents", "OK")] == 2
    assert ("LookupEvents", "Throttling.User") not in emulator.results


def test_a_read_cut_short_says_so(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator()
    clock, control, live = setup(emulator)
    for n in range(51):
        control.add_group(R, f"sg-{n:02d}")
    got = TrailClient(live).lookup_events(live.accounts[0], R, *window(clock), max_pages=1)
    assert not got.complete and got.records == 50


def test_malformed_records_are_counted_not_fatal(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator()
    clock, control, live = setup(emulator)
    control.add_group(R, "sg-a")
    good = control.trail_events()[0]
    emulator.actiontrail.add_record("default", {**good, "eventId": "bad-1", "userIdentity": "root"})
    emulator.actiontrail.add_record(
        "default", {**good, "eventId": "bad-2", "requestParameters": {"SecurityGroupId": "../x"}}
    )
    got = TrailClient(live).lookup_events(live.accounts[0], R, *window(clock))
    assert got.malformed == 2
    assert [e.event_id for e in got.events] == [good["eventId"]]


def test_throttling_is_retried_with_backoff(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator()
    clock, control, live = setup(emulator)
    for n in range(120):
        control.add_group(R, f"sg-{n:03d}")
    emulator.faults.actiontrail_qps = 1  # tighter than the client's 2 QPS: some calls are refused
    got = TrailClient(live).lookup_events(live.accounts[0], R, *window(clock))
    assert got.complete and len(got.events) == 120
    assert emulator.results[("LookupEvents", "Throttling.User")] >= 1


def test_throttled_past_the_retries_fails_in_one_line(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(throttle_rate=1.0)
    clock, _, live = setup(emulator)
    live = live.model_copy(update={"max_throttle_retries": 2})
    with pytest.raises(LookupFailed) as caught:
        TrailClient(live).lookup_events(live.accounts[0], R, *window(clock))
    assert caught.value.code == "Throttling.User"
    assert "\n" not in str(caught.value) and "account 'default' region cn-hangzhou" in str(caught.value)
    assert emulator.calls["LookupEvents"] == 3


def test_permission_refusal_names_the_ram_action(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(keys={AK_ID: AccessKey(AK_SECRET, actions=frozenset({"DescribeRegions"}))})
    clock, _, live = setup(emulator)
    with pytest.raises(LookupFailed) as caught:
        TrailClient(live).lookup_events(live.accounts[0], R, *window(clock))
    line = str(caught.value)
    assert caught.value.code == "Forbidden.RAM"
    assert RAM_ACTION in line and "\n" not in line and AK_SECRET not in line
    assert emulator.calls["LookupEvents"] == 1, "a refusal is not retried"


def test_a_wrong_secret_is_one_line_without_the_secret(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(keys={AK_ID: "another-secret-entirely"})
    clock, _, live = setup(emulator)
    with pytest.raises(LookupFailed) as caught:
        TrailClient(live).lookup_events(live.accounts[0], R, *window(clock))
    assert caught.value.code == "SignatureDoesNotMatch"
    assert AK_SECRET not in str(caught.value) and "correct the secret" in str(caught.value)


def test_server_errors_are_retried_then_reported(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(error_5xx_rate=1.0)
    clock, _, live = setup(emulator)
    live = live.model_copy(update={"max_retries": 1})
    with pytest.raises(LookupFailed) as caught:
        TrailClient(live).lookup_events(live.accounts[0], R, *window(clock))
    assert caught.value.code == "InternalError"
    assert emulator.calls["LookupEvents"] == 2
