"""Plain-function handlers: run inline in the reader, with every handler semantic kept."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from ocpprpc import NO_REPLY, CallContext, ErrorCode, NoReply, OCPPError, PayloadKind, Router
from ocpprpc._rpc.router import Route
from ocpprpc.testing import session_pair

from .helpers import BootRequest, BootResponse, RecordingCodec, Records, StreamMessage, session_with_raw_peer

tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")


def _task_name() -> str:
    return anyio.get_current_task().name or ""


@pytest.mark.parametrize("ordered", [False, True])
async def test_a_plain_handler_runs_in_the_reader_with_a_fresh_context_per_call(ordered: bool) -> None:
    seen: list[tuple[str, str]] = []
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        seen.append((_task_name().split()[1], tag.get()))
        tag.set(ctx.message_id)
        return {"id": ctx.message_id}

    async with session_with_raw_peer(router=router, ordered_handlers=ordered) as (_, peer):
        for n in range(3):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
            assert await peer.receive() == [3, f"c{n}", {"id": f"c{n}"}]
    assert seen == [("reader", "unset")] * 3
    assert tag.get() == "unset"


async def test_async_handlers_still_run_in_workers() -> None:
    names: list[str] = []
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        names.append(_task_name().split()[1])
        return {}

    async with session_with_raw_peer(router=router) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert (await peer.receive())[:2] == [3, "c1"]
    assert names == ["handlers"]


def test_route_knows_which_handlers_run_inline() -> None:
    class AsyncCallable:
        async def __call__(self, request: Any, ctx: CallContext) -> dict[str, Any]:
            return {}

    class PlainCallable:
        def __call__(self, request: Any, ctx: CallContext) -> dict[str, Any]:
            return {}

    async def coroutine_function(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    def plain(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    assert Route(plain).inline
    assert Route(PlainCallable()).inline
    assert not Route(coroutine_function).inline
    assert not Route(AsyncCallable()).inline


async def test_errors_become_callerrors_and_the_session_survives(session_log: Records) -> None:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise ZeroDivisionError("secret internals")

    @router.on("Authorize")
    def authorize(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise OCPPError(ErrorCode.SECURITY_ERROR, "not you")

    @router.on("StatusNotification")
    def status(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    async with session_with_raw_peer(router=router) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert await peer.receive() == [4, "c1", "InternalError", "", {}]
        await peer.send([2, "c2", "Authorize", {}])
        assert await peer.receive() == [4, "c2", "SecurityError", "not you", {}]
        await peer.send([2, "c3", "StatusNotification", {}])
        assert await peer.receive() == [3, "c3", {}]
    (record,) = [r for r in session_log.records if "failed" in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ZeroDivisionError)
    assert any("raised" in m and "not you" in m for m in session_log.messages())


async def test_raise_handler_errors_fails_the_session_after_answering() -> None:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        async with session_with_raw_peer(router=router, raise_handler_errors=True) as (_, peer):
            await peer.send([2, "c1", "Heartbeat", {}])
            assert (await peer.receive())[:3] == [4, "c1", "InternalError"]
            await anyio.sleep_forever()


async def test_no_reply() -> None:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> NoReply:
        return NO_REPLY

    @router.on("Authorize")
    def authorize(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Accepted"}}

    async with session_with_raw_peer(router=router) as (session, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await peer.send([2, "c2", "Authorize", {}])
        assert await peer.receive() == [3, "c2", {"idTagInfo": {"status": "Accepted"}}]
        await wait_all_tasks_blocked()
        assert not session.connection.inbound_calls


async def test_validate_false_skips_the_response_validation() -> None:
    codec = RecordingCodec(reject={("Heartbeat", PayloadKind.RESPONSE), ("Reset", PayloadKind.RESPONSE)})
    router = Router()

    @router.on("Heartbeat", validate=False)
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "now"}

    @router.on("Reset")
    def reset(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    async with session_with_raw_peer(router=router, engine_options={"codec": codec}) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert await peer.receive() == [3, "c1", {"currentTime": "now"}]
        await peer.send([2, "c2", "Reset", {}])
        assert (await peer.receive())[:3] == [4, "c2", "InternalError"]
    assert ("encode", "Heartbeat", PayloadKind.RESPONSE, False) in codec.calls


async def test_a_typed_plain_handler_gets_a_struct() -> None:
    got: list[Any] = []
    router = Router()

    @router.on(BootRequest)
    def boot(request: BootRequest, ctx: CallContext) -> BootResponse:
        got.append(request)
        return BootResponse(status="Accepted")

    async with session_pair(csms_router=router) as (station, _):
        assert await station.call(BootRequest(charge_point_vendor="V")) == BootResponse(status="Accepted")
        with pytest.raises(OCPPError, match="FormatViolation"):
            await station.call("BootNotification", {"chargePointVendor": 5})
    assert got == [BootRequest(charge_point_vendor="V")]


async def test_a_plain_send_handler_is_never_answered() -> None:
    received: list[tuple[Any, bool]] = []
    router = Router()

    @router.on("NotifyPeriodicEventStream")
    def stream(request: dict[str, Any], ctx: CallContext) -> None:
        received.append((request, ctx.is_send))
        if request["seq"] == 2:
            raise ZeroDivisionError("logged, not answered")

    async with session_with_raw_peer("ocpp2.1", router=router) as (_, peer):
        await peer.send([6, "s1", "NotifyPeriodicEventStream", {"seq": 1}])
        await peer.send([6, "s2", "NotifyPeriodicEventStream", {"seq": 2}])
        await peer.send([2, "c1", "Unknown", {}])
        # The first thing written back answers the CALL: the SENDs got nothing.
        assert (await peer.receive())[:3] == [4, "c1", "NotImplemented"]
    assert received == [({"seq": 1}, True), ({"seq": 2}, True)]


async def test_a_plain_send_handler_over_session_pair() -> None:
    received: list[int] = []
    router = Router()

    @router.on("NotifyPeriodicEventStream")
    def stream(request: dict[str, Any], ctx: CallContext) -> None:
        received.append(request["seq"])

    async with session_pair("ocpp2.1", csms_router=router) as (station, _):
        await station.send(StreamMessage(seq=1))
        with pytest.raises(OCPPError, match="NotImplemented"):
            await station.call("Heartbeat", {})  # answered after the SEND was handled
    assert received == [1]


@pytest.mark.parametrize("ordered", [False, True])
async def test_a_plain_handler_waits_for_a_free_slot_and_keeps_arrival_order(ordered: bool) -> None:
    order: list[str] = []
    release = anyio.Event()
    router = Router()

    @router.on("Authorize")
    async def slow(request: Any, ctx: CallContext) -> dict[str, Any]:
        order.append(f"start {ctx.message_id}")
        await release.wait()
        order.append(f"end {ctx.message_id}")
        return {}

    @router.on("Heartbeat")
    def quick(request: Any, ctx: CallContext) -> dict[str, Any]:
        order.append(f"quick {ctx.message_id}")
        return {}

    options: dict[str, Any] = {"ordered_handlers": True} if ordered else {"max_concurrent_handlers": 1}
    async with session_with_raw_peer(router=router, **options) as (_, peer):
        await peer.send([2, "c1", "Authorize", {}])
        await wait_all_tasks_blocked()  # c1 is running, the queue is empty
        await peer.send([2, "c2", "Heartbeat", {}])
        await peer.send([2, "c3", "Heartbeat", {}])
        await wait_all_tasks_blocked()
        assert order == ["start c1"]  # the slot is taken: the plain handlers wait in the queue
        release.set()
        answers = [(await peer.receive())[1] for _ in range(3)]
    assert answers == ["c1", "c2", "c3"]
    assert order == ["start c1", "end c1", "quick c2", "quick c3"]


async def test_a_plain_handler_overtakes_nothing_but_runs_beside_a_busy_worker() -> None:
    release = anyio.Event()
    router = Router()

    @router.on("Authorize")
    async def slow(request: Any, ctx: CallContext) -> dict[str, Any]:
        await release.wait()
        return {}

    @router.on("Heartbeat")
    def quick(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    async with session_with_raw_peer(router=router, max_concurrent_handlers=2) as (_, peer):
        await peer.send([2, "c1", "Authorize", {}])
        await peer.send([2, "c2", "Heartbeat", {}])
        # A slot is free and nothing queues: answered while c1 still runs.
        assert (await peer.receive())[:2] == [3, "c2"]
        release.set()
        assert (await peer.receive())[:2] == [3, "c1"]


async def test_a_shared_limiter_bounds_plain_handlers_too() -> None:
    limiter = anyio.CapacityLimiter(1)
    release = anyio.Event()
    borrowed: list[int] = []
    router = Router()

    @router.on("Authorize")
    async def slow(request: Any, ctx: CallContext) -> dict[str, Any]:
        await release.wait()
        return {}

    @router.on("Heartbeat")
    def quick(request: Any, ctx: CallContext) -> dict[str, Any]:
        borrowed.append(limiter.borrowed_tokens)
        return {}

    async with (
        session_with_raw_peer(router=router, max_concurrent_handlers=limiter) as (_, peer1),
        session_with_raw_peer(router=router, max_concurrent_handlers=limiter) as (_, peer2),
    ):
        await peer2.send([2, "h0", "Heartbeat", {}])
        assert (await peer2.receive())[:2] == [3, "h0"]
        assert borrowed == [1]  # the inline handler held the token while it ran
        assert limiter.borrowed_tokens == 0
        await peer1.send([2, "a", "Authorize", {}])
        await wait_all_tasks_blocked()
        await peer2.send([2, "h1", "Heartbeat", {}])
        await wait_all_tasks_blocked()
        assert borrowed == [1]  # no token: h1 waits for one in a worker
        release.set()
        assert (await peer1.receive())[:2] == [3, "a"]
        assert (await peer2.receive())[:2] == [3, "h1"]
    assert borrowed == [1, 1]
    assert limiter.borrowed_tokens == 0


async def test_a_graceful_close_does_not_wait_for_finished_plain_handlers() -> None:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    async with session_with_raw_peer(router=router, close_timeout=30) as (session, peer):
        for n in range(3):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
            assert (await peer.receive())[:2] == [3, f"c{n}"]
        with anyio.fail_after(5):
            await session.close()
        assert session.close_reason is not None and session.close_reason.code == 1000


async def test_a_plain_function_returning_a_coroutine_is_awaited_in_a_worker() -> None:
    # The reader must never await a handler: this one calls the peer back.
    csms_router = Router()
    station_router = Router()
    seen: list[tuple[str, str]] = []

    async def ask_station(ctx: CallContext) -> dict[str, Any]:
        seen.append((_task_name().split()[1], tag.get()))
        answer = await ctx.session.call("GetConfiguration", {})
        return {"currentTime": answer["configurationKey"][0]["value"]}

    def heartbeat(request: Any, ctx: CallContext) -> Awaitable[dict[str, Any]]:
        tag.set(ctx.message_id)  # visible to the coroutine: same context
        return ask_station(ctx)

    csms_router.add("Heartbeat", heartbeat)

    @station_router.on("GetConfiguration")
    def get_configuration(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"configurationKey": [{"key": "k", "readonly": True, "value": "2026"}]}

    async with session_pair(
        csms_router=csms_router,
        station_router=station_router,
        engine_options={"id_factory": iter(["m1", "m2", "m3", "m4"]).__next__},
    ) as (station, _):
        with anyio.fail_after(5):
            assert await station.call("Heartbeat", {}) == {"currentTime": "2026"}
    assert seen == [("handlers", "m1")]
    assert tag.get() == "unset"


def test_plain_typed_registration_is_checked_by_mypy() -> None:
    """As in test_handlers: each ignore must be needed (warn_unused_ignores)."""
    router = Router()

    def good(request: BootRequest, ctx: CallContext) -> BootResponse:
        return BootResponse(status="Accepted")

    def good_dict(request: BootRequest, ctx: CallContext) -> dict[str, Any]:
        return {}

    def good_no_reply(request: BootRequest, ctx: CallContext) -> NoReply:
        return NO_REPLY

    def wrong_response(request: BootRequest, ctx: CallContext) -> str:
        return "Accepted"

    router.add(BootRequest, good)
    router.add(BootRequest, good_dict, protocol="a")
    router.add(BootRequest, good_no_reply, protocol="b")
    router.add(BootRequest, wrong_response, protocol="c")  # type: ignore[call-overload]
    router.on(BootRequest, protocol="d")(good)


async def test_a_buffered_burst_is_answered_from_workers() -> None:
    # More input at hand: the answers come from workers, whose writes the stream joins.
    names: list[str] = []
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        names.append(_task_name().split()[1])
        return {}

    async with session_with_raw_peer(router=router) as (_, peer):
        async with anyio.create_task_group() as tg:
            for n in range(3):  # all three are sent before the reader runs again
                tg.start_soon(peer.send, [2, f"c{n}", "Heartbeat", {}])
        assert {(await peer.receive())[1] for _ in range(3)} == {"c0", "c1", "c2"}
    assert "handlers" in names
