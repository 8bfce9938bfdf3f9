"""Typed messages and strict validation with two engines, and a vendor protocol.

Run it:  python3 docs/examples/typed_messages.py
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ocpprpc import (
    BadMessage,
    Call,
    CallResult,
    Connection,
    InvalidResponse,
    OutboundPayloadError,
    PayloadError,
    PayloadKind,
    Role,
    Router,
    ValidationPolicy,
    codec_for,
    register_protocol,
    v16,
)

# -- 1. A typed call, validated in all four directions ---------------------------------------
station = Connection(Role.CHARGING_STATION, "ocpp1.6", codec=codec_for("ocpp1.6"))
csms = Connection(Role.CSMS, "ocpp1.6", codec=codec_for("ocpp1.6"))

request = v16.BootNotificationRequest(charge_point_vendor="ACME", charge_point_model="X1")
call = station.new_call(request.__ocpp_action__, request)
wire = station.send(call)  # validated before it is written
print("station -> csms:", wire)

csms.receive_message(wire)
for event in csms.events():
    assert isinstance(event, Call)
    boot = event.payload  # a v16.BootNotificationRequest, already validated
    assert isinstance(boot, v16.BootNotificationRequest)
    print("csms got", type(boot).__name__, "from vendor", boot.charge_point_vendor)
    response = v16.BootNotificationResponse(
        status=v16.RegistrationStatus.ACCEPTED, current_time=datetime.now(UTC), interval=300
    )
    wire = csms.send(CallResult(message_id=event.message_id, payload=response))
    print("csms -> station:", wire)

station.receive_message(wire)
for event in station.events():
    assert isinstance(event, CallResult)
    assert isinstance(event.payload, request.__ocpp_response__)
    print("station got", event.payload.status, "interval", event.payload.interval)

# -- 2. How errors map -------------------------------------------------------------------------
# An invalid inbound CALL is answered with a CALLERROR naming the JSON path (1.6 spelling).
csms.receive_message('[2,"m1","BootNotification",{"chargePointVendor":"ACME"}]')
for event in csms.events():
    assert isinstance(event, BadMessage) and event.reply is not None
    print("csms answers:", event.reply)

# An invalid outbound payload never leaves: the caller gets OutboundPayloadError.
try:
    station.send(station.new_call("Heartbeat", {"unexpected": 1}))
except OutboundPayloadError as exc:
    print("refused before sending:", exc.code.value, dict(exc.details))

# An invalid CALLRESULT fails the caller (a 2.1 engine would also answer CALLRESULTERROR).
heartbeat = station.new_call("Heartbeat", v16.HeartbeatRequest())
station.send(heartbeat)
station.receive_message(f'[3,"{heartbeat.message_id}",{{"currentTime":"yesterday"}}]')
for event in station.events():
    assert isinstance(event, InvalidResponse)
    print("invalid answer:", event.code.value, event.details)

# Off for one message, or by policy: payloads are plain dicts.
lenient = codec_for("ocpp1.6", ValidationPolicy.for_actions("BootNotification"))
print("not validated:", lenient.decode("Heartbeat", PayloadKind.REQUEST, b'{"x":1}'))

# -- 3. A vendor protocol from a folder of JSON schemas ------------------------------------------
with tempfile.TemporaryDirectory() as folder:
    schema = {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {"lampId": {"type": "integer", "minimum": 1}, "on": {"type": "boolean"}},
        "required": ["lampId", "on"],
    }
    answer = {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {"accepted": {"type": "boolean"}},
        "required": ["accepted"],
    }
    (Path(folder) / "SetLampRequest.json").write_text(json.dumps(schema))
    (Path(folder) / "SetLampResponse.json").write_text(json.dumps(answer))
    acme = register_protocol("acme1.0", folder, replace=True)

SetLamp = acme.actions["SetLamp"].request
codec = codec_for("acme1.0")
lamp = codec.decode("SetLamp", PayloadKind.REQUEST, b'{"lampId":3,"on":true}')
assert isinstance(lamp, SetLamp)
print("vendor message typed as", type(lamp).__name__, lamp)

# -- 4. Many codecs, one set of handler opt-outs (what a CSMS does per station) ---------------
router = Router()
router.add("DataTransfer", lambda request, ctx: {"status": "Accepted"}, validate=False)
opted_out = router.unvalidated_actions("ocpp1.6")  # one frozenset until the routes change
codecs = [codec_for("ocpp1.6", handler_opt_outs=opted_out) for _ in range(3)]
unchecked = codecs[0].decode("DataTransfer", PayloadKind.REQUEST, b'{"vendorId":7}')
assert unchecked == {"vendorId": 7}  # the handler opted out: not validated
try:
    codecs[1].decode("Heartbeat", PayloadKind.REQUEST, b'{"x":1}')
except PayloadError as exc:  # everything else still is
    print("still validated:", exc.code.value)
assert router.unvalidated_actions("ocpp1.6") is opted_out
print("opt-outs shared by", len(codecs), "codecs:", sorted(opted_out))
