"""Posture: risk already in the live state, whether or not the baseline has it.

Posture results are reported apart from drift and never change the exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date

from sgwatch.core import addresses
from sgwatch.core.checks import LATENT_CAP, RANK, CheckSettings, exposure_class
from sgwatch.core.exposure import decision_order, internet_part
from sgwatch.core.findings import Exposure, PostureResult, describe_rule
from sgwatch.core.memo import Memo
from sgwatch.core.model import NO_PORTS, AcceptedExposure, Group, GroupKey, Peer, PeerKind, Rule, span


def _result(settings: CheckSettings, check: str, group: Group, rule: Rule | None, message: str) -> PostureResult:
    return PostureResult(check, settings.severity(check), group.account, group.region, group.id, rule, message)


def _exposure_check(e: Exposure, settings: CheckSettings) -> str | None:
    if e.direction != "ingress" or e.scope == "narrow":
        return None
    kind = exposure_class(e.protocol, e.from_port, e.to_port, settings)
    if kind is None:
        return None
    return "posture-icmp-from-anywhere" if kind == "icmp" else f"posture-internet-{kind}"


# (protocol, dport low, dport high, sport low, sport high)
_Extent = tuple[str, int, int, int, int]
_Where = tuple[str, str, str, str]  # direction, NIC type, peer block, the rule's own side ("" for none)


def _block_of(peer: Peer) -> tuple[str, int, int, int]:
    """A peer as (what it can only be covered by, prefix length, first address, family width in bits).

    Rules with different first fields never cover each other: IPv4 blocks, IPv6 blocks, and
    each referenced group or prefix list on its own (a block of one, width 0).
    """
    if peer.kind is PeerKind.CIDR4 or peer.kind is PeerKind.CIDR6:
        _, (low, _) = addresses.network_interval(peer.value)
        width = 32 if peer.kind is PeerKind.CIDR4 else 128
        return peer.kind, int(peer.value.rpartition("/")[2]), low, width
    return str(peer), 0, 0, 0


_block: Callable[[Peer], tuple[str, int, int, int]] = Memo(_block_of).__getitem__


def shadowed(group: Group) -> list[tuple[Rule, Rule]]:
    """(rule, the higher-precedence rule that covers it) for rules that decide nothing.

    Only cover by one rule is found; a rule covered by the union of several is not reported.
    Earlier rules are indexed by their CIDR block: the blocks that can contain a rule's block
    are the few of its own start address at the prefix lengths in use, so a group of n rules
    costs n lookups per prefix length, not n * n comparisons.
    """
    out: list[tuple[Rule, Rule]] = []
    blocks: dict[tuple[str, str, str], dict[tuple[int, int], list[tuple[int, int, str, _Extent, str, Rule]]]] = {}
    lengths: dict[tuple[str, str, str], set[int]] = {}
    for seq, rule in enumerate(decision_order(group.rules)):
        k = rule.key
        if k.port_list:
            continue  # its ports are a list's entries, unknown here: it neither covers nor is covered
        name, bits, start, width = _block(k.peer)
        where = (k.direction, k.nic_type, name)
        index = blocks.get(where)
        if index is None:
            index, used = blocks[where], lengths[where] = {}, set()
        else:
            used = lengths[where]
        dl, dh = span(k.from_port, k.to_port)
        sl, sh = span(k.src_from_port, k.src_to_port)
        proto, local = k.protocol, k.local
        cover: tuple[int, Rule] | None = None  # the first in decision order, when several cover
        for length in used:
            if length > bits:
                continue
            for n, priority, policy, (eproto, edl, edh, esl, esh), elocal, by in index.get(
                (length, start >> (width - length) << (width - length)), ()
            ):
                if (
                    edl <= dl
                    and dh <= edh
                    and (eproto == proto or eproto == "all")
                    and esl <= sl
                    and sh <= esh
                    # A rule of some members (its own side) covers only rules of the same members.
                    and (not elocal or elocal == local)
                    # Equal precedence and equal policy decide alike: redundant, not shadowed.
                    and not (priority == k.priority and policy == k.policy)
                    and (cover is None or n < cover[0])
                ):
                    cover = (n, by)
                    break  # a block's list is in decision order
        if cover is not None:
            out.append((rule, cover[1]))
        index.setdefault((bits, start), []).append((seq, k.priority, k.policy, (proto, dl, dh, sl, sh), local, rule))
        used.add(bits)
    return out


def _database_from_private_cidr(rule: Rule, settings: CheckSettings) -> bool:
    k = rule.key
    return (
        k.direction == "ingress"
        and k.policy == "accept"
        and k.protocol in ("tcp", "all")
        and (k.peer.kind is PeerKind.CIDR4 or k.peer.kind is PeerKind.CIDR6)
        and not internet_part(k.peer)
        and (k.from_port, k.to_port) != NO_PORTS
        and k.to_port - k.from_port < 100
        and addresses.any_port_in(settings.database_ports, k.from_port, k.to_port)
    )


def check_group(group: Group, exposures: Iterable[Exposure], settings: CheckSettings) -> list[PostureResult]:
    out: list[PostureResult] = []
    for e in exposures:
        check = _exposure_check(e, settings)
        if check and settings.enabled(check):
            result = _result(settings, check, group, None, f"{group.id}: {e.describe()} via {', '.join(e.peers)}")
            if e.reachable is False and RANK[result.severity] > RANK[LATENT_CAP]:
                result = result._replace(severity=LATENT_CAP)  # no member can be reached: on paper only
            out.append(result)
    if settings.enabled("posture-cidr-instead-of-group") and group.vpc_id:
        flagged = [r for r in group.rules if _database_from_private_cidr(r, settings)]
        if flagged:
            more = f" (and {len(flagged) - 1} more such rules)" if len(flagged) > 1 else ""
            out.append(
                _result(
                    settings,
                    "posture-cidr-instead-of-group",
                    group,
                    flagged[0],
                    f"{group.id}: {describe_rule(flagged[0])}{more}: authorise the application tier's "
                    "security group instead of a CIDR",
                )
            )
    if settings.enabled("posture-shadowed-rule"):
        for rule, by in shadowed(group):
            out.append(
                _result(
                    settings,
                    "posture-shadowed-rule",
                    group,
                    rule,
                    f"{group.id}: {describe_rule(rule)} is shadowed by {describe_rule(by)}",
                )
            )
    limit = settings.rule_limit
    if settings.enabled("posture-rule-limit") and len(group.rules) >= limit * settings.rule_limit_ratio:
        out.append(
            _result(
                settings,
                "posture-rule-limit",
                group,
                None,
                f"{group.id}: {len(group.rules)} rules of a limit of {limit}",
            )
        )
    return out


def expired(
    key: GroupKey, accepted: Sequence[AcceptedExposure], today: date, settings: CheckSettings
) -> list[PostureResult]:
    if not settings.enabled("posture-expired-exception"):
        return []
    account, region, sg = key
    return [
        PostureResult(
            "posture-expired-exception",
            settings.severity("posture-expired-exception"),
            account,
            region,
            sg,
            None,
            f"{sg}: accepted exposure {a.protocol} {a.from_port}/{a.to_port} ({a.reason}; owner {a.owner}) "
            f"expired on {a.expires}",
        )
        for a in accepted
        if not a.active(today)
    ]
