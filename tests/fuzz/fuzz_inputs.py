"""`make fuzz`: hostile configs, baselines and snapshots through `sgwatch.cli.main` (see inputs.py).

Not collected by the normal run (the file name does not match test_*.py); run it by name:

    FUZZ_SECONDS=90 FUZZ_SEED=20261201 pytest -q -p no:cacheprovider tests/fuzz/fuzz_inputs.py

The budget is shared by the three targets (a third each); the seed makes a run repeatable. The
table of what was tried and what held is printed at the end (tests/fuzz/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.inputs import Budget, Tally, check, mutate, mutations, seeds

SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
SECONDS = float(os.environ.get("FUZZ_SECONDS", "90"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100000"))  # the time budget ends a run first
BATCH = 20
TARGETS = ("config", "baseline", "snapshot")
TALLY = Tally()


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz(target: str, tmp_path: Path) -> None:
    """Batches of examples, each batch a seeded hypothesis run, until this target's share of the budget
    is spent. No shrinking: a failure is reported as found (hypothesis prints the example)."""
    budget = Budget(SECONDS / len(TARGETS))
    files = seeds(target)
    batch = 0
    while budget.left() and TALLY.tried[target] < EXAMPLES:

        @seed(SEED + batch)
        @settings(
            max_examples=BATCH,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.integers(0, len(files) - 1), mutations)
        def run(which: int, plan: list[tuple[str, float | str, int, str]]) -> None:
            name, text = files[which]
            failure = check(target, tmp_path / "work", name, mutate(text, plan), TALLY)
            assert failure is None, failure

        run()
        batch += 1
