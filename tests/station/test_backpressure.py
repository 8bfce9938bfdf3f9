"""Backpressure over real sockets: a station that floods, a station that stops reading, dead peers.

Socket buffers are made small (4 KiB) on both ends so that TCP pushes back
after kilobytes instead of the megabytes Linux would otherwise buffer on
loopback.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

import ocpprpc
from ocpprpc import CallContext, ConnectionLost, Keepalive, Router, Server, WebSocketStream
from ocpprpc._ws.websocket import _HIGH_WATER
from tests.csms.helpers import PROMPT, RawStation, eventually
from tests.faults.proxy import fault_proxy
from tests.station.helpers import Recorder

pytestmark = pytest.mark.timeout(60)

SMALL_BUFFER = 4096


def _shrink(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)


@asynccontextmanager
async def small_buffer_csms(**options: Any) -> AsyncIterator[Server]:
    """A :class:`Server` behind our own listener, which shrinks every accepted socket's buffers."""
    server = Server(**options)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    _shrink(listener.extra(SocketAttribute.raw_socket))

    async def handle(stream: anyio.abc.SocketStream) -> None:
        _shrink(stream.extra(SocketAttribute.raw_socket))
        await server.handle(stream)

    async with listener, anyio.create_task_group() as tg:
        server.port_for_tests = listener.extra(SocketAttribute.local_port)  # type: ignore[attr-defined]
        tg.start_soon(listener.serve, handle)
        yield server
        tg.cancel_scope.cancel()


