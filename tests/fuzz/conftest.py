"""Print the fuzz table after a `make fuzz` run (nothing in a normal run, which never imports it)."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    fuzz = sys.modules.get("tests.fuzz.fuzz_inputs")
    if fuzz is None or not fuzz.TALLY.tried:
        return
    terminalreporter.write_sep("-", f"fuzz: seed {fuzz.SEED}, budget {fuzz.SECONDS:.0f} s")
    for line in fuzz.TALLY.table().splitlines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"repeat with FUZZ_SEED={fuzz.SEED} FUZZ_SECONDS={fuzz.SECONDS:.0f}")
