"""Inbound memory under a compressed flood: bounded per connection, bounded server-wide, nothing lost.

The scenario of the hardening issue (item 3): ten stations pipeline
MeterValues CALLs of ~7.5 KB that deflate ~24:1 (one 64 KiB read inflates to
~210 of them, 1.6 MB) against handlers that are slow, while a well-behaved
station sends Heartbeats.  Before the fix a connection held 256 parsed CALLs
(each ~7x its text as Python objects) plus all that one read inflated to; the
peak is measured in-process with tracemalloc (about 90 MiB before, 25 after).
"""

from __future__ import annotations

import json
import logging
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

import ocpprpc
from ocpprpc import CallContext, Router, Server, WebSocketStream
from ocpprpc._ws.handshake import accept_websocket, open_websocket
from tests.csms.helpers import PROMPT, eventually, ws_url
from tests.ws.helpers import tcp_server

log = logging.getLogger(__name__)

# The timeout is a hang guard: the floods take 6-20 s, longer on a loaded machine.
pytestmark = [pytest.mark.usefixtures("ws_codec"), pytest.mark.timeout(150)]

STATIONS = 10
CALLS = 480  # per station: ~150 KB on the wire, ~3.6 MB inflated
SAMPLES = 60  # sampled values per MeterValues: ~7.5 KB of JSON


def meter_values(n: int) -> str:
    """A MeterValues CALL that deflates ~20:1 against the ones before it (the values differ)."""
    values = [
        {
            "value": str((n * 7919 + i * 104729) % 1000003),
            "context": "Sample.Periodic",
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit": "Wh",
        }
        for i in range(SAMPLES)
    ]
    payload = {
        "connectorId": 1,
        "transactionId": n,
        "meterValue": [{"timestamp": "2024-01-01T00:00:00Z", "sampledValue": values}],
    }
    return json.dumps([2, f"m{n}", "MeterValues", payload], separators=(",", ":"))


#: Made once, before anything is traced: the stations only send them.
TEXTS = [meter_values(n) for n in range(CALLS)]
MESSAGE_SIZE = max(map(len, TEXTS))


