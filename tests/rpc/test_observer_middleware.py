"""Middleware that never waits (``never_waits = True``): plain handlers stay in the reader, onion included.

Metrics and the exchange log only observe; with only such layers an inbound CALL
for a plain-function handler runs in the reader, as without middleware, and every
exchange is still seen with its outcome.  A plain function that returns an
awaitable is found out: its awaiting goes to a worker, and so do its later CALLs.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from ocpprpc import CallContext, ExchangeLog, Metrics, OCPPError, Router, fail_closed, never_waits
from ocpprpc._rpc import inbound
from ocpprpc._rpc.middleware import CallNext, MessageContext, Onion

from .helpers import session_with_raw_peer


class Recorder:
    """An observer that notes the task each exchange ran in and how it ended."""

    never_waits = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    async def __call__(self, ctx: MessageContext, call_next: CallNext) -> Any:
        task = (anyio.get_current_task().name or "").split()[1]
        try:
            answer = await call_next(ctx)
        except Exception as exc:
            self.seen.append((ctx.action, task, type(exc).__name__))
            raise
        self.seen.append((ctx.action, task, repr(answer)))
        return answer


def handler_task() -> str:
    return (anyio.get_current_task().name or "").split()[1]


def test_an_onion_is_inline_only_when_every_layer_observes() -> None:
    async def plain(ctx: MessageContext, call_next: CallNext) -> Any:
        return await call_next(ctx)

    assert Onion([Metrics(), ExchangeLog(), Recorder()]).inline  # type: ignore[list-item]
    assert not Onion([Metrics(), plain]).inline  # type: ignore[list-item]


async def test_plain_handlers_run_in_the_reader_through_observers() -> None:
    recorder = Recorder()
    tasks: list[str] = []
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        tasks.append(handler_task())
        return {"currentTime": "now"}

    @router.on("Authorize")
    def authorize(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise OCPPError("SecurityError", "blocked")

    async with session_with_raw_peer(router=router, middleware=[recorder]) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert await peer.receive() == [3, "c1", {"currentTime": "now"}]
        await peer.send([2, "c2", "Authorize", {"idTag": "X"}])
        assert (await peer.receive())[:3] == [4, "c2", "SecurityError"]
        await peer.send([2, "c3", "DataTransfer", {"vendorId": "v"}])
        assert (await peer.receive())[:3] == [4, "c3", "NotImplemented"]
    assert tasks == ["reader"]
    assert recorder.seen == [
        ("Heartbeat", "reader", "{'currentTime': 'now'}"),
        ("Authorize", "reader", "OCPPError"),
        ("DataTransfer", "reader", "OCPPError"),
    ]


async def test_a_plain_function_returning_an_awaitable_is_found_out() -> None:
    recorder = Recorder()
    router = Router()

    async def later(request: Any) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        return {"status": "Accepted", "tag": request["idTag"], "task": handler_task()}

    def authorize(request: Any, ctx: CallContext) -> Any:
        return later(request)  # a plain function wrapping a coroutine

    router.on("Authorize")(authorize)
    route = router.resolve("Authorize", "ocpp1.6")
    assert route is not None and route.inline
    inbound._DEFERRING.discard(route)
    try:
        async with session_with_raw_peer(router=router, middleware=[recorder]) as (_, peer):
            await peer.send([2, "c1", "Authorize", {"idTag": "A"}])
            assert await peer.receive() == [3, "c1", {"status": "Accepted", "tag": "A", "task": "handlers"}]
            assert route in inbound._DEFERRING
            await peer.send([2, "c2", "Authorize", {"idTag": "B"}])
            assert await peer.receive() == [3, "c2", {"status": "Accepted", "tag": "B", "task": "handlers"}]
    finally:
        inbound._DEFERRING.discard(route)
    # The first exchange was seen ending when the function returned; the second whole, in a worker.
    assert recorder.seen[0] == ("Authorize", "reader", "NO_REPLY")
    assert recorder.seen[1][:2] == ("Authorize", "handlers")
    assert "'tag': 'B'" in recorder.seen[1][2]


async def test_the_deferring_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbound, "_DEFERRING", {object()})
    monkeypatch.setattr(inbound, "_MAX_DEFERRING", 1)
    router = Router()

    async def later() -> dict[str, Any]:
        return {}

    router.on("Heartbeat")(lambda request, ctx: later())
    async with session_with_raw_peer(router=router, middleware=[Recorder()]) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert await peer.receive() == [3, "c1", {}]
    assert {router.resolve("Heartbeat", "ocpp1.6")} == inbound._DEFERRING


async def test_an_observer_that_drops_leaves_the_call_unanswered() -> None:
    class Dropper:
        never_waits = True

        async def __call__(self, ctx: MessageContext, call_next: CallNext) -> Any:
            from ocpprpc import DROP

            await call_next(ctx)
            return DROP

    router = Router()
    router.on("Heartbeat")(lambda request, ctx: {"currentTime": "now"})
    async with session_with_raw_peer(router=router, middleware=[Dropper()]) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await peer.send([2, "c2", "NoSuchAction", {}])
        assert (await peer.receive())[:3] == [4, "c2", "NotImplemented"]  # c1 was never answered


async def test_an_observer_raising_drop_leaves_the_call_unanswered() -> None:
    from ocpprpc import DroppedByMiddleware

    class Dropper:
        never_waits = True

        async def __call__(self, ctx: MessageContext, call_next: CallNext) -> Any:
            if ctx.action == "Heartbeat":
                raise DroppedByMiddleware("no")
            return await call_next(ctx)

    router = Router()
    router.on("Heartbeat")(lambda request, ctx: {"currentTime": "now"})
    async with session_with_raw_peer(router=router, middleware=[Dropper()]) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await peer.send([2, "c2", "NoSuchAction", {}])
        assert (await peer.receive())[:3] == [4, "c2", "NotImplemented"]


async def test_the_rate_limit_wrapper_is_as_async_as_what_it_wraps() -> None:
    from ocpprpc import RateLimiter, StationLimits
    from ocpprpc._csms.guard import RateLimitedRouter

    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "now"}

    @router.on("Authorize")
    async def authorize(request: Any, ctx: CallContext) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        return {"idTagInfo": {"status": "Accepted"}, "task": handler_task()}

    limiter = RateLimiter(StationLimits(global_="100/60"), clock=lambda: 0.0)  # type: ignore[arg-type]
    limited = RateLimitedRouter(router, limiter, lambda verdict, ctx: None)
    plain, awaited = limited.resolve("Heartbeat", "ocpp1.6"), limited.resolve("Authorize", "ocpp1.6")
    assert plain is not None and plain.inline
    assert awaited is not None and not awaited.inline  # never a plain function returning a coroutine
    recorder = Recorder()
    async with session_with_raw_peer(router=limited, middleware=[recorder]) as (_, peer):
        await peer.send([2, "c1", "Authorize", {"idTag": "A"}])
        assert await peer.receive() == [3, "c1", {"idTagInfo": {"status": "Accepted"}, "task": "handlers"}]
    assert recorder.seen[0][:2] == ("Authorize", "handlers")


async def test_an_empty_onion_runs_the_innermost() -> None:
    async def innermost(ctx: Any) -> str:
        return "answer"

    assert await Onion([]).run(None, innermost) == "answer"  # type: ignore[arg-type]


# -- the inline path's rare turns: a layer that fails, waits after all, or is no coroutine ------


def _counting_router(ran: list[str]) -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        ran.append(handler_task())
        return {"currentTime": "now"}

    return router


@pytest.mark.parametrize("when", ["before", "after", "after-waiting", "before-waiting"])
async def test_an_inline_observer_that_fails_fails_open(when: str) -> None:
    @never_waits
    async def broken(ctx: MessageContext, call_next: CallNext) -> Any:
        if when.endswith("waiting"):
            await anyio.lowlevel.checkpoint()  # it broke its promise too
        if when.startswith("after"):
            await call_next(ctx)
        raise RuntimeError("a bug in the observer")

    ran: list[str] = []
    async with session_with_raw_peer(router=_counting_router(ran), middleware=[broken]) as (_, peer):
        for n in range(2):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
            assert await peer.receive() == [3, f"c{n}", {"currentTime": "now"}]
    assert ran == ["reader", "reader"]  # the handler ran once per CALL, in the reader


@pytest.mark.parametrize("waiting", [False, True], ids=["at-once", "after-waiting"])
async def test_an_inline_fail_closed_observer_that_fails_fails_the_call(waiting: bool) -> None:
    @fail_closed
    @never_waits
    async def guard(ctx: MessageContext, call_next: CallNext) -> Any:
        if waiting:
            await anyio.lowlevel.checkpoint()
        raise RuntimeError("a bug in the check")

    ran: list[str] = []
    async with session_with_raw_peer(router=_counting_router(ran), middleware=[guard]) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert (await peer.receive())[:3] == [4, "c1", "InternalError"]
    assert ran == []


@pytest.mark.parametrize("waiting", [False, True], ids=["at-once", "after-waiting"])
async def test_an_inline_observer_refuses_with_an_ocpp_error(waiting: bool) -> None:
    @never_waits
    async def refuse(ctx: MessageContext, call_next: CallNext) -> Any:
        if waiting:
            await anyio.lowlevel.checkpoint()
        raise OCPPError("SecurityError", "not you")

    async with session_with_raw_peer(router=_counting_router([]), middleware=[refuse]) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert (await peer.receive())[:3] == [4, "c1", "SecurityError"]


async def test_an_inline_layer_may_return_an_awaitable_of_another_kind() -> None:
    class Passing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __await__(self) -> Any:
            return self.inner.__await__()

    @never_waits
    def plain(ctx: MessageContext, call_next: CallNext) -> Any:
        return Passing(call_next(ctx))  # a plain function, no coroutine of its own

    ran: list[str] = []
    async with session_with_raw_peer(router=_counting_router(ran), middleware=[plain]) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert await peer.receive() == [3, "c1", {"currentTime": "now"}]
    assert ran == ["reader"]


async def test_an_inline_layer_waiting_after_all_is_cancelled_with_the_session() -> None:
    import contextvars

    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="")
    entered = anyio.Event()
    ended: list[str] = []

    @never_waits
    async def stuck(ctx: MessageContext, call_next: CallNext) -> Any:
        tag.set(ctx.message_id)
        entered.set()
        try:
            await anyio.sleep_forever()
        except BaseException as exc:
            ended.append(f"{type(exc).__name__} {tag.get()}")  # in its exchange's context still
            raise
        return await call_next(ctx)  # pragma: no cover - never reached

    async with session_with_raw_peer(router=_counting_router([]), middleware=[stuck]) as (session, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await entered.wait()
        await session.close()
    assert len(ended) == 1 and ended[0].endswith(" c1")


class Observer:
    """A layer that only looks at outcomes: ``observe`` (and ``__call__`` built on it, as Metrics is)."""

    never_waits = True

    def __init__(self, name: str, seen: list[tuple[str, str, str, str]], fail: bool = False) -> None:
        self.name, self.seen, self.fail = name, seen, fail

    async def __call__(self, ctx: MessageContext, call_next: CallNext) -> Any:
        try:
            answer = await call_next(ctx)
        except BaseException as exc:
            self.observe(ctx, None, exc)
            raise
        self.observe(ctx, answer, None)
        return answer

    def observe(self, ctx: MessageContext, answer: Any, error: BaseException | None) -> None:
        outcome = repr(answer) if error is None else type(error).__name__
        self.seen.append((self.name, ctx.action, outcome, handler_task()))
        if self.fail:
            raise RuntimeError(f"{self.name} broke")


def test_an_onion_of_observers_skips_the_coroutines_only_when_every_layer_observes_and_fails_open() -> None:
    seen: list[tuple[str, str, str, str]] = []
    outer, inner = Observer("outer", seen), Observer("inner", seen)
    assert [index for index, _ in Onion([outer, inner]).observers or ()] == [1, 0]
    assert Onion([outer, Recorder()]).observers is None
    assert Onion([fail_closed(outer)]).observers is None

    class Waits(Observer):
        never_waits = False

    assert Onion([Waits("w", seen)]).observers is None


async def test_observers_see_every_outcome_innermost_first_in_the_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "ocpprpc.middleware")
    seen: list[tuple[str, str, str, str]] = []
    router = Router()
    router.on("Heartbeat")(lambda request, ctx: {"currentTime": "now"})

    @router.on("Authorize")
    def authorize(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise OCPPError("SecurityError", "blocked")

    layers = [Observer("outer", seen), Observer("inner", seen, fail=True)]  # inner raises every time
    async with session_with_raw_peer(router=router, middleware=layers) as (session, peer):
        assert session._onion is not None and session._onion.observers is not None
        await peer.send([2, "c1", "Heartbeat", {}])
        assert await peer.receive() == [3, "c1", {"currentTime": "now"}]  # a failing observer changes nothing
        await peer.send([2, "c2", "Authorize", {"idTag": "X"}])
        assert (await peer.receive())[:3] == [4, "c2", "SecurityError"]
        await peer.send([2, "c3", "Heartbeat", {}])
        assert await peer.receive() == [3, "c3", {"currentTime": "now"}]
    answer = repr({"currentTime": "now"})
    assert seen == [
        ("inner", "Heartbeat", answer, "reader"),
        ("outer", "Heartbeat", answer, "reader"),
        ("inner", "Authorize", "OCPPError", "reader"),
        ("outer", "Authorize", "OCPPError", "reader"),
        ("inner", "Heartbeat", answer, "reader"),
        ("outer", "Heartbeat", answer, "reader"),
    ]
    failures = [r for r in caplog.records if r.exc_info and str(r.exc_info[1]) == "inner broke"]
    assert [record.levelname for record in failures] == ["ERROR", "DEBUG", "DEBUG"]  # once per cause


async def test_metrics_alone_counts_the_same_through_observe() -> None:
    metrics = Metrics()
    router = Router()
    router.on("Heartbeat")(lambda request, ctx: {"currentTime": "now"})
    async with session_with_raw_peer(router=router, middleware=[metrics]) as (session, peer):
        assert session._onion is not None and session._onion.observers is not None
        for n in range(3):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
            assert await peer.receive() == [3, f"c{n}", {"currentTime": "now"}]
        await peer.send([2, "c9", "Authorize", {"idTag": "X"}])
        assert (await peer.receive())[:3] == [4, "c9", "NotImplemented"]
    assert metrics.call_counts() == {
        "Heartbeat": {"in": {"ok": 3}},
        "Authorize": {"in": {"callerror": 1}},
    }
