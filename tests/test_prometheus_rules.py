"""Prometheus alerting rules: promtool checks and unit tests, plus structural checks.

promtool comes from the Debian package `prometheus` (scripts/install-system-deps.sh). With CI set
a missing promtool is a failure; locally it is a skip.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "sgwatch-rules.yml"
RULE_TESTS_DIR = ROOT / "deploy" / "prometheus" / "tests"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK_URL_PREFIX = "https://github.com/sgwatch/sgwatch/blob/main/docs/runbook.md#"
SEVERITIES = {"critical", "warning", "info"}


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(RULES)
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def promtool() -> str:
    return require_tool("promtool", "install it with scripts/install-system-deps.sh")


def test_promtool_check_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests() -> None:
    files = rule_test_files()
    assert files, f"no promtool unit tests in {RULE_TESTS_DIR}"
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULE_TESTS_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_names_are_unique() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), names


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in rule_test_files():
        doc = load_yaml(path)
        assert [str(f) for f in doc["rule_files"]] == ["../sgwatch-rules.yml"], path
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts without a firing test case"
    assert names - quiet == set(), "alerts without a not-firing test case"
    assert (firing | quiet) - names == set(), "tests for alerts that do not exist"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{rule['alert']}: missing {key}"
    assert annotations["runbook_url"] == RUNBOOK_URL_PREFIX + rule["alert"].lower()


def test_runbook_has_a_section_per_alert() -> None:
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor in anchors, f"docs/runbook.md has no section for {rule['alert']}"


def test_rules_use_only_documented_metrics() -> None:
    documented = set(re.findall(r"`(sgwatch_[a-z0-9_]+)`", METRICS_DOC.read_text(encoding="utf-8")))
    assert documented, "docs/metrics.md lists no metric"
    for rule in alert_rules():
        used = set(re.findall(r"\bsgwatch_[a-z0-9_]+", rule["expr"]))
        assert used <= documented, f"{rule['alert']}: undocumented metrics {used - documented}"
