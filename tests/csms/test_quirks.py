"""Vendor quirk profiles over real sockets: a strict CSMS accepts a non-conformant
BootNotification (and later messages, and answers to its own calls) from the station its
profile names, remembers that station across a reconnect, and still refuses the same
payloads from every other station."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import ocpprpc
from ocpprpc import (
    CallContext,
    Coerce,
    ErrorCode,
    MapEnum,
    Match,
    OCPPError,
    Prefix,
    QuirkProfile,
    Quirks,
    Router,
    Truncate,
    v16,
)

from .helpers import eventually, ws_url

pytestmark = pytest.mark.timeout(30)

SERIAL_40 = "Z" * 40
MEASURAND = "meterValue/*/sampledValue/*/measurand"
REGISTER = "Energy.Active.Import.Register"

ACME_16 = QuirkProfile(
    "acme-fw1",
    match=Match(vendor="Acme", firmware=Prefix("1."), protocols=["ocpp1.6"]),
    calls={
        # 40 characters where 1.6 allows 25, and a number where it wants a string.
        "BootNotification": [Truncate("chargePointSerialNumber", 25), Coerce("meterSerialNumber", to=str)],
        "MeterValues": [MapEnum(MEASURAND, {"Energy.Active.Import": "Energy.Active.Import.Register"})],
    },
    results={"GetConfiguration": [Coerce("configurationKey/*/readonly", to=bool)]},
)
ACME_201 = QuirkProfile(
    "acme-201",
    match=Match(vendor="Acme", protocols=["ocpp2.0.1", "ocpp2.1"]),
    calls={"BootNotification": [Truncate("chargingStation/serialNumber", 25)]},
)


def _boot16(vendor: str) -> dict[str, Any]:
    return {
        "chargePointVendor": vendor,
        "chargePointModel": "Wallbox",
        "firmwareVersion": "1.4.2",
        "chargePointSerialNumber": SERIAL_40,
        "meterSerialNumber": 123456,
    }


def _csms_router(seen: list[Any]) -> Router:
    router = Router()

    @router.on("BootNotification")
    async def boot(request: Any, ctx: CallContext) -> dict[str, Any]:
        seen.append(request)
        return {"status": "Accepted", "currentTime": "2025-01-01T00:00:00Z", "interval": 300}

    @router.on("MeterValues")
    async def meter_values(request: Any, ctx: CallContext) -> dict[str, Any]:
        seen.append(request)
        return {}

    return router


def _station_router() -> Router:
    router = Router()

    @router.on("GetConfiguration")
    async def get_configuration(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"configurationKey": [{"key": "HeartbeatInterval", "readonly": "true", "value": "300"}]}

    return router


async def test_a_strict_csms_repairs_what_its_profile_names_and_refuses_it_from_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "ocpprpc.quirks")
    seen: list[Any] = []
    meter_values = {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": "2025-01-01T00:00:00Z",
                "sampledValue": [{"value": "10", "measurand": "Energy.Active.Import"}],
            }
        ],
    }
    quirks = Quirks([ACME_16])
    async with ocpprpc.serve(
        router=_csms_router(seen), validation=True, protocols=["ocpp1.6"], quirks=quirks
    ) as server:
        url = ws_url(server)
        # The station's own validation is off: it sends what a real non-conformant charger sends.
        async with ocpprpc.connect(url, "ACME-1", router=_station_router()) as station:
            answer = await station.call("BootNotification", _boot16("Acme"))
            assert answer["status"] == "Accepted"
            # Handlers registered by action name get plain JSON values, validated.
            boot = seen.pop()
            assert boot["chargePointSerialNumber"] == SERIAL_40[:25]
            assert boot["meterSerialNumber"] == "123456"
            # Later messages of the same connection, and answers to the CSMS's own calls.
            assert await station.call("MeterValues", meter_values) == {}
            assert seen.pop()["meterValue"][0]["sampledValue"][0]["measurand"] == REGISTER
            config = await server.clients["ACME-1"].call("GetConfiguration", {})
            assert config["configurationKey"][0]["readonly"] is True

        # The same station reconnects (no BootNotification): its profile is remembered.
        async with ocpprpc.connect(url, "ACME-1") as station:
            assert await station.call("MeterValues", meter_values) == {}
            assert seen.pop()["meterValue"][0]["sampledValue"][0]["measurand"] == REGISTER
        assert quirks.remembered("ACME-1") is ACME_16

        # The same payloads from another station: strict validation as ever.
        async with ocpprpc.connect(url, "OTHER-1", router=_station_router()) as other:
            with pytest.raises(OCPPError) as refused:
                await other.call("BootNotification", _boot16("Other"))
            assert refused.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
            assert "chargePointSerialNumber" in refused.value.description
            with pytest.raises(OCPPError) as refused:
                await other.call("MeterValues", meter_values)
            assert refused.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
            await eventually(lambda: "OTHER-1" in server.clients)
            with pytest.raises(ocpprpc.InvalidResponseError):
                await server.clients["OTHER-1"].call("GetConfiguration", {})
        assert not seen

    repairs = [r.getMessage() for r in caplog.records if "repaired" in r.getMessage()]
    # Once per (station, action, direction, path, repair), across both connections.
    assert len(repairs) == 4, repairs
    assert any("station 'ACME-1' BootNotification CALL" in m and "40 -> 25 chars" in m for m in repairs)
    assert all(SERIAL_40 not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_a_2x_boot_with_a_long_serial_number(protocol: str) -> None:
    seen: list[Any] = []
    station_info = {"vendorName": "Acme", "model": "Wallbox", "serialNumber": SERIAL_40}
    boot = {"reason": "PowerUp", "chargingStation": station_info}
    async with ocpprpc.serve(
        router=_csms_router(seen), validation=True, protocols=[protocol], quirks=[ACME_201]
    ) as server:
        async with ocpprpc.connect(ws_url(server), "ACME-2", protocols=[protocol]) as station:
            assert (await station.call("BootNotification", boot))["status"] == "Accepted"
        assert seen.pop()["chargingStation"]["serialNumber"] == SERIAL_40[:25]
        other = {**boot, "chargingStation": {**station_info, "vendorName": "Other"}}
        async with ocpprpc.connect(ws_url(server), "OTHER-2", protocols=[protocol]) as station:
            with pytest.raises(OCPPError) as refused:
                await station.call("BootNotification", other)
            assert refused.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
        assert not seen


async def test_a_station_repairs_the_answers_of_a_non_conformant_csms() -> None:
    csms = Router()

    @csms.on("BootNotification")
    async def boot(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": "2025-01-01T00:00:00Z", "interval": "300"}

    profile = QuirkProfile("csms-x", results={"BootNotification": [Coerce("interval", to=int)]})
    async with ocpprpc.serve(router=csms, protocols=["ocpp1.6"]) as server:
        boot_request = v16.BootNotificationRequest(charge_point_vendor="V", charge_point_model="M")
        async with ocpprpc.connect(ws_url(server), "CP1", validation=True, quirks=[profile]) as station:
            answer = await station.call(boot_request)
            assert answer.interval == 300
        async with ocpprpc.connect(ws_url(server), "CP1", validation=True) as station:
            with pytest.raises(ocpprpc.InvalidResponseError):
                await station.call(boot_request)
