"""Differential tests: the websockets codec against the wsproto codec, each the other's oracle.

Every frame one codec produces must be read by the other (and by itself) as
what was sent, in both directions (a station's masked frames, a CSMS's
unmasked ones), with permessage-deflate off and on under several negotiated
parameter sets.  Input neither of our codecs would produce (fragments, bytes
split anywhere, binary, bad UTF-8, oversized and malformed frames) comes from
third-party senders (wsproto's and websockets' own sans-IO connections) or from
hand-made frames, and both codecs must give the same verdict: the same
messages, or the same close code, and a close frame the other codec accepts.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate as WsPerMessageDeflate
from websockets.protocol import CLIENT, SERVER, Protocol
from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionType
from wsproto.events import AcceptConnection, Ping, Request, TextMessage
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake

from ocpprpc._ws.frame_codec import FrameCodec, deflate_params
from ocpprpc._ws.handshake import _make_codec, open_websocket, resolve_ws_codec
from ocpprpc._ws.websockets_codec import WebsocketsCodec, websockets_extensions
from ocpprpc._ws.wsproto_codec import (
    CloseReceived,
    CodecEvent,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    WebSocketCodec,
    WsprotoCodec,
    deflate_extension,
)

from .helpers import frame, tcp_server

CODECS = ("wsproto", "websockets", "ocpprpc")
#: permessage-deflate parameter sets the station offers (None: not negotiated).
DEFLATE: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "deflate": {},
    "no-context-takeover": {"client_no_context_takeover": True, "server_no_context_takeover": True},
    "small-windows": {"client_max_window_bits": 9, "server_max_window_bits": 10},
}
LIMIT = 256


def negotiate(params: dict[str, Any] | None, limit: int) -> tuple[list[Extension], list[Extension]]:
    """Run wsproto's permessage-deflate negotiation: (station's extensions, CSMS's extensions)."""
    if params is None:
        return [], []
    station = deflate_extension(limit)
    for name, value in params.items():
        setattr(station, name, value)
    csms = deflate_extension(limit)
    answer = csms.accept(f"permessage-deflate; {station.offer()}")
    assert isinstance(answer, str)
    station.finalize(f"permessage-deflate; {answer}")
    return [station], [csms]


def make(kind: str, *, client: bool, extensions: list[Extension], limit: int = LIMIT) -> WebSocketCodec:
    if kind == "wsproto":
        side = ConnectionType.CLIENT if client else ConnectionType.SERVER
        return WsprotoCodec(Connection(side, extensions), max_message_size=limit)
    if kind == "ocpprpc":
        return FrameCodec(
            client=client, max_message_size=limit, deflate=deflate_params(extensions, client=client)
        )
    return WebsocketsCodec(
        client=client, max_message_size=limit, extensions=websockets_extensions(extensions, client=client)
    )


def link(
    sender: str,
    receiver: str,
    direction: str,
    deflate: str = "plain",
    *,
    limit: int = LIMIT,
    send_limit: int | None = None,
) -> tuple[WebSocketCodec, WebSocketCodec]:
    """Two codecs as the two ends of one connection: (sending end, receiving end).

    ``limit`` is the receiving end's maximum message size; the sending end's is
    ``send_limit`` (default: the same), which only matters for what it receives.
    """
    station_ext, csms_ext = negotiate(DEFLATE[deflate], limit)
    station_sends = direction == "station->csms"
    send_end = make(
        sender,
        client=station_sends,
        extensions=station_ext if station_sends else csms_ext,
        limit=limit if send_limit is None else send_limit,
    )
    receive_end = make(
        receiver, client=not station_sends, extensions=csms_ext if station_sends else station_ext, limit=limit
    )
    return send_end, receive_end


PAIRS = list(itertools.product(CODECS, CODECS, ("station->csms", "csms->station")))
PAIR_IDS = [f"{s}->{r}:{d}" for s, r, d in PAIRS]


def utf8_len(text: str) -> int:
    return len(text.encode())


# -- what our codecs produce, the other reads -----------------------------------------


