"""Changing a running CSMS: :meth:`~ocpprpc.Server.reconfigure` and :meth:`~ocpprpc.Server.update_tls`.

An operator raises a rate limit during a firmware roll-out, tightens the
handshake timeout under a connection storm, or installs a renewed certificate,
without dropping thousands of stations.  The options a running server may
change are the ones :func:`~ocpprpc.option_table` marks *live*; each applies
from the next handshake, connection or call on (the table in docs/operations
says which), never to what is already in flight.

A change is all or nothing: every value is validated (by the same option
model the constructor uses) before any is applied, so a typo cannot leave a
server half reconfigured.  Each applied change is logged and reported on the
security-event hub (:class:`~ocpprpc.ServerReconfigured`,
:class:`~ocpprpc.TlsUpdated`): changing who may connect is a security event.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import fields, replace
from typing import Any

from .._options.model import CsmsOptions, SessionOptions, WebSocketOptions
from .._options.table import SERVER, option_table
from .._rpc.protocols import check_protocols
from .._rpc.router import Router
from .._typed.validation import ValidationPolicy
from .admission import AdmissionPolicy
from .admission_flow import _AdmissionFlow
from .guard import RateLimitedRouter
from .ratelimit import RateLimiter, StationLimits
from .security_events import ServerReconfigured, TlsUpdated
from .server_base import DuplicatePolicy

log = logging.getLogger("ocpprpc.server")

_GROUP_TYPES: dict[str, type[WebSocketOptions | SessionOptions | CsmsOptions]] = {
    "websocket": WebSocketOptions,
    "session": SessionOptions,
    "csms": CsmsOptions,
}
#: The settings a server reads per connection from a group object (the rest it copied at start).
_CALLBACKS = ("auth", "on_connect", "on_message")


def live_server_options() -> dict[str, str]:
    """The options :meth:`Server.reconfigure` takes, each with its group (``object`` for objects)."""
    settings = {option.name for group in _GROUP_TYPES.values() for option in fields(group)}
    return {
        row.name: row.group
        for row in option_table()
        if row.live
        and (SERVER in row.entries or row.group == "csms" or row.name in settings)
        and row.name not in ("connect_timeout",)  # a station's setting
    }


def _describe(value: Any) -> str:
    """A short, secret-free description of a new value, for the log and the event."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    return type(value).__name__


