"""Durable state in one SQLite file (WAL): each finding's life and the scan history.

A restart forgets nothing: first-seen times survive, so a report or an alert can say how long
a drift has lasted. Findings of groups a scan could not read are left as they were, neither
refreshed nor resolved: an unreadable group is not a fixed one. Each (account, region) also
keeps when it was last read in full, so what is carried over for it has a visible age.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sgwatch.core.changed_by import Principal
from sgwatch.core.findings import Report
from sgwatch.core.reach import ExposedInterface
from sgwatch.errors import InputError, SgwatchError
from sgwatch.events.attribution import resources_of
from sgwatch.events.model import ChangeEvent, Targets
from sgwatch.timestamps import iso, parse_iso

SCHEMA_VERSION = 1
WAL_LIMIT_BYTES = 16 << 20
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scan_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    duration_seconds REAL NOT NULL,
    result TEXT NOT NULL,              -- complete, incomplete, failed
    groups INTEGER NOT NULL DEFAULT 0,
    findings INTEGER NOT NULL DEFAULT 0,
    counts TEXT NOT NULL DEFAULT '{}', -- findings by severity
    errors INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    security_group_id TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    resolved_at TEXT,
    data TEXT NOT NULL                 -- the finding's JSON form
);
CREATE INDEX IF NOT EXISTS findings_open ON findings (resolved_at);
CREATE TABLE IF NOT EXISTS regions (   -- added within schema 1: older sgwatch ignores it
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    last_read TEXT NOT NULL,           -- end of the last scan that read the region and all its groups
    PRIMARY KEY (account, region)
);
CREATE TABLE IF NOT EXISTS exposed_interfaces (  -- added within schema 1: older sgwatch ignores it
    id TEXT PRIMARY KEY,
    severity TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    resolved_at TEXT,
    data TEXT NOT NULL                 -- the fact's JSON form (sgwatch.core.reach)
);
CREATE TABLE IF NOT EXISTS change_events (  -- added within schema 1: older sgwatch ignores it
    event_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,             -- the configured account's name the event belongs to
    region TEXT NOT NULL,
    event_ts REAL NOT NULL,            -- eventTime as Unix seconds: ISO text with and without fractions misorders
    data TEXT NOT NULL                 -- the ChangeEvent's JSON form
);
CREATE INDEX IF NOT EXISTS change_events_time ON change_events (event_ts);
CREATE TABLE IF NOT EXISTS change_event_targets (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    resource_id TEXT NOT NULL,         -- a group, list, interface or instance the event names
    event_id TEXT NOT NULL,
    PRIMARY KEY (account, region, resource_id, event_id)
);
CREATE INDEX IF NOT EXISTS change_event_targets_event ON change_event_targets (event_id);
CREATE TABLE IF NOT EXISTS trail_cursors (  -- added within schema 1: older sgwatch ignores it
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    event_time TEXT NOT NULL,          -- the latest ActionTrail event time taken (or when polling began)
    PRIMARY KEY (account, region)
);
CREATE TABLE IF NOT EXISTS trail_seen (     -- the events taken near the cursor, so none is taken twice
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_time TEXT NOT NULL,
    PRIMARY KEY (account, region, event_id)
);
"""
# Change events are kept this long (ActionTrail's own retention) and at most this many: a
# finding found minutes after its event is still attributed, and a flood cannot grow the file.
EVENTS_MAX_AGE = timedelta(days=90)
EVENTS_MAX_COUNT = 200_000


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


class StateWriteError(SgwatchError):
    """The state file could not be written (a full disk, a read-only volume): the scan failed."""


