"""`sgwatch run` end to end: a subprocess against the ECS emulator, scraped like Prometheus would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sgwatch.emulator import Emulator
from sgwatch.emulator.control import EmulatorControl

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
AK_ID = "LTAIe2eDaemonKey0001"
AK_SECRET = "e2e-Secret-Must-Never-Appear-7f3a9c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, text = get(base + "/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # the user's SGWATCH_* stay
        env.update(
            ALIBABA_CLOUD_ACCESS_KEY_ID=AK_ID,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=AK_SECRET,
            ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        )
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sgwatch", "run", "--config", str(config)],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        return code, time.monotonic() - started

    def lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def estate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    emulator = Emulator(snapshot=DEMO / "snapshot", keys={AK_ID: AK_SECRET})
    emulator.start()
    yield emulator
    emulator.stop()


def write_config(tmp_path: Path, emulator: Emulator, port: int) -> Path:
    cfg = tmp_path / "sgwatch.yaml"
    cfg.write_text(
        f"baseline: {DEMO / 'baseline'}\n"
        f"endpoint: {emulator.url}\n"
        "regions: [cn-hangzhou, cn-shanghai]\n"
        "interval: 1\n"
        "jitter: 0\n"
        f"listen: 127.0.0.1:{port}\n"
        f"state: {tmp_path / 'state.sqlite'}\n"
        "scan: {concurrency: 4, requests_per_second: 0}\n"
    )
    return cfg


def test_daemon_scans_serves_metrics_tracks_drift_and_stops_cleanly(tmp_path: Path, estate: Emulator) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = Daemon(write_config(tmp_path, estate, port), tmp_path / "daemon.log")
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 200, what="/readyz")
        assert get(base + "/healthz")[0] == 200
        m = metrics(base)
        assert value(m, "sgwatch_drifted_groups") == 9
        assert value(m, "sgwatch_findings", severity="critical", kind="rule_removed") == 1
        assert value(m, "sgwatch_new_exposures", severity="critical") == 2
        assert value(m, "sgwatch_last_scan_complete") == 1
        assert value(m, "sgwatch_api_requests_total", action="DescribeSecurityGroupAttribute", result="ok")
        assert (
            value(
                m,
                "sgwatch_group_drift_findings",
                account="default",
                region="cn-shanghai",
                security_group_id="sg-new-reporting",
                severity="medium",
            )
            == 1
        )

        # Someone opens PostgreSQL on the web tier to the world (its instances have public
        # addresses: on the app tier, whose instance has none, it would be latent, medium).
        control = EmulatorControl(estate.url)
        control.add_permission(
            "cn-hangzhou",
            "sg-web",
            {
                "Direction": "ingress",
                "IpProtocol": "TCP",
                "PortRange": "5432/5432",
                "SourceCidrIp": "0.0.0.0/0",
                "Policy": "Accept",
                "Priority": "1",
                "Description": "oops",
            },
        )
        wait_for(
            lambda: value(metrics(base), "sgwatch_findings", severity="critical", kind="rule_added") == 2,
            what="the new critical finding in /metrics",
        )
        drift = [json.loads(line) for line in daemon.lines() if '"drift detected"' in line]
        assert any(d["security_group_id"] == "sg-web" and d["severity"] == "critical" for d in drift)

        # A deleted group's series disappear.
        control.remove_group("cn-shanghai", "sg-new-reporting")
        wait_for(
            lambda: (
                value(
                    metrics(base),
                    "sgwatch_group_drift_findings",
                    account="default",
                    region="cn-shanghai",
                    security_group_id="sg-new-reporting",
                    severity="medium",
                )
                is None
            ),
            what="the deleted group's series to go",
        )
    finally:
        code, took = daemon.stop()
    assert code == 0 and took < 10
    lines = daemon.lines()
    for line in lines:
        json.loads(line)  # every line is JSON when stdout is not a terminal
    assert AK_SECRET not in daemon.log.read_text()
    assert any(json.loads(line).get("scan_id") for line in lines if '"scan finished"' in line)

    # A restart remembers: nothing already known is "detected" again.
    daemon2 = Daemon(tmp_path / "sgwatch.yaml", tmp_path / "daemon2.log")
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 200, what="/readyz after restart")
        wait_for(lambda: '"scan finished"' in daemon2.log.read_text(), what="a scan after restart")
    finally:
        assert daemon2.stop()[0] == 0
    assert '"drift detected"' not in daemon2.log.read_text()


def test_a_failing_region_is_incomplete_never_removed(tmp_path: Path, estate: Emulator) -> None:
    EmulatorControl(estate.url).set_faults(failing_regions=["cn-shanghai"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = Daemon(write_config(tmp_path, estate, port), tmp_path / "daemon.log")
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 200, what="/readyz")
        m = metrics(base)
        assert value(m, "sgwatch_last_scan_complete") == 0
        assert value(m, "sgwatch_findings", severity="low", kind="group_removed") == 0
        assert value(m, "sgwatch_scan_errors", account="default", region="cn-shanghai") == 1
    finally:
        assert daemon.stop()[0] == 0


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("baseline: nowhere\ninterval: -5\n")
    result = subprocess.run(
        [sys.executable, "-m", "sgwatch", "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "interval" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_state_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    state.write_bytes(b"this is not a database" * 100)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sgwatch",
            "run",
            "--baseline",
            str(DEMO / "baseline"),
            "--state",
            str(state),
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "state file is unusable" in result.stderr and "Traceback" not in result.stderr


def test_daemon_notifies_a_webhook_once_and_keeps_its_token_out_of_logs(tmp_path: Path, estate: Emulator) -> None:
    from tests.alertfixtures import Receiver

    receiver = Receiver().start()
    token = "hook-token-5d41402abc4b2a76b9719d911017c592"
    port = free_port()
    cfg = write_config(tmp_path, estate, port)
    cfg.write_text(
        cfg.read_text()
        + (
            "notifications:\n"
            "  - type: webhook\n"
            "    name: siem\n"
            f"    url: {receiver.url}/hook?token=${{HOOK_TOKEN}}\n"
            "    secret: ${HOOK_SECRET}\n"
            "    min_severity: critical\n"
        )
    )
    os.environ["HOOK_TOKEN"], os.environ["HOOK_SECRET"] = token, "hmac-secret-0123456789abcdef"
    try:
        daemon = Daemon(cfg, tmp_path / "daemon.log")
        try:
            wait_for(lambda: len(receiver.requests) >= 1, what="a webhook delivery")
            time.sleep(3)  # several more scans: the same findings must not be sent again
        finally:
            assert daemon.stop()[0] == 0
    finally:
        del os.environ["HOOK_TOKEN"], os.environ["HOOK_SECRET"]
        receiver.down()
    bodies = [r.json() for r in receiver.requests]
    sent = json.dumps(bodies)
    assert "sg-legacy-db" in sent and "sg-cache" in sent  # the two critical findings
    assert "sg-bastion" not in sent  # high: below this channel's minimum
    assert all(r.headers.get("X-Sgwatch-Signature", "").startswith("sha256=") for r in receiver.requests)
    events = [e for body in bodies for e in body["events"]]
    ids = [e["finding"]["id"] for e in events]
    assert len(ids) == len(set(ids)), "each critical finding or exposed interface is announced once, not at every scan"
    drifts = [e for e in events if e["finding"]["kind"] != "interface_exposed"]
    assert len(drifts) == 2
    assert len(drifts) < len(events), "the demo's interfaces reachable on critical exposures are announced too"
    log = daemon.log.read_text()
    assert token not in log and "hmac-secret-0123456789abcdef" not in log


def test_reload_keeps_the_last_good_baseline_and_takes_a_fixed_one(tmp_path: Path, estate: Emulator) -> None:
    import shutil

    baseline = tmp_path / "baseline"
    shutil.copytree(DEMO / "baseline", baseline)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = write_config(tmp_path, estate, port)
    cfg.write_text(cfg.read_text().replace(f"baseline: {DEMO / 'baseline'}", f"baseline: {baseline}"))
    daemon = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 200, what="/readyz")
        target = baseline / "default" / "cn-hangzhou.yaml"
        target.write_text(target.read_text() + "  - id: not-a-group-id\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: '"reload failed, keeping the last good config"' in daemon.log.read_text(), what="reload error")
        assert get(base + "/healthz")[0] == 200
        assert value(metrics(base), "sgwatch_drifted_groups") == 9  # still the last good baseline
        # Accept today's state as the baseline: a file change alone triggers the reload.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sgwatch",
                "baseline",
                "capture",
                "--snapshot",
                str(DEMO / "snapshot"),
                "--output",
                str(tmp_path / "fresh"),
            ],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(baseline)
        shutil.copytree(tmp_path / "fresh", baseline)
        wait_for(lambda: value(metrics(base), "sgwatch_drifted_groups") == 0, what="drift to clear after reload")
    finally:
        assert daemon.stop()[0] == 0
    assert '"drift resolved"' in daemon.log.read_text()
