"""The sans-IO WebSocket codec seam, and its wsproto implementation.

Theory of operation
-------------------
:class:`~ocpprpc._ws.websocket.WebSocketStream` never touches frames itself; it
talks to a :class:`WebSocketCodec`: bytes read from the socket go in with
:meth:`~WebSocketCodec.receive_data`, which returns what they meant (whole text
messages as plain ``str``, and a few control events); text to send goes out
through :meth:`~WebSocketCodec.send_text`, which returns the bytes to write.
Replies the protocol requires without asking the application (a pong for a
ping, the echo of the peer's close frame, the close frame that fails a
misbehaving peer) are queued inside the codec and collected with
:meth:`~WebSocketCodec.data_to_send`, so whoever holds the write lock next
writes them in order.

The interface is this small on purpose: the performance work will plug in
websockets' sans-IO protocol (about 3x cheaper per frame than wsproto, see
``ws-floor.md``) behind the same five methods, and keep wsproto as the
reference engine.

OCPP-J policy lives here, not in wsproto:

* only text messages: a binary frame fails the connection with 1003;
* a maximum message size, checked while fragments arrive (wsproto hands over
  partial frames as their bytes come in), so an oversized message is refused
  with 1009 once ``max_message_size`` is passed, never buffered whole; with
  permessage-deflate the *inflated* size counts, and inflation itself is
  bounded (:class:`_BoundedPerMessageDeflate`) so a small compressed frame
  cannot expand to megabytes before the check;
* a maximum number of frames per message (:func:`max_fragments`): empty
  continuation frames add nothing to the size, so without a count a peer could
  keep one message open forever with millions of them (memory and CPU for
  nothing); the frame past the limit fails the connection with 1008 (policy
  violation: the message is not too big in bytes, it is cut too finely);
* invalid UTF-8 (1007) and framing errors (1002) come from wsproto, which
  decodes text incrementally and so catches bad UTF-8 split across fragments.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol

from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason as WsCloseReason
from wsproto.frame_protocol import FrameDecoder, FrameProtocol

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_CLOSE_REASON",
    "CloseReceived",
    "CodecEvent",
    "PingReceived",
    "PongReceived",
    "ProtocolFailure",
    "WIRE_CLOSE_CODES",
    "WebSocketCodec",
    "WsprotoCodec",
    "cut_close_reason",
    "deflate_extension",
    "max_fragments",
    "too_many_fragments",
]

#: Close codes a close frame may carry on the wire (RFC 6455 7.4.1, IANA registry, and
#: 3000-4999 for libraries and applications); 1005, 1006 and 1015 are local-only.
WIRE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
) | frozenset(range(3000, 5000))

#: A close frame's payload is at most 125 bytes: 2 for the code, 123 for the reason.
MAX_CLOSE_REASON = 123


def cut_close_reason(reason: str) -> str:
    """*reason* cut to what a close frame carries (123 bytes of UTF-8), at a character boundary."""
    raw = reason.encode()
    return reason if len(raw) <= MAX_CLOSE_REASON else raw[:MAX_CLOSE_REASON].decode(errors="ignore")


#: 64 KiB, the default of ocpp-ws-io.  The largest schema fields in OCPP 2.x
#: (certificate chains, 10 000 characters) fit comfortably; a CSMS expecting
#: bigger DataTransfer payloads raises it.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024

#: The fewest frames a message may arrive in before it is refused (see :func:`max_fragments`).
MIN_MAX_FRAGMENTS = 1024


def max_fragments(max_message_size: int) -> int:
    """How many frames one message may arrive in: 1024, or one per KiB of ``max_message_size`` if more.

    Real senders fragment at kilobytes (browsers and websockets not at all, some
    gateways at 4 KiB), so this leaves every honest sender room while a peer
    that sends empty continuation frames is stopped at a few thousand.
    """
    return max(MIN_MAX_FRAGMENTS, max_message_size // 1024)


def too_many_fragments(limit: int) -> str:
    """The close reason for a message cut into more than *limit* frames."""
    return f"message in more than {limit} frames"


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged; the pong is already queued in :meth:`WebSocketCodec.data_to_send`."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer sent a pong (a reply to our ping, or an unsolicited heartbeat)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's close frame arrived.

    ``initiated_by_peer`` is ``True`` when the peer started the close; its echo is
    then queued in :meth:`WebSocketCodec.data_to_send`.  When ``False`` this is the
    peer's answer to our own close frame and the close handshake is complete.
    1005 stands for a close frame without a status code.
    """

    code: int
    reason: str
    initiated_by_peer: bool


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """The peer broke the protocol or our policy; the connection is failed.

    The close frame carrying ``code`` is queued in :meth:`WebSocketCodec.data_to_send`
    (unless we had already sent one); after this event the codec ignores all input.
    """

    code: int
    reason: str


