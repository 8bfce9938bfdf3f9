"""A CSMS process tuned for thousands of stations: ``ocpprpc.tune_gc()`` once at start-up.

Run it: ``python docs/examples/gc_tuning.py``.  It prints the collector's thresholds
before and after, then serves a station as usual.
"""

from __future__ import annotations

import gc
from typing import Any

import anyio

import ocpprpc

router = ocpprpc.Router()


@router.on("Heartbeat")
def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> Any:
    return {"currentTime": "2024-01-01T00:00:00Z"}


async def main() -> None:
    previous = ocpprpc.tune_gc()  # the whole process's setting: once, by the application
    print(f"gc thresholds: {previous} -> {gc.get_threshold()}")
    async with (
        ocpprpc.serve(router=router) as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP001") as station,
    ):
        print("station got:", await station.call("Heartbeat", {}))


if __name__ == "__main__":
    anyio.run(main)
