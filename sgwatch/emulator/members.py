"""The emulated cloud's network interfaces and instances: who sits in which group, with which address.

Stored as the API shows them (a ``NetworkInterfaceSet`` entry per ENI, an ``Instance`` entry per
instance), and kept consistent the way the cloud is: a primary ENI's groups are its instance's
groups, an EIP on a primary ENI is the instance's EIP. An instance's own public IP (assigned at
creation) shows in DescribeInstances only, as the API reference documents.

The shapes of saved answers are recognised here, on the emulator's own terms: it exists to test
sgwatch's parser, so it does not borrow it.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable, Mapping
from typing import Any

ENI_TYPES = ("Primary", "Secondary")


def is_eni_listing(body: Mapping[str, Any]) -> bool:
    return isinstance(body.get("NetworkInterfaceSets"), Mapping)


def is_instance_listing(body: Mapping[str, Any]) -> bool:
    return isinstance(body.get("Instances"), Mapping)


def _items(body: Mapping[str, Any], outer: str, inner: str) -> list[Any]:
    value = body.get(outer)
    items = value.get(inner) if isinstance(value, Mapping) else None
    return items if isinstance(items, list) else []


def listed_enis(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [copy.deepcopy(dict(e)) for e in _items(body, "NetworkInterfaceSets", "NetworkInterfaceSet")]


def listed_instances(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [copy.deepcopy(dict(e)) for e in _items(body, "Instances", "Instance")]


def _no_public() -> dict[str, str]:
    return {"PublicIpAddress": "", "AllocationId": ""}


def eni_entry(
    eni_id: str,
    *,
    instance_id: str = "",
    eni_type: str = "Secondary",
    groups: Iterable[str] = (),
    private_ip: str = "",
    vpc_id: str = "",
    vswitch_id: str = "",
    ipv6: Iterable[str] = (),
) -> dict[str, Any]:
    """A NetworkInterfaceSet entry with the documented fields, as the API answers it."""
    return {
        "NetworkInterfaceId": eni_id,
        "NetworkInterfaceName": "",
        "Type": eni_type,
        "Status": "InUse" if instance_id else "Available",
        "InstanceId": instance_id,
        "VpcId": vpc_id,
        "VSwitchId": vswitch_id,
        "ZoneId": "",
        "PrivateIpAddress": private_ip,
        "MacAddress": "00:16:3e:00:00:00",
        "Description": "",
        "CreationTime": "2024-06-01T00:00:00Z",
        "ServiceManaged": False,
        "SecurityGroupIds": {"SecurityGroupId": list(groups)},
        "PrivateIpSets": {
            "PrivateIpSet": [{"PrivateIpAddress": private_ip, "Primary": True, "AssociatedPublicIp": _no_public()}]
        },
        "AssociatedPublicIp": _no_public(),
        "Ipv6Sets": {"Ipv6Set": [{"Ipv6Address": a} for a in ipv6]},
        "Tags": {"Tag": []},
    }


def instance_entry(
    instance_id: str,
    region_id: str,
    *,
    primary_eni: Mapping[str, Any],
    public_ips: Iterable[str] = (),
) -> dict[str, Any]:
    """An Instance entry of DescribeInstances for a VPC instance whose primary ENI is ``primary_eni``."""
    private_ip = str(primary_eni.get("PrivateIpAddress") or "")
    public = list(public_ips)
    return {
        "InstanceId": instance_id,
        "InstanceName": instance_id,
        "RegionId": region_id,
        "Status": "Running",
        "InstanceNetworkType": "vpc",
        "InternetMaxBandwidthOut": 5 if public else 0,
        "VpcAttributes": {
            "VpcId": primary_eni.get("VpcId", ""),
            "VSwitchId": primary_eni.get("VSwitchId", ""),
            "PrivateIpAddress": {"IpAddress": [private_ip] if private_ip else []},
        },
        "InnerIpAddress": {"IpAddress": []},
        "PublicIpAddress": {"IpAddress": public},
        "EipAddress": {"AllocationId": "", "IpAddress": "", "Bandwidth": 0, "InternetChargeType": ""},
        "SecurityGroupIds": {"SecurityGroupId": list(primary_eni["SecurityGroupIds"]["SecurityGroupId"])},
        "NetworkInterfaces": {
            "NetworkInterface": [
                {
                    "NetworkInterfaceId": primary_eni["NetworkInterfaceId"],
                    "Type": "Primary",
                    "PrimaryIpAddress": private_ip,
                    "MacAddress": primary_eni.get("MacAddress", ""),
                    "PrivateIpSets": {"PrivateIpSet": [{"PrivateIpAddress": private_ip, "Primary": True}]},
                    "Ipv6Sets": copy.deepcopy(primary_eni.get("Ipv6Sets") or {"Ipv6Set": []}),
                }
            ]
        },
        "Tags": {"Tag": []},
    }


class MemberError(ValueError):
    pass


class MalformedFilter(ValueError):
    """A filter parameter that is not what the API takes; its name is the message."""


class Members:
    """One region's ENIs and instances, keyed by id, in the API's shapes."""

    def __init__(self) -> None:
        self.enis: dict[str, dict[str, Any]] = {}
        self.instances: dict[str, dict[str, Any]] = {}

    # -- the listings -------------------------------------------------------------------------
    def eni_list(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        found = [self.enis[k] for k in sorted(self.enis)]
        if params.get("SecurityGroupId"):  # documented: the filter finds secondary ENIs only
            sg = params["SecurityGroupId"]
            found = [e for e in found if e["Type"] != "Primary" and sg in _groups(e)]
        if params.get("InstanceId"):
            found = [e for e in found if e.get("InstanceId") == params["InstanceId"]]
        if params.get("Type"):
            found = [e for e in found if e.get("Type") == params["Type"]]
        # NetworkInterfaceId.N: the ENIs named (up to 100), as the targeted re-read asks
        wanted = {v for k, v in params.items() if k.startswith("NetworkInterfaceId.")}
        if wanted:
            found = [e for e in found if e.get("NetworkInterfaceId") in wanted]
        return found

    def instance_list(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        found = [self.instances[k] for k in sorted(self.instances)]
        if params.get("SecurityGroupId"):
            found = [i for i in found if params["SecurityGroupId"] in _groups(i)]
        if params.get("InstanceIds"):  # a JSON array of up to 100 ids
            try:
                ids = json.loads(params["InstanceIds"])
            except ValueError:
                ids = None
            if not isinstance(ids, list) or len(ids) > 100:
                raise MalformedFilter("InstanceIds")
            found = [i for i in found if i.get("InstanceId") in set(map(str, ids))]
        return found

    # -- changes, kept consistent as the cloud keeps them -----------------------------------------
    def put_eni(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        eni_id = str(entry.get("NetworkInterfaceId") or "")
        if not eni_id:
            raise MemberError("NetworkInterfaceId is missing or empty")
        stored = eni_entry(eni_id)
        stored.update(copy.deepcopy(dict(entry)))
        self.enis[eni_id] = stored
        return stored

    def put_instance(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = str(entry.get("InstanceId") or "")
        if not instance_id:
            raise MemberError("InstanceId is missing or empty")
        self.instances[instance_id] = copy.deepcopy(dict(entry))
        return self.instances[instance_id]

    def eni(self, eni_id: str) -> dict[str, Any]:
        found = self.enis.get(eni_id)
        if found is None:
            raise MemberError(f"no network interface {eni_id}")
        return found

    def _instance_of_primary(self, eni: Mapping[str, Any]) -> dict[str, Any] | None:
        if eni.get("Type") != "Primary":
            return None
        return self.instances.get(str(eni.get("InstanceId") or ""))

    def join(self, eni_id: str, group_id: str) -> dict[str, Any]:
        eni = self.eni(eni_id)
        groups = _groups(eni)
        if group_id not in groups:
            if len(groups) >= 10:
                raise MemberError(f"{eni_id} already sits in 10 security groups, the most an ENI can")
            groups.append(group_id)
        self._sync_groups(eni)
        return eni

    def leave(self, eni_id: str, group_id: str) -> dict[str, Any]:
        eni = self.eni(eni_id)
        groups = _groups(eni)
        if group_id not in groups:
            raise MemberError(f"{eni_id} is not in {group_id}")
        if len(groups) == 1:
            raise MemberError(f"{eni_id} must stay in at least one security group")
        groups.remove(group_id)
        self._sync_groups(eni)
        return eni

    def _sync_groups(self, eni: dict[str, Any]) -> None:
        instance = self._instance_of_primary(eni)
        if instance is not None:
            instance["SecurityGroupIds"] = {"SecurityGroupId": list(_groups(eni))}

    def associate_eip(self, eni_id: str, address: str, allocation_id: str = "", private_ip: str = "") -> dict[str, Any]:
        """Associate an EIP with the ENI (its primary private IP) or with one of its private IPs."""
        eni = self.eni(eni_id)
        target = private_ip or str(eni.get("PrivateIpAddress") or "")
        sets = eni.setdefault("PrivateIpSets", {"PrivateIpSet": []}).setdefault("PrivateIpSet", [])
        matching = [s for s in sets if s.get("PrivateIpAddress") == target]
        if private_ip and not matching:
            raise MemberError(f"{eni_id} has no private IP {private_ip}")
        public = {"PublicIpAddress": address, "AllocationId": allocation_id}
        for item in matching:
            item["AssociatedPublicIp"] = dict(public)
        eni["AssociatedPublicIp"] = dict(public)
        instance = self._instance_of_primary(eni)
        if instance is not None and target == eni.get("PrivateIpAddress"):
            instance["EipAddress"] = {
                **instance.get("EipAddress", {}),
                "IpAddress": address,
                "AllocationId": allocation_id,
            }
        return eni

    def release_eip(self, eni_id: str) -> dict[str, Any]:
        eni = self.eni(eni_id)
        for item in eni.get("PrivateIpSets", {}).get("PrivateIpSet", []):
            item["AssociatedPublicIp"] = _no_public()
        eni["AssociatedPublicIp"] = _no_public()
        instance = self._instance_of_primary(eni)
        if instance is not None:
            instance["EipAddress"] = {**instance.get("EipAddress", {}), "IpAddress": "", "AllocationId": ""}
        return eni

    def count(self) -> tuple[int, int]:
        return len(self.enis), len(self.instances)


def _groups(entry: dict[str, Any]) -> list[str]:
    holder = entry.setdefault("SecurityGroupIds", {"SecurityGroupId": []})
    groups: list[str] = holder.setdefault("SecurityGroupId", [])
    return groups


# -- synthetic membership -----------------------------------------------------------------------
def _random_id(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(20))


def synthesize(members: Members, region_id: str, groups: Iterable[tuple[str, str, str]], seed: int) -> None:
    """A realistic membership for groups given as (group id, vpc id, type).

    About three in four groups have members; most ENIs sit in one to three groups of one VPC and
    one type (the cloud mixes neither), about half with the VPC's shared guard group; about one
    instance in five has a public address (its own public IP or an EIP), a few have IPv6, and
    some carry a secondary ENI. An RNG of its own, so the groups and rules of a seeded estate
    stay what they were.
    """
    rng = random.Random(f"{seed}:members:{region_id}")
    buckets: dict[tuple[str, str], list[str]] = {}
    listed = sorted(groups)
    for gid, vpc, gtype in listed:
        if rng.random() < 0.75:
            buckets.setdefault((vpc, gtype), []).append(gid)
    if not buckets:
        return
    keys = sorted(buckets)
    weights = [len(buckets[k]) for k in keys]

    def draw_set(bucket: list[str]) -> list[str]:
        guard = bucket[0]
        others = bucket[1:] or [guard]
        chosen = rng.sample(others, k=min(len(others), rng.choice([1, 1, 2])))
        if rng.random() < 0.5 and guard not in chosen:
            chosen.insert(0, guard)
        return chosen[:3]

    for host in range(1, max(1, round(len(listed) * 1.5)) + 1):
        vpc, gtype = rng.choices(keys, weights)[0]
        bucket = buckets[(vpc, gtype)]
        private_ip = f"10.{host // 65536 % 256}.{host // 256 % 256}.{host % 256}"
        instance_id, eni_id = _random_id(rng, "i-"), _random_id(rng, "eni-")
        ipv6 = [f"2408:4000:{host % 65536:x}::{host % 4096 + 1:x}"] if rng.random() < 0.1 else []
        primary = eni_entry(
            eni_id,
            instance_id=instance_id,
            eni_type="Primary",
            groups=draw_set(bucket),
            private_ip=private_ip,
            vpc_id=vpc,
            ipv6=ipv6,
        )
        members.enis[eni_id] = primary
        public = rng.random()
        own_ip = [f"47.{96 + host // 65536 % 32}.{host // 256 % 256}.{host % 256}"] if public < 0.1 else []
        members.instances[instance_id] = instance_entry(instance_id, region_id, primary_eni=primary, public_ips=own_ip)
        if 0.1 <= public < 0.2:
            members.associate_eip(eni_id, f"39.{96 + host // 65536 % 32}.{host // 256 % 256}.{host % 256}")
        if rng.random() < 0.15:
            secondary_id = _random_id(rng, "eni-")
            members.enis[secondary_id] = eni_entry(
                secondary_id,
                instance_id=instance_id,
                groups=draw_set(bucket),
                private_ip=f"10.{128 + host // 65536 % 128}.{host // 256 % 256}.{host % 256}",
                vpc_id=vpc,
            )
            if rng.random() < 0.2:
                members.associate_eip(secondary_id, f"8.{128 + host // 65536 % 64}.{host // 256 % 256}.{host % 256}")
