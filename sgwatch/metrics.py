"""Prometheus metrics, built fresh at every scrape from the last completed scan.

A custom collector on a private registry: nothing is kept as a labelled gauge between scans,
so when a group is deleted or a drift is fixed its series simply stop being exposed.
Counters (scans, API requests, retries, scheduler events, notifications) accumulate here.
"""

from __future__ import annotations

import platform
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sgwatch import __version__
from sgwatch.core.checks import RANK, SEVERITIES
from sgwatch.core.findings import Report
from sgwatch.sources.raw import ScanStats

KINDS = ("group_added", "group_removed", "group_changed", "rule_added", "rule_removed", "rule_changed")
SCAN_RESULTS = ("complete", "incomplete", "failed")
SCHEDULER_EVENTS = ("error", "missed", "max_instances")


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What the gauges describe: the last scan that produced a report."""

    finished_at: float
    duration: float
    complete: bool
    findings: Counter[tuple[str, str]]  # (severity, kind)
    new_exposures: Counter[str]  # severity
    posture: Counter[tuple[str, str]]  # (severity, check)
    groups: dict[tuple[str, str, str], tuple[int, str]]  # (account, region, sg) -> (count, worst severity)
    errors: Counter[tuple[str, str]]  # (account, region)

    @classmethod
    def of(cls, report: Report, finished_at: float, duration: float) -> ScanSummary:
        groups: dict[tuple[str, str, str], tuple[int, str]] = {}
        exposures: Counter[str] = Counter()
        for f in report.findings:
            key = (f.account, f.region, f.security_group_id)
            count, worst = groups.get(key, (0, "info"))
            groups[key] = (count + 1, worst if RANK[worst] >= RANK[f.severity] else f.severity)
            for e in f.new_exposures:
                if e.severity:
                    exposures[e.severity] += 1
        return cls(
            finished_at=finished_at,
            duration=duration,
            complete=report.complete,
            findings=Counter((f.severity, f.kind) for f in report.findings),
            new_exposures=exposures,
            posture=Counter((p.severity, p.check) for p in report.posture),
            groups=groups,
            errors=Counter((e.account, e.region) for e in report.errors),
        )


@dataclass(slots=True)
class Telemetry:
    """Everything the collector reads; the daemon updates it under ``lock``."""

    interval: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: ScanSummary | None = None
    last_success: float | None = None
    last_complete: float | None = None
    last_duration: float | None = None
    scans: Counter[str] = field(default_factory=Counter)
    api_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    api_retries: int = 0
    scheduler: Counter[str] = field(default_factory=Counter)
    notifications: Counter[tuple[str, str]] = field(default_factory=Counter)
    outbox_pending: dict[str, int] = field(default_factory=dict)

    def add_stats(self, stats: ScanStats) -> None:
        with self.lock:
            self.api_requests.update(stats.requests)
            self.api_retries += stats.retries


class SgwatchCollector(Collector):
    def __init__(self, telemetry: Telemetry) -> None:
        self.t = telemetry

    def collect(self) -> Iterator[Metric]:
        t = self.t
        with t.lock:
            yield from self._process(t)
            yield from self._scans(t)
            if t.last is not None:
                yield from self._findings(t.last)
            yield from self._counters(t)

    def _process(self, t: Telemetry) -> Iterator[Metric]:
        info = GaugeMetricFamily("sgwatch_build_info", "sgwatch build information", labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        yield GaugeMetricFamily("sgwatch_scan_interval_seconds", "Configured scan interval", value=t.interval)

    def _scans(self, t: Telemetry) -> Iterator[Metric]:
        if t.last_success is not None:
            yield GaugeMetricFamily(
                "sgwatch_last_successful_scan_timestamp_seconds",
                "End of the last scan that produced a report",
                value=t.last_success,
            )
        if t.last_complete is not None:
            yield GaugeMetricFamily(
                "sgwatch_last_complete_scan_timestamp_seconds",
                "End of the last scan that read every region and group",
                value=t.last_complete,
            )
        if t.last_duration is not None:
            yield GaugeMetricFamily(
                "sgwatch_last_scan_duration_seconds", "Duration of the last scan", value=t.last_duration
            )
        if t.last is not None:
            yield GaugeMetricFamily(
                "sgwatch_last_scan_complete", "1 if the last scan read everything", value=1 if t.last.complete else 0
            )
        scans = CounterMetricFamily("sgwatch_scans", "Scans run, by result", labels=["result"])
        for result in SCAN_RESULTS:  # every result from the start, so increase() sees the first one
            scans.add_metric([result], t.scans[result])
        yield scans

    def _findings(self, last: ScanSummary) -> Iterator[Metric]:
        findings = GaugeMetricFamily("sgwatch_findings", "Drift findings in the last scan", labels=["severity", "kind"])
        for severity in SEVERITIES:
            for kind in KINDS:
                findings.add_metric([severity, kind], last.findings[(severity, kind)])
        yield findings
        yield GaugeMetricFamily("sgwatch_drifted_groups", "Groups with at least one finding", value=len(last.groups))
        exposures = GaugeMetricFamily(
            "sgwatch_new_exposures", "New internet exposures in the last scan", labels=["severity"]
        )
        for severity in SEVERITIES:
            exposures.add_metric([severity], last.new_exposures[severity])
        yield exposures
        posture = GaugeMetricFamily(
            "sgwatch_posture_findings", "Posture results in the last scan", labels=["severity", "check"]
        )
        for (level, check), n in sorted(last.posture.items()):
            posture.add_metric([level, check], n)
        yield posture
        per_group = GaugeMetricFamily(
            "sgwatch_group_drift_findings",
            "Findings per drifted group",
            labels=["account", "region", "security_group_id", "severity"],
        )
        for (account, region, sg), (count, worst) in sorted(last.groups.items()):
            per_group.add_metric([account, region, sg, worst], count)
        yield per_group
        errors = GaugeMetricFamily(
            "sgwatch_scan_errors", "Unreadable regions or groups in the last scan", labels=["account", "region"]
        )
        for (account, region), n in sorted(last.errors.items()):
            errors.add_metric([account, region], n)
        yield errors

    def _counters(self, t: Telemetry) -> Iterator[Metric]:
        api = CounterMetricFamily("sgwatch_api_requests", "ECS API calls", labels=["action", "result"])
        for (action, result), n in sorted(t.api_requests.items()):
            api.add_metric([action, result], n)
        yield api
        yield CounterMetricFamily("sgwatch_api_retries", "ECS API retries", value=t.api_retries)
        sched = CounterMetricFamily("sgwatch_scheduler_events", "Scheduler events", labels=["event"])
        for event in SCHEDULER_EVENTS:
            sched.add_metric([event], t.scheduler[event])
        yield sched
        notes = CounterMetricFamily("sgwatch_notifications", "Notification deliveries", labels=["channel", "result"])
        for (channel, result), n in sorted(t.notifications.items()):
            notes.add_metric([channel, result], n)
        yield notes
        pending = GaugeMetricFamily(
            "sgwatch_notification_outbox_pending", "Notifications waiting for delivery", labels=["channel"]
        )
        for channel, n in sorted(t.outbox_pending.items()):
            pending.add_metric([channel], n)
        yield pending


def registry_for(telemetry: Telemetry) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SgwatchCollector(telemetry))
    return registry
