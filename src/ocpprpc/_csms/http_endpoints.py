"""The CSMS's HTTP side door: ``GET /health`` and ``GET /metrics``.

A plain (non-upgrade) request reaches :class:`HttpEndpoints` only where the
handshake already knows it is not a WebSocket upgrade (see
:mod:`ocpprpc._ws.http_plain`); an upgrade to any path is a station's, never
the side door's.  The query string is ignored, paths are matched exactly
(no normalisation: ``/health/`` or ``/x/../health`` are not ``/health``), and a
path it does not serve is left to the usual answer (426 on the station port,
404 on a port of its own).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._ws.http_plain import PlainRequest, PlainResponse

if TYPE_CHECKING:
    from .._ops.metrics import Metrics
    from .stats import ServerStats

__all__ = ["HttpEndpoints"]

_JSON = "application/json"
_ALLOW = ((b"Allow", b"GET, HEAD"),)


class HttpEndpoints:
    """Answers ``/health`` (always) and ``/metrics`` (with metrics) for one server."""

    def __init__(self, stats: Callable[[], ServerStats], metrics: Metrics | None) -> None:
        self.stats = stats
        self.metrics = metrics

    def __call__(self, request: PlainRequest) -> PlainResponse | None:
        path = request.path
        if path == "/health":
            render = self._health
        elif path == "/metrics" and self.metrics is not None:
            render = self._metrics
        else:
            return None
        if request.method not in ("GET", "HEAD"):
            return PlainResponse(405, b"method not allowed: GET or HEAD\n", headers=_ALLOW)
        return render()

    def _health(self) -> PlainResponse:
        stats = self.stats()
        body = {
            "status": "shutting_down" if stats.shutting_down else "ok",
            "connections": sum(stats.sessions.values()),  # stations, not this probe's own connection
            "uptime": round(stats.uptime, 3),
            "version": stats.version,
        }
        return PlainResponse(
            503 if stats.shutting_down else 200,
            json.dumps(body, separators=(",", ":")).encode() + b"\n",
            content_type=_JSON,
        )

    def _metrics(self) -> PlainResponse:
        assert self.metrics is not None
        return PlainResponse(200, self.metrics.render(), content_type=self.metrics.content_type)
