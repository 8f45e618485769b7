"""Write the demo estate under config/demo/: a baseline and a live snapshot that drifted from it.

The drift is chosen to show every kind of finding and every severity; the snapshot is the
cloud's own JSON (mixed case, a paged group, an IANA protocol number) so the demo exercises
the same parsing a real snapshot does. Run: python scripts/make_demo.py
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from sgwatch import baseline as baseline_file
from sgwatch.core.model import AcceptedExposure, Group
from sgwatch.emulator.members import Members, eni_entry, instance_entry
from sgwatch.sources import snapshot as snapshot_source
from sgwatch.sources.raw import RawResponse, RawScan

ROOT = Path(__file__).resolve().parent.parent / "config" / "demo"
PARTNER = "1234567890123456"
_ids = iter(range(10_000, 99_999))


def perm(
    direction: str,
    proto: str,
    ports: str,
    peer: str,
    policy: str = "Accept",
    prio: Any = "1",
    desc: str = "",
    rid: str | None = None,
) -> dict[str, Any]:
    side = "Source" if direction == "ingress" else "Dest"
    p: dict[str, Any] = {
        "SecurityGroupRuleId": rid or f"sgr-demo{next(_ids)}",
        "Direction": direction,
        "IpProtocol": proto,
        "PortRange": ports,
        "SourcePortRange": "",
        "Policy": policy,
        "Priority": prio,
        "NicType": "intranet",
        "Description": desc,
        "CreateTime": "2026-03-02T08:00:00Z",
        "PortRangeListId": "",
        "PortRangeListName": "",
    }
    for f in ("CidrIp", "GroupId", "GroupName", "GroupOwnerAccount", "PrefixListId", "PrefixListName"):
        p[f"{side}{f}"] = ""
    p[f"Ipv6{side}CidrIp"] = ""
    if peer.startswith("sg-") or "/sg-" in peer:
        owner, _, gid = peer.rpartition("/")
        p[f"{side}GroupId"], p[f"{side}GroupOwnerAccount"] = gid, owner
    elif peer.startswith("pl-"):
        p[f"{side}PrefixListId"] = peer
    elif ":" in peer:
        p[f"Ipv6{side}CidrIp"] = peer
    else:
        p[f"{side}CidrIp"] = peer
    return p


def group(
    region: str,
    sg: str,
    name: str,
    perms: list[dict[str, Any]],
    *,
    vpc: str = "vpc-prod01",
    gtype: str = "normal",
    inner: str = "Accept",
    desc: str = "",
) -> dict[str, Any]:
    return {
        "RegionId": region,
        "SecurityGroupId": sg,
        "SecurityGroupName": name,
        "Description": desc,
        "VpcId": vpc,
        "Type": gtype,
        "InnerAccessPolicy": inner,
        "Permissions": perms,
    }


OFFICE = "47.100.12.0/24"
ADMIN = "47.100.12.34/32"
# A partner's ranges, kept as a prefix list: a rule naming it lets in what the entries say.
# The ops list is recorded in the baseline; in the live state someone has added the whole internet.
PREFIX_LISTS: dict[tuple[str, str], list[str]] = {
    ("cn-shanghai", "pl-partners"): ["203.119.0.0/16", "10.20.0.0/16"],
    ("cn-hangzhou", "pl-ops"): [ADMIN],
}
LIVE_PREFIX_LISTS = {**PREFIX_LISTS, ("cn-hangzhou", "pl-ops"): [ADMIN, "0.0.0.0/0"]}  # high: RDP to the world

BASE: list[dict[str, Any]] = [
    group(
        "cn-hangzhou",
        "sg-web",
        "web-tier",
        [
            perm("ingress", "TCP", "80/80", "0.0.0.0/0", desc="http", rid="sgr-web-http"),
            perm("ingress", "TCP", "443/443", "0.0.0.0/0", desc="https", rid="sgr-web-https"),
            perm("ingress", "TCP", "443/443", "::/0", desc="https v6"),
            perm("ingress", "ICMP", "-1/-1", "0.0.0.0/0", desc="ping from anywhere"),
            perm("ingress", "TCP", "22/22", "sg-bastion", desc="ssh from bastion"),
        ],
        desc="public web servers",
    ),
    group(
        "cn-hangzhou",
        "sg-app",
        "app-tier",
        [
            perm("ingress", "TCP", "8080/8080", "sg-web", desc="web to app"),
            perm("ingress", "TCP", "22/22", "sg-bastion", desc="ssh from bastion", rid="sgr-app-ssh"),
        ],
    ),
    group(
        "cn-hangzhou",
        "sg-bastion",
        "bastion",
        [
            perm("ingress", "TCP", "22/22", OFFICE, desc="office ssh"),
            perm("ingress", "TCP", "3389/3389", "pl-ops", desc="rdp from the ops list"),
        ],
    ),
    group(
        "cn-hangzhou",
        "sg-legacy-db",
        "legacy-db",
        [
            perm("ingress", "TCP", "1024/65535", "0.0.0.0/0", prio="100", desc="legacy passive ports"),
            perm("ingress", "TCP", "3306/3306", "0.0.0.0/0", "Drop", "1", "guard mysql", rid="sgr-guard-3306"),
            perm("ingress", "TCP", "5432/5432", "0.0.0.0/0", "Drop", "1", "guard postgres"),
            perm("ingress", "TCP", "3306/3306", "10.0.0.0/8", prio="50", desc="mysql from vpc"),
        ],
        vpc="vpc-legacy",
    ),
    group(
        "cn-hangzhou",
        "sg-egress",
        "egress-whitelist",
        [
            perm("egress", "ALL", "-1/-1", "0.0.0.0/0", "Drop", "2", "deny all egress", rid="sgr-egress-deny"),
            perm("egress", "TCP", "443/443", "47.246.0.0/16", desc="package mirror"),
            perm("egress", "TCP", "80/80", "47.246.0.0/16", desc="package mirror"),
        ],
    ),
    group(
        "cn-shanghai",
        "sg-cache",
        "redis",
        [
            perm("ingress", "TCP", "6379/6379", "10.0.0.0/16", desc="redis from vpc"),
        ],
        inner="Drop",
        vpc="vpc-sh01",
    ),
    group(
        "cn-shanghai",
        "sg-batch",
        "batch-workers",
        [
            perm("egress", "TCP", "443/443", "0.0.0.0/0", desc="https out"),
            perm("ingress", "TCP", "22/22", "sg-bastion-sh", desc="ssh"),
        ],
        vpc="vpc-sh01",
    ),
    group(
        "cn-shanghai",
        "sg-old-etl",
        "old-etl",
        [
            perm("ingress", "TCP", "8088/8088", "10.2.0.0/16", desc="etl ui"),
        ],
        vpc="vpc-sh01",
    ),
]

ACCEPTED = {
    ("default", "cn-hangzhou", "sg-web"): (
        AcceptedExposure("ingress", "tcp", 80, 80, (), "public web tier", "team-web"),
        AcceptedExposure("ingress", "tcp", 443, 443, (), "public web tier", "team-web"),
        AcceptedExposure("ingress", "tcp", 8443, 8443, (), "partner API beta", "team-api", date(2099, 12, 31)),
        AcceptedExposure("ingress", "tcp", 8080, 8080, (), "load test window", "team-perf", date(2026, 1, 31)),
    ),
}


def drift(estate: list[dict[str, Any]]) -> list[dict[str, Any]]:
    live = copy.deepcopy(estate)
    by_id = {g["SecurityGroupId"]: g for g in live}

    def rules(sg: str) -> list[dict[str, Any]]:
        return by_id[sg]["Permissions"]

    web = rules("sg-web")
    web.append(perm("ingress", "TCP", "10250/10250", "0.0.0.0/0", desc="kubelet debug"))  # high: unapproved
    web.append(perm("ingress", "TCP", "8443/8443", "0.0.0.0/0", desc="partner api"))  # low: accepted exposure
    web.append(perm("ingress", "TCP", "8080/8080", "0.0.0.0/0", desc="load test"))  # high: exception expired
    next(r for r in web if r["SecurityGroupRuleId"] == "sgr-web-https")["Description"] = "https (CDN origin)"  # info
    next(r for r in web if r["SecurityGroupRuleId"] == "sgr-web-http")["Priority"] = "2"  # low: no exposure change
    rules("sg-bastion").append(perm("ingress", "TCP", "22/22", "0.0.0.0/0", desc="temp debug"))  # high: ssh world
    app = rules("sg-app")
    app[:] = [r for r in app if r["SecurityGroupRuleId"] != "sgr-app-ssh"]  # low: accept removed
    app.append(perm("ingress", "TCP", "9000/9000", OFFICE, desc="metrics ui from office"))  # medium: narrow
    app.append(perm("ingress", "TCP", "8080/8080", f"{PARTNER}/sg-partner01", desc="partner"))  # medium
    app.append(perm("ingress", "TCP", "8081/8081", "10.1.0.0/16", desc="new subnet"))  # low: private peer
    legacy = rules("sg-legacy-db")
    legacy[:] = [r for r in legacy if r["SecurityGroupRuleId"] != "sgr-guard-3306"]  # critical: guard removed
    eg = rules("sg-egress")
    eg[:] = [r for r in eg if r["SecurityGroupRuleId"] != "sgr-egress-deny"]  # medium: egress opened
    by_id["sg-cache"]["InnerAccessPolicy"] = "Accept"  # medium: inner access opened
    rules("sg-cache").append(perm("ingress", "TCP", "6379/6379", "::/0", desc="redis v6 test"))  # critical v6
    live.remove(by_id["sg-old-etl"])  # low: group removed
    live.append(
        group(
            "cn-shanghai",
            "sg-new-reporting",
            "reporting",
            [
                perm("ingress", "TCP", "5432/5432", "sg-batch", desc="reports db"),
            ],
            vpc="vpc-sh01",
        )
    )  # medium: new group, no exposure
    rules("sg-batch").append(perm("ingress", "TCP", "9200/9200", "pl-partners", desc="partner search"))  # medium
    all_ports = next(r for r in rules("sg-batch") if r["PortRange"] == "443/443")
    all_ports.update({"IpProtocol": "6", "Policy": "accept", "Priority": 1})  # same rule, cloud's other spellings
    return live


def listing(region: str, groups: list[dict[str, Any]], types: dict[str, str]) -> dict[str, Any]:
    return {
        "RequestId": "DEMO-LIST-" + region,
        "RegionId": region,
        "NextToken": "",
        "SecurityGroups": {
            "SecurityGroup": [
                {
                    "SecurityGroupId": g["SecurityGroupId"],
                    "SecurityGroupName": g["SecurityGroupName"],
                    "Description": g["Description"],
                    "VpcId": g["VpcId"],
                    "SecurityGroupType": types.get(g["SecurityGroupId"], "normal"),
                    "ResourceGroupId": "",
                    "ServiceManaged": False,
                    "RuleCount": len(g["Permissions"]),
                    "GroupToGroupRuleCount": 0,
                    "CreationTime": "2025-11-02T08:00:00Z",
                    "EcsCount": 2,
                    "Tags": {"Tag": [{"TagKey": "env", "TagValue": "prod"}]},
                }
                for g in groups
                if g["RegionId"] == region
            ]
        },
    }


def attribute_pages(g: dict[str, Any], page: int) -> list[dict[str, Any]]:
    perms = g["Permissions"]
    chunks = [perms[i : i + page] for i in range(0, max(len(perms), 1), page)] or [[]]
    out = []
    for n, chunk in enumerate(chunks):
        body = {k: v for k, v in g.items() if k not in ("Permissions", "Type")}
        body.update(
            {
                "RequestId": f"DEMO-{g['SecurityGroupId']}-{n}",
                "Permissions": {"Permission": chunk},
                "NextToken": f"page{n + 2}" if n + 1 < len(chunks) else "",
            }
        )
        out.append(body)
    return out


# The live estate's instances: (region, instance, groups of its primary ENI, own public IP, EIP).
# Web and bastion face the internet, and so does the legacy database (its own public IP: what makes
# its revoked guard critical); the app has no public address (its new exposure is latent).
INSTANCES = (
    ("cn-hangzhou", "i-web01", ["sg-web"], "", "47.100.20.11"),
    ("cn-hangzhou", "i-web02", ["sg-web"], "47.100.20.12", ""),
    ("cn-hangzhou", "i-app01", ["sg-app", "sg-egress"], "", ""),
    ("cn-hangzhou", "i-bastion01", ["sg-bastion"], "47.100.20.30", ""),
    ("cn-hangzhou", "i-db01", ["sg-legacy-db"], "47.100.20.40", ""),
    ("cn-shanghai", "i-cache01", ["sg-cache"], "", ""),
    ("cn-shanghai", "i-batch01", ["sg-batch"], "", "139.224.5.40"),
)
# The cache has an IPv6 address: sg-cache's Redis to ::/0 reaches it (the database's 3306 stays latent).
IPV6 = {"i-cache01": ("2408:4005:3a0:1::10",)}


def membership_pages(region: str, groups: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """One DescribeNetworkInterfaces and one DescribeInstances answer, each with the RegionId sgwatch adds."""
    vpc = {g["SecurityGroupId"]: g["VpcId"] for g in groups}
    members = Members()
    for n, (where, instance, sgs, public_ip, eip) in enumerate(INSTANCES):
        if where != region:
            continue
        eni = instance.replace("i-", "eni-")
        primary = members.put_eni(
            eni_entry(
                eni,
                instance_id=instance,
                eni_type="Primary",
                groups=sgs,
                private_ip=f"10.0.{n}.10",
                vpc_id=vpc.get(sgs[0], ""),
                ipv6=IPV6.get(instance, ()),
            )
        )
        members.put_instance(
            instance_entry(instance, region, primary_eni=primary, public_ips=[public_ip] if public_ip else [])
        )
        if eip:
            members.associate_eip(eni, eip)
    enis = members.eni_list({})
    instances = members.instance_list({})
    return [
        (
            "DescribeNetworkInterfaces",
            {
                "RequestId": f"DEMO-ENI-{region}",
                "RegionId": region,
                "NextToken": "",
                "NetworkInterfaceSets": {"NetworkInterfaceSet": enis},
            },
        ),
        (
            "DescribeInstances",
            {
                "RequestId": f"DEMO-INSTANCES-{region}",
                "RegionId": region,
                "NextToken": "",
                "Instances": {"Instance": instances},
            },
        ),
    ]


def write_snapshot(
    groups: list[dict[str, Any]], out: Path, lists: dict[tuple[str, str], list[str]], members: bool = False
) -> RawScan:
    """The snapshot of ``groups``; with ``members``, the instances above too (the live estate only)."""
    shutil.rmtree(out, ignore_errors=True)
    raw = RawScan()
    for region in sorted({g["RegionId"] for g in groups}):
        (out / region).mkdir(parents=True)
        body = listing(region, groups, {})
        (out / region / "DescribeSecurityGroups.json").write_text(json.dumps(body, indent=2) + "\n")
        raw.responses.append(RawResponse("default", "DescribeSecurityGroups", body))
    for g in groups:
        # sg-legacy-db arrives in pages of 2 rules, as a small MaxResults would return it.
        pages = attribute_pages(g, 2 if g["SecurityGroupId"] == "sg-legacy-db" else 1000)
        for n, body in enumerate(pages):
            suffix = "" if n == 0 else f".{n + 1}"
            (out / g["RegionId"] / f"{g['SecurityGroupId']}{suffix}.json").write_text(json.dumps(body, indent=2) + "\n")
            raw.responses.append(RawResponse("default", "DescribeSecurityGroupAttribute", body))
    for (region, pl), cidrs in lists.items():
        body = {
            "RequestId": f"DEMO-{pl}",
            "RegionId": region,  # the API leaves it out; sgwatch adds it when it saves a snapshot
            "PrefixListId": pl,
            "PrefixListName": pl.removeprefix("pl-"),
            "AddressFamily": "IPv4",
            "MaxEntries": 10,
            "Description": "",
            "CreationTime": "2025-11-02T08:00:00Z",
            "Entries": {"Entry": [{"Cidr": c, "Description": ""} for c in cidrs]},
        }
        (out / region / f"{pl}.json").write_text(json.dumps(body, indent=2) + "\n")
        raw.responses.append(RawResponse("default", "DescribePrefixListAttributes", body))
    for region in sorted({g["RegionId"] for g in groups} if members else ()):
        for action, body in membership_pages(region, groups):
            (out / region / f"{action}.json").write_text(json.dumps(body, indent=2) + "\n")
    return raw


def main() -> None:
    live = drift(BASE)
    write_snapshot(live, ROOT / "snapshot", LIVE_PREFIX_LISTS, members=True)
    base_raw = write_snapshot(BASE, ROOT / ".base-tmp", PREFIX_LISTS)
    shutil.rmtree(ROOT / ".base-tmp")
    base = snapshot_source.parse_scan(base_raw)
    base_groups: list[Group] = list(base.groups.values())
    shutil.rmtree(ROOT / "baseline", ignore_errors=True)
    for rel, text in baseline_file.render(base_groups, dict(ACCEPTED), base.prefix_lists).items():
        (ROOT / "baseline" / rel).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / "baseline" / rel).write_text(text)
    print(f"wrote {ROOT}/snapshot ({len(live)} groups) and {ROOT}/baseline ({len(base_groups)} groups)")


if __name__ == "__main__":
    main()
