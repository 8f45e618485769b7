"""Finding lifecycle per channel, and a durable outbox in SQLite.

``Notifier.process`` compares the findings active now with what each channel was told before
(``alert_state``) and queues what is news: a finding that reached the channel's minimum severity,
a severity change, a reminder every ``renotify_interval``, a resolution. Queueing and the state
change happen in one transaction, so a crash or restart neither sends twice nor forgets.
``Notifier.deliver_pending`` then posts what is due (``alert_outbox``), oldest first per channel,
and keeps whatever failed for a retry with exponential backoff until it is delivered or older
than the channel's ``max_age``.

Delivery is at least once, made safe by an idempotency key per message (stored with the row, so
the same on every retry and after a restart) and by recording each attempt before it is made:
a receiver that drops repeats gets the message again with the same key; a chat robot, which
cannot, never gets an attempt whose outcome is unknown again (counted ``unconfirmed``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from sgwatch.alerting.channels import AlertingConfig, AlertmanagerChannel, ChannelBase, parse_channels, utcnow
from sgwatch.alerting.message import Event, iso, make_event
from sgwatch.alerting.transport import DeliveryError, HttpRequest, HttpResponse, post
from sgwatch.core.checks import RANK
from sgwatch.logs import register_secret, scrub

log = structlog.get_logger()

Transport = Callable[[HttpRequest, float, list[str]], HttpResponse]
Clock = Callable[[], datetime]

RESULTS = ("sent", "failed", "expired", "unconfirmed")
# A backlog drains over several passes rather than in one burst that chat robots rate-limit.
MAX_REQUESTS_PER_PASS = 20
# Alertmanager takes any number of alerts per request; merging a backlog bounds the request size.
MAX_ROWS_PER_COALESCED_REQUEST = 50
MAX_RETRY_AFTER = timedelta(hours=1)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alert_state (
        channel TEXT NOT NULL,
        finding_id TEXT NOT NULL,
        severity TEXT NOT NULL,
        notified_at REAL NOT NULL,
        last_notified_at REAL NOT NULL,
        finding TEXT NOT NULL,
        PRIMARY KEY (channel, finding_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS alert_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        events TEXT NOT NULL,
        idempotency_key TEXT,
        attempt_started_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS alert_outbox_channel ON alert_outbox (channel, id)",
)
# Columns added after the first release: state files from before get them on open.
_ADDED_COLUMNS = (("idempotency_key", "TEXT"), ("attempt_started_at", "REAL"))


@contextmanager
def _tx(conn: sqlite3.Connection) -> Iterator[None]:
    """A short write transaction; joins the caller's if one is already open (they commit it)."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def ensure_schema(conn: sqlite3.Connection) -> None:
    with _tx(conn):
        for statement in SCHEMA:
            conn.execute(statement)
        have = {row[1] for row in conn.execute("PRAGMA table_info(alert_outbox)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE alert_outbox ADD COLUMN {name} {kind}")


def message_key(channel: str, events_json: str) -> str:
    """The idempotency key of one queued message: derived from its channel and its stored events
    (each names its finding, event and time), so equal only for the same message."""
    return hashlib.sha256(f"{channel}\n{events_json}".encode()).hexdigest()[:32]


class NotificationStats:
    """Counters behind ``sgwatch_notifications_total{channel,result}`` and the pending gauge.

    ``Notifier.stats()`` returns a copy, safe to read from the metrics thread. ``totals`` only
    grow (per process); ``retries`` counts failed attempts that will be tried again (not a
    result: the notification is still pending); ``pending`` is the outbox size per configured
    channel after the last pass. ``unconfirmed``: a chat robot's message whose attempt ended
    without an answer (timeout, crash mid-POST); it may or may not have been posted, and is not
    sent again.
    """

    def __init__(
        self,
        totals: Counter[tuple[str, str]] | None = None,
        retries: Counter[str] | None = None,
        pending: dict[str, int] | None = None,
    ) -> None:
        self._totals: Counter[tuple[str, str]] = Counter(totals or {})
        self._retries: Counter[str] = Counter(retries or {})
        self._pending: dict[str, int] = dict(pending or {})

    def totals(self) -> Counter[tuple[str, str]]:
        """(channel, result) → count, result being one of :data:`RESULTS`."""
        return Counter(self._totals)

    def total(self, channel: str, result: str) -> int:
        return self._totals[(channel, result)]

    def retries(self) -> Counter[str]:
        return Counter(self._retries)

    def pending(self) -> dict[str, int]:
        return dict(self._pending)

    def samples(self) -> list[tuple[str, str, int]]:
        """(channel, result, total) for every channel and result, zeros included, so each series
        exists from the start (``rate()`` needs a first sample)."""
        return [(ch, res, self._totals[(ch, res)]) for ch in sorted(self._pending) for res in RESULTS]

    def copy(self) -> NotificationStats:
        return NotificationStats(self._totals, self._retries, self._pending)

    def add(self, channel: str, result: str, n: int = 1) -> None:
        self._totals[(channel, result)] += n

    def add_retry(self, channel: str) -> None:
        self._retries[channel] += 1

    def set_pending(self, pending: dict[str, int]) -> None:
        self._pending = dict(pending)


@dataclass
class DeliveryReport:
    """What one ``deliver_pending`` pass did: notifications (outbox rows) per channel and result."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    pending: dict[str, int] = field(default_factory=dict)

    def get(self, channel: str, result: str) -> int:
        return self.counts[(channel, result)]


class Notifier:
    """Decides what each channel hears about, queues it durably, and delivers the queue.

    Build one per daemon from the channel configs, the daemon's SQLite connection (its tables are
    prefixed ``alert_``) and a clock returning aware UTC datetimes. Call :meth:`process` after each
    scan and :meth:`deliver_pending` every few seconds. Safe to call from two threads if the
    connection allows it (``check_same_thread=False``); delivery passes never overlap.
    """

    def __init__(
        self,
        channels: AlertingConfig | Sequence[ChannelBase],
        conn: sqlite3.Connection,
        clock: Clock = utcnow,
        *,
        transport: Transport = post,
    ) -> None:
        configs = channels.channels if isinstance(channels, AlertingConfig) else list(channels)
        self.channels: dict[str, ChannelBase] = {c.name: c for c in configs}
        if len(self.channels) != len(configs):
            raise ValueError("channel names must be unique")
        self._conn = conn
        self._clock = clock
        self._transport = transport
        self._db = threading.RLock()
        self._delivering = threading.Lock()
        self._stats = NotificationStats()
        for ch in configs:
            # The process-wide log redactor blanks these wherever they appear, even in other libraries' lines.
            register_secret(*ch.secrets())
        with self._db:
            ensure_schema(conn)
            self._refresh_pending()

    # --- lifecycle ---------------------------------------------------------------------------

    def process(
        self,
        active_findings: Iterable[Mapping[str, Any]],
        now: datetime | None = None,
        *,
        unscanned: Collection[tuple[str, str]] = (),
        scope: Collection[str] | None = None,
    ) -> int:
        """Queue notifications for the findings active after a scan; returns how many were queued.

        ``unscanned`` lists (account, region) pairs the scan could not read: their findings are
        absent for lack of data, not resolved, so they are neither resolved nor forgotten.
        ``scope``: the ids a partial pass judged (a targeted re-read): ``active_findings`` are
        those of them still active; every other alert stays as it is.
        """
        now = now or self._clock()
        active: dict[str, dict[str, Any]] = {}
        for f in active_findings:
            finding = dict(f)
            seen = finding.get("first_seen")
            finding["first_seen"] = iso(seen) if isinstance(seen, datetime) else (seen or iso(now))
            finding.pop("resolved_at", None)
            active[str(finding["id"])] = finding
        skip = {(str(a), str(r)) for a, r in unscanned}
        queued = 0
        with self._db, _tx(self._conn):
            for ch in self.channels.values():
                queued += self._process_channel(ch, active, skip, now, scope)
            queued += self._enqueue_reminders(now)
        self._refresh_pending()
        return queued

    def _process_channel(
        self,
        ch: ChannelBase,
        active: dict[str, dict[str, Any]],
        skip: set[tuple[str, str]],
        now: datetime,
        scope: Collection[str] | None = None,
    ) -> int:
        ts = now.timestamp()
        rows = self._conn.execute(
            "SELECT finding_id, severity, finding FROM alert_state WHERE channel = ?", (ch.name,)
        ).fetchall()
        known = {r[0]: (r[1], r[2]) for r in rows}
        floor = RANK[ch.min_severity]
        events: list[Event] = []
        for fid, finding in active.items():
            severity = str(finding.get("severity", "info"))
            snapshot = json.dumps(finding, sort_keys=True, default=str)
            if fid not in known:
                if RANK.get(severity, 0) < floor:
                    continue
                events.append(make_event("new", now, finding))
                self._conn.execute(
                    "INSERT INTO alert_state VALUES (?, ?, ?, ?, ?, ?)", (ch.name, fid, severity, ts, ts, snapshot)
                )
                continue
            old_severity, old_snapshot = known[fid]
            if severity != old_severity:
                if isinstance(ch, AlertmanagerChannel):
                    # Severity is a label: the old alert is a different Alertmanager alert, end it.
                    events.append(make_event("resolved", now, {**json.loads(old_snapshot), "resolved_at": iso(now)}))
                events.append(make_event("severity_changed", now, finding, previous_severity=old_severity))
                self._conn.execute(
                    "UPDATE alert_state SET severity = ?, last_notified_at = ?, finding = ? "
                    "WHERE channel = ? AND finding_id = ?",
                    (severity, ts, snapshot, ch.name, fid),
                )
            elif snapshot != old_snapshot:
                # Reminders carry what the finding looks like now.
                self._conn.execute(
                    "UPDATE alert_state SET finding = ? WHERE channel = ? AND finding_id = ?",
                    (snapshot, ch.name, fid),
                )
        for fid, (_, old_snapshot) in known.items():
            if fid in active or (scope is not None and fid not in scope):
                continue
            finding = json.loads(old_snapshot)
            if (str(finding.get("account")), str(finding.get("region"))) in skip:
                continue
            self._conn.execute("DELETE FROM alert_state WHERE channel = ? AND finding_id = ?", (ch.name, fid))
            if ch.send_resolved:
                events.append(make_event("resolved", now, {**finding, "resolved_at": iso(now)}))
        return self._enqueue(ch, events, now)

    def _enqueue_reminders(self, now: datetime) -> int:
        """Queue reminders that are due, from the stored snapshots (so they run between scans too)."""
        ts = now.timestamp()
        queued = 0
        for ch in self.channels.values():
            interval = ch.reminder_interval()
            if interval is None:
                continue
            # A channel with a backlog is down or catching up: reminding on top would pile up
            # copies; the reminder goes out once the backlog is through.
            backlog = self._conn.execute("SELECT 1 FROM alert_outbox WHERE channel = ? LIMIT 1", (ch.name,)).fetchone()
            if backlog:
                continue
            due = self._conn.execute(
                "SELECT finding_id, finding FROM alert_state WHERE channel = ? AND last_notified_at <= ? "
                "ORDER BY finding_id",
                (ch.name, ts - interval.total_seconds()),
            ).fetchall()
            if not due:
                continue
            self._conn.executemany(
                "UPDATE alert_state SET last_notified_at = ? WHERE channel = ? AND finding_id = ?",
                [(ts, ch.name, fid) for fid, _ in due],
            )
            queued += self._enqueue(ch, [make_event("reminder", now, json.loads(s)) for _, s in due], now)
        return queued

    def _enqueue(self, ch: ChannelBase, events: list[Event], now: datetime) -> int:
        size = ch.max_findings_per_message
        ts = now.timestamp()
        chunks = [json.dumps(events[i : i + size], default=str) for i in range(0, len(events), size)]
        self._conn.executemany(
            "INSERT INTO alert_outbox (channel, created_at, next_attempt_at, attempts, events, idempotency_key) "
            "VALUES (?, ?, ?, 0, ?, ?)",
            [(ch.name, ts, ts, chunk, message_key(ch.name, chunk)) for chunk in chunks],
        )
        if events:
            log.info("notifications queued", channel=ch.name, events=len(events), messages=len(chunks))
        return len(chunks)

    # --- delivery ----------------------------------------------------------------------------

    def deliver_pending(self, now: datetime | None = None) -> DeliveryReport:
        """Queue due reminders, then post what is due in each channel's outbox, oldest first.

        A retryable failure stops that channel for this pass (its receiver is down; later
        messages would only fail too, and must not overtake the earlier one).
        """
        report = DeliveryReport()
        if not self._delivering.acquire(blocking=False):
            return report  # another pass is running; it will deliver what is due
        try:
            now = now or self._clock()
            with self._db, _tx(self._conn):
                self._enqueue_reminders(now)
            for ch in self.channels.values():
                self._deliver_channel(ch, now, report)
        finally:
            self._delivering.release()
        report.pending = self._refresh_pending()
        return report

    def _deliver_channel(self, ch: ChannelBase, now: datetime, report: DeliveryReport) -> None:
        ts = now.timestamp()
        for _ in range(MAX_REQUESTS_PER_PASS):
            with self._db, _tx(self._conn):
                expired = self._conn.execute(
                    "DELETE FROM alert_outbox WHERE channel = ? AND created_at < ?",
                    (ch.name, ts - ch.max_age.total_seconds()),
                ).rowcount
                limit = MAX_ROWS_PER_COALESCED_REQUEST if ch.coalesce else 1
                rows = self._conn.execute(
                    "SELECT id, next_attempt_at, attempts, events, idempotency_key, attempt_started_at "
                    "FROM alert_outbox WHERE channel = ? ORDER BY id LIMIT ?",
                    (ch.name, limit),
                ).fetchall()
            if expired > 0:
                self._count(report, ch.name, "expired", expired)
                log.error(
                    "notifications expired undelivered",
                    channel=ch.name,
                    count=expired,
                    max_age_seconds=ch.max_age.total_seconds(),
                )
            if not rows or rows[0][1] > ts:
                return
            ids = [r[0] for r in rows]
            # Rows queued before keys were stored get theirs from the same derivation.
            keys = [r[4] or message_key(ch.name, r[3]) for r in rows]
            key = keys[0] if len(keys) == 1 else message_key(ch.name, "\n".join(keys))
            cut_off = any(r[5] is not None for r in rows)  # an attempt began and never ended: a crash
            if cut_off and not ch.receiver_dedups:
                self._unconfirmed(ch, ids, key, "an earlier attempt was cut off (the process stopped)", report)
                continue
            attempts = max(r[2] for r in rows) + 1
            # Recorded before the request, so that a kill mid-POST is known after the restart.
            with self._db, _tx(self._conn):
                self._conn.executemany(
                    "UPDATE alert_outbox SET attempts = attempts + 1, attempt_started_at = ?, idempotency_key = ? "
                    "WHERE id = ?",
                    [(self._clock().timestamp(), k, i) for i, k in zip(ids, keys, strict=True)],
                )
            if cut_off:
                log.warning("re-sending a notification whose delivery was cut off", channel=ch.name, key=key)
            events: list[Event] = [e for r in rows for e in json.loads(r[3])]
            if ch.coalesce:
                events = _coalesce(events)
            try:
                request = ch.request(events, now, key)
                response = self._transport(request, ch.timeout.total_seconds(), ch.secrets())
                ch.check(response)
            except DeliveryError as exc:
                if exc.ambiguous and not ch.receiver_dedups:
                    self._unconfirmed(ch, ids, key, str(exc), report)
                    continue
                if exc.retryable:
                    self._retry(ch, ids, attempts, exc, now, report)
                    return
                self._drop(ch, ids, str(exc), report)
                continue
            except Exception as exc:  # a bug must not wedge the queue behind one message forever
                self._drop(ch, ids, f"cannot build the message: {type(exc).__name__}", report)
                continue
            self._remove(ids)
            self._count(report, ch.name, "sent", len(ids))
            log.info(
                "notification sent",
                channel=ch.name,
                target=ch.target(),
                events=len(events),
                attempts=attempts,
                key=key,
            )

    def _remove(self, ids: list[int]) -> None:
        """The rows of one message leave the queue: sent, dropped or unconfirmed."""
        with self._db, _tx(self._conn):
            self._conn.execute(f"DELETE FROM alert_outbox WHERE id IN ({','.join('?' * len(ids))})", ids)

    def _retry(
        self, ch: ChannelBase, ids: list[int], attempts: int, exc: DeliveryError, now: datetime, report: DeliveryReport
    ) -> None:
        delay = min(ch.retry_max, ch.retry_initial * (2 ** min(attempts - 1, 30)))
        if exc.retry_after is not None:
            delay = max(delay, min(timedelta(seconds=exc.retry_after), MAX_RETRY_AFTER))
        with self._db, _tx(self._conn):
            self._conn.executemany(
                "UPDATE alert_outbox SET next_attempt_at = ?, last_error = ?, attempt_started_at = NULL WHERE id = ?",
                [((now + delay).timestamp(), scrub(str(exc)), i) for i in ids],
            )
        report.retries[ch.name] += 1
        with self._db:
            self._stats.add_retry(ch.name)
        log.warning(
            "notification delivery failed, will retry",
            channel=ch.name,
            error=str(exc),
            attempts=attempts,
            retry_in_seconds=delay.total_seconds(),
        )

    def _unconfirmed(self, ch: ChannelBase, ids: list[int], key: str, error: str, report: DeliveryReport) -> None:
        # A chat robot posts whatever it receives: sending again could post the alert twice.
        # The finding stays notified, so the channel's next reminder announces it anyway.
        self._remove(ids)
        self._count(report, ch.name, "unconfirmed", len(ids))
        log.error(
            "notification unconfirmed: the receiver may or may not have it; not sent again (it cannot drop repeats)",
            channel=ch.name,
            key=key,
            error=scrub(error),
        )

    def _drop(self, ch: ChannelBase, ids: list[int], error: str, report: DeliveryReport) -> None:
        self._remove(ids)
        self._count(report, ch.name, "failed", len(ids))
        log.error("notification dropped: permanent failure", channel=ch.name, error=error)

    def _count(self, report: DeliveryReport, channel: str, result: str, n: int) -> None:
        report.counts[(channel, result)] += n
        with self._db:
            self._stats.add(channel, result, n)

    def _refresh_pending(self) -> dict[str, int]:
        with self._db:
            rows = self._conn.execute("SELECT channel, COUNT(*) FROM alert_outbox GROUP BY channel").fetchall()
            found = {str(c): int(n) for c, n in rows}
            # Rows of channels no longer configured are left alone: re-adding the channel delivers them.
            pending = {name: found.get(name, 0) for name in self.channels}
            self._stats.set_pending(pending)
            return pending

    def stats(self) -> NotificationStats:
        """A copy of the counters, for the metrics collector."""
        with self._db:
            return self._stats.copy()

    def pending(self) -> dict[str, int]:
        """Outbox size per configured channel, read from the database now."""
        return self._refresh_pending()


def open_database(path: Path | str) -> sqlite3.Connection:
    """The daemon's state file, opened the way sgwatch.state opens it: WAL, autocommit, shared."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def build_notifier(
    channels: AlertingConfig | Sequence[ChannelBase] | Sequence[Mapping[str, Any]],
    db: sqlite3.Connection | Path | str,
    clock: Clock = utcnow,
) -> Notifier:
    """A Notifier from the config's channel list (mappings are validated: InputError if invalid)
    and a connection or the path of the state file (opened here with its own connection)."""
    items = list(channels.channels if isinstance(channels, AlertingConfig) else channels)
    configs: list[ChannelBase] = [c for c in items if isinstance(c, ChannelBase)]
    if len(configs) != len(items):
        configs = list(parse_channels([c for c in items if isinstance(c, Mapping)]))
    conn = db if isinstance(db, sqlite3.Connection) else open_database(db)
    return Notifier(configs, conn, clock)


def _coalesce(events: list[Event]) -> list[Event]:
    """Alertmanager keeps state, not history: only the latest event per alert matters."""
    latest: dict[tuple[str, str], Event] = {}
    for e in events:
        f = e["finding"]
        latest.pop((str(f.get("id")), str(f.get("severity"))), None)
        latest[(str(f.get("id")), str(f.get("severity")))] = e
    return list(latest.values())
