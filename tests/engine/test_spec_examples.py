"""The example frames of the specifications, as str and bytes, compact and pretty-printed."""

from __future__ import annotations

import json

import msgspec
import pytest

from ocpprpc import Call, CallError, CallResult, Connection, ErrorCode, Role

# [J16] 4.2.1 / 4.2.2: the BootNotification exchange.
BOOT_16 = [
    2,
    "19223201",
    "BootNotification",
    {"chargePointVendor": "VendorX", "chargePointModel": "SingleSocketCharger"},
]
BOOT_16_RESULT = [
    3,
    "19223201",
    {"status": "Accepted", "currentTime": "2013-02-01T20:53:32.486Z", "heartbeatInterval": 300},
]
# [P4-201] 4.2.1 / 4.2.3: a 2.0.1 BootNotification and a CALLERROR.
BOOT_201 = [
    2,
    "19223201",
    "BootNotification",
    {"reason": "PowerUp", "chargingStation": {"model": "SingleSocketCharger", "vendorName": "VendorX"}},
]
ERROR_201 = [4, "162376037", "NotSupported", "SetDisplayMessageRequest not implemented", {}]


def _forms(frame: list[object]) -> list[str | bytes]:
    compact = json.dumps(frame, separators=(",", ":"))
    spaced = json.dumps(frame)
    pretty = json.dumps(frame, indent=4)  # newlines and indentation are legal JSON whitespace
    return [compact, spaced, pretty, compact.encode(), pretty.encode()]


@pytest.mark.parametrize(
    ("version", "frame"), [("ocpp1.6", BOOT_16), ("ocpp2.0.1", BOOT_201), ("ocpp2.1", BOOT_201)]
)
def test_spec_call_examples(version: str, frame: list[object]) -> None:
    for data in _forms(frame):
        csms = Connection(Role.CSMS, version)
        csms.receive_message(data)
        assert list(csms.events()) == [
            Call(message_id="19223201", action="BootNotification", payload=frame[3])
        ]


@pytest.mark.parametrize("data", _forms(BOOT_16_RESULT))
def test_spec_callresult_example(data: str | bytes) -> None:
    station = Connection(Role.CHARGING_STATION, "ocpp1.6")
    station.send(station.new_call("BootNotification", BOOT_16[3], message_id="19223201"))
    station.receive_message(data)
    assert list(station.events()) == [
        CallResult(message_id="19223201", payload=BOOT_16_RESULT[2], action="BootNotification")
    ]


@pytest.mark.parametrize("data", _forms(ERROR_201))
def test_spec_callerror_example(data: str | bytes) -> None:
    csms = Connection(Role.CSMS, "ocpp2.0.1")
    csms.send(csms.new_call("SetDisplayMessage", {}, message_id="162376037"))
    csms.receive_message(data)
    assert list(csms.events()) == [
        CallError(
            message_id="162376037",
            code=ErrorCode.NOT_SUPPORTED,
            description="SetDisplayMessageRequest not implemented",
            action="SetDisplayMessage",
            wire_code="NotSupported",
        )
    ]


def test_we_write_the_spec_frames() -> None:
    station = Connection(Role.CHARGING_STATION, "ocpp1.6")
    wire = station.send(station.new_call("BootNotification", BOOT_16[3], message_id="19223201"))
    assert msgspec.json.decode(wire) == BOOT_16
    assert wire == json.dumps(BOOT_16, separators=(",", ":"))
