"""EventBridge-shaped change events for tests: ActionTrail records, CloudEvents around them, a POST.

    rec = record("AuthorizeSecurityGroup", group="sg-web", user="alice", source_ip="203.0.113.7")
    status, body = post(f"http://127.0.0.1:{port}/events", cloudevent(rec), token=TOKEN)

:func:`record` writes what ActionTrail records for a write call (the fields
``sgwatch.events.record`` reads, as the ActionTrail docs show them); :func:`cloudevent` wraps it
as EventBridge delivers it (CloudEvents 1.0, structured mode, Alibaba's extension attributes);
:func:`post` sends one event, a list of them, or raw bytes, and returns the status and the
decoded JSON answer. Everything talks to loopback only, without a proxy.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

UID = "1234567890123456"  # the account of the records and events built here, unless told otherwise
TOKEN = "test-events-token-0123456789abcdef"  # long enough for events.token
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def record(
    event_name: str = "AuthorizeSecurityGroup",
    *,
    group: str = "sg-web",
    region: str = "cn-hangzhou",
    event_id: str | None = None,
    user: str = "alice",
    source_ip: str = "203.0.113.7",
    account_uid: str = UID,
    when: datetime | None = None,
    parameters: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An ActionTrail record of a successful write call by RAM user ``user`` on ``group``.

    ``parameters`` replace the default requestParameters (``RegionId``, ``SecurityGroupId``, and
    for Authorize* a TCP 22 rule from anywhere); ``fields`` add or replace top-level fields
    (``errorCode="..."`` for a failed call, ``eventRW="Read"``, ...).
    """
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    params: dict[str, Any] = {"RegionId": region, "SecurityGroupId": group}
    if event_name.startswith("Authorize"):
        params |= {"IpProtocol": "TCP", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0", "Policy": "Accept"}
    return {
        "eventId": event_id or str(uuid.uuid4()),
        "eventVersion": 1,
        "eventName": event_name,
        "eventType": "ApiCall",
        "eventRW": "Write",
        "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "serviceName": "Ecs",
        "acsRegion": region,
        "sourceIpAddress": source_ip,
        "userAgent": "AlibabaCloud (Linux) aliyun-cli/v3.0",
        "requestId": str(uuid.uuid4()).upper(),
        "isGlobal": False,
        "recipientAccountId": account_uid,
        "userIdentity": {
            "type": "ram-user",
            "principalId": "2000000000000001",
            "accountId": account_uid,
            "accessKeyId": "LTAI5tTestKeyForEvents01",
            "userName": user,
        },
        "requestParameters": parameters if parameters is not None else params,
        **fields,
    }


def cloudevent(
    data: dict[str, Any] | str,
    *,
    account_uid: str | None = None,
    event_type: str = "actiontrail:ActionTrail:ApiCall",
    source: str = "acs.actiontrail",
    event_id: str | None = None,
) -> dict[str, Any]:
    """``data`` (a record, or a JSON string of one) as EventBridge delivers it to an HTTP target."""
    region = data.get("acsRegion", "cn-hangzhou") if isinstance(data, dict) else "cn-hangzhou"
    uid = account_uid or (data.get("recipientAccountId", UID) if isinstance(data, dict) else UID)
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "subject": f"acs:actiontrail:{region}:{uid}:event",
        "time": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
        "datacontenttype": "application/json;charset=utf-8",
        "aliyunaccountid": uid,
        "aliyunregionid": region,
        "aliyuneventbusname": "default",
        "aliyunpublishtime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "data": data,
    }


def post(
    url: str,
    body: dict[str, Any] | list[Any] | bytes,
    token: str | None = TOKEN,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], Any]:
    """POST ``body`` (JSON-encoded unless bytes) with ``Authorization: Bearer token`` (none if None).

    Returns the status, the response headers (names in lower case) and the JSON answer (None if the answer is not JSON).
    """
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/cloudevents+json; charset=utf-8", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method="POST", headers=sent)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, got, raw = resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        status, got, raw = exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    return status, got, answer
