"""A charging station that stays connected: reconnects, an offline outbox, a boot gate.

Why a :class:`Station` and not ``connect(..., reconnect=...)``: :func:`connect`
yields a :class:`Session`, and a session *is* one connection: its
``close_reason``, its ``closed`` event, its engine and its failing calls all
describe that one link.  A station that reconnects needs an object that
outlives its links: it keeps the router, the user ``data`` dict, the
negotiated protocol and the queue of calls not yet delivered, and it puts a
fresh session under them after every reconnect.  Making ``connect()`` yield
that object would give the same name two contracts.

Theory of operation
-------------------
``async with Station(...)`` starts one *supervisor* task.  It connects, runs
a session until that connection ends, waits a backoff delay (full jitter,
:class:`~ocpprpc.Backoff`) and connects again, until the station is closed,
``max_attempts`` reconnects in a row failed, or the CSMS answered the upgrade
with a status that retrying cannot change (401, 403, 404).  The first
connection's subprotocol is pinned: later connections offer only it, so the
application never finds its station speaking another OCPP version mid-life.

Every :meth:`Station.call` goes through the *outbox*, a bounded FIFO.  While a
connection is open one *sender* task per connection takes calls from it in
order and delivers each through the session (OCPP allows one CALL in flight);
while disconnected, calls wait there and go out in order after the reconnect.
Each queued call gets its message id when it is queued, and keeps it through
every retry and reconnect, so a CSMS can recognise a repeat.

A call whose CALL was written and whose link then dropped fails with
:class:`ConnectionLost` at once, because the station cannot know whether the
CSMS acted on it; with a :class:`~ocpprpc.Retry` (``on_connection_lost``) it is
instead sent again after the reconnect, under the same id.  A call that never
left (the link dropped first) simply stays queued.

With ``outbox=`` (an :class:`~ocpprpc.OutboxStore`, e.g. a
:class:`~ocpprpc.SQLiteOutbox`) the messages the ``durable`` rule picks (by
default OCPP's transaction messages) take a second lane: each is written to
the store before it may leave and deleted only once the CSMS answered it.
They keep their relative order, but a volatile call may overtake one that is
waiting out a retry interval.  A failed send (CALLERROR, no answer) is retried
after ``TransactionRetry.interval * failures`` seconds until the attempts are
used up; a lost link just puts the message back first in its lane.  On the
next ``async with`` the stored messages are loaded and sent before anything
else; their answers go to ``on_delivered``.

With ``boot=`` the station sends BootNotification itself on its first
connection and holds every other call in the outbox until the CSMS answers
``Accepted``; ``Pending`` and ``Rejected`` are retried after the interval the
CSMS gave.  Inbound CALLs are answered meanwhile (the CSMS may configure a
pending station, OCPP 2.0.1 B02.FR.01), and calls the CSMS triggered
(:meth:`Station.call_triggered`) take a third lane that goes first and past
the gate, each once the answer to its TriggerMessage was written (the
station's ``on_message`` hook sees that answer go out).  A ``SecurityError``
for a call past the gate means the CSMS no longer takes the station as
booted: the gate closes, the sender boots again, and the call goes first.

OCPP 1.6 transactions started offline (:meth:`Station.start_transaction`)
get a provisional ``transactionId`` (negative).  The pairs provisional ->
real live in ``_transactions`` (and in the store, which keeps them across a
restart); just before a MeterValues or StopTransaction leaves, the sender
replaces a provisional id it names with the real one, or fails the message
if there will never be one.  Order makes the real id known by then: the
StartTransaction is ahead in the same lane (messages naming a provisional
id are durable when their StartTransaction is) and one call is in flight at
a time.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias, TypeVar, overload

import anyio
import anyio.abc
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._engine.connection import uuid4_message_id
from .._engine.errors import OCPPError
from .._engine.rules import ErrorCode
from .._options.policies import (
    PERMANENT_HANDSHAKE_STATUSES,
    Backoff,
    Keepalive,
    OutboxFullPolicy,
    Retry,
    TransactionRetry,
)
from .._rpc.groups import exit_close_code, raise_single
from .._rpc.protocols import ValidationArg, check_protocols
from .._rpc.router import CallContext, Router
from .._rpc.session import _DEFAULT, CallTimeout, MessageHook, Session, _Default
from .._typed.messages import Request, Response
from .._ws.errors import HandshakeError, HandshakeRejected
from .._ws.handshake import open_websocket
from .._ws.keepalive import keepalive
from .._ws.transport import CloseReason, ConnectionLost
from .._ws.websocket import WebSocketStream
from .client import station_session
from .events import (
    BootAnswered,
    CallDropped,
    Closed,
    Connected,
    Connecting,
    Delivered,
    DeliveredCallback,
    Disconnected,
    EventCallback,
    GaveUp,
    MessageDropped,
    Reconnecting,
    StationEvent,
    StationState,
    TransactionNotStarted,
)
from .outbox import OutboxFull, OutboxRecord, OutboxStore, is_transaction_message
from .queued import _BOOT, _START, _STOP, QueuedCall, TransactionStart, _Outgoing, _Transaction

__all__ = [
    "BootAnswered",
    "CallDropped",
    "Closed",
    "Connected",
    "Connecting",
    "Delivered",
    "Disconnected",
    "GaveUp",
    "MessageDropped",
    "OutboxFull",
    "QueuedCall",
    "Reconnecting",
    "Station",
    "StationEvent",
    "StationState",
    "TransactionNotStarted",
    "TransactionStart",
]

log = logging.getLogger("ocpprpc.station")

_R = TypeVar("_R", bound=Response)

#: OCPP 1.6 messages from the station whose top-level ``transactionId`` names a transaction.
_NAMES_TRANSACTION = frozenset({"MeterValues", _STOP})

DurableRule: TypeAlias = Callable[[str, Mapping[str, Any]], bool]
BootArg: TypeAlias = Request[Any] | Mapping[str, Any] | Callable[[str], "Request[Any] | Mapping[str, Any]"]


class Station:
    """A charging station connection to a CSMS that survives link losses and CSMS restarts.

    ::

        async with ocpprpc.Station(
            "ws://csms.example/ocpp", "CP001", protocols=["ocpp2.0.1"],
            reconnect=ocpprpc.Backoff(base=1, cap=30),
            keepalive=ocpprpc.Keepalive(interval=30, timeout=10),
            boot={"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}},
        ) as station:
            await station.call("Heartbeat", {})  # waits in the outbox while offline

    :param url: the CSMS endpoint without the identity (``ws://`` or ``wss://``).
    :param identity: the station identity.
    :param protocols: OCPP versions to offer, most preferred first.  The one the
        CSMS picks on the first connection is kept for every later one.
    :param reconnect: the :class:`Backoff` between reconnects; ``None``: no
        reconnecting (the station closes when its connection ends).
    :param keepalive: ping settings (:class:`Keepalive`); ``None``: no pings.
    :param router: handlers for the CALLs the CSMS sends; shared by every connection.
    :param data: the user data dict, the same object on every connection's session.
    :param boot: a BootNotification payload (dict or typed request, or a
        function of the negotiated protocol returning one): the station boots
        itself and holds other calls until ``Accepted``.  ``None``: no gate.
    :param boot_retry_interval: seconds before re-sending a ``Pending`` or
        ``Rejected`` boot when the CSMS gave interval 0 (or none), and after a
        boot that timed out.
    :param outbox_size: calls that may wait for delivery (not counting the one
        in flight).
    :param outbox_full: :class:`OutboxFullPolicy` (or its value) when the outbox is full.
    :param retry: the default :class:`Retry` of every call (``None``: no retries).
    :param send_interval: seconds to wait between two calls leaving the outbox
        (throttles the flush after a reconnect).
    :param outbox: an :class:`OutboxStore` for the messages that must survive a
        restart (:class:`SQLiteOutbox`, or :class:`MemoryOutbox`); ``None``:
        every call lives in memory only.  The station opens it when entered,
        sends what it holds first, and closes it on exit.  A message restored
        after a restart is sent as an untyped call (its stored JSON), with the
        station's validation policy (a per-call ``validate=False`` is not stored).
    :param durable: ``durable(action, payload)`` picks the messages that go to
        the store (*payload* as JSON values); :func:`is_transaction_message` by default.
    :param transaction_retry: attempts and interval for durable messages
        (:class:`TransactionRetry`); the ``retry`` option does not apply to them.
    :param on_delivered: called (and awaited, if it returns an awaitable) with a
        :class:`Delivered` for every durable message the CSMS answered, before
        it is deleted from the store: the way to get the answer of a message
        queued by an earlier process (a StartTransaction's ``transactionId``).
        At least once: a crash between the call and the delete repeats it on
        the next start.  Exceptions are logged and ignored.
    :param on_event: ``on_event(event)`` called with each :data:`StationEvent`; it
        must be fast and must not raise.
    :param on_message: ``on_message(direction, text)`` exchange-log hook, as for
        :class:`Session`.
    :param call_timeout: default seconds to wait for an answer once a CALL is written.
    :param validation: strict schema validation, as for :func:`connect`.
    :param max_outstanding_calls: our CALLs awaiting an answer at once, as for
        :func:`connect` (the outbox sends one at a time regardless).
    :param detailed_errors: as for :func:`connect`.
    :param max_bad_messages: close with 1002 after this many malformed messages
        from the CSMS in a row (and reconnect), as for :func:`connect`.
    :param connect_options: further :func:`open_websocket` options (``password``,
        ``ssl_context``, ``headers``, ``query``, ``connect_timeout``,
        ``compression``, ``max_message_size``, ``close_timeout``, ``ws_codec``).
    :param session_options: every further option :func:`connect` passes to the
        session or its engine (``max_concurrent_handlers``, ``ordered_handlers``,
        ``close_timeout``, ...), by name; the ones that are ``Station``
        parameters (``data``, ``call_timeout``, ``on_message``) are refused here.
    """

    def __init__(
        self,
        url: str,
        identity: str,
        *,
        protocols: Sequence[str] = ("ocpp1.6",),
        reconnect: Backoff | None = Backoff(),  # noqa: B008 (frozen dataclass: an immutable default)
        keepalive: Keepalive | None = None,
        router: Router | None = None,
        data: dict[str, Any] | None = None,
        boot: BootArg | None = None,
        boot_retry_interval: float = 10.0,
        outbox_size: int = 100,
        outbox_full: OutboxFullPolicy | str = OutboxFullPolicy.REJECT,
        retry: Retry | None = None,
        send_interval: float = 0.0,
        outbox: OutboxStore | None = None,
        durable: DurableRule = is_transaction_message,
        transaction_retry: TransactionRetry = TransactionRetry(),  # noqa: B008 (frozen dataclass)
        on_delivered: DeliveredCallback | None = None,
        on_event: EventCallback | None = None,
        on_message: MessageHook | None = None,
        call_timeout: float | None = 30,
        validation: ValidationArg = False,
        max_outstanding_calls: int | None = None,
        detailed_errors: bool = False,
        max_bad_messages: int | None = None,
        connect_options: Mapping[str, Any] | None = None,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        if outbox_size < 1:
            raise ValueError("outbox_size must be at least 1")
        taken = _STATION_SESSION_OPTIONS & set(session_options or ())
        if taken:
            raise ValueError(f"pass {', '.join(sorted(taken))} to Station itself, not in session_options")
        check_protocols(protocols, validation)
        self.url = url
        self.identity = identity
        self.router = router if router is not None else Router()
        self.data: dict[str, Any] = data if data is not None else {}
        self.reconnect = reconnect
        self.keepalive = keepalive
        self.boot = boot
        self.boot_retry_interval = boot_retry_interval
        self.outbox_size = outbox_size
        self.outbox_full = OutboxFullPolicy(outbox_full)
        self.retry = retry
        self.send_interval = send_interval
        self.store = outbox
        self.durable = durable
        self.transaction_retry = transaction_retry
        self.on_delivered = on_delivered
        self.on_event = on_event
        self.on_message = on_message
        self.call_timeout = call_timeout
        self.validation = validation
        self.max_outstanding_calls = max_outstanding_calls
        self.detailed_errors = detailed_errors
        self.max_bad_messages = max_bad_messages
        self.connect_options = dict(connect_options or {})
        self.session_options = dict(session_options or {})
        self._protocols = tuple(protocols)
        self._protocol: str | None = None
        self._state = StationState.IDLE
        self._session: Session | None = None
        # Two lanes, one order: volatile calls, and durable ones (mirrored in the store).
        self._outbox: deque[_Outgoing] = deque()
        self._durable: deque[_Outgoing] = deque()
        # Calls the CSMS triggered: ahead of both lanes, and past the boot gate.
        self._triggered: deque[_Outgoing] = deque()
        # OCPP 1.6 transactions started with start_transaction(), by provisional id.
        self._transactions: dict[int, _Transaction] = {}
        self._last_provisional = 0
        self._order = itertools.count()
        self._in_flight: _Outgoing | None = None
        self._in_flight_prefix = ""
        self._subscribers: list[MemoryObjectSendStream[StationEvent]] = []
        self._entered = False
        # anyio primitives are made in __aenter__, inside the event loop that uses them.
        self._changed: anyio.Event
        self._wakeup: anyio.Event
        self._booted: anyio.Event
        self._stopping = False
        self._gave_up: GaveUp | None = None
        # Seconds the next boot cycle waits first (a triggered boot answered Pending or Rejected).
        self._boot_wait = 0.0
        #: The last BootNotification answer (``None`` before one; without ``boot=``, always).
        self.boot_status: str | None = None
        #: The heartbeat interval from the accepted BootNotification.
        self.heartbeat_interval: float | None = None
        self.connections = 0

    # -- observing -------------------------------------------------------------------------

    @property
    def state(self) -> StationState:
        """Where the station is now (see :class:`StationState`)."""
        return self._state

    @property
    def protocol(self) -> str | None:
        """The OCPP version pinned by the first connection (``None`` before it)."""
        return self._protocol

    @property
    def session(self) -> Session | None:
        """The session of the open connection, ``None`` while disconnected."""
        return self._session

    @property
    def outbox_length(self) -> int:
        """Calls waiting in the outbox, durable and triggered ones included (not the one in flight)."""
        return len(self._outbox) + len(self._durable) + len(self._triggered)

    def transaction_id(self, provisional_id: int) -> int | None:
        """The CSMS's ``transactionId`` for a provisional one (:meth:`start_transaction`).

        ``None`` while its StartTransaction is unanswered, or once the station
        forgot it (its StopTransaction was answered).  After a restart this is
        where an application finds the real id of a transaction it started
        offline in an earlier life (the store keeps the pair).
        """
        transaction = self._transactions.get(provisional_id)
        return None if transaction is None else transaction.transaction_id

    @property
    def booted(self) -> bool:
        """Whether calls may flow: no boot gate, or the CSMS accepted our BootNotification."""
        return self._booted.is_set()

    async def wait_connected(self) -> Session:
        """Wait until a connection is open and return its session."""
        while self._session is None:
            if self._state is StationState.CLOSED:
                raise ConnectionLost(None, self._closed_message())
            await self._changed.wait()
        return self._session

    def events(self, max_buffer: float = math.inf) -> MemoryObjectReceiveStream[StationEvent]:
        """A stream of :data:`StationEvent` from now on: ``async with station.events() as events:``.

        Each stream gets every event; closing it unsubscribes.  With a finite
        *max_buffer*, events a slow reader has no room for are dropped (and
        logged) rather than stalling the station.
        """
        send, receive = anyio.create_memory_object_stream[StationEvent](max_buffer)
        if self._state is StationState.CLOSED:
            send.close()  # nothing more will happen: the stream ends at once
        else:
            self._subscribers.append(send)
        return receive

    def _emit(self, event: StationEvent) -> None:
        log.debug("%s: %s", self, event)
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(event)
            except anyio.WouldBlock:
                log.warning("%s: an event subscriber is not keeping up; dropped %s", self, event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(subscriber)
                subscriber.close()
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("%s: on_event callback failed", self)

    def _set_state(self, state: StationState) -> None:
        self._state = state
        self._changed.set()
        self._changed = anyio.Event()

    def __repr__(self) -> str:
        return f"<Station {self.identity} {self._state.value}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a Station can be entered only once")
        self._entered = True
        self._supervisor_scope = anyio.CancelScope()
        self._supervisor_done = anyio.Event()
        self._changed = anyio.Event()
        self._wakeup = anyio.Event()
        self._booted = anyio.Event()
        if self.boot is None:
            self._booted.set()
        if self.store is not None:
            await self._restore(self.store)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        try:
            await self._task_group.start(self._supervise, name=f"ocpprpc station {self.identity}")
        except BaseException as exc:
            self._state = StationState.CLOSED
            try:
                await self._task_group.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                raise_single(group)
                raise
            finally:
                await self._close_store()
            raise
        return self

    async def _restore(self, store: OutboxStore) -> None:
        """Open the store; what it holds goes first, in its order, under its ids."""
        try:
            records = await store.open()
            transactions = await store.transactions()
        except BaseException:
            self._state = StationState.CLOSED
            raise
        starts: dict[str, _Transaction] = {}
        for row in transactions:
            transaction = _Transaction(row.provisional_id, row.start_message_id, row.transaction_id)
            self._transactions[row.provisional_id] = transaction
            starts[row.start_message_id] = transaction
        for record in records:
            item = _Outgoing(record.action, record.decoded_payload(), record.message_id, _DEFAULT, True, None)
            item.order = next(self._order)
            item.record = record
            item.stored = True
            item.restored = True  # nobody awaits it: the answer goes to on_delivered
            if record.action == _START:
                item.transaction = starts.pop(record.message_id, None)
            self._durable.append(item)
        for transaction in starts.values():
            if transaction.transaction_id is None:
                # Its StartTransaction is no longer stored: given up (or never stored) unanswered.
                transaction.failure = "its StartTransaction was given up before the CSMS answered it"
        if records:
            log.info("%s: %d stored message(s) to deliver first", self, len(records))

    async def _close_store(self) -> None:
        if self.store is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await self.store.close()
                except Exception:
                    log.exception("%s: closing the outbox store failed", self)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            with anyio.CancelScope(shield=True):
                code = exit_close_code(exc)
                if code is None:
                    await self.close()
                else:
                    await self.close(code, graceful=False)
        finally:
            try:
                suppress = await self._task_group.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                raise_single(group)
                raise
            finally:
                await self._close_store()
        return suppress

    async def close(
        self,
        code: int = 1000,
        reason: str = "",
        *,
        graceful: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the drain, as Session.close)
    ) -> None:
        """Stop reconnecting and close the connection (see :meth:`Session.close`).

        The call in flight may finish (graceful); calls still in the outbox fail
        with :class:`ConnectionLost` (and a :class:`CallDropped` event each).
        """
        if not self._entered:
            raise RuntimeError("the station was never started (use 'async with station:')")
        self._stopping = True
        session = self._session
        if session is not None:
            await session.close(code, reason, graceful=graceful, timeout=timeout)
        # Only the supervisor: the task group also wraps the ``async with`` body.
        self._supervisor_scope.cancel()
        # Its connection's Disconnected comes before the final Closed.
        await self._supervisor_done.wait()
        self._finish(None)

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

    def _kept_error(self) -> ConnectionLost:
        return ConnectionLost(None, f"{self._closed_message()}; the message stays in the durable outbox")

    def _closed_message(self) -> str:
        if self._gave_up is not None:
            return f"the station gave up reconnecting: {self._gave_up.reason}"
        return "the station is closed"

    # -- the supervisor --------------------------------------------------------------------

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
                stream = await open_websocket(
                    self.url, self.identity, protocols=self._protocols, **self.connect_options
                )
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
            engine = {
                "max_outstanding_calls": self.max_outstanding_calls,
                "detailed_errors": self.detailed_errors,
                "max_bad_messages": self.max_bad_messages,
            }
            session = station_session(
                stream,
                identity=self.identity,
                router=self.router,
                validation=self.validation,
                data=self.data,
                call_timeout=self.call_timeout,
                on_message=self._on_message,
                **(engine | self.session_options),
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

    # -- boot --------------------------------------------------------------------------------

    async def _boot(self, session: Session) -> None:
        """Send BootNotification until the CSMS accepts it (the boot gate opens).

        :raises ConnectionLost: the connection ended first (the next one boots again).
        """
        wait, self._boot_wait = self._boot_wait, 0.0
        try:
            await self._boot_cycle(session, wait)
        finally:
            self._boot_wait = 0.0  # a triggered boot answered meanwhile set it: this cycle is over

    async def _boot_cycle(self, session: Session, wait: float) -> None:
        while True:
            if wait > 0:
                # OCPP 1.6 4.2.1 / 2.0.1 B02: meanwhile the station sends only what the CSMS
                # triggers (a triggered BootNotification that is accepted ends the wait).
                with anyio.move_on_after(wait):
                    await self._serve_triggered(session)
                if self._booted.is_set():
                    return
            try:
                answer: Any = await self._call(session, self._boot_item(session.protocol))
            except ConnectionLost:
                raise
            except Exception as exc:
                # Unanswered, refused with a CALLERROR, or an invalid answer: the
                # station cannot work unbooted, so it keeps asking, politely spaced.
                log.warning("%s: BootNotification failed (%s); retrying", self, exc)
                wait = self.boot_retry_interval
                continue
            wait = self._boot_answered(answer)
            if self._booted.is_set():
                return

    def _boot_item(self, protocol: str) -> _Outgoing:
        """A BootNotification with the station's ``boot`` payload."""
        assert self.boot is not None
        boot = self.boot(protocol) if callable(self.boot) else self.boot
        if isinstance(boot, Request):
            return _Outgoing(boot, None, uuid4_message_id(), _DEFAULT, True, None)
        return _Outgoing(_BOOT, dict(boot), uuid4_message_id(), _DEFAULT, True, None)

    def _boot_answered(self, answer: Any) -> float:
        """Open the gate on ``Accepted``, else close it; returns the wait before booting again."""
        if isinstance(answer, msgspec.Struct):
            answer = msgspec.to_builtins(answer)
        status = str(answer.get("status", ""))
        interval = float(answer.get("interval") or 0)
        self.boot_status = status
        self._emit(BootAnswered(status, interval))
        if status == "Accepted":
            self.heartbeat_interval = interval
            log.info("%s: boot accepted (heartbeat interval %g s)", self, interval)
            self._booted.set()
            return 0.0
        self._close_gate()
        # OCPP 1.6 4.2 / 2.0.1 B02-B03: Pending or Rejected: wait the interval, boot again.
        wait = interval if interval > 0 else self.boot_retry_interval
        log.info("%s: boot %s; booting again in %g s", self, status, wait)
        return wait

    def _close_gate(self) -> None:
        if self._booted.is_set():
            self._booted = anyio.Event()

    async def _serve_triggered(self, session: Session) -> None:
        """Deliver triggered calls only, until a triggered BootNotification is accepted."""
        while not self._booted.is_set():
            item = await self._next_triggered()
            await self._send_one(session, item)

    async def _next_triggered(self) -> _Outgoing:
        while True:
            if self._triggered and self._triggered[0].after_reply is None:
                return self._triggered.popleft()
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    # -- the outbox ------------------------------------------------------------------------

    @overload
    async def call(
        self,
        request: Request[_R],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> _R: ...

    @overload
    async def call(
        self,
        action: str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> Any: ...

    async def call(
        self,
        request: Request[Any] | str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> Any:
        """Send a CALL through the outbox and return the answer (as :meth:`Session.call`).

        While disconnected (or before the boot is accepted) the call waits in the
        outbox; calls leave it in the order they were made.  Cancel the caller
        (e.g. ``with anyio.fail_after(60):``) to bound the whole wait.

        :param timeout: seconds to wait for the answer once the CALL is written
            (time in the outbox not counted); the station's ``call_timeout`` by default.
        :param message_id: the CALL's id (idempotency key), kept across retries
            and reconnects; a fresh UUID4 by default.
        :param retry: a :class:`Retry` for this call; the station's default if omitted.
        :raises OutboxFull: the outbox was full (or this call was dropped from it).
        :raises ConnectionLost: the link dropped after the CALL was written (and
            no retry was asked for), or the station closed or gave up.
        :raises CallTimeout: no answer in time (after the retries).

        A *durable* message (with ``outbox=``, picked by the ``durable`` rule) is
        stored before it may leave; cancelling the caller does not withdraw it,
        and it is retried per ``transaction_retry`` instead of ``retry``: the
        call returns the answer, or raises the last failure once the attempts
        are used up (:class:`MessageDropped`), or :class:`ConnectionLost` if
        the station closes first (the message stays stored and goes on the
        next start).  :class:`OutboxFull` here means the store is full.
        """
        self._check_open()
        if isinstance(request, str) and payload is None:
            payload = {}
        item = _Outgoing(
            request,
            payload,
            message_id or uuid4_message_id(),
            timeout,
            validate,
            self.retry if isinstance(retry, _Default) else retry,
        )
        wire = self._durable_payload(item)
        if wire is None:
            self._enqueue(item)
        else:
            await self._put_durable(item, wire)
        try:
            await item.done.wait()
        finally:
            if not item.done.is_set() and item.record is None:
                # The caller gave up waiting: take it out of the queue, or stop its delivery.
                item.abandoned = True
                try:
                    self._outbox.remove(item)
                except ValueError:
                    if item.scope is not None:
                        item.scope.cancel()
        if item.error is not None:
            raise item.error
        return item.result

    async def submit(
        self, request: Request[Any] | str, payload: Any = None, /, *, message_id: str | None = None
    ) -> str:
        """Store a durable message and return its message id, without waiting for the answer.

        Returns once the store holds the message: from then on it is delivered
        even if this process dies (on the next start).  Its answer goes to
        ``on_delivered``; a message that uses up its attempts is published as
        :class:`MessageDropped`.

        :raises ValueError: the station has no store, or the ``durable`` rule
            does not pick this message.
        :raises OutboxFull: the store is full.
        """
        self._check_open()
        if isinstance(request, str) and payload is None:
            payload = {}
        item = _Outgoing(request, payload, message_id or uuid4_message_id(), _DEFAULT, True, None)
        wire = self._durable_payload(item)
        if wire is None:
            why = "the station has no outbox store" if self.store is None else "the durable rule refused it"
            raise ValueError(f"cannot submit {item.action}: {why} (use call())")
        await self._put_durable(item, wire)
        return item.message_id

    @overload
    async def start_transaction(
        self,
        request: Request[_R],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> TransactionStart[_R]: ...

    @overload
    async def start_transaction(
        self,
        request: Mapping[str, Any],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> TransactionStart[Any]: ...

    async def start_transaction(
        self,
        request: Request[Any] | Mapping[str, Any],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> TransactionStart[Any]:
        """Queue an OCPP 1.6 StartTransaction and return at once, with a provisional transactionId.

        A 1.6 station learns its ``transactionId`` from the StartTransaction's
        answer; offline, that answer may be hours away while the transaction's
        MeterValues and StopTransaction are already being queued.  Give them
        :attr:`TransactionStart.transaction_id` (the provisional id, a negative
        number, until the CSMS answers): the station sends each with the
        CSMS's ``transactionId`` in its place.  That holds for messages queued
        before the answer and after it, and, with a store (``outbox=``), across
        a restart: the store keeps the pair (:meth:`transaction_id` reads it).

        The id is kept whatever the answer's ``idTagInfo`` status: the
        transaction exists at the CSMS either way.  If the StartTransaction is
        given up unanswered, the messages naming its provisional id fail with
        :class:`TransactionNotStarted` instead of going out with a made-up id.
        The station forgets the provisional id once a StopTransaction naming it
        (or its real id) is answered.

        With a store the StartTransaction is durable (whatever the ``durable``
        rule says), and so is every message naming its provisional id; this
        returns once it is stored.  ``await start.answer()`` waits for the
        answer; options as for :meth:`call`.

        :raises ValueError: the station speaks (or offers) only OCPP 2.x, whose
            TransactionEvent carries a ``transactionId`` the station chose itself.
        :raises NotImplementedError: the store cannot keep provisional ids.
        :raises OutboxFull: as for :meth:`call` (:meth:`submit` with a store).
        """
        self._check_open()
        versions = (self._protocol,) if self._protocol is not None else self._protocols
        if "ocpp1.6" not in versions:
            raise ValueError(
                f"start_transaction() is for OCPP 1.6 (this station speaks {', '.join(versions)}):"
                " a 2.x TransactionEvent carries the transactionId the station chose"
            )
        if isinstance(request, Request):
            if type(request).__ocpp_action__ != _START:
                raise ValueError(f"not a StartTransaction request: {type(request).__name__}")
            item = _Outgoing(request, None, message_id or uuid4_message_id(), timeout, validate, None)
        else:
            item = _Outgoing(_START, dict(request), message_id or uuid4_message_id(), timeout, validate, None)
        item.retry = self.retry if isinstance(retry, _Default) else retry
        item.retries_left = item.retry.attempts if item.retry is not None else 0
        store = self.store
        if store is None:
            self._last_provisional -= 1
            provisional = self._last_provisional
        else:
            provisional = await store.add_transaction(item.message_id)
        transaction = item.transaction = _Transaction(provisional, item.message_id)
        self._transactions[provisional] = transaction
        try:
            if store is None:
                self._enqueue(item)
            else:
                await self._put_durable(item, self._wire(item))
        except BaseException:
            del self._transactions[provisional]
            if store is not None:
                with anyio.CancelScope(shield=True):
                    await self._store_call(store.remove_transaction, provisional)
            raise
        log.info(
            "%s: StartTransaction (%s) queued; provisional transactionId %d",
            self,
            item.message_id,
            provisional,
        )
        return TransactionStart(item, transaction)

    @overload
    def call_triggered(
        self,
        ctx: CallContext,
        request: Request[_R],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,
        validate: bool = True,
        message_id: str | None = None,
    ) -> QueuedCall[_R]: ...

    @overload
    def call_triggered(
        self,
        ctx: CallContext,
        action: str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,
        validate: bool = True,
        message_id: str | None = None,
    ) -> QueuedCall[Any]: ...

    def call_triggered(
        self,
        ctx: CallContext,
        request: Request[Any] | str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,
        validate: bool = True,
        message_id: str | None = None,
    ) -> QueuedCall[Any]:
        """Queue the message the CSMS asked for with the CALL *ctx* answers (TriggerMessage).

        For a TriggerMessage handler: queue the requested message here, then
        return the handler's answer (or queue it from a task the handler
        started, before or after the answer went).  Do not await the answer
        inside the handler: it cannot come before the handler returns::

            @router.on("TriggerMessage")
            def trigger(request, ctx):
                station.call_triggered(ctx, "StatusNotification", status_now())
                return {"status": "Accepted"}

        A triggered call:

        * passes the boot gate: while the BootNotification is ``Pending`` (or
          ``Rejected``) a station sends requests only when the CSMS triggers
          them (OCPP 1.6 section 4.2.1, 2.0.1 B02);
        * leaves once the answer to *ctx*'s CALL is written (OCPP 1.6: the
          TriggerMessage.conf goes first), ahead of other queued calls;
        * goes over *ctx*'s connection only: if it ends first, the call fails
          with :class:`ConnectionLost` (a :class:`CallDropped` event); the CSMS
          may trigger again.  It is never stored in the durable outbox.

        A triggered ``BootNotification`` without a payload sends the station's
        ``boot``; its answer opens (``Accepted``) or keeps closed the gate, like
        the station's own.

        :raises ConnectionLost: *ctx*'s connection ended already.
        """
        self._check_open()
        if ctx.session.closed.is_set():
            raise ConnectionLost(ctx.session.close_reason, "the connection that triggered it ended")
        if request == _BOOT and payload is None and self.boot is not None:
            item = self._boot_item(ctx.protocol)
        else:
            if isinstance(request, str) and payload is None:
                payload = {}
            item = _Outgoing(request, payload, message_id or uuid4_message_id(), timeout, validate, None)
        item.triggered = True
        item.session = ctx.session
        # Not among the CALLs awaiting our answer: it was written already (or it was a SEND).
        unanswered = ctx.session.connection.inbound_calls
        item.after_reply = ctx.message_id if ctx.message_id in unanswered else None
        item.order = next(self._order)
        self._triggered.append(item)
        self._wakeup.set()
        return QueuedCall(item)

    def _check_open(self) -> None:
        if self._state is StationState.CLOSED or self._stopping:
            raise ConnectionLost(None, self._closed_message())
        if not self._entered:
            raise RuntimeError("the station was never started (use 'async with station:')")

    def _durable_payload(self, item: _Outgoing) -> dict[str, Any] | None:
        """*item*'s payload as JSON values if it goes to the store, else ``None``.

        A message naming a provisional transaction id is durable whatever the
        rule says: it must stay behind its StartTransaction (which is durable).
        """
        if self.store is None:
            return None
        payload = item.payload if isinstance(item.request, str) else item.request
        wire = payload if type(payload) is dict else msgspec.to_builtins(payload)
        if not isinstance(wire, dict):
            return None
        if self.durable(item.action, wire) or (
            self._transactions and self._named_transaction(item.action, wire) is not None
        ):
            return wire
        return None

    async def _put_durable(self, item: _Outgoing, wire: dict[str, Any]) -> None:
        """Queue *item* in the durable lane and store it; it may leave once stored."""
        assert self.store is not None
        text = msgspec.json.encode(wire).decode()
        # Queued before the write: the order of calls is the order of delivery.
        item.order = next(self._order)
        self._durable.append(item)
        try:
            item.record = await self.store.add(item.message_id, item.action, text)
        except BaseException:
            # Not stored, hence never sent (the sender takes stored messages only).
            if item in self._durable:
                self._durable.remove(item)
            self._wakeup.set()  # stored messages behind it may go now
            raise
        item.stored = True
        self._wakeup.set()

    def _enqueue(self, item: _Outgoing) -> None:
        item.order = next(self._order)
        if len(self._outbox) >= self.outbox_size:
            if self.outbox_full is OutboxFullPolicy.REJECT:
                log.warning("%s: outbox full (%d); refusing %s", self, self.outbox_size, item.action)
                raise OutboxFull(item.action, item.message_id, self.outbox_size, dropped=False)
            oldest = self._outbox.popleft()
            error = OutboxFull(oldest.action, oldest.message_id, self.outbox_size, dropped=True)
            log.warning("%s: outbox full (%d); dropping the oldest call, %s", self, self.outbox_size, error)
            oldest.fail(error)
            self._emit(CallDropped(oldest.action, oldest.message_id, error))
        self._outbox.append(item)
        self._wakeup.set()

    async def _next_item(self) -> _Outgoing:
        """The next call to send: a triggered one, else the oldest of both lanes.

        A durable message waiting out its retry interval lets volatile calls
        pass (never other durable ones); one still being stored holds
        everything made after it.
        """
        while True:
            if self._triggered and self._triggered[0].after_reply is None:
                return self._triggered.popleft()
            volatile = self._outbox[0] if self._outbox else None
            wait = math.inf
            if self._durable:
                head = self._durable[0]
                first = volatile is None or head.order < volatile.order
                if not head.stored:
                    if first:
                        volatile = None
                else:
                    assert head.record is not None
                    wait = head.record.next_attempt_at - time.time()
                    if wait <= 0 and first:
                        return self._durable.popleft()
            if volatile is not None:
                return self._outbox.popleft()
            self._wakeup = anyio.Event()
            with anyio.move_on_after(wait):
                await self._wakeup.wait()

    async def _serve_outbox(self, session: Session) -> None:
        """Deliver queued calls in order over *session* until its connection ends."""
        seen: anyio.Event | None = None
        try:
            while True:
                # Booting again when the gate closed (a SecurityError, a triggered boot answered
                # Pending): closing it puts a new Event in _booted, so the identity test suffices.
                if self._booted is not seen:
                    if not self._booted.is_set():
                        await self._boot(session)
                    seen = self._booted
                item = await self._next_item()
                # _send_one() inlined: this is every call's path.
                if item.abandoned and item.record is None:
                    continue
                if item.triggered or self._transactions:
                    if not await self._send_one(session, item):
                        continue
                elif item.record is not None:
                    await self._deliver_durable(session, item, item.record)
                else:
                    await self._deliver(session, item)
                if self.send_interval > 0:
                    await anyio.sleep(self.send_interval)
        except ConnectionLost:
            return

    async def _send_one(self, session: Session, item: _Outgoing) -> bool:
        """Deliver *item* over *session*; ``False`` if it was not sent after all.

        :raises ConnectionLost: the link went.
        """
        if item.abandoned and item.record is None:
            return False
        if item.triggered and item.session is not session:
            self._drop_triggered_item(item, ConnectionLost(None, "the connection that triggered it ended"))
            return False
        if self._transactions and not await self._settle_transaction_id(item):
            return False
        if item.record is not None:
            await self._deliver_durable(session, item, item.record)
        else:
            await self._deliver(session, item)
        return True

    def _drop_triggered_item(self, item: _Outgoing, error: BaseException) -> None:
        log.info("%s: triggered %s (%s) not sent: %s", self, item.action, item.message_id, error)
        item.fail(error)
        self._emit(CallDropped(item.action, item.message_id, error))

    async def _deliver(self, session: Session, item: _Outgoing) -> None:
        """Deliver one call (with its retries); :class:`ConnectionLost` when the link went."""
        while True:
            item.sent = False
            self._in_flight = item
            self._in_flight_prefix = f'[2,"{item.message_id}"'
            scope = item.scope = anyio.CancelScope()
            timed_out: CallTimeout | None = None
            result: Any = None
            try:
                with scope:
                    result = await self._call(session, item)
            except CallTimeout as exc:
                timed_out = exc
            except ConnectionLost as exc:
                self._lost_in_flight(item, exc)
                raise
            except anyio.get_cancelled_exc_class():
                # The connection ended under us (the station cancels its sender then).
                self._lost_in_flight(item, ConnectionLost(session.close_reason))
                raise
            except OCPPError as exc:
                if self._refused_unbooted(item, exc):
                    self._outbox.appendleft(item)  # first in line once booted again
                else:
                    item.fail(exc)
                return
            except Exception as exc:
                item.fail(exc)
                return
            finally:
                self._in_flight = None
                item.scope = None
            if timed_out is None:
                if not scope.cancelled_caught:
                    if item.triggered or item.transaction is not None:
                        await self._answered(item, result)
                    ended = self._transaction_ended(item) if self._transactions else None
                    item.succeed(result)
                    if ended is not None:
                        await self._forget_stored(ended)
                return  # delivered, or abandoned by its caller
            if item.retries_left <= 0:
                item.fail(timed_out)
                return
            assert item.retry is not None
            item.retries_left -= 1
            delay = item.retry.next_delay()
            log.info("%s: %s unanswered; resending in %.3g s", self, item.action, delay)
            # The wait is part of the delivery: a drop meanwhile puts the call back first in line.
            try:
                await anyio.sleep(delay)
            except anyio.get_cancelled_exc_class():
                if item.triggered:
                    self._drop_triggered_item(item, ConnectionLost(session.close_reason))
                elif not item.abandoned:
                    self._outbox.appendleft(item)
                raise
            if item.abandoned:
                return

    async def _call(self, session: Session, item: _Outgoing) -> Any:
        if isinstance(item.request, str):
            return await session.call(
                item.request,
                item.payload,
                timeout=item.timeout,
                validate=item.validate,
                message_id=item.message_id,
            )
        return await session.call(
            item.request, timeout=item.timeout, validate=item.validate, message_id=item.message_id
        )

    async def _deliver_durable(self, session: Session, item: _Outgoing, record: OutboxRecord) -> None:
        """Send one durable message once; on failure, schedule its retry or drop it.

        :raises ConnectionLost: the link went (the message goes back first in its lane).
        """
        item.sent = False
        self._in_flight = item
        self._in_flight_prefix = f'[2,"{item.message_id}"'
        failure: Exception
        try:
            result = await self._call(session, item)
        except ConnectionLost:
            self._requeue_durable(item)
            raise
        except anyio.get_cancelled_exc_class():
            self._requeue_durable(item)
            raise
        except (OCPPError, CallTimeout) as exc:
            if isinstance(exc, OCPPError) and self._refused_unbooted(item, exc):
                self._requeue_durable(item)  # not a failed attempt: it goes first once booted again
                return
            failure = exc
        except Exception as exc:
            # The payload fails validation, or the CSMS's answer does (InvalidResponseError:
            # it did process the message).  Sending it again cannot change either.
            await self._drop_durable(item, record, exc)
            return
        else:
            await self._delivered(item, record, result)
            return
        finally:
            self._in_flight = None
        record.attempts += 1
        policy = self.transaction_retry
        if record.attempts >= policy.attempts:
            await self._drop_durable(item, record, failure)
            return
        delay = policy.delay(record.attempts)
        record.next_attempt_at = time.time() + delay
        log.warning(
            "%s: %s (%s) failed (%s); attempt %d of %d in %g s",
            self,
            item.action,
            item.message_id,
            failure,
            record.attempts + 1,
            policy.attempts,
            delay,
        )
        with anyio.CancelScope(shield=True):
            await self._store_call(self._require_store().update, record)
        self._requeue_durable(item)

    async def _delivered(self, item: _Outgoing, record: OutboxRecord, result: Any) -> None:
        """Answered: hand the answer over, then forget the message (in that order: at least once)."""
        if item.transaction is not None:
            await self._answered(item, result)  # a StartTransaction's id is stored before it is deleted
        ended = self._transaction_ended(item) if self._transactions else None
        item.succeed(result)
        if self.on_delivered is not None:
            transaction = item.transaction
            delivered = Delivered(
                item.action,
                item.message_id,
                record.decoded_payload(),
                result,
                item.restored,
                None if transaction is None else transaction.provisional_id,
            )
            try:
                outcome = self.on_delivered(delivered)
                if inspect.isawaitable(outcome):
                    await outcome
            except anyio.get_cancelled_exc_class():
                # Not acknowledged: it goes again (the CSMS's replay cache answers) and is handed over again.
                self._requeue_durable(item)
                raise
            except Exception:
                log.exception("%s: on_delivered failed for %s (%s)", self, item.action, item.message_id)
        with anyio.CancelScope(shield=True):
            await self._store_call(self._require_store().remove, record.message_id)
        # After the delete: a StopTransaction restored from the store needs the mapping.
        if ended is not None:
            await self._forget_stored(ended)

    async def _drop_durable(self, item: _Outgoing, record: OutboxRecord, error: BaseException) -> None:
        """Give a durable message up: never silently (an error log, an event, its caller told)."""
        log.error(
            "%s: dropping %s (%s) after %d failed attempt(s): %s",
            self,
            item.action,
            item.message_id,
            record.attempts,
            error,
        )
        with anyio.CancelScope(shield=True):
            await self._store_call(self._require_store().remove, record.message_id)
        self._emit(MessageDropped(item.action, item.message_id, record.attempts, error))
        ended = self._transaction_ended(item)
        item.fail(error)
        await self._forget_stored(ended)

    def _requeue_durable(self, item: _Outgoing) -> None:
        if self._state is StationState.CLOSED:
            item.fail(self._kept_error())
        else:
            self._durable.appendleft(item)

    def _require_store(self) -> OutboxStore:
        assert self.store is not None
        return self.store

    async def _store_call(self, method: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Update the store; a failing store is logged, not fatal (the message is still sent)."""
        try:
            await method(*args)
        except Exception:
            log.exception("%s: the outbox store failed", self)

    def _lost_in_flight(self, item: _Outgoing, error: ConnectionLost) -> None:
        """The link dropped during *item*'s delivery: queue it again, or fail it."""
        if item.abandoned:
            return
        if item.triggered:
            # It answered the lost connection's request: not sent again on another.
            if item.sent:
                item.fail(error)
            else:
                self._drop_triggered_item(item, error)
            return
        retry = item.retry
        if not item.sent:
            # Never left: nothing to be unsure about, it goes first after the reconnect.
            self._outbox.appendleft(item)
        elif retry is not None and retry.on_connection_lost and item.retries_left > 0:
            item.retries_left -= 1
            log.info("%s: link lost with %s in flight; will resend it", self, item.action)
            self._outbox.appendleft(item)
        else:
            log.info("%s: link lost with %s (%s) in flight", self, item.action, item.message_id)
            item.fail(error)

    # -- answers that change the station's state -------------------------------------------------

    async def _answered(self, item: _Outgoing, result: Any) -> None:
        """What an answer means beyond its caller: a triggered boot's status, a transaction's id."""
        if item.triggered and item.action == _BOOT and self.boot is not None:
            self._boot_wait = self._boot_answered(result)
        if item.action == _START and item.transaction is not None:
            await self._started(item.transaction, result)

    def _refused_unbooted(self, item: _Outgoing, error: OCPPError) -> bool:
        """A SecurityError for a call past the gate: the CSMS does not take us as accepted.

        OCPP 2.0.1 B02.FR.09/B03.FR.07: a CSMS answers SecurityError to a station it
        has not accepted, e.g. one it forgot by restarting.  The gate closes, the
        station boots again, and the call goes first once accepted; a call refused
        again after that fails with the error (no boot loop).
        """
        if (
            error.code is not ErrorCode.SECURITY_ERROR
            or self.boot is None
            or item.triggered
            or item.action == _BOOT
            or item.refused_unbooted
        ):
            return False
        item.refused_unbooted = True
        log.warning(
            "%s: the CSMS refused %s (%s) with SecurityError (it does not take the station as"
            " booted: restarted and forgot?); booting again, then sending it again",
            self,
            item.action,
            item.message_id,
        )
        self.boot_status = None
        self._close_gate()
        return True

    # -- OCPP 1.6 transactions started offline -------------------------------------------------

    def _wire(self, item: _Outgoing) -> Any:
        """*item*'s payload as JSON values (wire names)."""
        payload = item.payload if isinstance(item.request, str) else item.request
        return payload if type(payload) is dict else msgspec.to_builtins(payload)

    def _named_transaction(self, action: str, wire: Any) -> _Transaction | None:
        """The provisional transaction a 1.6 message names in its ``transactionId``, if any."""
        if action not in _NAMES_TRANSACTION or not isinstance(wire, dict):
            return None
        named = wire.get("transactionId")
        return self._transactions.get(named) if type(named) is int else None

    async def _settle_transaction_id(self, item: _Outgoing) -> bool:
        """Put the CSMS's ``transactionId`` in place of a provisional one before *item* leaves.

        ``False`` (and *item* failed, never silently) when the provisional id
        will never have a real one.
        """
        if item.transaction is not None or item.action not in _NAMES_TRANSACTION:
            return True
        wire = self._wire(item)
        transaction = self._named_transaction(item.action, wire)
        if transaction is None:
            return True
        item.transaction = transaction
        real = transaction.transaction_id
        if real is not None:
            rewritten = {**wire, "transactionId": real}
            if isinstance(item.request, str):
                item.payload = rewritten
            else:
                field = _field_named(type(item.request), "transactionId")
                item.request = msgspec.structs.replace(item.request, **{field: real})
            if item.record is not None:
                # In memory only: after a restart the stored mapping rewrites it again.
                item.record.payload = msgspec.json.encode(rewritten).decode()
            return True
        why = transaction.failure or "its StartTransaction is not answered yet"
        error = TransactionNotStarted(item.action, item.message_id, transaction.provisional_id, why)
        if item.record is not None:
            await self._drop_durable(item, item.record, error)
        else:
            log.error("%s: %s", self, error)
            ended = self._transaction_ended(item)
            item.fail(error)
            self._emit(CallDropped(item.action, item.message_id, error))
            await self._forget_stored(ended)
        return False

    async def _started(self, transaction: _Transaction, result: Any) -> None:
        """The StartTransaction is answered: keep its ``transactionId`` (whatever the idTag status)."""
        if transaction.transaction_id is not None:
            return
        answer = msgspec.to_builtins(result) if isinstance(result, msgspec.Struct) else result
        real = answer.get("transactionId") if isinstance(answer, dict) else None
        if type(real) is not int:
            transaction.failure = (
                f"the CSMS answered its StartTransaction without a transactionId: {answer!r}"
            )
            log.error(
                "%s: provisional transaction %d: %s", self, transaction.provisional_id, transaction.failure
            )
            return
        # Kept even when idTagInfo is not Accepted: the transaction exists at the CSMS and
        # goes on until the station stops it (1.6 StopTransactionOnInvalidId).
        transaction.transaction_id = real
        log.info("%s: provisional transaction %d is transaction %d", self, transaction.provisional_id, real)
        if self.store is not None:
            with anyio.CancelScope(shield=True):
                await self._store_call(self.store.set_transaction_id, transaction.provisional_id, real)

    def _transaction_ended(self, item: _Outgoing) -> _Transaction | None:
        """A StopTransaction was answered or given up: forget the provisional id it names.

        Returns the transaction to forget in the store too, which the caller does
        only once the StopTransaction itself left the store (a restored one
        needs the pair).
        """
        if item.action != _STOP or not self._transactions:
            return None
        transaction = item.transaction
        if transaction is None:
            named = self._wire(item).get("transactionId")
            if type(named) is int:
                transaction = next(
                    (t for t in self._transactions.values() if t.transaction_id == named), None
                )
        if transaction is None or self._transactions.pop(transaction.provisional_id, None) is None:
            return None
        log.debug("%s: forgetting provisional transaction %d", self, transaction.provisional_id)
        return transaction

    async def _forget_stored(self, transaction: _Transaction | None) -> None:
        if transaction is not None and self.store is not None:
            with anyio.CancelScope(shield=True):
                await self._store_call(self.store.remove_transaction, transaction.provisional_id)


def _field_named(cls: type[Any], wire_name: str) -> str:
    """The attribute of the Struct *cls* whose JSON name is *wire_name*."""
    for field in msgspec.structs.fields(cls):
        if field.encode_name == wire_name:
            return field.name
    raise LookupError(f"{cls.__name__} has no field {wire_name!r}")


#: Session options the station sets itself (from its own parameters).
_STATION_SESSION_OPTIONS = frozenset(
    {"data", "call_timeout", "on_message", "router", "identity", "validation"}
)

_STATUS_MEANING = {401: "bad credentials", 403: "forbidden", 404: "unknown station"}
