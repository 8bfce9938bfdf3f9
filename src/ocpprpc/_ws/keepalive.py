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

The verdict names its cause.  The ping waits its turn in the stream's write
queue, so when it is still unsent at the timeout the peer has stopped reading
(or the link stopped taking bytes): "keepalive: peer stopped reading: N bytes
unsent for T s".  A ping that went out but got no answer: "keepalive: no pong
within T s".  The ping is written by a task of its own, never cancelled by the
timeout: cancelling a write cuts a frame in half, and the abort fails the
stuck write anyway.

The pongs themselves are read by the session's reader, which hands them over
through ``WebSocketStream.on_pong``.  A reader that has stopped reading
because the handlers fell behind (the session's backpressure) cannot see a
pong either; the timeout then runs again instead of blaming the peer, as long
as nobody is reading (``WebSocketStream.reading``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from .._options.policies import Keepalive
from .transport import MessageStream
from .websocket import WebSocketStream

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


async def _ping(stream: WebSocketStream, payload: bytes, written: anyio.Event) -> None:
    try:
        await stream.ping(payload)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the stream ended; its reader reports how
    finally:
        written.set()


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
        async with anyio.create_task_group() as pings:
            while stream.close_reason is None:
                await anyio.sleep(config.next_interval())
                if config.defer_on_traffic and stream.reads != reads_seen:
                    reads_seen = stream.reads
                    continue  # data arrived during the interval: the peer is alive
                expected = str(next(counter)).encode()
                answered = anyio.Event()
                written = anyio.Event()
                reads_at_ping = stream.reads
                pings.start_soon(_ping, stream, expected, written)
                why = await _verdict(stream, config, answered, written, reads_at_ping)
                if stream.close_reason is not None:
                    break
                if why is not None:
                    log.warning("%r: %s; dropping the connection", stream, why)
                    await stream.abort(why)
                    break
                reads_seen = stream.reads
            pings.cancel_scope.cancel()
    finally:
        stream.on_pong = None


async def _verdict(
    stream: WebSocketStream,
    config: Keepalive,
    answered: anyio.Event,
    written: anyio.Event,
    reads_at_ping: int,
) -> str | None:
    """Wait for the pong; ``None`` if the peer proved alive, else why it counts as dead."""
    timeout = config.timeout
    while True:
        # The ping's own write counts against the timeout: on a peer that stopped
        # reading (or a black hole that filled the send buffer) the write itself stalls.
        with anyio.move_on_after(timeout):
            await answered.wait()
        if answered.is_set() or stream.close_reason is not None:
            return None
        if config.defer_on_traffic and stream.reads != reads_at_ping:
            return None
        if not written.is_set():
            return f"keepalive: peer stopped reading: {stream.unsent} bytes unsent for {timeout:g} s"
        if stream.reading:
            return f"keepalive: no pong within {timeout:g} s"
        # Nobody reads (the session paused its reader): the pong may be waiting unread.
        log.debug("%r: no pong within %g s, but nothing was read meanwhile; waiting on", stream, timeout)
