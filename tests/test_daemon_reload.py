"""Reload rebuilds all the config defines: channels, schedule; what needs a restart says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from sgwatch.daemon import Daemon, RunOptions
from tests.test_daemon_unit import EPOCH, Cloud, FakeClock

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"


def _config(path: Path, channels: str, extra: str = "") -> None:
    path.write_text(
        f"baseline: {DEMO / 'baseline'}\nstate: {path.parent / 'state.sqlite'}\nlisten: 127.0.0.1:0\n"
        f"interval: 600\n{extra}notifications:\n{channels}"
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    cfg = tmp_path / "sgwatch.yaml"
    _config(cfg, "  - {type: alertmanager, name: am, url: 'http://127.0.0.1:9/one'}\n")
    d = Daemon(RunOptions(config_path=cfg), clock=FakeClock(EPOCH), scanner=Cloud().scan)
    yield d, cfg
    d.state.close()


def test_a_reload_picks_up_a_changed_channel(daemon: tuple[Daemon, Path]) -> None:
    d, cfg = daemon
    assert {n: c.url for n, c in d.notifier.channels.items()} == {"am": "http://127.0.0.1:9/one"}
    _config(
        cfg,
        "  - {type: alertmanager, name: am, url: 'http://127.0.0.1:9/two'}\n"
        "  - {type: webhook, name: siem, url: 'http://127.0.0.1:9/hook'}\n",
    )
    with structlog.testing.capture_logs() as logs:
        d.reload("SIGHUP")
    assert d.notifier.channels["am"].url == "http://127.0.0.1:9/two"
    assert set(d.notifier.channels) == {"am", "siem"}
    (done,) = [e for e in logs if e["event"] == "reloaded"]
    assert done["channels"] == ["am", "siem"]


def test_a_bad_channel_keeps_the_last_good_ones(daemon: tuple[Daemon, Path]) -> None:
    d, cfg = daemon
    before = d.notifier
    _config(cfg, "  - {type: slack, name: s, url: 'hooks.slack.com/x'}\n")
    with structlog.testing.capture_logs() as logs:
        d.reload("SIGHUP")
    assert d.notifier is before and set(d.notifier.channels) == {"am"}
    (failed,) = [e for e in logs if e["event"].startswith("reload failed")]
    assert "notifications[0].url: must be an http(s) URL" in failed["error"]


def test_a_changed_listen_address_says_a_restart_is_needed(daemon: tuple[Daemon, Path]) -> None:
    d, cfg = daemon
    d._schedule(d.loaded.config, first=True)  # the jobs run() adds, on a scheduler not started
    text = cfg.read_text().replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:9999")
    cfg.write_text(text.replace("interval: 600", "interval: 60"))
    with structlog.testing.capture_logs() as logs:
        d.reload("file changed")
    assert [e["configured"] for e in logs if e["event"].startswith("listen changed")] == ["127.0.0.1:9999"]
    assert d.telemetry.interval == 60
    assert d.scheduler.get_job("scan").trigger.interval.total_seconds() == 60
