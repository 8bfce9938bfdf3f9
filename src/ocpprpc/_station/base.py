"""What every part of a :class:`~ocpprpc.Station` shares: its settings, its state, its events.

The station's behaviour is split by concern into mixins that inherit in a chain
(offline transactions, the boot gate, delivery, the calls, the connection loop,
then :class:`~ocpprpc.Station` itself), so a call between concerns stays a plain
method call on ``self``.  ``_StationBase`` declares the attributes they all use
(``Station.__init__`` sets them) and the few methods a mixin calls that a later
one in the chain implements.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from .._options.model import SessionOptions, WebSocketOptions
from .._options.policies import Backoff, Keepalive, OutboxFullPolicy, Retry, TransactionRetry
from .._rpc.protocols import ValidationArg
from .._rpc.router import Router
from .._rpc.session import MessageHook, Session
from .._typed.messages import Request
from .._ws.transport import ConnectionLost
from .events import DeliveredCallback, EventCallback, GaveUp, StationEvent, StationState
from .outbox import OutboxRecord, OutboxStore
from .queued import _Outgoing, _Transaction

log = logging.getLogger("ocpprpc.station")

DurableRule: TypeAlias = Callable[[str, Mapping[str, Any]], bool]
BootArg: TypeAlias = Request[Any] | Mapping[str, Any] | Callable[[str], "Request[Any] | Mapping[str, Any]"]


class _StationBase:
    """The attributes every station mixin uses, and the helpers they share."""

    # -- settings (Station.__init__) -----------------------------------------------------------
    url: str
    identity: str
    router: Router
    data: dict[str, Any]
    reconnect: Backoff | None
    keepalive: Keepalive | None
    boot: BootArg | None
    boot_retry_interval: float
    outbox_size: int
    outbox_full: OutboxFullPolicy
    retry: Retry | None
    send_interval: float
    store: OutboxStore | None
    durable: DurableRule
    transaction_retry: TransactionRetry
    on_delivered: DeliveredCallback | None
    on_event: EventCallback | None
    on_message: MessageHook | None
    call_timeout: float | None
    validation: ValidationArg
    max_outstanding_calls: int | None
    detailed_errors: bool
    max_bad_messages: int | None
    connect_options: dict[str, Any]
    session_options: dict[str, Any]
    websocket_options: WebSocketOptions
    session_settings: SessionOptions
    _connect_extras: dict[str, Any]
    _session_extras: dict[str, Any]

    # -- state -----------------------------------------------------------------------------------
    _protocols: tuple[str, ...]
    _protocol: str | None
    _state: StationState
    _session: Session | None
    _outbox: deque[_Outgoing]
    _durable: deque[_Outgoing]
    _triggered: deque[_Outgoing]
    _transactions: dict[int, _Transaction]
    _last_provisional: int
    _order: itertools.count[int]
    _in_flight: _Outgoing | None
    _in_flight_prefix: str
    _subscribers: list[MemoryObjectSendStream[StationEvent]]
    _entered: bool
    _changed: anyio.Event
    _wakeup: anyio.Event
    _booted: anyio.Event
    _stopping: bool
    _gave_up: GaveUp | None
    _boot_wait: float
    _supervisor_scope: anyio.CancelScope
    _supervisor_done: anyio.Event
    boot_status: str | None
    heartbeat_interval: float | None
    connections: int

    if TYPE_CHECKING:
        # Implemented further down the chain (_Delivery), used by the mixins before it.
        async def _call(self, session: Session, item: _Outgoing) -> Any: ...

        async def _send_one(self, session: Session, item: _Outgoing) -> bool: ...

        async def _drop_durable(
            self, item: _Outgoing, record: OutboxRecord, error: BaseException
        ) -> None: ...

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

    def _kept_error(self) -> ConnectionLost:
        return ConnectionLost(None, f"{self._closed_message()}; the message stays in the durable outbox")

    def _closed_message(self) -> str:
        if self._gave_up is not None:
            return f"the station gave up reconnecting: {self._gave_up.reason}"
        return "the station is closed"

    def _require_store(self) -> OutboxStore:
        assert self.store is not None
        return self.store

    async def _store_call(self, method: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Update the store; a failing store is logged, not fatal (the message is still sent)."""
        try:
            await method(*args)
        except Exception:
            log.exception("%s: the outbox store failed", self)
