"""The supervisor: connect, run a session until it ends, back off, reconnect; and the station's end."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import anyio
import anyio.abc

from .._options.policies import PERMANENT_HANDSHAKE_STATUSES
from .._ws.errors import HandshakeError, HandshakeRejected
from .._ws.handshake import open_websocket_with
from .._ws.keepalive import keepalive
from .._ws.transport import CloseReason, ConnectionLost
from .._ws.websocket import WebSocketStream
from .calls import _Calls
from .client import station_session
from .events import (
    CallDropped,
    Closed,
    Connected,
    Connecting,
    Disconnected,
    GaveUp,
    Reconnecting,
    StationState,
)

log = logging.getLogger("ocpprpc.station")


class _ConnectionLoop(_Calls):
    """Keeps a connection open: one session at a time, reconnecting with backoff until the station ends."""

    def _finish(self, gave_up: GaveUp | None) -> None:
        """The station is over: fail what is queued, publish the end, close event streams."""
        if self._state is StationState.CLOSED:
            return
        self._gave_up = gave_up
        self._set_state(StationState.CLOSED)
        error = ConnectionLost(None, self._closed_message())
        for lane in (self._triggered, self._outbox):
            while lane:
                item = lane.popleft()
                item.fail(error)
                self._emit(CallDropped(item.action, item.message_id, error))
        if self._durable:
            # Not dropped: they stay in the store and go first on the next start.
            log.info("%s: %d durable message(s) stay stored for the next start", self, len(self._durable))
            kept = self._kept_error()
            while self._durable:
                self._durable.popleft().fail(kept)
        if gave_up is not None:
            self._emit(gave_up)
        self._emit(Closed(self._closed_message()))
        self._wakeup.set()
        for subscriber in self._subscribers:
            subscriber.close()
        self._subscribers.clear()

    async def _supervise(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with self._supervisor_scope:
                await self._reconnect_loop(task_status)
        finally:
            self._finish(None)  # a no-op after close() or a give-up; else (cancelled) the end
            self._supervisor_done.set()

    async def _reconnect_loop(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        backoff = self.reconnect
        started = False
        if backoff is not None and backoff.retry_first_connect:
            task_status.started()
            started = True
        attempt = 0
        while not self._stopping:
            self._set_state(StationState.CONNECTING)
            self._emit(Connecting(attempt, self.url))
            error: BaseException | None = None
            try:
                stream = await open_websocket_with(
                    self.url,
                    self.identity,
                    self.websocket_options,
                    protocols=self._protocols,
                    **self._connect_extras,
                )
                stream.send_timeout = self.websocket_options.send_timeout
            except HandshakeRejected as exc:
                if exc.status in PERMANENT_HANDSHAKE_STATUSES:
                    why = (
                        f"the CSMS answered the upgrade with HTTP {exc.status}"
                        f" ({_STATUS_MEANING.get(exc.status, 'refused')}); retrying cannot change that"
                    )
                    log.error("%s: %s", self, why)
                    if not started:
                        raise
                    self._finish(GaveUp(exc, why))
                    return
                error = exc
            except (HandshakeError, OSError) as exc:
                error = exc
            else:
                opened = anyio.current_time()
                # Entering the station returns once the first connection is open.
                await self._run_connection(stream, None if started else task_status.started)
                started = True
                # Only a connection that lasted starts the count again (Backoff.stable_after).
                if backoff is None or anyio.current_time() - opened >= backoff.stable_after:
                    attempt = 0
            if error is not None:
                log.info("%s: connecting failed: %s", self, error)
                if not started:
                    raise error
            if self._stopping:
                break
            attempt += 1
            if backoff is None:
                self._finish(GaveUp(error, "reconnecting is off"))
                return
            if backoff.max_attempts is not None and attempt > backoff.max_attempts:
                why = f"{backoff.max_attempts} reconnect attempt(s) in a row failed"
                log.error("%s: %s; giving up", self, why)
                self._finish(GaveUp(error, why))
                return
            delay = backoff.delay(attempt)
            self._set_state(StationState.RECONNECTING)
            self._emit(Reconnecting(attempt, delay, error))
            await anyio.sleep(delay)

    async def _run_connection(self, stream: WebSocketStream, on_open: Callable[[], None] | None) -> None:
        """Run a session on *stream* until the connection ends."""
        try:
            session = station_session(
                stream,
                identity=self.identity,
                router=self.router,
                validation=self.validation,
                options=self.session_settings,
                data=self.data,
                on_message=self._on_message,
                **self._session_extras,
            )
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        protocol = session.protocol
        if self._protocol is None:
            # Pinned: every later connection offers only this version.
            self._protocol = protocol
            self._protocols = (protocol,)
        opened = False
        try:
            async with session, keepalive(stream, self.keepalive), anyio.create_task_group() as senders:
                self.connections += 1
                self._session = session
                self._set_state(StationState.OPEN)
                log.info("%s: connected to %s, speaking %s", self, self.url, protocol)
                self._emit(Connected(protocol))
                opened = True
                if on_open is not None:
                    on_open()
                senders.start_soon(self._serve_outbox, session, name=f"ocpprpc outbox {self.identity}")
                try:
                    await session.closed.wait()
                finally:
                    self._session = None
                    senders.cancel_scope.cancel()
        finally:
            # Also when the station is closing (the supervisor is cancelled): every Connected
            # has its Disconnected.
            if opened:
                reason = session.close_reason or CloseReason(1006, "connection lost")
                log.info("%s: disconnected: %s", self, reason)
                self._drop_triggered(ConnectionLost(reason, "the connection that triggered it ended"))
                self._emit(Disconnected(reason))

    def _on_message(self, direction: Literal["in", "out"], text: str) -> None:
        if direction == "out":
            if self._in_flight is not None and text.startswith(self._in_flight_prefix):
                self._in_flight.sent = True
            elif self._triggered and text.startswith(("[3,", "[4,")):
                self._reply_written(text)
        if self.on_message is not None:
            self.on_message(direction, text)

    def _reply_written(self, text: str) -> None:
        """The answer to a CSMS CALL is being written: calls it triggered may follow it now."""
        for item in self._triggered:
            if item.after_reply is not None and text.startswith(f'"{item.after_reply}"', 3):
                item.after_reply = None
                self._wakeup.set()

    def _drop_triggered(self, error: BaseException) -> None:
        """Triggered calls answer one connection's request: they end with it, unsent."""
        while self._triggered:
            self._drop_triggered_item(self._triggered.popleft(), error)


_STATUS_MEANING = {401: "bad credentials", 403: "forbidden", 404: "unknown station"}
