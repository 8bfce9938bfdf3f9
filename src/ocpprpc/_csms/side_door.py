"""What a :class:`~ocpprpc.Server` shows about itself: :meth:`~ocpprpc.Server.stats` and the side door.

The side door answers plain HTTP (``/health``, ``/metrics``) on a port of its
own (:meth:`~ocpprpc.Server.serve_http`), so a probe or a scraper never
competes with the stations for the station port.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from .._version import __version__
from .._ws.http_plain import serve_plain_http
from .._ws.tcp import create_tcp_listener, serve_listener
from .server_base import _ServerBase
from .stats import ServerStats

log = logging.getLogger("ocpprpc.server")


class _SideDoor(_ServerBase):
    """The seen half of a :class:`~ocpprpc.Server`: its stats and its plain-HTTP port."""

    def stats(self) -> ServerStats:
        """A snapshot of what the server is doing (:class:`ServerStats`; docs: operations).

        Computed now from the running sessions and the server's own counters:
        O(sessions), nothing is paid per message for it.  In a cluster, ``cluster`` is
        what the cluster delivery last sampled (no Redis round trip here).
        """
        return self._counters.snapshot(
            self._peers,  # every running session, an evicted one until it has ended too
            connections=self._connections,
            shutting_down=not self._accepting,
            version=__version__,
            calls=None if self.metrics is None else self.metrics.call_counts(),
            cluster=None if self._cluster is None else self._cluster.stats(),
        )

    async def serve_http(
        self,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``/health`` (and ``/metrics``) on a port of its own, plain HTTP, until :meth:`shutdown` ends.

        Reports the bound port through ``task_status``
        (``port = await tg.start(server.serve_http, "0.0.0.0", 9100)``).  Each
        request is read under the handshake timeout and answered on its own
        connection; any other path is 404.
        """
        listener = await create_tcp_listener(host, port, tcp_stream=self.tcp_stream)
        try:
            async with anyio.create_task_group() as requests:
                with anyio.CancelScope() as accepting:
                    self._http_scopes.append(accepting)
                    bound: int = listener.extra(anyio.abc.SocketAttribute.local_port)
                    task_status.started(bound)
                    log.info("serving /health and /metrics on %s:%s", host, bound)
                    try:
                        await serve_listener(listener, self._serve_plain, requests)
                    finally:
                        self._http_scopes.remove(accepting)
                requests.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _serve_plain(self, stream: anyio.abc.ByteStream) -> None:
        try:
            await serve_plain_http(stream, self.http_endpoints, head_timeout=self.handshake_timeout)
        except Exception:
            log.exception("unexpected error while answering an HTTP request")
        finally:
            await anyio.aclose_forcefully(stream)
