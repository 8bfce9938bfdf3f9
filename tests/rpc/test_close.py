"""Close paths, task hygiene and the exception-group policy of ``async with Session``."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from ocpprpc import CallContext, CloseReason, Connection, ConnectionLost, Role, Router, Session
from ocpprpc._ws.transport import memory_message_stream_pair

from .helpers import RawPeer, session_with_raw_peer, task_names


def blocking_router(started: anyio.Event, release: anyio.Event, finished: list[str]) -> Router:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        started.set()
        try:
            await release.wait()
        except anyio.get_cancelled_exc_class():
            finished.append("cancelled")
            raise
        finished.append("done")
        return {}

    return router


async def test_leaving_async_with_leaves_no_task_behind() -> None:
    before = task_names()
    started, release, finished = anyio.Event(), anyio.Event(), list[str]()
    async with session_with_raw_peer(router=blocking_router(started, release, finished)) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await started.wait()
        assert len(task_names()) > len(before)
        release.set()
        assert await peer.receive() == [3, "c1", {}]
    assert task_names() == before


async def test_graceful_close_waits_for_handlers_and_pending_calls() -> None:
    started, release, finished = anyio.Event(), anyio.Event(), list[str]()
    async with session_with_raw_peer(router=blocking_router(started, release, finished)) as (session, peer):
        results: list[Any] = []

        async def caller() -> None:
            results.append(await session.call("Authorize", {}))

        async with anyio.create_task_group() as tg:
            await peer.send([2, "c1", "Heartbeat", {}])
            await started.wait()
            tg.start_soon(caller)
            _, our_id, *_ = await peer.receive()
            tg.start_soon(session.close, 1000, "done")
            await anyio.wait_all_tasks_blocked()
            assert not session.closed.is_set()
            # New work is refused while closing; new inbound CALLs are not dispatched.
            with pytest.raises(ConnectionLost, match="closing"):
                await session.call("Heartbeat", {})
            with pytest.raises(ConnectionLost, match="closing"):
                await session.send("Heartbeat", {})
            await peer.send([2, "c2", "Heartbeat", {}])
            # The pending work finishes: our call's answer still arrives.
            release.set()
            assert await peer.receive() == [3, "c1", {}]
            await peer.send([3, our_id, {"ok": 1}])
            await session.closed.wait()
        assert results == [{"ok": 1}]
        assert finished == ["done"]
        assert session.close_reason == CloseReason(1000, "done", by_peer=False)
        with pytest.raises(anyio.EndOfStream):
            await peer.stream.receive()
        assert peer.stream.close_reason == CloseReason(1000, "done", by_peer=True)


async def test_graceful_close_gives_up_at_its_deadline() -> None:
    started, release, finished = anyio.Event(), anyio.Event(), list[str]()
    async with session_with_raw_peer(router=blocking_router(started, release, finished)) as (session, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await started.wait()
        with anyio.fail_after(5):
            await session.close(timeout=0.05)
    assert finished == ["cancelled"]


async def test_forced_close_cancels_handlers_and_fails_calls() -> None:
    started, release, finished = anyio.Event(), anyio.Event(), list[str]()
    async with session_with_raw_peer(router=blocking_router(started, release, finished)) as (session, peer):
        failures: list[BaseException] = []

        async def caller() -> None:
            with pytest.raises(ConnectionLost) as info:
                await session.call("Authorize", {})
            failures.append(info.value)

        async with anyio.create_task_group() as tg:
            await peer.send([2, "c1", "Heartbeat", {}])
            await started.wait()
            tg.start_soon(caller)
            await peer.receive()
            await session.close(4001, "forced", graceful=False)
        assert finished == ["cancelled"]
        assert len(failures) == 1
        assert session.close_reason == CloseReason(4001, "forced", by_peer=False)


async def test_forced_close_cuts_a_graceful_close_short() -> None:
    started, release, finished = anyio.Event(), anyio.Event(), list[str]()
    async with session_with_raw_peer(router=blocking_router(started, release, finished)) as (session, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await started.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.close)
            await anyio.wait_all_tasks_blocked()
            await session.close(graceful=False)
    assert finished == ["cancelled"]
    assert session.close_reason == CloseReason(1000, "", by_peer=False)


async def test_peer_close_ends_the_session_and_cancels_handlers() -> None:
    started, release, finished = anyio.Event(), anyio.Event(), list[str]()
    async with session_with_raw_peer(router=blocking_router(started, release, finished)) as (session, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await started.wait()
        await peer.stream.close(1001, "going away")
        await session.closed.wait()
        assert finished == ["cancelled"]
        assert session.close_reason == CloseReason(1001, "going away", by_peer=True)
        # The body was not cancelled by the peer's close: it runs on.
        await anyio.lowlevel.checkpoint()


async def test_too_many_bad_messages_closes_with_1002() -> None:
    async with session_with_raw_peer(engine_options={"max_bad_messages": 2}) as (session, peer):
        await peer.send([2, "a", "Heartbeat", []])
        await peer.receive()
        await peer.send([2, "b", "Heartbeat", []])
        await session.closed.wait()
        assert session.close_reason == CloseReason(1002, "too many bad messages", by_peer=False)


@pytest.mark.parametrize(("exit_with", "code"), [(None, 1000), (KeyError("x"), 1011), ("cancel", 1001)])
async def test_close_code_on_leaving_async_with(exit_with: Any, code: int) -> None:
    ours, theirs = memory_message_stream_pair("ocpp1.6")
    session = Session(ours, Connection(Role.CSMS, "ocpp1.6"))
    with anyio.CancelScope() as scope:
        try:
            async with session:
                if exit_with == "cancel":
                    scope.cancel()
                    await anyio.sleep_forever()
                elif exit_with is not None:
                    raise exit_with
        except KeyError:
            pass
    assert session.close_reason is not None and session.close_reason.code == code
    with pytest.raises(anyio.EndOfStream):
        await RawPeer(theirs).receive()
    theirs.abort()


async def test_a_single_error_leaves_async_with_unwrapped() -> None:
    """trio-websocket's test_open_websocket_internal_exc: one real error comes out plainly."""
    with pytest.raises(KeyError) as info:
        async with session_with_raw_peer():
            raise KeyError("mine")
    assert info.value.args == ("mine",)


