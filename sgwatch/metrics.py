"""Prometheus metrics, built fresh at every scrape from the last completed scan.

A custom collector on a private registry: nothing is kept as a labelled gauge between scans,
so when a group is deleted or a drift is fixed its series simply stop being exposed. What a
scan could not read is not clean: it keeps its last known values, dated by
``sgwatch_region_last_read_timestamp_seconds``. Counters (scans, API requests, retries,
scheduler events, reloads, notifications) and the histograms of API call and scan durations
accumulate here; the standard process and Python collectors share the registry.
"""

from __future__ import annotations

import platform
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, get_args

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from sgwatch import __version__
from sgwatch.core.checks import RANK, SEVERITIES
from sgwatch.core.findings import Finding, Report
from sgwatch.core.reach import ALERTED
from sgwatch.sharding import UNSHARDED, Shard
from sgwatch.sources.raw import Action, ScanStats
from sgwatch.state import Unread

KINDS = ("group_added", "group_removed", "group_changed", "rule_added", "rule_removed", "rule_changed")
SCAN_RESULTS = ("complete", "incomplete", "failed")
SCHEDULER_EVENTS = ("error", "missed", "max_instances")
RELOAD_RESULTS = ("ok", "failed")
# One ECS call: tens of milliseconds in region, up to the connect + read timeouts (5 s + 10 s).
API_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
# One scan: seconds for a small estate, up to the scan deadline (900 s by default).
SCAN_DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0)


def _histogram(name: str, doc: str, label: str, values: Iterable[str], buckets: tuple[float, ...]) -> Histogram:
    """A histogram of one bounded label, every value of it served from the start (zeros), so
    rate() sees the first observation."""
    hist = Histogram(name, doc, [label], buckets=buckets, registry=None)
    for value in values:
        hist.labels(value)
    return hist


def _api_latency() -> Histogram:
    return _histogram(
        "sgwatch_api_request_duration_seconds",
        "Duration of one ECS API attempt (each retry is one), by action",
        "action",
        get_args(Action),
        API_LATENCY_BUCKETS,
    )


def _scan_duration() -> Histogram:
    return _histogram(
        "sgwatch_scan_duration_seconds", "Duration of a scan, by result", "result", SCAN_RESULTS, SCAN_DURATION_BUCKETS
    )


# Targeted re-reads (sgwatch.events), per group or interface read: applied, confirmed deleted,
# failed (left as it was), or dropped by the queue's bounds.
REREAD_RESULTS = ("ok", "gone", "failed", "dropped")
# From a change to its alert: seconds when EventBridge pushes events, minutes when they are
# pulled from ActionTrail (queryable about 10 minutes after the call).
CHANGE_TO_ALERT_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)


@dataclass
class EventTelemetry:
    """Change events (sgwatch.events): re-reads by result, and how long a change takes to alert."""

    rereads: Counter[str] = field(default_factory=Counter)
    change_to_alert: Histogram = field(
        default_factory=lambda: Histogram(
            "sgwatch_change_to_alert_seconds",
            "From a change's event time (ActionTrail eventTime) to its notification being enqueued",
            buckets=CHANGE_TO_ALERT_BUCKETS,
            registry=None,
        )
    )
    arrival_to_alert: Histogram = field(
        default_factory=lambda: Histogram(
            "sgwatch_event_arrival_to_alert_seconds",
            "From a change event's arrival at sgwatch to its notification being enqueued",
            buckets=CHANGE_TO_ALERT_BUCKETS,
            registry=None,
        )
    )

    def collect(self) -> Iterator[Metric]:
        rereads = CounterMetricFamily(
            "sgwatch_event_rereads", "Targeted re-reads of groups and interfaces, by result", labels=["result"]
        )
        for result in REREAD_RESULTS:
            rereads.add_metric([result], self.rereads[result])
        yield rereads
        yield from self.change_to_alert.collect()
        yield from self.arrival_to_alert.collect()


class Fragment(NamedTuple):
    """One new exposure as the engine reports it: a port run of one rule's effect."""

    place: tuple[str, str, str]  # (account, region, security group)
    direction: str
    family: str
    protocol: str
    severity: str
    from_port: int
    to_port: int


