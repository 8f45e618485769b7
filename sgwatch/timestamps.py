"""ISO 8601 instants, the one way sgwatch writes and reads them: UTC with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime, *, seconds: bool = False) -> str:
    """``moment`` in UTC with a Z; ``seconds=True`` drops the fraction (RFC 3339 as receivers expect).

    A naive datetime is taken as UTC: every clock of sgwatch is UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds" if seconds else "auto").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The instant ``text`` names, aware (UTC when it names no zone). Raises ``ValueError``."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
