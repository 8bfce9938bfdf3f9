"""Where a server listens, and what each route's connections get: :class:`Listener`, the targets.

A CSMS often serves security profile 1 on one port and profiles 2/3 on others
with one set of handlers: one :class:`~ocpprpc.Server`, several listeners,
each with its own TLS context and routes.  A *target* is the settings one
connection is served with: the server's own (no routes), or a route's over
the server's, resolved once per route, not per connection.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from .._rpc.middleware import Middleware
from .._rpc.protocols import ValidationArg, check_protocols
from .._rpc.router import Router
from .guard import GuardedRouter
from .routing import Route, check_routes
from .server_base import AuthCallback
from .upgrade import ConnectionMiddleware

__all__ = ["Listener"]


@dataclass(frozen=True, eq=False)
class Listener:
    """One address a server listens on, with its own TLS context and routes.

    ``ssl_context`` and ``routes`` left ``None`` are the server's.  After
    binding, :meth:`Server.listener(name) <ocpprpc.Server.listener>` returns a
    copy whose ``port`` is the bound one (useful after port 0).
    """

    host: str | None = "127.0.0.1"
    port: int = 0
    _: KW_ONLY
    ssl_context: ssl.SSLContext | None = None
    routes: Sequence[Route] | None = None
    #: A label for logs and :meth:`Server.listener <ocpprpc.Server.listener>`.
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", check_routes(self.routes))


@dataclass(eq=False)
class _Endpoint:
    """A listener as its connections see it: TLS and routes, the server's filled in.

    Mutable for one reason: :meth:`Server.update_tls <ocpprpc.Server.update_tls>`
    gives the next handshakes a new ``ssl_context``.
    """

    ssl_context: ssl.SSLContext | None
    routes: tuple[Route, ...] | None


@dataclass(frozen=True, eq=False)
class _Target:
    """The settings one connection is served with (the server's, or a route's over them)."""

    route: Route | None
    #: The route's pattern, for MessageContext.route and security events.
    pattern: str | None
    protocols: tuple[str, ...]
    #: The route's own; ``None``: the server's, read per connection (it is live).
    auth: AuthCallback | None
    validation: ValidationArg
    #: The route's own; ``None``: the server's, read per connection (it is live).
    max_message_size: int | None
    #: The router sessions get (rate limits and guard wrapped around the handlers).
    session_router: Router
    guard: GuardedRouter | None
    #: The route's own, run after the server's (read per connection).
    connection_middleware: tuple[ConnectionMiddleware, ...]
    #: The keyword arguments of each Session beyond the per-connection ones.
    session_options: dict[str, Any]


def _route_middleware(server_options: dict[str, Any], route: Route) -> dict[str, Any]:
    """The server's session options with the route's message middleware inside the server's."""
    if not route.middleware:
        return server_options
    outer: Sequence[Middleware] = server_options.get("middleware", ())
    return server_options | {"middleware": (*outer, *route.middleware)}


def _check_route_protocols(route: Route, protocols: tuple[str, ...], validation: ValidationArg) -> None:
    try:
        check_protocols(protocols, validation)
    except ValueError as exc:
        raise ValueError(f"route {route.pattern!r}: {exc}") from None
