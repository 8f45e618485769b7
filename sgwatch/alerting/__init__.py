"""Notifications about drift findings: channels, lifecycle and a durable outbox.

The daemon builds one :class:`Notifier` and calls ``process`` after each scan and
``deliver_pending`` every few seconds; ``send_test`` backs ``sgwatch alert test``.
See docs/alerting.md.
"""

from sgwatch.alerting.channels import (
    AlertingConfig,
    AlertmanagerChannel,
    BasicAuth,
    ChannelBase,
    ChannelConfig,
    DingTalkChannel,
    LarkChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    parse_channel,
    parse_channels,
)
from sgwatch.alerting.outbox import (
    DeliveryReport,
    NotificationStats,
    Notifier,
    build_notifier,
    ensure_schema,
    open_database,
)
from sgwatch.alerting.testsend import send_test

__all__ = [
    "AlertingConfig",
    "AlertmanagerChannel",
    "BasicAuth",
    "ChannelBase",
    "ChannelConfig",
    "DeliveryReport",
    "DingTalkChannel",
    "LarkChannel",
    "NotificationStats",
    "Notifier",
    "SlackChannel",
    "WeComChannel",
    "WebhookChannel",
    "build_notifier",
    "ensure_schema",
    "open_database",
    "parse_channel",
    "parse_channels",
    "send_test",
]
