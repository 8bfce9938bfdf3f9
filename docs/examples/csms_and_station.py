"""A CSMS and a charging station over a real WebSocket, typed end to end, on asyncio and trio.

The CSMS accepts the station, answers its BootNotification and Heartbeat with
typed handlers, and, once the station is connected, calls it back
(ChangeAvailability).  Strict validation is on at both ends.
"""

from __future__ import annotations

import datetime

import anyio

import ocpprpc
from ocpprpc import v16

csms_router = ocpprpc.Router()


@csms_router.on(v16.BootNotificationRequest)
async def boot(
    request: v16.BootNotificationRequest, ctx: ocpprpc.CallContext
) -> v16.BootNotificationResponse:
    ctx.session.data["model"] = request.charge_point_model
    return v16.BootNotificationResponse(
        status=v16.RegistrationStatus.ACCEPTED,
        current_time=datetime.datetime.now(datetime.UTC),
        interval=300,
    )


@csms_router.on(v16.HeartbeatRequest)
async def heartbeat(request: v16.HeartbeatRequest, ctx: ocpprpc.CallContext) -> v16.HeartbeatResponse:
    return v16.HeartbeatResponse(current_time=datetime.datetime.now(datetime.UTC))


station_router = ocpprpc.Router()


@station_router.on(v16.ChangeAvailabilityRequest)
async def change_availability(
    request: v16.ChangeAvailabilityRequest, ctx: ocpprpc.CallContext
) -> v16.ChangeAvailabilityResponse:
    return v16.ChangeAvailabilityResponse(status=v16.AvailabilityStatus.ACCEPTED)


async def main() -> None:
    called_back = anyio.Event()

    async def on_connect(session: ocpprpc.Session) -> None:
        # The CSMS side of one station: call it once it is connected.
        answer = await session.call(
            v16.ChangeAvailabilityRequest(connector_id=0, type=v16.AvailabilityType.INOPERATIVE)
        )
        print(f"CSMS: {session.identity} answered ChangeAvailability with {answer.status.value}")
        called_back.set()

    async with ocpprpc.serve(
        "127.0.0.1", 0, router=csms_router, on_connect=on_connect, validation=True
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with ocpprpc.connect(
            url, "CP001", protocols=["ocpp1.6"], router=station_router, validation=True
        ) as station:
            booted = await station.call(
                v16.BootNotificationRequest(charge_point_vendor="ocpprpc", charge_point_model="Demo")
            )
            beat = await station.call(v16.HeartbeatRequest())
            with anyio.fail_after(10):
                await called_back.wait()
            print(f"station: boot {booted.status.value}, interval {booted.interval} s")
            print(f"station: CSMS time is {beat.current_time:%Y-%m-%d %H:%M}")
            print(f"CSMS sees {list(server.clients)} with data {server.clients['CP001'].data}")


if __name__ == "__main__":
    for backend in ("asyncio", "trio"):
        print(f"-- {backend}")
        anyio.run(main, backend=backend)
