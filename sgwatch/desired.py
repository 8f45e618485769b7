"""The desired state from every baseline given: YAML files and folders, and Terraform states.

Each ``--baseline`` (or entry of ``baseline:``) is read by what it holds, not by its name: a file
whose content is a Terraform state (:func:`sgwatch.terraform.is_state`) is one; anything else is
the YAML baseline :mod:`sgwatch.baseline` reads. A group may be described once, in one of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from sgwatch import baseline as yaml_baseline
from sgwatch import inputlimits, terraform
from sgwatch.config import BaselineSource, Config
from sgwatch.core.managed import Managed, ManagedGroup
from sgwatch.core.model import Baseline
from sgwatch.errors import InputError


def _is_state(path: Path) -> bool:
    try:
        if not path.is_file():
            return False
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False  # the YAML loader says what is wrong with it
    return terraform.is_state(head)


def load(
    sources: Sequence[BaselineSource],
    max_bytes: int = inputlimits.DEFAULT_MAX_INPUT_BYTES,
    *,
    uids: Mapping[str, str] | None = None,
    every_region: bool = True,
    managed_only: bool = False,
) -> Baseline:
    """Every baseline of ``sources`` as one. Raises InputError (one line per problem)."""
    if not sources:
        raise InputError("no baseline: give --baseline PATH or `baseline:` in the config")
    desired = Baseline()
    origin: dict[str, str] = {}  # group id -> where it is described
    managed: dict[str, ManagedGroup] = {}
    prefix_lists: dict[str, tuple[str, ...]] = {}
    pinned: set[str] = set()
    unpinned = False
    for source in sources:
        if _is_state(source.path):
            state = terraform.read_state(source.path, max_bytes)
            accepted_file = source.accepted or terraform.accepted_path(source.path)
            accepted = (
                terraform.read_accepted(accepted_file, state.groups, max_bytes)
                if source.accepted is not None or accepted_file.is_file()
                else {}
            )
            for gid, group in state.groups.items():
                if gid in origin:
                    raise InputError(f"{source.path}: {group.address or gid}: {gid} is also in {origin[gid]}")
                origin[gid] = str(source.path)
                managed[gid] = replace(group, account=source.account, accepted=accepted.get(gid, ()))
            prefix_lists.update(state.prefix_lists)
            if source.account is None:
                unpinned = True
            else:
                pinned.add(source.account)
            continue
        if source.accepted is not None:
            raise InputError(f"{source.path}: accepted: is for a Terraform state; a YAML baseline holds its own")
        part = yaml_baseline.load(source.path, max_bytes)
        for key in part.groups:
            if key[2] in origin:
                raise InputError(f"{source.path}: {key[2]} is also in {origin[key[2]]}")
            origin[key[2]] = str(source.path)
        desired.groups.update(part.groups)
        desired.accepted.update(part.accepted)
        for lists, more in ((desired.prefix_lists, part.prefix_lists), (desired.port_lists, part.port_lists)):
            for list_key in lists.keys() & more.keys():
                raise InputError(f"{source.path}: {list_key[2]} is also defined in another baseline")
        desired.prefix_lists.update(part.prefix_lists)
        desired.port_lists.update(part.port_lists)
    if managed:
        desired.terraform = Managed(
            groups=managed,
            accounts=None if unpinned else frozenset(pinned),
            uids=dict(uids or {}),
            every_region=every_region,
            managed_only=managed_only,
            prefix_lists=prefix_lists,
        )
    return desired


def from_config(cfg: Config, *, regions: Sequence[str] = (), managed_only: bool = False) -> Baseline:
    """The baselines ``cfg`` names; ``regions`` (``--region``) restrict the scan like ``regions:``."""
    return load(
        cfg.baselines(),
        cfg.limits.max_input_bytes,
        uids=cfg.account_uids(),
        every_region=not (regions or cfg.regions),
        managed_only=managed_only or cfg.managed_only,
    )


def files(sources: Sequence[BaselineSource]) -> list[Path]:
    """Every file the baselines are read from (the daemon reloads when one changes)."""
    out: list[Path] = []
    for source in sources:
        if _is_state(source.path):
            out.append(source.path)
            out.append(source.accepted or terraform.accepted_path(source.path))
        else:
            out.extend(yaml_baseline.files_of(source.path))
    return out


def group_count(desired: Baseline) -> int:
    """The groups the baselines describe (Terraform's not yet placed in a region)."""
    return len(desired.groups) + (len(desired.terraform.groups) if desired.terraform else 0)
