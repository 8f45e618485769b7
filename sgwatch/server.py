"""The daemon's one HTTP server: /metrics, /healthz (alive) and /readyz (ready to be scraped).

/healthz says the process and its scheduler are alive, never whether the cloud is: a cloud
outage must not get the pod restarted. /readyz says the config and baseline are loaded and
the first scan has been attempted.

The server is waitress (one I/O thread, a bounded pool of worker threads) with sgwatch's
limits on top: a bounded number of open connections, so a flood of idle sockets cannot take
the file descriptors a scan needs; at that bound the connection idle longest is closed to admit
a waiting one, so idle sockets cannot starve the probes either; when every connection is busy,
a few more are taken in "overflow" only to answer a probe or a quick 503, so a scrape storm
cannot hold the probes in the kernel's queue; idle and read timeouts; probes served by threads
of their own, never queued behind /metrics renders; and scrapes that arrive while /metrics is
being rendered share the next render instead of each costing one.
"""

from __future__ import annotations

import gzip
import json
import logging
import select
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import Error as WaitressError

from sgwatch.errors import InputError
from sgwatch.listen import ListenAddress, parse_listen

Probe = Callable[[], tuple[bool, dict[str, Any]]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PROBES = frozenset({"/healthz", "/readyz"})
ALLOW = "GET, HEAD"
STOP_SECONDS = 1.0  # the daemon's SIGTERM budget is 10 s, most of it for the in-flight scan
_LIMIT_LOG_SECONDS = 60.0

log = structlog.get_logger("sgwatch.server")


@dataclass(frozen=True)
class Limits:
    """What one HTTP server may hold and how long it waits for a client."""

    connections: int = 128  # open at once for any request
    overflow: int = 16  # more, when all those are busy: a probe is answered, anything else gets 503
    backlog: int = 1024  # connections the kernel queues while the server is at `connections`
    workers: int = 16  # threads answering requests; in a storm most wait on one shared render
    fast_workers: int = 2  # threads answering only the fast paths (the probes) and overflow's 503s
    idle_timeout: float = 30.0  # no request in progress and no byte either way for this long: closed
    read_timeout: float = 10.0  # a request not received whole this long after its first byte: closed
    # At `connections`, one idle this long is closed to admit a waiting one. Shorter drains idle
    # floods faster but cuts off clients slow to send their request.
    evict_after: float = 1.0
    overflow_idle: float = 0.5  # an overflow connection idle this long is closed: it would only get a 503
    max_header_bytes: int = 16384
    max_body_bytes: int = 65536


@dataclass
class _Render:
    done: threading.Event = field(default_factory=threading.Event)
    output: bytes = b""
    error: BaseException | None = None


class SharedRenders:
    """One render at a time per key; callers arriving during one share the next, never an older one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, _Render] = {}
        self._next: dict[Hashable, _Render] = {}

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        with self._lock:
            running = self._running.get(key)
            if running is None:
                mine, lead, after = self._running.setdefault(key, _Render()), True, None
            elif key in self._next:
                mine, lead, after = self._next[key], False, None
            else:
                mine, lead, after = self._next.setdefault(key, _Render()), True, running
        if lead:
            if after is not None:
                after.done.wait()  # its leader hands the running slot to `mine`
            try:
                mine.output = render()
            except BaseException as exc:
                mine.error = exc  # the callers sharing this render fail with it too
                raise
            finally:
                with self._lock:
                    if key in self._next:
                        self._running[key] = self._next.pop(key)
                    else:
                        del self._running[key]
                mine.done.set()
        else:
            mine.done.wait()
            if mine.error is not None:
                raise RuntimeError("the shared /metrics render failed") from mine.error
        return mine.output


def exposition(registry: CollectorRegistry) -> WSGIApp:
    """/metrics as prometheus_client renders it: text or OpenMetrics by Accept, gzip, ``name[]``."""
    shared = SharedRenders()

    def metrics(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        names = tuple(sorted(set(parse_qs(environ.get("QUERY_STRING", "")).get("name[]", []))))
        compress = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))

        def render() -> bytes:
            output = encoder(registry.restricted_registry(names) if names else registry)
            return gzip.compress(output) if compress else output

        body = shared.get((content_type, names, compress), render)
        headers = [("Content-Type", content_type)]
        if compress:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return metrics


def app(registry: CollectorRegistry, health: Probe, ready: Probe) -> WSGIApp:
    metrics = exposition(registry)

    def probe(check: Probe, start_response: StartResponse) -> list[bytes]:
        ok, detail = check()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [json.dumps({"ok": ok, **detail}).encode() + b"\n"]

    def route(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if path not in PROBES and path != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"sgwatch: /metrics, /healthz, /readyz\n"]
        if method not in ("GET", "HEAD"):  # waitress sends no body for HEAD
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", ALLOW)])
            return [f"sgwatch: {path} answers {ALLOW}\n".encode()]
        if path == "/metrics":
            return metrics(environ, start_response)
        return probe(health if path == "/healthz" else ready, start_response)

    return route


class _Busy(WaitressError):  # type: ignore[misc]
    """The answer to a request taken in overflow that is not a fast path."""

    code = 503
    reason = "Service Unavailable"

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        status, headers, body = super().to_response(ident)
        return status, [*headers, ("Retry-After", "1")], body


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A connection that remembers when its current request began (for the read timeout)."""

    request_started = 0.0

    def __init__(self, server: _Listener, *args: Any, **kwargs: Any) -> None:
        self.overflow = server.owner._normal_full()
        super().__init__(server, *args, **kwargs)

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()
        return bool(super().received(data))

    def idle(self) -> bool:
        """No request being served, nothing left to send, not already closing."""
        return not (self.requests or self.total_outbufs_len or self.will_close or self.close_when_flushed)


class _Listener(TcpWSGIServer):  # type: ignore[misc]
    """One listening socket; admission and task routing belong to the HttpServer that owns it."""

    channel_class = _Channel

    def __init__(self, owner: HttpServer, *args: Any, **kwargs: Any) -> None:
        self.owner = owner
        super().__init__(*args, **kwargs)
        self._pending = select.poll()  # select() cannot watch descriptors past 1024
        self._pending.register(self.socket.fileno(), select.POLLIN)

    def has_pending(self) -> bool:
        return bool(self._pending.poll(0))

    def readable(self) -> bool:
        return bool(self.accepting) and self.owner._admit(self)

    def add_task(self, channel: _Channel) -> None:
        self.owner._dispatch(channel)


class HttpServer:
    """One WSGI app on one address, within ``limits``; ``fast_paths`` get their own threads."""

    def __init__(
        self,
        listen: str | ListenAddress,
        application: WSGIApp,
        *,
        limits: Limits = Limits(),
        fast_paths: frozenset[str] = frozenset(),
        name: str = "sgwatch-http",
    ) -> None:
        address = listen if isinstance(listen, ListenAddress) else _parse(listen)
        self.limits = limits
        self._fast_paths = fast_paths
        self._map: dict[int, Any] = {}
        self._workers = ThreadedTaskDispatcher()
        self._fast = ThreadedTaskDispatcher()
        self._stopping = threading.Event()
        self._closing = threading.Lock()
        self._victim: _Channel | None = None
        self._at_limit_logged = 0.0
        self.evicted = 0  # connections closed at the limit to admit another
        self.timed_out = 0  # connections closed by the idle or read timeout
        self.shed = 0  # requests answered 503 because every connection was busy
        host = f"[{address.bind_host}]" if ":" in address.bind_host else address.bind_host
        try:
            adj = Adjustments(
                listen=f"{host}:{address.port}",
                backlog=limits.backlog,
                max_request_header_size=limits.max_header_bytes,
                max_request_body_size=limits.max_body_bytes,
                asyncore_use_poll=True,
                ident="sgwatch",
            )
        except ValueError:
            raise InputError(
                f"listen {address}: cannot resolve {address.host!r}; give an IP address or a resolvable host name"
            ) from None
        try:
            self._listeners = [
                _Listener(self, application, map=self._map, dispatcher=self._workers, adj=adj, sockinfo=info)
                for info in adj.listen
            ]
        except OSError as exc:
            wasyncore.close_all(self._map)
            raise InputError(f"listen {address}: cannot listen ({exc.strerror or exc}); pick a free port") from None
        self.address = address
        self.port = int(self._listeners[0].effective_port)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._workers.set_thread_count(self.limits.workers)
        self._fast.set_thread_count(self.limits.fast_workers)
        self._thread.start()

    def stop(self) -> None:
        """Close the sockets and every connection, within about STOP_SECONDS."""
        with self._closing:
            self._stopping.set()
            if self._map:  # still serving: wake the I/O thread from its poll, it closes everything
                self._listeners[0].pull_trigger()
        if self._thread.is_alive():
            self._thread.join(STOP_SECONDS / 2)
        else:
            self._close_all()
        for pool in (self._workers, self._fast):
            pool.shutdown(timeout=STOP_SECONDS / 4)  # its threads are daemons: a stuck one does not hold the exit

    def _serve(self) -> None:
        tick = min(0.5, self.limits.idle_timeout / 4, self.limits.read_timeout / 4)
        try:
            while not self._stopping.is_set() and self._map:
                self._sweep(time.time())
                wasyncore.loop(timeout=tick, map=self._map, use_poll=True, count=1)
        finally:
            self._close_all()

    def _close_all(self) -> None:
        with self._closing:  # never while stop() pulls the trigger
            for obj in list(self._map.values()):
                # handle_close also wakes a worker waiting to write to that connection
                (obj.handle_close if isinstance(obj, HTTPChannel) else obj.close)()
            self._map.clear()

    # -- connections -------------------------------------------------------------------------
    def _channels(self) -> list[_Channel]:
        return [ch for listener in self._listeners for ch in listener.active_channels.values()]

    def _normal_full(self) -> bool:
        return sum(not ch.overflow for ch in self._channels()) >= self.limits.connections

    def _sweep(self, now: float) -> None:
        idle_cutoff = now - self.limits.idle_timeout
        read_cutoff = now - self.limits.read_timeout
        overflow_cutoff = now - self.limits.overflow_idle
        for ch in self._channels():
            if not ch.idle():
                continue
            if (
                ch.last_activity < idle_cutoff
                or (ch.request is not None and ch.request_started < read_cutoff)
                or (ch.overflow and ch.last_activity < overflow_cutoff)
            ):
                ch.will_close = True  # waitress closes it on this loop turn
                self.timed_out += 1

    def _admit(self, listener: _Listener) -> bool:
        """Accept on ``listener`` now? At the limit, close the longest-idle connection, else use overflow."""
        channels = self._channels()
        normal = [ch for ch in channels if not ch.overflow]
        if len(normal) < self.limits.connections:
            return True
        if self._victim is not None and self._victim.connected:
            return False  # the last one chosen closes on this turn; then there is room
        self._victim = None
        if not listener.has_pending():
            return False
        cutoff = time.time() - self.limits.evict_after
        idle = [ch for ch in normal if ch.idle() and ch.last_activity <= cutoff]
        if idle:
            self._victim = min(idle, key=lambda ch: ch.last_activity)
            self._victim.will_close = True
            self.evicted += 1
            return False
        now = time.monotonic()
        if now - self._at_limit_logged >= _LIMIT_LOG_SECONDS:
            self._at_limit_logged = now
            log.warning(
                "http connections all busy",
                limit=self.limits.connections,
                answered_busy=self.shed,
                hint="probes are still answered; other requests get 503 until a connection is free",
            )
        return len(channels) - len(normal) < self.limits.overflow

    def _dispatch(self, channel: _Channel) -> None:
        request = channel.requests[0]
        if request.path in self._fast_paths:
            self._fast.add_task(channel)
        elif channel.overflow:
            request.error = _Busy("sgwatch is answering as many requests as it will take; retry")
            self.shed += 1
            self._fast.add_task(channel)
        else:
            self._workers.add_task(channel)


class Server(HttpServer):
    """The daemon's endpoints on ``listen``: /metrics, and the probes on threads of their own."""

    def __init__(
        self,
        listen: str | ListenAddress,
        registry: CollectorRegistry,
        health: Probe,
        ready: Probe,
        *,
        limits: Limits = Limits(),
    ) -> None:
        super().__init__(listen, app(registry, health, ready), limits=limits, fast_paths=PROBES)


def _parse(text: str) -> ListenAddress:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise InputError(f"listen: {exc}") from None


# A queue of scrapes waiting for a worker is the expected state under a storm, not a warning.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)
