"""The intake: dedup by event id, the account an event belongs to, counts, the handler's one call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from sgwatch.events.intake import Accepted, Delivery, Intake
from sgwatch.events.record import Ignored
from sgwatch.metrics import EventCounts
from tests.eventfixtures import UID, record

OTHER_UID = "9999999999999999"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[Accepted]] = []

    def __call__(self, events: Sequence[Accepted], /) -> None:
        self.calls.append(list(events))

    @property
    def events(self) -> list[Accepted]:
        return [e for call in self.calls for e in call]


def intake(accounts: dict[str, str], **kwargs: object) -> tuple[Intake, Recorder]:
    handler = Recorder()
    return Intake(handler, lambda: accounts, **kwargs), handler  # type: ignore[arg-type]


def push(rec: dict[str, object], uid: str = UID) -> Delivery:
    return Delivery(rec, account_uid=uid)


def test_an_accepted_event_reaches_the_handler_with_its_account_and_arrival() -> None:
    when = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    door = Intake(handler := Recorder(), lambda: {"prod": UID}, monotonic=lambda: 42.0, wall=lambda: when)
    taken = door.take([push(record(event_id="e1", group="sg-a"))], via="push")
    assert taken.to_dict() == {"accepted": 1, "ignored": 0, "duplicate": 0, "rejected": 0}
    (got,) = handler.events
    assert got.account == "prod" and got.via == "push"
    assert got.event.event_id == "e1" and got.event.targets.security_group_ids == ("sg-a",)
    assert (got.arrived, got.arrived_at) == (42.0, when)


def test_the_events_of_one_take_reach_the_handler_in_one_call() -> None:
    door, handler = intake({"prod": UID})
    door.take([push(record()) for _ in range(5)], via="push")
    assert [len(c) for c in handler.calls] == [5]


def test_the_same_event_twice_is_taken_once_across_paths_and_within_a_body() -> None:
    door, handler = intake({"prod": UID})
    rec = record(event_id="same")
    first = door.take([push(rec), push(rec)], via="push")
    assert (first.accepted, first.duplicate) == (1, 1)
    # the pull path later reads it from LookupEvents, for the account it polled
    again = door.take([Delivery(rec, account="prod")], via="pull")
    assert (again.accepted, again.duplicate) == (0, 1)
    assert len(handler.events) == 1
    assert door.counts.received == {"accepted": 1, "duplicate": 2}


def test_the_memory_of_ids_is_bounded_oldest_first() -> None:
    door, handler = intake({"prod": UID}, remember=3)
    for i in range(5):
        door.take([push(record(event_id=f"e{i}"))], via="push")
    assert [door.seen(f"e{i}") for i in range(5)] == [False, False, True, True, True]
    door.take([push(record(event_id="e0"))], via="push")  # forgotten: taken again
    assert len(handler.events) == 6


def test_a_handler_that_fails_leaves_the_event_untaken_so_a_retry_is_taken() -> None:
    failing = True

    def handler(events: Sequence[Accepted], /) -> None:
        if failing:
            raise RuntimeError("queue full")

    door = Intake(handler, lambda: {"prod": UID})
    rec = record(event_id="retry-me")
    with pytest.raises(RuntimeError):
        door.take([push(rec)], via="push")
    assert not door.seen("retry-me")
    failing = False
    assert door.take([push(rec)], via="push").accepted == 1


def test_events_map_to_the_account_whose_uid_they_name() -> None:
    door, handler = intake({"prod": UID, "dev": OTHER_UID})
    door.take([push(record(), uid=OTHER_UID), push(record(), uid=UID)], via="push")
    assert [e.account for e in handler.events] == ["dev", "prod"]


def test_a_uid_from_the_record_when_the_delivery_names_none() -> None:
    door, handler = intake({"prod": UID, "dev": OTHER_UID})
    door.take([Delivery(record(account_uid=OTHER_UID))], via="push")
    assert [e.account for e in handler.events] == ["dev"]


def test_an_event_naming_an_unknown_uid_is_ignored_and_counted() -> None:
    door, handler = intake({"prod": UID, "dev": OTHER_UID})
    taken = door.take([push(record(), uid="5555555555555555")], via="push")
    assert (taken.accepted, taken.ignored) == (0, 1)
    assert handler.calls == []
    assert door.counts.received["ignored"] == 1


def test_with_one_account_and_its_uid_unknown_events_are_its_own() -> None:
    door, handler = intake({"default": ""})
    door.take([push(record(), uid="5555555555555555")], via="push")
    assert [e.account for e in handler.events] == ["default"]


def test_with_one_account_of_known_uid_another_uid_is_ignored() -> None:
    door, handler = intake({"default": UID})
    assert door.take([push(record(), uid=OTHER_UID)], via="push").ignored == 1
    assert handler.calls == []


def test_uids_learned_at_run_time_apply_at_the_next_take() -> None:
    learned: dict[str, str] = {"prod": "", "dev": ""}
    door = Intake(handler := Recorder(), lambda: learned)
    assert door.take([push(record(), uid=OTHER_UID)], via="push").ignored == 1
    learned["dev"] = OTHER_UID
    assert door.take([push(record(), uid=OTHER_UID)], via="push").accepted == 1
    assert [e.account for e in handler.events] == ["dev"]


def test_the_pull_path_names_the_account_it_read() -> None:
    door, handler = intake({"prod": UID, "dev": OTHER_UID})
    door.take([Delivery(record(), account="dev")], via="pull")
    assert door.take([Delivery(record(), account="gone")], via="pull").ignored == 1
    assert [(e.account, e.via) for e in handler.events] == [("dev", "pull")]


def test_reads_failures_other_calls_and_path_ignores_are_ignored() -> None:
    door, handler = intake({"prod": UID})
    taken = door.take(
        [
            push(record("DescribeSecurityGroups", eventRW="Read")),
            push(record("DeleteDisk")),
            push(record(errorCode="Forbidden.RAM")),
            # another product's call of the same name: its InstanceId is no ECS instance
            push(record("ModifyInstanceAttribute", serviceName="R-kvstore", parameters={"InstanceId": "r-bp1x"})),
            Ignored("ce-9", "the event's source is not acs.actiontrail"),
        ],
        via="push",
    )
    assert taken.to_dict() == {"accepted": 0, "ignored": 5, "duplicate": 0, "rejected": 0}
    assert handler.calls == []


def test_vpc_calls_are_read() -> None:
    door, handler = intake({"prod": UID})
    rec = record(
        "AssociateEipAddress", serviceName="Vpc", parameters={"InstanceId": "i-bp1abc", "AllocationId": "eip-1"}
    )
    assert door.take([push(rec)], via="push").accepted == 1
    assert handler.events[0].event.targets.instance_ids == ("i-bp1abc",)


def test_malformed_records_are_rejected_one_by_one_with_a_line_quoting_nothing() -> None:
    door, handler = intake({"prod": UID})
    bad = record(eventTime="<not a time>")
    taken = door.take([push(record()), push(bad), push({"eventName": 1})], via="push")
    assert (taken.accepted, taken.rejected) == (1, 2)
    assert taken.problem == "event 1: its ActionTrail record (data) is malformed"
    assert "<not a time>" not in taken.problem
    assert len(handler.events) == 1
    assert not taken.to_dict().keys() - {"accepted", "ignored", "duplicate", "rejected"}


def test_counts_go_to_the_given_counter() -> None:
    counts = EventCounts()
    door = Intake(Recorder(), lambda: {"prod": UID}, counts=counts)
    door.take([push(record()), push({"nope": True})], via="push")
    assert counts.received == {"accepted": 1, "rejected": 1}
