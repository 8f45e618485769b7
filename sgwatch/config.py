"""sgwatch's configuration: one YAML file, every key overridable from ``SGWATCH_…`` variables.

Nested keys join with ``__``: ``SGWATCH_SCAN__CONCURRENCY=16`` sets ``scan.concurrency``;
list values are comma-separated (``SGWATCH_REGIONS=cn-hangzhou,cn-shanghai``) or JSON.
Only the variables :func:`env_names` lists are read: any other ``SGWATCH_…`` variable (a secret
a ``${…}`` in the file names) is left alone, and one that looks like a misspelt key is a warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from sgwatch import logs, validation
from sgwatch.core.checks import ADMIN_PORTS, BY_ID, DATABASE_PORTS, CheckSettings, Severity
from sgwatch.errors import InputError
from sgwatch.inputlimits import (
    DEFAULT_MAX_INPUT_BYTES,
    MAX_DEPTH,
    Integer,
    Number,
    line_of,
    load_json,
    load_yaml,
    read_text,
)
from sgwatch.listen import parse_listen
from sgwatch.sharding import Shard
from sgwatch.sources import identifiers
from sgwatch.sources.live_settings import (
    ENDPOINT_ENV,
    Accounts,
    AccountSettings,
    Endpoint,
    LiveSettings,
    OrganizationSettings,
    RegionId,
    ScanTuning,
    unique_accounts,
)

log = structlog.get_logger("sgwatch.config")
ENV_PREFIX = "SGWATCH_"
CONFIG_ENV = "SGWATCH_CONFIG"
# Variables of sgwatch that are not config keys: the config file itself, and the endpoint the
# scanner reads (``--endpoint``'s default).
RESERVED_ENV = (CONFIG_ENV, ENDPOINT_ENV)


LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
LOG_LEVEL_ENV = "SGWATCH_LOG_LEVEL"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# The longest interval (and jitter) a schedule takes: a week. Past it is a typo (1e12), and the
# scheduler's date arithmetic would overflow.
MAX_INTERVAL_SECONDS = 7 * 86_400
# A bearer token a listener facing another service takes: long enough that guessing is hopeless.
MIN_TOKEN_LENGTH = 16


class LimitsConfig(_Strict):
    """Bounds on the files sgwatch reads (baseline files, snapshot files)."""

    max_input_bytes: Integer = Field(
        default=DEFAULT_MAX_INPUT_BYTES,
        ge=4096,
        description="largest baseline or snapshot file read, in bytes (memory: docs/performance.md)",
    )


class ChecksConfig(_Strict):
    """Tune the catalogue: replace or extend port sets, change severities, disable checks."""

    database_ports: list[Integer] = Field(default_factory=lambda: sorted(DATABASE_PORTS))
    extra_database_ports: list[Integer] = Field(default_factory=list)
    admin_ports: list[Integer] = Field(default_factory=lambda: sorted(ADMIN_PORTS))
    extra_admin_ports: list[Integer] = Field(default_factory=list)
    severities: dict[str, Severity] = Field(default_factory=dict)
    disabled: list[str] = Field(default_factory=list)
    rule_limit: Integer = Field(default=200, ge=1)
    rule_limit_ratio: Number = Field(default=0.8, gt=0, le=1)

    @field_validator("severities", "disabled")
    @classmethod
    def _known(cls, v: Any) -> Any:
        unknown = sorted(set(v) - BY_ID.keys())
        if unknown:
            raise ValueError(f"unknown check id(s) {', '.join(unknown)}; `sgwatch checks` lists them")
        return v

    def to_settings(self) -> CheckSettings:
        return CheckSettings(
            database_ports=frozenset(self.database_ports) | frozenset(self.extra_database_ports),
            admin_ports=frozenset(self.admin_ports) | frozenset(self.extra_admin_ports),
            severities=dict(self.severities),
            disabled=frozenset(self.disabled),
            rule_limit=self.rule_limit,
            rule_limit_ratio=self.rule_limit_ratio,
        )


class ShardingConfig(_Strict):
    """One replica of several: it scans the accounts whose stable hash falls in its shard."""

    shard: Integer = Field(default=0, ge=0, description="this replica's shard, 0 .. total_shards - 1 (--shard)")
    total_shards: Integer = Field(default=1, ge=1, le=1024, description="how many shards share the accounts")

    @model_validator(mode="after")
    def _in_range(self) -> ShardingConfig:
        if self.shard >= self.total_shards:
            raise ValueError(
                f"shard {self.shard} is not one of 0 .. {self.total_shards - 1}: shards count from 0 (the pod ordinal)"
            )
        return self

    def to_shard(self) -> Shard:
        return Shard(self.shard, self.total_shards)


class EventsConfig(_Strict):
    """Change events from ActionTrail: pushed by EventBridge, or pulled from LookupEvents."""

    listen: str | None = Field(
        default=None,
        description="HOST:PORT or [IPv6]:PORT of POST /events (EventBridge's HTTP target), apart from `listen`",
    )
    token: SecretStr | None = Field(
        default=None, description="the bearer token EventBridge sends (Authorization: Bearer ...); needed with listen"
    )
    actiontrail: bool = Field(default=False, description="poll ActionTrail LookupEvents every minute instead")
    full_scan_interval: Number = Field(
        default=3600.0,
        ge=1,
        le=MAX_INTERVAL_SECONDS,
        description="seconds between full scans while events are on (they stay the safety net)",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_listen(v)
        return v

    @model_validator(mode="after")
    def _token_with_listen(self) -> EventsConfig:
        if self.listen is not None and self.token is None:
            raise ValueError("events.listen needs events.token: the listener refuses requests without it")
        if self.token is not None and len(self.token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"events.token must be at least {MIN_TOKEN_LENGTH} characters (openssl rand -hex 32)")
        return self

    @property
    def enabled(self) -> bool:
        return self.listen is not None or self.actiontrail


class BaselineSource(_Strict):
    """One baseline: a YAML file or folder, or a Terraform state (told apart by content)."""

    path: Path = Field(description="baseline YAML file or folder, or a Terraform state file")
    account: str | None = Field(
        default=None, description="the account a Terraform state's groups are in (default: wherever they are found)"
    )
    accepted: Path | None = Field(
        default=None, description="a Terraform state's accepted exposures (default: beside it, <state>.accepted.yaml)"
    )


class Config(_Strict):
    """Everything sgwatch reads from its config file (``sgwatch config schema`` prints the schema)."""

    baseline: Path | list[Path | BaselineSource] | None = Field(
        default=None, description="baseline YAML file or folder, Terraform state, or a list of them"
    )
    managed_only: bool = Field(
        default=False, description="with Terraform states: report only the groups a state manages"
    )
    accounts: Accounts = Field(
        default_factory=lambda: [AccountSettings()],
        description="the accounts to scan, or {discover: resource_directory, role_name: ...} for every member",
    )
    regions: list[RegionId] = Field(default_factory=list, description="regions to scan; empty: every region")
    endpoint: Endpoint | None = Field(default=None, description="ECS endpoint URL for every region (tests, VPC)")
    scan: ScanTuning = Field(default_factory=ScanTuning)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    interval: Number = Field(default=300.0, ge=1, le=MAX_INTERVAL_SECONDS, description="seconds between scans (daemon)")
    jitter: Number | None = Field(
        default=None, ge=0, le=MAX_INTERVAL_SECONDS, description="seconds of random delay per scan"
    )
    listen: str = Field(default="0.0.0.0:9108", description="HOST:PORT or [IPv6]:PORT of /metrics, /healthz, /readyz")
    state: Path = Field(default=Path("sgwatch.sqlite"), description="SQLite state file (daemon)")
    log_level: LogLevel = "info"
    notifications: list[dict[str, Any]] = Field(default_factory=list, description="alert channels")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    sharding: ShardingConfig = Field(default_factory=ShardingConfig)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @field_validator("accounts")
    @classmethod
    def _unique_accounts(
        cls, v: list[AccountSettings] | OrganizationSettings
    ) -> list[AccountSettings] | OrganizationSettings:
        if isinstance(v, list) and not v:
            raise ValueError("give at least one account, or {discover: resource_directory, role_name: ...}")
        unique_accounts(v)
        return v

    @model_validator(mode="after")
    def _shard_owns_accounts(self) -> Config:
        shard = self.sharding.to_shard()
        if shard.sharded and isinstance(self.accounts, list) and not shard.select(self.accounts):
            raise ValueError(
                f"shard {shard.index} of {shard.total} owns none of the {len(self.accounts)} configured accounts: "
                "use fewer shards than accounts, or give the accounts their uid"
            )
        return self

    def shard_accounts(self) -> list[AccountSettings]:
        """The listed accounts this replica scans (all of them unsharded; none for discovery)."""
        if not isinstance(self.accounts, list):
            return []
        return self.sharding.to_shard().select(self.accounts)

    @model_validator(mode="after")
    def _pinned_accounts(self) -> Config:
        if not isinstance(self.accounts, list):
            return self  # discovered accounts are named by their UID, known only at discovery
        names = {a.name for a in self.accounts}
        for source in self.baselines():
            if source.account is not None and source.account not in names:
                raise ValueError(
                    f"baseline {source.path}: account {source.account!r} is not one of accounts: "
                    f"({', '.join(sorted(names))})"
                )
        return self

    def baselines(self) -> list[BaselineSource]:
        """Every baseline the config names, in order."""
        if self.baseline is None:
            return []
        given = self.baseline if isinstance(self.baseline, list) else [self.baseline]
        return [b if isinstance(b, BaselineSource) else BaselineSource(path=b) for b in given]

    def account_uids(self) -> dict[str, str]:
        """Account name -> UID, for the accounts whose ``uid:`` the config gives (a discovered
        account's name is its UID)."""
        if isinstance(self.accounts, OrganizationSettings):
            return {}
        return {a.name: a.uid for a in self.accounts if a.uid}

    def live(self, regions: Sequence[str] = (), endpoint: str | None = None) -> LiveSettings:
        """Live-scan settings, with command-line regions and endpoint taking precedence."""
        for region in regions:
            if (bad := identifiers.problem("region", region)) is not None:
                raise InputError(f"--region: {bad}")
        try:
            org = self.accounts if isinstance(self.accounts, OrganizationSettings) else None
            listed = self.accounts if isinstance(self.accounts, list) else [AccountSettings()]
            return LiveSettings(
                accounts=self.shard_accounts() if org is None else listed,
                organization=org,
                # discovered accounts are split at discovery (live.scan), listed ones here
                shard=self.sharding.shard,
                total_shards=self.sharding.total_shards,
                regions=list(regions) or self.regions,
                endpoint=endpoint or self.endpoint,
                **self.scan.model_dump(),
            )
        except ValidationError as exc:
            where = "--endpoint" if endpoint else "configuration"
            raise InputError("\n".join(validation.describe(exc, where, model=LiveSettings))) from None


def _coerce(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in "[{":
        try:  # bounded like any input: a variable nested 100,000 deep stays text, and validation says why
            return load_json(stripped.encode(), "environment")
        except InputError:
            pass
    return text


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, path: Path, environ: Mapping[str, str] | None = None) -> Any:
    """``${NAME}`` in config strings reads the environment: secrets stay out of the file.

    The only expansion of the config: one pass, whose output is never expanded again (a value
    reading ``${OTHER}`` stays that text), so a variable's value cannot pull in another secret.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(1) not in env:
                raise InputError(f"{path}: ${{{match.group(1)}}} is used but the environment variable is not set")
            return env[match.group(1)]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, path, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path, env) for v in value]
    return value


@cache
def env_names(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Every variable that overrides a config key, and the key's path: ``SGWATCH_SCAN__CONCURRENCY``
    is ``("scan", "concurrency")``. A section (``SGWATCH_SCAN``) takes a JSON mapping."""
    out: dict[str, tuple[str, ...]] = {}

    def walk(node: type[BaseModel], prefix: tuple[str, ...]) -> None:
        for name, field in node.model_fields.items():
            path = (*prefix, name)
            out[ENV_PREFIX + "__".join(path).upper()] = path
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                walk(field.annotation, path)

    walk(model, ())
    return out


def env_overrides(environ: Mapping[str, str], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """The overrides the environment sets, as a nested mapping; a near-miss name is a warning."""
    names = env_names(model or Config)
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        path = names.get(name)
        if path is None:
            near = validation.suggest(name, [*names, *RESERVED_ENV])
            if near is not None:
                log.warning(f"{name} is not a setting of sgwatch; did you mean {near}?", variable=name, nearest=near)
            continue  # someone else's variable, or a secret a ``${...}`` names
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _coerce(value)
    return out


def _origin(environ: Mapping[str, str], model: type[BaseModel], where: str) -> Callable[[validation.Loc], str]:
    """Who set the value at an error's location: the variable that overrides it, else the file."""
    names = env_names(model)
    set_here = sorted(((p, n) for n, p in names.items() if n in environ), key=lambda pn: -len(pn[0]))

    def origin(loc: validation.Loc) -> str:
        return next((n for p, n in set_here if loc[: len(p)] == p), where)

    return origin


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _split_lists(data: Any, model: type[BaseModel]) -> Any:
    """Comma-separated env text for list fields becomes a list."""
    if not isinstance(data, dict):
        return data
    for key, value in list(data.items()):
        field = model.model_fields.get(key)
        if field is None:
            continue
        annotation = str(field.annotation)
        if isinstance(value, str) and annotation.startswith("list["):
            data[key] = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, dict) and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            data[key] = _split_lists(value, field.annotation)
    return data


def load(path: Path | None, environ: Mapping[str, str] | None = None, model: type[Config] = Config) -> Config:
    """Read the config file (if any), apply ``SGWATCH_…`` overrides, validate. Raises InputError."""
    data: dict[str, Any] = {}
    where = str(path) if path else "configuration"
    text = ""
    if path is not None:
        try:
            # The config's own size is bounded by the default: its limits are not read yet.
            text = read_text(path)
        except FileNotFoundError:
            raise InputError(f"{path}: config file not found") from None
        # Bounded nesting (_expand and the channel parsers walk the tree recursively), no aliases.
        doc = load_yaml(text, str(path), max_depth=MAX_DEPTH)
        if doc is not None and not isinstance(doc, dict):
            raise InputError(f"{path}: expected a mapping of settings at the top level")
        data = _expand(doc or {}, path)
        for key in ("baseline", "state"):  # paths in a config file are relative to it
            if data.get(key) and isinstance(data[key], str) and not Path(data[key]).is_absolute():
                data[key] = str(path.parent / data[key])
        if isinstance(data.get("baseline"), list):
            data["baseline"] = [_relative_source(entry, path.parent) for entry in data["baseline"]]
    environ = os.environ if environ is None else environ
    env = env_overrides(environ, model)
    data = _merge(data, _split_lists(env, model))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        origin = _origin(environ, model, where)

        def lines_of(loc: validation.Loc) -> int | None:
            return line_of(text, where, loc) if text and origin(loc) == where else None

        raise InputError("\n".join(validation.describe(exc, origin, lines_of, model=model))) from None


def _relative_source(entry: Any, folder: Path) -> Any:
    """A baseline list entry with its paths taken relative to the config file's folder."""
    if isinstance(entry, str) and not Path(entry).is_absolute():
        return str(folder / entry)
    if isinstance(entry, dict):
        return {
            k: str(folder / v) if k in ("path", "accepted") and isinstance(v, str) and not Path(v).is_absolute() else v
            for k, v in entry.items()
        }
    return entry


_SECRET_KEYS = ("secret", "token", "password", "url", "webhook", "key", "authorization")


def secrets(cfg: Config) -> list[str]:
    """Every credential the config holds, so the log redactor can blank it wherever it appears.

    Give the result to :func:`sgwatch.logs.register_secret`, which adds the forms each takes on
    the wire (a URL's token, a header's bare credential, base64, URL-encoding).
    """
    found: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), name)
        elif isinstance(value, Mapping):
            if isinstance(value.get("username"), str) and isinstance(value.get("password"), str):
                found.append(f"{value['username']}:{value['password']}")  # HTTP basic auth sends it base64-encoded
            for k, v in value.items():
                if k == "url" and value.get("type") == "alertmanager":
                    continue  # its credentials are bearer_token / basic_auth; the URL stays readable in logs
                # every header value may be a credential (Authorization, X-Api-Key, ...)
                walk(v, "secret" if key == "headers" else str(k))
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and any(word in key.lower() for word in _SECRET_KEYS) and key != "access_key_id":
            found.append(value)

    walk(cfg.accounts)
    walk(cfg.notifications, "notifications")
    walk(cfg.events)
    if cfg.endpoint:
        found.extend(logs.url_userinfo(cfg.endpoint))
    return [s for s in found if s]