@pytest.mark.parametrize("deflate", list(DEFLATE))
@pytest.mark.parametrize(("sender", "receiver", "direction"), PAIRS, ids=PAIR_IDS)
def test_messages_cross_over(sender: str, receiver: str, direction: str, deflate: str) -> None:
    send_end, receive_end = link(sender, receiver, direction, deflate, limit=65536)
    messages = [
        '[2,"1","Heartbeat",{}]',
        "",
        "ünïcödé ⚡ 𝄞",
        "x" * 125,
        "y" * 126,  # 16-bit length
        "z" * 65535,
        "é" * 32768,  # exactly the limit in UTF-8 bytes
        '[2,"2","DataTransfer",{"data":"' + "abc" * 5000 + '"}]',
    ]
    for message in messages:
        assert receive_end.receive_data(send_end.send_text(message)) == [message]
    # Several frames in one read, and the context carried between messages.
    data = b"".join(send_end.send_text(m) for m in messages[:4])
    assert receive_end.receive_data(data) == messages[:4]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pair=st.sampled_from(PAIRS),
    deflate=st.sampled_from(list(DEFLATE)),
    base=st.text(max_size=40),
    delta=st.integers(-3, 3),
)
def test_any_text_around_the_limit(pair: tuple[str, str, str], deflate: str, base: str, delta: int) -> None:
    """Text of any characters, padded to a size near the limit: delivered, or 1009 past it."""
    sender, receiver, direction = pair
    send_end, receive_end = link(sender, receiver, direction, deflate)
    text = base + "a" * max(0, LIMIT + delta - utf8_len(base))
    events = receive_end.receive_data(send_end.send_text(text))
    if utf8_len(text) <= LIMIT:
        assert events == [text]
    else:
        assert events == [ProtocolFailure(1009, f"message bigger than {LIMIT} bytes")]


