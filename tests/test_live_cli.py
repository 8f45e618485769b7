"""The live paths of the CLI, through the real entry point and the real SDK against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sgwatch.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
AK_ID, AK_SECRET = "LTAIcliLiveKey000001", "cli-live-secret-value-42"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(snapshot=DEMO / "snapshot", keys={AK_ID: AK_SECRET})
    emu.start()
    yield emu
    emu.stop()


def sgwatch(*args: str | Path, secret: str = AK_SECRET) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=AK_ID,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=secret,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        SGWATCH_SCAN__REQUESTS_PER_SECOND="0",
    )
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def test_live_report_equals_the_offline_report(emulator: Emulator) -> None:
    live = sgwatch("report", "--baseline", DEMO / "baseline", "--endpoint", emulator.url, "--format", "json")
    offline = sgwatch("report", "--baseline", DEMO / "baseline", "--snapshot", DEMO / "snapshot", "--format", "json")
    assert live.returncode == offline.returncode == 1, live.stderr
    assert json.loads(live.stdout)["findings"] == json.loads(offline.stdout)["findings"]


def test_snapshot_save_then_capture_then_report_is_clean(emulator: Emulator, tmp_path: Path) -> None:
    assert sgwatch("snapshot", "save", "--output", tmp_path / "snap", "--endpoint", emulator.url).returncode == 0
    assert sgwatch("baseline", "capture", "--output", tmp_path / "b", "--endpoint", emulator.url).returncode == 0
    result = sgwatch("report", "--baseline", tmp_path / "b", "--snapshot", tmp_path / "snap")
    assert result.returncode == 0, result.stdout + result.stderr


def test_region_flag_limits_the_scope(emulator: Emulator) -> None:
    result = sgwatch(
        "report",
        "--baseline",
        DEMO / "baseline",
        "--endpoint",
        emulator.url,
        "--region",
        "cn-shanghai",
        "--format",
        "json",
    )
    report = json.loads(result.stdout)
    assert report["complete"] and {f["region"] for f in report["findings"]} == {"cn-shanghai"}


def test_wrong_secret_is_one_line_exit_2_without_the_secret(emulator: Emulator) -> None:
    wrong = "definitely-not-the-secret-123"
    result = sgwatch("report", "--baseline", DEMO / "baseline", "--endpoint", emulator.url, secret=wrong)
    assert result.returncode == 2
    assert "SignatureDoesNotMatch" in result.stderr and result.stderr.count("\n") == 1
    assert wrong not in result.stderr + result.stdout and "Traceback" not in result.stderr
