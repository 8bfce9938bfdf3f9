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

import logging
import math
import sys
from collections.abc import Callable, Container, Coroutine, Mapping, MutableSet, Sequence
from collections.abc import Set as AbstractSet
from types import TracebackType
from typing import Any, Self

import anyio

from .._engine.connection import Connection
from .._ws.transport import CloseReason, MessageStream
from .backpressure import DEFAULT_INBOUND_BUDGET, DEFAULT_MAX_QUEUED_BYTES, InboundBudget
from .calls import CallTimeout, InvalidResponseError
from .dispatch import Dispatcher
from .groups import exit_close_code, raise_single
from .inbound import _MAX_WORKERS
from .middleware import Middleware, Onion
from .reader import _Reader

# Re-exported: the station, the CSMS's guard and the tests import these from here.
from .session_base import _DEFAULT as _DEFAULT
from .session_base import _INTERNAL_ERROR, MessageHook, _Pending, _Work
from .session_base import CallWatch as CallWatch
from .session_base import _Default as _Default

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


class Session(_Reader):
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
        codec to consult; a new set if omitted.  An immutable set must hold them
        all already (a server passes its router's, shared by its sessions).
    :param close_timeout: seconds allowed for the close handshake (and, by
        default, for a graceful close to drain).
    :param on_message: hook called with each message in and out (a readable
        exchange log); must be fast and must not raise.
    :param raise_handler_errors: re-raise an unexpected handler exception after
        answering ``InternalError``, failing the session (for tests).
    :param middleware: message middleware, outermost first, around every
        inbound and outbound CALL and SEND (:mod:`ocpprpc._rpc.middleware`;
        docs: middleware).  More can be added with :meth:`use`.
    :param route: the pattern of the URL route a CSMS accepted the station on
        (:class:`~ocpprpc.Route`; docs: routing), ``None`` without routes.
    :param params: the URL path parameters of that route (``identity`` included).
    """

    # The session's own state in slots: with over 30 attributes CPython gives up sharing the
    # keys of instance dicts, and the dict cost 1.6 KB per idle connection (bench/README.md,
    # "Idle connections and the garbage collector").  The mixins declare no slots, so an
    # instance still has a ``__dict__`` (and weak references) for anything else set on it,
    # made only when something is.
    __slots__ = (
        "_active_calls",
        "_active_handlers",
        "_close_reason",
        "_closed",
        "_closing",
        "_drained",
        "_entered",
        "_expiry_at",
        "_expiry_wake",
        "_idle",
        "_inbox",
        "_limiter",
        "_max_handlers",
        "_max_queued",
        "_max_queued_bytes",
        "_max_workers",
        "_onion",
        "_pauses",
        "_pending",
        "_queued_bytes",
        "_refused",
        "_room",
        "_scopes",
        "_shutting_down",
        "_slots",
        "_state",
        "_task_group",
        "_tasks",
        "_workers",
        "call_timeout",
        "call_watch",
        "close_timeout",
        "connection",
        "data",
        "identity",
        "inbound_budget",
        "known_actions",
        "on_message",
        "ordered_handlers",
        "params",
        "raise_handler_errors",
        "route",
        "router",
        "stream",
        "unvalidated_actions",
    )

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
        unvalidated_actions: AbstractSet[str] | None = None,
        close_timeout: float = 5,
        on_message: MessageHook | None = None,
        raise_handler_errors: bool = False,
        middleware: Sequence[Middleware] = (),
        route: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.stream = stream
        self.connection = connection
        # Class-level defaults in the mixins, which the slots above shadow.
        self._room = None
        self._queued_bytes = self._pauses = self._refused = 0
        self._state = None
        #: The pattern of the CSMS route this station connected on (``None``: no routing).
        self.route = route
        #: The URL path parameters of that route, ``identity`` included (empty: no routing).
        self.params: Mapping[str, str] = params if params is not None else {}
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
        self.unvalidated_actions: AbstractSet[str] = (
            unvalidated_actions if unvalidated_actions is not None else set()
        )
        if router is not None:
            opted_out = router.unvalidated_actions(connection.protocol)
            if not opted_out <= self.unvalidated_actions:
                if not isinstance(self.unvalidated_actions, MutableSet):
                    # Adding to a copy would leave the codec's set without them: refuse.
                    missing = sorted(opted_out - self.unvalidated_actions)
                    raise ValueError(
                        f"unvalidated_actions is immutable and lacks the router's opt-outs {missing}"
                    )
                self.unvalidated_actions |= opted_out
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
        # Our calls' deadlines are kept by one task, started by the first call with a timeout.
        self._expiry_at = math.inf
        self._expiry_wake: anyio.Event | None = None
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
            self._tasks += 1
            if on_open is not None:
                self._task_group.start_soon(self._on_open, on_open, name=f"ocpprpc on_open {self}")
                await self._scoped(self._reader)  # as _spawn() would, in this task
            else:
                # Every other task of the group is one that stopping cancels anyway, so the
                # group's own scope stops the reader: one cancel scope less per idle connection.
                scope = self._task_group.cancel_scope
                self._scopes.append(scope)
                try:
                    await self._reader()
                finally:
                    self._scopes.remove(scope)
                    self._tasks -= 1
                    self._check_closed()
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

    #: Set by a server with ``session_state``; made on first use otherwise.
    _state: dict[str, Any] | None

    @property
    def state(self) -> dict[str, Any]:
        """State that outlives the connection: the same dict when the identity reconnects.

        On a :class:`~ocpprpc.Server` built with ``session_state`` (docs:
        operations), the server hands every session of one identity the same
        dict while it stays connected and for ``ttl`` seconds after it leaves.
        Elsewhere it is this session's own dict (like :attr:`data`, which is
        always per connection).
        """
        if self._state is None:
            self._state = {}
        return self._state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._state = value

    @property
    def inbound_in_flight(self) -> int:
        """The peer's CALLs and SENDs being handled or waiting for a handler worker."""
        return self._active_handlers

    @property
    def outbound_in_flight(self) -> int:
        """Our ``call()``s under way: waiting for a call slot, on the wire or awaiting the answer."""
        return self._active_calls

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
