"""`sgwatch run` with ``events.actiontrail: true``: a subprocess polls the emulator's LookupEvents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sgwatch.emulator import Emulator
from sgwatch.emulator.control import EmulatorControl
from tests.test_daemon_e2e import AK_SECRET, DEMO, Daemon, estate, free_port, get, wait_for

__all__ = ["estate"]

RULE = {
    "Direction": "ingress",
    "IpProtocol": "TCP",
    "PortRange": "3306/3306",
    "SourceCidrIp": "0.0.0.0/0",
    "Policy": "Accept",
    "Priority": "1",
}


def write_config(tmp_path: Path, emulator: Emulator, port: int) -> Path:
    cfg = tmp_path / "sgwatch.yaml"
    cfg.write_text(
        f"baseline: {DEMO / 'baseline'}\n"
        f"endpoint: {emulator.url}\n"
        "regions: [cn-hangzhou]\n"
        "interval: 600\n"
        f"listen: 127.0.0.1:{port}\n"
        f"state: {tmp_path / 'state.sqlite'}\n"
        "events: {actiontrail: true}\n"
    )
    return cfg


def taken(daemon: Daemon) -> list[dict[str, Any]]:
    return [json.loads(line) for line in daemon.lines() if '"change event taken"' in line]


def test_the_daemon_takes_the_events_actiontrail_records_once_across_restarts(tmp_path: Path, estate: Emulator) -> None:
    port = free_port()
    config = write_config(tmp_path, estate, port)
    control = EmulatorControl(estate.url)
    control.as_identity("alice", source_ip="203.0.113.9").add_permission("cn-hangzhou", "sg-web", RULE)
    first_id = control.trail_events()[-1]["eventId"]

    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, what="/readyz")
        wait_for(lambda: bool(taken(daemon)), what="the event taken by the first poll")
    finally:
        assert daemon.stop()[0] == 0
    (event,) = taken(daemon)
    assert event["event_id"] == first_id
    assert (event["event_name"], event["security_group_ids"]) == ("AuthorizeSecurityGroup", ["sg-web"])
    assert (event["changed_by"], event["source_ip"], event["account"]) == ("alice", "203.0.113.9", "default")
    assert estate.results[("LookupEvents", "OK")] >= 1
    assert AK_SECRET not in daemon.log.read_text()

    # Restarted, it takes the change made meanwhile, and not the one it already took.
    control.as_identity("bob").remove_group("cn-hangzhou", "sg-web")
    daemon2 = Daemon(config, tmp_path / "daemon2.log")
    try:
        wait_for(lambda: bool(taken(daemon2)), what="the second event after the restart")
    finally:
        assert daemon2.stop()[0] == 0
    assert [(e["event_name"], e["changed_by"]) for e in taken(daemon2)] == [("DeleteSecurityGroup", "bob")]
