"""The engine with SchemaCodec: all four directions validated, errors spelt per version."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from ocpprpc import (
    BadMessage,
    Call,
    CallResult,
    Connection,
    ErrorCode,
    InvalidResponse,
    OutboundPayloadError,
    PayloadKind,
    Role,
    SchemaCodec,
    Send,
    ValidationPolicy,
    Violation,
    codec_for,
    v16,
    v21,
    v201,
)

STATION, CSMS = Role.CHARGING_STATION, Role.CSMS
REQUEST, RESPONSE = PayloadKind.REQUEST, PayloadKind.RESPONSE


def pair(protocol: str, policy: ValidationPolicy | None = None) -> tuple[Connection, Connection]:
    return (
        Connection(STATION, protocol, codec=codec_for(protocol, policy)),
        Connection(CSMS, protocol, codec=codec_for(protocol, policy)),
    )


def test_typed_round_trip_16() -> None:
    station, csms = pair("ocpp1.6")
    request = v16.BootNotificationRequest(charge_point_vendor="V", charge_point_model="M")
    call = station.new_call(request.__ocpp_action__, request)
    csms.receive_message(station.send(call))
    [received] = csms.events()
    assert isinstance(received, Call) and received.payload == request
    response = v16.BootNotificationResponse(
        status=v16.RegistrationStatus.ACCEPTED, current_time=datetime(2024, 1, 1, tzinfo=UTC), interval=300
    )
    station.receive_message(csms.send(CallResult(message_id=call.message_id, payload=response)))
    [result] = station.events()
    assert isinstance(result, CallResult) and result.payload == response
    assert isinstance(result.payload, request.__ocpp_response__)


@pytest.mark.parametrize(
    ("protocol", "payload", "missing", "spelling"),
    [
        ("ocpp1.6", '{"chargePointVendor":"V"}', "chargePointModel", "OccurenceConstraintViolation"),
        ("ocpp2.0.1", '{"reason":"PowerUp"}', "chargingStation", "OccurrenceConstraintViolation"),
    ],
)
def test_invalid_inbound_call_gets_a_callerror_with_the_path(
    protocol: str, payload: str, missing: str, spelling: str
) -> None:
    _, csms = pair(protocol)
    csms.receive_message(f'[2,"m1","BootNotification",{payload}]')
    [bad] = csms.events()
    assert isinstance(bad, BadMessage) and bad.violation is Violation.INVALID_PAYLOAD
    assert bad.code is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    assert bad.reply is not None
    frame = json.loads(bad.reply)
    assert frame[:3] == [4, "m1", spelling]
    assert frame[4] == {"path": "$"}
    assert missing in frame[3]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_format_violation_spelling(protocol: str) -> None:
    _, csms = pair(protocol)
    csms.receive_message('[2,"m1","Heartbeat",{"x":1}]')
    [bad] = csms.events()
    assert isinstance(bad, BadMessage) and bad.reply is not None
    assert json.loads(bad.reply)[2] == ("FormationViolation" if protocol == "ocpp1.6" else "FormatViolation")


@pytest.mark.parametrize(
    ("protocol", "answered"), [("ocpp1.6", False), ("ocpp2.0.1", False), ("ocpp2.1", True)]
)
def test_invalid_inbound_callresult(protocol: str, answered: bool) -> None:
    station, _ = pair(protocol)
    call = station.new_call("Heartbeat", {})
    station.send(call)
    station.receive_message(f'[3,"{call.message_id}",{{"currentTime":"2024-01-01T00:00:00"}}]')
    [invalid] = station.events()
    assert isinstance(invalid, InvalidResponse)
    assert invalid.code is ErrorCode.TYPE_CONSTRAINT_VIOLATION
    assert invalid.details == {"path": "$.currentTime"}
    if answered:
        assert invalid.reply is not None
        assert json.loads(invalid.reply)[:3] == [5, call.message_id, "TypeConstraintViolation"]
    else:
        assert invalid.reply is None
    assert not station.outstanding_calls


def test_invalid_outbound_call_is_refused_before_anything_is_sent() -> None:
    station, _ = pair("ocpp2.0.1")
    bad = v201.HeartbeatRequest(custom_data=v201.CustomData(noVendorId=True))
    with pytest.raises(OutboundPayloadError) as caught:
        station.send(station.new_call("Heartbeat", bad))
    assert caught.value.code is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    assert caught.value.details == {"path": "$.customData"}
    assert not station.outstanding_calls


def test_invalid_handler_response_becomes_an_internal_error() -> None:
    station, csms = pair("ocpp2.0.1")
    call = station.new_call("Heartbeat", v201.HeartbeatRequest())
    csms.receive_message(station.send(call))
    csms.events()
    naive = v201.HeartbeatResponse(current_time=datetime(2024, 1, 1))
    with pytest.raises(OutboundPayloadError) as caught:
        csms.send(CallResult(message_id=call.message_id, payload=naive))
    # The CALL is still open: the peer gets an InternalError, never a bad payload.
    error = csms.error_for(call.message_id, caught.value)
    assert error.code is ErrorCode.INTERNAL_ERROR
    station.receive_message(csms.send(error))
    assert [type(e).__name__ for e in station.events()] == ["CallError"]


def test_per_call_opt_out_covers_the_answer() -> None:
    station, csms = pair("ocpp1.6")
    call = station.new_call("Heartbeat", {"vendorExtra": 1})
    csms.receive_message(station.send(call, validate=False))
    [bad] = csms.events()  # the receiver still validates
    assert isinstance(bad, BadMessage)
    station.receive_message(f'[3,"{call.message_id}",{{"anything":true}}]')
    [result] = station.events()
    assert isinstance(result, CallResult) and result.payload == {"anything": True}


def test_vendor_actions_stay_untyped() -> None:
    station, csms = pair("ocpp2.1")
    call = station.new_call("AcmeLamp", {"on": True})
    csms.receive_message(station.send(call))
    [received] = csms.events()
    assert isinstance(received, Call) and received.payload == {"on": True}


def test_send_only_action_is_typed() -> None:
    station, csms = pair("ocpp2.1")
    stream = v21.NotifyPeriodicEventStream(
        id=1,
        pending=0,
        basetime=datetime(2025, 1, 1, tzinfo=UTC),
        data=[v21.StreamDataElement(t=0.5, v="230.1")],
    )
    csms.receive_message(station.send(station.new_send(stream.__ocpp_action__, stream)))
    [received] = csms.events()
    assert isinstance(received, Send) and received.payload == stream
    csms.receive_message('[6,"s2","NotifyPeriodicEventStream",{"id":1}]')
    [bad] = csms.events()
    assert isinstance(bad, BadMessage) and bad.reply is None  # a SEND is never answered
    assert bad.code is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION


class _Pair(msgspec.Struct, array_like=True):
    a: int
    b: int


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.1"])
def test_without_validation_payloads_are_written_exactly_as_the_codec_would(protocol: str) -> None:
    """The engine writes plain payloads itself; the frames are what the codec's bytes would give."""
    station, csms = pair(protocol, ValidationPolicy.off())
    codec = codec_for(protocol, ValidationPolicy.off())
    typed = v16.HeartbeatResponse(current_time=datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC))
    for payload in (
        {"currentTime": "now", "n": [1, 2.5, None]},
        typed,
        typed,
    ):  # a Struct, then its type known
        call = station.new_call("Heartbeat", payload)
        wire = station.send(call)
        assert (
            wire
            == f'[2,"{call.message_id}","Heartbeat",{codec.encode("Heartbeat", REQUEST, payload).decode()}]'
        )
        csms.receive_message(wire)
        [received] = csms.events()
        assert isinstance(received, Call) and received.payload == json.loads(wire)[3]
        answer = csms.send(CallResult(message_id=call.message_id, payload=payload))
        assert answer == f'[3,"{call.message_id}",{codec.encode("Heartbeat", RESPONSE, payload).decode()}]'
        station.receive_message(answer)
        assert station.events()
    # An array-like Struct is not a JSON object: refused, as the codec refuses it.
    with pytest.raises(OutboundPayloadError, match="must be a JSON object"):
        station.send(station.new_call("Heartbeat", _Pair(1, 2)))
    assert not station.outstanding_calls


