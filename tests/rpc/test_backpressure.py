"""Inbound backpressure: a bounded queue of CALLs, a reader that pauses, and no deadlock."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from ocpprpc import CallContext, Connection, Role, Router, Session
from ocpprpc._ws.transport import memory_message_stream_pair

from .helpers import Records, session_with_raw_peer


class Held:
    """A router whose Heartbeat handler waits until the test releases it."""

    def __init__(self) -> None:
        self.router = Router()
        self.release = anyio.Event()
        self.started: list[str] = []
        self.router.add("Heartbeat", self.heartbeat)

    async def heartbeat(self, request: Any, ctx: CallContext) -> dict[str, Any]:
        self.started.append(ctx.message_id)
        await self.release.wait()
        return {"currentTime": ctx.message_id}


@pytest.mark.parametrize("ordered", [False, True])
async def test_the_reader_stops_reading_while_the_queue_is_full(ordered: bool, session_log: Records) -> None:
    held = Held()
    async with session_with_raw_peer(
        router=held.router, max_concurrent_handlers=1, ordered_handlers=ordered, max_queued_calls=3
    ) as (session, peer):
        for n in range(10):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
        await wait_all_tasks_blocked()
        # One CALL in its handler, three queued, the rest left unread in the stream.
        assert held.started == ["c0"]
        assert session.queued_calls == 3
        assert session.stream.buffered == 6
        held.release.set()
        answers = [await peer.receive() for _ in range(10)]
    assert answers == [[3, f"c{n}", {"currentTime": f"c{n}"}] for n in range(10)]
    pauses = [r for r in session_log.records if "not reading from the peer" in r.getMessage()]
    assert pauses[0].levelno == logging.WARNING
    assert "3 CALLs waiting" in pauses[0].getMessage()
    assert all(record.levelno == logging.DEBUG for record in pauses[1:])


async def test_the_peer_is_held_back_once_the_transport_buffer_is_full() -> None:
    held = Held()
    ours, theirs = memory_message_stream_pair("ocpp1.6", buffer=4)
    session = Session(
        ours,
        Connection(Role.CSMS, "ocpp1.6"),
        router=held.router,
        max_concurrent_handlers=1,
        max_queued_calls=2,
    )
    sent: list[int] = []

    async def flood() -> None:
        for n in range(20):
            await theirs.send(f'[2,"c{n}","Heartbeat",{{}}]')
            sent.append(n)

    async with session, anyio.create_task_group() as tg:
        tg.start_soon(flood)
        await wait_all_tasks_blocked()
        # 1 handled + 2 queued + 4 in the transport; the 8th send waits.
        assert session.queued_calls == 2
        assert len(sent) == 7
        held.release.set()
        for _ in range(20):
            await theirs.receive()
        assert len(sent) == 20
    theirs.abort()


async def test_unbounded_queue_reads_everything() -> None:
    held = Held()
    async with session_with_raw_peer(
        router=held.router, max_concurrent_handlers=1, max_queued_calls=None
    ) as (
        session,
        peer,
    ):
        for n in range(40):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
        await wait_all_tasks_blocked()
        assert session.queued_calls == 39
        assert session.stream.buffered == 0
        held.release.set()
        for _ in range(40):
            assert (await peer.receive())[0] == 3


@pytest.mark.parametrize("bound", [0, -1])
def test_max_queued_calls_must_be_positive(bound: int) -> None:
    ours, theirs = memory_message_stream_pair("ocpp1.6")
    with pytest.raises(ValueError, match="max_queued_calls"):
        Session(ours, Connection(Role.CSMS, "ocpp1.6"), max_queued_calls=bound)
    ours.abort()
    theirs.abort()


@pytest.mark.parametrize("paused_first", [False, True])
async def test_a_handler_calling_back_is_answered_while_the_queue_is_full(
    paused_first: bool, session_log: Records
) -> None:
    """No deadlock: the reader reads on while our call awaits its answer; the excess is refused."""
    router = Router()
    go = anyio.Event()
    answered: list[Any] = []

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        if ctx.message_id == "c0":
            if paused_first:
                await go.wait()
            answered.append(await ctx.session.call("GetConfiguration", {}))
        return {"currentTime": ctx.message_id}

    async with session_with_raw_peer(router=router, max_concurrent_handlers=1, max_queued_calls=2) as (
        session,
        peer,
    ):
        for n in range(6):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
        await wait_all_tasks_blocked()
        if paused_first:
            # The reader paused on the full queue; our call makes it read on.
            assert session.queued_calls == 2
            assert session.stream.buffered == 3
            go.set()
        received = [await peer.receive() for _ in range(4)]
        [call] = [frame for frame in received if frame[0] == 2]
        refused = [frame for frame in received if frame[0] == 4]
        assert call[2] == "GetConfiguration"
        assert [frame[1] for frame in refused] == ["c3", "c4", "c5"]
        assert all(frame[2] == "InternalError" and "busy" in frame[3] for frame in refused)
        await peer.send([3, call[1], {"configurationKey": []}])
        rest = [await peer.receive() for _ in range(3)]
        assert rest == [[3, f"c{n}", {"currentTime": f"c{n}"}] for n in range(3)]
        assert answered == [{"configurationKey": []}]
        assert session.queued_calls == 0
        # The reader is free again: it reads and the queue works as before.
        await peer.send([2, "c6", "Heartbeat", {}])
        assert await peer.receive() == [3, "c6", {"currentTime": "c6"}]
    warnings = [r.getMessage() for r in session_log.records if r.levelno == logging.WARNING]
    assert any("refused Heartbeat (c3) as busy" in message for message in warnings)


async def test_a_send_beyond_the_bound_is_dropped_with_a_warning(session_log: Records) -> None:
    router = Router()
    held = anyio.Event()
    seen: list[str] = []

    @router.on("NotifyPeriodicEventStream")
    async def stream_data(request: Any, ctx: CallContext) -> None:
        seen.append(ctx.message_id)
        await held.wait()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": (await ctx.session.call("GetVariables", {"getVariableData": []}))["x"]}

    async with session_with_raw_peer(
        "ocpp2.1", role=Role.CSMS, router=router, max_concurrent_handlers=2, max_queued_calls=1
    ) as (_, peer):
        await peer.send([2, "h", "Heartbeat", {}])
        call = await peer.receive()
        await peer.send([6, "s0", "NotifyPeriodicEventStream", {"data": []}])
        await wait_all_tasks_blocked()  # s0 is in its handler
        for n in (1, 2):
            await peer.send([6, f"s{n}", "NotifyPeriodicEventStream", {"data": []}])
        # s0 runs, s1 queued, s2 dropped; then the answer to our call still arrives.
        await peer.send([3, call[1], {"x": "now"}])
        assert await peer.receive() == [3, "h", {"currentTime": "now"}]
        held.set()
    assert seen == ["s0", "s1"]
    assert any("dropped SEND NotifyPeriodicEventStream (s2)" in m for m in session_log.messages())
