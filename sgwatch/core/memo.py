"""A cache for the functions every rule of an estate passes through.

``functools.lru_cache`` keeps its entries in recency order, and a hit relinks the entry: at a
million calls a scan over a few hundred thousand distinct values, that bookkeeping touches
memory the lookup itself does not and costs as much as the lookup (measured: 9% of the
engine). These functions are pure and their inputs come from small sets (protocols, policies,
CIDRs), so a plain dict that fills itself is enough, emptied when it grows past a bound.

:class:`Carried` is the other kind: what a daemon scan worked out, kept for the next scan, valid
only while what it was worked out from is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(dict[K, V], Generic[K, V]):
    """``memo[key]`` is ``fn(key)``, computed once. Callers on hot paths take ``memo.__getitem__``,
    a C-level callable; ``memo.get`` and ``in`` see only what is kept.

    Numbers are computed but never kept: ``True == 1 == 1.0`` as dict keys, and the cloud's
    ``"Priority": true`` must fail as ``fn(True)`` fails, not answer what ``fn(1)`` answered.
    """

    __slots__ = ("_fn", "_limit")

    def __init__(self, fn: Callable[[K], V], limit: int = 1 << 18) -> None:
        super().__init__()
        self._fn = fn
        self._limit = limit

    def __missing__(self, key: K) -> V:
        value = self._fn(key)
        if not isinstance(key, int | float):
            if len(self) >= self._limit:
                self.clear()
            self[key] = value
        return value


S = TypeVar("S")


class Carried(Generic[K, S, V]):
    """Values carried from one pass (a daemon scan) to the next, each kept with what it was worked out from.

    ``get(key, source)`` answers the value ``put`` under ``key`` only when it was worked out from
    an equal ``source``; else None, and the caller works it out again. A pass is ``begin()`` to
    ``end()``: what the pass neither asked for nor put is dropped at its end, so what is kept is
    bounded by one pass's keys (a group that vanished goes with the pass that did not see it).
    ``clear()`` drops everything: what the values depend on beyond ``source`` changed.
    """

    __slots__ = ("_kept", "_now", "hits", "misses")

    def __init__(self) -> None:
        self._kept: dict[K, tuple[S, V]] = {}
        self._now: dict[K, tuple[S, V]] = {}
        self.hits = 0
        self.misses = 0

    def begin(self) -> None:
        """A new pass; one that did not end (an exception) is forgotten, the one before it kept."""
        self._now = {}
        self.hits = self.misses = 0

    def end(self) -> None:
        self._kept, self._now = self._now, {}

    def clear(self) -> None:
        self._kept = {}
        self._now = {}

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: K, source: S) -> V | None:
        held = self._now.get(key) or self._kept.get(key)
        if held is None or held[0] != source:
            self.misses += 1
            return None
        self.hits += 1
        # Kept with the newer of two equal sources: the next pass compares its objects, often
        # the very same ones, so the comparison is an identity check.
        self._now[key] = (source, held[1])
        return held[1]

    def put(self, key: K, source: S, value: V) -> None:
        self._now[key] = (source, value)


def same(carried: Carried[K, V, V], key: K, value: V) -> V:
    """The value ``carried`` keeps under ``key`` if it equals ``value``, else ``value`` (kept from now on).

    Hands back the very object of the last pass for an equal one, so that later comparisons of
    whatever holds it are identity checks.
    """
    found = carried.get(key, value)
    if found is None:
        carried.put(key, value, value)
        return value
    return found
