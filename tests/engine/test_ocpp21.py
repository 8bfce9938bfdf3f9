"""OCPP 2.1's SEND and CALLRESULTERROR, and custom protocols that enable them."""

from __future__ import annotations

import msgspec
import pytest

from ocpprpc import (
    BUILTIN_RULES,
    BadMessage,
    CallResult,
    CallResultError,
    Connection,
    ErrorCode,
    InvalidResponse,
    LocalProtocolError,
    OutboundPayloadError,
    PayloadError,
    PayloadKind,
    Role,
    Send,
    Violation,
)

from .helpers import ROLES, ConnectionPair, answer_own_call, other

PERIODIC = {"id": 1, "pending": 0, "basetime": "2025-01-01T00:00:00Z", "data": []}


@pytest.mark.parametrize("initiator", ROLES)
def test_send_is_delivered_and_never_answered(initiator: Role) -> None:
    pair = ConnectionPair("ocpp2.1")
    send = pair.conn[initiator].new_send("NotifyPeriodicEventStream", PERIODIC)
    events = pair.send(initiator, send)
    assert events == [Send(message_id=send.message_id, action="NotifyPeriodicEventStream", payload=PERIODIC)]
    # Not tracked on either side: nothing to answer, nothing to wait for.
    assert not pair.conn[initiator].outstanding_calls
    assert not pair.conn[other(initiator)].inbound_calls


@pytest.mark.parametrize("initiator", ROLES)
def test_send_goes_out_while_a_call_is_outstanding(initiator: Role) -> None:
    pair = ConnectionPair("ocpp2.1")
    engine = pair.conn[initiator]
    engine.send(engine.new_call("Heartbeat", {}))
    for _ in range(3):  # the one-outstanding-CALL rule does not hold SENDs back ([P4-21] 4.2.5)
        assert pair.send(initiator, engine.new_send("NotifyPeriodicEventStream", PERIODIC))


class _Hints:
    """A codec that records the validate hint of each payload it encodes."""

    def __init__(self) -> None:
        self.hints: list[bool] = []

    def decode(
        self, action: str, kind: PayloadKind, data: bytes | memoryview, *, validate: bool = True
    ) -> object:
        return msgspec.json.decode(data)

    def encode(self, action: str, kind: PayloadKind, payload: object, *, validate: bool = True) -> bytes:
        self.hints.append(validate)
        if payload == {"refuse": True}:
            raise PayloadError(ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "refused")
        return msgspec.json.encode(payload)


def test_send_payload_goes_through_the_codec() -> None:
    codec = _Hints()
    engine = Connection(Role.CHARGING_STATION, "ocpp2.1", codec=codec)
    engine.send(engine.new_send("NotifyPeriodicEventStream", PERIODIC))
    engine.send(engine.new_send("NotifyPeriodicEventStream", PERIODIC), validate=False)
    assert codec.hints == [True, False]
    with pytest.raises(OutboundPayloadError) as info:
        engine.send(engine.new_send("NotifyPeriodicEventStream", {"refuse": True}))
    assert info.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert info.value.action == "NotifyPeriodicEventStream"


@pytest.mark.parametrize(
    ("data", "violation"),
    [
        ('[6,"","NotifyPeriodicEventStream",{}]', Violation.UNREADABLE_ID),
        (f'[6,"{"s" * 37}","NotifyPeriodicEventStream",{{}}]', Violation.ID_TOO_LONG),
        ('[6,"s","NotifyPeriodicEventStream",[]]', Violation.PAYLOAD_NOT_OBJECT),
        ('[6,"s","NotifyPeriodicEventStream",{"x":1e400}]', Violation.INVALID_PAYLOAD),
        ('[6,"s","NotifyPeriodicEventStream"]', Violation.MALFORMED_FRAME),
        ('[6,"s",{},{}]', Violation.MALFORMED_FRAME),
        ('[5,"s","FormatViolation",""]', Violation.MALFORMED_FRAME),
    ],
)
def test_bad_send_and_callresulterror_are_never_answered(data: str, violation: Violation) -> None:
    engine = Connection(Role.CSMS, "ocpp2.1")
    engine.receive_message(data)
    (event,) = engine.events()
    assert isinstance(event, BadMessage)
    assert event.violation is violation
    assert event.reply is None


