"""Security events: typed, immutable records of what the protection layer saw, and a hub.

A CSMS operator wants failed logins, refused connections and flooding
stations in their SIEM, not in a log line to be parsed.  Every event is a
frozen dataclass with a ``kind`` tag and one flat, documented JSON shape
(:meth:`SecurityEvent.as_dict`, :meth:`SecurityEvent.to_json`): the common
fields always present (``null`` when unknown), then the fields of its kind.
The schema is versioned (``"schema": 1``); fields are only ever added.

:class:`SecurityEvents` hands events to subscribers.  :meth:`~SecurityEvents.emit`
is called from the server's hot paths, so it never blocks and never raises:
plain callbacks run inline (each failure caught), ``async`` callbacks get the
event through a bounded buffer that :meth:`~SecurityEvents.run` drains in a task
of the caller's task group.  When the buffer is full the oldest event goes
(a flood of RateLimited events must not grow memory) and is counted.

No clock is read implicitly: events carry the wall-clock ``timestamp`` their
creator gives them; the hub's ``clock`` (``time.time`` by default, injectable)
is there for creators to use.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

__all__ = [
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
]

log = logging.getLogger("ocpprpc.security")

#: The version of the JSON shape; bumped only if a field changes meaning or goes.
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityEvent:
    """What every security event carries."""

    #: The kind tag, also the ``kind`` field of the JSON (snake_case, stable).
    kind: ClassVar[str] = "security_event"
    #: ``info``, ``warning`` or ``critical``: how urgently a human should look.
    severity: ClassVar[str] = "warning"

    #: Wall-clock seconds since the epoch (UTC).
    timestamp: float
    #: The station identity, when known.
    identity: str | None = None
    #: The client's address (after trusted proxies), when known.
    peer: str | None = None
    #: The route (URL path pattern) the request was for, when known.
    route: str | None = None
    #: One human-readable line.  Never a password or an Authorization header value.
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The event as a flat dict of JSON values, in the documented field order."""
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "kind": self.kind,
            "severity": self.severity,
            "time": datetime.fromtimestamp(self.timestamp, UTC).isoformat(timespec="milliseconds"),
        }
        for item in fields(self):
            out[item.name] = getattr(self, item.name)
        return out

    def to_json(self) -> str:
        """The event as one line of JSON (``as_dict``), for a SIEM or a log shipper."""
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailed(SecurityEvent):
    """Credentials were missing or wrong (the server answered 401 or 403)."""

    kind: ClassVar[str] = "auth_failed"
    #: ``basic``, ``certificate`` or ``callback``: which check said no.
    method: str = "basic"
    #: The HTTP status the request was answered with.
    status: int = 401


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthTimedOut(SecurityEvent):
    """The application's authentication callback did not answer in time."""

    kind: ClassVar[str] = "auth_timed_out"
    #: The limit that ran out, in seconds.
    timeout: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimited(SecurityEvent):
    """A station's CALL breached a rate limit."""

    kind: ClassVar[str] = "rate_limited"
    #: The action of the refused CALL.
    action: str = ""
    #: The limit, as text (``"10/60s"``).
    limit: str = ""
    #: The action whose own limit was hit, or ``None`` for the station's global limit.
    scope: str | None = None
    #: What was done: ``drop``, ``callerror`` or ``disconnect``.
    on_breach: str = "drop"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionRefused(SecurityEvent):
    """A connection was refused before the upgrade (admission)."""

    kind: ClassVar[str] = "connection_refused"
    severity: ClassVar[str] = "info"
    #: Why: ``ip_denied``, ``ip_not_allowed``, ``scheme``, ``origin``,
    #: ``upgrade_rate`` or ``connection_cap`` (:class:`~ocpprpc.RefusalKind`).
    refusal: str = ""
    #: The HTTP status answered (403, 429, 503).
    status: int = 403


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeAborted(SecurityEvent):
    """The peer went away or stalled before the WebSocket handshake finished."""

    kind: ClassVar[str] = "handshake_aborted"
    severity: ClassVar[str] = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityEvicted(SecurityEvent):
    """A connection for an identity replaced (or was refused in favour of) the one already open."""

    kind: ClassVar[str] = "identity_evicted"
    #: The address of the connection that was already open, when known.
    previous_peer: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BadMessageFlood(SecurityEvent):
    """A station sent too many malformed messages and was disconnected."""

    kind: ClassVar[str] = "bad_message_flood"
    #: How many bad messages it sent.
    count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateIdentityMismatch(SecurityEvent):
    """A client certificate (profile 3) names another station than the URL does."""

    kind: ClassVar[str] = "certificate_identity_mismatch"
    severity: ClassVar[str] = "critical"
    #: The subject common name of the certificate presented.
    certificate_subject: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StationConnected(SecurityEvent):
    """A station passed admission and auth; its session runs (a SIEM's "logon")."""

    kind: ClassVar[str] = "station_connected"
    severity: ClassVar[str] = "info"
    #: The OCPP version spoken (``ocpp1.6``, ``ocpp2.0.1``, ``ocpp2.1``).
    protocol: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StationDisconnected(SecurityEvent):
    """A station's session ended, for whatever reason (a SIEM's "logoff")."""

    kind: ClassVar[str] = "station_disconnected"
    severity: ClassVar[str] = "info"
    #: The OCPP version that was spoken.
    protocol: str = ""
    #: The WebSocket close code (RFC 6455 7.4; 1006 when the link just died).
    code: int | None = None
    #: ``True`` when the station closed (or vanished), ``False`` when the CSMS did.
    by_peer: bool | None = None
    #: Seconds the session ran.
    duration: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerReconfigured(SecurityEvent):
    """A running server's options were changed (:meth:`~ocpprpc.Server.reconfigure`)."""

    kind: ClassVar[str] = "server_reconfigured"
    severity: ClassVar[str] = "info"
    #: Option name -> a short description of the new value (a number, a flag, or a type name:
    #: never a secret).
    changes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsUpdated(SecurityEvent):
    """A running server's TLS context was replaced (:meth:`~ocpprpc.Server.update_tls`)."""

    kind: ClassVar[str] = "tls_updated"
    severity: ClassVar[str] = "info"
    #: The listener whose context changed (``None``: the server's own).
    listener: str | None = None


