"""The opening handshake over loopback TCP on asyncio and trio: identity, subprotocols, auth, hostile HTTP."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import anyio
import anyio.abc
import pytest
from wsproto.events import CloseConnection, Request

from ocpprpc import HandshakeError, HandshakeRejected, HandshakeTimeout
from ocpprpc._ws.handshake import (
    IdentityCheck,
    StationRequest,
    accept_websocket,
    check_identity,
    open_websocket,
    select_subprotocol,
)
from ocpprpc._ws.websocket import WebSocketStream

from .helpers import RawWebSocket, echo_until_closed, read_until_eof, tcp_server

Decide = Callable[[StationRequest], Awaitable[WebSocketStream | None]]


class Gate:
    """A server that records every request and handshake error; ``decide`` answers requests."""

    def __init__(
        self,
        *,
        protocols: Sequence[str] = ("ocpp1.6",),
        decide: Decide | None = None,
        handshake_timeout: float = 5.0,
        identity_check: IdentityCheck = check_identity,
    ) -> None:
        self.identity_check = identity_check
        self.protocols = protocols
        self.decide = decide
        self.handshake_timeout = handshake_timeout
        self.requests: list[StationRequest] = []
        self.errors: list[HandshakeError] = []
        self.done = anyio.Event()

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        try:
            request = await accept_websocket(
                stream,
                protocols=self.protocols,
                handshake_timeout=self.handshake_timeout,
                identity_check=self.identity_check,
            )
            self.requests.append(request)
            ws = await (self.decide(request) if self.decide else request.accept())
        except HandshakeError as exc:
            self.errors.append(exc)
            self.done.set()
            return
        if ws is not None:
            await echo_until_closed(ws)
        self.done.set()


@asynccontextmanager
async def gate_server(gate: Gate) -> AsyncIterator[int]:
    async with tcp_server(gate.handle) as port:
        yield port


async def connect(port: int, identity: str = "CP001", **kwargs: object) -> WebSocketStream:
    return await open_websocket(f"ws://127.0.0.1:{port}/ocpp", identity, **kwargs)  # type: ignore[arg-type]


async def raw_http(port: int, request: bytes, *, eof: bool = False) -> bytes:
    """Send raw bytes as a request (then half-close if ``eof``); return the whole answer."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        if eof:
            await stream.send_eof()
        return await read_until_eof(stream)


async def raw_upgrade(
    port: int, target: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[int, bytes]:
    """A well-formed upgrade request to ``target``; returns the rejection's status and body."""
    raw = RawWebSocket(await anyio.connect_tcp("127.0.0.1", port), RawWebSocket.client_connection())
    await raw.send(
        Request(host="localhost", target=target, subprotocols=["ocpp1.6"], extra_headers=list(headers))
    )
    try:
        return await raw.rejection()
    finally:
        await raw.aclose()


def basic(credentials: bytes) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Basic " + base64.b64encode(credentials))


# -- identity, path, query, headers -------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "path"),
    [
        ("CP001", "/ocpp/CP001"),
        ("CP*01|=+@.", "/ocpp/CP%2A01%7C%3D%2B%40."),  # OCPP's identifierString punctuation
        ("RDAM 123", "/ocpp/RDAM%20123"),  # the example in OCPP-J 3.1.1
        ("a:b%41", "/ocpp/a%3Ab%2541"),
    ],
)
async def test_identity_round_trips_percent_encoded(identity: str, path: str) -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        ws = await connect(port, identity, protocols=["ocpp1.6"])
        await ws.send("hi")
        assert await ws.receive() == "hi"
        await ws.close()
    (request,) = gate.requests
    assert request.identity == identity
    assert request.path == path


