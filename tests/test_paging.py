"""The one rule for a paged answer: complete only when no page it promises is missing."""

from __future__ import annotations

import pytest

from sgwatch.sources.paging import Page, missing_page, next_token


def _p(token: str = "", items: int = 1, total: int | None = None, number: int | None = None) -> Page:
    return Page(token, items, total, number)


@pytest.mark.parametrize(
    "pages",
    [
        [_p()],
        [_p("t1"), _p("t2"), _p()],
        [_p(items=0)],  # an empty region: one empty page
        [_p(), _p()],  # two whole listings saved side by side
        [_p(items=3, total=5, number=1), _p(items=2, total=5, number=2)],  # the old PageNumber mode
        [_p("t", items=3, total=5), _p(items=2)],
        [_p(items=3, total=2)],  # a page holding more than counted (a group created meanwhile)
    ],
)
def test_whole_answers(pages: list[Page]) -> None:
    assert missing_page(pages) is None


@pytest.mark.parametrize(
    ("pages", "says"),
    [
        ([], "no page was read"),
        ([_p("t")], "page 2 is missing: page 1 has a NextToken but no page follows"),
        ([_p("t1"), _p("t2")], "page 3 is missing: page 2 has a NextToken"),
        ([_p(items=4, total=5)], "a page is missing: the pages hold 4 items of the TotalCount 5"),
        ([_p(items=2, total=5, number=1), _p(items=2, number=3)], "page 2 is missing: page 3 follows page 1"),
        ([_p(items=2, total=4, number=2)], "page 1 is missing: the first page read is page 2"),
        ([_p("a"), _p("b"), _p("a"), _p()], "page 3 repeats the NextToken of an earlier page: the pages loop"),
        ([Page.of({"NextToken": ["x"]}, 1)], "page 1: NextToken is not a string"),
        ([Page.of({"TotalCount": "many"}, 1)], "page 1: TotalCount is not a count"),
    ],
)
def test_a_missing_page_is_named(pages: list[Page], says: str) -> None:
    assert (missing_page(pages) or "").startswith(says)


def test_where_names_the_file() -> None:
    page = Page.of({"NextToken": "t"}, 1, where="snap/cn-hangzhou/sg-1.json")
    assert (
        missing_page([page])
        == "page 2 is missing: page 1 (snap/cn-hangzhou/sg-1.json) has a NextToken but no page follows"
    )


@pytest.mark.parametrize(
    ("pages", "token"),
    [
        ([_p("t1")], "t1"),
        ([_p("t1"), _p("t2")], "t2"),
        ([_p()], None),
        ([_p("t1"), _p("t1")], None),  # asking again would loop forever
        ([_p("a"), _p("b"), _p("a")], None),
        ([_p("a"), _p(), _p("a")], "a"),  # a new chain may reuse a token
    ],
)
def test_next_token_stops_at_the_end_or_a_loop(pages: list[Page], token: str | None) -> None:
    assert next_token(pages) == token


def test_page_of_reads_the_documented_fields() -> None:
    assert Page.of({"NextToken": "", "TotalCount": "12", "PageNumber": 2}, 10) == Page("", 10, 12, 2)
    assert Page.of({}, 0) == Page("", 0)
