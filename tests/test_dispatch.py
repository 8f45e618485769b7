"""The scan scheduler (sgwatch.sources.dispatch) driven in virtual time: real threads, no sleeps.

Time only moves when every thread of the scheduler waits, and then jumps to the earliest wake-up,
so finishing times are exact and the tests take milliseconds whatever the machine's load.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import pytest

from sgwatch.sources.dispatch import Dispatcher
from sgwatch.sources.ratelimit import DeadlinePassed


@dataclass(eq=False)
class _Waiter:
    until: float
    cond: _VirtualCondition
    event: threading.Event = field(default_factory=threading.Event)
    notified: bool = False


class VirtualClock:
    """A :class:`~sgwatch.sources.dispatch.Clock` whose time advances only when all its threads wait."""

    def __init__(self) -> None:
        self._meta = threading.Lock()
        self._now = 0.0
        self._participants = 1  # the test's own thread
        self._blocked: list[_Waiter] = []
        self.error: str | None = None

    def now(self) -> float:
        return self._now

    def condition(self, lock: threading.Lock) -> _VirtualCondition:
        return _VirtualCondition(self, lock)

    def start_thread(self, target: Callable[[], None], name: str) -> None:
        with self._meta:
            self._participants += 1

        def body() -> None:
            try:
                target()
            finally:
                with self._meta:
                    self._participants -= 1
                    self._advance()

        threading.Thread(target=body, name=name, daemon=True).start()

    def sleep(self, seconds: float) -> None:
        """A call's latency: the caller keeps whatever place it holds."""
        lock = threading.Lock()
        cond = _VirtualCondition(self, lock)
        with lock:
            until = self._now + seconds
            while self._now < until:
                cond.wait(until - self._now)

    def _block(self, waiter: _Waiter) -> None:
        self._blocked.append(waiter)
        self._advance()

    def _advance(self) -> None:  # _meta held
        while self._blocked and len(self._blocked) >= self._participants:
            earliest = min(w.until for w in self._blocked)
            if math.isinf(earliest):
                self.error = f"deadlock at t={self._now}: every thread waits for a notify"
                for waiter in self._blocked:
                    waiter.event.set()
                self._blocked.clear()
                return
            self._now = max(self._now, earliest)
            for waiter in [w for w in self._blocked if w.until <= self._now]:
                self._wake(waiter)

    def _wake(self, waiter: _Waiter) -> None:
        self._blocked.remove(waiter)
        waiter.cond.waiters.remove(waiter)
        waiter.event.set()


class _VirtualCondition:
    def __init__(self, clock: VirtualClock, lock: threading.Lock) -> None:
        self.clock = clock
        self.lock = lock
        self.waiters: deque[_Waiter] = deque()

    def wait(self, timeout: float | None = None) -> bool:
        clock = self.clock
        if timeout is not None and timeout <= 0:
            return False
        waiter = _Waiter(math.inf if timeout is None else clock.now() + timeout, self)
        with clock._meta:
            self.waiters.append(waiter)
            clock._block(waiter)
        self.lock.release()
        try:
            waiter.event.wait()
        finally:
            self.lock.acquire()
        if clock.error:
            raise RuntimeError(clock.error)
        return waiter.notified

    def notify(self, n: int = 1) -> None:
        with self.clock._meta:
            for waiter in list(self.waiters)[:n]:
                waiter.notified = True
                self.clock._wake(waiter)

    def notify_all(self) -> None:
        self.notify(len(self.waiters))


@dataclass
class Log:
    clock: VirtualClock
    calls: list[tuple[float, Hashable]] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, pair: Hashable, latency: float) -> None:
        with self.lock:
            self.calls.append((self.clock.now(), pair))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        self.clock.sleep(latency)
        with self.lock:
            self.in_flight -= 1


def _calls(dispatcher: Dispatcher, log: Log, pair: Hashable, latency: float) -> Callable[[], None]:
    def task() -> None:
        assert dispatcher.slot(pair, math.inf)
        log.call(pair, latency)

    return task


def _setup(concurrency: int, rate: float) -> tuple[VirtualClock, Dispatcher, Log]:
    clock = VirtualClock()
    return clock, Dispatcher(concurrency, rate, clock=clock), Log(clock)


def _finish(log: Log, latency: float) -> float:
    return max(t for t, _ in log.calls) + latency


@pytest.mark.parametrize(
    ("pairs", "calls", "rate", "concurrency"), [(3, 40, 10.0, 8), (6, 20, 10.0, 8), (6, 20, 10.0, 4), (3, 30, 5.0, 2)]
)
def test_pairs_advance_side_by_side_and_finish_at_the_floor(
    pairs: int, calls: int, rate: float, concurrency: int
) -> None:
    latency = 0.05
    clock, dispatcher, log = _setup(concurrency, rate)
    # queued the way a scan queues them: one region's work after the other's
    for p in range(pairs):
        for _ in range(calls):
            dispatcher.submit(("acct", f"r{p}"), _calls(dispatcher, log, ("acct", f"r{p}"), latency))
    dispatcher.run()
    assert clock.error is None
    assert len(log.calls) == pairs * calls
    # the floor: each pair's calls one slot apart from t=0, all pairs at once; with fewer places
    # than pairs, the first round of calls takes ceil(pairs / concurrency) latencies to start
    late = (math.ceil(pairs / concurrency) - 1) * latency
    assert _finish(log, latency) == pytest.approx((calls - 1) / rate + latency + late)
    for p in range(pairs):
        times = [t for t, pair in log.calls if pair == ("acct", f"r{p}")]
        assert times[0] <= late + 1e-9
        assert times == pytest.approx([times[0] + i / rate for i in range(calls)])
    assert log.peak <= concurrency
    # a thread per pair at work and one minding what is due next, not a thread per queued task
    assert dispatcher.peak_threads <= min(pairs, concurrency) + 1


