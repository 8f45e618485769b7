"""Settings of a live scan: accounts and their credentials, regions, endpoint, tuning.

Kept apart from the scanner so that reading a config does not import the cloud SDK.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from sgwatch import validation
from sgwatch.errors import InputError
from sgwatch.logs import redact_url
from sgwatch.sources import identifiers
from sgwatch.sources.raw import DEFAULT_ACCOUNT

ENDPOINT_ENV = "SGWATCH_ECS_ENDPOINT"
# A region to scan: it names every request, answer and file about it, so it must be a region id.
RegionId = Annotated[str, AfterValidator(lambda v: identifiers.check("region", v))]


def endpoint_parts(url: str) -> tuple[str, str]:
    """(host[:port], scheme) of an ECS endpoint URL; ValueError saying what is wrong."""
    parts = validation.check_url(url)
    if "@" in parts.netloc:
        # The ECS API signs requests with the account's AccessKey; the SDK would put
        # "user:password@" into the Host header of every request.
        raise ValueError(
            "a user or password in the endpoint URL is not supported; "
            "remove the user:password@ part (credentials go under accounts:)"
        )
    return parts.netloc, parts.scheme


def _endpoint(url: str) -> str:
    endpoint_parts(url)
    return url


# An endpoint override: checked where it is read, so `validate` refuses what a scan would.
Endpoint = Annotated[str, AfterValidator(_endpoint)]


# -- settings ---------------------------------------------------------------------------------
class DefaultChainCredentials(BaseModel):
    """The Alibaba Cloud default credential chain (env, ~/.aliyun, RRSA, ECS RAM role...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["default"] = "default"


class AccessKeyCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["access_key"] = "access_key"
    id: str = Field(min_length=1)
    secret: SecretStr
    security_token: SecretStr | None = None  # STS credentials carry one


class RamRoleArnCredentials(BaseModel):
    """Assume a RAM role (usually in another account) through STS, from a source identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["ram_role_arn"] = "ram_role_arn"
    role_arn: str = Field(pattern=r"^acs:ram::\d+:role/.+$")
    session_name: str = "sgwatch"
    external_id: SecretStr | None = None
    duration_seconds: int = Field(default=3600, ge=900, le=43200)
    sts_region: str | None = None
    sts_endpoint: str | None = None
    source: Annotated[DefaultChainCredentials | AccessKeyCredentials, Field(discriminator="type")] = Field(
        default_factory=DefaultChainCredentials
    )


Credentials = Annotated[
    DefaultChainCredentials | AccessKeyCredentials | RamRoleArnCredentials, Field(discriminator="type")
]


def _normalise_credentials(value: Any) -> Any:
    # Accept the shorthands a YAML config naturally uses: "default",
    # {"access_key": {"id", "secret"}} and {"ram_role_arn": "acs:ram::..."}.
    if value is None or value == "default":
        return {"type": "default"}
    if isinstance(value, dict) and "type" not in value and len(value) == 1:
        ((kind, inner),) = value.items()
        if kind == "access_key" and isinstance(inner, dict):
            return {"type": "access_key", **inner}
        if kind == "ram_role_arn":
            return {"type": "ram_role_arn", **(inner if isinstance(inner, dict) else {"role_arn": inner})}
        if kind == "default":
            return {"type": "default"}
    return value


class AccountSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # the name becomes a snapshot folder, so keep it a plain path segment
    name: str = Field(default=DEFAULT_ACCOUNT, pattern=identifiers.PATTERNS["account"])
    credentials: Credentials = Field(default_factory=DefaultChainCredentials)
    regions: list[RegionId] = Field(default_factory=list)  # overrides LiveSettings.regions
    # The account's UID (its numeric account id): rules naming it as SourceGroupOwnerAccount
    # reference the account's own groups.
    uid: str | None = Field(default=None, pattern=r"^[0-9]{5,20}$")

    @field_validator("credentials", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _normalise_credentials(value)


# A member account's UID (its numeric account id), as Resource Directory and RAM ARNs spell it.
AccountUid = Annotated[str, Field(pattern=r"^[0-9]{5,20}$")]
DEFAULT_SESSION_NAME = "sgwatch"
DEFAULT_DISCOVERY_INTERVAL = 3600.0


class OrganizationSettings(BaseModel):
    """Every member account of a Resource Directory, each read through a RAM role assumed in it.

    ``credentials`` is the identity that lists the members and assumes the role (the management
    account's, or a delegated administrator's): an AccessKey, the default chain (RRSA on ACK), or a
    role of its own. Each member account is scanned under its AccountId as its name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    discover: Literal["resource_directory"]
    # RAM's rule for a role name: letters, digits, '.' and '-', at most 64
    role_name: str = Field(pattern=r"^[A-Za-z0-9.-]{1,64}$")
    credentials: Annotated[DefaultChainCredentials | AccessKeyCredentials, Field(discriminator="type")] = Field(
        default_factory=DefaultChainCredentials
    )
    regions: list[RegionId] = Field(default_factory=list)  # overrides LiveSettings.regions
    # STS's rule for RoleSessionName; ActionTrail shows it on every call the scan makes
    session_name: str = Field(default=DEFAULT_SESSION_NAME, pattern=r"^[A-Za-z0-9.@_-]{2,64}$")
    duration_seconds: int = Field(default=3600, ge=900, le=43200)
    external_id: SecretStr | None = None
    include: list[AccountUid] = Field(default_factory=list)  # only these (empty: every member)
    exclude: list[AccountUid] = Field(default_factory=list)
    discovery_interval: float = Field(default=DEFAULT_DISCOVERY_INTERVAL, ge=60, le=7 * 86_400)
    sts_endpoint: Endpoint | None = None  # URL; else sts.aliyuncs.com
    resource_directory_endpoint: Endpoint | None = None  # URL; else resourcemanager.aliyuncs.com

    @field_validator("credentials", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _normalise_credentials(value)

    @field_validator("session_name")
    @classmethod
    def _says_sgwatch(cls, value: str) -> str:
        # a member account's ActionTrail must say who read it
        if "sgwatch" not in value.lower():
            raise ValueError("must contain 'sgwatch' so member accounts' ActionTrail shows who read them")
        return value

    def role_arn(self, uid: str) -> str:
        return f"acs:ram::{uid}:role/{self.role_name}"


def _accounts_shape(value: Any) -> str:
    return f"{validation.SHAPE_TAG}{'directory' if isinstance(value, dict | OrganizationSettings) else 'list'}"


# ``accounts:`` is a list of accounts, or a mapping that says how to discover them.
Accounts = Annotated[
    Annotated[list[AccountSettings], Tag(f"{validation.SHAPE_TAG}list")]
    | Annotated[OrganizationSettings, Tag(f"{validation.SHAPE_TAG}directory")],
    Discriminator(_accounts_shape),
]


def unique_accounts(accounts: list[AccountSettings] | OrganizationSettings) -> None:
    """Each account's name names its snapshot folder and metric label: two would collide."""
    if isinstance(accounts, OrganizationSettings):
        return
    names = [a.name for a in accounts]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"account name(s) {', '.join(map(repr, twice))} used twice; names must be unique")


class ScanTuning(BaseModel):
    """How hard and how long a scan may push the API (the config file's ``scan:`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    concurrency: int = Field(default=8, ge=1, le=128)
    requests_per_second: float = Field(default=10.0, ge=0, le=10_000)  # per (account, region); 0 = no client limit
    connect_timeout_ms: int = Field(default=5_000, ge=50, le=600_000)
    read_timeout_ms: int = Field(default=10_000, ge=50, le=600_000)
    max_retries: int = Field(default=4, ge=0, le=20)  # for 5xx, timeouts and connection errors
    max_throttle_retries: int = Field(default=10, ge=0, le=100)  # throttling gets a separate, larger budget
    backoff_base_ms: int = Field(default=200, ge=1, le=600_000)
    backoff_cap_ms: int = Field(default=20_000, ge=1, le=600_000)
    deadline_seconds: float = Field(default=900.0, gt=0, le=86_400)


class LiveSettings(ScanTuning):
    accounts: list[AccountSettings] = Field(default_factory=lambda: [AccountSettings()], min_length=1)
    # when set, the accounts scanned are its members (sgwatch.sources.organization), not ``accounts``
    organization: OrganizationSettings | None = None
    # this replica's part of the discovered accounts (sgwatch.sharding); listed ones come split
    shard: int = Field(default=0, ge=0)
    total_shards: int = Field(default=1, ge=1)
    regions: list[RegionId] = Field(default_factory=list)  # empty: every region DescribeRegions names
    endpoint: Endpoint | None = None  # URL; the scheme picks http/https. Else env SGWATCH_ECS_ENDPOINT

    @model_validator(mode="after")
    def _unique_accounts(self) -> LiveSettings:
        unique_accounts(self.accounts)
        return self

    def resolved_endpoint(self) -> tuple[str, str] | None:
        """(host[:port], protocol) of the endpoint override, or None for the public endpoints."""
        url = self.endpoint or os.environ.get(ENDPOINT_ENV) or ""
        if not url:
            return None
        try:
            return endpoint_parts(url)
        except ValueError as exc:
            where = "endpoint" if self.endpoint else ENDPOINT_ENV
            raise InputError(f"{where} {redact_url(url)}: {exc}") from None


# -- failures inside the scan -----------------------------------------------------------------
