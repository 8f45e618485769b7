"""What :func:`sgwatch.core.engine.assess` worked out per group, kept for the next daemon scan.

Most groups are as they were at the last scan. A :class:`Reuse` passed to ``assess`` keeps each
group's findings, exposures and posture results with what they were worked out from (its
signature, built in the engine): the live group and its baseline, the accepted exposures the
baseline gives it, its region's lists, and, where membership is known, each group set it sits
in: the set's interfaces and what the set's evaluation reads of every other group of it
(:meth:`~sgwatch.core.groupsets.RegionSets.part`: the group as settled, without the accepts its
baseline lacks, its type, its rules' local sides). A group whose signature is equal to the last
one's is not assessed again; one that changed is, and so is every group sharing a set with a
group whose part changed (a new drop, a type, a removed accept), not with one that only added
an accept (that is its own new exposure, judged in its own group). The sources hand back the
very objects of the last scan for an unchanged answer
(:class:`~sgwatch.sources.parsecache.ParseCache`), which makes most of these comparisons
identity checks.

What every group depends on, the check settings and the day (accepted exposures expire), is
compared once per scan: a change drops everything. A baseline reload gives groups new baseline
objects, which their signatures compare by value: a group whose baseline did not change keeps
its results. Each scan is one pass of :class:`~sgwatch.core.memo.Carried`: groups no longer in
the scan are dropped at its end.

Results are shared between the reports of successive scans: they are read, never changed.
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from sgwatch.core.checks import CheckSettings
from sgwatch.core.compare import RegionLists
from sgwatch.core.findings import Exposure, Finding, PostureResult
from sgwatch.core.membership import GroupSet
from sgwatch.core.memo import Carried
from sgwatch.core.model import GroupKey


class GroupResult(NamedTuple):
    """All ``assess`` adds to a report for one group."""

    findings: list[Finding]
    exposures: list[Exposure]
    unresolved: frozenset[tuple[str, str]]  # (kind, list id) its rules name and nobody read
    posture: list[PostureResult]
    mixed: frozenset[GroupSet]  # sets its evaluation found mixing basic and advanced groups


class Reuse:
    """Keep one across a daemon's scans and pass it to every ``assess`` of them."""

    def __init__(self) -> None:
        self.groups: Carried[GroupKey, tuple[object, ...], GroupResult] = Carried()
        # (account, region) -> its lists, the object of the last scan while equal (see memo.same)
        self.lists: Carried[tuple[str, str], RegionLists, RegionLists] = Carried()
        self._epoch: tuple[CheckSettings, date] | None = None

    def begin(self, settings: CheckSettings, today: date) -> None:
        if self._epoch != (settings, today):
            self.groups.clear()
            self.lists.clear()
            self._epoch = (settings, today)
        self.groups.begin()
        self.lists.begin()

    def end(self) -> None:
        self.groups.end()
        self.lists.end()

    def __len__(self) -> int:
        return len(self.groups)


__all__ = ["GroupResult", "Reuse"]
