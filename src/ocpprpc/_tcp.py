"""Which TCP byte stream carries a connection: ocpprpc's own on asyncio, anyio's otherwise.

On asyncio, ocpprpc opens and accepts TCP connections with its own
``anyio.abc.SocketStream`` (:mod:`ocpprpc._aio_stream`, an
``asyncio.BufferedProtocol``), which costs several times less CPU per message
than anyio's asyncio stream; on trio (and wherever it is not wanted) anyio's
own stream does it.  Everything above the byte stream (TLS via
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
#: running event loop is asyncio's, else anyio's.
TcpStreamName = Literal["auto", "asyncio", "anyio"]
#: What ``None`` stands for (tests switch it, as they do the WebSocket codec).
DEFAULT_TCP_STREAM: TcpStreamName = "auto"

_NAMES = ("auto", "asyncio", "anyio")


def check_tcp_stream(name: str | None) -> None:
    """Refuse an unknown stream name early (at ``Server(...)``, not at the first station).

    :raises ValueError: not one of :data:`TcpStreamName`.
    """
    if name is not None and name not in _NAMES:
        raise ValueError(f"unknown TCP stream {name!r}: use 'auto', 'asyncio' or 'anyio'")


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


def resolve_tcp_stream(name: str | None = None) -> Literal["asyncio", "anyio"]:
    """The stream ``name`` stands for in the running event loop (``None``: :data:`DEFAULT_TCP_STREAM`).

    :raises ValueError: an unknown name.
    :raises RuntimeError: ``"asyncio"`` asked for explicitly while another event loop (trio) runs.
    """
    check_tcp_stream(name)
    if name is None:
        name = DEFAULT_TCP_STREAM
    if name == "anyio":
        return "anyio"
    if _running_asyncio():
        return "asyncio"
    if name == "auto":
        return "anyio"
    raise RuntimeError(
        "tcp_stream='asyncio' needs an asyncio event loop; use 'auto' or 'anyio' on other event loops"
    )


async def connect_tcp(host: str, port: int, *, tcp_stream: str | None = None) -> anyio.abc.SocketStream:
    """Open a TCP connection with the stream :func:`resolve_tcp_stream` picks.

    :raises OSError: the connection could not be made.
    """
    if resolve_tcp_stream(tcp_stream) == "asyncio":
        from ._aio_stream import connect_tcp as connect_asyncio

        return await connect_asyncio(host, port)
    return await anyio.connect_tcp(host, port)


async def create_tcp_listener(
    host: str | None, port: int, *, tcp_stream: str | None = None
) -> anyio.abc.Listener[anyio.abc.SocketStream]:
    """Listen on *host*:*port* like ``anyio.create_tcp_listener`` (``None``: every interface).

    :raises OSError: binding failed.
    """
    if resolve_tcp_stream(tcp_stream) == "asyncio":
        from ._aio_stream import create_tcp_listener as listen_asyncio

        return await listen_asyncio(host, port)
    return await anyio.create_tcp_listener(local_host=host, local_port=port)
