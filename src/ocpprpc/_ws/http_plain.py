"""Plain HTTP requests (not WebSocket upgrades): the side door for ``/health`` and ``/metrics``.

A CSMS port mostly sees upgrade requests; an operator's probe or a Prometheus
scraper sends a plain ``GET``.  :func:`~ocpprpc._ws.server_handshake.accept_websocket`
hands such a request to a :data:`PlainHttpHandler` at the one point where it is
known not to be an upgrade (where it would otherwise answer 426), and
:func:`serve_plain_http` serves the same handler on a port of its own.  The
handler is a plain function of a :class:`PlainRequest` returning a
:class:`PlainResponse`, or ``None`` for "not mine" (the caller then answers as
it always did).  This module knows nothing of what the paths mean.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import anyio
import anyio.abc
import h11

from .errors import HandshakeError

__all__ = [
    "PlainHttpAnswered",
    "PlainHttpHandler",
    "PlainRequest",
    "PlainResponse",
    "parse_plain_request",
    "serve_plain_http",
]

log = logging.getLogger("ocpprpc._handshake")

#: Largest request head read on a port serving plain HTTP only (h11's own default bound).
MAX_HEAD = 16 * 1024
#: How long a server lingers after an HTTP error, so the client reads it before the reset.
_REJECT_LINGER = 1.0


@dataclass(frozen=True, slots=True)
class PlainRequest:
    """A plain HTTP request's head (its body, if any, is never read)."""

    #: ``GET``, ``HEAD``, ``POST``... (as sent, upper case by convention).
    method: str
    #: The request path as sent (percent-encoded), without the query.
    path: str
    #: The raw query string (without ``?``).
    query_string: str
    #: Headers with lower-case names.
    headers: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class PlainResponse:
    """What to answer; the connection is closed after it."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()


#: ``handler(request) -> PlainResponse | None``; ``None``: not a path it serves.  Must not block.
PlainHttpHandler = Callable[[PlainRequest], PlainResponse | None]


class PlainHttpAnswered(HandshakeError):
    """Not an upgrade: a plain HTTP request, answered by the side door (``status``) and closed."""

    def __init__(self, request: PlainRequest, status: int) -> None:
        super().__init__(f"plain HTTP {request.method} {request.path} answered {status}", status=status)
        self.request = request


def parse_plain_request(head: bytes) -> PlainRequest | None:
    """The request in *head* (bytes from the start of the connection), ``None`` if incomplete or bad."""
    parser = h11.Connection(h11.SERVER)
    try:
        parser.receive_data(head)
        event = parser.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    path, _, query = event.target.decode("ascii", "replace").partition("?")
    return PlainRequest(
        method=event.method.decode("ascii", "replace"),
        path=path,
        query_string=query,
        headers=tuple((bytes(name), bytes(value)) for name, value in event.headers),
    )


def response_bytes(response: PlainResponse, method: str) -> bytes:
    """The response on the wire (no body for ``HEAD``; ``Content-Length`` as for ``GET``)."""
    try:
        phrase = HTTPStatus(response.status).phrase
    except ValueError:
        phrase = ""
    head = [
        f"HTTP/1.1 {response.status} {phrase}".encode("ascii"),
        b"Content-Type: " + response.content_type.encode("latin-1"),
        b"Content-Length: " + str(len(response.body)).encode("ascii"),
        b"Cache-Control: no-store",
        b"Connection: close",
    ]
    head.extend(name + b": " + value for name, value in response.headers)
    body = b"" if method == "HEAD" else response.body
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def answer(handler: PlainHttpHandler, request: PlainRequest) -> PlainResponse | None:
    """The handler's answer; a handler that fails is answered 500 (and logged), never raised."""
    try:
        return handler(request)
    except Exception:
        log.exception("the HTTP handler failed on %s %s; answering 500", request.method, request.path)
        return PlainResponse(500, b"internal error\n")


async def _answer_and_close(stream: anyio.abc.ByteStream, response: bytes) -> None:
    """Write an HTTP error, then close without a reset eating it.

    Closing a socket whose receive buffer still holds unread bytes (the rest of a
    garbage request) makes the kernel send a reset, which can destroy the
    response before the client reads it; so half-close and discard for a moment.
    Shielded: a rejection goes out even when the caller is being cancelled.
    """
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(_REJECT_LINGER):
            try:
                await stream.send(response)
                await stream.send_eof()
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
            except NotImplementedError:
                pass  # TLS: no half-close, just close
        await anyio.aclose_forcefully(stream)


_NOT_FOUND = PlainResponse(404, b"not found: this port serves /health and /metrics\n")


async def serve_plain_http(
    stream: anyio.abc.ByteStream, handler: PlainHttpHandler, *, head_timeout: float
) -> None:
    """Read one request head within *head_timeout* s, answer it with *handler* (404 for ``None``), close.

    Never raises for what the peer does: a stalled, oversized or garbled
    request is answered (408, 431, 400) or dropped.
    """
    head = bytearray()  # appended to: a request trickled a byte at a time costs no quadratic copying
    request: PlainRequest | None = None
    try:
        with anyio.fail_after(head_timeout):
            while True:
                searched = max(0, len(head) - 3)  # the end of the head may straddle two reads
                try:
                    head += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await anyio.aclose_forcefully(stream)
                    return
                end = head.find(b"\r\n\r\n", searched)
                if end >= 0:
                    request = parse_plain_request(bytes(head[: end + 4]))
                    break
                if len(head) > MAX_HEAD:
                    await _answer_and_close(
                        stream, response_bytes(PlainResponse(431, b"request head too large\n"), "GET")
                    )
                    return
    except TimeoutError:
        await _answer_and_close(stream, response_bytes(PlainResponse(408, b"request timed out\n"), "GET"))
        return
    if request is None:
        await _answer_and_close(
            stream, response_bytes(PlainResponse(400, b"malformed HTTP request\n"), "GET")
        )
        return
    response = answer(handler, request) or _NOT_FOUND
    await _answer_and_close(stream, response_bytes(response, request.method))
