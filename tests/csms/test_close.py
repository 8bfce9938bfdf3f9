"""Timeouts, cancellation and every way a connection ends, over real sockets, with no task left behind."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import NO_REPLY, CallContext, CloseReason, ConnectionLost, Router, Server

from .helpers import PROMPT, RawStation, eventually, raw_csms, raw_station, settled, task_count, ws_url

pytestmark = pytest.mark.timeout(20)


class Csms:
    """A CSMS router whose DataTransfer handler can be held, or left unanswered."""

    def __init__(self) -> None:
        self.arrived = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()
        self.router = Router()
        self.router.add("DataTransfer", self.data_transfer)
        self.router.add("Heartbeat", self.heartbeat)

    async def data_transfer(self, request: dict[str, Any], ctx: CallContext) -> Any:
        if request.get("data") == "no reply":
            return NO_REPLY
        if request.get("data") == "hold":
            self.arrived.set()
            try:
                await self.release.wait()
            except BaseException:
                self.cancelled.set()
                raise
        return {"status": "Accepted", "data": request.get("data")}

    async def heartbeat(self, request: dict[str, Any], ctx: CallContext) -> Any:
        return {"currentTime": "2025-01-01T00:00:00Z"}


async def still_serving(server: Server, baseline: int) -> None:
    """After a connection ended: it is gone from server.clients, no task leaked, others still connect."""
    await eventually(lambda: not server.clients)
    await settled(baseline)
    async with ocpprpc.connect(ws_url(server), "NEXT") as station:
        assert await station.call("Heartbeat") == {"currentTime": "2025-01-01T00:00:00Z"}
    await eventually(lambda: not server.clients)
    await settled(baseline)


def transfer(data: str) -> dict[str, Any]:
    return {"vendorId": "test", "data": data}


async def test_call_timeout_frees_the_slot_and_a_late_answer_is_dropped() -> None:
    csms = Csms()
    async with ocpprpc.serve(router=csms.router) as server:
        baseline = task_count()
        async with ocpprpc.connect(ws_url(server), "CP1", call_timeout=0.2) as station:
            with pytest.raises(ocpprpc.CallTimeout) as timeout:
                await station.call("DataTransfer", transfer("no reply"))
            assert timeout.value.timeout == 0.2
            assert isinstance(timeout.value, TimeoutError)

            with pytest.raises(ocpprpc.CallTimeout):
                await station.call("DataTransfer", transfer("hold"), timeout=0.1)
            csms.release.set()  # the late answer is now on its way, and must be dropped
            # The slot is free again (OCPP allows one outstanding CALL) and answers do not mix up.
            assert await station.call("DataTransfer", transfer("next"), timeout=None) == {
                "status": "Accepted",
                "data": "next",
            }
            assert await station.call("Heartbeat") == {"currentTime": "2025-01-01T00:00:00Z"}
        await still_serving(server, baseline)


async def test_cancelling_a_call_frees_its_slot() -> None:
    csms = Csms()
    async with ocpprpc.serve(router=csms.router) as server:
        baseline = task_count()
        async with ocpprpc.connect(ws_url(server), "CP1") as station:
            with anyio.CancelScope() as scope:

                async def cancel_when_held() -> None:
                    await csms.arrived.wait()
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_when_held)
                    await station.call("DataTransfer", transfer("hold"))
            assert scope.cancelled_caught
            csms.release.set()
            assert await station.call("DataTransfer", transfer("after")) == {
                "status": "Accepted",
                "data": "after",
            }
        await still_serving(server, baseline)


async def test_graceful_client_close() -> None:
    csms = Csms()
    async with ocpprpc.serve(router=csms.router) as server:
        baseline = task_count()
        async with ocpprpc.connect(ws_url(server), "CP1") as station:
            await station.call("Heartbeat")
            await eventually(lambda: "CP1" in server.clients)
            on_server = server.clients["CP1"]
        assert station.close_reason == CloseReason(1000, "", by_peer=False)
        with anyio.fail_after(PROMPT):
            await on_server.closed.wait()
        assert on_server.close_reason == CloseReason(1000, "", by_peer=True)
        with pytest.raises(ConnectionLost):
            await station.call("Heartbeat")
        await still_serving(server, baseline)


async def test_server_shutdown_waits_for_pending_work_then_closes_stations_with_1001() -> None:
    csms = Csms()
    answers: list[Any] = []
    async with ocpprpc.serve(router=csms.router) as server, anyio.create_task_group() as tg:
        url = ws_url(server)

        async def station_task(*, task_status: anyio.abc.TaskStatus[ocpprpc.Session]) -> None:
            async with ocpprpc.connect(url, "CP1") as station:
                task_status.started(station)
                answers.append(await station.call("DataTransfer", transfer("hold")))
                with anyio.fail_after(PROMPT):
                    await station.closed.wait()

        station = await tg.start(station_task)
        with anyio.fail_after(PROMPT):
            await csms.arrived.wait()
        tg.start_soon(server.shutdown)
        await anyio.wait_all_tasks_blocked()
        # Shutting down, but the station's call is still being handled.
        assert station.close_reason is None
        assert answers == []
        csms.release.set()
        with anyio.fail_after(PROMPT):
            await station.closed.wait()
        assert answers == [{"status": "Accepted", "data": "hold"}]
        assert station.close_reason is not None
        assert station.close_reason.code == 1001
        assert station.close_reason.by_peer
        # A station arriving now is turned away.
        with pytest.raises((ocpprpc.HandshakeError, OSError)):
            async with ocpprpc.connect(url, "LATE", connect_timeout=PROMPT):
                pass
    assert not server.clients


async def test_leaving_serve_closes_stations_with_1001() -> None:
    async with anyio.create_task_group() as tg:
        async with ocpprpc.serve() as server:

            async def station_task(*, task_status: anyio.abc.TaskStatus[ocpprpc.Session]) -> None:
                async with ocpprpc.connect(ws_url(server), "CP1") as station:
                    task_status.started(station)
                    await station.closed.wait()

            station = await tg.start(station_task)
            await eventually(lambda: "CP1" in server.clients)
        # serve()'s block is over: the server has shut down.
        with anyio.fail_after(PROMPT):
            await station.closed.wait()
        assert station.close_reason is not None
        assert station.close_reason.code == 1001


@pytest.mark.parametrize("side", ["csms", "station"])
async def test_forced_close_fails_the_other_sides_pending_call_at_once(side: str) -> None:
    csms = Csms()
    station_router = Router()
    station_held = anyio.Event()

    @station_router.on("DataTransfer")
    async def hold(request: dict[str, Any], ctx: CallContext) -> Any:
        station_held.set()
        await anyio.sleep_forever()

    async with ocpprpc.serve(router=csms.router) as server:
        baseline = task_count()
        async with ocpprpc.connect(ws_url(server), "CP1", router=station_router) as station:
            await eventually(lambda: "CP1" in server.clients)
            on_server = server.clients["CP1"]
            if side == "csms":
                # The CSMS drops the station while the station waits for an answer.
                caller, closer, held = station, on_server, csms.arrived
            else:
                caller, closer, held = on_server, station, station_held
            async with anyio.create_task_group() as tg:

                async def force_close() -> None:
                    await held.wait()
                    await closer.close(4000, "forced", graceful=False)

                tg.start_soon(force_close)
                # call_timeout is 30 s: failing within PROMPT is "at once".
                with pytest.raises(ConnectionLost) as lost, anyio.fail_after(PROMPT):
                    await caller.call("DataTransfer", transfer("hold"))
            assert lost.value.reason == CloseReason(4000, "forced", by_peer=True)
            with anyio.fail_after(PROMPT):
                await caller.closed.wait()
            assert caller.close_reason == CloseReason(4000, "forced", by_peer=True)
            assert closer.close_reason == CloseReason(4000, "forced", by_peer=False)
        if side == "csms":
            with anyio.fail_after(PROMPT):
                await csms.cancelled.wait()  # the handler of the dropped station was cancelled
        await still_serving(server, baseline)


@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_station_vanishing_mid_call(how: str) -> None:
    """The station's TCP stream dies without a close frame while the CSMS waits for its answer."""
    async with ocpprpc.serve(router=Csms().router) as server:
        baseline = task_count()
        async with raw_station(server.port, "RAW") as raw:
            await eventually(lambda: "RAW" in server.clients)
            on_server = server.clients["RAW"]

            async def vanish() -> None:
                call = json.loads(await raw.next_text())
                assert call[2] == "DataTransfer"
                if how == "reset":
                    raw.reset()
                await raw.stream.aclose()

            async with anyio.create_task_group() as tg:
                tg.start_soon(vanish)
                with pytest.raises(ConnectionLost) as lost, anyio.fail_after(PROMPT):
                    await on_server.call("DataTransfer", transfer("x"))
        assert lost.value.reason is not None
        assert lost.value.reason.code == 1006
        assert on_server.close_reason is not None
        assert on_server.close_reason.code == 1006
        await still_serving(server, baseline)


@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_csms_vanishing_mid_call(how: str) -> None:
    """Our station's CSMS dies without a close frame while the station waits for an answer."""

    async def vanish(peer: RawStation) -> None:
        call = json.loads(await peer.next_text())
        assert call[2] == "Heartbeat"
        if how == "reset":
            peer.reset()
        await peer.stream.aclose()

    baseline = task_count()
    async with raw_csms(vanish) as port, ocpprpc.connect(f"ws://127.0.0.1:{port}/ocpp", "CP1") as station:
        with pytest.raises(ConnectionLost) as lost, anyio.fail_after(PROMPT):
            await station.call("Heartbeat")
        assert lost.value.reason is not None
        assert lost.value.reason.code == 1006
        with anyio.fail_after(PROMPT):
            await station.closed.wait()
        assert station.close_reason == lost.value.reason
    await settled(baseline)
