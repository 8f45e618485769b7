"""Logging: structlog for our lines and the stdlib's (APScheduler, urllib3, the SDK), one pipeline.

JSON lines when the stream is not a terminal, the console renderer when it is. Every line goes
through :func:`redact`, which removes registered secrets (AccessKey secrets, STS tokens, webhook
tokens) and anything shaped like a credential, wherever in the line it hides.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, unquote, urlsplit

import structlog

_SECRETS: set[str] = set()
_ORDERED: tuple[str, ...] = ()  # every registered form, longest first; rebuilt on registration
_LOCK = threading.Lock()
# key=value / "key": "value" shapes that carry credentials, in URLs, headers and messages.
_SHAPES = re.compile(
    r"(?i)(access_?token|access_?key_?secret|security_?token|external_?id|secret|signature|sign|password|authorization)"
    r"([\"']?\s*[:=]\s*[\"']?)((?:(?:bearer|basic|token|bot)\s+)?[^\s&,\"'}]+)"
)
_ENV_SECRETS = ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN", "ALIBABACLOUD_ACCESS_KEY_SECRET")
MIN_SECRET = 6  # shorter values would blank out ordinary words
# Path segments and query values of a secret URL shorter than this are words ("services",
# "open-apis", "send"), not tokens: they stay readable.
MIN_URL_TOKEN = 16
# An HTTP credential header value: a scheme word, then the credential (Bearer, Basic, token, Bot...).
_AUTH_VALUE = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)\s+(\S+)")


def redact_url(url: str) -> str:
    """Scheme, host and port only: chat webhooks carry their token in the path or the query,
    and any URL may carry ``user:password@``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}"


def url_userinfo(url: str) -> list[str]:
    """The credentials in a URL's ``user:password@`` part (the URL itself is not a secret)."""
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        netloc = parts.netloc
    except ValueError:
        return []
    if "@" not in netloc:
        return []
    userinfo = netloc.rpartition("@")[0]
    out = [userinfo, unquote(userinfo)]
    if ":" in userinfo:
        password = userinfo.partition(":")[2]
        out += [password, unquote(password)]
    return out


def _url_tokens(url: str) -> list[str]:
    # Chat robots carry their token in the path (Slack, Lark, WeCom) or the query (DingTalk, WeCom).
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return []
    out = [p for p in parts.path.split("/") if len(p) >= MIN_URL_TOKEN]
    out += [v for kv in parts.query.split("&") for v in kv.split("=")[1:] if len(v) >= MIN_URL_TOKEN]
    return [*out, *(unquote(t) for t in out), *url_userinfo(url)]


def secret_forms(value: str) -> set[str]:
    """A secret and every spelling of it that can show up in text we print.

    The value itself; for an HTTP credential header value (``Bearer xyz``) the bare credential;
    for a secret URL its userinfo and the token in its path or query; for each of these its
    URL-encoded forms (a query string, a form body) and its base64 (HTTP basic auth encodes
    ``user:password``, receivers echo headers). Forms shorter than :data:`MIN_SECRET` are left out.
    """
    base = {value, value.strip()}
    auth = _AUTH_VALUE.fullmatch(value.strip())
    if auth:
        base.add(auth.group(2))
    for v in list(base):
        base.update(_url_tokens(v))
    forms = set(base)
    for v in base:
        forms.update({quote(v, safe=""), quote_plus(v), quote(v)})
        for encoded in (base64.b64encode(v.encode()).decode(), base64.urlsafe_b64encode(v.encode()).decode()):
            forms.update({encoded, encoded.rstrip("=")})  # with and without padding (JWT-style)
    return {f for f in forms if len(f) >= MIN_SECRET}


def register_secret(*values: str | None) -> None:
    """Never print these, nor any of their :func:`secret_forms`, wherever they appear."""
    global _ORDERED
    forms: set[str] = set()
    for value in values:
        if value and len(value) >= MIN_SECRET:
            forms |= secret_forms(value)
    with _LOCK:
        if forms <= _SECRETS:
            return
        _SECRETS.update(forms)
        _ORDERED = _longest_first(_SECRETS)


def _longest_first(values: Iterable[str]) -> tuple[str, ...]:
    # So a secret is cut out whole before any shorter form of it matches inside.
    return tuple(sorted(values, key=len, reverse=True))


@functools.lru_cache(maxsize=64)
def _extra_forms(values: tuple[str, ...]) -> tuple[str, ...]:
    forms: set[str] = set()
    for value in values:
        forms |= secret_forms(value)
    return _longest_first(forms)


def _cut(text: str, forms: tuple[str, ...]) -> str:
    # Substring tests, not one big regex alternation: several times faster per log line.
    for form in forms:
        if form in text:
            text = text.replace(form, "***")
    return text


def register_env_secrets(environ: MutableMapping[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    register_secret(*(env.get(name) for name in _ENV_SECRETS))


def scrub(text: str, also: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and ``also``, with their forms) and every
    credential-shaped ``key=value`` replaced by ``***``: the one redactor for logs, errors and
    the outbox."""
    text = _cut(text, _ORDERED)
    text = _cut(text, _extra_forms(tuple(v for v in also if v and len(v) >= MIN_SECRET)))
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


def mask_access_key_id(access_key_id: str) -> str:
    """An AccessKey id as sgwatch shows it: enough to tell keys apart, not enough to use one."""
    return access_key_id[:4] + "****" + access_key_id[-4:] if len(access_key_id) > 10 else "****"
