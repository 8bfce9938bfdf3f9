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

import itertools
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._options.model import SessionOptions, WebSocketOptions, field_names
from .._options.policies import Backoff, Keepalive, OutboxFullPolicy, Retry, TransactionRetry
from .._options.table import merge_options, split_session_extras
from .._rpc.groups import exit_close_code, raise_single
from .._rpc.protocols import ValidationArg, check_protocols
from .._rpc.router import Router
from .._rpc.session import _DEFAULT, MessageHook, Session
from .._ws.transport import ConnectionLost
from .base import BootArg, DurableRule
from .connection_loop import _ConnectionLoop
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
from .outbox import OutboxFull, OutboxStore, is_transaction_message
from .queued import _START, QueuedCall, TransactionStart, _Outgoing, _Transaction

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


class Station(_ConnectionLoop):
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
        ``ssl_context``, ``headers``, ``query``, and the settings of
        :class:`WebSocketOptions`: ``connect_timeout``, ``compression``,
        ``max_message_size``, ``close_timeout``, ``send_timeout``, ``ws_codec``, ``tcp_stream``).
    :param websocket: the transport settings as one :class:`WebSocketOptions`,
        instead of ``keepalive`` and the settings in *connect_options*; setting
        one of those too is a ``TypeError`` (docs: options).
    :param session: the session settings as one :class:`SessionOptions`,
        instead of ``call_timeout``, ``max_outstanding_calls``,
        ``detailed_errors``, ``max_bad_messages`` and the settings in
        *session_options*; setting one of those too is a ``TypeError``.
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
        websocket: WebSocketOptions | None = None,
        session: SessionOptions | None = None,
    ) -> None:
        if outbox_size < 1:
            raise ValueError("outbox_size must be at least 1")
        taken = _STATION_SESSION_OPTIONS & set(session_options or ())
        if taken:
            raise ValueError(f"pass {', '.join(sorted(taken))} to Station itself, not in session_options")
        check_protocols(protocols, validation)
        # The settings, validated once here; every connection reads them from these two objects.
        transport_settings = {k: v for k, v in (connect_options or {}).items() if k in _WEBSOCKET_SETTINGS}
        #: The transport settings every connection uses (:class:`WebSocketOptions`).
        self.websocket_options = merge_options(
            "Station", "websocket", websocket, WebSocketOptions(keepalive=keepalive, **transport_settings)
        )
        settings, extras = split_session_extras(dict(session_options or {}))
        keywords: dict[str, Any] = {
            "call_timeout": call_timeout,
            "max_outstanding_calls": max_outstanding_calls,
            "detailed_errors": detailed_errors,
            "max_bad_messages": max_bad_messages,
        }
        #: The session settings every connection uses (:class:`SessionOptions`).
        self.session_settings = merge_options(
            "Station", "session", session, SessionOptions(**(keywords | settings))
        )
        # What is left of the two mappings: objects, not settings, passed on as they are.
        self._connect_extras = {
            k: v for k, v in (connect_options or {}).items() if k not in _WEBSOCKET_SETTINGS
        }
        self._session_extras = extras
        self.url = url
        self.identity = identity
        self.router = router if router is not None else Router()
        self.data: dict[str, Any] = data if data is not None else {}
        self.reconnect = reconnect
        self.keepalive = self.websocket_options.keepalive
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
        self.call_timeout = self.session_settings.call_timeout
        self.validation = validation
        self.max_outstanding_calls = self.session_settings.max_outstanding_calls
        self.detailed_errors = self.session_settings.detailed_errors
        self.max_bad_messages = self.session_settings.max_bad_messages
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


#: The keys of ``connect_options`` that are transport settings (the rest: password, TLS, headers).
_WEBSOCKET_SETTINGS = frozenset(field_names(WebSocketOptions)) - {"keepalive"}

#: Session options the station sets itself (from its own parameters).
_STATION_SESSION_OPTIONS = frozenset(
    {"data", "call_timeout", "on_message", "router", "identity", "validation"}
)
