"""Which TCP byte stream carries a connection: ocpprpc's own on asyncio, a raw-socket one on trio.

``"socket"`` (:mod:`ocpprpc._raw_stream`) drives the non-blocking socket
directly with ``anyio.wait_readable``/``wait_writable``; trio only (it takes the
socket over from anyio's stream, which on asyncio may already have read ahead).

On asyncio, ocpprpc opens and accepts TCP connections with its own
``anyio.abc.SocketStream`` (:mod:`ocpprpc._aio_stream`, an
``asyncio.BufferedProtocol``), which costs several times less CPU per message
than anyio's asyncio stream; on trio ``"auto"`` picks the raw-socket stream
(about an eighth less CPU per call than anyio's; bench/README.md), and
``"anyio"`` opts out of both.  Everything above the byte stream (TLS via
``anyio.streams.tls.TLSStream``, the WebSocket, the session) is the same either
way.  docs/client-server.rst, "TCP byte stream", says why and how to opt out.

This module imports no asyncio: :mod:`ocpprpc._aio_stream` is loaded only when
an asyncio event loop runs.
"""

from __future__ import annotations

from typing import Literal

import anyio
import anyio.abc

__all__ = [
    "DEFAULT_TCP_STREAM",
    "TcpStreamName",
    "check_tcp_stream",
    "connect_tcp",
    "create_tcp_listener",
    "resolve_tcp_stream",
]

#: ``"asyncio"``: ocpprpc's own stream (asyncio only); ``"anyio"``: anyio's
#: ``connect_tcp``/``create_tcp_listener``; ``"auto"``: the own stream when the
#: running event loop is asyncio's, else :data:`AUTO_ELSEWHERE`; ``"socket"``:
#: :mod:`ocpprpc._raw_stream` (not on asyncio).
TcpStreamName = Literal["auto", "asyncio", "anyio", "socket"]
#: What ``None`` stands for (tests switch it, as they do the WebSocket codec).
DEFAULT_TCP_STREAM: TcpStreamName = "auto"

#: What ``"auto"`` picks when the event loop is not asyncio's (trio).
AUTO_ELSEWHERE: Literal["anyio", "socket"] = "socket"

_NAMES = ("auto", "asyncio", "anyio", "socket")


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
        from ._aio_stream import connect_tcp as connect_asyncio

        return await connect_asyncio(host, port)
    if resolved == "socket":
        from ._raw_stream import connect_tcp as connect_socket

        return await connect_socket(host, port)
    return await anyio.connect_tcp(host, port)


async def create_tcp_listener(
    host: str | None, port: int, *, tcp_stream: str | None = None
) -> anyio.abc.Listener[anyio.abc.SocketStream]:
    """Listen on *host*:*port* like ``anyio.create_tcp_listener`` (``None``: every interface).

    :raises OSError: binding failed.
    """
    resolved = resolve_tcp_stream(tcp_stream)
    if resolved == "asyncio":
        from ._aio_stream import create_tcp_listener as listen_asyncio

        return await listen_asyncio(host, port)
    if resolved == "socket":
        from ._raw_stream import create_tcp_listener as listen_socket

        return await listen_socket(host, port)
    return await anyio.create_tcp_listener(local_host=host, local_port=port)
