"""POST /events through the real listener, in process, on loopback: each answer and what it costs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest
import structlog

from sgwatch.events.intake import Accepted, Intake
from sgwatch.events.listener import LIMITS, MAX_BODY, EventsServer, SourceLimiter
from tests.eventfixtures import TOKEN, UID, cloudevent, post, record


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[Accepted]] = []

    def __call__(self, events: Sequence[Accepted], /) -> None:
        self.calls.append(list(events))

    @property
    def events(self) -> list[Accepted]:
        return [e for call in self.calls for e in call]


class Listener:
    def __init__(self, limiter: SourceLimiter | None = None) -> None:
        self.handler = Recorder()
        self.intake = Intake(self.handler, lambda: {"prod": UID})
        self.server = EventsServer("127.0.0.1:0", TOKEN, self.intake, limiter=limiter)
        self.url = f"http://127.0.0.1:{self.server.port}/events"

    @property
    def received(self) -> dict[str, int]:
        return dict(self.intake.counts.received)

    @property
    def answers(self) -> dict[str, int]:
        return dict(self.intake.counts.answers)


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    it = Listener()
    it.server.start()
    yield it
    it.server.stop()


def raw(port: int, head: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes]:
    """Send ``head`` (and ``body``) on a socket; the status and the answer, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + (b"\r\n" + body if not head.endswith("a") else b""))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_an_event_is_taken_202_and_reaches_the_handler(listener: Listener) -> None:
    status, headers, answer = post(listener.url, cloudevent(record(group="sg-web", user="alice")))
    assert status == 202
    assert answer == {"accepted": 1, "ignored": 0, "duplicate": 0, "rejected": 0}
    assert headers["content-type"] == "application/json"
    (got,) = listener.handler.events
    assert got.account == "prod" and got.event.principal.name == "alice" and got.via == "push"
    assert listener.received == {"accepted": 1}
    assert listener.answers == {"202": 1}


def test_an_array_body_is_taken_in_one_handler_call(listener: Listener) -> None:
    status, _, answer = post(listener.url, [cloudevent(record()) for _ in range(3)])
    assert status == 202 and answer["accepted"] == 3
    assert [len(c) for c in listener.handler.calls] == [3]


def test_a_redelivered_event_is_handled_once(listener: Listener) -> None:
    event = cloudevent(record(event_id="at-1"))
    assert post(listener.url, event)[2]["accepted"] == 1
    status, _, answer = post(listener.url, event)  # EventBridge's retry: same id, same record
    assert status == 202 and answer["duplicate"] == 1
    assert len(listener.handler.events) == 1
    assert listener.received == {"accepted": 1, "duplicate": 1}


def test_events_to_ignore_are_still_202(listener: Listener) -> None:
    status, _, answer = post(
        listener.url,
        [
            cloudevent({"bucket": "b"}, source="acs.oss", event_type="oss:ObjectCreated:PutObject"),
            cloudevent(record("DeleteDisk")),
        ],
    )
    assert status == 202 and answer["ignored"] == 2
    assert listener.handler.calls == []


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token-wrong", TOKEN[:-1], TOKEN + "x", ""])
def test_a_missing_or_wrong_token_is_401_and_nothing_is_read(listener: Listener, token: str | None) -> None:
    # a body that would be a 400 if it were parsed: the answer is 401, and it is not counted rejected
    status, headers, answer = post(listener.url, b"{not json", token=token)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert "token" in answer["error"] and TOKEN not in json.dumps(answer)
    status, _, _ = post(listener.url, cloudevent(record()), token=token)
    assert status == 401
    assert listener.handler.calls == []  # no handler, so no re-read, so no API call
    assert listener.received == {}
    assert listener.answers == {"401": 2}


def test_a_non_ascii_token_is_compared_as_the_bytes_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    token = "jeton-très-secret-0123456789"
    server = EventsServer("127.0.0.1:0", token, Intake(Recorder(), lambda: {"prod": UID}))
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/events"
        head = "POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nAuthorization: Bearer "
        body = json.dumps(cloudevent(record())).encode()
        for sent, expected in ((token.encode("utf-8"), 202), (token.encode("latin-1"), 401)):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(head.format(len(body)).encode() + sent + b"\r\nConnection: close\r\n\r\n" + body)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            assert int(data.split(b" ", 2)[1]) == expected, (url, data[:100])
    finally:
        server.stop()