async def test_url_path_may_end_with_a_slash_and_carry_a_query() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        ws = await open_websocket(
            f"ws://127.0.0.1:{port}/ocpp/?site=7",
            "CP001",
            protocols=["ocpp1.6"],
            query={"token": "a b&c"},
            headers={"X-Vendor": "ACME"},
        )
        await ws.close()
    (request,) = gate.requests
    assert request.path == "/ocpp/CP001"
    assert request.query == {"site": "7", "token": "a b&c"}
    assert request.header("x-vendor") == request.header("X-VENDOR") == "ACME"
    assert request.header("x-missing") is None
    assert request.host == f"127.0.0.1:{port}"
    assert request.remote_address[0] == "127.0.0.1"
    assert request.client_certificate is None and request.client_certificate_der is None


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/ocpp/", 404),
        ("/", 404),
        ("/ocpp/" + "x" * 49, 400),
        ("/ocpp/" + "%41" * 49, 400),  # 49 characters once decoded
        ("/ocpp/CP%07", 400),  # control characters
        ("/ocpp/CP%00", 400),
        ("/ocpp/CP%0D%0AX-Admin:%201", 400),
        ("/ocpp/CP%7F", 400),  # DEL
        ("/ocpp/CP%09001", 400),  # tab
        ("/ocpp/CP%FF", 400),  # not UTF-8
        ("/ocpp/..%2F..%2Fetc%2Fpasswd", 400),  # a '/' once decoded
        ("/ocpp/CP%2f001", 400),
        ("/ocpp/..%5C..%5Cwindows", 400),  # '\\'
        ("/ocpp/%2e%2e", 400),  # '..' once decoded
        ("/ocpp/..", 400),
        ("/ocpp/%2E", 400),
        ("/ocpp/CP%D0%9E01", 400),  # Cyrillic O: looks like CPO01
        ("/ocpp/%EF%BC%A3P001", 400),  # fullwidth C
        ("/ocpp/CP%C2%A0001", 400),  # no-break space
        ("/ocpp/CP001%E2%80%8B", 400),  # zero-width space
    ],
)
async def test_bad_identities_are_refused(target: str, status: int) -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        code, body = await raw_upgrade(port, target)
        await gate.done.wait()
    assert code == status and b"identity" in body
    assert gate.errors[0].status == status and not gate.requests


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/ocpp/" + "x" * 49, b"must be 1 to 48 characters long, not 49"),
        ("/ocpp/CP%D0%9E01", b"must be printable ASCII"),
        ("/ocpp/a%2Fb", b"must not contain '/'"),
        ("/ocpp/%2e%2e", b"must not be '.' or '..'"),
    ],
)
async def test_identity_refusal_says_why(target: str, reason: bytes) -> None:
    async with gate_server(Gate()) as port:
        code, body = await raw_upgrade(port, target)
    assert code == 400 and body.startswith(b"invalid station identity: it " + reason)


@pytest.mark.parametrize("identity", ["CP001", "RDAM 123", "...", "~", "a:b%41", "x" * 48, " "])
async def test_ocpp_identities_are_accepted(identity: str) -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        ws = await connect(port, identity, protocols=["ocpp1.6"])
        await ws.close()
    assert gate.requests[0].identity == identity


def test_check_identity_alone() -> None:
    check_identity("CP001")
    for bad in ("", "x" * 49, "a/b", "a\\b", ".", "..", "CPÖ", "CP\x7f"):
        with pytest.raises(ValueError, match="must"):
            check_identity(bad)


async def test_identity_check_is_configurable() -> None:
    def wider(identity: str) -> None:
        if not identity.isprintable() or "/" in identity or len(identity) > 64:
            raise ValueError("is not a name we issue")

    def broken(identity: str) -> None:
        raise RuntimeError("bug in the application's check")

    gate = Gate(identity_check=wider)
    async with gate_server(gate) as port:
        ws = await connect(port, "Ladesäule-" + "x" * 50, protocols=["ocpp1.6"])
        await ws.close()
        code, body = await raw_upgrade(port, "/ocpp/a%2Fb")
    assert gate.requests[0].identity == "Ladesäule-" + "x" * 50
    assert code == 400 and body == b"invalid station identity: it is not a name we issue\n"

    gate = Gate(identity_check=broken)
    async with gate_server(gate) as port:
        code, _ = await raw_upgrade(port, "/ocpp/CP001")
    assert code == 500 and not gate.requests


