"""deploy/ram-policy.json grants exactly the ECS actions the scanner calls.

The SDK methods called in the code (``client.describe_security_group_attribute_with_options(...)``,
``..._async``) and the request models it builds (``DescribeSecurityGroupAttributeRequest``) map to
RAM actions (``ecs:DescribeSecurityGroupAttribute``), and so do the actions named to the
plain-JSON path (``ecs_calls.call(client, "DescribeSecurityGroupAttribute", ...)``). The emulator
is left out: it answers those APIs, it does not call them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "deploy" / "ram-policy.json"
PACKAGE = ROOT / "sgwatch"
LIVE = PACKAGE / "sources" / "live.py"
EXPECTED = {
    "ecs:DescribeRegions",
    "ecs:DescribeSecurityGroups",
    "ecs:DescribeSecurityGroupAttribute",
    "ecs:DescribePrefixListAttributes",
    "ecs:DescribePortRangeListEntries",
    "ecs:DescribeNetworkInterfaces",
    "ecs:DescribeInstances",
}

# `.describe_x(`, `.describe_x_with_options(`, `.describe_x_async(`, `.describe_x_with_options_async(`;
# a leading dot, so private helpers such as `self._describe_regions` do not count.
SDK_CALL = re.compile(r"\.(describe_[a-z0-9_]+?)(?:_with_options)?(?:_async)?\s*\(")
REQUEST_MODEL = re.compile(r"\b(Describe[A-Z][A-Za-z0-9]*)Request\b")
# `ecs_calls.call(client, "DescribeX", ...)` and `functools.partial(ecs_calls.call, client, "DescribeX", ...)`
PLAIN_CALL = re.compile(r"\becs_calls\.call\b[(,]\s*client,\s*\"(Describe[A-Za-z0-9]+)\"")


def action_of(method: str) -> str:
    """describe_security_group_attribute -> DescribeSecurityGroupAttribute."""
    return "".join(part.capitalize() for part in method.split("_"))


def scanner_sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "emulator" not in p.relative_to(PACKAGE).parts)


def called_actions() -> set[str]:
    actions: set[str] = set()
    for path in scanner_sources():
        text = path.read_text(encoding="utf-8")
        actions |= {"ecs:" + action_of(m) for m in SDK_CALL.findall(text)}
        actions |= {"ecs:" + m for m in REQUEST_MODEL.findall(text)}
        actions |= {"ecs:" + m for m in PLAIN_CALL.findall(text)}
    return actions


def policy_actions() -> set[str]:
    doc = json.loads(POLICY.read_text(encoding="utf-8"))
    assert doc["Version"] == "1"
    actions: set[str] = set()
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow", "the policy only allows"
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def test_action_names() -> None:
    assert action_of("describe_security_group_attribute") == "DescribeSecurityGroupAttribute"
    assert action_of("describe_regions") == "DescribeRegions"
    sample = (
        "client.describe_security_groups_with_options(req, rt)\n"
        "await client.describe_security_group_attribute_with_options_async(req, rt)\n"
        "client.describe_regions(req)\n"
        "self._submit(self._describe_regions, account)\n"
    )
    assert [action_of(m) for m in SDK_CALL.findall(sample)] == [
        "DescribeSecurityGroups",
        "DescribeSecurityGroupAttribute",
        "DescribeRegions",
    ]
    plain = (
        'ecs_calls.call(client, "DescribeInstances", query, runtime)\n'
        'functools.partial(ecs_calls.call, client, "DescribeRegions", {"AcceptLanguage": "en-US"})\n'
    )
    assert PLAIN_CALL.findall(plain) == ["DescribeInstances", "DescribeRegions"]


def test_policy_is_read_only_and_minimal() -> None:
    actions = policy_actions()
    assert actions == EXPECTED
    assert all("*" not in a for a in actions), "no wildcard actions"
    assert all(a.startswith("ecs:Describe") for a in actions)


def test_policy_matches_the_scanner_calls() -> None:
    if not LIVE.exists():
        pytest.skip("sgwatch/sources/live.py does not exist yet: nothing to compare the policy with")
    called = called_actions()
    assert called, f"found no ECS SDK call in {LIVE}"
    granted = policy_actions()
    assert called - granted == set(), "the code calls actions the RAM policy does not grant"
    assert granted - called == set(), "the RAM policy grants actions the code never calls"
