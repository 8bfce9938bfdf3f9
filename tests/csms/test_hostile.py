"""Hostile stations against the assembled CSMS: each gets its clear answer, and a bystander is unaffected.

Station A is hand-made (raw wsproto or raw TCP) so it can misbehave; station B
is a normal ``connect()`` station that keeps calling the whole time and must
never notice.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import CallContext, Router, Server

from .helpers import BINARY, PROMPT, TEXT, eventually, frame, http_exchange, raw_station, ws_url

pytestmark = pytest.mark.timeout(20)


def csms_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2025-01-01T00:00:00Z"}

    return router


@asynccontextmanager
async def bystander(server: Server) -> AsyncIterator[Callable[[], int]]:
    """Station B, calling in a loop; yields a function giving how many calls succeeded so far."""
    done = 0
    async with (
        ocpprpc.connect(ws_url(server), "BYSTANDER", validation=True) as station,
        anyio.create_task_group() as tg,
    ):

        async def keep_calling() -> None:
            nonlocal done
            while True:
                assert await station.call("Heartbeat") == {"currentTime": "2025-01-01T00:00:00Z"}
                done += 1

        tg.start_soon(keep_calling)
        await eventually(lambda: done > 0)
        yield lambda: done
        # B still works after A's attack, on the same connection.
        before = done
        await eventually(lambda: done > before + 5)
        assert station.close_reason is None
        tg.cancel_scope.cancel()


MALFORMED = [
    "not json",
    "[]",
    "{}",
    '[2, "id-1"]',
    '[2, 42, "Heartbeat", {}]',
    '[2, "id-2", "Heartbeat", []]',
    '[9, "id-3", "Heartbeat", {}]',
    '[3, "never-sent", {}]',
    '[2, "' + "x" * 40 + '", "Heartbeat", {}]',
    '[2, "id-4", "Heartbeat", {"unexpected": true}]',
    '[2, "id-5", "Heartbeat", {}',
    "",
]


async def test_a_flood_of_malformed_messages_is_answered_and_the_bystander_is_unaffected() -> None:
    async with (
        ocpprpc.serve(router=csms_router(), validation=True) as server,
        bystander(server),
        raw_station(server.port, "FLOOD") as flood,
    ):
        rounds = 30
        for _ in range(rounds):
            for text in MALFORMED:
                await flood.send_text(text)
        # A good call after the flood is still answered, after the error replies.
        await flood.send_text('[2, "good", "Heartbeat", {}]')
        replies: list[list[Any]] = []
        with anyio.fail_after(PROMPT):
            while not replies or replies[-1][1] != "good":
                replies.append(json.loads(await flood.next_text()))
        assert replies[-1] == [3, "good", {"currentTime": "2025-01-01T00:00:00Z"}]
        errors = replies[:-1]
        assert errors and all(reply[0] == 4 for reply in errors)
        assert "id-2" in {reply[1] for reply in errors}
        assert "FLOOD" in server.clients


async def test_a_flooding_station_is_closed_after_max_bad_messages() -> None:
    async with (
        ocpprpc.serve(router=csms_router(), max_bad_messages=20) as server,
        bystander(server),
        raw_station(server.port, "FLOOD") as flood,
    ):
        for _ in range(100):
            await flood.send_text("not json")
        with anyio.fail_after(PROMPT):
            assert await flood.close_code() == 1002
        await eventually(lambda: "FLOOD" not in server.clients)


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        pytest.param(frame(TEXT, b"x" * (100 * 1024)), 1009, id="oversized"),
        pytest.param(frame(TEXT, b"a" * 40_000, fin=False) + frame(0, b"b" * 40_000), 1009, id="fragments"),
        pytest.param(frame(BINARY, b'[2,"1","Heartbeat",{}]'), 1003, id="binary"),
        pytest.param(frame(TEXT, b'[2,"1","Heartbeat",{"x":"\xff\xfe"}]'), 1007, id="invalid-utf8"),
        pytest.param(frame(0x3, b""), 1002, id="reserved-opcode"),
    ],
)
async def test_a_bad_frame_closes_that_station_with_the_right_code(attack: bytes, code: int) -> None:
    async with (
        ocpprpc.serve(router=csms_router(), close_timeout=PROMPT * 2) as server,
        bystander(server),
        raw_station(server.port, "BAD") as bad,
    ):
        await eventually(lambda: "BAD" in server.clients)
        on_server = server.clients["BAD"]
        await bad.send_raw(attack)
        with anyio.fail_after(PROMPT):
            assert await bad.close_code() == code
            # Like any client: after the close handshake, wait for the CSMS to end TCP, then close.
            assert await bad.next_event() is None
            await bad.stream.aclose()
            await on_server.closed.wait()
        assert on_server.close_reason is not None
        assert on_server.close_reason.code == code
        await eventually(lambda: "BAD" not in server.clients)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"400", id="garbage"),
        pytest.param(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n", b"426", id="plain-http"),
        # h11 bounds an incomplete request head to 16 KiB.
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 20000, b"431", id="endless-head"),
    ],
)
async def test_garbage_http_gets_an_http_error(request_bytes: bytes, status: bytes) -> None:
    async with ocpprpc.serve(router=csms_router()) as server, bystander(server):
        answer = await http_exchange(server.port, request_bytes)
        assert answer.split(b" ", 2)[1] == status, answer[:200]
        assert not set(server.clients) - {"BYSTANDER"}


async def test_a_slowloris_handshake_is_dropped() -> None:
    timeout = 0.5
    async with (
        ocpprpc.serve(router=csms_router(), handshake_timeout=timeout) as server,
        bystander(server),
    ):
        # Before connecting: the server's clock starts when it accepts.
        start = anyio.current_time()
        slow = await anyio.connect_tcp("127.0.0.1", server.port)
        async with slow:
            await slow.send(b"GET /ocpp/SLOW HTTP/1.1\r\n")
            dropped = False
            with anyio.fail_after(PROMPT):
                # Trickle a header byte now and then, never finishing the request head.
                while not dropped:
                    try:
                        await slow.send(b"X")
                        with anyio.move_on_after(0.05):
                            await slow.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        dropped = True
            elapsed = anyio.current_time() - start
            assert timeout <= elapsed < timeout + 2
            assert "SLOW" not in server.clients


async def test_a_station_that_never_answers_our_close_frame_is_dropped_after_the_close_timeout() -> None:
    async with (
        ocpprpc.serve(router=csms_router(), close_timeout=0.3) as server,
        bystander(server),
        raw_station(server.port, "MUTE") as mute,
    ):
        await eventually(lambda: "MUTE" in server.clients)
        on_server = server.clients["MUTE"]
        await mute.send_raw(frame(BINARY, b"x"))
        with anyio.fail_after(PROMPT):
            assert await mute.close_code(echo=False) == 1003
            await on_server.closed.wait()
            assert await mute.next_event() is None  # the CSMS hung up
        assert on_server.close_reason is not None
        assert on_server.close_reason.code == 1003
