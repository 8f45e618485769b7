"""Which change event made each drift finding: ``changed_by``, or None, never a guess.

Pure: findings and events in, attributions out. An event is a candidate for a finding when it
is in the finding's account and region, names its group (or, for a list change, its list; for
an exposed interface, the interface or its instance), could have made exactly that change (an
Authorize of the very rule a ``rule_added`` finding holds, read through the same normaliser as
DescribeSecurityGroupAttribute, ``sources.ecs_rules.rule_from_api``; a Revoke of it; a
ModifySecurityGroupRule of its rule id; ...), and happened before the scan that found the
change (within ``WINDOW``, ActionTrail's retention, and ``CLOCK_SKEW``).

The rule, per part of a finding (a rule, a group, a moved list, a changed attribute):

- events that would *undo* the change (a Revoke of an added rule, an Authorize of a removed one)
  reset the count: only candidates after the last of them can be the cause;
- every candidate left must come from one principal (type, name, account): two people who could
  both have made the change is an ambiguity, and an ambiguity is None;
- that principal's latest candidate is the attribution; a finding whose parts name different
  principals, or one part none, is None.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple, Protocol

from sgwatch import timestamps
from sgwatch.core.changed_by import ChangedBy, Principal
from sgwatch.core.diff import ListRef
from sgwatch.core.findings import Finding, Report
from sgwatch.core.model import Direction, PeerKind, Rule, RuleKey
from sgwatch.core.normalize import NormalizeError
from sgwatch.core.reach import ExposedInterface
from sgwatch.events.model import ChangeEvent
from sgwatch.sources.ecs_rules import rule_from_api

WINDOW = timedelta(days=90)  # ActionTrail keeps events this long: nothing older can be looked up
# Our clock and ActionTrail's may disagree a little: an event stamped just after the scan that
# found its change is still that change.
CLOCK_SKEW = timedelta(minutes=1)

AccountEvent = tuple[str, ChangeEvent]  # (the configured account's name, an event of it)
ResourceKey = tuple[str, str, str]  # (account, region, resource id: a group, list, interface or instance)
# Events of these resources within [since, until]: the state's ``State.change_events``.
EventQuery = Callable[[Collection[ResourceKey], datetime, datetime], list[AccountEvent]]

Effect = Literal["makes", "undoes"]

# -- what a call's requestParameters say about rules ------------------------------------------

_RULE_CALLS: Mapping[str, tuple[Direction, str]] = {
    "AuthorizeSecurityGroup": ("ingress", "authorize"),
    "AuthorizeSecurityGroupEgress": ("egress", "authorize"),
    "RevokeSecurityGroup": ("ingress", "revoke"),
    "RevokeSecurityGroupEgress": ("egress", "revoke"),
    "ModifySecurityGroupRule": ("ingress", "modify"),
    "ModifySecurityGroupEgressRule": ("egress", "modify"),
}
# The rule content fields of AuthorizeSecurityGroup[Egress], RevokeSecurityGroup[Egress] and
# ModifySecurityGroup[Egress]Rule: at the top level (the older form, and Modify's only form) and
# as ``Permissions.N.<field>`` (the SDK's AuthorizeSecurityGroupRequestPermissions,
# RevokeSecurityGroupRequestPermissions).
_CONTENT = frozenset(
    {
        "IpProtocol",
        "PortRange",
        "SourcePortRange",
        "Policy",
        "Priority",
        "NicType",
        "PortRangeListId",
        "SourceCidrIp",
        "Ipv6SourceCidrIp",
        "SourceGroupId",
        "SourceGroupOwnerAccount",
        "SourceGroupOwnerId",
        "SourcePrefixListId",
        "DestCidrIp",
        "Ipv6DestCidrIp",
        "DestGroupId",
        "DestGroupOwnerAccount",
        "DestGroupOwnerId",
        "DestPrefixListId",
        "Description",
    }
)
_PERMISSION = re.compile(r"Permissions\.(\d+)\.(\w+)")
_RULE_ID = re.compile(r"SecurityGroupRuleId(?:\.\d+)?")
_PEER_SIDE = {"ingress": "Source", "egress": "Dest"}


class Requested(NamedTuple):
    """One rule a call names, normalised; ``nic_type_given`` False when the call left NicType to
    the API's default (internet for a classic group, intranet in a VPC): it then matches either."""

    rule: Rule
    nic_type_given: bool