@asynccontextmanager
async def small_buffer_station(port: int, identity: str = "RAW") -> AsyncIterator[RawStation]:
    """A raw WebSocket station whose socket buffers are small from before the connect."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    _shrink(sock)
    sock.connect(("127.0.0.1", port))  # loopback: immediate
    stream = await anyio.abc.SocketStream.from_socket(sock)
    try:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send(
            ws.send(Request(host="127.0.0.1", target=f"/ocpp/{identity}", subprotocols=["ocpp1.6"]))
        )
        station: RawStation | None = None
        while station is None:
            ws.receive_data(await stream.receive())
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    station = RawStation(stream, ws, event.subprotocol)
        yield station
    finally:
        await anyio.aclose_forcefully(stream)


def port_of(server: Server) -> int:
    port: int = server.port_for_tests  # type: ignore[attr-defined]
    return port


def data_transfer(n: int, size: int = 1000) -> str:
    return json.dumps([2, f"c{n}", "DataTransfer", {"vendorId": "v", "data": "d" * size}])


# -- inbound: a station sending faster than the handlers keep up -------------------------------------


async def test_a_flooding_station_is_held_back_by_tcp_and_every_call_is_answered_in_order() -> None:
    total, bound = 2000, 4
    release = anyio.Event()
    handled: list[int] = []
    router = Router()

    @router.on("DataTransfer")
    async def transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        await release.wait()
        handled.append(ctx.session.queued_calls)
        return {"status": "Accepted", "data": ctx.message_id}

    async with (
        small_buffer_csms(router=router, max_concurrent_handlers=1, max_queued_calls=bound) as server,
        small_buffer_station(port_of(server)) as station,
    ):
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for n in range(total):
                await station.send_text(data_transfer(n))
                sent += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            await eventually(lambda: "RAW" in server.clients and server.clients["RAW"].queued_calls == bound)
            session = server.clients["RAW"]
            stream = session.stream
            assert isinstance(stream, WebSocketStream)
            reads = stream.reads
            await anyio.sleep(0.3)  # room for anything unread to arrive (nothing does)
            assert session.queued_calls == bound
            assert stream.reads == reads  # the CSMS stopped reading ...
            assert sent < total  # ... and TCP stopped the station
            release.set()
            answers = [json.loads(await station.next_text()) for _ in range(total)]
    assert [answer[1] for answer in answers] == [f"c{n}" for n in range(total)]
    assert max(handled) <= bound


# -- outbound: a station that stops reading ------------------------------------------------------------


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@asynccontextmanager
async def warnings_of(*names: str) -> AsyncIterator[Warnings]:
    handler = Warnings()
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


ANSWER_SIZE = 8000


@pytest.mark.parametrize("detector", ["send_timeout", "keepalive"])
async def test_a_station_that_stops_reading_is_bounded_reported_and_dropped(detector: str) -> None:
    router = Router()

    @router.on("DataTransfer")
    async def transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "data": "a" * ANSWER_SIZE}

    if detector == "send_timeout":
        # Long enough for the 300 CALLs below to be written first on a loaded machine (at 0.5 s
        # the CSMS once dropped the station while it was still writing them).
        options: dict[str, Any] = {"send_timeout": 2.0}
    else:
        options = {"send_timeout": None, "keepalive": Keepalive(interval=0.25, timeout=1.0)}
    async with (
        warnings_of("ocpprpc._websocket", "ocpprpc.keepalive") as warnings,
        small_buffer_csms(router=router, **options) as server,
        small_buffer_station(port_of(server)) as station,  # never reads
    ):
        # In one write: the keepalive detector drops a station that stops reading, and on a loaded
        # machine 300 separate writes once outlasted its timeout.
        await station.send_texts([data_transfer(n, size=10) for n in range(300)])
        await eventually(lambda: "RAW" in server.clients)
        session = server.clients["RAW"]
        stream = session.stream
        assert isinstance(stream, WebSocketStream)
        peak = 0
        frame = ANSWER_SIZE + 100  # the answer's JSON and frame header

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, stream.unsent)
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)

            async def csms_call() -> None:
                with pytest.raises(ConnectionLost), anyio.fail_after(PROMPT):
                    await session.call(
                        "DataTransfer", {"vendorId": "v", "data": "c" * ANSWER_SIZE}, timeout=None
                    )

            tg.start_soon(csms_call)
            await eventually(lambda: stream.unsent > _HIGH_WATER)
            assert stream.unsent <= _HIGH_WATER + frame
            with anyio.fail_after(PROMPT * 2):
                await session.closed.wait()
            tg.cancel_scope.cancel()
        assert peak <= _HIGH_WATER + frame
    reason = session.close_reason
    assert reason is not None and reason.code == 1006
    if detector == "send_timeout":
        assert reason.reason.startswith("peer stopped reading: ")
        assert reason.reason.endswith(" bytes unsent for 2 s")
    else:
        assert reason.reason.startswith("keepalive: peer stopped reading: ")
        assert reason.reason.endswith(" bytes unsent for 1 s")
    [warning] = [message for message in warnings.messages if "peer stopped reading" in message]
    assert "RAW" in warning


async def test_keepalive_does_not_blame_the_peer_while_the_csms_is_not_reading() -> None:
    """The reader paused on a full queue cannot see pongs; the keepalive waits instead of dropping."""
    release = anyio.Event()
    router = Router()

    @router.on("DataTransfer")
    async def transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        await release.wait()
        return {"status": "Accepted"}

    waited = anyio.Event()

    class WaitedOn(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting on" in record.getMessage():
                waited.set()

    handler = WaitedOn(logging.DEBUG)
    logger = logging.getLogger("ocpprpc.keepalive")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        async with (
            small_buffer_csms(
                router=router,
                max_concurrent_handlers=1,
                max_queued_calls=1,
                keepalive=Keepalive(interval=0.05, timeout=0.1),
            ) as server,
            small_buffer_station(port_of(server)) as station,
        ):
            for n in range(3):
                await station.send_text(data_transfer(n, size=10))

            async def answer_pings() -> None:
                while await station.next_event() is not None:
                    pass  # next_event() answers pings; answers are not expected yet

            async with anyio.create_task_group() as tg:
                tg.start_soon(answer_pings)
                with anyio.fail_after(PROMPT):
                    await waited.wait()
                tg.cancel_scope.cancel()
            session = server.clients["RAW"]
            assert session.close_reason is None
            release.set()
            answers = [json.loads(await station.next_text()) for _ in range(3)]
            assert [answer[1] for answer in answers] == ["c0", "c1", "c2"]
            assert session.close_reason is None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# -- dead peers ----------------------------------------------------------------------------------------


async def test_connect_keepalive_finds_a_dead_csms_and_fails_the_call_in_flight() -> None:
    rec = Recorder()
    keepalive = Keepalive(interval=0.2, timeout=0.2)
    async with (
        ocpprpc.serve(router=rec.router) as server,
        fault_proxy(server.port) as proxy,
        ocpprpc.connect(proxy.url, "CP1", keepalive=keepalive) as station,
    ):
        await station.call("Heartbeat")
        proxy.blackhole()
        started = anyio.current_time()
        with pytest.raises(ConnectionLost):
            await station.call("Heartbeat")  # call_timeout is 30 s
        detected = anyio.current_time() - started
        await station.closed.wait()
    assert detected <= keepalive.detection_bound + 0.25, detected
    assert station.close_reason is not None
    assert station.close_reason.code == 1006
    assert station.close_reason.reason == "keepalive: no pong within 0.2 s"


STATION_PROCESS = """
import sys, anyio, ocpprpc

async def main() -> None:
    router = ocpprpc.Router()

    @router.on("DataTransfer")
    async def hold(request, ctx):
        print("holding", flush=True)
        await anyio.sleep_forever()

    async with ocpprpc.connect(sys.argv[1], "PROC", router=router):
        print("connected", flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


@pytest.mark.parametrize("signal", ["kill", "terminate"])
async def test_a_call_to_a_station_whose_process_dies_fails_at_once(signal: str) -> None:
    async with ocpprpc.serve() as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        process = await anyio.open_process([sys.executable, "-c", STATION_PROCESS, url])
        try:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            with anyio.fail_after(20):  # a cold interpreter start on a loaded machine
                assert await lines.receive_until(b"\n", 100) == b"connected"
                await eventually(lambda: "PROC" in server.clients)
            session = server.clients["PROC"]

            async def kill_when_held() -> None:
                assert await lines.receive_until(b"\n", 100) == b"holding"
                getattr(process, signal)()

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_when_held)
                with pytest.raises(ConnectionLost) as lost, anyio.fail_after(PROMPT):
                    await session.call("DataTransfer", {"vendorId": "v"})  # call_timeout is 30 s
            assert lost.value.reason is not None and lost.value.reason.code == 1006
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
                await process.aclose()
