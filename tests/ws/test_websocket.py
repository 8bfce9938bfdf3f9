"""WebSocketStream over loopback TCP on asyncio and trio: messages, control frames, endings, hostility."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import SocketAttribute
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

import ocpprpc._ws.tcp
from ocpprpc._ws.handshake import accept_websocket, open_websocket
from ocpprpc._ws.transport import CloseReason
from ocpprpc._ws.websocket import WebSocketStream

from .helpers import RawWebSocket, echo_until_closed, frame, reset, tcp_server

# Every test here runs on both frame codecs (tests/ws/conftest.py).
pytestmark = pytest.mark.usefixtures("ws_codec")


class EchoServer:
    """Accepts every station and echoes its messages; remembers how each connection ended."""

    def __init__(self, *, max_message_size: int = 65536, compression: bool = True) -> None:
        self.max_message_size = max_message_size
        self.compression = compression
        self.reasons: dict[str, CloseReason | None] = {}
        self.errors: dict[str, type[Exception]] = {}
        self.ended: collections.defaultdict[str, anyio.Event] = collections.defaultdict(anyio.Event)
        self.streams: dict[str, WebSocketStream] = {}

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        request = await accept_websocket(
            stream,
            protocols=["ocpp1.6"],
            max_message_size=self.max_message_size,
            compression=self.compression,
        )
        ws = await request.accept()
        self.streams[request.identity] = ws
        try:
            self.errors[request.identity] = await echo_until_closed(ws)
        finally:
            self.reasons[request.identity] = ws.close_reason
            self.ended[request.identity].set()


@asynccontextmanager
async def echo_server(**kwargs: int | bool) -> AsyncIterator[tuple[EchoServer, int]]:
    server = EchoServer(**kwargs)  # type: ignore[arg-type]
    async with tcp_server(server.handle) as port:
        yield server, port


@asynccontextmanager
async def ws_pair(
    *, compression: bool = False, close_timeout: float = 5.0
) -> AsyncIterator[tuple[WebSocketStream, WebSocketStream]]:
    """Our client connected to our server; yields (client, server) streams."""
    send, receive = anyio.create_memory_object_stream[WebSocketStream](1)
    done = anyio.Event()

    async def handler(stream: anyio.abc.SocketStream) -> None:
        request = await accept_websocket(stream, protocols=["ocpp1.6"], close_timeout=close_timeout)
        ws = await request.accept()
        await send.send(ws)
        await done.wait()
        await ws.aclose()

    with send, receive:
        async with tcp_server(handler) as port:
            client = await open_websocket(
                f"ws://127.0.0.1:{port}/ocpp",
                "CP001",
                protocols=["ocpp1.6"],
                compression=compression,
                close_timeout=close_timeout,
            )
            server = await receive.receive()
            try:
                yield client, server
            finally:
                # Both ends close at once (a close needs a reader on the other side).
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.aclose)
                    done.set()


async def test_text_round_trips_both_ways() -> None:
    async with ws_pair() as (client, server):
        for message in ['[2,"1","Heartbeat",{}]', "", "ünïcödé ⚡", "x" * 60_000]:
            await client.send(message)
            assert await server.receive() == message
            await server.send(message[::-1])
            assert await client.receive() == message[::-1]
        assert client.subprotocol == server.subprotocol == "ocpp1.6"
        assert client.close_reason is None and server.close_reason is None
        assert server.extra(SocketAttribute.remote_address) == client.extra(SocketAttribute.local_address)


@pytest.mark.parametrize("compression", [False, True])
async def test_concurrent_senders_never_interleave_frames(compression: bool) -> None:
    async with ws_pair(compression=compression) as (client, server):
        assert client.compression is compression and server.compression is compression
        messages = {f"{i:03d}:" + "abc" * (i * 37) for i in range(60)}
        async with anyio.create_task_group() as tg:
            for message in messages:
                tg.start_soon(client.send, message)
                tg.start_soon(server.send, message)
        assert {await server.receive() for _ in messages} == messages
        assert {await client.receive() for _ in messages} == messages


async def test_several_messages_in_one_segment_and_fragments() -> None:
    async with echo_server() as (server, port):
        raw = await RawWebSocket.connect(port)
        await raw.send_raw(
            raw.ws.send(TextMessage(data="one"))
            + raw.ws.send(TextMessage(data="two"))
            + raw.ws.send(TextMessage(data="th", message_finished=False))
            + raw.ws.send(Ping(payload=b"between fragments"))
            + raw.ws.send(TextMessage(data="r", message_finished=False))
            + raw.ws.send(TextMessage(data="ee", message_finished=True))
        )
        received: list[str] = []
        pongs: list[object] = []
        while len(received) < 3 or not pongs:
            event = await raw.next_event()
            if isinstance(event, TextMessage):
                received.append(event.data)
            else:
                pongs.append(event)
        assert received == ["one", "two", "three"]
        assert pongs == [Pong(payload=b"between fragments")]
        await raw.send(CloseConnection(code=1000))
        assert isinstance(await raw.next_event(), CloseConnection)
        await server.ended["CP001"].wait()
        await raw.aclose()


async def test_ping_is_answered_while_nobody_sends() -> None:
    async with echo_server() as (server, port):
        raw = await RawWebSocket.connect(port)
        await wait_all_tasks_blocked()  # the server is parked in receive(), sending nothing
        await raw.send(Ping(payload=b"are you there"))
        assert await raw.next_event() == Pong(payload=b"are you there")
        await raw.aclose()
        await server.ended["CP001"].wait()


async def test_our_ping_gets_a_pong() -> None:
    got: list[object] = []

    async def handler(stream: anyio.abc.SocketStream) -> None:
        raw = await RawWebSocket.accept(stream)
        got.append(await raw.next_event())
        await raw.send(Pong(payload=b"tick"))
        await raw.send(TextMessage(data="after the pong"))
        got.append(await raw.next_event())

    async with tcp_server(handler) as port:
        client = await open_websocket(f"ws://127.0.0.1:{port}/", "CP001", protocols=["ocpp1.6"])
        await client.ping(b"tick")
        assert await client.receive() == "after the pong"  # the pong was consumed on the way
        await client.close()
        with pytest.raises(anyio.ClosedResourceError):
            await client.ping()
    assert got[0] == Ping(payload=b"tick")
    assert isinstance(got[1], CloseConnection)


async def test_writing_to_a_reset_peer_breaks_the_stream() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        raw = await RawWebSocket.accept(stream)
        reset(stream)
        await raw.aclose()

    async with tcp_server(handler) as port:
        client = await open_websocket(f"ws://127.0.0.1:{port}/", "CP001", protocols=["ocpp1.6"])
        with pytest.raises(anyio.BrokenResourceError), anyio.fail_after(5):
            while True:  # the first writes may still land in the kernel buffer
                await client.send("into the void")
        assert client.close_reason is not None and client.close_reason.code == 1006
        with pytest.raises(anyio.BrokenResourceError):
            await client.receive()
        await client.close()


async def test_client_closes_with_a_code() -> None:
    async with ws_pair() as (client, server):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.close, 4000, "bye")
            with pytest.raises(anyio.EndOfStream):
                await server.receive()
        assert client.close_reason == CloseReason(4000, "bye", by_peer=False)
        assert server.close_reason == CloseReason(4000, "bye", by_peer=True)
        with pytest.raises(anyio.ClosedResourceError):
            await client.send("after close")
        with pytest.raises(anyio.BrokenResourceError):
            await server.send("after close")
        with pytest.raises(anyio.EndOfStream):
            await client.receive()
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
        await client.close()  # idempotent
        assert client.close_reason == CloseReason(4000, "bye", by_peer=False)


async def test_server_closes_with_going_away() -> None:
    async with ws_pair() as (client, server):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.close, 1001, "shutting down")
            with pytest.raises(anyio.EndOfStream):
                await client.receive()
        assert client.close_reason == CloseReason(1001, "shutting down", by_peer=True)
        assert server.close_reason == CloseReason(1001, "shutting down", by_peer=False)


async def test_close_while_another_task_is_receiving() -> None:
    async with ws_pair() as (client, server):
        async with anyio.create_task_group() as tg:

            async def reader(ws: WebSocketStream) -> None:
                with pytest.raises(anyio.EndOfStream):
                    await ws.receive()

            tg.start_soon(reader, server)
            tg.start_soon(reader, client)  # the client's reader answers the server's close
            await wait_all_tasks_blocked()
            with anyio.fail_after(5):
                await server.close(1000)
        assert server.close_reason == CloseReason(1000, "", by_peer=False)
        assert client.close_reason == CloseReason(1000, "", by_peer=True)


async def test_close_gives_up_on_a_silent_peer() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        request = await accept_websocket(stream, protocols=["ocpp1.6"], close_timeout=0.2)
        ws = await request.accept()
        started = time.monotonic()
        await ws.close(1000)
        assert time.monotonic() - started < 3
        assert ws.close_reason == CloseReason(1000, "", by_peer=False)
        with pytest.raises(anyio.EndOfStream):
            await ws.receive()

    async with tcp_server(handler) as port:
        raw = await RawWebSocket.connect(port)
        # The close frame arrives; we never answer it, and the server hangs up anyway.
        assert await raw.next_event() == CloseConnection(code=1000, reason="")
        # wsproto reports the TCP close that follows as an abnormal closure.
        assert await raw.next_event() == CloseConnection(code=1006)
        await raw.aclose()


async def test_close_is_not_stopped_by_cancellation() -> None:
    async with ws_pair() as (client, server):
        async with anyio.create_task_group() as tg:

            async def server_reader() -> None:
                with pytest.raises(anyio.EndOfStream):
                    await server.receive()

            tg.start_soon(server_reader)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await client.close(1000, "cancelled caller")
        assert client.close_reason == CloseReason(1000, "cancelled caller", by_peer=False)
        assert server.close_reason == CloseReason(1000, "cancelled caller", by_peer=True)


@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_peer_vanishing_is_a_broken_stream_with_1006(how: str) -> None:
    async with echo_server() as (server, port):
        other = await RawWebSocket.connect(port, "/ocpp/OTHER")
        raw = await RawWebSocket.connect(port)
        assert isinstance(raw.stream, anyio.abc.SocketStream)
        if how == "reset":
            reset(raw.stream)
        await raw.aclose()
        await server.ended["CP001"].wait()
        assert server.errors["CP001"] is anyio.BrokenResourceError
        reason = server.reasons["CP001"]
        assert reason is not None and reason.code == 1006 and reason.by_peer
        # The other station is unaffected.
        await other.send(TextMessage(data="still here"))
        assert await other.next_event() == TextMessage(data="still here")
        await other.aclose()


async def test_send_after_the_peer_vanished_is_broken() -> None:
    checked = anyio.Event()

    async def handler(stream: anyio.abc.SocketStream) -> None:
        ws = await (await accept_websocket(stream, protocols=["ocpp1.6"])).accept()
        with pytest.raises(anyio.BrokenResourceError):
            await ws.receive()
        with pytest.raises(anyio.BrokenResourceError):
            await ws.send("nobody listens")
        await ws.aclose()
        checked.set()

    async with tcp_server(handler) as port:
        raw = await RawWebSocket.connect(port)
        await raw.aclose()
        await checked.wait()


async def assert_failed(raw: RawWebSocket, server: EchoServer, code: int) -> None:
    """The raw peer got a close frame with ``code``; the server side ended broken with it."""
    event = await raw.next_event()
    while isinstance(event, TextMessage):
        event = await raw.next_event()
    assert isinstance(event, CloseConnection) and event.code == code
    await raw.aclose()  # the server half-closed after its close frame; we hang up too
    await server.ended["CP001"].wait()
    assert server.errors["CP001"] is anyio.BrokenResourceError
    reason = server.reasons["CP001"]
    assert reason is not None and reason.code == code and not reason.by_peer


async def test_binary_frame_fails_with_1003_and_other_stations_carry_on() -> None:
    async with echo_server() as (server, port):
        good = await open_websocket(f"ws://127.0.0.1:{port}/ocpp", "GOOD", protocols=["ocpp1.6"])
        raw = await RawWebSocket.connect(port)
        await raw.send(BytesMessage(data=b"\x00\x01\x02"))
        await assert_failed(raw, server, 1003)
        await good.send("hello")
        assert await good.receive() == "hello"
        await good.close()


async def test_invalid_utf8_fails_with_1007() -> None:
    async with echo_server() as (server, port):
        raw = await RawWebSocket.connect(port)
        await raw.send_raw(frame(0x1, b"[2,\xc3\x28]"))
        await assert_failed(raw, server, 1007)


async def test_oversized_message_is_refused_before_it_is_buffered_whole() -> None:
    async with echo_server(max_message_size=4096) as (server, port):
        good = await open_websocket(f"ws://127.0.0.1:{port}/ocpp", "GOOD", protocols=["ocpp1.6"])
        raw = await RawWebSocket.connect(port)
        # Announce 100 MB, send a little more than the limit, then wait: a server
        # that buffered whole messages would wait for the other 99.99 MB.
        await raw.send_raw(frame(0x1, b"", length=100_000_000, key=bytes(4)) + b"a" * 4097)
        await assert_failed(raw, server, 1009)
        await good.send("a" * 4096)
        assert await good.receive() == "a" * 4096
        await good.close()


async def test_flood_of_malformed_frames_gets_one_close() -> None:
    async with echo_server() as (server, port):
        raw = await RawWebSocket.connect(port)
        await raw.send_raw(frame(0x1, b"x", mask=False) * 1000)
        await assert_failed(raw, server, 1002)


async def test_client_fails_a_server_that_sends_binary() -> None:
    result: list[CloseConnection] = []

    async def handler(stream: anyio.abc.SocketStream) -> None:
        raw = await RawWebSocket.accept(stream)
        await raw.send(BytesMessage(data=b"binary"))
        event = await raw.next_event()
        assert isinstance(event, CloseConnection)
        result.append(event)
        await raw.aclose()

    async with tcp_server(handler) as port:
        client = await open_websocket(f"ws://127.0.0.1:{port}/", "CP001", protocols=["ocpp1.6"])
        with pytest.raises(anyio.BrokenResourceError):
            await client.receive()
        assert client.close_reason is not None and client.close_reason.code == 1003
        await client.aclose()
    assert result[0].code == 1003


async def test_cancelled_receive_leaves_the_stream_usable() -> None:
    async with ws_pair() as (client, server):
        # Over ocpprpc's own TCP streams: cancelled while awaiting the event loop's wait itself.
        own = ocpprpc._ws.tcp.DEFAULT_TCP_STREAM != "anyio"
        assert server._receives_now is own and client._receives_now is own
        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:

            async def reader() -> None:
                with scope:
                    await server.receive()

            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            scope.cancel()
        assert scope.cancelled_caught
        await client.send("after the cancel")
        assert await server.receive() == "after the cancel"


async def test_compression_is_negotiated_only_when_both_want_it() -> None:
    message = '{"meterValue":' + "[1234.5, 1234.5]," * 2000 + "0}"
    for server_wants, client_wants in [(False, True), (True, False), (True, True)]:
        async with echo_server(compression=server_wants) as (server, port):
            client = await open_websocket(
                f"ws://127.0.0.1:{port}/", "CP001", protocols=["ocpp1.6"], compression=client_wants
            )
            await client.send(message)
            assert await client.receive() == message  # the server's stream exists from here on
            expected = server_wants and client_wants
            assert client.compression is expected
            assert server.streams["CP001"].compression is expected
            await client.close()
