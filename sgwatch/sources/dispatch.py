"""Which task of a scan runs next, on which thread, and when: the scan's scheduler.

Every task is queued under the (account, region) its calls go to, and each pair has its own
:class:`~sgwatch.sources.ratelimit.RateLimiter`. A free worker takes the next task of the pair
whose slot comes first, and only once that slot is due: a region's pace never holds a worker that
another region's work could use, so the pairs of a scan advance side by side, each at its own
rate. A task that must wait inside (its next page, a retry's backoff, the cloud's pushback)
*parks*: it gives its place to another thread for as long as it waits, so waiting never costs
concurrency. At most ``concurrency`` tasks run at once, hence at most that many calls in flight.

Time, conditions and threads come from a :class:`Clock`, so tests drive the real scheduler in
virtual time.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from sgwatch.sources.ratelimit import RateLimiter, RateLimiters

Task = Callable[[], None]


class Waitable(Protocol):
    """The part of :class:`threading.Condition` the scheduler uses (its lock held by the caller)."""

    def wait(self, timeout: float | None = None) -> bool: ...

    def notify(self, n: int = 1) -> None: ...

    def notify_all(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def condition(self, lock: threading.Lock) -> Waitable: ...

    def start_thread(self, target: Callable[[], None], name: str) -> None: ...


class SystemClock:
    """Monotonic time, real conditions, daemon threads."""

    def now(self) -> float:
        return time.monotonic()

    def condition(self, lock: threading.Lock) -> Waitable:
        return threading.Condition(lock)

    def start_thread(self, target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()


@dataclass(slots=True)
class _Pair:
    limiter: RateLimiter
    queue: deque[Task] = field(default_factory=deque)
    claimed: bool = False  # a task of this pair was handed out and has not taken its slot yet
    scheduled: bool = False  # the pair has an entry in the heap


class Dispatcher:
    """Runs submitted tasks until none is left; see the module docstring for the policy.

    ``rate`` is calls per second per pair (0 or less: no limit). A task whose pair's next slot
    lies past ``deadline`` is handed out at once, so that it can fail fast instead of waiting.
    """

    def __init__(
        self,
        concurrency: int,
        rate: float,
        *,
        deadline: float = math.inf,
        clock: Clock | None = None,
        max_threads: int | None = None,
        thread_name: str = "sgwatch-scan",
    ) -> None:
        self.clock = clock or SystemClock()
        self.limiters = RateLimiters(rate, self.clock.now)
        self.concurrency = concurrency
        self.deadline = deadline
        self._paced = rate > 0
        self._lock = threading.Lock()
        self._work = self.clock.condition(self._lock)  # idle threads: a task may be ready
        self._permit = self.clock.condition(self._lock)  # parked threads ready to go on
        self._parked = self.clock.condition(self._lock)  # parked threads sleeping; woken on stop
        self._done = self.clock.condition(self._lock)  # run(): nothing left
        self._pairs: dict[Hashable, _Pair] = {}
        self._heap: list[tuple[float, int, Hashable]] = []  # (earliest due, tie, pair)
        self._seq = itertools.count()
        self._loose: deque[Task] = deque()  # tasks that call no pair: run when a place is free
        self._outstanding = 0  # queued or running
        self._free = concurrency  # places not held by a running task
        self._resuming = 0  # parked threads waiting for a place: they go first
        self._threads = 0
        self._idle = 0
        self._parked_threads = 0  # threads inside park(), holding no place
        self._max_threads = max_threads or 4 * concurrency + 8
        self._thread_name = thread_name
        self._stopped = False
        self._local = threading.local()
        self.peak_threads = 0

    # -- the interface the scanner uses -------------------------------------------------------
    def submit(self, pair: Hashable | None, task: Task) -> None:
        """Queue ``task``; ``pair`` is the (account, region) its first call goes to, or None."""
        with self._lock:
            self._outstanding += 1
            if pair is None:
                self._loose.append(task)
            else:
                state = self._pair(pair)
                state.queue.append(task)
                self._schedule(pair, state)
            self._wake()

    def run(self) -> None:
        """Wait until every task, including those submitted meanwhile, has finished."""
        with self._lock:
            while self._outstanding:
                self._done.wait()

    def slot(self, pair: Hashable, deadline: float) -> bool:
        """Take ``pair``'s next call slot, parking until it is due. False when stopped meanwhile.

        Raises :class:`~sgwatch.sources.ratelimit.DeadlinePassed` if the slot lies past
        ``deadline``."""
        with self._lock:
            state = self._pair(pair)
        try:
            wait = state.limiter.reserve(deadline)
        finally:
            if getattr(self._local, "claim", None) == pair:
                with self._lock:
                    self._release_claim(pair)
        return self.park(wait) if wait > 0 else not self._stopped

    def penalize(self, pair: Hashable, seconds: float) -> None:
        """The cloud said ``pair``'s quota is spent for ``seconds``: hold back its calls only."""
        with self._lock:
            state = self._pair(pair)
        state.limiter.penalize(seconds)

    def park(self, seconds: float) -> bool:
        """Wait ``seconds`` without holding a place; False when stopped meanwhile."""
        with self._lock:
            self._free += 1
            self._parked_threads += 1
            if self._resuming:
                self._permit.notify()  # a parked task ready to go on takes the place first
            else:
                self._wake()
            until = self.clock.now() + seconds
            while not self._stopped and (now := self.clock.now()) < until:
                self._parked.wait(until - now)
            self._resuming += 1
            while self._free <= 0:
                self._permit.wait()
            self._resuming -= 1
            self._parked_threads -= 1
            self._free -= 1
            return not self._stopped

    def stop(self) -> None:
        """Stop waiting: parked tasks wake (their park says False) and queued tasks are handed
        out at once, for the caller's task wrapper to skip."""
        with self._lock:
            self._stopped = True
            self._parked.notify_all()
            self._work.notify_all()

    def resume(self) -> None:
        """Take calls again after :meth:`stop`: a re-reader (``sources.reread``) lives on after
        one re-read's credentials were refused, and the next re-read must not find it stopped."""
        with self._lock:
            self._stopped = False

    # -- inside -------------------------------------------------------------------------------
    def _pair(self, pair: Hashable) -> _Pair:
        state = self._pairs.get(pair)
        if state is None:
            state = self._pairs[pair] = _Pair(self.limiters.get(pair))
        return state

    def _schedule(self, pair: Hashable, state: _Pair) -> None:
        if state.queue and not state.claimed and not state.scheduled:
            state.scheduled = True
            heapq.heappush(self._heap, (state.limiter.next_slot, next(self._seq), pair))

    def _release_claim(self, pair: Hashable) -> None:
        self._local.claim = None
        state = self._pairs[pair]
        state.claimed = False
        self._schedule(pair, state)
        self._wake()

    def _wake(self) -> None:
        """Someone should look at the queues: an idle thread, else a new one if a place is free."""
        if not (self._loose or self._heap):
            return
        running = self.concurrency - self._free
        if self._idle:
            self._work.notify()
        elif self._threads - running - self._parked_threads > 0:
            pass  # a thread just started or just finished a task: it looks at the queues next
        elif self._threads < self._max_threads and self._free > self._resuming:
            self._threads += 1
            self.peak_threads = max(self.peak_threads, self._threads)
            self.clock.start_thread(self._worker, f"{self._thread_name}-{self._threads}")

    def _pick(self, now: float) -> tuple[Task | None, Hashable | None, float | None]:
        """(task, its pair if claimed, None) or (None, None, when the next one is due)."""
        if self._loose:
            return self._loose.popleft(), None, None
        while self._heap:
            due, _, pair = self._heap[0]
            state = self._pairs[pair]
            actual = state.limiter.next_slot  # later than ``due`` if a call or the cloud pushed it
            if actual > due:
                heapq.heapreplace(self._heap, (actual, next(self._seq), pair))
                continue
            if due > now and due <= self.deadline and not self._stopped:
                return None, None, due
            heapq.heappop(self._heap)
            state.scheduled = False
            task = state.queue.popleft()
            if self._paced:
                # one handed-out task per pair until it takes its slot: two would wait for each other
                state.claimed = True
                return task, pair, None
            self._schedule(pair, state)
            return task, None, None
        return None, None, None

    def _worker(self) -> None:
        with self._lock:
            try:
                while True:
                    task, claim = self._next_task()
                    if task is None:
                        return
                    self._local.claim = claim
                    self._lock.release()
                    try:
                        task()
                    finally:
                        self._lock.acquire()
                        if claim is not None and self._local.claim == claim:
                            self._release_claim(claim)  # the task made no call
                        self._outstanding -= 1
                        self._free += 1
                        if not self._outstanding:
                            self._done.notify_all()
                            self._work.notify_all()
                        elif self._resuming:
                            self._permit.notify()
            finally:
                self._threads -= 1

    def _next_task(self) -> tuple[Task | None, Hashable | None]:
        while self._outstanding:
            wake: float | None = None
            if self._free > self._resuming:
                now = self.clock.now()
                task, claim, wake = self._pick(now)
                if task is not None:
                    self._free -= 1
                    self._wake()  # pass the watch on: another thread minds what is due next
                    return task, claim
                if wake is not None:
                    wake = max(0.0, wake - now)
            self._idle += 1
            try:
                self._work.wait(wake)
            finally:
                self._idle -= 1
        return None, None
