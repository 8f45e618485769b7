"""A Terraform state as the baseline: load time against the same rules as baseline YAML.

The same N rules (groups of RULES_PER_GROUP; CIDR, IPv6, group-reference and prefix-list peers)
are written twice: as the state `terraform state pull` prints (every attribute of the provider's
schema, indented, as in tests/fixtures/terraform/state.json) and as the YAML `sgwatch baseline
capture` writes. Each is loaded the way `sgwatch report --baseline` loads it
(:func:`sgwatch.desired.load`), alternately, best of ``--repeat``, in this one process; then the
state's groups are placed on a snapshot holding them (what each scan adds). Prints both figures.

    python benchmarks/bench_terraform.py [--rules 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sgwatch import baseline, desired
from sgwatch.bulk import gc_paused
from sgwatch.config import BaselineSource
from sgwatch.core import managed
from sgwatch.core.model import Baseline, Group, Snapshot

RULES_PER_GROUP = 100
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _id(prefix: str, n: int, width: int = 20) -> str:
    """A made-up cloud id of the real shape (``sg-bp1fg655nh68xyz9i4bk``): letters and digits mixed."""
    text, value = "", n * 2_654_435_761 + 97
    while len(text) < width:
        value, digit = divmod(value * 31 + 7, 36)
        text += _ALPHABET[digit]
    return f"{prefix}-bp1{text}"


PROVIDER = 'provider["registry.terraform.io/aliyun/alicloud"]'


def _peer(g: int, r: int) -> dict[str, str]:
    if r % 10 == 7:
        return {"ipv6_cidr_ip": f"2408:4000:{g:x}:{r:x}::/64"}
    if r % 10 == 8:
        return {"source_security_group_id": _id("sg", (g + 1) % 1000)}
    if r % 10 == 9:
        return {"prefix_list_id": _id("pl", g)}
    return {"cidr_ip": f"10.{g % 256}.{r}.0/24"}


def _rule(g: int, r: int) -> dict[str, Any]:
    gid = _id("sg", g)
    attrs: dict[str, Any] = {
        "cidr_ip": "",
        "description": f"rule {g} {r}",
        "id": "",
        "ip_protocol": "tcp",
        "ipv6_cidr_ip": "",
        "nic_type": "intranet",
        "policy": "accept",
        "port_range": f"{r + 1}/{r + 1}",
        "prefix_list_id": "",
        "priority": r % 100 + 1,
        "security_group_id": gid,
        "security_group_rule_id": _id("sgr", g * 1000 + r, 14),
        "source_group_owner_account": None,
        "source_group_owner_id": "",
        "source_security_group_id": "",
        "type": "ingress",
        **_peer(g, r),
    }
    attrs["id"] = f"{gid}:ingress:tcp:{r + 1}/{r + 1}:intranet:{r}:accept:{r % 100 + 1}"
    return attrs


def write_state(path: Path, rules: int) -> None:
    groups = max(1, rules // RULES_PER_GROUP)
    resources = []
    for g in range(groups):
        gid = _id("sg", g)
        group = {
            "create_time": "2026-05-12T03:20:41Z",
            "description": "",
            "id": gid,
            "inner_access": True,
            "inner_access_policy": "Accept",
            "name": f"web-{g}",
            "resource_group_id": "rg-acfm2qbz4dm3y5q",
            "security_group_name": f"web-{g}",
            "security_group_type": "normal",
            "tags": {},
            "timeouts": None,
            "vpc_id": "vpc-1",
        }
        for kind, name, instances in (
            ("alicloud_security_group", "this", [(None, group)]),
            ("alicloud_security_group_rule", "ingress", [(r, _rule(g, r)) for r in range(RULES_PER_GROUP)]),
        ):
            resources.append(
                {
                    "module": f'module.tier["{g}"]',
                    "mode": "managed",
                    "type": kind,
                    "name": name,
                    "provider": PROVIDER,
                    "instances": [
                        {
                            **({} if key is None else {"index_key": key}),
                            "schema_version": 0,
                            "attributes": attrs,
                            "sensitive_attributes": [],
                            "private": "bnVsbA==",
                            "dependencies": [f'module.tier["{g}"].alicloud_security_group.this'],
                        }
                        for key, attrs in instances
                    ],
                }
            )
    doc = {"version": 4, "terraform_version": "1.9.8", "serial": 1, "lineage": "bench", "outputs": {}}
    path.write_text(json.dumps({**doc, "resources": resources, "check_results": None}, indent=2))


def best(load: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The least CPU time and the least wall time of ``repeat`` loads (CPU: the machine is shared)."""
    cpu, wall = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        with gc_paused():
            load()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return min(cpu), min(wall)


