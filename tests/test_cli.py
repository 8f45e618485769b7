"""The CLI through its real entry point: exit codes, formats, one-line errors, the JSON contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
SCHEMA = json.loads((ROOT / "sgwatch" / "schemas" / "report.schema.json").read_text())
GOLDEN = ROOT / "tests" / "golden"


def sgwatch(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def demo_report(*extra: str) -> subprocess.CompletedProcess[str]:
    return sgwatch("report", "--baseline", DEMO / "baseline", "--snapshot", DEMO / "snapshot", *extra)


def test_demo_report_matches_golden_and_schema() -> None:
    result = demo_report("--format", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    report["generated_at"] = "GENERATED"
    golden = GOLDEN / "demo-report.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(json.dumps(report, indent=2) + "\n")
    assert report == json.loads(golden.read_text())
    kinds = {f["kind"] for f in report["findings"]}
    assert kinds == {"group_added", "group_removed", "group_changed", "rule_added", "rule_removed", "rule_changed"}
    assert set(report["summary"]["findings"]) == {"critical", "high", "medium", "low", "info"}
    assert all(report["summary"]["findings"].values()), "the demo shows every severity"


@pytest.mark.parametrize(("fail_on", "code"), [("info", 1), ("critical", 1), ("none", 0)])
def test_fail_on(fail_on: str, code: int) -> None:
    assert demo_report("--fail-on", fail_on, "--format", "json").returncode == code


def test_in_sync_exits_zero(tmp_path: Path) -> None:
    assert sgwatch("baseline", "capture", "--snapshot", DEMO / "snapshot", "--output", tmp_path / "b").returncode == 0
    result = sgwatch("report", "--baseline", tmp_path / "b", "--snapshot", DEMO / "snapshot")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no drift" in result.stdout


def test_markdown_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    result = demo_report("--format", "markdown", "--output", str(out))
    assert result.returncode == 1 and result.stdout == ""
    text = out.read_text()
    assert text.startswith("## sgwatch drift report") and "| 🔴 | critical |" in text


def test_incomplete_snapshot_exits_3_and_still_reports(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(DEMO / "snapshot", snap)
    (snap / "cn-hangzhou" / "sg-web.json").unlink()  # listed, but its rules were not read
    captured = tmp_path / "b"
    sgwatch("baseline", "capture", "--snapshot", DEMO / "snapshot", "--output", captured)
    result = sgwatch("report", "--baseline", captured, "--snapshot", snap, "--format", "json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["complete"] is False and report["findings"] == []
    assert [(e["security_group_id"], e["code"]) for e in report["errors"]] == [("sg-web", "AttributesMissing")]


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("bad_json", "sg-web.json:1: not valid JSON"),
        (
            "wrong_shape",
            "not a DescribeSecurityGroups, DescribeSecurityGroupAttribute, DescribePrefixListAttributes, "
            "DescribePortRangeListEntries, DescribeNetworkInterfaces or DescribeInstances response",
        ),
        ("bad_rule", "Permissions.Permission[0]: unknown protocol"),
        ("rule_not_object", "Permissions.Permission[1]: expected an object"),
        ("missing", "snapshot directory not found"),
    ],
)
def test_bad_snapshot_is_one_line_exit_2(tmp_path: Path, setup: str, needle: str) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(DEMO / "snapshot", snap)
    target = snap / "cn-hangzhou" / "sg-web.json"
    if setup == "bad_json":
        target.write_text("{oops")
    elif setup == "wrong_shape":
        target.write_text('{"hello": 1}')
    elif setup == "bad_rule":
        body = json.loads(target.read_text())
        body["Permissions"]["Permission"][0]["IpProtocol"] = "tcpx"
        target.write_text(json.dumps(body))
    elif setup == "rule_not_object":
        body = json.loads(target.read_text())
        body["Permissions"]["Permission"][1] = "tcp 22"
        target.write_text(json.dumps(body))
    else:
        shutil.rmtree(snap)
    result = sgwatch("report", "--baseline", DEMO / "baseline", "--snapshot", snap)
    assert result.returncode == 2
    assert needle in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_bad_baseline_and_usage_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "b.yaml"
    bad.write_text("region: r\nsecurity_groups:\n  - id: nope\n")
    result = sgwatch("report", "--baseline", bad, "--snapshot", DEMO / "snapshot")
    assert result.returncode == 2 and "b.yaml:3: security_groups.0.id" in result.stderr
    assert result.stderr.count("\n") == 1
    result = sgwatch("report", "--snapshot", DEMO / "snapshot")
    assert result.returncode == 2 and "--baseline" in result.stderr and "Traceback" not in result.stderr
    assert sgwatch("report", "--format", "xml").returncode == 2


def test_checks_lists_the_catalogue() -> None:
    result = sgwatch("checks", "--format", "json")
    ids = [c["id"] for c in json.loads(result.stdout)]
    assert "internet-database-port" in ids and len(ids) == len(set(ids))
