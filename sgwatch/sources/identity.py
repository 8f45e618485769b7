"""Who a scan calls the cloud as: credential clients, assumed RAM roles, and the caller's UID.

An assumed role's credentials come from STS ``AssumeRole`` through the official SDK (so an
endpoint override, plain HTTP included, reaches the emulator) and are kept for the process:
one ``AssumeRole`` per role and session until the credentials near their expiry, not one per
scan. They are renewed a quarter of their lifetime (at most 15 minutes) before they expire;
a renewal that fails while the old credentials are still valid keeps those.
"""

from __future__ import annotations

import calendar
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_credentials.models import Config as CredentialConfig
from alibabacloud_credentials.provider import DefaultCredentialsProvider
from alibabacloud_credentials.provider.refreshable import Credentials as ProviderCredentials
from alibabacloud_credentials_api import ICredentialsProvider
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from darabonba.exceptions import UnretryableException
from darabonba.runtime import RuntimeOptions

from sgwatch import logs
from sgwatch.errors import AuthError
from sgwatch.sources.live_settings import (
    AccessKeyCredentials,
    Credentials,
    RamRoleArnCredentials,
    ScanTuning,
    endpoint_parts,
)

log = structlog.get_logger("sgwatch.identity")

STS_ENDPOINT = "sts.aliyuncs.com"
# Renew this long before expiry at most (the credentials library's own margin) ...
MAX_RENEW_MARGIN_SECONDS = 15 * 60
# ... and at most this share of the credentials' lifetime, so that short sessions are kept a while.
RENEW_SHARE = 0.25
ATTEMPTS = 3  # of an STS or Resource Directory call: throttling, 5xx, connection failures; never a refusal
# STS's answers when the role itself cannot be assumed: that account's problem, not the scan's.
_ROLE_REFUSALS = ("NoPermission", "EntityNotExist.Role", "InvalidParameter.RoleArn", "InvalidParameter.ExternalId")
_CACHE_SIZE = 4096


class RoleRefused(CredentialException):  # type: ignore[misc]
    """STS refused to let the source identity assume one role (its trust policy, its existence)."""

    def __init__(self, role_arn: str, code: str) -> None:
        self.role_arn = role_arn
        self.code = code
        if code.startswith("EntityNotExist"):
            fix = "create the role in that account (deploy/member-role-trust-policy.json, deploy/ram-policy.json)"
        elif code == "InvalidParameter.ExternalId":
            fix = "the external_id does not match the role's trust policy condition"
        else:
            fix = (
                "let the role's trust policy trust the sgwatch identity (deploy/member-role-trust-policy.json) "
                "and grant that identity sts:AssumeRole on the role (deploy/management-account-policy.json)"
            )
        super().__init__(f"AssumeRole {role_arn} refused with {code}: {fix}", code)

    def __str__(self) -> str:
        return str(self.message)


def timeouts_ms(tuning: ScanTuning | None) -> tuple[int, int]:
    """(connect, read) timeouts of a call outside the scan's own: the scan's, else their defaults."""
    t = tuning or ScanTuning()
    return t.connect_timeout_ms, t.read_timeout_ms