#: Every kind tag, mapped to its class (for readers of the JSON).
SECURITY_EVENT_KINDS: dict[str, type[SecurityEvent]] = {
    cls.kind: cls
    for cls in (
        AuthFailed,
        AuthTimedOut,
        RateLimited,
        ConnectionRefused,
        HandshakeAborted,
        IdentityEvicted,
        BadMessageFlood,
        CertificateIdentityMismatch,
        StationConnected,
        StationDisconnected,
        ServerReconfigured,
        TlsUpdated,
    )
}

#: A subscriber: a plain function of the event, or an ``async`` one.
Subscriber = Callable[[SecurityEvent], None] | Callable[[SecurityEvent], Awaitable[None]]


def _is_async(callback: Callable[..., Any]) -> bool:
    call = getattr(callback, "__call__", None)  # noqa: B004  (callable objects with async __call__)
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(call)


class SecurityEvents:
    """The hub: subscribers in, events out, never a failure into the code that emits.

    :param buffer: how many events wait for ``async`` subscribers before the
        oldest is dropped.
    :param clock: wall-clock seconds, for the code that creates events
        (``timestamp=hub.clock()``).
    """

    def __init__(self, *, buffer: int = 1000, clock: Callable[[], float] = time.time) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must hold at least one event, got {buffer!r}")
        self.clock = clock
        self._sync: list[Callable[[SecurityEvent], None]] = []
        self._async: list[Callable[[SecurityEvent], Awaitable[None]]] = []
        self._pending: deque[SecurityEvent] = deque(maxlen=buffer)
        self._wakeup: Any = None  # an anyio.Event while run() waits
        self._running = False
        # (subscriber, exception type) pairs already logged with a traceback.
        self._reported: set[tuple[int, type[BaseException]]] = set()
        #: Events dropped because the buffer for async subscribers was full.
        self.dropped = 0
        #: Subscriber calls that raised.
        self.subscriber_errors = 0

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is delivering events to the ``async`` subscribers."""
        return self._running

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call *callback* with every event from now on; returns a function that unsubscribes."""
        if _is_async(callback):
            target: list[Any] = self._async
        else:
            target = self._sync
        target.append(callback)

        def unsubscribe() -> None:
            if callback in target:
                target.remove(callback)

        return unsubscribe

    def emit(self, event: SecurityEvent) -> None:
        """Hand *event* to every subscriber.  Never blocks, never raises."""
        log.debug("security event %s: %s", event.kind, event.reason)
        for callback in list(self._sync):
            try:
                callback(event)
            except Exception as exc:
                self._report(callback, exc)
        if not self._async:
            return
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(event)
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self) -> None:
        """Deliver events to the ``async`` subscribers, in order, until cancelled.

        Start it in a task group (``tg.start_soon(hub.run)``); one at a time.
        """
        import anyio  # here, not at the top: the events themselves need no I/O library

        if self._running:
            raise RuntimeError("SecurityEvents.run() is already running")
        self._running = True
        try:
            while True:
                while self._pending:
                    event = self._pending.popleft()
                    for callback in list(self._async):
                        try:
                            await callback(event)
                        except Exception as exc:
                            self._report(callback, exc)
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                self._wakeup = None
        finally:
            self._wakeup = None
            self._running = False

    def _report(self, callback: Callable[..., Any], exc: Exception) -> None:
        """Log a failing subscriber with a traceback once per cause; after that at DEBUG."""
        self.subscriber_errors += 1
        key = (id(callback), type(exc))
        if key in self._reported:
            log.debug("security event subscriber %r failed again: %r", callback, exc)
            return
        self._reported.add(key)
        log.error(
            "security event subscriber %r failed (%s); it stays subscribed, further %s "
            "from it are logged at DEBUG",
            callback,
            type(exc).__name__,
            type(exc).__name__,
            exc_info=exc,
        )
