"""ocpprpc: OCPP-J RPC for Python.

Typed messages live in ``ocpprpc.v16``, ``ocpprpc.v201`` and ``ocpprpc.v21``;
they are imported on first use, never by ``import ocpprpc``.

The engine (:class:`Connection` and its events) is sans-IO: it contains no
networking, no clock and no randomness beyond the injectable message-id
factory, so protocol logic can be unit-tested with plain function calls.
"""

from ._engine.codec import JsonObjectCodec, PayloadCodec, PayloadKind
from ._engine.connection import Connection, ConnectionState
from ._engine.errors import (
    LocalProtocolError,
    OCPPError,
    OutboundPayloadError,
    PayloadError,
    ProtocolError,
    RemoteProtocolError,
    TooManyOutstandingCalls,
)
from ._engine.events import (
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
from ._engine.ids import uuid4_message_id
from ._engine.rules import (
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

# The handshake errors import nothing but the stdlib, so they load eagerly.
from ._ws.errors import HandshakeError, HandshakeRejected, HandshakeTimeout

# isort: split
# -- typed messages and strict validation (area T, issue 3) --
from ._typed.error_codes import VALIDATION_ERROR_CODES
from ._typed.messages import ActionSpec, Direction, Message, OpenObject, Request, Response, SendMessage
from ._typed.registry import ProtocolTypes, convert, protocol_types, register_protocol
from ._typed.schema import schema_path
from ._typed.validation import SchemaCodec, ValidationPolicy, codec_for

# isort: split
# -- vendor quirk profiles (issue 14) --
from ._typed.quirks import Match, Prefix, QuirkProfile, Quirks, StationQuirks
from ._typed.repairs import Coerce, Drop, DropUnknown, MapEnum, Repair, RepairReport, Truncate

# isort: split
# -- area S: the RPC session (anyio) ------------------------------------------------------
# The session and transport modules import anyio.  They load on first use (PEP 562), so
# ``import ocpprpc`` stays free of I/O libraries for users of the sans-IO engine alone.
import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._rpc.router import NO_REPLY, CallContext, NoReply, Router

if _TYPE_CHECKING:
    from ._csms.command_buffer import (
        CommandBuffer,
        CommandBufferFull,
        CommandCancelled,
        CommandExpired,
        CommandState,
        QueuedCommand,
    )
    from ._csms.delivery import SendOutcome, SendStatus, StationNotConnected
    from ._csms.serve_context import serve
    from ._csms.server import Accept, DuplicatePolicy, Reject, Server
    from ._csms.session_state import SessionStates
    from ._csms.stats import ClusterStats, ServerStats
    from ._rpc.session import CallTimeout, InvalidResponseError, Session
    from ._station.client import connect
    from ._ws.handshake import StationRequest
    from ._ws.tls import client_ssl_context, server_ssl_context
    from ._ws.transport import CloseReason, ConnectionLost, MessageStream, memory_message_stream_pair
    from ._ws.websocket import WebSocketStream

_LAZY = {
    "CallTimeout": "._rpc.session",
    "InvalidResponseError": "._rpc.session",
    "Session": "._rpc.session",
    "CloseReason": "._ws.transport",
    "ConnectionLost": "._ws.transport",
    "MessageStream": "._ws.transport",
    "memory_message_stream_pair": "._ws.transport",
    # the WebSocket transport, the station client and the CSMS server
    "connect": "._station.client",
    "StationRequest": "._ws.handshake",
    "Accept": "._csms.server",
    "DuplicatePolicy": "._csms.server",
    "Reject": "._csms.server",
    "Server": "._csms.server",
    "ServerStats": "._csms.stats",
    "ClusterStats": "._csms.stats",
    "SendOutcome": "._csms.delivery",
    "SendStatus": "._csms.delivery",
    "StationNotConnected": "._csms.delivery",
    "CommandBuffer": "._csms.command_buffer",
    "CommandBufferFull": "._csms.command_buffer",
    "CommandCancelled": "._csms.command_buffer",
    "CommandExpired": "._csms.command_buffer",
    "CommandState": "._csms.command_buffer",
    "QueuedCommand": "._csms.command_buffer",
    "SessionStates": "._csms.session_state",
    "serve": "._csms.serve_context",
    "client_ssl_context": "._ws.tls",
    "server_ssl_context": "._ws.tls",
    "WebSocketStream": "._ws.websocket",
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

# isort: split
# -- resilience (issue 5): reconnecting station, keepalive, outbox, boot gate --------------
# The settings are plain dataclasses (eager); the station and the replay cache use anyio (lazy).
from ._options.policies import Backoff, Keepalive, OutboxFullPolicy, Retry, TransactionRetry  # noqa: E402

# isort: split
# -- the options model (issue 13): plain frozen settings, eager (no I/O) ---------------------
from ._options.model import CsmsOptions, SessionOptions, WebSocketOptions  # noqa: E402
from ._options.table import OptionSpec, option_table  # noqa: E402

if _TYPE_CHECKING:
    # the durable outbox (stores, the transaction-message rule)
    from ._station.outbox import (
        MemoryOutbox,
        OutboxRecord,
        OutboxStore,
        ProvisionalTransaction,
        SQLiteOutbox,
        is_transaction_message,
    )

if _TYPE_CHECKING:
    from ._csms.guard import ReplayCache
    from ._station.station import (
        BootAnswered,
        CallDropped,
        Closed,
        Connected,
        Connecting,
        Delivered,
        Disconnected,
        GaveUp,
        MessageDropped,
        OutboxFull,
        QueuedCall,
        Reconnecting,
        Station,
        StationEvent,
        StationState,
        TransactionNotStarted,
        TransactionStart,
    )

_LAZY.update(
    dict.fromkeys(
        (
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
        ),
        "._station.station",
    )
)
_LAZY["ReplayCache"] = "._csms.guard"
_LAZY.update(
    dict.fromkeys(
        (
            "MemoryOutbox",
            "OutboxRecord",
            "OutboxStore",
            "ProvisionalTransaction",
            "SQLiteOutbox",
            "is_transaction_message",
        ),
        "._station.outbox",
    )
)
# -- end of resilience ----------------------------------------------------------------------

# isort: split
# -- auth helpers: passwords, client certificates, station identities (lazy: anyio) ---------
if _TYPE_CHECKING:
    from ._csms.auth import (
        PasswordTable,
        all_of,
        any_of,
        certificate_identity,
        certificate_names,
        hash_password,
        verify_password,
    )

_LAZY.update(
    dict.fromkeys(
        (
            "PasswordTable",
            "all_of",
            "any_of",
            "certificate_identity",
            "certificate_names",
            "hash_password",
            "verify_password",
        ),
        "._csms.auth",
    )
)
if _TYPE_CHECKING:
    from ._ws.handshake import check_identity
_LAZY["check_identity"] = "._ws.handshake"
# -- end of auth helpers --------------------------------------------------------------------

# isort: split
# -- protection (issue 14): rate limits, admission, security events -------------------------
# Pure (stdlib only; the hub imports anyio inside its run()), exported lazily all the same so
# ``import ocpprpc`` does not pay for ipaddress, inspect and json.
if _TYPE_CHECKING:
    from ._csms.admission import AdmissionPolicy, Admit, RefusalKind, Refuse
    from ._csms.ratelimit import (
        RATE_LIMIT_ERROR_CODE,
        Breach,
        OnBreach,
        RateLimit,
        RateLimiter,
        StationLimits,
        Verdict,
    )
    from ._csms.security_events import (
        SECURITY_EVENT_KINDS,
        AuthFailed,
        AuthTimedOut,
        BadMessageFlood,
        CertificateIdentityMismatch,
        ConnectionRefused,
        HandshakeAborted,
        IdentityEvicted,
        RateLimited,
        SecurityEvent,
        SecurityEvents,
        ServerReconfigured,
        StationConnected,
        StationDisconnected,
        TlsUpdated,
    )

_LAZY.update(dict.fromkeys(("AdmissionPolicy", "Admit", "RefusalKind", "Refuse"), "._csms.admission"))
_LAZY.update(
    dict.fromkeys(
        (
            "RATE_LIMIT_ERROR_CODE",
            "Breach",
            "OnBreach",
            "RateLimit",
            "RateLimiter",
            "StationLimits",
            "Verdict",
        ),
        "._csms.ratelimit",
    )
)
_LAZY.update(
    dict.fromkeys(
        (
            "SECURITY_EVENT_KINDS",
            "AuthFailed",
            "AuthTimedOut",
            "BadMessageFlood",
            "CertificateIdentityMismatch",
            "ConnectionRefused",
            "HandshakeAborted",
            "IdentityEvicted",
            "RateLimited",
            "SecurityEvent",
            "SecurityEvents",
            "ServerReconfigured",
            "StationConnected",
            "StationDisconnected",
            "TlsUpdated",
        ),
        "._csms.security_events",
    )
)
# -- end of protection ----------------------------------------------------------------------

# isort: split
# -- message middleware (issue 14): one onion around every CALL and SEND, in and out --------
if _TYPE_CHECKING:
    from ._rpc.middleware import (
        DROP,
        CallNext,
        DroppedByMiddleware,
        MessageContext,
        Middleware,
        fail_closed,
        never_waits,
    )

_LAZY.update(
    dict.fromkeys(
        (
            "DROP",
            "CallNext",
            "DroppedByMiddleware",
            "MessageContext",
            "Middleware",
            "fail_closed",
            "never_waits",
        ),
        "._rpc.middleware",
    )
)
# -- end of message middleware --------------------------------------------------------------

# isort: split
# -- routing (issue 14): URL routes, several listeners, connection middleware ---------------
if _TYPE_CHECKING:
    from ._csms.listener import Listener
    from ._csms.routing import Route
    from ._csms.upgrade import ConnectionMiddleware, UpgradeContext

_LAZY["Listener"] = "._csms.listener"
_LAZY["Route"] = "._csms.routing"
_LAZY.update(dict.fromkeys(("ConnectionMiddleware", "UpgradeContext"), "._csms.upgrade"))
# -- end of routing -------------------------------------------------------------------------

# isort: split
# -- operations (issue 15): log formatters, redaction, the station registry -----------------
# Pure (stdlib and msgspec; the SQLite store loads anyio and sqlite3), lazy like the rest.
if _TYPE_CHECKING:
    from ._ops.exchange import ExchangeLog
    from ._ops.gc_tuning import CSMS_GC_THRESHOLDS, tune_gc
    from ._ops.logfmt import EXTRA_KEYS, ConsoleFormatter, JsonFormatter, log_extra
    from ._ops.metrics import Metrics
    from ._ops.redact import ID_TOKEN_FIELDS, SECRET_FIELDS, SECRET_SETTINGS, Redactor
    from ._ops.registry import (
        BootInfo,
        ConnectorStatus,
        MemoryRegistryStore,
        OpenTransaction,
        RegistryStore,
        StationRecord,
        StationRegistry,
    )
    from ._ops.registry_sqlite import SQLiteRegistryStore
    from ._ops.tracing import Tracing

_LAZY.update(dict.fromkeys(("EXTRA_KEYS", "ConsoleFormatter", "JsonFormatter", "log_extra"), "._ops.logfmt"))
_LAZY["ExchangeLog"] = "._ops.exchange"
_LAZY.update(dict.fromkeys(("CSMS_GC_THRESHOLDS", "tune_gc"), "._ops.gc_tuning"))
_LAZY["Metrics"] = "._ops.metrics"
_LAZY.update(
    dict.fromkeys(("ID_TOKEN_FIELDS", "SECRET_FIELDS", "SECRET_SETTINGS", "Redactor"), "._ops.redact")
)
_LAZY.update(
    dict.fromkeys(
        (
            "BootInfo",
            "ConnectorStatus",
            "MemoryRegistryStore",
            "OpenTransaction",
            "RegistryStore",
            "StationRecord",
            "StationRegistry",
        ),
        "._ops.registry",
    )
)
_LAZY["SQLiteRegistryStore"] = "._ops.registry_sqlite"
# OpenTelemetry is imported when a Tracing is made, never by this export (the otel extra).
_LAZY["Tracing"] = "._ops.tracing"
# -- end of operations ----------------------------------------------------------------------

# isort: split
# -- clustering (issue 16): any process reaches any station (lazy: anyio; Redis clients on use) --
if _TYPE_CHECKING:
    from ._csms.cluster_client import ClusterClient
    from ._csms.cluster_delivery import ClusterDelivery, cluster_delivery
    from .cluster.adapter import ClusterAdapter, ClusterError, ClusterUnavailable, NodeUnavailable
    from .cluster.memory import MemoryCluster
    from .cluster.redis_adapter import RedisAdapter

_LAZY.update(dict.fromkeys(("ClusterDelivery", "cluster_delivery"), "._csms.cluster_delivery"))
_LAZY["ClusterClient"] = "._csms.cluster_client"
_LAZY.update(
    dict.fromkeys(
        ("ClusterAdapter", "ClusterError", "ClusterUnavailable", "NodeUnavailable"), ".cluster.adapter"
    )
)
_LAZY["MemoryCluster"] = ".cluster.memory"
_LAZY["RedisAdapter"] = ".cluster.redis_adapter"
# -- end of clustering ----------------------------------------------------------------------

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
    # -- vendor quirk profiles (issue 14) --
    "Coerce",
    "Drop",
    "DropUnknown",
    "MapEnum",
    "Match",
    "Prefix",
    "QuirkProfile",
    "Quirks",
    "Repair",
    "RepairReport",
    "StationQuirks",
    "Truncate",
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
    # -- WebSocket transport, client, server --
    "Accept",
    "DuplicatePolicy",
    "Reject",
    "Server",
    "ServerStats",
    "SendOutcome",
    "SendStatus",
    "StationNotConnected",
    "CommandBuffer",
    "CommandBufferFull",
    "CommandCancelled",
    "CommandExpired",
    "CommandState",
    "QueuedCommand",
    "SessionStates",
    "StationRequest",
    "WebSocketStream",
    "client_ssl_context",
    "connect",
    "serve",
    "server_ssl_context",
    # -- resilience (issue 5) --
    "Backoff",
    "BootAnswered",
    "CallDropped",
    "Closed",
    "Connected",
    "Connecting",
    "Delivered",
    "Disconnected",
    "GaveUp",
    "Keepalive",
    "CsmsOptions",
    "SessionOptions",
    "WebSocketOptions",
    "OptionSpec",
    "option_table",
    "MemoryOutbox",
    "MessageDropped",
    "OutboxFull",
    "OutboxFullPolicy",
    "OutboxRecord",
    "OutboxStore",
    "ProvisionalTransaction",
    "QueuedCall",
    "Reconnecting",
    "ReplayCache",
    "Retry",
    "SQLiteOutbox",
    "Station",
    "StationEvent",
    "StationState",
    "TransactionNotStarted",
    "TransactionRetry",
    "TransactionStart",
    "is_transaction_message",
    # -- auth helpers --
    "PasswordTable",
    "all_of",
    "any_of",
    "certificate_identity",
    "certificate_names",
    "hash_password",
    "verify_password",
    "check_identity",
    # -- protection (issue 14) --
    "RATE_LIMIT_ERROR_CODE",
    "SECURITY_EVENT_KINDS",
    "AdmissionPolicy",
    "Admit",
    "AuthFailed",
    "AuthTimedOut",
    "BadMessageFlood",
    "Breach",
    "CertificateIdentityMismatch",
    "ConnectionRefused",
    "HandshakeAborted",
    "IdentityEvicted",
    "OnBreach",
    "RateLimit",
    "RateLimited",
    "RateLimiter",
    "RefusalKind",
    "Refuse",
    "SecurityEvent",
    "SecurityEvents",
    "ServerReconfigured",
    "StationConnected",
    "StationDisconnected",
    "StationLimits",
    "TlsUpdated",
    "Verdict",
    # -- routing (issue 14) --
    "ConnectionMiddleware",
    "Listener",
    "Route",
    "UpgradeContext",
    # -- message middleware (issue 14) --
    "DROP",
    "CallNext",
    "DroppedByMiddleware",
    "MessageContext",
    "Middleware",
    "fail_closed",
    "never_waits",
    # isort: split
    # -- operations (issue 15) --
    "EXTRA_KEYS",
    "ID_TOKEN_FIELDS",
    "SECRET_FIELDS",
    "SECRET_SETTINGS",
    "BootInfo",
    "ConnectorStatus",
    "ConsoleFormatter",
    "ExchangeLog",
    "CSMS_GC_THRESHOLDS",
    "tune_gc",
    "JsonFormatter",
    "MemoryRegistryStore",
    "Metrics",
    "OpenTransaction",
    "Redactor",
    "RegistryStore",
    "SQLiteRegistryStore",
    "StationRecord",
    "StationRegistry",
    "Tracing",
    "log_extra",
    # isort: split
    # -- clustering (issue 16) --
    "ClusterAdapter",
    "ClusterClient",
    "ClusterDelivery",
    "ClusterError",
    "ClusterStats",
    "ClusterUnavailable",
    "MemoryCluster",
    "NodeUnavailable",
    "RedisAdapter",
    "cluster_delivery",
)
