"""Who made a change: a finding's ``changed_by``, the value the engine's results carry.

Built from change events (``sgwatch.events``), which depend on this module, never the other way
round. Every text here is someone else's (a caller names itself and sends its own user agent):
kept as data, escaped by whatever renders it (``sgwatch.render.inert``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sgwatch import timestamps


@dataclass(frozen=True, slots=True)
class Principal:
    """``userIdentity``: who made the call."""

    type: str  # root-account, ram-user, assumed-role, ...
    name: str  # the user name, or the role and session of an assumed role
    account_id: str  # the account of the identity (not always the resource's account)
    access_key_id: str  # already masked (``logs.mask_access_key_id``); "" when the record has none


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

    @classmethod
    def from_dict(cls, data: object) -> ChangedBy | None:
        """The :meth:`to_dict` form back (a finding kept in the state, an alert's finding);
        None for anything that is not one."""
        if not isinstance(data, Mapping) or not isinstance(principal := data.get("principal"), Mapping):
            return None

        def text(m: Mapping[str, Any], key: str) -> str:
            value = m.get(key)
            return value if isinstance(value, str) else ""

        try:
            moment = timestamps.parse_iso(text(data, "event_time"))
        except ValueError:
            return None
        return cls(
            principal=Principal(
                type=text(principal, "type"),
                name=text(principal, "name"),
                account_id=text(principal, "account_id"),
                access_key_id=text(principal, "access_key_id"),
            ),
            source_ip=text(data, "source_ip"),
            user_agent=text(data, "user_agent"),
            event_time=moment,
            event_name=text(data, "event_name"),
            event_id=text(data, "event_id"),
        )
