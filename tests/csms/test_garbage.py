"""A station's connection leaves no reference cycles: its calls and its end are freed by refcount.

Cyclic garbage lives until a collection finds it, and a full collection of a
CSMS holding thousands of stations scans every object they hold
(bench/README.md, "Idle connections and the garbage collector"); once an
application has frozen its long-lived objects (``gc.freeze()``), a cycle among
them is never freed at all.  Each test turns the collector off, does its work,
then collects with ``gc.DEBUG_SAVEALL`` and looks at what only cycles kept alive.
"""

from __future__ import annotations

import gc
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import CallContext, Router
from ocpprpc._engine.events import Call, CallResult
from ocpprpc._ws.server_handshake import StationRequest

from .helpers import eventually, raw_station, ws_url

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The default TCP streams only (ocpprpc's own on asyncio, the raw socket on trio).

    Over anyio's streams (``tcp_stream="anyio"``) a closed connection still leaves
    cycles: asyncio's transport (as fixed for our stream in ``_ws/aio_stream.py``),
    and on trio a ``trio.Cancelled`` whose traceback holds a session
    (bench/README.md, "Idle connections and the garbage collector").
    """
    return str(request.param)


#: Modules whose objects in a cycle would be the connection's (the library and what it runs on).
OCPPRPC_DIR = str(Path(ocpprpc.__file__).parent)
OURS = ("ocpprpc", "asyncio", "anyio", "trio", "socket", "websockets", "wsproto", "h11", "msgspec")


@contextmanager
def collector_off() -> Iterator[Counter[str]]:
    """Run the block with the collector off; then fill the counter with the cyclic garbage it made."""
    found: Counter[str] = Counter()
    gc.collect()
    gc.disable()
    try:
        yield found
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        for obj in gc.garbage:
            kind = type(obj)
            if kind.__module__.split(".")[0] in OURS:
                found[f"{kind.__module__}.{kind.__qualname__}"] += 1
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


def router() -> Router:
    csms = Router()

    @csms.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-01-01T00:00:00Z"}

    return csms


@pytest.mark.parametrize("validation", [True, False], ids=["strict", "lax"])
async def test_calls_and_closed_connections_leave_no_cycles(validation: bool) -> None:
    async with ocpprpc.serve(router=router(), protocols=["ocpp1.6"], validation=validation) as server:
        # One station first: lazy imports and caches are filled outside the measurement.
        async with ocpprpc.connect(ws_url(server), "CP0", protocols=["ocpp1.6"]) as station:
            await station.call("Heartbeat", {})
        await eventually(lambda: server.connection_count == 0)
        with collector_off() as garbage:
            for i in range(3):
                async with ocpprpc.connect(ws_url(server), f"CP{i + 1}", protocols=["ocpp1.6"]) as station:
                    for _ in range(5):
                        await station.call("Heartbeat", {})
            await eventually(lambda: server.connection_count == 0)
    assert garbage == Counter()


async def test_an_idle_session_keeps_no_message_alive() -> None:
    """Between messages the reader holds neither the last message nor its event (nor its payload).

    A fleet's stations call every few seconds: whatever a call leaves alive until the next
    ages into generation 2 and makes full collections more frequent (bench/README.md).
    """
    async with (
        ocpprpc.serve(router=router(), protocols=["ocpp1.6"], validation=True) as server,
        ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp1.6"]) as station,
    ):
        for _ in range(3):
            await station.call("Heartbeat", {})
        await eventually(lambda: not [o for o in gc.get_objects() if isinstance(o, (Call, CallResult))])


@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
async def test_a_connected_station_keeps_no_upgrade_request_alive(auth: bool) -> None:
    """Once the session runs, its upgrade request (headers, parsed head) is gone: ~1 KB per station."""

    async def accept_all(request: StationRequest) -> ocpprpc.Accept:
        return ocpprpc.Accept(data={"seen": request.identity})

    async with (
        ocpprpc.serve(router=router(), protocols=["ocpp1.6"], auth=accept_all if auth else None) as server,
        ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp1.6"]) as station,
    ):
        await station.call("Heartbeat", {})
        assert not [o for o in gc.get_objects() if isinstance(o, StationRequest)]
        if auth:
            assert server.clients["CP1"].data == {"seen": "CP1"}


def cancel_scopes() -> int:
    """anyio's cancel scopes alive in the process (the backend's class, on asyncio and on trio)."""
    return sum(
        1
        for obj in gc.get_objects()
        if type(obj).__name__ == "CancelScope" and type(obj).__module__.startswith("anyio.")
    )


@pytest.mark.parametrize("on_connect", [False, True], ids=["plain", "on_connect"])
async def test_an_idle_station_costs_the_server_two_cancel_scopes(on_connect: bool) -> None:
    """Its connection task's and its session's task group's; the reader runs under the group's own.

    With ``on_connect`` the reader keeps a scope of its own, since stopping the session must not
    cancel the application's ``on_connect`` task (three).  Each scope is ~0.65 KB per idle station.
    """

    async def hello(session: ocpprpc.Session) -> None:
        await anyio.sleep_forever()

    async with (
        ocpprpc.serve(
            router=router(), protocols=["ocpp1.6"], on_connect=hello if on_connect else None
        ) as server,
        raw_station(server.port, "CP0") as warm,
    ):
        await warm.send_text('[2,"1","Heartbeat",{}]')
        await warm.next_text()
        gc.collect()
        before = cancel_scopes()
        async with raw_station(server.port, "CP1") as s1, raw_station(server.port, "CP2") as s2:
            for station in (s1, s2):
                await station.send_text('[2,"1","Heartbeat",{}]')
                assert '"currentTime"' in await station.next_text()
            await eventually(lambda: server.connection_count == 3)
            gc.collect()
            per_station = (cancel_scopes() - before) / 2
    # on_connect's own task adds its anyio task handle's scope, and the reader its own.
    assert per_station == (4 if on_connect else 2)


def coroutines_of_ocpprpc() -> Counter[str]:
    """The coroutines of ocpprpc's code alive in the process, by qualified name."""
    return Counter(
        obj.__qualname__
        for obj in gc.get_objects()
        if isinstance(obj, types.CoroutineType) and obj.cr_code.co_filename.startswith(OCPPRPC_DIR)
    )


async def test_an_idle_station_waits_through_one_coroutine_per_layer() -> None:
    """The connection's task, the session's run and reader, the WebSocket: four, on either backend.

    The connection's task serves the admitted session itself: neither the admission's frame
    nor one of its own for registering the session stays while a station idles (~300 bytes
    each); and the WebSocket awaits the event loop's wait itself, not a coroutine of the byte
    stream (one on asyncio, two on trio before).
    """
    async with (
        ocpprpc.serve(router=router(), protocols=["ocpp1.6"]) as server,
        raw_station(server.port, "CP0") as warm,
    ):
        await warm.send_text('[2,"1","Heartbeat",{}]')
        await warm.next_text()
        gc.collect()
        before = coroutines_of_ocpprpc()
        async with raw_station(server.port, "CP1") as s1, raw_station(server.port, "CP2") as s2:
            for station in (s1, s2):
                await station.send_text('[2,"1","Heartbeat",{}]')
                assert '"currentTime"' in await station.next_text()
            await eventually(lambda: server.connection_count == 3)
            per_station = coroutines_of_ocpprpc() - before
    assert all(count == 2 for count in per_station.values()), per_station
    assert set(per_station) == {
        "Server._handle_at",
        "Session.run",
        "_Reader._reader",
        "WebSocketStream.receive",
    }
