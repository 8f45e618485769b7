"""State lives of findings, and the metrics built from them (a fresh registry per test)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.model import Baseline, Group, ScanError, Snapshot
from sgwatch.emulator import Faults
from sgwatch.errors import InputError
from sgwatch.metrics import API_LATENCY_BUCKETS, Fragment, ScanSummary, Telemetry, count_exposures, registry_for
from sgwatch.sources.live import scan
from sgwatch.sources.raw import ScanStats
from sgwatch.state import WAL_LIMIT_BYTES, ScanRecord, State, StateWriteError
from tests import livefixtures
from tests.livefixtures import EmulatorFactory, settings_for
from tests.test_engine import egress
from tests.test_exposure import _group

# the shared fixtures, bound here so pytest finds them
make_emulator = livefixtures.make_emulator
no_proxy = livefixtures.no_proxy

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
    for severity in ("critical", "high"):  # one finding of each: one series of each, counting it
        assert (
            registry.get_sample_value(
                "sgwatch_group_drift_findings",
                {"account": "default", "region": "cn-hangzhou", "security_group_id": "sg-1", "severity": severity},
            )
            == 1
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


# -- series that count what their labels say -------------------------------------------------------
Scraped = dict[str, list[tuple[dict[str, str], float]]]


def scraped(telemetry: Telemetry) -> Scraped:
    """The registry as Prometheus reads it: the text format, parsed by the client's own parser."""
    out: Scraped = defaultdict(list)
    for family in text_string_to_metric_families(generate_latest(registry_for(telemetry)).decode()):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def summed_by(samples: list[tuple[dict[str, str], float]], label: str) -> dict[str, float]:
    """`sum by (label)`, leaving out sums of 0 (an absent series and a 0 alert alike)."""
    sums: dict[str, float] = defaultdict(float)
    for labels, v in samples:
        sums[labels[label]] += v
    return {k: v for k, v in sums.items() if v}


def estate(groups: dict[str, tuple[Group, Group]]) -> Report:
    """Several groups of one region: id -> (baseline, live)."""
    keys = {gid: ("default", "cn-hangzhou", gid) for gid in groups}
    snap = Snapshot(groups={keys[gid]: replace(live, id=gid) for gid, (_, live) in groups.items()})
    snap.listed[("default", "cn-hangzhou")] = frozenset(groups)
    baseline = Baseline(groups={keys[gid]: replace(base, id=gid) for gid, (base, _) in groups.items()})
    return assess(baseline, snap, CheckSettings(), T0)


def test_group_series_summed_by_severity_are_the_findings_summed_by_severity() -> None:
    drift = estate(
        {
            # critical, high and a low (an added drop): the old series said "critical" and 3
            "sg-a": (
                _group(),
                _group(
                    "accept 1 tcp 3306/3306 0.0.0.0/0", "accept 1 tcp 22/22 0.0.0.0/0", "drop 1 tcp 23/23 0.0.0.0/0"
                ),
            ),
            "sg-b": (_group(), _group("accept 1 tcp 22/22 0.0.0.0/0")),  # high only
            "sg-c": (_group("accept 1 tcp 443/443 0.0.0.0/0"), _group()),  # an accept removed: low
            "sg-d": (_group(), _group()),  # clean: no series
        }
    )
    telemetry = Telemetry(interval=300)
    telemetry.last = ScanSummary.of(drift, T0.timestamp(), 1.0)
    samples = scraped(telemetry)
    per_group = summed_by(samples["sgwatch_group_drift_findings"], "severity")
    assert per_group == summed_by(samples["sgwatch_findings"], "severity") == {"critical": 1, "high": 2, "low": 2}
    series = {(lb["security_group_id"], lb["severity"]): v for lb, v in samples["sgwatch_group_drift_findings"]}
    assert series == {
        ("sg-a", "critical"): 1,
        ("sg-a", "high"): 1,
        ("sg-a", "low"): 1,
        ("sg-b", "high"): 1,
        ("sg-c", "low"): 1,
    }
    assert samples["sgwatch_drifted_groups"] == [({}, 3)]


def test_one_removed_egress_drop_is_one_exposure() -> None:
    # An egress whitelist of a basic group: the drop of all TCP to the internet goes. The engine
    # reports three port runs (1-442, 443 that 1.1.1.1 already reached, 444-65535).
    whitelist = replace(
        _group(), rules=(egress("drop 2 tcp 1/65535 0.0.0.0/0"), egress("accept 1 tcp 443/443 1.1.1.1/32"))
    )
    drift = estate({"sg-1": (whitelist, replace(whitelist, rules=whitelist.rules[1:]))})
    (finding,) = drift.findings
    assert len(finding.new_exposures) > 1  # what the engine hands over: fragments
    telemetry = Telemetry(interval=300)
    telemetry.last = ScanSummary.of(drift, T0.timestamp(), 1.0)
    exposures = {lb["severity"]: v for lb, v in scraped(telemetry)["sgwatch_new_exposures"]}
    assert exposures == {"critical": 0, "high": 0, "medium": 1, "low": 0, "info": 0}
    # carried over from the state's JSON form (an unread region), it counts the same
    kept = {f.id: f.to_dict() for f in drift.findings}
    blind = Report(generated_at=T0, groups=0, errors=[ScanError("default", "cn-hangzhou", "ServiceUnavailable", "503")])
    assert ScanSummary.of(blind, T0.timestamp(), 1.0, open_findings=kept).new_exposures == {"medium": 1}


