"""The per-rule caches: computed once, bounded, and never answering one number for another."""

from __future__ import annotations

import pytest

from sgwatch.core.memo import Memo
from sgwatch.core.normalize import NormalizeError
from sgwatch.sources import ecs_rules


def test_computes_once_and_keeps() -> None:
    calls: list[str] = []

    def upper(text: str) -> str:
        calls.append(text)
        return text.upper()

    memo = Memo(upper)
    assert [memo["a"], memo["a"], memo["b"]] == ["A", "A", "B"]
    assert calls == ["a", "b"]
    assert dict(memo) == {"a": "A", "b": "B"}


def test_bounded() -> None:
    memo = Memo(len, limit=3)
    for text in ("a", "bb", "ccc", "dddd"):
        memo[text]
    assert len(memo) <= 3
    assert memo["dddd"] == 4


def test_numbers_are_not_kept_so_true_is_not_one() -> None:
    # As dict keys True == 1 == 1.0; a JSON `"Priority": true` must fail, not reuse 1's answer.
    assert ecs_rules._priority(1) == 1
    assert ecs_rules._priority("1") == 1
    with pytest.raises(NormalizeError):
        ecs_rules._priority(True)
    with pytest.raises(NormalizeError):
        ecs_rules._priority(1.5)


def test_unhashable_key_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Memo(str)[["not", "hashable"]]  # type: ignore[index]
