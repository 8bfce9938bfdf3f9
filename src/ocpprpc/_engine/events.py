"""Events: immutable values that go in and out of the engine.

The message events (:class:`Call`, :class:`CallResult`, :class:`CallError`,
:class:`CallResultError`, :class:`Send`) are used in both directions, as h11's
are: you pass them to :meth:`Connection.send` and you get them from
:meth:`Connection.events`.  The other events only come out of the engine and
report something the peer did that is not a normal message; where the protocol
defines an answer, the event carries it ready to write (``reply``).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from .rules import ErrorCode, MessageType

__all__ = [
    "BadMessage",
    "Call",
    "CallError",
    "CallResult",
    "CallResultError",
    "ConnectionClosed",
    "Event",
    "InvalidResponse",
    "Send",
    "TooManyBadMessages",
    "UnmatchedResponse",
    "Violation",
]


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base class of every engine event."""


class Call(Event, frozen=True, kw_only=True):
    """A CALL: a request that the other side must answer."""

    message_id: str
    action: str
    #: Inbound: what the payload codec decoded (a ``dict`` by default).
    #: Outbound: anything the codec can encode (a ``dict`` or a msgspec Struct).
    payload: Any


class Send(Event, frozen=True, kw_only=True):
    """An OCPP 2.1 SEND: like a CALL, but never answered."""

    message_id: str
    action: str
    payload: Any


class CallResult(Event, frozen=True, kw_only=True):
    """A CALLRESULT: the answer to a CALL."""

    message_id: str
    payload: Any
    #: The action of the CALL this answers.  Filled in by the engine on receive;
    #: ignored on send (the engine knows which CALL it answers).
    action: str | None = None


class CallError(Event, frozen=True, kw_only=True):
    """A CALLERROR: the CALL could not be carried out."""

    message_id: str
    code: ErrorCode
    description: str = ""
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Filled in by the engine on receive: the action of the CALL this answers.
    action: str | None = None
    #: Filled in by the engine on receive: the code exactly as the peer spelt it
    #: (an unknown code is read as GenericError and kept here).
    wire_code: str | None = None


class CallResultError(Event, frozen=True, kw_only=True):
    """An OCPP 2.1 CALLRESULTERROR: the receiver could not process a CALLRESULT."""

    message_id: str
    code: ErrorCode
    description: str = ""
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    #: On receive: the action of the CALL whose result was refused, when we still know it.
    action: str | None = None
    wire_code: str | None = None


class Violation(enum.Enum):
    """Why a received message was not a valid message."""

    EMPTY = "empty message"
    NOT_JSON = "not valid JSON"
    NOT_AN_ARRAY = "not a JSON array"
    BAD_MESSAGE_TYPE = "message type is not an integer"
    UNKNOWN_MESSAGE_TYPE = "message type not defined for this protocol version"
    UNREADABLE_ID = "message id is missing, not a string, empty, or (in a broken frame) over-long"
    ID_TOO_LONG = "message id is longer than allowed"
    MALFORMED_FRAME = "frame does not have the structure of its message type"
    PAYLOAD_NOT_OBJECT = "payload is not a JSON object"
    INVALID_PAYLOAD = "payload rejected by the payload codec"
    DUPLICATE_CALL = "a CALL with this id is already being handled"


class BadMessage(Event, frozen=True, kw_only=True):
    """A received message that could not be processed.

    If the protocol demands an answer, ``reply`` holds it, serialised: write it
    to the peer as a text message.  Nothing else is needed: the engine has
    already done its bookkeeping.
    """

    violation: Violation
    #: The frame's message type, when it could be read.
    message_type: int | None
    #: The message id, when it could be read.  From a well-formed frame it is kept
    #: verbatim, even over-long; from a broken frame only an id within the limit is trusted.
    message_id: str | None
    #: The action of a CALL or SEND, when it could be read.
    action: str | None
    code: ErrorCode
    description: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    #: The answer to send, or ``None`` when the protocol wants silence.
    reply: str | None = None


class InvalidResponse(Event, frozen=True, kw_only=True):
    """An answer to one of our CALLs that could not be processed.

    The CALL is finished: fail its caller with a remote error.  On OCPP 2.1 an
    invalid CALLRESULT is answered with a CALLRESULTERROR, which ``reply`` holds;
    on older versions (and for a defective CALLERROR) ``reply`` is ``None``.
    """

    message_id: str
    action: str
    message_type: MessageType
    code: ErrorCode
    description: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    reply: str | None = None


class UnmatchedResponse(Event, frozen=True, kw_only=True):
    """A CALLRESULT, CALLERROR or CALLRESULTERROR whose id matches no CALL we are waiting for.

    ``late`` is true when the id belongs to a CALL we abandoned (timed out or
    cancelled) or already got an answer for; the answer is dropped.
    """

    message_type: MessageType
    message_id: str
    late: bool
    #: The action of the abandoned CALL, when ``late``.
    action: str | None = None


class TooManyBadMessages(Event, frozen=True, kw_only=True):
    """The peer sent ``count`` bad messages in a row, reaching the configured limit.

    Emitted once, right after the :class:`BadMessage` that reached the limit.
    The transports close the connection with WebSocket code 1002 (protocol error).
    """

    count: int
    limit: int


class ConnectionClosed(Event, frozen=True, kw_only=True):
    """The transport closed.  Every CALL still waiting for an answer has failed."""

    #: Ids of our CALLs that were still waiting for an answer.
    unanswered_calls: tuple[str, ...]
    #: Ids of the peer's CALLs we had not answered yet.
    unanswered_inbound: tuple[str, ...]
