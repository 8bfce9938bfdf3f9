"""ocpprpc: OCPP-J RPC for Python.

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

# -- WebSocket transport (area W): handshake errors; the transport itself loads anyio
# and is imported from ocpprpc._handshake / ocpprpc._websocket by the layers above.
from ._ws_errors import HandshakeError, HandshakeRejected, HandshakeTimeout

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
    # WebSocket transport (area W)
    "HandshakeError",
    "HandshakeRejected",
    "HandshakeTimeout",
    "parse_error_code",
    "rules_for",
    "uuid4_message_id",
)