class CallFailed(Exception):
    """An STS or Resource Directory call that did not answer: ``code`` is the API's, or ours."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def call(invoke: Callable[[RuntimeOptions], Any], tuning: ScanTuning | None = None) -> Any:
    """One SDK call outside the scan (STS, Resource Directory), tried ``ATTEMPTS`` times on
    throttling, 5xx and connection failures, never on a refusal. Raises :class:`CallFailed`."""
    connect, read = timeouts_ms(tuning)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return invoke(RuntimeOptions(connect_timeout=connect, read_timeout=read))
        except AlibabaCloudException as exc:
            code = str(exc.code or "UnknownError")
            retry = (exc.status_code or 0) >= 500 or code.startswith("Throttling")
            if not retry or attempt == ATTEMPTS:
                raise CallFailed(code, f"refused with {code}" if not retry else f"failed with {code}") from None
        except UnretryableException as exc:
            inner = exc.inner_exception
            if isinstance(inner, CredentialException):  # the caller's own credentials (an assumed role)
                detail = logs.scrub(str(inner).splitlines()[0] if str(inner) else type(inner).__name__)[:300]
                raise CallFailed("CredentialsUnavailable", f"could not obtain credentials: {detail}") from None
            if attempt == ATTEMPTS:
                raise CallFailed("ConnectionError", f"could not reach the endpoint ({type(inner).__name__})") from None
        except (AttributeError, TypeError, ValueError, KeyError):
            # the SDK could not map a wrong-shaped 200 body onto its model
            raise CallFailed("MalformedResponse", "answered a body of the wrong shape") from None
        time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def sts_endpoint(url_or_host: str | None, region: str | None = None) -> tuple[str, str]:
    """(host[:port], protocol) of STS: a URL (http:// reaches an emulator), a bare host, or the public one."""
    if url_or_host:
        if "://" in url_or_host:
            return endpoint_parts(url_or_host)
        return url_or_host, "https"
    return (f"sts.{region}.aliyuncs.com" if region else STS_ENDPOINT), "https"


def sts_client(source: CredentialClient, endpoint: tuple[str, str], tuning: ScanTuning | None = None) -> StsClient:
    connect, read = timeouts_ms(tuning)
    config = open_api_models.Config(credential=source, connect_timeout=connect, read_timeout=read)
    config.endpoint, config.protocol = endpoint
    return StsClient(config)


# -- assumed roles ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Held:
    credentials: ProviderCredentials
    expires: float  # epoch seconds
    renew_at: float


class AssumedRole(ICredentialsProvider):  # type: ignore[misc]
    """A RAM role's credentials, assumed through STS once and renewed before they expire."""

    def __init__(
        self,
        creds: RamRoleArnCredentials,
        source: CredentialClient,
        tuning: ScanTuning | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.role_arn = creds.role_arn
        self._creds = creds
        self._client = sts_client(source, sts_endpoint(creds.sts_endpoint, creds.sts_region), tuning)
        self._tuning = tuning
        self._clock = clock
        self._lock = threading.Lock()
        self._held: _Held | None = None
        self.assumed = 0  # AssumeRole calls that succeeded (a benchmark counts them)

    def get_provider_name(self) -> str:
        return "sgwatch_assumed_role"

    def get_credentials(self) -> ProviderCredentials:
        with self._lock:  # one AssumeRole at a time: every worker of the scan waits for the same one
            held, now = self._held, self._clock()
            if held is not None and now < held.renew_at:
                return held.credentials
            try:
                self._held = self._assume(now)
            except CredentialException:  # a refusal too: the session in hand is still good until it ends
                if held is not None and now < held.expires - 30:
                    log.warning(
                        "could not renew assumed role credentials; keeping the current ones", role=self.role_arn
                    )
                    return held.credentials
                raise
            return self._held.credentials

    async def get_credentials_async(self) -> ProviderCredentials:
        return self.get_credentials()

    def _assume(self, now: float) -> _Held:
        c = self._creds
        request = sts_models.AssumeRoleRequest(
            role_arn=c.role_arn,
            role_session_name=c.session_name,
            duration_seconds=c.duration_seconds,
            external_id=c.external_id.get_secret_value() if c.external_id else None,
        )
        try:
            response = call(lambda rt: self._client.assume_role_with_options(request, rt), self._tuning)
        except CallFailed as failed:
            if failed.code in _ROLE_REFUSALS or failed.code.startswith("EntityNotExist"):
                raise RoleRefused(c.role_arn, failed.code) from None
            # the source identity itself refused, or STS kept failing: every account's problem
            raise CredentialException(f"AssumeRole {c.role_arn}: {failed.message}") from None
        return self._held_from(response.body, now)

    def _held_from(self, body: Any, now: float) -> _Held:
        got = getattr(body, "credentials", None)
        fields = (getattr(got, name, None) for name in ("access_key_id", "access_key_secret", "security_token"))
        key_id, secret, token = fields
        try:
            expires = float(calendar.timegm(time.strptime(str(getattr(got, "expiration", "")), "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            expires = -1.0
        if not (key_id and secret and token) or expires <= now:
            raise CredentialException(f"AssumeRole {self.role_arn} answered without usable credentials")
        lifetime = expires - now
        self.assumed += 1
        return _Held(
            ProviderCredentials(
                access_key_id=str(key_id),
                access_key_secret=str(secret),
                security_token=str(token),
                expiration=int(expires),
                provider_name=self.get_provider_name(),
            ),
            expires,
            expires - min(MAX_RENEW_MARGIN_SECONDS, lifetime * RENEW_SHARE),
        )


_roles: OrderedDict[str, AssumedRole] = OrderedDict()
_roles_lock = threading.Lock()


def _fingerprint(*parts: object) -> str:
    # the cache key holds no secret, only a digest of it
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


def _role_key(creds: RamRoleArnCredentials) -> str:
    src = creds.source
    source = (
        (src.id, src.secret.get_secret_value(), src.security_token.get_secret_value() if src.security_token else "")
        if isinstance(src, AccessKeyCredentials)
        else ("default",)
    )
    external = creds.external_id.get_secret_value() if creds.external_id else ""
    return _fingerprint(
        creds.role_arn,
        creds.session_name,
        creds.duration_seconds,
        external,
        creds.sts_region,
        creds.sts_endpoint,
        *source,
    )


def assumed_role(creds: RamRoleArnCredentials, tuning: ScanTuning | None = None) -> AssumedRole:
    """The process's one provider of this role's credentials (kept across scans)."""
    key = _role_key(creds)
    with _roles_lock:
        role = _roles.get(key)
        if role is None:
            role = _roles[key] = AssumedRole(creds, credential_client(creds.source, tuning), tuning)
            while len(_roles) > _CACHE_SIZE:
                _roles.popitem(last=False)
        _roles.move_to_end(key)
        return role


def credential_client(creds: Credentials, tuning: ScanTuning | None = None) -> CredentialClient:
    """The SDK's credential client for one account's configured credentials."""
    if isinstance(creds, AccessKeyCredentials):
        if creds.security_token is not None:
            return CredentialClient(
                CredentialConfig(
                    type="sts",
                    access_key_id=creds.id,
                    access_key_secret=creds.secret.get_secret_value(),
                    security_token=creds.security_token.get_secret_value(),
                )
            )
        return CredentialClient(
            CredentialConfig(
                type="access_key", access_key_id=creds.id, access_key_secret=creds.secret.get_secret_value()
            )
        )
    if isinstance(creds, RamRoleArnCredentials):
        return CredentialClient(provider=assumed_role(creds, tuning))
    return CredentialClient(provider=DefaultCredentialsProvider())


# -- the caller -------------------------------------------------------------------------------
def caller_uid(
    creds: Credentials,
    tuning: ScanTuning | None = None,
    sts_endpoint_url: str | None = None,
    *,
    account: str = "",
) -> str:
    """The UID (numeric account id) of the account these credentials act in: STS GetCallerIdentity.

    ``sts_endpoint_url`` overrides STS (an emulator); for an assumed role its own ``sts_endpoint``
    is the default. Raises :class:`~sgwatch.errors.AuthError` (one line) when STS refuses or fails.
    """
    where = f"account '{account}': " if account else ""
    role_endpoint = creds.sts_endpoint if isinstance(creds, RamRoleArnCredentials) else None
    region = creds.sts_region if isinstance(creds, RamRoleArnCredentials) else None
    client = sts_client(
        credential_client(creds, tuning), sts_endpoint(sts_endpoint_url or role_endpoint, region), tuning
    )
    try:
        body = call(client.get_caller_identity_with_options, tuning).body
    except CallFailed as failed:
        fix = "" if failed.code == "CredentialsUnavailable" else ": check this account's credentials"
        raise AuthError(f"{where}sts:GetCallerIdentity {failed.message}{fix}") from None
    uid = str(getattr(body, "account_id", "") or "")
    if not uid.isdigit() or not 5 <= len(uid) <= 20:
        raise AuthError(f"{where}sts:GetCallerIdentity answered without a usable AccountId")
    return uid


__all__ = [
    "AssumedRole",
    "CallFailed",
    "RoleRefused",
    "assumed_role",
    "call",
    "caller_uid",
    "credential_client",
    "sts_client",
    "sts_endpoint",
    "timeouts_ms",
]
