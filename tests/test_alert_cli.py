"""`sgwatch alert test` and `sgwatch validate` through the real entry point, against a local receiver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.alertfixtures import Receiver

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo"


def sgwatch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"baseline: {DEMO / 'baseline'}\nnotifications:\n"
        f"  - {{type: webhook, name: siem, url: '{url}/in?token=tok-0123456789abcdef'}}\n"
    )
    return cfg


def test_alert_test_sends_one_notification(tmp_path: Path) -> None:
    receiver = Receiver().start()
    try:
        result = sgwatch("alert", "test", "--channel", "siem", "--config", config(tmp_path, receiver.url))
    finally:
        receiver.down()
    assert result.returncode == 0, result.stderr
    assert len(receiver.requests) == 1 and receiver.requests[0].path == "/in"


def test_alert_test_failures_are_one_line_without_the_token(tmp_path: Path) -> None:
    receiver = Receiver().start()
    url = receiver.url
    receiver.down()  # nobody listens
    cfg = config(tmp_path, url)
    result = sgwatch("alert", "test", "--channel", "siem", "--config", cfg)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "tok-0123456789abcdef" not in result.stderr
    unknown = sgwatch("alert", "test", "--channel", "nope", "--config", cfg)
    assert unknown.returncode == 2 and "no notification channel named 'nope' (known: siem)" in unknown.stderr


def test_validate(tmp_path: Path) -> None:
    ok = sgwatch("validate", "--config", config(tmp_path, "http://127.0.0.1:9"))
    assert ok.returncode == 0 and "8 groups in the baseline" in ok.stdout and "1 notification channel" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"baseline: {DEMO / 'baseline'}\nnotifications:\n  - {{type: webhook, name: x, url: 'ftp://x'}}\n")
    result = sgwatch("validate", "--config", bad)
    assert result.returncode == 2 and "notifications[0]" in result.stderr and "Traceback" not in result.stderr
