"""The ECS read calls of a scan, answered as plain JSON through the official SDK.

Each ``describe_*_with_options`` method of the SDK signs and sends its request through the
client's generic ``call_api``, then copies the JSON answer into model objects that the scanner
turned straight back into a dict with ``to_map()``: two walks of every rule, ENI and instance for
nothing (most of a call's CPU once the connection is pooled; ``benchmarks/bench_scan.py
--cpu-per-call`` shows the split). Here the same ``call_api`` is called with the same
parameters the generated methods use, and the answer's body is kept as it was parsed: the
signing, the endpoint, the timeouts, the errors (throttling, 4xx, 5xx) are the SDK's, unchanged.

The body is whatever the server sent. :func:`shape_problem` checks what the models' mapping
used to refuse (a listing that is not a list of objects); the parsers check every field they read.
"""

from __future__ import annotations

from typing import Any, get_args

from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import utils_models as open_api_util_models
from alibabacloud_tea_openapi.utils import Utils
from darabonba.runtime import RuntimeOptions

from sgwatch.sources.raw import ENTRIES, Action

API_VERSION = "2014-05-26"  # the version alibabacloud_ecs20140526 speaks

Query = dict[str, str | int | None]  # a request's parameters by their API names

# What every generated ECS read method passes to call_api (RPC style, form-encoded, JSON answer).
_PARAMS: dict[Action, open_api_util_models.Params] = {
    action: open_api_util_models.Params(
        action=action,
        version=API_VERSION,
        protocol="HTTPS",  # the client's own protocol (the endpoint override's scheme) wins
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    for action in get_args(Action)
}


def shape_problem(action: Action, body: dict[str, Any]) -> str | None:
    """What is wrong with the shape of ``action``'s entries in ``body``, or None: the container
    an object, its list a list, each entry an object (absent ones are an empty listing)."""
    outer, inner = ENTRIES[action]
    holder: Any = body
    if outer is not None:
        holder = body.get(outer)
        if holder is None:
            return None
        if not isinstance(holder, dict):
            return f"{outer} is not an object"
    entries = holder.get(inner)
    where = f"{outer}.{inner}" if outer else inner
    if entries is None:
        return None
    if not isinstance(entries, list):
        return f"{where} is not a list"
    if any(not isinstance(entry, dict) for entry in entries):
        return f"{where} holds something that is not an object"
    return None


def call(client: EcsClient, action: Action, query: Query, runtime: RuntimeOptions) -> Any:
    """The parsed JSON body of ``action`` with ``query`` (None values left out), or the SDK's
    exception. The body may be anything JSON can say, or None for an empty answer."""
    request = open_api_util_models.OpenApiRequest(query=Utils.query({k: v for k, v in query.items() if v is not None}))
    return client.call_api(_PARAMS[action], request, runtime).get("body")
