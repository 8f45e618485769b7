"""One ActionTrail record (a dict from EventBridge's ``data`` or a LookupEvents page) to a ChangeEvent.

A record is someone else's text. :func:`parse_record` either returns a :class:`ChangeEvent`, says
why the record is none of sgwatch's business (:class:`Ignored`: a read call, another service, a
failed call, which changed nothing), or raises :class:`RecordError` with one line saying what is
wrong with it. Resource ids and regions pass the one identifier rule (``sources.identifiers``)
because the re-read turns them into API calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sgwatch import logs, timestamps
from sgwatch.events.model import EVENT_TOUCHES, ChangeEvent, Principal, Targets
from sgwatch.sources import identifiers

# Bounds on what a record may carry into sgwatch: a real call names a handful of resources and a
# few dozen parameters; a record past these is not one.
MAX_TARGETS = 50
MAX_PARAMETERS = 200
MAX_TEXT = 512

# Where each kind of resource id appears in requestParameters (or responseElements, for the
# resource a Create call made): plain (``SecurityGroupId``), numbered (``SecurityGroupIds.1``) or a list.
_ID_FIELDS: tuple[tuple[str, identifiers.Kind], ...] = (
    ("SecurityGroupId", "security group"),
    ("SecurityGroupIds", "security group"),
    ("NetworkInterfaceId", "network interface"),
    ("NetworkInterfaceIds", "network interface"),
    ("PrefixListId", "prefix list"),
    ("SourcePrefixListId", "prefix list"),
    ("DestPrefixListId", "prefix list"),
    ("PortRangeListId", "port range list"),
)


class RecordError(ValueError):
    """A record that is not an ActionTrail record of the shape sgwatch reads; one line."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed record that changes nothing sgwatch watches."""

    event_id: str
    reason: str


def _text(record: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise RecordError(f"the record has no {key}")
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{key} is {identifiers.shown(value)}, not a string")
    if len(value) > MAX_TEXT:
        raise RecordError(f"{key} is longer than {MAX_TEXT} characters")
    return value


def flatten(parameters: object) -> dict[str, str]:
    """requestParameters as ``{name: text}``: lists become ``Name.1``, ``Name.2``; nested maps ``Name.Key``."""
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise RecordError(f"requestParameters is {identifiers.shown(parameters)}, not an object")
    out: dict[str, str] = {}

    def walk(prefix: str, value: object, depth: int) -> None:
        if len(out) >= MAX_PARAMETERS:
            raise RecordError(f"requestParameters has more than {MAX_PARAMETERS} values")
        if isinstance(value, Mapping) and depth < 3:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, depth + 1)
        elif isinstance(value, list) and depth < 3:
            for i, v in enumerate(value, 1):
                walk(f"{prefix}.{i}", v, depth + 1)
        elif isinstance(value, str | int | float | bool):
            text = str(value)
            out[prefix] = text if len(text) <= MAX_TEXT else text[:MAX_TEXT]
        # null and anything nested deeper say nothing the re-read or the matching uses

    walk("", parameters, 0)
    return out


def _ids(params: Mapping[str, str], field: str) -> Iterator[str]:
    for name, value in params.items():
        if name == field or (name.startswith(field + ".") and name[len(field) + 1 :].isdigit()):
            yield value


def _targets(event_name: str, params: Mapping[str, str]) -> Targets:
    found: dict[identifiers.Kind, list[str]] = {}
    for field, kind in _ID_FIELDS:
        for value in _ids(params, field):
            if (bad := identifiers.problem(kind, value)) is not None:
                raise RecordError(f"{field}: {bad}")
            found.setdefault(kind, []).append(value)
    # InstanceId names an ECS instance, except in EIP calls, where InstanceType says what it is
    for value in _ids(params, "InstanceId"):
        what: identifiers.Kind = "instance"
        if event_name in ("AssociateEipAddress", "UnassociateEipAddress"):
            instance_type = params.get("InstanceType", "EcsInstance")
            if instance_type == "NetworkInterface":
                what = "network interface"
            elif instance_type != "EcsInstance":
                continue  # a NAT gateway's or an SLB's address exposes no ECS interface
        if (bad := identifiers.problem(what, value)) is not None:
            raise RecordError(f"InstanceId: {bad}")
        found.setdefault(what, []).append(value)
    if sum(len(v) for v in found.values()) > MAX_TARGETS:
        raise RecordError(f"the record names more than {MAX_TARGETS} resources")

    def of(kind: identifiers.Kind) -> tuple[str, ...]:
        return tuple(dict.fromkeys(found.get(kind, ())))

    return Targets(
        security_group_ids=of("security group"),
        network_interface_ids=of("network interface"),
        instance_ids=of("instance"),
        prefix_list_ids=of("prefix list"),
        port_range_list_ids=of("port range list"),
    )


def _principal(identity: object) -> Principal:
    if identity is None:
        identity = {}
    if not isinstance(identity, Mapping):
        raise RecordError(f"userIdentity is {identifiers.shown(identity)}, not an object")
    key = _text(identity, "accessKeyId")
    return Principal(
        type=_text(identity, "type"),
        name=_text(identity, "userName") or _text(identity, "principalId"),
        account_id=_text(identity, "accountId"),
        access_key_id=logs.mask_access_key_id(key) if key else "",
    )


def parse_record(record: object, *, account_uid: str = "") -> ChangeEvent | Ignored:
    """``record`` as a ChangeEvent, or why it is ignored; :class:`RecordError` if it is malformed.

    ``account_uid``: the account the delivery names (a CloudEvent's ``aliyunaccountid``), which
    wins over the record's own ``recipientAccountId`` and ``userIdentity.accountId``.
    """
    if not isinstance(record, Mapping):
        raise RecordError(f"an ActionTrail record is an object, not {identifiers.shown(record)}")
    event_id = _text(record, "eventId", required=True)
    event_name = _text(record, "eventName", required=True)
    if _text(record, "eventRW") == "Read":
        return Ignored(event_id, "a read call changes nothing")
    if event_name not in EVENT_TOUCHES:
        return Ignored(event_id, f"{identifiers.shown(event_name)} is not a call sgwatch watches")
    if _text(record, "errorCode"):
        return Ignored(event_id, "a failed call changed nothing")
    try:
        event_time = timestamps.parse_iso(_text(record, "eventTime", required=True))
    except ValueError:
        raise RecordError(f"eventTime {identifiers.shown(record.get('eventTime'))} is not an ISO 8601 time") from None
    region = _text(record, "acsRegion", required=True)
    if (bad := identifiers.problem("region", region)) is not None:
        raise RecordError(f"acsRegion: {bad}")
    principal = _principal(record.get("userIdentity"))
    request = flatten(record.get("requestParameters"))
    response = record.get("responseElements")
    created = flatten(response) if isinstance(response, Mapping) else {}
    targets = _targets(event_name, {**created, **request})
    if not targets:
        return Ignored(event_id, f"{event_name} names no resource sgwatch reads")
    uid = account_uid or _text(record, "recipientAccountId") or principal.account_id
    return ChangeEvent(
        event_id=event_id,
        event_name=event_name,
        event_time=event_time,
        account_uid=uid,
        region=region,
        principal=principal,
        source_ip=_text(record, "sourceIpAddress"),
        user_agent=_text(record, "userAgent"),
        targets=targets,
        request=request,
    )
