"""Every YAML example in the docs is loaded by the loader of what it shows.

A block is a baseline file, a config file (or part of one: its top-level keys are config keys),
a Terraform state's accepted exposures, a Prometheus rule file, or one Kubernetes object (validated against the manifests' Kubernetes
version); a block that is none of these fails, so a new example cannot go untested.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sgwatch import baseline, config
from sgwatch.daemon import build

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.S | re.M)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _examples() -> list[Any]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(pytest.param(match.group(1), id=f"{doc.relative_to(ROOT)}:{line}"))
    return found


def kind(doc: Any) -> str:
    """What a documented block is, by its top-level keys."""
    if not isinstance(doc, dict) or not doc:
        return "unknown"
    if "security_groups" in doc:
        return "baseline"
    if set(doc) == {"accepted_exposures"}:
        return "terraform-accepted"
    if set(doc) == {"groups"} and all(isinstance(g, dict) and "rules" in g for g in doc["groups"]):
        return "prometheus-rules"
    if set(doc) <= set(config.Config.model_fields):
        return "config"
    if {"apiVersion", "kind", "metadata"} <= set(doc):
        return "kubernetes"
    return "unknown"


def test_the_docs_have_examples_of_each_kind() -> None:
    kinds = {kind(yaml.safe_load(p.values[0])) for p in _examples()}
    assert {"baseline", "config"} <= kinds


@pytest.mark.parametrize("text", _examples())
def test_a_documented_yaml_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    doc = yaml.safe_load(text)
    what = kind(doc)
    if what == "baseline":
        path = tmp_path / "cn-hangzhou.yaml"
        path.write_text(text, encoding="utf-8")
        assert baseline.load(path).groups
    elif what == "config":
        for name in _VAR.findall(text):  # the secrets a deployment would set
            monkeypatch.setenv(name, f"https://example.test/{name.lower()}")
        path = tmp_path / "sgwatch.yaml"
        path.write_text(text, encoding="utf-8")
        cfg = config.load(path, environ={})
        # Built as `run` builds it (channels, checks, scan settings): the state goes to tmp_path.
        built = build(cfg.model_copy(update={"state": tmp_path / "state.sqlite"}))
        assert len(built.channels) == len(cfg.notifications)
    elif what == "terraform-accepted":  # beside a state: the fixture's, whose groups its keys name
        from sgwatch import terraform

        path = tmp_path / "state.accepted.yaml"
        path.write_text(text, encoding="utf-8")
        groups = terraform.read_state(ROOT / "tests" / "fixtures" / "terraform" / "state.json").groups
        assert terraform.read_accepted(path, groups)
    elif what == "prometheus-rules":
        from tests.test_prometheus_rules import promtool

        path = tmp_path / "rules.yaml"
        path.write_text(text, encoding="utf-8")
        result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    elif what == "kubernetes":
        from tests.test_packaging import K8S_VERSION

        kubernetes_validate = pytest.importorskip("kubernetes_validate")
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}")
    else:
        pytest.fail(f"a YAML example no test knows how to load (top-level keys: {list(doc or [])})")
