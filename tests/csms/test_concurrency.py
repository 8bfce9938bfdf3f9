"""The outstanding-call limit and concurrency over real sockets."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import CallContext, Router

from .helpers import PROMPT, eventually, ws_url

pytestmark = pytest.mark.timeout(20)


class Gate:
    """A handler that holds every DataTransfer until released, counting how many it holds at once."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.active = 0
        self.most = 0
        self.order: list[int] = []
        self.reached = anyio.Event()
        self.release = anyio.Event()

    def router(self) -> Router:
        router = Router()

        @router.on("DataTransfer")
        async def hold(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
            self.active += 1
            self.most = max(self.most, self.active)
            self.order.append(int(request["data"]))
            if self.active == self.wanted:
                self.reached.set()
            try:
                await self.release.wait()
            finally:
                self.active -= 1
            return {"status": "Accepted", "data": request["data"]}

        return router


@pytest.mark.parametrize("limit", [1, 3])
async def test_outstanding_call_limit_queues_calls_in_order(limit: int) -> None:
    """Our CALLs beyond the limit wait their turn, FIFO; the peer never sees more than the limit."""
    gate = Gate(limit)
    answers: dict[int, Any] = {}
    async with (
        ocpprpc.serve(router=gate.router()) as server,
        ocpprpc.connect(ws_url(server), "CP1", max_outstanding_calls=limit) as station,
    ):

        async def call(n: int) -> None:
            answers[n] = await station.call("DataTransfer", {"vendorId": "v", "data": str(n)})

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(call, n)
                await anyio.wait_all_tasks_blocked()  # queue them in a known order
            with anyio.fail_after(PROMPT):
                await gate.reached.wait()
            gate.release.set()
    assert gate.most == limit
    assert answers == {n: {"status": "Accepted", "data": str(n)} for n in range(8)}
    if limit == 1:
        assert gate.order == list(range(8))


async def test_csms_handles_a_stations_calls_concurrently_and_calls_many_stations_at_once() -> None:
    """Inbound CALLs from different stations run concurrently; the CSMS calls them all in parallel."""
    stations = 12
    gate = Gate(stations)
    station_router = Router()

    @station_router.on("DataTransfer")
    async def echo(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "data": f"{ctx.identity}:{request['data']}"}

    async with ocpprpc.serve(router=gate.router()) as server, anyio.create_task_group() as tg:
        done = anyio.Event()

        async def station(n: int) -> None:
            async with ocpprpc.connect(ws_url(server), f"CP{n}", router=station_router) as session:
                answer = await session.call("DataTransfer", {"vendorId": "v", "data": str(n)})
                assert answer == {"status": "Accepted", "data": str(n)}
                await done.wait()

        for n in range(stations):
            tg.start_soon(station, n)
        # The CSMS registers a station just after its 101, so a station may know it is connected first.
        await eventually(lambda: len(server.clients) == stations)
        with anyio.fail_after(PROMPT):
            # Every station's call is inside the CSMS's handler at the same time.
            await gate.reached.wait()

        results: dict[str, Any] = {}

        async def call_station(identity: str) -> None:
            results[identity] = await server.clients[identity].call(
                "DataTransfer", {"vendorId": "csms", "data": "x"}
            )

        # Meanwhile the CSMS calls every station, all at once.
        async with anyio.create_task_group() as calls:
            for identity in list(server.clients):
                calls.start_soon(call_station, identity)
        assert results == {f"CP{n}": {"status": "Accepted", "data": f"CP{n}:x"} for n in range(stations)}
        gate.release.set()
        done.set()
    assert gate.most == stations
