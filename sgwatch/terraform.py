"""A Terraform state as the desired state: the alicloud provider's security groups and rules.

Read: format version 4 JSON, as ``terraform state pull`` prints it, or ``terraform show -json``'s
document (``format_version`` 1.x), recognised by content. Resources inside modules and every
``count`` / ``for_each`` instance are read; data sources and other resource types are not.

The provider's attributes (terraform-provider-alicloud, ``resource_alicloud_security_group.go``
and ``resource_alicloud_security_group_rule.go``) are mapped to the ECS API's ``Permission``
fields and read by :func:`sgwatch.sources.ecs_rules.rule_from_api`: one normaliser decides what a
rule means, whichever source it comes from. What each attribute is, is in docs/terraform.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sgwatch import inputlimits, validation
from sgwatch.baseline import ExposureSpec
from sgwatch.core import normalize
from sgwatch.core.managed import GroupAttributes, ManagedGroup
from sgwatch.core.model import AcceptedExposure, Rule, RuleKey
from sgwatch.core.normalize import NormalizeError
from sgwatch.errors import InputError
from sgwatch.render.inert import visible
from sgwatch.sources import ecs_rules, identifiers

STATE_VERSION = 4
SHOW_FORMAT_MAJOR = "1"
GROUP = "alicloud_security_group"
RULE = "alicloud_security_group_rule"
PREFIX_LIST = "alicloud_ecs_prefix_list"
READ_TYPES = (GROUP, RULE)
# The provider's source addresses (the registry's, OpenTofu's) and the pre-0.13 spelling.
PROVIDERS = frozenset(
    f"{host}/{namespace}/alicloud"
    for host in ("registry.terraform.io", "registry.opentofu.org")
    for namespace in ("aliyun", "hashicorp")
)
# Neither resource declares a SchemaVersion: every state the provider has written is version 0.
SCHEMA_VERSION = 0

# Defaults the provider's schema gives omitted attributes of a rule (``Default:``). ``nic_type``
# has none (Computed: the API's intranet), nor does the group's ``inner_access_policy`` (the API's
# Accept) or, since 1.239.0, ``security_group_type`` (before: "normal"): normalize applies those.
RULE_DEFAULTS: Mapping[str, object] = {"port_range": "-1/-1", "priority": 1, "policy": "accept"}

# Per ``type`` (the rule's direction): the provider's peer attributes -> the API's field names.
_PEER_FIELDS: Mapping[str, tuple[tuple[str, str], ...]] = {
    direction: (
        ("cidr_ip", f"{side}CidrIp"),
        ("ipv6_cidr_ip", f"Ipv6{side}CidrIp"),
        ("source_security_group_id", f"{side}GroupId"),
        # source_group_owner_id since 1.289.0 (Read sets it); source_group_owner_account before, and
        # kept as input: either names the referenced group's owner.
        ("source_group_owner_id", f"{side}GroupOwnerAccount"),
        ("source_group_owner_account", f"{side}GroupOwnerAccount"),
        ("prefix_list_id", f"{side}PrefixListId"),
    )
    for direction, side in (("ingress", "Source"), ("egress", "Dest"))
}
_RULE_FIELDS: tuple[tuple[str, str], ...] = (
    ("type", "Direction"),
    ("ip_protocol", "IpProtocol"),
    ("port_range", "PortRange"),
    ("policy", "Policy"),
    ("priority", "Priority"),
    ("nic_type", "NicType"),
    ("description", "Description"),
    ("security_group_rule_id", "SecurityGroupRuleId"),  # since 1.248.0
)


@dataclass(frozen=True, slots=True)
class Resource:
    """One managed resource instance of a state: its address and attributes."""

    address: str
    type: str
    provider: str
    schema_version: int
    attributes: Mapping[str, Any]


@dataclass(slots=True)
class StateFile:
    """What one state file manages: groups by id, and the prefix lists its rules may name."""

    path: Path
    groups: dict[str, ManagedGroup] = field(default_factory=dict)
    prefix_lists: dict[str, tuple[str, ...]] = field(default_factory=dict)  # id -> entries, canonical


def is_state(data: bytes) -> bool:
    """Whether a baseline file's content is a Terraform state (or ``terraform show -json``)."""
    head = data[:4096].lstrip()
    if not head.startswith(b"{"):
        return False
    return any(marker in head for marker in (b'"terraform_version"', b'"format_version"', b'"lineage"'))


