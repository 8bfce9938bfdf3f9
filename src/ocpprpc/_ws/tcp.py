"""Which TCP byte stream carries a connection: ocpprpc's own on asyncio, a raw-socket one on trio.

``"socket"`` (:mod:`ocpprpc._ws.raw_stream`) drives the non-blocking socket
directly with ``anyio.wait_readable``/``wait_writable``; trio only (it takes the
socket over from anyio's stream, which on asyncio may already have read ahead).

On asyncio, ocpprpc opens and accepts TCP connections with its own
``anyio.abc.SocketStream`` (:mod:`ocpprpc._ws.aio_stream`, an
``asyncio.BufferedProtocol``), which costs several times less CPU per message
than anyio's asyncio stream; on trio ``"auto"`` picks the raw-socket stream
(about an eighth less CPU per call than anyio's; bench/README.md), and
``"anyio"`` opts out of both.  Everything above the byte stream (TLS via
``anyio.streams.tls.TLSStream``, the WebSocket, the session) is the same either
way.  docs/client-server.rst, "TCP byte stream", says why and how to opt out.

This module imports no asyncio: :mod:`ocpprpc._ws.aio_stream` is loaded only when
an asyncio event loop runs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.streams.stapled

__all__ = [
    "ACCEPT_BACKOFF",
    "DEFAULT_BACKLOG",
    "DEFAULT_TCP_STREAM",
    "TcpStreamName",
    "check_tcp_stream",
    "connect_tcp",
    "create_tcp_listener",
    "receive_by_asking",
    "resolve_tcp_stream",
    "send_within",
    "serve_listener",
]

log = logging.getLogger("ocpprpc.server")

#: The listen() backlog: connections the kernel completes before we accept them.
#: 511 is nginx's and Redis's default (the kernel caps it at net.core.somaxconn);
#: anyio's 65536 only means "the kernel's maximum", and asyncio's create_server
#: also used it as its per-wake-up accept count.
DEFAULT_BACKLOG = 511
#: Seconds the accept loop waits after a failed accept (descriptors exhausted, ...):
#: long enough not to spin, short enough that stations barely notice once it recovers.
ACCEPT_BACKOFF = 0.1
#: At most one warning per this many seconds about failing accepts (the rest are counted).
ACCEPT_WARNING_INTERVAL = 10.0

#: ``"asyncio"``: ocpprpc's own stream (asyncio only); ``"anyio"``: anyio's
#: ``connect_tcp``/``create_tcp_listener``; ``"auto"``: the own stream when the
#: running event loop is asyncio's, else :data:`AUTO_ELSEWHERE`; ``"socket"``:
#: :mod:`ocpprpc._ws.raw_stream` (not on asyncio).
TcpStreamName = Literal["auto", "asyncio", "anyio", "socket"]
#: What ``None`` stands for (tests switch it, as they do the WebSocket codec).
DEFAULT_TCP_STREAM: TcpStreamName = "auto"

#: What ``"auto"`` picks when the event loop is not asyncio's (trio).
AUTO_ELSEWHERE: Literal["anyio", "socket"] = "socket"

_NAMES = ("auto", "asyncio", "anyio", "socket")


async def receive_by_asking(receive_now: Callable[[int], bytes | Awaitable[object]], max_bytes: int) -> bytes:
    """``receive()`` of ocpprpc's own streams: ask ``receive_now()``, await what it answers, ask again."""
    got = receive_now(max_bytes)
    while not isinstance(got, bytes):
        await got
        got = receive_now(max_bytes)
    return got


async def send_within(
    stream: anyio.abc.ByteSendStream,
    data: bytes,
    timeout: float,  # noqa: ASYNC109 (the clock is read only if the stream cannot take it all now)
) -> None:
    """Send *data*; :class:`TimeoutError` if the peer has not taken it within *timeout* seconds.

    ocpprpc's own streams write at once what the kernel (or asyncio's transport)
    takes (``try_send``); only what is left needs a deadline, so a 101 response
    to a station that reads costs no cancel scope and no timer (3% of a boot's
    CPU on asyncio).
    """
    try_send: Callable[[bytes], int] | None = getattr(stream, "try_send", None)
    if try_send is not None:
        sent = try_send(data)
        if sent == len(data):
            return
        data = data[sent:]
    with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
        await stream.send(data)
    if scope.cancelled_caught:
        raise TimeoutError


def check_tcp_stream(name: str | None) -> None:
    """Refuse an unknown stream name early (at ``Server(...)``, not at the first station).

    :raises ValueError: not one of :data:`TcpStreamName`.
    """
    if name is not None and name not in _NAMES:
        raise ValueError(f"unknown TCP stream {name!r}: use 'auto', 'asyncio', 'anyio' or 'socket'")


def _running_asyncio() -> bool:
    """Whether the running event loop is asyncio's (uvloop included), as anyio decides it."""
    try:
        import sniffio
    except ImportError:  # pragma: no cover - trio depends on sniffio: without it, asyncio or nothing
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def resolve_tcp_stream(name: str | None = None) -> Literal["asyncio", "anyio", "socket"]:
    """The stream ``name`` stands for in the running event loop (``None``: :data:`DEFAULT_TCP_STREAM`).

    :raises ValueError: an unknown name.
    :raises RuntimeError: ``"asyncio"`` asked for explicitly while another event loop (trio) runs,
        or ``"socket"`` while asyncio's runs.
    """
    check_tcp_stream(name)
    if name is None:
        name = DEFAULT_TCP_STREAM
    if name == "anyio":
        return "anyio"
    if _running_asyncio():
        if name == "socket":
            raise RuntimeError(
                "tcp_stream='socket' is not for asyncio; use 'auto', 'asyncio' or 'anyio' there"
            )
        return "asyncio"
    if name == "auto":
        return AUTO_ELSEWHERE
    if name == "socket":
        return "socket"
    raise RuntimeError(
        "tcp_stream='asyncio' needs an asyncio event loop; use 'auto' or 'anyio' on other event loops"
    )


