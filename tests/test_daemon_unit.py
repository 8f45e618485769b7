"""The daemon in process: its injected clock and scanner, its real state file, HTTP server and metrics.

Faults are real ones: a full disk is SQLite's own SQLITE_FULL (``PRAGMA max_page_count``), an
unreadable region is the ScanError a live scan records. The Prometheus rules are then run by
promtool over the exact series the daemon served.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent, JobSubmissionEvent

from sgwatch import config as config_file
from sgwatch.core.model import ScanError, Snapshot
from sgwatch.daemon import Daemon, RunOptions
from sgwatch.errors import AuthError
from sgwatch.sources.raw import RawScan
from sgwatch.sources.snapshot import load as load_snapshot
from tests.test_daemon_e2e import get, metrics
from tests.test_prometheus_rules import RULES, promtool
from tests.test_state_metrics import fill_the_state

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
EPOCH = datetime.fromtimestamp(0, UTC)  # promtool's time 0: the daemon's timestamps line up with its clock
INTERVAL = 600

Sample = tuple[str, tuple[tuple[str, str], ...]]


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at_minute(self, minute: int) -> None:
        self.now = EPOCH + timedelta(minutes=minute)


@dataclass
class Cloud:
    """What the injected scanner answers: the demo estate, or a region down, or no access at all."""

    failing_region: str | None = None
    refused: bool = False

    def scan(self, _: config_file.Config) -> tuple[RawScan, Snapshot]:
        if self.refused:
            raise AuthError("InvalidAccessKeyId.NotFound: the AccessKey ID does not exist")
        snap = load_snapshot(DEMO / "snapshot")
        if self.failing_region:
            down = ("default", self.failing_region)
            snap = replace(
                snap,
                groups={k: g for k, g in snap.groups.items() if k[:2] != down},
                listed={k: v for k, v in snap.listed.items() if k != down},
                errors=[ScanError(*down, "ServiceUnavailable", "the region's endpoint answered 503")],
            )
        return RawScan(), snap


def start_daemon(tmp_path: Path, clock: FakeClock, cloud: Cloud) -> Daemon:
    overrides = {
        "baseline": str(DEMO / "baseline"),
        "state": str(tmp_path / "state.sqlite"),
        "listen": "127.0.0.1:0",
        "interval": INTERVAL,
    }
    daemon = Daemon(RunOptions(config_path=None, overrides=overrides), clock=clock, scanner=cloud.scan)
    daemon.server.start()
    return daemon


def stop(daemon: Daemon) -> None:
    daemon.server.stop()
    daemon.state.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        stop(daemon)


def room_again(daemon: Daemon) -> None:
    daemon.state.db.execute("PRAGMA max_page_count = 1073741823")


def scrape(daemon: Daemon) -> dict[Sample, float]:
    """/metrics over HTTP, as Prometheus reads it."""
    samples = metrics(f"http://127.0.0.1:{daemon.server.port}")
    assert samples, "nothing scraped"
    return samples


def family(samples: dict[Sample, float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def events(logs: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == message]


# -- an unreadable region is not a clean one -------------------------------------------------------
LAST_KNOWN = (
    "sgwatch_group_drift_findings",
    "sgwatch_findings",
    "sgwatch_drifted_groups",
    "sgwatch_new_exposures",
    "sgwatch_posture_findings",
)


def test_an_unreadable_region_serves_its_last_known_series_with_their_age(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    clock, cloud = FakeClock(EPOCH + timedelta(minutes=1)), Cloud()
    daemons.append(daemon := start_daemon(tmp_path, clock, cloud))
    daemon.scan()
    read = scrape(daemon)
    assert family(read, "sgwatch_new_exposures")[(("severity", "critical"),)] == 2  # sg-legacy-db, sg-cache
    shanghai = {k for k in family(read, "sgwatch_group_drift_findings") if ("region", "cn-shanghai") in k}
    assert shanghai, "the demo has drift in cn-shanghai"

    cloud.failing_region = "cn-shanghai"
    clock.at_minute(11)
    daemon.scan()
    blind = scrape(daemon)
    for name in LAST_KNOWN:
        assert family(blind, name) == family(read, name), name
    assert family(blind, "sgwatch_region_last_read_timestamp_seconds") == {
        (("account", "default"), ("region", "cn-hangzhou")): 11 * 60,
        (("account", "default"), ("region", "cn-shanghai")): 1 * 60,  # the age of its series
    }
    assert family(read, "sgwatch_scan_errors") == {  # zeros for every region read, not absent
        (("account", "default"), ("region", "cn-hangzhou")): 0,
        (("account", "default"), ("region", "cn-shanghai")): 0,
    }
    assert family(blind, "sgwatch_scan_errors") == {
        (("account", "default"), ("region", "cn-hangzhou")): 0,
        (("account", "default"), ("region", "cn-shanghai")): 1,
    }
    assert family(blind, "sgwatch_last_scan_complete") == {(): 0}

    # A restart, the region still down: the state remembers both the findings and their age
    # (posture is not kept in the state; it comes back with the region).
    stop(daemons.pop())
    clock.at_minute(21)
    daemons.append(daemon := start_daemon(tmp_path, clock, cloud))
    daemon.scan()
    restarted = scrape(daemon)
    for name in LAST_KNOWN[:-1]:
        assert family(restarted, name) == family(read, name), name
    assert (
        family(restarted, "sgwatch_region_last_read_timestamp_seconds")[
            (("account", "default"), ("region", "cn-shanghai"))
        ]
        == 1 * 60
    )

    # The region is back: fresh values, fresh age.
    cloud.failing_region = None
    clock.at_minute(31)
    daemon.scan()
    back = scrape(daemon)
    assert family(back, "sgwatch_group_drift_findings") == family(read, "sgwatch_group_drift_findings")
    assert set(family(back, "sgwatch_region_last_read_timestamp_seconds").values()) == {31 * 60}


# -- a scan whose state cannot be written is a failed scan -----------------------------------------
def test_a_full_disk_fails_the_scan_counted_logged_and_ready_stays_true(tmp_path: Path, daemons: list[Daemon]) -> None:
    clock = FakeClock(EPOCH + timedelta(minutes=1))
    daemons.append(daemon := start_daemon(tmp_path, clock, Cloud()))
    fill_the_state(daemon.state)
    with structlog.testing.capture_logs() as logs:
        for minute in (1, 11, 21):
            clock.at_minute(minute)
            daemon.scan()  # raises nothing: the scheduler must not be the one to hear of it
    m = scrape(daemon)
    assert family(m, "sgwatch_scans_total") == {
        (("result", "complete"),): 0,
        (("result", "incomplete"),): 0,
        (("result", "failed"),): 3,
    }
    assert family(m, "sgwatch_last_successful_scan_timestamp_seconds") == {(): 0}
    assert family(m, "sgwatch_drifted_groups") == {}  # nothing recorded: no claim either way
    failed = events(logs, "scan failed")
    assert len(failed) == 3
    assert all("cannot write the state file: database or disk is full" in e["error"] for e in failed)
    assert events(logs, "scan finished") == [] and events(logs, "drift detected") == []

    # Ready: the pod stays behind its Service, so these metrics keep being scraped.
    status, body = get(f"http://127.0.0.1:{daemon.server.port}/readyz")
    assert status == 200, body
    probe = json.loads(body)
    assert {k: probe[k] for k in ("first_scan_attempted", "last_scan", "last_successful_scan")} == {
        "first_scan_attempted": True,
        "last_scan": "failed",
        "last_successful_scan": None,
    }

    # Space again: the next scan succeeds and is recorded.
    room_again(daemon)
    clock.at_minute(31)
    daemon.scan()
    assert daemon.state.scans(1)[0]["result"] == "complete"
    ok, detail = daemon.ready()
    assert ok and detail["last_scan"] == "complete" and detail["last_successful_scan"] == "1970-01-01T00:31:00Z"


def test_a_failed_scan_whose_history_cannot_be_written_is_still_counted(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemons.append(daemon := start_daemon(tmp_path, FakeClock(EPOCH), Cloud(refused=True)))
    fill_the_state(daemon.state)
    with structlog.testing.capture_logs() as logs:
        daemon.scan()
    assert family(scrape(daemon), "sgwatch_scans_total")[(("result", "failed"),)] == 1
    (failed,) = events(logs, "scan failed")
    assert failed["error"].startswith("InvalidAccessKeyId.NotFound")
    (unwritten,) = events(logs, "scan history not written")
    assert "database or disk is full" in unwritten["error"]


def test_the_last_success_survives_a_restart(tmp_path: Path, daemons: list[Daemon]) -> None:
    clock = FakeClock(EPOCH + timedelta(minutes=1))
    daemons.append(daemon := start_daemon(tmp_path, clock, Cloud()))
    daemon.scan()
    stop(daemons.pop())
    clock.at_minute(30)
    daemons.append(daemon := start_daemon(tmp_path, clock, Cloud(refused=True)))
    m = scrape(daemon)  # before any scan of this process: not "never", not absent
    # The state keeps start + measured duration; the fake clock stood still meanwhile.
    assert family(m, "sgwatch_last_successful_scan_timestamp_seconds") == {(): pytest.approx(60, abs=5)}
    assert family(m, "sgwatch_last_complete_scan_timestamp_seconds") == {(): pytest.approx(60, abs=5)}


# -- the scheduler's events reach the log ----------------------------------------------------------
def test_scheduler_events_are_counted_and_logged(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemons.append(daemon := start_daemon(tmp_path, FakeClock(EPOCH), Cloud()))
    when = EPOCH
    with structlog.testing.capture_logs() as logs:
        # Through APScheduler's own dispatch, which swallows (and only logs) a listener's exception.
        daemon.scheduler._dispatch_event(
            JobExecutionEvent(EVENT_JOB_ERROR, "scan", "default", when, exception=RuntimeError("boom"))
        )
        daemon.scheduler._dispatch_event(JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, "scan", "default", [when]))
    assert [(e["scheduler_event"], e["job"], e.get("error")) for e in events(logs, "scheduler event")] == [
        ("error", "scan", "RuntimeError: boom"),
        ("max_instances", "scan", None),
    ]
    sched = family(scrape(daemon), "sgwatch_scheduler_events_total")
    assert sched[(("event", "error"),)] == 1 and sched[(("event", "max_instances"),)] == 1


# -- the alert rules over the series the daemon really serves --------------------------------------
def promql_string(text: str) -> str:
    return json.dumps(text)  # a PromQL double-quoted string escapes as JSON does


def input_series(scrapes: dict[int, dict[Sample, float]], minutes: int) -> list[dict[str, str]]:
    """promtool input series, one value a minute: at each minute what the latest scrape served."""
    names = sorted({sample for samples in scrapes.values() for sample in samples})
    series = []
    for name, labels in names:
        values, current = [], "_"
        for minute in range(minutes + 1):
            if minute in scrapes:
                v = scrapes[minute].get((name, labels))
                current = "_" if v is None else repr(v)
            values.append(current)
        selector = ",".join(
            f"{k}={promql_string(v)}" for k, v in (("job", "sgwatch"), ("instance", "sgwatch:9108"), *labels)
        )
        series.append({"series": f"{name}{{{selector}}}", "values": " ".join(values)})
    return series


def firing(alert: str, minute: int, fires: bool) -> dict[str, Any]:
    return {
        "expr": f'count by (alertname) (ALERTS{{alertname="{alert}",alertstate="firing"}})',
        "eval_time": f"{minute}m",
        "exp_samples": [{"labels": f'{{alertname="{alert}"}}', "value": 1}] if fires else [],
    }


def run_promtool(tmp_path: Path, series: list[dict[str, str]], checks: list[dict[str, Any]]) -> None:
    case = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    }
    path = tmp_path / "served.test.yml"
    path.write_text(json.dumps(case, indent=1))  # JSON is YAML
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def scan_every_interval(
    daemon: Daemon, clock: FakeClock, minutes: range, before: Callable[[int], None] = lambda _: None
) -> dict[int, dict[Sample, float]]:
    scrapes = {0: scrape(daemon)}  # up, not yet scanned
    for minute in minutes:
        before(minute)
        clock.at_minute(minute)
        daemon.scan()
        scrapes[minute] = scrape(daemon)
    return scrapes


def test_rules_fire_on_a_daemon_that_never_succeeds(tmp_path: Path, daemons: list[Daemon]) -> None:
    clock = FakeClock(EPOCH)
    daemons.append(daemon := start_daemon(tmp_path, clock, Cloud()))
    fill_the_state(daemon.state)
    scrapes = scan_every_interval(daemon, clock, range(1, 90, INTERVAL // 60))
    run_promtool(
        tmp_path,
        input_series(scrapes, 100),
        [
            firing("SgwatchScansFailing", 30, True),
            firing("SgwatchNoSuccessfulScan", 30, False),  # for: 1h
            firing("SgwatchNoSuccessfulScan", 62, True),
            firing("SgwatchScansStale", 62, False),  # nothing to be stale against
        ],
    )


def test_rules_fire_when_scans_start_failing_after_a_success(tmp_path: Path, daemons: list[Daemon]) -> None:
    clock = FakeClock(EPOCH)
    daemons.append(daemon := start_daemon(tmp_path, clock, Cloud()))

    def disk_full_after_the_first(minute: int) -> None:
        if minute > 1:
            fill_the_state(daemon.state)

    scrapes = scan_every_interval(daemon, clock, range(1, 90, INTERVAL // 60), disk_full_after_the_first)
    run_promtool(
        tmp_path,
        input_series(scrapes, 100),
        [
            firing("SgwatchScansStale", 25, False),
            firing("SgwatchScansStale", 35, True),  # 3 intervals after the success at minute 1
            firing("SgwatchScansFailing", 55, False),  # that success is still within the hour
            firing("SgwatchScansFailing", 65, True),
            firing("SgwatchNoSuccessfulScan", 95, False),
        ],
    )


def test_rules_fire_on_a_daemon_never_complete(tmp_path: Path, daemons: list[Daemon]) -> None:
    clock = FakeClock(EPOCH)
    daemons.append(daemon := start_daemon(tmp_path, clock, Cloud(failing_region="cn-shanghai")))
    scrapes = scan_every_interval(daemon, clock, range(1, 60, INTERVAL // 60))
    run_promtool(
        tmp_path,
        input_series(scrapes, 60),
        [
            firing("SgwatchScansIncomplete", 25, False),  # two intervals, then for: 10m
            firing("SgwatchScansIncomplete", 35, True),
            firing("SgwatchNewCriticalExposure", 15, True),  # sg-legacy-db in the region read
            firing("SgwatchScansFailing", 15, False),
        ],
    )


# -- scan durations and reloads ----------------------------------------------------------------------
def test_every_scan_is_observed_in_the_duration_histogram_by_result(tmp_path: Path, daemons: list[Daemon]) -> None:
    cloud = Cloud()
    daemons.append(daemon := start_daemon(tmp_path, FakeClock(EPOCH), cloud))
    daemon.scan()
    cloud.refused = True
    daemon.scan()
    m = scrape(daemon)
    assert family(m, "sgwatch_scan_duration_seconds_count") == {
        (("result", "complete"),): 1,
        (("result", "incomplete"),): 0,
        (("result", "failed"),): 1,
    }
    (served,) = family(m, "sgwatch_last_scan_duration_seconds").values()
    assert family(m, "sgwatch_scan_duration_seconds_sum")[(("result", "failed"),)] == served  # the last one
    inf = family(m, "sgwatch_scan_duration_seconds_bucket")[(("le", "+Inf"), ("result", "complete"))]
    assert inf == 1


def daemon_on_a_copied_baseline(tmp_path: Path, clock: FakeClock) -> tuple[Daemon, Path]:
    import shutil

    baseline = tmp_path / "baseline"
    shutil.copytree(DEMO / "baseline", baseline)
    overrides = {"baseline": str(baseline), "state": str(tmp_path / "state.sqlite"), "listen": "127.0.0.1:0"}
    daemon = Daemon(RunOptions(config_path=None, overrides=overrides), clock=clock, scanner=Cloud().scan)
    daemon.server.start()
    return daemon, baseline / "default" / "cn-hangzhou.yaml"


def test_reloads_are_counted_by_result_and_a_failed_one_alerts_until_a_good_one(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    clock = FakeClock(EPOCH)
    daemon, target = daemon_on_a_copied_baseline(tmp_path, clock)
    daemons.append(daemon)
    good = target.read_text()
    scrapes = {0: scrape(daemon)}
    assert family(scrapes[0], "sgwatch_config_reloads_total") == {(("result", "ok"),): 0, (("result", "failed"),): 0}
    assert family(scrapes[0], "sgwatch_config_last_reload_successful") == {(): 1}

    def reload_at(minute: int, text: str) -> None:
        target.write_text(text)
        clock.at_minute(minute)
        daemon.reload("SIGHUP")
        scrapes[minute] = scrape(daemon)

    reload_at(1, good)
    reload_at(2, good + "  - id: not-a-group-id\n")  # kept the last good config
    assert family(scrapes[2], "sgwatch_config_reloads_total") == {(("result", "ok"),): 1, (("result", "failed"),): 1}
    assert family(scrapes[2], "sgwatch_config_last_reload_successful") == {(): 0}
    reload_at(30, good)
    assert family(scrapes[30], "sgwatch_config_reloads_total") == {(("result", "ok"),): 2, (("result", "failed"),): 1}
    assert family(scrapes[30], "sgwatch_config_last_reload_successful") == {(): 1}
    run_promtool(
        tmp_path,
        input_series(scrapes, 40),
        [
            firing("SgwatchConfigReloadFailed", 5, False),  # for: 10m
            firing("SgwatchConfigReloadFailed", 15, True),
            firing("SgwatchConfigReloadFailed", 35, False),
        ],
    )
