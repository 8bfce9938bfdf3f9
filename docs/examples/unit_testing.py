"""Unit-testing protocol logic without sockets, event loops or mocks.

Your CSMS logic is a function from an event to the messages it sends.  The
test drives it with a real station-side engine, so every frame is real OCPP-J.
Run it with pytest, or directly:  python3 docs/examples/unit_testing.py
"""

from __future__ import annotations

from typing import Any

import msgspec

from ocpprpc import (
    BadMessage,
    Call,
    CallError,
    CallResult,
    Connection,
    ErrorCode,
    Event,
    OCPPError,
    Role,
)


# -- the application code under test ---------------------------------------------------
def boot_notification(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("chargePointVendor") == "Blocked Inc":
        return {"status": "Rejected", "currentTime": "2026-11-20T12:00:00Z", "interval": 3600}
    return {"status": "Accepted", "currentTime": "2026-11-20T12:00:00Z", "interval": 300}


HANDLERS = {"BootNotification": boot_notification}


def csms_step(conn: Connection, event: Event) -> list[str]:
    """What our CSMS writes in answer to one event."""
    if isinstance(event, BadMessage):
        return [event.reply] if event.reply is not None else []
    if isinstance(event, Call):
        handler = HANDLERS.get(event.action)
        try:
            if handler is None:
                raise OCPPError(ErrorCode.NOT_IMPLEMENTED, f"{event.action} is not known")
            answer: Event = CallResult(message_id=event.message_id, payload=handler(event.payload))
        except Exception as exc:  # a handler's failure becomes the right CALLERROR
            answer = conn.error_for(event.message_id, exc)
        return [conn.send(answer)]
    return []


# -- the tests ---------------------------------------------------------------------------
def exchange(station: Connection, csms: Connection, wire: str) -> list[Event]:
    """Deliver *wire* to the CSMS, run its logic, deliver its answers back."""
    csms.receive_message(wire)
    written = [text for event in csms.events() for text in csms_step(csms, event)]
    for text in written:
        station.receive_message(text)
    return list(station.events())


def test_accepts_known_vendors() -> None:
    station, csms = Connection(Role.CHARGING_STATION, "ocpp1.6"), Connection(Role.CSMS, "ocpp1.6")
    call = station.new_call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"})
    (result,) = exchange(station, csms, station.send(call))
    assert isinstance(result, CallResult) and result.payload["status"] == "Accepted"


def test_rejects_blocked_vendors() -> None:
    station, csms = Connection(Role.CHARGING_STATION, "ocpp1.6"), Connection(Role.CSMS, "ocpp1.6")
    call = station.new_call("BootNotification", {"chargePointVendor": "Blocked Inc", "chargePointModel": "X"})
    (result,) = exchange(station, csms, station.send(call))
    assert isinstance(result, CallResult) and result.payload["status"] == "Rejected"


def test_unknown_actions_get_not_implemented() -> None:
    station, csms = Connection(Role.CHARGING_STATION, "ocpp2.0.1"), Connection(Role.CSMS, "ocpp2.0.1")
    (error,) = exchange(station, csms, station.send(station.new_call("Teleport", {})))
    assert isinstance(error, CallError) and error.code is ErrorCode.NOT_IMPLEMENTED


def test_garbage_gets_rpc_framework_error_on_2x() -> None:
    csms = Connection(Role.CSMS, "ocpp2.0.1")
    csms.receive_message("{not json")
    (bad,) = csms.events()
    (reply,) = csms_step(csms, bad)
    assert msgspec.json.decode(reply)[:3] == [4, "-1", "RpcFrameworkError"]  # [P4-201] 4.2.3


if __name__ == "__main__":
    for name, test in list(globals().items()):
        if name.startswith("test_") and callable(test):
            test()
            print(f"ok  {name}")
