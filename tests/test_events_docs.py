"""docs/events.md says what the code does: the EventBridge rule's calls, the example event."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sgwatch.events.cloudevents import parse_body
from sgwatch.events.model import EVENT_TOUCHES, ChangeEvent
from sgwatch.events.record import parse_record

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def json_blocks() -> list[Any]:
    text = DOC.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"^ *```json\n(.*?)^ *```", text, re.S | re.M)]


def test_the_documented_rule_matches_every_call_sgwatch_reads_and_no_other() -> None:
    (pattern,) = [b for b in json_blocks() if isinstance(b.get("data", {}).get("eventName"), list)]
    assert pattern["source"] == ["acs.actiontrail"]
    assert sorted(pattern["data"]["eventName"]) == sorted(EVENT_TOUCHES)


def test_the_documented_event_is_read() -> None:
    (example,) = [b for b in json_blocks() if b.get("specversion") == "1.0"]
    (event,) = parse_body(json.dumps(example).encode())
    assert event.is_actiontrail
    parsed = parse_record(event.data, account_uid=event.account_uid)
    assert isinstance(parsed, ChangeEvent)
    assert parsed.targets.security_group_ids == ("sg-bp1fg655nh68xyz9i4bk",)
    assert parsed.principal.name == "alice" and parsed.source_ip == "203.0.113.7"
