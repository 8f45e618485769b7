"""``sgwatch run``: scan on a schedule, keep state, serve metrics, notify, reload, stop cleanly.

One scan at a time (APScheduler ``max_instances=1``): a scan that overruns its slot makes the
scheduler skip the next run and count it, never stack another. The scan itself is bounded by
the SDK's per-call timeouts and the scan deadline, since APScheduler has no job timeout.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import ValidationError

from sgwatch import baseline as baseline_file
from sgwatch import config as config_file
from sgwatch import logs, timestamps, validation
from sgwatch.bulk import gc_paused
from sgwatch.core import reach
from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.model import Baseline
from sgwatch.core.reuse import Reuse
from sgwatch.errors import AuthError, InputError, SgwatchError
from sgwatch.listen import ListenAddress, parse_listen
from sgwatch.metrics import ScanSummary, Telemetry, registry_for
from sgwatch.server import Server
from sgwatch.sources.live_settings import LiveSettings
from sgwatch.sources.parsecache import ParseCache
from sgwatch.state import FindingLife, ScanRecord, State, StateWriteError

log = structlog.get_logger("sgwatch.daemon")
SHUTDOWN_GRACE_SECONDS = 8.0  # SIGTERM to exit within 10 s, in-flight scan included
WATCH_SECONDS = 5.0
DELIVER_SECONDS = 15.0

_SCHEDULER_EVENTS = {EVENT_JOB_ERROR: "error", EVENT_JOB_MISSED: "missed", EVENT_JOB_MAX_INSTANCES: "max_instances"}

Clock = Callable[[], datetime]
Scanner = Callable[[config_file.Config], Any]  # returns a Snapshot; injected by tests


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Where the daemon's inputs are, and the flags that override the config file."""

    config_path: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Loaded:
    config: config_file.Config
    baseline: Baseline
    files: dict[Path, float]  # watched files and their mtimes


def load(options: RunOptions) -> Loaded:
    """Config, then flags on top, then the baseline it names. Raises InputError with one line."""
    cfg = config_file.load(options.config_path)
    if options.overrides:
        try:
            cfg = config_file.Config.model_validate({**cfg.model_dump(), **options.overrides})
        except ValidationError as exc:
            lines = validation.describe(exc, lambda loc: f"--{str(loc[0]).replace('_', '-')}" if loc else "flags")
            raise InputError("\n".join(lines)) from None
    if cfg.baseline is None:
        raise SgwatchError("no baseline: give --baseline PATH or `baseline:` in the config")
    with gc_paused():
        desired = baseline_file.load(cfg.baseline, cfg.limits.max_input_bytes)
    return Loaded(cfg, desired, _watched(options, cfg))


@dataclass(frozen=True, slots=True)
class Built:
    """What the daemon and the one-shot commands build from a config, each part checked."""

    live: LiveSettings
    channels: list[Any]  # sgwatch.alerting.AnyChannel; kept Any so offline commands skip that import
    checks: CheckSettings
    listen: ListenAddress


def build(cfg: config_file.Config) -> Built:
    """Everything ``run`` and ``report`` build from ``cfg``; InputError (one line per problem) if any
    of it would fail later: the scan settings and endpoint, channels, checks, listen address, state."""
    live = cfg.live()
    live.resolved_endpoint()  # SGWATCH_ECS_ENDPOINT too, when the config names no endpoint
    channels: list[Any] = []
    if cfg.notifications:
        from sgwatch.alerting import parse_channels

        channels = parse_channels(cfg.notifications)
    check_state_path(cfg.state)
    return Built(live, channels, cfg.checks.to_settings(), parse_listen(cfg.listen))


def check_state_path(path: Path) -> None:
    """Whether the state file can be opened, or created with its folders, without creating anything."""
    try:
        if path.exists():
            if not path.is_file():
                raise InputError(f"{path}: the state path is not a file; check --state")
            if not os.access(path, os.R_OK | os.W_OK):
                raise InputError(f"{path}: the state file is not writable; check --state or its permissions")
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise InputError(f"{path}: cannot create the state file ({folder} is not a directory); check --state")
        # SQLite's WAL and journal files go next to the state file: its folder must be writable.
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"{path}: cannot create the state file ({folder} is not writable); check --state")
    except OSError as exc:  # a name too long, a permission denied on the way
        raise InputError(
            f"{str(path)[:200]}: cannot use the state path ({exc.strerror or exc}); check --state"
        ) from None


