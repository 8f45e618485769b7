"""The desired state, as YAML files a team reviews in git: one file per account and region.

```yaml
account: default
region: cn-hangzhou
security_groups:
  - id: sg-web
    name: web
    type: normal            # normal (basic) | enterprise (advanced)
    vpc_id: vpc-1
    inner_access_policy: accept
    accepted_exposures:
      - {protocol: tcp, ports: 443/443, reason: public web tier, owner: team-web, expires: 2027-06-30}
    ingress:
      - {policy: accept, priority: 1, protocol: tcp, ports: 443/443, peer: 0.0.0.0/0, description: https}
      - {policy: accept, priority: 1, protocol: tcp, ports: 22/22, peer: pl-office}
      - {policy: accept, priority: 1, protocol: tcp, ports: 8080/8080, peer: 0.0.0.0/0, local: 10.0.1.0/24}
    egress: []
prefix_lists:               # the entries the rules' prefix lists should hold
  - {id: pl-office, name: office, entries: [47.100.12.0/24]}
```

A peer is a CIDR (IPv4 or IPv6), ``sg-…``, ``account/sg-…`` or ``pl-…``; ``local`` (optional)
limits a rule to the members whose private addresses fall in that CIDR (a quintuple rule).
TCP/UDP ports omitted, ``-1/-1`` and ``1/65535`` all mean every port.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from sgwatch import inputlimits, validation
from sgwatch.core import normalize
from sgwatch.core.model import (
    ALL_PORTS,
    NO_PORTS,
    AcceptedExposure,
    Baseline,
    Direction,
    Group,
    GroupKey,
    PeerKind,
    Rule,
    RuleKey,
    Snapshot,
)
from sgwatch.core.normalize import NormalizeError
from sgwatch.errors import InputError
from sgwatch.sources import identifiers
from sgwatch.sources.raw import DEFAULT_ACCOUNT

HEADER = (
    "sgwatch baseline: the desired state of these security groups.\n"
    "Review changes to this file like code. Written by `sgwatch baseline capture`; edit freely.\n"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ports(value: object) -> str:
    if isinstance(value, bool):
        raise ValueError("expected a port range like 443/443, not a boolean")
    text = str(value).strip()
    if text.isdigit():
        text = f"{text}/{text}"
    try:
        normalize.port_range(text, "tcp")
    except NormalizeError as exc:
        raise ValueError(str(exc)) from None
    return text


class RuleSpec(_Strict):
    policy: Literal["accept", "drop"] = "accept"
    priority: StrictInt = Field(default=1, ge=1, le=1000)  # `true` is not 1
    protocol: str
    ports: str = "-1/-1"
    peer: str
    source_ports: str | None = None
    nic_type: Literal["intranet", "internet"] = "intranet"
    port_list: str | None = None
    local: str | None = None  # a quintuple rule's own side: the members' private CIDR it applies to
    description: str = ""
    id: str | None = None

    @field_validator("policy", mode="before")
    @classmethod
    def _policy(cls, v: object) -> object:
        return str(v).lower() if isinstance(v, str) else v

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v: str) -> str:
        try:
            return normalize.protocol(v)
        except NormalizeError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("ports", "source_ports", mode="before")
    @classmethod
    def _port_text(cls, v: object) -> object:
        return None if v is None else _ports(v)

    @field_validator("peer")
    @classmethod
    def _peer(cls, v: str) -> str:
        try:
            return str(normalize.peer_from_text(v))
        except NormalizeError as exc:
            raise ValueError(f"{exc}; a peer is a CIDR, sg-…, account/sg-… or pl-…") from None

    @field_validator("local")
    @classmethod
    def _local(cls, v: str | None) -> str | None:
        try:
            return None if v is None else normalize.cidr(v).value
        except NormalizeError as exc:
            raise ValueError(f"{exc}; local is the CIDR of the members the rule applies to") from None

    def to_rule(self, direction: Direction) -> Rule:
        low, high = normalize.port_range(self.ports, self.protocol)
        slow, shigh = normalize.port_range(self.source_ports, self.protocol, source=True)
        key = RuleKey(
            direction,
            self.protocol,
            low,
            high,
            slow,
            shigh,
            normalize.peer_from_text(self.peer),
            self.policy,
            self.priority,
            self.nic_type,
            self.port_list or "",
            self.local or "",
        )
        return Rule(key, self.description, self.id or "")


class ExposureSpec(_Strict):
    direction: Literal["ingress", "egress"] = "ingress"
    protocol: str
    ports: str = "-1/-1"
    peers: list[str] = Field(default_factory=list)
    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    expires: date | None = None

    _protocol = field_validator("protocol")(RuleSpec._protocol.__func__)  # type: ignore[attr-defined]

    @field_validator("ports", mode="before")
    @classmethod
    def _port_text(cls, v: object) -> object:
        return _ports(v)

    @field_validator("peers")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        try:
            return [normalize.cidr(p).value for p in v]
        except NormalizeError as exc:
            raise ValueError(str(exc)) from None

    def to_model(self) -> AcceptedExposure:
        low, high = normalize.port_range(self.ports, self.protocol)
        return AcceptedExposure(
            self.direction, self.protocol, low, high, tuple(self.peers), self.reason, self.owner, self.expires
        )


class GroupSpec(_Strict):
    id: str = Field(pattern=identifiers.PATTERNS["security group"])
    name: str = ""
    type: Literal["normal", "enterprise"] = "normal"
    vpc_id: str = ""
    inner_access_policy: Literal["accept", "drop"] = "accept"
    description: str = ""
    accepted_exposures: list[ExposureSpec] = Field(default_factory=list)
    ingress: list[RuleSpec] = Field(default_factory=list)
    egress: list[RuleSpec] = Field(default_factory=list)

    @field_validator("inner_access_policy", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return str(v).lower() if isinstance(v, str) else v


class PrefixListSpec(_Strict):
    id: str = Field(pattern=identifiers.PATTERNS["prefix list"])
    name: str = ""
    entries: list[str] = Field(default_factory=list)

    _cidrs = field_validator("entries")(ExposureSpec._cidrs.__func__)  # type: ignore[attr-defined]


class PortRangeListSpec(_Strict):
    id: str = Field(pattern=identifiers.PATTERNS["port range list"])
    name: str = ""
    entries: list[str] = Field(default_factory=list)

    @field_validator("entries", mode="before")
    @classmethod
    def _ranges(cls, v: object) -> object:
        return [_ports(e) for e in v] if isinstance(v, list) else v

    def ranges(self) -> tuple[tuple[int, int], ...]:
        return tuple(sorted({normalize.list_port_range(e) for e in self.entries}))


class BaselineFile(_Strict):
    account: str = DEFAULT_ACCOUNT
    region: str = Field(min_length=1)
    security_groups: list[GroupSpec] = Field(default_factory=list)
    prefix_lists: list[PrefixListSpec] = Field(default_factory=list)
    port_range_lists: list[PortRangeListSpec] = Field(default_factory=list)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


# Errors of one baseline file that are given their line number (each costs a compose of the file).
LINE_LOOKUPS = 10


def _parse_file(path: Path, text: str) -> BaselineFile:
    # Bounded (see inputlimits) and fast: libyaml. The line of an invalid entry comes from
    # composing the text again, which costs less than the load that found it.
    doc = inputlimits.load_yaml(text, str(path))
    if doc is None:
        raise InputError(f"{path}: file is empty (expected account, region and security_groups)")
    try:
        return BaselineFile.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        del doc, exc  # free the tree before composing another
        looked = 0

        def lines_of(loc: validation.Loc) -> int | None:
            # Each lookup composes the file again: the first few errors get a line, the rest a path.
            nonlocal looked
            looked += 1
            return inputlimits.line_of(text, str(path), loc) if looked <= LINE_LOOKUPS else None

        lines = validation.describe(errors, str(path), lines_of, model=BaselineFile)
        raise InputError("\n".join(lines)) from None


def files_of(path: Path) -> list[Path]:
    try:
        if path.is_file():
            return [path]
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long, a permission denied on the way
        raise InputError(f"{str(path)[:200]}: cannot read the baseline: {exc.strerror or exc}") from None
    if not is_dir:
        raise InputError(f"{path}: baseline not found (give a baseline YAML file or a folder of them)")
    # Hidden entries are skipped: a Kubernetes ConfigMap mount shows every file twice, once
    # under its "..<timestamp>" folder.
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise InputError(f"{path}: baseline folder has no .yaml files (write one with `sgwatch baseline capture`)")
    return files


def load(path: Path, max_bytes: int = inputlimits.DEFAULT_MAX_INPUT_BYTES) -> Baseline:
    """Every baseline file under ``path``, each refused past ``max_bytes``. Raises InputError."""
    baseline = Baseline()
    origin: dict[GroupKey, Path] = {}
    for file in files_of(path):
        try:
            text = inputlimits.read_text(file, max_bytes)
        except FileNotFoundError:
            raise InputError(f"{file}: cannot read: file is gone") from None
        spec = _parse_file(file, text)
        for n, g in enumerate(spec.security_groups):
            key = (spec.account, spec.region, g.id)
            if key in origin:
                raise InputError(f"{file}: security_groups.{n}: {g.id} is already defined in {origin[key]}")
            origin[key] = file
            rules: dict[RuleKey, Rule] = {}
            for direction, specs in (("ingress", g.ingress), ("egress", g.egress)):
                for i, r in enumerate(specs):
                    rule = r.to_rule(direction)  # type: ignore[arg-type]
                    if rule.key in rules:
                        raise InputError(f"{file}: security_groups.{n}.{direction}.{i}: duplicate rule")
                    rules[rule.key] = rule
            baseline.groups[key] = Group(
                account=spec.account,
                region=spec.region,
                id=g.id,
                name=g.name,
                type=g.type,
                vpc_id=g.vpc_id,
                inner_access_policy=g.inner_access_policy,
                description=g.description,
                rules=tuple(sorted(rules.values(), key=lambda r: r.key)),
            )
            if g.accepted_exposures:
                baseline.accepted[key] = tuple(e.to_model() for e in g.accepted_exposures)
        for n, pl in enumerate(spec.prefix_lists):
            pl_key = (spec.account, spec.region, pl.id)
            if pl_key in baseline.prefix_lists:
                raise InputError(f"{file}: prefix_lists.{n}: {pl.id} is defined twice for this account and region")
            baseline.prefix_lists[pl_key] = tuple(sorted(set(pl.entries)))
        for n, prl in enumerate(spec.port_range_lists):
            prl_key = (spec.account, spec.region, prl.id)
            if prl_key in baseline.port_lists:
                raise InputError(f"{file}: port_range_lists.{n}: {prl.id} is defined twice for this account and region")
            baseline.port_lists[prl_key] = prl.ranges()
    return baseline


# -- capture -----------------------------------------------------------------------------------


def _flow(items: dict[str, Any]) -> CommentedMap:
    m = CommentedMap(items)
    m.fa.set_flow_style()
    return m


def rule_spec(rule: Rule) -> CommentedMap:
    k = rule.key
    out: dict[str, Any] = {"policy": k.policy, "priority": k.priority, "protocol": k.protocol}
    if (k.from_port, k.to_port) != NO_PORTS:
        out["ports"] = f"{k.from_port}/{k.to_port}"
    # IPv6 peers are quoted: libyaml (the fast loader) rejects "::/0" as a plain scalar in a flow map.
    peer = str(k.peer)
    out["peer"] = SingleQuotedScalarString(peer) if ":" in peer else peer
    if (k.src_from_port, k.src_to_port) != NO_PORTS:
        out["source_ports"] = f"{k.src_from_port}/{k.src_to_port}"
    if k.nic_type != "intranet":
        out["nic_type"] = k.nic_type
    if k.port_list:
        out["port_list"] = k.port_list
    if k.local:
        out["local"] = SingleQuotedScalarString(k.local) if ":" in k.local else k.local
    if rule.description:
        out["description"] = rule.description
    if rule.rule_id:
        out["id"] = rule.rule_id
    return _flow(out)


def _exposure_spec(a: AcceptedExposure) -> CommentedMap:
    out: dict[str, Any] = {"protocol": a.protocol}
    if a.direction != "ingress":
        out["direction"] = a.direction
    if (a.from_port, a.to_port) not in (NO_PORTS, ALL_PORTS):  # every port: left out
        out["ports"] = f"{a.from_port}/{a.to_port}"
    if a.peers:
        out["peers"] = [SingleQuotedScalarString(p) if ":" in p else p for p in a.peers]
    out.update({"reason": a.reason, "owner": a.owner})
    if a.expires:
        out["expires"] = a.expires
    return _flow(out)


def render(
    groups: Iterable[Group],
    accepted: dict[GroupKey, tuple[AcceptedExposure, ...]],
    prefix_lists: Mapping[tuple[str, str, str], tuple[str, ...]] | None = None,
    port_lists: Mapping[tuple[str, str, str], tuple[tuple[int, int], ...]] | None = None,
) -> dict[Path, str]:
    """Baseline files (relative path -> YAML text) for these groups, one per account and region,
    with the entries of each prefix list and port range list their rules name (of those given).

    The path is ``<account>/<region>.yaml``: an account or region that is not an identifier is
    an InputError, never a file name."""
    by_region: dict[tuple[str, str], list[Group]] = defaultdict(list)
    for g in groups:
        by_region[(g.account, g.region)].append(g)
    prefix_lists, port_lists = prefix_lists or {}, port_lists or {}
    out: dict[Path, str] = {}
    for (account, region), members in sorted(by_region.items()):
        names: tuple[tuple[identifiers.Kind, str], ...] = (("account", account), ("region", region))
        for kind, value in names:
            if (bad := identifiers.problem(kind, value)) is not None:
                raise InputError(f"group {identifiers.shown(members[0].id)}: no baseline file written: {bad}")
        specs = CommentedSeq()
        for g in sorted(members, key=lambda g: g.id):
            spec = CommentedMap({"id": g.id})
            if g.name:
                spec["name"] = g.name
            spec["type"] = g.type
            if g.vpc_id:
                spec["vpc_id"] = g.vpc_id
            spec["inner_access_policy"] = g.inner_access_policy
            if g.description:
                spec["description"] = g.description
            if accepted.get(g.key):
                spec["accepted_exposures"] = CommentedSeq(_exposure_spec(a) for a in accepted[g.key])
            for direction in ("ingress", "egress"):
                chosen = sorted((r for r in g.rules if r.direction == direction), key=lambda r: r.key)
                spec[direction] = CommentedSeq(rule_spec(r) for r in chosen)
            specs.append(spec)
        doc = CommentedMap({"account": account, "region": region, "security_groups": specs})
        named = sorted(
            {r.peer.value for g in members for r in g.rules if r.peer.kind is PeerKind.PREFIX_LIST}
            & {pl for a, reg, pl in prefix_lists if (a, reg) == (account, region)}
        )
        if named:
            doc["prefix_lists"] = CommentedSeq(
                _prefix_list_spec(pl, prefix_lists[(account, region, pl)]) for pl in named
            )
        named_ranges = sorted(
            {r.key.port_list for g in members for r in g.rules if r.key.port_list}
            & {prl for a, reg, prl in port_lists if (a, reg) == (account, region)}
        )
        if named_ranges:
            doc["port_range_lists"] = CommentedSeq(
                _flow({"id": prl, "entries": [f"{lo}/{hi}" for lo, hi in port_lists[(account, region, prl)]]})
                for prl in named_ranges
            )
        doc.yaml_set_start_comment(HEADER)
        buf = StringIO()
        yaml = _yaml()
        yaml.width = 4096  # one rule per line keeps git diffs readable
        yaml.indent(mapping=2, sequence=4, offset=2)
        yaml.dump(doc, buf)
        out[Path(account) / f"{region}.yaml"] = buf.getvalue()
    return out


def _prefix_list_spec(pl: str, entries: tuple[str, ...]) -> CommentedMap:
    return _flow({"id": pl, "entries": [SingleQuotedScalarString(c) if ":" in c else c for c in entries]})


def capture(snapshot: Snapshot, output: Path) -> list[Path]:
    """Write the snapshot as a baseline, keeping accepted exposures already recorded there."""
    accepted: dict[GroupKey, tuple[AcceptedExposure, ...]] = {}
    if output.exists() and any(output.rglob("*.yaml")):
        accepted = load(output).accepted
    files = render(snapshot.groups.values(), accepted, snapshot.prefix_lists, snapshot.port_lists)
    root = output.resolve()
    for rel in files:
        # render names files after ids only; a link inside the folder must not lead out of it either
        if not (output / rel).resolve().is_relative_to(root):
            raise InputError(f"{output / rel}: not written: the path leads out of {output}; remove the link")
    written = []
    for rel, text in files.items():
        target = output / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{target}: cannot write baseline: {exc}") from None
        written.append(target)
    return written
