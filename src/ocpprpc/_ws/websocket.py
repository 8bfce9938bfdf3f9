"""A WebSocket connection as a :class:`~ocpprpc._ws.transport.MessageStream` over any anyio byte stream.

Theory of operation
-------------------
There is no background task.  Like httpcore, the task that needs data reads it:
:meth:`WebSocketStream.receive` reads bytes, feeds the codec
(:mod:`ocpprpc._ws.wsproto_codec`), queues the text messages it completes and
returns the first.  The session above calls ``receive()`` from exactly one
reader task, so pings are answered as long as that task keeps reading, whether
or not anybody sends.  ``close()`` may need to read too (to see the peer's
close frame); a read lock makes it wait its turn behind the reader, and the
reader's progress is shared through the codec state.

Writes come from many tasks (handler replies, calls, pongs, the close frame).
Each asks the codec for its frame and appends it to one outgoing queue in the
same synchronous step, so frame order on the wire is the order the codec
produced them (permessage-deflate compresses against the previous message).
Exactly one task at a time is the *writer*: the first sender that finds no
writer becomes it and writes the queue, joined into one ``send()`` on the byte
stream, until it is empty; senders arriving meanwhile (the writer's ``send()``
yields to the event loop) only queue their frame and return.  Answers produced
together (pipelined calls, W2 in bench/README.md) thus leave in one write
instead of one each, and an uncontended write takes no lock.  A frame that was
queued is on its way like bytes in a kernel socket buffer: if the link dies
before it is written, ``receive()`` reports the loss.  Automatic replies the
codec queued (pong, close echo) ride along with the next write or are flushed
by the reader.

A peer that compresses
----------------------
Without permessage-deflate one read of at most 64 KiB decodes to at most 64 KiB
of text.  With it, the same read may inflate a hundredfold (450 OCPP messages
of a few KB each is typical for a flood of similar CALLs), all decoded before
the session above could pause.  So a compressed read is fed to the codec in
``_INFLATE_SLICE`` slices, and once the text decoded from it reaches
``max_buffered_inbound`` (64 KiB) the rest stays compressed in
``_undecoded`` until the text is taken; the next ``receive()`` decodes from
there before it reads the socket again.  A paused session thus leaves at most
the bound (plus one slice's worth) decoded, and TCP holds the peer back.

A peer that stops reading
-------------------------
:attr:`WebSocketStream.unsent` counts the bytes queued or being written and
not yet taken by the byte stream.  Every sender (``send()``, ``ping()``, the
reader flushing pongs) checks it *before* it frames its message: above
``_HIGH_WATER`` (64 KiB) it waits for the writer first.  So what one connection
buffers never exceeds ``_HIGH_WATER`` plus one frame (plus, once, a close
frame), whoever writes: handler answers, calls, pings, pongs.  Frames are
still made and queued in one synchronous step, so codec order stays wire
order.  The writer hands the byte stream at most ``_HIGH_WATER`` bytes per
``send()``, so a large message makes progress in steps.

Waiting is the slow path, and only there is a clock involved: a waiting
sender allows the writer ``send_timeout`` seconds per step of progress.  The
one writer that is timed itself is the reader writing the codec's automatic
replies (pongs, close echoes): while it writes nobody reads, so a peer that
pings and never reads our pongs would stall it for ever unnoticed.  When
that passes with nothing written, the peer has stopped reading (its TCP
window stayed closed, something TCP itself never gives up on): the stream
logs a warning and drops the link as lost (1006, "peer stopped reading: N
bytes unsent for S s"), which fails the stuck writer and every waiter.  A
write that blocks while less than ``_HIGH_WATER`` is queued makes nobody wait,
so it is noticed when more is sent, or at once by a keepalive
(:mod:`ocpprpc._ws.keepalive`), whose ping waits its turn in the same queue.  No
per-write timer or cancel scope exists on the fast path.

How a stream ends (the :class:`MessageStream` contract):

* the peer sends a close frame: we echo it; ``receive()`` raises
  ``anyio.EndOfStream``; ``close_reason`` is the peer's code, ``by_peer=True``;
* we call :meth:`close`: close frame, wait (bounded) for the peer's, then
  ``receive()`` raises ``anyio.EndOfStream`` and ``send()``
  ``anyio.ClosedResourceError``; ``by_peer=False``;
* the peer breaks the protocol or our policy (binary frame 1003, invalid UTF-8
  1007, message too big 1009, message in too many frames 1008, bad framing
  1002): we send that close code and
  ``receive()`` raises ``anyio.BrokenResourceError``; ``close_reason`` is the
  code we sent, ``by_peer=False``;
* the link dies (EOF or reset without a close frame): ``receive()`` raises
  ``anyio.BrokenResourceError``, ``close_reason`` is 1006, ``by_peer=True``.

After any of these ``send()`` raises ``anyio.BrokenResourceError`` (or
``ClosedResourceError`` if we closed).  The byte stream itself is released by
:meth:`close` / :meth:`aclose`, which the owner must call in any case; it is
shielded from cancellation and bounded by ``close_timeout``.

Why this is one module
----------------------
:class:`WebSocketStream` (about 510 lines) stays one class on purpose.  Its
``send()`` and ``receive()`` are the transport's hot path, measured by the
benches (bench/README.md, W1-W3): ``send()`` queues its frame and writes the
queue itself, ``receive()`` reads and decodes in place, with no layer between
them and the codec or the byte stream.  Everything else in the class (the
writer election, back-pressure, the inbound bound, the close sequence) is that
same state seen from another task: the queue, the read lock, the codec and the
close reason.  Split into helper objects it would add calls to the hot path;
split into mixins it would spread that one state over several files.  What is
not this state machine lives elsewhere: the frame codecs, the byte streams,
the handshake and keepalive.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from .transport import CloseReason, MessageStream
from .wsproto_codec import CloseReceived, CodecEvent, PongReceived, ProtocolFailure, WebSocketCodec

__all__ = ["DEFAULT_CLOSE_TIMEOUT", "DEFAULT_MAX_BUFFERED_INBOUND", "DEFAULT_SEND_TIMEOUT", "WebSocketStream"]

log = logging.getLogger("ocpprpc._websocket")  # log name kept

#: How long a close handshake may take before the connection is dropped: the
#: default of Python's websockets (trio-websocket waits 60 s, which keeps dead
#: peers around for a minute).
DEFAULT_CLOSE_TIMEOUT = 10.0

_RECEIVE_SIZE = 65536
#: How a byte stream's receive() says the connection is over (without a close frame).
_READ_ENDS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _lost_reason(exc: BaseException) -> str:
    if isinstance(exc, anyio.EndOfStream):
        return "connection closed without a close frame"
    return f"connection lost ({exc!r})"


#: Decoded text one read may leave waiting in a compressed stream: what one
#: uncompressed read can deliver at most, so compression changes nothing here.
DEFAULT_MAX_BUFFERED_INBOUND = _RECEIVE_SIZE

#: With permessage-deflate, how much of a read the codec is fed at a time.  Deflate
#: inflates at most ~1032:1, so one slice adds at most ~1 MiB past the bound (a
#: few KB in practice); 1 KiB keeps the codec calls per 64 KiB read at 64.
_INFLATE_SLICE = 1024

#: How long a sender waiting for the writer lets it go without progress before
#: the peer counts as not reading: nginx's ``send_timeout`` (the time allowed
#: between two successive writes to a client), 60 s.
DEFAULT_SEND_TIMEOUT = 60.0

#: Unsent bytes beyond which a sender waits for the writer before queueing, and
#: the most the writer hands the byte stream in one ``send()``.
_HIGH_WATER = 65536


class WebSocketStream(MessageStream):
    """An open WebSocket carrying OCPP-J text messages over an ``anyio.abc.ByteStream``.

    Built by :func:`ocpprpc._ws.handshake.open_websocket` (client) or
    ``StationRequest.accept()`` (server); the byte stream can be plain TCP,
    ``anyio.streams.tls.TLSStream`` or any faster stream with the same interface.

    :param stream: the byte stream, already past the HTTP upgrade.
    :param codec: the sans-IO WebSocket codec driving the frames.
    :param client: ``True`` on the client side (the side that waits for the server
        to close TCP first, RFC 6455 7.1.1).
    :param subprotocol: the negotiated subprotocol.
    :param compression: whether permessage-deflate was negotiated (informational).
    :param close_timeout: bound on the close handshake, in seconds.
    :param send_timeout: seconds a sender waiting for the writer allows it without
        progress before the peer counts as not reading and the link is dropped
        (1006); ``None``: wait as long as it takes.  Settable later
        (:attr:`send_timeout`).
    :param identity: the station identity, for log messages.
    :param max_buffered_inbound: with permessage-deflate, the decoded text (in
        characters) one read may leave waiting for ``receive()``; the rest of
        the read stays compressed until it is taken (see the module docstring).
        Settable later (:attr:`max_buffered_inbound`).
    """

    #: Decoded text a compressed read may leave waiting (see the module docstring).
    max_buffered_inbound: int = DEFAULT_MAX_BUFFERED_INBOUND
    # Compressed bytes read but not yet decoded; class defaults, so that an idle
    # connection pays nothing for them (W4 in bench/README.md).
    _undecoded: bytes = b""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        codec: WebSocketCodec,
        *,
        client: bool,
        subprotocol: str | None,
        compression: bool = False,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        identity: str | None = None,
        max_buffered_inbound: int = DEFAULT_MAX_BUFFERED_INBOUND,
    ) -> None:
        if max_buffered_inbound < 1:
            raise ValueError("max_buffered_inbound must be positive")
        self._stream = stream
        # ocpprpc's own TCP streams can hand over what is buffered without a coroutine, and
        # otherwise the event loop's wait to await (see receive()).
        self._receives_now = hasattr(stream, "receive_now")
        self._codec = codec
        self._client = client
        self._subprotocol = subprotocol
        self._compression = compression
        self._close_timeout = close_timeout
        self._messages: list[str] = []  # a deque costs 0.6 KB even empty (W4)
        self._close_reason: CloseReason | None = None
        # What receive() raises once nothing more will come; None while open.
        self._end: type[Exception] | None = None
        self._closed_by_us = False
        self._failed = False
        self._transport_closed = False
        # The read "lock" (reader vs close()): a flag, and an event made only when contended;
        # an anyio.Lock would cost ~0.8 KB per idle connection (W4 in bench/README.md).
        self._reading = False
        self._read_free: anyio.Event | None = None
        # The outgoing queue (frames in codec order) and its writer, see the module docstring.
        self._out: list[bytes] = []
        # Bytes ever queued, and ever written: their difference is what is unsent.
        self._queued = 0
        self._sent = 0
        self._writing = False
        self._write_failed = False
        # Set (and dropped) each time the writer made progress, failed or stopped.
        self._progress: anyio.Event | None = None
        #: Seconds a waiting sender allows the writer without progress (see the module docstring).
        self.send_timeout = send_timeout
        #: The station identity, for log messages.
        self.identity = identity
        # Frames may have arrived in the same read as the end of the HTTP upgrade;
        # the codec holds them until fed, so the first read starts by feeding nothing.
        self._unprimed = True
        if max_buffered_inbound != DEFAULT_MAX_BUFFERED_INBOUND:
            self.max_buffered_inbound = max_buffered_inbound
        #: Keepalive hooks (:mod:`ocpprpc._ws.keepalive`): called with each pong's
        #: payload, and a count of reads that brought data (proof of life).
        self.on_pong: Callable[[bytes], None] | None = None
        self.reads = 0
        #: Bytes read from the byte stream since the upgrade (frames, compressed as on the wire).
        self.bytes_received = 0

    # -- MessageStream --------------------------------------------------------

    @property
    def subprotocol(self) -> str | None:
        return self._subprotocol

    @property
    def close_reason(self) -> CloseReason | None:
        return self._close_reason

    @property
    def buffered(self) -> int:
        return len(self._messages)

    @property
    def compression(self) -> bool:
        """Whether permessage-deflate is in use on this connection."""
        return self._compression

    @property
    def unsent(self) -> int:
        """Bytes queued for the peer (or being written) that the byte stream has not taken yet.

        At most 64 KiB plus one frame: senders wait before queueing more.
        """
        return self._queued - self._sent

    @property
    def bytes_sent(self) -> int:
        """Bytes queued for the peer since the upgrade (frames as on the wire, written or about to be)."""
        return self._queued

    @property
    def reading(self) -> bool:
        """Whether a ``receive()`` is under way (``False`` while nobody reads, e.g. a paused session)."""
        return self._reading

    def __repr__(self) -> str:
        side = "client" if self._client else "server"
        return f"<WebSocketStream {self.identity or '?'} {side}>"

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        # Peer address, TLS certificate, ... of the underlying stream.
        return self._stream.extra_attributes

    async def receive(self) -> str:
        """Return the next text message.

        :raises anyio.EndOfStream: the connection was closed with a close handshake.
        :raises anyio.BrokenResourceError: the link died or the peer broke the protocol.
        """
        if self._messages:
            return self._messages.pop(0)
        # Uncontended (the session's one reader): no trip through the scheduler;
        # the byte stream's receive() below is the checkpoint.
        if self._reading:
            await self._acquire_read()
        self._reading = True
        try:
            while True:
                if self._messages:
                    return self._messages.pop(0)
                if self._end is not None:
                    raise self._end
                if self._unprimed or self._undecoded:
                    await self._read_once()
                    continue
                # _read_once()'s common case inline: an idle connection waits here with one
                # coroutine frame less (~240 bytes), and each message makes one coroutine less;
                # over our own streams, it waits on the event loop's wait itself: one more less.
                try:
                    if self._receives_now:
                        got = self._stream.receive_now(_RECEIVE_SIZE)  # type: ignore[attr-defined]
                        while not isinstance(got, bytes):
                            await got
                            got = self._stream.receive_now(_RECEIVE_SIZE)  # type: ignore[attr-defined]
                        data = got
                    else:
                        data = await self._stream.receive(_RECEIVE_SIZE)
                except _READ_ENDS as exc:
                    await self._lost(_lost_reason(exc))
                    continue
                await self._process(data, read=True)
        finally:
            self._release_read()

    async def send(self, item: str) -> None:
        """Send one text message.

        Safe for concurrent callers: messages go out whole, in the order of the
        calls.  Returns once the frame is written or queued behind the task
        writing (see the module docstring); a ``send()`` cancelled while its
        bytes are being written fails the connection (1006): part of a frame
        may be on the wire and there is no taking it back.
        """
        codec = self._codec
        if not codec.open or self._end is not None or self._write_failed:
            raise self._send_error()
        if self._queued - self._sent > _HIGH_WATER:
            await self._wait_for_room()
        self._queue(codec.data_to_send())
        self._queue(codec.send_text(item))
        await self._send_queued(wait=False)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping and return once it is written (pongs go to :attr:`on_pong`)."""
        if not self._codec.open or self._write_failed:
            raise self._send_error()
        if self._queued - self._sent > _HIGH_WATER:
            await self._wait_for_room()
        self._queue(self._codec.data_to_send())
        self._queue(self._codec.send_ping(payload))
        await self._send_queued(wait=True)

    async def abort(self, why: str = "aborted") -> None:
        """Drop the link without a close handshake (the keepalive's verdict on a dead peer).

        Records an abnormal 1006 as the close reason (the peer stopped answering;
        a close frame would only wait for it in vain), releases the byte stream,
        and the reader's ``receive()`` then raises ``anyio.BrokenResourceError``.
        """
        await self._lost(why)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and wait for the peer's close frame, at most ``close_timeout``.

        Idempotent, shielded from cancellation (it is called from cleanup code),
        and always releases the byte stream.  If the connection already ended it
        only finishes the teardown.
        """
        if self._close_reason is None:
            self._close_reason = CloseReason(code, reason, by_peer=False)
            self._closed_by_us = True
        with anyio.move_on_after(self._close_timeout, shield=True):
            try:
                await self._close_handshake(code, reason)
                await self._linger()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the link died meanwhile: nothing left to say
        with anyio.CancelScope(shield=True):
            await self._close_transport()
        self._finish(anyio.EndOfStream)

    # -- reading --------------------------------------------------------------

    async def _acquire_read(self) -> None:
        """Wait until nobody reads; the caller then sets ``_reading`` in the same step."""
        while self._reading:
            if self._read_free is None:
                self._read_free = anyio.Event()
            await self._read_free.wait()

    def _release_read(self) -> None:
        self._reading = False
        free = self._read_free
        if free is not None:
            self._read_free = None
            free.set()

    async def _read_once(self) -> None:
        """Read once from the byte stream and apply what the codec makes of it (read lock held)."""
        if self._unprimed:
            self._unprimed = False
            await self._process(b"")
            return
        if self._undecoded:
            data, self._undecoded = self._undecoded, b""
            await self._process(data)
            return
        try:
            data = await self._stream.receive(_RECEIVE_SIZE)
        except _READ_ENDS as exc:
            await self._lost(_lost_reason(exc))
            return
        await self._process(data, read=True)

    async def _process(self, data: bytes, *, read: bool = False) -> None:
        """Feed bytes to the codec and act on the result (read lock held); *read*: fresh from the stream."""
        if read:
            self.reads += 1
            self.bytes_received += len(data)
        control = False
        ended = False
        if self._compression and len(data) > _INFLATE_SLICE:
            events = self._decode_bounded(data)
        else:
            events = self._codec.receive_data(data)
        for event in events:
            if type(event) is str:
                if not self._closed_by_us:
                    # After our close frame the peer's data is no longer wanted (RFC 6455 1.4).
                    self._messages.append(event)
                continue
            control = True
            if isinstance(event, CloseReceived):
                ended = True
                if self._close_reason is None:
                    self._close_reason = CloseReason(event.code, event.reason, by_peer=True)
                self._finish(anyio.EndOfStream)
                log.debug("close frame received: %s %r", event.code, event.reason)
            elif isinstance(event, ProtocolFailure):
                ended = True
                self._failed = True
                if self._close_reason is None:
                    self._close_reason = CloseReason(event.code, event.reason, by_peer=False)
                self._finish(anyio.BrokenResourceError)
                log.info("failing the WebSocket connection: %s %s", event.code, event.reason)
            elif isinstance(event, PongReceived) and self.on_pong is not None:
                self.on_pong(event.payload)
            # PingReceived: the pong is queued in the codec.
        if ended:
            # The echo of a close, or the close frame failing the peer, must go out
            # even if our caller is being cancelled.
            with anyio.move_on_after(self._close_timeout, shield=True):
                await self._flush()
            if not self._client and not self._failed:
                # The server closes TCP first once the close handshake is done (RFC 6455 7.1.1).
                with anyio.CancelScope(shield=True):
                    await self._close_transport()
        elif control:
            await self._flush()

    def _decode_bounded(self, data: bytes) -> list[CodecEvent]:
        """Decode a compressed read slice by slice, keeping the rest once enough text is decoded."""
        receive = self._codec.receive_data
        limit = self.max_buffered_inbound
        events: list[CodecEvent] = []
        decoded = 0
        for start in range(0, len(data), _INFLATE_SLICE):
            end = start + _INFLATE_SLICE
            part = receive(data[start:end])
            for event in part:
                if type(event) is str:
                    decoded += len(event)
            events += part
            if decoded >= limit:
                self._undecoded = data[end:]
                break
        return events

    async def _flush(self) -> None:
        """Write the codec's automatic replies, if any (pongs, close frames)."""
        if self._write_failed:
            return
        # On failure the loss is recorded; the reader reports it next.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            if self._queued - self._sent > _HIGH_WATER:
                await self._wait_for_room()
            data = self._codec.data_to_send()
            if data:
                self._queue(data)
                # Timed even as the writer: a peer that pings and never reads our
                # pongs would otherwise stall the reader in this write for ever.
                await self._send_queued(wait=True, timed=True)

    # -- writing --------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        """Append bytes to the outgoing queue (call in the same step as the codec made them)."""
        if data:
            self._out.append(data)
            self._queued += len(data)

    async def _send_queued(self, *, wait: bool, timed: bool = False) -> None:
        """Get the queue written: become the writer, or leave it to the one at work.

        With *wait* a sender that is not the writer waits until the writer has
        written everything queued so far.  With *timed* a sender that becomes
        the writer allows each write ``send_timeout`` seconds (the reader's path:
        see :meth:`_write`).  Raises ``BrokenResourceError`` /
        ``ClosedResourceError`` if the writing failed.
        """
        if self._writing:
            if wait:
                await self._wait_sent(self._queued)
            return
        self._writing = True
        try:
            while self._out:
                out = self._out
                data = out[0] if len(out) == 1 else b"".join(out)
                self._out = []
                taken = self._queued  # data holds every byte queued so far and not yet sent
                if taken - self._sent <= _HIGH_WATER:
                    await self._write(data, timed=timed)
                else:
                    await self._write_in_steps(data, timed=timed)
                self._sent = taken
                if self._progress is not None:
                    self._made_progress()
        except BaseException:
            self._write_failed = True
            self._out = []
            self._sent = self._queued  # nothing more will be written
            raise
        finally:
            self._writing = False
            if self._progress is not None:
                self._made_progress()

    async def _write_in_steps(self, data: bytes, *, timed: bool) -> None:
        """Write a large queue in ``_HIGH_WATER`` steps, so that waiting senders see progress."""
        for start in range(0, len(data), _HIGH_WATER):
            chunk = data[start : start + _HIGH_WATER]
            await self._write(chunk, timed=timed)
            self._sent += len(chunk)
            self._made_progress()

    def _made_progress(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def _wait_for_room(self) -> None:
        """Wait until no more than ``_HIGH_WATER`` bytes are unsent (before queueing more).

        Checked again after each wait: several senders waiting for the same progress all
        wake together, and each one that queues first raises the mark for the rest.
        """
        while self._queued - self._sent > _HIGH_WATER:
            await self._wait_sent(self._queued - _HIGH_WATER)
        if not self._codec.open or self._write_failed:
            raise self._send_error()

    async def _wait_sent(self, target: int) -> None:
        """Wait until the writer has written the first *target* bytes ever queued.

        The slow path: the writer allows ``send_timeout`` seconds per step of
        progress, then the peer counts as not reading (see the module docstring).
        """
        while self._sent < target:
            # Unsent bytes mean there is a writer at work, which sets the event.
            progress = self._progress
            if progress is None:
                progress = self._progress = anyio.Event()
            timeout = self.send_timeout
            if timeout is None:
                await progress.wait()
                continue
            with anyio.move_on_after(timeout):
                await progress.wait()
            if not progress.is_set():
                await self._stalled(timeout)
        if self._write_failed:
            raise self._send_error()

    async def _stalled(self, seconds: float) -> None:
        """No write progress for *seconds*: the peer stopped reading; drop the link."""
        why = f"peer stopped reading: {self.unsent} bytes unsent for {seconds:g} s"
        if self._close_reason is None:
            log.warning("%r: %s; dropping the connection", self, why)
        await self._lost(why)
        raise self._send_error()

    async def _write(self, data: bytes, *, timed: bool = False) -> None:
        """Write bytes as the writer; any failure ends the connection.

        *timed*: allow the write ``send_timeout`` seconds, then the peer counts as
        not reading.  Only the reader's writes are timed (pongs, close echoes, and
        whatever was queued meanwhile): it is the one task that, stuck here, would
        never be noticed, since nobody reads while it writes.  Other writers are
        not timed (a cancel scope per write costs more than the write): senders
        queueing behind them time the wait, and so does the reader, for every
        pong, once it waits for the writer.
        """
        if self._transport_closed:
            raise self._send_error()
        timeout = self.send_timeout if timed else None
        try:
            if timeout is None:
                await self._stream.send(data)
            else:
                with anyio.move_on_after(timeout) as scope:
                    await self._stream.send(data)
                if scope.cancelled_caught:
                    await self._stalled(timeout)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            await self._lost(f"connection lost while writing ({exc!r})")
            raise anyio.BrokenResourceError from exc
        except BaseException:
            # Cancelled mid-write: a partial frame may be on the wire.
            await self._lost(f"a write was interrupted ({self.unsent} bytes unsent)")
            raise

    def _send_error(self) -> Exception:
        if self._closed_by_us:
            return anyio.ClosedResourceError()
        return anyio.BrokenResourceError()

    # -- ending ---------------------------------------------------------------

    async def _lost(self, why: str) -> None:
        """The link is gone (or unusable): record 1006 and release the byte stream."""
        if self._close_reason is None:
            self._close_reason = CloseReason(1006, why, by_peer=True)
            log.debug("WebSocket connection lost: %s", why)
        self._finish(anyio.BrokenResourceError)
        with anyio.CancelScope(shield=True):
            await self._close_transport()

    def _finish(self, exc: type[Exception]) -> None:
        """Nothing more will be read: decide what ``receive()`` raises from now on."""
        if self._end is None:
            self._end = anyio.EndOfStream if self._closed_by_us else exc

    async def _close_handshake(self, code: int, reason: str) -> None:
        """Send our close frame (if still due) and wait for the peer's."""
        if self._write_failed:
            raise self._send_error()
        self._queue(self._codec.data_to_send())
        self._queue(self._codec.send_close(code, reason))
        if self._out:
            await self._send_queued(wait=True)
        while not self._codec.closed and not self._transport_closed:
            await self._acquire_read()
            self._reading = True
            try:
                if not self._codec.closed and not self._transport_closed:
                    await self._read_once()
            finally:
                self._release_read()

    async def _linger(self) -> None:
        """Before closing TCP, let the peer close first where the RFC says it should.

        A client waits for the server's EOF (RFC 6455 7.1.1: the server closes TCP
        first).  After failing the peer we half-close and discard its input until
        EOF: closing a socket with unread data sends a reset, which can destroy
        our close frame before the peer reads it.
        """
        if self._transport_closed:
            return
        if self._failed:
            try:
                await self._stream.send_eof()
            except (NotImplementedError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return  # TLS has no half-close: close now
        elif not self._client:
            return
        await self._acquire_read()
        self._reading = True
        try:
            while not self._transport_closed:
                try:
                    await self._stream.receive(_RECEIVE_SIZE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    return
        finally:
            self._release_read()

    async def _close_transport(self) -> None:
        if not self._transport_closed:
            self._transport_closed = True
            await anyio.aclose_forcefully(self._stream)