def count_exposures(fragments: Iterable[Fragment]) -> Counter[str]:
    """New exposures by severity, counted as a user counts them.

    The engine cuts an exposure into port runs wherever the rules under it differ (the peers
    that already reached one port, the finding each run is attributed to), so one removed
    egress drop reads as several. Here a group's runs of one direction, family, protocol and
    severity that touch or overlap are one exposure; a gap (ports that were open before) keeps
    two runs apart.
    """
    runs: dict[tuple[Any, ...], list[tuple[int, int]]] = defaultdict(list)
    for f in fragments:
        runs[(f.place, f.direction, f.family, f.protocol, f.severity)].append((f.from_port, f.to_port))
    counts: Counter[str] = Counter()
    for key, spans in runs.items():
        end: int | None = None
        for low, high in sorted(spans):
            if end is None or low > end + 1:
                counts[key[-1]] += 1
                end = high
            else:
                end = max(end, high)
    return counts


class _Facts(NamedTuple):
    """What the gauges need of one finding, from a Finding or from the JSON form the state keeps."""

    severity: str
    kind: str
    place: tuple[str, str, str]  # (account, region, security group)
    exposures: tuple[Fragment, ...]  # its new, graded exposures

    @classmethod
    def of(cls, f: Finding) -> _Facts:
        place = (f.account, f.region, f.security_group_id)
        return cls(
            f.severity,
            f.kind,
            place,
            tuple(
                Fragment(place, e.direction, e.family, e.protocol, e.severity, e.from_port, e.to_port)
                for e in f.new_exposures
                if e.severity
            ),
        )

    @classmethod
    def kept(cls, data: Mapping[str, Any]) -> _Facts:
        place = (data["account"], data["region"], data["security_group_id"])
        return cls(
            data["severity"],
            data["kind"],
            place,
            tuple(
                Fragment(place, e["direction"], e["family"], e["protocol"], e["severity"], e["from_port"], e["to_port"])
                for e in data.get("new_exposures", ())
                if e.get("severity")
            ),
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
    new_exposures: Counter[str]  # severity -> exposures (count_exposures)
    posture: tuple[PostureRow, ...]
    groups: Counter[tuple[str, str, str, str]]  # (account, region, sg, severity) -> findings of that severity
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
        return cls(
            finished_at=finished_at,
            duration=duration,
            complete=report.complete,
            findings=Counter((f.severity, f.kind) for f in facts),
            new_exposures=count_exposures(e for f in facts for e in f.exposures),
            posture=tuple(posture),
            groups=Counter((*f.place, f.severity) for f in facts),
            errors=Counter((e.account, e.region) for e in report.errors),
            regions=dict(regions or {}),
        )


EVENT_RESULTS = ("accepted", "ignored", "rejected", "duplicate")
# The answers of the events listener; others (431, 501, 500) are served as they occur.
EVENT_HTTP_CODES = ("202", "400", "401", "404", "405", "413", "429", "503")


@dataclass(slots=True)
class EventCounts:
    """Change events received (sgwatch.events.intake) and the events listener's answers."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: Counter[str] = field(default_factory=Counter)  # by EVENT_RESULTS
    answers: Counter[str] = field(default_factory=Counter)  # HTTP status code

    def add(self, result: str, n: int = 1) -> None:
        if n:
            with self.lock:
                self.received[result] += n

    def answered(self, code: int) -> None:
        with self.lock:
            self.answers[str(code)] += 1

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            received = CounterMetricFamily(
                "sgwatch_events_received", "Change events received, by result", labels=["result"]
            )
            for result in EVENT_RESULTS:  # every result from the start, so increase() sees the first one
                received.add_metric([result], self.received[result])
            yield received
            answers = CounterMetricFamily(
                "sgwatch_events_http_requests", "Requests to the events listener, by HTTP status", labels=["code"]
            )
            for code in sorted(set(EVENT_HTTP_CODES) | set(self.answers)):
                answers.add_metric([code], self.answers[code])
            yield answers


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
    exposed_interfaces: Counter[str] | None = None  # open facts by severity (sgwatch.core.reach); None: no scan yet
    reloads: Counter[str] = field(default_factory=Counter)
    last_reload_ok: bool = True  # the start's load succeeded, or there would be no daemon
    api_latency: Histogram = field(default_factory=_api_latency)
    scan_duration: Histogram = field(default_factory=_scan_duration)
    events: EventCounts = field(default_factory=EventCounts)
    reread: EventTelemetry = field(default_factory=EventTelemetry)

    def add_stats(self, stats: ScanStats) -> None:
        with self.lock:
            self.api_requests.update(stats.requests)
            self.api_retries += stats.retries
        # The histogram has its own lock: a scrape need not wait for a large scan's thousands.
        for action, seconds in stats.latencies:
            self.api_latency.labels(action).observe(seconds)

    def scan_ended(self, result: str, duration: float) -> None:
        """Count a scan of any result; the caller holds ``lock``."""
        self.scans[result] += 1
        self.last_duration = duration
        self.last_result = result
        self.scan_duration.labels(result).observe(duration)

    def reloaded(self, ok: bool) -> None:
        with self.lock:
            self.reloads["ok" if ok else "failed"] += 1
            self.last_reload_ok = ok


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
            yield from t.api_latency.collect()
            yield from t.scan_duration.collect()
            yield from t.events.collect()
            yield from t.reread.collect()

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
        yield GaugeMetricFamily(
            "sgwatch_drifted_groups", "Groups with at least one finding", value=len({k[:3] for k in last.groups})
        )
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
        # One series per group and severity it has findings of, counting those: summed by
        # severity it equals sgwatch_findings summed by severity. No zeros: a drifted group would
        # cost a series per severity, and `> 0` selects the same series either way.
        per_group = GaugeMetricFamily(
            "sgwatch_group_drift_findings",
            "Findings of a drifted group, by severity",
            labels=["account", "region", "security_group_id", "severity"],
        )
        for labels, count in sorted(last.groups.items()):
            per_group.add_metric(list(labels), count)
        yield per_group
        # Every (account, region) the scan covered, zeros included, as sgwatch_findings: an
        # alert on `> 0` resolves on a 0, and `absent()` means no scan, not no error.
        errors = GaugeMetricFamily(
            "sgwatch_scan_errors", "Unreadable regions or groups in the last scan", labels=["account", "region"]
        )
        for account, region in sorted(last.regions.keys() | last.errors.keys()):
            errors.add_metric([account, region], last.errors[(account, region)])
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
        reloads = CounterMetricFamily(
            "sgwatch_config_reloads", "Reloads of the config and baseline, by result", labels=["result"]
        )
        for result in RELOAD_RESULTS:
            reloads.add_metric([result], t.reloads[result])
        yield reloads
        # What alerts: the counter cannot tell whether the last reload failed, this can.
        yield GaugeMetricFamily(
            "sgwatch_config_last_reload_successful",
            "1 unless the last reload failed (the daemon then runs on the last good config)",
            value=1 if t.last_reload_ok else 0,
        )
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
        if t.exposed_interfaces is not None:
            # From the state, not the last scan: an unread region keeps its interfaces counted.
            exposed = GaugeMetricFamily(
                "sgwatch_exposed_interfaces",
                "Interfaces the internet reaches on a high or critical exposure (one per interface and ports)",
                labels=["severity"],
            )
            for severity in sorted(ALERTED, key=RANK.__getitem__):
                exposed.add_metric([severity], t.exposed_interfaces[severity])
            yield exposed


class ShardCollector(Collector):
    """sgwatch's own series as one replica of a sharded deployment serves them.

    ``sgwatch_total_shards`` says how many shards there should be, so a rule can count the
    shards that report (``SgwatchShardMissing``). Sharded (more than one shard), every sample of
    the wrapped collector carries ``shard="N"``: two shards' series never collide, and an HA pair
    of one shard serves the same series twice, which ``max by`` / Alertmanager fold into one.
    Unsharded, the series are the wrapped collector's own, unchanged.
    """

    def __init__(self, inner: Collector, shard: Shard) -> None:
        self.inner = inner
        self.shard = shard

    def collect(self) -> Iterator[Metric]:
        total = GaugeMetricFamily(
            "sgwatch_total_shards", "Shards the deployment is split into (--total-shards)", value=self.shard.total
        )
        if not self.shard.sharded:
            yield total
            yield from self.inner.collect()
            return
        label = str(self.shard.index)
        for family in (total, *self.inner.collect()):
            family.samples = [sample._replace(labels={**sample.labels, "shard": label}) for sample in family.samples]
            yield family


def registry_for(telemetry: Telemetry, shard: Shard = UNSHARDED) -> CollectorRegistry:
    """The daemon's registry: sgwatch's own series and the standard process_*, python_* ones."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShardCollector(SgwatchCollector(telemetry), shard))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
