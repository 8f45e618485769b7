"""Redaction: no secret reaches a log line, from our code or a library's."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

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
