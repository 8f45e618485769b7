"""Accepted change events to targeted re-reads: coalesced, bounded, one worker.

The intake (``sgwatch.events.intake``) hands each accepted event to :meth:`EventHandler.submit`.
Events queue per (account, region) as a :class:`Batch` of what to read again; the worker waits
a short window after a batch's first event (whatever else arrives meanwhile, for the same
group or another of the region, joins it: ten events for one group are one re-read), then
hands the batch to ``process`` (the daemon: re-read, re-assess, record, alert).

Bounds, because the listener may face the internet: at most ``max_targets`` resources wait in
all; a batch re-reads at most ``max_unknown`` groups the daemon does not know (a flood of
made-up ids costs a bounded number of calls per window, and never a full scan); whatever is
over is dropped and counted (``sgwatch_event_rereads_total{result="dropped"}``): the next full
scan sees what it missed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from sgwatch.events.model import ChangeEvent

log = structlog.get_logger("sgwatch.events")

COALESCE_SECONDS = 0.3
MAX_TARGETS = 10_000
MAX_UNKNOWN_PER_BATCH = 200


@dataclass(frozen=True, slots=True)
class Arrival:
    event: ChangeEvent
    received: float  # time.monotonic() when the listener took it


@dataclass(slots=True)
class Batch:
    """What to read again in one (account, region), from the events that named it."""

    account: str
    region: str
    first: float  # monotonic arrival of its first event
    groups: set[str] = field(default_factory=set)  # whose rules or attributes changed
    deleted: set[str] = field(default_factory=set)  # named by DeleteSecurityGroup
    members_of: set[str] = field(default_factory=set)  # named by a membership call: re-assessed, not re-read
    prefix_lists: set[str] = field(default_factory=set)
    port_range_lists: set[str] = field(default_factory=set)
    interfaces: set[str] = field(default_factory=set)
    instances: set[str] = field(default_factory=set)
    arrivals: list[Arrival] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(
            map(
                len,
                (
                    self.groups,
                    self.members_of,
                    self.prefix_lists,
                    self.port_range_lists,
                    self.interfaces,
                    self.instances,
                ),
            )
        )

    def add(self, event: ChangeEvent) -> None:
        t = event.targets
        if event.touches == "group":
            self.groups.update(t.security_group_ids)
            if event.event_name == "DeleteSecurityGroup":
                self.deleted.update(t.security_group_ids)
        else:
            self.members_of.update(t.security_group_ids)
        self.prefix_lists.update(t.prefix_list_ids)
        self.port_range_lists.update(t.port_range_list_ids)
        if event.touches in ("membership", "address"):
            self.interfaces.update(t.network_interface_ids)
            self.instances.update(t.instance_ids)

    def merge(self, other: Batch) -> None:
        self.first = min(self.first, other.first)
        for name in ("groups", "deleted", "members_of", "prefix_lists", "port_range_lists", "interfaces", "instances"):
            getattr(self, name).update(getattr(other, name))
        self.arrivals.extend(other.arrivals)


Process = Callable[[Batch], None]


class EventHandler:
    """The queue and its worker. ``known(account, region, group_id)``: whether the daemon's last
    snapshot holds the group; ``count(result, n)``: the re-read counter (dropped ones)."""

    def __init__(
        self,
        process: Process,
        known: Callable[[str, str, str], bool],
        count: Callable[[str, int], None],
        *,
        window: float = COALESCE_SECONDS,
        max_targets: int = MAX_TARGETS,
        max_unknown: int = MAX_UNKNOWN_PER_BATCH,
    ) -> None:
        self.process = process
        self.known = known
        self.count = count
        self.window = window
        self.max_targets = max_targets
        self.max_unknown = max_unknown
        self._pending: dict[tuple[str, str], Batch] = {}
        self._unknown: dict[tuple[str, str], set[str]] = {}
        self._waiting = 0  # resources queued in all batches
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the intake's side -------------------------------------------------------------------
    def submit(self, account: str, events: Sequence[ChangeEvent], received_monotonic: float) -> None:
        """Queue ``events`` of the configured account ``account`` (never blocks on the cloud)."""
        dropped = 0
        with self._cond:
            for event in events:
                where = (account, event.region)
                unknown = self._unknown.get(where, set())
                new_unknown = {
                    gid
                    for gid in event.targets.security_group_ids
                    if gid not in unknown and not self.known(account, event.region, gid)
                }
                if self._waiting >= self.max_targets or len(unknown) + len(new_unknown) > self.max_unknown:
                    dropped += 1
                    continue
                batch = self._pending.get(where) or Batch(account, event.region, received_monotonic)
                before = batch.size
                batch.add(event)
                batch.arrivals.append(Arrival(event, received_monotonic))
                self._pending[where] = batch
                self._unknown[where] = unknown | new_unknown
                self._waiting += batch.size - before
            if events:
                self._cond.notify_all()
        if dropped:
            log.warning("change events dropped: the re-read queue is full", account=account, dropped=dropped)
            self.count("dropped", dropped)
        self._ensure_worker()

    def requeue(self, batches: Sequence[Batch]) -> None:
        """Batches taken earlier and not processed (no snapshot yet): queued again as they were,
        already accepted, so past the bounds; due at once."""
        with self._cond:
            for batch in batches:
                where = (batch.account, batch.region)
                queued = self._pending.get(where)
                before = queued.size if queued else 0
                if queued is None:
                    self._pending[where] = queued = batch
                else:
                    queued.merge(batch)
                self._waiting += queued.size - before
            self._cond.notify_all()
        self._ensure_worker()

    # -- the worker --------------------------------------------------------------------------
    def start(self) -> None:
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._work, name="sgwatch-events", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def queued(self) -> bool:
        """Whether events wait for the worker (it then defers work that the next batch redoes)."""
        with self._cond:
            return bool(self._pending)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until nothing is queued or being processed (tests, benchmarks); False on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _take(self) -> list[Batch] | None:
        """The batches whose window has passed; None when stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._pending:
                    due = min(b.first for b in self._pending.values()) + self.window
                    wait = due - time.monotonic()
                    if wait <= 0:
                        # Everything queued goes now: a region whose window has not passed
                        # waited on the same re-reads anyway.
                        batches = list(self._pending.values())
                        self._pending.clear()
                        self._unknown.clear()
                        self._waiting = 0
                        self._busy = True
                        return batches
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _work(self) -> None:
        while True:
            batches = self._take()
            if batches is None:
                return
            try:
                for batch in batches:
                    try:
                        self.process(batch)
                    except Exception:  # a bug must not stop the worker; the full scan reconciles
                        log.exception("change events not processed", account=batch.account, region=batch.region)
                        self.count("failed", 1)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


__all__ = ["COALESCE_SECONDS", "Arrival", "Batch", "EventHandler"]
