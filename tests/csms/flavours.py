"""The same small exchange in each OCPP version, with the generated typed messages.

A station boots and heartbeats; the CSMS asks it to change availability.  Each
version's routers are written out with typed registrations (``router.on(
v16.BootNotificationRequest)``), so mypy checks handler signatures against the
generated types just as it would in an application.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ocpprpc import CallContext, Request, Router, v16, v21, v201


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Flavour:
    protocol: str
    boot: Request[Any]
    heartbeat: Request[Any]
    change_availability: Request[Any]
    boot_response: type[Any]
    heartbeat_response: type[Any]
    change_availability_response: type[Any]
    #: Plain-dict versions of the same requests, for the untyped API.
    boot_dict: dict[str, Any]
    change_availability_dict: dict[str, Any]

    def csms_router(self, seen: list[Any]) -> Router:
        """Typed handlers for Boot and Heartbeat; every request they get is appended to *seen*."""
        return _CSMS_ROUTERS[self.protocol](seen)

    def station_router(self, seen: list[Any]) -> Router:
        """A typed ChangeAvailability handler that accepts."""
        return _STATION_ROUTERS[self.protocol](seen)


def _csms16(seen: list[Any]) -> Router:
    router = Router()

    @router.on(v16.BootNotificationRequest)
    async def boot(request: v16.BootNotificationRequest, ctx: CallContext) -> v16.BootNotificationResponse:
        seen.append(request)
        return v16.BootNotificationResponse(
            status=v16.RegistrationStatus.ACCEPTED, current_time=_now(), interval=300
        )

    @router.on(v16.HeartbeatRequest)
    async def heartbeat(request: v16.HeartbeatRequest, ctx: CallContext) -> v16.HeartbeatResponse:
        seen.append(request)
        return v16.HeartbeatResponse(current_time=_now())

    return router


def _station16(seen: list[Any]) -> Router:
    router = Router()

    @router.on(v16.ChangeAvailabilityRequest)
    async def change(
        request: v16.ChangeAvailabilityRequest, ctx: CallContext
    ) -> v16.ChangeAvailabilityResponse:
        seen.append(request)
        return v16.ChangeAvailabilityResponse(status=v16.AvailabilityStatus.ACCEPTED)

    return router


def _csms201(seen: list[Any]) -> Router:
    router = Router()

    @router.on(v201.BootNotificationRequest)
    async def boot(request: v201.BootNotificationRequest, ctx: CallContext) -> v201.BootNotificationResponse:
        seen.append(request)
        return v201.BootNotificationResponse(
            status=v201.RegistrationStatusEnum.ACCEPTED, current_time=_now(), interval=300
        )

    @router.on(v201.HeartbeatRequest)
    async def heartbeat(request: v201.HeartbeatRequest, ctx: CallContext) -> v201.HeartbeatResponse:
        seen.append(request)
        return v201.HeartbeatResponse(current_time=_now())

    return router


def _station201(seen: list[Any]) -> Router:
    router = Router()

    @router.on(v201.ChangeAvailabilityRequest)
    async def change(
        request: v201.ChangeAvailabilityRequest, ctx: CallContext
    ) -> v201.ChangeAvailabilityResponse:
        seen.append(request)
        return v201.ChangeAvailabilityResponse(status=v201.ChangeAvailabilityStatusEnum.ACCEPTED)

    return router


def _csms21(seen: list[Any]) -> Router:
    router = Router()

    @router.on(v21.BootNotificationRequest)
    async def boot(request: v21.BootNotificationRequest, ctx: CallContext) -> v21.BootNotificationResponse:
        seen.append(request)
        return v21.BootNotificationResponse(
            status=v21.RegistrationStatusEnum.ACCEPTED, current_time=_now(), interval=300
        )

    @router.on(v21.HeartbeatRequest)
    async def heartbeat(request: v21.HeartbeatRequest, ctx: CallContext) -> v21.HeartbeatResponse:
        seen.append(request)
        return v21.HeartbeatResponse(current_time=_now())

    return router


def _station21(seen: list[Any]) -> Router:
    router = Router()

    @router.on(v21.ChangeAvailabilityRequest)
    async def change(
        request: v21.ChangeAvailabilityRequest, ctx: CallContext
    ) -> v21.ChangeAvailabilityResponse:
        seen.append(request)
        return v21.ChangeAvailabilityResponse(status=v21.ChangeAvailabilityStatusEnum.ACCEPTED)

    return router


_CSMS_ROUTERS = {"ocpp1.6": _csms16, "ocpp2.0.1": _csms201, "ocpp2.1": _csms21}
_STATION_ROUTERS = {"ocpp1.6": _station16, "ocpp2.0.1": _station201, "ocpp2.1": _station21}

_BOOT_2X = {"chargingStation": {"vendorName": "ocpprpc", "model": "Test"}, "reason": "PowerUp"}

FLAVOURS = {
    "ocpp1.6": Flavour(
        protocol="ocpp1.6",
        boot=v16.BootNotificationRequest(charge_point_vendor="ocpprpc", charge_point_model="Test"),
        heartbeat=v16.HeartbeatRequest(),
        change_availability=v16.ChangeAvailabilityRequest(
            connector_id=0, type=v16.AvailabilityType.INOPERATIVE
        ),
        boot_response=v16.BootNotificationResponse,
        heartbeat_response=v16.HeartbeatResponse,
        change_availability_response=v16.ChangeAvailabilityResponse,
        boot_dict={"chargePointVendor": "ocpprpc", "chargePointModel": "Test"},
        change_availability_dict={"connectorId": 0, "type": "Inoperative"},
    ),
    "ocpp2.0.1": Flavour(
        protocol="ocpp2.0.1",
        boot=v201.BootNotificationRequest(
            charging_station=v201.ChargingStation(vendor_name="ocpprpc", model="Test"),
            reason=v201.BootReasonEnum.POWER_UP,
        ),
        heartbeat=v201.HeartbeatRequest(),
        change_availability=v201.ChangeAvailabilityRequest(
            operational_status=v201.OperationalStatusEnum.INOPERATIVE
        ),
        boot_response=v201.BootNotificationResponse,
        heartbeat_response=v201.HeartbeatResponse,
        change_availability_response=v201.ChangeAvailabilityResponse,
        boot_dict=_BOOT_2X,
        change_availability_dict={"operationalStatus": "Inoperative"},
    ),
    "ocpp2.1": Flavour(
        protocol="ocpp2.1",
        boot=v21.BootNotificationRequest(
            charging_station=v21.ChargingStation(vendor_name="ocpprpc", model="Test"),
            reason=v21.BootReasonEnum.POWER_UP,
        ),
        heartbeat=v21.HeartbeatRequest(),
        change_availability=v21.ChangeAvailabilityRequest(
            operational_status=v21.OperationalStatusEnum.INOPERATIVE
        ),
        boot_response=v21.BootNotificationResponse,
        heartbeat_response=v21.HeartbeatResponse,
        change_availability_response=v21.ChangeAvailabilityResponse,
        boot_dict=_BOOT_2X,
        change_availability_dict={"operationalStatus": "Inoperative"},
    ),
}

PROTOCOLS = list(FLAVOURS)
