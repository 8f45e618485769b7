"""Targeted re-reads: exactly the groups, lists and interfaces a change event names.

A change event (``sgwatch.events``) says which resources one write call touched; this reads
those of one (account, region) again with the fewest calls the ECS API allows, through the live
scanner's own call path (:meth:`sgwatch.sources.live._Scanner._call`: its rate limit, retries,
timeouts and secret scrubbing):

- a group: DescribeSecurityGroupAttribute, both directions (one call unless it holds more than
  1,000 rules); a group the daemon holds no listing entry of (a new one), and a group that
  answers NotFound without a DeleteSecurityGroup event saying so, also one DescribeSecurityGroups
  filtered by ``SecurityGroupIds`` (up to 100 per call): a NotFound alone is not proof;
- the prefix and port range lists the re-read rules name and the daemon does not hold yet, and
  the lists an event names: one call each;
- interfaces: DescribeNetworkInterfaces filtered by ``NetworkInterfaceId.N``; instances:
  DescribeInstances by ``InstanceIds`` and DescribeNetworkInterfaces by ``InstanceId``; a primary
  ENI's instance is read too (its public IP is only there).

Nothing here decides what a failure means beyond "unread": a re-read that fails (throttling
past its retries, a 5xx, a timeout, a refusal) is reported as a :class:`ScanError` of the group,
which leaves it as it was; the next full scan reconciles.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from darabonba.runtime import RuntimeOptions

from sgwatch.core.membership import MembershipUnknown
from sgwatch.core.model import ScanError
from sgwatch.sources import ecs_calls, identifiers, interfaces, paging
from sgwatch.sources.live import (
    _LIST_FIELDS,
    _LIST_KIND,
    LIST_PAGE_SIZE,
    _Aborted,
    _ApiFailure,
    _DeadlineExceeded,
    _read_attribute,
    _Scanner,
)
from sgwatch.sources.live_settings import AccountSettings, LiveSettings
from sgwatch.sources.raw import Action, RawResponse, ScanStats

log = structlog.get_logger()

# A re-read is a handful of calls: it gives up long before a full scan's deadline would.
REREAD_DEADLINE_SECONDS = 60.0
IDS_PER_CALL = 100  # SecurityGroupIds, InstanceIds and NetworkInterfaceId.N each take at most 100
NOT_FOUND = "InvalidSecurityGroupId.NotFound"

ListRef = tuple[Action, str]  # (the call that reads the list, its id)


@dataclass(frozen=True, slots=True)
class Request:
    """What to read again in one (account, region)."""

    account: str
    region: str
    groups: frozenset[str] = frozenset()
    # groups a DeleteSecurityGroup event named: their NotFound is the deletion itself
    deleted: frozenset[str] = frozenset()
    # groups the caller holds no listing entry of: their type and tags come from one listing call
    unlisted: frozenset[str] = frozenset()
    lists: frozenset[ListRef] = frozenset()  # lists an event named
    held_lists: frozenset[ListRef] = frozenset()  # lists the caller holds: not read again for a rule
    interfaces: frozenset[str] = frozenset()
    instances: frozenset[str] = frozenset()


@dataclass(slots=True)
class Result:
    """The answers, as a live scan keeps them, and what could not be read."""

    account: str
    region: str
    responses: list[RawResponse] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # groups confirmed deleted
    errors: list[ScanError] = field(default_factory=list)  # each names its group (or list)
    # why the interfaces could not be read; None when they were, or none was asked for
    membership: MembershipUnknown | None = None
    stats: ScanStats = field(default_factory=ScanStats)

    @property
    def calls(self) -> int:
        """ECS calls made, retries included."""
        return sum(self.stats.requests.values())

    def failed(self, gid: str) -> bool:
        return any(e.security_group_id == gid for e in self.errors)


class Rereader(_Scanner):
    """One per daemon: keeps the scanner's SDK clients, credentials and rate limits between
    re-reads. :meth:`read` is called from one thread at a time (the events worker)."""

    def __init__(self, settings: LiveSettings) -> None:
        super().__init__(settings, None)
        self._accounts = {a.name: a for a in settings.accounts}

    def read(self, request: Request) -> Result:
        result = Result(request.account, request.region)
        account = self._accounts.get(request.account)
        if account is None:  # the config changed under the event: nothing to read it with
            self._fail_all(result, request, "AccountUnknown", f"account '{request.account}' is not configured")
            return result
        self.raw.stats = result.stats
        self.deadline = time.monotonic() + min(REREAD_DEADLINE_SECONDS, self.settings.deadline_seconds)
        try:
            self._read_groups(account, request, result)
            self._read_lists(account, request, result)
            self._read_members(account, request, result)
        except _Aborted:
            # A refused credential stops this re-read only; the message is the scanner's one line.
            message = str(self.auth_error) if self.auth_error else "stopped"
            self._fail_all(result, request, "AuthFailure", message)
        finally:
            self._stop.clear()
            self._dispatch.resume()
            self.auth_error = None
        return result

    # -- groups ------------------------------------------------------------------------------
    def _read_groups(self, account: AccountSettings, request: Request, result: Result) -> None:
        region = request.region
        unsure: list[str] = []
        for gid in sorted(request.groups):
            try:
                pages = self._attribute_pages(account, region, gid)
            except _ApiFailure as failure:
                if failure.code == NOT_FOUND and gid in request.deleted:
                    result.gone.add(gid)
                elif failure.code == NOT_FOUND:
                    unsure.append(gid)
                else:
                    self._group_failed(result, gid, failure.code, f"DescribeSecurityGroupAttribute: {failure.message}")
                continue
            except _DeadlineExceeded:
                self._group_failed(result, gid, "DeadlineExceeded", "the re-read deadline passed")
                continue
            result.responses.extend(
                RawResponse(account.name, "DescribeSecurityGroupAttribute", page, region) for page in pages
            )
        # One listing call answers both questions: is an unsure group really gone, and what are
        # a new group's type and tags (the attribute answer does not say).
        ask = sorted({*unsure, *(g for g in request.unlisted if g in request.groups and not result.failed(g))})
        ask = [g for g in ask if g not in result.gone]
        for start in range(0, len(ask), IDS_PER_CALL):
            chunk = ask[start : start + IDS_PER_CALL]
            try:
                listed = self._listing(account, region, chunk)
            except (_ApiFailure, _DeadlineExceeded) as exc:
                code, why = (exc.code, exc.message) if isinstance(exc, _ApiFailure) else ("DeadlineExceeded", "")
                for gid in chunk:
                    if gid in unsure:  # its NotFound is unconfirmed: unread, never removed
                        self._group_failed(
                            result, gid, code, f"DescribeSecurityGroups could not confirm NotFound {why}"
                        )
                continue
            for gid in chunk:
                if gid in unsure:
                    if gid in listed:
                        self._group_failed(
                            result, gid, NOT_FOUND, "its rules answered NotFound while the listing still names it"
                        )
                    else:
                        result.gone.add(gid)
            entries = [entry for gid, entry in listed.items() if gid not in unsure]
            if entries:
                body = {"RegionId": region, "NextToken": "", "SecurityGroups": {"SecurityGroup": entries}}
                result.responses.append(RawResponse(account.name, "DescribeSecurityGroups", body, region))

    def _attribute_pages(self, account: AccountSettings, region: str, gid: str) -> list[dict[str, Any]]:
        client = self._client(account, region)
        pages: list[dict[str, Any]] = []
        read: list[paging.Page] = []
        token: str | None = None
        while True:
            body = self._call(
                account,
                region,
                "DescribeSecurityGroupAttribute",
                functools.partial(_read_attribute, client, region, gid, token),
                fatal_auth=False,
            )
            if body.get("SecurityGroupId") != gid:
                raise _ApiFailure(
                    "MalformedResponse", f"the answer names group {identifiers.shown(body.get('SecurityGroupId'))}"
                )
            pages.append(body)
            read.append(paging.Page.of(body, len(body.get("Permissions", {}).get("Permission", []))))
            token = paging.next_token(read)
            if token is None:
                if (missing := paging.missing_page(read)) is not None:
                    raise _ApiFailure("MalformedResponse", f"DescribeSecurityGroupAttribute: {missing}")
                return pages

    def _listing(self, account: AccountSettings, region: str, gids: list[str]) -> dict[str, dict[str, Any]]:
        """The listing entries of ``gids`` that still exist, by id."""
        client = self._client(account, region)
        query: ecs_calls.Query = {
            "RegionId": region,
            "SecurityGroupIds": json.dumps(gids),
            "MaxResults": LIST_PAGE_SIZE,
        }
        body = self._call(
            account,
            region,
            "DescribeSecurityGroups",
            functools.partial(ecs_calls.call, client, "DescribeSecurityGroups", query),
            fatal_auth=False,
        )
        if body.get("NextToken"):  # at most 100 asked, 100 per page: a next page is not an answer to this
            raise _ApiFailure("MalformedResponse", "DescribeSecurityGroups filtered by id answered more than a page")
        wanted = set(gids)
        entries = body.get("SecurityGroups", {}).get("SecurityGroup", [])
        return {e["SecurityGroupId"]: e for e in entries if isinstance(e, dict) and e.get("SecurityGroupId") in wanted}

    def _group_failed(self, result: Result, gid: str, code: str, message: str) -> None:
        log.warning("could not re-read", account=result.account, region=result.region, group=gid, code=code)
        result.errors.append(ScanError(result.account, result.region, code, self._scrub(message), gid))

    # -- lists -------------------------------------------------------------------------------
    def _read_lists(self, account: AccountSettings, request: Request, result: Result) -> None:
        named: dict[ListRef, str] = {ref: "" for ref in request.lists}
        for resp in result.responses:
            if resp.action != "DescribeSecurityGroupAttribute":
                continue
            for perm in resp.body.get("Permissions", {}).get("Permission", []):
                if not isinstance(perm, dict):
                    continue
                for name, action in _LIST_FIELDS:
                    list_id = perm.get(name)
                    if (
                        isinstance(list_id, str)
                        and list_id.strip()
                        and (action, list_id.strip()) not in request.held_lists
                    ):
                        named.setdefault((action, list_id.strip()), str(resp.body.get("SecurityGroupId", "")))
        for (action, list_id), gid in sorted(named.items()):
            if (bad := identifiers.problem(_LIST_KIND[action], list_id)) is not None:
                result.errors.append(
                    ScanError(result.account, result.region, "MalformedResponse", f"a rule names {bad}; not read", gid)
                )
                continue
            body = self._list_body(account, request.region, action, list_id, gid, result)
            if body is not None:
                result.responses.append(RawResponse(account.name, action, body, request.region))

    def _list_body(
        self, account: AccountSettings, region: str, action: Action, list_id: str, gid: str, result: Result
    ) -> dict[str, Any] | None:
        client = self._client(account, region)
        added = {"RegionId": region}
        invoke: Callable[[RuntimeOptions], Any]
        if action == "DescribePrefixListAttributes":
            query: ecs_calls.Query = {"RegionId": region, "PrefixListId": list_id}
        else:
            query = {"RegionId": region, "PortRangeListId": list_id}
            added["PortRangeListId"] = list_id
        invoke = functools.partial(ecs_calls.call, client, action, query)
        try:
            body = self._call(account, region, action, invoke, fatal_auth=False)
            if action == "DescribePrefixListAttributes" and body.get("PrefixListId") != list_id:
                raise _ApiFailure(
                    "MalformedResponse", f"the answer names prefix list {identifiers.shown(body.get('PrefixListId'))}"
                )
        except _ApiFailure as failure:
            message = f"{action} {list_id} failed: {failure.message}"
            result.errors.append(ScanError(result.account, region, failure.code, self._scrub(message), gid))
            return None
        except _DeadlineExceeded:
            message = f"the re-read deadline passed before list {list_id} was read"
            result.errors.append(ScanError(result.account, region, "DeadlineExceeded", message, gid))
            return None
        return {**body, **added}

    # -- interfaces ----------------------------------------------------------------------------
    def _read_members(self, account: AccountSettings, request: Request, result: Result) -> None:
        if not request.interfaces and not request.instances:
            return
        region = request.region
        try:
            enis = [
                *self._chunks(account, region, "DescribeNetworkInterfaces", sorted(request.interfaces)),
                *(
                    page
                    for instance in sorted(request.instances)
                    for page in self._members(account, region, "DescribeNetworkInterfaces", instance_id=instance)
                ),
            ]
            # A primary ENI's instance holds its own public IP: read it with the ones asked for.
            instances = set(request.instances)
            for page in enis:
                for eni in interfaces.enis_of_page(page):
                    if eni.type == "Primary" and eni.instance_id:
                        instances.add(eni.instance_id)
            hosts = list(self._chunks(account, region, "DescribeInstances", sorted(instances)))
        except _ApiFailure as failure:
            result.membership = MembershipUnknown(failure.code, self._scrub(failure.message))
            return
        except _DeadlineExceeded:
            result.membership = MembershipUnknown("DeadlineExceeded", "the re-read deadline passed")
            return
        except interfaces.InterfaceError as exc:
            result.membership = MembershipUnknown("InvalidResponse", str(exc))
            return
        # The answers do not say their region; a snapshot must (as for a full scan's).
        result.responses.extend(
            RawResponse(account.name, "DescribeNetworkInterfaces", {**p, "RegionId": region}, region) for p in enis
        )
        result.responses.extend(
            RawResponse(account.name, "DescribeInstances", {**p, "RegionId": region}, region) for p in hosts
        )

    def _chunks(
        self, account: AccountSettings, region: str, action: Action, ids: list[str]
    ) -> Iterable[dict[str, Any]]:
        for start in range(0, len(ids), IDS_PER_CALL):
            chunk = ids[start : start + IDS_PER_CALL]
            if action == "DescribeNetworkInterfaces":
                yield from self._members(account, region, action, eni_ids=chunk)
            else:
                yield from self._members(account, region, action, instance_ids=chunk)

    def _members(
        self,
        account: AccountSettings,
        region: str,
        action: Action,
        *,
        eni_ids: list[str] | None = None,
        instance_id: str | None = None,
        instance_ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        client = self._client(account, region)
        pages: list[dict[str, Any]] = []
        read: list[paging.Page] = []
        token: str | None = None
        while True:
            query: ecs_calls.Query = {"RegionId": region, "NextToken": token}
            if action == "DescribeNetworkInterfaces":
                # a repeat list on the wire: NetworkInterfaceId.1, .2, ...
                query |= {f"NetworkInterfaceId.{n}": eni for n, eni in enumerate(eni_ids or (), 1)}
                query |= {"InstanceId": instance_id, "MaxResults": interfaces.ENI_PAGE_SIZE}
            else:
                query |= {"InstanceIds": json.dumps(instance_ids or []), "MaxResults": interfaces.INSTANCE_PAGE_SIZE}
            invoke = functools.partial(ecs_calls.call, client, action, query)
            body = self._call(account, region, action, invoke, fatal_auth=False)
            pages.append(body)
            read.append(paging.Page.of(body, interfaces.entry_count(action, body)))
            token = paging.next_token(read)
            if token is None:
                if (missing := paging.missing_page(read)) is not None:
                    raise _ApiFailure("MalformedResponse", f"{action}: {missing}")
                return pages

    # -- failure of everything asked --------------------------------------------------------------
    def _fail_all(self, result: Result, request: Request, code: str, message: str) -> None:
        result.responses.clear()
        result.gone.clear()
        result.errors = [
            ScanError(request.account, request.region, code, self._scrub(message), gid)
            for gid in sorted(request.groups)
        ]
        if request.interfaces or request.instances:
            result.membership = MembershipUnknown(code, self._scrub(message))


__all__ = ["IDS_PER_CALL", "REREAD_DEADLINE_SECONDS", "Request", "Rereader", "Result"]
