"""When a paged answer is whole: the one rule the live scanner and the snapshot loader share.

A paged answer (DescribeSecurityGroups, DescribeSecurityGroupAttribute, or any listing read page
by page) is complete only when, its pages taken in the order they were read:

- the last page promises no further page: its ``NextToken`` is empty, and the items of its
  chain reach the ``TotalCount`` any of those pages states;
- a page that names a ``PageNumber`` follows the page before it in the chain (number + 1);
- no page repeats a ``NextToken`` of its chain (the answer would loop, so pages are skipped).

A chain ends at a page that promises nothing more; a later page starts a new chain (two
listings saved side by side). What a missing page would have held is unknown, never absent: a
caller that finds one reports what the answer covers as unreadable, never its items as deleted.

Use: keep a :class:`Page` per page (``Page.of(body, items)``), ask :func:`next_token` which
token to request next (live), and :func:`missing_page` whether the pages are the whole answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Page:
    """What one page says about the answer it belongs to (not its items: a few numbers)."""

    next_token: str  # "" when the page says it is the last
    items: int  # how many items this page holds
    total_count: int | None = None  # the TotalCount it states, if any
    page_number: int | None = None  # the PageNumber it states, if any
    where: str = ""  # the file it was read from, for messages; "" for a live answer
    malformed: str = ""  # a paging field that is not what the API documents

    @classmethod
    def of(cls, body: Mapping[str, Any], items: int, where: str = "") -> Page:
        token = body.get("NextToken")
        bad: list[str] = []
        if token is None or token == "":
            token = ""
        elif not isinstance(token, str):
            bad.append("NextToken is not a string")
            token = repr(token)
        total, page_number = _count(body, "TotalCount", bad), _count(body, "PageNumber", bad)
        return cls(token, items, total, page_number, where, "; ".join(bad))


def _count(body: Mapping[str, Any], name: str, bad: list[str]) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return value
    bad.append(f"{name} is not a count")
    return None


def next_token(pages: Sequence[Page]) -> str | None:
    """The token to ask for the next page with, or None when no request should follow (the last
    page promises none, or repeats a token of its chain): then ask :func:`missing_page`."""
    if not pages or not pages[-1].next_token or pages[-1].malformed:
        return None
    walk = _walk(pages)
    chain = pages[max(n for n, step in enumerate(walk) if step.first) : -1]
    token = pages[-1].next_token
    return None if any(p.next_token == token for p in chain) else token


def missing_page(pages: Sequence[Page]) -> str | None:
    """None when the pages are the whole answer; otherwise, in words, which page is missing."""
    if not pages:
        return "no page was read"
    walk = _walk(pages)
    tokens: set[str] = set()
    for n, (page, step) in enumerate(zip(pages, walk, strict=True), 1):
        before = pages[n - 2]
        if page.malformed:
            return f"page {n}{_at(page)}: {page.malformed}"
        if step.first:
            tokens.clear()
            if page.page_number not in (None, 1):
                return f"page 1 is missing: the first page read{_at(page)} is page {page.page_number}"
        elif (gap := _numbered_gap(before, page)) is not None:
            return gap
        if page.next_token in tokens:
            return f"page {n}{_at(page)} repeats the NextToken of an earlier page: the pages loop"
        if page.next_token:
            tokens.add(page.next_token)
    last, end = pages[-1], walk[-1]
    if last.next_token:
        return f"page {len(pages) + 1} is missing: page {len(pages)}{_at(last)} has a NextToken but no page follows"
    if end.total is not None and end.held < end.total:
        return f"a page is missing: the pages{_at(last)} hold {end.held} items of the TotalCount {end.total}"
    return None


@dataclass(frozen=True, slots=True)
class _Step:
    first: bool  # this page starts a chain
    held: int  # items of its chain up to and including this page
    total: int | None  # the largest TotalCount its chain stated so far


def _walk(pages: Sequence[Page]) -> list[_Step]:
    """Each page's place in its chain. A chain ends at a page without a NextToken whose chain
    holds at least the TotalCount stated; the page after it starts a new one."""
    steps: list[_Step] = []
    for page in pages:
        prev = steps[-1] if steps else None
        first = prev is None or _ends(prev, pages[len(steps) - 1])
        held = page.items + (0 if first or prev is None else prev.held)
        stated = None if first or prev is None else prev.total
        if page.total_count is not None:
            stated = page.total_count if stated is None else max(stated, page.total_count)
        steps.append(_Step(first, held, stated))
    return steps


def _numbered_gap(before: Page, page: Page) -> str | None:
    if before.page_number is None or page.page_number is None or page.page_number == before.page_number + 1:
        return None
    return (
        f"page {before.page_number + 1} is missing: page {page.page_number}{_at(page)} "
        f"follows page {before.page_number}{_at(before)}"
    )


def _ends(step: _Step, page: Page) -> bool:
    return not page.next_token and (step.total is None or step.held >= step.total)


def _at(page: Page) -> str:
    return f" ({page.where})" if page.where else ""
