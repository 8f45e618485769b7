"""Client-side rate limiting per (account, region).

Alibaba Cloud throttles per account, region and API, shares that quota with the console and
Terraform, and does not publish the limits of Describe* calls. So the scanner spaces its own
calls evenly (no bursts) and, when throttled anyway, pushes every caller of that region back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class DeadlinePassed(Exception):
    """The next free slot lies beyond the caller's deadline."""


class RateLimiter:
    """Hands out call slots 1/rate seconds apart; a rate of 0 or less means no limit."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0  # earliest time the next slot may start
        self.granted = 0

    @property
    def next_slot(self) -> float:
        """The earliest time the next slot may start (in the past when one is free now)."""
        return self._next

    def reserve(self, deadline: float = float("inf")) -> float:
        """Reserve the next slot and return how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            if slot > deadline:
                raise DeadlinePassed
            self._next = slot + self.interval
            self.granted += 1
            return slot - now

    def penalize(self, seconds: float) -> None:
        """Hold every caller back: the cloud said this region's quota is spent for now."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


class RateLimiters:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._limiters: dict[Hashable, RateLimiter] = {}

    def get(self, key: Hashable) -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = RateLimiter(self.rate, self._clock)
            return limiter
