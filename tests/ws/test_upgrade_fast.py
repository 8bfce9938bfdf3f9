"""The server's fast path through an upgrade request: exactly what h11 and wsproto make of it, or nothing.

:func:`parse_upgrade` may only accept a request that h11 and wsproto accept, with the same
target, headers, host and subprotocols, and the same bytes left over; anything else must go
through them (``None``).  The differential tests generate requests from pieces that are
valid, nearly valid and hostile and compare both readings; the socket tests check that each
road (fast, h11, and the fast road replayed through wsproto when the answer needs it) opens a
working WebSocket on both backends and both frame codecs.
"""

from __future__ import annotations

import base64

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from ocpprpc._ws.handshake import StationRequest, accept_websocket
from ocpprpc._ws.upgrade_fast import FAST_HEAD_LIMIT, FastUpgrade, accept_response, parse_upgrade
from ocpprpc._ws.websocket import WebSocketStream

from .helpers import read_until_eof, tcp_server

#: The socket tests run on both frame codecs; the parser's own need neither codec nor backend.
on_both_codecs = pytest.mark.usefixtures("ws_codec")

KEY = base64.b64encode(bytes(range(16)))

STATION = (
    b"GET /ocpp/CP-1?tenant=a HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9000\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: ocpp2.0.1, ocpp1.6\r\n"
    b"Authorization: Basic Q1AtMTpzZWNyZXQ=\r\n"
    b"\r\n"
)


def h11_reading(data: bytes) -> tuple[Request, bytes] | None:
    """What wsproto (over h11) makes of ``data`` fed in one piece: its request and the bytes after it."""
    handshake = H11Handshake(ConnectionType.SERVER)
    try:
        handshake.receive_data(data)
        events = list(handshake.events())
    except (RemoteProtocolError, UnicodeError):
        return None
    requests = [event for event in events if isinstance(event, Request)]
    if not requests:
        return None
    return requests[0], handshake._h11_connection.trailing_data[0]


def assert_same_reading(data: bytes) -> FastUpgrade | None:
    fast = parse_upgrade(data)
    if fast is None:
        return None
    reading = h11_reading(data)
    assert reading is not None, f"the fast path accepted what h11/wsproto refuse: {data!r}"
    request, trailing = reading
    assert fast.target == request.target
    assert fast.extra_headers == list(request.extra_headers)
    assert fast.host == request.host
    assert fast.subprotocols == list(request.subprotocols)
    assert fast.offers_extensions == bool(request.extensions)
    assert fast.trailing == trailing
    assert fast.data == data  # what wsproto replays
    assert dict(request.extra_headers)[b"sec-websocket-key"] == fast.key
    return fast


# -- the parser alone -----------------------------------------------------------------------------


def test_a_station_request_takes_the_fast_path() -> None:
    fast = assert_same_reading(STATION + b"\x81\x02hi")
    assert fast is not None
    assert fast.target == "/ocpp/CP-1?tenant=a"
    assert fast.host == "127.0.0.1:9000"
    assert fast.subprotocols == ["ocpp2.0.1", "ocpp1.6"]
    assert fast.key == KEY
    assert fast.trailing == b"\x81\x02hi"
    assert (b"authorization", b"Basic Q1AtMTpzZWNyZXQ=") in fast.extra_headers
    assert not fast.offers_extensions


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(STATION[:-2], id="head not complete in the first read"),
        pytest.param(STATION.replace(b"\r\n", b"\n"), id="bare LF line ends"),
        pytest.param(STATION.replace(b"GET", b"POST", 1), id="POST"),
        pytest.param(STATION.replace(b"HTTP/1.1", b"HTTP/1.0", 1), id="HTTP/1.0"),
        pytest.param(STATION.replace(b"Host: ", b"X-A: b\r\n Host: ", 1), id="obsolete line fold"),
        pytest.param(
            STATION.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\nUpgrade: h2c\r\n"),
            id="two Upgrade",
        ),
        pytest.param(STATION.replace(b"Host: 127.0.0.1:9000\r\n", b"Host: a\r\nHost: b\r\n"), id="two Host"),
        pytest.param(
            STATION.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n"), id="two keys"
        ),
        pytest.param(STATION.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"), id="a body length"),
        pytest.param(STATION.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"), id="chunked"),
        pytest.param(STATION.replace(b"127.0.0.1:9000", b"xn--bcher-kva.example"), id="IDNA host"),
        pytest.param(STATION.replace(b"127.0.0.1:9000", "bücher".encode()), id="non-ASCII host"),
        pytest.param(STATION.replace(b"ocpp1.6", "ocpp1.6é".encode()), id="non-ASCII subprotocol"),
        pytest.param(STATION.replace(b"Version: 13", b"Version: 8"), id="version 8"),
        pytest.param(STATION.replace(b"Upgrade: websocket", b"Upgrade: h2c"), id="not websocket"),
        pytest.param(
            STATION.replace(b"Connection: Upgrade", b"Connection: keep-alive"), id="no Connection: Upgrade"
        ),
        pytest.param(STATION.replace(b"Sec-WebSocket-Key: " + KEY + b"\r\n", b""), id="no key"),
        pytest.param(STATION.replace(b"Host: 127.0.0.1:9000\r\n", b""), id="no Host"),
        pytest.param(
            STATION.replace(b"Upgrade: websocket", b"Upgrade : websocket"), id="space before the colon"
        ),
        pytest.param(STATION.replace(b"/ocpp/CP-1", b"/ocpp/CP 1"), id="space in the target"),
        pytest.param(STATION.replace(b"\r\n\r\n", b"\r\nX-A: \x00\r\n\r\n"), id="NUL in a value"),
        pytest.param(
            b"GET /" + b"a" * FAST_HEAD_LIMIT + STATION[STATION.index(b" HTTP/1.1") :],
            id="head over the limit",
        ),
        pytest.param(b"", id="nothing"),
        pytest.param(b"\r\n" + STATION, id="leading empty line"),
    ],
)
def test_anything_unusual_is_left_to_h11(data: bytes) -> None:
    assert parse_upgrade(data) is None


