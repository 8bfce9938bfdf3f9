"""ocpprpc's own WebSocket frame codec (RFC 6455 section 5, RFC 7692) behind the codec seam.

Why a third codec
-----------------
OCPP-J needs a small part of WebSocket: text messages, pings, the close handshake and
permessage-deflate.  websockets' sans-IO ``Protocol`` (:mod:`.websockets_codec`) parses
each frame through a chain of generators, makes a ``Frame`` object per frame and a
list per read; wsproto (:mod:`.wsproto_codec`) more.  This codec does only what OCPP-J
needs, straight from the read's bytes: a whole frame in one read (the usual case) costs
a header parse, the unmasking (websockets' C ``apply_mask`` when it is installed, else
one big-integer XOR) and one ``str`` decode.  It holds no parser object between reads,
only the bytes of an incomplete frame, which makes an idle connection smaller too.

The rules, in the order they are checked (each failure fails the connection with the
close code that follows it, and input after a failure is ignored, RFC 6455 7.1.7):

* opcode: 0, 1, 2, 8, 9 or 10 (5.2), else 1002;
* masking: a client's frames masked, a server's not (5.1, 5.3), else 1002;
* size: a data frame whose announced length takes its message past
  ``max_message_size`` (inflated bytes so far plus this frame's bytes, plus one, as
  websockets counts) is refused with 1009 before its payload is read;
* reserved bits: RSV2/RSV3 never, RSV1 only on the first frame of a data message and
  only with permessage-deflate (5.2, RFC 7692 6), else 1002;
* control frames: final, at most 125 bytes (5.5), else 1002;
* order: a continuation needs a message in progress, a new message none (5.4), else
  1002; a close frame in the middle of a fragmented message is 1002 too;
* binary data: 1003 (OCPP-J is text only); invalid UTF-8: 1007 (8.1), checked per frame
  and incrementally across fragments so it fails at the fragment that carries it;
* inflated size past ``max_message_size``: 1009 (inflation bounded as it runs); more
  than :func:`~.wsproto_codec.max_fragments` frames in one message: 1008;
* close frame payload: empty (1005 reported), or a code a close frame may carry and a
  UTF-8 reason (7.1.5, 7.4), else 1002 / 1007.

The same verdicts as websockets' and wsproto's on every input the differential tests
generate (``tests/ws/test_codec_differential.py``): same messages, same close codes.
"""

from __future__ import annotations

import codecs
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wsproto.extensions import Extension, PerMessageDeflate

from .wsproto_codec import (
    DEFAULT_MAX_MESSAGE_SIZE,
    WIRE_CLOSE_CODES,
    CloseReceived,
    CodecEvent,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    cut_close_reason,
    max_fragments,
    too_many_fragments,
)

__all__ = ["Deflate", "FrameCodec", "deflate_params"]

_Bytes = bytes | bytearray


