"""The live scanner, driven through the real SDK against the local ECS emulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sgwatch import baseline
from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.model import Baseline
from sgwatch.emulator import AccessKey, Emulator, EmulatorControl, Estate
from sgwatch.emulator.estate import PortRangeList, PrefixList, SecurityGroup
from sgwatch.errors import AuthError
from sgwatch.sources import ecs_calls
from sgwatch.sources import snapshot as snapshot_source
from sgwatch.sources.live import LiveSettings, scan
from sgwatch.sources.raw import RawScan
from sgwatch.sources.snapshot import parse_scan
from sgwatch.sources.snapshot_writer import write_snapshot
from tests import livefixtures
from tests.livefixtures import AK_ID, AK_SECRET, EmulatorFactory, minimum_calls, prefix_lists_named, settings_for

# the shared fixtures, bound here so pytest finds them (tests/conftest.py is not ours)
make_emulator = livefixtures.make_emulator
no_proxy = livefixtures.no_proxy


def rules_by_group(raw: RawScan) -> dict[str, list[str]]:
    """group id -> rule ids, merged over attribute pages."""
    out: dict[str, list[str]] = {}
    for response in raw.responses:
        if response.action == "DescribeSecurityGroupAttribute":
            rules = response.body["Permissions"]["Permission"]
            out.setdefault(response.body["SecurityGroupId"], []).extend(r["SecurityGroupRuleId"] for r in rules)
    return out


def estate_rules(emulator: Emulator, account: str = "default") -> dict[str, list[str]]:
    return {
        gid: [p["SecurityGroupRuleId"] for p in group.permissions]
        for region in emulator.estate.regions(account).values()
        for gid, group in region.groups.items()
    }


def without_request_ids(raw: RawScan) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.body.items() if k != "RequestId"} for r in raw.responses]


def listed_groups(raw: RawScan) -> set[str]:
    return {
        g["SecurityGroupId"]
        for r in raw.responses
        if r.action == "DescribeSecurityGroups"
        for g in r.body["SecurityGroups"]["SecurityGroup"]
    }


def test_full_scan_pages_both_apis_with_the_minimum_calls(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=60, synthetic_regions=3, list_page_cap=7, attribute_page_cap=40, seed=1)
    progress: list[tuple[int, int]] = []
    raw = scan(settings_for(emu), progress=lambda done, total: progress.append((done, total)))

    assert raw.errors == []
    assert rules_by_group(raw) == estate_rules(emu)  # every rule of every group, in order
    assert listed_groups(raw) == set(estate_rules(emu))
    assert raw.regions == [("default", r) for r in ("cn-beijing", "cn-hangzhou", "cn-shanghai")]
    expected = minimum_calls(emu)
    assert expected["DescribeSecurityGroupAttribute"] > 60  # some groups really needed several pages
    assert dict(emu.calls) == expected  # no DescribeRegions: the regions were given
    assert raw.stats.requests == Counter({(a, "ok"): n for a, n in expected.items()})
    assert raw.stats.retries == 0 and raw.stats.throttles == 0
    # called from worker threads, so only the high-water mark is ordered
    assert max(progress) == (60, 60) and all(done <= total for done, total in progress)
    assert all(r.account == "default" for r in raw.responses)


def test_regions_come_from_describe_regions_when_not_given(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=9, synthetic_regions=2)
    raw = scan(settings_for(emu, regions=[]))
    assert emu.calls["DescribeRegions"] == 1
    assert raw.regions == [("default", "cn-hangzhou"), ("default", "cn-shanghai")]
    assert len(rules_by_group(raw)) == 9
    assert raw.responses[0].action == "DescribeRegions"


def test_throttling_with_retry_after_gives_the_same_result(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=40, synthetic_regions=2, seed=5)
    clean = scan(settings_for(emu))
    control = EmulatorControl(emu.url)
    control.set_faults(throttle_rate=0.3, throttle_retry_after_ms=20)
    control.reset_stats()
    throttled = scan(settings_for(emu))

    assert throttled.errors == []
    assert rules_by_group(throttled) == rules_by_group(clean)
    assert listed_groups(throttled) == listed_groups(clean)
    throttles = sum(n for (action, code), n in emu.results.items() if code == "Throttling.User")
    assert throttles > 0
    assert throttled.stats.throttles == throttles == throttled.stats.retries
    assert sum(n for (_, result), n in throttled.stats.requests.items() if result == "throttled") == throttles


def test_5xx_is_retried(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=30, synthetic_regions=1, error_5xx_rate=0.25, seed=2)
    raw = scan(settings_for(emu, max_retries=6))
    assert raw.errors == []
    assert rules_by_group(raw) == estate_rules(emu)
    server_errors = sum(
        emu.results[(action, "InternalError")]
        for action in ("DescribeSecurityGroupAttribute", "DescribeSecurityGroups", "DescribePrefixListAttributes")
    )
    assert server_errors > 0 and raw.stats.retries == server_errors


def test_a_failing_region_is_an_error_while_the_others_are_read(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=30, synthetic_regions=3, failing_regions=["cn-shanghai"])
    raw = scan(settings_for(emu, max_retries=2))
    assert [(e.region, e.code, e.security_group_id) for e in raw.errors] == [("cn-shanghai", "ServiceUnavailable", "")]
    assert emu.calls["DescribeSecurityGroups"] == 2 + 3  # one each for the good regions, 1 + 2 retries
    good = {gid for name in ("cn-beijing", "cn-hangzhou") for gid in emu.estate.regions("default")[name].groups}
    assert set(rules_by_group(raw)) == good
    # the dead region's listing is absent, so nothing can conclude its groups were deleted
    assert all(r.body["RegionId"] != "cn-shanghai" for r in raw.responses)


@pytest.mark.parametrize("shape", ["null", "object", "scalar"])
def test_malformed_body_is_an_error_for_that_group(make_emulator: EmulatorFactory, shape: str) -> None:
    emu = make_emulator(synthetic_groups=12, synthetic_regions=1)
    victim = sorted(emu.estate.regions("default")["cn-hangzhou"].groups)[3]
    EmulatorControl(emu.url).set_faults(malformed_groups=[victim], malformed_shape=shape)
    raw = scan(settings_for(emu))
    assert [(e.security_group_id, e.code) for e in raw.errors] == [(victim, "MalformedResponse")]
    assert victim not in rules_by_group(raw) and len(rules_by_group(raw)) == 11
    assert emu.calls["DescribeSecurityGroupAttribute"] == 12  # a malformed 200 is not retried


def test_a_wrong_shaped_rule_list_is_malformed_not_a_crash(
    make_emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the SDK's models refused when they mapped a body, the plain-JSON path refuses too.
    emu = make_emulator(synthetic_groups=4, synthetic_regions=1)
    victim = sorted(emu.estate.regions("default")["cn-hangzhou"].groups)[1]
    real = ecs_calls.call

    def bent(client: Any, action: Any, query: Any, runtime: Any) -> Any:
        body = real(client, action, query, runtime)
        if query.get("SecurityGroupId") == victim:
            body["Permissions"] = {"Permission": "tcp 22 from anywhere"}
        return body

    monkeypatch.setattr(ecs_calls, "call", bent)
    raw = scan(settings_for(emu))
    assert [(e.security_group_id, e.code) for e in raw.errors] == [(victim, "MalformedResponse")]
    assert "(Permissions.Permission is not a list)" in raw.errors[0].message
    assert victim not in rules_by_group(raw) and len(rules_by_group(raw)) == 3


def test_malformed_listing_fails_the_region(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=5, synthetic_regions=1, malformed_rate=1.0)
    raw = scan(settings_for(emu))
    assert [(e.region, e.code) for e in raw.errors] == [("cn-hangzhou", "MalformedResponse")]
    assert raw.responses == []


def test_lowercase_values_pass_through_untouched(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=6, synthetic_regions=1, lowercase=True)
    raw = scan(settings_for(emu))
    rules = [
        p
        for r in raw.responses
        if r.action == "DescribeSecurityGroupAttribute"
        for p in r.body["Permissions"]["Permission"]
    ]
    assert rules and {p["Policy"] for p in rules} <= {"accept", "drop"}
    assert all(isinstance(p["Priority"], int) for p in rules)


def test_a_vanished_group_is_gone_not_an_error(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=8, synthetic_regions=1)
    victim = sorted(emu.estate.regions("default")["cn-hangzhou"].groups)[0]
    EmulatorControl(emu.url).set_faults(vanish_groups=[victim])
    raw = scan(settings_for(emu))
    assert raw.errors == []
    assert victim not in rules_by_group(raw) and len(rules_by_group(raw)) == 7


@pytest.mark.parametrize(
    ("keys", "code", "hint"),
    [
        ({AK_ID: "another-secret"}, "SignatureDoesNotMatch", "secret"),
        ({"LTAIsomebodyelse00001": AK_SECRET}, "InvalidAccessKeyId.NotFound", "AccessKey"),
        (
            # membership reads granted: their refusal is not fatal (tests/test_membership.py)
            {
                AK_ID: AccessKey(
                    AK_SECRET,
                    actions=frozenset({"DescribeSecurityGroups", "DescribeNetworkInterfaces", "DescribeInstances"}),
                )
            },
            "Forbidden.RAM",
            "grant ecs:DescribeSecurityGroupAttribute",
        ),
    ],
)
def test_auth_errors_stop_the_scan_fast(
    make_emulator: EmulatorFactory, keys: dict[str, Any], code: str, hint: str
) -> None:
    emu = make_emulator(synthetic_groups=200, synthetic_regions=2, keys=keys, latency_ms=5)
    started = time.monotonic()
    with pytest.raises(AuthError) as err:
        scan(settings_for(emu, concurrency=4, max_retries=5, max_throttle_retries=5))
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert code in message and hint in message and "account 'default'" in message
    assert AK_SECRET not in message and AK_SECRET not in repr(err.value) and "\n" not in message
    refused = sum(n for (_, c), n in emu.results.items() if c == code)
    assert refused <= 4  # at most the calls already in flight: nothing retried
    assert elapsed < 5


def test_missing_credentials_chain_is_an_auth_error(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    emu = make_emulator(synthetic_groups=2, synthetic_regions=1)
    settings = settings_for(
        emu,
        accounts=[
            {
                "name": "prod",
                "credentials": {
                    "type": "ram_role_arn",
                    "role_arn": "acs:ram::1234567890:role/sgwatch-read",
                    "source": {"type": "access_key", "id": AK_ID, "secret": AK_SECRET},
                    "sts_endpoint": "127.0.0.1:9",  # nothing listens there: AssumeRole cannot succeed
                },
            }
        ],
        connect_timeout_ms=300,
        read_timeout_ms=300,
    )
    with pytest.raises(AuthError) as err:
        scan(settings)
    assert "account 'prod'" in str(err.value) and "ram_role_arn" in str(err.value)
    assert AK_SECRET not in str(err.value)
    assert emu.stats()["total_calls"] == 0


def test_deadline_turns_unread_work_into_errors(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=60, synthetic_regions=1, latency_ms=100)
    started = time.monotonic()
    raw = scan(settings_for(emu, concurrency=2, deadline_seconds=0.8))
    elapsed = time.monotonic() - started
    assert elapsed < 3
    assert raw.errors and {e.code for e in raw.errors} == {"DeadlineExceeded"}
    read = set(rules_by_group(raw))
    # A list the deadline cut off is reported on the (read) group whose rules name it.
    unread = {e.security_group_id for e in raw.errors if "before list" not in e.message}
    assert {e.security_group_id for e in raw.errors if "before list" in e.message} <= read
    assert read and not read & unread
    assert read | unread == set(estate_rules(emu))  # every group is read or reported, never dropped


def test_read_timeouts_are_retried_then_reported(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=2, synthetic_regions=1, latency_ms=400)
    raw = scan(settings_for(emu, read_timeout_ms=100, max_retries=1))
    assert [(e.region, e.code) for e in raw.errors] == [("cn-hangzhou", "Timeout")]
    assert raw.stats.requests[("DescribeSecurityGroups", "error")] == 2
    # the two membership listings time out too: unknown membership, not a scan error
    assert raw.stats.retries == 3 and raw.membership_failures[("default", "cn-hangzhou")].code == "Timeout"


def test_rate_limit_per_region_is_respected(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=36, synthetic_regions=2)
    scan(settings_for(emu, requests_per_second=25, concurrency=8))
    for region in ("cn-hangzhou", "cn-shanghai"):
        times = sorted(c.t for c in emu.log if c.region == region)
        assert len(times) == 19 + 2 + len(prefix_lists_named(emu, region))  # 2: one page each of ENIs, instances
        rate = (len(times) - 1) / (times[-1] - times[0])
        assert rate < 25 * 1.5  # loosely: spacing is 40 ms, never a burst of 8 at once


def test_regions_take_turns_instead_of_waiting_for_each_other(make_emulator: EmulatorFactory) -> None:
    # One worker, three regions: while one region's next slot is not due, the others' calls go.
    # (A worker that slept for its region's slot made the regions' calls come in long runs.)
    emu = make_emulator(synthetic_groups=36, synthetic_regions=3)
    raw = scan(settings_for(emu, requests_per_second=40, concurrency=1))
    assert not raw.errors
    regions = [c.region for c in sorted(emu.log, key=lambda c: c.t)]
    runs = sum(a == b for a, b in pairwise(regions))
    assert runs <= len(regions) // 4, regions


def test_concurrency_is_bounded(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=40, synthetic_regions=2, latency_ms=20)
    scan(settings_for(emu, concurrency=3))
    assert 2 <= emu.max_in_flight <= 3


def test_several_accounts_each_with_their_key(make_emulator: EmulatorFactory) -> None:
    estate = Estate.synthetic(6, ["cn-hangzhou"], seed=1, account="alpha")
    estate.accounts["beta"] = Estate.synthetic(4, ["eu-central-1"], seed=2, account="beta").accounts["beta"]
    keys = {
        "LTAIalpha00000000001": AccessKey("alpha-secret", "alpha"),
        "LTAIbeta000000000001": AccessKey("beta-secret", "beta"),
    }
    emu = make_emulator(estate=estate, keys=keys)
    accounts = [
        {
            "name": "alpha",
            "credentials": {"access_key": {"id": "LTAIalpha00000000001", "secret": "alpha-secret"}},
            "regions": ["cn-hangzhou"],
        },
        {"name": "beta", "credentials": {"access_key": {"id": "LTAIbeta000000000001", "secret": "beta-secret"}}},
    ]
    raw = scan(settings_for(emu, accounts=accounts, regions=[]))
    assert raw.errors == []
    assert raw.regions == [("alpha", "cn-hangzhou"), ("beta", "eu-central-1")]
    assert Counter(r.account for r in raw.responses if r.action == "DescribeSecurityGroupAttribute") == {
        "alpha": 6,
        "beta": 4,
    }
    assert emu.calls["DescribeRegions"] == 1  # only beta needed the region list


def test_snapshot_round_trip_through_the_emulator(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    emu = make_emulator(synthetic_groups=20, synthetic_regions=2, attribute_page_cap=50, failing_regions=["eu-west-1"])
    raw = scan(settings_for(emu, regions=["cn-hangzhou", "cn-shanghai", "eu-west-1"], max_retries=0))
    write_snapshot(raw, tmp_path)

    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert "errors.json" in files and "default/cn-hangzhou.DescribeSecurityGroups.json" in files
    assert any(f.endswith(".2.json") and ".sg-" in f for f in files)  # a group's second page
    errors = json.loads((tmp_path / "errors.json").read_text())
    assert errors == [
        {
            "account": "default",
            "region": "eu-west-1",
            "code": "ServiceUnavailable",
            "message": errors[0]["message"],
            "security_group_id": "",
        }
    ]
    text = (tmp_path / "default" / "cn-hangzhou.DescribeSecurityGroups.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    replay = make_emulator(snapshot=tmp_path, attribute_page_cap=50)
    again = scan(settings_for(replay, regions=["cn-hangzhou", "cn-shanghai"]))
    assert again.errors == []
    assert rules_by_group(again) == rules_by_group(raw)
    assert without_request_ids(again) == without_request_ids(raw)


def test_settings_shapes_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = LiveSettings.model_validate(
        {
            "accounts": [
                {"name": "a", "credentials": {"access_key": {"id": AK_ID, "secret": AK_SECRET}}},
                {"name": "b", "credentials": {"ram_role_arn": "acs:ram::123456789012:role/audit"}},
                {"name": "c", "credentials": "default"},
            ],
            "endpoint": "http://127.0.0.1:8080",
        }
    )
    assert [a.credentials.type for a in settings.accounts] == ["access_key", "ram_role_arn", "default"]
    assert AK_SECRET not in repr(settings) and AK_SECRET not in str(settings.model_dump())
    assert settings.resolved_endpoint() == ("127.0.0.1:8080", "http")
    monkeypatch.setenv("SGWATCH_ECS_ENDPOINT", "https://ecs.example.test")
    assert LiveSettings().resolved_endpoint() == ("ecs.example.test", "https")
    with pytest.raises(ValidationError):
        LiveSettings.model_validate({"accounts": [{"name": "x"}, {"name": "x"}]})
    with pytest.raises(ValidationError):
        LiveSettings.model_validate({"accounts": [{"name": "../etc"}]})


def test_default_credential_chain_from_the_environment(make_emulator: EmulatorFactory) -> None:
    # The credentials library reads its environment once at import, so this runs in a child.
    emu = make_emulator(synthetic_groups=3, synthetic_regions=1)
    code = (
        "from sgwatch.sources.live import LiveSettings, scan\n"
        f"raw = scan(LiveSettings(endpoint={emu.url!r}, regions=['cn-hangzhou'], requests_per_second=0))\n"
        "print(len(raw.responses), len(raw.errors))\n"
    )
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    # listing, 3 groups, one page each of ENIs and instances, the prefix lists
    assert out.stdout.split() == [str(4 + 2 + len(prefix_lists_named(emu, "cn-hangzhou"))), "0"]


# -- prefix lists: a rule naming one lets in what its entries say -------------------------------
def _estate_with_list(entries: list[str] | None) -> Estate:
    """One group whose rule opens MySQL to prefix list pl-partners (absent when entries is None)."""
    estate = Estate.synthetic(1, ["cn-hangzhou"], seed=3, prefix_lists=False)
    (group,) = estate.regions("default")["cn-hangzhou"].groups.values()
    group.permissions = [
        {
            "SecurityGroupRuleId": "sgr-partners",
            "Direction": "ingress",
            "IpProtocol": "TCP",
            "PortRange": "3306/3306",
            "SourcePrefixListId": "pl-partners",
            "Policy": "Accept",
            "Priority": "1",
            "NicType": "intranet",
            "Description": "partners",
        }
    ]
    if entries is not None:
        estate.put_prefix_list(
            "default",
            "cn-hangzhou",
            PrefixList.from_body({"Entries": {"Entry": [{"Cidr": c} for c in entries]}}, prefix_list_id="pl-partners"),
        )
    return estate


def _drift(raw: RawScan) -> Report:
    # Against a baseline where the group has no rules: the rule naming the list is the drift.
    # Judged on paper (membership left out): what the list's entries open, whoever the members are.
    snap = replace(parse_scan(raw), membership={})
    (group,) = snap.groups.values()
    desired = Baseline(groups={group.key: replace(group, rules=())})
    return assess(desired, snap, CheckSettings(), datetime(2026, 12, 1, tzinfo=UTC))


def test_a_prefix_list_is_read_once_and_its_entries_decide(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    emu = make_emulator(estate=_estate_with_list(["0.0.0.0/0", "10.0.0.0/8"]))
    raw = scan(settings_for(emu))
    assert raw.errors == [] and emu.calls["DescribePrefixListAttributes"] == 1
    report = _drift(raw)
    assert report.complete
    assert [(f.kind, f.severity, f.checks) for f in report.findings] == [
        ("rule_added", "critical", ["internet-database-port"])
    ]
    # saved and read back offline, the list comes with the region the API leaves out
    write_snapshot(raw, tmp_path / "snap")
    (saved,) = (tmp_path / "snap" / "default").glob("cn-hangzhou.pl-partners.json")
    assert json.loads(saved.read_text())["RegionId"] == "cn-hangzhou"
    assert snapshot_source.load(tmp_path / "snap").prefix_lists == {
        ("default", "cn-hangzhou", "pl-partners"): ("0.0.0.0/0", "10.0.0.0/8")
    }


def test_a_policy_without_the_prefix_list_permission_leaves_the_scan_incomplete_not_stopped(
    make_emulator: EmulatorFactory,
) -> None:
    old_policy = frozenset({"DescribeSecurityGroups", "DescribeSecurityGroupAttribute"})
    emu = make_emulator(estate=_estate_with_list(["0.0.0.0/0"]), keys={AK_ID: AccessKey(AK_SECRET, actions=old_policy)})
    raw = scan(settings_for(emu))
    ((gid, error),) = [(e.security_group_id, e) for e in raw.errors]
    assert error.code == "Forbidden.RAM" and "grant ecs:DescribePrefixListAttributes" in error.message
    assert gid in rules_by_group(raw)  # the group itself was read
    report = _drift(raw)
    assert not report.complete
    assert [f.checks for f in report.findings] == [["list-unresolved"]]
    assert {e.code for e in report.errors} == {"Forbidden.RAM", "PrefixListUnresolved"}


def test_a_dangling_prefix_list_is_an_error_never_a_private_peer(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(estate=_estate_with_list(None))
    raw = scan(settings_for(emu))
    assert [e.code for e in raw.errors] == ["InvalidPrefixListId.NotFound"]
    assert not _drift(raw).complete


def test_a_port_range_list_is_read_and_only_its_ports_count(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    estate = Estate.synthetic(1, ["cn-hangzhou"], seed=3, prefix_lists=False)
    (group,) = estate.regions("default")["cn-hangzhou"].groups.values()
    group.permissions = [
        {
            "SecurityGroupRuleId": "sgr-web",
            "Direction": "ingress",
            "IpProtocol": "TCP",
            "PortRange": "-1/-1",
            "PortRangeListId": "prl-web",
            "SourceCidrIp": "0.0.0.0/0",
            "Policy": "Accept",
            "Priority": "1",
            "NicType": "intranet",
        }
    ]
    entries = [{"PortRange": "443/443", "Description": "https"}, {"PortRange": "80/80", "Description": "http"}]
    estate.put_port_range_list("default", "cn-hangzhou", PortRangeList("prl-web", entries=entries))
    emu = make_emulator(estate=estate)
    raw = scan(settings_for(emu))
    assert raw.errors == [] and emu.calls["DescribePortRangeListEntries"] == 1
    report = _drift(raw)
    assert report.complete
    ((finding, ports),) = [(f, [(e.from_port, e.to_port) for e in f.new_exposures]) for f in report.findings]
    assert finding.checks == ["internet-unapproved-port"] and ports == [(80, 80), (443, 443)]  # not "all ports"
    write_snapshot(raw, tmp_path / "snap")
    saved = json.loads((tmp_path / "snap" / "default" / "cn-hangzhou.prl-web.json").read_text())
    assert (saved["RegionId"], saved["PortRangeListId"]) == ("cn-hangzhou", "prl-web")
    assert snapshot_source.load(tmp_path / "snap").port_lists == {
        ("default", "cn-hangzhou", "prl-web"): ((80, 80), (443, 443))
    }


# -- the region of an answer is the region asked -------------------------------------------


def _written_outside(root: Path, inside: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(inside)]


@pytest.mark.parametrize("answer_region", ["../../x", "/absolute/x", "cn-shanghai"])
def test_an_answer_naming_another_region_is_malformed_never_trusted(
    make_emulator: EmulatorFactory, tmp_path: Path, answer_region: str
) -> None:
    emu = make_emulator(synthetic_groups=6, synthetic_regions=1, answer_region=answer_region)
    raw = scan(settings_for(emu))
    assert [(e.region, e.code, e.security_group_id) for e in raw.errors] == [("cn-hangzhou", "MalformedResponse", "")]
    assert "answered for region" in raw.errors[0].message
    # nothing the body claims is kept; the membership listings name no region and are the asked one's
    membership = ("DescribeNetworkInterfaces", "DescribeInstances")
    assert [r for r in raw.responses if r.action not in membership] == []
    assert {r.region for r in raw.responses} <= {"cn-hangzhou"}
    out = tmp_path / "out"
    write_snapshot(raw, out / "snapshot")
    snap = parse_scan(raw)
    baseline.capture(snap, out / "baseline")
    assert _written_outside(tmp_path, out) == [] and not snap.complete and snap.groups == {}


def test_every_kept_answer_carries_the_region_asked(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=12, synthetic_regions=2)
    raw = scan(settings_for(emu))
    assert {r.region for r in raw.responses} == {"cn-hangzhou", "cn-shanghai"}
    assert all(r.region == r.body["RegionId"] for r in raw.responses)


def test_a_region_listed_by_describe_regions_that_is_not_a_region_is_not_scanned(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator(synthetic_groups=4, synthetic_regions=1, extra_regions=("../../x",))
    raw = scan(settings_for(emu, regions=[]))
    assert raw.regions == [("default", "cn-hangzhou")]
    assert [(e.region, e.code) for e in raw.errors] == [("", "MalformedResponse")]
    assert "'../../x' is not a region id" in raw.errors[0].message
    assert len(rules_by_group(raw)) == 4


def test_a_listing_naming_something_else_than_a_group_fails_the_region(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=4, synthetic_regions=1)
    hostile = "sg-a/../../x"
    emu.estate.regions("default")["cn-hangzhou"].groups[hostile] = SecurityGroup(hostile, {})
    raw = scan(settings_for(emu))
    assert [(e.region, e.code, e.security_group_id) for e in raw.errors] == [("cn-hangzhou", "MalformedResponse", "")]
    assert emu.calls["DescribeSecurityGroupAttribute"] == 0  # the hostile id was never asked about
    assert not any(r.action == "DescribeSecurityGroups" for r in raw.responses)


@pytest.mark.parametrize("where", ["settings", "account"])
def test_settings_refuse_a_region_that_is_not_a_region_id(where: str) -> None:
    account = {"name": "default", "regions": ["../x"]} if where == "account" else {"name": "default"}
    with pytest.raises(ValidationError, match=r"'\.\./x' is not a region id"):
        LiveSettings.model_validate({"accounts": [account], "regions": ["../x"] if where == "settings" else []})


def test_pages_that_loop_fail_the_listing_at_once_by_the_shared_paging_rule(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(synthetic_groups=9, synthetic_regions=1, list_page_cap=2, loop_pages=True)
    raw = scan(settings_for(emu, deadline_seconds=20))
    assert [(e.region, e.code, e.security_group_id) for e in raw.errors] == [("cn-hangzhou", "MalformedResponse", "")]
    # page 3 leads back to page 2, whose token page 1 gave: no fourth call, no waiting for the deadline
    assert "page 3 repeats the NextToken of an earlier page: the pages loop" in raw.errors[0].message
    assert emu.calls["DescribeSecurityGroups"] == 3
    assert not any(r.action == "DescribeSecurityGroups" for r in raw.responses)
