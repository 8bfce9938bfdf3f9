"""Commanding stations by identity: send_to_client, try_send_to_client, broadcast."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import CallContext, OCPPError, Router, SendStatus, StationNotConnected, v16

from .helpers import PROMPT, eventually, ws_url

pytestmark = pytest.mark.timeout(120)


def station_router(
    *, slow: bool = False, refuse: bool = False, counter: dict[str, int] | None = None
) -> Router:
    router = Router()

    @router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if counter is not None:
            counter["now"] += 1
            counter["peak"] = max(counter["peak"], counter["now"])
        try:
            if slow:
                await anyio.sleep(3)
            else:
                await anyio.sleep(0.01)  # long enough for concurrent calls to overlap
        finally:
            if counter is not None:
                counter["now"] -= 1
        if refuse:
            raise OCPPError("NotSupported", "no resets here")
        return {"status": "Accepted"}

    return router


async def test_send_to_client_reaches_a_station_by_identity_typed_or_dict() -> None:
    async with (
        ocpprpc.serve() as server,
        ocpprpc.connect(ws_url(server), "CP1", router=station_router()),
    ):
        await eventually(lambda: "CP1" in server.clients)
        assert await server.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        answer = await server.send_to_client("CP1", v16.ResetRequest(type=v16.ResetType.SOFT))
        assert answer == v16.ResetResponse(status=v16.GenericStatus.ACCEPTED)
        with pytest.raises(StationNotConnected, match="'CP404' is not connected"):
            await server.send_to_client("CP404", "Reset", {"type": "Soft"})
        outcome = await server.try_send_to_client("CP404", "Reset", {"type": "Soft"})
        assert not outcome.ok and outcome.status is SendStatus.NOT_CONNECTED
        assert isinstance(outcome.error, StationNotConnected)


async def test_every_outcome_is_named() -> None:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(ocpprpc.serve())
        url = ws_url(server)
        await stack.enter_async_context(ocpprpc.connect(url, "OK", router=station_router()))
        await stack.enter_async_context(ocpprpc.connect(url, "REFUSES", router=station_router(refuse=True)))
        await stack.enter_async_context(ocpprpc.connect(url, "SLOW", router=station_router(slow=True)))
        await eventually(lambda: {"OK", "REFUSES", "SLOW"} <= set(server.clients))
        ok = await server.try_send_to_client("OK", "Reset", {"type": "Hard"})
        assert ok.ok and ok.result == {"status": "Accepted"} and ok.error is None
        refused = await server.try_send_to_client("REFUSES", "Reset", {"type": "Hard"})
        assert refused.status is SendStatus.ERROR and isinstance(refused.error, OCPPError)
        slow = await server.try_send_to_client("SLOW", "Reset", {"type": "Hard"}, timeout=0.2)
        assert slow.status is SendStatus.TIMED_OUT
        with pytest.raises(ValueError, match="concurrency"):
            await server.broadcast(["OK"], "Reset", {"type": "Soft"}, concurrency=0)


async def test_broadcast_to_200_stations_with_10_offline_and_5_slow() -> None:
    counter = {"now": 0, "peak": 0}
    online = [f"CP{n:03}" for n in range(185)]
    slow = [f"SLOW{n}" for n in range(5)]
    offline = [f"GONE{n}" for n in range(10)]
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(ocpprpc.serve(max_outstanding_calls=1))
        url = ws_url(server)
        for identity in online:
            await stack.enter_async_context(
                ocpprpc.connect(url, identity, router=station_router(counter=counter))
            )
        for identity in slow:
            await stack.enter_async_context(ocpprpc.connect(url, identity, router=station_router(slow=True)))
        await eventually(lambda: len(server.clients) == 190, timeout=PROMPT * 4)
        targets = [*online[:100], *offline, *slow, *online[100:], online[0]]  # a duplicate, sent once
        with anyio.fail_after(PROMPT * 4):
            # 1.5 s: a station answering in 10 ms is never late, even on a loaded machine
            # (at 0.5 s one was); the slow ones take 3 s.
            outcomes = await server.broadcast(targets, "Reset", {"type": "Soft"}, concurrency=8, timeout=1.5)
    assert list(outcomes) == list(dict.fromkeys(targets))
    assert all(outcomes[i].ok and outcomes[i].result == {"status": "Accepted"} for i in online)
    assert all(outcomes[i].status is SendStatus.NOT_CONNECTED for i in offline)
    assert all(outcomes[i].status is SendStatus.TIMED_OUT for i in slow)
    assert 1 < counter["peak"] <= 8  # concurrent, and never more than the bound


async def test_cancelling_a_broadcast_cancels_every_call_in_flight() -> None:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(ocpprpc.serve())
        url = ws_url(server)
        for n in range(4):
            await stack.enter_async_context(
                ocpprpc.connect(url, f"SLOW{n}", router=station_router(slow=True))
            )
        await eventually(lambda: len(server.clients) == 4)
        with anyio.move_on_after(0.3) as scope:
            await server.broadcast([f"SLOW{n}" for n in range(4)], "Reset", {"type": "Soft"}, timeout=10)
        assert scope.cancelled_caught
        # Nothing left waiting: every session is free to call again at once.
        with anyio.fail_after(PROMPT):
            outcomes = await server.broadcast(list(server.clients), "Reset", {"type": "Soft"}, timeout=0.1)
        assert {o.status for o in outcomes.values()} == {SendStatus.TIMED_OUT}
