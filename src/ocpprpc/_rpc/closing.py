"""How a session ends: graceful and forced close, the shutdown, the end of the engine."""

from __future__ import annotations

import inspect
import logging

import anyio

from .._engine.connection import ConnectionState
from .._engine.events import (
    ConnectionClosed,
)
from .._ws.transport import CloseReason, ConnectionLost
from .calls import _Calls

log = logging.getLogger("ocpprpc.session")


class _Closing(_Calls):
    """Closing the session: draining, stopping its tasks, closing the stream, ending the engine."""

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
