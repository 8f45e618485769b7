"""The one door change events come through, pushed (EventBridge) or pulled (LookupEvents).

:meth:`Intake.take` parses each ActionTrail record (``sgwatch.events.record``), drops what it
has taken before (EventBridge retries a delivery; the pull path sees what the push path took),
finds the configured account each event belongs to, counts every result and hands the
accepted events to the :class:`Handler` in one call per take, so what arrives together can be
coalesced. It makes no API call and never starts a scan: what the handler does with an event
is bounded by the handler.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import structlog

from sgwatch.events.model import ChangeEvent
from sgwatch.events.record import Ignored, RecordError, parse_record
from sgwatch.metrics import EventCounts

log = structlog.get_logger("sgwatch.events")

Via = Literal["push", "pull"]
# Event ids remembered: EventBridge retries within hours and the pull path runs ~10 minutes behind;
# 100,000 ids (~15 MB) are days of a busy account's security-group writes.
REMEMBER = 100_000
# The services whose calls sgwatch reads (ActionTrail's serviceName, compared in lower case): other
# products have calls of the same name (ModifyInstanceAttribute of a database, ...).
SERVICES = frozenset({"ecs", "vpc"})
_LOG_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ActionTrail record as a path delivers it."""

    record: object  # a CloudEvent's data, or an entry of a LookupEvents page
    account_uid: str = ""  # the UID the delivery names (a CloudEvent's aliyunaccountid); "" if none
    account: str | None = None  # the configured account it was read from (the pull path knows it)


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event for the handler: which configured account it belongs to, and when it arrived."""

    event: ChangeEvent
    account: str  # the configured account's name
    via: Via
    arrived: float  # time.monotonic() when it was taken, for the change-to-alert latency
    arrived_at: datetime  # the wall clock then, UTC


class Handler(Protocol):
    """What is done with accepted events (the targeted re-read).

    Called on the listener's or the poller's thread with the events of one take; it must only
    queue them (no API call while the sender waits). If it raises, the events are not
    remembered as taken, so a retried delivery is taken again.
    """

    def __call__(self, events: Sequence[Accepted], /) -> None: ...


@dataclass(frozen=True, slots=True)
class Taken:
    """What one take did with its events."""

    accepted: int = 0
    ignored: int = 0
    duplicate: int = 0
    rejected: int = 0
    problem: str = ""  # the first rejected event's problem, one line quoting none of it

    @property
    def taken_any(self) -> bool:
        """Whether anything was taken (accepted, ignored as none of sgwatch's business, or seen before)."""
        return bool(self.accepted or self.ignored or self.duplicate)

    def to_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "ignored": self.ignored,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
        }


def utcnow() -> datetime:
    return datetime.now(UTC)


class Intake:
    """Dedup, account mapping and counting in front of the :class:`Handler`; safe from many threads.

    ``accounts``: the configured accounts' names and UIDs (``""`` for one not known yet, the
    config's ``uid:`` or one learned at run time), read at each take so reloads and learned
    UIDs apply at once.
    """

    def __init__(
        self,
        handler: Handler,
        accounts: Callable[[], Mapping[str, str]],
        *,
        counts: EventCounts | None = None,
        remember: int = REMEMBER,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.handler = handler
        self.accounts = accounts
        self.counts = counts if counts is not None else EventCounts()
        self.remember = remember
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()  # event id -> when taken (monotonic), oldest first
        self._unknown_logged = -_LOG_SECONDS

    def take(self, items: Iterable[Delivery | Ignored], *, via: Via) -> Taken:
        """Take ``items`` (records, or events a path already knows to ignore); count and hand on."""
        arrived, arrived_at = self._monotonic(), self._wall()
        accounts = dict(self.accounts())
        fresh: list[Accepted] = []
        ignored = rejected = 0
        problem = ""
        for i, item in enumerate(items):
            if isinstance(item, Ignored) or _other_service(item.record):
                ignored += 1
                continue
            try:
                parsed = parse_record(item.record, account_uid=item.account_uid)
            except RecordError as exc:
                rejected += 1
                log.warning("change event rejected", via=via, position=i, error=str(exc))
                problem = problem or f"event {i}: its ActionTrail record (data) is malformed"
                continue
            if isinstance(parsed, Ignored):
                ignored += 1
                continue
            account = owner(parsed, item.account, accounts)
            if account is None:
                ignored += 1
                self._unknown_account(parsed, via)
                continue
            fresh.append(Accepted(parsed, account, via, arrived, arrived_at))
        return self._hand_on(fresh, arrived, ignored=ignored, rejected=rejected, problem=problem)

    def take_events(self, account: str, events: Sequence[ChangeEvent], *, via: Via) -> Taken:
        """Take events a path has parsed already for the configured ``account`` (the pull path,
        which reads each account's events with its credentials, so knows whose they are)."""
        arrived, arrived_at = self._monotonic(), self._wall()
        fresh = [Accepted(e, account, via, arrived, arrived_at) for e in events]
        return self._hand_on(fresh, arrived, ignored=0, rejected=0, problem="")

    def _hand_on(self, fresh: list[Accepted], arrived: float, *, ignored: int, rejected: int, problem: str) -> Taken:
        accepted, duplicate = self._claim(fresh, arrived)
        if accepted:
            try:
                self.handler(accepted)
            except BaseException:
                self._forget(accepted)  # a retry of this delivery is taken, not counted a duplicate
                raise
        taken = Taken(len(accepted), ignored, duplicate, rejected, problem)
        for result, n in taken.to_dict().items():
            self.counts.add(result, n)
        return taken

    def _claim(self, events: list[Accepted], now: float) -> tuple[list[Accepted], int]:
        """The events not taken before (nor twice in ``events``), remembered from now on."""
        out: list[Accepted] = []
        duplicate = 0
        with self._lock:
            for accepted in events:
                key = accepted.event.event_id
                if key in self._seen:
                    duplicate += 1
                    continue
                self._seen[key] = now
                out.append(accepted)
            while len(self._seen) > self.remember:
                self._seen.popitem(last=False)
        return out, duplicate

    def _forget(self, events: Sequence[Accepted]) -> None:
        with self._lock:
            for accepted in events:
                self._seen.pop(accepted.event.event_id, None)

    def seen(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._seen

    def _unknown_account(self, event: ChangeEvent, via: Via) -> None:
        now = self._monotonic()
        if now - self._unknown_logged >= _LOG_SECONDS:  # a flood of them is one line a minute
            self._unknown_logged = now
            log.warning(
                "change event ignored: it names no configured account",
                via=via,
                account_uid=event.account_uid if event.account_uid.isdigit() else "(not a UID)",
                hint="give the account's uid: in the config, or check the EventBridge rule's accounts",
            )


def _other_service(record: object) -> bool:
    """Whether the record names a service other than ECS and VPC (a record naming none is read)."""
    service = record.get("serviceName") if isinstance(record, Mapping) else None
    return isinstance(service, str) and bool(service) and service.lower() not in SERVICES


def owner(event: ChangeEvent, named: str | None, accounts: Mapping[str, str]) -> str | None:
    """The configured account ``event`` belongs to, or None.

    ``named``: the account the pull path read it from. Otherwise the account whose UID the
    event names; with one account configured, an event naming no UID, or any UID while that
    account's is not known, is that account's.
    """
    if named is not None:
        return named if named in accounts else None
    uid = event.account_uid
    if uid:
        for name, known in accounts.items():
            if known == uid:
                return name
    if len(accounts) == 1:
        ((name, known),) = accounts.items()
        if not uid or not known:
            return name
    return None