def _requested_rule(fields: Mapping[str, str], direction: Direction, account_uid: str) -> Requested | None:
    raw: dict[str, Any] = {"Direction": direction, **fields}
    side = _PEER_SIDE[direction]
    # The API: "if both SourceGroupId and SourceCidrIp are specified, SourceCidrIp takes
    # precedence"; a DescribeSecurityGroupAttribute permission never holds both.
    if raw.get(f"{side}CidrIp") or raw.get(f"Ipv6{side}CidrIp"):
        raw.pop(f"{side}GroupId", None)
    if not raw.get(f"{side}GroupOwnerAccount") and raw.get(f"{side}GroupOwnerId"):
        raw[f"{side}GroupOwnerAccount"] = raw[f"{side}GroupOwnerId"]
    try:
        # The resource's own account: a group of that account referenced by its UID is its own.
        return Requested(rule_from_api(raw, account_uid), bool(fields.get("NicType")))
    except NormalizeError:
        return None  # a request sgwatch cannot read names no rule it could match


def requested_rules(event: ChangeEvent) -> list[Requested]:
    """The rules an Authorize, Revoke or Modify call names by content (none for other calls)."""
    call = _RULE_CALLS.get(event.event_name)
    if call is None:
        return []
    direction = call[0]
    top = {k: v for k, v in event.request.items() if k in _CONTENT}
    numbered: dict[int, dict[str, str]] = {}
    for name, value in event.request.items():
        if (m := _PERMISSION.fullmatch(name)) and m.group(2) in _CONTENT:
            numbered.setdefault(int(m.group(1)), {})[m.group(2)] = value
    sets = [top] if "IpProtocol" in top else []
    sets += [numbered[n] for n in sorted(numbered)]
    return [r for fields in sets if (r := _requested_rule(fields, direction, event.account_uid)) is not None]


def requested_rule_ids(event: ChangeEvent) -> frozenset[str]:
    """``SecurityGroupRuleId`` (Modify) or ``SecurityGroupRuleId.N`` (Revoke by id)."""
    if event.event_name not in _RULE_CALLS:
        return frozenset()
    return frozenset(v.strip() for k, v in event.request.items() if _RULE_ID.fullmatch(k) and v.strip())


def _same_rule(requested: Requested, key: RuleKey, account_uid: str) -> bool:
    peer = key.peer
    if peer.kind is PeerKind.GROUP and peer.owner and peer.owner == account_uid:
        # Read without the account's UID in the config, the account's own group keeps it as owner.
        key = key._replace(peer=peer._replace(owner=""))
    if requested.nic_type_given:
        return requested.rule.key == key
    return requested.rule.key._replace(nic_type=key.nic_type) == key


# -- the effect of one event on one part of a finding --------------------------------------------


def _rule_effect(event: ChangeEvent, rule: Rule, wanted: str) -> Effect | None:
    """Whether ``event`` makes (``wanted``: "present" or "absent") ``rule`` so, or undoes that."""
    call = _RULE_CALLS.get(event.event_name)
    if call is None or call[0] != rule.direction:
        return None
    kind = call[1]
    by_content = any(_same_rule(r, rule.key, event.account_uid) for r in requested_rules(event))
    by_id = bool(rule.rule_id) and rule.rule_id in requested_rule_ids(event)
    if kind == "authorize" and by_content:
        return "makes" if wanted == "present" else "undoes"
    if kind == "revoke" and (by_content or by_id):
        return "makes" if wanted == "absent" else "undoes"
    # A Modify of the rule's id turned some rule into this one (or this one into another);
    # without an id, the older form named the rule by its (new) content.
    if kind == "modify" and (by_id or (wanted == "present" and by_content and not requested_rule_ids(event))):
        return "makes"
    return None


def _description_effect(event: ChangeEvent, rule: Rule) -> Effect | None:
    """A description-only change: a Modify of the rule (by id, or by content with that description)."""
    call = _RULE_CALLS.get(event.event_name)
    if call is None or call[0] != rule.direction or call[1] != "modify":
        return None
    if rule.rule_id and rule.rule_id in requested_rule_ids(event):
        return "makes"
    if event.request.get("Description", "").strip() == rule.description and any(
        _same_rule(r, rule.key, event.account_uid) for r in requested_rules(event)
    ):
        return "makes"
    return None


