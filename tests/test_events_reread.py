"""Change events to targeted re-reads, in process: the daemon's real scanner and re-reader against
the ECS emulator, its real state file and outbox, a local webhook receiver.

Each test makes a change through the emulator's control API, hands the daemon the event
ActionTrail would record for it, and checks what was read (the emulator counts every call),
what was recorded and what was alerted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sgwatch.core.model import Snapshot
from sgwatch.daemon import Daemon, RunOptions, scan_interval
from sgwatch.emulator import Emulator
from sgwatch.emulator.control import EmulatorControl
from sgwatch.emulator.server import AccessKey
from sgwatch.events.model import ChangeEvent
from sgwatch.events.record import parse_record
from tests.alertfixtures import Receiver, receiver_fixture  # noqa: F401
from tests.livefixtures import AK_ID, AK_SECRET, no_proxy  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
REGION = "cn-hangzhou"
GROUP = "sg-web"
WORLD_MYSQL = {
    "IpProtocol": "TCP",
    "PortRange": "3306/3306",
    "SourceCidrIp": "0.0.0.0/0",
    "Policy": "Accept",
    "Priority": "1",
    "Direction": "ingress",
    "Description": "opened by hand",
}


def ctl(emulator: Emulator) -> EmulatorControl:
    return EmulatorControl(emulator.url)


@pytest.fixture
def estate() -> Iterator[Emulator]:
    emulator = Emulator(snapshot=DEMO / "snapshot", keys={AK_ID: AK_SECRET})
    emulator.start()
    yield emulator
    emulator.stop()


def make_daemon(tmp_path: Path, emulator: Emulator, receiver: Receiver, **extra: Any) -> Daemon:
    overrides: dict[str, Any] = {
        "baseline": str(DEMO / "baseline"),
        "state": str(tmp_path / "state.sqlite"),
        "listen": "127.0.0.1:0",
        "endpoint": emulator.url,
        "regions": ["cn-hangzhou", "cn-shanghai"],
        "accounts": [{"name": "default", "credentials": {"type": "access_key", "id": AK_ID, "secret": AK_SECRET}}],
        "scan": {"concurrency": 4, "requests_per_second": 0, "backoff_base_ms": 10, "backoff_cap_ms": 50},
        "notifications": [
            {"type": "webhook", "name": "hook", "url": receiver.url + "/hook", "min_severity": "high"},
        ],
        **extra,
    }
    return Daemon(RunOptions(config_path=None, overrides=overrides))


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.events.stop()
        daemon.state.close()


def event(name: str, region: str = REGION, **params: Any) -> ChangeEvent:
    """The ActionTrail record of one successful call, parsed as the intake parses it."""
    record = {
        "eventId": f"ev-{time.monotonic_ns()}",
        "eventName": name,
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventType": "ApiCall",
        "eventRW": "Write",
        "acsRegion": region,
        "serviceName": "Ecs",
        "sourceIpAddress": "203.0.113.7",
        "userAgent": "aliyun-cli",
        "userIdentity": {"type": "ram-user", "userName": "alice", "accountId": "1234567890", "accessKeyId": AK_ID},
        "requestParameters": {"RegionId": region, **params},
    }
    parsed = parse_record(record)
    assert isinstance(parsed, ChangeEvent), parsed
    return parsed


def quiet_group(daemon: Daemon) -> str:
    """A group of the baseline in REGION with members the internet reaches (so a new world-open
    rule on it is a critical finding, which alerts)."""
    assert daemon._last is not None
    assert ("default", REGION, GROUP) in daemon._last[0].groups
    return GROUP


def alerted(receiver: Receiver) -> list[tuple[str, str, str]]:
    """(event, finding id, group) of every delivered webhook event, in order."""
    return [
        (e["event"], e["finding"]["id"], e["finding"].get("security_group_id", ""))
        for req in receiver.requests
        for e in req.json()["events"]
    ]


def submit(daemon: Daemon, *events: ChangeEvent) -> None:
    daemon.events.submit("default", list(events), time.monotonic())
    assert daemon.events.wait_idle(20), "the events worker did not finish"


def reread_counts(daemon: Daemon) -> dict[str, int]:
    return {result: n for result, n in daemon.telemetry.reread.rereads.items() if n}


# -- one change, one re-read, one alert ---------------------------------------------------------------
def test_an_event_rereads_its_group_alerts_once_and_a_full_scan_adds_no_second_alert(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    gid = quiet_group(daemon)
    before = len(alerted(receiver))
    ctl(estate).add_permission(REGION, gid, WORLD_MYSQL)
    estate.reset_stats()

    submit(daemon, event("AuthorizeSecurityGroup", SecurityGroupId=gid, PortRange="3306/3306"))

    calls = estate.stats()["calls"]
    assert calls == {"DescribeSecurityGroupAttribute": 1}, calls  # a known group: one call, both directions
    new = [a for a in alerted(receiver)[before:] if a[2] == gid]
    assert len(new) == 1, alerted(receiver)[before:]
    finding_id = new[0][1]
    assert finding_id in daemon.state.open_findings()
    assert reread_counts(daemon)["ok"] == 1
    assert daemon.telemetry.reread.change_to_alert._sum.get() >= 0  # observed once, below
    assert sum(b.get() for b in daemon.telemetry.reread.arrival_to_alert._buckets) == 1

    # The full scan finds the same drift: the same finding id, still open, no second alert.
    after_event = len(alerted(receiver))
    daemon.scan()
    assert finding_id in daemon.state.open_findings()
    assert [a for a in alerted(receiver)[after_event:] if a[1] == finding_id] == []
    assert daemon._last is not None
    assert any(f.id == finding_id for f in daemon._last[1].findings)


def test_ten_events_for_one_group_are_one_reread(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    gid = quiet_group(daemon)
    ctl(estate).add_permission(REGION, gid, WORLD_MYSQL)
    estate.reset_stats()
    arrived = time.monotonic()
    daemon.events.submit("default", [event("AuthorizeSecurityGroup", SecurityGroupId=gid) for _ in range(10)], arrived)
    assert daemon.events.wait_idle(20)
    assert estate.stats()["calls"] == {"DescribeSecurityGroupAttribute": 1}
    assert reread_counts(daemon) == {"ok": 1}


# -- a failed re-read removes nothing ----------------------------------------------------------------
def test_a_failed_reread_leaves_the_group_as_it_was(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    gid = quiet_group(daemon)
    assert daemon._last is not None
    before_group = daemon._last[0].groups[("default", REGION, gid)]
    open_before = set(daemon.state.open_findings())
    sent = len(alerted(receiver))
    ctl(estate).set_faults(failing_regions=[REGION])  # every call answers 503, past every retry

    submit(daemon, event("RevokeSecurityGroup", SecurityGroupId=gid))

    assert daemon._last[0].groups[("default", REGION, gid)] == before_group
    assert set(daemon.state.open_findings()) == open_before
    assert not any(f.kind == "group_removed" and f.security_group_id == gid for f in daemon._last[1].findings)
    assert alerted(receiver)[sent:] == []
    assert reread_counts(daemon) == {"failed": 1}


def test_not_found_without_a_delete_event_is_confirmed_before_the_group_is_called_removed(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    gid = quiet_group(daemon)
    # Its rules answer NotFound, yet the listing still names it (an eventually consistent read):
    # not removed.
    ctl(estate).set_faults(vanish_groups=[gid])
    estate.reset_stats()
    submit(daemon, event("RevokeSecurityGroup", SecurityGroupId=gid))
    assert estate.stats()["calls"] == {"DescribeSecurityGroupAttribute": 1, "DescribeSecurityGroups": 1}
    assert daemon._last is not None
    assert ("default", REGION, gid) in daemon._last[0].groups
    assert reread_counts(daemon) == {"failed": 1}

    # Gone for real: the listing no longer names it either, and the removal is a finding.
    ctl(estate).set_faults(vanish_groups=[])
    ctl(estate).remove_group(REGION, gid)
    submit(daemon, event("RevokeSecurityGroup", SecurityGroupId=gid))
    assert ("default", REGION, gid) not in daemon._last[0].groups
    assert any(f.kind == "group_removed" and f.security_group_id == gid for f in daemon._last[1].findings)
    assert reread_counts(daemon)["gone"] == 1


def test_a_delete_event_needs_no_confirmation(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    gid = quiet_group(daemon)
    ctl(estate).remove_group(REGION, gid)
    estate.reset_stats()
    submit(daemon, event("DeleteSecurityGroup", SecurityGroupId=gid))
    assert estate.stats()["calls"] == {"DescribeSecurityGroupAttribute": 1}
    assert daemon._last is not None
    assert any(f.kind == "group_removed" and f.security_group_id == gid for f in daemon._last[1].findings)


# -- a new group ---------------------------------------------------------------------------------------
def test_a_created_group_is_read_with_its_listing_entry(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    gid = "sg-made-by-hand"
    ctl(estate).add_group(REGION, gid, {"SecurityGroupType": "enterprise", "VpcId": "vpc-1"})
    ctl(estate).add_permission(REGION, gid, WORLD_MYSQL)
    estate.reset_stats()
    sent = len(alerted(receiver))
    submit(daemon, event("CreateSecurityGroup", SecurityGroupId=gid))
    assert estate.stats()["calls"] == {"DescribeSecurityGroupAttribute": 1, "DescribeSecurityGroups": 1}
    assert daemon._last is not None
    assert daemon._last[0].groups[("default", REGION, gid)].type == "enterprise"
    added = [f for f in daemon._last[1].findings if f.security_group_id == gid]
    assert [f.kind for f in added] == ["group_added"]
    assert added[0].id in daemon.state.open_findings()
    assert alerted(receiver)[sent:] == []  # no member: latent, below the channel's high


# -- bounds ----------------------------------------------------------------------------------------------
def test_a_flood_of_unknown_groups_is_bounded_and_runs_no_scan(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    daemon.events.max_unknown = 5
    scans = dict(daemon.telemetry.scans)
    estate.reset_stats()
    flood = [event("AuthorizeSecurityGroup", SecurityGroupId=f"sg-madeup{n:04d}") for n in range(50)]
    submit(daemon, *flood)
    calls = estate.stats()["calls"]
    # five unknown groups read (each NotFound, confirmed in one listing call), the rest dropped
    assert calls == {"DescribeSecurityGroupAttribute": 5, "DescribeSecurityGroups": 1}, calls
    assert reread_counts(daemon)["dropped"] == 45
    assert dict(daemon.telemetry.scans) == scans


# -- membership ----------------------------------------------------------------------------------------
def test_a_join_event_rereads_the_interface_not_the_region(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    gid = quiet_group(daemon)
    eni = "eni-joined0001"
    ctl(estate).put_interface(
        REGION,
        eni,
        {
            "Type": "Secondary",
            "SecurityGroupIds": {"SecurityGroupId": []},
            "PrivateIpAddress": "10.0.0.9",
            "AssociatedPublicIp": {"PublicIpAddress": "198.51.100.9"},
        },
    )
    ctl(estate).join_group(REGION, eni, gid)
    estate.reset_stats()
    submit(daemon, event("JoinSecurityGroup", SecurityGroupId=gid, NetworkInterfaceId=eni))
    calls = estate.stats()["calls"]
    assert calls == {"DescribeNetworkInterfaces": 1}, calls
    assert daemon._last is not None
    membership = daemon._last[0].membership[("default", REGION)]
    assert any(i.id == eni and gid in i.security_group_ids for i in membership.interfaces)
    assert reread_counts(daemon) == {"ok": 1}


# -- scheduling --------------------------------------------------------------------------------------
def test_full_scans_run_on_their_own_interval_while_events_are_on(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    off = make_daemon(tmp_path / "off", estate, receiver, interval=300)
    on = make_daemon(tmp_path / "on", estate, receiver, interval=300, events={"actiontrail": True})
    daemons.extend([off, on])
    assert scan_interval(off.loaded.config) == 300
    assert scan_interval(on.loaded.config) == 3600
    assert on.telemetry.interval == 3600


def test_events_before_any_snapshot_wait_for_the_scan(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    estate.reset_stats()
    submit(daemon, event("AuthorizeSecurityGroup", SecurityGroupId="sg-whatever01"))
    assert estate.stats()["calls"] == {}  # nothing to judge against yet: kept for after the scan
    daemon.scan()
    assert daemon.events.wait_idle(20)
    assert estate.stats()["calls"].get("DescribeSecurityGroupAttribute", 0) > 1  # the scan, then the re-read
    assert sum(reread_counts(daemon).values()) == 1


def test_learned_uids_map_events_to_accounts(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    overrides = {
        "baseline": str(DEMO / "baseline"),
        "state": str(tmp_path / "s.sqlite"),
        "listen": "127.0.0.1:0",
        "events": {"actiontrail": True},  # UIDs are learned only with events on: nothing else needs them
    }
    daemon = Daemon(RunOptions(config_path=None, overrides=overrides), uid_learner=lambda account: "1234567890")
    daemons.append(daemon)
    assert daemon.account_uids() == {}
    daemon.learn_uids()
    assert daemon.account_uids() == {"1234567890": "default"}


def test_reread_result_snapshot_is_a_new_one(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    """The picture a scrape or a report may hold is never changed under it."""
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    assert daemon._last is not None
    old: Snapshot = daemon._last[0]
    gid = quiet_group(daemon)
    rules = old.groups[("default", REGION, gid)].rules
    ctl(estate).add_permission(REGION, gid, WORLD_MYSQL)
    submit(daemon, event("AuthorizeSecurityGroup", SecurityGroupId=gid))
    assert old.groups[("default", REGION, gid)].rules == rules
    assert daemon._last[0].groups[("default", REGION, gid)].rules != rules


# -- what a re-read leaves alone -----------------------------------------------------------------------
def test_a_reread_resolves_no_finding_of_a_group_it_did_not_read(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    open_before = daemon.state.open_findings()
    others = {fid for fid, life in open_before.items() if life.data["security_group_id"] != GROUP}
    assert others
    ctl(estate).add_permission(REGION, GROUP, WORLD_MYSQL)
    submit(daemon, event("AuthorizeSecurityGroup", SecurityGroupId=GROUP))
    assert others <= set(daemon.state.open_findings())
    assert daemon.state.resolved_since(datetime.fromtimestamp(0, UTC)) == []
    assert [a for a in alerted(receiver) if a[0] == "resolved"] == []


def test_an_event_during_a_full_scan_is_not_undone_by_the_scan(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    """The scan read the group before the change; the event's re-read came after: the scan's
    stale answer must neither resolve the new finding nor alert it twice."""
    from sgwatch.daemon import live_snapshot

    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()

    def stale_scan(cfg: Any) -> Any:
        scanned = live_snapshot(cfg)  # reads the group as it was
        ctl(estate).add_permission(REGION, GROUP, WORLD_MYSQL)
        submit(daemon, event("AuthorizeSecurityGroup", SecurityGroupId=GROUP))
        return scanned

    daemon.scanner = stale_scan
    sent = len(alerted(receiver))
    daemon.scan()
    assert daemon._last is not None
    opened = [f for f in daemon._last[1].findings if f.security_group_id == GROUP and "3306" in f.message]
    assert len(opened) == 1
    assert opened[0].id in daemon.state.open_findings()
    assert daemon.state.resolved_since(datetime.fromtimestamp(0, UTC)) == []
    new = [a for a in alerted(receiver)[sent:] if a[1] == opened[0].id]
    assert [a[0] for a in new] == [new[0][0]] and len(new) == 1, alerted(receiver)[sent:]


# -- lists and instances ------------------------------------------------------------------------------
def test_a_prefix_list_event_rereads_the_list_and_judges_the_groups_naming_it(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    assert daemon._last is not None
    named = sorted(k for k in daemon._last[0].prefix_lists if k[1] == REGION)
    assert named, "the demo names a prefix list in cn-hangzhou"
    pl = named[0][2]
    control = ctl(estate)
    body = control.prefix_list(REGION, pl)
    body["Entries"] = {"Entry": [*body["Entries"]["Entry"], {"Cidr": "0.0.0.0/0", "Description": "everyone"}]}
    control.put_prefix_list(REGION, pl, body)
    estate.reset_stats()
    submit(daemon, event("ModifyPrefixList", PrefixListId=pl))
    assert estate.stats()["calls"] == {"DescribePrefixListAttributes": 1}
    assert "0.0.0.0/0" in daemon._last[0].prefix_lists[("default", REGION, pl)]


def test_an_instance_event_reads_the_instance_and_its_interfaces(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    assert daemon._last is not None
    membership = daemon._last[0].membership[("default", REGION)]
    host = next(i for i in membership.interfaces if i.instance_id and i.type == "Primary")
    estate.reset_stats()
    submit(daemon, event("ModifyInstanceAttribute", InstanceId=host.instance_id))
    assert estate.stats()["calls"] == {"DescribeNetworkInterfaces": 1, "DescribeInstances": 1}
    after = daemon._last[0].membership[("default", REGION)]
    assert {i.id for i in after.interfaces} == {i.id for i in membership.interfaces}
    assert next(i for i in after.interfaces if i.id == host.id) == host


def test_a_refused_reread_fails_alone_and_the_next_one_works(
    tmp_path: Path,
    estate: Emulator,
    receiver: Receiver,
    daemons: list[Daemon],
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    estate.keys[AK_ID] = AccessKey(secret="not-the-secret-the-daemon-signs-with")  # SignatureDoesNotMatch
    submit(daemon, event("AuthorizeSecurityGroup", SecurityGroupId=GROUP))
    assert reread_counts(daemon) == {"failed": 1}
    estate.keys[AK_ID] = AccessKey(secret=AK_SECRET)
    submit(daemon, event("AuthorizeSecurityGroup", SecurityGroupId=GROUP))
    assert reread_counts(daemon) == {"failed": 1, "ok": 1}
    assert AK_SECRET not in capsys.readouterr().out


# -- metrics -----------------------------------------------------------------------------------------
def test_event_metrics_are_served_from_the_start_and_documented() -> None:
    from prometheus_client import generate_latest

    from sgwatch.metrics import Telemetry, registry_for

    telemetry = Telemetry(interval=60)
    text = generate_latest(registry_for(telemetry)).decode()
    for result in ("ok", "gone", "failed", "dropped"):
        assert f'sgwatch_event_rereads_total{{result="{result}"}} 0.0' in text
    assert "sgwatch_change_to_alert_seconds_count 0.0" in text
    assert "sgwatch_event_arrival_to_alert_seconds_count 0.0" in text
    telemetry.reread.rereads["ok"] += 2
    telemetry.reread.change_to_alert.observe(1.5)
    text = generate_latest(registry_for(telemetry)).decode()
    assert 'sgwatch_event_rereads_total{result="ok"} 2.0' in text
    assert 'sgwatch_change_to_alert_seconds_bucket{le="2.0"} 1.0' in text
    documented = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    for name in (
        "sgwatch_event_rereads_total",
        "sgwatch_change_to_alert_seconds",
        "sgwatch_event_arrival_to_alert_seconds",
    ):
        assert f"`{name}`" in documented


def test_an_eip_on_an_interface_rereads_that_interface_and_its_instance(
    tmp_path: Path, estate: Emulator, receiver: Receiver, daemons: list[Daemon]
) -> None:
    daemon = make_daemon(tmp_path, estate, receiver)
    daemons.append(daemon)
    daemon.scan()
    assert daemon._last is not None
    membership = daemon._last[0].membership[("default", REGION)]
    primary = next(i for i in membership.interfaces if i.type == "Primary" and i.instance_id and not i.public_ipv4)
    ctl(estate).associate_eip(REGION, primary.id, "198.51.100.77")
    estate.reset_stats()
    submit(
        daemon,
        event("AssociateEipAddress", InstanceId=primary.id, InstanceType="NetworkInterface", AllocationId="eip-1"),
    )
    assert estate.stats()["calls"] == {"DescribeNetworkInterfaces": 1, "DescribeInstances": 1}
    after = daemon._last[0].membership[("default", REGION)]
    assert "198.51.100.77" in next(i for i in after.interfaces if i.id == primary.id).public_ipv4


def test_the_queue_is_bounded_and_counts_what_it_drops() -> None:
    from sgwatch.events.handler import EventHandler

    dropped: list[tuple[str, int]] = []
    processed: list[Any] = []
    handler = EventHandler(processed.append, lambda *_: True, lambda r, n: dropped.append((r, n)), max_targets=3)
    handler.window = 60.0  # nothing is taken while the test fills the queue
    events = [event("AuthorizeSecurityGroup", SecurityGroupId=f"sg-known{n:04d}") for n in range(5)]
    handler.submit("default", events, time.monotonic())
    assert dropped == [("dropped", 2)]
    handler.window = 0.0
    with handler._cond:
        handler._cond.notify_all()
    assert handler.wait_idle(5)
    assert len(processed) == 1 and processed[0].groups == {"sg-known0000", "sg-known0001", "sg-known0002"}
    handler.stop()


def test_the_emulator_filters_members_by_id_as_the_api_does() -> None:
    from sgwatch.emulator.members import MalformedFilter, Members

    members = Members()
    for n in range(3):
        members.put_eni({"NetworkInterfaceId": f"eni-{n}", "Type": "Secondary"})
        members.put_instance({"InstanceId": f"i-{n}"})
    picked = members.eni_list({"NetworkInterfaceId.1": "eni-0", "NetworkInterfaceId.2": "eni-2"})
    assert [e["NetworkInterfaceId"] for e in picked] == ["eni-0", "eni-2"]
    assert [i["InstanceId"] for i in members.instance_list({"InstanceIds": '["i-1"]'})] == ["i-1"]
    with pytest.raises(MalformedFilter):
        members.instance_list({"InstanceIds": "i-1"})


def test_a_scoped_notification_pass_leaves_other_alerts_alone(tmp_path: Path, receiver: Receiver) -> None:
    from tests.alertfixtures import Clock, finding
    from tests.test_alerting_lifecycle import make

    clock = Clock()
    notifier = make(receiver, clock, send_resolved=True)
    a, b = finding("fa", group="sg-a"), finding("fb", group="sg-b")
    notifier.process([a, b], clock())
    # A re-read of sg-b that finds it fixed: sg-a, outside the pass's scope, is not resolved.
    notifier.process([], clock(), scope={b["id"]})
    notifier.deliver_pending(clock())
    delivered = [(e["event"], e["finding"]["id"]) for req in receiver.requests for e in req.json()["events"]]
    assert ("resolved", b["id"]) in delivered
    assert ("resolved", a["id"]) not in delivered
