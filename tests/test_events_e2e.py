"""The whole push path through the real daemon: a change made in the emulator by alice, its event
POSTed as EventBridge delivers it, one alert at the webhook naming alice and where she called from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sgwatch.emulator import Emulator
from sgwatch.emulator.control import EmulatorControl
from sgwatch.emulator.sts import uid_of
from tests.alertfixtures import Receiver, receiver_fixture
from tests.eventfixtures import TOKEN, cloudevent, post
from tests.test_daemon_e2e import DEMO, Daemon, estate, free_port, get, wait_for

__all__ = ["estate", "receiver_fixture"]

MYSQL_WORLD = {
    "Direction": "ingress",
    "IpProtocol": "TCP",
    "PortRange": "3306/3306",
    "SourceCidrIp": "0.0.0.0/0",
    "Policy": "Accept",
    "Priority": "1",
}


def alerts_about(receiver: Receiver, ports: str) -> list[dict[str, Any]]:
    """The webhook's 'new' events whose finding opened ``ports``."""
    found = []
    for request in receiver.requests:
        for item in request.json().get("events", []):
            live = item["finding"].get("live") or {}
            if item["event"] == "new" and live.get("ports") == ports:
                found.append(item)
    return found


def test_a_pushed_event_is_one_alert_naming_who_and_from_where(
    tmp_path: Path, estate: Emulator, receiver: Receiver
) -> None:
    port, events_port = free_port(), free_port()
    config = tmp_path / "sgwatch.yaml"
    config.write_text(
        f"baseline: {DEMO / 'baseline'}\n"
        f"endpoint: {estate.url}\n"
        "regions: [cn-hangzhou]\n"
        f"listen: 127.0.0.1:{port}\n"
        f"state: {tmp_path / 'state.sqlite'}\n"
        "scan: {concurrency: 2, requests_per_second: 0}\n"
        f"events: {{listen: '127.0.0.1:{events_port}', token: {TOKEN}}}\n"
        f"notifications: [{{type: webhook, name: hook, url: '{receiver.url}/hook', min_severity: info}}]\n"
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    url = f"http://127.0.0.1:{events_port}/events"
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, what="/readyz")
        wait_for(lambda: bool(receiver.requests), what="the first scan's alerts")
        reads = estate.calls["DescribeSecurityGroupAttribute"]
        EmulatorControl(estate.url).as_identity("alice", source_ip="198.51.100.23").add_permission(
            "cn-hangzhou", "sg-web", MYSQL_WORLD
        )
        (record,) = [r for r in EmulatorControl(estate.url).trail_events() if r["userIdentity"]["userName"] == "alice"]
        event = cloudevent(record, account_uid=uid_of("default"))
        assert post(url, event)[0] == 202
        assert post(url, event)[2]["duplicate"] == 1  # EventBridge's retry: handled once
        wait_for(lambda: bool(alerts_about(receiver, "3306/3306")), what="the alert for the change")
        assert estate.calls["DescribeSecurityGroupAttribute"] - reads == 1  # one targeted read, no scan
    finally:
        assert daemon.stop()[0] == 0
    (alert,) = alerts_about(receiver, "3306/3306")
    finding = alert["finding"]
    assert finding["severity"] == "critical" and finding["security_group_id"] == "sg-web"
    who = finding["changed_by"]
    assert who["principal"]["name"] == "alice" and who["source_ip"] == "198.51.100.23"
    assert who["event_id"] == record["eventId"] and who["principal"]["access_key_id"].count("*") == 4
    assert TOKEN not in daemon.log.read_text()
    handled = [json.loads(line) for line in daemon.lines() if '"change events handled"' in line]
    assert [(h["reread"], h["failed"]) for h in handled] == [(1, 0)]
