"""Inbound work bounded in bytes: per session (``max_queued_bytes``), across sessions (``InboundBudget``)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from anyio import wait_all_tasks_blocked

from ocpprpc import Connection, Role, Router, Session
from ocpprpc._rpc.session import InboundBudget
from ocpprpc._ws.transport import memory_message_stream_pair

from .helpers import Records, session_with_raw_peer
from .test_backpressure import Held

PAD = "x" * 40


def heartbeat(n: int) -> list[Any]:
    return [2, f"c{n}", "Heartbeat", {"pad": PAD}]


SIZE = len(msgspec.json.encode(heartbeat(0)))  # every c0..c9 has the same length


async def test_the_reader_pauses_on_queued_bytes_as_on_a_count(session_log: Records) -> None:
    held = Held()
    async with session_with_raw_peer(
        router=held.router, max_concurrent_handlers=1, max_queued_calls=None, max_queued_bytes=2 * SIZE
    ) as (session, peer):
        assert session.max_queued_bytes == 2 * SIZE
        for n in range(8):
            await peer.send(heartbeat(n))
        await wait_all_tasks_blocked()
        # One CALL in its handler, two queued (their bytes reach the bound), the rest unread.
        assert held.started == ["c0"]
        assert session.queued_calls == 2
        assert session.queued_bytes == 2 * SIZE
        assert session.stream.buffered == 5
        held.release.set()
        answers = [await peer.receive() for _ in range(8)]
        assert session.queued_bytes == 0
    assert [answer[1] for answer in answers] == [f"c{n}" for n in range(8)]
    pauses = [r.getMessage() for r in session_log.records if "not reading from the peer" in r.getMessage()]
    assert f"2 CALLs waiting for a handler ({2 * SIZE} bytes)" in pauses[0]


async def test_a_call_bigger_than_the_byte_bound_is_still_taken_when_none_is_queued() -> None:
    held = Held()
    async with session_with_raw_peer(router=held.router, max_concurrent_handlers=1, max_queued_bytes=1) as (
        session,
        peer,
    ):
        for n in range(4):
            await peer.send(heartbeat(n))
        await wait_all_tasks_blocked()
        assert held.started == ["c0"]
        assert session.queued_calls == 1  # bigger than the bound, and queued: nothing else was
        assert session.stream.buffered == 2
        held.release.set()
        assert [(await peer.receive())[1] for _ in range(4)] == ["c0", "c1", "c2", "c3"]


async def test_a_shared_budget_holds_a_flooding_session_but_never_one_with_nothing_in_hand() -> None:
    budget = InboundBudget(SIZE + 1)
    held = Held()
    fast = Router()
    fast.add("Heartbeat", lambda request, ctx: {"currentTime": ctx.message_id})
    options: dict[str, Any] = {"max_queued_calls": None, "max_queued_bytes": None, "inbound_budget": budget}
    async with (
        session_with_raw_peer(router=held.router, max_concurrent_handlers=1, **options) as (flooded, flood),
        session_with_raw_peer(router=fast, **options) as (_, good),
    ):
        for n in range(6):
            await flood.send(heartbeat(n))
        await wait_all_tasks_blocked()
        # c0 in its handler and c1 queued spend the budget: the flooding session pauses.
        assert held.started == ["c0"]
        assert flooded.queued_calls == 1
        assert flooded.stream.buffered == 4
        assert budget.used == 2 * SIZE
        assert budget.exhausted
        # The other session has nothing in hand: it is read and answered all the same.
        for n in range(3):
            await good.send(heartbeat(n))
            assert await good.receive() == [3, f"c{n}", {"currentTime": f"c{n}"}]
        held.release.set()
        assert [(await flood.receive())[1] for _ in range(6)] == [f"c{n}" for n in range(6)]
        assert budget.used == 0
        assert repr(budget) == f"<InboundBudget 0/{SIZE + 1} bytes>"


async def test_a_reader_paused_on_the_budget_reads_on_when_another_session_frees_it() -> None:
    budget = InboundBudget(SIZE + 1)
    first, second = Held(), Held()
    options: dict[str, Any] = {"max_concurrent_handlers": 1, "inbound_budget": budget}
    async with (
        session_with_raw_peer(router=first.router, **options) as (_, one),
        session_with_raw_peer(router=second.router, **options) as (paused, two),
    ):
        await one.send(heartbeat(0))
        await wait_all_tasks_blocked()
        for n in range(3):
            await two.send(heartbeat(n))
        await wait_all_tasks_blocked()
        # The first session's c0 and the second's spend the budget; the second pauses.
        assert second.started == ["c0"]
        assert paused.queued_calls == 0
        assert paused.stream.buffered == 2
        first.release.set()  # the budget has room again: the paused reader takes c1
        assert await one.receive() == [3, "c0", {"currentTime": "c0"}]
        await wait_all_tasks_blocked()
        assert paused.stream.buffered == 1
        assert paused.queued_calls == 1
        second.release.set()
        assert [(await two.receive())[1] for _ in range(3)] == ["c0", "c1", "c2"]
    assert budget.used == 0


async def test_a_session_that_ends_gives_its_queued_bytes_back() -> None:
    budget = InboundBudget(10 * SIZE)
    held = Held()
    ours, theirs = memory_message_stream_pair("ocpp1.6")
    session = Session(
        ours,
        Connection(Role.CSMS, "ocpp1.6"),
        router=held.router,
        max_concurrent_handlers=1,
        inbound_budget=budget,
    )
    async with session:
        for n in range(4):
            await theirs.send(msgspec.json.encode(heartbeat(n)).decode())
        await wait_all_tasks_blocked()
        assert budget.used == 4 * SIZE
        await session.close(graceful=False)
    assert budget.used == 0
    assert session.queued_bytes == 0
    theirs.abort()


async def test_budget_pauses_are_logged_with_the_budget(session_log: Records) -> None:
    budget = InboundBudget(1)
    held = Held()
    async with session_with_raw_peer(
        router=held.router, max_concurrent_handlers=1, inbound_budget=budget
    ) as (
        _,
        peer,
    ):
        for n in range(3):
            await peer.send(heartbeat(n))
        await wait_all_tasks_blocked()
        held.release.set()
        for _ in range(3):
            await peer.receive()
    [first, *_] = [r for r in session_log.records if "not reading from the peer" in r.getMessage()]
    assert first.levelno == logging.WARNING
    assert f"inbound budget spent: {SIZE}/1" in first.getMessage()


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="inbound budget"):
        InboundBudget(0)
    ours, theirs = memory_message_stream_pair("ocpp1.6")
    try:
        with pytest.raises(ValueError, match="max_queued_bytes"):
            Session(ours, Connection(Role.CSMS, "ocpp1.6"), max_queued_bytes=0)
        unbounded = Session(ours, Connection(Role.CSMS, "ocpp1.6"), max_queued_bytes=None)
        assert unbounded.max_queued_bytes is None
    finally:
        ours.abort()
        theirs.abort()
