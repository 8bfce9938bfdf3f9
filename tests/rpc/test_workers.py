"""Inbound CALLs run on reused worker tasks: isolation, cancellation, queueing, callbacks."""

from __future__ import annotations

import contextvars
import math
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio import wait_all_tasks_blocked

from ocpprpc import CallContext, Connection, Role, Router, Session
from ocpprpc._ws.transport import memory_message_stream_pair
from ocpprpc.testing import session_pair

from .helpers import session_with_raw_peer

request_tag: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="unset")


@pytest.mark.parametrize("ordered", [False, True])
async def test_a_context_variable_set_by_one_handler_is_not_seen_by_the_next(ordered: bool) -> None:
    # Workers are reused; each CALL must still get a fresh context, as a task of its own would.
    seen: list[str] = []
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        seen.append(request_tag.get())
        request_tag.set(ctx.message_id)
        await anyio.lowlevel.checkpoint()  # the value survives the handler's own awaits
        assert request_tag.get() == ctx.message_id
        return {}

    async with session_with_raw_peer(router=router, ordered_handlers=ordered) as (_, peer):
        for n in range(5):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
            assert (await peer.receive())[:2] == [3, f"c{n}"]
    assert seen == ["unset"] * 5
    assert request_tag.get() == "unset"


async def test_a_worker_stays_usable_after_its_handler_was_cancelled_by_a_timeout() -> None:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        if ctx.message_id == "slow":
            with anyio.move_on_after(0):
                await anyio.sleep_forever()
        return {"id": ctx.message_id}

    async with session_with_raw_peer(router=router, max_concurrent_handlers=1) as (_, peer):
        await peer.send([2, "slow", "Heartbeat", {}])
        await peer.send([2, "next", "Heartbeat", {}])
        assert await peer.receive() == [3, "slow", {"id": "slow"}]
        assert await peer.receive() == [3, "next", {"id": "next"}]


async def test_calls_beyond_the_worker_bound_wait_in_arrival_order() -> None:
    started: list[str] = []
    release = anyio.Event()
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        started.append(ctx.message_id)
        await release.wait()
        return {}

    async with session_with_raw_peer(router=router, max_concurrent_handlers=2) as (_, peer):
        for n in range(6):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
        await wait_all_tasks_blocked()
        assert started == ["c0", "c1"]
        release.set()
        answered = {(await peer.receive())[1] for _ in range(6)}
    assert answered == {f"c{n}" for n in range(6)}
    assert started[2:] == ["c2", "c3", "c4", "c5"]


async def test_a_handler_can_call_the_peer_back_while_others_queue() -> None:
    # The reader never runs handlers itself, so a handler awaiting the peer's answer
    # cannot block the reader that must deliver it.
    csms_router = Router()
    station_router = Router()

    @csms_router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        answer = await ctx.session.call("GetConfiguration", {})
        return {"currentTime": answer["configurationKey"][0]["value"]}

    @station_router.on("GetConfiguration")
    async def get_configuration(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"configurationKey": [{"key": "k", "readonly": True, "value": "2026"}]}

    async with session_pair(
        csms_router=csms_router, station_router=station_router, max_concurrent_handlers=1
    ) as (station, _):
        with anyio.fail_after(5):
            results = []

            async def one() -> None:
                results.append(await station.call("Heartbeat", {}))

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
    assert results == [{"currentTime": "2026"}] * 3


async def test_an_unbounded_shared_limiter_still_serves_calls() -> None:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    limiter = anyio.CapacityLimiter(math.inf)
    async with session_with_raw_peer(router=router, max_concurrent_handlers=limiter) as (_, peer):
        await peer.send([2, "c0", "Heartbeat", {}])
        assert await peer.receive() == [3, "c0", {}]
    assert limiter.borrowed_tokens == 0


async def test_a_bound_below_one_is_refused() -> None:
    ours, theirs = memory_message_stream_pair("ocpp1.6")
    try:
        with pytest.raises(ValueError, match="max_concurrent_handlers"):
            Session(ours, Connection(Role.CSMS, "ocpp1.6"), max_concurrent_handlers=0)
    finally:
        ours.abort()
        theirs.abort()
