"""The one place a request to KIS is sent: to the configured origin only, never redirected,
within a whole-request deadline, and reading at most a size limit of the answer's body.

A per-read socket timeout is no deadline (a server sending a byte a second never trips it), so
the deadline is kept from outside the read: a watchdog thread (deadlines.py) shuts down the socket
when it passes, and the blocked read then fails. Connections are watched from their creation
(connect, TLS, headers, body); a connection whose deadline passed is closed, never reused.
"""

from __future__ import annotations

import http.client
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from pipelines.errors import (
    KisDeadlineError,
    KisError,
    KisRedirectError,
    KisTooLargeError,
    KisTransientError,
    KisUnreachableError,
)
from pipelines.kis import answers, deadlines

DEFAULT_DEADLINE = 60.0
DEFAULT_MAX_BODY_BYTES = 1 << 20
READ_CHUNK = 64 * 1024
#: What the client accepts (requests' own default), and undoes here within the size limit.
ACCEPT_ENCODING = "gzip, deflate"
#: Response headers kept with a quarantined answer. Anything else (cookies, whatever a server
#: echoes back) is left out, so a secret cannot reach a file through a header; `location`
#: keeps only its scheme, host and port.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "date",
        "server",
        "tr_id",
        "tr_cont",
        "gt_uid",
        "retry-after",
        "location",
    }
)


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port: where the app key, secret and token may be sent."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, parts.hostname.rstrip(".").lower(), port)

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def location_host(location: str, base_url: str) -> str:
    """Where a Location header points, as host:port only (never its path or query)."""
    try:
        return Origin.of(urljoin(base_url + "/", location.strip())).netloc
    except ValueError:
        return "an unusable Location"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as received: status, headers, and at most the size limit of the body."""

    status: int
    #: Every header as received, names lower-cased. Only `kept_headers()` is ever written.
    headers: Mapping[str, str] = field(repr=False)
    #: The body, gzip or deflate undone; as on the wire when that failed (`decoding_error`).
    body: bytes = field(repr=False)
    received_at: datetime
    #: False when the body was cut: at the size limit, at the deadline, or by the connection.
    complete: bool = True
    #: Why the body is as on the wire despite its Content-Encoding ("" when it decoded).
    decoding_error: str = ""
    base_url: str = ""

    def kept_headers(self) -> dict[str, str]:
        """The allow-listed headers (KEPT_HEADERS); `location` reduced to its host and port."""
        kept = {}
        for name, value in self.headers.items():
            if name in KEPT_HEADERS:
                kept[name] = location_host(value, self.base_url) if name == "location" else value
        return kept


# -- sending ---------------------------------------------------------------------------------
#: What a failed request raises on the way (connect, send, headers, body).
TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


@dataclass
class _Progress:
    """How far a request got: its response once the headers are in, the body bytes so far."""

    response: requests.Response | None = None
    wire: bytearray = field(default_factory=bytearray)
    #: The body was read to its end.
    whole: bool = False


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    origin: Origin,
    what: str,
    deadline: float,
    deadline_text: str,
    max_body_bytes: int,
    timeout: tuple[float, float],
    **kwargs: Any,
) -> Answer:
    """Send one request to `origin` and read its answer whole, or raise a KisError that names
    `what`, the status and what went wrong.

    Never follows a redirect (a 3xx is KisRedirectError, with the answer). Connect, headers
    and body together end within `deadline` seconds (KisDeadlineError, a transient fault, with
    what had arrived); a body over `max_body_bytes` is not read further (KisTooLargeError, with
    its first `max_body_bytes`)."""
    target = Origin.of(url)
    if target != origin:  # the one check every request passes: secrets go to one origin only
        raise KisError(
            f"{what}: refusing to send a request to {target}: the app key, secret and token "
            f"are sent to {origin} only"
        )
    if {"allow_redirects", "stream", "hooks"} & kwargs.keys():
        raise TypeError("send() never follows redirects, always streams, sets its own hooks")
    base_url = str(origin)
    headers = {"accept-encoding": ACCEPT_ENCODING, **kwargs.pop("headers", {})}
    connect, read = timeout
    progress = _Progress()
    watch = deadlines.start(deadline)
    try:
        try:
            progress.response = session.request(
                method,
                url,
                headers=headers,
                timeout=(min(connect, deadline), min(read, deadline)),
                allow_redirects=False,
                stream=True,
                hooks={"response": [_stop_at_redirects]},
                **kwargs,
            )
        except _Redirected as redirected:
            progress.response = redirected.response
        over_limit = _read_body(progress, max_body_bytes)
    except TRANSPORT_ERRORS as error:
        raise _failed(error, progress, watch, what, base_url, deadline_text) from None
    finally:
        deadlines.stop(watch)
        if progress.response is not None and not progress.whole:
            progress.response.close()  # a body cut short: its connection is never reused
    response = progress.response
    assert response is not None
    answer = _answer(response, bytes(progress.wire), max_body_bytes, base_url, over_limit)
    over_limit = over_limit or not answer.complete  # or its gzip, once undone, is
    if 300 <= response.status_code < 400:
        location = response.headers.get("location")
        where = location_host(location, base_url) if location is not None else "no Location"
        refusal: KisError = KisRedirectError(
            f"{what}: HTTP {response.status_code} redirect to {where} refused: the app key, "
            f"secret and token are sent to {origin} only"
        )
    elif over_limit:
        refusal = KisTooLargeError(
            f"{what}: HTTP {response.status_code} with a body over the {max_body_bytes:,}-byte "
            "limit (KIS_MAX_BODY_BYTES); not read further"
        )
    else:
        return answer
    refusal.answer = answer
    raise refusal


class _Redirected(Exception):
    """Raised by the response hook to hand a redirect back unread."""

    def __init__(self, response: requests.Response):
        super().__init__(response.status_code)
        self.response = response


def _stop_at_redirects(response: requests.Response, *args: Any, **kwargs: Any) -> Any:
    """A response hook: a redirect leaves requests here, before it reads the whole body of a
    redirect (without any limit) to prepare a request it would not send anyway."""
    if response.is_redirect:
        raise _Redirected(response)
    return response


def _read_body(progress: _Progress, limit: int) -> bool:
    """Read the body as it arrives (read1: whatever is there, never waiting for a full chunk)
    until its end or one byte over `limit`; True if it is over."""
    assert progress.response is not None
    raw = progress.response.raw
    while True:
        chunk = raw.read1(READ_CHUNK, decode_content=False)
        if not chunk:
            progress.whole = True  # urllib3 gave the connection back to the pool at the end
            return False
        progress.wire += chunk
        if len(progress.wire) > limit:
            return True


def _answer(
    response: requests.Response, wire: bytes, limit: int, base_url: str, over_limit: bool
) -> Answer:
    encoding = response.headers.get("content-encoding", "")
    body, decoded_over, error = _decoded(wire, encoding, limit)
    return Answer(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        body=body[:limit],
        received_at=datetime.now(UTC),
        complete=not (over_limit or decoded_over),
        decoding_error=error if not over_limit else "",
        base_url=base_url,
    )


def _decoded(wire: bytes, encoding: str, limit: int) -> tuple[bytes, bool, str]:
    """(body, over the limit, why it could not be decoded): gzip or deflate undone without
    ever holding more than `limit` + 1 bytes of output."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return wire, len(wire) > limit, ""
    if encoding in ("gzip", "x-gzip"):
        decoders = [zlib.decompressobj(16 + zlib.MAX_WBITS)]
    elif encoding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
        decoders = [zlib.decompressobj(), zlib.decompressobj(-zlib.MAX_WBITS)]
    else:
        return wire, False, f"has Content-Encoding {encoding!r}, which was not asked for"
    problem = ""
    for decoder in decoders:
        try:
            body = decoder.decompress(wire, limit + 1)
        except zlib.error as failure:
            problem = f"is not valid {encoding} ({failure})"
            continue
        if len(body) > limit:
            return body, True, ""
        if not decoder.eof:
            return wire, False, f"is {encoding} cut short ({len(wire):,} bytes)"
        return body, False, ""
    return wire, False, problem