@pytest.mark.parametrize(("sender", "receiver", "direction"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("payload", [b"", b"keepalive", bytes(range(125))])
def test_ping_is_answered_across(sender: str, receiver: str, direction: str, payload: bytes) -> None:
    send_end, receive_end = link(sender, receiver, direction)
    assert receive_end.receive_data(send_end.send_ping(payload)) == [PingReceived(payload)]
    assert send_end.receive_data(receive_end.data_to_send()) == [PongReceived(payload)]
    assert receive_end.data_to_send() == b""


@pytest.mark.parametrize(("sender", "receiver", "direction"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize(
    ("code", "reason", "expected_code", "expected_reason"),
    [
        (1000, "", 1000, ""),
        (1001, "going away", 1001, "going away"),
        (1002, "no supported OCPP version offered", 1002, "no supported OCPP version offered"),
        (1011, "ünïcödé", 1011, "ünïcödé"),
        (3000, "", 3000, ""),
        (4999, "x" * 123, 4999, "x" * 123),
        (4000, "é" * 70, 4000, "é" * 61),  # cut to 123 bytes at a character boundary
        (1005, "", 1000, ""),  # local-only codes never go on the wire
        (1006, "", 1000, ""),
        (1004, "reserved", 1000, "reserved"),
    ],
)
def test_close_handshake_across(
    sender: str,
    receiver: str,
    direction: str,
    code: int,
    reason: str,
    expected_code: int,
    expected_reason: str,
) -> None:
    send_end, receive_end = link(sender, receiver, direction)
    data = send_end.send_close(code, reason)
    assert not send_end.open and not send_end.closed
    assert send_end.send_close(1000) == b"" and send_end.send_ping() == b""
    with pytest.raises(RuntimeError):
        send_end.send_text("too late")
    assert receive_end.receive_data(data) == [CloseReceived(expected_code, expected_reason, True)]
    assert not receive_end.open and receive_end.closed
    assert send_end.receive_data(receive_end.data_to_send()) == [
        CloseReceived(expected_code, expected_reason, False)
    ]
    assert send_end.closed
    # Input after the close handshake is ignored by both.
    assert send_end.receive_data(b"\x81\x00") == [] and receive_end.receive_data(b"\x81\x00") == []


# -- fragmentation and arbitrary read boundaries ------------------------------------


def fragments_wsproto(direction: str, parts: Sequence[str], ping_after: int | None = None) -> bytes:
    """A fragmented text message from wsproto's own connection (fragments split between characters)."""
    peer = Connection(ConnectionType.CLIENT if direction == "station->csms" else ConnectionType.SERVER)
    out = b""
    for i, part in enumerate(parts):
        out += peer.send(TextMessage(data=part, message_finished=i == len(parts) - 1))
        if i == ping_after:
            out += peer.send(Ping(payload=b"mid"))
    return out


def fragments_websockets(direction: str, parts: Sequence[bytes]) -> bytes:
    """A fragmented text message from websockets' protocol (fragments may split a character)."""
    peer = Protocol(CLIENT if direction == "station->csms" else SERVER)
    peer.send_text(parts[0], fin=len(parts) == 1)
    for i, part in enumerate(parts[1:], 2):
        peer.send_continuation(part, fin=i == len(parts))
    return b"".join(peer.data_to_send())


def receiver_for(kind: str, direction: str, limit: int = LIMIT) -> WebSocketCodec:
    return make(kind, client=direction == "csms->station", extensions=[], limit=limit)


def feed(codec: WebSocketCodec, chunks: Sequence[bytes]) -> list[CodecEvent]:
    events: list[CodecEvent] = []
    for chunk in chunks:
        events += codec.receive_data(chunk)
    return events


@pytest.mark.parametrize("direction", ["station->csms", "csms->station"])
@pytest.mark.parametrize("kind", CODECS)
def test_small_fragmented_message_split_at_every_boundary(kind: str, direction: str) -> None:
    data = fragments_wsproto(direction, ["[2,", '"id","Hé', 'a",{}]'], ping_after=0)
    data += fragments_websockets(direction, ["ü".encode()[:1], "ü".encode()[1:] + b"!"])
    expected = [PingReceived(b"mid"), '[2,"id","Héa",{}]', "ü!"]
    for i in range(len(data) + 1):
        assert feed(receiver_for(kind, direction), [data[:i], data[i:]]) == expected, i
    for i, j in itertools.combinations(range(0, len(data) + 1, 3), 2):
        assert feed(receiver_for(kind, direction), [data[:i], data[i:j], data[j:]]) == expected, (i, j)
    assert feed(receiver_for(kind, direction), [data[i : i + 1] for i in range(len(data))]) == expected


@settings(max_examples=100, deadline=None)
@given(
    direction=st.sampled_from(["station->csms", "csms->station"]),
    text=st.text(min_size=1, max_size=80),
    pad=st.integers(LIMIT - 90, LIMIT + 3),
    cuts=st.lists(st.integers(0, 400), max_size=5),
    reads=st.lists(st.integers(1, 50), min_size=1, max_size=8),
)
def test_fragmented_text_split_anywhere_gets_the_same_verdict(
    direction: str, text: str, pad: int, cuts: list[int], reads: list[int]
) -> None:
    """Fragments cut at any byte (inside characters too), read in any pieces: both codecs agree."""
    raw = (text + "a" * max(0, pad - utf8_len(text))).encode()
    points = sorted({c for c in cuts if 0 < c < len(raw)})
    parts = [raw[a:b] for a, b in itertools.pairwise([0, *points, len(raw)])]
    data = fragments_websockets(direction, parts)
    chunks, at = [], 0
    for size in itertools.cycle(reads):
        if at >= len(data):
            break
        chunks.append(data[at : at + size])
        at += size
    verdicts = [feed(receiver_for(kind, direction), chunks) for kind in CODECS]
    assert all(verdict == verdicts[0] for verdict in verdicts[1:])
    if len(raw) <= LIMIT:
        assert verdicts[0] == [raw.decode()]
    else:
        assert verdicts[0] == [ProtocolFailure(1009, f"message bigger than {LIMIT} bytes")]


# -- hostile input: the same verdict, a close frame the other side accepts -------------


def masked(direction: str) -> bool:
    return direction == "station->csms"


def hostile_inputs(direction: str) -> dict[str, tuple[bytes, int]]:
    """Input that must fail the connection, with the close code both codecs must send."""
    m = masked(direction)
    big = LIMIT + 1
    return {
        "binary": (frame(0x2, b"\x00\x01", mask=m), 1003),
        "binary-fragmented": (frame(0x2, b"\x00", fin=False, mask=m) + frame(0x0, b"\x01", mask=m), 1003),
        "invalid-utf8": (frame(0x1, b"ok \xff", mask=m), 1007),
        "invalid-utf8-fragments": (
            frame(0x1, b"ok \xe2\x82", fin=False, mask=m) + frame(0x0, b"(", mask=m),
            1007,
        ),
        "overlong-utf8": (frame(0x1, b"\xc0\xaf", mask=m), 1007),
        "surrogate-utf8": (frame(0x1, b"\xed\xa0\x80", mask=m), 1007),
        "too-big": (frame(0x1, b"a" * big, mask=m), 1009),
        "too-big-fragments": (
            frame(0x1, b"a" * (LIMIT - 10), fin=False, mask=m) + frame(0x0, b"a" * 11, mask=m),
            1009,
        ),
        "wrong-masking": (frame(0x1, b"hi", mask=not m), 1002),
        "reserved-bits": (frame(0x1, b"hi", rsv1=True, mask=m), 1002),
        "unknown-opcode": (frame(0x3, b"", mask=m), 1002),
        "continuation-first": (frame(0x0, b"hi", mask=m), 1002),
        "text-inside-message": (frame(0x1, b"a", fin=False, mask=m) + frame(0x1, b"b", mask=m), 1002),
        "fragmented-ping": (frame(0x9, b"", fin=False, mask=m), 1002),
        "long-ping": (frame(0x9, b"p" * 126, mask=m), 1002),
        "close-1-byte": (frame(0x8, b"\x03", mask=m), 1002),
        "close-code-999": (frame(0x8, struct.pack("!H", 999), mask=m), 1002),
        "close-code-1005": (frame(0x8, struct.pack("!H", 1005), mask=m), 1002),
        "close-reason-invalid-utf8": (frame(0x8, struct.pack("!H", 1000) + b"\xff", mask=m), 1007),
    }


HOSTILE = [(d, name) for d in ("station->csms", "csms->station") for name in hostile_inputs(d)]


@pytest.mark.parametrize(("direction", "case"), HOSTILE, ids=[f"{d}:{n}" for d, n in HOSTILE])
def test_hostile_input_gets_the_same_close_code(direction: str, case: str) -> None:
    data, code = hostile_inputs(direction)[case]
    for kind, oracle in itertools.product(CODECS, CODECS):
        codec = receiver_for(kind, direction)
        events = codec.receive_data(data)
        assert len(events) == 1 and isinstance(events[0], ProtocolFailure), (kind, events)
        assert events[0].code == code, (kind, events)
        assert not codec.open and codec.closed
        # The close frame that failed the peer is valid for the other implementation too.
        peer = make(oracle, client=direction == "station->csms", extensions=[])
        assert peer.receive_data(codec.data_to_send()) == [CloseReceived(code, events[0].reason, True)]
        # Nothing more is read after the failure.
        assert codec.receive_data(frame(0x1, b"more", mask=masked(direction))) == []
        assert codec.data_to_send() == b""


@pytest.mark.parametrize("direction", ["station->csms", "csms->station"])
@pytest.mark.parametrize("kind", CODECS)
def test_huge_announced_frame_is_refused_within_the_limit(kind: str, direction: str) -> None:
    """A frame announcing 1 TiB fails once the limit is passed, never buffered whole.

    websockets and ours refuse on the announced length alone; wsproto, which hands over
    partial frames, once one byte more than the limit has arrived.
    """
    head = frame(0x1, b"", mask=masked(direction), length=1 << 40, key=bytes(4))
    too_big = [ProtocolFailure(1009, f"message bigger than {LIMIT} bytes")]
    codec = receiver_for(kind, direction)
    if kind != "wsproto":
        assert codec.receive_data(head) == too_big
    else:
        assert codec.receive_data(head + b"a" * LIMIT) == []
        assert codec.receive_data(b"a") == too_big


@pytest.mark.parametrize("direction", ["station->csms", "csms->station"])
@pytest.mark.parametrize("kind", CODECS)
def test_oversized_fragment_is_refused_before_the_message_is_complete(kind: str, direction: str) -> None:
    m = masked(direction)
    codec = receiver_for(kind, direction)
    assert codec.receive_data(frame(0x1, b"a" * 200, fin=False, mask=m)) == []
    # The second fragment's header already takes the message past the limit.
    head = frame(0x0, b"", mask=m, length=100, key=bytes(4))
    assert codec.receive_data(head + b"a" * 60) == [
        ProtocolFailure(1009, f"message bigger than {LIMIT} bytes")
    ]


@pytest.mark.parametrize("direction", ["station->csms", "csms->station"])
@pytest.mark.parametrize("kind", CODECS)
@pytest.mark.parametrize("fragmented", [False, True])
def test_deflate_bomb_gets_1009_from_both(kind: str, direction: str, fragmented: bool) -> None:
    station_ext, csms_ext = negotiate({}, LIMIT)
    client = direction == "csms->station"
    codec = make(kind, client=client, extensions=station_ext if client else csms_ext)
    compressor = zlib.compressobj(wbits=-15)
    bomb = compressor.compress(b"a" * (64 << 10)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    assert len(bomb) < LIMIT
    m = masked(direction)
    if fragmented:
        data = frame(0x1, bomb[:20], fin=False, rsv1=True, mask=m) + frame(0x0, bomb[20:], mask=m)
    else:
        data = frame(0x1, bomb, rsv1=True, mask=m)
    assert codec.receive_data(data) == [ProtocolFailure(1009, f"message bigger than {LIMIT} bytes")]


@pytest.mark.parametrize(("sender", "receiver", "direction"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("deflate", ["deflate", "no-context-takeover"])
def test_compressed_message_at_exactly_the_limit(
    sender: str, receiver: str, direction: str, deflate: str
) -> None:
    """zlib stops at the output limit; a message of exactly the limit must still pass."""
    send_end, receive_end = link(sender, receiver, direction, deflate)
    for size in (LIMIT, LIMIT - 1, LIMIT + 1):
        events = receive_end.receive_data(send_end.send_text("b" * size))
        expected: list[CodecEvent] = (
            ["b" * size] if size <= LIMIT else [ProtocolFailure(1009, f"message bigger than {LIMIT} bytes")]
        )
        assert events == expected, size


# -- the handshake bridge ---------------------------------------------------------------


def handshake_pair(
    client_ext: list[Extension], server_ext: list[Extension], extra: Callable[[WSConnection], bytes]
) -> H11Handshake:
    """A client handshake that received the 101 and, in the same bytes, whatever ``extra`` sent."""
    client = H11Handshake(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(
        client.send(
            Request(host="csms", target="/ocpp/CP001", subprotocols=["ocpp1.6"], extensions=client_ext)
        )
    )
    request = next(server.events())
    assert isinstance(request, Request)
    response = server.send(AcceptConnection(subprotocol="ocpp1.6", extensions=server_ext))
    client.receive_data(response + extra(server))
    assert isinstance(next(client.events()), AcceptConnection)
    return client


@pytest.mark.parametrize("kind", CODECS)
def test_frames_arriving_with_the_101_are_not_lost(kind: str) -> None:
    def extra(server: WSConnection) -> bytes:
        return server.send(TextMessage(data="first")) + server.send(Ping(payload=b"p"))

    handshake = handshake_pair([], [], extra)
    codec = _make_codec(resolve_ws_codec(kind), handshake, [], client=True, max_message_size=LIMIT)
    assert codec.receive_data(b"") == ["first", PingReceived(b"p")]
    assert codec.data_to_send() != b""  # the pong


@pytest.mark.parametrize("kind", CODECS)
def test_negotiated_deflate_reaches_the_codec(kind: str) -> None:
    """Parameters agreed in the handshake (no context takeover, small windows) govern the codec."""
    offer = deflate_extension(LIMIT)
    offer.client_no_context_takeover = True
    offer.server_max_window_bits = 9
    server_ext = deflate_extension(LIMIT)

    def extra(server: WSConnection) -> bytes:
        return server.send(TextMessage(data="compressed " * 10))

    handshake = handshake_pair([offer], [server_ext], extra)
    assert offer.enabled() and offer.client_no_context_takeover and offer.server_max_window_bits == 9
    codec = _make_codec(resolve_ws_codec(kind), handshake, [offer], client=True, max_message_size=LIMIT)
    assert codec.receive_data(b"") == ["compressed " * 10]
    (ext,) = websockets_extensions([offer], client=True)
    assert isinstance(ext, WsPerMessageDeflate)
    assert ext.local_no_context_takeover and not ext.remote_no_context_takeover
    assert (ext.local_max_window_bits, ext.remote_max_window_bits) == (15, 9)


def test_offered_but_refused_deflate_gives_no_extension() -> None:
    assert websockets_extensions([deflate_extension(LIMIT)], client=True) == []


def test_codec_names() -> None:
    assert resolve_ws_codec("wsproto") == "wsproto"
    assert resolve_ws_codec("websockets") == "websockets"
    assert resolve_ws_codec("ocpprpc") == "ocpprpc"
    assert resolve_ws_codec("auto") == "ocpprpc"
    assert resolve_ws_codec() == "ocpprpc"
    with pytest.raises(ValueError, match="unknown WebSocket codec"):
        resolve_ws_codec("fast")
    with pytest.raises(ValueError, match="must be positive"):
        WebsocketsCodec(client=True, max_message_size=0)


def test_without_websockets_the_default_codec_still_works() -> None:
    """An installation without websockets (a None entry makes its import fail): ours masks in Python."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['websockets'] = None\n"
        "from ocpprpc._ws import frame_codec\n"
        "from ocpprpc._ws.handshake import resolve_ws_codec\n"
        "assert resolve_ws_codec('auto') == 'ocpprpc'\n"
        "assert frame_codec._apply_mask is frame_codec._xor_mask\n"
        "station, csms = frame_codec.FrameCodec(client=True), frame_codec.FrameCodec(client=False)\n"
        "assert csms.receive_data(station.send_text('hé')) == ['hé']\n"
        "try:\n"
        "    resolve_ws_codec('websockets')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "needs the websockets package" in out.stdout


@pytest.mark.parametrize("client_codec", CODECS)
async def test_frames_sent_with_the_101_over_tcp(client_codec: str) -> None:
    """A server that writes its first frames in the same segment as the 101."""

    async def handler(stream: anyio.abc.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            ws.receive_data(await stream.receive())
            events = list(ws.events())
            if events:
                break
        await stream.send(
            ws.send(AcceptConnection(subprotocol="ocpp1.6")) + ws.send(TextMessage(data="hello"))
        )
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            while True:
                await stream.receive()

    async with tcp_server(handler) as port:
        client = await open_websocket(
            f"ws://127.0.0.1:{port}/ocpp",
            "CP001",
            protocols=["ocpp1.6"],
            ws_codec=resolve_ws_codec(client_codec),
        )
        assert await client.receive() == "hello"
        await client.abort()


def test_the_websockets_codec_imports_no_asyncio() -> None:
    """websockets' sans-IO modules only: a trio program does not load asyncio through us."""
    import subprocess
    import sys

    code = (
        "import sys, ocpprpc._ws.websockets_codec\n"
        "print(','.join(m for m in ('asyncio', 'websockets.asyncio', 'trio') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("station_codec", "csms_codec"), [("websockets", "wsproto"), ("wsproto", "websockets")]
)
async def test_connect_and_serve_take_the_codec(station_codec: str, csms_codec: str) -> None:
    import ocpprpc

    router = ocpprpc.Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: Any) -> dict[str, str]:
        return {"currentTime": "2026-11-20T12:00:00Z"}

    async with (
        ocpprpc.serve(router=router, ws_codec=resolve_ws_codec(csms_codec)) as server,
        ocpprpc.connect(
            f"ws://127.0.0.1:{server.port}/ocpp",
            "CP001",
            compression=True,
            ws_codec=resolve_ws_codec(station_codec),
        ) as station,
    ):
        assert await station.call("Heartbeat", {}) == {"currentTime": "2026-11-20T12:00:00Z"}


def test_server_refuses_an_unknown_codec_at_once() -> None:
    import ocpprpc

    with pytest.raises(ValueError, match="unknown WebSocket codec"):
        ocpprpc.Server(ws_codec="fast")  # type: ignore[arg-type]
