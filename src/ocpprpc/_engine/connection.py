"""The sans-IO OCPP-J connection.

Theory of operation
-------------------
One :class:`Connection` is one end (a charging station or a CSMS) of one
OCPP-J WebSocket connection speaking one subprotocol.  It does no I/O and keeps
no time: the code that owns the socket feeds it each received text message with
:meth:`Connection.receive_message`, drains :meth:`Connection.events`, and writes
what :meth:`Connection.send` returns.  Timeouts belong to that code too; when one
fires it tells the engine with :meth:`Connection.abandon_call`.

The engine keeps three tables:

* ``_outstanding``: our CALLs waiting for an answer (id -> action).  The action
  tells the payload codec how to read the answer.
* ``_inbound``: the peer's CALLs we have not answered yet (id -> action).  Only
  these may be answered, and a second CALL with one of these ids is refused.
* ``_finished`` / ``_answered``: bounded memories of calls that are over, so a
  late answer is reported as late (not as nonsense) and a CALLRESULTERROR can
  name the action it concerns (``_answered`` only where CALLRESULTERROR exists: 2.1).

Everything the peer can get wrong becomes an event; where the protocol defines
an answer, the event carries it serialised (``reply``).  The decisions come
from :mod:`ocpprpc._engine.rules`; this module only applies them.

The per-message path is kept short (bench/README.md has the costs).  With a codec
of :data:`~ocpprpc._engine.codec.TRUSTED_CODECS` the engine hands over the frame's
``msgspec.Raw`` and looks for a non-object payload only after the codec refused
one; with a *plain* one (no schema validation) it reads a payload into a ``dict``
itself and writes a ``dict`` or Struct payload inside its frame in one msgspec
call.  Whenever such a shortcut fails, the general path runs and produces exactly
the outcome it always did.

Why this is one module
----------------------
:class:`Connection` (about 700 lines) stays one class in one module on purpose.
It is one state machine over the tables above, and most of it is the
per-message path that the callgrind harness measures (bench/README.md):
``receive_message`` goes straight to ``_on_call``, ``_on_call_result`` and the
rest, ``send`` to ``_send_call``, ``_send_result`` and the rest, each reading the
tables and this module's shortcuts (``_encode``, ``_OBJECT_STRUCTS``) directly.
Helper objects would add a call layer to that path; mixins would not, but would
spread one invariant (which table a message id is in, and when it leaves) over
several files.  Everything that is not the state machine lives elsewhere:
message ids in :mod:`~ocpprpc._engine.ids`, frames in ``frames``, the
per-version rules in ``rules``, payloads in ``codec``, events in ``events``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NoReturn

import msgspec

from .codec import TRUSTED_CODECS, JsonObjectCodec, PayloadCodec, PayloadKind
from .errors import (
    LocalProtocolError,
    OCPPError,
    OutboundPayloadError,
    PayloadError,
    TooManyOutstandingCalls,
)
from .events import (
    BadMessage,
    Call,
    CallError,
    CallResult,
    CallResultError,
    ConnectionClosed,
    Event,
    InvalidResponse,
    Send,
    TooManyBadMessages,
    UnmatchedResponse,
    Violation,
)
from .frames import (
    TOO_DEEP_DESCRIPTION,
    UNREADABLE_ID_DESCRIPTION,
    CallErrorFrame,
    CallFrame,
    CallResultErrorFrame,
    CallResultFrame,
    Defect,
    PlainCallFrame,
    PlainCallResultFrame,
    PlainSendFrame,
    SendFrame,
    decode_function_for,
    decoder_for,
    salvage,
)
from .ids import uuid4_message_id
from .rules import (
    ErrorCode,
    MessageType,
    ProtocolRules,
    Role,
    UnknownMessageTypePolicy,
    parse_error_code,
    rules_for,
)

__all__ = ["Connection", "ConnectionState", "uuid4_message_id"]

_encode = msgspec.json.Encoder().encode
_ENCODE_ERRORS = (TypeError, ValueError, msgspec.MsgspecError)
_REQUEST = PayloadKind.REQUEST
_RESPONSE = PayloadKind.RESPONSE
_OPEN_BRACE = ord("{")  # a Raw value starts at its first byte, never at whitespace
_MISSING: Any = object()
#: Struct types that encode as a JSON object (not ``array_like``), learnt as they are sent:
#: a plain codec writes them exactly as the engine would inside the frame.
_OBJECT_STRUCTS: set[type] = set()


def _encodes_as_object(kind: type) -> bool:
    """Whether a payload of type *kind* is a JSON object when encoded (dicts aside)."""
    if issubclass(kind, msgspec.Struct) and not kind.__struct_config__.array_like:
        _OBJECT_STRUCTS.add(kind)
        return True
    return False


class _NotAnObject(Exception):
    """A payload is not a JSON object (raised and caught inside the engine)."""


class ConnectionState(enum.Enum):
    """Whether the connection can still carry messages."""

    OPEN = "open"
    #: The transport closed (``receive_message(None)``); nothing can be sent.
    CLOSED = "closed"


# Which codec failures count as which protocol violation is the codec's call;
# which *frames* get answered is the rules table's.  These are the only texts
# the engine writes into CALLERROR descriptions itself.
_DESCRIPTIONS: Mapping[Violation, str] = MappingProxyType(
    {
        Violation.ID_TOO_LONG: "message id is longer than {limit} characters",
        Violation.PAYLOAD_NOT_OBJECT: "payload must be a JSON object",
        Violation.DUPLICATE_CALL: "a CALL with this message id is already being handled",
    }
)


class Connection:
    """One end of one OCPP-J connection, with no I/O.

    :param role: which end this is.
    :param protocol: the negotiated subprotocol (``"ocpp1.6"``, ``"ocpp2.0.1"``,
        ``"ocpp2.1"``, a custom name) or explicit :class:`ProtocolRules`.
    :param codec: reads and writes payloads; :class:`JsonObjectCodec` (plain
        dicts) by default.
    :param id_factory: makes message ids for :meth:`new_call` and
        :meth:`new_send`; UUID4 strings by default.  Inject a counter in tests.
    :param max_outstanding_calls: how many of our CALLs may await an answer at
        once; the version's default (1) if ``None``.
    :param max_bad_messages: after this many consecutive bad messages the engine
        emits :class:`TooManyBadMessages`; ``None`` never.
    :param detailed_errors: put the exception text into the CALLERROR that
        :meth:`error_for` builds for an unexpected handler exception.  Off by
        default: exception text can leak internals.  Stack traces never go out.
    :param finished_memory: how many finished call ids to remember for
        telling late answers from unknown ones (and, on 2.1, which action a
        CALLRESULTERROR concerns).  A late answer follows its call within a few
        calls (OCPP-J allows one in flight), so 32 serve; each id kept costs
        ~100 bytes per connection for as long as it lives.
    """

    def __init__(
        self,
        role: Role,
        protocol: str | ProtocolRules = "ocpp1.6",
        *,
        codec: PayloadCodec | None = None,
        id_factory: Callable[[], str] = uuid4_message_id,
        max_outstanding_calls: int | None = None,
        max_bad_messages: int | None = None,
        detailed_errors: bool = False,
        finished_memory: int = 32,
    ) -> None:
        self.role = role
        self.rules = rules_for(protocol)
        self.codec = codec if codec is not None else JsonObjectCodec()
        self._id_factory = id_factory
        limit = (
            self.rules.default_max_outstanding_calls
            if max_outstanding_calls is None
            else max_outstanding_calls
        )
        if limit < 1:
            raise ValueError("max_outstanding_calls must be at least 1")
        self.max_outstanding_calls = limit
        if max_bad_messages is not None and max_bad_messages < 1:
            raise ValueError("max_bad_messages must be at least 1 (or None)")
        self.max_bad_messages = max_bad_messages
        self.detailed_errors = detailed_errors
        self._finished_memory = finished_memory
        self._closed = False
        self._events: list[Event] = []
        self._outstanding: dict[str, str] = {}
        # Ids of our outstanding CALLs sent with validate=False: their answer is not validated either.
        # Made by the first such CALL (an empty set costs 216 bytes, and most connections make none).
        self._unvalidated: set[str] | None = None
        self._inbound: dict[str, str] = {}
        # Bounded memories, oldest first: each id also queued in first-insertion order, so
        # forgetting the oldest is O(1) (a dict's next(iter()) skips deleted slots).
        # The queues are made by the first id remembered: an empty deque costs ~0.7 KB, and a
        # connection that never called or was called has none (idle connections, W4 in bench/).
        self._finished: dict[str, str] | None = None  # made with its queue: 64 bytes more per idle one
        self._finished_order: deque[str] | None = None
        self._answered: dict[str, str] | None = None
        self._answered_order: deque[str] | None = None
        self._bad_in_a_row = 0
        #: Bad messages received in all (malformed frames, payloads failing validation, invalid answers).
        self.bad_messages = 0

    # -- introspection ---------------------------------------------------------------

    @property
    def rules(self) -> ProtocolRules:
        """The rules of the subprotocol."""
        return self._rules

    @rules.setter
    def rules(self, rules: ProtocolRules) -> None:
        self._rules = rules
        self._max_id = rules.max_message_id_length
        # Answered CALL ids are remembered only for a CALLRESULTERROR to name its action (2.1):
        # without one, a CSMS would keep finished_memory ids of every station for nothing.
        self._remember_answers = MessageType.CALL_RESULT_ERROR in rules.message_types
        if hasattr(self, "_codec"):
            self._choose_decoders()

    @property
    def codec(self) -> PayloadCodec:
        """The payload codec."""
        return self._codec

    @codec.setter
    def codec(self, codec: PayloadCodec) -> None:
        self._codec = codec
        # What the codec lets the engine skip (see TRUSTED_CODECS).
        self._trusted = type(codec) in TRUSTED_CODECS
        self._plain = self._trusted and bool(getattr(codec, "plain", False))
        # A trusted codec that validates: called directly on the happy path.
        self._direct = self._trusted and not self._plain
        self._choose_decoders()

    def _choose_decoders(self) -> None:
        message_types = self._rules.message_types
        self._decoder = decoder_for(message_types)
        # With a plain codec, payloads are read in the same pass as their frame.
        self._decode_frame = decode_function_for(message_types, plain=self._plain)

    @property
    def protocol(self) -> str:
        """The subprotocol name."""
        return self.rules.protocol

    @property
    def state(self) -> ConnectionState:
        return ConnectionState.CLOSED if self._closed else ConnectionState.OPEN

    @property
    def outstanding_calls(self) -> Mapping[str, str]:
        """Our CALLs awaiting an answer: message id -> action (read-only view)."""
        return MappingProxyType(self._outstanding)

    @property
    def inbound_calls(self) -> Mapping[str, str]:
        """The peer's CALLs we have not answered yet: message id -> action (read-only view)."""
        return MappingProxyType(self._inbound)

    @property
    def consecutive_bad_messages(self) -> int:
        """Bad messages received in a row; a good message resets it to 0."""
        return self._bad_in_a_row

    def __repr__(self) -> str:
        return (
            f"<Connection {self.role.value} {self.protocol} {self.state.value}"
            f" outstanding={len(self._outstanding)} inbound={len(self._inbound)}>"
        )

    # -- receiving -------------------------------------------------------------------

    def receive_message(self, data: str | bytes | bytearray | memoryview | None) -> None:
        """Feed one received WebSocket text message; ``None`` when the transport closed.

        Never raises for anything the peer sent: every outcome is an event.
        Raises :class:`LocalProtocolError` if called with data after ``None``.
        """
        if data is None:
            self._close()
            return
        if self._closed:
            raise LocalProtocolError("receive_message() called after the connection closed")
        try:
            frame = self._decode_frame(data)
        except (msgspec.MsgspecError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than msgspec follows (it counts
            # against the interpreter's recursion limit); malformed like the rest.
            frame = self._decode_again(data, exc)
            if frame is None:
                return
        _RECEIVERS[type(frame)](self, frame)

    def _decode_again(self, data: str | bytes | bytearray | memoryview, exc: Exception) -> Any:
        """The frame the general decoder reads, after the plain one failed; ``None`` if none."""
        if self._plain:
            try:
                return self._decoder.decode(data)  # e.g. a payload that is not an object
            except (msgspec.MsgspecError, RecursionError) as again:
                exc = again  # its message describes the frame
        self._undecodable(data, exc)
        return None

    def _undecodable(self, data: str | bytes | bytearray | memoryview, exc: Exception) -> None:
        """A message no frame type accepts: empty, or a defect the rules answer."""
        if not (data if isinstance(data, str) else bytes(data)).strip():
            # An empty text frame: ignored, as ocpp-rpc does "for compatibility with some
            # particular charge point vendors".  Not counted as a bad message.
            self._events.append(
                BadMessage(
                    violation=Violation.EMPTY,
                    message_type=None,
                    message_id=None,
                    action=None,
                    code=ErrorCode.GENERIC_ERROR,
                    description=Violation.EMPTY.value,
                )
            )
            return
        rules = self.rules
        self._on_defect(salvage(data, rules.message_types, str(exc), rules.max_message_id_length))

    def events(self) -> list[Event]:
        """Take the events produced so far, oldest first (the engine forgets them)."""
        events = self._events
        if not events:
            return []
        self._events = []
        return events

    def _on_call(self, frame: CallFrame | PlainCallFrame) -> None:
        message_id = frame.message_id
        if not message_id:
            self._on_defect(
                Defect(
                    Violation.UNREADABLE_ID, UNREADABLE_ID_DESCRIPTION, MessageType.CALL, None, frame.action
                )
            )
            return
        if len(message_id) > self._max_id:
            self._bad_call(frame, Violation.ID_TOO_LONG, self.rules.frame_error)
            return
        inbound = self._inbound
        if message_id in inbound:
            self._bad_call(frame, Violation.DUPLICATE_CALL, self.rules.duplicate_call)
            return
        action = frame.action
        payload = frame.payload  # already a dict from a plain frame
        if type(frame) is CallFrame:  # a Raw payload, for the codec to read
            payload = _MISSING
            if self._direct:
                try:  # noqa: SIM105 (contextlib.suppress costs a context manager per message)
                    payload = self._codec.decode(action, _REQUEST, frame.payload)
                except (PayloadError, RecursionError):
                    pass  # asked again below, to tell a non-object from an invalid one
            if payload is _MISSING:
                try:
                    payload = self._read(action, _REQUEST, frame.payload, True)
                except _NotAnObject:
                    self._bad_call(frame, Violation.PAYLOAD_NOT_OBJECT, self.rules.payload_not_object)
                    return
                except PayloadError as exc:
                    self._bad_call(
                        frame, Violation.INVALID_PAYLOAD, exc.code, exc.description, dict(exc.details)
                    )
                    return
        inbound[message_id] = action
        self._bad_in_a_row = 0
        self._events.append(Call(message_id=message_id, action=action, payload=payload))

    def _bad_call(
        self,
        frame: CallFrame | PlainCallFrame,
        violation: Violation,
        code: ErrorCode,
        description: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if description is None:
            description = _DESCRIPTIONS[violation].format(limit=self.rules.max_message_id_length)
        details = details if details is not None else {}
        reply = self._error_frame(MessageType.CALL_ERROR, frame.message_id, code, description, details)
        self._bad(
            BadMessage(
                violation=violation,
                message_type=MessageType.CALL,
                message_id=frame.message_id,
                action=frame.action,
                code=code,
                description=description,
                details=details,
                reply=reply,
            )
        )

    def _on_send(self, frame: SendFrame | PlainSendFrame) -> None:
        # A SEND is never answered ([P4-21] 4.2.5), so a bad one is only reported.
        message_id = frame.message_id
        violation: Violation | None = None
        code = self.rules.frame_error
        description = ""
        details: dict[str, Any] = {}
        if not message_id:
            violation, description = Violation.UNREADABLE_ID, UNREADABLE_ID_DESCRIPTION
        elif len(message_id) > self._max_id:
            violation = Violation.ID_TOO_LONG
            description = _DESCRIPTIONS[violation].format(limit=self._max_id)
        elif type(frame) is SendFrame:  # a Raw payload, for the codec to read
            try:
                payload = self._read(frame.action, _REQUEST, frame.payload, True)
            except _NotAnObject:
                violation, code = Violation.PAYLOAD_NOT_OBJECT, self.rules.payload_not_object
                description = _DESCRIPTIONS[violation]
            except PayloadError as exc:
                violation, code, description = Violation.INVALID_PAYLOAD, exc.code, exc.description
                details = dict(exc.details)
        else:
            payload = frame.payload  # already a dict from a plain frame
        if violation is not None:
            self._bad(
                BadMessage(
                    violation=violation,
                    message_type=MessageType.SEND,
                    message_id=message_id or None,
                    action=frame.action,
                    code=code,
                    description=description,
                    details=details,
                )
            )
            return
        self._good(Send(message_id=message_id, action=frame.action, payload=payload))

    def _on_call_result(self, frame: CallResultFrame | PlainCallResultFrame) -> None:
        message_id = frame.message_id
        action = self._outstanding.pop(message_id, None)
        if action is None:
            self._unmatched(MessageType.CALL_RESULT, message_id)
            return
        # The CALL is over: remember it (to spot late answers), forget its options (_finish, inline).
        validate = True
        unvalidated = self._unvalidated
        if unvalidated and message_id in unvalidated:
            validate = False
            unvalidated.discard(message_id)
        finished = self._finished
        order = self._finished_order
        if finished is None or order is None:
            finished, order = self._finished, self._finished_order = {}, deque()
        if message_id not in finished:
            order.append(message_id)
        finished[message_id] = action
        if len(finished) > self._finished_memory:
            del finished[order.popleft()]
        payload = frame.payload  # already a dict from a plain frame
        if type(frame) is CallResultFrame:  # a Raw payload, for the codec to read
            payload = _MISSING
            if self._direct:
                try:  # noqa: SIM105 (contextlib.suppress costs a context manager per message)
                    payload = self._codec.decode(action, _RESPONSE, frame.payload, validate=validate)
                except (PayloadError, RecursionError):
                    pass  # asked again below, to tell a non-object from an invalid one
            if payload is _MISSING:
                try:
                    payload = self._read(action, _RESPONSE, frame.payload, validate)
                except _NotAnObject:
                    description = _DESCRIPTIONS[Violation.PAYLOAD_NOT_OBJECT]
                    self._invalid_result(message_id, action, self.rules.payload_not_object, description, {})
                    return
                except PayloadError as exc:
                    self._invalid_result(message_id, action, exc.code, exc.description, dict(exc.details))
                    return
        self._bad_in_a_row = 0
        self._events.append(CallResult(message_id=message_id, payload=payload, action=action))

    def _read(self, action: str, kind: PayloadKind, raw: msgspec.Raw, validate: bool) -> Any:
        """The codec's reading of a payload; raises :class:`_NotAnObject` or :class:`PayloadError`."""
        codec = self._codec
        try:
            if self._trusted:
                # It refuses anything but an object itself: look at the first byte only then.
                try:
                    return codec.decode(action, kind, raw, validate=validate)
                except (PayloadError, RecursionError):
                    if bytes(raw)[0] != _OPEN_BRACE:
                        raise _NotAnObject from None
                    raise
            view = memoryview(raw)
            if view[0] != _OPEN_BRACE:
                raise _NotAnObject
            if validate:
                return codec.decode(action, kind, view)
            return codec.decode(action, kind, view, validate=False)
        except RecursionError:
            # Nested deeper than the decoder (msgspec, or a codec's own walk) can follow.
            raise PayloadError(ErrorCode.FORMAT_VIOLATION, TOO_DEEP_DESCRIPTION) from None

    def _invalid_result(
        self, message_id: str, action: str, code: ErrorCode, description: str, details: dict[str, Any]
    ) -> None:
        reply = None
        if self.rules.answer_invalid_result:
            reply = self._error_frame(MessageType.CALL_RESULT_ERROR, message_id, code, description, details)
        self._bad(
            InvalidResponse(
                message_id=message_id,
                action=action,
                message_type=MessageType.CALL_RESULT,
                code=code,
                description=description,
                details=details,
                reply=reply,
            )
        )

    def _on_call_error(self, frame: CallErrorFrame) -> None:
        message_id = frame.message_id
        action = self._outstanding.pop(message_id, None)
        if action is None:
            self._unmatched(MessageType.CALL_ERROR, message_id)
            return
        self._finish(message_id, action)
        code = parse_error_code(frame.code)
        self._good(
            CallError(
                message_id=message_id,
                code=code if code is not None else ErrorCode.GENERIC_ERROR,
                description=frame.description,
                details=frame.details,
                action=action,
                wire_code=frame.code,
            )
        )

    def _on_call_result_error(self, frame: CallResultErrorFrame) -> None:
        code = parse_error_code(frame.code)
        self._good(
            CallResultError(
                message_id=frame.message_id,
                code=code if code is not None else ErrorCode.GENERIC_ERROR,
                description=frame.description,
                details=frame.details,
                action=None if self._answered is None else self._answered.get(frame.message_id),
                wire_code=frame.code,
            )
        )

    def _unmatched(self, message_type: MessageType, message_id: str) -> None:
        action = None if self._finished is None else self._finished.get(message_id)
        self._good(
            UnmatchedResponse(
                message_type=message_type, message_id=message_id, late=action is not None, action=action
            )
        )

    def _on_defect(self, defect: Defect) -> None:
        """Answer (or not) a frame the parser could not read, as the rules say."""
        rules = self.rules
        message_type = defect.message_type
        message_id = defect.message_id
        code = rules.frame_error
        reply: str | None = None
        reply_type = MessageType.CALL_ERROR

        if defect.violation is Violation.UNKNOWN_MESSAGE_TYPE:
            # [J16] 4.1.3 / [P4-21] 4.4: ignore; [P4-201] 4.4: MessageTypeNotSupported.
            code = ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED
            if rules.unknown_message_type is UnknownMessageTypePolicy.REPLY_MESSAGE_TYPE_NOT_SUPPORTED:
                reply_id = message_id if message_id is not None else rules.unreadable_id_reply
                if reply_id is not None:
                    reply = self._error_frame(reply_type, reply_id, code, defect.description, {})
        elif message_type is None or message_type == MessageType.CALL:
            # A corrupt message that may be (or is) a CALL gets a CALLERROR; "-1" when
            # its id cannot be read ([P4-201] 4.2.3), silence where the version has no such rule.
            reply_id = message_id if message_id is not None else rules.unreadable_id_reply
            if reply_id is not None:
                reply = self._error_frame(reply_type, reply_id, code, defect.description, {})
        elif message_type == MessageType.CALL_RESULT:
            action = self._outstanding.pop(message_id, None) if message_id is not None else None
            if action is not None and message_id is not None:
                self._finish(message_id, action)
                self._invalid_result(message_id, action, code, defect.description, {})
                return
            if rules.answer_invalid_result:
                reply_id = message_id if message_id is not None else rules.unreadable_id_reply
                if reply_id is not None:
                    reply = self._error_frame(
                        MessageType.CALL_RESULT_ERROR, reply_id, code, defect.description, {}
                    )
        elif message_type == MessageType.CALL_ERROR and message_id in self._outstanding:
            # A defective CALLERROR is never answered, but it does end the CALL it names.
            assert message_id is not None
            action = self._outstanding.pop(message_id)
            self._finish(message_id, action)
            self._bad(
                InvalidResponse(
                    message_id=message_id,
                    action=action,
                    message_type=MessageType.CALL_ERROR,
                    code=code,
                    description=defect.description,
                )
            )
            return
        # Anything else (a defective CALLERROR, CALLRESULTERROR or SEND) is never answered.
        self._bad(
            BadMessage(
                violation=defect.violation,
                message_type=message_type,
                message_id=message_id,
                action=defect.action,
                code=code,
                description=defect.description,
                reply=reply,
            )
        )

    def _good(self, event: Event) -> None:
        self._bad_in_a_row = 0
        self._events.append(event)

    def _bad(self, event: Event) -> None:
        self._events.append(event)
        self.bad_messages += 1
        self._bad_in_a_row += 1
        if self.max_bad_messages is not None and self._bad_in_a_row == self.max_bad_messages:
            self._events.append(TooManyBadMessages(count=self._bad_in_a_row, limit=self.max_bad_messages))

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for message_id, action in self._outstanding.items():
            self._remember(message_id, action)
        self._unvalidated = None
        self._events.append(
            ConnectionClosed(
                unanswered_calls=tuple(self._outstanding), unanswered_inbound=tuple(self._inbound)
            )
        )
        self._outstanding.clear()
        self._inbound.clear()

    def _finish(self, message_id: str, action: str) -> None:
        """Our CALL *message_id* is over: remember it (to spot late answers), forget its options."""
        self._remember(message_id, action)
        if self._unvalidated:
            self._unvalidated.discard(message_id)

    def _remember(self, message_id: str, action: str) -> None:
        """Our CALL *message_id* is over: keep it in the bounded memory of finished calls."""
        finished = self._finished
        order = self._finished_order
        if finished is None or order is None:
            finished, order = self._finished, self._finished_order = {}, deque()
        if message_id not in finished:
            order.append(message_id)
        finished[message_id] = action
        if len(finished) > self._finished_memory:
            del finished[order.popleft()]

    # -- sending ---------------------------------------------------------------------

    def new_call(self, action: str, payload: Any, *, message_id: str | None = None) -> Call:
        """A :class:`Call` with a fresh message id (nothing is sent or recorded yet)."""
        return Call(message_id=message_id or self._id_factory(), action=action, payload=payload)

    def new_send(self, action: str, payload: Any, *, message_id: str | None = None) -> Send:
        """A :class:`Send` with a fresh message id (nothing is sent or recorded yet)."""
        return Send(message_id=message_id or self._id_factory(), action=action, payload=payload)

    def send(self, event: Event, *, validate: bool = True) -> str:
        """Record *event* as sent and return the text message to write.

        ``validate=False`` opts this message out of the codec's schema
        validation; for a :class:`Call`, its answer is not validated either.
        """
        # send_bytes(), inline: one call less per message.
        sender = _SENDERS.get(type(event))
        if sender is None or self._closed:
            self._refuse(event)
        return sender(self, event, validate).decode()

    def send_bytes(self, event: Event, *, validate: bool = True) -> bytes:
        """Like :meth:`send`, but the UTF-8 encoded text message."""
        # Exact types, not isinstance: events are final (subclasses would not round-trip).
        sender = _SENDERS.get(type(event))
        if sender is None or self._closed:
            self._refuse(event)
        return sender(self, event, validate)

    def _refuse(self, event: Event) -> NoReturn:
        if self._closed:
            raise LocalProtocolError(f"cannot send {type(event).__name__}: the connection is closed")
        raise LocalProtocolError(f"{type(event).__name__} is not a message that can be sent")

    def _check_outbound_id(self, message_id: str) -> None:
        if not message_id or len(message_id) > self._max_id:
            raise LocalProtocolError(f"message id must be 1 to {self._max_id} characters, got {message_id!r}")

    def _encode_payload(self, action: str, kind: PayloadKind, payload: Any, validate: bool) -> msgspec.Raw:
        try:
            if validate:
                return msgspec.Raw(self._codec.encode(action, kind, payload))
            return msgspec.Raw(self._codec.encode(action, kind, payload, validate=False))
        except PayloadError as exc:
            raise OutboundPayloadError(action, exc) from exc

    def _send_call(self, event: Call, validate: bool) -> bytes:
        message_id = event.message_id
        if not message_id or len(message_id) > self._max_id:  # _check_outbound_id(), inline
            self._check_outbound_id(message_id)
        outstanding = self._outstanding
        if message_id in outstanding:
            raise LocalProtocolError(f"a CALL with message id {message_id!r} is already awaiting an answer")
        if len(outstanding) >= self.max_outstanding_calls:
            raise TooManyOutstandingCalls(
                f"{len(outstanding)} CALL(s) already await an answer (limit {self.max_outstanding_calls})"
            )
        action = event.action
        payload = event.payload
        data = None
        kind = type(payload)
        if self._plain and (kind is dict or kind in _OBJECT_STRUCTS or _encodes_as_object(kind)):
            # The frame in one msgspec call; if that fails, the codec says why, below.
            try:  # noqa: SIM105 (contextlib.suppress costs a context manager per message)
                data = _encode((2, message_id, action, payload))
            except _ENCODE_ERRORS:
                pass
        if data is None:
            # _encode_payload(), inline
            try:
                if validate:
                    out = self._codec.encode(action, _REQUEST, payload)
                else:
                    out = self._codec.encode(action, _REQUEST, payload, validate=False)
            except PayloadError as exc:
                raise OutboundPayloadError(action, exc) from exc
            data = _encode((2, message_id, action, msgspec.Raw(out)))
        outstanding[message_id] = action
        if not validate:
            if self._unvalidated is None:
                self._unvalidated = set()
            self._unvalidated.add(message_id)
        return data

    def _send_send(self, event: Send, validate: bool) -> bytes:
        self._check_supported(MessageType.SEND)
        self._check_outbound_id(event.message_id)
        payload = self._encode_payload(event.action, PayloadKind.REQUEST, event.payload, validate)
        return _encode((MessageType.SEND.value, event.message_id, event.action, payload))

    def _send_result(self, event: CallResult, validate: bool) -> bytes:
        message_id = event.message_id
        inbound = self._inbound
        action = inbound.get(message_id)
        if action is None:
            raise LocalProtocolError(f"no CALL with message id {message_id!r} is awaiting an answer")
        payload = event.payload
        data = None
        kind = type(payload)
        if self._plain and (kind is dict or kind in _OBJECT_STRUCTS or _encodes_as_object(kind)):
            try:  # noqa: SIM105 (contextlib.suppress costs a context manager per message)
                data = _encode((3, message_id, payload))
            except _ENCODE_ERRORS:
                pass  # the codec says why, below
        if data is None:
            # _encode_payload(), inline.  On a bad payload the CALL stays open, so the
            # caller can still answer it with an error.
            try:
                if validate:
                    out = self._codec.encode(action, _RESPONSE, payload)
                else:
                    out = self._codec.encode(action, _RESPONSE, payload, validate=False)
            except PayloadError as exc:
                raise OutboundPayloadError(action, exc) from exc
            data = _encode((3, message_id, msgspec.Raw(out)))
        del inbound[message_id]
        if self._remember_answers:
            answered = self._answered  # _remember(), inline
            order = self._answered_order
            if answered is None or order is None:
                answered, order = self._answered, self._answered_order = {}, deque()
            if message_id not in answered:
                order.append(message_id)
            answered[message_id] = action
            if len(answered) > self._finished_memory:
                del answered[order.popleft()]
        return data

    def _send_error(self, event: CallError, validate: bool) -> bytes:
        # A CALLERROR only ever answers a CALL ([J16] 4.2.3; EVerest/libocpp#995).
        message_id = event.message_id
        if message_id not in self._inbound:
            raise LocalProtocolError(
                "a CALLERROR answers a CALL, and no CALL with message id"
                f" {message_id!r} is awaiting an answer"
            )
        frame = self._error_frame(
            MessageType.CALL_ERROR, message_id, event.code, event.description, event.details
        )
        del self._inbound[message_id]
        return frame.encode()

    def _send_result_error(self, event: CallResultError, validate: bool) -> bytes:
        self._check_supported(MessageType.CALL_RESULT_ERROR)
        if self._finished is None or event.message_id not in self._finished:
            raise LocalProtocolError(
                "a CALLRESULTERROR answers a CALLRESULT, and none with message id"
                f" {event.message_id!r} was received"
            )
        return self._error_frame(
            MessageType.CALL_RESULT_ERROR, event.message_id, event.code, event.description, event.details
        ).encode()

    def _check_supported(self, message_type: MessageType) -> None:
        if not self.rules.supports(message_type):
            raise LocalProtocolError(f"{message_type.name} is not defined in {self.protocol}")

    def _error_frame(
        self,
        message_type: MessageType,
        message_id: str,
        code: ErrorCode,
        description: str,
        details: Mapping[str, Any],
    ) -> str:
        limit = self.rules.max_error_description_length
        try:
            encoded = _encode(
                (message_type.value, message_id, self.rules.spell(code), description[:limit], details)
            )
        except (TypeError, ValueError, msgspec.MsgspecError) as exc:
            raise LocalProtocolError(f"error details are not JSON-serialisable: {exc}") from exc
        return encoded.decode()

    # -- answering on behalf of a handler ---------------------------------------------

    def error_for(self, message_id: str, exc: BaseException) -> CallError:
        """The CALLERROR that answers the CALL *message_id* whose handler raised *exc*.

        An :class:`OCPPError` is answered as it says.  Anything else is an
        ``InternalError``; its text is included only with ``detailed_errors``.
        """
        if isinstance(exc, OCPPError):
            return CallError(
                message_id=message_id, code=exc.code, description=exc.description, details=dict(exc.details)
            )
        if isinstance(exc, OutboundPayloadError):
            description = "the handler's response failed validation"
            if self.detailed_errors:
                description = f"{description}: {exc.description}"
            return CallError(message_id=message_id, code=ErrorCode.INTERNAL_ERROR, description=description)
        description = f"{type(exc).__name__}: {exc}" if self.detailed_errors else ""
        return CallError(message_id=message_id, code=ErrorCode.INTERNAL_ERROR, description=description)

    def no_reply(self, message_id: str) -> None:
        """Forget the peer's CALL *message_id* without answering it (a handler's "no reply")."""
        if self._inbound.pop(message_id, None) is None:
            raise LocalProtocolError(f"no CALL with message id {message_id!r} is awaiting an answer")

    def abandon_call(self, message_id: str) -> bool:
        """Stop waiting for an answer to our CALL *message_id* (timeout, cancellation).

        Frees its outstanding-call slot; an answer that still arrives is reported
        as a late :class:`UnmatchedResponse`.  Returns whether the call was
        still outstanding, so it is safe to call from a ``finally`` block.
        """
        action = self._outstanding.pop(message_id, None)
        if action is None:
            return False
        self._finish(message_id, action)
        return True


#: How each kind of message event is sent (exact types: events are final).
_SENDERS: dict[type[Event], Callable[[Connection, Any, bool], bytes]] = {
    CallResult: Connection._send_result,
    Call: Connection._send_call,
    CallError: Connection._send_error,
    Send: Connection._send_send,
    CallResultError: Connection._send_result_error,
}

#: How each kind of frame is handled.
_RECEIVERS: dict[type[Any], Callable[[Connection, Any], None]] = {
    CallResultFrame: Connection._on_call_result,
    PlainCallResultFrame: Connection._on_call_result,
    CallFrame: Connection._on_call,
    PlainCallFrame: Connection._on_call,
    CallErrorFrame: Connection._on_call_error,
    SendFrame: Connection._on_send,
    PlainSendFrame: Connection._on_send,
    CallResultErrorFrame: Connection._on_call_result_error,
}
