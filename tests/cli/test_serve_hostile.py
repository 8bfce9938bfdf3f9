"""The hardening cases replayed against ``python -m ocpprpc serve`` as users run it (profile 1,
password from a file), on each backend: every hostile request or frame gets its clear answer,
and a station connected throughout keeps being answered.
"""

from __future__ import annotations

import base64
import contextlib
import signal
import struct
from pathlib import Path

import anyio
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

import ocpprpc
from tests.csms.helpers import http_exchange

from .helpers import BACKENDS, csms

pytestmark = pytest.mark.timeout(90)

PASSWORD = b"s3cret-pw"
PROMPT = 10.0


def upgrade(
    identity: str, *, host: bytes = b"127.0.0.1", auth: bytes | None = None, key: bytes | None = None
) -> bytes:
    auth = auth if auth is not None else b"Basic " + base64.b64encode(identity.encode() + b":" + PASSWORD)
    key = key if key is not None else b"dGhlIHNhbXBsZSBub25jZQ=="
    return (
        f"GET /ocpp/{identity} HTTP/1.1\r\n".encode()
        + b"Host: "
        + host
        + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\nSec-WebSocket-Version: 13\r\n"
        + b"Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: "
        + auth
        + b"\r\n\r\n"
    )


def masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    head += bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    return head + b"\0\0\0\0" + payload  # a zero mask leaves the payload as it is


async def close_code_after(port: int, identity: str, data: bytes) -> int | None:
    """Upgrade properly as *identity*, send *data*, return the server's close code (None: none)."""
    ws = WSConnection(ConnectionType.CLIENT)
    auth = b"Basic " + base64.b64encode(identity.encode() + b":" + PASSWORD)
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(
            ws.send(
                Request(
                    host="127.0.0.1",
                    target=f"/ocpp/{identity}",
                    subprotocols=["ocpp1.6"],
                    extra_headers=[(b"authorization", auth)],
                )
            )
        )
        accepted = False
        while not accepted:
            ws.receive_data(await stream.receive())
            accepted = any(isinstance(event, AcceptConnection) for event in ws.events())
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await stream.send(data)
        with anyio.fail_after(PROMPT):
            while True:
                try:
                    ws.receive_data(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return None
                for event in ws.events():
                    if isinstance(event, CloseConnection):
                        return event.code


@pytest.mark.parametrize("serve_backend", BACKENDS)
async def test_hostile_cases_against_the_ready_csms(tmp_path: Path, serve_backend: str) -> None:
    password_file = tmp_path / "password"
    password_file.write_bytes(PASSWORD + b"\n")
    with csms(
        tmp_path / "serve.log",
        "--backend",
        serve_backend,
        "--security-profile",
        "1",
        "--password-file",
        str(password_file),
        "--quiet",
    ) as (process, url):
        port = int(url.rsplit(":", 1)[1])
        async with ocpprpc.connect(f"{url}/ocpp", "BYSTANDER", password=PASSWORD) as bystander:

            async def bystander_answered() -> None:
                with anyio.fail_after(PROMPT):
                    answer = await bystander.call("Heartbeat", {})
                assert "currentTime" in answer

            await bystander_answered()
            cases = [
                (upgrade("CP1", host=b"127.0\xff.0.1"), b"HTTP/1.1 400 "),
                (upgrade("CP1", auth=b"Basic czNjcmV0LXB3\x00"), b"HTTP/1.1 400 "),
                (upgrade("CP%2F..%2Fetc"), b"HTTP/1.1 400 "),
                (upgrade(".."), b"HTTP/1.1 400 "),
                (upgrade("C" * 49), b"HTTP/1.1 400 "),
                (upgrade("CP1", key=b"short"), b"HTTP/1.1 400 "),
                (upgrade("CP1", auth=b"Basic " + base64.b64encode(b"CP1:wrong")), b"HTTP/1.1 401 "),
            ]
            for request, status in cases:
                answer = await http_exchange(port, request)
                assert answer.startswith(status), (request, answer)
                assert b"czNjcmV0LXB3" not in answer and PASSWORD not in answer
                await bystander_answered()
            # After the upgrade: a flood of empty continuation frames is closed 1008.
            empty_fragments = masked(0x1, b"", fin=False) + masked(0x0, b"", fin=False) * 5000
            assert await close_code_after(port, "FRAGS", empty_fragments) == 1008
            await bystander_answered()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=PROMPT) == 0
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
