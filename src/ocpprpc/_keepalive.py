"""WebSocket keepalive: ping at a jittered interval, drop the link when no pong comes back.

A link that dies without a FIN (a cellular modem losing its bearer, a NAT
forgetting the mapping, a firewall black-holing the flow) looks exactly like a
quiet one: reads block forever and writes land in the kernel's buffer.  Only a
round trip proves the peer alive, so this loop pings and, when neither the
pong nor (with ``defer_on_traffic``) any other data arrives within the pong
timeout, declares the peer dead with :meth:`WebSocketStream.abort`: the close
reason becomes an abnormal 1006, the session's reader ends, waiting calls fail
with :class:`~ocpprpc.ConnectionLost`, and a :class:`~ocpprpc.Station`
reconnects.

The loop runs beside the session (a CSMS runs one per station); the pongs
themselves are read by the session's reader, which hands them over through
``WebSocketStream.on_pong``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from ._policies import Keepalive
from ._transport import MessageStream
from ._websocket import WebSocketStream

__all__ = ["keepalive", "run_keepalive"]

log = logging.getLogger("ocpprpc.keepalive")


@asynccontextmanager
async def keepalive(stream: MessageStream, config: Keepalive | None) -> AsyncIterator[None]:
    """Keep *stream* alive for the duration of the block (no-op without a config or a WebSocket)."""
    if config is None or not isinstance(stream, WebSocketStream):
        yield
        return
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(run_keepalive, stream, config, name="ocpprpc keepalive")
        try:
            yield
        finally:
            task_group.cancel_scope.cancel()


async def run_keepalive(stream: WebSocketStream, config: Keepalive) -> None:
    """Ping *stream* until it ends; abort it (1006) when the peer stops answering.

    Returns when the stream has ended, for whatever reason.
    """
    counter = itertools.count(1)
    expected = b""
    answered = anyio.Event()

    def on_pong(payload: bytes) -> None:
        # An unsolicited pong (RFC 6455 5.5.3) or a stale one proves nothing about this ping.
        if payload == expected:
            answered.set()

    stream.on_pong = on_pong
    reads_seen = stream.reads
    try:
        while stream.close_reason is None:
            await anyio.sleep(config.next_interval())
            if config.defer_on_traffic and stream.reads != reads_seen:
                reads_seen = stream.reads
                continue  # data arrived during the interval: the peer is alive
            expected = str(next(counter)).encode()
            answered = anyio.Event()
            reads_at_ping = stream.reads
            # The ping's own write counts against the timeout: on a black-holed
            # link the send buffer fills and the write itself stalls.
            with anyio.move_on_after(config.timeout):
                try:
                    await stream.ping(expected)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the stream ended; its reader reports how
                await answered.wait()
            if answered.is_set():
                reads_seen = stream.reads
                continue
            if config.defer_on_traffic and stream.reads != reads_at_ping:
                reads_seen = stream.reads
                continue
            if stream.close_reason is not None:
                return
            log.warning("no pong within %g s: the peer is gone, dropping the connection", config.timeout)
            await stream.abort(f"keepalive: no pong within {config.timeout:g} s")
            return
    finally:
        stream.on_pong = None
