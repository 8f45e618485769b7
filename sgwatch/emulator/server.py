"""A local ECS API emulator that the real Alibaba Cloud SDK can talk to.

It answers the read APIs a scan needs with the documented response shapes, verifies
signature V3 against configured AccessKeys, and injects faults (latency, throttling, 5xx, a
dead region, malformed bodies, lowercase values) so the live scanner can be tested end to end
through the official SDK, never through mocks.

Fault decisions hash (seed, account, action, parameters, how often that request was seen), so a
seeded run throttles the same calls whatever order the client's threads happen to send them in.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sgwatch.emulator import actiontrail, resourcedirectory, sts
from sgwatch.emulator.estate import (
    REGION_NAMES,
    Estate,
    PortRangeList,
    PrefixList,
    SecurityGroup,
    full_permission,
    random_id,
)
from sgwatch.emulator.members import MalformedFilter, MemberError, Members
from sgwatch.emulator.resourcedirectory import DirectoryError, ResourceDirectory
from sgwatch.emulator.signature import expected_signature, parse_authorization, signature_matches
from sgwatch.sources.raw import DEFAULT_ACCOUNT

ACTIONS = (
    "DescribeRegions",
    "DescribeSecurityGroups",
    "DescribeSecurityGroupAttribute",
    "DescribePrefixListAttributes",
    "DescribePortRangeListEntries",
    "DescribeNetworkInterfaces",
    "DescribeInstances",
)
API_VERSION = "2014-05-26"
_REGION_RE = re.compile(r"^[a-z]{2,}-[a-z0-9-]+$")
# Each product served at the same address, by the API version the SDK sends: (RAM prefix, actions).
PRODUCTS: dict[str, tuple[str, tuple[str, ...]]] = {
    API_VERSION: ("ecs", ACTIONS),
    sts.API_VERSION: ("sts", sts.ACTIONS),
    resourcedirectory.API_VERSION: ("resourcemanager", resourcedirectory.ACTIONS),
    actiontrail.API_VERSION: (actiontrail.RAM_PREFIX, actiontrail.ACTIONS),
}


@dataclass
class AccessKey:
    secret: str
    account: str = DEFAULT_ACCOUNT
    # None lets the key call every action; a set models a RAM policy granting only those
    actions: frozenset[str] | None = None
    security_token: str | None = None  # when set, the key is an STS key and needs this token
    expires_at: float | None = None  # time.time() past which an STS key is refused

    def __repr__(self) -> str:  # never let a secret reach a log line or a test failure
        return f"AccessKey(account={self.account!r}, actions={self.actions!r})"


@dataclass
class Faults:
    latency_ms: float = 0.0  # added to every API call
    throttle_rate: float = 0.0  # fraction of calls answered 400 Throttling.User
    throttle_retry_after_ms: int | None = None  # sends x-acs-retry-after with throttles when set
    error_5xx_rate: float = 0.0  # fraction of calls answered 500 InternalError
    failing_regions: list[str] = field(default_factory=list)  # always 503 ServiceUnavailable
    malformed_rate: float = 0.0  # fraction of calls answered 200 with a wrong-shaped body
    malformed_groups: list[str] = field(default_factory=list)  # attribute calls always malformed
    vanish_groups: list[str] = field(default_factory=list)  # listed, yet NotFound when read
    lowercase: bool = False  # Policy/IpProtocol in lowercase, Priority as int
    answer_region: str = ""  # when set, every answer's "RegionId" says this, not the region asked
    loop_pages: bool = False  # token paging: page 3's NextToken leads back to page 2, for ever
    # what a malformed 200 carries: "null" (the SDK yields body None), "object" (a JSON object
    # without the documented keys) or "scalar" (a bare string, which the SDK fails to map)
    malformed_shape: str = "null"
    # ActionTrail: seconds from a change to its event being visible to LookupEvents (the cloud's is
    # about 600), and LookupEvents calls per second per account before Throttling.User (the cloud's 2)
    actiontrail_delay_seconds: float = 0.0
    actiontrail_qps: float = 2.0

    def update(self, changes: Mapping[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        for key, value in changes.items():
            setattr(self, key, list(value) if isinstance(value, list | tuple | set | frozenset) else value)


@dataclass(frozen=True, slots=True)
class CallRecord:
    t: float  # time.monotonic() when the call arrived
    account: str
    action: str
    region: str
    group: str
    status: int
    code: str  # "OK" or the error code


_MALFORMED: dict[str, Any] = {
    "null": None,
    "object": {"Unexpected": ["not", "the", "documented", "shape"]},
    "scalar": "Service temporarily unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class Emulator:
    """The emulated ECS endpoint. ``start()`` serves in a thread and returns the base URL."""

    def __init__(
        self,
        estate: Estate | None = None,
        *,
        snapshot: Path | None = None,
        synthetic_groups: int = 0,
        synthetic_regions: int = 3,
        synthetic_prefix_lists: bool = True,
        synthetic_members: bool = True,
        keys: Mapping[str, AccessKey | str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        list_page_cap: int = 100,
        attribute_page_cap: int = 1000,
        interface_page_cap: int = 500,
        instance_page_cap: int = 100,
        faults: Faults | None = None,
        extra_regions: tuple[str, ...] = (),
        **fault_fields: Any,
    ) -> None:
        if estate is None:
            if snapshot is not None:
                estate = Estate.from_snapshot(Path(snapshot))
            else:
                estate = Estate.synthetic(
                    synthetic_groups,
                    synthetic_regions,
                    seed=seed,
                    prefix_lists=synthetic_prefix_lists,
                    members=synthetic_members,
                )
        self.estate = estate
        raw_keys = keys if keys is not None else {"test-ak": "test-secret"}
        self.keys: dict[str, AccessKey] = {
            k: v if isinstance(v, AccessKey) else AccessKey(secret=v) for k, v in raw_keys.items()
        }
        self.host = host
        self.port = port
        self.seed = seed
        self.list_page_cap = list_page_cap
        self.attribute_page_cap = attribute_page_cap
        self.interface_page_cap = interface_page_cap
        self.instance_page_cap = instance_page_cap
        self.faults = faults or Faults()
        if fault_fields:
            self.faults.update(fault_fields)
        self.extra_regions = tuple(extra_regions)
        self.actiontrail = actiontrail.ActionTrail(seed)  # records the control API's changes
        self._lock = threading.Lock()
        self.directory = ResourceDirectory()
        self.sts = sts.Sts(add_key=self._add_key, management=lambda: self.directory.management)
        self._seen: Counter[str] = Counter()
        self._request_seq = 0
        self.calls: Counter[str] = Counter()  # action -> API calls received (any outcome)
        self.results: Counter[tuple[str, str]] = Counter()  # (action, "OK" or error code)
        self.log: list[CallRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        if self._server is None:
            self._server = _Server((self.host, self.port), _Handler, self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="ecs-emulator", daemon=True
            )
            self._thread.start()
        return self.url

    def serve_forever(self) -> None:
        self._server = _Server((self.host, self.port), _Handler, self)
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- stats --------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "total_calls": sum(self.calls.values()),
                "results": {f"{a} {c}": n for (a, c), n in sorted(self.results.items())},
                "max_in_flight": self.max_in_flight,
                "groups": self.estate.group_count(),
                "rules": self.estate.rule_count(),
                "prefix_lists": self.estate.prefix_list_count(),
                "port_range_lists": self.estate.port_range_list_count(),
                "interfaces": self.estate.member_counts()[0],
                "instances": self.estate.member_counts()[1],
            }

    def reset_stats(self) -> None:
        with self._lock:
            self.calls.clear()
            self.results.clear()
            self.log.clear()
            self.max_in_flight = 0

    def ok_calls(self, action: str | None = None) -> int:
        with self._lock:
            return sum(n for (a, c), n in self.results.items() if c == "OK" and (action is None or a == action))

    # -- request handling ---------------------------------------------------------------------
    def _roll(self, kind: str, account: str, action: str, params: Mapping[str, str], rate: float) -> bool:
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        base = f"{self.seed}|{account}|{action}|{sorted(params.items())}"
        with self._lock:
            self._seen[kind + base] += 1
            n = self._seen[kind + base]
        digest = hashlib.sha256(f"{kind}|{base}|{n}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate

    def _request_id(self) -> str:
        with self._lock:
            self._request_seq += 1
            seq = self._request_seq
        return str(uuid.UUID(bytes=hashlib.md5(f"{self.seed}:{seq}".encode()).digest())).upper()

    def handle_api(
        self, method: str, path: str, raw_query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        action = headers.get("x-acs-action", "")
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        region = params.get("RegionId", "")
        group = params.get("SecurityGroupId", "")
        account = "?"
        start = time.monotonic()
        with self._lock:
            self.calls[action or "?"] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        request_id = self._request_id()
        try:
            if self.faults.latency_ms > 0:
                time.sleep(self.faults.latency_ms / 1000)
            account = self._authenticate(method, path, raw_query, headers, body, action)
            other = self._other_product(account, action, headers, params)
            result = other if other is not None else self._dispatch(account, action, params)
            result.setdefault("RequestId", request_id)
            if self.faults.answer_region and "RegionId" in result:
                result["RegionId"] = self.faults.answer_region
            status, code, extra_headers = 200, "OK", {}
            if self._roll("malformed", account, action, params, self.faults.malformed_rate) or (
                action == "DescribeSecurityGroupAttribute" and group in self.faults.malformed_groups
            ):
                return self._finish(
                    action,
                    account,
                    region,
                    group,
                    start,
                    200,
                    "Malformed",
                    {},
                    _MALFORMED.get(self.faults.malformed_shape),
                )
        except ApiError as err:
            status, code, extra_headers = err.status, err.code, err.headers
            host_id = f"ecs.{region}.aliyuncs.com" if region else "ecs.aliyuncs.com"
            result = {
                "RequestId": request_id,
                "HostId": host_id,
                "Code": err.code,
                "Message": err.message,
                "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Ecs&requestId={request_id}",
                **err.extra,
            }
        finally:
            with self._lock:
                self.in_flight -= 1
        return self._finish(action, account, region, group, start, status, code, extra_headers, result)

    def _finish(
        self,
        action: str,
        account: str,
        region: str,
        group: str,
        start: float,
        status: int,
        code: str,
        headers: dict[str, str],
        result: Any,
    ) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.results[(action or "?", code)] += 1
            self.log.append(CallRecord(start, account, action, region, group, status, code))
        return status, headers, result

    def _authenticate(
        self, method: str, path: str, raw_query: str, headers: Mapping[str, str], body: bytes, action: str
    ) -> str:
        auth = parse_authorization(headers.get("authorization", ""))
        if auth is None:
            raise ApiError(400, "MissingAuthorization", "The Authorization header is missing or malformed.")
        key = self.keys.get(auth.access_key_id)
        if key is None:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if key.security_token is not None and headers.get("x-acs-security-token") != key.security_token:
            raise ApiError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
        if key.expires_at is not None and self.sts.clock() >= key.expires_at:
            raise ApiError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
        payload_hash = headers.get("x-acs-content-sha256", "")
        if payload_hash != hashlib.sha256(body).hexdigest():
            raise ApiError(400, "SignatureDoesNotMatch", "The request payload hash does not match.")
        expected = expected_signature(key.secret, method, path, raw_query, headers, auth.signed_headers, payload_hash)
        if "x-acs-action" not in auth.signed_headers or not signature_matches(expected, auth.signature):
            raise ApiError(400, "SignatureDoesNotMatch", "The request signature does not conform to Aliyun standards.")
        product, actions = PRODUCTS.get(headers.get("x-acs-version", ""), ("", ()))
        if not product:
            raise ApiError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        if action not in actions:
            raise ApiError(404, "InvalidAction.NotFound", f"Specified api is not found: {action!r}.")
        if product == "ecs" and key.security_token is None and key.account in self.directory.member_accounts():
            # a member account is read through the role sgwatch assumes in it, never a key of its own
            raise ApiError(403, "Forbidden.RAM", "A member account is read through an assumed role (STS token).")
        if key.actions is not None and action not in key.actions:
            raise ApiError(
                403,
                "Forbidden.RAM",
                "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
                extra={
                    "AccessDeniedDetail": {
                        "AuthAction": f"{product}:{action}",
                        "PolicyType": "AccountLevelIdentityBasedPolicy",
                        "NoPermissionType": "ImplicitDeny",
                    }
                },
            )
        return key.account

    def _add_key(self, key_id: str, key: AccessKey) -> None:
        with self._lock:
            self.keys[key_id] = key

    def _other_product(self, account: str, action: str, headers: Mapping[str, str], params: Mapping[str, str]) -> Any:
        """STS's and Resource Directory's answers; None for an ECS action."""
        try:
            if action in sts.ACTIONS:
                auth = parse_authorization(headers.get("authorization", ""))
                assert auth is not None  # _authenticate checked it
                return self.sts.handle(action, self.keys[auth.access_key_id], auth.access_key_id, params)
            if action in resourcedirectory.ACTIONS:
                return self.directory.handle(account, params)
        except (sts.StsError, DirectoryError) as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        return None

    def _dispatch(self, account: str, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        region = params.get("RegionId", "")
        if region and region in self.faults.failing_regions:
            raise ApiError(
                503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
            )
        if self._roll("throttle", account, action, params, self.faults.throttle_rate):
            hdrs = {}
            if self.faults.throttle_retry_after_ms:
                hdrs["x-acs-retry-after"] = str(int(self.faults.throttle_retry_after_ms))
            raise ApiError(400, "Throttling.User", "Request was denied due to user flow control.", headers=hdrs)
        if self._roll("5xx", account, action, params, self.faults.error_5xx_rate):
            raise ApiError(500, "InternalError", "The request processing has failed due to some unknown error.")
        if action in actiontrail.ACTIONS:
            return self._lookup_events(account, params)
        with self.estate.lock:
            if action == "DescribeRegions":
                return self._describe_regions(account)
            if action == "DescribeSecurityGroups":
                return self._describe_security_groups(account, params)
            if action == "DescribePrefixListAttributes":
                return self._describe_prefix_list(account, params)
            if action == "DescribePortRangeListEntries":
                return self._describe_port_range_list(account, params)
            if action == "DescribeNetworkInterfaces":
                return self._describe_members(account, params, interfaces=True)
            if action == "DescribeInstances":
                return self._describe_members(account, params, interfaces=False)
            return self._describe_attribute(account, params)

    # -- the APIs -----------------------------------------------------------------------------
    def _lookup_events(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        if self.actiontrail.throttle(account, self.faults.actiontrail_qps):
            raise ApiError(400, "Throttling.User", "Request was denied due to user flow control.")
        try:
            return self.actiontrail.lookup(account, params, self.faults.actiontrail_delay_seconds)
        except actiontrail.TrailError as err:
            raise ApiError(err.status, err.code, err.message) from None

    def _known_regions(self, account: str) -> list[str]:
        names = set(self.estate.regions(account)) | set(self.extra_regions) | set(self.faults.failing_regions)
        return sorted(names)

    def _describe_regions(self, account: str) -> dict[str, Any]:
        regions = []
        for name in self._known_regions(account):
            region = self.estate.region(account, name)
            local = region.local_name if region and region.local_name else REGION_NAMES.get(name, name)
            regions.append(
                {
                    "RegionId": name,
                    "LocalName": local,
                    "RegionEndpoint": f"ecs.{name}.aliyuncs.com",
                    "Status": "available",
                }
            )
        return {"Regions": {"Region": regions}}

    def _require_region(self, params: Mapping[str, str]) -> str:
        region = params.get("RegionId", "")
        if not region:
            raise ApiError(400, "MissingRegionId", "RegionId is mandatory for this action.")
        if not _REGION_RE.match(region):
            raise ApiError(400, "InvalidRegionId.MalFormed", "The specified parameter RegionId is not valid.")
        return region

    def _describe_security_groups(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        region_id = self._require_region(params)
        region = self.estate.region(account, region_id)
        groups = region.sorted_groups() if region else []
        if params.get("SecurityGroupIds"):
            try:
                wanted = set(json.loads(params["SecurityGroupIds"]))
            except (ValueError, TypeError) as exc:
                raise ApiError(
                    400, "InvalidSecurityGroupIds.Malformed", "SecurityGroupIds is not a JSON array."
                ) from exc
            groups = [g for g in groups if g.group_id in wanted]
        if params.get("SecurityGroupId"):
            groups = [g for g in groups if g.group_id == params["SecurityGroupId"]]
        if params.get("VpcId"):
            groups = [g for g in groups if g.vpc_id == params["VpcId"]]
        if params.get("SecurityGroupType"):
            groups = [g for g in groups if g.listing.get("SecurityGroupType", "normal") == params["SecurityGroupType"]]
        base: dict[str, Any] = {"RegionId": region_id}
        if "PageNumber" in params or "PageSize" in params:  # the older paging mode, still served
            number = _int_param(params, "PageNumber", 1, 1, 10**9)
            size = min(_int_param(params, "PageSize", 10, 1, 100), self.list_page_cap)
            page = groups[(number - 1) * size : number * size]
            base.update(PageNumber=number, PageSize=size, TotalCount=len(groups))
        else:
            size = min(_int_param(params, "MaxResults", 10, 1, 100), self.list_page_cap)
            offset = _decode_token(params.get("NextToken", ""), "list", region_id, "")
            page = groups[offset : offset + size]
            after = self._next_offset(offset, size, len(groups))
            base["NextToken"] = _encode_token("list", region_id, "", after) if after is not None else ""
        base["SecurityGroups"] = {"SecurityGroup": [self._render_listing(g) for g in page]}
        return base

    def _next_offset(self, offset: int, size: int, total: int) -> int | None:
        if self.faults.loop_pages and offset >= 2 * size:
            return size
        return offset + size if offset + size < total else None

    def _describe_attribute(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        region_id = self._require_region(params)
        gid = params.get("SecurityGroupId", "")
        if not gid:
            raise ApiError(400, "MissingSecurityGroupId", "SecurityGroupId is mandatory for this action.")
        group = self.estate.group(account, region_id, gid)
        if group is None or gid in self.faults.vanish_groups:
            raise ApiError(404, "InvalidSecurityGroupId.NotFound", "The specified security group does not exist.")
        direction = params.get("Direction", "all") or "all"
        if direction not in ("all", "ingress", "egress"):
            raise ApiError(400, "InvalidDirection.Malformed", "The specified parameter Direction is not valid.")
        size = min(_int_param(params, "MaxResults", 500, 10, 1000), self.attribute_page_cap)
        rules = [p for p in group.permissions if direction == "all" or p.get("Direction") == direction]
        offset = _decode_token(params.get("NextToken", ""), "attr", region_id, gid)
        page = rules[offset : offset + size]
        after = self._next_offset(offset, size, len(rules))
        return {
            "RegionId": region_id,
            "SecurityGroupId": gid,
            "SecurityGroupName": group.name,
            "Description": group.description,
            "VpcId": group.vpc_id,
            "InnerAccessPolicy": group.inner_access_policy.lower()
            if self.faults.lowercase
            else group.inner_access_policy,
            "NextToken": _encode_token("attr", region_id, gid, after) if after is not None else "",
            "Permissions": {"Permission": [self._render_permission(p) for p in page]},
        }

    def _describe_prefix_list(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        region_id = self._require_region(params)
        pl_id = params.get("PrefixListId", "")
        if not pl_id:
            raise ApiError(400, "MissingPrefixListId", "PrefixListId is mandatory for this action.")
        prefix_list = self.estate.prefix_list(account, region_id, pl_id)
        if prefix_list is None:
            raise ApiError(404, "InvalidPrefixListId.NotFound", "The specified prefix list was not found.")
        return prefix_list.body()

    def _describe_port_range_list(self, account: str, params: Mapping[str, str]) -> dict[str, Any]:
        region_id = self._require_region(params)
        prl_id = params.get("PortRangeListId", "")
        if not prl_id:
            raise ApiError(400, "MissingPortRangeListId", "PortRangeListId is mandatory for this action.")
        port_range_list = self.estate.port_range_list(account, region_id, prl_id)
        if port_range_list is None:
            raise ApiError(404, "InvalidPortRangeListId.NotFound", "The specified port range list does not exist.")
        return port_range_list.body()

    def _describe_members(self, account: str, params: Mapping[str, str], *, interfaces: bool) -> dict[str, Any]:
        # Both answer without a RegionId, and take MaxResults as the reference says: below 10 it
        # is 10, above the maximum (500 ENIs, 100 instances) the maximum.
        region_id = self._require_region(params)
        region = self.estate.region(account, region_id)
        members = region.members if region else Members()
        kind, cap = ("eni", self.interface_page_cap) if interfaces else ("instance", self.instance_page_cap)
        try:
            found = members.eni_list(params) if interfaces else members.instance_list(params)
        except MalformedFilter as exc:
            raise ApiError(400, f"Invalid{exc}.Malformed", f"The specified parameter {exc} is not valid.") from None
        raw_size = params.get("MaxResults", "")
        try:
            size = int(raw_size) if raw_size else 10
        except ValueError as exc:
            raise ApiError(
                400, "InvalidMaxResults.Malformed", "The specified parameter MaxResults is not valid."
            ) from exc
        size = min(max(size, 10), 500 if interfaces else 100, cap)
        offset = _decode_token(params.get("NextToken", ""), kind, region_id, "")
        page = copy.deepcopy(found[offset : offset + size])
        more = offset + size < len(found)
        body: dict[str, Any] = {"NextToken": _encode_token(kind, region_id, "", offset + size) if more else ""}
        if interfaces:
            body["NetworkInterfaceSets"] = {"NetworkInterfaceSet": page}
        else:
            body["Instances"] = {"Instance": page}
        return body

    def _render_listing(self, group: SecurityGroup) -> dict[str, Any]:
        return group.listing_entry()

    def _render_permission(self, perm: dict[str, Any]) -> dict[str, Any]:
        out = full_permission(perm)
        if self.faults.lowercase:
            out["Policy"] = str(out["Policy"]).lower()
            out["IpProtocol"] = str(out["IpProtocol"]).lower()
            with contextlib.suppress(TypeError, ValueError):
                out["Priority"] = int(out["Priority"])
        return out

    # -- control API --------------------------------------------------------------------------
    def handle_control(self, method: str, path: str, query: Mapping[str, str], body: Any) -> tuple[int, Any]:
        account = query.get("account", DEFAULT_ACCOUNT)
        parts = [unquote(p) for p in path.strip("/").split("/")[1:]]  # drop "_emulator"
        if parts == ["actiontrail", "events"] and method == "GET":
            return 200, self.actiontrail.records(query.get("of_account"))
        if parts == ["actiontrail", "events"] and method == "DELETE":
            self.actiontrail.clear()
            return 200, {"ok": True}
        # the event this change stands for, worked out from the estate before the route changes it
        change = actiontrail.describe_change(self.estate, account, method, parts, body)
        status, payload = self._control_route(method, path, account, parts, body)
        if change is not None and status == 200:
            self.actiontrail.record(account, change, actiontrail.Identity.from_query(query))
        return status, payload

    def _control_route(self, method: str, path: str, account: str, parts: list[str], body: Any) -> tuple[int, Any]:
        if parts == ["stats"] and method == "GET":
            return 200, self.stats()
        if parts == ["stats"] and method == "DELETE":
            self.reset_stats()
            return 200, {"ok": True}
        if parts == ["faults"] and method == "GET":
            return 200, dataclasses.asdict(self.faults)
        if parts == ["faults"] and method == "PUT":
            if not isinstance(body, dict):
                return 400, {"error": "expected a JSON object of fault fields"}
            try:
                self.faults.update(body)
            except ValueError as exc:
                return 400, {"error": str(exc)}
            return 200, dataclasses.asdict(self.faults)
        if len(parts) >= 3 and parts[0] == "groups":
            return self._control_groups(method, account, parts[1:], body)
        if len(parts) == 3 and parts[0] == "prefix-lists":
            return self._control_prefix_list(method, account, parts[1], parts[2], body)
        if len(parts) == 3 and parts[0] == "port-range-lists":
            return self._control_port_range_list(method, account, parts[1], parts[2], body)
        if len(parts) >= 3 and parts[0] in ("interfaces", "instances"):
            with self.estate.lock:
                region = self.estate.region(account, parts[1], create=method == "PUT")
                if region is None:
                    return 404, {"error": f"no region {account}/{parts[1]}"}
                try:
                    return self._control_members(method, region.members, parts[0], parts[2:], body)
                except MemberError as exc:
                    return 400, {"error": str(exc)}
        return 404, {"error": f"no control route {method} {path}"}

    def _control_members(
        self, method: str, members: Members, kind: str, parts: list[str], body: Any
    ) -> tuple[int, Any]:
        store = members.enis if kind == "interfaces" else members.instances
        id_field = "NetworkInterfaceId" if kind == "interfaces" else "InstanceId"
        item_id = parts[0]
        if len(parts) == 1 and method == "PUT":
            if not isinstance(body, dict):
                return 400, {"error": f"expected a JSON object of the API's fields for one {kind[:-1]}"}
            if body.get(id_field) not in (None, "", item_id):
                return 400, {"error": f"body {id_field} {body[id_field]!r} is not {item_id!r} of the path"}
            entry = {**body, id_field: item_id}
            return 200, members.put_eni(entry) if kind == "interfaces" else members.put_instance(entry)
        if item_id not in store:
            return 404, {"error": f"no {kind[:-1]} {item_id}"}
        if len(parts) == 1 and method == "GET":
            return 200, store[item_id]
        if len(parts) == 1 and method == "DELETE":
            del store[item_id]
            return 200, {"ok": True}
        if kind == "interfaces" and len(parts) == 3 and parts[1] == "groups":
            if method == "PUT":
                return 200, members.join(item_id, parts[2])
            if method == "DELETE":
                return 200, members.leave(item_id, parts[2])
        if kind == "interfaces" and len(parts) == 2 and parts[1] == "eip":
            if method == "PUT":
                if not isinstance(body, dict) or not body.get("PublicIpAddress"):
                    return 400, {
                        "error": 'expected {"PublicIpAddress": ..., "AllocationId"?: ..., "PrivateIpAddress"?: ...}'
                    }
                address = str(body["PublicIpAddress"])
                allocation = str(body.get("AllocationId") or "")
                return 200, members.associate_eip(item_id, address, allocation, str(body.get("PrivateIpAddress") or ""))
            if method == "DELETE":
                return 200, members.release_eip(item_id)
        return 404, {"error": f"unknown {kind} route"}

    def _control_prefix_list(self, method: str, account: str, region_id: str, pl_id: str, body: Any) -> tuple[int, Any]:
        with self.estate.lock:
            if method == "PUT":
                if not isinstance(body, dict):
                    return 400, {"error": "expected a JSON object of DescribePrefixListAttributes fields"}
                if body.get("PrefixListId") not in (None, "", pl_id):
                    return 400, {"error": f"body PrefixListId {body['PrefixListId']!r} is not {pl_id!r} of the path"}
                try:
                    stored = PrefixList.from_body(body, prefix_list_id=pl_id)
                except ValueError as exc:
                    return 400, {"error": str(exc)}
                return 200, self.estate.put_prefix_list(account, region_id, stored).body()
            if method == "GET":
                found = self.estate.prefix_list(account, region_id, pl_id)
                if found is None:
                    return 404, {"error": f"no prefix list {account}/{region_id}/{pl_id}"}
                return 200, found.body()
            if method == "DELETE":
                if not self.estate.remove_prefix_list(account, region_id, pl_id):
                    return 404, {"error": f"no prefix list {account}/{region_id}/{pl_id}"}
                return 200, {"ok": True}
        return 404, {"error": "unknown prefix-list route"}

    def _control_port_range_list(
        self, method: str, account: str, region_id: str, prl_id: str, body: Any
    ) -> tuple[int, Any]:
        with self.estate.lock:
            if method == "PUT":
                if not isinstance(body, dict):
                    return 400, {
                        "error": 'expected a JSON object, {"Entries": [{"PortRange": ..., "Description": ...}]}'
                    }
                if body.get("PortRangeListId") not in (None, "", prl_id):
                    return 400, {
                        "error": f"body PortRangeListId {body['PortRangeListId']!r} is not {prl_id!r} of the path"
                    }
                try:
                    stored = PortRangeList.from_body(body, port_range_list_id=prl_id)
                except ValueError as exc:
                    return 400, {"error": str(exc)}
                return 200, self.estate.put_port_range_list(account, region_id, stored).record()
            if method == "GET":
                found = self.estate.port_range_list(account, region_id, prl_id)
                if found is None:
                    return 404, {"error": f"no port range list {account}/{region_id}/{prl_id}"}
                return 200, found.record()
            if method == "DELETE":
                if not self.estate.remove_port_range_list(account, region_id, prl_id):
                    return 404, {"error": f"no port range list {account}/{region_id}/{prl_id}"}
                return 200, {"ok": True}
        return 404, {"error": "unknown port-range-list route"}

    def _control_groups(self, method: str, account: str, parts: list[str], body: Any) -> tuple[int, Any]:
        region_id, gid = parts[0], parts[1]
        with self.estate.lock:
            if len(parts) == 2 and method == "PUT":
                region = self.estate.region(account, region_id, create=True)
                assert region is not None
                listing = dict(body) if isinstance(body, dict) else {}
                created = SecurityGroup(
                    gid,
                    listing,
                    vpc_id=listing.get("VpcId", ""),
                    name=listing.get("SecurityGroupName", ""),
                    description=listing.get("Description", ""),
                )
                region.groups[gid] = created
                return 200, created.listing_entry()
            group = self.estate.group(account, region_id, gid)
            if group is None:
                return 404, {"error": f"no group {account}/{region_id}/{gid}"}
            if len(parts) == 2 and method == "DELETE":
                region = self.estate.region(account, region_id)
                assert region is not None
                del region.groups[gid]
                return 200, {"ok": True}
            if len(parts) == 3 and parts[2] == "permissions" and method == "POST":
                if not isinstance(body, dict):
                    return 400, {"error": "expected a JSON permission object"}
                perm = full_permission(body)
                if not perm["SecurityGroupRuleId"]:
                    perm["SecurityGroupRuleId"] = random_id(_rng_for(self.seed, gid, len(group.permissions)), "sgr-")
                group.permissions.append(perm)
                return 200, perm
            if len(parts) == 3 and parts[2] == "permissions" and method == "GET":
                return 200, group.permissions
            if len(parts) == 4 and parts[2] == "permissions" and method == "DELETE":
                before = len(group.permissions)
                group.permissions = [p for p in group.permissions if p.get("SecurityGroupRuleId") != parts[3]]
                if len(group.permissions) == before:
                    return 404, {"error": f"no rule {parts[3]} in {gid}"}
                return 200, {"ok": True}
        return 404, {"error": "unknown group route"}


def _rng_for(seed: int, gid: str, n: int) -> Any:
    import random

    return random.Random(f"{seed}:{gid}:{n}")


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, f"Invalid{name}.Malformed", f"The specified parameter {name} is not valid.") from exc
    if not low <= value <= high:
        raise ApiError(400, f"Invalid{name}.Malformed", f"The specified parameter {name} must be in [{low}, {high}].")
    return value


def _encode_token(kind: str, region: str, gid: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}|{region}|{gid}|{offset}".encode()).decode().rstrip("=")


def _decode_token(token: str, kind: str, region: str, gid: str) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        t_kind, t_region, t_gid, offset = raw.split("|")
        if (t_kind, t_region, t_gid) != (kind, region, gid):
            raise ValueError("token for another listing")
        return int(offset)
    except ValueError as exc:
        raise ApiError(400, "InvalidNextToken.Malformed", "The specified parameter NextToken is not valid.") from exc


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # keep-alive connections from the SDK's pool would make a blocking close wait forever
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real endpoint; the SDK pools connections
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would add 40 ms
    server_version = "sgwatch-ecs-emulator"
    sys_version = ""
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # per-request lines would drown test output; stats and the call log tell the story

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else None)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        split = urlsplit(self.path)
        body = self._body()
        if split.path.startswith("/_emulator/"):
            try:
                parsed = json.loads(body) if body else None
            except json.JSONDecodeError:
                self._send(400, {"error": "body is not JSON"})
                return
            status, payload = self.server.emulator.handle_control(
                method, split.path, dict(parse_qsl(split.query)), parsed
            )
            self._send(status, payload)
            return
        if method != "POST" or split.path != "/":
            self._send(404, {"Code": "InvalidAction.NotFound", "Message": "Only POST / is served."})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, result = self.server.emulator.handle_api(method, split.path, split.query, headers, body)
        self._send(status, result, extra)

    def do_POST(self) -> None:
        self._route("POST")

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")
