"""Notification channels: their configuration (pydantic v2) and how each one speaks HTTP.

A channel's config model also knows how to turn queued events into one HTTP request and how to
read its receiver's answer, so the outbox treats every channel alike. Secrets (webhook URLs,
tokens, signing secrets) are ``SecretStr``: they never appear in a repr, a log line or an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote_plus

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from sgwatch import validation
from sgwatch.alerting.escape import alertmanager_text, clean, markdown_text, plain_text, slack_text
from sgwatch.alerting.message import (
    CHANGED_BY_LIMIT,
    DESCRIPTION_LIMIT,
    FIELD_LIMIT,
    MESSAGE_LIMIT,
    Event,
    TextFormat,
    fit_bytes,
    iso,
    parse_iso,
    render_item,
    render_text,
    title,
    view,
)
from sgwatch.alerting.transport import DeliveryError, HttpRequest, HttpResponse, scrub
from sgwatch.core.checks import Severity
from sgwatch.errors import InputError
from sgwatch.logs import redact_url

# --- value types ---------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def _parse_duration(value: Any) -> Any:
    """``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"``; anything else goes to pydantic (ISO 8601, ``HH:MM:SS``)."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text and _DURATION.sub("", text) == "":
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text)))
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return timedelta(seconds=float(text))
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration such as 30s, 5m, 4h or 1d")
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration), AfterValidator(_positive)]


def _secret_url(value: SecretStr) -> SecretStr:
    validation.check_url(value.get_secret_value())  # its message names no part of the URL: it is the credential
    return value


# ``${NAME}`` in a config file is expanded once, by the config loader (sgwatch.config); a value
# that reaches a channel is used as it is, even if it reads ``${...}``: expanding it again would
# let one variable's value name another (``${ALIBABA_CLOUD_ACCESS_KEY_SECRET}``) and post it.
SecretUrl = Annotated[SecretStr, AfterValidator(_secret_url)]


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _app_error(data: Any, code_keys: Sequence[str], retry_codes: frozenset[int], what: str, secrets: list[str]) -> None:
    """Chat robots answer HTTP 200 with an error code in the body; read it."""
    if not isinstance(data, dict):
        return
    for key in code_keys:
        code = data.get(key)
        if code is None:
            continue
        try:
            number = int(code)
        except (TypeError, ValueError):
            return
        if number == 0:
            return
        msg = data.get("errmsg") or data.get("msg") or data.get("StatusMessage") or ""
        raise DeliveryError(f"{what} error {number}: {scrub(str(msg), secrets)}", retryable=number in retry_codes)


