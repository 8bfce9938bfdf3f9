"""ocpprpc's own TCP byte stream for asyncio: an anyio ``SocketStream`` on ``asyncio.BufferedProtocol``.

Why: anyio's asyncio ``SocketStream`` costs about 39 µs of CPU per round trip
before any WebSocket framing, against about 6 µs for this design
(``ws-floor.md``: the plain ``Protocol`` underneath reads with a 256 KiB
``recv`` that makes glibc map and unmap memory on each read, and every
``receive()`` re-arms the reader with two ``epoll_ctl`` calls and an ``Event``,
every ``send()`` runs a shielded checkpoint).  Everything above the byte stream
stays anyio: task groups, cancel scopes, ``TLSStream`` for wss, and on trio
anyio's own stream (:mod:`ocpprpc._ws.tcp` chooses).

Theory of operation
-------------------
Reading is always on.  The transport reads with ``recv_into`` a preallocated
buffer (one per thread on selector event loops, where ``get_buffer()``,
``recv_into`` and ``buffer_updated()`` happen in one synchronous step; one per
connection elsewhere), ``buffer_updated()`` copies what arrived into a queue of
``bytes`` chunks and wakes a waiting ``receive()``.  Reading pauses only when
more than ``_READ_HIGH`` bytes wait unread and resumes below ``_READ_LOW``.

``send()`` hands the bytes to ``transport.write()``, which writes what the
kernel takes at once and buffers the rest; it waits only while the transport
says its buffer is over the high-water mark (``pause_writing()``), until
``resume_writing()`` or the connection's end.

A blocked ``receive()``/``send()`` waits on one ``asyncio.Future`` that only
the protocol callbacks resolve, always with ``None``: data and errors travel in
the stream's state, never through the future, so a cancelled wait (anyio cancel
scopes cancel the awaited future) loses nothing and no future is left holding
an exception nobody retrieves.

An operation that does not have to wait does not yield to the event loop, so
every ``_FAIR_OPS``-th one runs a checkpoint first (``asyncio.sleep(0)``, which
is anyio's checkpoint on asyncio): a connection that always has data cannot
starve the others, and a pending cancellation is delivered.  anyio's own
streams checkpoint on every operation.  So does a ``send()`` that follows
another ``send()`` with no ``receive()`` in between: request/response traffic
never yields there, while a burst of writes from several tasks (pipelined
answers) gets the chance to queue behind the writer, whose next write joins
them (:mod:`ocpprpc._ws.websocket`): a few writes per burst instead of one per
message (bench/README.md, "TCP byte stream").

How a stream ends: the peer's EOF makes ``receive()`` raise
``anyio.EndOfStream`` once the data before it is read (sending stays possible:
half-close); a reset or any other transport error ``anyio.BrokenResourceError``
(from the error); anything after :meth:`AsyncioSocketStream.aclose` raises
``anyio.ClosedResourceError``, and a ``receive()``/``send()`` blocked in another
task when it closes raises it too.  ``aclose()`` lets the transport flush what
``send()`` accepted and then closes; cancelled (``anyio.aclose_forcefully``) it
aborts at once, as anyio's stream does.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from ipaddress import ip_address
from typing import Any, cast

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from .socket_attributes import LazySocketAttributes
from .tcp import DEFAULT_BACKLOG, receive_by_asking

__all__ = ["AsyncioSocketStream", "AsyncioTCPListener", "connect_tcp", "create_tcp_listener"]

#: Unread bytes above which the transport stops reading (the peer then sees TCP
#: backpressure), and below which it reads again.
_READ_HIGH = 256 * 1024
_READ_LOW = 64 * 1024
#: Size of the buffer ``recv_into`` fills: shared by every connection of a
#: selector event loop's thread, so it costs an idle connection nothing.
_SHARED_BUFFER = 64 * 1024
#: ... and per connection on other event loops (uvloop, proactor), where the read
#: may complete after other connections asked for a buffer.
_OWN_BUFFER = 16 * 1024
#: Operations that completed without waiting before one checkpoints.
_FAIR_OPS = 32
#: Connections a listening socket's reader callback accepts per wake-up at most.
_ACCEPT_BURST = 64

_thread = threading.local()


def _read_buffer(loop: asyncio.AbstractEventLoop) -> memoryview:
    if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        view: memoryview | None = getattr(_thread, "view", None)
        if view is None:
            view = _thread.view = memoryview(bytearray(_SHARED_BUFFER))
        return view
    return memoryview(bytearray(_OWN_BUFFER))


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioSocketStream(anyio.abc.SocketStream, asyncio.BufferedProtocol):
    """One TCP connection: the transport's protocol and the anyio byte stream in one object.

    Made by :func:`connect_tcp` or :class:`AsyncioTCPListener`, never directly.
    Supports every :class:`anyio.abc.SocketAttribute` (peer address, ports,
    family, the socket: asyncio's ``TransportSocket``, as with anyio's stream).
    """

    _transport: asyncio.Transport

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._view = _read_buffer(loop)
        self._chunks: list[bytes] = []  # a deque costs 0.6 KB even empty (W4 memory)
        self._unread = 0
        self._read_paused = False
        self._write_paused = False
        self._eof = False  # the peer's FIN
        self._eof_sent = False  # ours
        self._lost = False  # connection_lost() was called
        self._error: Exception | None = None
        self._closed = False  # aclose() was called
        self._ops = 0
        self._sent = False  # send() was called since the last receive()
        self._receiver: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._closing: asyncio.Future[None] | None = None

    # -- asyncio.BufferedProtocol (called by the transport) ---------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._chunks.append(bytes(self._view[:nbytes]))
        self._unread += nbytes
        if self._unread > _READ_HIGH and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        waiter = self._receiver
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._eof = True
        _wake(self._receiver)
        return True  # keep the transport open: we may still send (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._error = exc
        # asyncio's selector transport keeps its own bound method (``_read_ready_cb``) for
        # reading: a reference cycle (transport, socket and all) that only a full collection
        # frees, and never once gc.freeze() froze it.  Nothing reads from it after this call.
        state = getattr(self._transport, "__dict__", None)
        if state is not None and "_read_ready_cb" in state:
            state["_read_ready_cb"] = None
        _wake(self._receiver)
        _wake(self._drain)
        _wake(self._closing)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        _wake(self._drain)

    # -- anyio.abc.SocketStream --------------------------------------------------

    @property
    def _raw_socket(self) -> socket.socket:
        sock: socket.socket = self._transport.get_extra_info("socket")
        return sock

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        # The transport read the peer's address once when it was made.
        return LazySocketAttributes(
            lambda: super(AsyncioSocketStream, self).extra_attributes,
            lambda: self._transport.get_extra_info("peername"),
        )

    def receive(self, max_bytes: int = 65536) -> Coroutine[Any, Any, bytes]:
        return receive_by_asking(self.receive_now, max_bytes)  # no frame of this method's own

    def receive_now(self, max_bytes: int = 65536) -> bytes | Awaitable[object]:
        """What :meth:`receive` returns, if it can be had now; else what to await before asking again.

        The WebSocket stream reads through this (``_ws/websocket.py``): an idle connection
        then waits on the future itself, with no coroutine of this stream in between
        (~270 bytes per idle connection, and a coroutine less per message).
        """
        self._sent = False
        if self._ops < _FAIR_OPS:
            self._ops += 1
        else:
            self._ops = 0
            return asyncio.sleep(0)
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        chunks = self._chunks
        if not chunks:
            waiter = self._receiver
            if waiter is not None:
                if not waiter.done():
                    raise anyio.BusyResourceError("reading from")
                self._receiver = None  # woken, or its waiter was cancelled
            self._raise_unreadable()
            self._ops = 0
            waiter = self._receiver = self._loop.create_future()
            return waiter
        self._receiver = None
        if self._closed:
            raise anyio.ClosedResourceError
        chunk = chunks.pop(0)
        if chunks and len(chunk) < max_bytes:
            # Several reads waiting (a burst): hand them over together, up to max_bytes.
            parts = [chunk]
            size = len(chunk)
            while chunks and size < max_bytes:
                chunk = chunks.pop(0)
                parts.append(chunk)
                size += len(chunk)
            chunk = b"".join(parts)
        if len(chunk) > max_bytes:
            chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._unread -= len(chunk)
        if self._read_paused and self._unread <= _READ_LOW:
            self._read_paused = False
            self._transport.resume_reading()
        return chunk

    def _raise_unreadable(self) -> None:
        """Nothing is buffered: raise if nothing more can come."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._error is not None:
            raise anyio.BrokenResourceError from self._error
        if self._eof or self._lost:
            raise anyio.EndOfStream

    def try_send(self, item: bytes) -> int:
        """Hand *item* to the transport unless that means waiting; return the bytes taken (all or 0).

        0 while the transport is paused (its buffer is full) or another task waits
        for it to drain.  :func:`ocpprpc._ws.tcp.send_within` sends the rest.
        """
        if self._closed or self._eof_sent:
            raise anyio.ClosedResourceError
        transport = self._transport
        if self._lost or transport.is_closing():
            raise anyio.BrokenResourceError from self._error
        if self._drain is not None or self._write_paused:
            return 0
        self._sent = True
        transport.write(item)
        return len(item)

    async def send(self, item: bytes) -> None:
        if self._ops < _FAIR_OPS and not self._sent:
            self._ops += 1
            self._sent = True
        else:
            # Every _FAIR_OPS-th operation, and a send() following a send() with no
            # receive() between them: yield first (so a cancelled send() wrote nothing).
            # The second lets the other tasks that are about to write to this
            # connection queue behind the caller (the WebSocket joins their frames
            # into its next write): a burst of answers leaves in a few writes, not
            # one each, while request/response traffic never yields here.
            self._ops = 0
            self._sent = True
            await asyncio.sleep(0)
        if self._closed or self._eof_sent:
            raise anyio.ClosedResourceError
        transport = self._transport
        if self._lost or transport.is_closing():
            raise anyio.BrokenResourceError from self._error
        if self._drain is not None:
            raise anyio.BusyResourceError("writing to")
        transport.write(item)
        if self._write_paused:
            self._ops = 0
            drain = self._drain = self._loop.create_future()
            try:
                await drain
            finally:
                self._drain = None
            if self._closed:
                raise anyio.ClosedResourceError
            if self._lost:
                raise anyio.BrokenResourceError from self._error

    async def send_eof(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if not self._eof_sent and not self._lost:
            self._eof_sent = True
            self._transport.write_eof()  # after what is buffered has gone out

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            _wake(self._receiver)
            _wake(self._drain)
            transport = self._transport
            if not self._lost and transport.get_write_buffer_size():
                # Let the transport write what send() accepted, then close.
                transport.close()
                closing = self._closing = self._loop.create_future()
                try:
                    await closing
                finally:
                    self._closing = None
                    if not self._lost:
                        transport.abort()  # cancelled (aclose_forcefully): drop the rest
                return
            transport.close()
        await asyncio.sleep(0)

    def _abort(self) -> None:
        """Drop the connection at once (a stream nobody will use)."""
        self._closed = True
        self._transport.abort()


# -- client side ----------------------------------------------------------------------


async def _connect_one(loop: asyncio.AbstractEventLoop, host: str, port: int) -> AsyncioSocketStream:
    _, stream = await loop.create_connection(lambda: AsyncioSocketStream(loop), host, port)
    return stream


async def connect_tcp(host: str, port: int, *, happy_eyeballs_delay: float = 0.25) -> AsyncioSocketStream:
    """Connect to *host*:*port*, as ``anyio.connect_tcp`` does, over an :class:`AsyncioSocketStream`.

    A host name with several addresses is tried the way anyio does it (Happy
    Eyeballs, RFC 6555: IPv6 first, the next attempt after ``happy_eyeballs_delay``
    seconds or as soon as one fails, the first to connect wins).

    :raises OSError: no address could be connected.
    """
    loop = asyncio.get_running_loop()
    try:
        targets = [ip_address(host).compressed]
    except ValueError:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        targets = _happy_eyeballs_order(infos)
    if len(targets) == 1:
        return await _connect_one(loop, targets[0], port)
    return await _race(loop, targets, port, happy_eyeballs_delay)


def _happy_eyeballs_order(
    infos: list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int]]],
) -> list[str]:
    """The first IPv6 address, then the first IPv4 one, then the rest (anyio's order)."""
    targets: list[str] = []
    v6 = v4 = False
    for family, *_, sockaddr in infos:
        address = sockaddr[0]
        if family == socket.AF_INET6 and not v6:
            v6 = True
            targets.insert(0, address)
        elif family == socket.AF_INET and not v4 and v6:
            v4 = True
            targets.insert(1, address)
        else:
            targets.append(address)
    return targets


