"""A strict CSMS that accepts one vendor's non-conformant BootNotification, and only that vendor's.

Run it: ``python docs/examples/vendor_quirks.py``.  Two stations send the same
BootNotification: a 40-character ``chargePointSerialNumber`` (OCPP 1.6 allows
25) and a number in ``meterSerialNumber`` (a string field).  The CSMS validates
strictly, but its quirk profile for "Acme" firmware 1.x truncates the serial
number and turns the number into a string before validating: ACME-1 is
accepted, OTHER-1 gets the CALLERROR strict validation answers.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import anyio

import ocpprpc
from ocpprpc import Coerce, Match, Prefix, QuirkProfile, Truncate

ACME_FW1 = QuirkProfile(
    "acme-fw1",
    match=Match(vendor="Acme", firmware=Prefix("1."), protocols=["ocpp1.6"]),
    calls={
        "BootNotification": [
            Truncate("chargePointSerialNumber", 25),
            Coerce("meterSerialNumber", to=str),
        ]
    },
)

csms = ocpprpc.Router()


@csms.on("BootNotification")
async def boot(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
    print(f"CSMS: {ctx.identity} booted, serial {request['chargePointSerialNumber']!r}")
    return {"status": "Accepted", "currentTime": "2025-01-01T00:00:00Z", "interval": 300}


def broken_boot(vendor: str) -> dict[str, Any]:
    return {
        "chargePointVendor": vendor,
        "chargePointModel": "Wallbox",
        "firmwareVersion": "1.4.2",
        "chargePointSerialNumber": "SN-" + "0123456789" * 3 + "ABCDEFG",  # 40 characters
        "meterSerialNumber": 4711,  # a number where 1.6 wants a string
    }


async def main() -> None:
    strict = ocpprpc.serve(router=csms, validation=True, protocols=["ocpp1.6"], quirks=[ACME_FW1])
    async with strict as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        # The stations do not validate what they send: they behave like the real chargers.
        async with ocpprpc.connect(url, "ACME-1") as station:
            answer = await station.call("BootNotification", broken_boot("Acme"))
            print(f"ACME-1: BootNotification {answer['status']}")
        async with ocpprpc.connect(url, "OTHER-1") as station:
            try:
                await station.call("BootNotification", broken_boot("Other"))
            except ocpprpc.OCPPError as refused:
                print(f"OTHER-1: refused with {refused.code.value}: {refused.description}")
            else:
                raise AssertionError("strict validation must refuse OTHER-1")


if __name__ == "__main__":
    # The repairs are logged at INFO, once per station, action, path and kind of repair.
    logging.basicConfig(level=logging.WARNING, format="  log %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("ocpprpc.quirks").setLevel(logging.INFO)
    anyio.run(main)
