"""Every account of an organisation: Resource Directory discovery, assumed roles, the emulator's STS.

Everything goes through the official SDKs against the emulator on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sgwatch import config
from sgwatch.emulator import AccessKey, Emulator
from sgwatch.emulator.resourcedirectory import DirectoryMember, enrol, organization_estate
from sgwatch.emulator.sts import Role, uid_of
from sgwatch.errors import AuthError, InputError
from sgwatch.sources import identity, live, organization
from sgwatch.sources.identity import AssumedRole, caller_uid, credential_client
from sgwatch.sources.live_settings import (
    AccessKeyCredentials,
    LiveSettings,
    OrganizationSettings,
    RamRoleArnCredentials,
)
from sgwatch.sources.organization import Directory, DiscoveryFailed
from tests.livefixtures import no_proxy  # noqa: F401 - autouse fixture

MGMT_ID, MGMT_SECRET = "LTAImanagement000001", "management-secret-never-shown-0123"
ROLE = "sgwatch-reader"
REGIONS = ["cn-hangzhou", "cn-shanghai"]


@pytest.fixture
def org() -> Iterator[tuple[Emulator, list[str]]]:
    estate, uids = organization_estate(3, 4, REGIONS, seed=3)
    emu = Emulator(estate, keys={MGMT_ID: MGMT_SECRET})
    enrol(emu.directory, emu.sts, uids, ROLE)
    emu.start()
    yield emu, uids
    emu.stop()


def org_settings(emu: Emulator, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "discover": "resource_directory",
        "role_name": ROLE,
        "credentials": {"access_key": {"id": MGMT_ID, "secret": MGMT_SECRET}},
        "sts_endpoint": emu.url,
        "resource_directory_endpoint": emu.url,
    }
    return {**base, **overrides}


def live_settings(emu: Emulator, **org: Any) -> LiveSettings:
    return LiveSettings.model_validate(
        {
            "endpoint": emu.url,
            "regions": REGIONS,
            "requests_per_second": 0,
            "backoff_base_ms": 10,
            "backoff_cap_ms": 50,
            "organization": org_settings(emu, **org),
        }
    )


# -- config -----------------------------------------------------------------------------------
def test_the_config_names_a_directory_and_a_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXT", "external-id-value-77")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "accounts:\n  discover: resource_directory\n  role_name: sgwatch-reader\n"
        "  external_id: ${EXT}\n  exclude: ['1000000000000001']\n"
    )
    loaded = config.load(cfg, environ={})
    assert isinstance(loaded.accounts, OrganizationSettings)
    assert loaded.accounts.role_arn("123456") == "acs:ram::123456:role/sgwatch-reader"
    assert loaded.accounts.session_name == "sgwatch" and loaded.accounts.duration_seconds == 3600
    assert "external-id-value-77" in config.secrets(loaded)
    settings = loaded.live()
    assert settings.organization == loaded.accounts


def test_the_list_form_still_works(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("accounts:\n  - name: prod\n    uid: '1234567'\n")
    loaded = config.load(cfg, environ={})
    assert loaded.live().organization is None
    assert [a.name for a in loaded.live().accounts] == ["prod"] and loaded.account_uids() == {"prod": "1234567"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "accounts:\n  discover: resource_directory\n  role_name: x\n  sesion_name: x\n",
            "c.yaml:4: accounts.sesion_name: unknown key; did you mean 'session_name'?",
        ),
        ("accounts:\n  discover: ldap\n  role_name: x\n", "c.yaml:2: accounts.discover: Input should be"),
        ("accounts:\n  discover: resource_directory\n", "accounts.role_name: Field required"),
        (
            "accounts:\n  discover: resource_directory\n  role_name: r\n  session_name: audit\n",
            "accounts.session_name: must contain 'sgwatch'",
        ),
        ("accounts:\n  - {nam: prod}\n", "c.yaml:2: accounts.0.nam: unknown key; did you mean 'name'?"),
        ("accounts: []\n", "accounts: give at least one account"),
        ("accounts: prod\n", "accounts: Input should be a valid list"),
    ],
)
def test_a_bad_accounts_section_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError) as err:
        config.load(cfg, environ={})
    (line,) = str(err.value).splitlines()
    assert needle in line, line


# -- scanning every member ----------------------------------------------------------------------
def test_every_member_is_scanned_through_its_role_and_the_credentials_are_kept(
    org: tuple[Emulator, list[str]],
) -> None:
    emu, uids = org
    settings = live_settings(emu)
    raw = live.scan(settings)
    assert not raw.errors
    assert {r.account for r in raw.responses} == set(uids)
    assert raw.account_uids == {uid: uid for uid in uids}
    listed = {
        (r.account, g["SecurityGroupId"])
        for r in raw.responses
        if r.action == "DescribeSecurityGroups"
        for g in r.body["SecurityGroups"]["SecurityGroup"]
    }
    assert listed == {(uid, gid) for uid in uids for r in emu.estate.regions(uid).values() for gid in r.groups}
    assert sorted(emu.sts.sessions) == [(f"acs:ram::{uid}:role/{ROLE}", "sgwatch") for uid in uids]
    assert emu.calls["ListAccounts"] == 1 and emu.calls["AssumeRole"] == 3

    live.scan(settings)  # the next scan: the same members, the same credentials
    assert emu.calls["ListAccounts"] == 1 and emu.calls["AssumeRole"] == 3


def test_a_member_read_with_a_key_of_its_own_is_refused(org: tuple[Emulator, list[str]]) -> None:
    # the emulator checks that sgwatch reads members through the assumed role's token
    emu, uids = org
    emu.keys["LTAImemberkey0000001"] = AccessKey("member-secret-000000000", account=uids[0])
    settings = LiveSettings.model_validate(
        {
            "endpoint": emu.url,
            "regions": REGIONS,
            "accounts": [
                {
                    "name": uids[0],
                    "credentials": {"access_key": {"id": "LTAImemberkey0000001", "secret": "member-secret-000000000"}},
                }
            ],
        }
    )
    with pytest.raises(AuthError, match=r"Forbidden\.RAM"):
        live.scan(settings)


@pytest.mark.parametrize("refusal", ["NoPermission", "EntityNotExist.Role"])
def test_a_role_that_cannot_be_assumed_fails_its_account_only(org: tuple[Emulator, list[str]], refusal: str) -> None:
    emu, uids = org
    emu.sts.roles[f"acs:ram::{uids[1]}:role/{ROLE}"].refuse = refusal
    raw = live.scan(live_settings(emu))
    arn = f"acs:ram::{uids[1]}:role/{ROLE}"
    assert {e.account for e in raw.errors} == {uids[1]}
    assert sorted(e.region for e in raw.errors) == REGIONS  # each region unread, never emptied
    message = raw.errors[0].message
    assert arn in message and refusal in message
    assert ("create the role" if refusal.startswith("Entity") else "trust policy") in message
    assert MGMT_SECRET not in message
    assert {r.account for r in raw.responses} == {uids[0], uids[2]}


def test_a_refused_role_keeps_its_groups_unknown_not_deleted(org: tuple[Emulator, list[str]]) -> None:
    from sgwatch.sources.snapshot import parse_scan

    emu, uids = org
    emu.sts.roles[f"acs:ram::{uids[0]}:role/{ROLE}"].refuse = "NoPermission"
    snap = parse_scan(live.scan(live_settings(emu)))
    assert not snap.complete
    assert not any(account == uids[0] for account, _ in snap.listed)


def test_the_session_expires_and_is_renewed_between_scans(org: tuple[Emulator, list[str]]) -> None:
    emu, _ = org
    emu.sts.max_lifetime = 3  # every session lasts 2 to 3 s (whole seconds), whatever is asked
    settings = live_settings(emu, session_name="sgwatch-expiry")
    assert not live.scan(settings).errors
    assert emu.calls["AssumeRole"] == 3
    time.sleep(3.1)
    raw = live.scan(settings)
    assert not raw.errors, raw.errors
    assert emu.calls["AssumeRole"] == 6
    assert not [code for (_, code) in emu.results if code.startswith("InvalidSecurityToken")]


def test_an_expired_token_is_refused_and_renewed_before_expiry() -> None:
    now = [1_000_000.0]
    emu = Emulator(synthetic_groups=0, keys={MGMT_ID: MGMT_SECRET})
    emu.sts.clock = lambda: now[0]
    arn = emu.sts.add_role(Role(account="1000000000000009", name=ROLE))
    emu.start()
    try:
        creds = RamRoleArnCredentials(
            role_arn=arn,
            duration_seconds=900,
            sts_endpoint=emu.url,
            source=AccessKeyCredentials(id=MGMT_ID, secret=MGMT_SECRET),
        )
        role = AssumedRole(creds, credential_client(creds.source), clock=lambda: now[0])
        first = role.get_credentials()
        now[0] += 600  # within the session, before the renewal point (900 - 900/4)
        assert role.get_credentials().get_access_key_id() == first.get_access_key_id()
        now[0] += 100  # past the renewal point, still valid: renewed
        second = role.get_credentials()
        assert second.get_access_key_id() != first.get_access_key_id() and role.assumed == 2
        now[0] += 300  # the first session is over: the emulator refuses its token
        old = AccessKeyCredentials(
            id=first.get_access_key_id(),
            secret=first.get_access_key_secret(),
            security_token=first.get_security_token(),
        )
        with pytest.raises(AuthError, match=r"InvalidSecurityToken\.Expired"):
            caller_uid(old, sts_endpoint_url=emu.url)
    finally:
        emu.stop()


def test_a_failed_renewal_keeps_the_session_until_it_ends() -> None:
    now = [2_000_000.0]
    emu = Emulator(synthetic_groups=0, keys={MGMT_ID: MGMT_SECRET})
    emu.sts.clock = lambda: now[0]
    arn = emu.sts.add_role(Role(account="1000000000000008", name=ROLE))
    emu.start()
    try:
        creds = RamRoleArnCredentials(
            role_arn=arn, sts_endpoint=emu.url, source=AccessKeyCredentials(id=MGMT_ID, secret=MGMT_SECRET)
        )
        role = AssumedRole(creds, credential_client(creds.source), clock=lambda: now[0])
        first = role.get_credentials()
        emu.sts.roles[arn.lower()].refuse = "NoPermission"  # the trust is withdrawn
        now[0] += 3000  # past the renewal point (3600 - 900), before the end
        assert role.get_credentials().get_access_key_id() == first.get_access_key_id()
        now[0] += 700  # the session is over: the refusal is the answer now
        with pytest.raises(identity.RoleRefused) as err:
            role.get_credentials()
        assert arn in str(err.value) and "NoPermission" in str(err.value)
    finally:
        emu.stop()


def test_a_role_of_the_account_list_that_is_refused_fails_that_account_only(org: tuple[Emulator, list[str]]) -> None:
    emu, uids = org
    source = {"type": "access_key", "id": MGMT_ID, "secret": MGMT_SECRET}
    accounts = [
        {
            "name": f"a{i}",
            "credentials": {
                "type": "ram_role_arn",
                "role_arn": f"acs:ram::{uid}:role/{ROLE}",
                "sts_endpoint": emu.url,
                "source": source,
            },
        }
        for i, uid in enumerate(uids[:2])
    ]
    emu.sts.roles[f"acs:ram::{uids[0]}:role/{ROLE}"].refuse = "EntityNotExist.Role"
    raw = live.scan(LiveSettings.model_validate({"endpoint": emu.url, "regions": REGIONS, "accounts": accounts}))
    assert {e.account for e in raw.errors} == {"a0"} and {r.account for r in raw.responses} == {"a1"}


def test_caller_uid_names_the_account_of_the_credentials(org: tuple[Emulator, list[str]]) -> None:
    emu, uids = org
    assert caller_uid(AccessKeyCredentials(id=MGMT_ID, secret=MGMT_SECRET), sts_endpoint_url=emu.url) == uid_of(
        "default"
    )
    role = organization.discover(live_settings(emu)).accounts[2].credentials  # a member's role
    assert caller_uid(role) == uids[2]
    with pytest.raises(AuthError) as err:
        caller_uid(
            AccessKeyCredentials(id=MGMT_ID, secret="wrong-secret-0000000"), sts_endpoint_url=emu.url, account="a"
        )
    assert "account 'a'" in str(err.value) and "SignatureDoesNotMatch" in str(err.value)
    assert "wrong-secret" not in str(err.value)


# -- discovery ------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_joined_and_departed_members_are_picked_up_at_the_next_discovery(org: tuple[Emulator, list[str]]) -> None:
    emu, uids = org
    clock = Clock()
    directory = Directory(OrganizationSettings.model_validate(org_settings(emu)), clock=clock)
    assert [a.name for a in directory.discover().accounts] == uids
    emu.directory.remove(uids[0])
    emu.directory.add(DirectoryMember("1000000000000077"))
    emu.directory.add(DirectoryMember("1000000000000078", status="CreateVerifying"))  # not yet a member
    clock.now += 3599
    assert [a.name for a in directory.discover().accounts] == uids  # kept until the interval passes
    clock.now += 2
    found = directory.discover()
    assert [a.name for a in found.accounts] == [*uids[1:], "1000000000000077"]
    assert found.pages == 1 and not found.errors


def test_a_failed_discovery_keeps_the_last_list_and_is_an_error(org: tuple[Emulator, list[str]]) -> None:
    emu, uids = org
    clock = Clock()
    directory = Directory(OrganizationSettings.model_validate(org_settings(emu)), clock=clock)
    directory.discover()
    emu.keys[MGMT_ID].actions = frozenset({"AssumeRole"})  # ListAccounts no longer granted
    clock.now += 4000
    found = directory.discover()
    assert [a.name for a in found.accounts] == uids
    (error,) = found.errors
    assert error.code == "Forbidden.RAM" and "scanning the 3 account(s) discovered at" in error.message


def test_a_first_discovery_that_is_refused_names_the_permission(org: tuple[Emulator, list[str]]) -> None:
    emu, _ = org
    emu.keys[MGMT_ID].actions = frozenset({"AssumeRole"})
    with pytest.raises(AuthError) as err:
        Directory(OrganizationSettings.model_validate(org_settings(emu))).discover()
    assert "resourcemanager:ListAccounts" in str(err.value) and "management-account-policy.json" in str(err.value)


def test_a_member_account_cannot_list_the_directory(org: tuple[Emulator, list[str]]) -> None:
    emu, _ = org
    emu.directory.management = "someone-else"
    with pytest.raises(AuthError, match=r"EntityNotExists\.ResourceDirectory"):
        Directory(OrganizationSettings.model_validate(org_settings(emu))).discover()


def test_an_unreachable_directory_with_no_list_stops_the_scan() -> None:
    settings = OrganizationSettings.model_validate(
        {
            "discover": "resource_directory",
            "role_name": ROLE,
            "credentials": {"access_key": {"id": MGMT_ID, "secret": MGMT_SECRET}},
            "resource_directory_endpoint": "http://127.0.0.1:9",
        }
    )
    with pytest.raises(DiscoveryFailed) as err:
        Directory(settings).discover()
    assert err.value.exit_code == 3 and "no account could be scanned" in str(err.value)


def test_paging_a_large_directory_lists_every_member(org: tuple[Emulator, list[str]]) -> None:
    emu, uids = org
    emu.directory.page_cap = 7  # the server pages smaller than asked
    extra = [str(1_000_000_000_000_100 + i) for i in range(20)]
    for uid in extra:
        emu.directory.add(DirectoryMember(uid))
    found = Directory(OrganizationSettings.model_validate(org_settings(emu))).discover()
    assert [a.name for a in found.accounts] == sorted([*uids, *extra])
    assert found.pages == 4


def test_a_short_listing_is_a_failed_read_not_departed_members(
    org: tuple[Emulator, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, uids = org
    clock = Clock()
    directory = Directory(OrganizationSettings.model_validate(org_settings(emu)), clock=clock)
    directory.discover()
    original = emu.directory.handle

    def short(caller: str, params: Any) -> dict[str, Any]:
        body = original(caller, params)
        body["Accounts"]["Account"] = body["Accounts"]["Account"][:1]  # claims 3, lists 1
        return body

    monkeypatch.setattr(emu.directory, "handle", short)
    clock.now += 4000
    found = directory.discover()
    assert [a.name for a in found.accounts] == uids
    assert found.errors[0].code == "MalformedResponse" and "1 members listed of the 3" in found.errors[0].message


def test_include_and_exclude_pick_members(org: tuple[Emulator, list[str]]) -> None:
    emu, uids = org
    only = Directory(OrganizationSettings.model_validate(org_settings(emu, include=[uids[0], "99999999"]))).discover()
    assert [a.name for a in only.accounts] == [uids[0]]
    assert [e.code for e in only.errors] == ["NotAMember"]
    rest = Directory(OrganizationSettings.model_validate(org_settings(emu, exclude=[uids[0]]))).discover()
    assert [a.name for a in rest.accounts] == uids[1:]


def test_a_hostile_account_id_never_becomes_a_name(org: tuple[Emulator, list[str]]) -> None:
    emu, _ = org
    emu.directory.add(DirectoryMember("../../etc"))
    with pytest.raises(DiscoveryFailed, match="AccountId"):
        Directory(OrganizationSettings.model_validate(org_settings(emu))).discover()


def test_assumed_roles_are_shared_across_scans_by_settings() -> None:
    creds = RamRoleArnCredentials(
        role_arn="acs:ram::123456:role/r", source=AccessKeyCredentials(id="a", secret="one-secret-000000")
    )
    other = creds.model_copy(update={"source": AccessKeyCredentials(id="a", secret="two-secret-000000")})
    assert identity.assumed_role(creds) is identity.assumed_role(creds)
    assert identity.assumed_role(creds) is not identity.assumed_role(other)
    assert organization.directory(
        OrganizationSettings(discover="resource_directory", role_name="r")
    ) is organization.directory(OrganizationSettings(discover="resource_directory", role_name="r"))


# -- through the command line -------------------------------------------------------------------
def _sgwatch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGWATCH_") and "proxy" not in k.lower()}
    env.update(MGMT_SECRET=MGMT_SECRET, ALIBABA_CLOUD_ECS_METADATA_DISABLED="true")
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def test_report_scans_every_member_and_a_refused_role_is_incomplete(
    org: tuple[Emulator, list[str]], tmp_path: Path
) -> None:
    emu, uids = org
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"endpoint: {emu.url}\nregions: [{', '.join(REGIONS)}]\nscan: {{requests_per_second: 0}}\n"
        "accounts:\n  discover: resource_directory\n  role_name: sgwatch-reader\n"
        f"  credentials: {{access_key: {{id: {MGMT_ID}, secret: '${{MGMT_SECRET}}'}}}}\n"
        f"  sts_endpoint: {emu.url}\n  resource_directory_endpoint: {emu.url}\n"
    )
    captured = _sgwatch("baseline", "capture", "--config", cfg, "--output", tmp_path / "b")
    assert captured.returncode == 0, captured.stderr
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == uids  # one folder per member
    clean = _sgwatch("report", "--config", cfg, "--baseline", tmp_path / "b")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    arn = f"acs:ram::{uids[1]}:role/{ROLE}"
    emu.sts.roles[arn].refuse = "NoPermission"
    refused = _sgwatch("report", "--config", cfg, "--baseline", tmp_path / "b", "--format", "json")
    assert refused.returncode == 3, refused.stderr
    report = json.loads(refused.stdout)
    assert {e["account"] for e in report["errors"]} == {uids[1]}
    assert all(arn in e["message"] and "sts:AssumeRole" in e["message"] for e in report["errors"])
    assert not report["findings"]  # the unread account's groups are not "deleted"
    assert MGMT_SECRET not in refused.stdout + refused.stderr