def _index(key: object) -> str:
    if key is None:
        return ""
    return f"[{key}]" if isinstance(key, int) and not isinstance(key, bool) else f"[{json.dumps(key)}]"


def _provider(text: object) -> str:
    """``provider["registry.terraform.io/aliyun/alicloud"].alias`` -> the source address."""
    spelled = str(text)
    if spelled.startswith('provider["'):
        return spelled[len('provider["') :].split('"]', 1)[0]
    if spelled == "provider.alicloud" or spelled.startswith("provider.alicloud."):  # Terraform 0.12
        return "registry.terraform.io/hashicorp/alicloud"
    return spelled


def _v4_resources(doc: Mapping[str, Any], where: str) -> Iterator[Resource]:
    resources = doc.get("resources", [])
    if not isinstance(resources, list):
        raise InputError(f"{where}: resources: expected a list (is this a Terraform state?)")
    for n, res in enumerate(resources):
        if not isinstance(res, dict):
            raise InputError(f"{where}: resources.{n}: expected an object")
        if res.get("mode") != "managed":
            continue
        kind, name, module = res.get("type"), res.get("name"), res.get("module")
        if not isinstance(kind, str) or not isinstance(name, str):
            raise InputError(f"{where}: resources.{n}: a resource without a type and name")
        base = _printable(f"{module}.{kind}.{name}" if module else f"{kind}.{name}", where)
        instances = res.get("instances", [])
        if not isinstance(instances, list):
            raise InputError(f"{where}: {base}: instances: expected a list")
        for instance in instances:
            if not isinstance(instance, dict):
                raise InputError(f"{where}: {base}: an instance is not an object")
            if instance.get("deposed"):
                continue  # a deposed object is on its way out (create_before_destroy): not the desired state
            yield Resource(
                _printable(base + _index(instance.get("index_key")), where),
                kind,
                _provider(res.get("provider", "")),
                _schema_version(instance.get("schema_version", 0), where, base),
                _attributes(instance.get("attributes"), where, base),
            )


def _show_resources(doc: Mapping[str, Any], where: str) -> Iterator[Resource]:
    values = doc.get("values") or {}
    if not isinstance(values, dict):
        raise InputError(f"{where}: values: expected an object (is this `terraform show -json` output?)")
    modules = [values.get("root_module") or {}]
    while modules:  # a stack, not recursion: the nesting is the file's to choose
        module = modules.pop()
        if not isinstance(module, dict):
            raise InputError(f"{where}: a module is not an object")
        children = module.get("child_modules") or []
        resources = module.get("resources") or []
        if not isinstance(children, list) or not isinstance(resources, list):
            raise InputError(f"{where}: {module.get('address', 'root module')}: expected lists of resources")
        modules.extend(reversed(children))
        for res in resources:
            if not isinstance(res, dict) or not isinstance(res.get("address"), str):
                raise InputError(f"{where}: a resource without an address")
            address = _printable(res["address"], where)
            if res.get("mode") != "managed":
                continue
            yield Resource(
                address,
                str(res.get("type", "")),
                str(res.get("provider_name", "")),
                _schema_version(res.get("schema_version", 0), where, address),
                _attributes(res.get("values"), where, address),
            )


def _printable(address: str, where: str) -> str:
    """An address, which findings and messages show: one line of visible characters."""
    if not address.isprintable():
        raise InputError(f"{where}: resource {visible(address)}: its address holds control characters")
    return address


