"""A charging station and a CSMS engine talking, with no sockets at all.

Run it:  python3 docs/examples/engine_quickstart.py
"""

from __future__ import annotations

from ocpprpc import BadMessage, Call, CallResult, Connection, Role

for version in ("ocpp1.6", "ocpp2.0.1", "ocpp2.1"):
    station = Connection(Role.CHARGING_STATION, version)
    csms = Connection(Role.CSMS, version)

    # The station sends a CALL: build it, serialise it, "write" the text.
    boot = station.new_call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X1"})
    wire = station.send(boot)
    print(f"{version} station -> csms: {wire}")

    # The CSMS feeds the text in and drains events.
    csms.receive_message(wire)
    for event in csms.events():
        assert isinstance(event, Call)
        answer = CallResult(
            message_id=event.message_id,
            payload={"status": "Accepted", "currentTime": "2026-11-20T12:00:00Z", "interval": 300},
        )
        wire = csms.send(answer)
        print(f"{version} csms -> station: {wire}")

    # The station matches the answer to its CALL by message id.
    station.receive_message(wire)
    (result,) = station.events()
    assert isinstance(result, CallResult) and result.action == "BootNotification"
    print(f"{version} station got {result.action} -> {result.payload['status']}")

    # Garbage gets the answer the version's rules demand.
    csms.receive_message("this is not OCPP")
    (bad,) = csms.events()
    assert isinstance(bad, BadMessage)
    print(f"{version} garbage -> {bad.violation.name}, reply: {bad.reply}")