def test_exposures_merge_only_runs_that_touch_in_one_group_direction_family_protocol_and_severity() -> None:
    sg1, sg2 = ("default", "cn-hangzhou", "sg-1"), ("default", "cn-hangzhou", "sg-2")

    def run(place: tuple[str, str, str], low: int, high: int, **kw: str) -> Fragment:
        fields = {"direction": "ingress", "family": "ipv4", "protocol": "tcp", "severity": "high", **kw}
        return Fragment(place, fields["direction"], fields["family"], fields["protocol"], fields["severity"], low, high)

    assert count_exposures([run(sg1, 1, 100), run(sg1, 101, 200), run(sg1, 150, 300)]) == {"high": 1}
    assert count_exposures([run(sg1, 1, 100), run(sg1, 102, 200)]) == {"high": 2}  # 101 was open before
    apart = [
        run(sg1, 1, 100),
        run(sg2, 101, 200),
        run(sg1, 101, 200, direction="egress"),
        run(sg1, 101, 200, family="ipv6"),
        run(sg1, 101, 200, protocol="udp"),
        run(sg1, 101, 200, severity="critical"),
    ]
    assert count_exposures(apart) == {"high": 5, "critical": 1}
    assert count_exposures([run(sg1, -1, -1, protocol="icmp")] * 2) == {"high": 1}


def test_scan_errors_are_zero_for_every_region_covered() -> None:
    regions = {("default", "cn-hangzhou"): T0.timestamp(), ("default", "cn-shanghai"): T0.timestamp()}
    telemetry = Telemetry(interval=300)
    telemetry.last = ScanSummary.of(report(), T0.timestamp(), 1.0, regions=regions)
    zeros = [({"account": "default", "region": r}, 0.0) for r in ("cn-hangzhou", "cn-shanghai")]
    assert scraped(telemetry)["sgwatch_scan_errors"] == zeros
    down = ScanError("default", "cn-shanghai", "ServiceUnavailable", "503")
    telemetry.last = ScanSummary.of(report(errors=[down]), T0.timestamp(), 1.0, regions=regions)
    assert scraped(telemetry)["sgwatch_scan_errors"] == [
        zeros[0],
        ({"account": "default", "region": "cn-shanghai"}, 1.0),
    ]


def test_the_registry_serves_the_standard_process_and_python_metrics() -> None:
    samples = scraped(Telemetry(interval=300))
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections_total",
    ):
        assert samples[name], name
    assert samples["process_resident_memory_bytes"][0][1] > 0


def test_the_scan_duration_histogram_has_every_result_from_the_start() -> None:
    telemetry = Telemetry(interval=300)
    with telemetry.lock:
        telemetry.scan_ended("complete", 42.0)
    samples = scraped(telemetry)
    counts = {lb["result"]: v for lb, v in samples["sgwatch_scan_duration_seconds_count"]}
    assert counts == {"complete": 1, "incomplete": 0, "failed": 0}
    buckets = {lb["le"]: v for lb, v in samples["sgwatch_scan_duration_seconds_bucket"] if lb["result"] == "complete"}
    assert (buckets["30.0"], buckets["60.0"], buckets["+Inf"]) == (0, 1, 1)
    assert samples["sgwatch_scans_total"] == [
        ({"result": "complete"}, 1),
        ({"result": "incomplete"}, 0),
        ({"result": "failed"}, 0),
    ]


def test_api_latency_is_observed_for_every_attempt_of_a_live_scan(make_emulator: EmulatorFactory) -> None:
    # 60 ms per call and a fifth of them answered 500 (then retried): every attempt is one observation.
    emu = make_emulator(
        synthetic_groups=12, synthetic_regions=2, seed=3, faults=Faults(latency_ms=60, error_5xx_rate=0.2)
    )
    raw = scan(settings_for(emu, max_retries=10))
    assert raw.errors == [] and raw.stats.retries > 0
    telemetry = Telemetry(interval=300)
    telemetry.add_stats(raw.stats)
    samples = scraped(telemetry)
    attempts: dict[str, float] = defaultdict(float)
    for (action, _), n in raw.stats.requests.items():
        attempts[action] += n
    counts = {lb["action"]: v for lb, v in samples["sgwatch_api_request_duration_seconds_count"]}
    assert {a: n for a, n in counts.items() if n} == attempts
    assert set(counts) >= {"DescribeRegions", "DescribeSecurityGroupAttribute"}  # idle actions: 0, not absent
    action = "DescribeSecurityGroupAttribute"
    buckets = {
        float(lb["le"]): v for lb, v in samples["sgwatch_api_request_duration_seconds_bucket"] if lb["action"] == action
    }
    assert sorted(buckets) == [*API_LATENCY_BUCKETS, float("inf")]
    assert buckets[0.05] == 0 and buckets[float("inf")] == attempts[action]  # none faster than the 60 ms
    total = {lb["action"]: v for lb, v in samples["sgwatch_api_request_duration_seconds_sum"]}[action]
    assert total >= 0.06 * attempts[action]
