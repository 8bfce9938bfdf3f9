"""Backpressure on inbound CALLs: the per-session queue bounds and the :class:`InboundBudget`.

When to pause the reader, and what to do with a CALL that finds the queue full
while the reader may not pause; see "Backpressure" in :mod:`ocpprpc._rpc.session`.
"""

from __future__ import annotations

import logging

import anyio

from .._engine.events import (
    Call,
    CallError,
    Send,
)
from .._engine.rules import ErrorCode
from .inbound import _Inbound

log = logging.getLogger("ocpprpc.session")

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


class _Backpressure(_Inbound):
    """The reader's pause on a full queue or a spent budget, and the refusal of CALLs beyond it."""

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
