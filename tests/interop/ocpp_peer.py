# The ocpp package's @on decorator is untyped; that is the peer's business, not ours.
# mypy: disable-error-code="untyped-decorator, misc"
"""An interop peer nobody here wrote: the ``ocpp`` package (mobilityhouse) on ``websockets``.

Run as a subprocess by tests/interop/test_ocpp_package.py so that our side can
run on trio as well as asyncio (``ocpp`` and ``websockets`` are asyncio only).
Every step prints one JSON line on stdout; the test reads them.

    python ocpp_peer.py csms --protocol ocpp1.6            # prints {"event": "ready", "port": P}
    python ocpp_peer.py station --url ws://h:p/path --identity CP1 --protocol ocpp2.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import AvailabilityType
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v21.datatypes import ChargingStationType as Station21
from ocpp.v21.enums import BootReasonEnumType as Reason21
from ocpp.v21.enums import OperationalStatusEnumType as Status21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.datatypes import ChargingStationType as Station201
from ocpp.v201.enums import BootReasonEnumType as Reason201
from ocpp.v201.enums import OperationalStatusEnumType as Status201
from websockets.typing import Subprotocol


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, default=str) + "\n")
    sys.stdout.flush()


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


class Csms16(ChargePoint16):
    @on("BootNotification")
    def boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        emit(event="received", action="BootNotification", vendor=charge_point_vendor)
        return result16.BootNotification(current_time=now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **_: Any) -> Any:
        emit(event="received", action="Heartbeat")
        return result16.Heartbeat(current_time=now())


class Csms201(ChargePoint201):
    @on("BootNotification")
    def boot(self, charging_station: dict[str, Any], reason: str, **_: Any) -> Any:
        emit(event="received", action="BootNotification", vendor=charging_station["vendor_name"])
        return result201.BootNotification(current_time=now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **_: Any) -> Any:
        emit(event="received", action="Heartbeat")
        return result201.Heartbeat(current_time=now())


class Csms21(ChargePoint21):
    @on("BootNotification")
    def boot(self, charging_station: dict[str, Any], reason: str, **_: Any) -> Any:
        emit(event="received", action="BootNotification", vendor=charging_station["vendor_name"])
        return result21.BootNotification(current_time=now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **_: Any) -> Any:
        emit(event="received", action="Heartbeat")
        return result21.Heartbeat(current_time=now())


CSMS: dict[str, Any] = {"ocpp1.6": Csms16, "ocpp2.0.1": Csms201, "ocpp2.1": Csms21}
STATION: dict[str, Any] = {"ocpp1.6": ChargePoint16, "ocpp2.0.1": ChargePoint201, "ocpp2.1": ChargePoint21}


def change_availability(protocol: str) -> Any:
    if protocol == "ocpp1.6":
        return call16.ChangeAvailability(connector_id=0, type=AvailabilityType.inoperative)
    if protocol == "ocpp2.0.1":
        return call201.ChangeAvailability(operational_status=Status201.inoperative)
    return call21.ChangeAvailability(operational_status=Status21.inoperative)


def boot_request(protocol: str) -> Any:
    if protocol == "ocpp1.6":
        return call16.BootNotification(charge_point_vendor="mobilityhouse", charge_point_model="ocpp")
    if protocol == "ocpp2.0.1":
        return call201.BootNotification(
            charging_station=Station201(vendor_name="mobilityhouse", model="ocpp"), reason=Reason201.power_up
        )
    return call21.BootNotification(
        charging_station=Station21(vendor_name="mobilityhouse", model="ocpp"), reason=Reason21.power_up
    )


def heartbeat_request(protocol: str) -> Any:
    return {"ocpp1.6": call16, "ocpp2.0.1": call201, "ocpp2.1": call21}[protocol].Heartbeat()


async def run_csms(protocol: str) -> None:
    """Accept one station, let it boot, call ChangeAvailability on it, report, keep serving."""

    async def on_connect(websocket: Any) -> None:
        identity = websocket.request.path.rstrip("/").rsplit("/", 1)[-1]
        emit(event="connected", identity=identity, subprotocol=websocket.subprotocol)
        charge_point = CSMS[protocol](identity, websocket)

        async def drive() -> None:
            await asyncio.sleep(0.2)  # let the station boot first (its calls run concurrently anyway)
            answer = await charge_point.call(change_availability(protocol))
            emit(event="answer", action="ChangeAvailability", status=str(answer.status))

        task = asyncio.create_task(drive())
        try:
            await charge_point.start()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            task.cancel()
            emit(event="disconnected", identity=identity)

    async with websockets.serve(on_connect, "127.0.0.1", 0, subprotocols=[Subprotocol(protocol)]) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        emit(event="ready", port=port)
        await asyncio.Future()


async def run_station(url: str, identity: str, protocol: str) -> None:
    """Connect, boot, heartbeat, answer one ChangeAvailability, report, close."""
    answered = asyncio.Event()

    class Station(STATION[protocol]):  # type: ignore[valid-type]
        @on("ChangeAvailability")
        def change_availability(self, **fields: Any) -> Any:
            emit(event="received", action="ChangeAvailability", fields=fields)
            answered.set()
            module = {"ocpp1.6": result16, "ocpp2.0.1": result201, "ocpp2.1": result21}[protocol]
            return module.ChangeAvailability(status="Accepted")

    async with websockets.connect(
        f"{url.rstrip('/')}/{identity}", subprotocols=[Subprotocol(protocol)]
    ) as ws:
        emit(event="connected", subprotocol=ws.subprotocol)
        station = Station(identity, ws)
        task = asyncio.create_task(station.start())
        boot = await station.call(boot_request(protocol))
        emit(event="answer", action="BootNotification", status=str(boot.status), interval=boot.interval)
        beat = await station.call(heartbeat_request(protocol))
        emit(event="answer", action="Heartbeat", current_time=beat.current_time)
        await asyncio.wait_for(answered.wait(), 10)
        await asyncio.sleep(0.1)  # let the answer go out before closing
        task.cancel()
    emit(event="done")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["csms", "station"])
    parser.add_argument("--protocol", default="ocpp1.6")
    parser.add_argument("--url", default="")
    parser.add_argument("--identity", default="CP1")
    args = parser.parse_args()
    if args.mode == "csms":
        asyncio.run(run_csms(args.protocol))
    else:
        asyncio.run(run_station(args.url, args.identity, args.protocol))


if __name__ == "__main__":
    main()
