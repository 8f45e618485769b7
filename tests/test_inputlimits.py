"""The bounded loaders: depth and number checks that never recurse and never miss."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgwatch import inputlimits
from sgwatch.errors import InputError


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a'), inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(1, 8))
def test_json_depth_matches_the_parsed_depth(value: Any, limit: int) -> None:
    # strings full of brackets, quotes and backslashes do not fool the count
    assert inputlimits.json_depth_exceeds(json.dumps(value).encode(), limit) == (depth(value) > limit)


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        (b"[" * 65, True),  # unclosed: the parser would recurse into all of them
        (b"[" * 10 + b"}", False),
        (b'["]]]]]", "\\"[[[[["]', False),
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 65 + b"]" * 65, True),
    ],
)
def test_json_depth_edges(text: bytes, deep: bool) -> None:
    assert inputlimits.json_depth_exceeds(text) is deep


def test_long_digit_runs_inside_strings_are_fine_but_numbers_are_not() -> None:
    assert inputlimits.load_json(b'{"a": "' + b"1" * 5000 + b'"}', "f") == {"a": "1" * 5000}
    with pytest.raises(InputError, match="f: a number of 5000 characters"):
        inputlimits.load_json(b'{"a": "' + b"1" * 5000 + b'", "b": ' + b"2" * 5000 + b"}", "f")
    with pytest.raises(InputError, match="f: a number of 201 characters"):
        inputlimits.load_json(b"[1." + b"5" * 199 + b"]", "f")
    with pytest.raises(InputError, match="Infinity is not a JSON number"):
        inputlimits.load_json(b"[-Infinity]", "f")


def test_yaml_that_is_deep_but_under_libyaml_bound_loads_without_max_depth() -> None:
    assert depth(inputlimits.load_yaml("a: " + "[" * 200 + "]" * 200, "f")) == 201
    with pytest.raises(InputError, match="f:1: nested deeper than 64 levels"):
        inputlimits.load_yaml("a: " + "[" * 200 + "]" * 200, "f", max_depth=64)


def test_yaml_line_of_a_path() -> None:
    text = "a: 1\nb:\n  - x\n  - {c: 2,\n     d: 3}\n"
    assert inputlimits.line_of(text, "f", ["b", 1, "d"]) == 5
    assert inputlimits.line_of(text, "f", ["b", 7]) == 2
    assert inputlimits.line_of(text, "f", ["zz"]) is None
