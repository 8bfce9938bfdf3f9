"""ocpprpc: OCPP-J RPC for Python.

Typed messages live in ``ocpprpc.v16``, ``ocpprpc.v201`` and ``ocpprpc.v21``;
they are imported on first use, never by ``import ocpprpc``.

The engine (:class:`Connection` and its events) is sans-IO: it contains no
networking, no clock and no randomness beyond the injectable message-id
factory, so protocol logic can be unit-tested with plain function calls.
"""

from ._codec import JsonObjectCodec, PayloadCodec, PayloadKind
from ._connection import Connection, ConnectionState, uuid4_message_id
from ._errors import (
    LocalProtocolError,
    OCPPError,
    OutboundPayloadError,
    PayloadError,
    ProtocolError,
    RemoteProtocolError,
    TooManyOutstandingCalls,
)
from ._events import (
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
from ._rules import (
    BUILTIN_RULES,
    ErrorCode,
    MessageType,
    ProtocolRules,
    Role,
    UnknownMessageTypePolicy,
    parse_error_code,
    rules_for,
)
from ._version import __version__

# isort: split
# -- typed messages and strict validation (area T, issue 3) --
from ._messages import ActionSpec, Direction, Message, OpenObject, Request, Response, SendMessage
from ._schema import schema_path
from ._validation import (
    VALIDATION_ERROR_CODES,
    ProtocolTypes,
    SchemaCodec,
    ValidationPolicy,
    codec_for,
    convert,
    protocol_types,
    register_protocol,
)

__all__ = (
    "BUILTIN_RULES",
    "BadMessage",
    "Call",
    "CallError",
    "CallResult",
    "CallResultError",
    "Connection",
    "ConnectionClosed",
    "ConnectionState",
    "ErrorCode",
    "Event",
    "InvalidResponse",
    "JsonObjectCodec",
    "LocalProtocolError",
    "MessageType",
    "OCPPError",
    "OutboundPayloadError",
    "PayloadCodec",
    "PayloadError",
    "PayloadKind",
    "ProtocolError",
    "ProtocolRules",
    "RemoteProtocolError",
    "Role",
    "Send",
    "TooManyBadMessages",
    "TooManyOutstandingCalls",
    "UnknownMessageTypePolicy",
    "UnmatchedResponse",
    "Violation",
    "__version__",
    "parse_error_code",
    "rules_for",
    "uuid4_message_id",
    # -- typed messages and strict validation (area T, issue 3) --
    "VALIDATION_ERROR_CODES",
    "ActionSpec",
    "Direction",
    "Message",
    "OpenObject",
    "ProtocolTypes",
    "Request",
    "Response",
    "SchemaCodec",
    "SendMessage",
    "ValidationPolicy",
    "codec_for",
    "convert",
    "protocol_types",
    "register_protocol",
    "schema_path",
)