def peak_mib(load: Callable[[], object]) -> float:
    tracemalloc.start()
    with gc_paused():
        load()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    limit = 1 << 40
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        write_state(state, args.rules)
        from_state = desired.load([BaselineSource(path=state)], limit)
        assert from_state.terraform is not None
        # The same groups as YAML: placed in a region, as `baseline capture` would write them.
        groups = {}
        for gid, group in from_state.terraform.groups.items():
            key = ("default", "cn-hangzhou", gid)
            groups[key] = _as_group(group, key)
        folder = Path(tmp) / "yaml"
        for rel, text in baseline.render(groups.values(), {}).items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        yaml_files = list(folder.rglob("*.yaml"))
        from_yaml = desired.load([BaselineSource(path=folder)], limit)
        rules_state = sum(len(g.rules) for g in from_state.terraform.groups.values())
        rules_yaml = sum(len(g.rules) for g in from_yaml.groups.values())
        assert rules_state == rules_yaml == args.rules, (rules_state, rules_yaml)
        assert {g.rules for g in groups.values()} == {g.rules for g in from_yaml.groups.values()}

        def load_yaml() -> object:
            return desired.load([BaselineSource(path=folder)], limit)

        def load_state() -> object:
            return desired.load([BaselineSource(path=state)], limit)

        yaml_runs, state_runs = [], []
        for _ in range(args.repeat):  # alternately: a drift of the machine's speed hits both alike
            yaml_runs.append(best(load_yaml, 1))
            state_runs.append(best(load_state, 1))
        snapshot = Snapshot(groups=groups, listed={("default", "cn-hangzhou"): frozenset(g[2] for g in groups)})
        place_cpu, _ = best(lambda: managed.place(Baseline(), from_state.terraform, snapshot), args.repeat)
        placed = managed.place(Baseline(), from_state.terraform, snapshot)
        assert len(placed.baseline.groups) == len(groups) and not placed.removed and not placed.errors

        yaml_cpu, yaml_wall = min(c for c, _ in yaml_runs), min(w for _, w in yaml_runs)
        state_cpu, state_wall = min(c for c, _ in state_runs), min(w for _, w in state_runs)
        yaml_bytes = sum(f.stat().st_size for f in yaml_files)
        print(f"{args.rules} rules in {len(groups)} groups, best of {args.repeat}, this machine, this run")
        print("                    file     CPU        wall       peak (tracemalloc)")
        for name, size, cpu, wall, peak in (
            ("baseline YAML  ", yaml_bytes, yaml_cpu, yaml_wall, peak_mib(load_yaml)),
            ("Terraform state", state.stat().st_size, state_cpu, state_wall, peak_mib(load_state)),
        ):
            figures = f"{size / 1024 / 1024:5.2f} MiB {cpu * 1000:7.0f} ms {wall * 1000:7.0f} ms  {peak:6.1f} MiB"
            print(f"  {name}  {figures}")
        print(f"  placing the state's groups on a scan of them: {place_cpu * 1000:.1f} ms of CPU (per scan)")
        ratio = state_cpu / yaml_cpu
        print(f"  state / YAML (CPU): {ratio:.2f} ({'under' if ratio < 1 else 'OVER'} the YAML's time)")


def _as_group(group: managed.ManagedGroup, key: tuple[str, str, str]) -> Group:
    attrs = group.attributes
    assert attrs is not None
    return Group(
        account=key[0],
        region=key[1],
        id=group.id,
        name=attrs.name,
        type=attrs.type,
        vpc_id=attrs.vpc_id,
        inner_access_policy=attrs.inner_access_policy,
        description=attrs.description,
        rules=group.rules,
    )


if __name__ == "__main__":
    main()
