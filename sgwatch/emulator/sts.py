"""STS in the emulator: ``AssumeRole`` and ``GetCallerIdentity``, served to the official SDK.

A role lives in one account of the estate and trusts some accounts (by default the resource
directory's management account). ``AssumeRole`` issues a temporary key (``STS.…`` id, secret,
security token) for that account that expires: ``max_lifetime`` shortens every session so that
tests see credentials expire and be renewed. A role can be made to refuse (``NoPermission``, as
when its trust policy does not name the caller, or ``EntityNotExist.Role``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sgwatch.sources.raw import DEFAULT_ACCOUNT

if TYPE_CHECKING:
    from sgwatch.emulator.server import AccessKey

API_VERSION = "2015-04-01"
ACTIONS = ("AssumeRole", "GetCallerIdentity")
MIN_DURATION = 900
MAX_DURATION = 3600  # a role's default maximum session duration
_ARN = re.compile(r"^acs:ram::([0-9]{5,20}):role/([A-Za-z0-9.-]{1,64})$", re.IGNORECASE)
_SESSION = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")


class StsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


@dataclass
class Role:
    account: str  # the estate account the role's sessions act in
    name: str
    trusts: frozenset[str] | None = None  # accounts whose identities may assume it; None: the management account
    refuse: str = ""  # "", "NoPermission" or "EntityNotExist.Role": what AssumeRole answers
    actions: frozenset[str] | None = None  # the role's RAM policy (None: every action)
    external_id: str | None = None  # the trust policy's sts:ExternalId condition


def uid_of(account: str) -> str:
    """An account's UID: its name when that is one, else a stable 16-digit number."""
    if account.isdigit() and 5 <= len(account) <= 20:
        return account
    return str(int(hashlib.sha256(account.encode()).hexdigest(), 16))[:16]


@dataclass
class Sts:
    """The emulated STS; ``add_key`` puts an issued key where the signature check finds it."""

    add_key: Callable[[str, AccessKey], None]
    management: Callable[[], str] = lambda: DEFAULT_ACCOUNT
    roles: dict[str, Role] = field(default_factory=dict)  # lowercased role ARN -> role
    max_lifetime: float | None = None  # seconds; shortens every session (expiry tests)
    sessions: list[tuple[str, str]] = field(default_factory=list)  # (role ARN, session name) per AssumeRole
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_role(self, role: Role) -> str:
        arn = f"acs:ram::{uid_of(role.account)}:role/{role.name}"
        self.roles[arn.lower()] = role
        return arn

    def handle(self, action: str, caller: AccessKey, key_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        if action == "AssumeRole":
            return self._assume_role(caller, params)
        return self._caller_identity(caller, key_id)

    def _assume_role(self, caller: AccessKey, params: Mapping[str, str]) -> dict[str, Any]:
        from sgwatch.emulator.server import AccessKey  # the server imports this module

        arn = params.get("RoleArn", "")
        session = params.get("RoleSessionName", "")
        if not _ARN.match(arn):
            raise StsError(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.")
        if not _SESSION.match(session):
            raise StsError(400, "InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrongly formed.")
        try:
            duration = int(params.get("DurationSeconds") or MAX_DURATION)
        except ValueError:
            duration = -1
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise StsError(
                400, "InvalidParameter.DurationSeconds", "The Min/Max value of DurationSeconds is 15min/1hr."
            )
        role = self.roles.get(arn.lower())
        if role is None or role.refuse.startswith("EntityNotExist"):
            raise StsError(404, "EntityNotExist.Role", f"The role not exists: {arn}.")
        trusted = role.trusts if role.trusts is not None else frozenset({self.management()})
        if (
            role.refuse
            or caller.account not in trusted
            or (role.external_id is not None and params.get("ExternalId") != role.external_id)
        ):
            raise StsError(
                403, "NoPermission", "You are not authorized to do this action. You should be authorized by RAM."
            )
        lifetime = float(duration) if self.max_lifetime is None else min(float(duration), self.max_lifetime)
        now = self.clock()
        # whole seconds, as STS writes Expiration; never before now
        expires = float(int(now + lifetime))
        key_id = "STS.NT" + secrets.token_hex(12)
        secret, token = secrets.token_urlsafe(30), "CAIS" + secrets.token_urlsafe(48)
        self.add_key(key_id, AccessKey(secret, role.account, role.actions, token, expires_at=expires))
        with self._lock:
            self.sessions.append((arn, session))
        uid = uid_of(role.account)
        return {
            "AssumedRoleUser": {
                "Arn": f"acs:ram::{uid}:role/{role.name}/{session}",
                "AssumedRoleId": f"3{uid_of(role.name)}:{session}",
            },
            "Credentials": {
                "AccessKeyId": key_id,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    def _caller_identity(self, caller: AccessKey, key_id: str) -> dict[str, Any]:
        uid = uid_of(caller.account)
        if caller.security_token is not None:
            return {
                "AccountId": uid,
                "IdentityType": "AssumedRoleUser",
                "Arn": f"acs:ram::{uid}:assumed-role/sgwatch/{key_id}",
                "PrincipalId": f"3{uid}:{key_id}",
                "RoleId": f"3{uid}",
            }
        return {
            "AccountId": uid,
            "IdentityType": "RAMUser",
            "Arn": f"acs:ram::{uid}:user/sgwatch",
            "PrincipalId": f"2{uid}",
            "UserId": f"2{uid}",
        }


__all__ = ["ACTIONS", "API_VERSION", "Role", "Sts", "StsError", "uid_of"]
