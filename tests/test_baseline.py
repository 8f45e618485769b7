"""Baseline files: capture then report is empty; bad input names the file, line and path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgwatch import baseline
from sgwatch.core.checks import CheckSettings
from sgwatch.core.engine import assess
from sgwatch.core.model import Group, Snapshot
from sgwatch.errors import InputError
from sgwatch.sources import snapshot as snapshot_source
from tests.strategies import PORT_LISTS, PREFIX_LISTS, groups
from tests.test_cli import sgwatch
from tests.test_exposure import _rule

NOW = datetime(2026, 11, 28, tzinfo=UTC)
DEMO = Path(__file__).resolve().parent.parent / "config" / "demo"


def snapshot_of(members: list[Group]) -> Snapshot:
    snap = Snapshot(groups={g.key: g for g in members})
    for g in members:
        snap.listed[(g.account, g.region)] = snap.listed.get((g.account, g.region), frozenset()) | {g.id}
        snap.prefix_lists.update({(g.account, g.region, pl): entries for pl, entries in PREFIX_LISTS.items()})
        snap.port_lists.update({(g.account, g.region, prl): ranges for prl, ranges in PORT_LISTS.items()})
    return snap


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=4, unique=True).flatmap(
        lambda ids: st.tuples(*(groups(gid=f"sg-{i}") for i in ids))
    )
)
def test_capture_then_report_is_empty(tmp_path: Path, members: tuple[Group, ...]) -> None:
    snap = snapshot_of(list(members))
    out = tmp_path / f"b{abs(hash(members))}"
    baseline.capture(snap, out)
    report = assess(baseline.load(out), snap, CheckSettings(), NOW)
    assert report.findings == []
    assert report.complete


def test_capture_then_report_on_the_demo_snapshot(tmp_path: Path) -> None:
    snap = snapshot_source.load(DEMO / "snapshot")
    baseline.capture(snap, tmp_path / "b")
    assert assess(baseline.load(tmp_path / "b"), snap, CheckSettings(), NOW).findings == []


def test_recapture_keeps_accepted_exposures(tmp_path: Path) -> None:
    out = tmp_path / "b"
    for f in baseline.files_of(DEMO / "baseline"):
        (out / f.relative_to(DEMO / "baseline")).parent.mkdir(parents=True, exist_ok=True)
        (out / f.relative_to(DEMO / "baseline")).write_text(f.read_text())
    before = baseline.load(out).accepted
    baseline.capture(snapshot_source.load(DEMO / "snapshot"), out)
    assert baseline.load(out).accepted == before and before


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cn-hangzhou.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("region: r\nsecurity_groups: [\n", ":3: YAML syntax error"),
        (
            "region: r\nsecurity_groups:\n  - id: sg-1\n    ingress:\n      - {protocol: tcp, ports: 22/99999, peer: 0.0.0.0/0}\n",
            ":5: security_groups.0.ingress.0.ports: port range '22/99999' is out of 1-65535",
        ),
        (
            "region: r\nsecurity_groups:\n  - id: sg-1\n    ingress:\n      - {protocol: tcp, ports: 22/22, peer: nowhere}\n",
            "security_groups.0.ingress.0.peer: 'nowhere' is not an IP address or CIDR block",
        ),
        ("region: r\nsecurity_groups:\n  - id: sg-1\n    colour: blue\n", ":4: security_groups.0.colour: unknown key"),
        ("security_groups: []\n", "region: Field required"),
        (
            "region: r\nsecurity_groups:\n  - id: sg-1\n    accepted_exposures:\n      - {protocol: tcp, ports: 80}\n",
            "security_groups.0.accepted_exposures.0.reason: Field required",
        ),
        ("", "file is empty"),
    ],
)
def test_errors_name_file_line_and_path(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        baseline.load(path)
    lines = str(info.value).splitlines()
    # One complete line per error: each names the file; the expected error is one of them.
    assert all(line.startswith(str(path)) for line in lines) and any(expected in line for line in lines)


def test_duplicate_groups_across_files(tmp_path: Path) -> None:
    body = "region: r\nsecurity_groups:\n  - id: sg-1\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.yaml").write_text(body)
    with pytest.raises(InputError, match=r"b.yaml: security_groups.0: sg-1 is already defined in .*a.yaml"):
        baseline.load(tmp_path)


@pytest.mark.parametrize("text", ["on", "no", "yes", "off", "y", "null", "~", "0x1F", "1e3", "12:30", "#hash", "a: b"])
def test_descriptions_that_look_like_other_yaml_types_round_trip(tmp_path: Path, text: str) -> None:

    group = Group(
        "default",
        "cn-hangzhou",
        "sg-1",
        name=text,
        rules=(_rule("accept 1 tcp 22/22 sg-x")._replace(description=text),),
    )
    baseline.capture(snapshot_of([group]), tmp_path / "b")
    loaded = baseline.load(tmp_path / "b").groups[group.key]
    assert loaded.rules[0].description == text and loaded.name == text


def test_prefix_lists_round_trip_through_capture_and_load(tmp_path: Path) -> None:
    group = Group("default", "cn-hangzhou", "sg-1", vpc_id="vpc-1", rules=(_rule("accept 1 tcp 22/22 pl-office"),))
    snap = snapshot_of([group])
    snap.prefix_lists = {("default", "cn-hangzhou", "pl-office"): ("2400:cb00::/32", "47.100.12.0/24")}
    (written,) = baseline.capture(snap, tmp_path / "b")
    assert "- {id: pl-office, entries: ['2400:cb00::/32', 47.100.12.0/24]}" in written.read_text()
    loaded = baseline.load(tmp_path / "b")
    assert loaded.prefix_lists == snap.prefix_lists
    assert assess(loaded, snap, CheckSettings(), NOW).findings == []


def test_a_bad_prefix_list_entry_names_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("region: cn-hangzhou\nprefix_lists:\n  - {id: pl-office, entries: [47.100.12.0/24, office]}\n")
    with pytest.raises(InputError) as caught:
        baseline.load(path)
    assert str(caught.value).startswith(f"{path}:3: prefix_lists.0.entries: ")


def test_port_range_lists_round_trip_through_capture_and_load(tmp_path: Path) -> None:
    rule = _rule("accept 1 tcp 1/65535 0.0.0.0/0")
    rule = rule._replace(key=rule.key._replace(port_list="prl-web"))
    snap = snapshot_of([Group("default", "cn-hangzhou", "sg-1", vpc_id="vpc-1", rules=(rule,))])
    snap.port_lists = {("default", "cn-hangzhou", "prl-web"): ((80, 80), (443, 443))}
    (written,) = baseline.capture(snap, tmp_path / "b")
    assert "- {id: prl-web, entries: [80/80, 443/443]}" in written.read_text()
    loaded = baseline.load(tmp_path / "b")
    assert loaded.port_lists == snap.port_lists
    assert assess(loaded, snap, CheckSettings(), NOW).findings == []


# -- capture writes under --output, or not at all --------------------------------------------


def _attribute(region: object) -> str:
    return json.dumps(
        {
            "RegionId": region,
            "SecurityGroupId": "sg-1",
            "NextToken": "",
            "Permissions": {"Permission": [_perm_ssh()]},
        }
    )


def _perm_ssh() -> dict[str, str]:
    return {"Direction": "ingress", "IpProtocol": "TCP", "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8"}


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", ["../../x", "absolute", "not a region folder"])
def test_capture_from_a_hostile_snapshot_is_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    snap, out = tmp_path / "snap", tmp_path / "work" / "out"
    absolute = tmp_path / "elsewhere" / "x"
    if case == "not a region folder":  # neither the answer's region nor an account name
        file = snap / "cn hangzhou" / "sg-1.json"
        body = _attribute("cn-hangzhou")
    else:
        file = snap / "sg-1.json"
        body = _attribute(str(absolute) if case == "absolute" else case)
    file.parent.mkdir(parents=True)
    file.write_text(body)
    before = _files_under(tmp_path)
    result = sgwatch("baseline", "capture", "--snapshot", snap, "--output", out)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"sgwatch: error: {file}: ") and " is not a" in line, line
    assert _files_under(tmp_path) == before  # nothing written, inside --output or out of it
    assert not absolute.with_suffix(".yaml").exists()


def test_capture_never_follows_a_link_out_of_the_output_folder(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "default").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InputError, match=r"leads out of .*out; remove the link"):
        baseline.capture(snapshot_source.load(DEMO / "snapshot"), out)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(("account", "region"), [("default", "../x"), ("default", "/x"), ("..", "cn-hangzhou")])
def test_render_refuses_a_name_that_is_not_an_identifier(account: str, region: str) -> None:
    group = Group(account=account, region=region, id="sg-1", rules=(_rule("accept 1 tcp 22/22 0.0.0.0/0"),))
    with pytest.raises(
        InputError, match=r"^group 'sg-1': no baseline file written: .* is not an? (region id|account name)"
    ):
        baseline.render([group], {})


# -- hostile baseline files: one line naming file and line, never a traceback (issue 11) ----------
HEAD = "region: r\nsecurity_groups:\n  - id: sg-1\n    ingress:\n"
RULE = "      - {policy: accept, priority: 1, protocol: tcp, ports: 22/22, peer: 10.0.0.0/8}\n"


def refused(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        baseline.load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD + RULE + "    ingress: []\n", ":6: duplicate key 'ingress' (first at line 4)"),
        (
            HEAD + "      - {policy: accept, priority: 1, policy: drop, protocol: tcp, peer: 10.0.0.0/8}\n",
            ":5: duplicate key 'policy'",
        ),
        ("region: r\nregion: s\nsecurity_groups: []\n", ":2: duplicate key 'region' (first at line 1)"),
    ],
)
def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


def test_a_5000_digit_integer_is_refused(tmp_path: Path) -> None:
    text = HEAD + RULE + "      - {priority: " + "9" * 5000 + ", protocol: tcp, peer: 10.0.0.0/8}\n"
    assert ":6: a number of 5000 digits is longer than any valid value" in refused(tmp_path, text)


def test_an_alias_bomb_is_refused_by_the_alias_rule(tmp_path: Path) -> None:
    bomb = "x: &a [" + ", ".join(["{protocol: tcp, peer: 10.0.0.0/8}"] * 10) + "]\n"
    bomb += "region: r\nsecurity_groups:\n  - id: sg-1\n    ingress: *a\n"
    assert ":1: YAML anchors and aliases (&a / *a) are not allowed" in refused(tmp_path, bomb)


def test_text_that_only_looks_like_an_anchor_loads(tmp_path: Path) -> None:
    text = HEAD + "      - {protocol: tcp, ports: 22/22, peer: 10.0.0.0/8, description: R&D *ops* &co}\n"
    (rule,) = baseline.load(write(tmp_path, "# &not-an-anchor\n" + text)).groups[("default", "r", "sg-1")].rules
    assert rule.description == "R&D *ops* &co"


@pytest.mark.parametrize("value", ["true", "false", "1.0", '"1"'])
def test_a_priority_must_be_an_integer(tmp_path: Path, value: str) -> None:
    text = HEAD + f"      - {{priority: {value}, protocol: tcp, ports: 22/22, peer: 10.0.0.0/8}}\n"
    assert ":5: security_groups.0.ingress.0.priority: Input should be a valid integer" in refused(tmp_path, text)


def test_ports_must_not_be_a_boolean(tmp_path: Path) -> None:
    text = HEAD + "      - {protocol: tcp, ports: true, peer: 10.0.0.0/8}\n"
    assert "ingress.0.ports: expected a port range like 443/443, not a boolean" in refused(tmp_path, text)


def test_yaml_1_2_integers(tmp_path: Path) -> None:
    # a leading 0 is decimal in YAML 1.2 (PyYAML's 1.1 reading made "09" a crash and "010" 8)
    text = HEAD + "      - {priority: 010, protocol: tcp, ports: 22/22, peer: 10.0.0.0/8}\n"
    (rule,) = baseline.load(write(tmp_path, text)).groups[("default", "r", "sg-1")].rules
    assert rule.key.priority == 10


@pytest.mark.parametrize(
    "text",
    [
        "expires: 2027-02-30",
        "expires: !!timestamp soon",
        "priority: !!int nope",
        "priority: !!bool maybe",
        "priority: !!float x",
    ],
)
def test_values_that_do_not_fit_their_tag_are_one_line(tmp_path: Path, text: str) -> None:
    key, value = text.split(": ", 1)
    if key == "expires":
        body = HEAD + "    accepted_exposures:\n      - {protocol: tcp, reason: r, owner: o, expires: " + value + "}\n"
    else:
        body = HEAD + "      - {" + f"{key}: {value}" + ", protocol: tcp, peer: 10.0.0.0/8}\n"
    refused(tmp_path, body)


def test_a_baseline_1000_levels_deep_is_refused(tmp_path: Path) -> None:
    assert "nested deeper than 1000 levels" in refused(tmp_path, "region: " + "[" * 100_000 + "]" * 100_000 + "\n")


def test_the_line_of_a_bad_entry_at_the_end_of_a_large_file(tmp_path: Path) -> None:
    groups = "".join(
        f"  - id: sg-{g}\n    ingress:\n"
        + "".join(f"      - {{protocol: tcp, ports: {r + 1}/{r + 1}, peer: 10.0.{g}.0/24}}\n" for r in range(50))
        for g in range(200)
    )
    text = "region: r\nsecurity_groups:\n" + groups + "      - {protocol: tcp, ports: 22/99999, peer: 0.0.0.0/0}\n"
    line = text.count("\n")
    message = refused(tmp_path, text)
    assert f":{line}: security_groups.199.ingress.50.ports: port range '22/99999'" in message


def test_a_file_past_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "".join(RULE.replace("22/22", f"{p}/{p}") for p in range(1, 2001)))
    with pytest.raises(InputError, match=r"over the input size limit of 0\.1 MiB \(raise limits\.max_input_bytes"):
        baseline.load(path, max_bytes=100_000)
    assert baseline.load(path, max_bytes=1_000_000).groups  # the same file under a larger limit


def test_a_control_character_is_one_line_and_shown_escaped(tmp_path: Path) -> None:
    message = refused(tmp_path, "\x08region: r\n")
    assert "character #x0008 at 0: control characters are not allowed" in message and "\x08" not in message


def test_a_path_the_system_cannot_take_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the baseline: File name too long"):
        baseline.load(tmp_path / ("9" * 400))
    with pytest.raises(InputError, match="cannot read the snapshot: File name too long"):
        snapshot_source.load(tmp_path / ("9" * 400))
