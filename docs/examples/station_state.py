"""Station state on a CSMS: the registry, the command buffer and session state, wired in.

Run it: ``python docs/examples/station_state.py``.  A command for a station that is
away waits in the command buffer and goes out once the station is back and has
booted; the registry remembers what the station said; a handler's counter in
``ctx.state`` survives the station's reconnect; and after a "restart" of the CSMS
the registry's SQLite file says the station booted, so a command buffered for it
goes out as soon as it is back, without a new boot.  On asyncio, then on trio.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio

import ocpprpc

NOW = "2026-12-07T09:00:00Z"
csms = ocpprpc.Router()


@csms.on("BootNotification")
async def boot(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
    return {"currentTime": NOW, "interval": 300, "status": "Accepted"}


@csms.on("Heartbeat")
async def heartbeat(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
    # ctx.state is the same dict when the station comes back (within the TTL)
    ctx.state["heartbeats"] = ctx.state.get("heartbeats", 0) + 1
    return {"currentTime": NOW}


@csms.on("StatusNotification")
async def status(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
    return {}


station = ocpprpc.Router()


@station.on("Reset")
async def reset(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
    print(f"  station: Reset {request['type']}")
    return {"status": "Accepted"}


async def first_run(path: Path) -> None:
    registry = ocpprpc.StationRegistry(ocpprpc.SQLiteRegistryStore(path), node="csms-a")
    async with ocpprpc.serve(
        router=csms,
        registry=registry,  # or True: in memory
        command_buffer=ocpprpc.CommandBuffer(max_per_station=10, default_deadline=600),
        session_state=ocpprpc.SessionStates(ttl=600),
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        # CP1 is away: the command waits in the buffer (wait=False: a handle, at once)
        queued = await server.try_send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True, wait=False)
        assert queued.status is ocpprpc.SendStatus.QUEUED and queued.command is not None
        print("queued:", queued.command)
        async with ocpprpc.connect(url, "CP1", protocols=["ocpp1.6"], router=station) as cp1:
            await cp1.call("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "Fast-50"})
            outcome = await queued.command.wait()  # sent once the boot was accepted
            print("answered:", outcome.status.value, outcome.result)
            await cp1.call(
                "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
            )
            await cp1.call("Heartbeat", {})
            record = registry.get("CP1")
            assert record is not None and record.boot is not None
            print("registry:", record.boot.vendor, record.boot.model, record.boot.status, record.connectors)
        # back after a link flap: no new boot, the same session state
        async with ocpprpc.connect(url, "CP1", protocols=["ocpp1.6"], router=station) as cp1:
            await cp1.call("Heartbeat", {})
            assert server.clients["CP1"].state == {"heartbeats": 2}
            # the station is ready: a waiting send through the buffer is answered at once
            answer = await server.send_to_client("CP1", "Reset", {"type": "Hard"}, queue=True)
            print("session state:", server.clients["CP1"].state, "answer:", answer)


async def after_a_restart(path: Path) -> None:
    registry = ocpprpc.StationRegistry(ocpprpc.SQLiteRegistryStore(path), node="csms-a")
    async with ocpprpc.serve(
        router=csms, registry=registry, command_buffer=ocpprpc.CommandBuffer()
    ) as server:
        record = registry.get("CP1")
        assert record is not None and not record.connected  # nobody is connected to a new process
        try:
            await server.send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True, deadline=0.2)
        except ocpprpc.CommandExpired as exc:  # CP1 stays away: the command expires unsent
            print("expired:", exc)
        queued = await server.try_send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True, wait=False)
        assert queued.command is not None
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with ocpprpc.connect(url, "CP1", protocols=["ocpp1.6"], router=station):
            # its accepted boot is in the registry's file: no new boot needed
            print("after restart:", (await queued.command.wait()).status.value)


def main() -> None:
    for backend in ("asyncio", "trio"):
        print(f"-- {backend}")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "stations.db"
            anyio.run(first_run, path, backend=backend)
            anyio.run(after_a_restart, path, backend=backend)


if __name__ == "__main__":
    main()
