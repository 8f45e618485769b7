"""The daemon attributes a scan's findings from the events in its state before recording and alerting."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sgwatch.daemon import Daemon, RunOptions
from tests.alertfixtures import Receiver, receiver_fixture  # noqa: F401
from tests.test_attribution import event
from tests.test_daemon_unit import DEMO, Cloud, FakeClock

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# The demo's sg-bastion gained tcp 22 from 0.0.0.0/0 (rule_added, critical).
SSH = {"SecurityGroupId": "sg-bastion", "IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}


@pytest.fixture
def daemon(tmp_path: Path, receiver: Receiver) -> Iterator[Daemon]:
    overrides = {
        "baseline": str(DEMO / "baseline"),
        "state": str(tmp_path / "state.sqlite"),
        "listen": "127.0.0.1:0",
        "notifications": [{"type": "webhook", "name": "hook", "url": receiver.url + "/in", "min_severity": "info"}],
    }
    d = Daemon(RunOptions(config_path=None, overrides=overrides), clock=FakeClock(START), scanner=Cloud().scan)
    yield d
    d.state.close()


def delivered(receiver: Receiver) -> dict[str, dict[str, object]]:
    return {
        e["finding"]["id"]: e["finding"] for r in receiver.requests for e in r.json()["events"] if e["event"] == "new"
    }


def test_an_event_kept_in_the_state_names_who_in_the_finding_and_its_alert(daemon: Daemon, receiver: Receiver) -> None:
    # The event reached the state minutes before the full scan that finds its change.
    alice = event("AuthorizeSecurityGroup", SSH, region="cn-hangzhou", at=START - timedelta(minutes=3))
    assert daemon.state.record_events("default", [alice], START - timedelta(minutes=2)) == 1
    daemon.scan()
    findings = delivered(receiver)
    named = {f["security_group_id"]: f["changed_by"] for f in findings.values() if f["changed_by"]}
    assert list(named) == ["sg-bastion"]
    assert named["sg-bastion"]["principal"]["name"] == "alice"  # type: ignore[index]
    assert named["sg-bastion"]["source_ip"] == "203.0.113.7"  # type: ignore[index]
    lives = daemon.state.open_findings()
    assert {fid for fid, life in lives.items() if life.data["changed_by"]} == {
        fid for fid, f in findings.items() if f["changed_by"]
    }
    # The same finding id as a scan that names nobody: one alert, not two.
    daemon.scan()
    assert len(delivered(receiver)) == len(findings)
