"""The CSMS side: accept charging stations, authenticate them, run one session each.

:class:`Server` owns no sockets of its own until :meth:`Server.serve` opens a
listener; :meth:`Server.handle` takes any accepted byte stream, so an
application that already runs an anyio listener (or a test) hands connections
over one at a time.  Every station connection lives in its own task, inside
the server's task group; nothing it does can take the server or another
station down.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import ssl
import time
from collections.abc import Mapping, MutableMapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._ops.registry import StationRegistry
from .._options.model import CsmsOptions, SessionOptions, WebSocketOptions
from .._options.policies import Keepalive
from .._options.table import merge_options, split_session_extras
from .._rpc.protocols import ValidationArg, check_protocols
from .._rpc.router import Router
from .._rpc.session import DEFAULT_INBOUND_BUDGET, InboundBudget, Session
from .._typed.quirks import QuirksArg, as_quirks
from .._ws.handshake import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    IdentityCheck,
    WsCodecName,
    check_identity,
    resolve_ws_codec,
)
from .._ws.http_plain import PlainHttpHandler
from .._ws.tcp import TcpStreamName, check_tcp_stream, create_tcp_listener, serve_listener
from .._ws.websocket import DEFAULT_CLOSE_TIMEOUT, DEFAULT_SEND_TIMEOUT
from .._ws.wsproto_codec import DEFAULT_MAX_MESSAGE_SIZE
from .admission import AdmissionPolicy
from .admission_flow import _peer_address, _peer_host
from .command_buffer import CommandBuffer
from .commanding import _Commanding
from .delivery import Delivery, LocalDelivery
from .guard import GuardedRouter, RateLimitedRouter, ReplayCache
from .http_endpoints import HttpEndpoints
from .listener import Listener, _Endpoint, _Target
from .live import _LiveChanges
from .ratelimit import RateLimiter, StationLimits
from .route_targets import _RouteTargets
from .routing import Route, check_routes
from .security_events import (
    SecurityEvents,
)
from .server_base import _GOING_AWAY, ALL_PROTOCOLS, AuthCallback, ConnectCallback, ServerMessageHook
from .server_base import Accept as Accept
from .server_base import DuplicatePolicy as DuplicatePolicy
from .server_base import Reject as Reject
from .session_state import SessionStates
from .side_door import _SideDoor
from .station_services import station_services
from .stats import ServerCounters, ServerStats
from .upgrade import ConnectionMiddleware

if TYPE_CHECKING:
    from .._ops.metrics import Metrics
    from .cluster_delivery import ClusterDelivery

__all__ = ["Accept", "DuplicatePolicy", "Reject", "Server", "ServerStats"]

log = logging.getLogger("ocpprpc.server")


class Server(_Commanding, _SideDoor, _RouteTargets, _LiveChanges):
    """A CSMS: the options every station connection shares, and the live sessions.

    :param router: handlers for the CALLs stations send.
    :param protocols: OCPP versions accepted, most preferred first.
    :param auth: ``async def auth(request) -> Accept | Reject | None`` decides on
        each upgrade request (identity, password, client certificate, headers);
        ``None`` accepts.  Without a callback every station is accepted, unless
        the request carries no identity.
    :param on_connect: ``async def on_connect(session)`` runs once per accepted
        station, inside its session (e.g. to call it); the session keeps running
        after it returns, until the station leaves.  An exception from it is
        logged and does not end the station's connection.
    :param ssl_context: TLS for ``wss://`` (profiles 2 and 3; see
        :func:`server_ssl_context`).
    :param validation: strict schema validation, as for :func:`connect`.
    :param duplicate: :class:`DuplicatePolicy` for an identity already connected.
    :param handshake_timeout: one bound on TLS, the upgrade request and the
        ``auth`` callback together (slowloris guard); a station whose request is
        incomplete by then is dropped, one whose auth callback has not decided by
        then gets HTTP 503 (logged as a warning).
    :param compression: offer permessage-deflate (OCPP 2.x requires a CSMS to).
    :param max_message_size: largest message accepted from a station.
    :param max_bad_messages: close a station's connection (1002) after this many
        malformed messages in a row; ``None`` (default): answer them forever.
    :param ws_codec: the WebSocket frame codec, ``"websockets"`` or ``"wsproto"``;
        default ``"auto"``: websockets if installed (docs: "WebSocket codec").
    :param tcp_stream: the TCP byte stream :meth:`serve` accepts with, ``"asyncio"``
        (ocpprpc's own, asyncio only), ``"socket"`` (raw socket, trio only) or
        ``"anyio"``; default ``"auto"``: the own one on asyncio, the raw one on trio
        (docs: "TCP byte stream").
    :param on_message: ``on_message(identity, direction, text)`` sees every
        message in (``"in"``) and out (``"out"``) of every station, for an
        exchange log; it must be fast and must not raise.
    :param keepalive: WebSocket pings to every station (:class:`Keepalive`); a
        station that stops answering is dropped (1006).  ``None``: no pings (the
        CSMS still answers the stations' pings).
    :param max_queued_calls: a station's CALLs that may wait for a busy handler;
        at this many the CSMS stops reading from that station until a handler is
        free (TCP holds the station back).  ``None``: no bound.  See
        :class:`Session` for how this avoids deadlock when a handler calls the
        station back.
    :param inbound_budget: bytes of text the CALLs of all stations together may
        hold while queued or being handled (default 64 MiB); while it is spent a
        station with a CALL already queued is not read (TCP holds it back), one
        with none queued still is.  ``None``: no budget.
    :param send_timeout: seconds a station that stopped reading gets once more
        than 64 KiB wait to be sent to it: then it is dropped (1006, "peer
        stopped reading") with a warning.  ``None``: no limit (what is buffered
        for it stays bounded either way).
    :param require_boot: refuse every CALL but BootNotification with a
        ``SecurityError`` from a station whose boot the CSMS has not accepted
        (OCPP 2.0.1 B02.FR.09/B03.FR.07).
    :param boot_registry: where the boot gate remembers which identities booted
        (identity -> accepted); persist it to survive a CSMS restart.
    :param replay_cache: remember the answers to each station's last N CALLs and
        answer a repeated message id from memory (handlers see each message once).
    :param identity_check: judges each station identity after percent-decoding;
        default :func:`~ocpprpc.check_identity` (OCPP: 1-48 printable ASCII, no
        ``/``); raise ``ValueError`` to refuse (HTTP 400).
    :param max_connections: connections served at once, handshakes included;
        one more is answered HTTP 503 once its upgrade request is read (under
        ``handshake_timeout``, TLS included) and closed.  ``None`` (default): no
        limit but the process's file descriptors (running out of those is
        survived: accepting pauses 100 ms at a time, with a rate-limited warning).
    :param admission: an :class:`AdmissionPolicy` judging each upgrade request
        (peer address, headers, scheme) once it is read and before ``auth``: a
        refusal is answered 403 (address, origin, scheme) or 429 with
        ``Retry-After`` (upgrade rate per address) and closed.  ``None``: everyone
        reaches ``auth``.
    :param rate_limits: :class:`StationLimits` every station's CALLs are held to
        (one :class:`RateLimiter` per server, keyed by identity, so limits follow
        a station across reconnects).  ``None``: no limits, and no cost.
    :param security_events: the :class:`SecurityEvents` hub the server reports
        to (default: a new one; either way it is :attr:`security_events`).
        :meth:`serve` runs its ``run()`` for ``async`` subscribers.
    :param registry: a :class:`StationRegistry` the server keeps up to date (per
        identity: last boot, protocol, connector statuses, open transactions,
        last seen, node), or ``True`` for one in memory; it is :attr:`registry`.
        ``None`` (default): none, and nothing on the message path (docs: operations).
    :param command_buffer: a :class:`CommandBuffer` holding commands for stations
        that are away until they are back and booted (``queue=True`` of
        :meth:`send_to_client`); ``None``: commands fail at once for them.
    :param session_state: a :class:`SessionStates` (or ``True`` for the defaults):
        ``session.state`` is then one dict per identity, kept across reconnects.
    :param quirks: vendor quirk profiles (:class:`QuirkProfile`, or a :class:`Quirks`)
        repairing known non-conformant payloads before validation (docs: quirks).
    :param routes: URL routing (:class:`Route`; docs: routing): the first route
        whose pattern the request path matches serves the connection, with its
        settings over the server's; a path no route matches is answered 404.
        ``None`` (default): every path, identity = the last segment.
    :param connection_middleware: ``async def mw(conn: UpgradeContext) -> Reject | None``
        functions run in order during the upgrade, after admission and routing,
        before ``auth`` (a route's run after these; docs: routing).
    :param websocket: the transport settings as one :class:`WebSocketOptions`
        (``compression``, ``max_message_size``, ``close_timeout``,
        ``send_timeout``, ``ws_codec``, ``tcp_stream``, ``keepalive``), instead
        of those keywords; setting one of them too is a ``TypeError`` (docs: options).
    :param session: the session settings as one :class:`SessionOptions`, instead
        of ``max_outstanding_calls``, ``detailed_errors``, ``max_bad_messages``,
        ``max_queued_calls`` and the settings among *session_options*.
    :param csms: the admission settings as one :class:`CsmsOptions`
        (``handshake_timeout``, ``max_connections``, ``inbound_budget``,
        ``duplicate``, ``require_boot``), instead of those keywords.
    :param metrics: Prometheus metrics (docs: operations): a :class:`Metrics`,
        or ``True`` for a new one (needs ``ocpprpc[metrics]``); it becomes the
        outermost message middleware of every station and a subscriber of
        :attr:`security_events`.  ``None`` (default): no metrics, and nothing
        added to the message path.
    :param http_endpoints: answer plain (non-upgrade) HTTP requests on the
        station port: ``GET /health``, and ``GET /metrics`` with *metrics*.
        ``None`` (default): on exactly when *metrics* is set.  While
        :meth:`shutdown` runs, a server with the side door keeps accepting, so
        ``/health`` answers 503 (new stations get 503 too).  :meth:`serve_http`
        serves the same on a port of its own.
    :param session_options: further :class:`Session` options for every station.
    """

    def __init__(
        self,
        *,
        router: Router | None = None,
        protocols: Sequence[str] = ALL_PROTOCOLS,
        auth: AuthCallback | None = None,
        on_connect: ConnectCallback | None = None,
        ssl_context: ssl.SSLContext | None = None,
        validation: ValidationArg = False,
        duplicate: DuplicatePolicy | str = DuplicatePolicy.EVICT,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        compression: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        ws_codec: WsCodecName | None = None,
        tcp_stream: TcpStreamName | None = None,
        max_outstanding_calls: int | None = None,
        detailed_errors: bool = False,
        max_bad_messages: int | None = None,
        on_message: ServerMessageHook | None = None,
        keepalive: Keepalive | None = None,
        max_queued_calls: int | None = 256,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        inbound_budget: int | None = DEFAULT_INBOUND_BUDGET,
        require_boot: bool = False,
        boot_registry: MutableMapping[str, bool] | None = None,
        replay_cache: int | ReplayCache | None = None,
        identity_check: IdentityCheck = check_identity,
        max_connections: int | None = None,
        quirks: QuirksArg = None,
        admission: AdmissionPolicy | None = None,
        rate_limits: StationLimits | None = None,
        security_events: SecurityEvents | None = None,
        registry: StationRegistry | bool | None = None,
        command_buffer: CommandBuffer | None = None,
        session_state: SessionStates | bool | None = None,
        routes: Sequence[Route] | None = None,
        connection_middleware: Sequence[ConnectionMiddleware] = (),
        websocket: WebSocketOptions | None = None,
        session: SessionOptions | None = None,
        csms: CsmsOptions | None = None,
        metrics: Metrics | bool | None = None,
        http_endpoints: bool | None = None,
        **session_options: Any,
    ) -> None:
        if not protocols:
            raise ValueError("a server must accept at least one protocol")
        check_protocols(protocols, validation)
        # Every setting validated once, here; the attributes below are read from these.
        #: The transport settings of every station connection (:class:`WebSocketOptions`).
        self.websocket_options = merge_options(
            "Server",
            "websocket",
            websocket,
            WebSocketOptions(
                compression=compression,
                max_message_size=max_message_size,
                close_timeout=close_timeout,
                send_timeout=send_timeout,
                ws_codec=ws_codec,
                tcp_stream=tcp_stream,
                keepalive=keepalive,
            ),
        )
        settings, extras = split_session_extras(session_options)
        #: The session settings of every station connection (:class:`SessionOptions`).
        self.session_settings = merge_options(
            "Server",
            "session",
            session,
            SessionOptions(
                max_outstanding_calls=max_outstanding_calls,
                detailed_errors=detailed_errors,
                max_bad_messages=max_bad_messages,
                max_queued_calls=max_queued_calls,
                **settings,
            ),
        )
        #: The admission settings (:class:`CsmsOptions`).
        self.csms_options = merge_options(
            "Server",
            "csms",
            csms,
            CsmsOptions(
                handshake_timeout=handshake_timeout,
                max_connections=max_connections,
                inbound_budget=inbound_budget,
                duplicate=DuplicatePolicy(duplicate).value,
                require_boot=require_boot,
            ),
        )
        transport, behaviour, admitting = self.websocket_options, self.session_settings, self.csms_options
        self.router = router if router is not None else Router()
        self.protocols = tuple(protocols)
        self.auth = auth
        self.on_connect = on_connect
        self.ssl_context = ssl_context
        self.validation = validation
        self.quirks = as_quirks(quirks)  # one registry: it remembers stations across reconnects
        self.duplicate = DuplicatePolicy(admitting.duplicate)
        self.handshake_timeout = admitting.handshake_timeout
        self.compression = transport.compresses(server=True)
        self.max_message_size = transport.max_message_size
        self.close_timeout = transport.close_timeout
        resolve_ws_codec(transport.ws_codec)  # a codec that is not installed fails here, not per station
        self.ws_codec = transport.ws_codec
        check_tcp_stream(transport.tcp_stream)
        self.tcp_stream = transport.tcp_stream
        self.max_outstanding_calls = behaviour.max_outstanding_calls
        self.detailed_errors = behaviour.detailed_errors
        self.max_bad_messages = behaviour.max_bad_messages
        self.on_message = on_message
        # The Session keywords each station's session gets besides those set from attributes.
        self.session_options: dict[str, Any] = {
            "call_timeout": behaviour.call_timeout,
            "max_concurrent_handlers": behaviour.max_concurrent_handlers,
            "ordered_handlers": behaviour.ordered_handlers,
            "max_queued_bytes": behaviour.max_queued_bytes,
        } | extras
        self.identity_check = identity_check
        # -- resilience (issue 5)
        self.keepalive = transport.keepalive
        self.max_queued_calls = behaviour.max_queued_calls
        self.send_timeout = transport.send_timeout
        budget = admitting.inbound_budget
        self.inbound_budget = None if budget is None else InboundBudget(budget)
        self.replay_cache = ReplayCache(replay_cache) if isinstance(replay_cache, int) else replay_cache
        self._session_router: Router = self.router
        self._guard: GuardedRouter | None = None
        if admitting.require_boot or self.replay_cache is not None:
            self._session_router = self._guard = GuardedRouter(
                self.router,
                require_boot=admitting.require_boot,
                boot_registry=boot_registry,
                replay_cache=self.replay_cache,
            )
        # -- protection (issue 14)
        self.admission = admission
        #: The hub every security event of this server goes to: subscribe to it.
        self.security_events = security_events if security_events is not None else SecurityEvents()
        #: The station buckets (``None`` without ``rate_limits``).
        self.rate_limiter: RateLimiter | None = None
        if rate_limits is not None:
            # time.monotonic is the clock asyncio's loop reads; the buckets only compare their own
            # readings, and anyio.current_time() would cost a backend lookup on every CALL.
            self.rate_limiter = RateLimiter(rate_limits, clock=time.monotonic)
            # Outermost: a flood is refused before the boot gate or the replay cache spend anything.
            self._session_router = RateLimitedRouter(self._session_router, self.rate_limiter, self._breached)
        self._breach_logged: dict[str, float] = {}
        # -- routing (issue 14): the settings each connection is served with
        #: The routes of every listener that has none of its own (``None``: no routing).
        self.routes = check_routes(routes)
        #: Run during each upgrade, before the route's and before ``auth`` (docs: routing).
        self.connection_middleware: tuple[ConnectionMiddleware, ...] = tuple(connection_middleware)
        # Without routes: the server's settings, read per connection where they are live.
        self._default_target = _Target(
            route=None,
            pattern=None,
            protocols=self.protocols,
            auth=None,
            validation=self.validation,
            max_message_size=None,
            session_router=self._session_router,
            guard=self._guard,
            connection_middleware=(),
            session_options=self.session_options,
        )
        self._targets: dict[Route, _Target] = {}
        #: A route's own rate limiter, kept when its target is resolved again (reconfigure).
        self._route_limiters: dict[Route, RateLimiter] = {}
        self._default_endpoint = _Endpoint(self.ssl_context, self.routes)
        self._bound: list[tuple[Listener, anyio.abc.Listener[anyio.abc.SocketStream]]] = []
        #: Each bound listener's endpoint (its TLS context changes with update_tls).
        self._endpoints: dict[Listener, _Endpoint] = {}
        # The client address of each running session, for the events it raises.
        self._peers: dict[Session, str | None] = {}
        self.max_connections = admitting.max_connections
        self._connections = 0
        self._clients: dict[str, Session] = {}
        #: Where commands reach stations (send_to_client, broadcast): this process's sessions;
        #: the clustering seam replaces it with one that reaches other processes too.
        self.delivery: Delivery = LocalDelivery(lambda: self._clients)
        #: The cluster this server is plugged into (set by ``cluster_delivery``), for ``stats()``.
        self._cluster: ClusterDelivery | None = None
        #: Identities between the duplicate check and registration (``duplicate="refuse"``).
        self._claimed: set[str] = set()
        self._listeners: list[anyio.abc.Listener[anyio.abc.SocketStream]] = []
        self._task_groups: list[anyio.abc.TaskGroup] = []
        # Set when the serve running the security hub stops, for another to take it over.
        self._hub_handover: anyio.Event | None = None
        self._accept_scopes: list[anyio.CancelScope] = []
        self._accepting = True
        # -- station state (issue 15): registry, command buffer, session state, all through the hooks
        self._services = station_services(
            registry=registry,
            command_buffer=command_buffer,
            session_state=session_state,
            hub=self.security_events,
            sessions=lambda: self._clients,
            delivery=lambda: self.delivery,
            boot_registry=boot_registry if self._guard is None else self._guard.booted,
        )
        #: The station registry (``None`` without ``registry``).
        self.registry = None if self._services is None else self._services.registry
        #: The command buffer (``None`` without ``command_buffer``).
        self.command_buffer = command_buffer
        #: The per-identity session states (``None`` without ``session_state``).
        self.session_states = None if self._services is None else self._services.states
        if self._services is not None and self._services.observer is not None:
            # Outermost: it sees the request as the station sent it and the answer as it leaves.
            layers = self.session_options.get("middleware", ())
            self.session_options["middleware"] = (self._services.observer, *layers)
        # -- seeing it (issue 15)
        self._counters = ServerCounters()
        if metrics is True:
            from .._ops.metrics import Metrics

            metrics = Metrics()
        #: The server's :class:`Metrics` (``None`` without ``metrics``).
        self.metrics: Metrics | None = None if isinstance(metrics, bool) else metrics
        if self.metrics is not None:
            # Outermost: it times and sees the outcome of everything the other layers do.
            self.session_options["middleware"] = (self.metrics, *self.session_options.get("middleware", ()))
            self.security_events.subscribe(self.metrics.observe_event)
            self.metrics.bind(self.stats)
        #: The side door's handler (``/health``, ``/metrics``), also what :meth:`serve_http` serves.
        self.http_endpoints = HttpEndpoints(self.stats, self.metrics)
        served = self.metrics is not None if http_endpoints is None else http_endpoints
        self._http: PlainHttpHandler | None = self.http_endpoints if served else None
        self._http_scopes: list[anyio.CancelScope] = []
        # Last: a route's session options copy the server's, middleware included.
        self._add_targets(self.routes)

    @property
    def clients(self) -> Mapping[str, Session]:
        """The connected stations' sessions, by identity (a live read-only view).

        A station is listed once its session runs, just before ``on_connect``;
        the station itself may see the upgrade succeed a moment earlier, so a test
        that connects a station and then looks it up should wait for ``on_connect``
        (or for the station's first call to be handled).
        """
        return MappingProxyType(self._clients)

    @property
    def port(self) -> int:
        """The TCP port of the first listener (useful after binding port 0)."""
        if not self._listeners:
            raise RuntimeError("the server is not listening")
        port: int = self._listeners[0].extra(anyio.abc.SocketAttribute.local_port)
        return port

    @property
    def ports(self) -> list[int]:
        """The TCP ports of every listener, in the order they started listening."""
        return [listener.extra(anyio.abc.SocketAttribute.local_port) for listener in self._listeners]

    def listener(self, name: str) -> Listener:
        """The listener named *name*, with the port it is bound to.

        :raises LookupError: no listener of that name is listening.
        """
        for listener, bound in self._bound:
            if listener.name == name:
                port: int = bound.extra(anyio.abc.SocketAttribute.local_port)
                return dataclasses.replace(listener, port=port)
        raise LookupError(f"no listener named {name!r} is listening")

    # -- serving -------------------------------------------------------------------------

    async def serve(
        self,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        routes: Sequence[Route] | None = None,
        name: str | None = None,
        task_status: anyio.abc.TaskStatus[Server] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on *host*:*port* and serve stations until :meth:`shutdown` or cancellation.

        Reports itself through ``task_status`` once listening, so
        ``server = await task_group.start(server.serve, "127.0.0.1", 0)`` then
        ``server.port`` works.  Returns once shut down and every station task
        has ended.

        Call it several times at once for several listeners (docs: routing):
        one set of handlers, one :attr:`clients`.  *ssl_context* and *routes*
        are this listener's (``None``: the server's); *name* labels it for
        :meth:`listener`.
        """
        config = Listener(host, port, ssl_context=ssl_context, routes=routes, name=name)
        self._add_targets(config.routes)
        endpoint = _Endpoint(
            self.ssl_context if ssl_context is None else ssl_context,
            self.routes if config.routes is None else tuple(config.routes),
        )
        listener = await create_tcp_listener(host, port, tcp_stream=self.tcp_stream)
        self._listeners.append(listener)
        bound = (config, listener)
        self._bound.append(bound)
        self._endpoints[config] = endpoint
        stations: anyio.abc.TaskGroup | None = None
        try:
            async with anyio.create_task_group() as reporting:
                reporting.start_soon(self._relay_security_events)
                if self._services is not None and not self._services.running:
                    await reporting.start(self._services.run)
                async with anyio.create_task_group() as stations:
                    self._task_groups.append(stations)
                    with anyio.CancelScope() as accepting:
                        self._accept_scopes.append(accepting)
                        task_status.started(self)
                        local_port = listener.extra(anyio.abc.SocketAttribute.local_port)
                        log.info(
                            "listening on %s:%s%s (%s)%s",
                            host,
                            local_port,
                            "" if name is None else f" ({name})",
                            ", ".join(self.protocols),
                            "" if endpoint.ssl_context is None else " with TLS",
                        )
                        await serve_listener(listener, functools.partial(self._handle_at, endpoint), stations)
                reporting.cancel_scope.cancel()
        finally:
            if stations in self._task_groups:
                self._task_groups.remove(stations)
            self._listeners.remove(listener)
            self._bound.remove(bound)
            self._endpoints.pop(config, None)
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one station on an accepted byte stream until it leaves.

        The embedding entry point: call it from your own listener's handler.
        Never raises for anything the station does; every failure is logged.
        Counts toward ``max_connections`` from the first byte to the last.
        The server's ``ssl_context`` and ``routes`` apply.
        """
        await self._handle_at(self._default_endpoint, stream)

    async def _handle_at(self, endpoint: _Endpoint, stream: anyio.abc.ByteStream) -> None:
        if self.max_connections is not None and self._connections >= self.max_connections:
            try:
                await self._refuse_over_limit(stream, _peer_host(_peer_address(stream)), endpoint)
            finally:
                await anyio.aclose_forcefully(stream)
            return
        self._connections += 1  # no checkpoint since the check: a burst cannot overshoot
        try:
            admitted = await self._admit_connection(stream, _peer_address(stream), endpoint)
            if admitted is not None:
                # Served here rather than in a coroutine of its own: one frame less per idle
                # station (~300 bytes; bench_idle).  No checkpoint from admission to run().
                session, peer, route = admitted
                started = anyio.current_time()
                previous = self._register(session, peer, route)
                try:
                    if previous is None:
                        await self._run(session)
                    else:
                        await self._run_replacing(session, previous, peer, route)
                except Exception:
                    log.exception("station %r: unexpected error", session.identity)
                finally:
                    self._unregister(session, peer, route, started)
        except Exception:
            # The backstop of "never raises": a bug reached by one station's input must cost
            # that station its connection, never the listener and every other station.
            log.exception("unexpected error while serving a connection")
        finally:
            self._connections -= 1
            # Normally the WebSocket (or a refusal) already closed it; this is the backstop.
            await anyio.aclose_forcefully(stream)

    @property
    def connection_count(self) -> int:
        """Connections being served now, handshakes included (what ``max_connections`` bounds)."""
        return self._connections

    async def shutdown(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (a grace period)
        """Stop accepting, close every station with 1001, wait up to *timeout* for their work.

        Pending handlers and calls get *timeout* seconds (default: the close
        timeout) to finish; whatever is still running after that, and the close
        handshakes, is cancelled.  :meth:`serve` then returns.
        """
        self._accepting = False
        if self._http is None:
            self._stop_accepting()
        # else: still accepting while the stations close, so /health answers 503 (upgrades get 503).
        grace = self.close_timeout if timeout is None else timeout
        with anyio.move_on_after(grace + self.close_timeout):
            async with anyio.create_task_group() as closing:
                for session in list(self._clients.values()):
                    closing.start_soon(_close_session, session, grace)
        self._stop_accepting()
        for scope in self._http_scopes:
            scope.cancel()
        for stations in self._task_groups:
            stations.cancel_scope.cancel()

    def _stop_accepting(self) -> None:
        for scope in self._accept_scopes:
            scope.cancel()


async def _close_session(session: Session, grace: float) -> None:
    await session.close(_GOING_AWAY, "the CSMS is shutting down", graceful=True, timeout=grace)
