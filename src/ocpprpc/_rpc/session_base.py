"""What every part of a :class:`~ocpprpc.Session` shares: its settings, its state, its helpers.

The session's behaviour is split by concern into mixins that inherit in a chain
(inbound dispatch and the handler workers, backpressure, calls out, closing, the
reader, then :class:`~ocpprpc.Session` itself, which sets the attributes in
``__init__``), so a call between concerns, the hot path's included, stays a plain
method call on ``self``.  ``_SessionBase`` declares the attributes they all use
and the helpers they share: starting the session's tasks and writing messages.
The theory of operation is in :mod:`ocpprpc._rpc.session`.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import math
from collections.abc import Awaitable, Callable, Container
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import anyio
import anyio.abc

from .._engine.connection import Connection
from .._engine.events import (
    Call,
    CallError,
    CallResult,
    InvalidResponse,
    Send,
)
from .._ws.transport import CloseReason, ConnectionLost, MessageStream
from .dispatch import Dispatcher, Route
from .middleware import Onion

if TYPE_CHECKING:
    from .backpressure import InboundBudget

log = logging.getLogger("ocpprpc.session")

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

#: An inbound CALL for a worker: the message, its route, for an inline handler
#: that returned an awaitable the context it ran in and that awaitable, and the
#: size of the message's text (for ``max_queued_bytes`` and the inbound budget).
_Work: TypeAlias = tuple[Call | Send, Route | None, tuple[contextvars.Context, Awaitable[Any]] | None, int]


class _Pending:
    """One of our CALLs waiting for its answer (the reader fills ``outcome``).

    ``done`` set with no ``outcome``: the answer is overdue (``expires``, ``anyio.current_time()``).
    """

    __slots__ = ("action", "done", "expires", "outcome")

    def __init__(self, action: str) -> None:
        self.action = action
        self.done = anyio.Event()
        self.outcome: CallResult | CallError | InvalidResponse | ConnectionLost | None = None
        self.expires = math.inf

    def resolve(self, outcome: CallResult | CallError | InvalidResponse | ConnectionLost) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.done.set()


class _SessionBase:
    """The attributes every session mixin uses, and the helpers they share."""

    # -- settings (Session.__init__) -------------------------------------------------------------
    stream: MessageStream
    connection: Connection
    router: Dispatcher | None
    identity: str | None
    data: dict[str, Any]
    call_timeout: float | None
    ordered_handlers: bool
    known_actions: Container[str]
    close_timeout: float
    on_message: MessageHook | None
    raise_handler_errors: bool
    call_watch: CallWatch | None
    unvalidated_actions: AbstractSet[str]
    inbound_budget: InboundBudget | None

    # -- state -------------------------------------------------------------------------------------
    _onion: Onion | None
    _max_handlers: int | anyio.CapacityLimiter
    _max_queued: int
    _max_queued_bytes: int
    _pending: dict[str, _Pending]
    _close_reason: CloseReason | None
    _entered: bool
    _closing: bool
    _shutting_down: bool
    _active_handlers: int
    _active_calls: int
    _drained: anyio.Event | None
    _tasks: int
    _scopes: list[anyio.CancelScope]
    _closed: anyio.Event | None
    _slots: anyio.Semaphore | None
    _inbox: list[_Work]
    _idle: list[anyio.Event]
    _workers: int
    # Session._start(), inside the event loop.
    _limiter: anyio.CapacityLimiter | None
    _max_workers: int
    _task_group: anyio.abc.TaskGroup
    # The call-expiry task (calls.py): when it wakes next, and how to wake it sooner (None: not started).
    _expiry_at: float
    _expiry_wake: anyio.Event | None

    # Backpressure state, as class defaults until first used: nothing per idle connection.
    #: Set by a worker taking a CALL, or by a new call of ours, while the reader is paused.
    _room: anyio.Event | None = None
    _pauses = 0
    _refused = 0
    #: Text bytes of the CALLs in the queue.
    _queued_bytes = 0

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
                try:
                    await func()
                finally:
                    self._scopes.remove(scope)  # tasks that end and start again (call expiry) add none
        finally:
            self._tasks -= 1
            self._check_closed()

    def _check_closed(self) -> None:
        # "Closed" means both: the connection is over and no task of ours still runs.
        if self._closed is not None and self._tasks == 0 and self._close_reason is not None:
            self._closed.set()

    def _check_drained(self) -> None:
        if self._drained is not None and self._active_handlers == 0 and self._active_calls == 0:
            self._drained.set()

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
