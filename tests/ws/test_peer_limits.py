"""Limits on what one peer can make a CSMS hold or do, over real sockets to a real server.

Each attack comes from a hand-made station (raw frames); a second, normal station
keeps calling Heartbeat throughout and must never notice.  Every test runs on
both backends and, where frames matter, both WebSocket codecs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

import ocpprpc
from ocpprpc import CallContext, Router, Server
from ocpprpc._ws.wsproto_codec import DEFAULT_MAX_MESSAGE_SIZE, max_fragments
from tests.csms.helpers import PROMPT, TEXT, eventually, frame, raw_station, ws_url

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("ws_codec")]

CONTINUATION = 0x0
PING = 0x9

HEARTBEAT_ANSWER = {"currentTime": "2025-01-01T00:00:00Z"}


def csms_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return HEARTBEAT_ANSWER

    return router


@asynccontextmanager
async def bystander(server: Server) -> AsyncIterator[Callable[[], int]]:
    """A normal station calling Heartbeat in a loop; yields how many calls succeeded so far.

    On the way out it checks that calls still succeed on the same connection.
    """
    done = 0
    async with (
        ocpprpc.connect(ws_url(server), "BYSTANDER") as station,
        anyio.create_task_group() as tg,
    ):

        async def keep_calling() -> None:
            nonlocal done
            while True:
                assert await station.call("Heartbeat") == HEARTBEAT_ANSWER
                done += 1

        tg.start_soon(keep_calling)
        await eventually(lambda: done > 0)
        yield lambda: done
        before = done
        await eventually(lambda: done > before + 5)
        assert station.close_reason is None
        tg.cancel_scope.cancel()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_deeply_nested_json_is_answered_as_malformed(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A million brackets is a malformed message (RecursionError inside msgspec), not a crash (1011)."""
    caplog.set_level(logging.WARNING)
    async with (
        ocpprpc.serve(router=csms_router(), max_message_size=4 << 20) as server,
        bystander(server),
        raw_station(server.port, "DEEP", protocols=[protocol]) as deep,
    ):
        for text in (_nested(500_000), f'[2,"1","Heartbeat",{{"a":{_nested(500_000)}}}]'):
            await deep.send_text(text)
        await deep.send_text('[2,"good","Heartbeat",{}]')
        replies: list[list[Any]] = []
        with anyio.fail_after(PROMPT):
            while not replies or replies[-1][1] != "good":
                replies.append(json.loads(await deep.next_text()))
        assert replies[-1] == [3, "good", HEARTBEAT_ANSWER]
        if protocol == "ocpp1.6":
            assert replies[:-1] == []  # 1.6: a message whose id cannot be read gets no answer
        else:
            assert [reply[:4] for reply in replies[:-1]] == [
                [4, "-1", "RpcFrameworkError", "JSON nested too deeply to be read"]
            ] * 2
        assert "DEEP" in server.clients
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _fragmented(text: bytes, frames: int) -> bytes:
    """*text* as one message in *frames* frames: the text first, then empty continuation frames."""
    assert frames >= 2
    return (
        frame(TEXT, text, fin=False)
        + frame(CONTINUATION, b"", fin=False) * (frames - 2)
        + frame(CONTINUATION, b"", fin=True)
    )


async def test_a_message_in_too_many_frames_is_refused_with_1008() -> None:
    """Empty continuation frames add nothing to the size; the frame count stops them (1008)."""
    limit = max_fragments(DEFAULT_MAX_MESSAGE_SIZE)
    async with (
        ocpprpc.serve(router=csms_router()) as server,
        bystander(server),
        raw_station(server.port, "FRAGMENTS") as attacker,
    ):
        # A message in exactly the limit is fine.
        await attacker.send_raw(_fragmented(b'[2,"ok","Heartbeat",{}]', limit))
        with anyio.fail_after(PROMPT):
            assert json.loads(await attacker.next_text()) == [3, "ok", HEARTBEAT_ANSWER]
        await eventually(lambda: "FRAGMENTS" in server.clients)
        on_server = server.clients["FRAGMENTS"]
        # One that never ends: empty fragments, sent in batches as long as the server takes them.
        await attacker.send_raw(frame(TEXT, b"[", fin=False))
        empty = frame(CONTINUATION, b"", fin=False) * 1000
        with anyio.fail_after(PROMPT):
            async with anyio.create_task_group() as tg:

                async def flood() -> None:
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        for _ in range(limit):  # at most limit * 1000 frames
                            await attacker.send_raw(empty)

                tg.start_soon(flood)
                assert await attacker.close_code(echo=False) == 1008
                tg.cancel_scope.cancel()
            await attacker.stream.aclose()
            await on_server.closed.wait()
        assert on_server.close_reason is not None
        assert on_server.close_reason.code == 1008
        assert on_server.close_reason.reason == f"message in more than {limit} frames"


async def test_a_station_that_pings_and_never_reads_its_pongs_is_dropped_after_send_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pongs pile up unread; the reader writing them is timed like any sender (send_timeout)."""
    caplog.set_level(logging.WARNING)
    send_timeout = 0.5
    async with (
        ocpprpc.serve(router=csms_router(), send_timeout=send_timeout, compression=False) as server,
        bystander(server),
        raw_station(server.port, "PINGER") as pinger,
    ):
        await eventually(lambda: "PINGER" in server.clients)
        on_server = server.clients["PINGER"]
        # A small receive buffer fills sooner; the CSMS's send buffer still takes megabytes.
        sock = pinger.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        pings = frame(PING, b"p" * 125) * 500
        async with anyio.create_task_group() as tg:

            async def flood() -> None:
                # Until the CSMS stops reading us (its reader is stuck writing pongs) or drops us.
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    while True:
                        await pinger.send_raw(pings)

            tg.start_soon(flood)
            # Generous: filling the kernel's buffers takes megabytes of pings, and on a loaded
            # machine the flood (in this process) shares the CPU with the server it floods.
            with anyio.fail_after(PROMPT * 6):
                await on_server.closed.wait()
            tg.cancel_scope.cancel()
        assert on_server.close_reason is not None
        assert on_server.close_reason.code == 1006
        assert on_server.close_reason.reason.startswith("peer stopped reading")
        await eventually(lambda: "PINGER" not in server.clients)
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "peer stopped reading" in r.getMessage()
    ]
    assert warnings and "PINGER" in warnings[0].getMessage()
