"""EventBridge POST bodies: CloudEvents 1.0 (structured, batched, binary) around ActionTrail records."""

from __future__ import annotations

import json

import pytest

from sgwatch.events.cloudevents import MAX_EVENTS, CloudEventError, parse_body
from tests.eventfixtures import UID, cloudevent, record


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_one_event_as_eventbridge_delivers_it() -> None:
    rec = record(event_id="ev-1")
    (event,) = parse_body(body(cloudevent(rec, event_id="ce-1")))
    assert event.id == "ce-1"
    assert event.is_actiontrail and event.ignored() is None
    assert event.account_uid == UID and event.region == "cn-hangzhou"
    assert event.data == rec


@pytest.mark.parametrize(
    "event_type",
    [
        "actiontrail:ActionTrail:ApiCall",
        "actiontrail:ActionTrail:ConsoleOperation",
        "actiontrail:ActionTrail:AliyunServiceEvent",
    ],
)
def test_every_actiontrail_write_type_is_read(event_type: str) -> None:
    (event,) = parse_body(body(cloudevent(record(), event_type=event_type)))
    assert event.is_actiontrail


def test_data_as_a_json_string_is_read() -> None:
    rec = record()
    (event,) = parse_body(body(cloudevent(json.dumps(rec))))
    assert event.data == rec


def test_an_array_of_events() -> None:
    events = parse_body(body([cloudevent(record()), cloudevent(record(), source="acs.ecs")]))
    assert [e.is_actiontrail for e in events] == [True, False]


def test_other_sources_and_types_are_events_to_ignore_not_errors() -> None:
    (other,) = parse_body(body(cloudevent({"anything": 1}, source="acs.oss", event_type="oss:ObjectCreated:PutObject")))
    assert not other.is_actiontrail
    ignored = other.ignored()
    assert ignored is not None and ignored.event_id == other.id
    assert other.data is None  # another service's data is not kept
    (odd,) = parse_body(body(cloudevent(record(), event_type="actiontrail:ActionTrail:Something")))
    assert odd.ignored() is not None


def test_binary_mode() -> None:
    rec = record()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "b-1",
        "ce-source": "acs.actiontrail",
        "ce-type": "actiontrail:ActionTrail:ApiCall",
        "ce-aliyunaccountid": UID,
    }
    (event,) = parse_body(body(rec), headers)
    assert event.id == "b-1" and event.account_uid == UID and event.data == rec


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{oops", "not valid JSON"),
        (b"[]", "empty JSON array"),
        (b'"text"', "not a JSON object"),
        (b"[1]", "event 0: not a JSON object"),
        (b'{"a": "\xc3\x28"}', "not UTF-8"),
        (b"[" * 200 + b"]" * 200, "nested deeper"),
    ],
)
def test_bodies_that_are_not_cloudevents_are_one_line(doc: bytes, says: str) -> None:
    with pytest.raises(CloudEventError) as caught:
        parse_body(doc)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"specversion": None}, "no 'specversion'"),
        ({"specversion": "0.3"}, "specversion is not 1.0"),
        ({"id": None}, "no 'id'"),
        ({"id": ""}, "'id' attribute is empty"),
        ({"source": 7}, "'source' attribute is not a string"),
        ({"type": "x" * 600}, "longer than 512"),
        ({"data": None}, "without 'data'"),
        ({"data": [1, 2]}, "'data' is not an object"),
        ({"data": "not json <script>"}, "'data' is a string that is not a JSON object"),
        ({"data_base64": "e30="}, "data_base64"),
        ({"aliyunaccountid": 1234}, "'aliyunaccountid' attribute is not a string"),
    ],
)
def test_malformed_events_say_what_and_quote_nothing(change: dict[str, object], says: str) -> None:
    event = cloudevent(record())
    for key, value in change.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    with pytest.raises(CloudEventError) as caught:
        parse_body(body(event))
    message = str(caught.value)
    assert says in message
    assert "<script>" not in message and "xxxxxxxx" not in message


def test_an_array_names_the_bad_event() -> None:
    bad = cloudevent(record())
    del bad["id"]
    with pytest.raises(CloudEventError, match=r"^event 1: no 'id'"):
        parse_body(body([cloudevent(record()), bad]))


def test_at_most_max_events_per_body() -> None:
    events = [cloudevent(record()) for _ in range(MAX_EVENTS)]
    assert len(parse_body(body(events))) == MAX_EVENTS
    with pytest.raises(CloudEventError, match=f"more than {MAX_EVENTS} events"):
        parse_body(body([*events, cloudevent(record())]))


def test_a_huge_number_is_refused_not_converted() -> None:
    event = cloudevent(record())
    text = json.dumps(event).replace('"eventVersion": 1', '"eventVersion": ' + "9" * 5000)
    with pytest.raises(CloudEventError, match="longer than any valid value"):
        parse_body(text.encode())
