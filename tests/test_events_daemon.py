"""The events listener in the daemon: `sgwatch run` takes a pushed event; `validate` checks the section."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog

from sgwatch.daemon import Daemon, RunOptions
from sgwatch.emulator import Emulator
from sgwatch.emulator.sts import uid_of
from sgwatch.events.intake import Accepted
from tests.eventfixtures import TOKEN, UID, cloudevent, post, record
from tests.test_daemon_e2e import DEMO, estate, free_port, get, metrics, value, wait_for
from tests.test_daemon_e2e import Daemon as DaemonProcess

__all__ = ["estate"]  # the fixture, imported for the test below

ROOT = Path(__file__).resolve().parent.parent


def events_config(tmp_path: Path, emulator: Emulator, port: int, events_port: int) -> Path:
    cfg = tmp_path / "sgwatch.yaml"
    cfg.write_text(
        f"baseline: {DEMO / 'baseline'}\n"
        f"endpoint: {emulator.url}\n"
        "regions: [cn-hangzhou]\n"
        "interval: 3600\n"
        f"listen: 127.0.0.1:{port}\n"
        f"state: {tmp_path / 'state.sqlite'}\n"
        "scan: {concurrency: 2, requests_per_second: 0}\n"
        "events:\n"
        f"  listen: 127.0.0.1:{events_port}\n"
        f"  token: {TOKEN}\n"
    )
    return cfg


def test_sgwatch_run_takes_a_pushed_event_once_and_refuses_a_wrong_token(tmp_path: Path, estate: Emulator) -> None:
    port, events_port = free_port(), free_port()
    base, url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{events_port}/events"
    daemon = DaemonProcess(events_config(tmp_path, estate, port, events_port), tmp_path / "daemon.log")
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 200, what="/readyz")
        calls = dict(estate.calls)  # the first scan's, done (interval 3600: no other before the stop)
        assert calls
        # the daemon learned the account's UID through STS GetCallerIdentity (the emulator's)
        event = cloudevent(record(event_id="e2e-1", group="sg-web", user="alice"), account_uid=uid_of("default"))
        status, _, answer = post(url, event)
        assert (status, answer["accepted"]) == (202, 1)
        reads = calls.get("DescribeSecurityGroupAttribute", 0)
        wait_for(lambda: estate.calls["DescribeSecurityGroupAttribute"] == reads + 1, what="the event's one re-read")
        calls = dict(estate.calls)
        status, _, answer = post(url, event)  # EventBridge's retry
        assert (status, answer["duplicate"]) == (202, 1)
        assert post(url, event, token="not-the-token-at-all-0000")[0] == 401
        assert post(url, b"[1]")[0] == 400
        # a redelivery, a refused and a malformed request made no API call
        assert dict(estate.calls) == calls
        m = metrics(base)
        assert value(m, "sgwatch_events_received_total", result="accepted") == 1
        assert value(m, "sgwatch_events_received_total", result="duplicate") == 1
        assert value(m, "sgwatch_events_received_total", result="rejected") == 1
        assert value(m, "sgwatch_events_received_total", result="ignored") == 0
        assert value(m, "sgwatch_events_http_requests_total", code="202") == 2
        assert value(m, "sgwatch_events_http_requests_total", code="401") == 1
        assert value(m, "sgwatch_events_http_requests_total", code="400") == 1
        wait_for(lambda: '"change event taken"' in daemon.log.read_text(), what="the handler's log line")
    finally:
        code, took = daemon.stop()
    assert code == 0 and took < 10
    lines = [json.loads(line) for line in daemon.lines()]
    (started,) = [line for line in lines if line["event"] == "sgwatch started"]
    assert started["events_port"] == events_port
    handled = [line for line in lines if line["event"] == "change event taken"]
    assert [(h["event_id"], h["account"], h["security_group_ids"]) for h in handled] == [
        ("e2e-1", "default", ["sg-web"])
    ]
    assert TOKEN not in daemon.log.read_text()
    # stopped: the listener is closed too
    assert get(f"http://127.0.0.1:{events_port}/events")[0] == 0


def test_the_handler_is_injectable(tmp_path: Path) -> None:
    got: list[Accepted] = []

    def handler(events: Sequence[Accepted], /) -> None:
        got.extend(events)

    overrides = {
        "baseline": str(DEMO / "baseline"),
        "state": str(tmp_path / "state.sqlite"),
        "listen": "127.0.0.1:0",
        "events": {"listen": "127.0.0.1:0", "token": TOKEN},
    }
    daemon = Daemon(RunOptions(config_path=None, overrides=overrides), event_handler=handler)
    try:
        assert daemon.events_server is not None
        daemon.events_server.start()
        url = f"http://127.0.0.1:{daemon.events_server.port}/events"
        assert post(url, cloudevent(record(event_id="inj-1")))[0] == 202
        assert [a.event.event_id for a in got] == ["inj-1"]
        # UIDs learned at run time: with one account whose UID is now known, another UID is not its
        daemon.learned_uids["default"] = "7777777777777777"
        assert post(url, cloudevent(record(), account_uid=UID))[2]["ignored"] == 1
        assert post(url, cloudevent(record(), account_uid="7777777777777777"))[2]["accepted"] == 1
    finally:
        daemon.events_server.stop()
        daemon.state.close()


def test_a_reload_that_changes_the_token_says_it_takes_effect_at_restart(tmp_path: Path) -> None:
    cfg = tmp_path / "sgwatch.yaml"
    text = f"baseline: {DEMO / 'baseline'}\nlisten: 127.0.0.1:0\nstate: {tmp_path / 's.sqlite'}\n"
    cfg.write_text(text + f"events:\n  listen: 127.0.0.1:0\n  token: {TOKEN}\n")
    daemon = Daemon(RunOptions(config_path=cfg))
    try:
        cfg.write_text(text + f"events:\n  listen: 127.0.0.1:0\n  token: {TOKEN}-rotated\n")
        with structlog.testing.capture_logs() as logs:
            daemon.reload("test")
        warned = [e for e in logs if e["event"].startswith("events.listen or events.token changed")]
        assert warned and warned[0]["log_level"] == "warning"
        assert TOKEN not in repr(logs)
    finally:
        assert daemon.events_server is not None
        daemon.events_server.stop()
        daemon.state.close()


def test_no_events_section_no_listener(tmp_path: Path) -> None:
    overrides = {"baseline": str(DEMO / "baseline"), "state": str(tmp_path / "s.sqlite"), "listen": "127.0.0.1:0"}
    daemon = Daemon(RunOptions(config_path=None, overrides=overrides))
    try:
        assert daemon.events_server is None
    finally:
        daemon.state.close()


def validate(tmp_path: Path, events: str, listen: str = "127.0.0.1:9108") -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "sgwatch.yaml"
    cfg.write_text(f"baseline: {DEMO / 'baseline'}\nlisten: {listen}\nstate: {tmp_path / 's.sqlite'}\n{events}")
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", "validate", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_validate_reports_the_events_listener(tmp_path: Path) -> None:
    result = validate(tmp_path, f"events:\n  listen: 127.0.0.1:9109\n  token: {TOKEN}\n")
    assert result.returncode == 0, result.stderr
    assert "change events on 127.0.0.1:9109" in result.stdout


@pytest.mark.parametrize(
    ("events", "listen", "says"),
    [
        (f"events:\n  listen: 0.0.0.0:9108\n  token: {TOKEN}\n", "127.0.0.1:9108", "overlaps listen"),
        (f"events:\n  listen: 127.0.0.1:9108\n  token: {TOKEN}\n", ":9108", "overlaps listen"),
        ("events:\n  listen: 127.0.0.1:9109\n", "127.0.0.1:9108", "needs events.token"),
        ("events:\n  listen: 127.0.0.1:9109\n  token: short\n", "127.0.0.1:9108", "at least 16"),
        (f"events:\n  listen: nowhere\n  token: {TOKEN}\n", "127.0.0.1:9108", "no port"),
    ],
)
def test_validate_refuses_a_bad_events_section_in_one_line(tmp_path: Path, events: str, listen: str, says: str) -> None:
    result = validate(tmp_path, events, listen)
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
