"""Verify Alibaba Cloud signature V3 (ACS3-HMAC-SHA256) the way the gateway does.

Rebuilt from the request as received, so a client that signs anything differently from the
real SDK (a header it did not sign, a re-encoded query) is rejected as the cloud would reject it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

ALGORITHM = "ACS3-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Authorization:
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization | None:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key] = val
    if not {"Credential", "SignedHeaders", "Signature"} <= parts.keys():
        return None
    headers = tuple(h for h in parts["SignedHeaders"].split(";") if h)
    return Authorization(parts["Credential"], headers, parts["Signature"])


def canonical_query(raw_query: str) -> str:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    return "&".join(f"{k}={quote(v, safe='~', encoding='utf-8')}" for k, v in sorted(pairs))


def expected_signature(
    secret: str,
    method: str,
    path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    payload_hash: str,
) -> str:
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers)
    canonical_request = "\n".join(
        [method, path or "/", canonical_query(raw_query), canonical_headers, ";".join(signed_headers), payload_hash]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{digest}"
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected, given)
