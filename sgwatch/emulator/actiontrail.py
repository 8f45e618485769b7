"""ActionTrail in the emulator: a record for every change made through the control API, served by LookupEvents.

Every successful write route of the control API (``/_emulator/groups/...``, prefix and port range
lists, interfaces, EIPs, instances) records the ActionTrail event of the real API call it stands
for: ``PUT groups/{region}/{sg}`` of a new group is ``CreateSecurityGroup``, ``POST
.../permissions`` is ``AuthorizeSecurityGroup`` (or ``...Egress``), ``PUT
interfaces/{region}/{eni}/groups/{sg}`` is ``JoinSecurityGroup``, and so on
(:func:`describe_change`). The caller is the identity the route's query names: ``?user=alice&
source_ip=203.0.113.9&user_agent=...&identity_type=ram-user&access_key_id=LTAI...``; absent ones
take :class:`Identity`'s test defaults.

``LookupEvents`` (2020-07-06) answers as the real one does, as far as its reference and the SDK
say: StartTime/EndTime (``YYYY-MM-DDThh:mm:ssZ``, inclusive, default the last 7 days),
``LookupAttribute`` (one or two exact, case-sensitive conditions, both must hold; the same key
twice keeps the second; past two only the first two count), MaxResults 1-50, NextToken, Direction
(BACKWARD, newest first, is the default). An event becomes visible ``Faults.actiontrail_delay_seconds``
after its time (the cloud's is about 10 minutes; the emulator's default is 0 so tests need not
wait), and an account past ``Faults.actiontrail_qps`` calls in the last second is answered
``Throttling.User`` (the cloud's limit is 2 per second per account).

The real endpoint is regional (``actiontrail.{region}.aliyuncs.com``) and answers for its own
region; the emulator serves every product on one address, so it cannot tell which region a call
meant and answers with the account's events of every region: clients filter by ``acsRegion``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sgwatch import timestamps
from sgwatch.emulator.estate import Estate

ACTIONS = ("LookupEvents",)
API_VERSION = "2020-07-06"
RAM_PREFIX = "actiontrail"
MAX_RESULTS = 50
DEFAULT_MAX_RESULTS = 20  # the reference gives no default; the emulator's choice
DEFAULT_WINDOW = timedelta(days=7)
RETENTION = timedelta(days=90)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class TrailError(Exception):
    """A LookupEvents request the real API would refuse; the server answers it as an API error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a change: the control route's query names it, or these test defaults."""

    user: str = "sgwatch-test"
    type: str = "ram-user"
    source_ip: str = "198.51.100.7"  # TEST-NET-2
    user_agent: str = "sgwatch-emulator-control"
    access_key_id: str = "LTAI5tEmulatorTestKey0001"

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Identity:
        default = cls()
        return cls(
            user=query.get("user") or default.user,
            type=query.get("identity_type") or default.type,
            source_ip=query.get("source_ip") or default.source_ip,
            user_agent=query.get("user_agent") or default.user_agent,
            access_key_id=query.get("access_key_id") or default.access_key_id,
        )


@dataclass(frozen=True, slots=True)
class Change:
    """The API call a control route stands for, worked out before the route changes anything."""

    event_name: str
    region: str
    parameters: dict[str, str]
    response: dict[str, Any]
    resources: dict[str, list[str]]  # ACS resource type -> ids (referencedResources)
    service: str = "Ecs"


_PRODUCTS = {"Ecs": ("ecs", "2014-05-26"), "Vpc": ("vpc", "2016-04-28")}
_RESOURCE_TYPES = {
    "sg-": "ACS::ECS::SecurityGroup",
    "eni-": "ACS::ECS::NetworkInterface",
    "i-": "ACS::ECS::Instance",
    "pl-": "ACS::ECS::PrefixList",
    "prl-": "ACS::ECS::PortRangeList",
    "eip-": "ACS::VPC::EIP",
}
# A rule's fields as DescribeSecurityGroupAttribute shows them that Authorize* takes by the same name.
_RULE_FIELDS = (
    "IpProtocol",
    "PortRange",
    "SourcePortRange",
    "SourceCidrIp",
    "DestCidrIp",
    "Ipv6SourceCidrIp",
    "Ipv6DestCidrIp",
    "SourceGroupId",
    "DestGroupId",
    "SourceGroupOwnerAccount",
    "DestGroupOwnerAccount",
    "SourcePrefixListId",
    "DestPrefixListId",
    "PortRangeListId",
    "Policy",
    "Priority",
    "NicType",
    "Description",
)