def _schema_version(value: object, where: str, address: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{where}: {address}: schema_version {identifiers.shown(value)} is not a number")
    return value


def _attributes(value: object, where: str, address: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InputError(
            f"{where}: {address}: no attributes (an old attributes_flat state? run `terraform state pull` "
            "with Terraform >= 0.12)"
        )
    return value


def resources(doc: object, where: str) -> Iterator[Resource]:
    """Every managed resource instance of a state or ``show -json`` document."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a Terraform state (a JSON object)")
    if "format_version" in doc:
        shown = str(doc["format_version"])
        if shown.split(".")[0] != SHOW_FORMAT_MAJOR:
            raise InputError(
                f"{where}: `terraform show -json` format version {identifiers.shown(shown)}; sgwatch reads 1.x"
            )
        return _show_resources(doc, where)
    version = doc.get("version")
    if version != STATE_VERSION or isinstance(version, bool):
        raise InputError(
            f"{where}: Terraform state format version {_number(version)}; sgwatch reads version "
            f"{STATE_VERSION} (Terraform >= 0.12): `terraform state pull > state.json` with a current Terraform"
        )
    return _v4_resources(doc, where)


def _number(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else identifiers.shown(value)


def _text(attrs: Mapping[str, Any], name: str, where: str) -> str:
    value = attrs.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: {name}: expected text, found {identifiers.shown(value)}")
    return value.strip()


def _group_id(attrs: Mapping[str, Any], name: str, where: str) -> str:
    gid = _text(attrs, name, where)
    if (bad := identifiers.problem("security group", gid)) is not None:
        raise InputError(f"{where}: {name}: {bad}")
    return gid


def group_attributes(resource: Resource, where: str) -> tuple[str, GroupAttributes]:
    """An ``alicloud_security_group``: its id and what it says of the group."""
    attrs, at = resource.attributes, f"{where}: {resource.address}"
    policy_text = _text(attrs, "inner_access_policy", at)
    inner = attrs.get("inner_access")  # before 1.55.3: a bool, true meaning Accept
    if not policy_text and isinstance(inner, bool):
        policy_text = "accept" if inner else "drop"
    try:
        return _group_id(attrs, "id", at), GroupAttributes(
            address=resource.address,
            # security_group_name since 1.239.0; name before (and still set by Read)
            name=_text(attrs, "security_group_name", at) or _text(attrs, "name", at),
            type=normalize.group_type(_text(attrs, "security_group_type", at)),
            vpc_id=_text(attrs, "vpc_id", at),
            inner_access_policy=normalize.policy(policy_text),
            description=_text(attrs, "description", at),
        )
    except NormalizeError as exc:
        raise InputError(f"{at}: {exc}") from None


def rule_of(resource: Resource, where: str) -> tuple[str, Rule]:
    """An ``alicloud_security_group_rule``: its group's id and the rule, through the API's reader."""
    attrs, at = resource.attributes, f"{where}: {resource.address}"
    gid = _group_id(attrs, "security_group_id", at)
    direction = attrs.get("type")
    if not isinstance(direction, str) or direction not in _PEER_FIELDS:
        raise InputError(f"{at}: type: {identifiers.shown(direction)} is not ingress or egress")
    permission: dict[str, Any] = {}
    for name, api in (*_RULE_FIELDS, *_PEER_FIELDS[direction]):
        value = attrs.get(name)
        if value is None or value == "":
            value = RULE_DEFAULTS.get(name)
        if isinstance(value, dict | list):
            raise InputError(f"{at}: {name}: expected a value, found {type(value).__name__}")
        if value is not None and not permission.get(api):
            permission[api] = value
    try:
        return gid, ecs_rules.rule_from_api(permission)
    except NormalizeError as exc:
        raise InputError(f"{at}: {exc}") from None


def prefix_list_of(resource: Resource, where: str) -> tuple[str, tuple[str, ...]]:
    """An ``alicloud_ecs_prefix_list``: its id and entries (``entry``: a set of ``cidr``)."""
    attrs, at = resource.attributes, f"{where}: {resource.address}"
    plid = _text(attrs, "id", at)
    if (bad := identifiers.problem("prefix list", plid)) is not None:
        raise InputError(f"{at}: id: {bad}")
    entries = attrs.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{at}: entry: expected a list of {{cidr, description}}")
    try:
        cidrs = {normalize.cidr(c).value for e in entries if (c := _text(e, "cidr", at))}
    except NormalizeError as exc:
        raise InputError(f"{at}: entry: {exc}") from None
    return plid, tuple(sorted(cidrs))


def read_state(path: Path, max_bytes: int = inputlimits.DEFAULT_MAX_INPUT_BYTES) -> StateFile:
    """The groups and rules one state file manages. Raises InputError (one line: file, resource)."""
    try:
        data = inputlimits.read_bytes(path, max_bytes)
    except FileNotFoundError:
        raise InputError(f"{path}: Terraform state not found") from None
    return parse_state(data, path)


def parse_state(data: bytes, path: Path) -> StateFile:
    where = str(path)
    doc = inputlimits.load_json(data, where)
    state = StateFile(path)
    attrs: dict[str, GroupAttributes] = {}
    rules: dict[str, dict[RuleKey, tuple[Rule, str]]] = {}
    for res in resources(doc, where):
        if res.type.startswith(GROUP) and res.type not in READ_TYPES:
            raise InputError(
                f"{where}: {res.address}: resource type {identifiers.shown(res.type)} is not one sgwatch reads "
                f"({', '.join(READ_TYPES)}): its rules would go unseen"
            )
        if res.type not in (*READ_TYPES, PREFIX_LIST):
            continue
        if res.provider not in PROVIDERS:
            raise InputError(
                f"{where}: {res.address}: provider {identifiers.shown(res.provider)} is not the alicloud provider "
                "(registry.terraform.io/aliyun/alicloud) whose schema sgwatch reads"
            )
        if res.schema_version != SCHEMA_VERSION:
            raise InputError(
                f"{where}: {res.address}: schema version {res.schema_version}; sgwatch reads the provider's "
                f"version {SCHEMA_VERSION} attributes: upgrade sgwatch"
            )
        if res.type == GROUP:
            gid, group = group_attributes(res, where)
            if gid in attrs:
                raise InputError(f"{where}: {res.address}: {gid} is also {attrs[gid].address}")
            attrs[gid] = group
        elif res.type == RULE:
            gid, rule = rule_of(res, where)
            held = rules.setdefault(gid, {})
            if rule.key in held:
                raise InputError(f"{where}: {res.address}: the same rule as {held[rule.key][1]}")
            held[rule.key] = (rule, res.address)
        else:
            plid, entries = prefix_list_of(res, where)
            state.prefix_lists[plid] = entries
    if not attrs and not rules:
        raise InputError(
            f"{where}: no {GROUP} or {RULE} resources: not the state of the security groups "
            "(a state of another stack, or an empty workspace?)"
        )
    for gid in sorted(attrs.keys() | rules.keys()):
        held = rules.get(gid, {})
        ordered = sorted(held)
        state.groups[gid] = ManagedGroup(
            id=gid,
            source=where,
            attributes=attrs.get(gid),
            rules=tuple(held[k][0] for k in ordered),
            rule_addresses={k: held[k][1] for k in ordered},
        )
    return state


# -- accepted exposures beside the state ----------------------------------------------------------


class AcceptedFile(BaseModel):
    """``<state>.accepted.yaml``: accepted exposures by group id or Terraform address."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    accepted_exposures: dict[str, list[ExposureSpec]] = Field(default_factory=dict)

    @field_validator("accepted_exposures", mode="before")
    @classmethod
    def _mapping(cls, v: object) -> object:
        if v is not None and not isinstance(v, dict):
            raise ValueError("expected a mapping of group id or Terraform address to a list of exposures")
        return v or {}


def accepted_path(state: Path) -> Path:
    """Where a state's accepted exposures are by default: ``state.json`` -> ``state.accepted.yaml``."""
    return state.with_name(f"{state.stem}.accepted.yaml")


def read_accepted(
    path: Path, groups: Mapping[str, ManagedGroup], max_bytes: int = inputlimits.DEFAULT_MAX_INPUT_BYTES
) -> dict[str, tuple[AcceptedExposure, ...]]:
    """Group id -> accepted exposures. Every key must name a group of the state. Raises InputError."""
    try:
        text = inputlimits.read_text(path, max_bytes)
    except FileNotFoundError:
        raise InputError(f"{path}: accepted exposures file not found") from None
    doc = inputlimits.load_yaml(text, str(path))
    try:
        spec = AcceptedFile.model_validate(doc or {})
    except ValidationError as exc:

        def lines_of(loc: validation.Loc) -> int | None:
            return inputlimits.line_of(text, str(path), loc)

        lines = validation.describe(exc, str(path), lines_of, model=AcceptedFile)
        raise InputError("\n".join(lines)) from None
    by_address = {g.address: g.id for g in groups.values() if g.address}
    out: dict[str, tuple[AcceptedExposure, ...]] = {}
    for key, specs in spec.accepted_exposures.items():
        gid = key if key in groups else by_address.get(key)
        if gid is None:
            raise InputError(
                f"{path}: accepted_exposures.{identifiers.shown(key)}: not a group id or {GROUP} address of the state"
            )
        if gid in out:
            raise InputError(f"{path}: accepted_exposures: {gid} is named twice (by id and by address)")
        out[gid] = tuple(e.to_model() for e in specs)
    return out
