"""One station connection's admission: the upgrade, the policy, auth, the duplicate rule, the session."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio
import anyio.abc

from .._engine.rules import Role
from .._rpc.protocols import session_parts
from .._rpc.session import Session
from .._ws.errors import HandshakeError
from .._ws.handshake import (
    StationRequest,
    accept_websocket,
)
from .._ws.http_plain import PlainHttpAnswered
from .._ws.keepalive import keepalive as _keepalive
from .._ws.transport import ConnectionLost
from .admission import RefusalKind, Refuse
from .listener import _Endpoint, _Target
from .routing import IDENTITY, match_route
from .security_events import (
    AuthTimedOut,
    ConnectionRefused,
    IdentityEvicted,
    StationConnected,
    StationDisconnected,
)
from .security_reports import _SecurityReports
from .server_base import _REPLACED, Accept, DuplicatePolicy, Reject
from .upgrade import ConnectionMiddleware, MiddlewareFailed, UpgradeContext, run_connection_middleware

log = logging.getLogger("ocpprpc.server")


class _AdmissionFlow(_SecurityReports):
    """From an accepted byte stream to a running session, or a refusal with its reason."""

    async def _refuse_over_limit(
        self, stream: anyio.abc.ByteStream, peer: str | None, endpoint: _Endpoint
    ) -> None:
        """Answer HTTP 503 to the upgrade request (read and TLS'd under the handshake timeout)."""
        request = await self._read_request(stream, peer, endpoint, compression=False)
        if request is None:
            return
        self._counters.reject("connection_cap")
        log.info(
            "station %r refused with 503: %d connections, the limit (max_connections)",
            request.identity,
            self._connections,
        )
        self._emit(
            ConnectionRefused,
            identity=request.identity,
            peer=peer,
            refusal=RefusalKind.CONNECTION_CAP.value,
            status=503,
            reason=f"{self._connections} connections, the limit (max_connections)",
        )
        await request.reject(503, "the CSMS is at its connection limit, try again later")

    async def _read_request(
        self, stream: anyio.abc.ByteStream, peer: str | None, endpoint: _Endpoint, **options: Any
    ) -> StationRequest | None:
        """Read the upgrade request under the handshake timeout; ``None`` when it was answered already.

        A plain GET for the side door, or a request the WebSocket layer refused (its
        reason counted and reported), ends the connection's admission here.
        """
        try:
            return await accept_websocket(
                stream,
                protocols=self.protocols,
                ssl_context=endpoint.ssl_context,
                handshake_timeout=self.handshake_timeout,
                ws_codec=self.ws_codec,
                identity_check=self.identity_check,
                http=self._http,
                **options,
            )
        except PlainHttpAnswered as answered:
            log.debug("%s", answered)
        except HandshakeError as exc:
            log.info("handshake refused: %s", exc)
            self._counters.handshake_failed(exc)
            self._handshake_failed(exc, peer)
        return None

    async def _admit_connection(
        self, stream: anyio.abc.ByteStream, address: Any, endpoint: _Endpoint
    ) -> tuple[Session, str | None, str | None] | None:
        """Admit a station on *stream* from *address*: (session, peer, route) to serve now, or ``None``.

        The connection's task serves the session itself (``Server._handle_at``), so no
        frame of the admission stays while the station is served (bench_idle).
        """
        # One bound for the whole admission: TLS, the upgrade request, middleware and auth.
        deadline = anyio.current_time() + self.handshake_timeout
        peer = _peer_host(address)
        request = await self._read_request(
            stream,
            peer,
            endpoint,
            compression=self.compression,
            max_message_size=self.max_message_size,
            close_timeout=self.close_timeout,
            peer_address=address,
        )
        if request is None:
            return None
        identity = request.identity
        try:
            admitted = await self._admit(request, deadline, peer, endpoint)
        except HandshakeError as exc:
            log.info("station %r not admitted: %s", identity, exc)
            self._counters.reject("no_subprotocol" if request.subprotocol is None else "upgrade_failed")
            return None
        except Exception:
            log.exception("station %r: unexpected error", identity)
            return None
        # The session keeps what it needs of the request (data, params); the request itself, with
        # its headers and parsed head, would otherwise live as long as the connection (~1 KB).
        return admitted

    async def _admit(
        self, request: StationRequest, deadline: float, peer: str | None, endpoint: _Endpoint
    ) -> tuple[Session, str | None, str | None] | None:
        """Decide on *request* and open its session: (session, peer, route), or ``None`` if refused."""
        if self.admission is not None:
            scheme = "wss" if endpoint.ssl_context is not None else "ws"
            verdict = self.admission.decide(peer, request.headers, scheme, anyio.current_time())
            if isinstance(verdict, Refuse):
                self._counters.reject(verdict.kind.value)
                await self._refuse_admission(request, verdict, peer)
                return None
            peer = None if verdict.client_ip is None else str(verdict.client_ip)
        if not self._accepting:
            self._counters.reject("shutting_down")
            await request.reject(503, "the CSMS is shutting down")
            return None
        target = self._route(request, endpoint)
        if target is None:
            await self._refuse_unrouted(request, peer)
            return None
        route = target.pattern
        chain = self.connection_middleware
        if target.connection_middleware:
            chain = (*chain, *target.connection_middleware)
        if chain:
            refusal = await self._run_connection_middleware(request, target, chain, deadline, peer)
            if refusal is not None:
                status, body = refusal
                await request.reject(status, body)
                return None
        decision: Accept | Reject | None = Accept()
        auth = self.auth if target.auth is None else target.auth
        if auth is not None:
            try:
                with anyio.move_on_at(deadline) as auth_scope:
                    decision = await auth(request)
            except Exception:
                log.exception("auth callback failed for %r; refusing with 500", request.identity)
                self._counters.reject("auth_error")
                await request.reject(500)
                return None
            if auth_scope.cancel_called:
                # A hung callback (a database that does not answer) must not hold the connection.
                log.warning(
                    "auth callback for station %r did not decide within the handshake timeout (%s s); "
                    "refusing with 503",
                    request.identity,
                    self.handshake_timeout,
                )
                self._emit(
                    AuthTimedOut,
                    identity=request.identity,
                    peer=peer,
                    route=route,
                    timeout=self.handshake_timeout,
                    reason="the auth callback did not decide within the handshake timeout",
                )
                self._counters.reject("auth_timeout")
                await request.reject(503, "authentication timed out, try again later")
                return None
        if isinstance(decision, Reject):
            log.info("station %r rejected by auth with HTTP %s", request.identity, decision.status)
            self._counters.reject("auth_rejected")
            self._auth_refused(request, decision, peer)
            await request.reject(decision.status, decision.body)
            return None
        accept = decision if decision is not None else Accept()
        identity = request.identity
        refusing = self.duplicate is DuplicatePolicy.REFUSE
        if refusing:
            if identity in self._clients or identity in self._claimed:
                log.info("station %r is already connected; refusing the new connection", identity)
                current = self._clients.get(identity)
                self._emit(
                    IdentityEvicted,
                    identity=identity,
                    peer=peer,
                    route=route,
                    previous_peer=None if current is None else self._peers.get(current),
                    reason="identity already connected; the new connection was refused (409)",
                )
                self._counters.reject("duplicate")
                await request.reject(409, "this identity is already connected")
                return None
            self._claimed.add(identity)  # held through the upgrade: a concurrent twin gets 409 too
        try:
            session = await self._open_session(request, accept, target)
        finally:
            if refusing:
                self._claimed.discard(identity)
        if session is None:
            self._counters.reject("auth_error")  # the auth callback chose a protocol not offered
            return None
        return session, peer, route

    def _register(self, session: Session, peer: str | None, route: str | None) -> Session | None:
        """Make an admitted *session* the one of its identity; the session it replaces, if any.

        The caller runs the session right after: from _admit() into session.run() nothing
        yields to another task, so taking the identity, registering the session and starting
        it are one step; two connections for one identity never both count as "the" session
        (none is orphaned), and an evicted session has always started (a task group opens
        without a checkpoint).
        """
        identity = session.identity
        assert identity is not None
        previous = self._clients.get(identity)
        self._clients[identity] = session
        self._peers[session] = peer
        log.info("station %r connected (%s)", identity, session.protocol)
        self._counters.accepted += 1
        self._emit(
            StationConnected,
            identity=identity,
            peer=peer,
            route=route,
            protocol=session.protocol,
            reason=f"connected speaking {session.protocol}",
        )
        return previous

    async def _run_replacing(
        self, session: Session, previous: Session, peer: str | None, route: str | None
    ) -> None:
        """Run *session* while the connection it replaced for its identity is closed."""
        log.info("station %r reconnected; closing its previous connection", session.identity)
        self._emit(
            IdentityEvicted,
            identity=session.identity,
            peer=peer,
            route=route,
            previous_peer=self._peers.get(previous),
            reason="a new connection for the identity replaced the open one",
        )
        async with anyio.create_task_group() as evicting:
            # In the background: a dead old link must not hold up the new one
            # for the close timeout its close handshake may take.
            evicting.start_soon(_evict, previous)
            await self._run(session)

    def _unregister(self, session: Session, peer: str | None, route: str | None, started: float) -> None:
        """The station's session ended: forget it and report its end."""
        identity = session.identity
        assert identity is not None
        if self._clients.get(identity) is session:
            del self._clients[identity]
        self._peers.pop(session, None)
        self._counters.session_ended(session)
        closed = session.close_reason
        log.info("station %r disconnected: %s", identity, closed)
        self._check_bad_message_flood(session, peer)
        self._emit(
            StationDisconnected,
            identity=identity,
            peer=peer,
            route=route,
            protocol=session.protocol,
            code=None if closed is None else closed.code,
            by_peer=None if closed is None else closed.by_peer,
            duration=anyio.current_time() - started,
            reason="session ended" if closed is None else f"closed {closed}",
        )

    async def _open_session(self, request: StationRequest, accept: Accept, target: _Target) -> Session | None:
        """Complete the upgrade and build the station's session (``None``: refused instead)."""
        identity = request.identity
        protocol = accept.protocol if accept.protocol is not None else request.subprotocol
        if protocol is not None and protocol not in request.proposed_subprotocols:
            # An application bug; answer it like one rather than drop the connection unanswered.
            log.error(
                "auth callback chose %r for %r, which offered only %s; refusing with 500",
                protocol,
                identity,
                request.proposed_subprotocols,
            )
            await request.reject(500)
            return None
        websocket = await request.accept(protocol)
        websocket.send_timeout = self.send_timeout
        try:
            assert websocket.subprotocol is not None  # accept() refuses a handshake with none
            connection, options = session_parts(
                Role.CSMS,
                websocket.subprotocol,
                target.validation,
                max_outstanding_calls=self.max_outstanding_calls,
                detailed_errors=self.detailed_errors,
                max_bad_messages=self.max_bad_messages,
                quirks=self.quirks,
                identity=identity,
                handler_opt_outs=target.session_router.unvalidated_actions(websocket.subprotocol),
            )
            session = Session(
                websocket,
                connection,
                router=target.session_router,
                identity=identity,
                data={**request.state, **accept.data},
                route=target.pattern,
                params=request.params,
                close_timeout=self.close_timeout,
                max_queued_calls=self.max_queued_calls,
                inbound_budget=self.inbound_budget,
                on_message=None if self.on_message is None else functools.partial(self.on_message, identity),
                **options,
                **target.session_options,
            )
        except BaseException:
            await anyio.aclose_forcefully(websocket)
            raise
        guard = target.guard
        if guard is not None and guard.require_boot:
            session.call_watch = guard.watch(identity)  # triggered messages pass the boot gate
        return session

    def _route(self, request: StationRequest, endpoint: _Endpoint) -> _Target | None:
        """The settings this request is served with; ``None``: no route matches its path."""
        if endpoint.routes is None:
            request.params = {IDENTITY: request.identity}
            return self._default_target
        found = match_route(endpoint.routes, request.path)
        if found is None:
            return None
        route, params = found
        target = self._targets[route]
        request.route = route
        request.params = params
        request._retarget(target.protocols, target.max_message_size or self.max_message_size)
        return target

    async def _refuse_unrouted(self, request: StationRequest, peer: str | None) -> None:
        log.info("station %r refused with 404: no route matches its URL path", request.identity)
        self._emit(
            ConnectionRefused,
            identity=request.identity,
            peer=peer,
            refusal=RefusalKind.NO_ROUTE.value,
            status=404,
            reason="no route matches the URL path",
        )
        await request.reject(404, "no route matches this URL path")

    async def _run_connection_middleware(
        self,
        request: StationRequest,
        target: _Target,
        chain: Sequence[ConnectionMiddleware],
        deadline: float,
        peer: str | None,
    ) -> tuple[int, str] | None:
        """Run the connection middleware; the HTTP answer of a refusal (reported), or ``None``."""
        conn = UpgradeContext(request, peer, target.route, request.params, request.state)
        verdict: Reject | None = None
        reason = ""
        try:
            with anyio.move_on_at(deadline) as scope:
                verdict = await run_connection_middleware(chain, conn)
        except MiddlewareFailed as exc:
            verdict, reason = Reject(500, "the CSMS could not judge this connection"), str(exc)
        if scope.cancel_called:
            log.warning(
                "connection middleware for station %r did not decide within the handshake timeout (%s s); "
                "refusing with 503",
                request.identity,
                self.handshake_timeout,
            )
            verdict = Reject(503, "the CSMS did not decide in time, try again later")
            reason = "connection middleware did not decide within the handshake timeout"
        if verdict is None:
            return None
        if not reason:
            reason = verdict.body or f"refused by connection middleware with HTTP {verdict.status}"
            log.info("station %r refused with %s by connection middleware", request.identity, verdict.status)
        self._emit(
            ConnectionRefused,
            identity=request.identity,
            peer=peer,
            route=target.pattern,
            refusal=RefusalKind.MIDDLEWARE.value,
            status=verdict.status,
            reason=reason,
        )
        return verdict.status, verdict.body

    def _run(self, session: Session) -> Coroutine[Any, Any, None]:
        """What runs a registered session until it ends; the awaiting task is its reader.

        A plain function returning the coroutine to await, not a coroutine of its own: an
        idle station's task then waits with one frame less (~240 bytes; bench_idle).
        """
        on_open = None if self.on_connect is None else self._on_connect
        if self.keepalive is None:
            return session.run(on_open)
        return self._run_with_keepalive(session, on_open)

    async def _run_with_keepalive(
        self, session: Session, on_open: Callable[[Session], Coroutine[Any, Any, object]] | None
    ) -> None:
        assert self.keepalive is not None
        async with _keepalive(session.stream, self.keepalive):
            await session.run(on_open)

    async def _on_connect(self, session: Session) -> None:
        assert self.on_connect is not None
        try:
            await self.on_connect(session)
        except ConnectionLost as exc:
            log.info("station %r left during on_connect: %s", session.identity, exc)
        except Exception:
            # Application code failing is not the station's fault: log, keep serving it.
            log.exception("on_connect failed for station %r", session.identity)


def _peer_address(stream: anyio.abc.ByteStream) -> Any:
    """The stream's remote address (``None``: unknown); read once per connection (a system call on trio)."""
    return stream.extra(anyio.abc.SocketAttribute.remote_address, None)


def _peer_host(address: Any) -> str | None:
    """A remote address as text (no port), or ``None`` when it is unknown."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None if address is None else str(address)


async def _evict(session: Session) -> None:
    """Close a station's replaced session (1008); it never fails the new one's task."""
    try:
        await session.close(_REPLACED, "replaced by a new connection", graceful=False)
    except Exception:
        log.exception("closing the replaced session of station %r failed", session.identity)
