"""A POST body from EventBridge: one CloudEvent (spec 1.0) or a JSON array of them.

EventBridge delivers an ActionTrail event as a CloudEvent in structured JSON mode: the context
attributes (``specversion``, ``id``, ``source`` = ``acs.actiontrail``, ``type`` =
``actiontrail:ActionTrail:ApiCall`` / ``ConsoleOperation`` / ``AliyunServiceEvent``, ``time``,
``subject``) and Alibaba's extensions (``aliyunaccountid``, ``aliyunregionid``,
``aliyuneventbusname``, ``aliyunpublishtime``, ...) at the top, the ActionTrail record under
``data`` (an object; a JSON string of one is read too). The binary mode (attributes in
``ce-*`` headers, the record as the body) is read as well.

The body is someone else's text: it is parsed by the bounded JSON loader, at most
:data:`MAX_EVENTS` events are read from it, and every refusal is one line that quotes nothing
of the input. Events of other sources and types are well-formed CloudEvents, not errors: the
intake ignores them (and counts them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sgwatch.errors import InputError
from sgwatch.events.record import Ignored
from sgwatch.inputlimits import load_json

MAX_EVENTS: Final = 100  # per body; EventBridge posts one event per request unless batching is on
MAX_ATTRIBUTE: Final = 512  # characters of a context attribute; real ones are well under 100
SPECVERSION: Final = "1.0"
SOURCE: Final = "acs.actiontrail"
TYPES: Final = frozenset(
    {
        "actiontrail:ActionTrail:ApiCall",
        "actiontrail:ActionTrail:ConsoleOperation",
        "actiontrail:ActionTrail:AliyunServiceEvent",
    }
)
# The context attributes read; the others (subject, dataschema, aliyun* extensions) are kept out.
_REQUIRED: Final = ("specversion", "id", "source", "type")
_OPTIONAL: Final = ("time", "datacontenttype", "aliyunaccountid", "aliyunregionid")


class CloudEventError(ValueError):
    """A body that is not CloudEvents sgwatch reads; the message is one line quoting no input."""


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """The context attributes sgwatch reads and the data, as delivered."""

    id: str
    source: str
    type: str
    time: str = ""  # as written (EventBridge writes an offset, e.g. +08:00); the record's eventTime is the one used
    account_uid: str = ""  # aliyunaccountid: the account the event belongs to
    region: str = ""  # aliyunregionid
    data: object = None  # the ActionTrail record (a parsed object) for an ActionTrail event

    @property
    def is_actiontrail(self) -> bool:
        return self.source == SOURCE and self.type in TYPES

    def ignored(self) -> Ignored | None:
        """Why this event is none of sgwatch's business, or None for an ActionTrail event."""
        if self.source != SOURCE:
            return Ignored(self.id, "the event's source is not acs.actiontrail")
        if self.type not in TYPES:
            return Ignored(self.id, "the event's type is not an ActionTrail write event")
        return None


def _attribute(event: Mapping[str, Any], key: str, where: str, *, required: bool) -> str:
    value = event.get(key)
    if value is None:
        if required:
            raise CloudEventError(f"{where}: no {key!r} attribute; a CloudEvent 1.0 has {', '.join(_REQUIRED)}")
        return ""
    if not isinstance(value, str):
        raise CloudEventError(f"{where}: the {key!r} attribute is not a string")
    if required and not value:
        raise CloudEventError(f"{where}: the {key!r} attribute is empty")
    if len(value) > MAX_ATTRIBUTE:
        raise CloudEventError(f"{where}: the {key!r} attribute is longer than {MAX_ATTRIBUTE} characters")
    return value


def _data(value: object, where: str, actiontrail: bool) -> object:
    if not actiontrail:
        return None  # another service's data is not read at all
    if isinstance(value, str):
        # EventBridge may carry the record as a JSON string; it is parsed by the same bounded loader
        try:
            value = load_json(value.encode("utf-8"), f"{where}: data")
        except InputError:
            raise CloudEventError(f"{where}: 'data' is a string that is not a JSON object") from None
    if not isinstance(value, Mapping):
        raise CloudEventError(f"{where}: 'data' is not an object (the ActionTrail record)")
    return value


def event_of(event: object, where: str) -> CloudEvent:
    """One structured-mode CloudEvent (a parsed JSON object); :class:`CloudEventError` if it is not one."""
    if not isinstance(event, Mapping):
        raise CloudEventError(f"{where}: not a JSON object (a CloudEvent)")
    specversion = _attribute(event, "specversion", where, required=True)
    if specversion != SPECVERSION:
        raise CloudEventError(f"{where}: specversion is not {SPECVERSION}")
    attrs = {key: _attribute(event, key, where, required=True) for key in _REQUIRED[1:]}
    attrs |= {key: _attribute(event, key, where, required=False) for key in _OPTIONAL}
    if "data_base64" in event:
        raise CloudEventError(f"{where}: 'data_base64' is not read; deliver the record as JSON under 'data'")
    actiontrail = attrs["source"] == SOURCE and attrs["type"] in TYPES
    if actiontrail and "data" not in event:
        raise CloudEventError(f"{where}: an ActionTrail event without 'data' (the record)")
    return CloudEvent(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        time=attrs["time"],
        account_uid=attrs["aliyunaccountid"],
        region=attrs["aliyunregionid"],
        data=_data(event.get("data"), where, actiontrail),
    )


def parse_body(body: bytes, headers: Mapping[str, str] | None = None) -> list[CloudEvent]:
    """The CloudEvents of a POST body; :class:`CloudEventError` (one line) if it holds none sgwatch reads.

    ``headers``: the request's headers, names in lower case; a ``ce-specversion`` header means
    the binary mode (the attributes in ``ce-*`` headers, the body is the data).
    """
    headers = headers or {}
    if "ce-specversion" in headers:
        binary: dict[str, Any] = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
        binary["data"] = _load(body, "the body")
        return [event_of(binary, "the event")]
    doc = _load(body, "the body")
    if isinstance(doc, list):
        if not doc:
            raise CloudEventError("the body is an empty JSON array; post one CloudEvent or an array of them")
        if len(doc) > MAX_EVENTS:
            raise CloudEventError(f"the body holds more than {MAX_EVENTS} events; post at most {MAX_EVENTS}")
        return [event_of(e, f"event {i}") for i, e in enumerate(doc)]
    return [event_of(doc, "the event")]


def _load(body: bytes, where: str) -> Any:
    if not body.strip():
        raise CloudEventError(f"{where} is empty; post one CloudEvent or a JSON array of them")
    try:
        return load_json(body, where)
    except InputError as exc:
        # load_json's lines name the place and the problem (nesting, numbers, syntax), never the text
        raise CloudEventError(str(exc)) from None
