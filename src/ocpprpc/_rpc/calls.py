"""Calls out: ``call()`` and ``send()``, the outstanding-call slots, the answers' unpacking."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, TypeVar, overload

import anyio
import msgspec

from .._engine.errors import OCPPError
from .._engine.events import (
    CallError,
    CallResult,
    InvalidResponse,
)
from .._engine.rules import ErrorCode
from .._typed.messages import Request, Response, SendMessage
from .._typed.validation import convert
from .._ws.transport import ConnectionLost
from .backpressure import _Backpressure
from .middleware import DROP, DroppedByMiddleware, MessageContext
from .session_base import _DEFAULT, _Default, _Pending

log = logging.getLogger("ocpprpc.session")

_R = TypeVar("_R", bound=Response)


class CallTimeout(TimeoutError):
    """The peer did not answer our CALL in time.

    The CALL's slot is freed; an answer that still arrives is logged and dropped.
    """

    def __init__(self, action: str, message_id: str, timeout: float) -> None:
        self.action = action
        self.message_id = message_id
        self.timeout = timeout
        super().__init__(f"no answer to {action} ({message_id}) within {timeout:g} s")


class InvalidResponseError(Exception):
    """The peer answered our CALL, but the answer could not be processed.

    Raised in ``call()`` when the CALLRESULT failed validation (on OCPP 2.1 the
    session has already told the peer with a CALLRESULTERROR), a CALLERROR was
    malformed, or a dict answer did not convert to the request's response type.
    """

    def __init__(
        self,
        action: str,
        message_id: str,
        code: ErrorCode,
        description: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.action = action
        self.message_id = message_id
        self.code = code
        self.description = description
        self.details: dict[str, Any] = details if details is not None else {}
        super().__init__(f"invalid answer to {action} ({message_id}): {code.value}: {description}")


class _Calls(_Backpressure):
    """Our CALLs and SENDs to the peer, through the middleware if there is any."""

    @overload
    async def call(
        self,
        request: Request[_R],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer, see docstring)
        validate: bool = True,
        message_id: str | None = None,
    ) -> _R: ...

    @overload
    async def call(
        self,
        action: str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer, see docstring)
        validate: bool = True,
        message_id: str | None = None,
    ) -> Any: ...

    async def call(
        self,
        request: Request[Any] | str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer, see docstring)
        validate: bool = True,
        message_id: str | None = None,
    ) -> Any:
        """Send a CALL and return the answer's payload.

        Typed: ``await session.call(BootNotificationRequest(...))`` returns a
        ``BootNotificationResponse`` (a ``dict`` answer is converted).  Untyped:
        ``await session.call("DataTransfer", {...})`` returns plain JSON values
        (a ``dict``), whether or not the answer was validated.

        :param timeout: seconds to wait for the answer once the CALL is written;
            the session's ``call_timeout`` by default, ``None`` for no limit.
            Wrap the call in your own cancel scope to bound the queueing too.
        :param validate: ``False`` skips schema validation of this CALL and of its answer.
        :param message_id: the CALL's message id (an idempotency key: a retry of
            the same message keeps its id); a fresh UUID4 by default.  At most 36
            characters, and not the id of a CALL still awaiting its answer.
        :raises OCPPError: the peer answered with a CALLERROR.
        :raises CallTimeout: no answer in time.
        :raises InvalidResponseError: the answer could not be processed.
        :raises ConnectionLost: the connection ended first (raised at once, not at the timeout).
        :raises OutboundPayloadError: the payload failed validation; nothing was sent.
        """
        response_type: type[Any] | None
        if isinstance(request, str):
            action = request
            response_type = None
            if payload is None:
                payload = {}
        else:
            action = type(request).__ocpp_action__
            response_type = type(request).__ocpp_response__
            payload = request
        if self._closing:
            raise ConnectionLost(self._close_reason, "the session is closing")
        limit = self.call_timeout if timeout is _DEFAULT else timeout
        watch = self.call_watch
        done = None if watch is None else watch(action, payload)
        answer: Any = None
        self._active_calls += 1
        try:
            if self._onion is not None:
                answer = await self._call_through_onion(
                    action, payload, response_type, limit, validate, message_id
                )
                return answer
            slots = self._slots
            if slots is None:
                slots = self._make_slots()
            async with slots:
                outcome = await self._call_in_slot(action, payload, limit, validate, message_id)
            answer = self._unpack(outcome, response_type)
        finally:
            self._active_calls -= 1
            self._check_drained()
            if done is not None:
                done(answer)
        return answer

    def _make_slots(self) -> anyio.Semaphore:
        # fast_acquire: no trip through the event loop when uncontended (the common case).
        slots = self._slots = anyio.Semaphore(self.connection.max_outstanding_calls, fast_acquire=True)
        return slots

    async def _call_through_onion(
        self,
        action: str,
        payload: Any,
        response_type: type[Any] | None,
        answer_timeout: float | None,
        validate: bool,
        message_id: str | None,
    ) -> Any:
        """``call()`` with middleware: the onion wraps the write and the wait for the answer."""
        assert self._onion is not None
        if message_id is None:
            message_id = self.connection.new_call(action, None).message_id  # known to the middleware
        ctx = MessageContext("out", "call", action, message_id, payload, self)  # type: ignore[arg-type]  # a mixin of Session

        async def send_and_wait(ctx: MessageContext) -> Any:
            slots = self._slots
            if slots is None:
                slots = self._make_slots()
            async with slots:
                ctx.sent_at = time.perf_counter()
                outcome = await self._call_in_slot(
                    ctx.action, ctx.payload, answer_timeout, validate, ctx.message_id
                )
            return self._unpack(outcome, response_type)

        try:
            answer = await self._onion.run(ctx, send_and_wait)
        except DroppedByMiddleware as exc:
            raise self._dropped(exc, ctx) from None
        if answer is DROP:
            raise self._dropped(DroppedByMiddleware(), ctx)
        if response_type is not None and not isinstance(answer, response_type):
            # A middleware answered with a dict: the caller of a typed call gets its type.
            answer = convert(msgspec.to_builtins(answer), response_type)
        return answer

    def _dropped(self, exc: DroppedByMiddleware, ctx: MessageContext) -> DroppedByMiddleware:
        if exc.action is None:
            exc.action = ctx.action
            exc.message_id = ctx.message_id
        log.debug("%s: middleware dropped our %s %s (%s)", self, ctx.kind, ctx.action, ctx.message_id)
        return exc

    async def _call_in_slot(
        self,
        action: str,
        payload: Any,
        answer_timeout: float | None,
        validate: bool,
        message_id: str | None = None,
    ) -> CallResult | CallError | InvalidResponse:
        if self._shutting_down:
            raise ConnectionLost(self._close_reason)
        conn = self.connection
        event = conn.new_call(action, payload, message_id=message_id)
        message_id = event.message_id
        text = conn.send(event, validate=validate)
        pending = self._pending[message_id] = _Pending(action)
        if self._room is not None:
            self._room.set()  # a paused reader must read on: this answer will be behind
        try:
            await self._write(text)
            if answer_timeout is not None and pending.outcome is None:
                self._expire_at(pending, anyio.current_time() + answer_timeout)
            await pending.done.wait()
        finally:
            del self._pending[message_id]
            if conn.abandon_call(message_id):
                log.debug("%s: abandoned %s %s", self, action, message_id)
        outcome = pending.outcome
        if outcome is None:
            assert answer_timeout is not None
            log.warning("%s: no answer to %s (%s) within %g s", self, action, message_id, answer_timeout)
            raise CallTimeout(action, message_id, answer_timeout)
        if isinstance(outcome, ConnectionLost):
            raise outcome
        return outcome

    def _expire_at(self, pending: _Pending, when: float) -> None:
        """Fail *pending* with :class:`CallTimeout` at *when* (``anyio.current_time()``: the event
        loop's clock, so a test's mock clock governs call timeouts too).

        One task per session keeps every deadline (:meth:`_expire_calls`), where a cancel scope
        per call cost a timer handle and about a tenth of a station's CPU per call.  Calls with the same
        timeout expire in the order they were made, so a new one rarely wakes the task.
        """
        pending.expires = when
        if when < self._expiry_at:
            self._expiry_at = when
            wake = self._expiry_wake
            if wake is None:
                self._expiry_wake = anyio.Event()
                self._spawn(self._expire_calls, "call expiry")
            else:
                wake.set()

    async def _expire_calls(self) -> None:
        """Wake at the earliest deadline of our calls waiting for an answer, and fail the overdue ones."""
        while True:
            earliest = self._expiry_at = self._fail_overdue(anyio.current_time())
            if earliest == math.inf:
                # Nothing waits: end, and let the next call with a timeout start the task again
                # (a CSMS that once called a station keeps no task per station for it).
                self._expiry_wake = None
                return
            wake = self._expiry_wake
            assert wake is not None
            if wake.is_set():
                wake = self._expiry_wake = anyio.Event()
            with anyio.CancelScope(deadline=earliest):
                await wake.wait()

    def _fail_overdue(self, now: float) -> float:
        """Fail the calls overdue at *now*; the earliest deadline left (a function of its own, so
        the waiting task keeps no reference to a call and its answer)."""
        earliest = math.inf
        for pending in self._pending.values():  # at most max_outstanding_calls of them
            expires = pending.expires
            if expires <= now:
                pending.done.set()  # no outcome: timed out
            elif expires < earliest:
                earliest = expires
        return earliest

    def _unpack(
        self, outcome: CallResult | CallError | InvalidResponse, response_type: type[Any] | None
    ) -> Any:
        if isinstance(outcome, CallResult):
            result = outcome.payload
            if response_type is None:
                # An untyped call gets plain JSON values back, validated or not.
                return msgspec.to_builtins(result) if isinstance(result, msgspec.Struct) else result
            if isinstance(result, response_type):
                return result
            try:
                if isinstance(result, msgspec.Struct):
                    result = msgspec.to_builtins(result)
                return convert(result, response_type)
            except msgspec.ValidationError as exc:
                raise InvalidResponseError(
                    outcome.action or "", outcome.message_id, ErrorCode.FORMAT_VIOLATION, str(exc)
                ) from None
        if isinstance(outcome, CallError):
            raise OCPPError(outcome.code, outcome.description, outcome.details)
        raise InvalidResponseError(
            outcome.action, outcome.message_id, outcome.code, outcome.description, outcome.details
        )

    async def send(
        self, message: SendMessage | str, payload: Any = None, /, *, validate: bool = True
    ) -> None:
        """Send an OCPP 2.1 SEND: an unconfirmed message, never answered.

        ``send(SomeSendMessage(...))`` or ``send("Action", {...})``.

        :raises LocalProtocolError: the protocol has no SEND (1.6, 2.0.1).
        :raises ConnectionLost: the session is closed or closing.
        """
        if isinstance(message, str):
            action = message
            if payload is None:
                payload = {}
        else:
            action = type(message).__ocpp_action__
            payload = message
        if self._closing:
            raise ConnectionLost(self._close_reason, "the session is closing")
        conn = self.connection
        if self._onion is not None:
            await self._send_through_onion(action, payload, validate)
            return
        text = conn.send(conn.new_send(action, payload), validate=validate)
        await self._write(text)

    async def _send_through_onion(self, action: str, payload: Any, validate: bool) -> None:
        assert self._onion is not None
        conn = self.connection
        ctx = MessageContext("out", "send", action, conn.new_send(action, None).message_id, payload, self)  # type: ignore[arg-type]  # a mixin of Session

        async def write(ctx: MessageContext) -> None:
            text = conn.send(
                conn.new_send(ctx.action, ctx.payload, message_id=ctx.message_id), validate=validate
            )
            ctx.sent_at = time.perf_counter()
            await self._write(text)

        try:
            result = await self._onion.run(ctx, write)
        except DroppedByMiddleware as exc:
            raise self._dropped(exc, ctx) from None
        if result is DROP:
            raise self._dropped(DroppedByMiddleware(), ctx)

    # -- reading ---------------------------------------------------------------------------
