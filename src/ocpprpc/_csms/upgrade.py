"""Connection middleware: application checks that run during the HTTP upgrade, before auth.

Each is ``async def mw(conn: UpgradeContext) -> Reject | None``, run in order
once admission and routing let the request through and before the auth
callback, all under the handshake timeout.  One reads headers or the peer
address and refuses with an HTTP status (a :class:`~ocpprpc.Reject`), or
leaves state for the later stages (``conn.state`` becomes ``request.state``
for auth and seeds ``session.data``); ``None`` passes the request on.

A middleware that raises is a bug in it, not a verdict on the station: the
request is answered 500, the failure logged with its traceback once per
(middleware, exception type) and at DEBUG after that; other connections never
notice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._rpc.middleware import _first_failure
from .._ws.handshake import StationRequest
from .server_base import Reject

if TYPE_CHECKING:
    from .routing import Route

__all__ = ["ConnectionMiddleware", "UpgradeContext", "run_connection_middleware"]

log = logging.getLogger("ocpprpc.server")


@dataclass(eq=False)
class UpgradeContext:
    """One upgrade request as connection middleware sees it (shared by the whole chain)."""

    #: The request (identity, path, query, password, client certificate, ...).
    request: StationRequest
    #: The client's address, after trusted proxies (``None`` when unknown).
    peer: str | None
    #: The :class:`~ocpprpc.Route` the path matched (``None``: the server has no routes).
    route: Route | None
    #: The path parameters, ``identity`` included.
    params: dict[str, str]
    #: State for later stages: ``request.state`` for auth, then ``session.data``.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The station identity (the last path segment)."""
        return self.request.identity

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The request headers, lower-case names, as received."""
        return self.request.headers

    def header(self, name: str) -> str | None:
        """The first value of a request header (case-insensitive), decoded as latin-1."""
        return self.request.header(name)


class ConnectionMiddleware(Protocol):
    """``async def mw(conn: UpgradeContext) -> Reject | None``: refuse, or pass the request on."""

    def __call__(self, conn: UpgradeContext, /) -> Awaitable[Reject | None]: ...


class MiddlewareFailed(Exception):
    """Internal: a connection middleware raised or answered something other than Reject/None."""


async def run_connection_middleware(
    chain: Sequence[ConnectionMiddleware], conn: UpgradeContext
) -> Reject | None:
    """Run *chain* in order; the first :class:`Reject` ends it.

    :raises MiddlewareFailed: a middleware raised (logged here) or returned
        something else than ``Reject`` or ``None``.
    """
    for middleware in chain:
        try:
            verdict = await middleware(conn)
            if verdict is not None and not isinstance(verdict, Reject):
                raise TypeError(f"returned {verdict!r}, not a Reject or None")
        except Exception as exc:
            name = _name(middleware)
            level = logging.ERROR if _first_failure(middleware, exc) else logging.DEBUG
            log.log(
                level,
                "connection middleware %s failed for station %r; refusing with 500",
                name,
                conn.identity,
                exc_info=exc,
            )
            raise MiddlewareFailed(f"connection middleware {name} raised {type(exc).__name__}") from exc
        if verdict is not None:
            return verdict
    return None


def _name(middleware: Any) -> str:
    return str(getattr(middleware, "__qualname__", None) or type(middleware).__qualname__)
