"""``sgwatch alert test --channel NAME``: one notification straight to the receiver, no outbox."""

from __future__ import annotations

import json
from datetime import datetime

import structlog

from sgwatch.alerting.channels import ChannelBase, utcnow
from sgwatch.alerting.message import iso, make_event
from sgwatch.alerting.outbox import Transport, message_key
from sgwatch.alerting.transport import DeliveryError, post
from sgwatch.errors import SgwatchError

log = structlog.get_logger()


def _test_finding(channel: ChannelBase, now: datetime) -> dict[str, object]:
    return {
        "id": "sgwatch-test",
        "kind": "test",
        "severity": "info",
        "account": "sgwatch",
        "region": "test",
        "security_group_id": "sg-test",
        "direction": None,
        "live": None,
        "baseline": None,
        "new_exposures": [],
        "checks": [],
        "message": f"Test notification from sgwatch to channel {channel.name}; no action needed.",
        "first_seen": iso(now),
    }


def send_test(channel: ChannelBase, *, now: datetime | None = None, transport: Transport = post) -> None:
    """Send a test notification now; raise SgwatchError with one secret-free line if it fails."""
    now = now or utcnow()
    event = make_event("test", now, _test_finding(channel, now))
    try:
        request = channel.request([event], now, message_key(channel.name, json.dumps([event])))
        channel.check(transport(request, channel.timeout.total_seconds(), channel.secrets()))
    except DeliveryError as exc:
        where = f"alert channel {channel.name!r} ({channel.target()})"
        raise SgwatchError(f"{where}: test notification failed: {exc}") from None
    log.info("test notification sent", channel=channel.name, target=channel.target())
