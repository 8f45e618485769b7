"""The diff: content identity, rule ids, and its symmetry."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sgwatch.core.diff import diff_rules
from sgwatch.core.model import Rule
from tests.strategies import rules

KEY = ("default", "cn-hangzhou", "sg-1")
rule_sets = st.lists(rules(), max_size=10, unique_by=lambda r: r.key)


@given(rule_sets, rule_sets)
def test_swapping_sides_swaps_added_and_removed(a: list[Rule], b: list[Rule]) -> None:
    forward = diff_rules(KEY, a, b)
    backward = diff_rules(KEY, b, a)
    assert sorted(c.live.key for c in forward if c.kind == "rule_added" and c.live) == sorted(
        c.baseline.key for c in backward if c.kind == "rule_removed" and c.baseline
    )
    assert sorted(c.baseline.key for c in forward if c.kind == "rule_removed" and c.baseline) == sorted(
        c.live.key for c in backward if c.kind == "rule_added" and c.live
    )


@given(rule_sets)
def test_a_rule_set_does_not_drift_from_itself(a: list[Rule]) -> None:
    assert diff_rules(KEY, a, list(reversed(a))) == []


@given(rules())
def test_same_id_other_content_is_one_change(rule: Rule) -> None:
    before = rule._replace(rule_id="sgr-keep")
    after = before._replace(key=before.key._replace(priority=before.key.priority + 7))
    changes = diff_rules(KEY, [before], [after])
    assert [(c.kind, c.baseline, c.live) for c in changes] == [("rule_changed", before, after)]


@given(rules())
def test_description_only_change(rule: Rule) -> None:
    changes = diff_rules(KEY, [rule], [rule._replace(description=rule.description + " (edited)")])
    assert [c.kind for c in changes] == ["rule_changed"]
    assert changes[0].live is not None and changes[0].baseline is not None
    assert changes[0].live.key == changes[0].baseline.key


def test_without_ids_a_content_change_is_removal_plus_addition() -> None:
    from tests.test_exposure import _rule

    old, new = _rule("accept 1 tcp 22/22 1.2.3.4/32"), _rule("accept 1 tcp 22/22 0.0.0.0/0")
    assert sorted(c.kind for c in diff_rules(KEY, [old], [new])) == ["rule_added", "rule_removed"]
