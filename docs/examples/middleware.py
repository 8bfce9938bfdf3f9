"""Message middleware on both ends: timing, an answer from a cache, a drop, a bug that fails open.

Run it: ``python docs/examples/middleware.py``.  It prints each exchange the
CSMS's middleware saw (direction, kind, action, outcome, duration) and what the
station's calls returned.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

import ocpprpc

router = ocpprpc.Router()


@router.on("Heartbeat")
async def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> Any:
    return {"currentTime": "2024-01-01T00:00:00Z"}


@router.on("Authorize")
async def authorize(request: Any, ctx: ocpprpc.CallContext) -> Any:
    return {"idTagInfo": {"status": "Accepted" if request["idTag"] != "BLOCKED" else "Blocked"}}


@ocpprpc.never_waits  # it awaits nothing but call_next: plain handlers may stay in the reader
async def timing(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
    """Outermost: one line per exchange, with its outcome and duration (a metric's hook)."""
    outcome = "ok"
    try:
        return await call_next(ctx)
    except Exception as exc:
        outcome = type(exc).__name__
        raise
    finally:
        ms = (time.perf_counter() - ctx.started) * 1000
        print(
            f"csms saw: {ctx.direction} {ctx.kind} {ctx.action} from {ctx.identity}: {outcome} ({ms:.1f} ms)"
        )


async def normalise_tags(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
    """Transform the request before the handler sees it."""
    if ctx.action == "Authorize":
        ctx.payload = {**ctx.payload, "idTag": ctx.payload["idTag"].upper()}
    return await call_next(ctx)


async def buggy(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
    """A middleware with a bug: logged once, then skipped (it fails open)."""
    raise RuntimeError("oops")


cache = {"Heartbeat": {"currentTime": "2024-01-01T00:00:00Z (cached)"}}


async def station_cache(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
    """On the station: answer some calls locally, drop others, send the rest."""
    if ctx.action in cache:
        return cache[ctx.action]  # nothing is sent
    if ctx.action == "DataTransfer":
        return ocpprpc.DROP  # call() raises DroppedByMiddleware
    return await call_next(ctx)


async def main() -> None:
    async with (
        ocpprpc.serve(router=router, middleware=[timing, normalise_tags, buggy]) as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP001", middleware=[station_cache]) as station,
    ):
        print("station got:", await station.call("Authorize", {"idTag": "blocked"}))
        print("station got:", await station.call("Authorize", {"idTag": "abc"}))
        print("station got:", await station.call("Heartbeat", {}))
        try:
            await station.call("DataTransfer", {"vendorId": "acme"})
        except ocpprpc.DroppedByMiddleware as exc:
            print("station:", exc)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="log: %(levelname)s %(message)s")
    anyio.run(main)
