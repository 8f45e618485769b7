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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

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

from sgwatch import config as config_file
from sgwatch import desired as desired_state
from sgwatch import logs, timestamps, validation
from sgwatch.bulk import gc_paused
from sgwatch.core import reach
from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.model import Baseline
from sgwatch.core.reuse import Reuse
from sgwatch.errors import AuthError, InputError, SgwatchError
from sgwatch.events import attribution, reassess
from sgwatch.events.handler import Batch, EventHandler
from sgwatch.events.intake import Accepted, Handler, Intake
from sgwatch.events.listener import EventsServer
from sgwatch.listen import ListenAddress, parse_listen
from sgwatch.metrics import ScanSummary, Telemetry, registry_for
from sgwatch.server import Server
from sgwatch.sources.live_settings import AccountSettings, LiveSettings
from sgwatch.sources.parsecache import ParseCache
from sgwatch.state import FindingLife, ScanRecord, State, StateWriteError

if TYPE_CHECKING:
    from sgwatch.events.model import ChangeEvent
    from sgwatch.events.poller import Poller

log = structlog.get_logger("sgwatch.daemon")
SHUTDOWN_GRACE_SECONDS = 8.0  # SIGTERM to exit within 10 s, in-flight scan included
WATCH_SECONDS = 5.0
DELIVER_SECONDS = 15.0
SUMMARY_SECONDS = 10.0  # the gauges lag change events by at most this

_SCHEDULER_EVENTS = {EVENT_JOB_ERROR: "error", EVENT_JOB_MISSED: "missed", EVENT_JOB_MAX_INSTANCES: "max_instances"}

Clock = Callable[[], datetime]
Scanner = Callable[[config_file.Config], Any]  # returns a Snapshot; injected by tests
UidLearner = Callable[[AccountSettings], str]  # an account's UID (STS GetCallerIdentity); injected


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


def _flag_of(loc: validation.Loc) -> str:
    """The command-line flag a config key came from, for an error line."""
    if not loc:
        return "flags"
    if loc[0] == "sharding":
        return "--shard/--total-shards"
    return f"--{str(loc[0]).replace('_', '-')}"


def load(options: RunOptions) -> Loaded:
    """Config, then flags on top, then the baseline it names. Raises InputError with one line."""
    cfg = config_file.load(options.config_path)
    if options.overrides:
        try:
            merged = {**cfg.model_dump(), **options.overrides}
            if "sharding" in options.overrides:  # --shard without --total-shards keeps the config's total
                merged["sharding"] = {**cfg.sharding.model_dump(), **options.overrides["sharding"]}
            cfg = config_file.Config.model_validate(merged)
        except ValidationError as exc:
            lines = validation.describe(exc, _flag_of)
            raise InputError("\n".join(lines)) from None
    if cfg.baseline is None:
        raise SgwatchError("no baseline: give --baseline PATH or `baseline:` in the config")
    with gc_paused():
        desired = desired_state.from_config(cfg)
    return Loaded(cfg, desired, _watched(options, cfg))


@dataclass(frozen=True, slots=True)
class Built:
    """What the daemon and the one-shot commands build from a config, each part checked."""

    live: LiveSettings
    channels: list[Any]  # sgwatch.alerting.AnyChannel; kept Any so offline commands skip that import
    checks: CheckSettings
    listen: ListenAddress
    events_listen: ListenAddress | None = None  # POST /events (EventBridge), when events.listen is set


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
    listen = parse_listen(cfg.listen)
    return Built(live, channels, cfg.checks.to_settings(), listen, _events_listen(cfg, listen))


