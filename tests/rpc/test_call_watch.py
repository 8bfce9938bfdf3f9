"""``Session.call_watch``: seeing our CALLs start and end (the CSMS boot gate's TriggerMessage hook)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ocpprpc import CallContext, OCPPError, Router
from ocpprpc.testing import session_pair


def csms_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-11-21T00:00:00Z"}

    return router


async def test_the_watch_sees_each_call_start_and_its_answer_or_none() -> None:
    seen: list[tuple[str, Any]] = []

    def watch(action: str, payload: Any) -> Callable[[Any], None] | None:
        seen.append(("start", action))
        if action == "DataTransfer":
            return None  # not interested in how this one ends
        return lambda answer: seen.append(("end", answer))

    async with session_pair(csms_router=csms_router()) as (station, _):
        station.call_watch = watch
        await station.call("Heartbeat", {})
        with pytest.raises(OCPPError):
            await station.call("Authorize", {"idTag": "T"})  # no handler: NotImplemented
        with pytest.raises(OCPPError):
            await station.call("DataTransfer", {"vendorId": "V"})
    assert seen == [
        ("start", "Heartbeat"),
        ("end", {"currentTime": "2026-11-21T00:00:00Z"}),
        ("start", "Authorize"),
        ("end", None),
        ("start", "DataTransfer"),
    ]
