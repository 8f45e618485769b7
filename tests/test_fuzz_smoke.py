"""A few examples of `make fuzz` in the normal suite (tests/fuzz/inputs.py says what must hold)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.inputs import Tally, check, mutate, mutations, seeds


@pytest.mark.parametrize("target", ["config", "baseline", "snapshot"])
def test_the_unmutated_seeds_give_a_valid_report(target: str, tmp_path: Path) -> None:
    tally = Tally()
    for name, text in seeds(target):
        assert check(target, tmp_path / "work", name, text, tally) is None
    assert set(tally.exits[target]) <= {0, 1, 3}  # a report, not an input error


@pytest.mark.parametrize("target", ["config", "baseline", "snapshot"])
@pytest.mark.parametrize(
    "token", ["[" * 3000, "9" * 5000, "&a [x, x]", "!!python/object/apply:os.system [echo]", "\x08"]
)
def test_each_large_or_tagged_hostile_token(target: str, token: str, tmp_path: Path) -> None:
    name, text = seeds(target)[-1]
    assert check(target, tmp_path / "work", name, mutate(text, [("insert", 0.5, 0, token)]), Tally()) is None


@settings(max_examples=8, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["config", "baseline", "snapshot"]), st.data(), mutations)
def test_a_few_random_mutations(
    tmp_path_factory: pytest.TempPathFactory,
    target: str,
    data: st.DataObject,
    plan: list[tuple[str, float | str, int, str]],
) -> None:
    name, text = data.draw(st.sampled_from(seeds(target)))
    work = tmp_path_factory.mktemp("fuzz")
    assert check(target, work, name, mutate(text, plan), Tally()) is None
