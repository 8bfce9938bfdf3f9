"""The :class:`~ocpprpc._ws.wsproto_codec.WebSocketCodec` seam on websockets' sans-IO protocol.

Why a second codec
------------------
Per frame, websockets' sans-IO :class:`websockets.protocol.Protocol` costs about
a third of wsproto (``ws-floor.md``; ``bench/bench_ws_codec.py`` measures it
here), and masks with a C function.  It is used only *after* the opening
handshake, which stays with wsproto's ``H11Handshake`` (:mod:`ocpprpc._ws.handshake`)
so that the OCPP rules built on it (identity, Basic auth, subprotocols, HTTP
errors) exist once.  The modules imported here (``websockets.protocol``,
``.frames``, ``.extensions``, ``.exceptions``) import no asyncio, so the codec
serves trio and asyncio alike.

What is ours and what is websockets'
------------------------------------
websockets parses and serialises frames, masks on the client side, answers
pings, echoes the peer's close frame, enforces RFC 6455 framing rules (1002),
refuses a frame whose *announced* length would take a message past the size
limit before reading its payload (fragments count towards the message), and
bounds inflation to what is left of that limit.  It does not decode text, so
UTF-8 is checked here: a whole frame with one ``bytes.decode`` (the hot path),
a fragmented message with an incremental decoder so bad UTF-8 fails at the
fragment that carries it, as with wsproto.  Binary frames (1003) and the exact
size limit (1009) are OCPP-J policy and also here.

websockets is given a limit one byte above ours: zlib stops inflating when its
output reaches the limit and leaves the rest of the input unconsumed, which
websockets treats as "too big" even for a message of exactly the limit.  Our
own count (always exact) then refuses anything above ``max_message_size``.

permessage-deflate is negotiated by wsproto; :func:`websockets_extensions`
carries the negotiated parameters (window bits, no-context-takeover, per side)
into websockets' :class:`~websockets.extensions.permessage_deflate.PerMessageDeflate`,
so either codec speaks the same compressed stream (the differential tests
check that in both directions).
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Sequence
from typing import cast

from websockets.extensions.base import Extension as WsExtension
from websockets.extensions.permessage_deflate import PerMessageDeflate as WsPerMessageDeflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import CLIENT, OPEN, SERVER, Protocol
from wsproto.extensions import Extension, PerMessageDeflate

from .frame_codec import deflate_params
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

__all__ = ["WebsocketsCodec", "websockets_extensions"]

# Opcode members (the module-level aliases such as ``websockets.frames.TEXT`` are new in 14).
TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG

#: websockets logs each frame at DEBUG on this logger (only when DEBUG is enabled
#: when the connection is made); quiet by default, like the rest of ocpprpc.
log = logging.getLogger("ocpprpc.websocket.frames")


def websockets_extensions(extensions: Sequence[Extension], *, client: bool) -> list[WsExtension]:
    """websockets' equivalents of the extensions wsproto negotiated during the handshake.

    Only permessage-deflate exists in either library; its four parameters are
    per side (``client_*`` / ``server_*``), websockets' are per direction
    (``local_*`` is what we compress, ``remote_*`` what we inflate).  Extensions
    that were offered but not agreed are left out.
    """
    unknown = [ext.name for ext in extensions if ext.enabled() and not isinstance(ext, PerMessageDeflate)]
    if unknown:  # pragma: no cover - we only ever offer permessage-deflate
        raise ValueError(f"no websockets equivalent for the extension {unknown[0]!r}")
    params = deflate_params(extensions, client=client)  # the per-side -> per-direction mapping, once
    if params is None:
        return []
    return [
        WsPerMessageDeflate(
            remote_no_context_takeover=params.remote_no_context_takeover,
            local_no_context_takeover=params.local_no_context_takeover,
            remote_max_window_bits=params.remote_max_window_bits,
            local_max_window_bits=params.local_max_window_bits,
        )
    ]


class _Protocol(Protocol):
    """websockets' protocol, remembering the first reason it failed the connection.

    ``fail()`` is websockets' public way to fail a connection and the one its
    parser uses; recording the code here gives a :class:`ProtocolFailure` with
    exactly the code that went out, and puts OCPP-J's wording on 1009.
    """

    failure: tuple[int, str] | None = None
    limit = DEFAULT_MAX_MESSAGE_SIZE

    def fail(self, code: CloseCode | int, reason: str = "") -> None:
        if code == 1009:
            reason = f"message bigger than {self.limit} bytes"
        if self.failure is None:
            self.failure = (int(code), reason)
        super().fail(code, reason)


class WebsocketsCodec:
    """:class:`~ocpprpc._ws.wsproto_codec.WebSocketCodec` on websockets' sans-IO ``Protocol``, state OPEN.

    :param client: ``True`` on the client side (our frames are masked, the peer's must not be).
    :param max_message_size: the largest text message accepted, in bytes of UTF-8
        (after inflation); a bigger one fails the connection with 1009.
    :param extensions: the negotiated extensions (:func:`websockets_extensions`).
    :param initial_data: bytes that arrived with the end of the opening handshake;
        they are parsed now and reported by the first :meth:`receive_data` call.
    """

    def __init__(
        self,
        *,
        client: bool,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        extensions: Sequence[WsExtension] = (),
        initial_data: bytes = b"",
    ) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        proto = _Protocol(CLIENT if client else SERVER, state=OPEN, max_size=max_message_size + 1, logger=log)
        proto.limit = max_message_size
        proto.extensions = list(extensions)
        self._proto = proto
        self._max = max_message_size
        self._max_fragments = max_fragments(max_message_size)
        self._outbox: list[bytes] = []
        self._reported = False
        # A fragmented text message in progress: its decoded parts, size so far, decoder.
        self._parts: list[str] = []
        self._size = 0
        self._fragments = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        if initial_data:
            proto.receive_data(initial_data)
            # What websockets answered to it already (the echo of a close frame that came with
            # the 101) goes out with our next write; the frames themselves are read later
            # (WebSocketStream's first read).  Left in proto.writes, an echoed close made
            # ``closed`` true with the echo never sent, and both ends waited close_timeout.
            self._outbox += proto.writes
            proto.writes.clear()

    @property
    def open(self) -> bool:
        return self._proto.state is OPEN

    @property
    def closed(self) -> bool:
        proto = self._proto
        return proto.failure is not None or (proto.close_rcvd is not None and proto.close_sent is not None)

    def data_to_send(self) -> bytes:
        outbox = self._outbox
        if not outbox:
            return b""
        # websockets' end-of-stream marker (SEND_EOF, b"") vanishes in the join:
        # WebSocketStream decides itself when to close TCP.
        out = b"".join(outbox)
        outbox.clear()
        return out

    def send_text(self, text: str) -> bytes:
        proto = self._proto
        if proto.state is not OPEN:
            raise RuntimeError(f"cannot send a message on a WebSocket in state {proto.state.name}")
        proto.send_text(text.encode())
        writes = proto.data_to_send()
        return writes[0] if len(writes) == 1 else b"".join(writes)

    def send_ping(self, payload: bytes = b"") -> bytes:
        proto = self._proto
        if proto.state is not OPEN:
            return b""
        proto.send_ping(payload)
        return b"".join(proto.data_to_send())

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Frame our close frame; the same rules as wsproto for codes that cannot go on the wire.

        Codes that may not appear on the wire (1005, 1006, 1015, reserved ones)
        become 1000; the reason is cut to 123 bytes at a character boundary (a
        control frame carries at most 125).
        """
        proto = self._proto
        if proto.state is not OPEN:
            return b""
        if code not in WIRE_CLOSE_CODES:
            code = 1000
        proto.send_close(code, cut_close_reason(reason))
        return b"".join(proto.data_to_send())

    def receive_data(self, data: bytes) -> list[CodecEvent]:
        if self._reported:
            # After a failure input is noise (RFC 6455 7.1.7); websockets discards it too.
            return []
        proto = self._proto
        proto.receive_data(data)
        # Past the opening handshake websockets' base Protocol produces only frames.
        frames = cast("list[Frame]", proto.events_received())
        writes = proto.writes
        if writes:
            # Pongs and the echo of a close frame, in the order websockets queued them.
            self._outbox += writes
            writes.clear()
        out: list[CodecEvent] = []
        for frame in frames:
            opcode = frame.opcode
            if opcode is TEXT and frame.fin:
                payload = frame.data
                if len(payload) > self._max:
                    return self._fail_into(out, 1009, "")
                try:
                    # str(), not .decode(): on the client side the payload is a bytearray.
                    out.append(str(payload, "utf-8"))
                except UnicodeDecodeError as exc:
                    return self._fail_into(out, 1007, f"invalid UTF-8: {exc.reason} at position {exc.start}")
            elif opcode is TEXT or (opcode is CONT and self._decoder is not None):
                if self._decoder is None:
                    self._decoder = codecs.getincrementaldecoder("utf-8")()
                payload = frame.data
                self._size += len(payload)
                if self._size > self._max:
                    return self._fail_into(out, 1009, "")
                self._fragments += 1
                if self._fragments > self._max_fragments:
                    # Empty continuation frames add nothing to the size (see _wsproto_codec).
                    return self._fail_into(out, 1008, too_many_fragments(self._max_fragments))
                try:
                    self._parts.append(self._decoder.decode(payload, frame.fin))
                except UnicodeDecodeError as exc:
                    return self._fail_into(out, 1007, f"invalid UTF-8: {exc.reason}")
                if frame.fin:
                    out.append("".join(self._parts))
                    self._parts.clear()
                    self._size = 0
                    self._fragments = 0
                    self._decoder = None
            elif opcode is PING:
                # websockets queued the pong already (it is in the outbox above).
                out.append(PingReceived(bytes(frame.data)))
            elif opcode is PONG:
                out.append(PongReceived(bytes(frame.data)))
            elif opcode is CLOSE:
                close = proto.close_rcvd
                assert close is not None
                # websockets echoed it (close_rcvd_then_sent) unless it answers our own close.
                out.append(CloseReceived(int(close.code), close.reason, bool(proto.close_rcvd_then_sent)))
                return out
            else:
                # BINARY, or a continuation of a binary message (which fails on its first frame).
                assert opcode is BINARY or opcode is CONT
                # OCPP-J is text only (RFC 6455 7.4.1: 1003 "cannot accept this type of data").
                return self._fail_into(out, 1003, "binary frames are not accepted")
        return self._report_failure(out)

    def _report_failure(self, out: list[CodecEvent]) -> list[CodecEvent]:
        """Append websockets' own verdict (framing 1002, bad close reason 1007, too big 1009) once."""
        failure = self._proto.failure
        if failure is not None and not self._reported:
            self._reported = True
            self._outbox += self._proto.data_to_send()
            out.append(ProtocolFailure(*failure))
        return out

    def _fail_into(self, out: list[CodecEvent], code: int, reason: str) -> list[CodecEvent]:
        """Fail the connection for our own policy (RFC 6455 7.1.7): close frame queued, input ignored."""
        self._parts.clear()
        self._decoder = None
        self._proto.fail(code, reason)
        return self._report_failure(out)
