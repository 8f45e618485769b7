"""The CLI through its real entry point: exit codes, formats, one-line errors, the JSON contract."""

from __future__ import annotations

import errno
import io
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
    # The user's own environment, SGWATCH_* included: what a user has set must not break a command.
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60
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
        ("deep", "sg-web.json: JSON nested deeper than 64 levels"),
        ("huge_int", "sg-web.json: a number of 5000 characters is longer than any valid value"),
        ("nan", "sg-web.json: NaN is not a JSON number"),
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
    elif setup == "deep":  # was a RecursionError traceback, exit 1 (which CI reads as drift)
        target.write_text('{"SecurityGroupId": "sg-web", "Permissions": ' + "[" * 100_000 + "]" * 100_000 + "}")
    elif setup == "huge_int":  # was a ValueError traceback (int_max_str_digits), exit 1
        target.write_text(target.read_text().replace('"Priority": "1"', '"Priority": ' + "1" * 5000, 1))
    elif setup == "nan":
        target.write_text(target.read_text().replace('"Priority": "1"', '"Priority": NaN', 1))
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


def test_a_snapshot_file_past_the_configured_size_limit_is_refused(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(DEMO / "snapshot", snap)
    (snap / "cn-hangzhou" / "sg-web.json").write_text(
        json.dumps({"SecurityGroupId": "sg-web", "Permissions": {}, "X": "x" * 9000})
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits: {max_input_bytes: 8192}\n")
    result = sgwatch("report", "--config", cfg, "--baseline", DEMO / "baseline", "--snapshot", snap)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert (
        "sg-web.json: 0.0 MiB is over the input size limit" in result.stderr
        and "limits.max_input_bytes" in result.stderr
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "command",
    [("report", "--baseline", DEMO / "baseline", "--snapshot", DEMO / "snapshot"), ("checks",), ("config", "schema")],
)
def test_stdout_on_a_full_device_is_one_line_exit_2(command: tuple[str | Path, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGWATCH_")}
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "sgwatch", *map(str, command)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "sgwatch: error: stdout: cannot write: No space left on device\n"


class _Full(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_stdout_that_raises_enospc_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sgwatch.cli import main

    with capsys.disabled():
        stderr = io.StringIO()
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(_Full()), encoding="utf-8"))
        monkeypatch.setattr(sys, "stderr", stderr)
        with pytest.raises(SystemExit) as info:
            main(["report", "--baseline", str(DEMO / "baseline"), "--snapshot", str(DEMO / "snapshot")])
    assert info.value.code == 2
    assert stderr.getvalue() == "sgwatch: error: stdout: cannot write: No space left on device\n"
