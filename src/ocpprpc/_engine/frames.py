"""Reading and writing OCPP-J frames ([J16] 4.2, [P4-201] 4.2, [P4-21] 4.2).

Theory of operation
-------------------
A well-formed frame is decoded in one msgspec pass into an ``array_like`` Struct
tagged by its message type number; payloads stay :class:`msgspec.Raw` until the
action is known.  Only when that fast pass fails do we look closer: the salvage
pass decodes the outer array element by element to recover what it can (message
type, id, action) so that the connection can give the answer the protocol asks
for.  Both passes are pure functions of the input and the version's message
types; every *decision* about what to answer is made by the connection from the
rules table.

For plain payloads (no schema, see ``TRUSTED_CODECS``) a third set of frame types
reads the payload of a CALL, CALLRESULT or SEND straight into a ``dict`` in the
same pass: skipping a Raw payload costs msgspec nearly half of parsing it.  When
that pass fails, the connection decodes the frame again the general way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from .events import Violation
from .rules import MessageType

__all__ = [
    "TOO_DEEP_DESCRIPTION",
    "UNREADABLE_ID_DESCRIPTION",
    "CallErrorFrame",
    "CallFrame",
    "CallResultErrorFrame",
    "CallResultFrame",
    "Defect",
    "Frame",
    "SendFrame",
    "PlainCallFrame",
    "PlainCallResultFrame",
    "PlainSendFrame",
    "decoder_for",
    "plain_decoder_for",
    "salvage",
]


class CallFrame(msgspec.Struct, array_like=True, tag=2, forbid_unknown_fields=True, gc=False):
    """``[2, "<MessageId>", "<Action>", {<Payload>}]``"""

    message_id: str
    action: str
    payload: msgspec.Raw


class CallResultFrame(msgspec.Struct, array_like=True, tag=3, forbid_unknown_fields=True, gc=False):
    """``[3, "<MessageId>", {<Payload>}]``"""

    message_id: str
    payload: msgspec.Raw


class CallErrorFrame(msgspec.Struct, array_like=True, tag=4, forbid_unknown_fields=True):
    """``[4, "<MessageId>", "<errorCode>", "<errorDescription>", {<errorDetails>}]``"""

    message_id: str
    code: str
    description: str
    details: dict[str, Any]


class CallResultErrorFrame(msgspec.Struct, array_like=True, tag=5, forbid_unknown_fields=True):
    """``[5, "<MessageId>", "<errorCode>", "<errorDescription>", {<errorDetails>}]`` (2.1)"""

    message_id: str
    code: str
    description: str
    details: dict[str, Any]


class SendFrame(msgspec.Struct, array_like=True, tag=6, forbid_unknown_fields=True, gc=False):
    """``[6, "<MessageId>", "<Action>", {<Payload>}]`` (2.1)"""

    message_id: str
    action: str
    payload: msgspec.Raw


Frame = CallFrame | CallResultFrame | CallErrorFrame | CallResultErrorFrame | SendFrame


class PlainCallFrame(msgspec.Struct, array_like=True, tag=2, forbid_unknown_fields=True, gc=False):
    """A CALL whose payload is read as a plain JSON object."""

    message_id: str
    action: str
    payload: dict[str, Any]


class PlainCallResultFrame(msgspec.Struct, array_like=True, tag=3, forbid_unknown_fields=True, gc=False):
    """A CALLRESULT whose payload is read as a plain JSON object."""

    message_id: str
    payload: dict[str, Any]


class PlainSendFrame(msgspec.Struct, array_like=True, tag=6, forbid_unknown_fields=True, gc=False):
    """A SEND whose payload is read as a plain JSON object."""

    message_id: str
    action: str
    payload: dict[str, Any]


_FRAME_TYPES: dict[MessageType, type[Frame]] = {
    MessageType.CALL: CallFrame,
    MessageType.CALL_RESULT: CallResultFrame,
    MessageType.CALL_ERROR: CallErrorFrame,
    MessageType.CALL_RESULT_ERROR: CallResultErrorFrame,
    MessageType.SEND: SendFrame,
}

_PLAIN_FRAME_TYPES: dict[MessageType, type[Any]] = _FRAME_TYPES | {
    MessageType.CALL: PlainCallFrame,
    MessageType.CALL_RESULT: PlainCallResultFrame,
    MessageType.SEND: PlainSendFrame,
}

_decoders: dict[tuple[frozenset[MessageType], bool], msgspec.json.Decoder[Any]] = {}


def decoder_for(message_types: frozenset[MessageType]) -> msgspec.json.Decoder[Any]:
    """A decoder that accepts exactly the frames of *message_types* (cached)."""
    return _decoder(message_types, False)


def plain_decoder_for(message_types: frozenset[MessageType]) -> msgspec.json.Decoder[Any]:
    """Like :func:`decoder_for`, but payloads are read as plain JSON objects (cached).

    It accepts a subset of what :func:`decoder_for` accepts (the frames whose
    payload is an object msgspec can hold), and reads each payload exactly as
    ``msgspec.json.Decoder(dict[str, Any])`` would read the Raw one.
    """
    return _decoder(message_types, True)


#: What a frame decoder's ``decode`` takes.
_Input = str | bytes | bytearray | memoryview
_decode_methods: dict[tuple[frozenset[MessageType], bool], Callable[[_Input], Any]] = {}


def decode_function_for(message_types: frozenset[MessageType], *, plain: bool) -> Callable[[_Input], Any]:
    """The ``decode`` method of :func:`plain_decoder_for` (or :func:`decoder_for`), one object for all.

    A connection keeps the function it reads frames with; a bound method of its own
    would cost 72 bytes per connection (bench_idle).
    """
    decode = _decode_methods.get((message_types, plain))
    if decode is None:
        decode = _decode_methods[message_types, plain] = _decoder(message_types, plain).decode
    return decode


def _decoder(message_types: frozenset[MessageType], plain: bool) -> msgspec.json.Decoder[Any]:
    decoder = _decoders.get((message_types, plain))
    if decoder is None:
        types = _PLAIN_FRAME_TYPES if plain else _FRAME_TYPES
        members = tuple(types[t] for t in sorted(message_types))
        union: Any = members[0] if len(members) == 1 else _union(members)
        decoder = _decoders[message_types, plain] = msgspec.json.Decoder(union)
    return decoder


def _union(members: tuple[type[Any], ...]) -> Any:
    result: Any = members[0]
    for member in members[1:]:
        result = result | member
    return result


@dataclass(frozen=True, slots=True)
class Defect:
    """What the salvage pass recovered from a frame the fast pass refused."""

    violation: Violation
    description: str
    #: The message type number, when element 0 was an integer.
    message_type: int | None = None
    #: The message id, when element 1 was a string of 1 to max_id_length characters.
    message_id: str | None = None
    #: The action, for a CALL or SEND whose element 2 was a string.
    action: str | None = None


UNREADABLE_ID_DESCRIPTION = "message id could not be read"
TOO_DEEP_DESCRIPTION = "JSON nested too deeply to be read"

_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_any = msgspec.json.Decoder()


def _element(raw: msgspec.Raw) -> Any:
    try:
        return _any.decode(raw)
    except (msgspec.MsgspecError, RecursionError):  # valid JSON msgspec cannot hold, e.g. 1e400
        return None


def salvage(
    data: str | bytes | bytearray | memoryview,
    message_types: frozenset[MessageType],
    fast_error: str,
    max_id_length: int,
) -> Defect:
    """Explain why *data* is not a frame of *message_types*, recovering what we can.

    *fast_error* is the fast pass's message; it describes a structural fault
    precisely (e.g. ``Expected `str`, got `int` - at `$[2]```) and is reused.
    An id recovered from a broken frame is trusted only within *max_id_length*:
    a salvaged id is never longer than the spec allows.
    """
    try:
        items = _raw_list.decode(data)
    except msgspec.ValidationError:  # (a subclass of DecodeError: test it first)
        return Defect(Violation.NOT_AN_ARRAY, "an OCPP-J message is a JSON array")
    except msgspec.DecodeError as exc:
        return Defect(Violation.NOT_JSON, str(exc))
    except RecursionError:
        # msgspec follows nesting within the interpreter's recursion limit; deeper
        # JSON (``[[[[...`` a megabyte deep) cannot be read, even to skip it.
        return Defect(Violation.NOT_JSON, TOO_DEEP_DESCRIPTION)

    message_type = _element(items[0]) if items else None
    if type(message_type) is not int:
        return Defect(Violation.BAD_MESSAGE_TYPE, "element 0 must be the message type number")

    message_id = _element(items[1]) if len(items) > 1 else None
    readable_id = message_id if type(message_id) is str and 0 < len(message_id) <= max_id_length else None
    action = None
    if message_type in (MessageType.CALL, MessageType.SEND) and len(items) > 2:
        candidate = _element(items[2])
        action = candidate if type(candidate) is str else None

    if message_type not in message_types:
        return Defect(
            Violation.UNKNOWN_MESSAGE_TYPE,
            f"message type {message_type} is not supported",
            message_type,
            readable_id,
        )
    if readable_id is None:
        return Defect(Violation.UNREADABLE_ID, UNREADABLE_ID_DESCRIPTION, message_type)
    return Defect(Violation.MALFORMED_FRAME, fast_error, message_type, readable_id, action)