def _parse_body(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8", "replace") or "null")
    except ValueError:
        return None


# --- the common part ---------------------------------------------------------------------


class ChannelBase(BaseModel):
    """Settings every channel has."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # Becomes a metric label and a CLI argument: short and tame.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    min_severity: Severity = "high"
    renotify_interval: Duration | None = timedelta(hours=4)
    send_resolved: bool = True
    timeout: Duration = timedelta(seconds=10)
    max_age: Duration = timedelta(days=1)
    retry_initial: Duration = timedelta(seconds=10)
    retry_max: Duration = timedelta(minutes=10)
    max_findings_per_message: int = Field(default=10, ge=1, le=500)

    # Whether pending messages may be merged into one request at delivery (state-based receivers).
    coalesce: ClassVar[bool] = False
    # Whether the receiver drops a repeated message (by its Idempotency-Key, or Alertmanager by its
    # labels). A chat robot posts every request it gets: after an attempt whose outcome is unknown
    # (a timeout, a crash mid-POST) the outbox does not send it again (see docs/alerting.md).
    receiver_dedups: ClassVar[bool] = False

    def reminder_interval(self) -> timedelta | None:
        return self.renotify_interval

    def secrets(self) -> list[str]:
        """Every secret value, for the redactor (:func:`sgwatch.logs.register_secret` derives the
        forms a value takes on the wire: a URL's token, a header's bare credential, base64...)."""
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out.append(value.get_secret_value())
            elif isinstance(value, dict):
                out.extend(v.get_secret_value() for v in value.values() if isinstance(v, SecretStr))
        return [s for s in out if s]

    def target(self) -> str:
        """Where this channel posts, safe to log."""
        raise NotImplementedError

    def build(self, events: Sequence[Event], now: datetime) -> HttpRequest:
        raise NotImplementedError

    def request(self, events: Sequence[Event], now: datetime, key: str) -> HttpRequest:
        """One message as an HTTP request, carrying its idempotency key: the same on every attempt."""
        return _keyed(self.build(events, now), key)

    def check(self, response: HttpResponse) -> None:
        """Raise DeliveryError if a 2xx answer still reports a failure."""


IDEMPOTENCY_HEADER = "Idempotency-Key"


def _keyed(request: HttpRequest, key: str) -> HttpRequest:
    return HttpRequest(request.url, request.body, {**request.headers, IDEMPOTENCY_HEADER: key})


# --- Alertmanager ----------------------------------------------------------------------------


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    username: str
    password: SecretStr


class AlertmanagerChannel(ChannelBase):
    """Alertmanager's v2 API: one alert per finding, re-posted so it does not expire, ended on resolution."""

    type: Literal["alertmanager"]
    url: str
    min_severity: Severity = "info"  # Alertmanager's own routes decide who hears what
    renotify_interval: Duration | None = None
    resolve_timeout: Duration = timedelta(minutes=5)
    repost_fraction: float = Field(default=0.5, gt=0, le=0.9)
    labels: dict[str, str] = Field(default_factory=dict)
    generator_url: str | None = None
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuth | None = None
    max_findings_per_message: int = Field(default=200, ge=1, le=1000)

    coalesce: ClassVar[bool] = True
    receiver_dedups: ClassVar[bool] = True  # an alert is its labels: posting it again refreshes it

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if "@" in validation.check_url(v).netloc:
            raise ValueError("put credentials in basic_auth or bearer_token, not in the URL")
        return v.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key):
                raise ValueError(f"label name {key!r} is not a valid Prometheus label name")
        return v

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerChannel:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("set bearer_token or basic_auth, not both")
        return self

    def reminder_interval(self) -> timedelta | None:
        # Alertmanager resolves an alert it has not heard about for resolve_timeout; it also
        # dedups, so re-posting often costs nothing and human reminders are its repeat_interval.
        repost = self.resolve_timeout * self.repost_fraction
        if self.renotify_interval is None:
            return repost
        return min(repost, self.renotify_interval)

    def secrets(self) -> list[str]:
        out = super().secrets()
        if self.basic_auth is not None:
            password = self.basic_auth.password.get_secret_value()
            # "user:password" is what the Authorization header carries, base64-encoded.
            out += [password, f"{self.basic_auth.username}:{password}"]
        return out

    def target(self) -> str:
        return redact_url(self.url)

    def alert(self, event: Event, now: datetime) -> dict[str, Any]:
        f = event["finding"]
        v = view(event)
        checks = v.checks
        # Label values reach Alertmanager's own templates as they are, like the annotations.
        labels = {k: alertmanager_text(val, FIELD_LIMIT) for k, val in self.labels.items()}
        labels.update(
            {
                "alertname": "SgwatchTest" if v.event == "test" else "SgwatchDrift",
                "severity": alertmanager_text(v.severity, 16),
                "account": alertmanager_text(v.account, FIELD_LIMIT),
                "region": alertmanager_text(v.region, FIELD_LIMIT),
                "security_group_id": alertmanager_text(v.security_group_id, FIELD_LIMIT),
                "kind": alertmanager_text(v.kind, 32),
                "check": alertmanager_text(checks[0], 64) if checks else "",
                # Two findings may share every other label (two new rules in one group): the
                # finding id keeps them apart instead of Alertmanager merging them into one alert.
                "finding_id": alertmanager_text(v.finding_id, 64),
            }
        )
        labels = {k: val for k, val in labels.items() if val}
        start = parse_iso(f.get("first_seen"), parse_iso(event["at"], now))
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {
                "summary": alertmanager_text(v.message or v.headline, MESSAGE_LIMIT),
                "description": alertmanager_text(_am_description(event), 1000),
                "first_seen": iso(start),
            },
            "startsAt": iso(start),
        }
        if v.changed_by:
            # Annotations, not labels: labels group and dedup alerts, and who is named may change.
            alert["annotations"]["changed_by"] = alertmanager_text(v.changed_by, FIELD_LIMIT)
            alert["annotations"]["changed_by_detail"] = alertmanager_text(v.changed_by_detail, CHANGED_BY_LIMIT)
        if v.event == "resolved":
            alert["endsAt"] = iso(parse_iso(f.get("resolved_at"), parse_iso(event["at"], now)))
        elif v.event == "test":
            alert["endsAt"] = iso(now + timedelta(minutes=5))
        if self.generator_url:
            alert["generatorURL"] = self.generator_url
        return alert

    def build(self, events: Sequence[Event], now: datetime) -> HttpRequest:
        headers: dict[str, str] = {}
        if self.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.bearer_token.get_secret_value()}"
        elif self.basic_auth is not None:
            pair = f"{self.basic_auth.username}:{self.basic_auth.password.get_secret_value()}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        alerts = [self.alert(e, now) for e in events]
        return HttpRequest(f"{self.url}/api/v2/alerts", _json(alerts), headers)


