"""What one ActionTrail record says: which call, on what, by whom, from where, and when.

The parsers (EventBridge CloudEvents, LookupEvents pages) build these; the targeted re-read and
the attribution of findings read them. Every text here came from someone else's request: it is
kept as data, and escaped by whatever renders it (``sgwatch.render.inert``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# Who made a call is the finding's value too, so the core owns it; named here as well, for the
# code that reads change events.
from sgwatch.core.changed_by import ChangedBy, Principal

__all__ = ["EVENT_TOUCHES", "ChangeEvent", "ChangedBy", "Principal", "Targets", "Touches"]

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
