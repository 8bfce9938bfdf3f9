"""ocpprpc's raw-socket TCP stream (``_raw_stream``) over real loopback sockets.

The stream is for trio (it takes connections over from anyio's streams, which
read ahead on asyncio), so most tests run on trio only (a module-level
``anyio_backend`` parameter overrides the directory's); the choice of stream is
tested on every backend, and the differential tests run the same exchange over
this stream and over anyio's.
"""

from __future__ import annotations

import socket
from contextlib import AbstractAsyncContextManager

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trustme
from anyio.abc import SocketAttribute

import ocpprpc
import ocpprpc._ws.raw_stream as raw
import ocpprpc._ws.tcp
from ocpprpc._ws.raw_stream import RawSocketStream, RawTCPListener, connect_tcp, create_tcp_listener
from ocpprpc._ws.tcp import TcpStreamName, resolve_tcp_stream
from ocpprpc._ws.websocket import WebSocketStream

from ..csms.helpers import eventually
from . import own_streams
from .own_streams import RAW, linger_reset, ocpp_exchange, read_all, receive_exactly

pytestmark = pytest.mark.timeout(30)

trio_only = pytest.mark.parametrize("anyio_backend", ["trio"])


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def stream_pair() -> AbstractAsyncContextManager[tuple[RawSocketStream, RawSocketStream]]:
    """A connected (client, server) pair of our streams over 127.0.0.1; both closed on exit."""
    return own_streams.stream_pair(RAW)


# -- basics -------------------------------------------------------------------------


@trio_only
async def test_max_bytes() -> None:
    async with stream_pair() as (client, server):
        with pytest.raises(ValueError, match="positive"):
            await server.receive(0)
        await client.send(b"abcdefghij")
        assert await server.receive(2) == b"ab"
        assert await receive_exactly(server, 8) == b"cdefghij"


@trio_only
async def test_the_socket_is_non_blocking() -> None:
    async with stream_pair() as (client, _):
        assert client.extra(SocketAttribute.raw_socket).getblocking() is False


# -- how a stream ends --------------------------------------------------------------


@trio_only
async def test_reset_breaks_both_directions() -> None:
    async with stream_pair() as (client, server):
        outcome: list[BaseException] = []

        async def reader() -> None:
            try:
                await client.receive()
            except anyio.BrokenResourceError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            linger_reset(server)
            await server.aclose()
        (broken,) = outcome
        assert isinstance(broken.__cause__, ConnectionResetError)
        with pytest.raises(anyio.BrokenResourceError):
            for _ in range(10):  # the first send after a reset may still be accepted by the kernel
                await client.send(b"into the void")
        with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
            await client.receive()
        await client.send_eof()  # nothing to end: no error, as with anyio's stream


@trio_only
async def test_use_after_aclose_and_aclose_wakes_blocked_operations() -> None:
    async with stream_pair() as (client, server):
        await client.send(b"unread")
        await server.aclose()
        await server.aclose()  # idempotent
        for operation in (server.receive(), server.send(b"x"), server.send_eof()):
            with pytest.raises(anyio.ClosedResourceError):
                await operation

    outcome: list[BaseException] = []
    async with stream_pair() as (client, server), stream_pair() as (_other_client, other_server):

        async def reader() -> None:
            try:
                await client.receive()  # nothing comes
            except anyio.ClosedResourceError as exc:
                outcome.append(exc)

        async def writer() -> None:
            try:
                while True:
                    await other_server.send(b"s" * 65536)  # other_client never reads
            except anyio.ClosedResourceError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            await eventually(lambda: other_server._sending)
            await anyio.wait_all_tasks_blocked()
            await client.aclose()
            await other_server.aclose()
        assert len(outcome) == 2


@trio_only
async def test_concurrent_receivers_and_senders_are_refused() -> None:
    async with stream_pair() as (client, server), anyio.create_task_group() as tg:
        tg.start_soon(server.receive)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await server.receive()

        async def sender() -> None:
            while True:
                await client.send(b"b" * 65536)  # nobody reads past the first receive

        tg.start_soon(sender)
        await eventually(lambda: client._sending)
        with pytest.raises(anyio.BusyResourceError):
            await client.send(b"concurrently")
        tg.cancel_scope.cancel()


class CountingSocket(socket.socket):
    """A real socket that counts its ``recv`` calls and the ones the kernel refused (EAGAIN)."""

    calls = 0
    refused = 0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.calls += 1
        try:
            return super().recv(bufsize, flags)
        except BlockingIOError:
            self.refused += 1
            raise


@trio_only
async def test_after_a_short_read_it_waits_before_the_next_recv() -> None:
    """Request/response: the next message comes after our answer, so a recv() at once would fail."""
    left, right = socket.socketpair()
    counting = CountingSocket(fileno=right.detach())
    server = RawSocketStream(counting)
    client = RawSocketStream(left)

    async def answer() -> None:
        for _ in range(5):
            await server.receive()  # short: less than max_bytes
            await server.send(b"answer")  # then at once receive(), before the next call is sent

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            await anyio.wait_all_tasks_blocked()
            for i in range(5):
                await client.send(b"call %d" % i)
                assert await client.receive() == b"answer"
        # The first read found nothing (one EAGAIN); after each short read the stream waited.
        assert (counting.calls, counting.refused) == (6, 1)
        # A read that filled max_bytes leaves the next one trying at once: the rest is there.
        await client.send(b"abcdef")
        await anyio.wait_readable(counting)
        assert await server.receive(3) == b"abc"
        with anyio.fail_after(5):
            assert await server.receive(3) == b"def"
        assert (counting.calls, counting.refused) == (8, 1)
        # After a short read the wait still ends for data that is already there, and for EOF.
        await client.send(b"x")
        await anyio.sleep(0.01)
        with anyio.fail_after(5):
            assert await server.receive() == b"x"
        await client.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
    finally:
        await client.aclose()
        await server.aclose()


