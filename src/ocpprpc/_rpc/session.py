"""The RPC session: one sans-IO engine driven over one :class:`MessageStream`.

Theory of operation
-------------------
A :class:`Session` owns one task group for its whole life (``async with
session:``); nothing it starts runs outside it, and leaving the block leaves no
task behind.  In it run:

* exactly one **reader** task: it receives text messages, feeds them to the
  engine and acts on the events: results and errors wake the ``call()`` waiting
  for them, inbound CALLs start handler tasks, bad messages get the reply the
  engine prepared;
* the **handler workers**: long-lived tasks fed by a FIFO queue of inbound
  CALLs, started on demand up to ``max_concurrent_handlers`` (one with
  ``ordered_handlers=True``); CALLs beyond that wait in the queue rather than
  being refused (refusing busy calls made CitrineOS' peers retry in storms;
  the one exception is under "Backpressure" below).  A worker
  that finds the queue empty parks until the reader hands it the next CALL.
  Reusing workers instead of starting a task per CALL is the hot path's biggest
  saving (see bench/README.md, "Transport hot path"); each handler still runs in
  its own copy of the context (:func:`_run_in_context`), as it would in a task
  of its own, so a context variable one handler sets never leaks into the next.
  A *plain-function* handler cannot wait, so it cannot call the peer back and
  keep the reader from delivering the answer: when a worker slot is free and
  nothing is queued, the reader runs it itself (in a fresh context copy, counted
  against the bound) and writes the answer, saving two task switches per CALL.

Each of these tasks runs in a cancel scope of its own, so the session can stop
its tasks (the peer closed, :meth:`Session.close`) without cancelling the
user's code in the ``async with`` body; an *error* in the session's tasks still
cancels the body, as structured concurrency requires.  (Scopes rather than an
inner task group with a runner task: an idle connection then costs one task,
the reader, which matters to a CSMS holding thousands; bench/README.md, W4.)

Backpressure: the reader stops reading while ``max_queued_calls`` CALLs wait
in the queue (every worker busy), and reads on once a worker takes one; the
unread bytes stay in the kernel, whose TCP flow control then stops the peer.
The queue is bounded in bytes as well (``max_queued_bytes``, the text size of
the queued CALLs): a count alone lets a peer that sends large, well-compressed
messages pin hundreds of megabytes (256 CALLs of a few KB each parse into
tens of KB of Python objects apiece).  Either bound pauses the reader, but only
while something is queued: a CALL bigger than the byte bound is still taken
when the queue is empty, so no message size can stall a connection.

Across sessions (a server's stations), an :class:`InboundBudget` bounds the
bytes of CALLs queued or being handled.  A reader pauses on it only while its
session already has a CALL of its own in hand (queued or in a handler), and
reads on when one of its handlers finishes or the budget has room again: a
station with nothing in hand is always read, so a flood never starves a
well-behaved station, and the total stays within the budget plus about one
message per connection.  Nobody is refused or dropped for the budget; the stations that
send most simply wait on TCP.

The checks cost the hot path one truth test of the queue per message (it is
empty whenever handlers keep up).  Pausing the reader has
one danger: a handler (or any task) waiting for the answer to *our* CALL needs
the reader, and that answer sits behind the CALLs we stopped reading.  So the
reader does not pause while one of our calls awaits its answer; it reads on,
and a CALL that finds the queue full meanwhile is answered at once with a
CALLERROR (``InternalError``, "busy"; a SEND is dropped with a warning).
Neither growing the queue nor waiting for the call to time out is safe: the
first is unbounded memory, the second a deadlock until the call timeout (for
ever without one).  OCPP-J allows a peer one CALL in flight, so a peer that
follows it never fills the queue, and only one that pipelines hundreds of
CALLs while we call it is ever refused.

``call()`` runs in the caller's task.  It queues in FIFO order for one of the
engine's outstanding-call slots (OCPP-J allows one CALL in flight per side),
writes the CALL and waits for the reader to hand it the answer.  Writes from
every task go straight to the stream, whose ``send()`` is safe for concurrent
callers (the :class:`MessageStream` contract), so the session takes no lock of
its own.  All timeouts are cancel scopes; every
exit path of ``call()`` (answer, timeout, cancellation, connection loss) ends in
``Connection.abandon_call`` so the engine never keeps a stale slot.

Exception groups: inside, nothing is unwrapped.  The public ``async with``
unwraps a group holding exactly one non-cancellation exception and raises that
exception itself; anything else propagates as the group (DECISIONS.md).
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import logging
import math
import sys
import time
import types
from collections.abc import Awaitable, Callable, Container, Coroutine, Generator, MutableSet, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias, TypeVar, overload

import anyio
import anyio.abc
import msgspec

from .._engine.connection import Connection, ConnectionState
from .._engine.errors import OCPPError, OutboundPayloadError
from .._engine.events import (
    BadMessage,
    Call,
    CallError,
    CallResult,
    CallResultError,
    ConnectionClosed,
    Event,
    InvalidResponse,
    Send,
    TooManyBadMessages,
    UnmatchedResponse,
    Violation,
)
from .._engine.rules import ErrorCode
from .._typed.messages import Request, Response, SendMessage
from .._typed.validation import convert
from .._ws.transport import CloseReason, ConnectionLost, MessageStream
from .dispatch import NO_REPLY, CallContext, Dispatcher, Route
from .groups import exit_close_code, raise_single
from .middleware import DROP, DroppedByMiddleware, MessageContext, Middleware, Onion

__all__ = [
    "DEFAULT_INBOUND_BUDGET",
    "DEFAULT_MAX_QUEUED_BYTES",
    "CallTimeout",
    "InboundBudget",
    "InvalidResponseError",
    "MessageHook",
    "Session",
]

log = logging.getLogger("ocpprpc.session")

_R = TypeVar("_R", bound=Response)

#: ``on_message(direction, text)``: called with every text message received
#: (``"in"``) or about to be written (``"out"``).
MessageHook: TypeAlias = Callable[[Literal["in", "out"], str], None]

#: See :attr:`Session.call_watch`.
CallWatch: TypeAlias = Callable[[str, Any], Callable[[Any], None] | None]

# WebSocket close code (RFC 6455 7.4.1) for a peer that keeps sending garbage.
_PROTOCOL_ERROR = 1002
_INTERNAL_ERROR = 1011


class _Default(enum.Enum):
    TOKEN = enum.auto()


_DEFAULT = _Default.TOKEN


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


#: Bytes of text the CALLs waiting for a handler may hold per session: four messages
#: of the default maximum size (64 KiB).  OCPP-J peers keep one CALL in flight, so only
#: a peer that pipelines ever reaches it, and TCP then holds it back; parsed, the text
#: takes a few times its size, so this keeps a connection's queue to a few MiB.
DEFAULT_MAX_QUEUED_BYTES = 256 * 1024

#: A server's :class:`InboundBudget`: 64 MiB of text, a few hundred MiB parsed.  Honest
#: stations hold one CALL each (a few KB), so ten thousand of them stay far below it;
#: only floods reach it, and then wait on TCP.
DEFAULT_INBOUND_BUDGET = 64 * 1024 * 1024


class InboundBudget:
    """A byte budget for inbound CALLs queued or being handled, shared by sessions (a server's).

    A session takes a CALL's size (its text) when it queues the CALL for a
    worker and gives it back when the handler is done.  A reader pauses on the
    budget only while its session has a CALL of its own in hand (see the
    :mod:`module docstring <ocpprpc._rpc.session>`), so no connection starves and
    the total stays within ``limit`` plus about one message per connection.

    :param limit: bytes of text; ``Server(inbound_budget=...)`` makes one.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the inbound budget must be positive")
        self.limit = limit
        #: Bytes taken now by every session sharing the budget.
        self.used = 0
        # The wake-up events of readers paused on the budget.
        self._waiters: list[anyio.Event] = []

    def __repr__(self) -> str:
        return f"<InboundBudget {self.used}/{self.limit} bytes>"

    @property
    def exhausted(self) -> bool:
        """Whether readers with CALLs of their own queued should pause."""
        return self.used >= self.limit

    def give_back(self, size: int) -> None:
        self.used -= size
        if self._waiters and self.used < self.limit:
            self._wake()

    def _wake(self) -> None:
        """Wake every reader paused on the budget (each checks again whether it may read)."""
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()

    def _wait_with(self, event: anyio.Event) -> None:
        self._waiters.append(event)

    def _forget(self, event: anyio.Event) -> None:
        if event in self._waiters:
            self._waiters.remove(event)


#: Workers per session when a shared :class:`anyio.CapacityLimiter` has no finite bound.
_MAX_WORKERS = 1024

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

#: An inbound CALL for a worker: the message, its route, for an inline handler
#: that returned an awaitable the context it ran in and that awaitable, and the
#: size of the message's text (for ``max_queued_bytes`` and the inbound budget).
_Work: TypeAlias = tuple[Call | Send, Route | None, tuple[contextvars.Context, Awaitable[Any]] | None, int]


class _Pending:
    """One of our CALLs waiting for its answer (the reader fills ``outcome``)."""

    __slots__ = ("action", "done", "outcome")

    def __init__(self, action: str) -> None:
        self.action = action
        self.done = anyio.Event()
        self.outcome: CallResult | CallError | InvalidResponse | ConnectionLost | None = None

    def resolve(self, outcome: CallResult | CallError | InvalidResponse | ConnectionLost) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.done.set()


class Session:
    """One OCPP-J connection at work: calls out, handlers in, one task group.

    :param stream: the transport (a WebSocket, or a memory stream in tests).
    :param connection: the sans-IO engine for this connection (role, protocol,
        codec and limits are its options).
    :param router: handlers for inbound CALLs; without one every CALL is answered
        ``NotImplemented`` (or ``NotSupported``, see *known_actions*).
    :param identity: the charging station identity (for logs and handlers).
    :param data: initial user data (``session.data``); a new dict if omitted.
    :param call_timeout: default seconds to wait for the answer to our CALL,
        counted from when it is written (queueing for a slot is not counted);
        ``None`` waits forever.  30 s is the common default (the ``ocpp`` package,
        ocpp-rpc, OCPP 2.x MessageTimeout examples).
    :param max_concurrent_handlers: how many inbound CALLs are handled at once;
        more are queued, never refused.  Pass a :class:`anyio.CapacityLimiter` to
        share one bound among many sessions.
    :param ordered_handlers: handle inbound CALLs one at a time, in arrival order.
    :param max_queued_calls: inbound CALLs that may wait for a busy handler
        worker; at this many the session stops reading from the peer until a
        worker takes one (TCP then holds the peer back).  While one of our own
        calls awaits its answer it reads on and answers CALLs beyond the bound
        with an ``InternalError`` CALLERROR instead (see the module docstring).
        ``None``: no bound.
    :param max_queued_bytes: the same bound in bytes: the text size of the
        queued CALLs (default 256 KiB).  The reader pauses at it while at least
        one CALL is queued, so a bigger CALL is still taken when none waits.
        ``None``: no bound.
    :param inbound_budget: an :class:`InboundBudget` shared with other sessions
        (a server passes its own): bytes of CALLs queued or being handled across
        all of them.  While it is spent the reader pauses if a CALL of this
        session is queued or being handled; nothing is refused for it.
    :param known_actions: actions this protocol version defines; one of these
        without a handler is answered ``NotSupported``, any other unhandled action
        ``NotImplemented``.  Default: none known.
    :param unvalidated_actions: a set the session fills with the actions whose
        handlers opted out of validation (``validate=False``), for the payload
        codec to consult; a new set if omitted.
    :param close_timeout: seconds allowed for the close handshake (and, by
        default, for a graceful close to drain).
    :param on_message: hook called with each message in and out (a readable
        exchange log); must be fast and must not raise.
    :param raise_handler_errors: re-raise an unexpected handler exception after
        answering ``InternalError``, failing the session (for tests).
    :param middleware: message middleware, outermost first, around every
        inbound and outbound CALL and SEND (:mod:`ocpprpc._rpc.middleware`;
        docs: middleware).  More can be added with :meth:`use`.
    """

    # Backpressure state, as class defaults until first used: nothing per idle connection.
    #: Set by a worker taking a CALL, or by a new call of ours, while the reader is paused.
    _room: anyio.Event | None = None
    _pauses = 0
    _refused = 0
    #: Text bytes of the CALLs in the queue.
    _queued_bytes = 0

    def __init__(
        self,
        stream: MessageStream,
        connection: Connection,
        *,
        router: Dispatcher | None = None,
        identity: str | None = None,
        data: dict[str, Any] | None = None,
        call_timeout: float | None = 30,
        max_concurrent_handlers: int | anyio.CapacityLimiter = 16,
        ordered_handlers: bool = False,
        max_queued_calls: int | None = 256,
        max_queued_bytes: int | None = DEFAULT_MAX_QUEUED_BYTES,
        inbound_budget: InboundBudget | None = None,
        known_actions: Container[str] = frozenset(),
        unvalidated_actions: MutableSet[str] | None = None,
        close_timeout: float = 5,
        on_message: MessageHook | None = None,
        raise_handler_errors: bool = False,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.stream = stream
        self.connection = connection
        self.router = router
        self.identity = identity
        self.data: dict[str, Any] = data if data is not None else {}
        self.call_timeout = call_timeout
        self.ordered_handlers = ordered_handlers
        self.known_actions = known_actions
        self.close_timeout = close_timeout
        self.on_message = on_message
        self.raise_handler_errors = raise_handler_errors
        # None without middleware: the hot paths test this one attribute.
        self._onion: Onion | None = Onion(middleware) if middleware else None
        #: ``watch(action, payload)`` is called as each of our CALLs starts; the
        #: callable it returns (if any) gets the answer's payload when the call
        #: ends (``None`` if it failed).  The CSMS's boot gate uses it to see
        #: TriggerMessage (:mod:`ocpprpc._csms.guard`).
        self.call_watch: CallWatch | None = None
        self.unvalidated_actions: MutableSet[str] = (
            unvalidated_actions if unvalidated_actions is not None else set()
        )
        if router is not None:
            self.unvalidated_actions |= router.unvalidated_actions(connection.protocol)
        if isinstance(max_concurrent_handlers, int) and max_concurrent_handlers < 1:
            raise ValueError("max_concurrent_handlers must be at least 1")
        self._max_handlers = max_concurrent_handlers
        if max_queued_calls is not None and max_queued_calls < 1:
            raise ValueError("max_queued_calls must be at least 1 (or None for no bound)")
        self._max_queued = sys.maxsize if max_queued_calls is None else max_queued_calls
        if max_queued_bytes is not None and max_queued_bytes < 1:
            raise ValueError("max_queued_bytes must be at least 1 (or None for no bound)")
        self._max_queued_bytes = sys.maxsize if max_queued_bytes is None else max_queued_bytes
        self.inbound_budget = inbound_budget
        self._pending: dict[str, _Pending] = {}
        self._close_reason: CloseReason | None = None
        self._entered = False
        # No new work once closing; queued callers fail once shutting down.
        self._closing = False
        self._shutting_down = False
        self._active_handlers = 0
        self._active_calls = 0
        self._drained: anyio.Event | None = None
        # The session's tasks still running (reader and workers), and their cancel scopes.
        self._tasks = 0
        self._scopes: list[anyio.CancelScope] = []
        # Made when first awaited (closed property, a shutdown): one event less per idle connection.
        self._closed: anyio.Event | None = None
        # Made by the first call(): many connections never call (memory, W4 in bench/README.md).
        self._slots: anyio.Semaphore | None = None
        # Inbound CALLs not yet taken by a worker, and the parked workers' wake-up events.
        self._inbox: list[_Work] = []  # bounded by max_queued_calls; a deque costs 0.6 KB even empty
        self._idle: list[anyio.Event] = []
        self._workers = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._start()
        self._spawn(self._reader, "reader")
        return self

    async def run(self, on_open: Callable[[Session], Coroutine[Any, Any, object]] | None = None) -> None:
        """Run the session in the calling task until the connection ends.

        The same as ``async with session:`` around ``await on_open(session)``
        and ``await session.closed.wait()``, except that the reader runs in the
        calling task instead of a task of its own: a server holding thousands of
        mostly idle connections saves a task per connection (W4 in
        bench/README.md).  *on_open*, if given, runs in a task of the session
        while the reader reads, so it may call the peer; an exception it raises
        fails the session, as one from an ``async with`` body would.
        """
        await self._start()
        try:
            if on_open is not None:
                self._task_group.start_soon(self._on_open, on_open, name=f"ocpprpc on_open {self}")
            self._tasks += 1
            await self._scoped(self._reader)  # as _spawn() would, in this task
        except BaseException as exc:
            if not await self.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await self.__aexit__(None, None, None)

    async def _on_open(self, on_open: Callable[[Session], Coroutine[Any, Any, object]]) -> None:
        try:
            await on_open(self)
        except Exception:
            # Like an exception leaving an ``async with`` body: close with 1011 first.
            with anyio.CancelScope(shield=True):
                await self.close(_INTERNAL_ERROR, graceful=False)
            raise

    async def _start(self) -> None:
        if self._entered:
            raise RuntimeError("a Session can be entered only once")
        self._entered = True
        # anyio primitives are made here, inside the event loop that will use them.
        limiter = self._max_handlers
        if self.ordered_handlers:
            self._limiter: anyio.CapacityLimiter | None = None
            self._max_workers = 1
        elif isinstance(limiter, anyio.CapacityLimiter):
            # Shared among sessions: each worker borrows a token per CALL.
            self._limiter = limiter
            tokens = limiter.total_tokens
            self._max_workers = _MAX_WORKERS if math.isinf(tokens) else max(1, min(int(tokens), _MAX_WORKERS))
        else:
            self._limiter = None
            self._max_workers = limiter
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            with anyio.CancelScope(shield=True):
                code = exit_close_code(exc)
                if code is None:
                    await self.close(graceful=True)
                else:
                    await self.close(code, graceful=False)
        finally:
            try:
                suppress = await self._task_group.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                raise_single(group)
                raise
        return suppress

    def _spawn(self, func: Callable[[], Awaitable[None]], role: str) -> None:
        """Start one of the session's tasks (the reader, a worker) in its own cancel scope."""
        self._tasks += 1
        self._task_group.start_soon(self._scoped, func, name=f"ocpprpc {role} {self}")

    async def _scoped(self, func: Callable[[], Awaitable[None]]) -> None:
        try:
            with anyio.CancelScope() as scope:
                if self._shutting_down:
                    return  # stopped before it started
                self._scopes.append(scope)
                await func()
        finally:
            self._tasks -= 1
            self._check_closed()

    def _check_closed(self) -> None:
        # "Closed" means both: the connection is over and no task of ours still runs.
        if self._closed is not None and self._tasks == 0 and self._close_reason is not None:
            self._closed.set()

    @property
    def closed(self) -> anyio.Event:
        """Set once the session has ended: connection closed, handlers finished.

        ``await session.closed.wait()``; then :attr:`close_reason` says how it ended.
        """
        if self._closed is None:
            if not self._entered:
                raise RuntimeError("the session was never started (use 'async with session:')")
            self._closed = anyio.Event()
            self._check_closed()
        return self._closed

    @property
    def close_reason(self) -> CloseReason | None:
        """How the connection ended; ``None`` while it is open."""
        return self._close_reason

    @property
    def protocol(self) -> str:
        """The OCPP subprotocol spoken on this session."""
        return self.connection.protocol

    @property
    def max_queued_calls(self) -> int | None:
        """Inbound CALLs that may wait for a handler worker (``None``: no bound)."""
        return None if self._max_queued == sys.maxsize else self._max_queued

    @property
    def queued_calls(self) -> int:
        """Inbound CALLs waiting for a handler worker (at most ``max_queued_calls``)."""
        return len(self._inbox)

    @property
    def max_queued_bytes(self) -> int | None:
        """Text bytes the CALLs waiting for a handler worker may hold (``None``: no bound)."""
        return None if self._max_queued_bytes == sys.maxsize else self._max_queued_bytes

    @property
    def queued_bytes(self) -> int:
        """Text bytes of the inbound CALLs waiting for a handler worker."""
        return self._queued_bytes

    def use(self, middleware: Middleware) -> Middleware:
        """Add *middleware* as the innermost layer; returns it, so it can decorate.

        Exchanges already under way keep the layers they started with.
        """
        layers = () if self._onion is None else self._onion.layers
        self._onion = Onion((*layers, middleware))
        return middleware

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The message middleware, outermost first."""
        return () if self._onion is None else self._onion.layers

    def __repr__(self) -> str:
        return f"<Session {self.identity or '?'} {self.connection.role.value} {self.protocol}>"

    async def close(
        self,
        code: int = 1000,
        reason: str = "",
        *,
        graceful: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the drain, not the close)
    ) -> None:
        """Close the session and the connection with WebSocket close *code*.

        Graceful (the default): stop dispatching new inbound CALLs (they are left
        unanswered: the connection is about to end, and the peer retries on its
        next connection) and refuse new ``call()``\\ s, then wait up to *timeout*
        (``close_timeout`` by default) for running handlers and our pending or
        already-queued calls to finish; then close.  The reader keeps running
        meanwhile, so answers to our calls still arrive.

        Forced (``graceful=False``): cancel handlers, fail waiting calls with
        :class:`ConnectionLost`, close at once.  A forced close during a graceful
        one cuts the wait short.  Returns when the session has ended.
        """
        if not self._entered:
            raise RuntimeError("the session was never started (use 'async with session:')")
        self._closing = True
        if graceful and not self._shutting_down:
            if self._drained is None:
                self._drained = anyio.Event()
            self._check_drained()
            with anyio.move_on_after(self.close_timeout if timeout is None else timeout):
                await self._drained.wait()
        await self._shutdown(CloseReason(code, reason, by_peer=False))

    def _check_drained(self) -> None:
        if self._drained is not None and self._active_handlers == 0 and self._active_calls == 0:
            self._drained.set()

    async def _shutdown(self, reason: CloseReason, *, peer_ended: bool = False) -> None:
        """Stop everything and close the stream (once); return when the session has ended."""
        if not self._shutting_down:
            self._shutting_down = self._closing = True
            await self._stop(reason, peer_ended)
        # From inside (the reader, a handler) this raises the cancellation at once.
        await self.closed.wait()

    async def _stop(self, reason: CloseReason, peer_ended: bool) -> None:
        if self._drained is not None:
            self._drained.set()
        # Synchronous first, so it all happens even if this task is the reader,
        # whose own scope is being cancelled here.
        for scope in self._scopes:
            scope.cancel()
        self._fail_pending(reason)
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout):
            if peer_ended:
                await self.stream.aclose()
            else:
                await self.stream.close(reason.code, reason.reason)
        self._end(self.stream.close_reason or reason)

    def _fail_pending(self, reason: CloseReason) -> None:
        for pending in self._pending.values():
            pending.resolve(ConnectionLost(reason))

    def _end(self, reason: CloseReason) -> None:
        self._close_reason = reason
        if self.connection.state is ConnectionState.OPEN:
            self.connection.receive_message(None)
            for event in self.connection.events():
                if isinstance(event, ConnectionClosed) and event.unanswered_inbound:
                    log.info("%s: closed with %d CALL(s) unanswered", self, len(event.unanswered_inbound))
        budget = self.inbound_budget
        for _, _, started, size in self._inbox:
            if started is not None and inspect.iscoroutine(started[1]):
                started[1].close()  # never to be awaited; no "never awaited" warning
            if budget is not None:
                budget.give_back(size)
        self._inbox.clear()
        self._queued_bytes = 0
        log.info("%s: closed, %s", self, reason)
        self._check_closed()

    # -- writing ---------------------------------------------------------------------------

    async def _write(self, text: str) -> None:
        """Write one message; :class:`ConnectionLost` if the stream is gone."""
        if self.on_message is not None:
            self._hook("out", text)
        log.debug("%s > %s", self, text)
        try:
            await self.stream.send(text)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ConnectionLost(self.stream.close_reason or self._close_reason) from exc

    async def _write_reply(self, text: str) -> None:
        """Write an answer to the peer; if the connection is gone, there is nobody to tell."""
        try:
            await self._write(text)
        except ConnectionLost:
            log.debug("%s: connection gone, reply not written", self)

    def _hook(self, direction: Literal["in", "out"], text: str) -> None:
        assert self.on_message is not None
        try:
            self.on_message(direction, text)
        except Exception:
            log.exception("%s: on_message hook failed", self)

    # -- calling out -----------------------------------------------------------------------

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
        ctx = MessageContext("out", "call", action, message_id, payload, self)

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
            with anyio.move_on_after(math.inf if answer_timeout is None else answer_timeout) as scope:
                await self._write(text)
                await pending.done.wait()
        finally:
            del self._pending[message_id]
            if conn.abandon_call(message_id):
                log.debug("%s: abandoned %s %s", self, action, message_id)
        outcome = pending.outcome
        if outcome is None:
            assert scope.cancelled_caught and answer_timeout is not None
            log.warning("%s: no answer to %s (%s) within %g s", self, action, message_id, answer_timeout)
            raise CallTimeout(action, message_id, answer_timeout)
        if isinstance(outcome, ConnectionLost):
            raise outcome
        return outcome

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
        ctx = MessageContext("out", "send", action, conn.new_send(action, None).message_id, payload, self)

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

    async def _reader(self) -> None:
        stream = self.stream
        conn = self.connection
        inbox = self._inbox
        budget = self.inbound_budget
        try:
            while True:
                if (inbox or (budget is not None and budget.used >= budget.limit)) and self._full():
                    await self._make_room()
                text = await stream.receive()
                if self.on_message is not None:
                    self._hook("in", text)
                log.debug("%s < %s", self, text)
                conn.receive_message(text)
                for event in conn.events():
                    # The hot events inline (no coroutine per message); the rest below.
                    if isinstance(event, (Call, Send)):
                        size = len(text)
                        route = self._dispatch(event, size)
                        if route is not _QUEUED:
                            if route is _REFUSED:
                                await self._refuse(event)
                            else:
                                await self._run_inline(event, route, size)
                    elif isinstance(event, (CallResult, CallError)):
                        pending = self._pending.get(event.message_id)
                        if pending is not None:
                            pending.resolve(event)
                    else:
                        await self._on_event(event)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        reason = stream.close_reason or CloseReason(1006, "connection lost")
        if not self._shutting_down:
            log.info("%s: connection ended by the peer: %s", self, reason)
        await self._shutdown(reason, peer_ended=True)

    async def _on_event(self, event: Event) -> None:
        match event:
            # Call, Send, CallResult and CallError are handled inline by the reader.
            case InvalidResponse(message_id=message_id):
                log.warning(
                    "%s: invalid answer to %s (%s): %s", self, event.action, message_id, event.description
                )
                pending = self._pending.get(message_id)
                if pending is not None:
                    pending.resolve(event)
                if event.reply is not None:
                    await self._write_reply(event.reply)
            case BadMessage(violation=Violation.EMPTY):
                log.debug("%s: ignored an empty message", self)
            case BadMessage():
                log.warning(
                    "%s: bad message from the peer (%s): %s", self, event.violation.value, event.description
                )
                if event.reply is not None:
                    await self._write_reply(event.reply)
            case UnmatchedResponse(late=True):
                log.info("%s: dropped a late answer to %s (%s)", self, event.action, event.message_id)
            case UnmatchedResponse():
                log.warning("%s: dropped an answer to an unknown message id %s", self, event.message_id)
            case CallResultError():
                log.warning(
                    "%s: the peer could not process our answer to %s (%s): %s %s",
                    self,
                    event.action,
                    event.message_id,
                    event.wire_code,
                    event.description,
                )
            case TooManyBadMessages():
                log.warning("%s: %d bad messages in a row; closing", self, event.count)
                await self._shutdown(CloseReason(_PROTOCOL_ERROR, "too many bad messages", by_peer=False))
            case _:  # pragma: no cover - the engine emits no other event here
                log.debug("%s: ignored %r", self, event)

    # -- handling inbound calls ------------------------------------------------------------

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
            and self._onion is None  # middleware may wait: never in the reader
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

    def _full(self) -> bool:
        """Whether the reader should pause: a bound of its own, or the shared budget, is reached.

        The budget stops only a session with a CALL of its own queued or being
        handled: one with nothing in hand is always read (nobody starves).
        """
        inbox = self._inbox
        if inbox and (len(inbox) >= self._max_queued or self._queued_bytes >= self._max_queued_bytes):
            return True
        budget = self.inbound_budget
        return budget is not None and budget.used >= budget.limit and self._active_handlers > 0

    async def _make_room(self) -> None:
        """Backpressure: the queue is full or the budget spent; stop reading until that changes.

        Not while one of our calls awaits its answer, which the reader must
        deliver (the module docstring); a call made while paused wakes it.
        """
        if self._pending:
            return
        self._pauses += 1
        budget = self.inbound_budget
        spent = budget is not None and budget.exhausted
        (log.warning if self._pauses == 1 else log.debug)(
            "%s: %d CALLs waiting for a handler (%d bytes%s); not reading from the peer until one is taken",
            self,
            len(self._inbox),
            self._queued_bytes,
            f"; inbound budget spent: {budget.used}/{budget.limit}" if spent and budget else "",
        )
        while self._full() and not self._pending:
            room = self._room = anyio.Event()
            if budget is None:
                await room.wait()
                continue
            # Woken by a worker of ours taking a CALL, a call of ours, or the budget freed.
            budget._wait_with(room)
            try:
                await room.wait()
            finally:
                budget._forget(room)
        self._room = None

    async def _refuse(self, message: Call | Send) -> None:
        """Answer a CALL that found the queue full while the reader could not pause."""
        self._refused += 1
        level = logging.WARNING if self._refused == 1 else logging.INFO
        queued = len(self._inbox)
        if isinstance(message, Send):
            log.log(
                level,
                "%s: %d CALLs waiting for a handler; dropped SEND %s (%s)",
                self,
                queued,
                message.action,
                message.message_id,
            )
            return
        log.log(
            level,
            "%s: %d CALLs waiting for a handler; refused %s (%s) as busy",
            self,
            queued,
            message.action,
            message.message_id,
        )
        await self._answer(
            CallError(
                message_id=message.message_id,
                code=ErrorCode.INTERNAL_ERROR,
                description=f"busy: {queued} calls are waiting to be handled (OCPP-J allows one at a time)",
            )
        )

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
            if route is None:
                await self._handle_unrouted(message)
                return
            context = contextvars.copy_context()
            ctx = CallContext(
                message.message_id, message.action, self.connection.protocol, self, isinstance(message, Send)
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
            message.message_id, message.action, self.connection.protocol, self, isinstance(message, Send)
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
        """Handle an inbound CALL or SEND with middleware: the onion wraps the handler."""
        assert self._onion is not None
        is_send = isinstance(message, Send)
        ctx = MessageContext(
            "in", "send" if is_send else "call", message.action, message.message_id, message.payload, self
        )

        async def handler(ctx: MessageContext) -> Any:
            if route is None:
                return self._unrouted(ctx.action, ctx.message_id, is_send)
            call_ctx = CallContext(ctx.message_id, ctx.action, self.connection.protocol, self, is_send)
            result = route.handler(self._prepare(route, ctx.payload), call_ctx)
            if inspect.isawaitable(result):
                result = await result
            return result

        validate = True if route is None else route.validate
        try:
            result = await self._onion.run(ctx, handler)
        except DroppedByMiddleware:
            result = DROP
        except Exception as exc:
            await self._finish_failed(message, validate, exc)
            return
        if result is DROP:
            log.debug("%s: middleware dropped %s %s (%s)", self, ctx.kind, message.action, message.message_id)
            result = NO_REPLY  # a dropped CALL is left unanswered
        await self._finish_result(message, validate, result)

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