def _watched(options: RunOptions, cfg: config_file.Config) -> dict[Path, float]:
    """The config file and every baseline file, with their modification times."""
    try:
        files = baseline_file.files_of(cfg.baseline) if cfg.baseline else []
    except SgwatchError:
        files = []  # the folder is gone or empty: that is a change, and reload will say what is wrong
    paths = [*files, *([options.config_path] if options.config_path else [])]
    return {p: _mtime(p) for p in paths}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def live_snapshot(cfg: config_file.Config, cache: ParseCache | None = None) -> Any:
    from sgwatch.sources import live
    from sgwatch.sources.snapshot import parse_scan

    raw = live.scan(cfg.live())
    with gc_paused():
        return raw, parse_scan(raw, cache=cache)


class Daemon:
    def __init__(
        self,
        options: RunOptions,
        *,
        clock: Clock = utcnow,
        scanner: Callable[[config_file.Config], Any] | None = None,
    ) -> None:
        self.options = options
        self.clock = clock
        # What the last scan worked out, reused for the groups whose answers and inputs are unchanged.
        self.reuse = Reuse()
        self.scanner = scanner or partial(live_snapshot, cache=ParseCache())
        self.loaded = load(options)
        cfg = self.loaded.config
        logs.register_secret(*config_file.secrets(cfg))
        built = build(cfg)
        self.state = State(cfg.state)
        self.telemetry = Telemetry(interval=cfg.interval)
        # The state outlives the process: a restart neither resets these to "never" nor hides their age.
        for attr, moment in (
            ("last_success", self.state.last_success()),
            ("last_complete", self.state.last_success(complete=True)),
        ):
            setattr(self.telemetry, attr, moment.timestamp() if moment else None)
        self.server = Server(cfg.listen, registry_for(self.telemetry), self.health, self.ready)
        self.scheduler = BlockingScheduler(
            timezone=UTC,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": max(1, int(cfg.interval))},
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self.scan_attempted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = threading.Event()
        self._notify_lock = threading.Lock()
        self._alert_db: Any = None  # the notifier's own connection to the state file, opened once
        self._sent_before: Counter[tuple[str, str]] = Counter()  # by notifiers a reload replaced
        self.notifier = self._notifier(built.channels)

    # -- scheduling ----------------------------------------------------------------------------
    def _schedule(self, cfg: config_file.Config, first: bool) -> None:
        jitter = cfg.jitter if cfg.jitter is not None else min(30.0, cfg.interval / 10)
        trigger = IntervalTrigger(seconds=cfg.interval, jitter=int(jitter) or None, timezone=UTC)
        if first:
            self.scheduler.add_job(self.scan, trigger, id="scan", name="scan", next_run_time=self.clock())
            self.scheduler.add_job(self.watch, IntervalTrigger(seconds=WATCH_SECONDS), id="watch", name="watch")
            if self.notifier is not None:
                self.scheduler.add_job(self.deliver, IntervalTrigger(seconds=DELIVER_SECONDS), id="deliver")
        else:
            self.scheduler.reschedule_job("scan", trigger=trigger)
        self.scheduler.modify_job("scan", misfire_grace_time=max(1, int(cfg.interval)))

    def _on_event(self, event: JobEvent) -> None:
        kind = _SCHEDULER_EVENTS.get(event.code, "other")
        with self.telemetry.lock:
            self.telemetry.scheduler[kind] += 1
        # `event` is structlog's own name for the message: the key must be another.
        detail: dict[str, Any] = {"scheduler_event": kind, "job": event.job_id}
        exception = getattr(event, "exception", None)  # a JobExecutionEvent of EVENT_JOB_ERROR
        if exception is not None:
            detail["error"] = f"{type(exception).__name__}: {exception}"
        log.warning("scheduler event", **detail)

    # -- the scan ------------------------------------------------------------------------------
    def scan(self) -> None:
        if self._stopping.is_set():
            return
        self._idle.clear()
        scan_id = uuid.uuid4().hex[:12]
        structlog.contextvars.bind_contextvars(scan_id=scan_id)
        started, t0 = self.clock(), time.monotonic()
        loaded = self.loaded
        try:
            log.info("scan started")
            raw, snap = self.scanner(loaded.config)
            self.telemetry.add_stats(raw.stats)
            with gc_paused():
                report = assess(loaded.baseline, snap, loaded.config.checks.to_settings(), self.clock(), self.reuse)
            scope = snap.regions | set(snap.scope or ()) | {(e.account, e.region) for e in snap.errors}
            self._finish(scan_id, started, time.monotonic() - t0, report, scope)
        except (AuthError, SgwatchError) as exc:
            self._failed(scan_id, started, time.monotonic() - t0, str(exc))
        except Exception as exc:  # a bug must not kill the daemon; the next scan tries again
            log.exception("scan crashed")
            self._failed(scan_id, started, time.monotonic() - t0, f"{type(exc).__name__}: {exc}")
        finally:
            self.scan_attempted.set()
            structlog.contextvars.unbind_contextvars("scan_id")
            self._idle.set()

    def _finish(
        self, scan_id: str, started: datetime, duration: float, report: Report, scope: set[tuple[str, str]]
    ) -> None:
        """Record a scan that produced a report. A StateWriteError here makes it a failed scan."""
        now = self.clock()
        result = "complete" if report.complete else "incomplete"
        before = self.state.open_findings()
        lives = self.state.record(report, now, scope, ScanRecord(scan_id, started, duration, result))
        exposed = self._record_exposed(report, now)
        for f in report.findings:
            if f.id not in before:
                log.warning(
                    "drift detected",
                    finding=f.id,
                    severity=f.severity,
                    kind=f.kind,
                    account=f.account,
                    region=f.region,
                    security_group_id=f.security_group_id,
                    message=f.message,
                )
        for fid, life in before.items():
            if fid not in lives:
                log.info("drift resolved", finding=fid, security_group_id=life.data.get("security_group_id"))
        for e in report.errors:
            log.warning(
                "could not read",
                account=e.account,
                region=e.region,
                security_group_id=e.security_group_id or None,
                code=e.code,
                message=e.message,
            )
        reads = self.state.regions_read()
        # An account whose region list was unread (region ""): every region known of it is stale.
        covered = {k for k in scope if k[1]} | {k for k in reads if (k[0], "") in scope}
        with self.telemetry.lock:
            summary = ScanSummary.of(
                report,
                now.timestamp(),
                duration,
                open_findings={fid: life.data for fid, life in lives.items()},
                previous=self.telemetry.last,
                regions={k: reads[k].timestamp() if k in reads else 0.0 for k in covered},
            )
            self.telemetry.last = summary
            self.telemetry.last_success = now.timestamp()
            if report.complete:
                self.telemetry.last_complete = now.timestamp()
            self.telemetry.scan_ended(result, duration)
        log.info(
            "scan finished",
            result=result,
            duration_seconds=round(duration, 3),
            groups=report.groups,
            findings=len(report.findings),
            **{f"findings_{k}": v for k, v in report.counts().items() if v},
            errors=len(report.errors),
        )
        self._notify({**lives, **exposed}, now)

    def _record_exposed(self, report: Report, now: datetime) -> dict[str, FindingLife]:
        """Membership drift: interfaces reachable at high or critical, against the last scans, not the baseline."""
        before = self.state.open_exposed()
        facts = reach.exposed_interfaces(report, self.loaded.config.checks.to_settings(), self.loaded.baseline.accepted)
        lives = self.state.record_exposed(facts, reach.judged_regions(report), now)
        for fact in facts:
            if fact.id not in before:
                log.warning(
                    "interface exposed",
                    fact=fact.id,
                    severity=fact.severity,
                    account=fact.account,
                    region=fact.region,
                    interface_id=fact.interface_id,
                    instance_id=fact.instance_id,
                    message=fact.describe(),
                )
        for fid, life in before.items():
            if fid not in lives:
                log.info("interface no longer exposed", fact=fid, interface_id=life.data.get("interface_id"))
        with self.telemetry.lock:
            self.telemetry.exposed_interfaces = Counter(str(life.data.get("severity")) for life in lives.values())
        return lives

    def _failed(self, scan_id: str, started: datetime, duration: float, message: str) -> None:
        # Counted before anything that can fail again (the state write, on a full disk): the
        # counter is what the alert rules see.
        with self.telemetry.lock:
            self.telemetry.scan_ended("failed", duration)
        log.error("scan failed", error=message, duration_seconds=round(duration, 3))
        try:
            self.state.add_scan(
                scan_id=scan_id, started=started, duration=duration, result="failed", report=None, message=message
            )
        except StateWriteError as exc:
            log.error("scan history not written", error=str(exc))

    # -- notifications -------------------------------------------------------------------------
    def _notifier(self, channels: list[Any]) -> Any:
        if not channels:
            return None
        from sgwatch.alerting import build_notifier, open_database

        if self._alert_db is None:
            self._alert_db = open_database(self.state.path)
        return build_notifier(channels, self._alert_db, self.clock)

    def _notify(self, lives: dict[str, Any], now: datetime) -> None:
        if self.notifier is None:
            return
        active = [{**life.data, "first_seen": timestamps.iso(life.first_seen)} for life in lives.values()]
        with self._notify_lock:
            try:
                # `lives` comes from the state, which keeps the findings of unread groups open,
                # so a region that failed to scan does not read as resolved here either.
                self.notifier.process(active, now)
            except Exception:  # the outbox keeps what it queued; the next scan tries again
                log.exception("notification pass failed")
        self.deliver()

    def deliver(self) -> None:
        """Post what is due in the outbox (also every few seconds, so a receiver back up hears soon)."""
        if self.notifier is None:
            return
        with self._notify_lock:
            try:
                self.notifier.deliver_pending(self.clock())
                stats = self.notifier.stats()
            except Exception:
                log.exception("notification delivery failed")
                return
        with self.telemetry.lock:
            # Every (channel, result) from the start, zeros included, so increase() sees the first failure.
            self.telemetry.notifications = Counter(
                {(ch, res): n + self._sent_before[ch, res] for ch, res, n in stats.samples()}
            )
            self.telemetry.outbox_pending = stats.pending()

    # -- reload --------------------------------------------------------------------------------
    def watch(self) -> None:
        """Reload when a watched file changed, appeared or went (a ConfigMap update, a git pull)."""
        if _watched(self.options, self.loaded.config) != self.loaded.files:
            self.reload("file changed")

    def reload(self, why: str) -> None:
        """Rebuild all the config defines, or keep the last good config and say why."""
        try:
            fresh = load(self.options)
            built = build(fresh.config)  # refuse what the next scan or notification would fail on
        except SgwatchError as exc:
            # Keep the last good config; record what is on disk now so a bad file is reported once.
            self.loaded = Loaded(self.loaded.config, self.loaded.baseline, _watched(self.options, self.loaded.config))
            log.error("reload failed, keeping the last good config", reason=why, error=str(exc))
            self.telemetry.reloaded(ok=False)
            return
        old, new = self.loaded.config, fresh.config
        logs.register_secret(*config_file.secrets(new))
        if new.notifications != old.notifications:
            self._replace_notifier(built.channels)
        # Scan settings, endpoint, accounts, regions and checks are read from the config at each scan.
        self.loaded = fresh
        if (new.interval, new.jitter) != (old.interval, old.jitter):
            self.telemetry.interval = new.interval
            self._schedule(new, first=False)
        if new.log_level != old.log_level and "log_level" not in self.options.overrides:
            logging.getLogger().setLevel(new.log_level.upper())
        for key in ("listen", "state"):
            if getattr(new, key) != getattr(old, key):
                log.warning(
                    f"{key} changed: takes effect at the next restart",
                    reason=why,
                    running=str(getattr(old, key)),
                    configured=str(getattr(new, key)),
                )
        self.telemetry.reloaded(ok=True)
        log.info(
            "reloaded",
            reason=why,
            groups=len(fresh.baseline.groups),
            interval=new.interval,
            channels=[c.name for c in built.channels],
        )

    def _replace_notifier(self, channels: list[Any]) -> None:
        """New channels from now on; the outbox keeps what the old ones queued (same state file)."""
        with self._notify_lock:
            if self.notifier is not None:
                # Counters stay counters: what the replaced notifier sent is carried into the new one's.
                for ch, res, n in self.notifier.stats().samples():
                    self._sent_before[ch, res] += n
            self.notifier = self._notifier(channels)
        if self.notifier is not None and self.scheduler.get_job("deliver") is None and self.scheduler.running:
            self.scheduler.add_job(self.deliver, IntervalTrigger(seconds=DELIVER_SECONDS), id="deliver")

    # -- probes ----------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        alive = self.scheduler.running and not self._stopping.is_set()
        return alive, {"scheduler": "running" if alive else "stopped"}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready to be scraped: config and baseline loaded, a first scan attempted.

        Not whether scans succeed: readiness gates the Service's endpoints, so an unready pod
        would hide the very metrics that make failing scans alert. The detail says how they go.
        """
        attempted = self.scan_attempted.is_set()
        with self.telemetry.lock:
            last_result, last_success = self.telemetry.last_result, self.telemetry.last_success
        return attempted and not self._stopping.is_set(), {
            "baseline_groups": len(self.loaded.baseline.groups),
            "first_scan_attempted": attempted,
            "last_scan": last_result,
            "last_successful_scan": timestamps.iso(datetime.fromtimestamp(last_success, UTC)) if last_success else None,
        }

    # -- life cycle ------------------------------------------------------------------------------
    def _signal(self, signum: int, _: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload("SIGHUP")
            return
        log.info("stopping", signal=signal.Signals(signum).name)
        self._stopping.set()
        self.scheduler.shutdown(wait=False)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        self.server.start()
        self._schedule(self.loaded.config, first=True)
        log.info(
            "sgwatch started",
            listen=f"{self.loaded.config.listen}",
            port=self.server.port,
            interval=self.loaded.config.interval,
            baseline_groups=len(self.loaded.baseline.groups),
        )
        self.scheduler.start()  # blocks until a signal shuts the scheduler down
        finished = self._idle.wait(SHUTDOWN_GRACE_SECONDS)
        self.server.stop()
        if not finished:
            # The scan's threads are still in SDK calls; nothing of this scan has been written.
            log.warning("abandoning the in-flight scan")
            logs.flush()
            os._exit(0)
        self.state.close()
        log.info("stopped")
        return 0
