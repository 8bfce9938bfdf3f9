"""Shared pieces of the tests of ocpprpc's own TCP streams (``_aio_stream``, ``_raw_stream``).

A :class:`Kit` names one stream implementation and the backend it runs on;
``test_own_streams.py`` runs the byte-stream contract both keep over each kit,
``test_aio_stream.py`` and ``test_raw_stream.py`` what is particular to one.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

import ocpprpc
import ocpprpc._ws.aio_stream as aio
import ocpprpc._ws.raw_stream as raw
from ocpprpc._ws.tcp import TcpStreamName, serve_listener

from ..csms.helpers import eventually

S = TypeVar("S", bound=anyio.abc.SocketStream)


@dataclass(frozen=True)
class Kit(Generic[S]):
    """One of our streams: its type, how to connect and listen, and the backend it is for."""

    backend: str
    stream_type: type[S]
    connect_tcp: Callable[[str, int], Awaitable[S]]
    create_tcp_listener: Callable[[str, int], Awaitable[Any]]


AIO = Kit("asyncio", aio.AsyncioSocketStream, aio.connect_tcp, aio.create_tcp_listener)
RAW = Kit("trio", raw.RawSocketStream, raw.connect_tcp, raw.create_tcp_listener)

#: Parametrizes a test over both streams, each on its own backend: ``(anyio_backend, kit)``.
over_own_streams = pytest.mark.parametrize(
    ("anyio_backend", "kit"),
    [pytest.param(AIO.backend, AIO, id="asyncio-stream"), pytest.param(RAW.backend, RAW, id="raw-stream")],
)


@asynccontextmanager
async def stream_pair(kit: Kit[S], host: str = "127.0.0.1") -> AsyncIterator[tuple[S, S]]:
    """A connected (client, server) pair of *kit*'s streams over ``host``; both closed on exit.

    The server side is accepted as the CSMS accepts (:func:`ocpprpc._ws.tcp.serve_listener`).
    """
    accepted: list[anyio.abc.SocketStream] = []
    got = anyio.Event()

    async def take(stream: anyio.abc.SocketStream) -> None:
        accepted.append(stream)
        got.set()
        await anyio.sleep_forever()

    async with await kit.create_tcp_listener(host, 0) as listener, anyio.create_task_group() as tg:
        tg.start_soon(serve_listener, listener, take, tg)
        client = await kit.connect_tcp(host, listener.extra(SocketAttribute.local_port))
        await got.wait()
        (server,) = accepted
        assert isinstance(server, kit.stream_type)
        async with client, server:
            yield client, server
        tg.cancel_scope.cancel()


def linger_reset(stream: anyio.abc.SocketStream) -> None:
    """Make the next close send a TCP reset (SO_LINGER 0)."""
    stream.extra(SocketAttribute.raw_socket).setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )


async def receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive()
    return bytes(data)


async def read_all(stream: anyio.abc.ByteStream) -> bytes:
    data = bytearray()
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return bytes(data)


async def ocpp_exchange(csms_stream: TcpStreamName, station_stream: TcpStreamName) -> list[tuple[str, Any]]:
    """A scripted OCPP exchange; every message both ends saw, with message ids numbered in order."""
    log: list[tuple[str, str, str]] = []
    router = ocpprpc.Router()

    @router.on("BootNotification")
    async def boot(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}

    @router.on("DataTransfer")
    async def data_transfer(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
        if request["vendorId"] == "fail":
            raise ocpprpc.OCPPError(ocpprpc.ErrorCode.NOT_IMPLEMENTED, "no such vendor")
        return {"status": "Accepted", "data": request.get("data", "")}

    station_router = ocpprpc.Router()

    @station_router.on("Reset")
    async def reset(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    big = "".join(chr(0x20 + i % 90) for i in range(60_000)) + "€ñ"
    async with (
        ocpprpc.serve(
            router=router,
            tcp_stream=csms_stream,
            on_message=lambda identity, direction, text: log.append(("csms", direction, text)),
            protocols=["ocpp1.6"],
        ) as server,
        ocpprpc.connect(
            f"ws://127.0.0.1:{server.port}/ocpp",
            "CP1",
            router=station_router,
            tcp_stream=station_stream,
            compression=True,
            on_message=lambda direction, text: log.append(("station", direction, text)),
        ) as station,
    ):
        await station.call("BootNotification", {"chargePointVendor": "v", "chargePointModel": "m"})
        for n in range(5):
            await station.call("DataTransfer", {"vendorId": "v", "data": str(n)})
        await station.call("DataTransfer", {"vendorId": "v", "data": big})
        with pytest.raises(ocpprpc.OCPPError):
            await station.call("DataTransfer", {"vendorId": "fail"})
        await eventually(lambda: "CP1" in server.clients)
        await server.clients["CP1"].call("Reset", {"type": "Soft"})
    ids: dict[str, int] = {}
    normalized = []
    for side, direction, text in log:
        message = json.loads(text)
        message[1] = ids.setdefault(message[1], len(ids))
        normalized.append((f"{side} {direction}", message))
    return normalized
