"""`sgwatch report --actiontrail` end to end: the live report names who made the change, read
from the emulator's LookupEvents through the real ActionTrail SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sgwatch.emulator import Emulator
from sgwatch.emulator.control import EmulatorControl
from tests.test_live_cli import AK_ID, AK_SECRET, DEMO, sgwatch

RULE = {
    "Direction": "ingress",
    "IpProtocol": "TCP",
    "PortRange": "3306/3306",
    "SourceCidrIp": "0.0.0.0/0",
    "Policy": "Accept",
    "Priority": "1",
}


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(snapshot=DEMO / "snapshot", keys={AK_ID: AK_SECRET})
    emu.start()
    yield emu
    emu.stop()


def test_the_live_report_says_who_opened_the_database(emulator: Emulator) -> None:
    control = EmulatorControl(emulator.url)
    control.as_identity("alice", source_ip="203.0.113.9", user_agent="\x1b[2Jterraform").add_permission(
        "cn-hangzhou", "sg-web", RULE
    )
    args = ("report", "--baseline", DEMO / "baseline", "--endpoint", emulator.url, "--region", "cn-hangzhou")
    result = sgwatch(*args, "--format", "json", "--actiontrail")
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["findings"]
    (opened,) = [
        f for f in findings if f["security_group_id"] == "sg-web" and (f["live"] or {}).get("ports") == "3306/3306"
    ]
    who = opened["changed_by"]
    assert who["principal"]["name"] == "alice" and who["source_ip"] == "203.0.113.9"
    assert who["event_name"] == "AuthorizeSecurityGroup"
    # the demo's own drift was made by nobody ActionTrail knows: null, never a guess
    assert any(f["changed_by"] is None for f in findings if f is not opened)
    assert emulator.results[("LookupEvents", "OK")] >= 1
    # without the flag, no ActionTrail call and the same finding ids
    plain = sgwatch(*args, "--format", "json")
    calls = emulator.calls["LookupEvents"]
    assert {f["id"] for f in json.loads(plain.stdout)["findings"]} == {f["id"] for f in findings}
    assert emulator.calls["LookupEvents"] == calls
    table = sgwatch(*args, "--actiontrail")
    assert "alice" in table.stdout and "\x1b[2J" not in table.stdout
