"""Redaction: no secret reaches a log line, from our code or a library's."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import structlog

from sgwatch import logs


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    logs.configure("warning", stream=sys.stderr)


SECRET = "Zm9vYmFyLXNlY3JldC1ub3QtZm9y"
TOKEN = "sts-token-CAIS-abcdef-0123456789"
HOOK = "https://oapi.dingtalk.com/robot/send?access_token=9f8e7d6c5b4a39281706"


def test_registered_and_shaped_secrets_never_reach_a_line() -> None:
    out = io.StringIO()
    logs.register_secret(SECRET, TOKEN)
    logs.configure("debug", stream=out, json=True)
    log = structlog.get_logger("t")
    log.info("calling", url=HOOK, key_secret=SECRET, nested={"token": [TOKEN]})
    logging.getLogger("urllib3.connectionpool").warning("POST %s failed: secret=%s", HOOK, "hunter2hunter2")
    try:
        raise RuntimeError(f"signature mismatch for {SECRET}")
    except RuntimeError:
        log.exception("boom")
    text = out.getvalue()
    for needle in (SECRET, TOKEN, "9f8e7d6c5b4a39281706", "hunter2hunter2"):
        assert needle not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["event"] == "calling"
    assert "***" in lines[0]["url"] and lines[2]["error"].startswith("RuntimeError")


def test_short_values_are_not_treated_as_secrets() -> None:
    logs.register_secret("ab")
    assert logs.scrub("a table of ab tests") == "a table of ab tests"


def test_every_wire_form_of_a_secret_is_scrubbed() -> None:
    logs.register_secret("Bearer bare-token-0123456789", "svc:basic-pass-0123", "ext/Id+Secret=42")
    logs.register_secret("https://hooks.example.com/services/T0/B0/slackpathtoken0123456789")
    logs.register_secret("https://oapi.example.com/robot/send?access_token=dingquerytoken0123456789")
    logs.register_secret(*logs.url_userinfo("http://user:endpoint-pass-01@127.0.0.1:9"))
    leaks = {
        "bare bearer token": "the token bare-token-0123456789 is expired",
        "basic auth base64": "got Basic " + base64.b64encode(b"svc:basic-pass-0123").decode(),
        "url-encoded": "GET /?ExternalId=ext%2FId%2BSecret%3D42&Action=AssumeRole",
        "form-encoded": "body ExternalId=ext%2FId%2BSecret%3D42",
        "webhook path token": "POST /services/T0/B0/slackpathtoken0123456789 failed",
        "webhook query token": "send?access_token=dingquerytoken0123456789",
        "url userinfo": "connect to user:endpoint-pass-01@127.0.0.1:9 refused",
    }
    for what, text in leaks.items():
        scrubbed = logs.scrub(text)
        assert "***" in scrubbed, what
        for needle in ("bare-token-0123456789", "basic-pass", "Secret", "0123456789", "endpoint-pass-01"):
            assert needle not in scrubbed, (what, scrubbed)
    # Ordinary words in a secret URL stay readable.
    assert (
        logs.scrub("POST https://hooks.example.com/services failed") == "POST https://hooks.example.com/services failed"
    )


def _one_shot(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SGWATCH_", "ALIBABA")) and "proxy" not in k.lower()
    }
    env.update(ALIBABA_CLOUD_ECS_METADATA_DISABLED="true", SGWATCH_LOG_LEVEL="debug")
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


DEMO = Path(__file__).resolve().parent.parent / "config" / "demo"


def test_one_shot_commands_never_print_the_external_id(tmp_path: Path) -> None:
    # The STS endpoint refuses the connection; the credentials library logs the AssumeRole URL,
    # ExternalId URL-encoded in its query string, and the error quotes it.
    external_id = "ext/Id+Confused-Deputy-42"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "regions: [cn-hangzhou]\n"
        "accounts:\n"
        "  - name: audit\n"
        "    credentials:\n"
        "      ram_role_arn:\n"
        "        role_arn: 'acs:ram::123456789012:role/audit'\n"
        f"        external_id: '{external_id}'\n"
        "        sts_endpoint: '127.0.0.1:1'\n"
        "        source: {type: access_key, id: LTAIexample0001, secret: source-secret-value-01}\n"
    )
    for command in (["report", "--baseline", DEMO / "baseline"], ["snapshot", "save", "--output", tmp_path / "s"]):
        result = _one_shot(*command, "--config", cfg, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "could not obtain credentials" in result.stderr
        for form in (external_id, quote(external_id, safe=""), "Confused-Deputy", "source-secret-value-01"):
            assert form not in result.stderr + result.stdout, form


def test_endpoint_userinfo_never_reaches_an_error_line(tmp_path: Path) -> None:
    bad = _one_shot(
        "report", "--baseline", DEMO / "baseline", "--endpoint", "ftp://ops:endpoint-pass-01@x", cwd=tmp_path
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "endpoint-pass-01" not in bad.stderr
    # An http(s) endpoint with user:password@ is refused before any request: the SDK would send
    # it in the Host header of every call.
    refused = _one_shot(
        "report", "--baseline", DEMO / "baseline", "--endpoint", "http://ops:endpoint-pass-01@127.0.0.1:1", cwd=tmp_path
    )
    assert refused.returncode == 2 and "user or password in the endpoint URL is not supported" in refused.stderr
    assert "endpoint-pass-01" not in refused.stderr + refused.stdout