# -- cancellation ---------------------------------------------------------------------


@trio_only
async def test_cancelled_receive_loses_nothing() -> None:
    async with stream_pair() as (client, server):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.receive)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        await client.send(b"after")
        assert await receive_exactly(server, 5) == b"after"


@trio_only
async def test_cancelled_send_while_the_peer_does_not_read() -> None:
    async with stream_pair() as (client, server):
        chunk = b"x" * 65536

        async def sender() -> None:
            while True:
                await client.send(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await eventually(lambda: client._sending)  # blocked: the server never reads
            tg.cancel_scope.cancel()
        assert not client._sending
        # The stream still works: what was written arrives, then what follows.
        async with anyio.create_task_group() as tg:

            async def finish() -> None:
                await client.send(b"!")
                await client.send_eof()

            tg.start_soon(finish)
            received = await read_all(server)
        assert received.endswith(b"x!") and set(received[:-1]) == {ord("x")}


# -- fairness -------------------------------------------------------------------------


@trio_only
async def test_a_busy_stream_yields_to_others_and_sees_cancellation() -> None:
    async with stream_pair() as (client, server):
        await client.send(bytes(1000))
        await eventually(lambda: len(server.extra(SocketAttribute.raw_socket).recv(1, socket.MSG_PEEK)) == 1)
        other_ran = 0
        done = False

        async def other() -> None:
            nonlocal other_ran
            while not done:
                other_ran += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            for _ in range(8 * raw._FAIR_OPS):
                assert len(await server.receive(1)) == 1  # data at hand: no wait
            assert other_ran >= 3
            done = True

        received = 0
        with anyio.CancelScope() as scope:
            scope.cancel()
            while True:
                await server.receive(1)
                received += 1
        assert received <= raw._FAIR_OPS
        sends = 0
        with anyio.CancelScope() as scope:
            scope.cancel()
            while True:
                await client.send(b".")
                sends += 1
        assert sends <= raw._FAIR_OPS


@trio_only
async def test_a_second_send_in_a_row_yields_first() -> None:
    """Request/response never yields in send(); back-to-back sends checkpoint first."""
    async with stream_pair() as (client, server):
        await client.send(b"request")
        assert await receive_exactly(server, 7) == b"request"
        await server.send(b"answer")
        assert await receive_exactly(client, 6) == b"answer"
        sent = []
        with anyio.CancelScope() as scope:
            scope.cancel()
            await client.send(b"request")  # a receive() since the last send: no checkpoint
            sent.append(1)
            await client.send(b"more")  # back to back: checkpoints (here: cancelled) before writing
            sent.append(2)  # pragma: no cover
        assert sent == [1]
        await client.send_eof()
        assert await read_all(server) == b"request"


# -- TLS over the stream --------------------------------------------------------------


# -- listener and connect ---------------------------------------------------------------


@trio_only
async def test_listener_and_connect() -> None:
    listener = await create_tcp_listener("127.0.0.1", 0)
    assert isinstance(listener, RawTCPListener)
    port = listener.extra(SocketAttribute.local_port)
    assert listener.extra(SocketAttribute.local_address) == ("127.0.0.1", port)
    async with anyio.create_task_group() as tg:

        async def answer(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await stream.send(str(stream.extra(SocketAttribute.remote_address)).encode())

        tg.start_soon(listener.serve, answer)
        async with await connect_tcp("localhost", port) as stream:  # by name: anyio resolves
            assert "127.0.0.1" in (await read_all(stream)).decode()
        tg.cancel_scope.cancel()
    await listener.aclose()
    with pytest.raises(OSError):
        await connect_tcp("127.0.0.1", port)


# -- choosing the stream ----------------------------------------------------------------


async def test_socket_is_chosen_by_name_and_refused_on_asyncio(anyio_backend: str) -> None:
    with pytest.raises(ValueError, match="'socket'"):
        resolve_tcp_stream("raw")
    if anyio_backend == "asyncio":
        assert resolve_tcp_stream("auto") == "asyncio"  # never the raw stream on asyncio
        with pytest.raises(RuntimeError, match="not for asyncio"):
            resolve_tcp_stream("socket")
        with pytest.raises(RuntimeError, match="not for asyncio"):
            async with ocpprpc.serve(tcp_stream="socket"):
                pass  # pragma: no cover
        return
    assert resolve_tcp_stream("socket") == "socket"
    assert resolve_tcp_stream("auto") == ocpprpc._ws.tcp.AUTO_ELSEWHERE
    async with (
        ocpprpc.serve(tcp_stream="socket") as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}", "CP1", tcp_stream="socket") as station,
    ):
        assert isinstance(station.stream, WebSocketStream)
        assert isinstance(station.stream._stream, RawSocketStream)


# -- differential: the same exchange over both streams -----------------------------------


@trio_only
async def test_the_same_ocpp_exchange_over_both_streams() -> None:
    reference = await ocpp_exchange("anyio", "anyio")
    assert len(reference) == 4 * 9
    pairs: list[tuple[TcpStreamName, TcpStreamName]] = [
        ("socket", "socket"),
        ("socket", "anyio"),
        ("anyio", "socket"),
    ]
    for csms_stream, station_stream in pairs:
        assert await ocpp_exchange(csms_stream, station_stream) == reference
