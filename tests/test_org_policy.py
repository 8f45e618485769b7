"""deploy/'s organisation policies match what the code calls.

The identity under ``accounts.credentials`` lists the directory and assumes the member role:
deploy/management-account-policy.json. Each member's role trusts the management account
(deploy/member-role-trust-policy.json) and is granted deploy/ram-policy.json, the scan's own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sgwatch.sources import identity, organization
from sgwatch.sources.live_settings import OrganizationSettings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# the product each module's SDK calls go to
PRODUCT = {Path(identity.__file__): "sts", Path(organization.__file__): "resourcemanager"}
# STS answers GetCallerIdentity to any caller: RAM has no permission for it
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}
SDK_CALL = re.compile(r"\.([a-z][a-z0-9_]*?)_with_options(?:_async)?\b")


def called() -> set[str]:
    found = set()
    for path, product in PRODUCT.items():
        for method in SDK_CALL.findall(path.read_text(encoding="utf-8")):
            found.add(f"{product}:" + "".join(part.capitalize() for part in method.split("_")))
    return found - NEEDS_NO_PERMISSION


def statements(name: str) -> list[dict[str, object]]:
    doc = json.loads((DEPLOY / name).read_text(encoding="utf-8"))
    assert doc["Version"] == "1"
    assert all(s["Effect"] == "Allow" for s in doc["Statement"]), "the policies only allow"
    return list(doc["Statement"])


def actions(statement: dict[str, object]) -> set[str]:
    listed = statement["Action"]
    return {listed} if isinstance(listed, str) else set(listed)  # type: ignore[arg-type]


def test_the_management_policy_grants_exactly_what_discovery_calls() -> None:
    granted = {a for s in statements("management-account-policy.json") for a in actions(s)}
    assert called() == {"resourcemanager:ListAccounts", "sts:AssumeRole"}
    assert granted == called()


def test_assume_role_is_granted_on_the_documented_role_only() -> None:
    (assume,) = [s for s in statements("management-account-policy.json") if "sts:AssumeRole" in actions(s)]
    role = OrganizationSettings(discover="resource_directory", role_name="sgwatch-reader")
    assert re.fullmatch(str(assume["Resource"]).replace("*", "[0-9]+"), role.role_arn("1234567890123456"))


def test_the_member_role_trusts_the_management_account_only() -> None:
    (trust,) = statements("member-role-trust-policy.json")
    assert actions(trust) == {"sts:AssumeRole"}
    principal = trust["Principal"]
    assert isinstance(principal, dict) and set(principal) == {"RAM"}
    assert principal["RAM"] == ["acs:ram::MANAGEMENT_ACCOUNT_ID:root"]


def test_the_docs_name_the_policies() -> None:
    text = (ROOT / "docs" / "live-scanning.md").read_text(encoding="utf-8")
    for name in ("management-account-policy.json", "member-role-trust-policy.json", "ram-policy.json"):
        assert f"deploy/{name}" in text
