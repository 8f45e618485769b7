"""A group reference whose owner is the account's own UID is the same account (issue 12, item 8)."""

from __future__ import annotations

import json
from pathlib import Path

from sgwatch.core.model import PeerKind
from sgwatch.sources import snapshot
from sgwatch.sources.live import scan
from sgwatch.sources.raw import RawResponse, RawScan
from tests import livefixtures
from tests.livefixtures import EmulatorFactory, settings_for
from tests.test_cli import sgwatch

UID = "1234567890123456"


def _attribute(owner: str) -> dict[str, object]:
    rule = {
        "Direction": "ingress",
        "IpProtocol": "TCP",
        "PortRange": "22/22",
        "SourceGroupId": "sg-bastion",
        "SourceGroupOwnerAccount": owner,
        "Policy": "Accept",
        "Priority": "1",
    }
    return {
        "RegionId": "cn-hangzhou",
        "SecurityGroupId": "sg-app",
        "NextToken": "",
        "Permissions": {"Permission": [rule]},
    }


def _snapshot(tmp_path: Path, owner: str) -> Path:
    folder = tmp_path / "snap" / "cn-hangzhou"
    folder.mkdir(parents=True)
    (folder / "sg-app.json").write_text(json.dumps(_attribute(owner)))
    listing = {
        "RegionId": "cn-hangzhou",
        "NextToken": "",
        "SecurityGroups": {"SecurityGroup": [{"SecurityGroupId": "sg-app", "SecurityGroupType": "normal"}]},
    }
    (folder / "DescribeSecurityGroups.json").write_text(json.dumps(listing))
    return tmp_path / "snap"


def _peer(snap: snapshot.Snapshot) -> tuple[PeerKind, str, str]:
    (group,) = snap.groups.values()
    (rule,) = group.rules
    return rule.peer.kind, rule.peer.value, rule.peer.owner


def test_the_own_uid_as_owner_is_the_same_account(tmp_path: Path) -> None:
    path = _snapshot(tmp_path, UID)
    assert _peer(snapshot.load(path, uids={"default": UID})) == (PeerKind.GROUP, "sg-bastion", "")
    # Without the UID sgwatch cannot tell: another account's, as before.
    assert _peer(snapshot.load(path)) == (PeerKind.GROUP, "sg-bastion", UID)
    # Another account stays another account.
    assert _peer(snapshot.load(_snapshot(tmp_path / "o", "6543210987654321"), uids={"default": UID}))[2]


def test_a_live_scan_carries_the_configured_uids() -> None:
    raw = RawScan(account_uids={"default": UID})
    raw.responses.append(RawResponse("default", "DescribeSecurityGroupAttribute", _attribute(UID), "cn-hangzhou"))
    assert _peer(snapshot.parse_scan(raw)) == (PeerKind.GROUP, "sg-bastion", "")


def test_report_with_uid_in_config_sees_no_cross_account_reference(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path, UID)
    base = tmp_path / "baseline.yaml"
    base.write_text("account: default\nregion: cn-hangzhou\nsecurity_groups:\n  - id: sg-app\n    ingress: []\n")
    config = tmp_path / "sgwatch.yaml"
    config.write_text(f'accounts:\n  - {{name: default, uid: "{UID}"}}\n')
    with_uid = sgwatch("report", "--config", config, "--baseline", base, "--snapshot", snap, "--format", "json")
    without = sgwatch("report", "--baseline", base, "--snapshot", snap, "--format", "json")
    checks = [c for f in json.loads(with_uid.stdout)["findings"] for c in f["checks"]]
    assert checks == ["private-peer-rule"], with_uid.stderr
    assert [c for f in json.loads(without.stdout)["findings"] for c in f["checks"]] == ["cross-account-reference"]


make_emulator = livefixtures.make_emulator
no_proxy = livefixtures.no_proxy


def test_a_live_scan_records_each_configured_uid(make_emulator: EmulatorFactory) -> None:
    settings = settings_for(make_emulator(synthetic_groups=2, synthetic_regions=1))
    accounts = [a.model_copy(update={"uid": UID}) for a in settings.accounts]
    raw = scan(settings.model_copy(update={"accounts": accounts}))
    assert raw.account_uids == {accounts[0].name: UID}
