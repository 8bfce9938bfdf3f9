"""Inbound CALLs and SENDs: dispatch, the handler workers, the answers.

The reader hands each inbound message to ``_dispatch``, which queues it for a
worker or returns its route for the reader to run inline; see the module
docstring of :mod:`ocpprpc._rpc.session` for why.
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import logging
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Final, Literal, TypeVar

import anyio
import msgspec

from .._engine.connection import ConnectionState
from .._engine.errors import OCPPError, OutboundPayloadError
from .._engine.events import (
    Call,
    CallError,
    CallResult,
    Send,
)
from .._engine.rules import ErrorCode
from .dispatch import NO_REPLY, CallContext, NoReply, Route
from .middleware import DROP, DroppedByMiddleware, Later, MessageContext, Tracked
from .session_base import _SessionBase, _Work

log = logging.getLogger("ocpprpc.session")

#: Workers per session when a shared :class:`anyio.CapacityLimiter` has no finite bound.
_MAX_WORKERS = 1024

#: Routes whose plain-function handler returned an awaitable under never_waits middleware: their
#: CALLs go to a worker from then on, seen whole by the middleware (see ``_exchange``).
#: Shared by the sessions of the process; bounded (forgotten at the bound, then learnt again).
_DEFERRING: set[Route] = set()
_MAX_DEFERRING = 4096

_T = TypeVar("_T")


@types.coroutine
def _run_in_context(context: contextvars.Context, coro: Coroutine[Any, Any, _T]) -> Generator[Any, Any, _T]:
    """Drive *coro* inside *context*, step by step, as a task of its own would.

    What an event loop does for a task (``context.run(coro.send, value)``),
    done inside the worker's own task: the event loop sees the worker's task and
    its cancel scopes, while context variables set by the handler stay in
    *context*.  Values and exceptions the worker's task receives are forwarded.
    """
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = context.run(coro.send, send) if error is None else context.run(coro.throw, error)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        try:
            send = yield yielded
            error = None
        except GeneratorExit:
            context.run(coro.close)
            raise
        except BaseException as exc:  # forwarded into the coroutine, as a task would
            error = exc


class _Handoff(enum.Enum):
    QUEUED = enum.auto()
    REFUSED = enum.auto()


#: ``Session._dispatch()``: the CALL was queued for a worker (or dropped), not for the reader.
_QUEUED: Final = _Handoff.QUEUED
#: ``Session._dispatch()``: the queue is full and the reader may not pause: refuse the CALL.
_REFUSED: Final = _Handoff.REFUSED


class _Handler(Tracked):
    """The innermost layer of an inbound exchange: the handler (or the refusal of an unrouted CALL).

    With *deferred* (in the reader, ``_run_inline``) an awaitable returned by a
    plain handler goes there instead of being awaited; the middleware see the
    exchange end, and the worker that awaits it answers.
    """

    __slots__ = ("deferred", "is_send", "route", "session")

    def __init__(
        self, session: _Inbound, route: Route | None, is_send: bool, deferred: list[Awaitable[Any]] | None
    ) -> None:
        self.session = session
        self.route = route
        self.is_send = is_send
        self.deferred = deferred
        self.called = False
        self.result = None
        self.error = None

    async def __call__(self, ctx: MessageContext, /) -> Any:
        result = self.step(ctx)
        if self.deferred is None and inspect.isawaitable(result):
            try:
                result = await result
            except Exception as exc:
                self.error = exc
                raise
            self.result = result
        return result

    def step(self, ctx: MessageContext, /) -> Any:
        """The handler called: its answer, or (without *deferred*) the awaitable it returned.

        Synchronous, so an onion of observers (``Onion.observed``) runs it without a coroutine.
        """
        self.called = True
        self.error = None
        route = self.route
        session = self.session
        try:
            if route is None:
                session._unrouted(ctx.action, ctx.message_id, self.is_send)  # raises for a CALL
                result = None
            else:
                call_ctx = CallContext(
                    ctx.message_id,
                    ctx.action,
                    session.connection.protocol,
                    session,  # type: ignore[arg-type]  # a mixin of Session
                    self.is_send,
                )
                result = route.handler(session._prepare(route, ctx.payload), call_ctx)
                deferred = self.deferred
                if deferred is not None and inspect.isawaitable(result):
                    if len(_DEFERRING) >= _MAX_DEFERRING:
                        _DEFERRING.clear()
                    _DEFERRING.add(route)
                    deferred.append(result)
                    result = NO_REPLY
        except Exception as exc:
            self.error = exc
            raise
        self.result = result
        return result


class _Inbound(_SessionBase):
    """Dispatch of inbound CALLs and SENDs to their handlers, inline or in a worker."""

    def _dispatch(
        self, message: Call | Send, size: int
    ) -> Route | Literal[_Handoff.QUEUED, _Handoff.REFUSED] | None:
        """Queue *message* for a worker, or return its route for the reader to run inline.

        Inline means: a plain-function handler (or none at all), and the reader
        may take a handler slot without anything waiting for one, so the
        concurrency bound holds and, with ``ordered_handlers``, nothing is
        overtaken.  Not when more messages are already buffered: answered from
        workers, a pipelined burst leaves in one write instead of one per answer.
        Returns ``_QUEUED`` otherwise (also when closing: nothing to do), or
        ``_REFUSED`` when the queue is full (the reader did not pause because one
        of our calls awaits its answer).  *size* is the length of the message's text.
        """
        if self._closing:
            log.info("%s: closing, not handling %s (%s)", self, message.action, message.message_id)
            return _QUEUED
        router = self.router
        route = router.resolve(message.action, self.connection.protocol) if router is not None else None
        self._active_handlers += 1
        if (
            (route is None or route.inline)
            # Middleware may wait, so never in the reader; unless every layer only observes.
            and (self._onion is None or (self._onion.inline and (not _DEFERRING or route not in _DEFERRING)))
            and self._active_handlers <= self._max_workers
            and not self._inbox
            and not self.stream.buffered
            and (self._limiter is None or self._borrow())
        ):
            return route
        inbox = self._inbox
        if inbox and (len(inbox) >= self._max_queued or self._queued_bytes >= self._max_queued_bytes):
            self._active_handlers -= 1
            return _REFUSED
        self._enqueue((message, route, None, size))
        return _QUEUED

    def _borrow(self) -> bool:
        assert self._limiter is not None
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            return False
        return True

    def _enqueue(self, work: _Work) -> None:
        self._inbox.append(work)
        size = work[3]
        self._queued_bytes += size
        if self.inbound_budget is not None:
            self.inbound_budget.used += size  # take(), inlined: every queued CALL's path
        if self._idle:
            self._idle.pop().set()
        elif self._workers < self._max_workers:
            self._workers += 1
            self._spawn(self._worker, "handlers")
        # else: every worker is busy; the first one free takes it from the inbox.

    async def _worker(self) -> None:
        inbox = self._inbox
        limiter = self._limiter
        budget = self.inbound_budget
        context = contextvars.copy_context()
        while True:
            while inbox:
                work = inbox.pop(0)
                self._queued_bytes -= work[3]
                if self._room is not None:
                    self._room.set()  # the reader was paused on a full queue
                try:
                    if limiter is None:
                        await self._work(context, work)
                    else:
                        async with limiter:
                            await self._work(context, work)
                finally:
                    self._active_handlers -= 1
                    if budget is not None:
                        # give_back(), inlined: every queued CALL's path.
                        budget.used -= work[3]
                        if budget._waiters and budget.used < budget.limit:
                            budget._wake()
                        if self._room is not None:
                            self._room.set()  # the reader may be paused on the budget
                    self._check_drained()
            wake = anyio.Event()
            self._idle.append(wake)
            await wake.wait()

    def _work(self, context: contextvars.Context, work: _Work) -> Awaitable[None]:
        message, route, started, _ = work
        if started is None:
            # A fresh copy per CALL: what the handler sets stays with that CALL.
            handle = self._handle if self._onion is None else self._handle_through_onion
            return _run_in_context(context.copy(), handle(message, route))
        # An inline handler's awaitable, in the context the handler started in.
        return _run_in_context(started[0], self._finish(message, route, started[1]))

    async def _run_inline(self, message: Call | Send, route: Route | None, size: int) -> None:
        """Run a plain-function handler in the reader task and write its answer.

        The handler runs in a fresh copy of the context, as in a worker.  If it
        returned an awaitable after all (a plain function wrapping a coroutine),
        the awaiting is handed to a worker with that context: the reader must
        never wait for a handler, which might be waiting for the reader.
        """
        requeued = False
        try:
            onion = self._onion
            if onion is not None:
                # Every layer never_waits: the onion runs to its end in one call (Onion.drive), in a
                # fresh copy of the context; the answer is written outside it, as without
                # middleware.  A handler's awaitable goes to a worker (see _Handler).
                is_send = isinstance(message, Send)
                mctx = MessageContext(
                    "in",
                    "send" if is_send else "call",
                    message.action,
                    message.message_id,
                    message.payload,
                    self,  # type: ignore[arg-type]  # a mixin of Session
                )
                deferred: list[Awaitable[Any]] = []
                handler = _Handler(self, route, is_send, deferred)  # as _exchange() makes them
                context = contextvars.copy_context()
                try:
                    if onion.observers is not None:  # every layer only observes: no coroutine at all
                        result = context.run(onion.observed, mctx, handler.step)
                    else:
                        result = context.run(onion.drive, mctx, handler)
                    if type(result) is Later:  # a layer waited after all (the reader waits with it) or failed
                        result = await _run_in_context(context, result.rest)
                except DroppedByMiddleware:
                    result = DROP
                except Exception as exc:
                    await self._finish_failed(message, True if route is None else route.validate, exc)
                    return
                if deferred:
                    requeued = True
                    self._enqueue((message, route, (context, deferred[0]), size))
                    return
                if result is DROP:
                    result = self._dropped_inbound(mctx, message)
                await self._finish_result(message, True if route is None else route.validate, result)
                return
            if route is None:
                await self._handle_unrouted(message)
                return
            context = contextvars.copy_context()
            ctx = CallContext(
                message.message_id,
                message.action,
                self.connection.protocol,
                self,  # type: ignore[arg-type]  # a mixin of Session
                isinstance(message, Send),
            )
            try:
                result = context.run(self._call_plain, route, message, ctx)
            except Exception as exc:
                await self._finish_failed(message, route.validate, exc)
                return
            if inspect.isawaitable(result):
                requeued = True
                self._enqueue((message, route, (context, result), size))
                return
            await self._finish_result(message, route.validate, result)
        finally:
            if self._limiter is not None:
                self._limiter.release()  # a requeued handler borrows again in its worker
            if not requeued:
                self._active_handlers -= 1
                self._check_drained()

    def _call_plain(self, route: Route, message: Call | Send, ctx: CallContext) -> Any:
        return route.handler(self._prepare(route, message.payload), ctx)

    async def _handle(self, message: Call | Send, route: Route | None) -> None:
        if route is None:
            await self._handle_unrouted(message)
            return
        ctx = CallContext(
            message.message_id,
            message.action,
            self.connection.protocol,
            self,  # type: ignore[arg-type]  # a mixin of Session
            isinstance(message, Send),
        )
        try:
            result = route.handler(self._prepare(route, message.payload), ctx)
            if not route.inline or inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            await self._finish_failed(message, route.validate, exc)
            return
        await self._finish_result(message, route.validate, result)

    async def _handle_through_onion(self, message: Call | Send, route: Route | None) -> None:
        """Handle an inbound CALL or SEND with middleware, in a worker: the onion wraps the handler."""
        assert self._onion is not None
        ctx, handler = self._exchange(message, route, None)
        try:
            result = await self._onion.run(ctx, handler)
        except DroppedByMiddleware:
            result = DROP
        except Exception as exc:
            await self._finish_failed(message, True if route is None else route.validate, exc)
            return
        if result is DROP:
            result = self._dropped_inbound(ctx, message)
        await self._finish_result(message, True if route is None else route.validate, result)

    def _exchange(
        self, message: Call | Send, route: Route | None, deferred: list[Awaitable[Any]] | None
    ) -> tuple[MessageContext, _Handler]:
        """The middleware context of an inbound message and the innermost layer: its handler."""
        is_send = isinstance(message, Send)
        ctx = MessageContext(
            "in",
            "send" if is_send else "call",
            message.action,
            message.message_id,
            message.payload,
            self,  # type: ignore[arg-type]  # a mixin of Session
        )
        return ctx, _Handler(self, route, is_send, deferred)

    def _dropped_inbound(self, ctx: MessageContext, message: Call | Send) -> Literal[NoReply.NO_REPLY]:
        log.debug("%s: middleware dropped %s %s (%s)", self, ctx.kind, message.action, message.message_id)
        return NO_REPLY  # a dropped CALL is left unanswered

    def _unrouted(self, action: str, message_id: str, is_send: bool) -> None:
        """What the innermost layer does without a handler: drop a SEND, refuse a CALL."""
        if is_send:
            log.info("%s: no handler for SEND %s (%s), dropped", self, action, message_id)
            return
        code = ErrorCode.NOT_SUPPORTED if action in self.known_actions else ErrorCode.NOT_IMPLEMENTED
        raise OCPPError(code, f"no handler for {action}")

    async def _finish(self, message: Call | Send, route: Route | None, awaitable: Awaitable[Any]) -> None:
        """Await what an inline handler returned, in a worker, and answer."""
        assert route is not None
        try:
            result = await awaitable
        except Exception as exc:
            await self._finish_failed(message, route.validate, exc)
            return
        await self._finish_result(message, route.validate, result)

    async def _handle_unrouted(self, message: Call | Send) -> None:
        action = message.action
        if isinstance(message, Send):
            log.info("%s: no handler for SEND %s (%s), dropped", self, action, message.message_id)
            return
        code = ErrorCode.NOT_SUPPORTED if action in self.known_actions else ErrorCode.NOT_IMPLEMENTED
        log.info("%s: no handler for %s, answering %s", self, action, code.value)
        await self._answer(
            CallError(message_id=message.message_id, code=code, description=f"no handler for {action}")
        )

    async def _finish_result(self, message: Call | Send, validate: bool, result: Any) -> None:
        if isinstance(message, Send):
            return
        message_id = message.message_id
        if result is NO_REPLY:
            conn = self.connection
            if conn.state is ConnectionState.OPEN:
                conn.no_reply(message_id)
            return
        await self._answer(CallResult(message_id=message_id, payload=result), validate)

    async def _finish_failed(self, message: Call | Send, validate: bool, exc: Exception) -> None:
        action = message.action
        message_id = message.message_id
        if isinstance(exc, OCPPError):
            log.info("%s: handler for %s (%s) raised %s", self, action, message_id, exc)
        else:
            log.error("%s: handler for %s (%s) failed", self, action, message_id, exc_info=exc)
        if not isinstance(message, Send):
            await self._answer(self.connection.error_for(message_id, exc), validate)
        if self.raise_handler_errors and not isinstance(exc, OCPPError):
            raise exc

    @staticmethod
    def _prepare(route: Route, payload: Any) -> Any:
        try:
            return route.prepare(payload)
        except msgspec.ValidationError as exc:
            raise OCPPError(ErrorCode.FORMAT_VIOLATION, str(exc)) from None

    async def _answer(self, answer: CallResult | CallError, validate: bool = True) -> None:
        conn = self.connection
        if conn.state is not ConnectionState.OPEN:
            return  # the connection ended while the handler ran
        try:
            text = conn.send(answer, validate=validate)
        except OutboundPayloadError as exc:
            log.error(
                "%s: the response to %s (%s) is invalid, answering InternalError: %s",
                self,
                exc.action,
                answer.message_id,
                exc.description,
            )
            text = conn.send(conn.error_for(answer.message_id, exc))
        # _write_reply(), inlined: this is every answer's path.
        if self.on_message is not None:
            self._hook("out", text)
        log.debug("%s > %s", self, text)
        try:
            await self.stream.send(text)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.debug("%s: connection gone, reply not written", self)
