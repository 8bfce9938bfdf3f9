"""Loopback servers and hand-driven WebSocket peers for the transport tests.

The raw peers use wsproto directly (or hand-made frames) so tests can do what
our own code never would: fragment, send binary or invalid UTF-8, announce a
huge frame, vanish without a close frame.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, Event, RejectConnection, RejectData, Request
from wsproto.extensions import Extension

from ocpprpc._ws.tcp import connect_tcp, create_tcp_listener
from ocpprpc._ws.websocket import WebSocketStream

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    """Serve ``handler`` on 127.0.0.1, port chosen by the OS; yields the port.

    The listener is the one ocpprpc's server would use (``tcp_stream`` default,
    which the ``anyio_backend`` fixture of this directory varies).

    An exception in a handler fails the test (it propagates out of the task group).
    Each connection is closed when its handler returns or is cancelled.
    """

    async def guarded(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await handler(stream)

    async with (
        await create_tcp_listener("127.0.0.1", 0) as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.serve, guarded, tg)
        yield listener.extra(SocketAttribute.local_port)
        tg.cancel_scope.cancel()


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bool = True,
    length: int | None = None,
    key: bytes | None = None,
) -> bytes:
    """One hand-made WebSocket frame (RFC 6455 5.2); ``length`` may lie about the payload.

    ``key=bytes(4)`` masks with zeros, so payload bytes sent later can go out as they are.
    """
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4) if key is None else key
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_until_eof(stream: anyio.abc.ByteStream, limit: int = 1 << 20) -> bytes:
    """Everything the peer sends until it closes (or resets) the connection."""
    data = bytearray()
    while len(data) < limit:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            break
    return bytes(data)


def reset(stream: anyio.abc.SocketStream) -> None:
    """Make the next close send a TCP reset instead of a FIN (SO_LINGER 0)."""
    sock = stream.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def echo_until_closed(ws: WebSocketStream) -> type[Exception]:
    """Send every message back until the stream ends; say how it ended; always release it."""
    try:
        while True:
            await ws.send(await ws.receive())
    except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
        return type(exc)
    finally:
        await ws.aclose()


class RawWebSocket:
    """A WebSocket peer driven by hand with wsproto: every byte is the test's choice."""

    def __init__(self, stream: anyio.abc.ByteStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self._pending: list[Event] = []

    @staticmethod
    def client_connection() -> WSConnection:
        return WSConnection(ConnectionType.CLIENT)

    @classmethod
    async def connect(
        cls,
        port: int,
        target: str = "/ocpp/CP001",
        *,
        subprotocols: Sequence[str] = ("ocpp1.6",),
        extensions: Sequence[Extension] = (),
        headers: Sequence[tuple[bytes, bytes]] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> RawWebSocket:
        """Connect as a client and finish the upgrade (raises if the server refuses)."""
        stream: anyio.abc.ByteStream = await connect_tcp("127.0.0.1", port)
        if ssl_context is not None:
            stream = await TLSStream.wrap(
                stream, hostname="localhost", ssl_context=ssl_context, standard_compatible=False
            )
        peer = cls(stream, WSConnection(ConnectionType.CLIENT))
        await peer.send(
            Request(
                host=f"127.0.0.1:{port}",
                target=target,
                subprotocols=list(subprotocols),
                extensions=list(extensions),
                extra_headers=list(headers),
            )
        )
        event = await peer.next_event()
        if not isinstance(event, AcceptConnection):
            raise AssertionError(f"upgrade refused: {event}")
        return peer

    @classmethod
    async def accept(cls, stream: anyio.abc.ByteStream, subprotocol: str | None = "ocpp1.6") -> RawWebSocket:
        """Act as a server: read the upgrade request on ``stream`` and accept it."""
        peer = cls(stream, WSConnection(ConnectionType.SERVER))
        event = await peer.next_event()
        assert isinstance(event, Request)
        await peer.send(AcceptConnection(subprotocol=subprotocol))
        return peer

    async def send(self, event: Event) -> None:
        await self.stream.send(self.ws.send(event))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def next_event(self) -> Event:
        """The next wsproto event; ``RejectData``/``RejectConnection`` included."""
        while not self._pending:
            try:
                data: bytes | None = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = None
            self.ws.receive_data(data)
            self._pending.extend(self.ws.events())
            if data is None and not self._pending:
                raise anyio.EndOfStream
        return self._pending.pop(0)

    async def rejection(self) -> tuple[int, bytes]:
        """After a refused upgrade: the status code and body."""
        event = await self.next_event()
        assert isinstance(event, RejectConnection)
        body = b""
        while True:
            data = await self.next_event()
            assert isinstance(data, RejectData)
            body += data.data
            if data.body_finished:
                return event.status_code, body

    async def aclose(self) -> None:
        await self.stream.aclose()
