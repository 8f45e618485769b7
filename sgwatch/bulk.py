"""Bulk work with CPython's cyclic garbage collector paused.

Loading an estate builds millions of small tuples in one go, and the cyclic collector re-walks
every live container each time enough new ones pile up, so its cost grows with the estate (on
the 1,000,000-rule benchmark it was a fifth to a third of load and engine time). What sgwatch
builds is acyclic (tuples, slotted dataclasses, dicts of them): reference counting frees it
without the collector. So loading and assessing run with the collector off, and it runs again
afterwards for whatever cycles other code made meanwhile.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def gc_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause the collector for the block; safe to nest and to enter from several threads.

    Objects made while it is paused are all young when it resumes, so the next collections
    walk them once more. ``freeze`` moves them out of the collector's sight for good instead:
    right for a command that exits after using them, wrong for the daemon, where a cycle made
    during the block would then never be freed.
    """
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if freeze:
                gc.freeze()
            if _depth == 0 and _resume:
                gc.enable()