def test_what_the_fast_path_keeps_matches_wsproto_on_common_variations() -> None:
    variations = [
        STATION.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"),
        STATION.replace(b"Upgrade: websocket", b"Upgrade: WebSocket"),
        STATION.replace(b"Host: 127.0.0.1:9000", b"hOsT:\t Example.COM \t"),
        STATION.replace(b"ocpp2.0.1, ocpp1.6", b"ocpp1.6,,ocpp2.0.1 ,"),
        STATION.replace(
            b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ),
        STATION.replace(b"\r\n\r\n", b"\r\nX-Vendor: \x80\xff obs text\r\nX-Empty:\r\n\r\n"),
        STATION.replace(b"Sec-WebSocket-Protocol: ocpp2.0.1, ocpp1.6\r\n", b""),
    ]
    for data in variations:
        assert assert_same_reading(data) is not None, data


# Pieces of requests: mostly what stations send, with near misses and hostile bytes mixed in.
_NAMES = st.sampled_from(
    [b"Host", b"host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version",
     b"Sec-WebSocket-Protocol", b"Sec-WebSocket-Extensions", b"Authorization", b"Content-Length",
     b"Transfer-Encoding", b"X-Forwarded-For", b"Origin", b"X-A", b"X A", b"", b"X-\xe9"]
)  # fmt: skip
_PLAIN_NAMES = st.sampled_from([b"Authorization", b"Origin", b"X-Forwarded-For", b"User-Agent", b"X-A"])
_VALUES = st.one_of(
    st.sampled_from(
        [b"websocket", b"Upgrade", b"keep-alive, upgrade", b"13", b"8", KEY, b"localhost",
         b"127.0.0.1:80", b"[::1]:9000", b"xn--nxasmq6b", b"ocpp1.6", b"ocpp2.0.1, ocpp1.6", b"ocpp1.6,",
         b"permessage-deflate", b"0", b"chunked", b"", b" padded\t", b"a  b", b"\x80\xff", b"\x00",
         b"a\rb", b"a\nb", "é".encode()]
    ),
    st.binary(max_size=12),
)  # fmt: skip
_EOL = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])
_REQUEST_LINES = st.one_of(
    st.sampled_from(
        [b"GET /ocpp/CP-1 HTTP/1.1", b"GET /ocpp/CP%201?a=b HTTP/1.1", b"GET /ocpp/CP-1 HTTP/1.0",
         b"POST / HTTP/1.1", b"get / HTTP/1.1", b"GET  / HTTP/1.1", b"GET / HTTP/1.1 ",
         b"GET /\x7f HTTP/1.1", b"GET /\xe9 HTTP/1.1"]
    ),
    st.binary(max_size=20),
)  # fmt: skip


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A station's request with some of its lines left out, doubled, bent or added (valid or hostile)."""
    base = [
        (b"Host", b"localhost"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", KEY),
        (b"Sec-WebSocket-Version", b"13"),
        (b"Sec-WebSocket-Protocol", b"ocpp1.6"),
    ]
    if draw(st.booleans()):  # a station's request, with other headers of any value
        headers = base + draw(st.lists(st.tuples(_PLAIN_NAMES, _VALUES), max_size=3))
    else:
        headers = [header for header in base if draw(st.integers(0, 9))]  # each kept 9 times in 10
        headers += draw(st.lists(st.sampled_from(base), max_size=2))  # doubled
        headers += draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=3))  # others
    headers = draw(st.permutations(headers))
    clean = draw(st.booleans())  # half the requests keep RFC line ends and separators throughout
    eol = st.just(b"\r\n") if clean else _EOL
    separators = st.sampled_from([b": ", b":"]) if clean else st.sampled_from([b": ", b":", b":\t", b" : "])
    line = (
        st.sampled_from([b"GET /ocpp/CP-1 HTTP/1.1", b"GET /ocpp/CP%201?a=b HTTP/1.1"])
        if clean
        else _REQUEST_LINES
    )
    out = draw(line) + draw(eol)
    for name, value in headers:
        out += name + draw(separators) + value + draw(eol)
    return (
        out
        + (b"\r\n" if clean else draw(st.sampled_from([b"\r\n", b"\n", b""])))
        + draw(st.binary(max_size=8))
    )


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
@example(STATION)
def test_generated_requests_read_as_h11_and_wsproto_read_them(data: bytes) -> None:
    event("fast path" if assert_same_reading(data) is not None else "left to h11")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_read_as_h11_and_wsproto_read_them(data: bytes) -> None:
    assert_same_reading(data)


