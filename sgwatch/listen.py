"""The one reading of a listen address (``--listen``, ``listen:`` in the config, the HTTP server).

Allowed: ``HOST:PORT`` (a host name or an IPv4 address; an empty host means every IPv4
interface) and ``[IPv6]:PORT``; the port is 0-65535. Port 0 binds any free port, which the
server then reports: in-process tests run many daemons at once; in production name the port.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

import click

ALLOWED = "HOST:PORT or [IPv6]:PORT with a port 0-65535, e.g. 0.0.0.0:9108 or [::1]:9108"

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class ListenAddress(NamedTuple):
    host: str  # "" means every IPv4 interface; an IPv6 address without brackets
    port: int

    @property
    def bind_host(self) -> str:
        return self.host or "0.0.0.0"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """``text`` as a listen address; ValueError saying what is wrong and what is allowed."""
    shown = repr(text[:80])
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError(f"{shown}: an IPv6 address needs ']:PORT' after it; expected {ALLOWED}")
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{shown}: {host!r} is not an IPv6 address; expected {ALLOWED}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{shown}: no port; expected {ALLOWED}")
        if ":" in host:
            raise ValueError(f"{shown}: put an IPv6 address in brackets, e.g. [::1]:9108")
        if host and not _valid_host(host):
            raise ValueError(f"{shown}: {host!r} is neither a host name nor an IPv4 address; expected {ALLOWED}")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ValueError(f"{shown}: the port must be a number 0-65535; expected {ALLOWED}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{shown}: port {port} is outside 0-65535")
    return ListenAddress(host, port)


def _valid_host(host: str) -> bool:
    if re.fullmatch(r"[0-9.]+", host):  # all digits and dots: it must be a dotted IPv4 address
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return _HOSTNAME.fullmatch(host) is not None


def listen_flag(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for ``--listen``: checked here, kept as text for the config it overrides."""
    if value is not None:
        try:
            parse_listen(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value
