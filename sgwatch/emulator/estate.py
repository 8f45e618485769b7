"""The emulated cloud's contents: accounts -> regions -> security groups, prefix and port range lists.

An estate comes from a snapshot directory of raw API responses (the same layout
:mod:`sgwatch.sources.snapshot_writer` writes) or from a seeded synthetic generator, so the
emulator can replay a real estate or produce a large realistic one for benchmarks.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgwatch.emulator import members as membership
from sgwatch.sources.raw import DEFAULT_ACCOUNT

PERMISSION_FIELDS: tuple[str, ...] = (
    "SecurityGroupRuleId",
    "Direction",
    "IpProtocol",
    "PortRange",
    "SourcePortRange",
    "SourceCidrIp",
    "Ipv6SourceCidrIp",
    "DestCidrIp",
    "Ipv6DestCidrIp",
    "SourceGroupId",
    "SourceGroupName",
    "SourceGroupOwnerAccount",
    "DestGroupId",
    "DestGroupName",
    "DestGroupOwnerAccount",
    "SourcePrefixListId",
    "SourcePrefixListName",
    "DestPrefixListId",
    "DestPrefixListName",
    "PortRangeListId",
    "PortRangeListName",
    "Policy",
    "Priority",
    "NicType",
    "Description",
    "CreateTime",
)

LISTING_FIELDS: tuple[str, ...] = (
    "SecurityGroupId",
    "SecurityGroupName",
    "Description",
    "VpcId",
    "SecurityGroupType",
    "ResourceGroupId",
    "ServiceManaged",
    "RuleCount",
    "GroupToGroupRuleCount",
    "CreationTime",
    "EcsCount",
    "Tags",
)

PREFIX_LIST_FIELDS: tuple[str, ...] = (
    "PrefixListId",
    "PrefixListName",
    "AddressFamily",
    "MaxEntries",
    "Description",
    "CreationTime",
    "Entries",
)

REGION_NAMES: dict[str, str] = {
    "cn-hangzhou": "China (Hangzhou)",
    "cn-shanghai": "China (Shanghai)",
    "cn-beijing": "China (Beijing)",
    "cn-shenzhen": "China (Shenzhen)",
    "ap-southeast-1": "Singapore",
    "eu-central-1": "Germany (Frankfurt)",
    "us-west-1": "US (Silicon Valley)",
    "ap-northeast-1": "Japan (Tokyo)",
    "eu-west-1": "UK (London)",
    "us-east-1": "US (Virginia)",
}

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def random_id(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice(_ALNUM) for _ in range(20))


def response_kind(body: Mapping[str, Any]) -> str | None:
    """Which API answered a saved response body, told by its shape.

    Written here, not taken from sgwatch's parser: a fake that shares the code it exists to
    test would agree with that code's mistakes.
    """
    if "Permissions" in body and "SecurityGroupId" in body:
        return "DescribeSecurityGroupAttribute"
    if "SecurityGroups" in body:
        return "DescribeSecurityGroups"
    if "Regions" in body:
        return "DescribeRegions"
    # A prefix list's entries are {"Entry": [...]}, a port range list's a bare array.
    entries = body.get("Entries")
    if "PrefixListId" in body and not isinstance(entries, list):
        return "DescribePrefixListAttributes"
    if isinstance(entries, list):
        return "DescribePortRangeListEntries"
    return None


def _added_field(body: Mapping[str, Any], name: str, action: str, where: str) -> str:
    """A field sgwatch adds to a saved list answer (the API leaves it out), or ValueError naming the file."""
    value = str(body.get(name) or "")
    if not value:
        raise ValueError(
            f'{where}: {action} response has no "{name}" (the API leaves it out; '
            "sgwatch adds it when it saves one, so add it by hand to an answer saved otherwise)"
        )
    return value


def full_permission(partial: dict[str, Any]) -> dict[str, Any]:
    """A permission with every documented field present; absent ones as "" like the API."""
    perm: dict[str, Any] = {name: "" for name in PERMISSION_FIELDS}
    perm.update(partial)
    return perm


@dataclass
class SecurityGroup:
    group_id: str
    listing: dict[str, Any]  # the DescribeSecurityGroups entry, without RuleCount kept in sync
    vpc_id: str = ""
    name: str = ""
    description: str = ""
    inner_access_policy: str = "Accept"
    permissions: list[dict[str, Any]] = field(default_factory=list)

    def listing_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {name: "" for name in LISTING_FIELDS}
        entry.update(self.listing)
        entry["SecurityGroupId"] = self.group_id
        entry["RuleCount"] = len(self.permissions)
        entry.setdefault("Tags", {"Tag": []})
        if entry["Tags"] == "":
            entry["Tags"] = {"Tag": []}
        return entry


@dataclass
class PrefixList:
    prefix_list_id: str
    name: str = ""
    address_family: str = "IPv4"
    max_entries: int = 10
    description: str = ""
    creation_time: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)  # {"Cidr": ..., "Description": ...}

    @classmethod
    def from_body(cls, body: Mapping[str, Any], prefix_list_id: str = "") -> PrefixList:
        """From DescribePrefixListAttributes fields; other keys (RegionId, RequestId) are ignored.

        Raises ValueError saying which field is wrong.
        """
        pl_id = prefix_list_id or str(body.get("PrefixListId") or "")
        if not pl_id:
            raise ValueError("PrefixListId is missing or empty")
        raw_entries = body.get("Entries") or {"Entry": []}
        items = raw_entries.get("Entry") if isinstance(raw_entries, Mapping) else None
        if not isinstance(items, list) or not all(isinstance(e, Mapping) for e in items):
            raise ValueError('Entries must be {"Entry": [{"Cidr": "...", "Description": "..."}, ...]}')
        entries = [{"Cidr": "", "Description": "", **copy.deepcopy(dict(e))} for e in items]
        raw_max = body.get("MaxEntries")
        if raw_max is None or raw_max == "":
            # the cloud never has fewer slots than entries, so a guess must not either
            max_entries = max(10, len(entries))
        elif isinstance(raw_max, bool) or not isinstance(raw_max, int | str):
            raise ValueError(f"MaxEntries must be an integer, not {raw_max!r}")
        else:
            try:
                max_entries = int(raw_max)
            except ValueError:
                raise ValueError(f"MaxEntries must be an integer, not {raw_max!r}") from None
        return cls(
            prefix_list_id=pl_id,
            name=str(body.get("PrefixListName") or ""),
            address_family=str(body.get("AddressFamily") or "IPv4"),
            max_entries=max_entries,
            description=str(body.get("Description") or ""),
            creation_time=str(body.get("CreationTime") or ""),
            entries=entries,
        )

    def body(self) -> dict[str, Any]:
        """The DescribePrefixListAttributes answer but its RequestId; the real one has no RegionId."""
        return {
            "PrefixListId": self.prefix_list_id,
            "PrefixListName": self.name,
            "AddressFamily": self.address_family,
            "MaxEntries": self.max_entries,
            "Description": self.description,
            "CreationTime": self.creation_time,
            "Entries": {"Entry": copy.deepcopy(self.entries)},
        }


@dataclass
class PortRangeList:
    port_range_list_id: str
    name: str = ""  # DescribePortRangeListEntries never shows it; kept for whoever set it
    entries: list[dict[str, Any]] = field(default_factory=list)  # {"PortRange": "80/80", "Description": ...}

    @classmethod
    def from_body(cls, body: Mapping[str, Any], port_range_list_id: str = "") -> PortRangeList:
        """From ``Entries`` (a plain array, as the API answers) plus the ``PortRangeListId`` and
        ``PortRangeListName`` the answer leaves out; other keys (RegionId, RequestId) are ignored.

        Raises ValueError saying which field is wrong.
        """
        prl_id = port_range_list_id or str(body.get("PortRangeListId") or "")
        if not prl_id:
            raise ValueError("PortRangeListId is missing or empty")
        items = body.get("Entries")
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(e, Mapping) for e in items):
            raise ValueError('Entries must be [{"PortRange": "80/80", "Description": "..."}, ...]')
        return cls(
            port_range_list_id=prl_id,
            name=str(body.get("PortRangeListName") or ""),
            entries=[{"PortRange": "", "Description": "", **copy.deepcopy(dict(e))} for e in items],
        )

    def body(self) -> dict[str, Any]:
        """The DescribePortRangeListEntries answer but its RequestId: no id, name or RegionId, as the real one."""
        return {"Entries": copy.deepcopy(self.entries)}

    def record(self) -> dict[str, Any]:
        """What the control API shows: the answer with the id and name it leaves out."""
        return {"PortRangeListId": self.port_range_list_id, "PortRangeListName": self.name, **self.body()}


@dataclass
class Region:
    region_id: str
    local_name: str = ""
    groups: dict[str, SecurityGroup] = field(default_factory=dict)
    prefix_lists: dict[str, PrefixList] = field(default_factory=dict)
    port_range_lists: dict[str, PortRangeList] = field(default_factory=dict)
    members: membership.Members = field(default_factory=membership.Members)

    def sorted_groups(self) -> list[SecurityGroup]:
        return [self.groups[k] for k in sorted(self.groups)]


class Estate:
    """Thread-safe container; the control API mutates it while the server reads it."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Region]] = {}
        self.lock = threading.RLock()

    # -- access -------------------------------------------------------------------------------
    def regions(self, account: str) -> dict[str, Region]:
        return self.accounts.setdefault(account, {})

    def region(self, account: str, region_id: str, create: bool = False) -> Region | None:
        regions = self.regions(account)
        if region_id not in regions and create:
            regions[region_id] = Region(region_id, REGION_NAMES.get(region_id, region_id))
        return regions.get(region_id)

    def group(self, account: str, region_id: str, group_id: str) -> SecurityGroup | None:
        region = self.region(account, region_id)
        return None if region is None else region.groups.get(group_id)

    def prefix_list(self, account: str, region_id: str, prefix_list_id: str) -> PrefixList | None:
        region = self.region(account, region_id)
        return None if region is None else region.prefix_lists.get(prefix_list_id)

    def put_prefix_list(self, account: str, region_id: str, prefix_list: PrefixList) -> PrefixList:
        """Add the list, or replace the one with its id, as a whole."""
        with self.lock:
            region = self.region(account, region_id, create=True)
            assert region is not None
            region.prefix_lists[prefix_list.prefix_list_id] = prefix_list
        return prefix_list

    def remove_prefix_list(self, account: str, region_id: str, prefix_list_id: str) -> bool:
        with self.lock:
            region = self.region(account, region_id)
            return region is not None and region.prefix_lists.pop(prefix_list_id, None) is not None

    def prefix_list_count(self) -> int:
        return sum(len(r.prefix_lists) for regions in self.accounts.values() for r in regions.values())

    def port_range_list(self, account: str, region_id: str, port_range_list_id: str) -> PortRangeList | None:
        region = self.region(account, region_id)
        return None if region is None else region.port_range_lists.get(port_range_list_id)

    def put_port_range_list(self, account: str, region_id: str, port_range_list: PortRangeList) -> PortRangeList:
        """Add the list, or replace the one with its id, as a whole."""
        with self.lock:
            region = self.region(account, region_id, create=True)
            assert region is not None
            region.port_range_lists[port_range_list.port_range_list_id] = port_range_list
        return port_range_list

    def remove_port_range_list(self, account: str, region_id: str, port_range_list_id: str) -> bool:
        with self.lock:
            region = self.region(account, region_id)
            return region is not None and region.port_range_lists.pop(port_range_list_id, None) is not None

    def port_range_list_count(self) -> int:
        return sum(len(r.port_range_lists) for regions in self.accounts.values() for r in regions.values())

    def member_counts(self) -> tuple[int, int]:
        """(ENIs, instances) over every account and region."""
        counts = [r.members.count() for regions in self.accounts.values() for r in regions.values()]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def group_count(self) -> int:
        return sum(len(r.groups) for regions in self.accounts.values() for r in regions.values())

    def rule_count(self) -> int:
        return sum(
            len(g.permissions)
            for regions in self.accounts.values()
            for r in regions.values()
            for g in r.groups.values()
        )

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_snapshot(cls, directory: Path) -> Estate:
        """Load a snapshot folder, read exactly as `sgwatch report --snapshot` reads it.

        ValueError names the file that cannot be served.
        """
        from sgwatch.errors import InputError
        from sgwatch.sources.raw import RawResponse
        from sgwatch.sources.snapshot import iter_dir

        estate = cls()
        try:
            for origin, item in iter_dir(directory):
                if isinstance(item, RawResponse):  # the scan-errors files have nothing to serve
                    estate.add_response(item.account, item.body, origin)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return estate

    def add_response(self, account: str, body: dict[str, Any], origin: str = "") -> None:
        """Fold one saved response in; ValueError (naming ``origin``, the file) for one that cannot be."""
        if membership.is_eni_listing(body) or membership.is_instance_listing(body):
            self._add_members(account, body, origin or "membership listing")
            return
        action = response_kind(body)
        if action == "DescribePortRangeListEntries":
            self._add_port_range_list(account, body, origin or "DescribePortRangeListEntries response")
            return
        if action == "DescribePrefixListAttributes":
            self._add_prefix_list(account, body, origin or "DescribePrefixListAttributes response")
            return
        if action == "DescribeRegions":
            for item in body.get("Regions", {}).get("Region", []):
                region = self.region(account, item["RegionId"], create=True)
                assert region is not None
                region.local_name = item.get("LocalName", region.local_name)
        elif action == "DescribeSecurityGroups":
            region = self.region(account, body["RegionId"], create=True)
            assert region is not None
            for entry in body.get("SecurityGroups", {}).get("SecurityGroup", []):
                group = region.groups.get(entry["SecurityGroupId"])
                if group is None:
                    group = SecurityGroup(entry["SecurityGroupId"], {})
                    region.groups[group.group_id] = group
                group.listing = dict(entry)
                group.vpc_id = entry.get("VpcId", "")
                group.name = entry.get("SecurityGroupName", "")
                group.description = entry.get("Description", "")
        elif action == "DescribeSecurityGroupAttribute":
            region = self.region(account, body["RegionId"], create=True)
            assert region is not None
            gid = body["SecurityGroupId"]
            group = region.groups.get(gid)
            if group is None:
                group = SecurityGroup(gid, {"SecurityGroupType": "normal"})
                region.groups[gid] = group
            group.name = body.get("SecurityGroupName", group.name)
            group.description = body.get("Description", group.description)
            group.vpc_id = body.get("VpcId", group.vpc_id)
            group.inner_access_policy = body.get("InnerAccessPolicy", group.inner_access_policy) or "Accept"
            group.listing.setdefault("SecurityGroupName", group.name)
            group.listing.setdefault("VpcId", group.vpc_id)
            group.listing.setdefault("Description", group.description)
            seen = {p.get("SecurityGroupRuleId") for p in group.permissions if p.get("SecurityGroupRuleId")}
            for perm in body.get("Permissions", {}).get("Permission", []):
                rule_id = perm.get("SecurityGroupRuleId")
                if rule_id and rule_id in seen:
                    continue  # overlapping pages of the same group
                seen.add(rule_id)
                group.permissions.append(full_permission(copy.deepcopy(perm)))

    def _add_members(self, account: str, body: dict[str, Any], where: str) -> None:
        eni_listing = membership.is_eni_listing(body)
        action = "DescribeNetworkInterfaces" if eni_listing else "DescribeInstances"
        region = self.region(account, _added_field(body, "RegionId", action, where), create=True)
        assert region is not None
        try:
            if eni_listing:
                for entry in membership.listed_enis(body):
                    region.members.put_eni(entry)
            else:
                for entry in membership.listed_instances(body):
                    region.members.put_instance(entry)
        except membership.MemberError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def _add_prefix_list(self, account: str, body: dict[str, Any], where: str) -> None:
        region_id = _added_field(body, "RegionId", "DescribePrefixListAttributes", where)
        try:
            prefix_list = PrefixList.from_body(body)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        self.put_prefix_list(account, region_id, prefix_list)

    def _add_port_range_list(self, account: str, body: dict[str, Any], where: str) -> None:
        region_id = _added_field(body, "RegionId", "DescribePortRangeListEntries", where)
        _added_field(body, "PortRangeListId", "DescribePortRangeListEntries", where)
        try:
            port_range_list = PortRangeList.from_body(body)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        self.put_port_range_list(account, region_id, port_range_list)

    # -- synthetic ----------------------------------------------------------------------------
    @classmethod
    def synthetic(
        cls,
        groups: int,
        regions: int | Iterable[str] = 3,
        seed: int = 0,
        account: str = DEFAULT_ACCOUNT,
        big_group_every: int = 50,
        prefix_lists: bool = True,
        members: bool = True,
    ) -> Estate:
        """N groups spread round-robin over the regions, with a realistic mix of rules.

        Every ``big_group_every``-th group carries a few hundred rules so attribute paging is
        exercised; the rest hold 3 to 15 rules, like most real groups. Every prefix list a rule
        references exists in its region with a few entries, as in the cloud; ``prefix_lists=False``
        leaves them dangling (to test a list that cannot be read). Most groups have members
        (network interfaces of instances, some with public addresses: see
        :func:`sgwatch.emulator.members.synthesize`); ``members=False`` leaves every group empty.
        The groups and rules are the same either way.
        """
        rng = random.Random(seed)
        names = list(REGION_NAMES)[:regions] if isinstance(regions, int) else list(regions)
        estate = cls()
        region_objs = [estate.region(account, name, create=True) for name in names]
        vpcs = {name: [random_id(rng, "vpc-") for _ in range(3)] for name in names}
        for i in range(groups):
            region = region_objs[i % len(region_objs)]
            assert region is not None
            gid = random_id(rng, "sg-")
            vpc = rng.choice(vpcs[region.region_id])
            enterprise = rng.random() < 0.2
            n_rules = rng.randint(120, 300) if big_group_every and i % big_group_every == 7 else rng.randint(3, 15)
            group = SecurityGroup(
                gid,
                {
                    "SecurityGroupName": f"{rng.choice(['web', 'db', 'cache', 'bastion', 'k8s', 'batch'])}-{i}",
                    "Description": rng.choice(["", "managed by terraform", "legacy"]),
                    "VpcId": vpc,
                    "SecurityGroupType": "enterprise" if enterprise else "normal",
                    "ResourceGroupId": "rg-" + "".join(rng.choice(_ALNUM) for _ in range(15)),
                    "ServiceManaged": False,
                    "GroupToGroupRuleCount": 0,
                    "CreationTime": f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T0{rng.randint(0, 9)}:00Z",
                    "EcsCount": rng.randint(0, 40),
                    "Tags": {"Tag": [{"TagKey": "env", "TagValue": rng.choice(["prod", "staging", "dev"])}]},
                },
                vpc_id=vpc,
            )
            group.name = group.listing["SecurityGroupName"]
            group.description = group.listing["Description"]
            group.inner_access_policy = "Drop" if enterprise else "Accept"
            group.permissions = _unique_rules(rng, n_rules)
            region.groups[gid] = group
        if prefix_lists:
            for region in region_objs:
                assert region is not None
                _add_referenced_prefix_lists(region, seed)
        if members:
            for region in region_objs:
                assert region is not None
                described = [
                    (g.group_id, g.vpc_id, str(g.listing.get("SecurityGroupType"))) for g in region.groups.values()
                ]
                membership.synthesize(region.members, region.region_id, described, seed)
        return estate