def test_other_schemes_are_401(listener: Listener) -> None:
    status, _, _ = post(listener.url, cloudevent(record()), token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401


def test_401_is_decided_on_the_headers_before_the_body_is_sent(listener: Listener) -> None:
    status, answer = raw(
        listener.server.port,
        "POST /events HTTP/1.1\nHost: x\nAuthorization: Bearer nope-nope-nope-nope\nContent-Length: 500000\n",
    )
    assert status == 401 and json.loads(answer)["error"]
    assert listener.handler.calls == []


def test_a_body_that_is_not_cloudevents_is_400_with_one_line(listener: Listener) -> None:
    status, _, answer = post(listener.url, b'{"specversion": "1.0", "id": "x", "source": "<b>evil</b>"}')
    assert status == 400
    assert answer == {"error": "the event: no 'type' attribute; a CloudEvent 1.0 has specversion, id, source, type"}
    assert "evil" not in json.dumps(answer)
    assert listener.received == {"rejected": 1}


def test_an_event_whose_record_is_malformed_is_400_quoting_nothing(listener: Listener) -> None:
    status, _, answer = post(listener.url, cloudevent(record(eventTime="<script>")))
    assert status == 400
    assert answer["error"] == "event 0: its ActionTrail record (data) is malformed" and answer["rejected"] == 1
    assert "<script>" not in json.dumps(answer)


def test_a_good_event_with_a_malformed_one_is_202_with_the_count(listener: Listener) -> None:
    status, _, answer = post(listener.url, [cloudevent(record()), cloudevent(record(eventTime="never"))])
    assert status == 202 and (answer["accepted"], answer["rejected"]) == (1, 1)


def test_over_one_mib_is_413_by_content_length_before_reading(listener: Listener) -> None:
    status, answer = raw(
        listener.server.port,
        f"POST /events HTTP/1.1\nHost: x\nAuthorization: Bearer {TOKEN}\nContent-Length: {MAX_BODY + 1}\n",
    )
    assert status == 413 and "1048576" in json.loads(answer)["error"]
    assert listener.handler.calls == []
    assert listener.answers == {"413": 1}


def test_exactly_one_mib_is_read(listener: Listener) -> None:
    event = json.dumps(cloudevent(record())).encode()
    padded = event + b" " * (MAX_BODY - len(event))
    assert post(listener.url, padded)[0] == 202


def test_a_chunked_body_over_one_mib_is_413(listener: Listener) -> None:
    # exactly the bytes that reach the bound (no more: unread bytes would make the close a reset)
    size = MAX_BODY + 1
    framing = b"%x\r\n" % size
    body = framing + b" " * (size - len(framing))
    status, answer = raw(
        listener.server.port,
        f"POST /events HTTP/1.1\nHost: x\nAuthorization: Bearer {TOKEN}\nTransfer-Encoding: chunked\n",
        body,
    )
    assert status == 413 and json.loads(answer) == {"error": "the body is over 1048576 bytes"}


def test_huge_headers_are_431_in_json(listener: Listener) -> None:
    head = "POST /events HTTP/1.1\nHost: x\nX-Junk: "
    # headers of exactly the bound, unterminated: waitress refuses them once it has read them all
    status, answer = raw(listener.server.port, head + "a" * (16384 - len(head.replace("\n", "\r\n"))))
    assert status == 431 and "a" * 100 not in answer.decode()
    assert json.loads(answer)["error"]


def test_other_paths_and_methods(listener: Listener) -> None:
    status, _, answer = post(listener.url.replace("/events", "/metrics"), cloudevent(record()))
    assert status == 404 and answer["error"]
    status, answer_bytes = raw(listener.server.port, "GET /events HTTP/1.1\nHost: x\nConnection: close\n")
    assert status == 405 and json.loads(answer_bytes)["error"]
    assert listener.handler.calls == []


def test_binary_mode_is_read(listener: Listener) -> None:
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": "acs.actiontrail",
        "ce-type": "actiontrail:ActionTrail:ApiCall",
        "ce-aliyunaccountid": UID,
    }
    status, _, answer = post(listener.url, record(), headers=headers)
    assert status == 202 and answer["accepted"] == 1


def test_a_source_over_its_rate_gets_429_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    now = [0.0]
    it = Listener(limiter=SourceLimiter(rate=0.5, burst=2, clock=lambda: now[0]))
    it.server.start()
    try:
        assert post(it.url, cloudevent(record()))[0] == 202
        assert post(it.url, cloudevent(record()), token="bad-bad-bad-bad-bad")[0] == 401  # refusals count too
        status, headers, answer = post(it.url, cloudevent(record()))
        assert status == 429 and headers["retry-after"] == "2" and answer["error"]
        now[0] += 2.0  # one token back
        assert post(it.url, cloudevent(record()))[0] == 202
        assert it.answers == {"202": 2, "401": 1, "429": 1}
        assert len(it.handler.events) == 2
    finally:
        it.server.stop()


def test_concurrent_requests_are_bounded_and_the_overflow_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    release, inside = threading.Event(), threading.Semaphore(0)
    busy = [0, 0]  # now, most at once

    def slow(events: Sequence[Accepted], /) -> None:
        busy[0] += 1
        busy[1] = max(busy)
        inside.release()
        release.wait(10)
        busy[0] -= 1

    limits = replace(LIMITS, connections=2, overflow=1, workers=1)
    server = EventsServer("127.0.0.1:0", TOKEN, Intake(slow, lambda: {"prod": UID}), limits=limits)
    server.start()
    url = f"http://127.0.0.1:{server.port}/events"
    results: list[int] = []
    senders = [threading.Thread(target=lambda: results.append(post(url, cloudevent(record()))[0])) for _ in range(2)]
    try:
        for t in senders:
            t.start()
        assert inside.acquire(timeout=5)  # one request is in the handler, the other waits for the worker
        time.sleep(0.3)
        status, headers, answer = post(url, cloudevent(record()), timeout=5)  # a third connection: overflow
        assert status == 503 and headers["retry-after"] == "1" and answer["error"]
    finally:
        release.set()
        for t in senders:
            t.join(10)
        server.stop()
    assert sorted(results) == [202, 202] and busy[1] == 1


def test_the_limiter_keeps_a_bounded_number_of_sources() -> None:
    limiter = SourceLimiter(rate=1.0, burst=1, max_sources=2, clock=lambda: 0.0)
    assert limiter.take("a") is None and limiter.take("a") == 1
    limiter.take("b")
    limiter.take("c")  # "a", the least recently seen, is dropped: it starts again with a full bucket
    assert limiter.take("a") is None


def test_the_token_never_reaches_the_logs(listener: Listener) -> None:
    with structlog.testing.capture_logs() as logs:
        post(listener.url, b"{not json")
        post(listener.url, cloudevent(record(eventTime="bad")))
        post(listener.url, cloudevent(record()), token=TOKEN + "0")
        post(listener.url, cloudevent(record()))
    assert logs  # the refusals were logged
    assert TOKEN not in repr(logs)
