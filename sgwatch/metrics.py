"""Prometheus metrics, built fresh at every scrape from the last completed scan.

A custom collector on a private registry: nothing is kept as a labelled gauge between scans,
so when a group is deleted or a drift is fixed its series simply stop being exposed. What a
scan could not read is not clean: it keeps its last known values, dated by
``sgwatch_region_last_read_timestamp_seconds``. Counters (scans, API requests, retries,
scheduler events, notifications) accumulate here.
"""

from __future__ import annotations

import platform
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sgwatch import __version__
from sgwatch.core.checks import RANK, SEVERITIES
from sgwatch.core.findings import Finding, Report
from sgwatch.sources.raw import ScanStats
from sgwatch.state import Unread

KINDS = ("group_added", "group_removed", "group_changed", "rule_added", "rule_removed", "rule_changed")
SCAN_RESULTS = ("complete", "incomplete", "failed")
SCHEDULER_EVENTS = ("error", "missed", "max_instances")


class _Facts(NamedTuple):
    """What the gauges need of one finding, from a Finding or from the JSON form the state keeps."""

    severity: str
    kind: str
    place: tuple[str, str, str]  # (account, region, security group)
    exposures: tuple[str, ...]  # severities of its new exposures

    @classmethod
    def of(cls, f: Finding) -> _Facts:
        return cls(
            f.severity,
            f.kind,
            (f.account, f.region, f.security_group_id),
            tuple(e.severity for e in f.new_exposures if e.severity),
        )

    @classmethod
    def kept(cls, data: Mapping[str, Any]) -> _Facts:
        return cls(
            data["severity"],
            data["kind"],
            (data["account"], data["region"], data["security_group_id"]),
            tuple(e["severity"] for e in data.get("new_exposures", ()) if e.get("severity")),
        )


class PostureRow(NamedTuple):
    account: str
    region: str
    security_group_id: str
    severity: str
    check: str


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What the gauges describe: the last scan that produced a report.

    What that scan could not read is described by what was last known of it: the findings the
    state keeps open there, the posture results of the scan before. ``regions`` dates that.
    """

    finished_at: float
    duration: float
    complete: bool
    findings: Counter[tuple[str, str]]  # (severity, kind)
    new_exposures: Counter[str]  # severity
    posture: tuple[PostureRow, ...]
    groups: dict[tuple[str, str, str], tuple[int, str]]  # (account, region, sg) -> (count, worst severity)
    errors: Counter[tuple[str, str]]  # (account, region)
    regions: dict[tuple[str, str], float] = field(default_factory=dict)  # last read in full; 0: never

    @classmethod
    def of(
        cls,
        report: Report,
        finished_at: float,
        duration: float,
        *,
        open_findings: Mapping[str, Mapping[str, Any]] | None = None,
        previous: ScanSummary | None = None,
        regions: Mapping[tuple[str, str], float] | None = None,
    ) -> ScanSummary:
        """``open_findings``: the state's open findings (id -> JSON form) after this scan;
        ``previous``: the summary before it; ``regions``: each covered (account, region) and
        when it was last read in full (0 for never)."""
        unread = Unread.of(report)
        facts = [_Facts.of(f) for f in report.findings]
        seen = {f.id for f in report.findings}
        for fid, data in sorted((open_findings or {}).items()):
            if fid not in seen and unread.covers(data["account"], data["region"], data["security_group_id"]):
                facts.append(_Facts.kept(data))
        posture = [PostureRow(p.account, p.region, p.security_group_id, p.severity, p.check) for p in report.posture]
        if previous is not None:
            # A group of an unread region may still have been read (listed before the listing
            # failed): its fresh results stand, and are not counted twice.
            fresh = {p[:3] for p in posture}
            posture.extend(
                p
                for p in previous.posture
                if p[:3] not in fresh and unread.covers(p.account, p.region, p.security_group_id)
            )
        groups: dict[tuple[str, str, str], tuple[int, str]] = {}
        exposures: Counter[str] = Counter()
        for f in facts:
            count, worst = groups.get(f.place, (0, "info"))
            groups[f.place] = (count + 1, worst if RANK[worst] >= RANK[f.severity] else f.severity)
            exposures.update(f.exposures)
        return cls(
            finished_at=finished_at,
            duration=duration,
            complete=report.complete,
            findings=Counter((f.severity, f.kind) for f in facts),
            new_exposures=exposures,
            posture=tuple(posture),
            groups=groups,
            errors=Counter((e.account, e.region) for e in report.errors),
            regions=dict(regions or {}),
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
    last_result: str | None = None  # of the last scan, failed ones included
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
        # 0 until the first one (not absent), so rules comparing against it or with `time()` work.
        yield GaugeMetricFamily(
            "sgwatch_last_successful_scan_timestamp_seconds",
            "End of the last scan that produced a report (0: none yet)",
            value=t.last_success or 0,
        )
        yield GaugeMetricFamily(
            "sgwatch_last_complete_scan_timestamp_seconds",
            "End of the last scan that read every region and group (0: none yet)",
            value=t.last_complete or 0,
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
        for (level, check), n in sorted(Counter((p.severity, p.check) for p in last.posture).items()):
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
        read = GaugeMetricFamily(
            "sgwatch_region_last_read_timestamp_seconds",
            "End of the last scan that read the region and all its groups (0: never); older than the last "
            "scan: its series above are the last known values",
            labels=["account", "region"],
        )
        for (account, region), when in sorted(last.regions.items()):
            read.add_metric([account, region], when)
        yield read

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