def _group_effect(event: ChangeEvent, wanted: str) -> Effect | None:
    if event.event_name == "CreateSecurityGroup":
        return "makes" if wanted == "present" else "undoes"
    if event.event_name == "DeleteSecurityGroup":
        return "makes" if wanted == "absent" else "undoes"
    return None


def _list_effect(event: ChangeEvent, ref: ListRef) -> Effect | None:
    ids = event.targets.prefix_list_ids if ref.kind == "prefix list" else event.targets.port_range_list_ids
    name = "ModifyPrefixList" if ref.kind == "prefix list" else "ModifyPortRangeList"
    return "makes" if event.event_name == name and ref.id in ids else None


# Which call changes which group attribute a group_changed finding names; a name missing here
# (type, vpc_id) no API call changes, so no event explains it.
_ATTRIBUTE_CALLS: Mapping[str, str] = {"inner_access_policy": "ModifySecurityGroupPolicy"}


# A part: (the resources an event must name one of, how an event bears on the part).
Part = tuple[tuple[str, ...], Callable[[ChangeEvent], Effect | None]]


def _called(name: str) -> Callable[[ChangeEvent], Effect | None]:
    return lambda e: "makes" if e.event_name == name else None


def _list_part(ref: ListRef) -> Callable[[ChangeEvent], Effect | None]:
    return lambda e: _list_effect(e, ref)


def _same_id_modified(rule: Rule) -> Callable[[ChangeEvent], Effect | None]:
    # Same rule id, other content: a Modify of that id (diff_rules pairs them by id).
    def effect(e: ChangeEvent) -> Effect | None:
        call = _RULE_CALLS.get(e.event_name)
        if call is None or call[1] != "modify" or call[0] != rule.direction:
            return None
        return "makes" if rule.rule_id in requested_rule_ids(e) else None

    return effect


def _parts(f: Finding) -> list[Part]:
    sg = (f.security_group_id,)
    if f.kind == "rule_added" and f.live is not None:
        live = f.live
        return [(sg, lambda e: _rule_effect(e, live, "present"))]
    if f.kind == "rule_removed" and f.baseline is not None:
        base = f.baseline
        return [(sg, lambda e: _rule_effect(e, base, "absent"))]
    if f.kind == "rule_changed" and f.live is not None and f.baseline is not None:
        live = f.live
        if live.key == f.baseline.key:
            return [(sg, lambda e: _description_effect(e, live))]
        return [(sg, _same_id_modified(live))]
    if f.kind == "group_added":
        return [(sg, lambda e: _group_effect(e, "present"))]
    if f.kind == "group_removed":
        return [(sg, lambda e: _group_effect(e, "absent"))]
    if f.kind == "group_changed":
        parts: list[Part] = []
        for name in f.fields:
            call = _ATTRIBUTE_CALLS.get(name)
            if call is None:
                return []  # part of the change no call makes: nobody can be named for all of it
            parts.append((sg, _called(call)))
        parts += [((ref.id,), _list_part(ref)) for ref in f.lists]
        return parts
    return []


# -- the decision ---------------------------------------------------------------------------------


def _who(p: Principal) -> tuple[str, str, str]:
    return (p.type, p.name, p.account_id)


def _decide(
    effects: Sequence[tuple[ChangeEvent, Effect]],
) -> tuple[ChangeEvent | None, bool]:
    """(the one principal's latest candidate or None, whether any event bore on the part)."""
    ordered = sorted(effects, key=lambda pair: (pair[0].event_time, pair[0].event_id))
    last_undo = max((i for i, (_, effect) in enumerate(ordered) if effect == "undoes"), default=-1)
    candidates = [event for event, effect in ordered[last_undo + 1 :] if effect == "makes"]
    if len({_who(e.principal) for e in candidates}) != 1:
        return None, bool(ordered)
    return candidates[-1], True


Index = Mapping[ResourceKey, Sequence[ChangeEvent]]


