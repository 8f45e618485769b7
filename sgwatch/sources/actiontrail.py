"""ActionTrail ``LookupEvents`` for one account and region: the write events of a time window.

ActionTrail's endpoint is regional (``actiontrail.{region}.aliyuncs.com``) and answers with the
events of its own region (global events show in every region), so each (account, region) is
read on its own; records naming another ``acsRegion`` are left to that region's read. The
endpoint override (``endpoint:`` / ``SGWATCH_ECS_ENDPOINT``, the same as the ECS scan's: the
emulator serves every product on one address) sends every region's calls to one address.

Calls are spaced within ActionTrail's 2 QPS per account (one limiter per account, shared by its
regions), throttling is retried with backoff (``x-acs-retry-after`` honoured), 5xx and network
failures a few times; a permission refusal is one line naming ``actiontrail:LookupEvents``. Pages
are read oldest first (``Direction=FORWARD``) with ``EventRW=Write`` as the one condition, and
follow the paging rule of ``sources.paging`` (no repeated NextToken). Each record goes through
:func:`~sgwatch.events.record.parse_record`: a malformed one is counted and logged, never fatal.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from alibabacloud_actiontrail20200706 import models as trail_models
from alibabacloud_actiontrail20200706.client import Client as TrailSdkClient
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException
from darabonba.exceptions import UnretryableException
from darabonba.runtime import RuntimeOptions

from sgwatch import logs, timestamps
from sgwatch.errors import SgwatchError
from sgwatch.events.model import ChangeEvent
from sgwatch.events.record import Ignored, RecordError, parse_record
from sgwatch.sources import identifiers, paging
from sgwatch.sources.live import _DENIED_CODES, _RETRYABLE_CODES, _credential_client, _is_auth, _is_throttle
from sgwatch.sources.live_settings import AccessKeyCredentials, AccountSettings, LiveSettings
from sgwatch.sources.ratelimit import RateLimiters

log = structlog.get_logger("sgwatch.actiontrail")

RAM_ACTION = "actiontrail:LookupEvents"
QPS = 2.0  # LookupEvents per second per account
PAGE_SIZE = 50  # the most MaxResults takes
MAX_PAGES = 20  # per read: 1,000 events, 10 s at 2 QPS; the rest waits for the next read
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the only format StartTime/EndTime take


class LookupFailed(SgwatchError):
    """A LookupEvents read that did not complete; one line, secrets scrubbed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Lookup:
    """What one read of a window found."""

    events: list[ChangeEvent] = field(default_factory=list)  # the watched changes of this region
    seen: list[tuple[str, datetime]] = field(default_factory=list)  # (eventId, eventTime) of every record
    records: int = 0
    ignored: int = 0  # well-formed, but nothing sgwatch watches (parse_record's Ignored)
    malformed: int = 0
    other_region: int = 0
    pages: int = 0
    complete: bool = True  # False: stopped after max_pages with more to read (oldest first, so resumable)