def _failed(
    error: BaseException,
    progress: _Progress,
    watch: deadlines.Watch,
    what: str,
    base_url: str,
    deadline_text: str,
) -> KisError:
    """The KisError for a request that failed on the way, with what had arrived of it."""
    response = progress.response
    if watch.expired:
        if response is None:
            got = "no complete headers"
        else:
            got = f"HTTP {response.status_code} and {len(progress.wire):,} bytes of the body"
        missed = KisDeadlineError(
            f"{what}: no complete answer within the {deadline_text} (received {got})"
            + (f": {answers.SILENT_ADVICE}" if response is None else "")
        )
        missed.silent = response is None
        failure: KisError = missed
    elif (refused := _connect_failure(error)) is not None:
        failure = KisUnreachableError(
            f"{what}: could not reach {base_url}: {refused}: {answers.UNREACHABLE_ADVICE}"
        )
    elif isinstance(error, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
        failure = KisTransientError(f"{what}: {base_url} timed out: {error}")
    else:
        # The exception text names the URL only; headers (and so secrets) never appear.
        failure = KisTransientError(f"{what}: could not reach {base_url}: {error}")
    if response is not None:
        failure.answer = Answer(
            status=response.status_code,
            headers={name.lower(): value for name, value in response.headers.items()},
            body=bytes(progress.wire),
            received_at=datetime.now(UTC),
            complete=False,
            decoding_error="is cut short" if response.headers.get("content-encoding") else "",
            base_url=base_url,
        )
    return failure


def _connect_failure(error: BaseException) -> str | None:
    """Why no connection could be made (e.g. "Connection refused"), or None when one was."""
    seen: BaseException | None = error
    for _ in range(4):  # requests' ConnectionError → MaxRetryError → the connection's error
        if isinstance(seen, requests.ConnectTimeout):
            return "the connection timed out"
        if isinstance(seen, requests.RequestException) and seen.args:
            seen = seen.args[0] if isinstance(seen.args[0], BaseException) else None
        elif isinstance(seen, urllib3.exceptions.MaxRetryError):
            seen = seen.reason
        else:
            break
    if isinstance(seen, urllib3.exceptions.NewConnectionError):  # refused, or no such host
        cause = seen.__cause__ or seen.__context__
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        return "no connection could be made"
    if isinstance(seen, urllib3.exceptions.ConnectTimeoutError):
        return "the connection timed out"
    return None
