"""The drift between a baseline and the live state, as pure functions over normalised rules.

Rules are matched by content first (their :class:`RuleKey`); what is left is matched by
``SecurityGroupRuleId`` (ModifySecurityGroupRule keeps the id, so same id + other content is
one change); the rest are additions and removals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from sgwatch.core.model import Direction, Group, GroupKey, Rule

ChangeKind = Literal["group_added", "group_removed", "group_changed", "rule_added", "rule_removed", "rule_changed"]
ListKind = Literal["prefix list", "port range list"]


class ListRef(NamedTuple):
    """A prefix list or port range list a group's rules name."""

    kind: ListKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"

    @property
    def moved(self) -> str:
        """How a change of the list's entries reads in messages and finding ids."""
        return f"{self} entries"


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    group: GroupKey
    live: Rule | None = None
    baseline: Rule | None = None
    fields: tuple[str, ...] = ()  # for group_changed: which attributes moved
    lists: tuple[ListRef, ...] = ()  # for group_changed: the named lists whose entries moved

    @property
    def direction(self) -> Direction | None:
        rule = self.live or self.baseline
        return rule.direction if rule else None


def diff_rules(key: GroupKey, baseline: Iterable[Rule], live: Iterable[Rule]) -> list[Change]:
    base_by_key = {r.key: r for r in baseline}
    live_by_key = {r.key: r for r in live}
    changes: list[Change] = []
    for rkey in base_by_key.keys() & live_by_key.keys():
        b, lv = base_by_key[rkey], live_by_key[rkey]
        if b.description != lv.description:
            changes.append(Change("rule_changed", key, lv, b))
    gone = [r for k, r in base_by_key.items() if k not in live_by_key]
    new = [r for k, r in live_by_key.items() if k not in base_by_key]
    new_by_id = {r.rule_id: r for r in new if r.rule_id}
    paired: set[str] = set()
    for b in gone:
        lv_match = new_by_id.get(b.rule_id) if b.rule_id else None
        if lv_match is not None and lv_match.direction == b.direction:
            changes.append(Change("rule_changed", key, lv_match, b))
            paired.add(b.rule_id)
        else:
            changes.append(Change("rule_removed", key, None, b))
    changes.extend(Change("rule_added", key, r, None) for r in new if not (r.rule_id and r.rule_id in paired))
    return sorted(changes, key=_order)


def _order(change: Change) -> tuple[str, str, object]:
    rule = change.live or change.baseline
    return (change.kind, rule.direction if rule else "", rule.key if rule else ())


def diff_group(baseline: Group, live: Group, same_rules: bool | None = None) -> list[Change]:
    """``same_rules``: whether the rules are equal, when the caller has compared them already."""
    moved = tuple(
        name for name in ("type", "vpc_id", "inner_access_policy") if getattr(baseline, name) != getattr(live, name)
    )
    changes = [Change("group_changed", live.key, fields=moved)] if moved else []
    if same_rules is None:
        same_rules = baseline.rules == live.rules  # both sides keep rules sorted by key: one compare
    if same_rules:
        return changes
    return changes + diff_rules(live.key, baseline.rules, live.rules)