async def test_identity_of_48_characters_is_fine() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        ws = await connect(port, "x" * 48, protocols=["ocpp1.6"])
        await ws.close()
    assert gate.requests[0].identity == "x" * 48


# -- subprotocols ---------------------------------------------------------------------


def test_select_subprotocol_follows_the_client_order() -> None:
    assert select_subprotocol(["ocpp2.0.1", "ocpp1.6"], ["ocpp1.6", "ocpp2.0.1"]) == "ocpp2.0.1"
    assert select_subprotocol(["ocpp2.1", "ocpp1.6"], ["ocpp1.6", "ocpp2.0.1"]) == "ocpp1.6"
    assert select_subprotocol(["ocpp2.1"], ["ocpp1.6"]) is None
    assert select_subprotocol([], ["ocpp1.6"]) is None


async def test_both_ends_name_the_station_on_their_stream() -> None:
    names: list[str | None] = []

    async def decide(request: StationRequest) -> WebSocketStream:
        ws = await request.accept()
        names.append(ws.identity)  # for the stream's own warnings (stalls, keepalive)
        return ws

    async with gate_server(Gate(decide=decide)) as port:
        ws = await connect(port, "CP 7", protocols=["ocpp1.6"])
        await ws.send("hi")
        assert await ws.receive() == "hi"
        names.append(ws.identity)
        await ws.close()
    assert names == ["CP 7", "CP 7"]


async def test_negotiated_subprotocol_is_exposed_on_both_sides() -> None:
    gate = Gate(protocols=["ocpp1.6", "ocpp2.0.1"])
    async with gate_server(gate) as port:
        ws = await connect(port, protocols=["ocpp2.0.1", "ocpp1.6"])
        assert ws.subprotocol == "ocpp2.0.1"
        await ws.close()
    (request,) = gate.requests
    assert request.proposed_subprotocols == ["ocpp2.0.1", "ocpp1.6"]
    assert request.subprotocol == "ocpp2.0.1"


async def test_server_may_pick_another_offered_subprotocol() -> None:
    async def decide(request: StationRequest) -> WebSocketStream:
        ws = await request.accept("ocpp1.6")
        with pytest.raises(RuntimeError, match="already"):  # one answer per request
            await request.reject(400)
        return ws

    gate = Gate(protocols=["ocpp2.0.1", "ocpp1.6"], decide=decide)
    async with gate_server(gate) as port:
        ws = await connect(port, protocols=["ocpp2.0.1", "ocpp1.6"])
        assert ws.subprotocol == "ocpp1.6"
        await ws.close()


async def test_server_cannot_pick_a_subprotocol_that_was_not_offered() -> None:
    errors: list[ValueError] = []

    async def decide(request: StationRequest) -> None:
        try:
            await request.accept("ocpp2.1")
        except ValueError as exc:
            errors.append(exc)

    gate = Gate(decide=decide)
    async with gate_server(gate) as port:
        with pytest.raises(HandshakeError):
            await connect(port, protocols=["ocpp1.6"])
    assert errors


async def test_no_subprotocol_in_common_fails_on_both_sides() -> None:
    gate = Gate(protocols=["ocpp1.6"])
    async with gate_server(gate) as port:
        with pytest.raises(HandshakeError, match="subprotocol"):
            await connect(port, protocols=["ocpp2.1"])
        await gate.done.wait()
    assert gate.requests[0].subprotocol is None
    assert "none of" in str(gate.errors[0])


