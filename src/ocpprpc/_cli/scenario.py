"""What the station simulator does, per OCPP version, as plain payloads.

Kept apart from the CLI so that tests and the benchmark peer can drive the
same script over any transport: a scenario only needs an awaitable
``call(action, payload) -> dict`` and a ``sleep``.
"""

from __future__ import annotations

import datetime
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

__all__ = ["ChargingScenario", "boot_payload", "now_iso"]

Caller = Callable[[str, dict[str, Any]], Awaitable[Any]]
Sleeper = Callable[[float], Awaitable[None]]

ID_TAG = "SIMTAG0001"


#: The second last formatted and its text up to the milliseconds: ``now_iso()`` answers every
#: Heartbeat of the ready CSMS, and ``strftime`` once a second instead of once a call saves ~3 µs.
_second: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """UTC now, RFC 3339 with a ``Z`` offset and millisecond precision (valid on every version)."""
    return iso_at(time.time())


def iso_at(moment: float) -> str:
    """*moment* (seconds since the epoch, UTC) as :func:`now_iso` formats it."""
    global _second
    second = int(moment)
    cached = _second  # one read: another thread may replace the pair, never half of it
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
    return f"{cached[1]}{int((moment - second) * 1000):03d}Z"


def boot_payload(protocol: str, vendor: str = "ocpprpc", model: str = "Simulator") -> dict[str, Any]:
    """The BootNotification request a station of *protocol* sends."""
    if protocol == "ocpp1.6":
        return {"chargePointVendor": vendor, "chargePointModel": model}
    return {"chargingStation": {"vendorName": vendor, "model": model}, "reason": "PowerUp"}


class ChargingScenario:
    """Boot, report status, heartbeat, and run one charging session with meter values."""

    def __init__(self, protocol: str, call: Caller, sleep: Sleeper, *, meter_values: int = 3) -> None:
        self.protocol = protocol
        self.call = call
        self.sleep = sleep
        self.meter_values = meter_values
        self._seq = itertools.count()
        self.heartbeat_interval = 60.0

    async def boot(self) -> dict[str, Any]:
        """BootNotification until Accepted, honouring the CSMS's retry interval."""
        while True:
            answer: dict[str, Any] = _as_dict(
                await self.call("BootNotification", boot_payload(self.protocol))
            )
            if answer.get("status") == "Accepted":
                if answer.get("interval"):
                    self.heartbeat_interval = float(answer["interval"])
                return answer
            await self.sleep(float(answer.get("interval") or 10))

    async def status(self, status: str) -> None:
        if self.protocol == "ocpp1.6":
            payload: dict[str, Any] = {"connectorId": 1, "errorCode": "NoError", "status": status}
        else:
            status = {"Charging": "Occupied", "Preparing": "Occupied", "Finishing": "Occupied"}.get(
                status, status
            )
            payload = {"timestamp": now_iso(), "connectorStatus": status, "evseId": 1, "connectorId": 1}
        await self.call("StatusNotification", payload)

    async def heartbeat(self) -> None:
        await self.call("Heartbeat", {})

    async def charge(self, interval: float = 0.0) -> None:
        """One charging session: authorize, start, meter values, stop."""
        if self.protocol == "ocpp1.6":
            await self._charge_16(interval)
        else:
            await self._charge_2x(interval)

    async def run(self, interval: float = 0.0) -> None:
        await self.boot()
        await self.after_boot(interval)

    async def after_boot(self, interval: float = 0.0) -> None:
        """What a booted station does: status, heartbeat, one charging session, status.

        Apart from :meth:`run` for stations that boot themselves (:class:`ocpprpc.Station`
        with ``boot=``).
        """
        await self.status("Available")
        await self.heartbeat()
        await self.charge(interval)
        await self.status("Available")

    async def _charge_16(self, interval: float) -> None:
        await self.call("Authorize", {"idTag": ID_TAG})
        await self.status("Preparing")
        started = _as_dict(
            await self.call(
                "StartTransaction",
                {"connectorId": 1, "idTag": ID_TAG, "meterStart": 0, "timestamp": now_iso()},
            )
        )
        transaction_id = started["transactionId"]
        await self.status("Charging")
        energy = 0
        for _ in range(self.meter_values):
            await self.sleep(interval)
            energy += 250
            await self.call(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": transaction_id,
                    "meterValue": [
                        {
                            "timestamp": now_iso(),
                            "sampledValue": [
                                {
                                    "value": str(energy),
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                },
                                {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                            ],
                        }
                    ],
                },
            )
        await self.call(
            "StopTransaction",
            {"transactionId": transaction_id, "meterStop": energy, "timestamp": now_iso(), "reason": "Local"},
        )
        await self.status("Finishing")

    async def _charge_2x(self, interval: float) -> None:
        id_token = {"idToken": ID_TAG, "type": "ISO14443"}
        await self.call("Authorize", {"idToken": id_token})
        transaction = {"transactionId": f"SIM-{datetime.datetime.now(datetime.UTC):%Y%m%d%H%M%S%f}"}
        await self.status("Occupied")
        await self._transaction_event(
            "Started", "Authorized", transaction, idToken=id_token, evse={"id": 1, "connectorId": 1}
        )
        energy = 0.0
        for _ in range(self.meter_values):
            await self.sleep(interval)
            energy += 250.5
            meter = [
                {
                    "timestamp": now_iso(),
                    "sampledValue": [
                        {
                            "value": energy,
                            "measurand": "Energy.Active.Import.Register",
                            "unitOfMeasure": {"unit": "Wh"},
                        }
                    ],
                }
            ]
            await self._transaction_event("Updated", "MeterValuePeriodic", transaction, meterValue=meter)
        await self._transaction_event(
            "Ended", "StopAuthorized", {**transaction, "stoppedReason": "Local"}, idToken=id_token
        )

    async def _transaction_event(
        self, event_type: str, trigger: str, transaction: dict[str, Any], **extra: Any
    ) -> None:
        payload = {
            "eventType": event_type,
            "timestamp": now_iso(),
            "triggerReason": trigger,
            "seqNo": next(self._seq),
            "transactionInfo": transaction,
            **extra,
        }
        await self.call("TransactionEvent", payload)


def _as_dict(answer: Any) -> dict[str, Any]:
    """Answers may come back typed (a Struct) or as a dict; the scenario reads dicts."""
    if isinstance(answer, dict):
        return answer
    result: dict[str, Any] = msgspec.to_builtins(answer)
    return result
