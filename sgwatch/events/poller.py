"""The pull path: poll ActionTrail LookupEvents for every configured (account, region) from a cursor.

For clusters EventBridge cannot reach (``events.actiontrail: true``). Every minute, each
(account, region) reads the write events from a little before its cursor to now
(:mod:`sgwatch.sources.actiontrail`), hands the new watched ones to the sink (the same handling
the push path feeds), then moves its cursor in the state file. The cursor is the latest event time
taken; the ids taken from ``OVERLAP`` before it on are remembered too, because ActionTrail gives
whole seconds and does not promise that an event becomes visible after every earlier one: each
poll reads the overlap again and takes only what it has not taken, so an event at the cursor's
second, or one indexed a little late, is neither lost nor taken twice.

A failed read keeps the cursor (nothing skipped, the next poll reads the same window again); a
read cut short after ``MAX_PAGES`` moves the cursor only as far as it read (pages come oldest
first). Events are queryable about 10 minutes after the call, so what this path reports comes 10
minutes or more after the change: full scans stay the safety net (docs/events-actiontrail.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from sgwatch import timestamps
from sgwatch.events.model import ChangeEvent
from sgwatch.render import inert
from sgwatch.sources.actiontrail import QPS, Lookup, LookupFailed, TrailClient
from sgwatch.sources.live_settings import AccountSettings, LiveSettings
from sgwatch.sources.ratelimit import RateLimiters
from sgwatch.state import State, StateWriteError

log = structlog.get_logger("sgwatch.events.poller")

POLL_SECONDS = 60
# How far before the cursor each poll reads again: an event indexed up to this much later than
# events after it is still taken. One past it is left to the full scan (no attribution then).
OVERLAP = timedelta(minutes=5)

# What takes the events: the account's name and the new watched events of one (account, region),
# oldest first. The daemon points it at the events intake (dedup, re-read, attribution).
Sink = Callable[[str, Sequence[ChangeEvent]], None]


def log_taken(account: str, event: ChangeEvent, via: str) -> None:
    """One line saying a change event was taken, from either path."""
    log.info(
        "change event taken",
        via=via,
        account=account,
        region=event.region,
        event_id=event.event_id,
        event_name=event.event_name,
        event_time=timestamps.iso(event.event_time),
        security_group_ids=list(event.targets.security_group_ids),
        # the caller's name and address are the record's text: shown inert on a terminal
        changed_by=inert.visible(event.principal.name),
        source_ip=inert.visible(event.source_ip),
    )


def log_sink(account: str, events: Sequence[ChangeEvent]) -> None:
    """A sink that only says what it took: one line per event."""
    for event in events:
        log_taken(account, event, "pull")


class Reader(Protocol):
    """What the poller reads with: :class:`~sgwatch.sources.actiontrail.TrailClient` (tests may inject another)."""

    def lookup_events(self, account: AccountSettings, region: str, start: datetime, end: datetime) -> Lookup: ...


@dataclass(slots=True)
class PollSummary:
    """What one poll did, for the log line and the tests."""

    taken: int = 0  # events handed to the sink
    records: int = 0
    ignored: int = 0
    malformed: int = 0
    repeated: int = 0  # read again in the overlap, already taken
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (account, region, one line)


class Poller:
    """Polls LookupEvents for the accounts and regions ``settings()`` names, from cursors in ``state``."""

    def __init__(
        self,
        settings: Callable[[], LiveSettings],
        state: State,
        sink: Sink,
        clock: Callable[[], datetime],
        *,
        reader: Callable[[LiveSettings, RateLimiters], Reader] = TrailClient,
    ) -> None:
        self.settings = settings
        self.state = state
        self.sink = sink
        self.clock = clock
        self.interval = POLL_SECONDS
        self.limiters = RateLimiters(QPS)  # one per account, kept across polls: the quota is per account
        self._reader_factory = reader
        self._reader: Reader | None = None
        self._reader_for: LiveSettings | None = None

    def _trail(self, live: LiveSettings) -> Reader:
        # one client while the settings stay (a reload may change accounts or the endpoint)
        if self._reader is None or self._reader_for != live:
            self._reader = self._reader_factory(live, self.limiters)
            self._reader_for = live
        return self._reader

    def regions(self, live: LiveSettings, account: AccountSettings) -> list[str]:
        """The account's configured regions, or, when the config lists none (every region), the
        regions the scans have read of it (``state.regions_read``)."""
        named = account.regions or live.regions
        if named:
            return list(dict.fromkeys(named))
        return sorted(region for name, region in self.state.regions_read() if name == account.name and region)

    def poll(self, stopping: Callable[[], bool] = lambda: False) -> PollSummary:
        """One read of every (account, region); ``stopping()`` true ends it between two of them."""
        live = self.settings()
        trail = self._trail(live)
        summary = PollSummary()
        for account in live.accounts:
            for region in self.regions(live, account):
                if stopping():
                    return summary
                try:
                    self._poll_one(trail, account, region, summary)
                except LookupFailed as exc:
                    # the cursor stays: the next poll reads the same window again
                    summary.failed.append((account.name, region, str(exc)))
                    log.warning(
                        "ActionTrail poll failed", account=account.name, region=region, code=exc.code, error=str(exc)
                    )
                except StateWriteError as exc:
                    summary.failed.append((account.name, region, str(exc)))
                    log.error("ActionTrail cursor not written", account=account.name, region=region, error=str(exc))
        log.info(
            "ActionTrail poll",
            taken=summary.taken,
            records=summary.records,
            ignored=summary.ignored,
            malformed=summary.malformed,
            repeated=summary.repeated,
            failed=len(summary.failed),
        )
        return summary

    def _poll_one(self, trail: Reader, account: AccountSettings, region: str, summary: PollSummary) -> None:
        now = self.clock().replace(microsecond=0)
        cursor = self.state.trail_cursor(account.name, region)
        if cursor is None:
            # Polling begins now: the changes of the last minutes are read too, as they become visible.
            self.state.advance_trail_cursor(account.name, region, now, (), now - OVERLAP)
            cursor = self.state.trail_cursor(account.name, region)
            assert cursor is not None
        start = cursor.time - OVERLAP
        got = trail.lookup_events(account, region, start, now)
        new = {e.event_id: e for e in got.events if e.event_id not in cursor.seen}
        fresh = sorted(new.values(), key=lambda e: (e.event_time, e.event_id))
        summary.records += got.records
        summary.ignored += got.ignored
        summary.malformed += got.malformed
        summary.repeated += len(got.events) - len(fresh)
        if fresh:
            self.sink(account.name, fresh)
            summary.taken += len(fresh)
        latest = max((when for _, when in got.seen), default=cursor.time)
        moved = max(latest, cursor.time)
        # Taken only once the sink has them: if it raised, the next poll hands them again.
        self.state.advance_trail_cursor(account.name, region, moved, got.seen, moved - OVERLAP)