async def test_client_refuses_a_server_that_picks_no_subprotocol() -> None:
    closes: list[CloseConnection] = []

    async def handler(stream: anyio.abc.SocketStream) -> None:
        raw = await RawWebSocket.accept(stream, subprotocol=None)
        event = await raw.next_event()
        assert isinstance(event, CloseConnection)
        closes.append(event)
        await raw.aclose()

    async with tcp_server(handler) as port:
        with pytest.raises(HandshakeError, match="subprotocol"):
            await connect(port, protocols=["ocpp1.6"])
    assert closes[0].code == 1002


# -- Basic auth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "password", "expected"),
    [
        ("CP001", "s3cret-pässword", "s3cret-pässword".encode()),
        ("CP:01:x", b"\x00:\xff binary:", b"\x00:\xff binary:"),  # ':' on both sides of the split
        ("CP001", b"", b""),
    ],
)
async def test_basic_auth_credentials_reach_the_server(
    identity: str, password: str | bytes, expected: bytes
) -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        ws = await connect(port, identity, protocols=["ocpp1.6"], password=password)
        await ws.close()
    (request,) = gate.requests
    assert request.password == expected
    assert request.username == identity
    assert "password" not in repr(request) and "authorization" not in repr(request).lower()


async def test_no_credentials_means_no_password() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        ws = await connect(port, protocols=["ocpp1.6"], headers=[("Authorization", "Bearer abc")])
        await ws.close()
    assert gate.requests[0].password is None and gate.requests[0].username is None


async def test_username_other_than_the_identity_is_refused_with_401() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        with pytest.raises(HandshakeRejected) as caught:
            await connect(
                port,
                "CP001",
                protocols=["ocpp1.6"],
                headers=[("Authorization", basic(b"CP002:pw")[1].decode())],
            )
        await gate.done.wait()
    assert caught.value.status == 401
    assert any(name == b"www-authenticate" for name, _ in caught.value.headers)
    assert gate.errors[0].status == 401 and not gate.requests


async def test_credentials_that_are_not_base64_are_refused_with_400() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        status, body = await raw_upgrade(port, "/ocpp/CP001", [(b"Authorization", b"Basic !!!not-base64")])
        await gate.done.wait()
    assert status == 400 and b"base64" in body


async def test_application_rejects_a_wrong_password() -> None:
    async def decide(request: StationRequest) -> WebSocketStream | None:
        if request.password != b"right":
            await request.reject(401, "wrong password")
            return None
        return await request.accept()

    gate = Gate(decide=decide)
    async with gate_server(gate) as port:
        with pytest.raises(HandshakeRejected) as caught:
            await connect(port, protocols=["ocpp1.6"], password="wrong")
        ws = await connect(port, protocols=["ocpp1.6"], password="right")
        await ws.close()
    assert caught.value.status == 401 and caught.value.body == b"wrong password"
    assert caught.value.reason == "Unauthorized"
    assert any(name == b"www-authenticate" for name, _ in caught.value.headers)
    assert "401" in str(caught.value) and "wrong password" in str(caught.value)


async def test_application_rejects_an_unknown_station_with_404() -> None:
    async def decide(request: StationRequest) -> None:
        await request.reject(404, headers={"X-Reason": "unknown"})

    gate = Gate(decide=decide)
    async with gate_server(gate) as port:
        with pytest.raises(HandshakeRejected) as caught:
            await connect(port, protocols=["ocpp1.6"])
    assert caught.value.status == 404 and caught.value.body == b"Not Found\n"
    assert (b"x-reason", b"unknown") in caught.value.headers


# -- hostile and broken HTTP ---------------------------------------------------------


async def test_garbage_gets_400_and_other_stations_carry_on() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        good = await connect(port, "GOOD", protocols=["ocpp1.6"])
        answer = await raw_http(port, b"\x16\x03\x01\x02\x00\x01\x00garbage\r\n\r\n" * 10)
        await good.send("still fine")
        assert await good.receive() == "still fine"
        await good.close()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\n\r\nmalformed HTTP request" in answer
    assert any(error.status == 400 for error in gate.errors)


