"""ocpprpc sessions on trio-websocket connections (trio only: trio-websocket is trio's)."""

from __future__ import annotations

import anyio
import pytest
import trio
import trio_websocket
from wsproto.events import BytesMessage, CloseConnection

import ocpprpc
from ocpprpc import Role, v16
from ocpprpc.trio_websocket import TrioWebSocketStream, open_session

from ..ws.helpers import RawWebSocket

pytestmark = pytest.mark.parametrize("anyio_backend", ["trio"])

HEARTBEAT = {"currentTime": "2026-11-21T00:00:00Z"}


def csms_router() -> ocpprpc.Router:
    router = ocpprpc.Router()

    @router.on("Heartbeat")
    async def heartbeat(request: object, ctx: ocpprpc.CallContext) -> dict[str, str]:
        return HEARTBEAT

    return router


async def test_station_on_ocpprpc_server_and_csms_on_trio_websocket() -> None:
    # A station on trio-websocket against our serve(): typed and untyped calls, validated.
    async with (
        ocpprpc.serve("127.0.0.1", 0, router=csms_router(), validation=True) as server,
        trio_websocket.open_websocket(
            "127.0.0.1", server.port, "/ocpp/CP1", use_ssl=False, subprotocols=["ocpp1.6"]
        ) as ws,
        open_session(ws, Role.CHARGING_STATION, identity="CP1", validation=True) as station,
    ):
        assert station.protocol == "ocpp1.6"
        answer = await station.call(v16.HeartbeatRequest())
        assert isinstance(answer, v16.HeartbeatResponse)
        assert await station.call("Heartbeat", {}) == HEARTBEAT


async def test_csms_on_trio_websocket_serves_an_ocpprpc_station() -> None:
    seen: list[str] = []
    served = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="ocpp2.0.1")
        identity = (ws.path or "").rsplit("/", 1)[-1]
        seen.append(identity)
        async with open_session(ws, Role.CSMS, identity=identity, router=csms_router()) as session:
            await session.closed.wait()
            assert session.close_reason is not None and session.close_reason.code == 1000
        served.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        port = server.port
        async with ocpprpc.connect(f"ws://127.0.0.1:{port}/ocpp", "CP 2", protocols=["ocpp2.0.1"]) as station:
            assert await station.call("Heartbeat", {}) == HEARTBEAT
        with anyio.fail_after(5):
            await served.wait()
        nursery.cancel_scope.cancel()
    assert seen == ["CP%202"]


async def test_binary_message_closes_1003() -> None:
    handled = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="ocpp1.6")
        stream = TrioWebSocketStream(ws)
        with pytest.raises(anyio.BrokenResourceError):
            await stream.receive()
        assert stream.close_reason is not None and stream.close_reason.code == 1003
        assert not stream.close_reason.by_peer
        handled.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        peer = await RawWebSocket.connect(server.port, "/CP3")
        await peer.send(BytesMessage(data=b"\x00binary"))
        event = await peer.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1003
        await peer.send(event.response())
        with anyio.fail_after(5):
            await handled.wait()
        await peer.stream.aclose()
        nursery.cancel_scope.cancel()
