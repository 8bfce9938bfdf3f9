"""What a :class:`~ocpprpc.Station` tells its observers: its state, its events, and why a message failed."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from .._ws.transport import CloseReason

__all__ = [
    "BootAnswered",
    "CallDropped",
    "Closed",
    "Connected",
    "Connecting",
    "Delivered",
    "DeliveredCallback",
    "Disconnected",
    "EventCallback",
    "GaveUp",
    "MessageDropped",
    "Reconnecting",
    "StationEvent",
    "StationState",
    "TransactionNotStarted",
]


class StationState(enum.Enum):
    """Where a :class:`Station` is in its life."""

    #: Not entered yet.
    IDLE = "idle"
    #: Opening a connection (TCP, TLS, WebSocket upgrade).
    CONNECTING = "connecting"
    #: A connection is open; calls are being delivered.
    OPEN = "open"
    #: The connection ended; waiting the backoff delay before reconnecting.
    RECONNECTING = "reconnecting"
    #: Closed by the application, or gave up reconnecting.  Final.
    CLOSED = "closed"


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connecting:
    """A connection attempt starts (attempt 0: the first connection)."""

    attempt: int
    url: str


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is open, speaking *protocol*."""

    protocol: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The open connection ended (1006: the link was lost)."""

    reason: CloseReason


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """Waiting *delay* seconds before reconnect *attempt*; *error* is why the last attempt failed."""

    attempt: int
    delay: float
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The station stopped reconnecting for good; *reason* says why in words."""

    error: BaseException | None
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The station is closed for good (by the application, or after :class:`GaveUp`): the last event."""

    reason: str


@dataclass(frozen=True, slots=True)
class CallDropped:
    """A queued call failed without being sent (outbox full, or the station closed)."""

    action: str
    message_id: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class BootAnswered:
    """The CSMS answered our BootNotification: ``Accepted``, ``Pending`` or ``Rejected``."""

    status: str
    interval: float


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A durable message was given up: *attempts* sends failed, the last with *error*.

    It is deleted from the store.  Only :class:`~ocpprpc.TransactionRetry`
    running out drops a durable message (or a payload that can never be sent).
    """

    action: str
    message_id: str
    attempts: int
    error: BaseException


@dataclass(frozen=True, slots=True)
class Delivered:
    """A durable message the CSMS answered: what ``on_delivered`` receives.

    :param payload: the message's payload as sent (JSON values).
    :param answer: the CALLRESULT payload (as :meth:`Session.call` returns it).
    :param restored: ``True`` when the message was loaded from the store at
        start (an earlier process queued it, nobody is awaiting it).
    """

    action: str
    message_id: str
    payload: Any
    answer: Any
    restored: bool
    #: The provisional transaction id this message started or named
    #: (:meth:`Station.start_transaction`); ``None`` for other messages.
    provisional_transaction_id: int | None = None


class TransactionNotStarted(Exception):
    """A 1.6 message names a provisional transaction id that never got a real one.

    Its StartTransaction was given up (or failed) before the CSMS answered it,
    so there is no ``transactionId`` to send: the message fails (a durable one
    is dropped with a :class:`MessageDropped` event, a queued call with a
    :class:`CallDropped` event) instead of reaching the CSMS with a made-up id.
    """

    def __init__(self, action: str, message_id: str, provisional_id: int, why: str) -> None:
        self.action = action
        self.message_id = message_id
        self.provisional_id = provisional_id
        super().__init__(
            f"{action} ({message_id}) names provisional transaction {provisional_id}, which has"
            f" no transactionId from the CSMS: {why}"
        )


StationEvent: TypeAlias = (
    Connecting
    | Connected
    | Disconnected
    | Reconnecting
    | GaveUp
    | Closed
    | CallDropped
    | BootAnswered
    | MessageDropped
)
EventCallback: TypeAlias = Callable[[StationEvent], None]
DeliveredCallback: TypeAlias = Callable[[Delivered], "Awaitable[None] | None"]