def test_callresulterror_names_the_action_we_answered() -> None:
    pair = ConnectionPair("ocpp2.1")
    station, csms = pair.conn[Role.CHARGING_STATION], pair.conn[Role.CSMS]
    call = csms.new_call("Authorize", {"idToken": {"idToken": "X", "type": "ISO14443"}})
    pair.send(Role.CSMS, call)
    events = pair.send(
        Role.CHARGING_STATION, CallResult(message_id=call.message_id, payload={"idTokenInfo": 1})
    )
    assert isinstance(events[0], CallResult)
    # The CSMS cannot use the tariff in that response (use case I08): it says so.
    error = CallResultError(message_id=call.message_id, code=ErrorCode.FORMAT_VIOLATION, description="tariff")
    events = pair.send(Role.CSMS, error)
    assert events == [
        CallResultError(
            message_id=call.message_id,
            code=ErrorCode.FORMAT_VIOLATION,
            description="tariff",
            action="Authorize",
            wire_code="FormatViolation",
        )
    ]
    station.receive_message('[5,"unknown","Whatever","",{}]')
    (unknown,) = station.events()
    assert isinstance(unknown, CallResultError)
    assert (unknown.action, unknown.code, unknown.wire_code) == (None, ErrorCode.GENERIC_ERROR, "Whatever")


def test_callresulterror_only_answers_a_received_result() -> None:
    engine = Connection(Role.CSMS, "ocpp2.1")
    with pytest.raises(LocalProtocolError, match="answers a CALLRESULT"):
        engine.send(CallResultError(message_id="nope", code=ErrorCode.FORMAT_VIOLATION))


class RejectingResponses:
    """A codec that refuses every response, as strict validation would a bad one."""

    def decode(self, action: str, kind: PayloadKind, data: bytes | memoryview) -> object:
        if kind is PayloadKind.RESPONSE:
            raise PayloadError(ErrorCode.TYPE_CONSTRAINT_VIOLATION, "bad", {"path": "$.currentTime"})
        return msgspec.json.decode(data)

    def encode(self, action: str, kind: PayloadKind, payload: object) -> bytes:
        return msgspec.json.encode(payload)


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
def test_invalid_result_payload(version: str) -> None:
    message_id, (event,) = answer_own_call(
        version, '[3,"{id}",{"currentTime":5}]', codec=RejectingResponses()
    )
    assert isinstance(event, InvalidResponse)
    assert event.code is ErrorCode.TYPE_CONSTRAINT_VIOLATION
    assert event.details == {"path": "$.currentTime"}
    if version == "ocpp2.1":
        assert event.reply is not None
        assert msgspec.json.decode(event.reply) == [
            5,
            message_id,
            "TypeConstraintViolation",
            "bad",
            {"path": "$.currentTime"},
        ]
    else:
        assert event.reply is None  # a CALLRESULT is never answered before 2.1


def test_custom_protocol_with_rpc_extensions() -> None:
    rules = BUILTIN_RULES["ocpp2.0.1"].custom("ocpp2.0.1-acme", rpc_extensions=True)
    pair = ConnectionPair(rules)
    assert pair.conn[Role.CSMS].protocol == "ocpp2.0.1-acme"
    send = pair.conn[Role.CHARGING_STATION].new_send("AcmeTelemetry", {"v": 1})
    assert pair.send(Role.CHARGING_STATION, send)[0] == Send(
        message_id=send.message_id, action="AcmeTelemetry", payload={"v": 1}
    )