class _LiveChanges(_AdmissionFlow):
    """The live half of a :class:`~ocpprpc.Server`: change it while stations stay connected."""

    def reconfigure(self, **changes: Any) -> dict[str, str]:
        """Change live options of the running server; return what changed, described.

        Takes the options :func:`~ocpprpc.option_table` marks *live* (timeouts,
        limits, ``rate_limits``, ``admission``, ``auth``, ``validation``, ...):
        a new value applies to the handshakes, connections or calls that start
        after the change (docs: operations, "Changing it live").  Raises
        ``TypeError`` for an option that cannot change live and ``ValueError``
        for a bad value, before changing anything.
        """
        if not changes:
            return {}
        allowed = live_server_options()
        refused = sorted(set(changes) - set(allowed))
        if refused:
            raise TypeError(
                f"reconfigure() cannot change {', '.join(refused)} while the server runs; "
                f"live options: {', '.join(sorted(allowed))}"
            )
        # -- validate everything first
        groups: dict[str, Any] = {}
        for group, kind in _GROUP_TYPES.items():
            given = {name: value for name, value in changes.items() if allowed[name] == group}
            if given:
                current = {"websocket": self.websocket_options, "session": self.session_settings}.get(group)
                if group == "csms":
                    current = self.csms_options
                    if "duplicate" in given:
                        given["duplicate"] = DuplicatePolicy(given["duplicate"]).value
                assert isinstance(current, kind)
                groups[group] = replace(current, **given)
        for name in _CALLBACKS:
            if name in changes and changes[name] is not None and not callable(changes[name]):
                raise TypeError(f"reconfigure(): {name} must be callable or None, not {changes[name]!r}")
        if "identity_check" in changes and not callable(changes["identity_check"]):
            raise TypeError("reconfigure(): identity_check must be callable")
        if "admission" in changes and not isinstance(changes["admission"], (AdmissionPolicy, type(None))):
            raise TypeError("reconfigure(): admission must be an AdmissionPolicy or None")
        if "rate_limits" in changes and not isinstance(changes["rate_limits"], (StationLimits, type(None))):
            raise TypeError("reconfigure(): rate_limits must be StationLimits or None")
        if "connection_middleware" in changes:
            chain = changes["connection_middleware"]
            if isinstance(chain, (str, bytes)) or not all(callable(mw) for mw in _iterable(chain)):
                raise TypeError("reconfigure(): connection_middleware must be a sequence of callables")
        if "validation" in changes:
            if not isinstance(changes["validation"], (bool, ValidationPolicy)):
                raise TypeError("reconfigure(): validation must be True, False or a ValidationPolicy")
            check_protocols(self.protocols, changes["validation"])
        # -- then apply
        if "websocket" in groups:
            self._apply_websocket(groups["websocket"])
        if "session" in groups:
            self._apply_session(groups["session"])
        if "csms" in groups:
            admitting: CsmsOptions = groups["csms"]
            self.csms_options = admitting
            self.handshake_timeout = admitting.handshake_timeout
            self.max_connections = admitting.max_connections
            self.duplicate = DuplicatePolicy(admitting.duplicate)
        for name in (*_CALLBACKS, "identity_check", "admission", "validation"):
            if name in changes:
                setattr(self, name, changes[name])
        if "connection_middleware" in changes:
            self.connection_middleware = tuple(changes["connection_middleware"])
        if "rate_limits" in changes:
            self._apply_rate_limits(changes["rate_limits"])
        self._retarget()
        described = {name: _describe(value) for name, value in changes.items()}
        log.info("reconfigured: %s", ", ".join(f"{name}={text}" for name, text in described.items()))
        self._emit(
            ServerReconfigured,
            changes=described,
            reason="changed " + ", ".join(sorted(described)),
        )
        return described

    def _apply_websocket(self, transport: WebSocketOptions) -> None:
        self.websocket_options = transport
        self.compression = transport.compresses(server=True)
        self.max_message_size = transport.max_message_size
        self.close_timeout = transport.close_timeout
        self.keepalive = transport.keepalive
        if transport.send_timeout != self.send_timeout:
            self.send_timeout = transport.send_timeout
            for session in self._clients.values():
                # The stream reads it whenever it waits for a slow reader: the next wait sees it.
                session.stream.send_timeout = transport.send_timeout  # type: ignore[attr-defined]

    def _apply_session(self, behaviour: SessionOptions) -> None:
        old = self.session_settings
        self.session_settings = behaviour
        self.max_outstanding_calls = behaviour.max_outstanding_calls
        self.detailed_errors = behaviour.detailed_errors
        self.max_bad_messages = behaviour.max_bad_messages
        self.max_queued_calls = behaviour.max_queued_calls
        self.session_options.update(
            call_timeout=behaviour.call_timeout,
            max_concurrent_handlers=behaviour.max_concurrent_handlers,
            ordered_handlers=behaviour.ordered_handlers,
            max_queued_bytes=behaviour.max_queued_bytes,
        )
        if behaviour.call_timeout != old.call_timeout:
            for session in self._clients.values():
                session.call_timeout = behaviour.call_timeout  # read by each call() as it starts

    def _apply_rate_limits(self, limits: StationLimits | None) -> None:
        wrapped = self._session_router
        if limits is None:
            if isinstance(wrapped, RateLimitedRouter):
                self._session_router = wrapped.inner
            self.rate_limiter = None
        elif self.rate_limiter is not None:
            self.rate_limiter.update(limits)
        else:
            self.rate_limiter = RateLimiter(limits, clock=time.monotonic)
            self._session_router = RateLimitedRouter(wrapped, self.rate_limiter, self._breached)

    def _retarget(self) -> None:
        """Resolve the connection targets again over the changed settings; move running sessions.

        A target holds what a connection is served with (validation, router,
        session options), the server's values filled in where its route sets
        none; after a change those are stale.  Running sessions whose router
        came from a target get the new one (it is read once per inbound CALL),
        so a new rate limit reaches them; the rest applies to new connections.
        """
        old = self._default_target
        self._default_target = replace(
            old,
            validation=self.validation,
            session_router=self._session_router,
            guard=self._guard,
            session_options=self.session_options,
        )
        moved: dict[int, Router] = {id(old.session_router): self._session_router}
        for route, target in list(self._targets.items()):
            self._targets[route] = fresh = self._resolve(route)
            moved.setdefault(id(target.session_router), fresh.session_router)
        for session in self._clients.values():
            session.router = moved.get(id(session.router), session.router)

    def update_tls(self, ssl_context: ssl.SSLContext, *, listener: str | None = None) -> None:
        """Serve *ssl_context* (a renewed certificate, new CAs) to TLS handshakes from now on.

        ``listener=None``: the server's own context, and every listener that
        uses it (started without one of its own).  ``listener="name"``: only
        that listener (``LookupError`` if none listens by that name).
        Connections already open keep the keys they negotiated and stay up.  A
        plain listener does not become ``wss://``: ``RuntimeError`` when what
        would change serves no TLS.
        """
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(f"update_tls() takes an ssl.SSLContext, not {type(ssl_context).__name__}")
        if listener is None:
            if self.ssl_context is None:
                raise RuntimeError(
                    "update_tls(): this server serves no TLS (it was started without ssl_context)"
                )
            endpoints = [self._default_endpoint] + [
                endpoint for config, endpoint in self._endpoints.items() if config.ssl_context is None
            ]
            self.ssl_context = ssl_context
        else:
            endpoints = [endpoint for config, endpoint in self._endpoints.items() if config.name == listener]
            if not endpoints:
                raise LookupError(f"update_tls(): no listener named {listener!r} is listening")
            if any(endpoint.ssl_context is None for endpoint in endpoints):
                raise RuntimeError(f"update_tls(): listener {listener!r} serves no TLS")
        for endpoint in endpoints:
            endpoint.ssl_context = ssl_context
        log.info(
            "TLS context of %s replaced: new handshakes use it, %d open connections keep theirs",
            "the server" if listener is None else f"listener {listener!r}",
            len(self._clients),
        )
        self._emit(TlsUpdated, listener=listener, reason="a new TLS context serves the next handshakes")


def _iterable(value: Any) -> list[Any]:
    try:
        return list(value)
    except TypeError:
        raise TypeError("reconfigure(): connection_middleware must be a sequence of callables") from None
