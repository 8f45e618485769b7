"""The daemon's one HTTP server: /metrics, /healthz (alive) and /readyz (ready to be scraped).

/healthz says the process and its scheduler are alive, never whether the cloud is: a cloud
outage must not get the pod restarted. /readyz says the config and baseline are loaded and
the first scan has been attempted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from sgwatch.errors import InputError

Probe = Callable[[], tuple[bool, dict[str, Any]]]
StartResponse = Callable[..., Any]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would drown the log


def app(
    registry: CollectorRegistry, health: Probe, ready: Probe
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def probe(check: Probe, start_response: StartResponse) -> list[bytes]:
        ok, detail = check()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [json.dumps({"ok": ok, **detail}).encode() + b"\n"]

    def route(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return probe(health, start_response)
        if path == "/readyz":
            return probe(ready, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"sgwatch: /metrics, /healthz, /readyz\n"]

    return route


class Server:
    def __init__(self, listen: str, registry: CollectorRegistry, health: Probe, ready: Probe) -> None:
        host, _, port = listen.rpartition(":")
        try:
            self.httpd = make_server(
                host.strip("[]") or "0.0.0.0",
                int(port),
                app(registry, health, ready),
                ThreadingWSGIServer,
                handler_class=_Quiet,
            )
        except OSError as exc:
            raise InputError(f"--listen {listen}: cannot listen ({exc.strerror or exc}); pick a free port") from None
        self.port = self.httpd.server_port
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="sgwatch-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
