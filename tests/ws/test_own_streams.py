"""The byte-stream contract both of ocpprpc's own TCP streams keep, over real loopback sockets.

Each test runs twice: ``_aio_stream`` on asyncio and ``_raw_stream`` on trio
(the backend each is for); what only one of them does is tested in
``test_aio_stream.py`` / ``test_raw_stream.py``.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trustme
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

from ocpprpc._ws.errors import HandshakeError, HandshakeTimeout
from ocpprpc._ws.server_handshake import accept_websocket
from ocpprpc._ws.tcp import send_within, serve_listener
from ocpprpc._ws.tls import client_ssl_context, server_ssl_context

from .own_streams import Kit, over_own_streams, read_all, receive_exactly, stream_pair

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@over_own_streams
async def test_echo_and_socket_attributes_match_anyio(kit: Kit[Any]) -> None:
    async with stream_pair(kit) as (client, server):
        await client.send(b"ping")
        assert await server.receive() == b"ping"
        await server.send(b"pong")
        assert await client.receive() == b"pong"
        # The same typed attributes anyio's own streams give, peer address included.
        assert client.extra(SocketAttribute.remote_address) == server.extra(SocketAttribute.local_address)
        assert server.extra(SocketAttribute.remote_address) == client.extra(SocketAttribute.local_address)
        assert client.extra(SocketAttribute.remote_port) == server.extra(SocketAttribute.local_port)
        assert server.extra(SocketAttribute.remote_port) == client.extra(SocketAttribute.local_port)
        assert client.extra(SocketAttribute.family) == socket.AF_INET
        sock = client.extra(SocketAttribute.raw_socket)
        assert sock.fileno() >= 0
        # Reading and writing need no trip through anyio's socket machinery.
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@over_own_streams
async def test_attributes_over_ipv6_and_after_the_peer_left(kit: Kit[Any]) -> None:
    # The peer's address comes from where the stream keeps it, not from anyio's mapping:
    # the same 2-tuple anyio gives for IPv6, NODELAY on the accepted side, and a refusal
    # (not a crash) for attributes a plain TCP stream does not have.
    async with stream_pair(kit, "::1") as (client, server):
        assert server.extra(SocketAttribute.remote_address) == client.extra(SocketAttribute.local_address)
        assert server.extra(SocketAttribute.remote_address)[0] == "::1"
        assert len(server.extra(SocketAttribute.remote_address)) == 2
        assert server.extra(SocketAttribute.family) == socket.AF_INET6
        assert server.extra(SocketAttribute.raw_socket).getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert server.extra(TLSAttribute.peer_certificate, None) is None
        with pytest.raises(anyio.TypedAttributeLookupError):
            server.extra(TLSAttribute.cipher)
        assert set(server.extra_attributes) >= {SocketAttribute.remote_address, SocketAttribute.local_port}


@over_own_streams
async def test_closing_the_listener_ends_the_accept_loop(kit: Kit[Any]) -> None:
    # The CSMS's accept loop waits on the listening socket; closing the listener ends it.
    listener = await kit.create_tcp_listener("127.0.0.1", 0)
    ended = anyio.Event()

    async def accept_until_closed(tg: anyio.abc.TaskGroup) -> None:
        with pytest.raises(BaseExceptionGroup) as raised:
            await serve_listener(listener, _never_called, tg)
        assert raised.group_contains(anyio.ClosedResourceError)
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(accept_until_closed, tg)
        await anyio.sleep(0.05)
        await listener.aclose()
        with anyio.fail_after(5):
            await ended.wait()


async def _never_called(stream: anyio.abc.SocketStream) -> None:
    raise AssertionError("no connection was made")


@over_own_streams
async def test_a_burst_of_connections_does_not_starve_other_tasks(kit: Kit[Any]) -> None:
    # 200 connections waiting at once: the accept loop takes them without waiting, but
    # yields every few, so a ticking task keeps ticking between the first and the last.
    ticks = 0
    seen: list[int] = []  # the tick count as each connection's handler starts
    done = anyio.Event()

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async def take(stream: anyio.abc.SocketStream) -> None:
        seen.append(ticks)
        if len(seen) == 200:
            done.set()
        async with stream:
            await anyio.sleep_forever()

    listener = await kit.create_tcp_listener("127.0.0.1", 0)
    port = listener.extra(SocketAttribute.local_port)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(tick)
            tg.start_soon(serve_listener, listener, take, tg)
            with anyio.fail_after(10):
                await done.wait()
            assert seen[-1] - seen[0] >= 3, seen
            tg.cancel_scope.cancel()
    finally:
        for client in clients:
            client.close()


@over_own_streams
async def test_big_payloads_both_ways_at_once(kit: Kit[Any]) -> None:
    size = 8 * 1024 * 1024
    up, down = os.urandom(size), os.urandom(size)
    got: dict[str, bytes] = {}

    async def pump(stream: anyio.abc.ByteStream, data: bytes) -> None:
        await stream.send(data[: 1 << 20])
        view = memoryview(data)
        for start in range(1 << 20, size, 1 << 20):
            await stream.send(view[start : start + (1 << 20)])  # type: ignore[arg-type]

    async def drain(stream: anyio.abc.ByteStream, key: str) -> None:
        got[key] = await receive_exactly(stream, size)

    async with stream_pair(kit) as (client, server), anyio.create_task_group() as tg:
        tg.start_soon(pump, client, up)
        tg.start_soon(pump, server, down)
        tg.start_soon(drain, server, "up")
        tg.start_soon(drain, client, "down")
    assert hashlib.sha256(got["up"]).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(got["down"]).digest() == hashlib.sha256(down).digest()


@over_own_streams
async def test_many_concurrent_connections(kit: Kit[Any]) -> None:
    count = 100

    async def echo(stream: anyio.abc.SocketStream) -> None:
        assert isinstance(stream, kit.stream_type)
        async with stream:
            try:
                while True:
                    await stream.send(await stream.receive())
            except anyio.EndOfStream:
                pass

    async def station(port: int, i: int) -> None:
        async with await kit.connect_tcp("127.0.0.1", port) as stream:
            for n in range(10):
                message = f"{i}:{n}".encode()
                await stream.send(message)
                assert await receive_exactly(stream, len(message)) == message
            await stream.send_eof()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()

    async with await kit.create_tcp_listener("127.0.0.1", 0) as listener, anyio.create_task_group() as server:
        server.start_soon(listener.serve, echo, server)
        async with anyio.create_task_group() as stations:
            for i in range(count):
                stations.start_soon(station, listener.extra(SocketAttribute.local_port), i)
        server.cancel_scope.cancel()


@over_own_streams
async def test_eof_after_the_data_and_half_close(kit: Kit[Any]) -> None:
    async with stream_pair(kit) as (client, server):
        await client.send(b"last words")
        await client.send_eof()
        await client.send_eof()  # idempotent
        with pytest.raises(anyio.ClosedResourceError):
            await client.send(b"after our EOF")
        assert await receive_exactly(server, 10) == b"last words"
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
        with pytest.raises(anyio.EndOfStream):
            await server.receive()  # and again
        # Half-close: the other direction still works.
        await server.send(b"still here")
        assert await receive_exactly(client, 10) == b"still here"
        await server.aclose()
        with pytest.raises(anyio.EndOfStream):
            await client.receive()


@over_own_streams
async def test_tls_stream_over_it(kit: Kit[Any], ca: trustme.CA) -> None:
    server_context = server_ssl_context()
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = client_ssl_context(cadata=ca.cert_pem.bytes().decode())
    async with stream_pair(kit) as (client, server):
        async with anyio.create_task_group() as tg:
            wrapped: list[TLSStream] = []

            async def server_side() -> None:
                wrapped.append(
                    await TLSStream.wrap(
                        server, server_side=True, ssl_context=server_context, standard_compatible=False
                    )
                )

            tg.start_soon(server_side)
            tls_client = await TLSStream.wrap(
                client, hostname="localhost", ssl_context=client_context, standard_compatible=False
            )
        (tls_server,) = wrapped
        payload = os.urandom(300_000)
        async with anyio.create_task_group() as tg:
            tg.start_soon(tls_client.send, payload)
            assert await receive_exactly(tls_server, len(payload)) == payload
        assert tls_client.extra(TLSAttribute.cipher) is not None
        assert tls_server.extra(SocketAttribute.remote_address) == client.extra(SocketAttribute.local_address)
        await tls_client.aclose()
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError)):
            await tls_server.receive()
        await tls_server.aclose()


@over_own_streams
async def test_the_same_bytes_over_both_streams(kit: Kit[Any]) -> None:
    """Send the same irregular write pattern over each stream; the bytes read are identical."""
    pattern = [os.urandom(n) for n in (1, 2, 100, 65535, 65536, 65537, 3, 1 << 20, 7)]

    async def transfer(open_pair: Callable[[], Any]) -> bytes:
        received = b""
        async with open_pair() as (client, server), anyio.create_task_group() as tg:

            async def write() -> None:
                for part in pattern:
                    await client.send(part)
                await client.send_eof()

            tg.start_soon(write)
            received = await read_all(server)
        return received

    @asynccontextmanager
    async def anyio_pair() -> AsyncIterator[tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]]:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            client = await anyio.connect_tcp("127.0.0.1", listener.extra(SocketAttribute.local_port))
            server = await listener.listeners[0].accept()  # type: ignore[attr-defined]
            async with client, server:
                yield client, server

    assert await transfer(lambda: stream_pair(kit)) == await transfer(anyio_pair) == b"".join(pattern)


@over_own_streams
async def test_send_within_writes_at_once_and_bounds_only_what_must_wait(kit: Kit[Any]) -> None:
    """``send_within`` (the 101 response's write): no deadline when the stream takes it all now."""
    async with stream_pair(kit) as (client, server):
        # The peer reads: everything is taken at once, as the bytes arrive.
        assert server.try_send(b"HTTP/1.1 101") == 12
        await send_within(server, b" Switching Protocols", 0.5)
        assert await receive_exactly(client, 32) == b"HTTP/1.1 101 Switching Protocols"
        # The peer reads nothing: try_send takes what fits (asyncio: all of it, into the transport's
        # buffer, which then pauses), the next send must wait and times out; nothing raises early.
        # Fixed socket buffers: the kernel's autotuning would otherwise make room now and then.
        server.extra(SocketAttribute.raw_socket).setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        client.extra(SocketAttribute.raw_socket).setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        big = os.urandom(4 * 1024 * 1024)
        taken = server.try_send(big)
        assert 65536 <= taken <= len(big)
        chunk = bytes(65536)
        for _ in range(100):  # the kernel may still take a last piece; asyncio's paused transport nothing
            if server.try_send(chunk) == 0:
                # Bytes in flight may still move into the peer's buffer and make room (a loaded
                # machine moves them late): full means nothing taken after they settled too.
                await anyio.sleep(0.1)
                if server.try_send(chunk) == 0:
                    break
        else:
            pytest.fail("try_send never stopped taking bytes from a peer that reads nothing")
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await send_within(server, chunk, 0.3)
        assert await receive_exactly(client, 65536) == big[:65536]
        await anyio.aclose_forcefully(server)  # drop what the transport still holds
    # A closed stream refuses at once, as send() does.
    async with stream_pair(kit) as (client, server):
        await server.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            server.try_send(b"x")
        with pytest.raises(anyio.ClosedResourceError):
            await send_within(server, b"x", 0.5)


UPGRADE = (
    b"GET /ocpp/CP1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)


@over_own_streams
async def test_receive_now_hands_over_the_bytes_or_what_to_await(kit: Kit[Any]) -> None:
    async with stream_pair(kit) as (client, server):
        waiting = server.receive_now()
        assert not isinstance(waiting, bytes)  # nothing came yet: the loop's wait
        await client.send(b"hello")
        await waiting
        got = server.receive_now()
        while not isinstance(got, bytes):  # the fairness checkpoint, or a wait once more
            await got
            got = server.receive_now()
        assert got == b"hello"
        await client.send_eof()
        with pytest.raises(anyio.EndOfStream):
            got = server.receive_now()
            while not isinstance(got, bytes):
                await got
                got = server.receive_now()


@over_own_streams
async def test_a_request_that_has_arrived_is_read_without_a_deadline(
    kit: Kit[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handshake reads a waiting request at once, with no cancel scope (and its timer).

    Only a request still to come is read under the deadline (a zero one refuses it).
    """
    scopes: list[float] = []
    real = anyio.CancelScope

    def counted(*, deadline: float = math.inf, shield: bool = False) -> anyio.CancelScope:
        if deadline != math.inf:  # a timer (the stream pair's own shielded scopes aside)
            scopes.append(deadline)
        return real(deadline=deadline, shield=shield)

    monkeypatch.setattr(anyio, "CancelScope", counted)
    async with stream_pair(kit) as (client, server):
        await client.send(UPGRADE)
        await anyio.sleep(0.1)  # on loopback it has arrived by now
        request = await accept_websocket(server, protocols=["ocpp1.6"], handshake_timeout=0)
        assert request.identity == "CP1" and request.subprotocol == "ocpp1.6"
        assert scopes == []
    async with stream_pair(kit) as (client, server):
        with pytest.raises(HandshakeTimeout):
            await accept_websocket(server, protocols=["ocpp1.6"], handshake_timeout=0)
        assert len(scopes) == 1


@over_own_streams
async def test_a_connection_closed_before_its_request_is_refused_at_once(kit: Kit[Any]) -> None:
    async with stream_pair(kit) as (client, server):
        await client.send_eof()
        await anyio.sleep(0.1)  # the server's end has seen the EOF
        with pytest.raises(HandshakeError, match="closed before a complete request"):
            await accept_websocket(server, protocols=["ocpp1.6"])
