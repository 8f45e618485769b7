"""Live scans of Alibaba Cloud ECS security groups through the official SDK.

``scan(settings)`` lists every security group of every (account, region) and reads each one's
rules, and lists the region's network interfaces and instances (membership), keeping the raw
response bodies in a :class:`~sgwatch.sources.raw.RawScan`. It makes no
call that is not needed, bounds its concurrency, spaces calls per (account, region), retries
throttling, 5xx and network failures with exponential backoff and jitter inside one deadline,
and turns anything it could not read into a :class:`~sgwatch.core.model.ScanError` so a report
is incomplete rather than silently short. Credential and permission problems stop the scan at
once with one :class:`~sgwatch.errors.AuthError` line: retrying them only burns quota.

The SDK's own retry (``RuntimeOptions(autoretry=...)``) is ignored by this SDK line, so the
retry loop lives here.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import structlog
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException
from darabonba.exceptions import UnretryableException
from darabonba.runtime import RuntimeOptions

from sgwatch import logs
from sgwatch.core.membership import MembershipUnknown
from sgwatch.core.model import ScanError
from sgwatch.errors import AuthError
from sgwatch.sharding import Shard
from sgwatch.sources import ecs_calls, identifiers, identity, interfaces, organization, paging
from sgwatch.sources.dispatch import Dispatcher
from sgwatch.sources.interfaces import ENI_PAGE_SIZE, INSTANCE_PAGE_SIZE
from sgwatch.sources.live_settings import (
    AccessKeyCredentials,
    AccountSettings,
    DefaultChainCredentials,
    LiveSettings,
    RamRoleArnCredentials,
)
from sgwatch.sources.ratelimit import DeadlinePassed
from sgwatch.sources.raw import Action, RawResponse, RawScan, classify

log = structlog.get_logger()

# The credentials library gives its logger a handler of its own, which prints tracebacks past our
# formatting and redaction; send its lines through the root logger like every other library's.
logging.getLogger("credentials").handlers.clear()
logging.getLogger("credentials").propagate = True

LIST_PAGE_SIZE = 100  # DescribeSecurityGroups accepts at most 100
RULE_PAGE_SIZE = 1000  # DescribeSecurityGroupAttribute accepts 10..1000
# DescribeRegions needs an endpoint even though its answer covers every region
REGIONS_ENDPOINT_REGION = "cn-hangzhou"
READ_PERMISSIONS = (
    "ecs:DescribeRegions, ecs:DescribeSecurityGroups, ecs:DescribeSecurityGroupAttribute, "
    "ecs:DescribePrefixListAttributes, ecs:DescribePortRangeListEntries, ecs:DescribeNetworkInterfaces "
    "and ecs:DescribeInstances"
)
# The fields of a rule that name a list, and the call that reads such a list's entries.
_LIST_FIELDS: tuple[tuple[str, Action], ...] = (
    ("SourcePrefixListId", "DescribePrefixListAttributes"),
    ("DestPrefixListId", "DescribePrefixListAttributes"),
    ("PortRangeListId", "DescribePortRangeListEntries"),
)

_LIST_KIND: dict[Action, identifiers.Kind] = {
    "DescribePrefixListAttributes": "prefix list",
    "DescribePortRangeListEntries": "port range list",
}

ProgressCallback = Callable[[int, int], None]


@dataclass(slots=True)
class _Listing:
    """A region's listing while its pages arrive: kept only once :func:`paging.missing_page` passes."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    pages: list[paging.Page] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


class _ApiFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


class _DeadlineExceeded(Exception):
    pass


class _Aborted(Exception):
    """Another task hit an auth error; stop quietly."""


_AUTH_CODES = frozenset(
    {
        "InvalidCredentials",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "NoPermission",
        "UnauthorizedOperation",
        "MissingAuthorization",
        "InvalidAccessKeySecret",
    }
)
_AUTH_PREFIXES = ("InvalidAccessKeyId", "InvalidSecurityToken", "Forbidden")
_DENIED_CODES = frozenset({"NoPermission", "UnauthorizedOperation"})
_RETRYABLE_CODES = frozenset({"ServiceUnavailable", "InternalError", "UnknownError", "RequestTimeout"})


