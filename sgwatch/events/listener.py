"""``POST /events``: EventBridge's HTTP target, on ``events.listen`` (apart from /metrics).

It faces whoever can reach it, so what a request may cost is bounded before it is read:

- Every request first passes a gate on waitress's I/O thread as soon as its headers are in:
  a per-source token bucket (429 with Retry-After), then the bearer token compared in
  constant time (401), then the Content-Length (413 over :data:`MAX_BODY`). A refused request
  is answered from the header alone, by a thread of its own: its body is never parsed, no
  handler runs, no API call is made.
- Connections, worker threads and the read timeout are the daemon's HTTP server's
  (``sgwatch.server.HttpServer``), with small bounds; waitress's own refusals (431, 413 of a
  chunked body, 400) are answered in the same short JSON.
- A taken body only reaches :class:`~sgwatch.events.intake.Intake`, which queues events for
  the handler: the listener never scans, so no body can amplify into a full scan.

Answers are short JSON that quote nothing of the request. The token is never logged (the
config registers it with the log redactor) and never compared but by ``hmac.compare_digest``.
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import structlog
from waitress.parser import HTTPRequestParser
from waitress.utilities import Error as WaitressError

from sgwatch.events import cloudevents
from sgwatch.events.intake import Delivery, Intake
from sgwatch.listen import ListenAddress
from sgwatch.metrics import EventCounts
from sgwatch.server import HttpServer, Limits, StartResponse, _Channel, _Listener

log = structlog.get_logger("sgwatch.events")

PATH: Final = "/events"
MAX_BODY: Final = 1024 * 1024
# A few EventBridge connections at once; far below the /metrics server's bounds.
LIMITS: Final = Limits(
    connections=32,
    overflow=8,
    backlog=128,
    workers=4,
    fast_workers=2,
    idle_timeout=30.0,
    read_timeout=10.0,
    max_header_bytes=16384,
    max_body_bytes=MAX_BODY + 1,  # waitress refuses a Content-Length >= this: MAX_BODY itself is allowed
)
RATE: Final = 50.0  # requests per second per source, sustained
BURST: Final = 200  # requests per source at once (a backlog EventBridge retries after an outage)
MAX_SOURCES: Final = 10_000  # token buckets kept; the least recently used goes first

_REASONS: Final = {
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
# What each refusal says: fixed text, so no answer carries anything of the request.
_SAYS: Final = {
    400: "the request is not HTTP sgwatch reads",
    401: "missing or wrong bearer token (Authorization: Bearer <events.token>)",
    413: f"the body is over {MAX_BODY} bytes",
    429: "too many requests from this address; retry after Retry-After seconds",
    431: "the request headers are too large",
    501: "that transfer encoding is not supported",
    503: "the events listener is answering as many requests as it takes; retry",
}
_CHALLENGE: Final = ("WWW-Authenticate", 'Bearer realm="sgwatch events"')


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


class Refusal(WaitressError):  # type: ignore[misc]
    """An answer given from the headers alone (or for waitress's own refusals), in short JSON."""

    def __init__(self, code: int, retry_after: int | None = None) -> None:
        super().__init__("")
        self.code = code
        self.reason = _REASONS.get(code, "Error")
        self.retry_after = retry_after

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        headers = [("Content-Type", "application/json")]
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
        if self.code == 401:
            headers.append(_CHALLENGE)
        return f"{self.code} {self.reason}", headers, _json({"error": _SAYS.get(self.code, self.reason.lower())})


class SourceLimiter:
    """A token bucket per client address: ``rate`` requests a second, ``burst`` at once."""

    def __init__(
        self,
        rate: float = RATE,
        burst: int = BURST,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.max_sources, self.clock = rate, float(burst), max_sources, clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (tokens, when)

    def take(self, source: str) -> int | None:
        """None if ``source`` may send a request now; else the seconds to wait (for Retry-After)."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(source, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            wait = None
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = max(1, math.ceil((1.0 - tokens) / self.rate))
            self._buckets[source] = (tokens, now)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        return wait


@dataclass(frozen=True, slots=True)
class Gate:
    """The checks a request passes on its headers alone, before its body is read."""

    token: bytes
    limiter: SourceLimiter

    def check(self, source: str, method: str, path: str, headers: Mapping[str, str]) -> Refusal | None:
        wait = self.limiter.take(source)
        if wait is not None:
            return Refusal(429, retry_after=wait)
        if path != PATH or method != "POST":
            return None  # the app answers 404 / 405, reading nothing
        if not self.authorized(headers.get("AUTHORIZATION", "")):
            return Refusal(401)
        return None

    def authorized(self, header: str) -> bool:
        scheme, _, credential = header.partition(" ")
        # Header text is the bytes as sent, decoded latin-1 (waitress, WSGI): encoded back, they are
        # what the sender sent, compared in constant time with the token's UTF-8.
        presented = credential.strip().encode("latin-1", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented, self.token)


class _GatedParser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's request parser, asking the gate as soon as the headers are parsed."""

    refusal: Refusal | None = None

    def __init__(self, adj: Any, *, gate: Gate, source: str) -> None:
        super().__init__(adj)
        self._gate = gate
        self._source = source

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        self.refusal = self._gate.check(self._source, self.command, self.path, self.headers)
        if self.refusal is not None:
            self.error = self.refusal  # answered now; the rest of the body is discarded with the connection
            self.completed = True


class _EventsChannel(_Channel):
    """A connection whose requests go through the gate; its source is the peer's address."""

    def __init__(self, server: _Listener, sock: Any, addr: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, sock, addr, *args, **kwargs)
        owner = server.owner
        assert isinstance(owner, EventsServer)
        source = str(addr[0]) if isinstance(addr, tuple) and addr else "unix"
        self.parser_class = partial(_GatedParser, gate=owner.gate, source=source)


class EventsServer(HttpServer):
    """The events listener: the gate, then the app, on the daemon's bounded HTTP server."""

    def __init__(
        self,
        listen: str | ListenAddress,
        token: str,
        intake: Intake,
        *,
        limiter: SourceLimiter | None = None,
        limits: Limits = LIMITS,
    ) -> None:
        self.counts = intake.counts  # one place for what was received and how it was answered
        self.gate = Gate(token.encode("utf-8"), limiter if limiter is not None else SourceLimiter())
        super().__init__(listen, app(intake, self.gate, self.counts), limits=limits, name="sgwatch-events")
        for listener in self._listeners:
            listener.channel_class = _EventsChannel

    def _dispatch(self, channel: _Channel) -> None:
        request = channel.requests[0]
        refusal = getattr(request, "refusal", None)
        error = refusal or request.error
        if error is None and not channel.overflow:
            self._workers.add_task(channel)
            return
        if error is None:
            error = Refusal(503, retry_after=1)
            self.shed += 1
        elif not isinstance(error, Refusal):
            error = Refusal(int(error.code))  # waitress's own (431, 413 of a chunked body, 400): our words
        request.error = error
        self.counts.answered(error.code)
        self._fast.add_task(channel)  # refusals never wait behind a body being parsed


def app(intake: Intake, gate: Gate, counts: EventCounts) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app behind the gate: read the body (bounded), parse, take, answer."""

    def answer(
        start_response: StartResponse, code: int, payload: Mapping[str, Any], *extra: tuple[str, str]
    ) -> list[bytes]:
        counts.answered(code)
        start_response(f"{code} {_REASONS[code]}", [("Content-Type", "application/json"), *extra])
        return [_json(payload)]

    def route(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return answer(start_response, 404, {"error": f"sgwatch's events listener answers POST {PATH}"})
        if environ.get("REQUEST_METHOD") != "POST":
            return answer(start_response, 405, {"error": f"{PATH} answers POST"}, ("Allow", "POST"))
        # The gate checked the token; checked again here so the app is never reached without it.
        if not gate.authorized(environ.get("HTTP_AUTHORIZATION", "")):
            return answer(start_response, 401, {"error": _SAYS[401]}, _CHALLENGE)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            code = 413 if length > MAX_BODY else 400
            return answer(start_response, code, {"error": _SAYS[code] if code == 413 else "bad Content-Length"})
        body = environ["wsgi.input"].read(length)
        headers = {
            key[5:].lower().replace("_", "-"): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_CE_")
        }
        try:
            events = cloudevents.parse_body(body, headers)
        except cloudevents.CloudEventError as exc:
            counts.add("rejected")
            log.info("events body refused", error=str(exc))
            return answer(start_response, 400, {"error": str(exc)})
        items = [event.ignored() or Delivery(event.data, account_uid=event.account_uid) for event in events]
        taken = intake.take(items, via="push")
        if not taken.taken_any:
            return answer(start_response, 400, {"error": taken.problem, **taken.to_dict()})
        return answer(start_response, 202, taken.to_dict())

    return route