def _xor_mask(data: _Bytes, mask: _Bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask`` (RFC 6455 5.3), in one big-integer operation."""
    n = len(data)
    if not n:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _c_mask() -> Callable[[_Bytes, _Bytes], bytes] | None:
    """websockets' C masking, when the websockets package (a dependency) ships it compiled."""
    try:
        from websockets.speedups import apply_mask
    except ImportError:  # pragma: no cover - run in a subprocess (test_codec_differential.py)
        return None
    return apply_mask


_apply_mask: Callable[[_Bytes, _Bytes], bytes] = _c_mask() or _xor_mask


# Opcodes (RFC 6455 5.2).
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_KNOWN_OPCODES = frozenset({_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG})
#: What permessage-deflate removes from the end of each compressed message (RFC 7692 7.2.1).
_TAIL = b"\x00\x00\xff\xff"
#: The two header bytes of an unmasked final text frame of 0-125 bytes, by length.
_TEXT_HEADS = [bytes((0x81, n)) for n in range(126)]

#: A client frame's masking key comes from a strong source of entropy (RFC 6455 5.3): os.urandom,
#: drawn 1,024 keys at a time instead of one getrandom() system call per frame (strace: one per
#: call a station makes).  list.pop() is atomic, so threads never share a key; a forked child
#: starts a pool of its own.
_MASK_KEYS_PER_DRAW = 1024
_mask_keys: list[bytes] = []
os.register_at_fork(after_in_child=_mask_keys.clear)


def _masking_key() -> bytes:
    try:
        return _mask_keys.pop()
    except IndexError:
        raw = os.urandom(4 * _MASK_KEYS_PER_DRAW)
        _mask_keys.extend(raw[i : i + 4] for i in range(0, len(raw), 4))
        return _mask_keys.pop()


@dataclass(frozen=True, slots=True)
class Deflate:
    """The permessage-deflate parameters agreed in the handshake, seen from one end.

    ``local_*`` governs what this end compresses, ``remote_*`` what it inflates.
    """

    local_no_context_takeover: bool = False
    remote_no_context_takeover: bool = False
    local_max_window_bits: int = 15
    remote_max_window_bits: int = 15


def deflate_params(extensions: Sequence[Extension], *, client: bool) -> Deflate | None:
    """The :class:`Deflate` parameters wsproto negotiated (``None``: not agreed)."""
    for ext in extensions:
        if ext.enabled() and isinstance(ext, PerMessageDeflate):
            ours, theirs = ("client", "server") if client else ("server", "client")
            return Deflate(
                local_no_context_takeover=bool(getattr(ext, f"{ours}_no_context_takeover")),
                remote_no_context_takeover=bool(getattr(ext, f"{theirs}_no_context_takeover")),
                local_max_window_bits=int(getattr(ext, f"{ours}_max_window_bits") or 15),
                remote_max_window_bits=int(getattr(ext, f"{theirs}_max_window_bits") or 15),
            )
    return None


class _Failed(Exception):
    """Internal: the peer broke a rule; (code, reason) go out in our close frame."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class FrameCodec:
    """:class:`~ocpprpc._ws.wsproto_codec.WebSocketCodec` written for OCPP-J (see the module docstring).

    :param client: ``True`` on the client side (our frames are masked, the peer's must not be).
    :param max_message_size: the largest text message accepted, in bytes of UTF-8
        (after inflation); a bigger one fails the connection with 1009.
    :param deflate: the agreed permessage-deflate parameters (:func:`deflate_params`), or ``None``.
    :param initial_data: bytes that arrived with the end of the opening handshake;
        they are parsed now and reported by the first :meth:`receive_data` call.
    """

    __slots__ = (
        "_buffer",
        "_client",
        "_close_rcvd",
        "_close_sent",
        "_compressor",
        "_decoder",
        "_deflate",
        "_early",
        "_failure",
        "_fragments",
        "_in_message",
        "_inflater",
        "_inflating",
        "_max",
        "_max_fragments",
        "_outbox",
        "_parts",
        "_size",
    )

    def __init__(
        self,
        *,
        client: bool,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        deflate: Deflate | None = None,
        initial_data: bytes = b"",
    ) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self._client = client
        self._max = max_message_size
        self._max_fragments = max_fragments(max_message_size)
        self._deflate = deflate
        self._compressor: zlib._Compress | None = None
        self._inflater: zlib._Decompress | None = None
        #: The bytes of a frame not yet complete (``None`` between whole frames).
        self._buffer: bytearray | None = None
        # Made when something is queued (a pong, a close frame): two lists less per idle connection.
        self._outbox: list[bytes] | None = None
        self._close_sent = False
        self._close_rcvd = False
        self._failure: tuple[int, str] | None = None
        # A fragmented text message in progress: decoded parts, bytes so far, frames, decoder.
        self._in_message = False
        self._inflating = False
        self._parts: list[str] | None = None
        self._size = 0
        self._fragments = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        self._early: list[CodecEvent] | None = None
        if initial_data:
            self._early = self.receive_data(initial_data)

    # -- state --------------------------------------------------------------------------
    @property
    def open(self) -> bool:
        return not (self._close_sent or self._close_rcvd or self._failure is not None)

    @property
    def closed(self) -> bool:
        return self._failure is not None or (self._close_rcvd and self._close_sent)

    # -- sending ------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        outbox = self._outbox
        if not outbox:
            return b""
        self._outbox = None
        return outbox[0] if len(outbox) == 1 else b"".join(outbox)

    def _frame(self, opcode: int, payload: _Bytes, rsv1: bool = False) -> bytes:
        """One final frame: the header, then the payload (masked on the client side, 5.3)."""
        n = len(payload)
        first = 0x80 | opcode | (0x40 if rsv1 else 0)
        if self._client:
            if n < 126:
                head = bytes((first, 0x80 | n))
            elif n < 65536:
                head = bytes((first, 0xFE)) + n.to_bytes(2, "big")
            else:
                head = bytes((first, 0xFF)) + n.to_bytes(8, "big")
            mask = _masking_key()
            return head + mask + _apply_mask(payload, mask)
        if n < 126:
            head = _TEXT_HEADS[n] if first == 0x81 else bytes((first, n))
        elif n < 65536:
            head = bytes((first, 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((first, 127)) + n.to_bytes(8, "big")
        return head + payload

    def send_text(self, text: str) -> bytes:
        if not self.open:
            raise RuntimeError("cannot send a message on a WebSocket that is closing or closed")
        payload = text.encode()
        deflate = self._deflate
        if deflate is None:
            return self._frame(_TEXT, payload)
        compressor = self._compressor
        if compressor is None or deflate.local_no_context_takeover:
            # zlib cannot compress with an 8-bit window; 9 produces a stream an 8-bit inflater reads.
            compressor = self._compressor = zlib.compressobj(wbits=-max(9, deflate.local_max_window_bits))
        # A sync flush always ends with the empty stored block the receiver adds back (7.2.1).
        data = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        return self._frame(_TEXT, data, rsv1=True)

    def send_ping(self, payload: bytes = b"") -> bytes:
        if len(payload) > 125:
            raise ValueError("a ping carries at most 125 bytes (RFC 6455 5.5)")
        if not self.open:
            return b""
        return self._frame(_PING, bytes(payload))

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Our close frame; codes that cannot go on the wire become 1000, the reason is cut to 123 bytes."""
        if not self.open:
            return b""
        if code not in WIRE_CLOSE_CODES:
            code = 1000
        self._close_sent = True
        return self._frame(_CLOSE, code.to_bytes(2, "big") + cut_close_reason(reason).encode())

    # -- receiving ----------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[CodecEvent]:
        out = self._early
        if out is None:
            out = []
        else:
            self._early = None  # reported once
        if self._failure is not None or self._close_rcvd:
            return out  # input after a failure or the peer's close frame is noise (7.1.7, 1.4)
        buffer = self._buffer
        chunk: _Bytes = data
        if buffer is not None:
            # The rest of a frame: appended in place, so a frame that trickles in byte by
            # byte costs its length once, not once per read.
            buffer += data
            chunk = buffer
        try:
            pos = self._parse(chunk, out)
        except _Failed as exc:
            self._buffer = None
            reason = cut_close_reason(exc.reason)
            self._fail(exc.code, reason)
            out.append(ProtocolFailure(exc.code, reason))
            return out
        if buffer is not None:
            if pos >= len(buffer):
                self._buffer = None
            elif pos:
                del buffer[:pos]
        elif pos < len(data):
            self._buffer = bytearray(data[pos:])
        return out

    def _parse(self, data: _Bytes, out: list[CodecEvent]) -> int:
        """Append the events of the whole frames in ``data`` to ``out``; return where the rest starts."""
        n = len(data)
        pos = 0
        expect_mask = not self._client
        while n - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            opcode = b0 & 0x0F
            if opcode not in _KNOWN_OPCODES:
                raise _Failed(1002, f"invalid opcode {opcode:#x}")
            if bool(b1 & 0x80) is not expect_mask:
                raise _Failed(1002, "incorrect masking")
            length = b1 & 0x7F
            at = pos + 2
            if length == 126:
                if n - at < 2:
                    return pos
                length = int.from_bytes(data[at : at + 2], "big")
                at += 2
            elif length == 127:
                if n - at < 8:
                    return pos
                length = int.from_bytes(data[at : at + 8], "big")
                at += 8
            fin = b0 & 0x80
            rsv1 = b0 & 0x40
            if opcode < 8:  # data frames: the message's size so far plus this frame (websockets' count)
                if (self._size if opcode == _CONT else 0) + length > self._max + 1:
                    raise _Failed(1009, f"message bigger than {self._max} bytes")
                if b0 & 0x30 or (rsv1 and (self._deflate is None or opcode == _CONT)):
                    raise _Failed(1002, "reserved bits must be 0")
            else:
                if b0 & 0x70:
                    raise _Failed(1002, "reserved bits must be 0")
                if length > 125:
                    raise _Failed(1002, "control frame too long")
                if not fin:
                    raise _Failed(1002, "fragmented control frame")
            if expect_mask:
                end = at + 4 + length
                if end > n:
                    return pos
                payload = data[at + 4 : end]
                if length:
                    payload = _apply_mask(payload, data[at : at + 4])
            else:
                end = at + length
                if end > n:
                    return pos
                payload = data[at:end]
            pos = end
            if opcode == _TEXT and fin and not rsv1:
                if self._in_message:
                    raise _Failed(1002, "expected a continuation frame")
                if length > self._max:
                    raise _Failed(1009, f"message bigger than {self._max} bytes")
                try:
                    out.append(str(payload, "utf-8"))
                except UnicodeDecodeError as exc:
                    raise _Failed(1007, f"invalid UTF-8: {exc.reason} at position {exc.start}") from None
            elif opcode < 8:
                self._data_frame(opcode, bool(fin), bool(rsv1), payload, out)
            elif opcode == _PING:
                payload = bytes(payload)
                self._queue(self._frame(_PONG, payload))
                out.append(PingReceived(payload))
            elif opcode == _PONG:
                out.append(PongReceived(bytes(payload)))
            else:
                out.append(self._close_frame(payload))
                return n  # nothing after the peer's close frame is read (1.4)
        return pos

    def _data_frame(self, opcode: int, fin: bool, rsv1: bool, payload: _Bytes, out: list[CodecEvent]) -> None:
        """A text frame that is compressed or not final, a continuation, or binary data."""
        if opcode == _CONT:
            if not self._in_message:
                raise _Failed(1002, "unexpected continuation frame")
        elif self._in_message:
            raise _Failed(1002, "expected a continuation frame")
        elif opcode == _BINARY:
            raise _Failed(1003, "binary frames are not accepted")
        else:  # the first frame of a text message
            self._in_message = True
            self._inflating = rsv1
            self._decoder = codecs.getincrementaldecoder("utf-8")()
            self._size = self._fragments = 0
        if self._inflating:
            payload = self._inflate(payload, fin)
        self._size += len(payload)
        if self._size > self._max:
            raise _Failed(1009, f"message bigger than {self._max} bytes")
        self._fragments += 1
        if self._fragments > self._max_fragments:
            raise _Failed(1008, too_many_fragments(self._max_fragments))
        decoder = self._decoder
        assert decoder is not None
        try:
            part = decoder.decode(payload, fin)
        except UnicodeDecodeError as exc:
            raise _Failed(1007, f"invalid UTF-8: {exc.reason}") from None
        if not fin:
            if self._parts is None:
                self._parts = [part]
            else:
                self._parts.append(part)
            return
        parts = self._parts
        if parts:
            parts.append(part)
            part = "".join(parts)
            self._parts = None
        out.append(part)
        self._in_message = self._inflating = False
        self._decoder = None
        self._size = self._fragments = 0

    def _inflate(self, payload: _Bytes, fin: bool) -> bytes:
        """Inflate one frame of a compressed message, never past what is left of the size budget."""
        deflate = self._deflate
        assert deflate is not None
        inflater = self._inflater
        if inflater is None:
            # At least 9: zlib compresses with 9 when told 8, and a wider window reads any narrower one.
            inflater = self._inflater = zlib.decompressobj(wbits=-max(9, deflate.remote_max_window_bits))
        if fin:
            payload += _TAIL
        budget = self._max - self._size
        try:
            data = inflater.decompress(payload, budget + 1)
        except zlib.error as exc:
            raise _Failed(1007, f"decompression failed: {exc}") from None
        if inflater.unconsumed_tail or len(data) > budget:
            raise _Failed(1009, f"message bigger than {self._max} bytes")
        if fin and deflate.remote_no_context_takeover:
            self._inflater = None
        return data

    def _close_frame(self, payload: _Bytes) -> CloseReceived:
        """The peer's close frame: read, echoed if it starts the close (5.5.1), reported."""
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            if code not in WIRE_CLOSE_CODES:
                raise _Failed(1002, f"invalid close code {code}")
            try:
                reason = str(payload[2:], "utf-8")
            except UnicodeDecodeError as exc:
                raise _Failed(1007, f"invalid UTF-8 in the close reason: {exc.reason}") from None
        elif payload:
            raise _Failed(1002, "close frame too short")
        else:
            code, reason = 1005, ""
        if self._in_message:
            raise _Failed(1002, "incomplete fragmented message")
        self._close_rcvd = True
        by_peer = not self._close_sent
        if by_peer:
            self._queue(self._frame(_CLOSE, payload))  # the echo carries the peer's own payload
            self._close_sent = True
        return CloseReceived(code, reason, by_peer)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (7.1.7): our close frame queued unless one went out, input ignored."""
        self._failure = (code, reason)
        self._parts = None
        self._decoder = None
        if not self._close_sent:
            self._close_sent = True
            self._queue(self._frame(_CLOSE, code.to_bytes(2, "big") + reason.encode()))

    def _queue(self, frame: bytes) -> None:
        """Queue an automatic reply for :meth:`data_to_send`."""
        if self._outbox is None:
            self._outbox = [frame]
        else:
            self._outbox.append(frame)