def _is_throttle(code: str) -> bool:
    return code.startswith("Throttling") or code in ("ServiceUnavailable.Throttling", "Throttled")


def _is_auth(code: str) -> bool:
    return code in _AUTH_CODES or code.startswith(_AUTH_PREFIXES)


# -- the scanner ------------------------------------------------------------------------------
class _Scanner:
    def __init__(self, settings: LiveSettings, progress: ProgressCallback | None) -> None:
        self.settings = settings
        self.progress = progress
        self.endpoint = settings.resolved_endpoint()
        self.started = time.monotonic()
        self.deadline = self.started + settings.deadline_seconds
        self.raw = RawScan(account_uids={a.name: a.uid for a in settings.accounts if a.uid})
        # which task runs when: each (account, region) at its own pace, never waiting for another's
        self._dispatch = Dispatcher(settings.concurrency, settings.requests_per_second, deadline=self.deadline)
        self.limiters = self._dispatch.limiters
        self.rng = random.Random()
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set on auth failure (with the dispatcher's stop, which wakes the parked)
        self.auth_error: AuthError | None = None
        self._clients: dict[tuple[str, str], EcsClient] = {}
        self._credentials: dict[str, CredentialClient] = {}
        self._responses: list[tuple[tuple[Any, ...], RawResponse]] = []
        self._lists_asked: set[tuple[str, str, Action, str]] = set()  # (account, region, action, list id)
        self._secrets = self._collect_secrets()
        self.groups_total = 0
        self.groups_done = 0

    # -- orchestration ------------------------------------------------------------------------
    def run(self) -> RawScan:
        for account in self.settings.accounts:
            self._submit(self._start_account, account)
        self._dispatch.run()
        self.raw.stats.duration_seconds = time.monotonic() - self.started
        if self.auth_error is not None:
            raise self.auth_error
        self._responses.sort(key=lambda item: item[0])
        self.raw.responses = [resp for _, resp in self._responses]
        self.raw.errors.sort(key=lambda e: (e.account, e.region, e.security_group_id, e.code))
        self.raw.regions.sort()
        return self.raw

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue ``fn(*args)``. A task whose arguments start (account, region) is queued under
        that pair and handed out when the pair's next call slot is due."""
        self._dispatch.submit(_pair_of(args), functools.partial(self._run_task, fn, *args))

    def _run_task(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            if not self._stop.is_set():
                fn(*args)
        except _Aborted:
            pass
        except Exception as exc:  # a bug must not hang the scan nor drop a region silently
            log.exception("scan task failed", task=fn.__name__)
            account = args[0].name if args and isinstance(args[0], AccountSettings) else "?"
            region = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            self._error(account, region, "InternalError", f"unexpected {type(exc).__name__} in the scanner")

    # -- tasks --------------------------------------------------------------------------------
    def _start_account(self, account: AccountSettings) -> None:
        # Resolve the identity once, before any ECS call: an STS or credential-chain failure
        # surfacing inside the SDK would look like a connection error and be retried.
        credential = self._credential(account)
        try:
            model = credential.get_credential()
        except identity.RoleRefused as refused:
            # this account's role, not the identity that assumes it: the other accounts go on
            self._account_failed(account, refused.code, str(refused))
            return
        except Exception as exc:
            self._fail_credentials(account, exc)
        with self._lock:
            # the default chain may have loaded a secret we never saw: scrub it from messages too
            self._secrets.extend(v for v in (model.access_key_secret, model.security_token) if v)
        regions = account.regions or self.settings.regions
        if not regions:
            self._describe_regions(account)
            return
        for region in dict.fromkeys(regions):
            self._start_region(account, identifiers.check("region", region))  # settings checked them

    def _start_region(self, account: AccountSettings, region: str) -> None:
        with self._lock:
            self.raw.regions.append((account.name, region))
        self._submit(self._list_page, account, region, None, _Listing())
        self._submit_membership(account, region)

    def _describe_regions(self, account: AccountSettings) -> None:
        client = self._client(account, "")
        try:
            body = self._call(
                account,
                "",
                "DescribeRegions",
                functools.partial(ecs_calls.call, client, "DescribeRegions", {"AcceptLanguage": "en-US"}),
            )
        except _ApiFailure as failure:
            self._error(account.name, "", failure.code, f"DescribeRegions failed: {failure.message}")
            return
        except _DeadlineExceeded:
            self._error(account.name, "", "DeadlineExceeded", "the scan deadline passed before DescribeRegions")
            return
        self._keep(account.name, "DescribeRegions", ("", "", 0), body)
        regions = [r.get("RegionId") for r in body.get("Regions", {}).get("Region", []) if isinstance(r, dict)]
        for region in dict.fromkeys(r for r in regions if r):
            # the region becomes a request, a file name and the region of every answer about it
            if (bad := identifiers.problem("region", region)) is not None:
                self._error(account.name, "", "MalformedResponse", f"DescribeRegions lists {bad}; not scanned")
                continue
            self._start_region(account, region)

    def _list_page(
        self,
        account: AccountSettings,
        region: str,
        token: str | None,
        listing: _Listing,
    ) -> None:
        client = self._client(account, region)
        query: ecs_calls.Query = {"RegionId": region, "MaxResults": LIST_PAGE_SIZE, "NextToken": token}
        try:
            body = self._call(
                account,
                region,
                "DescribeSecurityGroups",
                functools.partial(ecs_calls.call, client, "DescribeSecurityGroups", query),
            )
        except _ApiFailure as failure:
            self._region_failed(account, region, failure.code, f"DescribeSecurityGroups failed: {failure.message}")
            return
        except _DeadlineExceeded:
            self._region_failed(account, region, "DeadlineExceeded", "the scan deadline passed during the listing")
            return
        entries = body.get("SecurityGroups", {}).get("SecurityGroup", [])
        listing.bodies.append(body)
        listing.pages.append(paging.Page.of(body, len(entries)))
        ids = [entry.get("SecurityGroupId") for entry in entries]
        # a group id becomes a request and a file name: a listing naming something else is not a listing
        problems = (identifiers.problem("security group", gid) for gid in ids if gid)
        if bad := next((p for p in problems if p), None):
            self._region_failed(account, region, "MalformedResponse", f"DescribeSecurityGroups lists {bad}")
            return
        next_token = paging.next_token(listing.pages)
        fresh = []
        for gid in ids:
            if gid and gid not in listing.seen:  # a group may shift across pages while we list
                listing.seen.add(gid)
                fresh.append(gid)
        with self._lock:
            self.groups_total += len(fresh)
        self._report_progress()
        # Queue the next listing page before the reads so discovery keeps ahead of the workers.
        if next_token is not None:
            self._submit(self._list_page, account, region, next_token, listing)
        for gid in fresh:
            self._submit(self._read_group, account, region, gid)
        if next_token is None:
            # The listing is kept only once complete: a partial one would let the parser
            # conclude that groups on the unread pages were deleted.
            missing = paging.missing_page(listing.pages)
            if missing is not None:
                self._region_failed(account, region, "MalformedResponse", f"DescribeSecurityGroups: {missing}")
                return
            for index, page in enumerate(listing.bodies):
                self._keep(account.name, "DescribeSecurityGroups", (region, "", index), page)

    def _read_group(self, account: AccountSettings, region: str, gid: str) -> None:
        client = self._client(account, region)
        pages: list[dict[str, Any]] = []
        read: list[paging.Page] = []
        token: str | None = None
        try:
            while True:
                body = self._call(
                    account,
                    region,
                    "DescribeSecurityGroupAttribute",
                    functools.partial(_read_attribute, client, region, gid, token),
                )
                if body.get("SecurityGroupId") != gid:
                    shown = identifiers.shown(body.get("SecurityGroupId"))
                    raise _ApiFailure("MalformedResponse", f"the answer names group {shown}")
                pages.append(body)
                read.append(paging.Page.of(body, len(body.get("Permissions", {}).get("Permission", []))))
                token = paging.next_token(read)
                if token is None:
                    missing = paging.missing_page(read)
                    if missing is not None:
                        raise _ApiFailure("MalformedResponse", f"DescribeSecurityGroupAttribute: {missing}")
                    break
        except _ApiFailure as failure:
            if failure.code == "InvalidSecurityGroupId.NotFound":
                # deleted between the listing and this read: gone, not unreadable
                log.debug("security group vanished during the scan", account=account.name, region=region, group=gid)
                with self._lock:
                    self.raw.vanished.add((account.name, region, gid))
            else:
                self._error(
                    account.name, region, failure.code, f"DescribeSecurityGroupAttribute failed: {failure.message}", gid
                )
            return
        except _DeadlineExceeded:
            self._error(
                account.name, region, "DeadlineExceeded", "the scan deadline passed before this group was read", gid
            )
            return
        finally:
            with self._lock:
                self.groups_done += 1
            self._report_progress()
        for index, page in enumerate(pages):
            self._keep(account.name, "DescribeSecurityGroupAttribute", (region, gid, index), page)
        # What a rule naming a prefix list or a port range list matches is the list's entries:
        # read each list once per region.
        named = {
            (action, list_id.strip())
            for page in pages
            for perm in page.get("Permissions", {}).get("Permission", [])
            if isinstance(perm, dict)
            for name, action in _LIST_FIELDS
            if isinstance(list_id := perm.get(name), str) and list_id.strip()
        }
        with self._lock:
            fresh = sorted(n for n in named if (account.name, region, *n) not in self._lists_asked)
            self._lists_asked.update((account.name, region, *n) for n in fresh)
        for action, list_id in fresh:
            # the id becomes a request and a file name: a rule naming something else names no list
            if (bad := identifiers.problem(_LIST_KIND[action], list_id)) is not None:
                self._error(account.name, region, "MalformedResponse", f"a rule names {bad}; not read", gid)
                continue
            self._submit(self._read_list, account, region, action, list_id, gid)

    def _read_list(self, account: AccountSettings, region: str, action: Action, list_id: str, gid: str) -> None:
        client = self._client(account, region)
        # The answers do not say their region (nor, for a port range list, its id); a snapshot must.
        added = {"RegionId": region}
        invoke: Callable[[RuntimeOptions], Any]
        if action == "DescribePrefixListAttributes":
            query: ecs_calls.Query = {"RegionId": region, "PrefixListId": list_id}
            invoke = functools.partial(ecs_calls.call, client, "DescribePrefixListAttributes", query)
        else:
            query = {"RegionId": region, "PortRangeListId": list_id}
            invoke = functools.partial(ecs_calls.call, client, "DescribePortRangeListEntries", query)
            added["PortRangeListId"] = list_id
        try:
            body = self._call(account, region, action, invoke, fatal_auth=False)
            if action == "DescribePrefixListAttributes" and body.get("PrefixListId") != list_id:
                shown = identifiers.shown(body.get("PrefixListId"))
                raise _ApiFailure("MalformedResponse", f"the answer names prefix list {shown}")
        except _ApiFailure as failure:
            # Named after the group whose rules led here; the engine adds one line per group
            # whose rules name the list, so none of them passes for complete.
            self._error(account.name, region, failure.code, f"{action} {list_id} failed: {failure.message}", gid)
            return
        except _DeadlineExceeded:
            self._error(
                account.name,
                region,
                "DeadlineExceeded",
                f"the scan deadline passed before list {list_id} was read",
                gid,
            )
            return
        self._keep(account.name, action, (region, list_id, 0), {**body, **added})

    # -- membership: which interfaces sit in which groups ---------------------------------------
    def _submit_membership(self, account: AccountSettings, region: str) -> None:
        # Both listings whole, whatever else the region holds: an instance's own public IP is only
        # in DescribeInstances, a classic-network instance has no ENI (sgwatch.sources.interfaces).
        self._submit(self._list_members, account, region, "DescribeNetworkInterfaces")
        self._submit(self._list_members, account, region, "DescribeInstances")

    def _list_members(self, account: AccountSettings, region: str, action: Action) -> None:
        """Every page of one membership listing, kept only when whole; a failure leaves the
        region's membership unknown (its groups judged on paper), never a scan error."""
        client = self._client(account, region)
        lister = _list_interfaces if action == "DescribeNetworkInterfaces" else _list_instances
        pages: list[dict[str, Any]] = []
        read: list[paging.Page] = []
        token: str | None = None
        try:
            while True:
                body = self._call(
                    account, region, action, functools.partial(lister, client, region, token), fatal_auth=False
                )
                pages.append(body)
                read.append(paging.Page.of(body, interfaces.entry_count(action, body)))
                token = paging.next_token(read)
                if token is None:
                    break
            if (missing := paging.missing_page(read)) is not None:
                raise _ApiFailure("MalformedResponse", f"{action}: {missing}")
        except _ApiFailure as failure:
            denied = failure.code.startswith("Forbidden") or failure.code in _DENIED_CODES
            self._membership_failed(
                account.name, region, failure.code, f"{action} failed: {failure.message}", action if denied else ""
            )
            return
        except _DeadlineExceeded:
            self._membership_failed(
                account.name, region, "DeadlineExceeded", f"the scan deadline passed before {action} was read", ""
            )
            return
        for index, page in enumerate(pages):
            # The answers do not say their region; a snapshot must (as for prefix lists).
            self._keep(account.name, action, (region, "", index), {**page, "RegionId": region})

    def _membership_failed(self, account: str, region: str, code: str, message: str, refused: str) -> None:
        why = MembershipUnknown(code, self._scrub(message), (f"ecs:{refused}",) if refused else ())
        log.warning("could not read membership", account=account, region=region, code=code)
        with self._lock:
            self.raw.membership_failures.setdefault((account, region), why)

    # -- one API call with retries ------------------------------------------------------------
    def _call(
        self,
        account: AccountSettings,
        region: str,
        action: Action,
        invoke: Callable[[RuntimeOptions], Any],
        *,
        fatal_auth: bool = True,
    ) -> dict[str, Any]:
        """One call with retries; ``invoke`` sends it and returns the parsed JSON body
        (:func:`ecs_calls.call`). ``fatal_auth=False``: a permission refusal is this call's failure
        (an incomplete scan), not the end of the scan, for calls a RAM policy may not grant yet."""
        s = self.settings
        pair = (account.name, region)
        failures = 0
        throttles = 0
        while True:
            if self._stop.is_set():
                raise _Aborted
            try:
                if not self._dispatch.slot(pair, self.deadline):
                    raise _Aborted
            except DeadlinePassed:
                raise _DeadlineExceeded from None
            remaining_ms = int((self.deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise _DeadlineExceeded
            # every call carries its own timeouts, never longer than what is left of the deadline
            runtime = RuntimeOptions(
                connect_timeout=max(1, min(s.connect_timeout_ms, remaining_ms)),
                read_timeout=max(1, min(s.read_timeout_ms, remaining_ms)),
            )
            wait: float | None = None
            try:
                response = self._timed(action, invoke, runtime)
            except AlibabaCloudException as exc:
                code = str(exc.code or "")
                retry_after = getattr(exc, "retry_after", None)
                if _is_throttle(code) or isinstance(exc, ThrottlingException):
                    self._count(action, "throttled", throttle=True)
                    if throttles >= s.max_throttle_retries:
                        raise _ApiFailure(code, f"still throttled after {throttles} retries") from None
                    throttles += 1
                    if retry_after:
                        wait = retry_after / 1000
                        # the cloud said when this region's quota refills: hold back every caller
                        # of the region until then, not only this one
                        self._dispatch.penalize(pair, wait)
                    else:
                        wait = self._backoff(throttles)
                elif _is_auth(code):
                    self._count(action, "error")
                    if not fatal_auth and (code.startswith("Forbidden") or code in _DENIED_CODES):
                        raise _ApiFailure(code, f"permission denied: grant ecs:{action} to the RAM identity") from None
                    self._fail_auth(account, region, action, code, exc)
                elif (exc.status_code or 0) >= 500 or code in _RETRYABLE_CODES:
                    self._count(action, "error")
                    if failures >= s.max_retries:
                        raise _ApiFailure(code, self._describe(exc)) from None
                    failures += 1
                    wait = self._backoff(failures)
                else:
                    self._count(action, "error")
                    raise _ApiFailure(code or "UnknownError", self._describe(exc)) from None
                code_for_log = code
            except UnretryableException as exc:
                inner = exc.inner_exception
                if isinstance(inner, CredentialException):
                    self._count(action, "error")
                    self._fail_credentials(account, inner)
                self._count(action, "error")
                code_for_log = (
                    "Timeout"
                    if "timeout" in type(inner).__name__.lower() or "timed out" in str(inner).lower()
                    else "ConnectionError"
                )
                if failures >= s.max_retries:
                    raise _ApiFailure(code_for_log, f"{code_for_log} after {failures + 1} attempts") from None
                failures += 1
                wait = self._backoff(failures)
            except (AttributeError, TypeError, ValueError, KeyError):
                # the SDK could not read a 200 body (not JSON, or not what its reader expects)
                self._count(action, "error")
                raise _ApiFailure("MalformedResponse", f"{action} returned a body of the wrong shape") from None
            else:
                if not isinstance(response, dict):
                    self._count(action, "error")
                    raise _ApiFailure("MalformedResponse", f"{action} returned 200 without a usable body")
                raw: dict[str, Any] = response
                problem = "not its answer" if classify(raw) != action else ecs_calls.shape_problem(action, raw)
                if problem:
                    self._count(action, "error")
                    raise _ApiFailure("MalformedResponse", f"{action} returned a body of the wrong shape ({problem})")
                said = raw.get("RegionId")
                if region and said not in (None, "") and said != region:
                    # an answer is about the region asked, whatever its body says
                    self._count(action, "error")
                    shown = identifiers.shown(said)
                    raise _ApiFailure("MalformedResponse", f"{action} for {region} answered for region {shown}")
                self._count(action, "ok")
                return raw
            with self._lock:
                self.raw.stats.retries += 1
            log.debug(
                "retrying ECS call",
                account=account.name,
                region=region,
                action=action,
                code=code_for_log,
                wait_s=round(wait, 3),
                throttles=throttles,
                failures=failures,
            )
            if time.monotonic() + wait >= self.deadline:
                raise _DeadlineExceeded
            self._sleep(wait)

    def _timed(self, action: Action, invoke: Callable[[RuntimeOptions], Any], runtime: RuntimeOptions) -> Any:
        began = time.monotonic()
        try:
            return invoke(runtime)
        finally:
            seconds = time.monotonic() - began
            with self._lock:
                self.raw.stats.latencies.append((action, seconds))

    def _backoff(self, attempt: int) -> float:
        # exponential with equal jitter: never less than half the step, never in lockstep
        step = min(self.settings.backoff_cap_ms, self.settings.backoff_base_ms * (1 << max(0, attempt - 1))) / 1000
        with self._lock:
            return step / 2 + self.rng.uniform(0, step / 2)

    def _sleep(self, seconds: float) -> None:
        # parked, not asleep in a worker's place: other pairs' calls go on meanwhile
        if seconds > 0 and not self._dispatch.park(seconds):
            raise _Aborted

    # -- auth: stop everything with one line ---------------------------------------------------
    def _fail_auth(
        self, account: AccountSettings, region: str, action: str, code: str, exc: AlibabaCloudException
    ) -> NoReturn:
        where = f"account '{account.name}'" + (f" region {region}" if region else "")
        key = self._key_hint(account)
        if code.startswith("Forbidden") or code in _DENIED_CODES:
            denied = getattr(exc, "access_denied_detail", None) or {}
            needed = denied.get("AuthAction") if isinstance(denied, dict) else None
            fix = f"grant {needed or 'ecs:' + action} to the RAM identity{key} (a scan needs {READ_PERMISSIONS})"
        elif code.startswith("InvalidAccessKeyId"):
            fix = f"the AccessKey{key} is unknown or disabled; configure a valid AccessKey for this account"
        elif code in ("SignatureDoesNotMatch", "IncompleteSignature", "InvalidAccessKeySecret"):
            fix = f"the AccessKey secret does not match the AccessKey{key}; correct the secret"
        elif code.startswith("InvalidSecurityToken"):
            fix = "the STS security token is expired or invalid; refresh it or the role session"
        else:
            fix = "configure credentials (env ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET, ~/.aliyun/config.json, or the config)"
        # Only our own wording goes out here; the server's message is not quoted, so nothing to scrub.
        self._abort(AuthError(f"{where}: {action} refused with {code}: {fix}"))

    def _fail_credentials(self, account: AccountSettings, exc: BaseException) -> NoReturn:
        detail = self._scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:200]
        kind = account.credentials.type
        if "any of the providers in the chain" in detail:
            self._abort(
                AuthError(
                    f"account '{account.name}': no credentials found by the default chain; set "
                    "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, run `aliyun configure`, "
                    "use RRSA on ACK, or give the account credentials in the config"
                )
            )
        self._abort(
            AuthError(
                f"account '{account.name}': could not obtain credentials ({kind}): {detail}; "
                "check the credential configuration of this account"
            )
        )

    def _abort(self, error: AuthError) -> NoReturn:
        with self._lock:
            if self.auth_error is None:
                self.auth_error = error
                # The caller prints or logs the error itself; one line, not two.
                log.debug("scan stopped: authentication failed", error=str(error))
        self._stop.set()
        self._dispatch.stop()
        raise _Aborted

    def _key_hint(self, account: AccountSettings) -> str:
        creds = account.credentials
        if isinstance(creds, RamRoleArnCredentials):
            return f" of role {creds.role_arn}"
        if isinstance(creds, AccessKeyCredentials):
            return f" {logs.mask_access_key_id(creds.id)}"
        return " from the default credential chain"

    def _collect_secrets(self) -> list[str]:
        found: list[str] = []
        for account in self.settings.accounts:
            creds: Any = account.credentials
            if isinstance(creds, RamRoleArnCredentials):
                if creds.external_id:
                    found.append(creds.external_id.get_secret_value())
                creds = creds.source
            if isinstance(creds, AccessKeyCredentials):
                found.append(creds.secret.get_secret_value())
                if creds.security_token:
                    found.append(creds.security_token.get_secret_value())
        return [s for s in found if s]

    def _scrub(self, text: str) -> str:
        # The one redactor (every form of each secret: URL-encoded in an STS query string...).
        text = logs.scrub(text, self._secrets)
        # whatever the default chain loaded we never saw; strip anything that looks like a token
        return re.sub(r"(?i)(security[_-]?token|secret)([\"':= ]+)[^\s,\"'}]+", r"\1\2***", text)

    def _describe(self, exc: AlibabaCloudException) -> str:
        message = str(exc.message or exc.code or type(exc).__name__)
        return self._scrub(f"{exc.code}: {message}".splitlines()[0])[:300]

    # -- bookkeeping --------------------------------------------------------------------------
    def _count(self, action: str, result: str, throttle: bool = False) -> None:
        with self._lock:
            self.raw.stats.requests[(action, result)] += 1
            if throttle:
                self.raw.stats.throttles += 1

    def _keep(self, account: str, action: Action, where: tuple[str, str, int], body: dict[str, Any]) -> None:
        order = {
            "DescribeRegions": 0,
            "DescribeSecurityGroups": 1,
            "DescribeSecurityGroupAttribute": 2,
            "DescribePrefixListAttributes": 3,
            "DescribePortRangeListEntries": 4,
            "DescribeNetworkInterfaces": 5,
            "DescribeInstances": 6,
        }[action]
        with self._lock:
            # where[0] is the region asked about: the answer's region, whatever its body says
            self._responses.append(((account, order, *where), RawResponse(account, action, body, where[0])))

    def _error(self, account: str, region: str, code: str, message: str, group: str = "") -> None:
        error = ScanError(
            account=account, region=region, code=code, message=self._scrub(message), security_group_id=group
        )
        log.warning("could not read", account=account, region=region, group=group or None, code=code)
        with self._lock:
            self.raw.errors.append(error)

    def _account_failed(self, account: AccountSettings, code: str, message: str) -> None:
        # one error per region the scan would have read, so each stays "unread", never "emptied"
        for region in dict.fromkeys(account.regions or self.settings.regions or [""]):
            self._error(account.name, region, code, message)

    def _region_failed(self, account: AccountSettings, region: str, code: str, message: str) -> None:
        self._error(account.name, region, code, message)

    def _report_progress(self) -> None:
        if self.progress is not None:
            with self._lock:
                done, total = self.groups_done, self.groups_total
            self.progress(done, total)

    # -- SDK clients --------------------------------------------------------------------------
    def _credential(self, account: AccountSettings) -> CredentialClient:
        with self._lock:
            client = self._credentials.get(account.name)
            if client is None:
                client = self._credentials[account.name] = _credential_client(account.credentials, self.settings)
            return client

    def _client(self, account: AccountSettings, region: str) -> EcsClient:
        # With an endpoint override one client serves every region (region_id goes on each
        # request); otherwise the SDK derives the endpoint from the client's region.
        key = (account.name, "*" if self.endpoint else region)
        credential = self._credential(account)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                config = open_api_models.Config(
                    credential=credential,
                    region_id=region or REGIONS_ENDPOINT_REGION,
                    connect_timeout=self.settings.connect_timeout_ms,
                    read_timeout=self.settings.read_timeout_ms,
                    # one pooled connection per worker; a smaller pool reconnects on every call
                    max_idle_conns=self.settings.concurrency,
                )
                if self.endpoint is not None:
                    config.endpoint, config.protocol = self.endpoint
                client = self._clients[key] = EcsClient(config)
            return client


def _credential_client(
    creds: DefaultChainCredentials | AccessKeyCredentials | RamRoleArnCredentials, settings: LiveSettings
) -> CredentialClient:
    # an assumed role's credentials are the process's, kept across scans (sgwatch.sources.identity)
    return identity.credential_client(creds, settings)


def _read_attribute(client: EcsClient, region: str, gid: str, token: str | None, runtime: RuntimeOptions) -> Any:
    query: ecs_calls.Query = {
        "RegionId": region,
        "SecurityGroupId": gid,
        "Direction": "all",
        "MaxResults": RULE_PAGE_SIZE,
        "NextToken": token,
    }
    return ecs_calls.call(client, "DescribeSecurityGroupAttribute", query, runtime)


def _list_interfaces(client: EcsClient, region: str, token: str | None, runtime: RuntimeOptions) -> Any:
    query: ecs_calls.Query = {"RegionId": region, "MaxResults": ENI_PAGE_SIZE, "NextToken": token}
    return ecs_calls.call(client, "DescribeNetworkInterfaces", query, runtime)


def _list_instances(client: EcsClient, region: str, token: str | None, runtime: RuntimeOptions) -> Any:
    query: ecs_calls.Query = {"RegionId": region, "MaxResults": INSTANCE_PAGE_SIZE, "NextToken": token}
    return ecs_calls.call(client, "DescribeInstances", query, runtime)


def _pair_of(args: tuple[Any, ...]) -> Hashable | None:
    """The (account, region) a task's calls go to, by the tasks' convention of starting their
    arguments with them; None for a task that names no region (it runs as soon as a place is free)."""
    if len(args) > 1 and isinstance(args[0], AccountSettings) and isinstance(args[1], str):
        return (args[0].name, args[1])
    return None


def scan(settings: LiveSettings, progress: ProgressCallback | None = None) -> RawScan:
    """Read every security group the settings cover; see the module docstring for the rules.

    ``progress(done, total)`` counts security groups read against groups listed so far (the
    total grows while listings page in); it is called from worker threads.

    With ``settings.organization`` the accounts are the Resource Directory's members
    (:func:`sgwatch.sources.organization.discover`); what the discovery could not read is a
    scan error like any other.

    Raises :class:`~sgwatch.errors.AuthError` when credentials or permissions are refused.
    """
    if settings.organization is None:
        return _Scanner(settings, progress).run()
    found = organization.discover(settings)
    mine = Shard(settings.shard, settings.total_shards).select(found.accounts)
    raw = _Scanner(settings.model_copy(update={"accounts": mine}), progress).run()
    raw.errors = sorted([*raw.errors, *found.errors], key=lambda e: (e.account, e.region, e.security_group_id, e.code))
    return raw
