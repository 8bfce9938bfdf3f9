"""Message middleware: one onion around every inbound and outbound CALL and SEND."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

import ocpprpc
from ocpprpc import (
    DROP,
    CallContext,
    CallNext,
    DroppedByMiddleware,
    ErrorCode,
    MessageContext,
    OCPPError,
    Role,
    Router,
    fail_closed,
)
from ocpprpc.testing import session_pair

from .helpers import HeartbeatRequest, HeartbeatResponse, session_with_raw_peer

NOW = {"currentTime": "2024-01-01T00:00:00Z"}


def csms_router(seen: list[Any] | None = None) -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:  # plain: inline without middleware
        if seen is not None:
            seen.append(request)
        return NOW

    @router.on("Authorize")
    async def authorize(request: Any, ctx: CallContext) -> dict[str, Any]:
        if seen is not None:
            seen.append(request)
        if request.get("idTag") == "bad":
            raise OCPPError(ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "bad tag")
        await anyio.sleep(0.05)
        return {"idTagInfo": {"status": "Accepted"}}

    @router.on("NotifyPeriodicEventStream")
    async def stream(request: Any, ctx: CallContext) -> None:
        if seen is not None:
            seen.append(request)

    return router


class Recorder:
    """A middleware that writes down each exchange and its outcome."""

    def __init__(self, name: str = "rec", log: list[Any] | None = None) -> None:
        self.name = name
        self.log: list[Any] = [] if log is None else log
        self.exchanges: list[tuple[Any, ...]] = []

    async def __call__(self, ctx: MessageContext, call_next: CallNext) -> Any:
        self.log.append(f"{self.name} >")
        try:
            result = await call_next(ctx)
        except Exception as exc:
            self.exchanges.append((ctx.direction, ctx.kind, ctx.action, ctx.message_id, ctx.identity, exc))
            self.log.append(f"{self.name} <!")
            raise
        self.exchanges.append((ctx.direction, ctx.kind, ctx.action, ctx.message_id, ctx.identity, result))
        self.log.append(f"{self.name} <")
        return result


async def test_observes_calls_and_sends_in_and_out() -> None:
    station_side, csms_side = Recorder(), Recorder()
    async with session_pair("ocpp2.1", csms_router=csms_router()) as (station, csms):
        station.use(station_side)
        csms.use(csms_side)
        assert await station.call("Heartbeat") == NOW
        await station.send("NotifyPeriodicEventStream", {"seq": 1})
        await wait_all_tasks_blocked()
    (out_call, out_send) = station_side.exchanges
    (in_call, in_send) = csms_side.exchanges
    assert out_call[:3] == ("out", "call", "Heartbeat") and out_call[4:] == ("CP001", NOW)
    assert in_call[:3] == ("in", "call", "Heartbeat") and in_call[4:] == ("CP001", NOW)
    assert out_call[3] == in_call[3]  # the same message id on both ends
    assert out_send[:3] == ("out", "send", "NotifyPeriodicEventStream") and out_send[5] is None
    assert in_send[:3] == ("in", "send", "NotifyPeriodicEventStream") and in_send[3] == out_send[3]


async def test_the_context_carries_the_exchange() -> None:
    contexts: list[MessageContext] = []

    async def keep(ctx: MessageContext, call_next: CallNext) -> Any:
        contexts.append(ctx)
        ctx.state["seen"] = True
        return await call_next(ctx)

    async with session_pair("ocpp1.6", csms_router=csms_router(), identity="CP9") as (station, csms):
        csms.use(keep)
        await station.call("Heartbeat", {}, message_id="m-1")
    (ctx,) = contexts
    assert (ctx.direction, ctx.kind, ctx.action, ctx.message_id) == ("in", "call", "Heartbeat", "m-1")
    assert (ctx.identity, ctx.protocol, ctx.session, ctx.route) == ("CP9", "ocpp1.6", csms, None)
    assert ctx.payload == {} and ctx.state == {"seen": True} and ctx.sent_at is None
    assert repr(ctx) == "<MessageContext in call Heartbeat (m-1)>"


async def test_transforms_the_inbound_request_and_the_outbound_answer() -> None:
    seen: list[Any] = []

    async def tag_requests(ctx: MessageContext, call_next: CallNext) -> Any:
        ctx.payload = {**ctx.payload, "idTag": ctx.payload["idTag"].upper()}
        return await call_next(ctx)

    async def stamp_answers(ctx: MessageContext, call_next: CallNext) -> Any:
        answer = await call_next(ctx)
        return {**answer, "stamped": ctx.action}

    async with session_pair("ocpp1.6", csms_router=csms_router(seen)) as (station, csms):
        csms.use(tag_requests)
        station.use(stamp_answers)
        answer = await station.call("Authorize", {"idTag": "abc"})
    assert seen == [{"idTag": "ABC"}]
    assert answer == {"idTagInfo": {"status": "Accepted"}, "stamped": "Authorize"}


async def test_answers_for_the_handler_in_and_out() -> None:
    seen: list[Any] = []

    async def answer_inbound(ctx: MessageContext, call_next: CallNext) -> Any:
        if ctx.action in ("Heartbeat", "DataTransfer"):  # DataTransfer has no handler at all
            return {"currentTime": "from middleware"}
        return await call_next(ctx)

    async def answer_outbound(ctx: MessageContext, call_next: CallNext) -> Any:
        if ctx.action == "Heartbeat":
            return {"currentTime": "cached"}  # a dict: a typed call still gets its type
        return await call_next(ctx)

    async with session_pair("ocpp1.6", csms_router=csms_router(seen)) as (station, csms):
        csms.use(answer_inbound)
        assert await station.call("Heartbeat", {}) == {"currentTime": "from middleware"}
        assert await station.call("DataTransfer", {"vendorId": "x"}) == {"currentTime": "from middleware"}
        station.use(answer_outbound)
        answer = await station.call(HeartbeatRequest())
    assert answer == HeartbeatResponse(current_time="cached")
    assert seen == []  # no handler ran, and the last call never left the station


async def test_an_unhandled_call_reaches_the_middleware_as_an_error() -> None:
    recorder = Recorder()
    async with session_pair("ocpp1.6", csms_router=csms_router()) as (station, csms):
        csms.use(recorder)
        with pytest.raises(OCPPError) as refused:
            await station.call("Unknown", {})
    assert refused.value.code is ErrorCode.NOT_IMPLEMENTED
    (exchange,) = recorder.exchanges
    assert isinstance(exchange[5], OCPPError) and exchange[5].code is ErrorCode.NOT_IMPLEMENTED


async def test_errors_pass_through_and_are_observed() -> None:
    recorder = Recorder()
    async with session_pair("ocpp1.6", csms_router=csms_router()) as (station, _):
        station.use(recorder)
        with pytest.raises(OCPPError) as refused:
            await station.call("Authorize", {"idTag": "bad"})
    assert refused.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert recorder.exchanges[0][5] is refused.value  # the caller gets what the middleware saw


async def test_a_middleware_refuses_with_an_ocpp_error() -> None:
    async def refuse(ctx: MessageContext, call_next: CallNext) -> Any:
        raise OCPPError(ErrorCode.SECURITY_ERROR, "not on this route")

    seen: list[Any] = []
    async with session_pair("ocpp1.6", csms_router=csms_router(seen)) as (station, csms):
        csms.use(refuse)
        with pytest.raises(OCPPError) as refused:
            await station.call("Heartbeat", {})
        assert refused.value.code is ErrorCode.SECURITY_ERROR
        station.use(refuse)
        with pytest.raises(OCPPError, match="not on this route"):
            await station.call("Heartbeat", {})
    assert seen == []


@pytest.mark.parametrize("how", ["return", "raise"])
async def test_a_dropped_inbound_call_is_left_unanswered(how: str) -> None:
    seen: list[Any] = []

    async def drop_resets(ctx: MessageContext, call_next: CallNext) -> Any:
        if ctx.action == "Heartbeat" and ctx.message_id == "drop-me":
            if how == "raise":
                raise DroppedByMiddleware("not today")
            return DROP
        return await call_next(ctx)

    async with session_with_raw_peer(role=Role.CSMS, router=csms_router(seen), middleware=[drop_resets]) as (
        session,
        peer,
    ):
        await peer.send([2, "drop-me", "Heartbeat", {}])
        await peer.send([2, "keep-me", "Heartbeat", {}])
        # The first reply is the second CALL's: nothing was sent for the dropped one.
        assert await peer.receive() == [3, "keep-me", NOW]
        assert not session.connection.inbound_calls  # the engine forgot the dropped CALL
    assert seen == [{}]


async def test_a_dropped_inbound_send_never_reaches_its_handler() -> None:
    seen: list[Any] = []

    async def drop_sends(ctx: MessageContext, call_next: CallNext) -> Any:
        return DROP if ctx.kind == "send" else await call_next(ctx)

    async with session_pair("ocpp2.1", csms_router=csms_router(seen)) as (station, csms):
        csms.use(drop_sends)
        await station.send("NotifyPeriodicEventStream", {"seq": 1})
        assert await station.call("Heartbeat", {}) == NOW  # after the SEND, on the same link
    assert seen == [{}]


@pytest.mark.parametrize("how", ["return", "raise"])
async def test_a_dropped_outbound_call_or_send_fails_locally(how: str) -> None:
    seen: list[Any] = []

    async def drop_everything(ctx: MessageContext, call_next: CallNext) -> Any:
        if how == "raise":
            raise DroppedByMiddleware("offline mode")
        return DROP

    async with session_pair("ocpp2.1", csms_router=csms_router(seen)) as (station, _):
        station.use(drop_everything)
        with pytest.raises(DroppedByMiddleware) as dropped:
            await station.call("Heartbeat", {}, message_id="m-7")
        assert (dropped.value.action, dropped.value.message_id) == ("Heartbeat", "m-7")
        assert str(dropped.value).startswith("Heartbeat (m-7) dropped by middleware")
        with pytest.raises(DroppedByMiddleware) as dropped:
            await station.send("NotifyPeriodicEventStream", {})
        assert dropped.value.action == "NotifyPeriodicEventStream"
    assert seen == []


async def test_an_unhandled_send_passes_the_middleware_and_is_dropped() -> None:
    recorder = Recorder()
    async with session_pair("ocpp2.1", csms_router=csms_router()) as (station, csms):
        csms.use(recorder)
        await station.send("NotifyCustomerInformation", {})
        assert await station.call("Heartbeat", {}) == NOW  # nothing was answered for the SEND
    assert [e[:3] for e in recorder.exchanges] == [
        ("in", "send", "NotifyCustomerInformation"),
        ("in", "call", "Heartbeat"),
    ]
    assert recorder.exchanges[0][5] is None
    assert repr(DROP) == "DROP"


def middleware_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ocpprpc.middleware"]


async def test_a_failing_middleware_fails_open_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ocpprpc.middleware")
    seen: list[Any] = []

    async def broken_before(ctx: MessageContext, call_next: CallNext) -> Any:
        raise RuntimeError("bug before")

    async def broken_after(ctx: MessageContext, call_next: CallNext) -> Any:
        await call_next(ctx)
        raise KeyError("bug after")

    async with session_pair("ocpp1.6", csms_router=csms_router(seen)) as (station, csms):
        csms.use(broken_before)
        csms.use(broken_after)
        station.use(broken_before)
        for _ in range(3):
            assert await station.call("Heartbeat", {}) == NOW
    assert len(seen) == 3  # the handler ran once per call, never twice
    records = middleware_log(caplog)
    errors = [r for r in records if r.levelno == logging.ERROR]
    # One ERROR per (middleware, exception type): broken_before (on both ends) and broken_after.
    assert sorted(str(r.exc_info[1]) for r in errors if r.exc_info) == ["'bug after'", "bug before"]
    assert all("skipping it (fail open)" in r.getMessage() for r in records)
    assert len(records) == 9 and all(r.levelno == logging.DEBUG for r in records if r not in errors)


async def test_failing_open_after_an_error_from_inside_keeps_that_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ocpprpc.middleware")

    async def translate_badly(ctx: MessageContext, call_next: CallNext) -> Any:
        try:
            return await call_next(ctx)
        except OCPPError as exc:
            raise KeyError(exc.code)  # a bug: not a verdict on the message  # noqa: B904

    async with session_pair("ocpp1.6", csms_router=csms_router()) as (station, _):
        station.use(translate_badly)
        with pytest.raises(OCPPError) as refused:
            await station.call("Authorize", {"idTag": "bad"})
    assert refused.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    (record,) = middleware_log(caplog)
    assert record.levelno == logging.ERROR and "translate_badly" in record.getMessage()


async def test_a_middleware_without_weak_references_is_logged_once_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ocpprpc.middleware")

    class Slotted:
        __slots__ = ()

        async def __call__(self, ctx: MessageContext, call_next: CallNext) -> Any:
            raise RuntimeError("bug")

    async with session_pair("ocpp1.6", csms_router=csms_router()) as (station, _):
        station.use(Slotted())
        for _ in range(2):
            assert await station.call("Heartbeat", {}) == NOW
    assert [r.levelno for r in middleware_log(caplog)] == [logging.ERROR, logging.DEBUG]


async def test_a_fail_closed_middleware_fails_the_exchange(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ocpprpc.middleware")
    seen: list[Any] = []

    @fail_closed
    async def broken(ctx: MessageContext, call_next: CallNext) -> Any:
        raise LookupError("signature store unreachable")

    async with session_pair("ocpp1.6", csms_router=csms_router(seen)) as (station, csms):
        csms.use(broken)
        with pytest.raises(OCPPError) as refused:
            await station.call("Heartbeat", {})
        assert refused.value.code is ErrorCode.INTERNAL_ERROR
        assert "signature store" not in str(refused.value)  # the peer learns nothing internal
        station.use(broken)
        with pytest.raises(LookupError, match="signature store unreachable"):
            await station.call("Heartbeat", {})
        assert not station.closed.is_set() and not csms.closed.is_set()
    assert seen == []
    assert all("failing the message (fail closed)" in r.getMessage() for r in middleware_log(caplog))
    assert "fail_closed(" in repr(broken)


async def test_a_class_middleware_may_fail_closed_by_attribute() -> None:
    class Strict:
        fail_closed = True

        async def __call__(self, ctx: MessageContext, call_next: CallNext) -> Any:
            raise RuntimeError("bug")

    async with session_pair("ocpp1.6", csms_router=csms_router(), middleware=[Strict()]) as (station, _):
        with pytest.raises(RuntimeError, match="bug"):
            await station.call("Heartbeat", {})


async def test_a_handler_error_is_not_blamed_on_the_middleware(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ocpprpc.middleware")
    recorder = Recorder()
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> Any:
        raise ValueError("handler bug")

    async with session_pair("ocpp1.6", csms_router=router, raise_handler_errors=False) as (station, csms):
        csms.use(recorder)
        with pytest.raises(OCPPError) as refused:
            await station.call("Heartbeat", {})
    assert refused.value.code is ErrorCode.INTERNAL_ERROR
    assert isinstance(recorder.exchanges[0][5], ValueError)
    assert middleware_log(caplog) == []


async def test_middlewares_run_as_an_onion_in_list_order() -> None:
    order: list[str] = []
    outer, inner = Recorder("outer", order), Recorder("inner", order)
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> Any:
        order.append("handler")
        return NOW

    async with session_pair("ocpp1.6", csms_router=router) as (station, csms):
        csms.use(outer)
        csms.use(inner)
        assert csms.middleware == (outer, inner)
        await station.call("Heartbeat", {})
    assert order == ["outer >", "inner >", "handler", "inner <", "outer <"]


async def test_latency_and_outcome_of_an_outbound_call() -> None:
    measured: list[tuple[str, float, float, str]] = []

    async def metrics(ctx: MessageContext, call_next: CallNext) -> Any:
        outcome = "ok"
        try:
            return await call_next(ctx)
        except OCPPError as exc:
            outcome = exc.code.value
            raise
        finally:
            now = time.perf_counter()
            assert ctx.sent_at is not None and ctx.sent_at >= ctx.started
            measured.append((ctx.action, now - ctx.started, now - ctx.sent_at, outcome))

    async with session_pair("ocpp1.6", csms_router=csms_router()) as (station, _):
        station.use(metrics)
        await station.call("Authorize", {"idTag": "abc"})  # the handler sleeps 50 ms
        with pytest.raises(OCPPError):
            await station.call("Authorize", {"idTag": "bad"})
    ok, failed = measured
    assert ok[3] == "ok" and ok[1] >= ok[2] >= 0.04
    assert failed[3] == "PropertyConstraintViolation"


async def test_over_real_sockets_with_server_and_connect() -> None:
    server_side, station_side = Recorder(), Recorder()
    async with (
        ocpprpc.serve(router=csms_router(), middleware=[server_side]) as server,
        ocpprpc.connect(
            f"ws://127.0.0.1:{server.port}/ocpp", "CP-REAL", middleware=[station_side]
        ) as station,
    ):
        assert await station.call("Heartbeat", {}) == NOW
    assert server_side.exchanges[0][:3] == ("in", "call", "Heartbeat")
    assert server_side.exchanges[0][4] == "CP-REAL"
    assert station_side.exchanges[0][:3] == ("out", "call", "Heartbeat")
    assert station_side.exchanges[0][3] == server_side.exchanges[0][3]


async def test_a_middleware_must_be_callable() -> None:
    async with session_pair("ocpp1.6") as (station, _):
        with pytest.raises(TypeError, match="must be callable"):
            station.use("not a middleware")  # type: ignore[arg-type]
        assert station.middleware == ()


# -- never_waits: observers keep plain handlers in the reader ------------------------------------


def _task_router(tasks: list[str]) -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        tasks.append(anyio.get_current_task().name or "")
        return NOW

    return router


@ocpprpc.never_waits
async def observe(ctx: MessageContext, call_next: CallNext) -> Any:
    return await call_next(ctx)


async def just_call(ctx: MessageContext, call_next: CallNext) -> Any:
    return await call_next(ctx)


@pytest.mark.parametrize(
    ("layers", "where"),
    [
        ([], "reader"),
        ([observe], "reader"),
        ([observe, ocpprpc.ExchangeLog()], "reader"),
        ([fail_closed(observe)], "reader"),
        ([just_call], "handlers"),  # unmarked: it might wait, so never in the reader
        ([observe, just_call], "handlers"),  # one layer that might wait is enough
    ],
    ids=["none", "marked", "marked+exchangelog", "fail-closed-marked", "unmarked", "mixed"],
)
async def test_plain_handlers_stay_in_the_reader_only_under_middleware_that_never_waits(
    layers: list[Any], where: str
) -> None:
    tasks: list[str] = []
    async with session_pair("ocpp1.6", csms_router=_task_router(tasks)) as (station, csms):
        for layer in layers:
            csms.use(layer)
        assert await station.call("Heartbeat") == NOW
    [task] = tasks
    assert task.startswith(f"ocpprpc {where} "), task


async def test_a_middleware_that_breaks_its_never_waits_promise_still_works() -> None:
    seen: list[Any] = []

    @ocpprpc.never_waits
    async def slow(ctx: MessageContext, call_next: CallNext) -> Any:
        await anyio.sleep(0.01)  # waits after all: the reader waits with it
        seen.append(ctx.action)
        return await call_next(ctx)

    async with session_pair("ocpp1.6", csms_router=csms_router()) as (station, csms):
        csms.use(slow)
        for _ in range(3):
            assert await station.call("Heartbeat") == NOW
    assert seen == ["Heartbeat"] * 3


async def test_inline_middleware_keeps_each_calls_context_variables_apart() -> None:
    import contextvars

    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="unset")
    seen: list[str] = []

    @ocpprpc.never_waits
    async def tag(ctx: MessageContext, call_next: CallNext) -> Any:
        seen.append(current.get())
        current.set(ctx.message_id)
        return await call_next(ctx)

    async with session_pair("ocpp1.6", csms_router=csms_router()) as (station, csms):
        csms.use(tag)
        for _ in range(3):
            await station.call("Heartbeat")
    assert seen == ["unset"] * 3  # what one CALL set never leaks into the next


def test_never_waits_refuses_what_it_cannot_mark() -> None:
    class Slotted:
        __slots__ = ()

        async def __call__(self, ctx: MessageContext, call_next: CallNext) -> Any:
            return await call_next(ctx)

    with pytest.raises(TypeError, match="class attribute"):
        ocpprpc.never_waits(Slotted())


async def test_a_fail_closed_wrapper_called_directly_calls_what_it_wraps() -> None:
    # The onion calls the wrapped middleware itself (bound once); the wrapper stays callable.
    async def answer(ctx: MessageContext, call_next: CallNext) -> Any:
        return "answered"

    assert await fail_closed(answer)(None, None) == "answered"  # type: ignore[arg-type]