async def connect_tcp(host: str, port: int, *, tcp_stream: str | None = None) -> anyio.abc.SocketStream:
    """Open a TCP connection with the stream :func:`resolve_tcp_stream` picks.

    :raises OSError: the connection could not be made.
    """
    resolved = resolve_tcp_stream(tcp_stream)
    if resolved == "asyncio":
        from .aio_stream import connect_tcp as connect_asyncio

        return await connect_asyncio(host, port)
    if resolved == "socket":
        from .raw_stream import connect_tcp as connect_socket

        return await connect_socket(host, port)
    return await anyio.connect_tcp(host, port)


async def create_tcp_listener(
    host: str | None, port: int, *, tcp_stream: str | None = None, backlog: int = DEFAULT_BACKLOG
) -> anyio.abc.Listener[anyio.abc.SocketStream]:
    """Listen on *host*:*port* like ``anyio.create_tcp_listener`` (``None``: every interface).

    :raises OSError: binding failed.
    """
    resolved = resolve_tcp_stream(tcp_stream)
    if resolved == "asyncio":
        from .aio_stream import create_tcp_listener as listen_asyncio

        return await listen_asyncio(host, port, backlog=backlog)
    if resolved == "socket":
        from .raw_stream import create_tcp_listener as listen_socket

        return await listen_socket(host, port, backlog=backlog)
    return await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=backlog)


AcceptSource = Callable[[], Awaitable[anyio.abc.SocketStream]]


def accept_sources(listener: anyio.abc.Listener[Any]) -> list[AcceptSource]:
    """One ``accept()`` per listening socket of *listener* (one of those :func:`create_tcp_listener` makes).

    :raises TypeError: a listener that cannot accept one connection at a time.
    """
    if isinstance(listener, anyio.streams.stapled.MultiListener):
        return [source for sub in listener.listeners for source in accept_sources(sub)]
    if isinstance(listener, anyio.abc.SocketListener):
        return [listener.accept]
    from .raw_stream import RawTCPListener

    if isinstance(listener, RawTCPListener):
        return listener.accept_sources()
    raise TypeError(f"cannot accept from {listener!r}")


class _AcceptTrouble:
    """Failed accepts, logged as a WARNING at most once per :data:`ACCEPT_WARNING_INTERVAL`."""

    def __init__(self) -> None:
        self._warned_at = -math.inf
        self._unreported = 0
        self._failures = 0

    def failed(self, exc: BaseException) -> None:
        self._failures += 1
        now = time.monotonic()
        if now - self._warned_at < ACCEPT_WARNING_INTERVAL:
            self._unreported += 1
            return
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        log.warning(
            "cannot accept connections (%s; %d more failures since the last warning); "
            "retrying every %s s, connected stations are served meanwhile",
            cause,
            self._unreported,
            ACCEPT_BACKOFF,
        )
        self._warned_at = now
        self._unreported = 0

    def succeeded(self) -> None:
        if self._failures:
            log.info("accepting connections again after %d failed attempts", self._failures)
            self._failures = self._unreported = 0
            self._warned_at = -math.inf


async def serve_listener(
    listener: anyio.abc.Listener[anyio.abc.SocketStream],
    handler: Callable[[anyio.abc.SocketStream], Coroutine[Any, Any, None]],
    task_group: anyio.abc.TaskGroup,
) -> None:
    """Accept connections and run ``handler(stream)`` for each in *task_group*, until cancelled.

    Unlike ``Listener.serve``, a failing accept does not end serving: out of
    file descriptors (``EMFILE``/``ENFILE``), buffers or memory
    (``ENOBUFS``/``ENOMEM``), a connection aborted before it was taken
    (``ECONNABORTED``) and any other accept error are logged (a rate-limited
    WARNING) and retried after :data:`ACCEPT_BACKOFF` seconds, while the
    connections already accepted go on; it recovers by itself once the cause
    goes away.  Ends when the listener is closed (``ClosedResourceError``).
    """
    trouble = _AcceptTrouble()
    async with anyio.create_task_group() as accepting:
        for source in accept_sources(listener):
            accepting.start_soon(_accept_loop, source, handler, task_group, trouble)


async def _accept_loop(
    accept: AcceptSource,
    handler: Callable[[anyio.abc.SocketStream], Coroutine[Any, Any, None]],
    task_group: anyio.abc.TaskGroup,
    trouble: _AcceptTrouble,
) -> None:
    while True:
        try:
            stream = await accept()
        except (OSError, anyio.BrokenResourceError) as exc:
            # anyio on trio reports an accept error as BrokenResourceError from the OSError.
            trouble.failed(exc)
            await anyio.sleep(ACCEPT_BACKOFF)
            continue
        trouble.succeeded()
        task_group.start_soon(handler, stream)