@dataclass(frozen=True, slots=True)
class Unread:
    """What a report could not read: whole accounts, whole regions, single groups.

    Whatever lies there was not seen because it was not read, so nothing there is resolved
    (the state) or reported clean (the metrics).
    """

    regions: frozenset[tuple[str, str]]  # region "": the account's region list itself was unread
    groups: frozenset[tuple[str, str, str]]

    @classmethod
    def of(cls, report: Report) -> Unread:
        return cls(
            regions=frozenset((e.account, e.region) for e in report.errors if not e.security_group_id),
            groups=frozenset((e.account, e.region, e.security_group_id) for e in report.errors if e.security_group_id),
        )

    def covers(self, account: str, region: str, security_group_id: str) -> bool:
        return (
            (account, "") in self.regions
            or (account, region) in self.regions
            or (account, region, security_group_id) in self.groups
        )

    def read_in_full(self, account: str, region: str) -> bool:
        """Whether the region and every group in it were read."""
        if (account, "") in self.regions or (account, region) in self.regions:
            return False
        return not any(a == account and r == region for a, r, _ in self.groups)


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One line of the scan history."""

    scan_id: str
    started: datetime
    duration: float
    result: str  # complete, incomplete, failed
    message: str = ""


@dataclass(frozen=True, slots=True)
class TrailCursor:
    """Where the ActionTrail pull path of one (account, region) stands.

    ``time``: the latest event time taken (whole seconds, as ActionTrail gives them), or when
    polling began; ``seen``: the ids of the events taken at or after ``time - overlap`` (the window
    the next poll reads again), so an event at the cursor's second is neither lost nor taken twice.
    """

    time: datetime
    seen: frozenset[str]


@dataclass(frozen=True, slots=True)
class FindingLife:
    id: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    data: dict[str, Any]


class State:
    """The daemon's memory. Thread-safe: the scan job and the HTTP server share it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # FileExistsError when the parent is a file
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # A checkpoint otherwise leaves the WAL as large as its largest transaction ever.
            self.db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise InputError(f"{path}: state file is from a newer sgwatch (schema {row[0]}); upgrade sgwatch")
            self.db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"{path}: state file is unusable ({exc}); move it aside to start fresh, or fix its permissions"
            ) from None
        except OSError as exc:
            raise InputError(f"{path}: cannot create the state file ({exc.strerror or exc}); check --state") from None

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise StateWriteError(f"{self.path}: cannot write the state file: {exc}") from None
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    # -- findings ----------------------------------------------------------------------------
    def record(
        self,
        report: Report,
        now: datetime,
        scope: Iterable[tuple[str, str]] = (),
        scan: ScanRecord | None = None,
        groups: Collection[tuple[str, str, str]] | None = None,
    ) -> dict[str, FindingLife]:
        """Fold one scan's findings into their lives; returns the open findings by id.

        ``scope``: the (account, region) pairs the scan covered; those it read in full get
        ``now`` as their last read. ``scan``: its history row, written in the same transaction,
        so a scan is recorded whole or not at all. ``groups``: the report covers only these
        groups (a targeted re-read): open findings of every other group stay as they are, and
        only those of ``groups`` are returned.
        """
        unread = Unread.of(report)
        stamp = iso(now)
        current = {f.id: f for f in report.findings}
        with self._tx() as db:
            open_rows = db.execute(
                "SELECT id, account, region, security_group_id FROM findings WHERE resolved_at IS NULL"
            ).fetchall()
            for fid, account, region, sg in open_rows:
                if fid in current or (groups is not None and (account, region, sg) not in groups):
                    continue
                if unread.covers(account, region, sg):
                    continue  # not seen because not read: still open
                db.execute("UPDATE findings SET resolved_at=? WHERE id=?", (stamp, fid))
            for account, region in sorted(set(scope)):
                if region and unread.read_in_full(account, region):
                    db.execute(
                        "INSERT INTO regions VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET last_read=excluded.last_read",
                        (account, region, stamp),
                    )
            for f in current.values():
                db.execute(
                    """INSERT INTO findings (id, kind, severity, account, region, security_group_id,
                                             first_seen, last_seen, resolved_at, data)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)
                       ON CONFLICT(id) DO UPDATE SET
                           severity=excluded.severity, last_seen=excluded.last_seen, data=excluded.data,
                           -- a drift that comes back after being resolved starts a new life
                           first_seen=CASE WHEN findings.resolved_at IS NULL THEN findings.first_seen
                                           ELSE excluded.first_seen END,
                           resolved_at=NULL""",
                    (
                        f.id,
                        f.kind,
                        f.severity,
                        f.account,
                        f.region,
                        f.security_group_id,
                        stamp,
                        stamp,
                        json.dumps(f.to_dict(), separators=(",", ":")),
                    ),
                )
            if scan is not None:
                self._insert_scan(db, scan, report)
        return self.open_findings(groups)

    def record_exposed(
        self,
        facts: Iterable[ExposedInterface],
        judged: Collection[tuple[str, str]],
        now: datetime,
        candidates: Collection[str] | None = None,
    ) -> dict[str, FindingLife]:
        """Fold one scan's exposed interfaces into their lives; returns the open ones by id.

        An open fact absent now is resolved only where ``judged`` says the scan could see it
        (:func:`sgwatch.core.reach.judged_regions`): elsewhere it was not seen because not read.
        ``candidates``: the facts are those of a few groups (a targeted re-read): only these open
        facts may be resolved, and only these and ``facts`` are returned.
        """
        stamp = iso(now)
        current = {f.id: f for f in facts}
        with self._tx() as db:
            for fid, account, region in db.execute(
                "SELECT id, account, region FROM exposed_interfaces WHERE resolved_at IS NULL"
            ).fetchall():
                if candidates is not None and fid not in candidates:
                    continue
                if fid not in current and (account, region) in judged:
                    db.execute("UPDATE exposed_interfaces SET resolved_at=? WHERE id=?", (stamp, fid))
            for f in current.values():
                db.execute(
                    """INSERT INTO exposed_interfaces (id, severity, account, region, first_seen, last_seen,
                                                       resolved_at, data)
                       VALUES (?, ?, ?, ?, ?, ?, NULL, ?)
                       ON CONFLICT(id) DO UPDATE SET
                           severity=excluded.severity, last_seen=excluded.last_seen, data=excluded.data,
                           first_seen=CASE WHEN exposed_interfaces.resolved_at IS NULL
                                           THEN exposed_interfaces.first_seen ELSE excluded.first_seen END,
                           resolved_at=NULL""",
                    (f.id, f.severity, f.account, f.region, stamp, stamp, _json(f.to_dict())),
                )
        return self.open_exposed(None if candidates is None else {*candidates, *current})

    def open_exposed(self, ids: Collection[str] | None = None) -> dict[str, FindingLife]:
        """The open facts (``ids``: of these only)."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id, first_seen, last_seen, data FROM exposed_interfaces WHERE resolved_at IS NULL"
            ).fetchall()
        return {
            r[0]: FindingLife(r[0], parse_iso(r[1]), parse_iso(r[2]), None, json.loads(r[3]))
            for r in rows
            if ids is None or r[0] in ids
        }

    def open_findings(self, groups: Collection[tuple[str, str, str]] | None = None) -> dict[str, FindingLife]:
        """The open findings (``groups``: of these groups only)."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id, first_seen, last_seen, resolved_at, data, account, region, security_group_id "
                "FROM findings WHERE resolved_at IS NULL"
            ).fetchall()
        return {
            r[0]: FindingLife(r[0], parse_iso(r[1]), parse_iso(r[2]), None, json.loads(r[4]))
            for r in rows
            if groups is None or (r[5], r[6], r[7]) in groups
        }

    def resolved_since(self, since: datetime) -> list[FindingLife]:
        with self._lock:
            rows = self.db.execute(
                "SELECT id, first_seen, last_seen, resolved_at, data FROM findings WHERE resolved_at >= ?",
                (iso(since),),
            ).fetchall()
        return [FindingLife(r[0], parse_iso(r[1]), parse_iso(r[2]), parse_iso(r[3]), json.loads(r[4])) for r in rows]

    def regions_read(self) -> dict[tuple[str, str], datetime]:
        """When each (account, region) was last read in full."""
        with self._lock:
            rows = self.db.execute("SELECT account, region, last_read FROM regions").fetchall()
        return {(account, region): parse_iso(stamp) for account, region, stamp in rows}

    # -- scans -------------------------------------------------------------------------------
    def add_scan(
        self, *, scan_id: str, started: datetime, duration: float, result: str, report: Report | None, message: str = ""
    ) -> None:
        with self._tx() as db:
            self._insert_scan(db, ScanRecord(scan_id, started, duration, result, message), report)

    @staticmethod
    def _insert_scan(db: sqlite3.Connection, scan: ScanRecord, report: Report | None) -> None:
        counts = report.counts() if report else {}
        db.execute(
            """INSERT INTO scans (scan_id, started_at, duration_seconds, result, groups, findings, counts,
                                  errors, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                scan.scan_id,
                iso(scan.started),
                scan.duration,
                scan.result,
                report.groups if report else 0,
                len(report.findings) if report else 0,
                json.dumps(counts),
                len(report.errors) if report else 0,
                scan.message[:500],
            ),
        )

    def scans(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            cur = self.db.execute(
                "SELECT scan_id, started_at, duration_seconds, result, groups, findings, counts, errors, message "
                "FROM scans ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def last_success(self, *, complete: bool = False) -> datetime | None:
        """End of the last scan that produced a report (``complete``: that read everything)."""
        with self._lock:
            row = self.db.execute(
                "SELECT started_at, duration_seconds FROM scans WHERE result IN (?, 'complete') "
                "ORDER BY id DESC LIMIT 1",
                ("complete" if complete else "incomplete",),
            ).fetchone()
        if row is None:
            return None
        return parse_iso(row[0]) + timedelta(seconds=row[1])

    # -- the ActionTrail pull path's cursor ------------------------------------------------------
    def trail_cursor(self, account: str, region: str) -> TrailCursor | None:
        with self._lock:
            row = self.db.execute(
                "SELECT event_time FROM trail_cursors WHERE account=? AND region=?", (account, region)
            ).fetchone()
            ids = self.db.execute(
                "SELECT event_id FROM trail_seen WHERE account=? AND region=?", (account, region)
            ).fetchall()
        return None if row is None else TrailCursor(parse_iso(row[0]), frozenset(i for (i,) in ids))

    def advance_trail_cursor(
        self, account: str, region: str, time: datetime, seen: Iterable[tuple[str, datetime]], keep_from: datetime
    ) -> None:
        """Move the cursor to ``time`` (never back) and remember ``seen`` (id, event time); forget
        the ids of events before ``keep_from``, which no later poll reads again. One transaction."""
        with self._tx() as db:
            db.execute(
                """INSERT INTO trail_cursors VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET
                   event_time=MAX(trail_cursors.event_time, excluded.event_time)""",
                (account, region, iso(time, seconds=True)),
            )
            db.executemany(
                "INSERT OR IGNORE INTO trail_seen VALUES (?, ?, ?, ?)",
                [(account, region, event_id, iso(when, seconds=True)) for event_id, when in seen],
            )
            db.execute(
                "DELETE FROM trail_seen WHERE account=? AND region=? AND event_time < ?",
                (account, region, iso(keep_from, seconds=True)),
            )

    # -- change events -----------------------------------------------------------------------
    def record_events(self, account: str, events: Iterable[ChangeEvent], now: datetime) -> int:
        """Keep ``events`` of the configured account ``account`` for attribution; returns how
        many were new (an event id already kept is not stored twice). Prunes what is older than
        ``EVENTS_MAX_AGE`` before ``now`` and the oldest past ``EVENTS_MAX_COUNT``."""
        added = 0
        with self._tx() as db:
            for e in events:
                cur = db.execute(
                    "INSERT OR IGNORE INTO change_events VALUES (?, ?, ?, ?, ?)",
                    (e.event_id, account, e.region, e.event_time.timestamp(), _json(_event_dict(e))),
                )
                if cur.rowcount:
                    added += 1
                    db.executemany(
                        "INSERT OR IGNORE INTO change_event_targets VALUES (?, ?, ?, ?)",
                        [(account, e.region, rid, e.event_id) for rid in resources_of(e)],
                    )
            self._prune_events(db, now)
        return added

    @staticmethod
    def _prune_events(db: sqlite3.Connection, now: datetime) -> None:
        gone = [
            r[0]
            for r in db.execute(
                "SELECT event_id FROM change_events WHERE event_ts < ? UNION "
                "SELECT event_id FROM (SELECT event_id FROM change_events ORDER BY event_ts DESC LIMIT -1 OFFSET ?)",
                ((now - EVENTS_MAX_AGE).timestamp(), EVENTS_MAX_COUNT),
            ).fetchall()
        ]
        db.executemany("DELETE FROM change_events WHERE event_id = ?", [(g,) for g in gone])
        db.executemany("DELETE FROM change_event_targets WHERE event_id = ?", [(g,) for g in gone])

    def change_events(
        self, resources: Collection[tuple[str, str, str]], since: datetime, until: datetime
    ) -> list[tuple[str, ChangeEvent]]:
        """(account, event) for the kept events naming any of ``resources`` ((account, region,
        resource id): a group, list, interface or instance) with ``since <= event_time <= until``."""
        if not resources:
            return []
        with self._lock:
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (account TEXT, region TEXT, resource_id TEXT)")
            self.db.execute("DELETE FROM wanted")
            self.db.executemany("INSERT INTO wanted VALUES (?, ?, ?)", list(resources))
            rows = self.db.execute(
                """SELECT DISTINCT e.account, e.data FROM wanted w
                   JOIN change_event_targets t USING (account, region, resource_id)
                   JOIN change_events e ON e.event_id = t.event_id
                   WHERE e.event_ts >= ? AND e.event_ts <= ?""",
                (since.timestamp(), until.timestamp()),
            ).fetchall()
            self.db.execute("DELETE FROM wanted")
        return [(account, _event_from_dict(json.loads(data))) for account, data in rows]


def _event_dict(e: ChangeEvent) -> dict[str, Any]:
    t = e.targets
    return {
        "event_id": e.event_id,
        "event_name": e.event_name,
        "event_time": iso(e.event_time),
        "account_uid": e.account_uid,
        "region": e.region,
        "principal": {
            "type": e.principal.type,
            "name": e.principal.name,
            "account_id": e.principal.account_id,
            "access_key_id": e.principal.access_key_id,
        },
        "source_ip": e.source_ip,
        "user_agent": e.user_agent,
        "targets": {
            "security_group_ids": list(t.security_group_ids),
            "network_interface_ids": list(t.network_interface_ids),
            "instance_ids": list(t.instance_ids),
            "prefix_list_ids": list(t.prefix_list_ids),
            "port_range_list_ids": list(t.port_range_list_ids),
        },
        "request": dict(e.request),
    }


def _event_from_dict(d: dict[str, Any]) -> ChangeEvent:
    p, t = d["principal"], d["targets"]
    return ChangeEvent(
        event_id=d["event_id"],
        event_name=d["event_name"],
        event_time=parse_iso(d["event_time"]),
        account_uid=d["account_uid"],
        region=d["region"],
        principal=Principal(p["type"], p["name"], p["account_id"], p["access_key_id"]),
        source_ip=d["source_ip"],
        user_agent=d["user_agent"],
        targets=Targets(**{k: tuple(v) for k, v in t.items()}),
        request=d["request"],
    )
