"""The security events a :class:`~ocpprpc.Server` raises: refusals, failed auth, breaches, floods.

The server also runs the hub for ``async`` subscribers while it serves.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from .._rpc.router import CallContext
from .._rpc.session import Session
from .._ws.errors import HandshakeError
from .._ws.handshake import (
    StationRequest,
)
from .admission import Refuse
from .ratelimit import Verdict
from .security_events import (
    AuthFailed,
    BadMessageFlood,
    CertificateIdentityMismatch,
    ConnectionRefused,
    HandshakeAborted,
    RateLimited,
    SecurityEvent,
)
from .server_base import _BREACH_LOG_INTERVAL, _PROTOCOL_ERROR, Reject, _ServerBase

log = logging.getLogger("ocpprpc.server")


class _SecurityReports(_ServerBase):
    """Building and emitting the server's security events; never raises into the connection path."""

    def _emit(self, kind: type[SecurityEvent], **fields: Any) -> None:
        """Build and hand one event to the hub; never raises into the connection path."""
        hub = self.security_events
        try:
            hub.emit(kind(timestamp=hub.clock(), **fields))
        except Exception:
            log.exception("could not report a %s security event", kind.kind)

    def _handshake_failed(self, exc: HandshakeError, peer: str | None) -> None:
        if exc.status == 401:  # a Basic-auth username other than the identity
            self._emit(AuthFailed, peer=peer, method="basic", status=401, reason=str(exc))
        else:
            self._emit(HandshakeAborted, peer=peer, reason=str(exc))

    async def _refuse_admission(self, request: StationRequest, refusal: Refuse, peer: str | None) -> None:
        log.info(
            "station %r refused with %d by admission (%s): %s",
            request.identity,
            refusal.status,
            refusal.kind.value,
            refusal.reason,
        )
        self._emit(
            ConnectionRefused,
            identity=request.identity,
            peer=peer if refusal.client_ip is None else str(refusal.client_ip),
            refusal=refusal.kind.value,
            status=refusal.status,
            reason=refusal.reason,
        )
        headers = [(name.decode("ascii"), value.decode("ascii")) for name, value in refusal.headers()]
        await request.reject(refusal.status, refusal.reason, headers=headers)

    def _auth_refused(self, request: StationRequest, decision: Reject, peer: str | None) -> None:
        if decision.status not in (401, 403):
            return
        route: str | None = getattr(request.route, "pattern", None)
        if decision.certificate_subject is not None:
            self._emit(
                CertificateIdentityMismatch,
                identity=request.identity,
                peer=peer,
                route=route,
                certificate_subject=decision.certificate_subject,
                reason="the client certificate was issued to another station identity",
            )
            return
        self._emit(
            AuthFailed,
            identity=request.identity,
            peer=peer,
            route=route,
            method=decision.method,
            status=decision.status,
            reason=decision.body or f"refused by the auth callback with HTTP {decision.status}",
        )

    def _breached(self, verdict: Verdict, ctx: CallContext) -> None:
        """A station's CALL breached a limit: log it (rate-limited itself) and report it."""
        breach = verdict.breach
        assert breach is not None and verdict.on_breach is not None
        now = anyio.current_time()
        logged = self._breach_logged
        if now - logged.get(breach.identity, -_BREACH_LOG_INTERVAL) >= _BREACH_LOG_INTERVAL:
            if len(logged) >= 10_000:
                logged.clear()
            logged[breach.identity] = now
            level = logging.WARNING
        else:
            level = logging.DEBUG
        log.log(
            level,
            "station %r: %s %s (%s); %s",
            breach.identity,
            verdict.on_breach.value,
            breach.action,
            ctx.message_id,
            breach.describe(),
        )
        self._emit(
            RateLimited,
            identity=breach.identity,
            peer=self._peers.get(ctx.session),
            route=ctx.session.route,
            action=breach.action,
            limit=str(breach.limit),
            scope=breach.scope,
            on_breach=verdict.on_breach.value,
            reason=breach.describe(),
        )

    def _check_bad_message_flood(self, session: Session, peer: str | None) -> None:
        reason = session.close_reason
        limit = self.max_bad_messages
        if (
            limit is not None
            and reason is not None
            and reason.code == _PROTOCOL_ERROR
            and not reason.by_peer
            and session.connection.consecutive_bad_messages >= limit
        ):
            self._emit(
                BadMessageFlood,
                identity=session.identity,
                peer=peer,
                route=session.route,
                count=session.connection.consecutive_bad_messages,
                reason=f"{limit} malformed messages in a row; disconnected",
            )

    async def _relay_security_events(self) -> None:
        """Run the hub for ``async`` subscribers while any listener serves.

        One ``serve`` runs it; when that one stops (its listener cancelled
        alone), another takes over.  A hub the application runs itself is left
        to it.
        """
        hub = self.security_events
        while True:
            if self._hub_handover is None:
                self._hub_handover = anyio.Event()
            if hub.running:
                await self._hub_handover.wait()
                continue
            try:
                await hub.run()
            finally:
                handover, self._hub_handover = self._hub_handover, None
                if handover is not None:
                    handover.set()
