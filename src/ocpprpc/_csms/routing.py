"""URL routing of station connections: :class:`Route` patterns and how a request path matches one.

A CSMS serving several tenants (or several kinds of station) on one port tells
them apart by the URL path: ``/ocpp/{tenant}/{identity}``.  A :class:`Route`
is such a pattern and the settings its connections get instead of the
server's.  Matching is plain and strict, so a hostile path can only fail to
match: the path is split at ``/``, each segment percent-decoded on its own
(so ``%2F`` never acts as a separator), and compared with the pattern's
segments one for one; a parameter takes one whole, non-empty segment.

The identity stays where the WebSocket handshake takes it from, the last
segment (OCPP-J), so a pattern must end with ``{identity}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .._rpc.middleware import Middleware
from .._rpc.protocols import ValidationArg
from .._rpc.router import Router
from .ratelimit import StationLimits
from .server_base import AuthCallback

if TYPE_CHECKING:
    from .upgrade import ConnectionMiddleware

__all__ = ["IDENTITY", "Route", "check_routes", "match_route"]

#: The parameter every pattern ends with: the station identity.
IDENTITY = "identity"


@dataclass(frozen=True, eq=False)
class Route:
    """A URL path pattern, and the settings of the connections that match it.

    ``Route("/ocpp/{tenant}/{identity}", auth=tenant_auth)``: literal segments
    and ``{name}`` segments; ``{identity}`` is the last.  Every setting left
    ``None`` is the server's.

    :param pattern: ``/``-separated segments, each a literal (compared with the
        percent-decoded request segment, case-sensitive) or a whole ``{name}``
        (a Python identifier, each name once).
    :param router: the handlers of this route's stations.
    :param protocols: the OCPP versions offered here, most preferred first.
    :param auth: the auth callback here (it replaces the server's).
    :param validation: strict validation here, as for :class:`~ocpprpc.Server`.
    :param rate_limits: this route's :class:`~ocpprpc.StationLimits`, with a
        :class:`~ocpprpc.RateLimiter` of its own.
    :param middleware: message middleware, run inside the server's.
    :param connection_middleware: run after the server's connection middleware.
    :param max_message_size: the largest message accepted here.
    :param name: a label for logs and the application (default: the pattern).
    """

    pattern: str
    _: KW_ONLY
    router: Router | None = None
    protocols: Sequence[str] | None = None
    auth: AuthCallback | None = None
    validation: ValidationArg | None = None
    rate_limits: StationLimits | None = None
    middleware: Sequence[Middleware] | None = None
    connection_middleware: Sequence[ConnectionMiddleware] | None = None
    max_message_size: int | None = None
    name: str | None = None
    #: The compiled pattern: per segment, ``(is_parameter, literal or name)``.
    _segments: tuple[tuple[bool, str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_segments", _compile(self.pattern))
        if self.protocols is not None:
            if isinstance(self.protocols, str) or not self.protocols:
                raise ValueError(f"route {self.pattern!r}: protocols must be a non-empty list of versions")
            object.__setattr__(self, "protocols", tuple(self.protocols))
        for name in ("middleware", "connection_middleware"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.max_message_size is not None and self.max_message_size < 1:
            raise ValueError(f"route {self.pattern!r}: max_message_size must be at least 1")
        if self.name is None:
            object.__setattr__(self, "name", self.pattern)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameter names, in path order (``identity`` last)."""
        return tuple(text for is_param, text in self._segments if is_param)

    def match(self, path: str) -> dict[str, str] | None:
        """The parameters of *path* (percent-encoded, no query), or ``None`` if it does not match."""
        if not path.startswith("/"):
            return None
        parts = path[1:].split("/")
        segments = self._segments
        if len(parts) != len(segments):
            return None
        params: dict[str, str] = {}
        for raw, (is_param, text) in zip(parts, segments, strict=True):
            try:
                value = unquote(raw, errors="strict")
            except UnicodeDecodeError:
                return None
            if is_param:
                if not _usable(value):
                    return None
                params[text] = value
            elif value != text:
                return None
        return params


def _usable(value: str) -> bool:
    """A parameter value: one non-empty segment, no separator, no dot name, no control character."""
    return (
        bool(value)
        and value not in (".", "..")
        and "/" not in value
        and "\\" not in value
        and all(char >= " " and char != "\x7f" for char in value)
    )


def _compile(pattern: str) -> tuple[tuple[bool, str], ...]:
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ValueError(f"a route pattern starts with '/': {pattern!r}")
    segments: list[tuple[bool, str]] = []
    seen: set[str] = set()
    for segment in pattern[1:].split("/"):
        if not segment:
            raise ValueError(f"route pattern {pattern!r} has an empty segment ('//' or a trailing '/')")
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1]
            if not name.isidentifier():
                raise ValueError(f"route pattern {pattern!r}: {segment!r} is not a valid parameter name")
            if name in seen:
                raise ValueError(f"route pattern {pattern!r}: parameter {name!r} appears twice")
            seen.add(name)
            segments.append((True, name))
        elif "{" in segment or "}" in segment:
            raise ValueError(
                f"route pattern {pattern!r}: a parameter must be a whole segment, not {segment!r}"
            )
        elif segment in (".", ".."):
            raise ValueError(f"route pattern {pattern!r}: {segment!r} is not a path segment")
        else:
            segments.append((False, segment))
    if segments[-1] != (True, IDENTITY):
        raise ValueError(
            f"route pattern {pattern!r} must end with '/{{identity}}': "
            "the station identity is the last segment of the URL path (OCPP-J)"
        )
    return tuple(segments)


def match_route(routes: Sequence[Route], path: str) -> tuple[Route, dict[str, str]] | None:
    """The first route *path* matches and its parameters, or ``None`` (answered 404)."""
    for route in routes:
        params = route.match(path)
        if params is not None:
            return route, params
    return None


def check_routes(routes: Sequence[Route] | None) -> tuple[Route, ...] | None:
    """A list of routes as given to a server or a listener, checked once."""
    if routes is None:
        return None
    checked = tuple(routes)
    for route in checked:
        if not isinstance(route, Route):
            raise TypeError(f"routes must be ocpprpc.Route objects, not {route!r}")
    return checked
