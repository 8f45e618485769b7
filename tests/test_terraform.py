"""A Terraform state as the baseline: the reader, placement by id, and every drift kind end to end.

The fixture (tests/fixtures/terraform/) is a small project and the state Terraform would write for
it, with a snapshot of the cloud as it applied it: the round trip reports nothing, and each test
edits a copy of the snapshot (or the state) to make one kind of drift.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sgwatch import config as config_file
from sgwatch import desired, terraform
from sgwatch.core import engine
from sgwatch.core.checks import CheckSettings
from sgwatch.core.managed import NOT_FOUND
from sgwatch.core.model import PeerKind, Snapshot
from sgwatch.errors import InputError
from sgwatch.render.inert import markdown_cell
from sgwatch.sources.ecs_rules import rule_from_api
from sgwatch.sources.snapshot import load as load_snapshot

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "terraform"
STATE = FIXTURE / "state.json"
SCHEMA = json.loads((ROOT / "sgwatch" / "schemas" / "report.schema.json").read_text())
WEB, DB, BATCH = "sg-bp1web00000000000001", "sg-bp1db000000000000002", "sg-uf6batch00000000003"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
HTTPS = "module.web.alicloud_security_group_rule.https[0]"


def sgwatch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def state_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(STATE.read_text())
    return doc


def write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path


def snapshot_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE / "snapshot", tmp_path / "snapshot"))


def edit(path: Path, change: Callable[[Any], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def permissions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    perms: list[dict[str, Any]] = doc["Permissions"]["Permission"]
    return perms


def report_json(tmp_path: Path, *extra: str | Path, baseline: Path = STATE) -> tuple[int, dict[str, Any]]:
    result = sgwatch("report", "--baseline", baseline, "--snapshot", tmp_path / "snapshot", "--format", "json", *extra)
    assert result.returncode in (0, 1, 3), result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    return result.returncode, report


def resource(doc: dict[str, Any], address: str) -> dict[str, Any]:
    """The attributes of one instance of the state, by address."""
    for res in doc["resources"]:
        base = f"{res['module']}.{res['type']}.{res['name']}" if "module" in res else f"{res['type']}.{res['name']}"
        for inst in res["instances"]:
            key = inst.get("index_key")
            index = "" if key is None else f"[{key}]" if isinstance(key, int) else f'["{key}"]'
            if base + index == address:
                attrs: dict[str, Any] = inst["attributes"]
                return attrs
    raise KeyError(address)


# -- the reader ------------------------------------------------------------------------------------


def test_the_fixture_state_reads_every_group_rule_and_address() -> None:
    state = terraform.read_state(STATE)
    assert sorted(state.groups) == sorted([WEB, DB, BATCH])
    web = state.groups[WEB]
    assert web.address == "module.web.alicloud_security_group.this"
    assert (
        web.attributes is not None and web.attributes.name == "web" and web.attributes.inner_access_policy == "accept"
    )
    assert state.groups[DB].attributes is not None and state.groups[DB].attributes.inner_access_policy == "drop"
    assert sorted(web.rule_addresses.values()) == [
        "module.web.alicloud_security_group_rule.https[0]",
        "module.web.alicloud_security_group_rule.https_v6[0]",
        "module.web.alicloud_security_group_rule.ssh",
    ]
    peers = {r.peer.kind: r.peer for r in web.rules}
    assert peers[PeerKind.CIDR6].value == "::/0"
    assert peers[PeerKind.PREFIX_LIST].value == "pl-bp1office0000000001"
    (db_rule,) = state.groups[DB].rules
    assert (db_rule.peer.kind, db_rule.peer.value, db_rule.key.from_port) == (PeerKind.GROUP, WEB, 3306)
    batch = state.groups[BATCH]
    assert set(batch.rule_addresses.values()) >= {
        'alicloud_security_group_rule.batch_egress["dns"]',
        'alicloud_security_group_rule.batch_egress["https"]',
    }
    deny = next(r for r in batch.rules if r.policy == "drop")
    assert (deny.protocol, deny.key.from_port, deny.priority) == ("all", -1, 100)
    assert state.prefix_lists == {"pl-bp1office0000000001": ("47.100.12.0/24", "47.100.13.0/24")}
    assert terraform.is_state(STATE.read_bytes())


def test_omitted_attributes_take_the_provider_schema_defaults(tmp_path: Path) -> None:
    doc = state_doc()
    attrs = resource(doc, "alicloud_security_group_rule.db_from_web")
    # A state written before these attributes existed, or with them null: port_range -1/-1, priority 1, accept.
    for name in ("port_range", "priority", "policy", "nic_type", "security_group_rule_id"):
        attrs.pop(name)
    attrs["ip_protocol"] = "icmp"
    (rule,) = terraform.read_state(write(tmp_path / "s.json", doc)).groups[DB].rules
    assert (rule.protocol, rule.key.from_port, rule.key.to_port, rule.priority, rule.policy, rule.key.nic_type) == (
        "icmp",
        -1,
        -1,
        1,
        "accept",
        "intranet",
    )


def test_tcp_every_port_spellings_mean_what_the_api_reader_says(tmp_path: Path) -> None:
    doc = state_doc()
    resource(doc, HTTPS)["port_range"] = "1/65535"
    groups = terraform.read_state(write(tmp_path / "s.json", doc)).groups
    rule = next(r for r in groups[WEB].rules if r.peer.value == "0.0.0.0/0")
    api = rule_from_api(
        {"Direction": "ingress", "IpProtocol": "TCP", "PortRange": "-1/-1", "SourceCidrIp": "0.0.0.0/0"}
    )
    assert (rule.key.from_port, rule.key.to_port) == (api.key.from_port, api.key.to_port) == (1, 65535)


def test_older_provider_spellings_are_read(tmp_path: Path) -> None:
    doc = state_doc()
    db = resource(doc, "alicloud_security_group.db")
    # Before 1.239.0 the name was `name`; before 1.55.3 the policy was `inner_access`, a bool.
    db.pop("security_group_name")
    db.pop("inner_access_policy")
    db["name"], db["inner_access"] = "db-old", False
    rule = resource(doc, "alicloud_security_group_rule.db_from_web")
    rule.pop("source_group_owner_id")
    rule["source_group_owner_account"] = "1234567890123456"
    for res in doc["resources"]:
        res["provider"] = "provider.alicloud"  # Terraform 0.12
    state = terraform.read_state(write(tmp_path / "s.json", doc))
    attrs = state.groups[DB].attributes
    assert attrs is not None and (attrs.name, attrs.inner_access_policy) == ("db-old", "drop")
    assert state.groups[DB].rules[0].peer.owner == "1234567890123456"


def _show_json() -> dict[str, Any]:
    """The fixture as `terraform show -json` prints it."""
    doc = state_doc()
    root: dict[str, Any] = {"resources": [], "child_modules": []}
    modules: dict[str, dict[str, Any]] = {}
    for res in doc["resources"]:
        for inst in res["instances"]:
            key = inst.get("index_key")
            index = "" if key is None else f"[{json.dumps(key)}]"
            prefix = f"{res['module']}." if "module" in res else ""
            item = {
                "address": f"{prefix}{res['type']}.{res['name']}{index}",
                "mode": "managed",
                "type": res["type"],
                "name": res["name"],
                "provider_name": "registry.terraform.io/aliyun/alicloud",
                "schema_version": 0,
                "values": inst["attributes"],
                "sensitive_values": {},
            }
            if key is not None:
                item["index"] = key
            if "module" in res:
                modules.setdefault(res["module"], {"address": res["module"], "resources": []})["resources"].append(item)
            else:
                root["resources"].append(item)
    root["child_modules"] = list(modules.values())
    return {"format_version": "1.0", "terraform_version": "1.9.8", "values": {"root_module": root}}


def test_terraform_show_json_reads_as_the_state_does(tmp_path: Path) -> None:
    shown = terraform.read_state(write(tmp_path / "show.json", _show_json()))
    pulled = terraform.read_state(STATE)
    assert {g: (m.rules, dict(m.rule_addresses), m.attributes) for g, m in shown.groups.items()} == {
        g: (m.rules, dict(m.rule_addresses), m.attributes) for g, m in pulled.groups.items()
    }


def _bad(doc: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    change(doc)
    return doc


def _set(address: str, name: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda doc: resource(doc, address).__setitem__(name, value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.__setitem__("version", 3), "state format version 3"),
        (
            lambda d: d["resources"][2].__setitem__("provider", 'provider["registry.terraform.io/someone/alicloud"]'),
            "alicloud_security_group.db: provider 'registry.terraform.io/someone/alicloud' is not the alicloud",
        ),
        (_set(HTTPS, "ip_protocol", "tcpx"), f"{HTTPS}: unknown protocol 'tcpx'"),
        (_set(HTTPS, "port_range", "443-abc"), f"{HTTPS}: port range '443-abc'"),
        (_set(HTTPS, "type", "sideways"), f"{HTTPS}: type: 'sideways' is not ingress or egress"),
        (_set(HTTPS, "security_group_id", 42), f"{HTTPS}: security_group_id: expected text"),
        (_set(HTTPS, "cidr_ip", ["0.0.0.0/0"]), f"{HTTPS}: cidr_ip: expected a value"),
        (_set(HTTPS, "cidr_ip", "300.1.1.1/8"), f"{HTTPS}: '300.1.1.1/8' is not an IP address"),
        (
            lambda d: d["resources"][2]["instances"][0].__setitem__("schema_version", 1),
            "alicloud_security_group.db: schema version 1",
        ),
        (
            lambda d: d["resources"][2]["instances"][0].pop("attributes"),
            "alicloud_security_group.db: no attributes",
        ),
        (
            lambda d: d["resources"][2].__setitem__("type", "alicloud_security_group_ingress"),
            "alicloud_security_group_ingress.db: resource type 'alicloud_security_group_ingress' is not one",
        ),
        (
            lambda d: d.__setitem__("resources", [r for r in d["resources"] if "security_group" not in r["type"]]),
            "no alicloud_security_group or alicloud_security_group_rule resources",
        ),
        (lambda d: d.__setitem__("resources", {}), "resources: expected a list"),
        (
            lambda d: d["resources"][7].__setitem__("module", "module.w\neb"),
            "resource module.w\\x0aeb.alicloud_security_group.this: its address holds control characters",
        ),
    ],
)
def test_bad_state_is_one_line_naming_file_and_resource(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    path = write(tmp_path / "state.json", _bad(state_doc(), change))
    with pytest.raises(InputError) as caught:
        terraform.read_state(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and expected in message, message


def test_bad_state_through_the_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "state.json", _bad(state_doc(), _set(HTTPS, "ip_protocol", "tcpx")))
    snapshot_copy(tmp_path)
    result = sgwatch("report", "--baseline", path, "--snapshot", tmp_path / "snapshot")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(path) in line and HTTPS in line and "Traceback" not in result.stderr
    show = write(tmp_path / "show.json", {"format_version": "2.0"})
    result = sgwatch("validate", "--baseline", show)
    assert result.returncode == 2 and "format version '2.0'" in result.stderr


# -- accepted exposures beside the state -----------------------------------------------------------


def test_accepted_exposures_beside_the_state_by_id_or_address(tmp_path: Path) -> None:
    state = Path(shutil.copy(STATE, tmp_path / "prod.json"))
    (tmp_path / "prod.accepted.yaml").write_text(
        "accepted_exposures:\n"
        "  module.web.alicloud_security_group.this:\n"
        "    - {protocol: tcp, ports: 443/443, reason: public web tier, owner: team-web}\n"
        f"  {BATCH}:\n"
        "    - {direction: egress, protocol: tcp, ports: 443/443, reason: package mirrors, owner: team-batch}\n"
    )
    groups = desired.load([config_file.BaselineSource(path=state)]).terraform
    assert groups is not None
    assert [a.reason for a in groups.groups[WEB].accepted] == ["public web tier"]
    assert [a.owner for a in groups.groups[BATCH].accepted] == ["team-batch"]
    (tmp_path / "prod.accepted.yaml").write_text(
        "accepted_exposures:\n  module.api.alicloud_security_group.this:\n"
        "    - {protocol: tcp, ports: 443/443, reason: r, owner: o}\n"
    )
    with pytest.raises(InputError, match=r"module\.api\.alicloud_security_group\.this'?: not a group id"):
        desired.load([config_file.BaselineSource(path=state)])
    (tmp_path / "prod.accepted.yaml").write_text(
        f"accepted_exposures:\n  {WEB}:\n    - {{protocol: tcp, ports: 443/443, owner: o}}\n"
    )
    with pytest.raises(
        InputError, match=r"prod.accepted.yaml:3: accepted_exposures\.sg-bp1web00000000000001\.0\.reason"
    ):
        desired.load([config_file.BaselineSource(path=state)])


def test_an_accepted_exposure_quiets_the_unmanaged_rule_it_covers(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    edit(snap / "cn-hangzhou" / f"{WEB}.json", lambda d: permissions(d).append(_open_port(8443)))
    state = Path(shutil.copy(STATE, tmp_path / "state.json"))
    _, before = report_json(tmp_path, baseline=state)
    assert [f["severity"] for f in before["findings"]] != ["low"]
    (tmp_path / "state.accepted.yaml").write_text(
        "accepted_exposures:\n  module.web.alicloud_security_group.this:\n"
        "    - {protocol: tcp, ports: 8443/8443, reason: admin console behind WAF, owner: team-web}\n"
    )
    _, after = report_json(tmp_path, baseline=state)
    (finding,) = after["findings"]
    assert finding["checks"][0] == "unmanaged-rule" and finding["severity"] == "low"
    assert not finding["new_exposures"]


# -- drift, end to end through `sgwatch report` ----------------------------------------------------


def _open_port(port: int, rule_id: str = "sgr-byhand0001") -> dict[str, Any]:
    return {
        "SecurityGroupRuleId": rule_id,
        "Direction": "ingress",
        "IpProtocol": "TCP",
        "PortRange": f"{port}/{port}",
        "Policy": "Accept",
        "Priority": "1",
        "NicType": "intranet",
        "Description": "by hand",
        "SourceCidrIp": "0.0.0.0/0",
    }


def test_round_trip_the_applied_state_reports_nothing(tmp_path: Path) -> None:
    snapshot_copy(tmp_path)
    code, report = report_json(tmp_path)
    assert (code, report["findings"], report["complete"], report["summary"]["groups"]) == (0, [], True, 3)


def test_a_managed_rule_edited_in_the_console_names_its_address(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    # ModifySecurityGroupRule: same rule id, other ports
    edit(snap / "cn-hangzhou" / f"{WEB}.json", lambda d: permissions(d)[0].__setitem__("PortRange", "8443/8443"))
    code, report = report_json(tmp_path)
    (finding,) = report["findings"]
    assert (finding["kind"], finding["terraform_address"]) == ("rule_changed", HTTPS)
    assert finding["live"]["ports"] == "8443/8443" and finding["baseline"]["ports"] == "443/443"
    assert code == 1


def test_a_managed_rule_removed_in_the_console_names_its_address(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    edit(snap / "cn-hangzhou" / f"{WEB}.json", lambda d: permissions(d).pop(2))  # the ssh rule
    _, report = report_json(tmp_path)
    (finding,) = report["findings"]
    assert (finding["kind"], finding["terraform_address"]) == (
        "rule_removed",
        "module.web.alicloud_security_group_rule.ssh",
    )


def test_an_unmanaged_rule_in_a_managed_group_is_graded_by_its_exposure(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    edit(snap / "cn-hangzhou" / f"{DB}.json", lambda d: permissions(d).append(_open_port(3306)))
    code, report = report_json(tmp_path)
    (finding,) = report["findings"]
    assert finding["kind"] == "rule_added" and finding["severity"] == "critical"
    assert finding["checks"][0] == "unmanaged-rule" and len(finding["checks"]) > 1  # and the database check
    assert finding["terraform_address"] == "alicloud_security_group.db"
    assert code == 1


def test_a_group_no_state_manages_is_unmanaged_unless_managed_only(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    hand = "sg-bp1byhand000000000004"

    def add_group(d: dict[str, Any]) -> None:
        d["SecurityGroups"]["SecurityGroup"].append(
            {**d["SecurityGroups"]["SecurityGroup"][0], "SecurityGroupId": hand, "SecurityGroupName": "by-hand"}
        )

    edit(snap / "cn-hangzhou" / "DescribeSecurityGroups.json", add_group)
    write(
        snap / "cn-hangzhou" / f"{hand}.json",
        {
            "RegionId": "cn-hangzhou",
            "SecurityGroupId": hand,
            "InnerAccessPolicy": "Accept",
            "VpcId": "vpc-bp1main000000000001",
            "Permissions": {"Permission": [_open_port(22)]},
        },
    )
    code, report = report_json(tmp_path)
    (finding,) = report["findings"]
    assert (finding["kind"], finding["security_group_id"], finding["terraform_address"]) == ("group_added", hand, None)
    assert finding["checks"] == ["unmanaged-group", "internet-remote-admin"] and finding["severity"] == "high"
    assert code == 1
    code, report = report_json(tmp_path, "--managed-only")
    assert (code, report["findings"], report["summary"]["groups"]) == (0, [], 3)


def test_a_managed_group_gone_from_every_listed_region_is_removed(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    edit(snap / "cn-shanghai" / "DescribeSecurityGroups.json", lambda d: d["SecurityGroups"]["SecurityGroup"].clear())
    (snap / "cn-shanghai" / f"{BATCH}.json").unlink()
    code, report = report_json(tmp_path)
    (finding,) = report["findings"]
    assert (finding["kind"], finding["security_group_id"], finding["terraform_address"]) == (
        "group_removed",
        BATCH,
        "alicloud_security_group.batch",
    )
    assert "group-removed" in finding["checks"] and report["complete"] and code == 1


def test_a_managed_group_not_found_while_a_region_is_unread_is_unknown_not_removed(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    shutil.rmtree(snap / "cn-shanghai")
    write(
        snap / "errors.json",
        [{"account": "default", "region": "cn-shanghai", "code": "ServiceUnavailable", "message": "503"}],
    )
    code, report = report_json(tmp_path)
    assert report["findings"] == [] and not report["complete"] and code == 3
    assert {(e["code"], e["security_group_id"]) for e in report["errors"]} >= {(NOT_FOUND, BATCH)}


def test_with_regions_restricted_a_group_found_nowhere_is_unknown(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    shutil.rmtree(snap / "cn-shanghai")  # not scanned: only cn-hangzhou is in `regions:`
    config = tmp_path / "sgwatch.yaml"
    config.write_text(f"baseline: {STATE}\nregions: [cn-hangzhou]\n")
    result = sgwatch("report", "--config", config, "--snapshot", snap, "--format", "json")
    report = json.loads(result.stdout)
    assert result.returncode == 3 and report["findings"] == []
    (error,) = report["errors"]
    assert error["code"] == NOT_FOUND and "regions: is set" in error["message"]


def test_markdown_and_terminal_show_the_address(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    edit(snap / "cn-hangzhou" / f"{WEB}.json", lambda d: permissions(d)[0].__setitem__("PortRange", "8443/8443"))
    for fmt, shown in (("markdown", markdown_cell(HTTPS)), ("table", HTTPS)):
        result = sgwatch("report", "--baseline", STATE, "--snapshot", snap, "--format", fmt)
        assert result.returncode == 1, result.stderr
        assert shown in result.stdout.replace("\n", "").replace(" ", ""), fmt


# -- several states, pins, config ------------------------------------------------------------------


def _split_state(tmp_path: Path) -> tuple[Path, Path]:
    """The fixture as two workspaces: Hangzhou's groups, and Shanghai's."""
    doc = state_doc()
    shanghai = [r for r in doc["resources"] if r["provider"].endswith(".shanghai")]
    rest = [r for r in doc["resources"] if not r["provider"].endswith(".shanghai")]
    return (
        write(tmp_path / "hangzhou.json", {**doc, "resources": rest}),
        write(tmp_path / "shanghai.json", {**doc, "resources": shanghai}),
    )


def test_several_states_repeat_baseline(tmp_path: Path) -> None:
    hz, sh = _split_state(tmp_path)
    snapshot_copy(tmp_path)
    result = sgwatch("report", "--baseline", hz, "--baseline", sh, "--snapshot", tmp_path / "snapshot")
    assert result.returncode == 0, result.stdout + result.stderr
    _, report = report_json(tmp_path, baseline=hz)  # one state alone: the other's group is unmanaged
    assert [(f["security_group_id"], f["checks"][0]) for f in report["findings"]] == [(BATCH, "unmanaged-group")]
    result = sgwatch("validate", "--baseline", hz, "--baseline", sh, "--baseline", STATE)
    assert result.returncode == 2 and "is also in" in result.stderr


def test_config_lists_states_pinned_to_accounts(tmp_path: Path) -> None:
    hz, sh = _split_state(tmp_path)
    config = tmp_path / "sgwatch.yaml"
    config.write_text(
        "accounts: [{name: default}, {name: other}]\n"
        "baseline:\n  - hangzhou.json\n  - {path: shanghai.json, account: other}\n"
    )
    cfg = config_file.load(config)
    sources = cfg.baselines()
    assert [(s.path, s.account) for s in sources] == [(hz, None), (sh, "other")]
    state = desired.from_config(cfg)
    snap = load_snapshot(FIXTURE / "snapshot")
    report = engine.assess(state, snap, CheckSettings(), NOW)
    # Shanghai's state is pinned to another account: its group is not placed in `default`, where the
    # scan found it, and `other` has no listing at all: unknown, not removed.
    assert (BATCH, NOT_FOUND) in {(e.security_group_id, e.code) for e in report.errors}
    config.write_text("baseline:\n  - {path: shanghai.json, account: nosuch}\n")
    with pytest.raises(InputError, match="account 'nosuch' is not one of accounts"):
        config_file.load(config)


def test_a_yaml_folder_and_a_state_together(tmp_path: Path) -> None:
    hz, _ = _split_state(tmp_path)
    snap = load_snapshot(FIXTURE / "snapshot")
    folder = tmp_path / "yaml"
    from sgwatch import baseline as yaml_baseline

    shanghai = Snapshot(groups={k: g for k, g in snap.groups.items() if k[1] == "cn-shanghai"})
    for rel, text in yaml_baseline.render(shanghai.groups.values(), {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    both = desired.load([config_file.BaselineSource(path=hz), config_file.BaselineSource(path=folder)])
    report = engine.assess(both, snap, CheckSettings(), NOW)
    assert report.findings == [] and report.complete


def test_a_reference_to_the_accounts_own_group_matches_the_scan(tmp_path: Path) -> None:
    doc = state_doc()
    resource(doc, "alicloud_security_group_rule.db_from_web")["source_group_owner_id"] = "1234567890123456"
    state = desired.load(
        [config_file.BaselineSource(path=write(tmp_path / "s.json", doc))], uids={"default": "1234567890123456"}
    )
    report = engine.assess(state, load_snapshot(FIXTURE / "snapshot"), CheckSettings(), NOW)
    assert report.findings == []


# -- the daemon, in process ------------------------------------------------------------------------


def test_the_daemon_reports_terraform_drift(tmp_path: Path) -> None:
    from sgwatch.daemon import Daemon, RunOptions
    from sgwatch.sources.raw import RawScan
    from tests.test_daemon_unit import EPOCH, FakeClock

    snap_dir = snapshot_copy(tmp_path)
    edit(snap_dir / "cn-hangzhou" / f"{DB}.json", lambda d: permissions(d).append(_open_port(3306)))

    def scan(_: config_file.Config) -> tuple[RawScan, Snapshot]:
        return RawScan(), load_snapshot(snap_dir)

    overrides = {"baseline": [str(STATE)], "state": str(tmp_path / "state.sqlite"), "listen": "127.0.0.1:0"}
    daemon = Daemon(RunOptions(config_path=None, overrides=overrides), clock=FakeClock(EPOCH), scanner=scan)
    try:
        daemon.scan()
        (life,) = daemon.state.open_findings().values()
        assert life.data["terraform_address"] == "alicloud_security_group.db"
        assert life.data["checks"][0] == "unmanaged-rule" and life.data["severity"] == "critical"
        # the group is removed from the state file: the daemon's next scan sees an unmanaged group
        doc = state_doc()
        doc["resources"] = [r for r in doc["resources"] if r["name"] not in ("db", "db_from_web")]
        write(tmp_path / "state.json", doc)
        daemon.options.overrides["baseline"] = [str(tmp_path / "state.json")]
        daemon.reload("test")
        daemon.scan()
        (life,) = daemon.state.open_findings().values()
        assert (life.data["kind"], life.data["terraform_address"]) == ("group_added", None)
        assert "unmanaged-group" in life.data["checks"]
    finally:
        daemon.state.close()


def test_a_managed_prefix_list_whose_entries_moved_is_list_changed(tmp_path: Path) -> None:
    snap = snapshot_copy(tmp_path)
    edit(
        snap / "cn-hangzhou" / "pl-bp1office0000000001.json",
        lambda d: d["Entries"]["Entry"].append({"Cidr": "0.0.0.0/0", "Description": "oops"}),
    )
    _, report = report_json(tmp_path)
    (finding,) = report["findings"]
    assert (finding["kind"], finding["security_group_id"]) == ("group_changed", WEB)
    assert "list-changed" in finding["checks"] and finding["severity"] == "high"  # ssh from the world
    assert finding["terraform_address"] == "module.web.alicloud_security_group.this"