def _am_description(event: Event) -> str:
    v = view(event)
    parts = [f"changed {v.changed_by_detail}"] if v.changed_by_detail else []
    for label, rule, desc in v.rules:
        parts.append(f"{label}: {rule}" + (f' (description "{clean(desc, DESCRIPTION_LIMIT)}")' if desc else ""))
    parts += [f"new exposure: {e}" for e in v.exposures[:5]]
    if v.checks:
        parts.append("checks: " + ", ".join(v.checks))
    return "; ".join(parts) or v.message


# --- generic JSON webhook ----------------------------------------------------------------------


class WebhookChannel(ChannelBase):
    """POST a JSON document of events; signed with HMAC-SHA256 when a secret is set."""

    type: Literal["webhook"]
    url: SecretUrl
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    max_findings_per_message: int = Field(default=50, ge=1, le=1000)

    receiver_dedups: ClassVar[bool] = True  # by the idempotency key in the header and the body

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in v.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if any(c in value.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} holds a line break")
        return v

    def target(self) -> str:
        return redact_url(self.url.get_secret_value())

    def request(self, events: Sequence[Event], now: datetime, key: str) -> HttpRequest:
        return _keyed(self.build(events, now, key), key)

    def build(self, events: Sequence[Event], now: datetime, key: str | None = None) -> HttpRequest:
        stamp = str(int(now.timestamp()))
        doc: dict[str, Any] = {
            "source": "sgwatch",
            "version": 1,
            # Signed with the body: a receiver drops a message whose key it has already seen.
            "idempotency_key": key,
            "sent_at": iso(now),
            "timestamp": int(stamp),
            "title": clean(title(events), 200),
            "events": [{**e, "finding": _sanitised(e["finding"])} for e in events],
        }
        body = _json(doc)
        headers = {k: v.get_secret_value() for k, v in self.headers.items()}
        headers["X-Sgwatch-Timestamp"] = stamp
        if self.secret is not None:
            digest = hmac.new(self.secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
            headers["X-Sgwatch-Signature"] = f"sha256={digest}"
        return HttpRequest(self.url.get_secret_value(), body, headers)


def _sanitised(value: Any, key: str = "") -> Any:
    """The finding as data, but with every string one bounded line: consumers log and display it."""
    if isinstance(value, dict):
        return {k: _sanitised(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_sanitised(v, key) for v in value]
    if isinstance(value, str):
        return clean(value, DESCRIPTION_LIMIT if key == "description" else 1000)
    return value


# --- Slack -----------------------------------------------------------------------------------

_SLACK = TextFormat(esc=slack_text, bold=lambda s: f"*{s}*", newline="\n", bullet="• ", item_separator="\n")


class SlackChannel(ChannelBase):
    """A Slack incoming webhook, with one section block per finding."""

    type: Literal["slack"]
    url: SecretUrl
    # Slack takes 50 blocks a message: a header and one section per finding.
    max_findings_per_message: int = Field(default=10, ge=1, le=45)

    def target(self) -> str:
        return redact_url(self.url.get_secret_value())

    def build(self, events: Sequence[Event], now: datetime) -> HttpRequest:
        head = clean(title(events), 150)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": head, "emoji": False}}
        ]
        for e in events:
            text = fit_bytes(render_item(view(e), _SLACK), 2900)  # section text limit is 3000
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        doc = {
            "text": slack_text(head, 150),
            "blocks": blocks,
            # Never turn names in the text into mentions or links.
            "link_names": False,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        return HttpRequest(self.url.get_secret_value(), _json(doc))

    def check(self, response: HttpResponse) -> None:
        body = response.body.decode("utf-8", "replace").strip()
        if body and body != "ok" and not body.startswith("{"):
            raise DeliveryError(f"Slack answered {scrub(body, self.secrets())}", retryable=False)


# --- DingTalk --------------------------------------------------------------------------------

_DING = TextFormat(
    esc=markdown_text, bold=lambda s: f"**{s}**", newline="\n\n", bullet="- ", item_separator="\n\n---\n\n"
)


class DingTalkChannel(ChannelBase):
    """A DingTalk custom robot (markdown). ``secret`` is the robot's 加签 secret (SEC…)."""

    type: Literal["dingtalk"]
    url: SecretUrl
    secret: SecretStr | None = None

    # 130101: more than 20 messages a minute; -1: busy.
    RETRY_CODES: ClassVar[frozenset[int]] = frozenset({130101, -1})

    def target(self) -> str:
        return redact_url(self.url.get_secret_value())

    def signed_url(self, now: datetime) -> str:
        url = self.url.get_secret_value()
        if self.secret is None:
            return url
        stamp = str(int(now.timestamp() * 1000))
        secret = self.secret.get_secret_value()
        mac = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
        sign = quote_plus(base64.b64encode(mac).decode())
        return f"{url}{'&' if '?' in url else '?'}timestamp={stamp}&sign={sign}"

    def build(self, events: Sequence[Event], now: datetime) -> HttpRequest:
        text = render_text(events, _DING, lambda t: f"### {markdown_text(t, 200)}")
        doc = {
            "msgtype": "markdown",
            "markdown": {"title": clean(title(events), 60), "text": fit_bytes(text, 18000)},
            "at": {"isAtAll": False, "atMobiles": [], "atUserIds": []},
        }
        return HttpRequest(self.signed_url(now), _json(doc))

    def check(self, response: HttpResponse) -> None:
        _app_error(_parse_body(response.body), ["errcode"], self.RETRY_CODES, "DingTalk", self.secrets())


# --- WeCom -----------------------------------------------------------------------------------

_WECOM = TextFormat(esc=markdown_text, bold=lambda s: f"**{s}**", newline="\n", bullet="> ", item_separator="\n\n")


class WeComChannel(ChannelBase):
    """A WeCom (企业微信) group robot, markdown message (4096 bytes at most)."""

    type: Literal["wecom"]
    url: SecretUrl
    max_findings_per_message: int = Field(default=5, ge=1, le=100)

    # 45009: over the robot's 20 messages a minute; -1: busy.
    RETRY_CODES: ClassVar[frozenset[int]] = frozenset({45009, -1})

    def target(self) -> str:
        return redact_url(self.url.get_secret_value())

    def build(self, events: Sequence[Event], now: datetime) -> HttpRequest:
        text = render_text(events, _WECOM, lambda t: f"### {markdown_text(t, 200)}")
        doc = {"msgtype": "markdown", "markdown": {"content": fit_bytes(text, 4000)}}
        return HttpRequest(self.url.get_secret_value(), _json(doc))

    def check(self, response: HttpResponse) -> None:
        _app_error(_parse_body(response.body), ["errcode"], self.RETRY_CODES, "WeCom", self.secrets())


# --- Lark / Feishu -------------------------------------------------------------------------------

_LARK = TextFormat(esc=plain_text, bold=lambda s: s, newline="\n", bullet="  - ", item_separator="\n\n")


class LarkChannel(ChannelBase):
    """A Lark / Feishu custom bot, plain-text message; ``secret`` enables signature verification."""

    type: Literal["lark"]
    url: SecretUrl
    secret: SecretStr | None = None

    # 11232: frequency limited.
    RETRY_CODES: ClassVar[frozenset[int]] = frozenset({11232})

    def target(self) -> str:
        return redact_url(self.url.get_secret_value())

    def build(self, events: Sequence[Event], now: datetime) -> HttpRequest:
        text = render_text(events, _LARK, lambda t: plain_text(t, 200))
        doc: dict[str, Any] = {"msg_type": "text", "content": {"text": fit_bytes(text, 18000)}}
        if self.secret is not None:
            stamp = str(int(now.timestamp()))
            key = f"{stamp}\n{self.secret.get_secret_value()}".encode()
            doc["timestamp"] = stamp
            doc["sign"] = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return HttpRequest(self.url.get_secret_value(), _json(doc))

    def check(self, response: HttpResponse) -> None:
        _app_error(_parse_body(response.body), ["code", "StatusCode"], self.RETRY_CODES, "Lark", self.secrets())


# --- the union --------------------------------------------------------------------------------

AnyChannel = AlertmanagerChannel | WebhookChannel | SlackChannel | DingTalkChannel | WeComChannel | LarkChannel
ChannelConfig = Annotated[AnyChannel, Field(discriminator="type")]


class AlertingConfig(BaseModel):
    """The ``alerting:`` section: a list of channels with unique names."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    channels: list[ChannelConfig] = Field(default_factory=list)

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[ChannelBase]) -> list[ChannelBase]:
        seen: set[str] = set()
        for ch in v:
            if ch.name in seen:
                raise ValueError(f"channel name {ch.name!r} is used twice")
            seen.add(ch.name)
        return v

    def channel(self, name: str) -> ChannelBase | None:
        return next((c for c in self.channels if c.name == name), None)


_TYPES = {"alertmanager", "webhook", "slack", "dingtalk", "wecom", "lark"}


class _OneChannel(BaseModel):
    channel: ChannelConfig


def parse_channel(data: Any) -> AnyChannel:
    """One channel from its YAML mapping (pydantic ValidationError if invalid)."""
    return _OneChannel.model_validate({"channel": data}).channel


def parse_channels(data: Sequence[Mapping[str, Any]], where: str = "notifications") -> list[AnyChannel]:
    """The config's channel list; InputError with one line naming the key (never a secret) if invalid."""
    try:
        return list(AlertingConfig.model_validate({"channels": list(data)}).channels)
    except ValidationError as exc:
        raise InputError(
            "\n".join(validation.describe(exc, "", model=AlertingConfig, path=lambda loc: _channel_path(where, loc)))
        ) from None


def _channel_path(where: str, loc: validation.Loc) -> str:
    # Drop the wrapper key and the union's tag ("channels.0.slack.url" → "notifications[0].url").
    parts = [str(p) for p in loc]
    if parts and parts[0] == "channels":
        parts = parts[1:]
    if len(parts) >= 2 and parts[0].isdigit() and parts[1] in _TYPES:
        del parts[1]
    path = where + (f"[{parts[0]}]" if parts and parts[0].isdigit() else "")
    rest = ".".join(parts[1:] if parts and parts[0].isdigit() else parts)
    return f"{path}{'.' + rest if rest else ''}"


def utcnow() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)
