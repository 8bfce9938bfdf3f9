"""A TCP byte stream driving the non-blocking socket itself: an anyio ``SocketStream`` for trio.

Why: on trio, anyio's ``SocketStream`` goes through trio's ``SocketStream``
and trio's socket wrapper, which checkpoint twice per operation and wrap each
``recv``/``send`` in conflict detectors and an async retry helper.  Reading and
writing the socket directly, and waiting (``anyio.wait_readable`` /
``anyio.wait_writable``) only when the kernel says ``EAGAIN``, is cheaper
(``ws-floor.md``: raw echo floor 12.6 -> 9.6 µs per round trip on trio).  On
asyncio every such wait costs an ``add_reader``/``remove_reader`` pair, which
is why asyncio has its own stream (:mod:`ocpprpc._ws.aio_stream`) and
:mod:`ocpprpc._ws.tcp` never picks this one there by itself.

Only anyio APIs are used (no trio import).

Theory of operation
-------------------
``receive()`` calls ``sock.recv(max_bytes)`` at once and waits for the socket
to become readable only on ``BlockingIOError``; ``send()`` calls
``sock.send`` until everything went out, waiting for writability whenever the
kernel takes nothing.  A cancelled ``receive()`` loses nothing (the data stays
in the kernel); a ``send()`` cancelled while waiting may have written part of
its bytes, as with anyio's and trio's streams: the stream should then be closed.

An operation that does not have to wait does not yield, so every
``_FAIR_OPS``-th one runs ``anyio.lowlevel.checkpoint()`` first (other tasks
run, a pending cancellation is delivered), and so does a ``send()`` that
follows a ``send()`` with no ``receive()`` in between (other writers queue
behind it; the WebSocket joins their frames), exactly as in
:mod:`ocpprpc._ws.aio_stream`.

How a stream ends: the peer's EOF makes ``receive()`` raise
``anyio.EndOfStream`` (sending stays possible: half-close); a reset or any
other socket error ``anyio.BrokenResourceError`` (from the error); anything
after :meth:`RawSocketStream.aclose` raises ``anyio.ClosedResourceError``, as
does a ``receive()``/``send()`` blocked in another task when it closes
(``anyio.notify_closing``).  Two tasks receiving (or sending) at once:
``anyio.BusyResourceError``.

Connections are opened by anyio (``anyio.connect_tcp`` with its Happy Eyeballs)
and listening sockets made by it (``anyio.create_tcp_listener`` with its binding
rules); an opened connection's socket is then duplicated and anyio's stream
closed, so this stream owns its own descriptor of the same connection (one
``dup`` per connection).  The server accepts on the listening socket itself
(:class:`_SocketAcceptor`): no anyio stream, no ``dup``.
That is sound on trio only, whose streams read nothing until asked: anyio's
asyncio streams start reading at once, so bytes that arrived before the
takeover would be lost with anyio's stream; :mod:`ocpprpc._ws.tcp` refuses
``"socket"`` on asyncio.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.streams.stapled
from anyio.abc import SocketAttribute, SocketListener

from .socket_attributes import LazySocketAttributes
from .tcp import DEFAULT_BACKLOG, receive_by_asking

__all__ = ["RawSocketStream", "RawTCPListener", "connect_tcp", "create_tcp_listener"]

#: Operations that completed without waiting before one checkpoints.
_FAIR_OPS = 32

T = TypeVar("T")


class RawSocketStream(anyio.abc.SocketStream):
    """One TCP connection over a connected socket it owns (made non-blocking here).

    Supports every :class:`anyio.abc.SocketAttribute` (derived from the socket).
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False
        self._eof_sent = False
        self._sending = False
        self._ops = 0
        self._sent = False  # send() was called since the last receive()
        # The last recv() returned less than asked: the kernel's buffer was empty then, and
        # a peer that waits for our answer has sent nothing since (see receive()).
        self._drained = False

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return LazySocketAttributes(
            lambda: super(RawSocketStream, self).extra_attributes, self._sock.getpeername
        )

    def receive(self, max_bytes: int = 65536) -> Coroutine[Any, Any, bytes]:
        return receive_by_asking(self.receive_now, max_bytes)  # no frame of this method's own

    def receive_now(self, max_bytes: int = 65536) -> bytes | Awaitable[object]:
        """What :meth:`receive` returns, if it can be had now; else what to await before asking again.

        The WebSocket stream reads through this (``_ws/websocket.py``): an idle connection
        then waits in the event loop's own wait, with no coroutine of this stream in between
        (~360 bytes per idle connection, and a coroutine less per message).  A second reader
        waiting at once gets ``BusyResourceError`` from that wait; a close by another task
        ends it with ``ClosedResourceError``.
        """
        self._sent = False
        if self._ops < _FAIR_OPS:
            self._ops += 1
        else:
            self._ops = 0
            return anyio.lowlevel.checkpoint()
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if self._closed:
            raise anyio.ClosedResourceError
        if self._drained:
            # Wait first: after a short read, a recv() now fails with EAGAIN nine times
            # in ten under request/response load (strace, harness W3 on trio), and each
            # failure is a system call and a raised exception.
            self._drained = False
            self._ops = 0
            return anyio.wait_readable(self._sock)
        try:
            data = self._sock.recv(max_bytes)
        except BlockingIOError:
            self._ops = 0
            return anyio.wait_readable(self._sock)
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        self._drained = len(data) < max_bytes
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        if self._ops < _FAIR_OPS and not self._sent:
            self._ops += 1
            self._sent = True
        else:
            # Every _FAIR_OPS-th operation, and a send() following a send(): yield first
            # (see the module docstring; a cancelled send() then wrote nothing).
            self._ops = 0
            self._sent = True
            await anyio.lowlevel.checkpoint()
        if self._closed or self._eof_sent:
            raise anyio.ClosedResourceError
        if self._sending:
            raise anyio.BusyResourceError("writing to")
        sock = self._sock
        self._sending = True
        try:
            try:
                sent = sock.send(item)
            except BlockingIOError:
                sent = 0
            if sent < len(item):
                view = memoryview(item)[sent:]
                while view:
                    try:
                        sent = sock.send(view)
                    except BlockingIOError:
                        sent = 0
                    if sent:
                        view = view[sent:]
                        continue
                    self._ops = 0
                    await self._wait(anyio.wait_writable)
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        finally:
            self._sending = False

    def try_send(self, item: bytes) -> int:
        """Write what the kernel takes now, without waiting; return how many bytes that was.

        0 while another task is sending.  :func:`ocpprpc._ws.tcp.send_within` sends the rest.
        """
        if self._closed or self._eof_sent:
            raise anyio.ClosedResourceError
        if self._sending:
            return 0
        self._sent = True
        try:
            return self._sock.send(item)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise anyio.BrokenResourceError from exc

    async def _wait(self, wait: Callable[[socket.socket], Any]) -> None:
        """Wait for the socket; a close by another task ends the wait with ``ClosedResourceError``."""
        try:
            await wait(self._sock)
        except anyio.ClosedResourceError:
            raise anyio.ClosedResourceError from None
        if self._closed:
            raise anyio.ClosedResourceError  # pragma: no cover - notify_closing raises first

    async def send_eof(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if not self._eof_sent:
            self._eof_sent = True
            with contextlib.suppress(OSError):  # already reset: nothing to end, as with anyio's stream
                self._sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._sock.fileno() != -1:
                anyio.notify_closing(self._sock)  # wakes a blocked receive()/send()
            self._sock.close()
        await anyio.lowlevel.checkpoint()


def _take_socket(stream: anyio.abc.SocketStream) -> RawSocketStream:
    """Our own descriptor of anyio's connection (anyio's stream is closed by the caller)."""
    return RawSocketStream(stream.extra(SocketAttribute.raw_socket).dup())


async def connect_tcp(host: str, port: int) -> RawSocketStream:
    """Connect like ``anyio.connect_tcp`` (Happy Eyeballs included), over a :class:`RawSocketStream`.

    :raises OSError: no address could be connected.
    """
    stream = await anyio.connect_tcp(host, port)
    try:
        return _take_socket(stream)
    finally:
        await anyio.aclose_forcefully(stream)


class RawTCPListener(anyio.abc.Listener[anyio.abc.SocketStream]):
    """anyio's TCP listener, handing out :class:`RawSocketStream` instead of anyio's streams.

    Extra attributes are those of anyio's listener (the last socket's).  Through
    :meth:`accept_sources` (what the server uses) each connection is accepted on the
    listening socket directly (:class:`_SocketAcceptor`); through :meth:`serve`
    anyio accepts and the connection is taken over with a ``dup()``.  Either happens
    in the accepting task, so when descriptors run out it fails there (``OSError``,
    the connection is dropped) and the accept loop backs off
    (:func:`ocpprpc._ws.tcp.serve_listener`), instead of failing a handler task and
    with it the task group.
    """

    def __init__(self, inner: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        self._inner = inner

    def accept_sources(self) -> list[Callable[[], Awaitable[anyio.abc.SocketStream]]]:
        """One ``accept()`` per listening socket (anyio binds one per address family)."""
        inner = self._inner
        subs = inner.listeners if isinstance(inner, anyio.streams.stapled.MultiListener) else [inner]
        return [_SocketAcceptor(sub) for sub in subs if isinstance(sub, SocketListener)]

    async def serve(
        self,
        handler: Callable[[anyio.abc.SocketStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        async def wrapped(stream: anyio.abc.SocketStream) -> None:
            try:
                raw = _take_socket(stream)
            finally:
                await anyio.aclose_forcefully(stream)
            await handler(raw)

        await self._inner.serve(wrapped, task_group)

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


#: Connections accepted without waiting before the accepting task yields to the others.
_ACCEPT_BURST = 16


class _SocketAcceptor:
    """Accepts on one of anyio's listening sockets itself: the connection's only descriptor is ours.

    Through anyio's ``accept()`` each connection cost a trio socket, an anyio stream, a
    ``dup()`` and closing both again: 14% of a connection's setup on trio (bench/README.md,
    "Connection setup").  Waits with ``anyio.wait_readable`` only when nothing is pending;
    closing the listener ends a wait with ``ClosedResourceError``, as anyio's ``accept()`` does.
    """

    def __init__(self, listener: SocketListener) -> None:
        self._sock: socket.socket = listener.extra(SocketAttribute.raw_socket)
        self._nodelay = self._sock.family in (socket.AF_INET, socket.AF_INET6)
        self._burst = 0

    async def __call__(self) -> RawSocketStream:
        sock = self._sock
        if self._burst >= _ACCEPT_BURST:
            self._burst = 0
            await anyio.lowlevel.checkpoint()
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                pass  # wait outside the handler, as RawSocketStream.receive() does
            except OSError:
                if sock.fileno() == -1:
                    raise anyio.ClosedResourceError from None
                raise
            else:
                break
            self._burst = 0
            await anyio.wait_readable(sock)
        self._burst += 1
        try:
            if self._nodelay:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as anyio's listener does
            return RawSocketStream(conn)
        except BaseException:
            conn.close()
            raise


async def create_tcp_listener(
    host: str | None = None, port: int = 0, *, backlog: int = DEFAULT_BACKLOG
) -> RawTCPListener:
    """Listen like ``anyio.create_tcp_listener(local_host=host, local_port=port)``.

    :raises OSError: binding failed.
    """
    return RawTCPListener(await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=backlog))