@given(
    key=st.binary(min_size=1, max_size=40).map(base64.b64encode),
    subprotocol=st.sampled_from([None, "ocpp1.6", "ocpp2.0.1", "ocpp2.1"]),
)
def test_the_101_answer_is_byte_for_byte_wsproto_s(key: bytes, subprotocol: str | None) -> None:
    request = b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    request += b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n"
    request += b"Sec-WebSocket-Protocol: ocpp1.6, ocpp2.0.1, ocpp2.1\r\n\r\n"
    handshake = H11Handshake(ConnectionType.SERVER)
    handshake.receive_data(request)
    list(handshake.events())
    assert accept_response(key, subprotocol) == handshake.send(AcceptConnection(subprotocol=subprotocol))


# -- each road over real sockets ------------------------------------------------------------------


class Recorder:
    """Reads upgrade requests, notes which road each took, accepts (with ``headers``) and echoes."""

    def __init__(self, *, headers: dict[str, str] | None = None, compression: bool = False) -> None:
        self.headers = headers
        self.compression = compression
        self.fast: list[bool] = []
        self.sockets: list[WebSocketStream] = []
        self.requests: list[StationRequest] = []

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        request = await accept_websocket(stream, protocols=["ocpp1.6"], compression=self.compression)
        self.fast.append(request._fast is not None)
        self.requests.append(request)
        ws = await request.accept(headers=self.headers)
        self.sockets.append(ws)
        try:
            while True:
                await ws.send(await ws.receive())
        except Exception:
            pass


def masked_text(text: bytes) -> bytes:
    """A client's masked text frame (mask 0: the payload reads as is)."""
    return bytes([0x81, 0x80 | len(text)]) + b"\x00\x00\x00\x00" + text


async def open_raw(port: int, pieces: list[bytes]) -> tuple[anyio.abc.SocketStream, bytes, bytes]:
    """Send ``pieces`` (a pause between them); the answer's head and what came after it in its reads."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    for piece in pieces:
        await stream.send(piece)
        await anyio.sleep(0.05)
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, rest = data.partition(b"\r\n\r\n")
    return stream, head + b"\r\n", rest


async def read_echo(stream: anyio.abc.SocketStream, rest: bytes, text: bytes) -> bytes:
    with anyio.fail_after(5):
        while text not in rest:
            rest += await stream.receive()
    return rest


REQUEST = STATION.replace(b"ocpp2.0.1, ocpp1.6", b"ocpp1.6")


@on_both_codecs
async def test_a_frame_sent_right_behind_the_request_is_not_lost() -> None:
    recorder = Recorder()
    async with tcp_server(recorder.handle) as port:
        stream, head, rest = await open_raw(port, [REQUEST + masked_text(b"early")])
        async with stream:
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await read_echo(stream, rest, b"early") == b"\x81\x05early"
    assert recorder.fast == [True]
    assert recorder.requests[0]._fast is None  # the request's bytes let go once open


@on_both_codecs
async def test_a_request_in_two_reads_goes_through_h11_and_opens_the_same_websocket() -> None:
    recorder = Recorder()
    async with tcp_server(recorder.handle) as port:
        stream, head, rest = await open_raw(port, [REQUEST[:40], REQUEST[40:] + masked_text(b"late")])
        async with stream:
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await read_echo(stream, rest, b"late") == b"\x81\x04late"
    assert recorder.fast == [False]


@on_both_codecs
async def test_answer_headers_and_deflate_replay_the_fast_request_through_wsproto() -> None:
    recorder = Recorder(headers={"X-Served-By": "node-a"}, compression=True)
    offer = REQUEST.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    async with tcp_server(recorder.handle) as port:
        stream, head, _ = await open_raw(port, [offer])
        async with stream:
            assert b"\r\nX-Served-By: node-a\r\n" in head
            assert b"\r\nSec-WebSocket-Extensions: permessage-deflate" in head
            assert b"\r\nSec-WebSocket-Protocol: ocpp1.6\r\n" in head
    assert recorder.fast == [True]
    assert recorder.sockets[0].compression


@on_both_codecs
async def test_a_bad_request_in_one_read_still_gets_h11_s_answer() -> None:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        with pytest.raises(Exception, match="HTTP 400"):
            await accept_websocket(stream, protocols=["ocpp1.6"])

    async with tcp_server(handle) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(REQUEST.replace(b"Host: 127.0.0.1:9000\r\n", b"Host: a\r\nHost: b\r\n"))
        answer = await read_until_eof(stream)
    assert answer.startswith(b"HTTP/1.1 400 ")
