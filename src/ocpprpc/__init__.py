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

# isort: split
# -- area S: the RPC session (anyio) ------------------------------------------------------
# The session and transport modules import anyio.  They load on first use (PEP 562), so
# ``import ocpprpc`` stays free of I/O libraries for users of the sans-IO engine alone.
import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._router import NO_REPLY, CallContext, NoReply, Router

if _TYPE_CHECKING:
    from ._session import CallTimeout, InvalidResponseError, Session
    from ._transport import CloseReason, ConnectionLost, MessageStream, memory_message_stream_pair

_LAZY = {
    "CallTimeout": "._session",
    "InvalidResponseError": "._session",
    "Session": "._session",
    "CloseReason": "._transport",
    "ConnectionLost": "._transport",
    "MessageStream": "._transport",
    "memory_message_stream_pair": "._transport",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# -- end of area S -------------------------------------------------------------------------

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
    # -- area S: the RPC session --
    "CallContext",
    "CallTimeout",
    "CloseReason",
    "ConnectionLost",
    "InvalidResponseError",
    "MessageStream",
    "NO_REPLY",
    "NoReply",
    "Router",
    "Session",
    "memory_message_stream_pair",
)
