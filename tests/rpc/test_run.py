"""``Session.run()``: the session with its reader in the calling task (a CSMS connection's task)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from ocpprpc import CallContext, CloseReason, Connection, ConnectionLost, Role, Router, Session
from ocpprpc._ws.transport import memory_message_stream_pair

from .helpers import RawPeer, task_names


@contextmanager
def csms_session(router: Router | None = None) -> Iterator[tuple[Session, RawPeer]]:
    ours, theirs = memory_message_stream_pair("ocpp1.6")
    try:
        yield Session(ours, Connection(Role.CSMS, "ocpp1.6"), router=router), RawPeer(theirs)
    finally:
        theirs.abort()  # release both ends' memory streams
        ours.abort()


def heartbeat_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-11-21T00:00:00Z"}

    return router


async def test_run_answers_calls_and_returns_when_the_peer_closes() -> None:
    with csms_session(heartbeat_router()) as (session, peer):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await peer.send([2, "h1", "Heartbeat", {}])
            assert await peer.receive() == [3, "h1", {"currentTime": "2026-11-21T00:00:00Z"}]
            await peer.stream.close(1000, "bye")
        assert session.close_reason == CloseReason(1000, "bye", by_peer=True)
        assert session.closed.is_set()


async def test_run_reads_in_the_calling_task() -> None:
    with csms_session() as (session, peer):
        names: list[list[str]] = []

        async def on_open(s: Session) -> None:
            names.append(task_names())
            await peer.stream.close(1000)

        before = task_names()
        await session.run(on_open)
        # During on_open: the caller (the reader) and on_open's task, nothing else.
        assert len(names[0]) == len(before) + 1
        assert task_names() == before


async def test_on_open_may_call_the_peer_while_the_reader_reads() -> None:
    with csms_session() as (session, peer):
        answers: list[Any] = []

        async def on_open(s: Session) -> None:
            answers.append(await s.call("GetConfiguration", {}))
            await s.close()

        async def station() -> None:
            frame = await peer.receive()
            await peer.send([3, frame[1], {"configurationKey": []}])

        async with anyio.create_task_group() as tg:
            tg.start_soon(station)
            await session.run(on_open)
        assert answers == [{"configurationKey": []}]
        assert session.close_reason == CloseReason(1000, "", by_peer=False)


async def test_an_exception_in_on_open_fails_the_session_and_propagates() -> None:
    with csms_session() as (session, _):

        async def on_open(s: Session) -> None:
            raise LookupError("application bug")

        with pytest.raises(LookupError, match="application bug"):
            await session.run(on_open)
        assert session.close_reason is not None
        assert session.close_reason.code == 1011
        with pytest.raises(ConnectionLost):
            await session.call("Heartbeat", {})


async def test_cancelling_the_caller_closes_the_connection() -> None:
    with csms_session() as (session, _):
        with anyio.move_on_after(0.05):
            await session.run()
        assert session.close_reason is not None
        assert session.close_reason.code == 1001
        assert session.closed.is_set()


async def test_run_twice_is_refused() -> None:
    with csms_session() as (session, peer):
        await peer.stream.close(1000)
        await session.run()
        with pytest.raises(RuntimeError, match="only once"):
            await session.run()


async def test_closed_before_start_is_refused() -> None:
    with csms_session() as (session, _), pytest.raises(RuntimeError, match="never started"):
        session.closed  # noqa: B018
