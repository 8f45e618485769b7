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
from sgwatch.state import State
from tests.test_exposure import _group

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = ("default", "cn-hangzhou", "sg-1")


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