def _index(events: Iterable[AccountEvent]) -> Index:
    """Events by each (account, region, resource) they name: a finding looks up only its own."""
    out: dict[ResourceKey, list[ChangeEvent]] = {}
    seen: set[tuple[str, str]] = set()
    for account, e in events:
        if (account, e.event_id) in seen:
            continue
        seen.add((account, e.event_id))
        for rid in dict.fromkeys(resources_of(e)):
            out.setdefault((account, e.region, rid), []).append(e)
    return out


def _match(
    account: str,
    region: str,
    parts: Sequence[Part],
    index: Index,
    found_at: datetime,
    window: timedelta,
) -> tuple[ChangedBy | None, bool]:
    since, until = found_at - window, found_at + CLOCK_SKEW
    chosen: list[ChangeEvent] = []
    touched = False
    for named, effect_of in parts:
        # The account's events in the region that name one of the part's resources, once each.
        near = {e.event_id: e for rid in named for e in index.get((account, region, rid), ())}
        effects: list[tuple[ChangeEvent, Effect]] = []
        for event in near.values():
            if since <= event.event_time <= until and (effect := effect_of(event)) is not None:
                effects.append((event, effect))
        cause, bore = _decide(effects)
        touched = touched or bore
        if cause is None:
            return None, touched
        chosen.append(cause)
    if not chosen or len({_who(e.principal) for e in chosen}) != 1:
        return None, touched
    return max(chosen, key=lambda e: (e.event_time, e.event_id)).changed_by(), touched


def query_of(events: Iterable[AccountEvent]) -> EventQuery:
    """An :data:`EventQuery` over events in hand (a LookupEvents result), as the state answers it."""
    pool = list(events)

    def query(keys: Collection[ResourceKey], since: datetime, until: datetime) -> list[AccountEvent]:
        wanted = set(keys)
        return [
            (account, e)
            for account, e in pool
            if since <= e.event_time <= until and any((account, e.region, rid) in wanted for rid in resources_of(e))
        ]

    return query


def resources_of(e: ChangeEvent) -> tuple[str, ...]:
    """Every resource id the event names (the keys the state indexes it by)."""
    t = e.targets
    return (
        *t.security_group_ids,
        *t.network_interface_ids,
        *t.instance_ids,
        *t.prefix_list_ids,
        *t.port_range_list_ids,
    )


# -- exposed interfaces: the membership and address calls ------------------------------------------


def _membership_effect(event: ChangeEvent, fact: ExposedInterface) -> Effect | None:
    groups = event.targets.security_group_ids
    name = event.event_name
    if name == "JoinSecurityGroup":
        return "makes" if set(groups) & set(fact.security_group_ids) else None
    if name in ("ModifyInstanceAttribute", "ModifyNetworkInterfaceAttribute"):
        # These calls also rename things: only one that sets the groups moves membership.
        return "makes" if set(groups) & set(fact.security_group_ids) else None
    if name == "LeaveSecurityGroup":
        # Leaving a group with a deny can open the set's other rules; leaving one of the set cannot.
        return "makes" if groups and not set(groups) & set(fact.security_group_ids) else None
    if name == "AssociateEipAddress":
        return "makes"
    if name == "UnassociateEipAddress":
        return "undoes"
    return None


def _fact_part(fact: ExposedInterface) -> Part:
    named = (fact.interface_id, fact.instance_id) if fact.instance_id else (fact.interface_id,)
    return named, lambda e: _membership_effect(e, fact)


def actiontrail_window(
    read_at: datetime, now: datetime, window: timedelta = WINDOW
) -> tuple[datetime, datetime] | None:
    """The LookupEvents span for the findings of a state read at ``read_at``: its events happened
    before it (within ``CLOCK_SKEW``), and ActionTrail serves only the last ``window`` before
    ``now``. None when nothing of it is left (a snapshot older than that)."""
    start = max(read_at, now) - window
    end = min(read_at + CLOCK_SKEW, now)
    return (start, end) if start < end else None


# -- the daemon's wiring: events from the state, attributions kept ---------------------------------


class Known(Protocol):
    """What the state remembers of an open finding or fact (``state.FindingLife``)."""

    @property
    def first_seen(self) -> datetime: ...
    @property
    def data(self) -> dict[str, Any]: ...