def _resources(*ids: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rid in ids:
        kind = next((t for p, t in _RESOURCE_TYPES.items() if rid.startswith(p)), None)
        if rid and kind is not None and rid not in out.setdefault(kind, []):
            out[kind].append(rid)
    return {k: v for k, v in out.items() if v}


def _numbered(name: str, values: Iterable[str]) -> dict[str, str]:
    return {f"{name}.{n}": v for n, v in enumerate(values, 1)}


def _group_ids(entry: Mapping[str, Any]) -> list[str]:
    holder = entry.get("SecurityGroupIds")
    ids = holder.get("SecurityGroupId") if isinstance(holder, Mapping) else holder
    return [str(g) for g in ids] if isinstance(ids, list) else []


def describe_change(estate: Estate, account: str, method: str, parts: list[str], body: Any) -> Change | None:
    """The ActionTrail event a control route would record, from the estate before the route runs.

    None for routes that change nothing the cloud would audit (reads, stats, faults) or that the
    route itself will refuse (the record is only kept when the route answers 200).
    """
    if method not in ("PUT", "POST", "DELETE") or len(parts) < 3:
        return None
    kind, region_id, item = parts[0], parts[1], parts[2]
    rest = parts[3:]
    fields = body if isinstance(body, Mapping) else {}
    base = {"RegionId": region_id}
    with estate.lock:
        if kind == "groups":
            return _group_change(estate, account, method, region_id, item, rest, fields, base)
        if kind == "prefix-lists" and not rest:
            old = estate.prefix_list(account, region_id, item)
            return _list_change(
                method, region_id, item, base, "PrefixList", "Cidr", old.entries if old else None, fields
            )
        if kind == "port-range-lists" and not rest:
            old_ranges = estate.port_range_list(account, region_id, item)
            entries = old_ranges.entries if old_ranges else None
            return _list_change(method, region_id, item, base, "PortRangeList", "PortRange", entries, fields)
        if kind in ("interfaces", "instances"):
            region = estate.region(account, region_id)
            members = region.members if region else None
            store = (members.enis if kind == "interfaces" else members.instances) if members else {}
            return _member_change(kind, method, region_id, item, rest, fields, base, store.get(item))
    return None


def _group_change(
    estate: Estate,
    account: str,
    method: str,
    region_id: str,
    gid: str,
    rest: list[str],
    fields: Mapping[str, Any],
    base: dict[str, str],
) -> Change | None:
    group = estate.group(account, region_id, gid)
    refs = _resources(gid)
    if not rest and method == "PUT":
        named = {k: str(fields[k]) for k in ("SecurityGroupName", "Description") if fields.get(k)}
        if group is None:
            extra = {k: str(fields[k]) for k in ("VpcId", "SecurityGroupType") if fields.get(k)}
            return Change("CreateSecurityGroup", region_id, {**base, **extra, **named}, {"SecurityGroupId": gid}, refs)
        return Change("ModifySecurityGroupAttribute", region_id, {**base, "SecurityGroupId": gid, **named}, {}, refs)
    if group is None:
        return None
    if not rest and method == "DELETE":
        return Change("DeleteSecurityGroup", region_id, {**base, "SecurityGroupId": gid}, {}, refs)
    if rest == ["permissions"] and method == "POST":
        egress = fields.get("Direction") == "egress"
        rule = {k: str(fields[k]) for k in _RULE_FIELDS if fields.get(k) not in (None, "")}
        name = "AuthorizeSecurityGroupEgress" if egress else "AuthorizeSecurityGroup"
        linked = [v for k, v in rule.items() if k.endswith(("GroupId", "PrefixListId", "PortRangeListId"))]
        return Change(name, region_id, {**base, "SecurityGroupId": gid, **rule}, {}, _resources(gid, *linked))
    if len(rest) == 2 and rest[0] == "permissions" and method == "DELETE":
        removed = next((p for p in group.permissions if p.get("SecurityGroupRuleId") == rest[1]), None)
        if removed is None:
            return None
        name = "RevokeSecurityGroupEgress" if removed.get("Direction") == "egress" else "RevokeSecurityGroup"
        params = {**base, "SecurityGroupId": gid, "SecurityGroupRuleId.1": rest[1]}
        return Change(name, region_id, params, {}, refs)
    return None


def _list_change(
    method: str,
    region_id: str,
    list_id: str,
    base: dict[str, str],
    noun: str,
    key: str,
    old: list[dict[str, Any]] | None,
    fields: Mapping[str, Any],
) -> Change | None:
    refs = _resources(list_id)
    id_field = f"{noun}Id"
    if method == "DELETE":
        return None if old is None else Change(f"Delete{noun}", region_id, {**base, id_field: list_id}, {}, refs)
    if method != "PUT":
        return None
    raw = fields.get("Entries")
    items = raw.get("Entry") if isinstance(raw, Mapping) else raw
    new = [str(e.get(key) or "") for e in items if isinstance(e, Mapping)] if isinstance(items, list) else []
    name_field = f"{noun}Name"
    named = {name_field: str(fields[name_field])} if fields.get(name_field) else {}
    if old is None:
        params = {**base, **named, **_numbered("Entry", new)}
        params = {k if not k.startswith("Entry.") else f"{k}.{key}": v for k, v in params.items()}
        return Change(f"Create{noun}", region_id, params, {id_field: list_id}, refs)
    before = [str(e.get(key) or "") for e in old]
    added = [v for v in new if v not in before]
    removed = [v for v in before if v not in new]
    params = {**base, id_field: list_id, **named}
    params.update({f"AddEntry.{n}.{key}": v for n, v in enumerate(added, 1)})
    params.update({f"RemoveEntry.{n}.{key}": v for n, v in enumerate(removed, 1)})
    return Change(f"Modify{noun}", region_id, params, {}, refs)


def _member_change(
    kind: str,
    method: str,
    region_id: str,
    item: str,
    rest: list[str],
    fields: Mapping[str, Any],
    base: dict[str, str],
    existing: Mapping[str, Any] | None,
) -> Change | None:
    eni = kind == "interfaces"
    id_field = "NetworkInterfaceId" if eni else "InstanceId"
    if not rest and method == "PUT":
        groups = _group_ids(fields)
        if existing is None:
            name = "CreateNetworkInterface" if eni else "RunInstances"
            params = {**base, **_numbered("SecurityGroupIds", groups)}
            response: dict[str, Any] = {id_field: item} if eni else {"InstanceIdSets": {"InstanceIdSet": [item]}}
            return Change(name, region_id, params, response, _resources(item, *groups))
        if groups == _group_ids(existing):
            return None  # nothing an audited call would change
        # ModifyNetworkInterfaceAttribute takes SecurityGroupId.N, ModifyInstanceAttribute SecurityGroupIds.N
        name = "ModifyNetworkInterfaceAttribute" if eni else "ModifyInstanceAttribute"
        listed = _numbered("SecurityGroupId" if eni else "SecurityGroupIds", groups)
        return Change(name, region_id, {**base, id_field: item, **listed}, {}, _resources(item, *groups))
    if existing is None:
        return None
    if not rest and method == "DELETE":
        name = "DeleteNetworkInterface" if eni else "DeleteInstance"
        return Change(name, region_id, {**base, id_field: item}, {}, _resources(item))
    if eni and len(rest) == 2 and rest[0] == "groups" and method in ("PUT", "DELETE"):
        name = "JoinSecurityGroup" if method == "PUT" else "LeaveSecurityGroup"
        params = {**base, "SecurityGroupId": rest[1], "NetworkInterfaceId": item}
        return Change(name, region_id, params, {}, _resources(rest[1], item))
    if eni and rest == ["eip"] and method in ("PUT", "DELETE"):
        public = existing.get("AssociatedPublicIp")
        held = str(public.get("AllocationId") or "") if isinstance(public, Mapping) else ""
        allocation = str(fields.get("AllocationId") or "") if method == "PUT" else held
        params = {**base, "InstanceId": item, "InstanceType": "NetworkInterface"}
        if allocation:
            params["AllocationId"] = allocation
        if method == "PUT" and fields.get("PrivateIpAddress"):
            params["PrivateIpAddress"] = str(fields["PrivateIpAddress"])
        name = "AssociateEipAddress" if method == "PUT" else "UnassociateEipAddress"
        return Change(name, region_id, params, {}, _resources(item, allocation), service="Vpc")
    return None


def _uid(account: str) -> str:
    """An account's UID: its name when that is one, else a stable 16-digit number.

    The same rule as the emulator's STS (GetCallerIdentity, on the organisation branch): once both
    are merged this should call ``sgwatch.emulator.sts.uid_of``, so a record's accountId is the UID
    that STS names for the account.
    """
    if account.isdigit() and 5 <= len(account) <= 20:
        return account
    return str(int(hashlib.sha256(account.encode()).hexdigest(), 16))[:16]


class ActionTrail:
    """The emulator's trail: every recorded event, and LookupEvents over them."""

    def __init__(self, seed: int = 0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.seed = seed
        self.clock = clock  # the emulator's wall clock: events' times and what is visible
        self.uids: dict[str, str] = {}  # account name -> UID; unnamed ones get a stable derived UID
        self._lock = threading.Lock()
        self._records: list[tuple[str, dict[str, Any]]] = []  # (account, record), in time order
        self._calls: dict[str, deque[float]] = {}
        self._seq = 0

    def uid(self, account: str) -> str:
        return self.uids.get(account) or _uid(account)

    # -- recording --------------------------------------------------------------------------------
    def record(self, account: str, change: Change, identity: Identity) -> dict[str, Any]:
        """Record ``change`` as ``identity`` made it now; returns the record."""
        uid = self.uid(account)
        with self._lock:
            self._seq += 1
            seq = self._seq
        event_id = str(uuid.UUID(bytes=hashlib.md5(f"trail:{self.seed}:{seq}".encode()).digest())).upper()
        request_id = str(uuid.UUID(bytes=hashlib.md5(f"trail-request:{self.seed}:{seq}".encode()).digest())).upper()
        host, api_version = _PRODUCTS[change.service]
        principal = str(int(hashlib.sha256(f"{uid}:{identity.user}".encode()).hexdigest(), 16) % 10**17)
        user_identity: dict[str, Any] = {
            "type": identity.type,
            "principalId": principal,
            "accountId": uid,
            "accessKeyId": identity.access_key_id,
            "userName": identity.user if identity.type != "root-account" else "root",
        }
        first_type, first_ids = next(iter(change.resources.items()), ("", [""]))
        record: dict[str, Any] = {
            "eventVersion": "1",
            "eventId": event_id,
            "eventName": change.event_name,
            "eventType": "ApiCall",
            "eventCategory": "Management",
            "eventRW": "Write",
            "eventSource": f"{host}.{change.region}.aliyuncs.com",
            "serviceName": change.service,
            "apiVersion": api_version,
            "acsRegion": change.region,
            "eventTime": self.clock().astimezone(UTC).strftime(_TIME_FORMAT),
            "requestId": request_id,
            "sourceIpAddress": identity.source_ip,
            "userAgent": identity.user_agent,
            "userIdentity": user_identity,
            "recipientAccountId": uid,
            "requestParameters": {**change.parameters, "RequestId": request_id},
            "responseElements": {**change.response, "RequestId": request_id},
            "referencedResources": {k: list(v) for k, v in change.resources.items()},
            "resourceType": first_type,
            "resourceName": first_ids[0],
            "errorCode": "",
            "errorMessage": "",
        }
        with self._lock:
            self._records.append((account, record))
        return record

    def add_record(self, account: str, record: dict[str, Any]) -> None:
        """Keep ``record`` as it is, however it is shaped: tests of how a client takes hostile records."""
        with self._lock:
            self._records.append((account, record))

    def records(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every recorded event (visible or not yet), oldest first."""
        with self._lock:
            return [dict(r) for a, r in self._records if account is None or a == account]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    # -- LookupEvents ---------------------------------------------------------------------------
    def throttle(self, account: str, qps: float) -> bool:
        """Whether this call is one too many in the account's last second (and, if not, count it)."""
        if qps <= 0:
            return False
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(account, deque())
            while calls and calls[0] <= now - 1.0:
                calls.popleft()
            if len(calls) >= qps:
                return True
            calls.append(now)
            return False

    def lookup(self, account: str, params: Mapping[str, str], delay_seconds: float) -> dict[str, Any]:
        now = self.clock().astimezone(UTC)
        end = _time_param(params, "EndTime", now)
        start = _time_param(params, "StartTime", end - DEFAULT_WINDOW)
        if start > end:
            raise TrailError(400, "InvalidParameter.TimeRange", "The StartTime must not be later than the EndTime.")
        raw_max = params.get("MaxResults", "")
        try:
            size = int(raw_max) if raw_max else DEFAULT_MAX_RESULTS
        except ValueError:
            raise TrailError(400, "InvalidParameter.MaxResults", "The MaxResults is not an integer.") from None
        if not 1 <= size <= MAX_RESULTS:
            raise TrailError(400, "InvalidParameter.MaxResults", f"The MaxResults must be in [1, {MAX_RESULTS}].")
        direction = params.get("Direction") or "BACKWARD"
        if direction not in ("FORWARD", "BACKWARD"):
            raise TrailError(400, "InvalidParameter.Direction", "The Direction must be FORWARD or BACKWARD.")
        conditions = _conditions(params)
        visible_until = min(end, now - timedelta(seconds=max(0.0, delay_seconds)))
        oldest = now - RETENTION
        with self._lock:
            found = [
                r
                for a, r in self._records
                if a == account
                and max(start, oldest) <= _when(r) <= visible_until
                and all(_matches(r, k, v) for k, v in conditions.items())
            ]
        found.sort(key=lambda r: (_when(r), str(r.get("eventId"))), reverse=direction == "BACKWARD")
        # The token names the last event handed out, so events that become visible meanwhile
        # neither shift a page nor repeat one; it is bound to the query it continues.
        query_hash = _query_hash(params)
        offset = 0
        if params.get("NextToken"):
            after = _decode_token(params["NextToken"], query_hash)
            keys = [(timestamps.iso(_when(r)), str(r.get("eventId"))) for r in found]
            offset = next((n + 1 for n, k in enumerate(keys) if k == after), None) or _past(keys, after, direction)
        page = found[offset : offset + size]
        more = offset + size < len(found)
        body: dict[str, Any] = {
            "StartTime": start.strftime(_TIME_FORMAT),
            "EndTime": end.strftime(_TIME_FORMAT),
            "Events": [dict(r) for r in page],
        }
        if more and page:
            body["NextToken"] = _encode_token(query_hash, timestamps.iso(_when(page[-1])), str(page[-1].get("eventId")))
        return body


def _past(keys: list[tuple[str, str]], after: tuple[str, str], direction: str) -> int:
    # the event the token names is gone (past retention): continue at the first one beyond it
    if direction == "BACKWARD":
        return next((n for n, k in enumerate(keys) if k < after), len(keys))
    return next((n for n, k in enumerate(keys) if k > after), len(keys))


def _when(record: Mapping[str, Any]) -> datetime:
    try:
        return timestamps.parse_iso(str(record.get("eventTime")))
    except ValueError:  # a hostile record a test added: served as if just made
        return datetime.max.replace(tzinfo=UTC) - timedelta(days=1)  # never visible


def _time_param(params: Mapping[str, str], name: str, default: datetime) -> datetime:
    raw = params.get(name, "")
    if not raw:
        return default
    try:
        return datetime.strptime(raw, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise TrailError(
            400, f"InvalidParameter.{name}", f"The {name} must be in the format YYYY-MM-DDThh:mm:ssZ."
        ) from None


_KEYS = ("ServiceName", "EventName", "User", "EventId", "ResourceType", "ResourceName", "EventRW", "EventAccessKeyId")


def _conditions(params: Mapping[str, str]) -> dict[str, str]:
    numbers = sorted(
        {int(k.split(".")[1]) for k in params if k.startswith("LookupAttribute.") and k.split(".")[1].isdigit()}
    )
    out: dict[str, str] = {}
    for n in numbers[:2]:  # past two conditions, only the first two count
        key, value = params.get(f"LookupAttribute.{n}.Key", ""), params.get(f"LookupAttribute.{n}.Value", "")
        if key not in _KEYS:
            raise TrailError(400, "InvalidParameter.LookupAttribute", f"The LookupAttribute key {key!r} is not valid.")
        out[key] = value  # the same key twice: the second wins
    return out


def _matches(record: Mapping[str, Any], key: str, value: str) -> bool:
    identity = record.get("userIdentity") or {}
    if key == "ServiceName":
        return bool(record.get("serviceName") == value)
    if key == "EventName":
        return bool(record.get("eventName") == value)
    if key == "User":
        return bool(identity.get("userName") == value)
    if key == "EventId":
        return bool(record.get("eventId") == value)
    if key == "EventRW":
        return bool(record.get("eventRW") == value)
    if key == "EventAccessKeyId":
        return bool(identity.get("accessKeyId") == value)
    resources: Mapping[str, list[str]] = record.get("referencedResources") or {}
    if key == "ResourceType":
        return value in resources
    return any(value in ids for ids in resources.values())  # ResourceName


def _query_hash(params: Mapping[str, str]) -> str:
    kept = sorted((k, v) for k, v in params.items() if k not in ("NextToken", "MaxResults"))
    return hashlib.sha256(repr(kept).encode()).hexdigest()[:16]


def _encode_token(query_hash: str, when: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{query_hash}|{when}|{event_id}".encode()).decode().rstrip("=")


def _decode_token(token: str, query_hash: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        bound, when, event_id = raw.split("|")
    except ValueError:
        raise TrailError(400, "InvalidParameter.NextToken", "The NextToken is not valid.") from None
    if bound != query_hash:
        raise TrailError(400, "InvalidParameter.NextToken", "The NextToken belongs to a query with other parameters.")
    return when, event_id
