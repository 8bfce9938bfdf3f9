"""The payload seam: how payloads become Python values and back.

The engine parses frames itself but never interprets a payload: it hands the
payload's raw JSON to a :class:`PayloadCodec` once the action is known (for a
CALLRESULT, the action comes from the CALL it answers).  The default
:class:`JsonObjectCodec` produces ``dict``; the typed-message layer plugs in a
codec that decodes into msgspec Structs and enforces the official schemas.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

import msgspec

from .errors import PayloadError
from .rules import ErrorCode

__all__ = ["TRUSTED_CODECS", "JsonObjectCodec", "PayloadCodec", "PayloadKind"]


class PayloadKind(enum.Enum):
    """Which kind of payload a codec is asked about."""

    #: The payload of a CALL (or of a 2.1 SEND).
    REQUEST = "request"
    #: The payload of a CALLRESULT.
    RESPONSE = "response"


class PayloadCodec(Protocol):
    """Decodes and encodes payloads for one connection.

    Both methods raise :class:`~ocpprpc.PayloadError` for a payload they refuse;
    the engine maps that to the protocol's answer.  ``data`` is the payload's
    JSON text, already known to be a JSON object.  ``validate=False`` means the
    application opted this one message out of schema validation (a per-call or
    per-response opt-out); a codec may still apply its own policy when it is
    ``True``.
    """

    def decode(
        self, action: str, kind: PayloadKind, data: bytes | memoryview, *, validate: bool = True
    ) -> Any:
        """Turn a received payload into the value handed to the application."""
        ...

    def encode(self, action: str, kind: PayloadKind, payload: Any, *, validate: bool = True) -> bytes:
        """Turn an outgoing payload into JSON text (a JSON object)."""
        ...


_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


class JsonObjectCodec:
    """Payloads are plain JSON objects: ``dict`` in, ``dict`` out, no schema.

    A msgspec Struct is also accepted on send (it encodes as an object).
    """

    #: Every payload is a plain JSON object (see :data:`TRUSTED_CODECS`).
    plain = True

    def decode(
        self, action: str, kind: PayloadKind, data: bytes | memoryview | msgspec.Raw, *, validate: bool = True
    ) -> Any:
        try:
            return _dict_decoder.decode(data)
        except msgspec.MsgspecError as exc:  # e.g. {"a": 1e400}: valid JSON, out of range
            raise PayloadError(ErrorCode.FORMAT_VIOLATION, str(exc)) from exc

    def encode(self, action: str, kind: PayloadKind, payload: Any, *, validate: bool = True) -> bytes:
        if not isinstance(payload, dict | msgspec.Struct):
            raise PayloadError(
                ErrorCode.FORMAT_VIOLATION,
                f"payload must be a JSON object (a dict or a msgspec Struct), not {type(payload).__name__}",
            )
        try:
            return _encoder.encode(payload)
        except (TypeError, ValueError, msgspec.MsgspecError) as exc:
            raise PayloadError(
                ErrorCode.FORMAT_VIOLATION, f"payload is not JSON-serialisable: {exc}"
            ) from exc


#: The codec classes whose behaviour the engine relies on to skip work per message.
#: Exact classes only (a subclass may override either method).  Such a codec
#:
#: * accepts the payload as the :class:`msgspec.Raw` of the frame (no memoryview), and
#:   refuses with :class:`PayloadError` every payload that is not a JSON object, so the
#:   engine looks at the payload's first byte only after a refusal;
#: * has a ``plain`` attribute, fixed at construction: when true, ``decode`` is exactly
#:   ``msgspec.json.Decoder(dict[str, Any]).decode`` (a failure raised as a
#:   ``FormatViolation`` :class:`PayloadError` with msgspec's text) and ``encode`` of a
#:   ``dict`` is exactly ``msgspec.json.Encoder().encode``, whatever the action, kind and
#:   ``validate``.  The engine then decodes and encodes such payloads itself, a dict
#:   payload inside its frame in one msgspec call, and goes through the codec only when
#:   that fails (to raise the codec's error).
#:
#: :class:`ocpprpc.SchemaCodec` adds itself (plain when its policy never validates
#: its protocol).
TRUSTED_CODECS: set[type] = {JsonObjectCodec}
