"""Sharding: which replica scans which account, and what its metrics say."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sgwatch import config
from sgwatch.errors import InputError
from sgwatch.metrics import Telemetry, registry_for
from sgwatch.sharding import UNSHARDED, Shard, assign
from sgwatch.sources.live_settings import AccountSettings


def accounts(n: int) -> list[AccountSettings]:
    return [AccountSettings(name=f"acct-{i}", uid=str(1_000_000_000_000_000 + i * 7919)) for i in range(n)]


def owners(estate: list[AccountSettings], total: int) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {a.name: [] for a in estate}
    for i in range(total):
        for a in Shard(i, total).select(estate):
            found[a.name].append(i)
    return found


def test_every_account_has_exactly_one_shard_whatever_the_list_order() -> None:
    estate = accounts(200)
    split = owners(estate, 4)
    assert all(len(o) == 1 for o in split.values())
    assert owners(list(reversed(estate)), 4) == split
    # pinned: the split is part of the deployment contract (a replica restarted owns the same accounts)
    assert assign(["1234567890123456", "acct-0", "acct-1"], 2) == {"1234567890123456": 1, "acct-0": 0, "acct-1": 1}


@pytest.mark.parametrize("seed", range(20))
def test_shares_are_within_five_percent_of_even(seed: int) -> None:
    rng = random.Random(seed)
    keys = [str(rng.randrange(10**15, 10**16)) for _ in range(200)]
    share = Counter(assign(keys, 4).values())
    assert set(share) == {0, 1, 2, 3}
    assert max(share.values()) <= 53 and min(share.values()) >= 41, share


def test_an_added_account_moves_few_others() -> None:
    rng = random.Random(7)
    moved = []
    for _ in range(20):
        keys = [str(rng.randrange(10**15, 10**16)) for _ in range(200)]
        before, after = assign(keys, 4), assign([*keys, "9999999999999999"], 4)
        moved.append(sum(before[k] != after[k] for k in keys))
    assert sum(moved) / len(moved) < 1.5, moved  # a plain rank-and-deal split would move about half of them


def test_the_uid_not_the_name_decides_when_known() -> None:
    others = accounts(9)
    a = AccountSettings(name="prod", uid="1234567890123456")
    b = AccountSettings(name="renamed", uid="1234567890123456")
    assert owners([*others, a], 3)["prod"] == owners([*others, b], 3)["renamed"]


def test_the_config_scans_only_its_shards_accounts() -> None:
    listed = [{"name": a.name, "uid": a.uid} for a in accounts(12)]
    picked = set()
    for i in range(3):
        cfg = config.Config.model_validate({"accounts": listed, "sharding": {"shard": i, "total_shards": 3}})
        mine = {a.name for a in cfg.live().accounts}
        assert mine and not mine & picked
        picked |= mine
    assert picked == {a["name"] for a in listed}


def test_a_shard_out_of_range_is_one_line() -> None:
    with pytest.raises(InputError) as caught:
        config.load(None, {"SGWATCH_SHARDING__SHARD": "3", "SGWATCH_SHARDING__TOTAL_SHARDS": "3"})
    assert "shard 3 is not one of 0 .. 2" in str(caught.value) and "\n" not in str(caught.value)


def test_shards_left_without_an_account_say_so_in_one_line() -> None:
    refused = []
    for shard in range(3):  # one configured account: two of three shards own nothing
        try:
            config.load(None, {"SGWATCH_SHARDING__SHARD": str(shard), "SGWATCH_SHARDING__TOTAL_SHARDS": "3"})
        except InputError as exc:
            refused.append(str(exc))
    assert len(refused) == 2
    assert all("owns none of the 1 configured accounts" in line and "\n" not in line for line in refused)


def samples(registry: object) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):  # type: ignore[arg-type]
        for s in family.samples:
            out.setdefault(s.name, []).append(dict(s.labels))
    return out


def test_sharded_series_carry_the_shard_and_unsharded_ones_do_not() -> None:
    sharded = samples(registry_for(Telemetry(interval=300), Shard(2, 4)))
    own = {name: labels for name, labels in sharded.items() if name.startswith("sgwatch_")}
    assert own and all(all(lab.get("shard") == "2" for lab in labels) for labels in own.values())
    assert "shard" not in sharded["process_cpu_seconds_total"][0]  # the target's own labels tell replicas apart
    plain = samples(registry_for(Telemetry(interval=300), UNSHARDED))
    assert all("shard" not in lab for name, labels in plain.items() for lab in labels)
    assert "sgwatch_total_shards" in plain


def test_run_refuses_a_shard_past_the_total_in_one_line(tmp_path: Path) -> None:
    baseline = tmp_path / "b.yaml"
    baseline.write_text("security_groups: []\n")
    result = subprocess.run(
        [sys.executable, "-m", "sgwatch", "run", "--baseline", str(baseline), "--shard", "4", "--total-shards", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--shard/--total-shards" in lines[0] and "shard 4 is not one of 0 .. 3" in lines[0]
