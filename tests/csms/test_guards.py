"""The CSMS guards (boot gate, replay cache) in front of plain and async handlers, over real sockets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import CallContext, Router

from .helpers import PROMPT, raw_station

pytestmark = pytest.mark.timeout(20)

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def csms_router(plain: bool, handled: list[str]) -> Router:
    """BootNotification and Heartbeat handlers, written as plain functions or as ``async def``."""

    def boot(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        handled.append(ctx.message_id)
        return {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 300}

    def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        handled.append(ctx.message_id)
        return {"currentTime": "2024-01-01T00:00:00Z"}

    router = Router()
    for action, handler in (("BootNotification", boot), ("Heartbeat", heartbeat)):
        router.on(action)(handler if plain else _as_async(handler))
    return router


def _as_async(handler: Callable[[Any, CallContext], Any]) -> Callable[[Any, CallContext], Any]:
    async def wrapped(request: Any, ctx: CallContext) -> Any:
        return handler(request, ctx)

    return wrapped


async def exchange(station: Any, message_id: str, action: str, payload: dict[str, Any]) -> list[Any]:
    await station.send_text(json.dumps([2, message_id, action, payload]))
    with anyio.fail_after(PROMPT):
        answer: list[Any] = json.loads(await station.next_text())
    return answer


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "async"])
async def test_the_boot_gate_runs_plain_and_async_handlers(plain: bool) -> None:
    handled: list[str] = []
    async with (
        ocpprpc.serve(router=csms_router(plain, handled), require_boot=True, boot_registry={}) as server,
        raw_station(server.port, "CP1") as station,
    ):
        refused = await exchange(station, "hb-0", "Heartbeat", {})
        assert refused[:3] == [4, "hb-0", "SecurityError"]
        booted = await exchange(station, "boot-1", "BootNotification", BOOT)
        assert booted[:2] == [3, "boot-1"] and booted[2]["status"] == "Accepted"
        beat = await exchange(station, "hb-1", "Heartbeat", {})
        assert beat == [3, "hb-1", {"currentTime": "2024-01-01T00:00:00Z"}]
    assert handled == ["boot-1", "hb-1"]


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "async"])
async def test_the_replay_cache_runs_plain_and_async_handlers(plain: bool) -> None:
    handled: list[str] = []
    async with (
        ocpprpc.serve(router=csms_router(plain, handled), replay_cache=10) as server,
        raw_station(server.port, "CP1") as station,
    ):
        first = await exchange(station, "hb-1", "Heartbeat", {})
        assert first == [3, "hb-1", {"currentTime": "2024-01-01T00:00:00Z"}]
        assert await exchange(station, "hb-1", "Heartbeat", {}) == first  # from memory
        assert server.replay_cache is not None and server.replay_cache.replays == 1
    assert handled == ["hb-1"]
