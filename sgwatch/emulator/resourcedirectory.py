"""Resource Directory in the emulator: ``ListAccounts`` (PageNumber / PageSize), served to the SDK.

Only the management account may list the members, as in the cloud. Each member is an account of
the estate named by its AccountId, with its own groups; ``organization_estate`` builds one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sgwatch.emulator.estate import Estate
from sgwatch.emulator.sts import Role, Sts, uid_of
from sgwatch.sources.raw import DEFAULT_ACCOUNT

API_VERSION = "2020-03-31"
ACTIONS = ("ListAccounts",)
DIRECTORY_ID = "rd-3Gemu1"


class DirectoryError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


@dataclass
class DirectoryMember:
    uid: str  # the AccountId, and the estate account's name
    display_name: str = ""
    status: str = "CreateSuccess"
    type: str = "ResourceAccount"

    def entry(self) -> dict[str, Any]:
        return {
            "AccountId": self.uid,
            "DisplayName": self.display_name or f"member-{self.uid[-4:]}",
            "Status": self.status,
            "Type": self.type,
            "JoinMethod": "created",
            "FolderId": "fd-emu0001",
            "ResourceDirectoryId": DIRECTORY_ID,
            "ResourceDirectoryPath": f"{DIRECTORY_ID}/r-emu0/fd-emu0001/{self.uid}",
            "JoinTime": "2026-01-18T08:01:50.522Z",
            "ModifyTime": "2026-01-18T08:04:37.668Z",
        }


@dataclass
class ResourceDirectory:
    management: str = DEFAULT_ACCOUNT  # the estate account allowed to list the members
    members: list[DirectoryMember] = field(default_factory=list)
    page_cap: int = 100
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, member: DirectoryMember) -> None:
        with self._lock:
            self.members = [m for m in self.members if m.uid != member.uid] + [member]

    def remove(self, uid: str) -> None:
        with self._lock:
            self.members = [m for m in self.members if m.uid != uid]

    def member_accounts(self) -> set[str]:
        with self._lock:
            return {m.uid for m in self.members} - {self.management}

    def handle(self, caller_account: str, params: Mapping[str, str]) -> dict[str, Any]:
        if caller_account != self.management:
            raise DirectoryError(
                404,
                "EntityNotExists.ResourceDirectory",
                "The resource directory does not exist or you are not its owner.",
            )
        number = _int(params, "PageNumber", 1, 1, 10**9)
        size = min(_int(params, "PageSize", 10, 1, 100), self.page_cap)
        with self._lock:
            listed = sorted(self.members, key=lambda m: m.uid)
        page = listed[(number - 1) * size : number * size]
        return {
            "PageNumber": number,
            "PageSize": size,
            "TotalCount": len(listed),
            "Accounts": {"Account": [m.entry() for m in page]},
        }


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise DirectoryError(400, f"InvalidParameter.{name}", f"The parameter {name} is invalid.")
    return value


def organization_estate(
    accounts: int,
    groups_per_account: int,
    regions: int | list[str] = 2,
    *,
    seed: int = 0,
    first_uid: int = 1_000_000_000_000_000,
    members: bool = True,
) -> tuple[Estate, list[str]]:
    """An estate of ``accounts`` member accounts (named by AccountId), each with its own groups."""
    estate = Estate()
    uids = [str(first_uid + i) for i in range(accounts)]
    for i, uid in enumerate(uids):
        part = Estate.synthetic(groups_per_account, regions, seed=seed + i, account=uid, members=members)
        estate.accounts[uid] = part.accounts[uid]
    return estate, uids


def enrol(directory: ResourceDirectory, sts: Sts, uids: list[str], role_name: str) -> dict[str, str]:
    """Each account a member of the directory with the role sgwatch assumes; uid -> role ARN."""
    arns = {}
    for uid in uids:
        directory.add(DirectoryMember(uid))
        arns[uid] = sts.add_role(Role(account=uid, name=role_name))
    return arns


__all__ = [
    "ACTIONS",
    "API_VERSION",
    "DirectoryError",
    "DirectoryMember",
    "ResourceDirectory",
    "enrol",
    "organization_estate",
    "uid_of",
]
