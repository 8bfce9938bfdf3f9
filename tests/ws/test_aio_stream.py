"""ocpprpc's own asyncio TCP stream (``_aio_stream``) over real loopback sockets.

Most tests run on asyncio only (the stream exists only there; a module-level
``anyio_backend`` parameter overrides the directory's); the choice of stream
(``_tcp``) is tested on every backend, and the differential tests run the same
exchange over this stream and over anyio's.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import anyio
import anyio.abc
import pytest
import trustme
from anyio.abc import SocketAttribute

import ocpprpc
import ocpprpc._ws.aio_stream as aio
import ocpprpc._ws.tcp
from ocpprpc._ws.aio_stream import AsyncioSocketStream, AsyncioTCPListener, connect_tcp, create_tcp_listener
from ocpprpc._ws.tcp import TcpStreamName, resolve_tcp_stream
from ocpprpc._ws.websocket import WebSocketStream

from ..csms.helpers import eventually
from .own_streams import linger_reset, ocpp_exchange, read_all, receive_exactly

pytestmark = pytest.mark.timeout(30)

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def stream_pair() -> AsyncIterator[tuple[AsyncioSocketStream, AsyncioSocketStream]]:
    """A connected (client, server) pair of our streams over 127.0.0.1; both closed on exit."""
    async with await create_tcp_listener("127.0.0.1", 0) as listener:
        client = await connect_tcp("127.0.0.1", listener.extra(SocketAttribute.local_port))
        server = await listener.accept()
        assert isinstance(server, AsyncioSocketStream)
        async with client, server:
            yield client, server


# -- basics -------------------------------------------------------------------------


@asyncio_only
async def test_max_bytes_splits_and_joins_chunks() -> None:
    async with stream_pair() as (client, server):
        with pytest.raises(ValueError, match="positive"):
            await server.receive(0)
        for part in (b"abc", b"defg", b"hij"):
            await client.send(part)
        await eventually(lambda: server._unread == 10)
        assert await server.receive(2) == b"ab"
        # The rest of the first read and the following ones come joined, up to max_bytes.
        rest = await server.receive(5)
        assert rest == b"cdefg"[: len(rest)] and 1 <= len(rest) <= 5
        assert rest + await receive_exactly(server, 10 - 2 - len(rest)) == b"cdefghij"
        assert server._unread == 0


# -- how a stream ends --------------------------------------------------------------


@asyncio_only
async def test_reset_breaks_both_directions() -> None:
    async with stream_pair() as (client, server):
        blocked = anyio.Event()
        outcome: list[BaseException] = []

        async def reader() -> None:
            blocked.set()
            try:
                await client.receive()
            except anyio.BrokenResourceError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await blocked.wait()
            await anyio.wait_all_tasks_blocked()
            linger_reset(server)
            await server.aclose()
        (broken,) = outcome
        assert isinstance(broken.__cause__, ConnectionResetError)
        with pytest.raises(anyio.BrokenResourceError):
            await client.send(b"into the void")
        with pytest.raises(anyio.BrokenResourceError):
            await client.receive()
        await client.send_eof()  # nothing to end: no error, as with anyio's stream


@asyncio_only
async def test_use_after_aclose_and_aclose_wakes_a_blocked_receive() -> None:
    async with stream_pair() as (client, server):
        await client.send(b"unread")
        await eventually(lambda: server._unread == 6)
        await server.aclose()
        await server.aclose()  # idempotent
        for operation in (server.receive(), server.send(b"x"), server.send_eof()):
            with pytest.raises(anyio.ClosedResourceError):
                await operation

    async with stream_pair() as (client, server):
        outcome: list[BaseException] = []

        async def reader() -> None:
            try:
                await client.receive()
            except anyio.ClosedResourceError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            await client.aclose()
        assert len(outcome) == 1


@asyncio_only
async def test_concurrent_receivers_are_refused() -> None:
    async with stream_pair() as (_client, server), anyio.create_task_group() as tg:
        tg.start_soon(server.receive)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await server.receive()
        tg.cancel_scope.cancel()


# -- cancellation ---------------------------------------------------------------------


@asyncio_only
async def test_cancelled_receive_loses_nothing() -> None:
    async with stream_pair() as (client, server):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.receive)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        # The cancelled wait's future is done: the next receive() takes its place (no BusyResourceError).
        assert server._receiver is None or server._receiver.cancelled()
        await client.send(b"after")
        assert await receive_exactly(server, 5) == b"after"

        # Data arriving in the same loop pass as the cancellation: either the
        # receive() completes with it or the data stays for the next one.
        got: list[bytes] = []

        async def receiver() -> None:
            got.append(await server.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.wait_all_tasks_blocked()
            buffer = server.get_buffer(-1)
            buffer[:4] = b"race"
            server.buffer_updated(4)  # what the transport calls after recv_into
            tg.cancel_scope.cancel()
        assert server._receiver is None
        if not got:
            got.append(await server.receive())
        assert got == [b"race"]


@asyncio_only
async def test_cancelled_send_while_the_peer_does_not_read() -> None:
    async with stream_pair() as (client, server):
        sent = 0
        chunk = b"x" * 65536

        async def sender() -> None:
            nonlocal sent
            while True:
                await client.send(chunk)
                sent += len(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await eventually(lambda: client._drain is not None)  # the server never reads
            assert client._write_paused
            with pytest.raises(anyio.BusyResourceError):
                await client.send(b"concurrently")
            tg.cancel_scope.cancel()
        assert client._drain is None
        # The cancelled send() had handed its bytes to the transport: they arrive too.
        sent += len(chunk)

        async def finish() -> None:
            await client.send(b"!")  # waits for the drain until the server reads
            await client.send_eof()

        async with anyio.create_task_group() as tg:
            tg.start_soon(finish)
            received = await read_all(server)
        assert len(received) == sent + 1 and received.endswith(b"x!")


@asyncio_only
async def test_reset_while_a_send_waits_for_the_drain() -> None:
    async with stream_pair() as (client, server):
        outcome: list[BaseException] = []

        async def sender() -> None:
            try:
                while True:
                    await client.send(b"y" * 65536)
            except anyio.BrokenResourceError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await eventually(lambda: client._drain is not None)
            linger_reset(server)
            await server.aclose()
        assert len(outcome) == 1 and client._drain is None


@asyncio_only
async def test_aclose_wakes_a_send_waiting_for_the_drain_and_aborts_when_forced() -> None:
    async with stream_pair() as (client, server):
        outcome: list[BaseException] = []

        async def sender() -> None:
            try:
                while True:
                    await client.send(b"z" * 65536)
            except anyio.ClosedResourceError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await eventually(lambda: client._drain is not None)
            await anyio.aclose_forcefully(client)  # cancelled: drops what is buffered
        assert len(outcome) == 1
        # The server gets a prefix of the data, then the end (the abort).
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            while True:
                assert set(await server.receive()) <= {ord("z")}


@asyncio_only
async def test_aclose_flushes_what_send_accepted() -> None:
    async with stream_pair() as (client, server):
        sent = 0

        async def sender() -> None:
            nonlocal sent
            while True:
                sent += 65536  # counted before: a cancelled send() still handed its bytes over
                await client.send(b"w" * 65536)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await eventually(lambda: client._drain is not None)
            tg.cancel_scope.cancel()
        assert client._transport.get_write_buffer_size() > 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.aclose)  # waits for the transport to write it all
            received = await read_all(server)
        assert len(received) == sent
        assert client._lost


# -- flow control and fairness -------------------------------------------------------


@asyncio_only
async def test_reading_pauses_above_the_high_water_mark_and_resumes_below() -> None:
    size = 4 * aio._READ_HIGH
    data = os.urandom(size)
    async with stream_pair() as (client, server), anyio.create_task_group() as tg:
        tg.start_soon(client.send, data)
        await eventually(lambda: server._read_paused)
        assert aio._READ_HIGH < server._unread < size
        received = bytearray()
        while server._read_paused:
            received += await server.receive()
        assert server._unread <= aio._READ_LOW
        received += await receive_exactly(server, size - len(received))
        assert received == data


@asyncio_only
async def test_a_busy_stream_yields_to_others_and_sees_cancellation() -> None:
    async with stream_pair() as (client, server):
        await client.send(bytes(1000))
        await eventually(lambda: server._unread == 1000)
        other_ran = 0
        done = False

        async def other() -> None:
            nonlocal other_ran
            while not done:
                other_ran += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)  # runs only when this task yields
            for _ in range(4 * aio._FAIR_OPS):
                assert len(await server.receive(1)) == 1  # data at hand: no wait
            assert other_ran >= 3
            done = True

        # A cancelled scope stops a receive loop that never has to wait ...
        received = 0
        with anyio.CancelScope() as scope:
            scope.cancel()
            while True:
                await server.receive(1)
                received += 1
        assert received <= aio._FAIR_OPS
        # ... and a send loop whose writes never block, before writing anything.
        sends = 0
        with anyio.CancelScope() as scope:
            scope.cancel()
            while True:
                await client.send(b".")
                sends += 1
        assert sends <= aio._FAIR_OPS


@asyncio_only
async def test_a_second_send_in_a_row_yields_first() -> None:
    """Request/response never yields in send(); back-to-back sends let other writers queue."""
    async with stream_pair() as (client, server):
        ran = 0

        async def other() -> None:
            nonlocal ran
            ran += 1

        await client.send(b"request")
        assert await receive_exactly(server, 7) == b"request"
        await server.send(b"answer")
        assert await receive_exactly(client, 6) == b"answer"
        async with anyio.create_task_group() as tg:
            tg.start_soon(other)  # runs the next time this task yields
            await client.send(b"request")  # a receive() since the last send: no yield
            assert ran == 0
            await client.send(b"more")  # back to back: yields before writing
            assert ran == 1
        assert await receive_exactly(server, 11) == b"requestmore"


# -- TLS over the stream --------------------------------------------------------------


# -- listener and connect ---------------------------------------------------------------


@asyncio_only
async def test_listener_lifecycle() -> None:
    listener = await create_tcp_listener("127.0.0.1", 0)
    port = listener.extra(SocketAttribute.local_port)
    assert listener.extra(SocketAttribute.local_address) == ("127.0.0.1", port)
    assert listener.extra(SocketAttribute.family) == socket.AF_INET
    # A connection the loop accepted waits for accept().
    early = await connect_tcp("127.0.0.1", port)
    await early.send(b"queued")
    accepted = await listener.accept()
    assert await receive_exactly(accepted, 6) == b"queued"
    await accepted.aclose()
    await early.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.accept)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await listener.accept()
        tg.cancel_scope.cancel()
    assert listener._waiter is None

    # Closing: a blocked accept() ends, queued connections are dropped, the port closes.
    outcome: list[BaseException] = []

    async def acceptor() -> None:
        try:
            await listener.accept()
        except anyio.ClosedResourceError as exc:
            outcome.append(exc)

    unaccepted = await connect_tcp("127.0.0.1", port)
    await eventually(lambda: len(listener._ready) == 1)
    async with anyio.create_task_group() as tg:
        await listener.aclose()
        tg.start_soon(acceptor)
    assert len(outcome) == 1
    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
        await unaccepted.receive()
    await unaccepted.aclose()
    await listener.aclose()  # idempotent
    with pytest.raises(OSError):
        await connect_tcp("127.0.0.1", port)


@asyncio_only
async def test_listener_on_every_interface_binds_like_anyio() -> None:
    async with await anyio.create_tcp_listener() as reference:
        families = [sub.extra(SocketAttribute.family) for sub in reference.listeners]
    async with await create_tcp_listener(None, 0) as listener, anyio.create_task_group() as tg:
        port = listener.extra(SocketAttribute.local_port)
        # Where IPv6 is configured: one dual-stack "::" socket, as anyio makes it.
        assert [sock.family for sock in listener._sockets] == families

        async def answer(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await stream.send(str(stream.extra(SocketAttribute.remote_address)).encode())

        tg.start_soon(listener.serve, answer, tg)
        hosts = ["127.0.0.1"] + (["::1"] if socket.AF_INET6 in families else [])
        for host in hosts:
            async with await connect_tcp(host, port) as stream:
                assert host in (await read_all(stream)).decode()
        tg.cancel_scope.cancel()


@asyncio_only
async def test_connect_races_addresses_and_reports_every_failure() -> None:
    loop = asyncio.get_running_loop()
    async with await create_tcp_listener("127.0.0.1", 0) as listener:
        port = listener.extra(SocketAttribute.local_port)
        # IPv6 first (refused: nothing listens on ::1), then IPv4 wins.
        stream = await aio._race(loop, ["::1", "127.0.0.1"], port, 5.0)
        assert stream.extra(SocketAttribute.remote_address) == ("127.0.0.1", port)
        await stream.aclose()
        # Both connect: the first wins, the second is dropped.
        stream = await aio._race(loop, ["127.0.0.1", "127.0.0.1"], port, 0)
        await stream.aclose()
        # By name (resolved by anyio's getaddrinfo).
        async with await connect_tcp("localhost", port) as stream:
            assert stream.extra(SocketAttribute.remote_port) == port
    with pytest.raises(OSError, match="all connection attempts") as failed:
        await aio._race(loop, ["::1", "127.0.0.1"], port, 5.0)
    assert isinstance(failed.value.__cause__, ExceptionGroup)
    with pytest.raises(OSError, match="all connection attempts") as failed:
        await aio._race(loop, ["127.0.0.1"], port, 5.0)
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)
    with pytest.raises(ConnectionRefusedError):
        await connect_tcp("127.0.0.1", port)


def test_each_connection_has_its_own_read_buffer_on_other_event_loops() -> None:
    other_loop = cast(asyncio.AbstractEventLoop, object())  # uvloop, the proactor: reads may overlap
    first, second = aio._read_buffer(other_loop), aio._read_buffer(other_loop)
    assert len(first) == aio._OWN_BUFFER and first.obj is not second.obj
    selector = asyncio.SelectorEventLoop()
    try:
        assert aio._read_buffer(selector).obj is aio._read_buffer(selector).obj  # one per thread
    finally:
        selector.close()


def test_happy_eyeballs_order_is_anyios() -> None:
    v4, v6 = socket.AF_INET, socket.AF_INET6
    kind = socket.SOCK_STREAM
    infos = [
        (v4, kind, 6, "", ("10.0.0.1", 80)),
        (v4, kind, 6, "", ("10.0.0.2", 80)),
        (v6, kind, 6, "", ("fe80::1", 80)),
        (v4, kind, 6, "", ("10.0.0.3", 80)),
        (v6, kind, 6, "", ("fe80::2", 80)),
    ]
    assert aio._happy_eyeballs_order(infos) == ["fe80::1", "10.0.0.3", "10.0.0.1", "10.0.0.2", "fe80::2"]


# -- choosing the stream ----------------------------------------------------------------


async def test_the_choice_follows_the_running_loop(anyio_backend: str) -> None:
    by_default = ocpprpc._ws.tcp.DEFAULT_TCP_STREAM == "auto"
    on_asyncio = anyio_backend == "asyncio" and by_default
    assert resolve_tcp_stream("anyio") == "anyio"
    elsewhere = ocpprpc._ws.tcp.AUTO_ELSEWHERE if by_default else "anyio"
    assert resolve_tcp_stream() == ("asyncio" if on_asyncio else elsewhere)
    with pytest.raises(ValueError, match="unknown TCP stream"):
        resolve_tcp_stream("fast")
    async with await ocpprpc._ws.tcp.create_tcp_listener("127.0.0.1", 0) as listener:
        port = listener.extra(SocketAttribute.local_port)
        assert isinstance(listener, AsyncioTCPListener) is on_asyncio
        async with await ocpprpc._ws.tcp.connect_tcp("127.0.0.1", port) as stream:
            assert isinstance(stream, AsyncioSocketStream) is on_asyncio
        async with await ocpprpc._ws.tcp.connect_tcp("127.0.0.1", port, tcp_stream="anyio") as stream:
            assert not isinstance(stream, AsyncioSocketStream)
    if anyio_backend == "asyncio":
        assert resolve_tcp_stream("asyncio") == "asyncio"
        assert resolve_tcp_stream("auto") == "asyncio"
    else:
        assert resolve_tcp_stream("auto") == ocpprpc._ws.tcp.AUTO_ELSEWHERE
        with pytest.raises(RuntimeError, match="needs an asyncio event loop"):
            resolve_tcp_stream("asyncio")


def test_outside_an_event_loop_asyncio_does_not_resolve() -> None:
    assert resolve_tcp_stream("auto") == ocpprpc._ws.tcp.AUTO_ELSEWHERE
    with pytest.raises(RuntimeError):
        resolve_tcp_stream("asyncio")


async def test_asyncio_stream_on_trio_is_refused_cleanly(anyio_backend: str) -> None:
    if anyio_backend == "asyncio":
        async with (
            ocpprpc.serve(tcp_stream="asyncio") as server,
            ocpprpc.connect(f"ws://127.0.0.1:{server.port}", "CP1", tcp_stream="asyncio") as station,
        ):
            assert isinstance(station.stream, WebSocketStream)
            assert isinstance(station.stream._stream, AsyncioSocketStream)
        return
    with pytest.raises(RuntimeError, match="asyncio event loop"):
        async with ocpprpc.serve(tcp_stream="asyncio"):
            pass  # pragma: no cover
    async with ocpprpc.serve() as server:
        with pytest.raises(RuntimeError, match="asyncio event loop"):
            async with ocpprpc.connect(f"ws://127.0.0.1:{server.port}", "CP1", tcp_stream="asyncio"):
                pass  # pragma: no cover
        assert not server.clients


def test_unknown_stream_names_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown TCP stream"):
        ocpprpc.Server(tcp_stream="fast")  # type: ignore[arg-type]


# -- differential: the same exchange over both streams -----------------------------------


@asyncio_only
async def test_the_same_ocpp_exchange_over_both_streams() -> None:
    reference = await ocpp_exchange("anyio", "anyio")
    assert len(reference) == 4 * 9  # 9 calls, each seen leaving and arriving, CALL and answer
    pairs: list[tuple[TcpStreamName, TcpStreamName]] = [
        ("asyncio", "asyncio"),
        ("asyncio", "anyio"),
        ("anyio", "asyncio"),
    ]
    for csms_stream, station_stream in pairs:
        assert await ocpp_exchange(csms_stream, station_stream) == reference


@asyncio_only
async def test_connection_lost_from_a_transport_without_a_read_callback() -> None:
    """Only asyncio's selector socket transport holds the bound read callback the stream drops
    (tests/csms/test_garbage.py); another transport (here a pipe's) is left as it is."""
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        transport, stream = await loop.connect_read_pipe(lambda: AsyncioSocketStream(loop), pipe)
        assert "_read_ready_cb" not in vars(transport)
        os.close(write_end)  # EOF: the transport reports it, then its connection as lost
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await eventually(lambda: transport.is_closing())
        assert stream._lost
