"""The Alertmanager channel against a real Alertmanager (Debian's prometheus-alertmanager)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sgwatch.alerting import AlertmanagerChannel, Notifier, send_test
from sgwatch.alerting.channels import parse_channel
from sgwatch.alerting.message import iso
from sgwatch.errors import SgwatchError
from tests.alertfixtures import Alertmanager, alertmanager_fixture, finding, free_port, memory_db  # noqa: F401

HOSTILE = "<!channel> @all *urgent* [click](http://evil.example) `rm -rf` \u202eevil\x07"


class WallClock:
    """Real time (Alertmanager judges endsAt by its own clock) plus a shift the test controls."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


def channel(url: str, **kw: Any) -> AlertmanagerChannel:
    ch = parse_channel({"type": "alertmanager", "name": "am", "url": url, "resolve_timeout": "5m", **kw})
    assert isinstance(ch, AlertmanagerChannel)
    return ch


def by_finding(am: Alertmanager, fid: str) -> list[dict[str, Any]]:
    return [a for a in am.alerts() if a["labels"].get("finding_id") == fid]


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_alert_lifecycle_in_alertmanager(alertmanager: Alertmanager) -> None:
    clock = WallClock()
    n = Notifier([channel(alertmanager.url)], memory_db(), clock)
    first_seen = iso(clock() - timedelta(minutes=3))
    f1 = finding("am-f1", "critical", description=HOSTILE, first_seen=first_seen)
    # Same group, kind and check as f1: only the finding id keeps the two alerts apart.
    f2 = finding("am-f2", "critical", first_seen=first_seen)
    n.process([f1, f2])
    assert n.deliver_pending().get("am", "sent") == 1

    alerts = wait_for(lambda: by_finding(alertmanager, "am-f1"))
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["labels"] == {
        "alertname": "SgwatchDrift",
        "severity": "critical",
        "account": "prod",
        "region": "cn-hangzhou",
        "security_group_id": "sg-web",
        "kind": "rule_added",
        "check": "SG001",
        "finding_id": "am-f1",
    }
    assert alert["status"]["state"] == "active"
    assert alert["startsAt"].startswith(first_seen[:-1])
    annotations = alert["annotations"]
    assert annotations["first_seen"] == first_seen
    assert "accept tcp 22/22 from 0.0.0.0/0" in annotations["description"]
    assert "tcp 22 from any ipv4 internet" in annotations["description"]
    assert "<!channel>" not in annotations["description"] and "\u202e" not in annotations["description"]
    assert "@all" not in annotations["description"]
    assert "summary" in annotations
    assert by_finding(alertmanager, "am-f2"), "two findings with the same labels must stay two alerts"

    # Re-posted before Alertmanager's resolve_timeout can expire it.
    updated = alert["updatedAt"]
    clock.shift = timedelta(minutes=2, seconds=31)
    assert n.deliver_pending().get("am", "sent") == 1
    clock.shift = timedelta(0)
    assert wait_for(lambda: by_finding(alertmanager, "am-f1")[0]["updatedAt"] != updated)

    # Resolution: endsAt is set and the alert is no longer active.
    n.process([f2])
    assert n.deliver_pending().get("am", "sent") == 1

    def resolved() -> bool:
        left = by_finding(alertmanager, "am-f1")
        if not left:
            return True  # Alertmanager's API lists only unresolved alerts
        ends = datetime.fromisoformat(left[0]["endsAt"].replace("Z", "+00:00"))
        return left[0]["status"]["state"] != "active" or ends <= datetime.now(UTC)

    assert wait_for(resolved)
    assert by_finding(alertmanager, "am-f2")[0]["status"]["state"] == "active"


def test_severity_change_replaces_the_alert(alertmanager: Alertmanager) -> None:
    clock = WallClock()
    n = Notifier([channel(alertmanager.url)], memory_db(), clock)
    n.process([finding("am-sev", "high")])
    n.deliver_pending()
    assert wait_for(lambda: by_finding(alertmanager, "am-sev"))
    n.process([finding("am-sev", "critical")])
    n.deliver_pending()
    assert wait_for(lambda: [a["labels"]["severity"] for a in by_finding(alertmanager, "am-sev")] == ["critical"])


def test_send_test_posts_a_test_alert(alertmanager: Alertmanager) -> None:
    send_test(channel(alertmanager.url))
    alerts = wait_for(lambda: [a for a in alertmanager.alerts() if a["labels"]["alertname"] == "SgwatchTest"])
    assert alerts and alerts[0]["labels"]["severity"] == "info"


def test_send_test_reports_an_unreachable_alertmanager() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        SgwatchError, match=r"alert channel 'am' \(http://127\.0\.0\.1:\d+\): test notification failed: cannot reach"
    ):
        send_test(channel(url, timeout="2s"))
