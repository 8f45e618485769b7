"""Logging: structlog for our lines and the stdlib's (APScheduler, urllib3, the SDK), one pipeline.

JSON lines when the stream is not a terminal, the console renderer when it is. Every line goes
through :func:`redact`, which removes registered secrets (AccessKey secrets, STS tokens, webhook
tokens) and anything shaped like a credential, wherever in the line it hides.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

_SECRETS: set[str] = set()
# key=value / "key": "value" shapes that carry credentials, in URLs, headers and messages.
_SHAPES = re.compile(
    r"(?i)(access_?token|access_?key_?secret|security_?token|secret|signature|sign|password|authorization)"
    r"([\"']?\s*[:=]\s*[\"']?)([^\s&,\"'}]+)"
)
_ENV_SECRETS = ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN", "ALIBABACLOUD_ACCESS_KEY_SECRET")


def register_secret(*values: str | None) -> None:
    """Never print these. Short values are ignored: they would blank out ordinary words."""
    for value in values:
        if value and len(value) >= 6:
            _SECRETS.add(value)


def register_env_secrets(environ: MutableMapping[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    register_secret(*(env.get(name) for name in _ENV_SECRETS))


def scrub(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return _SHAPES.sub(r"\1\2***", text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    if isinstance(value, BaseException | bytes):
        return scrub(str(value))
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the last word on what leaves the process."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _scrub_value(value)
    return event_dict


def _render_exc(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Exceptions become one scrubbed string field: a traceback can quote a URL with a token in it.
    exc = event_dict.pop("exc_info", None)
    if exc:
        info = sys.exc_info() if exc is True else exc
        if isinstance(info, BaseException):
            event_dict["error"] = f"{type(info).__name__}: {info}"
        elif isinstance(info, tuple) and info[1] is not None:
            event_dict["error"] = f"{info[0].__name__ if info[0] else 'Error'}: {info[1]}"
    return event_dict


def configure(
    level: str = "info",
    *,
    stream: TextIO | None = None,
    json: bool | None = None,
    quiet_libraries: Iterable[str] = ("urllib3", "apscheduler"),
) -> None:
    """Set up structlog and route the stdlib's loggers through the same processors."""
    stream = stream or sys.stdout
    register_env_secrets()
    as_json = not stream.isatty() if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _render_exc,
        redact,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in quiet_libraries:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