def _carried(changed_by: ChangedBy | None, touched: bool, known: Known | None) -> ChangedBy | None:
    # A finding no kept event bears on any more (they were pruned) keeps the attribution it had;
    # one whose events now say otherwise (an ambiguity) does not.
    if changed_by is None and not touched and known is not None:
        return ChangedBy.from_dict(known.data.get("changed_by"))
    return changed_by


def _span(at: datetime, known: Mapping[str, Known], window: timedelta) -> tuple[datetime, datetime]:
    times = [at, *(k.first_seen for k in known.values())]
    return min(times) - window, max(times) + CLOCK_SKEW


def attribute_report(
    report: Report,
    query: EventQuery,
    known: Mapping[str, Known] | None = None,
    *,
    at: datetime | None = None,
    window: timedelta = WINDOW,
) -> None:
    """Set ``changed_by`` on the report's findings from the events ``query`` returns.

    ``at``: when the scan read the cloud (default the report's time). ``known``: the findings
    already open, by id: the change happened before the scan that first found it.
    """
    if not report.findings:
        return
    at = at or report.generated_at
    known = known or {}
    keys = {(f.account, f.region, f.security_group_id) for f in report.findings}
    keys |= {(f.account, f.region, ref.id) for f in report.findings for ref in f.lists}
    index = _index(query(keys, *_span(at, known, window)))
    for f in report.findings:
        fid = f.id
        life = known.get(fid)
        found = life.first_seen if life is not None else at
        changed_by, touched = _match(f.account, f.region, _parts(f), index, found, window)
        f.changed_by = _carried(changed_by, touched, life)


def attribute_facts(
    facts: Sequence[ExposedInterface],
    query: EventQuery,
    at: datetime,
    known: Mapping[str, Known] | None = None,
    window: timedelta = WINDOW,
) -> list[ExposedInterface]:
    """:func:`attribute_report` for exposed interfaces: the facts with ``changed_by`` set."""
    if not facts:
        return []
    known = known or {}
    keys = {(x.account, x.region, rid) for x in facts for rid in _fact_part(x)[0]}
    index = _index(query(keys, *_span(at, known, window)))
    out = []
    for fact in facts:
        life = known.get(fact.id)
        found = life.first_seen if life is not None else at
        changed_by, touched = _match(fact.account, fact.region, [_fact_part(fact)], index, found, window)
        out.append(dataclasses.replace(fact, changed_by=_carried(changed_by, touched, life)))
    return out


# -- the JSON form back, and the short text every renderer and channel shows ----------------------


def who(changed_by: Mapping[str, Any] | ChangedBy) -> str:
    """``by alice from 203.0.113.7``: the short form for a table cell or a chat line.

    Plain, unescaped text: each renderer passes it through its own inert function. Takes the
    JSON form too (what alerts carry); an unreadable one reads as nobody ("").
    """
    cb = changed_by if isinstance(changed_by, ChangedBy) else ChangedBy.from_dict(changed_by)
    if cb is None:
        return ""
    where = f" from {cb.source_ip}" if cb.source_ip else ""
    return f"by {cb.principal.name or cb.principal.type or 'an unnamed principal'}{where}"


def detail(changed_by: Mapping[str, Any] | ChangedBy) -> str:
    """Who, from where, when, how: ``by alice (ram-user, account 1234) from 203.0.113.7 at
    2026-12-01T10:00:00Z: AuthorizeSecurityGroup, key LTAI****abcd, agent aliyun-cli/3 (event …)``.
    Plain, unescaped text, as :func:`who`."""
    cb = changed_by if isinstance(changed_by, ChangedBy) else ChangedBy.from_dict(changed_by)
    if cb is None:
        return ""
    p = cb.principal
    about = ", ".join(x for x in (p.type, f"account {p.account_id}" if p.account_id else "") if x)
    parts = [f"by {p.name or p.type or 'an unnamed principal'}"]
    if about and p.name:
        parts.append(f"({about})")
    if cb.source_ip:
        parts.append(f"from {cb.source_ip}")
    parts.append(f"at {timestamps.iso(cb.event_time, seconds=True)}: {cb.event_name}")
    text = " ".join(parts)
    if p.access_key_id:
        text += f", key {p.access_key_id}"
    if cb.user_agent:
        text += f", agent {cb.user_agent}"
    return f"{text} (event {cb.event_id})"
