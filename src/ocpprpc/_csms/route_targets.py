"""A route's settings over the server's: each route's target, resolved once per route.

A route may bring its own router, rate limits, protocols and validation; a
connection on it is served with those over the server's (the boot gate and
replay cache stay the server's: a station is one station).  See
:mod:`ocpprpc._csms.listener` for the target itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .guard import GuardedRouter, RateLimitedRouter
from .listener import _check_route_protocols, _route_middleware, _Target
from .ratelimit import RateLimiter
from .routing import Route
from .server_base import _ServerBase


class _RouteTargets(_ServerBase):
    """The routing half of a :class:`~ocpprpc.Server`: the targets of its routes."""

    def _add_targets(self, routes: Sequence[Route] | None) -> None:
        """Resolve each route's settings over the server's, once per route."""
        for route in routes or ():
            if route not in self._targets:
                self._targets[route] = self._resolve(route)

    def _resolve(self, route: Route) -> _Target:
        protocols = self.protocols if route.protocols is None else tuple(route.protocols)
        validation = self.validation if route.validation is None else route.validation
        _check_route_protocols(route, protocols, validation)
        session_router, guard = self._session_router, self._guard
        if route.router is not None or route.rate_limits is not None:
            session_router = route.router if route.router is not None else self.router
            if self._guard is not None:
                # The boot registry and replay cache are the server's: a station is one station.
                session_router = guard = GuardedRouter(
                    session_router,
                    require_boot=self._guard.require_boot,
                    boot_registry=self._guard.booted,
                    replay_cache=self.replay_cache,
                )
            limiter = self.rate_limiter
            if route.rate_limits is not None:
                limiter = self._route_limiters.get(route)
                if limiter is None:
                    limiter = self._route_limiters[route] = RateLimiter(
                        route.rate_limits, clock=time.monotonic
                    )
            if limiter is not None:
                session_router = RateLimitedRouter(session_router, limiter, self._breached)
        return _Target(
            route=route,
            pattern=route.pattern,
            protocols=protocols,
            auth=route.auth,
            validation=validation,
            max_message_size=route.max_message_size,
            session_router=session_router,
            guard=guard,
            connection_middleware=tuple(route.connection_middleware or ()),
            session_options=_route_middleware(self.session_options, route),
        )
