"""Membership drift: an interface reachable on a high or critical exposure alerts once, resolves when gone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sgwatch.alerting.channels import _SLACK
from sgwatch.alerting.message import make_event, render_item, view
from sgwatch.core import reach
from sgwatch.core.checks import CheckSettings
from sgwatch.core.membership import Interface, Membership
from sgwatch.core.model import Baseline, ScanError, Snapshot
from sgwatch.daemon import Daemon, RunOptions
from sgwatch.sources.raw import RawScan
from tests.alertfixtures import Receiver, receiver_fixture  # noqa: F401
from tests.test_daemon_e2e import metrics
from tests.test_groupsets import WHERE, eni, group, run

DB_OPEN = "accept 100 tcp 3306/3306 0.0.0.0/0"
# The open group is in the baseline: its rule is reviewed, not a drift; who sits in it is not.
WEB, OTHER = group("sg-db", DB_OPEN), group("sg-other")
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class Estate:
    """What the injected scanner answers: the two groups, and the interfaces as they are now."""

    interfaces: list[Interface] | None = field(default_factory=list)  # None: membership unknown
    errors: list[ScanError] = field(default_factory=list)

    def scan(self, _: Any) -> tuple[RawScan, Snapshot]:
        snap = Snapshot(groups={g.key: g for g in (WEB, OTHER)}, errors=list(self.errors))
        snap.listed[WHERE] = frozenset({WEB.id, OTHER.id})
        if self.interfaces is not None:
            snap.membership[WHERE] = Membership.known(*WHERE, self.interfaces)
        return RawScan(), snap


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=10)
        return self.now


@pytest.fixture
def daemon(tmp_path: Path, receiver: Receiver) -> Iterator[tuple[Daemon, Estate]]:
    estate = Estate()
    overrides = {
        "baseline": str(Path(__file__).resolve().parent.parent / "config" / "demo" / "baseline"),
        "state": str(tmp_path / "state.sqlite"),
        "listen": "127.0.0.1:0",
        "notifications": [{"type": "webhook", "name": "hook", "url": receiver.url + "/hook", "min_severity": "high"}],
    }
    d = Daemon(RunOptions(config_path=None, overrides=overrides), clock=Clock(), scanner=estate.scan)
    d.loaded = replace(d.loaded, baseline=Baseline(groups={g.key: g for g in (WEB, OTHER)}))
    d.server.start()
    yield d, estate
    d.server.stop()
    d.state.close()


def sent(receiver: Receiver) -> list[tuple[str, dict[str, Any]]]:
    return [(e["event"], e["finding"]) for req in receiver.requests for e in req.json()["events"]]


def db_on(*groups: str) -> Interface:
    return eni("eni-1", *groups, public="47.1.1.1")


def test_an_interface_joining_an_open_group_alerts_once_and_resolves_when_it_leaves(
    daemon: tuple[Daemon, Estate], receiver: Receiver
) -> None:
    d, estate = daemon
    estate.interfaces = [db_on("sg-other")]
    d.scan()
    assert sent(receiver) == []  # in no open group: nothing to say

    estate.interfaces = [db_on("sg-other", "sg-db")]
    d.scan()
    ((event, fact),) = sent(receiver)
    assert (event, fact["kind"], fact["severity"]) == ("new", "interface_exposed", "critical")
    for name in ("i-eni-1", "eni-1", "47.1.1.1", "sg-db", "3306"):
        assert name in fact["message"]
    port = d.server.port
    assert metrics(f"http://127.0.0.1:{port}")[("sgwatch_exposed_interfaces", (("severity", "critical"),))] == 1

    d.scan()  # the same estate: no second notification
    assert len(sent(receiver)) == 1

    estate.interfaces = None  # membership unknown: not seen because not read, so not resolved
    d.scan()
    estate.interfaces, estate.errors = [], [ScanError(*WHERE, "ServiceUnavailable", "503", "sg-db")]
    d.scan()  # an incomplete scan resolves nothing either
    assert len(sent(receiver)) == 1
    assert list(d.state.open_exposed()) == [fact["id"]]

    estate.interfaces, estate.errors = [db_on("sg-other")], []
    d.scan()
    assert [(e, f["id"]) for e, f in sent(receiver)] == [("new", fact["id"]), ("resolved", fact["id"])]
    assert d.state.open_exposed() == {}
    assert metrics(f"http://127.0.0.1:{port}")[("sgwatch_exposed_interfaces", (("severity", "critical"),))] == 0


def test_a_fact_names_instance_interface_and_address_escaped_in_chat() -> None:
    hostile = Interface("eni-1", "i-*evil*<@here>", "Primary", ("sg-db",), ("10.0.0.5",), ("47.1.1.1",))
    (fact,) = reach.exposed_interfaces(run([WEB], [WEB], [hostile]), CheckSettings())
    text = render_item(view(make_event("new", NOW, {**fact.to_dict(), "first_seen": "x"})), _SLACK)
    assert "eni-1" in text and "47.1.1.1" in text
    assert "<@here>" not in text and "*evil*" not in text


def test_facts_only_for_public_interfaces_on_high_or_critical_exposures() -> None:
    members = [db_on("sg-db"), eni("eni-2", "sg-db"), eni("eni-3", "sg-other", public="47.2.2.2")]
    facts = reach.exposed_interfaces(run([WEB, OTHER], [WEB, OTHER], members), CheckSettings())
    assert [(f.interface_id, f.instance_id, f.addresses, f.from_port) for f in facts] == [
        ("eni-1", "i-eni-1", ("47.1.1.1",), 3306)
    ]
    # Same interface and ports whichever group is blamed: one id, stable across scans.
    again = reach.exposed_interfaces(run([WEB, OTHER], [WEB, OTHER], members), CheckSettings())
    assert [f.id for f in again] == [f.id for f in facts]
    # A disabled check grades nothing.
    disabled = CheckSettings(disabled=frozenset({"internet-database-port"}))
    assert reach.exposed_interfaces(run([WEB], [WEB], members), disabled) == []


def test_judged_regions_exclude_unknown_membership_and_incomplete_scans() -> None:
    known = run([WEB], [WEB], [db_on("sg-db")])
    assert reach.judged_regions(known) == {WHERE}
    assert reach.judged_regions(run([WEB], [WEB], None)) == frozenset()
    known.errors.append(ScanError(*WHERE, "ServiceUnavailable", "503", "sg-db"))
    assert reach.judged_regions(known) == frozenset()


def test_an_accepted_exposure_or_a_new_one_is_no_interface_alert() -> None:
    from sgwatch.core.model import AcceptedExposure

    members = [db_on("sg-db")]
    # The team accepted 3306 to the world for sg-db: a member joining is not news.
    accepted = {("default", WHERE[1], "sg-db"): (AcceptedExposure("ingress", "tcp", 3306, 3306, (), "r", "o"),)}
    assert reach.exposed_interfaces(run([WEB], [WEB], members), CheckSettings(), accepted, NOW.date()) == []
    # An exception naming peers may not cover the whole internet, and an expired one covers nothing.
    narrow = {
        ("default", WHERE[1], "sg-db"): (AcceptedExposure("ingress", "tcp", 3306, 3306, ("47.0.0.0/8",), "r", "o"),)
    }
    assert reach.exposed_interfaces(run([WEB], [WEB], members), CheckSettings(), narrow, NOW.date())
    expired = {
        ("default", WHERE[1], "sg-db"): (
            AcceptedExposure("ingress", "tcp", 1, 65535, (), "r", "o", NOW.date().replace(year=2025)),
        )
    }
    assert reach.exposed_interfaces(run([WEB], [WEB], members), CheckSettings(), expired, NOW.date())
    # A new exposure is drift: its finding alerts, naming the interfaces; the fact would repeat it.
    report = run([OTHER], [WEB, OTHER], members)
    assert any(f.interfaces == ("eni-1",) for f in report.findings)
    assert reach.exposed_interfaces(report, CheckSettings()) == []
