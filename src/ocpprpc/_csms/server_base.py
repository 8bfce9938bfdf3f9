"""What every part of a :class:`~ocpprpc.Server` shares: the auth decisions, the settings its parts read.

The server is split by concern into mixins (the security reports, the
admission of one connection and the live changes inherit in a chain; the
route targets, commanding and the side door sit beside them), all under
:class:`~ocpprpc.Server` itself, whose ``__init__`` sets the attributes, so a
call between concerns stays a plain method call on ``self``.  ``_ServerBase``
declares the attributes the mixins use, for the type checker.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._options.model import CsmsOptions, SessionOptions, WebSocketOptions
from .._options.policies import Keepalive
from .._rpc.protocols import ValidationArg
from .._rpc.router import CallContext, Router
from .._rpc.session import InboundBudget, Session
from .._typed.quirks import Quirks
from .._ws.handshake import (
    IdentityCheck,
    StationRequest,
    WsCodecName,
)
from .._ws.http_plain import PlainHttpHandler
from .admission import AdmissionPolicy
from .guard import GuardedRouter, ReplayCache
from .ratelimit import RateLimiter, Verdict
from .security_events import (
    SecurityEvents,
)
from .stats import ServerCounters

if TYPE_CHECKING:
    import anyio

    from .._ops.metrics import Metrics
    from .._ws.tcp import TcpStreamName
    from .cluster_delivery import ClusterDelivery
    from .command_buffer import CommandBuffer
    from .delivery import Delivery
    from .http_endpoints import HttpEndpoints
    from .listener import Listener, _Endpoint, _Target
    from .routing import Route
    from .station_services import StationServices
    from .upgrade import ConnectionMiddleware

ALL_PROTOCOLS = ("ocpp2.1", "ocpp2.0.1", "ocpp1.6")

# RFC 6455 7.4.1: 1001 "going away" (server shutdown); 1008 policy (replaced); 1002 protocol error.
_GOING_AWAY = 1001
_REPLACED = 1008
_PROTOCOL_ERROR = 1002
# A station that keeps breaching its limits is logged at WARNING at most this often (seconds).
_BREACH_LOG_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class Accept:
    """An auth callback's "yes": optionally pick the protocol and attach session data."""

    #: The subprotocol to speak (one the station offered); default: the server's choice.
    protocol: str | None = None
    #: Initial ``session.data`` for this station.
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reject:
    """An auth callback's "no": the HTTP status (and body) the station gets.

    *method* and *certificate_subject* only shape the security event a 401 or
    403 raises (:class:`~ocpprpc.AuthFailed`, or
    :class:`~ocpprpc.CertificateIdentityMismatch` when *certificate_subject*
    is set: a valid certificate issued to another station).
    """

    status: int = 401
    body: str = ""
    #: Which check said no: ``basic``, ``certificate`` or ``callback``.
    method: str = "callback"
    #: The common name of a client certificate that names another station.
    certificate_subject: str | None = None


AuthCallback = Callable[[StationRequest], Awaitable["Accept | Reject | None"]]
ConnectCallback = Callable[[Session], Awaitable[None]]
ServerMessageHook = Callable[[str, Literal["in", "out"], str], None]


class DuplicatePolicy(enum.Enum):
    """What happens when an identity that is already connected connects again."""

    #: Close the old connection (1008) and take the new one: a rebooted station
    #: usually reconnects before the CSMS noticed the old link died.
    EVICT = "evict"
    #: Refuse the new connection with HTTP 409 while the old one lives.
    REFUSE = "refuse"


class _ServerBase:
    """The attributes of a :class:`~ocpprpc.Server` its mixins use (``Server.__init__`` sets them)."""

    # -- settings
    router: Router
    protocols: tuple[str, ...]
    auth: AuthCallback | None
    on_connect: ConnectCallback | None
    ssl_context: ssl.SSLContext | None
    validation: ValidationArg
    quirks: Quirks | None
    duplicate: DuplicatePolicy
    handshake_timeout: float
    compression: bool
    max_message_size: int
    close_timeout: float
    ws_codec: WsCodecName | None
    tcp_stream: TcpStreamName | None
    max_outstanding_calls: int | None
    detailed_errors: bool
    max_bad_messages: int | None
    on_message: ServerMessageHook | None
    session_options: dict[str, Any]
    identity_check: IdentityCheck
    keepalive: Keepalive | None
    max_queued_calls: int | None
    send_timeout: float | None
    inbound_budget: InboundBudget | None
    replay_cache: ReplayCache | None
    admission: AdmissionPolicy | None
    security_events: SecurityEvents
    rate_limiter: RateLimiter | None
    max_connections: int | None
    websocket_options: WebSocketOptions
    session_settings: SessionOptions
    csms_options: CsmsOptions

    # -- routing (the targets: the settings of each connection; see listener.py)
    connection_middleware: tuple[ConnectionMiddleware, ...]
    _default_target: _Target
    _targets: dict[Route, _Target]
    _default_endpoint: _Endpoint
    _endpoints: dict[Listener, _Endpoint]
    _route_limiters: dict[Route, RateLimiter]
    #: A route's settings over the server's (``_RouteTargets._resolve``).
    _resolve: Callable[[Route], _Target]
    #: Reports a CALL over a limit (``_SecurityReports._breached``).
    _breached: Callable[[Verdict, CallContext], None]

    # -- commanding (delivery, command buffer) and station services
    delivery: Delivery
    command_buffer: CommandBuffer | None
    _services: StationServices | None

    # -- state
    _session_router: Router
    _guard: GuardedRouter | None
    _breach_logged: dict[str, float]
    _peers: dict[Session, str | None]
    _connections: int
    _clients: dict[str, Session]
    _claimed: set[str]
    _accepting: bool
    _counters: ServerCounters
    _http: PlainHttpHandler | None
    _http_scopes: list[anyio.CancelScope]
    _hub_handover: anyio.Event | None
    # -- seeing it
    metrics: Metrics | None
    http_endpoints: HttpEndpoints
    _cluster: ClusterDelivery | None