def test_without_a_limit_the_floor_is_calls_times_latency_over_concurrency() -> None:
    latency, concurrency = 0.05, 8
    clock, dispatcher, log = _setup(concurrency, 0)
    for p in range(3):
        for _ in range(40):
            dispatcher.submit(("acct", f"r{p}"), _calls(dispatcher, log, ("acct", f"r{p}"), latency))
    dispatcher.run()
    assert clock.error is None
    assert _finish(log, latency) == pytest.approx(math.ceil(120 / concurrency) * latency)
    assert log.peak == concurrency and dispatcher.peak_threads <= concurrency + 1


def test_a_throttled_pair_is_held_back_alone() -> None:
    latency, rate = 0.05, 10.0
    clock, dispatcher, log = _setup(4, rate)
    throttled = ("acct", "r0")

    def pushed_back() -> None:
        assert dispatcher.slot(throttled, math.inf)
        log.call(throttled, latency)
        dispatcher.penalize(throttled, 3.0)  # the cloud: x-acs-retry-after 3000

    dispatcher.submit(throttled, pushed_back)
    for p in range(3):
        for _ in range(20):
            dispatcher.submit(("acct", f"r{p}"), _calls(dispatcher, log, ("acct", f"r{p}"), latency))
    dispatcher.run()
    assert clock.error is None
    for p in (1, 2):
        times = [t for t, pair in log.calls if pair == ("acct", f"r{p}")]
        assert times == pytest.approx([i / rate for i in range(20)])  # not delayed at all
    held = [t for t, pair in log.calls if pair == throttled]
    assert held[0] == 0 and held[1] >= latency + 3.0  # its queue waited for the pushback


def test_a_task_waiting_for_a_retry_gives_its_place_to_other_pairs() -> None:
    latency = 0.05
    clock, dispatcher, log = _setup(1, 0)  # one place only

    def backing_off() -> None:
        assert dispatcher.slot(("acct", "slow"), math.inf)
        log.call(("acct", "slow"), latency)
        assert dispatcher.park(2.0)  # a 5xx: back off 2 s
        assert dispatcher.slot(("acct", "slow"), math.inf)
        log.call(("acct", "slow"), latency)

    dispatcher.submit(("acct", "slow"), backing_off)
    for _ in range(10):
        dispatcher.submit(("acct", "fast"), _calls(dispatcher, log, ("acct", "fast"), latency))
    dispatcher.run()
    assert clock.error is None
    fast = [t for t, pair in log.calls if pair == ("acct", "fast")]
    assert fast == pytest.approx([latency * (i + 1) for i in range(10)])  # all inside the back-off
    assert [t for t, pair in log.calls if pair == ("acct", "slow")] == pytest.approx([0, latency + 2.0])
    assert log.peak == 1


def test_a_task_that_makes_no_call_does_not_spend_a_slot() -> None:
    _, dispatcher, log = _setup(2, 10.0)
    pair = ("acct", "r0")
    dispatcher.submit(pair, lambda: None)  # e.g. the task that starts a region
    dispatcher.submit(pair, _calls(dispatcher, log, pair, 0.05))
    dispatcher.run()
    assert log.calls == [(0.0, pair)]


def test_a_slot_past_the_deadline_fails_at_once_and_stop_wakes_the_parked() -> None:
    clock = VirtualClock()
    dispatcher = Dispatcher(2, 1.0, deadline=2.5, clock=clock)
    pair = ("acct", "r0")
    outcomes: list[str] = []

    def call() -> None:
        try:
            outcomes.append("slot" if dispatcher.slot(pair, 2.5) else "stopped")
        except DeadlinePassed:
            outcomes.append(f"deadline at {clock.now()}")

    for _ in range(5):
        dispatcher.submit(pair, call)
    dispatcher.run()
    assert outcomes == ["slot", "slot", "slot", "deadline at 2.0", "deadline at 2.0"]

    clock, dispatcher, _ = _setup(2, 0)
    woke: list[tuple[bool, float]] = []
    dispatcher.submit(None, lambda: woke.append((dispatcher.park(600.0), clock.now())))
    dispatcher.submit(None, lambda: (clock.sleep(1.0), dispatcher.stop()))
    dispatcher.run()
    assert woke == [(False, 1.0)]


def test_a_place_given_up_by_a_parking_task_goes_to_one_ready_to_go_on() -> None:
    clock, dispatcher, log = _setup(1, 0)  # one place only
    a, c = ("acct", "a"), ("acct", "c")

    def retried() -> None:  # call, back off 0.5 s, call again
        assert dispatcher.slot(a, math.inf)
        log.call(a, 0.05)
        assert dispatcher.park(0.5)
        assert dispatcher.slot(a, math.inf)
        log.call(a, 0.05)

    def slow_then_backing_off() -> None:  # holds the place until t=1.0, then waits 5 s
        assert dispatcher.slot(c, math.inf)
        log.call(c, 0.95)
        assert dispatcher.park(5.0)

    dispatcher.submit(a, retried)
    dispatcher.submit(c, slow_then_backing_off)
    dispatcher.run()
    assert clock.error is None
    # ready at 0.55 while the place is taken; it goes on the moment the place is given up
    assert [t for t, pair in log.calls if pair == a] == pytest.approx([0.0, 1.0])
