"""The events metrics, and every sgwatch_* family the daemon serves is documented in docs/metrics.md."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sgwatch.metrics import EVENT_RESULTS, ScanSummary, Telemetry, registry_for
from tests.test_state_metrics import T0, report

METRICS_DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def served(telemetry: Telemetry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry_for(telemetry)).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_events_counters_serve_every_result_from_the_start_and_count() -> None:
    telemetry = Telemetry(interval=300)
    before = served(telemetry)
    assert before["sgwatch_events_received_total"] == {(("result", r),): 0.0 for r in EVENT_RESULTS}
    assert before["sgwatch_events_http_requests_total"][(("code", "401"),)] == 0.0
    telemetry.events.add("accepted", 3)
    telemetry.events.add("duplicate")
    telemetry.events.answered(202)
    telemetry.events.answered(431)  # not served from the start, served once it occurs
    after = served(telemetry)
    assert after["sgwatch_events_received_total"][(("result", "accepted"),)] == 3
    assert after["sgwatch_events_received_total"][(("result", "duplicate"),)] == 1
    assert after["sgwatch_events_http_requests_total"][(("code", "202"),)] == 1
    assert after["sgwatch_events_http_requests_total"][(("code", "431"),)] == 1


def test_every_sgwatch_family_served_is_documented() -> None:
    telemetry = Telemetry(interval=300)
    telemetry.last = ScanSummary.of(report("accept 1 tcp 3306/3306 0.0.0.0/0"), T0.timestamp(), 1.0)
    telemetry.last_duration = 1.0
    telemetry.exposed_interfaces = Counter()
    telemetry.notifications[("hook", "sent")] += 1
    telemetry.outbox_pending["hook"] = 0
    documented = set(re.findall(r"`(sgwatch_[a-z0-9_]+)`", METRICS_DOC.read_text(encoding="utf-8")))
    families = {
        family.name
        for family in text_string_to_metric_families(generate_latest(registry_for(telemetry)).decode())
        if family.name.startswith("sgwatch_")
    }
    # a counter family is named without _total (the doc names the series); histograms' _created
    # series are documented with their histogram
    names = {name + "_total" if name + "_total" in documented else name.removesuffix("_created") for name in families}
    assert "sgwatch_events_received_total" in names
    assert names <= documented, f"served but not in docs/metrics.md: {sorted(names - documented)}"