def _format(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


class TrailClient:
    """LookupEvents through the official SDK, for the accounts of ``settings``."""

    def __init__(
        self,
        settings: LiveSettings,
        limiters: RateLimiters | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.endpoint = settings.resolved_endpoint()
        self.limiters = limiters or RateLimiters(QPS)
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], TrailSdkClient] = {}

    def lookup_events(
        self,
        account: AccountSettings,
        region: str,
        start: datetime,
        end: datetime,
        *,
        max_pages: int = MAX_PAGES,
    ) -> Lookup:
        """The write events of ``region`` with ``start <= eventTime <= end`` (whole seconds), oldest
        first, at most ``max_pages`` pages. Raises :class:`LookupFailed` (nothing is returned then)."""
        region = identifiers.check("region", region)
        where = f"account '{account.name}' region {region}"
        out = Lookup()
        read: list[paging.Page] = []
        token: str | None = None
        while True:
            request = trail_models.LookupEventsRequest(
                start_time=_format(start),
                end_time=_format(end),
                max_results=str(PAGE_SIZE),
                next_token=token,
                direction="FORWARD",
                lookup_attribute=[trail_models.LookupEventsRequestLookupAttribute(key="EventRW", value="Write")],
            )
            body = self._call(account, region, request, where)
            records = body.get("Events")
            if records is None:
                records = []
            if not isinstance(records, list):
                raise LookupFailed("MalformedResponse", f"{where}: LookupEvents returned Events that are not a list")
            read.append(paging.Page.of(body, len(records)))
            out.pages += 1
            for record in records:
                self._take(record, account, region, out)
            token = paging.next_token(read)
            if token is None:
                if (missing := paging.missing_page(read)) is not None:
                    raise LookupFailed("MalformedResponse", f"{where}: LookupEvents: {missing}")
                return out
            if out.pages >= max_pages:
                out.complete = False
                return out

    def _take(self, record: object, account: AccountSettings, region: str, out: Lookup) -> None:
        out.records += 1
        try:
            if not isinstance(record, Mapping):
                raise RecordError(f"an ActionTrail record is an object, not {identifiers.shown(record)}")
            parsed = parse_record(record, account_uid=account.uid or "")
            event_id, raw_time = record.get("eventId"), record.get("eventTime")
            if not isinstance(event_id, str) or not isinstance(raw_time, str):
                raise RecordError("the record has no eventId or eventTime")
            try:
                when = timestamps.parse_iso(raw_time)
            except ValueError:
                raise RecordError(f"eventTime {identifiers.shown(raw_time)} is not an ISO 8601 time") from None
        except RecordError as exc:
            out.malformed += 1
            log.warning("malformed ActionTrail record", account=account.name, region=region, error=logs.scrub(str(exc)))
            return
        out.seen.append((event_id, when))
        if record.get("acsRegion") != region:
            out.other_region += 1
        elif isinstance(parsed, Ignored):
            out.ignored += 1
        else:
            out.events.append(parsed)

    # -- one call with retries --------------------------------------------------------------------
    def _call(
        self, account: AccountSettings, region: str, request: trail_models.LookupEventsRequest, where: str
    ) -> dict[str, Any]:
        s = self.settings
        client = self._client(account, region)
        limiter = self.limiters.get(account.name)
        failures = throttles = 0
        while True:
            self._sleep(limiter.reserve())
            runtime = RuntimeOptions(connect_timeout=s.connect_timeout_ms, read_timeout=s.read_timeout_ms)
            try:
                response = client.lookup_events_with_options(request, runtime)
            except AlibabaCloudException as exc:
                code = str(exc.code or "")
                if _is_throttle(code) or isinstance(exc, ThrottlingException):
                    if throttles >= s.max_throttle_retries:
                        raise LookupFailed(
                            code, f"{where}: LookupEvents still throttled after {throttles} retries"
                        ) from None
                    throttles += 1
                    retry_after = getattr(exc, "retry_after", None)
                    wait = retry_after / 1000 if retry_after else self._backoff(throttles)
                    limiter.penalize(wait)  # the account's quota is spent: hold back its other regions too
                elif _is_auth(code):
                    raise LookupFailed(code, self._auth_line(account, where, code)) from None
                elif (exc.status_code or 0) >= 500 or code in _RETRYABLE_CODES:
                    if failures >= s.max_retries:
                        raise LookupFailed(
                            code, f"{where}: LookupEvents failed: {self._describe(account, exc)}"
                        ) from None
                    failures += 1
                    wait = self._backoff(failures)
                else:
                    raise LookupFailed(
                        code or "UnknownError", f"{where}: LookupEvents failed: {self._describe(account, exc)}"
                    ) from None
            except UnretryableException as exc:
                inner = exc.inner_exception
                if isinstance(inner, CredentialException):
                    detail = self._scrub(account, str(inner).splitlines()[0] if str(inner) else type(inner).__name__)
                    raise LookupFailed(
                        "InvalidCredentials", f"{where}: could not obtain credentials: {detail}"
                    ) from None
                if failures >= s.max_retries:
                    raise LookupFailed(
                        "ConnectionError", f"{where}: LookupEvents: no answer after {failures + 1} attempts"
                    ) from None
                failures += 1
                wait = self._backoff(failures)
            except (AttributeError, TypeError, ValueError, KeyError):
                raise LookupFailed(
                    "MalformedResponse", f"{where}: LookupEvents returned a body of the wrong shape"
                ) from None
            else:
                if response.body is None:
                    raise LookupFailed("MalformedResponse", f"{where}: LookupEvents returned 200 without a body")
                body: dict[str, Any] = response.body.to_map()
                return body
            log.debug("retrying LookupEvents", account=account.name, region=region, wait_s=round(wait, 3))
            self._sleep(wait)

    def _backoff(self, attempt: int) -> float:
        # exponential with equal jitter, as the scanner's
        step = min(self.settings.backoff_cap_ms, self.settings.backoff_base_ms * (1 << max(0, attempt - 1))) / 1000
        with self._lock:
            return step / 2 + self._rng.uniform(0, step / 2)

    def _auth_line(self, account: AccountSettings, where: str, code: str) -> str:
        if code.startswith("Forbidden") or code in _DENIED_CODES:
            fix = (
                f"grant {RAM_ACTION} to the RAM identity (deploy/ram-policy-actiontrail.json), "
                "or turn events.actiontrail off"
            )
        elif code.startswith("InvalidAccessKeyId"):
            fix = "the AccessKey is unknown or disabled; configure a valid AccessKey for this account"
        elif code in ("SignatureDoesNotMatch", "IncompleteSignature", "InvalidAccessKeySecret"):
            fix = "the AccessKey secret does not match the AccessKey; correct the secret"
        elif code.startswith("InvalidSecurityToken"):
            fix = "the STS security token is expired or invalid; refresh it or the role session"
        else:
            fix = "check the credentials of this account"
        # only our own wording: the server's message is not quoted
        return f"{where}: LookupEvents refused with {code}: {fix}"

    def _scrub(self, account: AccountSettings, text: str) -> str:
        creds = account.credentials
        own = [creds.secret.get_secret_value()] if isinstance(creds, AccessKeyCredentials) else []
        return logs.scrub(text, own)[:300]

    def _describe(self, account: AccountSettings, exc: AlibabaCloudException) -> str:
        return self._scrub(account, f"{exc.code}: {exc.message or exc.code or type(exc).__name__}".splitlines()[0])

    def _client(self, account: AccountSettings, region: str) -> TrailSdkClient:
        key = (account.name, "*" if self.endpoint else region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                config = open_api_models.Config(
                    credential=_credential_client(account.credentials, self.settings),
                    region_id=region,
                    connect_timeout=self.settings.connect_timeout_ms,
                    read_timeout=self.settings.read_timeout_ms,
                )
                if self.endpoint is not None:
                    config.endpoint, config.protocol = self.endpoint
                client = self._clients[key] = TrailSdkClient(config)
            return client


def lookup_events(
    settings: LiveSettings, account: AccountSettings, region: str, start: datetime, end: datetime
) -> Lookup:
    """One read of ``region``'s write events in [start, end] for ``account``; see :class:`TrailClient`."""
    return TrailClient(settings).lookup_events(account, region, start, end)
