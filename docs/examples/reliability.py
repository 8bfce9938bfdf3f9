"""A station that survives its CSMS restarting: reconnect, outbox, boot gate, replay cache.

Run it: ``python docs/examples/reliability.py``.  It prints what the station
saw and what the CSMS handled (each message exactly once, in order).
"""

from __future__ import annotations

from typing import Any

import anyio

import ocpprpc

handled: list[str] = []
csms = ocpprpc.Router()


@csms.on_any()
async def record(request: Any, ctx: ocpprpc.CallContext) -> Any:
    handled.append(ctx.action)
    if ctx.action == "BootNotification":
        return {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 300}
    return {"currentTime": "2024-01-01T00:00:00Z"} if ctx.action == "Heartbeat" else {}


def show(event: ocpprpc.StationEvent) -> None:
    if isinstance(event, (ocpprpc.Connected, ocpprpc.Disconnected, ocpprpc.BootAnswered)):
        print("station:", event)


async def main() -> None:
    # One replay cache and one boot registry for every CSMS life: stand-ins for a
    # persistent store (a restarted CSMS must still know the station booted).
    replay = ocpprpc.ReplayCache(1000)
    booted: dict[str, bool] = {}
    async with ocpprpc.serve(
        router=csms, require_boot=True, boot_registry=booted, replay_cache=replay
    ) as server:
        port = server.port
    url = f"ws://127.0.0.1:{port}/ocpp"
    station = ocpprpc.Station(
        url,
        "CP001",
        reconnect=ocpprpc.Backoff(base=0.05, cap=0.5, retry_first_connect=True),
        keepalive=ocpprpc.Keepalive(interval=5, timeout=2),
        retry=ocpprpc.Retry(attempts=5, delay=0.05),
        boot={"chargePointVendor": "Example", "chargePointModel": "One"},
        on_event=show,
    )
    async with station:
        async with ocpprpc.serve(
            port=port, router=csms, require_boot=True, boot_registry=booted, replay_cache=replay
        ):
            await station.call("Heartbeat", {})  # waits until connected and booted
        # The CSMS is gone: this call waits in the outbox ...
        delivered = anyio.Event()

        async def status() -> None:
            await station.call(
                "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
            )
            delivered.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(status)
            await anyio.wait_all_tasks_blocked()
            print("queued while offline:", station.outbox_length)
            # ... and leaves once the CSMS is back.
            async with ocpprpc.serve(
                port=port, router=csms, require_boot=True, boot_registry=booted, replay_cache=replay
            ):
                await delivered.wait()
    print("CSMS handled:", handled)


if __name__ == "__main__":
    anyio.run(main)