class SlowCsms:
    """Handlers that wait for the test's go, then take a few ms each; Heartbeat answers at once."""

    def __init__(self) -> None:
        self.router = Router()
        self.go = anyio.Event()
        self.router.add("MeterValues", self.meter_values)
        self.router.add("Heartbeat", self.heartbeat)

    async def meter_values(self, request: Any, ctx: CallContext) -> dict[str, Any]:
        await self.go.wait()
        await anyio.sleep(0.002)
        return {}

    def heartbeat(self, request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2024-01-01T00:00:00Z"}


async def flood_station(server: Server, identity: str, answered: dict[str, int]) -> None:
    """Pipeline CALLS MeterValues with permessage-deflate; count the answers."""
    ws = await open_websocket(ws_url(server), identity, protocols=["ocpp1.6"], compression=True)
    assert ws.compression
    try:
        async with anyio.create_task_group() as tg:

            async def send_all() -> None:
                for text in TEXTS:
                    await ws.send(text)

            tg.start_soon(send_all)
            while answered[identity] < CALLS:
                answer = await ws.receive()
                assert answer.startswith("[3,"), answer
                answered[identity] += 1
    finally:
        await ws.close()


class Traced:
    """Allocations traced from creation until :meth:`stop`; :attr:`peak` is the growth, in bytes."""

    def __init__(self) -> None:
        tracemalloc.start()
        tracemalloc.reset_peak()
        self._baseline = tracemalloc.get_traced_memory()[0]
        self.peak = 0

    def stop(self) -> None:
        if tracemalloc.is_tracing():
            self.peak = tracemalloc.get_traced_memory()[1] - self._baseline
            tracemalloc.stop()


@asynccontextmanager
async def traced() -> AsyncIterator[Traced]:
    tracing = Traced()
    try:
        yield tracing
    finally:
        tracing.stop()


async def run_flood(
    server: Server,
    csms: SlowCsms,
    *,
    while_held: Callable[[], None] | None = None,
    halfway: Callable[[], None] | None = None,
) -> int:
    """Flood from STATIONS stations while a good one sends Heartbeats; return heartbeats answered.

    The handlers start only once every flooding station is held back (its
    reader paused); *while_held* then checks the server, *halfway* runs once
    every station has half its CALLs answered.  Every Heartbeat must be
    answered within PROMPT seconds throughout, and every CALL in the end.
    """
    answered = dict.fromkeys((f"F{i}" for i in range(STATIONS)), 0)
    beats = 0
    async with (
        ocpprpc.connect(ws_url(server), "GOOD", compression=True, call_timeout=PROMPT) as good,
        anyio.create_task_group() as tg,
    ):

        async def heartbeats() -> None:
            nonlocal beats
            while True:
                await good.call("Heartbeat", {})
                beats += 1
                await anyio.sleep(0.01)

        tg.start_soon(heartbeats)
        async with anyio.create_task_group() as floods:
            for identity in answered:
                floods.start_soon(flood_station, server, identity, answered)

            def held() -> bool:
                sessions = [server.clients.get(identity) for identity in answered]
                return all(s is not None and s._room is not None for s in sessions)

            await eventually(held, timeout=30)
            before = beats
            await eventually(lambda: beats >= before + 3)  # the good station is served meanwhile
            if while_held is not None:
                while_held()
            csms.go.set()
            if halfway is not None:
                await eventually(lambda: min(answered.values()) >= CALLS // 2, timeout=50)
                halfway()
        tg.cancel_scope.cancel()
    assert answered == dict.fromkeys(answered, CALLS)  # nothing lost
    return beats


# Both backends on their default TCP stream: the stream's kind changes nothing here.
BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


@BACKENDS
async def test_a_compressed_flood_against_slow_handlers_is_held_in_bounded_memory() -> None:
    csms = SlowCsms()
    async with traced() as tracing, ocpprpc.serve(router=csms.router) as server:
        assert server.compression
        # Traced until the drain is well under way (the rest only costs time under tracemalloc).
        beats = await run_flood(server, csms, halfway=tracing.stop)
    grown = tracing.peak
    log.info("peak traced growth: %.1f MiB, %d heartbeats answered", grown / 2**20, beats)
    # Per station: 256 KiB of queued text (34 CALLs, parsed ~7x that), 16 CALLs in
    # handlers, 64 KiB decoded ahead: ~25 MiB in all.  Before the bound in bytes it
    # was 256 parsed CALLs plus the ~210 one read inflated to: ~90 MiB.
    assert grown < 45 * 2**20


@BACKENDS
async def test_the_server_wide_budget_bounds_queued_work_and_starves_nobody() -> None:
    csms = SlowCsms()
    limit = 256 * 1024
    seen: list[int] = []

    def check() -> None:
        budget = server.inbound_budget
        assert budget is not None
        seen.append(budget.used)
        # Within the budget plus about one message per connection (a read under way).
        assert budget.used <= limit + 2 * STATIONS * MESSAGE_SIZE
        queued = sum(s.queued_bytes for s in server.clients.values())
        assert queued <= budget.used

    async with ocpprpc.serve(
        router=csms.router, inbound_budget=limit, max_queued_bytes=None, max_queued_calls=None
    ) as server:
        assert server.inbound_budget is not None
        await run_flood(server, csms, while_held=check)
        assert server.inbound_budget.used == 0  # every byte given back
    assert seen and seen[0] >= limit  # the budget, not a bound of each station, held them


async def test_a_compressed_read_is_decoded_only_up_to_the_read_ahead_bound() -> None:
    calls = 600  # ~77 KB on the wire: more than one 64 KiB read
    texts = [meter_values(n) for n in range(calls)]
    sent = anyio.Event()
    buffered: list[int] = []
    received: list[str] = []

    async def handler(stream: anyio.abc.SocketStream) -> None:
        request = await accept_websocket(stream, protocols=["ocpp1.6"])
        async with await request.accept("ocpp1.6") as ws:
            assert ws.compression
            await sent.wait()  # everything is in the socket buffer: the first read is a full one
            received.append(await ws.receive())
            buffered.append(ws.buffered)
            while len(received) < calls:
                received.append(await ws.receive())
                buffered.append(ws.buffered)

    async with tcp_server(handler) as port:
        ws = await open_websocket(f"ws://127.0.0.1:{port}/ocpp", "F", protocols=["ocpp1.6"], compression=True)
        async with ws:
            for text in texts:
                await ws.send(text)
            sent.set()
            with anyio.fail_after(PROMPT):
                await eventually(lambda: len(received) == calls)
    assert received == texts
    # 64 KiB of text is ~25 of these; one 1 KiB slice inflates to ~8 more.  Before
    # the bound the first 64 KiB read inflated to ~500 at once.
    assert max(buffered) < 50, max(buffered)


def test_the_read_ahead_bound_is_an_option_of_the_stream() -> None:
    nothing: Any = None  # the constructor touches neither the byte stream nor the codec
    with pytest.raises(ValueError, match="max_buffered_inbound"):
        WebSocketStream(nothing, nothing, client=False, subprotocol=None, max_buffered_inbound=0)
    ws = WebSocketStream(nothing, nothing, client=False, subprotocol=None, max_buffered_inbound=1024)
    assert ws.max_buffered_inbound == 1024
    assert WebSocketStream(nothing, nothing, client=False, subprotocol=None).max_buffered_inbound == 65536
