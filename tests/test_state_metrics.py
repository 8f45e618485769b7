"""State lives of findings, and the metrics built from them (a fresh registry per test)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.model import Baseline, ScanError, Snapshot
from sgwatch.errors import InputError
from sgwatch.metrics import ScanSummary, Telemetry, registry_for
from sgwatch.sources.raw import ScanStats
from sgwatch.state import WAL_LIMIT_BYTES, ScanRecord, State, StateWriteError
from tests.test_exposure import _group

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = ("default", "cn-hangzhou", "sg-1")


def fill_the_state(state: State) -> None:
    """From now on the state file cannot grow: SQLite answers SQLITE_FULL, as on a full disk.

    The last page of the scan history is filled too, so even a scan that changes no finding
    (updates in place) needs a page it cannot have.
    """
    db = state.db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        while True:
            db.execute("INSERT INTO scans (scan_id, started_at, duration_seconds, result) VALUES ('-', '', 0, '-')")


def report(*specs: str, errors: list[ScanError] | None = None) -> Report:
    snap = Snapshot(groups={KEY: _group(*specs)}, errors=errors or [])
    snap.listed[("default", "cn-hangzhou")] = frozenset({"sg-1"})
    return assess(Baseline(groups={KEY: _group()}), snap, CheckSettings(), T0)


def test_finding_life_survives_restart_and_resolves(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    state = State(path)
    drift = report("accept 1 tcp 22/22 0.0.0.0/0")
    (fid,) = state.record(drift, T0)
    state.close()
    state = State(path)  # a restart
    lives = state.record(drift, T0 + timedelta(minutes=5))
    assert lives[fid].first_seen == T0 and lives[fid].last_seen == T0 + timedelta(minutes=5)
    assert state.record(report(), T0 + timedelta(minutes=10)) == {}
    (resolved,) = state.resolved_since(T0)
    assert resolved.id == fid and resolved.resolved_at == T0 + timedelta(minutes=10)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreadable_group_keeps_its_findings_open(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite")
    (fid,) = state.record(report("accept 1 tcp 22/22 0.0.0.0/0"), T0)
    blind = Report(generated_at=T0, groups=0, errors=[ScanError("default", "cn-hangzhou", "ServiceUnavailable", "503")])
    assert fid in state.record(blind, T0 + timedelta(minutes=5))


def test_scan_history(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite")
    state.add_scan(scan_id="a", started=T0, duration=2.5, result="complete", report=report())
    state.add_scan(
        scan_id="b", started=T0 + timedelta(minutes=5), duration=1, result="failed", report=None, message="boom"
    )
    assert [s["result"] for s in state.scans()] == ["failed", "complete"]
    assert state.last_success() == T0 + timedelta(seconds=2.5)


def test_corrupt_or_unwritable_state_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 1000)
    with pytest.raises(InputError, match="state file is unusable"):
        State(bad)
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(InputError, match="cannot create the state file"):
        State(blocked / "state.sqlite")


def test_metrics_from_the_last_scan() -> None:
    telemetry = Telemetry(interval=300)
    registry = registry_for(telemetry)
    assert registry.get_sample_value("sgwatch_scan_interval_seconds") == 300
    assert registry.get_sample_value("sgwatch_drifted_groups") is None  # no scan yet: no claim
    drift = report("accept 1 tcp 3306/3306 0.0.0.0/0", "accept 1 tcp 22/22 0.0.0.0/0")
    telemetry.last = ScanSummary.of(drift, T0.timestamp(), 1.5)
    telemetry.scans["complete"] += 1
    stats = ScanStats()
    stats.requests[("DescribeSecurityGroups", "throttled")] += 2
    telemetry.add_stats(stats)
    assert registry.get_sample_value("sgwatch_findings", {"severity": "critical", "kind": "rule_added"}) == 1
    assert registry.get_sample_value("sgwatch_findings", {"severity": "high", "kind": "rule_added"}) == 1
    assert registry.get_sample_value("sgwatch_new_exposures", {"severity": "critical"}) == 1
    assert (
        registry.get_sample_value(
            "sgwatch_group_drift_findings",
            {"account": "default", "region": "cn-hangzhou", "security_group_id": "sg-1", "severity": "critical"},
        )
        == 2
    )
    assert registry.get_sample_value("sgwatch_scans_total", {"result": "complete"}) == 1
    assert registry.get_sample_value("sgwatch_scans_total", {"result": "failed"}) == 0
    assert (
        registry.get_sample_value(
            "sgwatch_api_requests_total", {"action": "DescribeSecurityGroups", "result": "throttled"}
        )
        == 2
    )
    # The group is fixed: its series go with the next scan.
    telemetry.last = ScanSummary.of(report(), T0.timestamp(), 1.0)
    assert (
        registry.get_sample_value(
            "sgwatch_group_drift_findings",
            {"account": "default", "region": "cn-hangzhou", "security_group_id": "sg-1", "severity": "critical"},
        )
        is None
    )
    assert registry.get_sample_value("sgwatch_drifted_groups") == 0


def test_an_account_whose_region_list_was_unread_keeps_all_its_findings_open(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite")
    (fid,) = state.record(report("accept 1 tcp 22/22 0.0.0.0/0"), T0, [("default", "cn-hangzhou")])
    # DescribeRegions failed: the error names the account and no region.
    blind = Report(generated_at=T0, groups=0, errors=[ScanError("default", "", "Throttling", "DescribeRegions failed")])
    assert fid in state.record(blind, T0 + timedelta(minutes=5), [("default", "")])
    assert state.regions_read() == {("default", "cn-hangzhou"): T0}


def test_a_region_is_read_in_full_only_when_every_group_in_it_was(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite")
    scope = [("default", "cn-hangzhou"), ("default", "cn-shanghai")]
    state.record(report(), T0, scope)
    one_group = ScanError("default", "cn-hangzhou", "Throttling", "503", security_group_id="sg-1")
    state.record(report(errors=[one_group]), T0 + timedelta(minutes=5), scope)
    assert state.regions_read() == {
        ("default", "cn-hangzhou"): T0,
        ("default", "cn-shanghai"): T0 + timedelta(minutes=5),
    }


def test_a_scan_is_recorded_whole_or_not_at_all(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite")
    (fid,) = state.record(report("accept 1 tcp 22/22 0.0.0.0/0"), T0)
    fill_the_state(state)
    later = T0 + timedelta(minutes=5)
    with pytest.raises(StateWriteError, match="cannot write the state file: database or disk is full"):
        # The fix would resolve the finding in place; the history row needs a page it cannot have.
        state.record(report(), later, scan=ScanRecord("s1", later, 1.0, "complete"))
    assert fid in state.open_findings()
    assert [s["scan_id"] for s in state.scans(1000) if s["scan_id"] != "-"] == []


def test_timestamps_are_zero_not_absent_before_the_first_scan() -> None:
    registry = registry_for(Telemetry(interval=300))
    assert registry.get_sample_value("sgwatch_last_successful_scan_timestamp_seconds") == 0
    assert registry.get_sample_value("sgwatch_last_complete_scan_timestamp_seconds") == 0


def test_unread_parts_keep_their_last_known_metrics() -> None:
    drift = report("accept 1 tcp 3306/3306 0.0.0.0/0")
    state_view = {f.id: f.to_dict() for f in drift.findings}  # what the state keeps open
    first = ScanSummary.of(drift, T0.timestamp(), 1.0, open_findings=state_view)
    down = ScanError("default", "cn-hangzhou", "ServiceUnavailable", "503")
    blind = Report(generated_at=T0, groups=0, errors=[down])
    later = ScanSummary.of(blind, T0.timestamp() + 300, 1.0, open_findings=state_view, previous=first)
    assert later.groups == first.groups and later.findings == first.findings
    assert later.new_exposures == first.new_exposures == {"critical": 1}
    assert later.posture == first.posture
    # Read again and fixed: nothing is carried (the state resolved it, and the report says so).
    fixed = ScanSummary.of(report(), T0.timestamp() + 600, 1.0, open_findings={}, previous=later)
    assert fixed.groups == {} and fixed.posture == ()


def test_a_group_read_in_an_unread_region_is_not_counted_twice() -> None:
    drift = report("accept 1 tcp 3306/3306 0.0.0.0/0")
    kept = {f.id: f.to_dict() for f in drift.findings}
    first = ScanSummary.of(drift, T0.timestamp(), 1.0, open_findings=kept)
    # The region's listing failed after sg-1 was listed and read: sg-1's results are fresh.
    partial = report("accept 1 tcp 3306/3306 0.0.0.0/0", errors=[ScanError("default", "cn-hangzhou", "X", "y")])
    later = ScanSummary.of(partial, T0.timestamp() + 300, 1.0, open_findings=kept, previous=first)
    assert later.posture == first.posture and later.findings == first.findings
    assert later.groups == first.groups


def test_the_wal_shrinks_back_after_a_large_write(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite")
    db = state.db
    db.execute("CREATE TABLE scratch (x)")
    db.execute("INSERT INTO scratch VALUES (randomblob(?))", (2 * WAL_LIMIT_BYTES,))
    db.execute("DROP TABLE scratch")
    state.add_scan(scan_id="a", started=T0, duration=1, result="complete", report=report())  # checkpoints
    assert (tmp_path / "s.sqlite-wal").stat().st_size <= WAL_LIMIT_BYTES
