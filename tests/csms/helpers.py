"""Shared pieces for the end-to-end tests: URLs, waiting on conditions, task counts, raw peers.

The raw peers speak WebSocket by hand (wsproto for the handshake and for
parsing what the CSMS sends, hand-made frames for what no well-behaved client
would send), so the tests can misbehave in ways ``connect()`` never does.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from ocpprpc import Server

#: Bound on every wait for something that must happen "at once".
PROMPT = 5.0


def ws_url(server: Server, path: str = "/ocpp", *, secure: bool = False) -> str:
    scheme = "wss" if secure else "ws"
    return f"{scheme}://127.0.0.1:{server.port}{path}"


async def eventually(predicate: Callable[[], bool], timeout: float = PROMPT) -> None:  # noqa: ASYNC109
    """Wait until *predicate* holds: for state that no event announces (task counts, dict sizes)."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 (nothing announces these changes)
            await anyio.sleep(0.005)


def task_count() -> int:
    return len(anyio.get_running_tasks())


async def settled(baseline: int) -> None:
    """Wait until no task beyond *baseline* runs: nothing leaked from a closed connection."""
    await eventually(lambda: task_count() <= baseline)


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame, built by hand (may be invalid on purpose)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


TEXT = 0x1
BINARY = 0x2


@dataclass
class RawStation:
    """A station that does the WebSocket handshake properly, then whatever a test wants."""

    stream: anyio.abc.SocketStream
    ws: WSConnection
    subprotocol: str | None
    events: list[Event] = field(default_factory=list)

    async def send_text(self, text: str) -> None:
        await self.stream.send(self.ws.send(Message(data=text)))

    async def send_texts(self, texts: list[str]) -> None:
        """Several messages in one write (no time passes between them, however loaded the machine)."""
        await self.stream.send(b"".join(self.ws.send(Message(data=text)) for text in texts))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def next_event(self) -> Event | None:
        """The next WebSocket event from the CSMS (pings answered); ``None`` at EOF."""
        while not self.events:
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, Ping):
                    await self.stream.send(self.ws.send(event.response()))
                else:
                    self.events.append(event)
        return self.events.pop(0)

    async def next_text(self) -> str:
        event = await self.next_event()
        assert isinstance(event, TextMessage), event
        return event.data

    async def close_code(self, *, echo: bool = True) -> int | None:
        """Read until the peer's close frame and return its code (``None`` if the link just ended).

        *echo*: answer the close frame, as RFC 6455 says (the CSMS then drops the
        TCP connection at once); without it the CSMS waits for its close timeout.
        """
        while True:
            event = await self.next_event()
            if event is None:
                return None
            if isinstance(event, CloseConnection):
                if echo:
                    await self.stream.send(self.ws.send(event.response()))
                return event.code

    def reset(self) -> None:
        """Make the next close a TCP reset (SO_LINGER 0)."""
        sock: socket.socket = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@asynccontextmanager
async def raw_station(
    port: int, identity: str = "RAW", protocols: Sequence[str] = ("ocpp1.6",)
) -> AsyncIterator[RawStation]:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    try:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send(
            ws.send(Request(host="127.0.0.1", target=f"/ocpp/{identity}", subprotocols=list(protocols)))
        )
        station: RawStation | None = None
        while station is None:
            ws.receive_data(await stream.receive())
            for event in ws.events():
                assert not isinstance(event, RejectConnection), event
                if isinstance(event, AcceptConnection):
                    station = RawStation(stream, ws, event.subprotocol)
        yield station
    finally:
        await anyio.aclose_forcefully(stream)


async def http_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes to the CSMS and read everything it answers until it closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        received = bytearray()
        with anyio.fail_after(PROMPT):
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return bytes(received)


@asynccontextmanager
async def raw_csms(
    behaviour: Callable[[RawStation], Awaitable[None]], protocol: str = "ocpp1.6"
) -> AsyncIterator[int]:
    """A CSMS that accepts one WebSocket properly, then runs *behaviour* on it; yields its port.

    (A ``RawStation`` seen from the other end: the same helpers read and write.)
    """
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve_one(stream: anyio.abc.SocketStream) -> None:
        try:
            ws = WSConnection(ConnectionType.SERVER)
            peer: RawStation | None = None
            while peer is None:
                ws.receive_data(await stream.receive())
                for event in ws.events():
                    if isinstance(event, Request):
                        await stream.send(ws.send(AcceptConnection(subprotocol=protocol)))
                        peer = RawStation(stream, ws, protocol)
            await behaviour(peer)
        finally:
            await anyio.aclose_forcefully(stream)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one)
        yield port
        tg.cancel_scope.cancel()
