"""A cache for the functions every rule of an estate passes through.

``functools.lru_cache`` keeps its entries in recency order, and a hit relinks the entry: at a
million calls a scan over a few hundred thousand distinct values, that bookkeeping touches
memory the lookup itself does not and costs as much as the lookup (measured: 9% of the
engine). These functions are pure and their inputs come from small sets (protocols, policies,
CIDRs), so a plain dict that fills itself is enough, emptied when it grows past a bound.
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
