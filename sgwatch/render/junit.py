"""The report as JUnit XML, for CI systems that show test results natively (GitLab, Jenkins, …).

One ``testcase`` per security group (``classname`` account.region, ``name`` the group id); each
finding at or above ``--fail-on`` is a ``failure`` of its group, findings below it are listed in
the group's ``system-out``. Every region or group that could not be read is a testcase with an
``error``: an incomplete scan never shows as all green.

Cloud text passes through ``inert.xml_text`` (escapes shown, nothing XML 1.0 forbids), and
ElementTree escapes the markup characters.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from sgwatch.core.checks import RANK
from sgwatch.core.findings import Finding, Report, describe_rule
from sgwatch.core.model import GroupKey
from sgwatch.events import attribution
from sgwatch.render import remedy
from sgwatch.render.inert import xml_text


def _failing(severity: str, fail_on: str) -> bool:
    return fail_on != "none" and RANK[severity] >= RANK[fail_on]


def _detail(f: Finding) -> str:
    lines = [f"{f.severity} {f.kind}: {f.message}", f"checks: {', '.join(f.checks)}"]
    if f.changed_by is not None:
        lines.append(f"changed {attribution.detail(f.changed_by)}")
    if f.live is not None or f.baseline is not None:
        for label, rule in (("before", f.baseline), ("after", f.live)):
            shown = (
                "(none)"
                if rule is None
                else describe_rule(rule) + (f' "{rule.description}"' if rule.description else "")
            )
            lines.append(f"{label}: {shown}")
    lines += [f"opens: {e.describe()}" for e in f.new_exposures]
    lines += [f"CIS {r.id}: {r.title}" for r in f.cis()]
    lines += [f"fix: {c}" for c in remedy.of(f)]
    lines.append(f"or, {remedy.ACCEPT_HINT}")
    return "\n".join(xml_text(line) for line in lines)


def render(report: Report, groups: Iterable[GroupKey] = (), fail_on: str = "info") -> str:
    """``groups``: every group the scan covered (those in sync are passing testcases)."""
    by_group: dict[GroupKey, list[Finding]] = {key: [] for key in sorted(set(groups))}
    for f in report.findings:
        by_group.setdefault((f.account, f.region, f.security_group_id), []).append(f)
    suite = ET.Element("testsuite", name="sgwatch drift", timestamp=report.generated_at.isoformat())
    failures = 0
    for (account, region, group), findings in by_group.items():
        case = ET.SubElement(suite, "testcase", classname=xml_text(f"{account}.{region}"), name=xml_text(group))
        below = []
        for f in findings:
            if _failing(f.severity, fail_on):
                failures += 1
                failure = ET.SubElement(case, "failure", type=f.kind, message=xml_text(f"{f.severity}: {f.message}"))
                failure.text = _detail(f)
            else:
                below.append(_detail(f))
        if below:
            ET.SubElement(case, "system-out").text = "\n\n".join(below)
    for e in report.errors:
        name = e.security_group_id or "(listing)"
        case = ET.SubElement(suite, "testcase", classname=xml_text(f"{e.account}.{e.region}"), name=xml_text(name))
        ET.SubElement(case, "error", type=xml_text(e.code), message=xml_text(e.message)).text = xml_text(
            f"could not be read: {e.code}: {e.message}"
        )
    counts = {"tests": str(len(suite)), "failures": str(failures), "errors": str(len(report.errors)), "skipped": "0"}
    suite.attrib.update(counts)
    root = ET.Element("testsuites", {"name": "sgwatch", **{k: v for k, v in counts.items() if k != "skipped"}})
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