#: What :meth:`WebSocketCodec.receive_data` returns: a complete text message is a
#: plain ``str`` (the hot path allocates no event object), the rest are control events.
CodecEvent = str | PingReceived | PongReceived | CloseReceived | ProtocolFailure


class WebSocketCodec(Protocol):
    """A sans-IO WebSocket connection after the opening handshake.

    No method blocks or does I/O.  Methods that produce bytes must be called, and
    their result written, under the caller's write lock, because frame order
    matters (permessage-deflate compresses each message against the previous ones).
    """

    @property
    def open(self) -> bool:
        """``True`` until a close frame was sent or received or the connection failed."""
        ...

    @property
    def closed(self) -> bool:
        """``True`` once the close handshake finished or the connection failed: nothing more to read."""
        ...

    def receive_data(self, data: bytes) -> list[CodecEvent]:
        """Feed bytes read from the peer; return the messages and control events they complete."""
        ...

    def data_to_send(self) -> bytes:
        """Return (and forget) the automatic replies queued so far: pongs, close frames."""
        ...

    def send_text(self, text: str) -> bytes:
        """Frame one text message; raises :class:`RuntimeError` once the codec is not open."""
        ...

    def send_ping(self, payload: bytes = b"") -> bytes:
        """Frame a ping (for keepalives); ``b""`` once the codec is not open."""
        ...

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Frame our close frame (or the echo of the peer's); ``b""`` when one was already sent."""
        ...


class _BoundedPerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate with inflation bounded by the maximum message size.

    wsproto inflates each frame chunk with an unbounded ``decompress()``: a 64 KiB
    read of a crafted frame could become ~64 MiB (deflate reaches ~1000:1) before
    anyone counts it.  Here each chunk may only inflate to what is left of the
    message budget (plus one byte, to notice the overflow); input left over at
    that point means the message is too big, answered with 1009.  This relies on
    wsproto's protected ``_inbound_*`` / ``_decompressor`` attributes, which is
    why the wsproto dependency is pinned below its next major version.
    """

    def __init__(self, max_message_size: int) -> None:
        super().__init__()
        self.max_message_size = max_message_size
        self._inflated = 0

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | WsCloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        budget = self.max_message_size - self._inflated + 1
        try:
            inflated = self._decompressor.decompress(bytes(data), budget)
        except zlib.error:
            return WsCloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._decompressor.unconsumed_tail or self._inflated > self.max_message_size:
            return WsCloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | WsCloseReason | None:
        if fin:
            self._inflated = 0
        return super().frame_inbound_complete(proto, fin)


def deflate_extension(max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> PerMessageDeflate:
    """A fresh permessage-deflate extension (RFC 7692) whose inflation respects ``max_message_size``.

    One instance per connection: it holds that connection's compression contexts.
    """
    return _BoundedPerMessageDeflate(max_message_size)


class WsprotoCodec:
    """:class:`WebSocketCodec` on a :class:`wsproto.connection.Connection` in the OPEN state.

    :param connection: the frame-level connection the opening handshake produced
        (``H11Handshake.connection``), with any negotiated extension already in it.
    :param max_message_size: the largest text message accepted, in bytes of UTF-8
        (after inflation); a bigger one fails the connection with 1009.
    """

    def __init__(self, connection: Connection, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self._conn = connection
        self._max = max_message_size
        self._max_fragments = max_fragments(max_message_size)
        self._parts: list[str] = []
        self._size = 0
        # Frames of the message in progress that are complete (wsproto may report a frame in pieces).
        self._fragments = 0
        self._failed = False
        self._outbox = bytearray()

    @property
    def open(self) -> bool:
        return not self._failed and self._conn.state is ConnectionState.OPEN

    @property
    def closed(self) -> bool:
        return self._failed or self._conn.state is ConnectionState.CLOSED

    def data_to_send(self) -> bytes:
        if not self._outbox:
            return b""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def send_text(self, text: str) -> bytes:
        if not self.open:
            raise RuntimeError(f"cannot send a message on a WebSocket in state {self._conn.state.name}")
        return self._conn.send(TextMessage(data=text))

    def send_ping(self, payload: bytes = b"") -> bytes:
        if not self.open:
            return b""
        return self._conn.send(Ping(payload=payload))

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        if self._conn.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        if code not in WIRE_CLOSE_CODES:
            # wsproto maps the local-only codes to 1000 but would send a reserved one
            # (1004, 1016, 2000, ...) that the peer must refuse with 1002.
            code = 1000
        return self._conn.send(CloseConnection(code=code, reason=reason))

    def receive_data(self, data: bytes) -> list[CodecEvent]:
        if self.closed:
            # After a failure or a finished close handshake input is noise (RFC 6455 7.1.1:
            # nothing after the close frame is processed); wsproto would raise on it.
            return []
        conn = self._conn
        conn.receive_data(data)
        out: list[CodecEvent] = []
        state_before = conn.state
        for event in conn.events():
            if type(event) is TextMessage:
                chunk = event.data
                # str.isascii() is O(1) in CPython; only non-ASCII text pays for an encode.
                self._size += len(chunk) if chunk.isascii() else len(chunk.encode())
                if self._size > self._max:
                    return self._fail_into(out, 1009, "")
                if not event.message_finished:
                    if event.frame_finished:
                        self._fragments += 1
                        if self._fragments >= self._max_fragments:
                            return self._fail_into(out, 1008, too_many_fragments(self._max_fragments))
                    self._parts.append(chunk)
                    continue
                self._size = 0
                self._fragments = 0
                if self._parts:
                    self._parts.append(chunk)
                    chunk = "".join(self._parts)
                    self._parts.clear()
                out.append(chunk)
            elif isinstance(event, CloseConnection):
                if conn.state is state_before:
                    # wsproto turns a parse failure (bad framing 1002, invalid UTF-8
                    # 1007, extension errors) into a CloseConnection *without* a state
                    # change; a genuine close frame always moves the state on.
                    return self._fail_into(out, int(event.code), event.reason or "")
                by_peer = conn.state is ConnectionState.REMOTE_CLOSING
                if by_peer:
                    self._outbox += conn.send(event.response())
                out.append(CloseReceived(int(event.code), event.reason or "", by_peer))
                return out
            elif isinstance(event, Ping):
                if conn.state is ConnectionState.OPEN:
                    self._outbox += conn.send(event.response())
                out.append(PingReceived(bytes(event.payload)))
            elif isinstance(event, Pong):
                out.append(PongReceived(bytes(event.payload)))
            elif isinstance(event, BytesMessage):
                # OCPP-J is text only (RFC 6455 7.4.1: 1003 "cannot accept this type of data").
                return self._fail_into(out, 1003, "binary frames are not accepted")
            state_before = conn.state
        return out

    def _fail_into(self, out: list[CodecEvent], code: int, reason: str) -> list[CodecEvent]:
        """Fail the connection (RFC 6455 7.1.7): queue our close frame, stop reading."""
        if code == 1009:
            # Also when the bounded inflater refused (wsproto then says "error in extension").
            reason = f"message bigger than {self._max} bytes"
        if self._conn.state is ConnectionState.OPEN:
            self._outbox += self._conn.send(CloseConnection(code=code, reason=reason))
        self._failed = True
        self._parts.clear()
        out.append(ProtocolFailure(code, reason))
        return out