class _GeneralPath(SchemaCodec):
    """SchemaCodec's behaviour, but a subclass: the engine takes no shortcut for it."""


@pytest.mark.parametrize(
    ("protocol", "frame"),
    [
        ("ocpp1.6", '[2,"c","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'),
        ("ocpp1.6", '[2,"c","BootNotification",{"chargePointVendor":"V"}]'),
        ("ocpp1.6", '[2,"c","BootNotification",{"chargePointVendor":"V","chargePointModel":7}]'),
        ("ocpp1.6", '[2,"c","BootNotification",["V","M"]]'),
        ("ocpp1.6", '[2,"c","BootNotification",{"x":1e400}]'),
        ("ocpp1.6", '[2,"c","AcmeVendorAction",{"x":1}]'),
        ("ocpp1.6", '[3,"a",{"currentTime":"2024-01-01T00:00:00Z"}]'),
        ("ocpp1.6", '[3,"a",{"currentTime":"yesterday"}]'),
        ("ocpp1.6", '[3,"a",[]]'),
        ("ocpp2.0.1", '[2,"c","Heartbeat",{"customData":{"vendorId":"v","x":1}}]'),
        ("ocpp2.0.1", '[3,"a",{"currentTime":"2024-01-01T00:00:00Z","customData":{"vendorId":7}}]'),
        ("ocpp2.1", '[3,"a",{"currentTime":"2024-01-01T00:00:00Z"}]'),
        ("ocpp2.1", '[3,"a","no"]'),
        (
            "ocpp2.1",
            '[6,"s","NotifyPeriodicEventStream",{"id":1.0,"pending":0,"basetime":"2024-01-01T00:00:00Z","data":[]}]',
        ),
        ("ocpp2.1", '[6,"s","NotifyPeriodicEventStream",7]'),
    ],
)
def test_shortcuts_change_no_outcome(protocol: str, frame: str) -> None:
    """The engine's shortcuts for SchemaCodec give exactly the general path's events."""
    outcomes = []
    for codec in (codec_for(protocol), _GeneralPath(protocol)):
        engine = Connection(STATION, protocol, codec=codec)
        engine.send(Call(message_id="a", action="Heartbeat", payload={}))
        engine.receive_message(frame)
        outcomes.append(engine.events())
    assert outcomes[0] == outcomes[1]
    assert outcomes[0]
