"""Random upgrade requests against a real CSMS: every one gets an HTTP answer or a close, none
takes the server down, and a station connected throughout keeps being answered.

The requests are mutations of a valid OCPP upgrade: methods, paths (percent-encodings,
traversals, non-ASCII, oversized), HTTP versions, header names and values (missing, repeated,
hostile, huge, bytes that are not UTF-8), line endings, truncation, trailing garbage. The
property is the server's contract for hostile input, not any particular status code.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ocpprpc
from ocpprpc import CallContext, Router

from .helpers import PROMPT, settled, task_count, ws_url

pytestmark = pytest.mark.timeout(120)

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
#: Basic CP001:secret, alone or inside a header line that is malformed.
SECRET = b"Basic Q1AwMDE6c2VjcmV0"
#: A valid upgrade whose Authorization line h11 refuses (a NUL in the value).
BAD_AUTH_LINE = (
    b"GET /ocpp/CP001 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Authorization: " + SECRET + b"\x00\r\n\r\n"
)

methods = st.sampled_from([b"GET", b"POST", b"get", b"HEAD", b"CONNECT", b"", b"G\x00T"])
path_parts = st.sampled_from(
    [b"CP001", b"%2F", b"..", b"%2e%2e", b"%00", b"*", b"\xc3\xa9", b"\xff", b"a" * 300, b"", b"?x=1", b"#f"]
)
paths = st.lists(path_parts, min_size=0, max_size=4).map(lambda parts: b"/ocpp/" + b"".join(parts))
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 extra", b""])
upgrade_headers = {
    b"Host": [b"127.0.0.1", b"", b"x" * 9000, b"127.0\xff.0.1", "ex\u00e4mple".encode()],
    b"Upgrade": [b"websocket", b"WebSocket", b"h2c", b""],
    b"Connection": [b"Upgrade", b"keep-alive, Upgrade", b"close", b""],
    b"Sec-WebSocket-Key": [b"dGhlIHNhbXBsZSBub25jZQ==", b"short", b"", b"\xff" * 24],
    b"Sec-WebSocket-Version": [b"13", b"8", b"", b"13, 8"],
    b"Sec-WebSocket-Protocol": [b"ocpp1.6", b"ocpp2.0.1, ocpp1.6", b"soap", b"", b"ocpp1.6" * 500],
    b"Sec-WebSocket-Extensions": [
        b"permessage-deflate",
        b"permessage-deflate; server_max_window_bits=7",
        b"x",
    ],
    b"Authorization": [
        SECRET,
        b"Basic !!!",
        b"Bearer x",
        b"Basic",
        b"\xff\xfe",
        SECRET + b"\x00",
        SECRET + b" \x01",
    ],
    b"Origin": [b"http://example.com", b"null", b"\x00"],
    b"Content-Length": [b"5", b"-1", b"99999999999"],
    b"Transfer-Encoding": [b"chunked", b"gzip"],
    b"X-Junk": [b"a" * 20000, b"\r", b"\x7f"],
}
headers = st.lists(
    st.sampled_from(sorted(upgrade_headers)).flatmap(
        lambda name: st.tuples(st.just(name), st.sampled_from(upgrade_headers[name]))
    ),
    max_size=14,
)
line_ends = st.sampled_from([b"\r\n", b"\n", b"\r"])


@st.composite
def upgrade_requests(draw: st.DrawFn) -> bytes:
    end = draw(line_ends)
    lines = [draw(methods) + b" " + draw(paths) + b" " + draw(versions)]
    lines += [name + b": " + value for name, value in draw(headers)]
    request = end.join(lines) + end + end
    mutation = draw(st.sampled_from(["none", "truncate", "garbage", "bytes"]))
    if mutation == "truncate":
        request = request[: draw(st.integers(0, len(request)))]
    elif mutation == "garbage":
        request += draw(st.binary(max_size=200))
    elif mutation == "bytes":
        request = draw(st.binary(max_size=600))
    return request


def router() -> Router:
    csms = Router()

    @csms.on("Heartbeat")
    def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2025-01-01T00:00:00Z"}

    return csms


async def exchange(port: int, request: bytes) -> bytes:
    """Send *request*, end our side, read what the server answers until it closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        received = bytearray()
        try:
            await stream.send(request)
            await stream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):  # refused and closed early
            pass
        with anyio.fail_after(PROMPT):
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return bytes(received)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=st.lists(upgrade_requests(), min_size=1, max_size=6))
@example(requests=[BAD_AUTH_LINE])
async def test_any_upgrade_request_gets_an_answer_and_harms_nobody(requests: list[bytes]) -> None:
    baseline = task_count()
    async with (
        ocpprpc.serve(router=router(), handshake_timeout=2.0) as server,
        ocpprpc.connect(ws_url(server), "BYSTANDER") as bystander,
    ):
        for request in requests:
            answer = await exchange(server.port, request)
            if answer:
                status = STATUS_LINE.match(answer)
                assert status, answer[:200]
                assert 100 <= int(status.group(1)) < 600
                # The server never echoes an Authorization value it was sent.
                assert SECRET.split()[1] not in answer
            assert await bystander.call("Heartbeat", {}) == {"currentTime": "2025-01-01T00:00:00Z"}
        assert "BYSTANDER" in server.clients
    await settled(baseline)


@pytest.mark.parametrize("host", [b"127.0\xff.0.1", "b\u00fccher.example".encode(), b"\x80"])
async def test_a_host_header_that_is_not_ascii_is_refused_400_and_the_server_stays_up(host: bytes) -> None:
    """Found by fuzz/fuzz_handshake.py: wsproto's IDNA decode of Host escaped and ended serve()."""
    request = BAD_AUTH_LINE.replace(b"Host: x", b"Host: " + host).replace(SECRET + b"\x00", SECRET)
    async with (
        ocpprpc.serve(router=router()) as server,
        ocpprpc.connect(ws_url(server), "BYSTANDER") as bystander,
    ):
        answer = await exchange(server.port, request)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"not ASCII" in answer
        assert await bystander.call("Heartbeat", {}) == {"currentTime": "2025-01-01T00:00:00Z"}
        answer = await exchange(server.port, request)
        assert answer.startswith(b"HTTP/1.1 400 ")