def _add_referenced_prefix_lists(region: Region, seed: int) -> None:
    for group in region.groups.values():
        for perm in group.permissions:
            for side in ("Source", "Dest"):
                pl_id = perm.get(f"{side}PrefixListId") or ""
                if pl_id and pl_id not in region.prefix_lists:
                    name = perm.get(f"{side}PrefixListName") or ""
                    region.prefix_lists[pl_id] = _synthetic_prefix_list(seed, pl_id, name)


def _synthetic_prefix_list(seed: int, prefix_list_id: str, name: str) -> PrefixList:
    # An RNG of its own per list: drawing from the estate's would change every group after
    # the first reference, and benchmarks compare estates of one seed across runs.
    rng = random.Random(f"{seed}:{prefix_list_id}")
    cidrs: list[str] = []
    for _ in range(rng.randint(1, 6)):
        cidr = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24"
        if cidr not in cidrs:  # the cloud refuses an entry a list already has
            cidrs.append(cidr)
    return PrefixList(
        prefix_list_id=prefix_list_id,
        name=name,
        address_family="IPv4",
        max_entries=rng.choice([10, 20, 50]),
        description=rng.choice(["", "office egress", "partner ranges"]),
        creation_time=f"2024-0{rng.randint(1, 4)}-1{rng.randint(0, 9)}T0{rng.randint(0, 9)}:00Z",
        entries=[{"Cidr": c, "Description": f"site {i + 1}"} for i, c in enumerate(cidrs)],
    )


