"""A session keeps its own state in slots: no per-connection instance dict unless the user adds to it.

With over 30 attributes CPython stops sharing instance-dict keys, and the dict cost 1.6 KB per
idle station (bench/README.md, "Idle connections and the garbage collector").  These tests fail
when an attribute the session sets is missing from ``Session.__slots__``: it lands in a dict.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel

from ocpprpc import CallContext, Router
from ocpprpc.testing import session_pair


async def test_a_session_at_work_and_closed_has_nothing_outside_its_slots() -> None:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-12-07T12:00:00Z"}

    @router.on("BootNotification")
    async def boot(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        ctx.session.state["booted"] = True  # the server's per-session state, made on first use
        return {"status": "Accepted", "currentTime": "2026-12-07T12:00:00Z", "interval": 300}

    async with session_pair(csms_router=router) as (station, csms):
        async with anyio.create_task_group() as tg:
            for _ in range(20):  # queued behind the async handler's workers, and taken
                tg.start_soon(
                    station.call, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
                )
            for _ in range(5):
                tg.start_soon(station.call, "Heartbeat", {})
        assert csms.state == {"booted": True}
        assert vars(station) == {}
        assert vars(csms) == {}
    assert vars(station) == {}
    assert vars(csms) == {}


async def test_an_attribute_of_the_user_s_own_still_works() -> None:
    async with session_pair() as (station, _):
        station.tag = "mine"  # type: ignore[attr-defined]  # not a slot: the dict is made for it
        assert station.tag == "mine"  # type: ignore[attr-defined]
        assert vars(station) == {"tag": "mine"}
