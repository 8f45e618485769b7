"""deploy/ram-policy-actiontrail.json grants exactly the ActionTrail actions the pull path calls.

Granted apart from deploy/ram-policy.json (the scan's), because only ``events.actiontrail: true``
calls them: a deployment without the pull path grants nothing of ActionTrail. As in
test_ram_policy.py, the SDK methods called in the code (``.lookup_events_with_options(``) and the
request models built (``LookupEventsRequest``) map to RAM actions; the emulator is left out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.test_ram_policy import PACKAGE, POLICY, action_of, policy_actions, scanner_sources

TRAIL_POLICY = POLICY.with_name("ram-policy-actiontrail.json")
CLIENT = PACKAGE / "sources" / "actiontrail.py"
SDK_CALL = re.compile(r"\.(lookup_[a-z0-9_]+?)(?:_with_options)?(?:_async)?\s*\(")
REQUEST_MODEL = re.compile(r"\b(Lookup[A-Z][A-Za-z0-9]*?)Request\b")


def called_actions() -> set[str]:
    actions: set[str] = set()
    for path in scanner_sources():
        text = path.read_text(encoding="utf-8")
        actions |= {"actiontrail:" + action_of(m) for m in SDK_CALL.findall(text)}
        actions |= {"actiontrail:" + m for m in REQUEST_MODEL.findall(text)}
    return actions


def test_the_actiontrail_policy_matches_the_calls() -> None:
    assert "lookup_events_with_options(" in CLIENT.read_text(encoding="utf-8")
    called = called_actions()
    granted = policy_actions_of(TRAIL_POLICY)
    assert called == {"actiontrail:LookupEvents"}
    assert granted == called, "the ActionTrail policy grants exactly what the pull path calls"


def test_the_scan_policy_grants_nothing_of_actiontrail() -> None:
    assert not any(a.startswith("actiontrail:") for a in policy_actions())


def test_the_refusal_names_the_policy_file() -> None:
    assert TRAIL_POLICY.name in CLIENT.read_text(encoding="utf-8")


def policy_actions_of(path: Path) -> set[str]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["Version"] == "1"
    actions: set[str] = set()
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Resource"] == "*"
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions
