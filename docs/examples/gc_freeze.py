"""A CSMS process that freezes what survives each garbage collection: ``tune_gc(freeze_survivors=True)``.

Run it: ``python docs/examples/gc_freeze.py``.  It serves a station, and shows that
the connection's objects left the collector's view after one collection.
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
    ocpprpc.tune_gc(freeze_survivors=True)  # the whole process's setting: once, by the application
    try:
        async with (
            ocpprpc.serve(router=router) as server,
            ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP001") as station,
        ):
            print("station got:", await station.call("Heartbeat", {}))
            gc.collect()  # any collection: what survives it is frozen
            print("frozen objects:", gc.get_freeze_count() > 0)
            print("left to scan in the old generations:", gc.get_count()[1:])
    finally:
        ocpprpc.tune_gc(freeze_survivors=False)  # for this example's sake: leave the process as found
        gc.unfreeze()


if __name__ == "__main__":
    anyio.run(main)
