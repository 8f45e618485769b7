"""What one ActionTrail record says: which call, on what, by whom, from where, and when.

The parsers (EventBridge CloudEvents, LookupEvents pages) build these; the targeted re-read and
the attribution of findings read them. Every text here came from someone else's request: it is
kept as data, and escaped by whatever renders it (``sgwatch.render.inert``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sgwatch import timestamps

# What a write call can change, by ActionTrail's eventName (the API's name): the targeted re-read
# reads what the kind names, the attribution matches findings of that kind.
Touches = Literal["group", "membership", "list", "address"]

EVENT_TOUCHES: Mapping[str, Touches] = {
    # the rules or attributes of the group(s) named by SecurityGroupId
    "CreateSecurityGroup": "group",
    "DeleteSecurityGroup": "group",
    "AuthorizeSecurityGroup": "group",
    "AuthorizeSecurityGroupEgress": "group",
    "RevokeSecurityGroup": "group",
    "RevokeSecurityGroupEgress": "group",
    "ModifySecurityGroupRule": "group",
    "ModifySecurityGroupEgressRule": "group",
    "ModifySecurityGroupPolicy": "group",
    "ModifySecurityGroupAttribute": "group",
    # which groups an interface or instance is in
    "JoinSecurityGroup": "membership",
    "LeaveSecurityGroup": "membership",
    "ModifyInstanceAttribute": "membership",
    "ModifyNetworkInterfaceAttribute": "membership",
    # the entries of a prefix list or port range list, read through every group naming it
    "CreatePrefixList": "list",
    "ModifyPrefixList": "list",
    "DeletePrefixList": "list",
    "CreatePortRangeList": "list",
    "ModifyPortRangeList": "list",
    "DeletePortRangeList": "list",
    # whether an interface or instance has a public address
    "AssociateEipAddress": "address",
    "UnassociateEipAddress": "address",
}


@dataclass(frozen=True, slots=True)
class Principal:
    """``userIdentity``: who made the call."""

    type: str  # root-account, ram-user, assumed-role, ...
    name: str  # the user name, or the role and session of an assumed role
    account_id: str  # the account of the identity (not always the resource's account)
    access_key_id: str  # already masked (``logs.mask_access_key_id``); "" when the record has none


@dataclass(frozen=True, slots=True)
class Targets:
    """The resources a call names; the re-read reads exactly these."""

    security_group_ids: tuple[str, ...] = ()
    network_interface_ids: tuple[str, ...] = ()
    instance_ids: tuple[str, ...] = ()
    prefix_list_ids: tuple[str, ...] = ()
    port_range_list_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any(
            (
                self.security_group_ids,
                self.network_interface_ids,
                self.instance_ids,
                self.prefix_list_ids,
                self.port_range_list_ids,
            )
        )


@dataclass(frozen=True, slots=True)
class ChangedBy:
    """A finding's attribution: the event whose change it is. Serialised as ``changed_by``."""

    principal: Principal
    source_ip: str
    user_agent: str
    event_time: datetime
    event_name: str
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "principal": {
                "type": self.principal.type,
                "name": self.principal.name,
                "account_id": self.principal.account_id,
                "access_key_id": self.principal.access_key_id,
            },
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "event_time": timestamps.iso(self.event_time),
            "event_name": self.event_name,
            "event_id": self.event_id,
        }


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One successful write call of :data:`EVENT_TOUCHES`, as ActionTrail recorded it."""

    event_id: str
    event_name: str
    event_time: datetime  # UTC, aware
    account_uid: str  # the account whose resources changed ("" when the record does not say)
    region: str  # acsRegion, checked by ``sources.identifiers``
    principal: Principal
    source_ip: str
    user_agent: str
    targets: Targets
    # requestParameters as strings (rule content: IpProtocol, PortRange, SourceCidrIp, Policy,
    # Priority, SecurityGroupRuleId.N, ...), for matching a finding's rule to the call
    request: Mapping[str, str] = field(default_factory=dict)

    @property
    def touches(self) -> Touches:
        return EVENT_TOUCHES[self.event_name]

    def changed_by(self) -> ChangedBy:
        return ChangedBy(
            principal=self.principal,
            source_ip=self.source_ip,
            user_agent=self.user_agent,
            event_time=self.event_time,
            event_name=self.event_name,
            event_id=self.event_id,
        )
