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
        ("region: r\nsecurity_groups:\n  - id: sg-1\n    colour: blue\n", ":4: security_groups.0.colour: Extra inputs"),
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
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


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