# Prefix lists are shared by design (and few: a region allows ~100), so the rules of a synthetic
# estate name a handful, not one each; the id drawn is still drawn, so every other field of a
# seeded estate stays what it was.
_PREFIX_LIST_POOL = tuple(f"pl-office{n}ranges{n * 7 % 10}x" for n in range(6))


def _shared_prefix_list(drawn: str) -> str:
    return _PREFIX_LIST_POOL[sum(map(ord, drawn)) % len(_PREFIX_LIST_POOL)]


def _unique_rules(rng: random.Random, count: int) -> list[dict[str, Any]]:
    # the cloud refuses a rule identical to an existing one, so a realistic group has none
    rules: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for index in range(count * 20):
        if len(rules) == count:
            break
        rule = _synthetic_rule(rng, index)
        content = tuple(
            v for k, v in sorted(rule.items()) if k not in ("SecurityGroupRuleId", "CreateTime", "Description")
        )
        if content not in seen:
            seen.add(content)
            rules.append(rule)
    return rules


def _synthetic_rule(rng: random.Random, index: int) -> dict[str, Any]:
    created = f"2024-05-{rng.randint(10, 28)}T1{rng.randint(0, 9)}:3{rng.randint(0, 9)}:00Z"
    base: dict[str, Any] = {
        "SecurityGroupRuleId": random_id(rng, "sgr-"),
        "Direction": "ingress",
        "Policy": "Accept",
        "Priority": str(rng.choice([1, 1, 1, 10, 50, 100])),
        "NicType": "intranet",
        "CreateTime": created,
        "SourcePortRange": "",
    }
    kind = 0 if index == 0 else rng.randrange(10)
    if kind == 0:
        base.update(IpProtocol="ALL", PortRange="-1/-1", Direction="egress", DestCidrIp="0.0.0.0/0")
    elif kind == 1:
        base.update(
            IpProtocol="TCP",
            PortRange="22/22",
            SourceCidrIp=f"10.{rng.randint(0, 255)}.0.0/16",
            Description="ssh from office",
        )
    elif kind == 2:
        port = rng.choice([80, 443, 8443])
        base.update(IpProtocol="TCP", PortRange=f"{port}/{port}", SourceCidrIp="0.0.0.0/0")
    elif kind == 3:
        base.update(IpProtocol="TCP", PortRange="3306/3306", SourceGroupId=random_id(rng, "sg-"))
    elif kind == 4:
        base.update(IpProtocol="ICMP", PortRange="-1/-1", SourceCidrIp="0.0.0.0/0")
    elif kind == 5:
        lo = rng.randint(1024, 60000)
        base.update(
            IpProtocol="UDP",
            PortRange=f"{lo}/{lo + rng.randint(0, 100)}",
            SourceCidrIp=f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.0/24",
        )
    elif kind == 6:
        base.update(IpProtocol="TCP", PortRange="443/443", Ipv6SourceCidrIp="::/0")
    elif kind == 7:
        base.update(
            IpProtocol="TCP",
            PortRange="6379/6379",
            SourcePrefixListId=_shared_prefix_list(random_id(rng, "pl-")),
            SourcePrefixListName="office-ranges",
        )
    elif kind == 8:
        base.update(IpProtocol="ALL", PortRange="-1/-1", SourceCidrIp="0.0.0.0/0", Policy="Drop", Priority="100")
    else:
        port = rng.randint(1, 65535)
        base.update(
            IpProtocol="TCP",
            PortRange=f"{port}/{port}",
            SourceCidrIp=f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24",
        )
    return full_permission(base)
