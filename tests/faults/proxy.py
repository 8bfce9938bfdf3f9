"""A fault-injecting TCP proxy for tests, on anyio (runs on asyncio and trio).

Sits between a station and a CSMS on loopback and forwards bytes both ways
until told to misbehave:

* :meth:`FaultProxy.drop`: close both sides of every live link (the peers see
  EOF/reset: a clean, immediately visible loss);
* :meth:`FaultProxy.blackhole`: stop forwarding in both directions without
  closing anything (no FIN, no RST: what a dead cellular bearer looks like;
  only a keepalive can tell);
* ``latency``: delay every chunk by this many seconds;
* ``cut_handshake``: close a new link as soon as the server's first bytes (the
  HTTP 101 answer) arrive, so the upgrade never completes;
* ``refuse``: close new connections at once.

``links_opened`` counts accepted connections; ``opened`` is an event set for
each new one (tests wait on it instead of sleeping).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.abc


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.latency = 0.0
        self.cut_handshake = False
        self.refuse = False
        self.links_opened = 0
        self.opened = anyio.Event()
        self._blackholed_to_station = False
        self._blackholed_to_server = False
        self._links: set[anyio.CancelScope] = set()
        self._streams: list[anyio.abc.SocketStream] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def drop(self) -> None:
        """Close every live link, both sides."""
        for scope in list(self._links):
            scope.cancel()

    def blackhole(self, on: bool = True, *, to_station: bool = True, to_server: bool = True) -> None:
        """Stop (or resume) forwarding on every link, without closing anything.

        One direction only: ``to_station=False`` keeps station -> server flowing
        (the CSMS gets the CALL, its answer vanishes).
        """
        self._blackholed_to_station = on and to_station
        self._blackholed_to_server = on and to_server

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.links_opened += 1
        opened, self.opened = self.opened, anyio.Event()
        opened.set()
        async with client:
            if self.refuse:
                return
            try:
                server = await anyio.connect_tcp(self.upstream_host, self.upstream_port)
            except OSError:
                return
            async with server, anyio.create_task_group() as link:
                self._links.add(link.cancel_scope)
                link.start_soon(self._pump, client, server, False, link.cancel_scope)
                link.start_soon(self._pump, server, client, True, link.cancel_scope)
            self._links.discard(link.cancel_scope)

    async def _pump(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        from_server: bool,
        link: anyio.CancelScope,
    ) -> None:
        with contextlib.suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
        ):
            while True:
                data = await source.receive()
                if from_server and self.cut_handshake:
                    break  # cut before the 101 reaches the station
                if self._blackholed_to_station if from_server else self._blackholed_to_server:
                    continue  # swallowed: the sender believes it was delivered
                if self.latency:
                    await anyio.sleep(self.latency)
                await sink.send(data)
        # One direction ended: end the whole link (a half-closed proxy would hide faults).
        link.cancel()


@contextlib.asynccontextmanager
async def fault_proxy(upstream_port: int) -> AsyncIterator[FaultProxy]:
    """Run a :class:`FaultProxy` in front of 127.0.0.1:*upstream_port* for the block."""
    proxy = FaultProxy(upstream_port)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
