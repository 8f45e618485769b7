"""Which accounts one replica scans: ``--shard N --total-shards M`` (kube-state-metrics' convention).

Every replica reads the same config (and, with discovery, lists the same accounts) and works out
the same split on its own; there is no coordination between replicas, and each has its own
state volume. The split is rendezvous hashing with bounded loads: accounts, in the order of
their own hash, each take the highest-scoring shard that is not full, a shard holding at most
``ceil(n / M x 1.05)``. So the shares are within 5% of even (a plain hash leaves 200 accounts on 4
shards as far apart as 38 and 62), an added or removed account moves well under one other
account on average (0.36 in 50 trials of 200 accounts on 4 shards), and a replica restarted,
rescheduled or upgraded owns the same accounts. An account is hashed by its UID when known (a
discovered account's id never changes), else by its name.

Two replicas of one shard (an HA pair) scan the same accounts; Alertmanager, which dedups alerts
by their labels, is what keeps them from alerting twice (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from sgwatch.sources.live_settings import AccountSettings

_A = TypeVar("_A", bound=AccountSettings)

# How far above an even share a shard may fill: lower evens the shares, higher moves fewer
# accounts when the list changes.
SLACK = 0.05


def _score(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def account_key(account: AccountSettings) -> str:
    """What an account is hashed by: its UID when the config or discovery knows it, else its name."""
    return account.uid or account.name


def assign(keys: Iterable[str], total: int) -> dict[str, int]:
    """Every key's shard (0 .. total-1): the same on every replica, machine and version."""
    unique = sorted(set(keys), key=_score)
    capacity = math.ceil(len(unique) / total * (1 + SLACK))
    load = [0] * total
    owner: dict[str, int] = {}
    for key in unique:
        ranked = sorted(range(total), key=lambda shard: _score(f"{shard}/{key}"), reverse=True)
        shard = next(s for s in ranked if load[s] < capacity)  # capacity x total >= len(unique)
        owner[key] = shard
        load[shard] += 1
    return owner


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1 or not 0 <= self.index < self.total:
            raise ValueError(f"shard {self.index} of {self.total}: the shard is 0 .. total-shards - 1")

    @property
    def sharded(self) -> bool:
        return self.total > 1

    def select(self, accounts: Iterable[_A]) -> list[_A]:
        """The accounts of this shard, in their order; ``accounts`` is every replica's whole list."""
        listed = list(accounts)
        if not self.sharded:
            return listed
        owner = assign((account_key(a) for a in listed), self.total)
        return [a for a in listed if owner[account_key(a)] == self.index]


UNSHARDED = Shard()
