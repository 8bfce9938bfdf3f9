"""Timeouts, cancellation, queueing at the outstanding-call limit, and connection loss mid-call.

Timeout-heavy: on trio these run with a MockClock that jumps to the next
deadline as soon as every task is blocked, so a 30 s timeout costs nothing.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from ocpprpc import CallTimeout, ConnectionLost
from ocpprpc.testing import session_pair

from .helpers import Records, session_with_raw_peer, task_names


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return "asyncio"


@pytest.fixture
def tick(anyio_backend: Any) -> float:
    """A unit of time: free on trio's MockClock, short but not racy on asyncio's real clock."""
    return 1.0 if anyio_backend != "asyncio" else 0.05


async def test_session_timeout_raises_call_timeout_and_frees_the_slot(session_log: Records) -> None:
    async with session_with_raw_peer(call_timeout=0.05) as (session, peer):
        with pytest.raises(CallTimeout) as info:
            await session.call("Heartbeat", {})
        assert isinstance(info.value, TimeoutError)
        assert (info.value.action, info.value.timeout) == ("Heartbeat", 0.05)
        assert not session.connection.outstanding_calls
        # The late answer is dropped and logged; the next call works.
        _, message_id, *_ = await peer.receive()
        await peer.send([3, message_id, {}])
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.call, "Heartbeat")
            _, second, *_ = await peer.receive()
            await peer.send([3, second, {}])
    assert f"<Session ? charging_station ocpp1.6>: dropped a late answer to Heartbeat ({message_id})" in (
        session_log.messages()
    )


async def test_per_call_timeout_overrides_the_session_default() -> None:
    async with session_with_raw_peer(call_timeout=None) as (session, _):
        with pytest.raises(CallTimeout):
            await session.call("Heartbeat", {}, timeout=0.05)
        assert not session.connection.outstanding_calls


async def test_one_task_keeps_every_deadline_and_a_shorter_one_is_not_held_up(tick: float) -> None:
    """Call timeouts are kept by one task per session (no cancel scope per call): a short call
    behind a long one still times out on time, and no call leaves a second task."""
    async with session_with_raw_peer(
        call_timeout=100 * tick, engine_options={"max_outstanding_calls": 2}
    ) as (session, peer):
        assert not [name for name in task_names() if "call expiry" in name]  # none before a call
        outcomes: dict[str, Any] = {}
        short_done = anyio.Event()

        async def caller(name: str, limit: float) -> None:
            try:
                outcomes[name] = await session.call("Heartbeat", {}, timeout=limit)
            except CallTimeout as exc:
                outcomes[name] = exc
            if name == "short":
                short_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "long", 100 * tick)
            _, long_id, *_ = await peer.receive()
            started = anyio.current_time()
            tg.start_soon(caller, "short", 2 * tick)
            await peer.receive()
            with anyio.fail_after(50 * tick):
                await short_done.wait()
            assert 2 * tick <= anyio.current_time() - started < 50 * tick
            assert isinstance(outcomes["short"], CallTimeout) and "long" not in outcomes
            await peer.send([3, long_id, {"ok": True}])
        assert outcomes["long"] == {"ok": True}
        for n in range(5):  # answered calls: still the one task
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller, f"n{n}", 100 * tick)
                _, message_id, *_ = await peer.receive()
                await peer.send([3, message_id, {}])
        assert len([name for name in task_names() if "call expiry" in name]) == 1
    assert not [name for name in task_names() if "call expiry" in name]  # ended with the session


async def test_the_deadline_task_ends_when_no_call_waits_and_starts_again(tick: float) -> None:
    """A CSMS that once called a station keeps no task per station for it."""

    def keepers() -> int:
        return len([name for name in task_names() if "call expiry" in name])

    async with session_with_raw_peer(call_timeout=2 * tick) as (session, peer):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.call, "Heartbeat")
            _, message_id, *_ = await peer.receive()
            assert keepers() == 1
            await peer.send([3, message_id, {}])
        await anyio.sleep(3 * tick)  # past the answered call's deadline: nothing waits
        assert keepers() == 0 and len(session._scopes) == 1  # the reader's
        with pytest.raises(CallTimeout):
            await session.call("Heartbeat", {})  # a task again, and the timeout still works
        await anyio.sleep(3 * tick)
        assert keepers() == 0 and len(session._scopes) == 1


async def test_timeout_none_waits_until_answered(tick: float) -> None:
    async with session_with_raw_peer(call_timeout=tick) as (session, peer):
        result: list[Any] = []

        async def caller() -> None:
            result.append(await session.call("Heartbeat", {}, timeout=None))

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            _, message_id, *_ = await peer.receive()
            await anyio.sleep(3 * tick)  # beyond the session's default
            await peer.send([3, message_id, {"ok": True}])
        assert result == [{"ok": True}]


async def test_cancelling_the_caller_cleans_up() -> None:
    async with session_with_raw_peer() as (session, peer):
        with anyio.move_on_after(0.05) as scope:
            await session.call("Heartbeat", {})
        assert scope.cancelled_caught
        assert not session.connection.outstanding_calls
        assert not session._pending
        await peer.receive()


async def test_calls_queue_in_fifo_order_at_the_outstanding_limit() -> None:
    async with session_with_raw_peer() as (session, peer):
        done: list[int] = []

        async def caller(n: int) -> None:
            await session.call("Heartbeat", {"n": n})
            done.append(n)

        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(caller, n)
                await anyio.wait_all_tasks_blocked()  # fixes the order in which they queue
            sent = []
            for _ in range(5):
                _, message_id, _, payload = await peer.receive()
                assert len(session.connection.outstanding_calls) == 1
                sent.append(payload["n"])
                await peer.send([3, message_id, {}])
        assert sent == done == [0, 1, 2, 3, 4]


async def test_a_higher_outstanding_limit_lets_calls_overlap() -> None:
    async with (
        session_with_raw_peer(engine_options={"max_outstanding_calls": 3}) as (session, peer),
        anyio.create_task_group() as tg,
    ):
        for n in range(3):
            tg.start_soon(functools.partial(session.call, "Heartbeat", {"n": n}))
        frames = [await peer.receive() for _ in range(3)]
        assert len(session.connection.outstanding_calls) == 3
        for frame in reversed(frames):
            await peer.send([3, frame[1], {}])


async def test_queued_callers_timeout_counts_from_sending(tick: float) -> None:
    """Queueing does not eat the timeout: it bounds the peer's answer time."""
    async with session_with_raw_peer(call_timeout=10 * tick) as (session, peer):
        results: list[Any] = []

        async def caller(n: int) -> None:
            results.append(await session.call("Heartbeat", {"n": n}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, 0)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(caller, 1)
            _, first, *_ = await peer.receive()
            await anyio.sleep(6 * tick)
            await peer.send([3, first, {}])
            _, second, *_ = await peer.receive()
            await anyio.sleep(6 * tick)  # 12 ticks after caller 1 queued, 6 after its CALL went out
            await peer.send([3, second, {}])
        assert results == [{}, {}]


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_peer_going_away_fails_waiting_and_queued_callers_at_once(how: str) -> None:
    async with session_with_raw_peer(call_timeout=1000) as (session, peer):
        failures: list[tuple[int, ConnectionLost]] = []

        async def caller(n: int) -> None:
            try:
                await session.call("Heartbeat", {"n": n})
            except ConnectionLost as exc:
                failures.append((n, exc))

        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(caller, n)
            await peer.receive()
            if how == "close":
                await peer.stream.close(4000, "bye")
            else:
                peer.stream.abort()
        assert anyio.current_time() - start < 1000
        assert sorted(n for n, _ in failures) == [0, 1, 2]
        expected = (4000, "bye") if how == "close" else (1006, "connection lost")
        reason = session.close_reason
        assert reason is not None and (reason.code, reason.reason, reason.by_peer) == (*expected, True)
        assert all(exc.reason == reason for _, exc in failures)
        assert session.closed.is_set()
        with pytest.raises(ConnectionLost):
            await session.call("Heartbeat", {})


async def test_session_pair_helper_closes_cleanly_with_mock_clock() -> None:
    async with session_pair(call_timeout=30) as (station, _):
        with pytest.raises(Exception, match="NotImplemented"):
            await station.call("Heartbeat")