async def test_plain_get_gets_426_with_an_explanation() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        answer = await raw_http(port, b"GET /ocpp/CP001 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nUpgrade: websocket" in head
    assert b"WebSocket" in body
    assert gate.errors[0].status == 426


async def test_post_upgrade_gets_400() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        answer = await raw_http(
            port,
            b"POST /ocpp/CP001 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Content-Length: 0\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"GET" in answer


async def test_huge_request_head_gets_431() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        # h11 buffers at most 16 KiB of an unfinished request head.
        answer = await raw_http(
            port, b"GET /ocpp/CP001 HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 40_000, eof=True
        )
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_client_gone_before_a_complete_request() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        assert await raw_http(port, b"GET /ocpp/CP001 HTTP/1.1\r\n", eof=True) == b""
        await gate.done.wait()
    assert gate.errors[0].status is None


async def test_slowloris_is_dropped_and_other_stations_carry_on() -> None:
    gate = Gate(handshake_timeout=0.5)
    async with gate_server(gate) as port:
        started = time.monotonic()  # before the connection: the server's deadline starts at accept
        slow = await anyio.connect_tcp("127.0.0.1", port)

        async def trickle() -> None:
            await slow.send(b"GET /ocpp/SLOW HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while True:  # one byte at a time, never finishing the header line
                await slow.send(b"a")
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(trickle)
            good = await connect(port, "GOOD", protocols=["ocpp1.6"])
            await good.send("unaffected")
            assert await good.receive() == "unaffected"
            with anyio.fail_after(5):
                assert await read_until_eof(slow) == b""  # dropped without an answer
            tg.cancel_scope.cancel()
        await slow.aclose()
        assert time.monotonic() - started >= 0.5
        await good.close()
    assert isinstance(gate.errors[0], HandshakeTimeout)


# -- client side failures ----------------------------------------------------------------


async def test_connect_timeout_on_a_silent_server() -> None:
    hold = anyio.Event()

    async def handler(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await hold.wait()

    async with tcp_server(handler) as port:
        with pytest.raises(HandshakeTimeout) as caught:
            await connect(port, protocols=["ocpp1.6"], connect_timeout=0.3)
        hold.set()
    assert isinstance(caught.value, TimeoutError)


async def test_server_hanging_up_during_the_handshake() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()
        await stream.aclose()

    async with tcp_server(handler) as port:
        with pytest.raises(HandshakeError, match="closed the connection") as caught:
            await connect(port, protocols=["ocpp1.6"])
    assert not isinstance(caught.value, HandshakeRejected)


async def test_server_with_a_bad_accept_token() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()
        await stream.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bogus\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        )
        await read_until_eof(stream)
        await stream.aclose()

    async with tcp_server(handler) as port:
        with pytest.raises(HandshakeError, match="accept token"):
            await connect(port, protocols=["ocpp1.6"])


async def test_rejection_without_a_body_length() -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()
        await stream.send(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy, retry later")
        await stream.aclose()

    async with tcp_server(handler) as port:
        with pytest.raises(HandshakeRejected) as caught:
            await connect(port, protocols=["ocpp1.6"])
    assert caught.value.status == 503 and caught.value.body == b"busy, retry later"


async def test_connection_refused_is_an_os_error() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with pytest.raises(OSError):
        await connect(port, protocols=["ocpp1.6"])


@pytest.mark.parametrize(
    ("url", "identity", "message"),
    [
        ("http://localhost/ocpp", "CP001", "ws://"),
        ("ws:///ocpp", "CP001", "ws://"),
        ("ws://localhost/ocpp", "", "identity"),
    ],
)
async def test_bad_arguments(url: str, identity: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await open_websocket(url, identity, protocols=["ocpp1.6"])


async def test_tls_context_needs_wss() -> None:
    with pytest.raises(ValueError, match="wss://"):
        await open_websocket(
            "ws://localhost/ocpp", "CP001", protocols=["ocpp1.6"], ssl_context=ssl.create_default_context()
        )


async def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="header"):
        await open_websocket(
            "ws://localhost/ocpp", "CP001", protocols=["ocpp1.6"], headers={"X-A": "1\r\nX-B: 2"}
        )


async def test_an_accepted_request_lets_go_of_the_handshake_state() -> None:
    # The server keeps the request as long as the connection lives; h11's and wsproto's
    # handshake objects are not needed once it is open (a few KiB per idle station).
    gate = Gate()
    async with gate_server(gate) as port:
        ws = await connect(port, "CP001", protocols=["ocpp1.6"])
        await ws.send("hi")
        assert await ws.receive() == "hi"  # the server is past accept()
        (request,) = gate.requests
        assert request._handshake is None
        assert request._fast is None  # the fast path's request and its bytes
        await ws.close()


# -- RFC 6455 details ------------------------------------------------------------------


def upgrade_request(key: bytes, version: bytes = b"13") -> bytes:
    return (
        b"GET /ocpp/CP001 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Protocol: ocpp1.6\r\nSec-WebSocket-Version: " + version + b"\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
    )


@pytest.mark.parametrize(
    "key",
    [
        b"c2hvcnQ=",  # 5 bytes
        base64.b64encode(bytes(15)),
        base64.b64encode(bytes(17)),
        base64.b64encode(bytes(32)),
        b"not base64 at all!!!!!!!",
        b"",
    ],
)
async def test_websocket_key_must_be_16_bytes_of_base64(key: bytes) -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        answer = await raw_http(port, upgrade_request(key))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert body == b"Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 4.2.1)\n"
    assert gate.errors[0].status == 400 and not gate.requests


async def test_websocket_key_of_16_bytes_is_accepted() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        answer = await raw_http(port, upgrade_request(base64.b64encode(b"0123456789abcdef")), eof=True)
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert gate.requests


@pytest.mark.parametrize("version", [b"8", b"12", b"14"])
async def test_unsupported_websocket_version_gets_426_naming_13(version: bytes) -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        answer = await raw_http(port, upgrade_request(b"dGhlIHNhbXBsZSBub25jZQ==", version))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13" in head
    assert body == b"unsupported Sec-WebSocket-Version: this server speaks version 13\n"
    assert b"Missing" not in body


async def test_missing_websocket_version_is_still_called_missing() -> None:
    gate = Gate()
    async with gate_server(gate) as port:
        answer = await raw_http(
            port, upgrade_request(b"dGhlIHNhbXBsZSBub25jZQ==").replace(b"Version: 13", b"X: 1")
        )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"Missing header, 'Sec-WebSocket-Version'" in answer


@pytest.mark.parametrize("client_codec", ["websockets", "wsproto"])
@pytest.mark.parametrize("server_codec", ["websockets", "wsproto"])
async def test_no_common_subprotocol_fails_the_station_at_once(
    client_codec: Literal["websockets", "wsproto"], server_codec: Literal["websockets", "wsproto"]
) -> None:
    """The CSMS completes the upgrade without a subprotocol and closes at once (OCPP-J 3.2).

    Its close frame arrives in the same read as the 101.  The websockets codec answered it
    when fed that data, but the echo stayed inside websockets: both ends then waited their
    whole close timeout (30 s here) before the station got its HandshakeError.
    """
    import ocpprpc

    async with ocpprpc.serve(protocols=["ocpp2.0.1"], ws_codec=server_codec, close_timeout=30) as server:
        started = anyio.current_time()
        with pytest.raises(HandshakeError, match="accepted none of the subprotocols"):
            async with ocpprpc.connect(
                f"ws://127.0.0.1:{server.port}/ocpp",
                "CP1",
                protocols=["ocpp1.6"],
                ws_codec=client_codec,
                close_timeout=30,
            ):
                pass
        # A hang detector, not a speed test: the close handshake is shielded from cancellation,
        # so the bug showed as the 30 s close timeout on both ends, not as a slow answer.
        assert anyio.current_time() - started < 15
