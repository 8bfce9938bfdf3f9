"""A station whose BootNotification is Pending: it sends only what the CSMS triggers.

Run it: ``python docs/examples/boot_pending.py``.  The CSMS answers the boot
``Pending`` and, meanwhile, asks for a StatusNotification with TriggerMessage:
the station's TriggerMessage handler queues it with ``call_triggered()``, so it
passes the boot gate (after the TriggerMessage answer), while the
application's own Heartbeat waits.  Then the CSMS triggers a BootNotification,
answers it ``Accepted``, and the Heartbeat leaves.
"""

from __future__ import annotations

from typing import Any

import anyio

import ocpprpc

NOW = "2024-01-01T00:00:00Z"
handled: list[str] = []
boot_answers = ["Pending", "Accepted"]
csms = ocpprpc.Router()


@csms.on_any()
async def record(request: Any, ctx: ocpprpc.CallContext) -> Any:
    handled.append(ctx.action)
    if ctx.action == "BootNotification":
        # Pending with interval 0: the station waits its boot_retry_interval (60 s here).
        status = boot_answers.pop(0)
        return {"status": status, "currentTime": NOW, "interval": 300 if status == "Accepted" else 0}
    return {"currentTime": NOW} if ctx.action == "Heartbeat" else {}


station_router = ocpprpc.Router()
stations: list[ocpprpc.Station] = []


@station_router.on("TriggerMessage")
def trigger(request: Any, ctx: ocpprpc.CallContext) -> Any:
    (station,) = stations
    if request["requestedMessage"] == "BootNotification":
        station.call_triggered(ctx, "BootNotification")  # the station's own boot payload
    else:
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        station.call_triggered(ctx, "StatusNotification", status)
    return {"status": "Accepted"}  # written before the triggered message leaves


async def main() -> None:
    async with ocpprpc.serve(router=csms) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        station = ocpprpc.Station(
            url,
            "CP001",
            boot={"chargePointVendor": "Example", "chargePointModel": "One"},
            boot_retry_interval=60,
            router=station_router,
        )
        stations.append(station)
        async with station, station.events() as events, anyio.create_task_group() as tg:
            async for event in events:
                if isinstance(event, ocpprpc.BootAnswered):
                    print("boot:", event.status)
                    break
            tg.start_soon(station.call, "Heartbeat", {})  # held by the boot gate
            cp = server.clients["CP001"]
            await cp.call("TriggerMessage", {"requestedMessage": "StatusNotification"})
            await cp.call("TriggerMessage", {"requestedMessage": "BootNotification"})
        print("boot status:", station.boot_status)
    print("CSMS handled:", handled)


if __name__ == "__main__":
    anyio.run(main)
