"""The baseline examples the docs show are baselines sgwatch loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sgwatch import baseline

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def _examples() -> list[tuple[str, str]]:
    sources = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8"), "baseline.py": baseline.__doc__ or ""}
    return [
        (name, text)
        for name, doc in sources.items()
        for text in _BLOCK.findall(doc)
        if text.lstrip().startswith("account:") and "security_groups:" in text
    ]


@pytest.mark.parametrize(("name", "text"), _examples())
def test_a_documented_baseline_loads(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / "b.yaml").write_text(text, encoding="utf-8")
    loaded = baseline.load(tmp_path / "b.yaml")
    rules = [r for g in loaded.groups.values() for r in g.rules]
    assert rules, name
    assert any(r.key.local == "10.0.1.0/24" for r in rules), f"{name}: the quintuple example"