async def _race(
    loop: asyncio.AbstractEventLoop, targets: list[str], port: int, delay: float
) -> AsyncioSocketStream:
    """Start a connection attempt per target, staggered by *delay*; the first to connect wins."""
    winner: AsyncioSocketStream | None = None
    errors: list[OSError] = []

    async def attempt(target: str, done: anyio.Event) -> None:
        nonlocal winner
        try:
            stream = await _connect_one(loop, target, port)
        except OSError as exc:
            errors.append(exc)
            return
        finally:
            done.set()
        if winner is None:
            winner = stream
            attempts.cancel_scope.cancel()
        else:
            stream._abort()

    try:
        async with anyio.create_task_group() as attempts:
            for target in targets:
                done = anyio.Event()
                attempts.start_soon(attempt, target, done)
                with anyio.move_on_after(delay):
                    await done.wait()
    except BaseException:
        if winner is not None:
            winner._abort()
        raise
    if winner is None:
        cause = errors[0] if len(errors) == 1 else ExceptionGroup("every connection attempt failed", errors)
        raise OSError(f"all connection attempts to {targets} failed") from cause
    return winner


# -- server side ----------------------------------------------------------------------


class AsyncioTCPListener(anyio.abc.SocketListener):
    """Listening sockets accepted from by the event loop, handing out :class:`AsyncioSocketStream`.

    A reader callback on each listening socket accepts what is waiting (at most
    ``_ACCEPT_BURST`` per wake-up) into a queue; :meth:`accept` (or
    :meth:`serve`, which runs the handlers in a task group) takes a socket from
    it and gives it a transport.  Not ``loop.create_server``: its accept loop
    repeats up to ``backlog`` times per wake-up even when every attempt fails
    with ``EMFILE``, logging each one.  Here an accept error (descriptors
    exhausted, say) stops accepting and is raised by the next :meth:`accept`,
    after the connections already accepted; the call after that accepts again:
    the caller decides how long to back off (:func:`ocpprpc._ws.tcp.serve_listener`).
    Extra attributes are those of the last socket, as for anyio's multi-socket
    listener.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket]) -> None:
        self._loop = loop
        self._sockets = sockets
        self._ready: deque[socket.socket] = deque()
        self._error: OSError | None = None
        self._reading = False
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._ops = 0

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sockets[-1]

    def _start_reading(self) -> None:
        if not self._reading and not self._closed:
            self._reading = True
            for sock in self._sockets:
                self._loop.add_reader(sock.fileno(), self._accept_waiting, sock)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())

    def _accept_waiting(self, sock: socket.socket) -> None:
        for _ in range(_ACCEPT_BURST):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:
                continue  # reset before we took it: nothing to hand out
            except OSError as exc:
                # EMFILE and friends: the socket stays readable, so stop watching it
                # until the next accept() (after the caller's back-off).
                self._stop_reading()
                self._error = exc
                break
            self._ready.append(conn)
        _wake(self._waiter)

    def _protocol(self) -> AsyncioSocketStream:
        return AsyncioSocketStream(self._loop)

    async def accept(self) -> anyio.abc.SocketStream:
        if self._ops < _FAIR_OPS:
            self._ops += 1
        else:
            self._ops = 0
            await asyncio.sleep(0)
        ready = self._ready
        while not ready:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._waiter is not None:
                raise anyio.BusyResourceError("accepting connections from")
            error, self._error = self._error, None
            if error is not None:
                raise error
            self._start_reading()
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            self._ops = 0
        conn = ready.popleft()
        try:
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                # As anyio's listener does.  asyncio's transport would, but only for a socket
                # whose proto is IPPROTO_TCP, and these inherit 0 from the listening socket
                # anyio made: accepted connections went out with Nagle's algorithm on.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _, stream = await self._loop.connect_accepted_socket(self._protocol, conn)
        except BaseException:
            conn.close()
            raise
        if self._closed:  # pragma: no cover - closed while the transport was being made
            stream._abort()
            raise anyio.ClosedResourceError
        return stream

    async def aclose(self) -> None:
        if not self._closed:
            self._stop_reading()
            self._closed = True
            for sock in self._sockets:
                sock.close()
            while self._ready:
                self._ready.popleft().close()
            _wake(self._waiter)
        await asyncio.sleep(0)


async def create_tcp_listener(
    host: str | None = None, port: int = 0, *, backlog: int = DEFAULT_BACKLOG
) -> AsyncioTCPListener:
    """Listen like ``anyio.create_tcp_listener(local_host=host, local_port=port)``.

    The sockets are bound by anyio itself (address reuse, IPv6-only flags, one
    dual-stack socket for ``host=None``, the same ephemeral port on every
    address), then duplicated and watched by the event loop.
    """
    loop = asyncio.get_running_loop()
    bound = await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=backlog)
    try:
        sockets = [sub.extra(SocketAttribute.raw_socket).dup() for sub in bound.listeners]
    finally:
        with anyio.CancelScope(shield=True):
            await bound.aclose()
    for sock in sockets:
        sock.setblocking(False)
    return AsyncioTCPListener(loop, sockets)
