"""Fixtures for the emulator and live-scan tests (imported by those modules, not a conftest).

Everything talks to 127.0.0.1 only. The SDK honours HTTP(S)_PROXY even for loopback, so every
test that uses these fixtures runs with the proxy variables removed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sgwatch.emulator import Emulator
from sgwatch.sources.live import LiveSettings

AK_ID = "LTAItestkey0000000001"
AK_SECRET = "s3cr3t-value-never-printed-0123456789"

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SGWATCH_ECS_ENDPOINT", raising=False)


EmulatorFactory = Callable[..., Emulator]


@pytest.fixture
def make_emulator() -> Iterator[EmulatorFactory]:
    started: list[Emulator] = []

    def factory(**kwargs: Any) -> Emulator:
        kwargs.setdefault("keys", {AK_ID: AK_SECRET})
        emulator = Emulator(**kwargs)
        emulator.start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in started:
        emulator.stop()


def settings_for(emulator: Emulator, **overrides: Any) -> LiveSettings:
    """Settings that point at the emulator with fast retries; tests override what they probe."""
    base: dict[str, Any] = {
        "endpoint": emulator.url,
        "accounts": [{"name": "default", "credentials": {"type": "access_key", "id": AK_ID, "secret": AK_SECRET}}],
        "regions": sorted(emulator.estate.regions("default")),
        "concurrency": 8,
        "requests_per_second": 0,
        "connect_timeout_ms": 2000,
        "read_timeout_ms": 5000,
        "backoff_base_ms": 10,
        "backoff_cap_ms": 100,
        "deadline_seconds": 30,
    }
    base.update(overrides)
    return LiveSettings.model_validate(base)


def prefix_lists_named(emulator: Emulator, region: str, account: str = "default") -> set[str]:
    """The prefix lists the rules of a region name: the scan reads each once."""
    groups = emulator.estate.regions(account)[region].groups.values()
    fields = ("SourcePrefixListId", "DestPrefixListId")
    return {p[f] for g in groups for p in g.permissions for f in fields if p.get(f)}


def membership_calls(emulator: Emulator, account: str = "default") -> dict[str, int]:
    """One whole listing of ENIs (500 a page) and one of instances (100 a page) per region."""
    enis = instances = 0
    for region in emulator.estate.regions(account).values():
        n_enis, n_instances = region.members.count()
        enis += max(1, math.ceil(n_enis / min(500, emulator.interface_page_cap)))
        instances += max(1, math.ceil(n_instances / min(100, emulator.instance_page_cap)))
    return {"DescribeNetworkInterfaces": enis, "DescribeInstances": instances}


def minimum_calls(emulator: Emulator, account: str = "default") -> dict[str, int]:
    """The fewest calls that can read the estate given the emulator's page caps."""
    list_calls = 0
    attribute_calls = 0
    list_reads = 0
    for name, region in emulator.estate.regions(account).items():
        list_calls += max(1, math.ceil(len(region.groups) / min(100, emulator.list_page_cap)))
        for group in region.groups.values():
            attribute_calls += max(1, math.ceil(len(group.permissions) / min(1000, emulator.attribute_page_cap)))
        list_reads += len(prefix_lists_named(emulator, name, account))
    calls = {
        "DescribeSecurityGroups": list_calls,
        "DescribeSecurityGroupAttribute": attribute_calls,
        **membership_calls(emulator, account),
    }
    if list_reads:
        calls["DescribePrefixListAttributes"] = list_reads
    return calls
