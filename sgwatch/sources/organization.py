"""Every member account of a Resource Directory, discovered through ``ListAccounts``.

``accounts: {discover: resource_directory, role_name: ...}`` makes the scanned accounts the
directory's active members: each is scanned under its AccountId (its name and its ``uid``),
through the RAM role ``acs:ram::<AccountId>:role/<role_name>`` assumed from the configured
identity (:mod:`sgwatch.sources.identity` keeps those credentials across scans).

The member list is kept for the process and read again once ``discovery_interval`` (an hour by
default) has passed, so a daemon picks up joined and departed accounts at the next discovery.
A discovery that fails, or lists fewer members than it says it has, keeps the last list and is a
scan error: a failed read is never "every account removed". With no last list to keep, the
scan stops with one line.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from alibabacloud_resourcemanager20200331 import models as rm_models
from alibabacloud_resourcemanager20200331.client import Client as ResourceManagerClient
from alibabacloud_tea_openapi import models as open_api_models

from sgwatch.core.model import ScanError
from sgwatch.errors import EXIT_INCOMPLETE, AuthError, SgwatchError
from sgwatch.sources import identifiers, identity
from sgwatch.sources.live_settings import (
    AccessKeyCredentials,
    AccountSettings,
    LiveSettings,
    OrganizationSettings,
    RamRoleArnCredentials,
    ScanTuning,
    endpoint_parts,
)
from sgwatch.timestamps import iso

log = structlog.get_logger("sgwatch.organization")

RESOURCE_DIRECTORY_ENDPOINT = "resourcemanager.aliyuncs.com"
PAGE_SIZE = 100  # ListAccounts accepts 1..100
MAX_PAGES = 1000  # 100,000 members: past it an answer is looping, not a directory
# The states in which a member is in the directory and can be read (ListAccounts' Status); the
# others are joining (CreateVerifying...) or could not join (CreateFailed, CreateExpired...).
ACTIVE_STATUSES = frozenset(
    {
        "CreateSuccess",
        "InviteSuccess",
        "PromoteSuccess",
        "PromoteVerifying",
        "PromoteFailed",
        "PromoteExpired",
        "PromoteCancelled",
    }
)
_REFUSED = ("NoPermission", "Forbidden", "EntityNotExists.ResourceDirectory", "NotAuthorized")
_IDENTITY_REFUSED = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecurityToken", "IncompleteSignature")
# Only the directory's management account or a delegated administrator may list its members.
LIST_PERMISSION = "resourcemanager:ListAccounts"
DISCOVERY = "resource directory"  # what a discovery error names in place of an account


class DiscoveryFailed(SgwatchError):
    """No member list could be read, and there is none to keep: nothing could be scanned."""

    exit_code = EXIT_INCOMPLETE


@dataclass(frozen=True, slots=True)
class Member:
    uid: str
    display_name: str
    status: str


@dataclass(slots=True)
class Discovery:
    """The accounts to scan now, and what went wrong finding them (each makes the scan incomplete)."""

    accounts: list[AccountSettings]
    errors: list[ScanError] = field(default_factory=list)
    pages: int = 0  # ListAccounts calls this time (0 when the kept list was reused)


class _Unreadable(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Directory:
    """One Resource Directory's members, read at most once per ``discovery_interval``."""

    def __init__(
        self,
        org: OrganizationSettings,
        tuning: ScanTuning | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.org = org
        self._tuning = tuning
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._members: list[Member] | None = None
        self._read_at = 0.0  # clock() of the last successful discovery
        self._read_at_wall = 0.0
        self._client: ResourceManagerClient | None = None

    def discover(self) -> Discovery:
        """The accounts to scan: the kept list, or a fresh one once the interval has passed."""
        with self._lock:  # two scans at once share one discovery
            now = self._clock()
            if self._members is not None and now - self._read_at < self.org.discovery_interval:
                return Discovery(self._accounts(self._members))
            try:
                members, pages = self._list()
            except _Unreadable as failure:
                if self._members is None:
                    raise self._first_failure(failure) from None
                kept = len(self._accounts(self._members))
                since = iso(datetime.fromtimestamp(self._read_at_wall, UTC), seconds=True)
                log.warning("resource directory discovery failed; keeping the last member list", code=failure.code)
                error = ScanError(
                    DISCOVERY,
                    "",
                    failure.code,
                    f"ListAccounts failed ({failure.message}); scanning the {kept} account(s) discovered at {since}",
                )
                return Discovery(self._accounts(self._members), [error])
            previous = {m.uid for m in self._members or ()}
            current = {m.uid for m in members}
            if self._members is not None and previous != current:
                log.info(
                    "resource directory members changed", joined=len(current - previous), left=len(previous - current)
                )
            self._members, self._read_at, self._read_at_wall = members, now, self._wall()
            found = Discovery(self._accounts(members), pages=pages)
            for uid in self.org.include:
                if uid not in current:
                    found.errors.append(
                        ScanError(
                            DISCOVERY, "", "NotAMember", f"include names {uid}, not an active member; not scanned"
                        )
                    )
            return found

    # -- ListAccounts ----------------------------------------------------------------------------
    def _rm_client(self) -> ResourceManagerClient:
        if self._client is None:
            connect, read = identity.timeouts_ms(self._tuning)
            config = open_api_models.Config(
                credential=identity.credential_client(self.org.credentials, self._tuning),
                connect_timeout=connect,
                read_timeout=read,
            )
            url = self.org.resource_directory_endpoint
            config.endpoint, config.protocol = endpoint_parts(url) if url else (RESOURCE_DIRECTORY_ENDPOINT, "https")
            self._client = ResourceManagerClient(config)
        return self._client

    def _page(self, number: int) -> dict[str, Any]:
        client = self._rm_client()
        request = rm_models.ListAccountsRequest(page_number=number, page_size=PAGE_SIZE)
        try:
            response = identity.call(lambda rt: client.list_accounts_with_options(request, rt), self._tuning)
        except identity.CallFailed as failed:
            raise _Unreadable(failed.code, failed.message) from None
        body = response.body
        if body is None:
            raise _Unreadable("MalformedResponse", "an answer without a body")
        raw: dict[str, Any] = body.to_map()
        return raw

    def _list(self) -> tuple[list[Member], int]:
        members: dict[str, Member] = {}
        total: int | None = None
        number = 0
        while True:
            number += 1
            if number > MAX_PAGES:
                raise _Unreadable("MalformedResponse", f"more than {MAX_PAGES} pages")
            body = self._page(number)
            entries = body.get("Accounts", {}).get("Account", []) if isinstance(body.get("Accounts"), dict) else None
            said = body.get("TotalCount")
            if not isinstance(entries, list) or not isinstance(said, int) or said < 0:
                raise _Unreadable("MalformedResponse", "an answer without Accounts.Account and TotalCount")
            total = said if total is None else total
            for entry in entries:
                member = _member(entry)
                members.setdefault(member.uid, member)
            # the server may cap the page below PAGE_SIZE: the count says when the listing is whole
            if not entries or len(members) >= total:
                break
        if len(members) < total:
            # a short listing would look like departed members: it is a failed read
            raise _Unreadable("MalformedResponse", f"{len(members)} members listed of the {total} it counts")
        return sorted(members.values(), key=lambda m: m.uid), number

    def _first_failure(self, failure: _Unreadable) -> SgwatchError:
        if failure.code.startswith(_IDENTITY_REFUSED):
            return AuthError(
                f"resource directory: ListAccounts {failure.message}: the identity under accounts.credentials "
                "is not valid; correct its AccessKey or credential chain"
            )
        if failure.code.startswith(_REFUSED):
            return AuthError(
                f"resource directory: ListAccounts {failure.message}: grant {LIST_PERMISSION} to the identity under "
                "accounts.credentials, which must be the directory's management account or a delegated administrator "
                "(deploy/management-account-policy.json)"
            )
        return DiscoveryFailed(f"resource directory: ListAccounts {failure.message}; no account could be scanned")

    # -- members to accounts ------------------------------------------------------------------
    def _accounts(self, members: list[Member]) -> list[AccountSettings]:
        org = self.org
        include, exclude = set(org.include), set(org.exclude)
        return [
            AccountSettings(
                name=m.uid,
                uid=m.uid,
                regions=org.regions,
                credentials=RamRoleArnCredentials(
                    role_arn=org.role_arn(m.uid),
                    session_name=org.session_name,
                    external_id=org.external_id,
                    duration_seconds=org.duration_seconds,
                    sts_endpoint=org.sts_endpoint,
                    source=org.credentials,
                ),
            )
            for m in members
            if m.status in ACTIVE_STATUSES and (not include or m.uid in include) and m.uid not in exclude
        ]


def _member(entry: Any) -> Member:
    if not isinstance(entry, dict):
        raise _Unreadable("MalformedResponse", "an Account entry that is not an object")
    uid = entry.get("AccountId")
    if not isinstance(uid, str) or not uid.isascii() or not uid.isdigit() or not 5 <= len(uid) <= 20:
        # it becomes a role ARN, a snapshot folder and a metric label
        raise _Unreadable("MalformedResponse", f"an Account entry whose AccountId is {identifiers.shown(uid)}")
    return Member(uid, str(entry.get("DisplayName") or ""), str(entry.get("Status") or ""))


# -- the process's directories ------------------------------------------------------------------
_directories: OrderedDict[str, Directory] = OrderedDict()
_directories_lock = threading.Lock()
_KEEP = 8  # a reloaded config with other settings gets a new one; old ones age out


def _key(org: OrganizationSettings) -> str:
    source = org.credentials
    secret = (source.id, source.secret.get_secret_value()) if isinstance(source, AccessKeyCredentials) else ()
    external = org.external_id.get_secret_value() if org.external_id else ""
    text = "\x00".join(map(str, (org.model_dump_json(), *secret, external)))
    return hashlib.sha256(text.encode()).hexdigest()  # holds no secret


def directory(org: OrganizationSettings, tuning: ScanTuning | None = None) -> Directory:
    """The process's one :class:`Directory` for these settings (its member list kept across scans)."""
    key = _key(org)
    with _directories_lock:
        found = _directories.get(key)
        if found is None:
            found = _directories[key] = Directory(org, tuning)
            while len(_directories) > _KEEP:
                _directories.popitem(last=False)
        _directories.move_to_end(key)
        return found


def discover(settings: LiveSettings) -> Discovery:
    """The accounts ``settings.organization`` names now; see the module docstring."""
    if settings.organization is None:
        return Discovery(list(settings.accounts))
    return directory(settings.organization, settings).discover()


__all__ = ["ACTIVE_STATUSES", "Directory", "Discovery", "DiscoveryFailed", "Member", "directory", "discover"]