def _events_listen(cfg: config_file.Config, listen: ListenAddress) -> ListenAddress | None:
    """events.listen, refused if it is /metrics' own address (it must be apart: it may face EventBridge)."""
    if cfg.events.listen is None:
        return None
    events = parse_listen(cfg.events.listen)
    wildcard = {"", "0.0.0.0", "::"}
    if (
        events.port
        and events.port == listen.port
        and (events.host == listen.host or {events.host, listen.host} & wildcard)
    ):
        raise InputError(f"events.listen {events} overlaps listen {listen}: give the events listener a port of its own")
    return events


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
        files = desired_state.files(cfg.baselines())
    except SgwatchError:
        files = []  # the folder is gone or empty: that is a change, and reload will say what is wrong
    paths = [*files, *([options.config_path] if options.config_path else [])]
    return {p: _mtime(p) for p in paths}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def scan_interval(cfg: config_file.Config) -> float:
    """Seconds between full scans: with change events on, they are the safety net, run seldom."""
    return float(cfg.events.full_scan_interval) if cfg.events.enabled else float(cfg.interval)


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
        event_handler: Handler | None = None,
        uid_learner: UidLearner | None = None,
    ) -> None:
        self.options = options
        self.clock = clock
        # What the last scan worked out, reused for the groups whose answers and inputs are unchanged.
        self.reuse = Reuse()
        self.scanner = scanner or partial(live_snapshot, cache=ParseCache())
        # events name accounts by UID: learn the ones the config does not give, through STS
        self.uid_learner = uid_learner if uid_learner is not None else self._caller_uid
        self.loaded = load(options)
        cfg = self.loaded.config
        logs.register_secret(*config_file.secrets(cfg))
        built = build(cfg)
        self.state = State(cfg.state)
        self.telemetry = Telemetry(interval=scan_interval(cfg))
        # The state outlives the process: a restart neither resets these to "never" nor hides their age.
        for attr, moment in (
            ("last_success", self.state.last_success()),
            ("last_complete", self.state.last_success(complete=True)),
        ):
            setattr(self.telemetry, attr, moment.timestamp() if moment else None)
        self.server = Server(cfg.listen, registry_for(self.telemetry, cfg.sharding.to_shard()), self.health, self.ready)
        self.scheduler = BlockingScheduler(
            timezone=UTC,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": max(1, int(scan_interval(cfg)))},
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
        # Change events: accepted ones go to event_handler (the targeted re-read plugs in here).
        self.learned_uids: dict[str, str] = {}  # account name -> UID learned at run time (STS)
        self.event_handler: Handler = event_handler or self._reread_accepted
        self.intake = Intake(
            lambda events: self.event_handler(events), self._event_accounts, counts=self.telemetry.events
        )
        self.events_server = self._events_server(cfg, built)
        self.trail_poller = self._trail_poller(cfg)
        self._trail_idle = threading.Event()  # no poll in flight: the state file may close
        self._trail_idle.set()
        # Change events (sgwatch.events): the last full picture, re-judged in part per event.
        self._judge_lock = threading.Lock()  # one writer of the picture, the state and the alerts
        self._last: tuple[Any, Report] | None = None  # (Snapshot, Report) of the last recorded scan
        self._during_scan: list[tuple[Any, Any, frozenset[str]]] | None = None  # re-reads while a scan runs
        self._deferred: list[Batch] = []  # events before any snapshot: read after the first scan
        self._rereader: Any = None
        # the open findings and exposed interfaces after the last record, kept so that a re-read
        # of a few groups reads back only theirs
        self._open: tuple[dict[str, FindingLife], dict[str, FindingLife]] = ({}, {})
        self._summary_due = False  # re-reads changed the report since the gauges were built
        self._summarised = 0.0  # monotonic time the gauges were last built from a re-read
        self.events = EventHandler(self._on_events, self._knows, self._count_rereads)

    # -- scheduling ----------------------------------------------------------------------------
    def _schedule(self, cfg: config_file.Config, first: bool) -> None:
        interval = scan_interval(cfg)
        jitter = cfg.jitter if cfg.jitter is not None else min(30.0, interval / 10)
        trigger = IntervalTrigger(seconds=interval, jitter=int(jitter) or None, timezone=UTC)
        if first:
            self.scheduler.add_job(self.scan, trigger, id="scan", name="scan", next_run_time=self.clock())
            self.scheduler.add_job(self.watch, IntervalTrigger(seconds=WATCH_SECONDS), id="watch", name="watch")
            if self.notifier is not None:
                self.scheduler.add_job(self.deliver, IntervalTrigger(seconds=DELIVER_SECONDS), id="deliver")
            if self.trail_poller is not None:
                self.scheduler.add_job(
                    self.poll_actiontrail,
                    IntervalTrigger(seconds=self.trail_poller.interval),
                    id="actiontrail",
                    name="actiontrail",
                    next_run_time=self.clock(),
                )
            self.scheduler.add_job(self.flush_summary, IntervalTrigger(seconds=SUMMARY_SECONDS), id="events-summary")
        else:
            self.scheduler.reschedule_job("scan", trigger=trigger)
        self.scheduler.modify_job("scan", misfire_grace_time=max(1, int(interval)))

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
        with self._judge_lock:
            self._during_scan = []
        try:
            log.info("scan started")
            raw, snap = self.scanner(loaded.config)
            if not isinstance(loaded.config.accounts, list):
                self.learned_uids = dict(raw.account_uids)
            self.telemetry.add_stats(raw.stats)
            with self._judge_lock:
                # What events re-read while the scan ran is at least as fresh as what it read.
                for request, result, also in self._during_scan or ():
                    snap = reassess.apply(snap, request, result, self._scan_uids(), also).snapshot
                with gc_paused():
                    report = assess(loaded.baseline, snap, loaded.config.checks.to_settings(), self.clock(), self.reuse)
                scope = snap.regions | set(snap.scope or ()) | {(e.account, e.region) for e in snap.errors}
                self._finish(scan_id, started, time.monotonic() - t0, report, scope)
                self._last = (snap, report)
        except (AuthError, SgwatchError) as exc:
            self._failed(scan_id, started, time.monotonic() - t0, str(exc))
        except Exception as exc:  # a bug must not kill the daemon; the next scan tries again
            log.exception("scan crashed")
            self._failed(scan_id, started, time.monotonic() - t0, f"{type(exc).__name__}: {exc}")
        finally:
            with self._judge_lock:
                self._during_scan = None
                deferred, self._deferred = self._deferred, []
            if deferred:
                self.events.requeue(deferred)
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
        # Who made each change, from the events kept, before the findings are recorded and alerted.
        attribution.attribute_report(report, self.state.change_events, before)
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
        self._open = (lives, exposed)
        self._notify({**lives, **exposed}, now)

    def _record_exposed(self, report: Report, now: datetime) -> dict[str, FindingLife]:
        """Membership drift: interfaces reachable at high or critical, against the last scans, not the baseline."""
        before = self.state.open_exposed()
        facts = reach.exposed_interfaces(report, self.loaded.config.checks.to_settings(), self.loaded.baseline.accepted)
        facts = attribution.attribute_facts(facts, self.state.change_events, report.generated_at, before)
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

    # -- the ActionTrail pull path -----------------------------------------------------------------
    def _trail_poller(self, cfg: config_file.Config) -> Poller | None:
        """The LookupEvents poller when ``events.actiontrail`` is on (turning it on takes a restart)."""
        if not cfg.events.actiontrail:
            return None
        from sgwatch.events.poller import Poller

        def sink(account: str, events: Sequence[ChangeEvent]) -> None:
            # the push path's door: dedup against what EventBridge delivered, counts, the handler
            self.intake.take_events(account, events, via="pull")

        return Poller(lambda: self.loaded.config.live(), self.state, sink, self.clock)

    def poll_actiontrail(self) -> None:
        """One poll of every (account, region); a failed one keeps its cursor for the next."""
        if self._stopping.is_set() or self.trail_poller is None or not self.loaded.config.events.actiontrail:
            return
        self._trail_idle.clear()
        try:
            self.trail_poller.poll(self._stopping.is_set)
        finally:
            self._trail_idle.set()

    # -- change events -------------------------------------------------------------------------
    def learn_uids(self) -> None:
        """Each account's UID, once, where the config names none (events name accounts by UID)."""
        if not self.loaded.config.events.enabled or not isinstance(self.loaded.config.accounts, list):
            return  # discovered accounts are named by their UID
        for account in self.loaded.config.live().accounts:
            if account.uid or account.name in self.learned_uids:
                continue
            try:
                self.learned_uids[account.name] = self.uid_learner(account)
            except SgwatchError as exc:
                log.warning(
                    "account UID not learned: its events are not recognised", account=account.name, error=str(exc)
                )

    def _caller_uid(self, account: AccountSettings) -> str:
        from sgwatch.sources import identity

        cfg = self.loaded.config
        # an endpoint override (a VPC endpoint, the emulator) serves STS too, or the learning fails
        # with a warning and the account's events are recognised only by its config uid:
        return identity.caller_uid(account.credentials, cfg.scan, cfg.endpoint, account=account.name)

    def account_uids(self) -> dict[str, str]:
        """{UID: account name} of the configured accounts whose UID is known (config, else learned)."""
        out = {}
        for account in self.loaded.config.live().accounts:
            uid = account.uid or self.learned_uids.get(account.name)
            if uid:
                out[uid] = account.name
        return out

    def _scan_uids(self) -> dict[str, str]:
        # as a full scan reads owners (RawScan.account_uids): the same rules, the same finding ids
        return {a.name: a.uid for a in self.loaded.config.live().accounts if a.uid}

    def _knows(self, account: str, region: str, group_id: str) -> bool:
        last = self._last
        return last is None or (account, region, group_id) in last[0].groups

    def _count_rereads(self, result: str, n: int) -> None:
        with self.telemetry.lock:
            self.telemetry.reread.rereads[result] += n

    def _reader(self, settings: LiveSettings) -> Any:
        from sgwatch.sources.reread import Rereader

        if self._rereader is None or self._rereader.settings != settings:
            self._rereader = Rereader(settings)
        return self._rereader

    def _on_events(self, batch: Batch) -> None:
        """Re-read what ``batch`` names, judge again what it touches, record and alert (the worker)."""
        loaded = self.loaded
        try:  # kept first, so the findings this batch leads to name who made the change
            self.state.record_events(batch.account, [a.event for a in batch.arrivals], self.clock())
        except StateWriteError as exc:
            log.error("change events not kept for attribution", error=str(exc))
        with self._judge_lock:
            if self._last is None:  # no picture yet: the scan under way reads it, or the first one will
                self._deferred.append(batch)
                return
            request = reassess.plan(self._last[0], batch)
        # Outside the lock: a scan may record meanwhile; the answers are applied to what it leaves.
        result = self._reader(loaded.config.live()).read(request)
        self.telemetry.add_stats(result.stats)
        with self._judge_lock:
            assert self._last is not None
            snap, full = self._last
            if self._during_scan is not None:
                self._during_scan.append((request, result, frozenset(batch.members_of)))
            applied = reassess.apply(snap, request, result, self._scan_uids(), batch.members_of, loaded.baseline.groups)
            now = self.clock()
            settings = loaded.config.checks.to_settings()
            with gc_paused():
                partial = assess(loaded.baseline, applied.snapshot, settings, now, only=applied.judge)
            desired = loaded.baseline.groups
            added = len(applied.appeared - desired.keys()) - len(applied.vanished - desired.keys())
            merged = reassess.merge(full, partial, applied.judge, applied.snapshot, added)
            try:
                lives, exposed, fresh, scope = self._record_judged(applied.judge, partial, merged, now)
            except StateWriteError as exc:
                log.error("re-read not recorded", error=str(exc))
                self._count_rereads("failed", len(request.groups))
                return
            self._last = (applied.snapshot, merged)
            self._count_rereads("gone", len(applied.vanished))
            self._count_rereads("ok", len(applied.read) - len(applied.vanished))
            self._count_rereads("failed", len(applied.failed))
            if request.interfaces or request.instances:
                self._count_rereads("failed" if applied.membership_failed else "ok", 1)
            log.info(
                "change events handled",
                account=batch.account,
                region=batch.region,
                events=len(batch.arrivals),
                reread=len(applied.read),
                judged=len(applied.judge),
                failed=len(applied.failed),
                calls=result.calls,
            )
            self._notify({fid: life for fid, life in {**lives, **exposed}.items() if fid in scope}, now, scope)
            if self.notifier is not None and fresh:
                self._observe_latency(batch, fresh)
            # The gauges cost a pass over the whole report: at most every SUMMARY_SECONDS, the
            # rest caught up by the summary job.
            self._summary_due = True
        if time.monotonic() - self._summarised >= SUMMARY_SECONDS and not self.events.queued():
            self.flush_summary()

    def _record_judged(
        self, judged: frozenset[tuple[str, str, str]], partial: Report, merged: Report, now: datetime
    ) -> tuple[dict[str, FindingLife], dict[str, FindingLife], dict[str, FindingLife], set[str]]:
        """Record the judged groups' findings and exposed interfaces, leaving every other one as it
        is; returns all open findings, all open exposed interfaces, what is new among them, and
        the ids judged (open before or after)."""
        kept_lives, kept_exposed = self._open
        attribution.attribute_report(partial, self.state.change_events, kept_lives)
        fresh_lives = self.state.record(partial, now, groups=judged)

        def group_of(life: FindingLife) -> tuple[str, str, str]:
            return (
                str(life.data.get("account")),
                str(life.data.get("region")),
                str(life.data.get("security_group_id")),
            )

        lives = {fid: life for fid, life in kept_lives.items() if group_of(life) not in judged}
        scope = {*(kept_lives.keys() - lives.keys()), *fresh_lives}
        lives.update(fresh_lives)
        # An interface has one group set: every group of a set holding a judged group is judged,
        # so the facts naming a judged group are exactly those this partial report speaks for.
        cfg = self.loaded
        scoped = Report(
            now, partial.groups, exposures=partial.exposures, errors=merged.errors, membership=merged.membership
        )
        facts = reach.exposed_interfaces(scoped, cfg.config.checks.to_settings(), cfg.baseline.accepted)
        facts = attribution.attribute_facts(facts, self.state.change_events, now, kept_exposed)
        candidates = {
            fid
            for fid, life in kept_exposed.items()
            if any(
                (life.data.get("account"), life.data.get("region"), gid) in judged
                for gid in life.data.get("security_group_ids") or ()
            )
        }
        fresh_exposed = self.state.record_exposed(facts, reach.judged_regions(scoped), now, candidates)
        exposed = {fid: life for fid, life in kept_exposed.items() if fid not in candidates}
        exposed.update(fresh_exposed)
        scope |= candidates | fresh_exposed.keys()
        self._open = (lives, exposed)
        with self.telemetry.lock:
            self.telemetry.exposed_interfaces = Counter(str(life.data.get("severity")) for life in exposed.values())
        fresh = {
            fid: life
            for fid, life in {**fresh_lives, **fresh_exposed}.items()
            if fid not in kept_lives and fid not in kept_exposed
        }
        for fid, life in fresh.items():
            log.warning(
                "drift detected from a change event" if fid in fresh_lives else "interface exposed from a change event",
                finding=fid,
                severity=life.data.get("severity"),
                security_group_id=life.data.get("security_group_id"),
            )
        return lives, exposed, fresh, scope

    def flush_summary(self) -> None:
        """The gauges after re-reads: the merged report, dated as the scan it builds on."""
        with self._judge_lock:
            if not self._summary_due or self._last is None:
                return
            self._summary_due = False
            self._summarised = time.monotonic()
            merged, lives, now = self._last[1], self._open[0], self.clock()
        with self.telemetry.lock:
            previous = self.telemetry.last
            self.telemetry.last = ScanSummary.of(
                merged,
                previous.finished_at if previous else now.timestamp(),
                previous.duration if previous else 0.0,
                open_findings={fid: life.data for fid, life in lives.items()},
                previous=previous,
                regions=previous.regions if previous else {},
            )

    def _observe_latency(self, batch: Batch, fresh: dict[str, FindingLife]) -> None:
        """Change to alert, per event that led to a new alert: its time, its arrival, to now."""
        alerted = {str(life.data.get("security_group_id") or "") for life in fresh.values()}
        alerted |= {g for life in fresh.values() for g in life.data.get("security_group_ids") or ()}
        done, now = time.monotonic(), self.clock()
        for arrival in batch.arrivals:
            event = arrival.event
            if event.touches == "group" and not alerted & set(event.targets.security_group_ids):
                continue
            self.telemetry.reread.change_to_alert.observe(max(0.0, (now - event.event_time).total_seconds()))
            self.telemetry.reread.arrival_to_alert.observe(max(0.0, done - arrival.received))

    # -- notifications -------------------------------------------------------------------------
    def _notifier(self, channels: list[Any]) -> Any:
        if not channels:
            return None
        from sgwatch.alerting import build_notifier, open_database

        if self._alert_db is None:
            self._alert_db = open_database(self.state.path)
        return build_notifier(channels, self._alert_db, self.clock)

    def _notify(self, lives: dict[str, Any], now: datetime, scope: set[str] | None = None) -> None:
        """``scope``: the ids a re-read judged; ``lives`` are those of them still open."""
        if self.notifier is None:
            return
        active = [{**life.data, "first_seen": timestamps.iso(life.first_seen)} for life in lives.values()]
        with self._notify_lock:
            try:
                # `lives` comes from the state, which keeps the findings of unread groups open,
                # so a region that failed to scan does not read as resolved here either.
                self.notifier.process(active, now, scope=scope)
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
        if (scan_interval(new), new.jitter) != (scan_interval(old), old.jitter):
            self.telemetry.interval = scan_interval(new)
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
        if (new.events.listen, new.events.token) != (old.events.listen, old.events.token):
            log.warning("events.listen or events.token changed: takes effect at the next restart", reason=why)
        self.telemetry.reloaded(ok=True)
        log.info(
            "reloaded",
            reason=why,
            groups=desired_state.group_count(fresh.baseline),
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

    # -- change events -----------------------------------------------------------------------------
    def _events_server(self, cfg: config_file.Config, built: Built) -> EventsServer | None:
        if built.events_listen is None or cfg.events.token is None:
            return None
        return EventsServer(built.events_listen, cfg.events.token.get_secret_value(), self.intake)

    def _event_accounts(self) -> dict[str, str]:
        """Each configured account's UID: the config's, else one learned at run time, else "" (unknown)."""
        cfg = self.loaded.config
        if not isinstance(cfg.accounts, list):
            # discovered accounts: named by their UID; this replica's are those its scans read
            return dict(self.learned_uids)
        return {a.name: a.uid or self.learned_uids.get(a.name, "") for a in cfg.shard_accounts()}

    def _reread_accepted(self, events: Sequence[Accepted]) -> None:
        """The intake's handler: say what was taken, and queue it for its targeted re-read."""
        from sgwatch.events.poller import log_taken

        by_account: dict[tuple[str, float], list[ChangeEvent]] = {}
        for accepted in events:
            log_taken(accepted.account, accepted.event, accepted.via)
            by_account.setdefault((accepted.account, accepted.arrived), []).append(accepted.event)
        for (account, arrived), taken in by_account.items():
            self.events.submit(account, taken, arrived)

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
            "baseline_groups": desired_state.group_count(self.loaded.baseline),
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
        if self.events_server is not None:
            self.events_server.start()
        self.learn_uids()
        self.events.start()
        self._schedule(self.loaded.config, first=True)
        log.info(
            "sgwatch started",
            listen=f"{self.loaded.config.listen}",
            port=self.server.port,
            events_port=self.events_server.port if self.events_server is not None else None,
            interval=scan_interval(self.loaded.config),
            baseline_groups=desired_state.group_count(self.loaded.baseline),
        )
        self.scheduler.start()  # blocks until a signal shuts the scheduler down
        if self.events_server is not None:
            self.events_server.stop()  # first: no event is taken while the daemon stops
        grace_ends = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        finished = self._idle.wait(SHUTDOWN_GRACE_SECONDS) and self._trail_idle.wait(
            max(0.0, grace_ends - time.monotonic())
        )
        self.events.stop(timeout=1.0)
        self.server.stop()
        if not finished:
            # The scan's threads are still in SDK calls; nothing of this scan has been written.
            log.warning("abandoning the in-flight scan")
            logs.flush()
            os._exit(0)
        self.state.close()
        log.info("stopped")
        return 0