async def test_a_single_error_keeps_its_cause() -> None:
    with pytest.raises(KeyError) as info:
        async with session_with_raw_peer():
            try:
                raise ValueError("root")
            except ValueError as exc:
                raise KeyError("mine") from exc
    assert isinstance(info.value.__cause__, ValueError)


async def test_several_errors_stay_a_group() -> None:
    """trio-websocket's ..._cancellations counterpart: two real errors are not hidden."""
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise ZeroDivisionError("handler bug")

    with pytest.raises(ExceptionGroup) as info:
        async with session_with_raw_peer(router=router, raise_handler_errors=True) as (_, peer):
            await peer.send([2, "c1", "Heartbeat", {}])
            try:
                await anyio.sleep_forever()
            finally:
                raise KeyError("body error while being cancelled")
    leaves = []
    stack: list[BaseException] = [info.value]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(type(exc))
    assert sorted(t.__name__ for t in leaves) == ["KeyError", "ZeroDivisionError"]


async def test_close_before_start_and_double_entry() -> None:
    ours, theirs = memory_message_stream_pair()
    session = Session(ours, Connection(Role.CSMS))
    with pytest.raises(RuntimeError, match="never started"):
        await session.close()
    async with session:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with session:
            pass
    await session.close()  # already closed: returns at once
    theirs.abort()
    assert repr(session) == "<Session ? csms ocpp1.6>"


async def test_a_handler_finishing_after_the_connection_ended_is_harmless() -> None:
    release = anyio.Event()
    finished: list[str] = []
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        with anyio.CancelScope(shield=True):  # a handler that insists on finishing its work
            await release.wait()
        finished.append("done")
        return {}

    async with session_with_raw_peer(router=router) as (session, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await anyio.wait_all_tasks_blocked()
        peer.stream.abort()
        await anyio.wait_all_tasks_blocked()
        assert session.close_reason is not None and not session.closed.is_set()
        release.set()
        await session.closed.wait()
    assert finished == ["done"]


async def test_call_on_a_vanished_peer_raises_connection_lost() -> None:
    # ocpp2.1: SEND exists there, so only the lost connection can fail it.
    async with session_with_raw_peer("ocpp2.1") as (session, peer):
        peer.stream.abort()
        with pytest.raises(ConnectionLost):
            await session.call("Heartbeat")
        with pytest.raises(ConnectionLost):
            await session.send("Heartbeat")
