"""HTTP POST with the standard library, and the errors a delivery can end in.

Redirects are not followed: a webhook that answers 3xx is misconfigured, and following it would
send the alert (and any signature) to a host nobody configured.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any

from sgwatch import logs
from sgwatch.alerting.escape import clean
from sgwatch.logs import redact_url

USER_AGENT = "sgwatch-alerting/1"
MAX_RESPONSE = 64 * 1024


class DeliveryError(Exception):
    """A delivery failed. ``retryable`` says whether the outbox should try again.

    ``ambiguous``: the request went out but no answer came back (a read timeout, the connection
    lost before the status line, a gateway timeout), so the receiver may have acted on it; a retry
    may post it twice. The message never holds a URL path, query or secret: callers build it from
    :func:`redact_url` and scrub receiver text with :func:`scrub`.
    """

    def __init__(
        self, message: str, *, retryable: bool, retry_after: float | None = None, ambiguous: bool = False
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.ambiguous = ambiguous


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str]


def scrub(text: str, secrets: list[str], limit: int = 200) -> str:
    """Receiver text for a log line: secrets (registered ones and ``secrets``, in every form
    :func:`sgwatch.logs.secret_forms` knows) cut out, one line, bounded."""
    return clean(logs.scrub(text, secrets), limit)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> urllib.request.Request | None:
        return None  # the 3xx surfaces as an HTTPError: a permanent failure


_OPENER = urllib.request.build_opener(_NoRedirect())


def _retry_after(headers: Message | dict[str, str] | None) -> float | None:
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: rare from webhooks, and our backoff is a fine substitute


def post(request: HttpRequest, timeout: float, secrets: list[str]) -> HttpResponse:
    """POST and classify: 2xx returns; 5xx, 429 and network errors are retryable; other statuses are not."""
    target = redact_url(request.url)
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **request.headers}
    req = urllib.request.Request(request.url, data=request.body, headers=headers, method="POST")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            body = resp.read(MAX_RESPONSE)
            return HttpResponse(resp.status, body, {k.lower(): v for k, v in resp.headers.items()})
    except urllib.error.HTTPError as exc:
        status = exc.code
        try:
            text = exc.read(2048).decode("utf-8", "replace")
        except OSError:
            text = ""
        retryable = status >= 500 or status == 429
        detail = f": {scrub(text, secrets)}" if text.strip() else ""
        raise DeliveryError(
            f"HTTP {status} from {target}{detail}",
            retryable=retryable,
            retry_after=_retry_after(exc.headers),
            ambiguous=status == 504,  # a gateway gave up waiting; the server behind it may still post
        ) from None
    except urllib.error.URLError as exc:
        # urllib raises URLError while connecting and sending: the receiver has no whole request.
        raise DeliveryError(f"cannot reach {target}: {_reason(exc.reason, secrets)}", retryable=True) from None
    except TimeoutError:
        # The request was sent; the answer did not come in time.
        raise DeliveryError(
            f"timed out after {timeout:g}s waiting for {target}", retryable=True, ambiguous=True
        ) from None
    except OSError as exc:
        raise DeliveryError(
            f"connection to {target} lost before its answer: {_reason(exc, secrets)}", retryable=True, ambiguous=True
        ) from None
    except http.client.HTTPException as exc:
        raise DeliveryError(
            f"bad HTTP response from {target}: {type(exc).__name__}", retryable=True, ambiguous=True
        ) from None
    except ValueError:
        # Its text would quote the whole URL, token included.
        raise DeliveryError(f"invalid URL for {target}", retryable=False) from None


def _reason(reason: Any, secrets: list[str]) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError):
        # strerror is the errno text ("Connection refused"); str(exc) could name the address.
        return scrub(reason.strerror or type(reason).__name__, secrets, 120)
    return scrub(reason if isinstance(reason, str) else type(reason).__name__, secrets, 120)
