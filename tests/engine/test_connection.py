"""Normal traffic between two engines, from both ends and on every version."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from ocpprpc import (
    BadMessage,
    Call,
    CallError,
    CallResult,
    CallResultError,
    Connection,
    ConnectionClosed,
    ConnectionState,
    ErrorCode,
    InvalidResponse,
    JsonObjectCodec,
    LocalProtocolError,
    MessageType,
    OCPPError,
    OutboundPayloadError,
    PayloadError,
    PayloadKind,
    Role,
    Send,
    TooManyOutstandingCalls,
    UnmatchedResponse,
    Violation,
    rules_for,
)

from .helpers import ROLES, VERSIONS, ConnectionPair, counter_ids, other

pytestmark = [pytest.mark.parametrize("version", VERSIONS), pytest.mark.parametrize("initiator", ROLES)]


def test_call_and_result_round_trip(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    assert call.message_id == f"{initiator.value}-1"

    events = pair.send(initiator, call)
    assert events == [Call(message_id=call.message_id, action="Heartbeat", payload={})]
    assert dict(pair.conn[initiator].outstanding_calls) == {call.message_id: "Heartbeat"}
    assert dict(pair.conn[responder].inbound_calls) == {call.message_id: "Heartbeat"}

    events = pair.send(responder, CallResult(message_id=call.message_id, payload={"currentTime": "t"}))
    assert events == [
        CallResult(message_id=call.message_id, payload={"currentTime": "t"}, action="Heartbeat")
    ]
    assert not pair.conn[initiator].outstanding_calls
    assert not pair.conn[responder].inbound_calls


def test_call_answered_with_error(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Reset", {"type": "Hard"})
    pair.send(initiator, call)
    error = CallError(
        message_id=call.message_id,
        code=ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
        description="missing field",
        details={"path": "$.type"},
    )
    wire = pair.conn[responder].send(error)
    expected_spelling = (
        "OccurenceConstraintViolation" if version == "ocpp1.6" else "OccurrenceConstraintViolation"
    )
    assert msgspec.json.decode(wire) == [
        4,
        call.message_id,
        expected_spelling,
        "missing field",
        {"path": "$.type"},
    ]
    events = pair.deliver(initiator, wire)
    assert events == [
        CallError(
            message_id=call.message_id,
            code=ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
            description="missing field",
            details={"path": "$.type"},
            action="Reset",
            wire_code=expected_spelling,
        )
    ]
    assert not pair.conn[initiator].outstanding_calls


def test_outstanding_call_limit_defaults_to_one(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    engine = pair.conn[initiator]
    first = engine.new_call("Heartbeat", {})
    engine.send(first)
    with pytest.raises(TooManyOutstandingCalls):
        engine.send(engine.new_call("Heartbeat", {}))
    # The refused CALL left no trace; answering the first frees the slot.
    assert list(engine.outstanding_calls) == [first.message_id]
    engine.receive_message(f'[3,"{first.message_id}",{{}}]')
    assert [type(e) for e in engine.events()] == [CallResult]
    engine.send(engine.new_call("Heartbeat", {}))


def test_outstanding_call_limit_is_configurable(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version, max_outstanding_calls=3)
    for _ in range(3):
        engine.send(engine.new_call("Heartbeat", {}))
    with pytest.raises(TooManyOutstandingCalls):
        engine.send(engine.new_call("Heartbeat", {}))
    with pytest.raises(ValueError, match="at least 1"):
        Connection(initiator, version, max_outstanding_calls=0)
    with pytest.raises(ValueError, match="max_bad_messages"):
        Connection(initiator, version, max_bad_messages=0)


def test_results_may_arrive_out_of_order(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version, max_outstanding_calls=2)
    responder = other(initiator)
    a = pair.conn[initiator].new_call("A", {"n": 1})
    b = pair.conn[initiator].new_call("B", {"n": 2})
    pair.send(initiator, a)
    pair.send(initiator, b)
    assert pair.send(responder, CallResult(message_id=b.message_id, payload={})) == [
        CallResult(message_id=b.message_id, payload={}, action="B")
    ]
    assert pair.send(responder, CallResult(message_id=a.message_id, payload={})) == [
        CallResult(message_id=a.message_id, payload={}, action="A")
    ]


def test_abandoned_call_frees_its_slot_and_its_answer_is_late(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    engine = pair.conn[initiator]
    call = engine.new_call("GetConfiguration", {})
    pair.send(initiator, call)
    assert engine.abandon_call(call.message_id) is True
    assert engine.abandon_call(call.message_id) is False  # idempotent, safe in `finally`
    assert not engine.outstanding_calls
    engine.send(engine.new_call("Heartbeat", {}))  # the slot is free

    late = pair.send(responder, CallResult(message_id=call.message_id, payload={}))
    assert late == [
        UnmatchedResponse(
            message_type=MessageType.CALL_RESULT,
            message_id=call.message_id,
            late=True,
            action="GetConfiguration",
        )
    ]
    assert engine.consecutive_bad_messages == 0


def test_answer_to_an_unknown_id_is_unmatched_not_late(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    assert pair.deliver(initiator, '[3,"never-sent",{}]') == [
        UnmatchedResponse(message_type=MessageType.CALL_RESULT, message_id="never-sent", late=False)
    ]
    assert pair.deliver(initiator, '[4,"never-sent","GenericError","",{}]') == [
        UnmatchedResponse(message_type=MessageType.CALL_ERROR, message_id="never-sent", late=False)
    ]


def test_a_second_answer_is_late(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    pair.send(initiator, call)
    answer = f'[3,"{call.message_id}",{{}}]'
    assert [type(e) for e in pair.deliver(initiator, answer)] == [CallResult]
    assert pair.deliver(initiator, answer) == [
        UnmatchedResponse(
            message_type=MessageType.CALL_RESULT, message_id=call.message_id, late=True, action="Heartbeat"
        )
    ]


def test_finished_memory_is_bounded(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version, finished_memory=2)
    ids = []
    for _ in range(3):
        call = engine.new_call("Heartbeat", {})
        engine.send(call)
        engine.abandon_call(call.message_id)
        ids.append(call.message_id)
    engine.receive_message(f'[3,"{ids[0]}",{{}}]')  # forgotten: unknown, not late
    engine.receive_message(f'[3,"{ids[2]}",{{}}]')
    assert [e.late for e in engine.events() if isinstance(e, UnmatchedResponse)] == [False, True]


def test_caller_chosen_message_id(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    call = pair.conn[initiator].new_call("Heartbeat", {}, message_id="idempotency-key-7")
    assert pair.send(initiator, call)[0] == Call(
        message_id="idempotency-key-7", action="Heartbeat", payload={}
    )


def test_outbound_message_ids_are_checked(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    with pytest.raises(LocalProtocolError, match="1 to 36"):
        engine.send(Call(message_id="x" * 37, action="Heartbeat", payload={}))
    with pytest.raises(LocalProtocolError, match="1 to 36"):
        engine.send(Call(message_id="", action="Heartbeat", payload={}))
    engine.send(Call(message_id="x" * 36, action="Heartbeat", payload={}))
    engine2 = Connection(initiator, version, max_outstanding_calls=2)
    engine2.send(Call(message_id="same", action="A", payload={}))
    with pytest.raises(LocalProtocolError, match="already awaiting"):
        engine2.send(Call(message_id="same", action="B", payload={}))


def test_default_ids_are_uuid4(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    ids = {engine.new_call("Heartbeat", {}).message_id for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 36 and i[14] == "4" for i in ids)
    # Formatted exactly like uuid.UUID: version 4, RFC 4122 variant, lower-case 8-4-4-4-12.
    more = [engine.new_call("Heartbeat", {}).message_id for _ in range(600)]  # spans pool refills
    assert len(set(more) | ids) == 650
    for text in more:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_callerror_only_answers_a_call(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    with pytest.raises(LocalProtocolError, match="answers a CALL"):
        engine.send(CallError(message_id="nobody-asked", code=ErrorCode.GENERIC_ERROR))
    with pytest.raises(LocalProtocolError, match="awaiting an answer"):
        engine.send(CallResult(message_id="nobody-asked", payload={}))


def test_each_call_is_answered_once(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    pair.send(initiator, call)
    pair.conn[responder].send(CallResult(message_id=call.message_id, payload={}))
    with pytest.raises(LocalProtocolError):
        pair.conn[responder].send(CallResult(message_id=call.message_id, payload={}))
    with pytest.raises(LocalProtocolError):
        pair.conn[responder].send(CallError(message_id=call.message_id, code=ErrorCode.GENERIC_ERROR))


def test_no_reply_releases_the_call(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("DataTransfer", {"vendorId": "x"})
    pair.send(initiator, call)
    pair.conn[responder].no_reply(call.message_id)
    assert not pair.conn[responder].inbound_calls
    with pytest.raises(LocalProtocolError):
        pair.conn[responder].no_reply(call.message_id)
    # The id is free again: a retry under the same id (2.x allows it) is a new CALL, not a duplicate.
    assert pair.deliver(responder, f'[2,"{call.message_id}","DataTransfer",{{"vendorId":"x"}}]') == [call]


def test_error_descriptions_are_capped_at_255(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    pair.send(initiator, call)
    wire = pair.conn[responder].send(
        CallError(message_id=call.message_id, code=ErrorCode.INTERNAL_ERROR, description="é" * 1000)
    )
    assert msgspec.json.decode(wire)[3] == "é" * 255


def test_unserialisable_error_details_are_a_local_error(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    pair.send(initiator, call)
    with pytest.raises(LocalProtocolError, match="not JSON-serialisable"):
        pair.conn[responder].send(
            CallError(message_id=call.message_id, code=ErrorCode.INTERNAL_ERROR, details={"x": object()})
        )
    # Nothing was sent, so the CALL can still be answered.
    assert call.message_id in pair.conn[responder].inbound_calls


def test_outbound_payload_must_be_an_object(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    with pytest.raises(OutboundPayloadError) as info:
        engine.send(engine.new_call("Heartbeat", [1, 2]))
    assert info.value.code is ErrorCode.FORMAT_VIOLATION
    assert info.value.action == "Heartbeat"
    assert not engine.outstanding_calls
    with pytest.raises(OutboundPayloadError, match="not JSON-serialisable"):
        engine.send(engine.new_call("Heartbeat", {"when": object()}))


def test_structs_are_accepted_as_payloads(version: str, initiator: Role) -> None:
    class Boot(msgspec.Struct, rename="camel"):
        charge_point_vendor: str

    pair = ConnectionPair(version)
    events = pair.send(initiator, pair.conn[initiator].new_call("BootNotification", Boot("ACME")))
    assert events[0] == Call(
        message_id=f"{initiator.value}-1", action="BootNotification", payload={"chargePointVendor": "ACME"}
    )


def test_unserialisable_result_payload_keeps_the_call_answerable(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    pair.send(initiator, call)
    with pytest.raises(OutboundPayloadError, match="not JSON-serialisable"):
        pair.conn[responder].send(CallResult(message_id=call.message_id, payload={"when": object()}))
    assert call.message_id in pair.conn[responder].inbound_calls
    assert call.message_id not in (pair.conn[responder]._answered or {})


def test_invalid_handler_response_keeps_the_call_answerable(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    pair.send(initiator, call)
    with pytest.raises(OutboundPayloadError) as info:
        pair.conn[responder].send(CallResult(message_id=call.message_id, payload="not an object"))
    error = pair.conn[responder].error_for(call.message_id, info.value)
    assert error.code is ErrorCode.INTERNAL_ERROR
    assert "validation" in error.description
    events = pair.send(responder, error)
    assert isinstance(events[0], CallError) and events[0].code is ErrorCode.INTERNAL_ERROR


def test_error_for_maps_exceptions(version: str, initiator: Role) -> None:
    quiet = Connection(initiator, version)
    loud = Connection(initiator, version, detailed_errors=True)
    ocpp = OCPPError(ErrorCode.NOT_SUPPORTED, "no", {"why": "config"})
    for engine in (quiet, loud):
        assert engine.error_for("m", ocpp) == CallError(
            message_id="m", code=ErrorCode.NOT_SUPPORTED, description="no", details={"why": "config"}
        )
    boom = KeyError("secret-internal-key")
    assert quiet.error_for("m", boom) == CallError(
        message_id="m", code=ErrorCode.INTERNAL_ERROR, description=""
    )
    assert loud.error_for("m", boom).description == "KeyError: 'secret-internal-key'"
    invalid = OutboundPayloadError("Heartbeat", PayloadError(ErrorCode.TYPE_CONSTRAINT_VIOLATION, "bad time"))
    assert "bad time" not in quiet.error_for("m", invalid).description
    assert "bad time" in loud.error_for("m", invalid).description


def test_close_fails_outstanding_and_forgets_inbound(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    pair.send(initiator, call)
    assert pair.deliver(initiator, None) == [
        ConnectionClosed(unanswered_calls=(call.message_id,), unanswered_inbound=())
    ]
    assert pair.deliver(responder, None) == [
        ConnectionClosed(unanswered_calls=(), unanswered_inbound=(call.message_id,))
    ]
    assert pair.conn[initiator].state is ConnectionState.CLOSED
    assert pair.deliver(initiator, None) == []  # closing twice is harmless
    with pytest.raises(LocalProtocolError, match="after the connection closed"):
        pair.conn[initiator].receive_message('[3,"x",{}]')
    with pytest.raises(LocalProtocolError, match="closed"):
        pair.conn[initiator].send(pair.conn[initiator].new_call("Heartbeat", {}))
    with pytest.raises(LocalProtocolError, match="closed"):
        pair.conn[responder].send(CallResult(message_id=call.message_id, payload={}))


def test_only_messages_can_be_sent(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    with pytest.raises(LocalProtocolError, match="not a message"):
        engine.send(ConnectionClosed(unanswered_calls=(), unanswered_inbound=()))


def test_send_bytes_refuses_what_send_refuses(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    with pytest.raises(LocalProtocolError, match="not a message"):
        engine.send_bytes(ConnectionClosed(unanswered_calls=(), unanswered_inbound=()))
    engine.receive_message(None)
    with pytest.raises(LocalProtocolError, match="closed"):
        engine.send_bytes(engine.new_call("Heartbeat", {}))


def test_send_bytes_matches_send(version: str, initiator: Role) -> None:
    a = Connection(initiator, version, id_factory=counter_ids("x"))
    b = Connection(initiator, version, id_factory=counter_ids("x"))
    assert (
        a.send_bytes(a.new_call("Heartbeat", {"é": 1})) == b.send(b.new_call("Heartbeat", {"é": 1})).encode()
    )


def test_repr_names_the_state(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    assert repr(engine) == f"<Connection {initiator.value} {version} open outstanding=0 inbound=0>"
    assert engine.protocol == version


class _Recorder:
    """A codec that records what the engine asks of it, including the validate hint."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, PayloadKind, bytes, bool]] = []

    def decode(
        self, action: str, kind: PayloadKind, data: bytes | memoryview, *, validate: bool = True
    ) -> Any:
        self.seen.append((action, kind, bytes(data), validate))
        return msgspec.json.decode(data)

    def encode(self, action: str, kind: PayloadKind, payload: Any, *, validate: bool = True) -> bytes:
        self.seen.append((action, kind, b"<encode>", validate))
        return msgspec.json.encode(payload)


def test_custom_codec_sees_action_and_kind(version: str, initiator: Role) -> None:
    station, csms = _Recorder(), _Recorder()
    caller = Connection(initiator, version, codec=station)
    callee = Connection(other(initiator), version, codec=csms)
    call = caller.new_call("Authorize", {"idTag": "A"})
    callee.receive_message(caller.send(call))
    caller.receive_message(callee.send(CallResult(message_id=call.message_id, payload={"ok": True})))
    assert station.seen + csms.seen == [
        ("Authorize", PayloadKind.REQUEST, b"<encode>", True),
        ("Authorize", PayloadKind.RESPONSE, b'{"ok":true}', True),
        ("Authorize", PayloadKind.REQUEST, b'{"idTag":"A"}', True),
        ("Authorize", PayloadKind.RESPONSE, b"<encode>", True),
    ]


def test_custom_codec_never_sees_a_payload_that_is_not_an_object(version: str, initiator: Role) -> None:
    codec = _Recorder()
    engine = Connection(initiator, version, codec=codec)
    call = engine.new_call("Heartbeat", {})
    engine.send(call)
    engine.receive_message('[2,"in","Heartbeat",[1]]')
    engine.receive_message(f'[3,"{call.message_id}","text"]')
    bad, invalid = engine.events()
    assert isinstance(bad, BadMessage) and bad.violation is Violation.PAYLOAD_NOT_OBJECT
    assert isinstance(invalid, InvalidResponse) and invalid.description == "payload must be a JSON object"
    assert codec.seen == [("Heartbeat", PayloadKind.REQUEST, b"<encode>", True)]


def test_codec_can_be_replaced(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    assert isinstance(engine.codec, JsonObjectCodec)
    engine.codec = codec = _Recorder()
    assert engine.codec is codec
    engine.send(engine.new_call("Heartbeat", {}))
    assert codec.seen == [("Heartbeat", PayloadKind.REQUEST, b"<encode>", True)]


@pytest.mark.parametrize(
    "data", ['[2,"m"]', '[2,"m","Heartbeat",[]]', '[3,"m",[1]]', "[", "   ", '[9,"m"]', '{"a":1}']
)
def test_any_codec_gets_the_same_answers_to_broken_frames(version: str, initiator: Role, data: str) -> None:
    plain = Connection(initiator, version)
    custom = Connection(initiator, version, codec=_Recorder())
    for engine in (plain, custom):
        engine.send(Call(message_id="m", action="Heartbeat", payload={}))
        engine.receive_message(data)
    assert plain.events() == custom.events()


def test_rules_can_be_replaced(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    engine.rules = rules_for("ocpp2.1")
    engine.receive_message('[6,"s","NotifyPeriodicEventStream",{}]')
    assert engine.events() == [Send(message_id="s", action="NotifyPeriodicEventStream", payload={})]


def test_opt_out_is_remembered_with_the_default_codec(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version)
    responder = other(initiator)
    call = pair.conn[initiator].new_call("Heartbeat", {})
    pair.conn[responder].receive_message(pair.conn[initiator].send(call, validate=False))
    unvalidated = pair.conn[initiator]._unvalidated
    assert unvalidated is not None and call.message_id in unvalidated
    events = pair.send(responder, CallResult(message_id=call.message_id, payload={"currentTime": "t"}))
    assert events == [
        CallResult(message_id=call.message_id, payload={"currentTime": "t"}, action="Heartbeat")
    ]
    assert not pair.conn[initiator]._unvalidated


def test_validation_opt_out_covers_the_message_and_its_answer(version: str, initiator: Role) -> None:
    codec = _Recorder()
    caller = Connection(initiator, version, codec=codec, max_outstanding_calls=3)
    callee = Connection(other(initiator), version, codec=_Recorder())
    lenient = caller.new_call("DataTransfer", {"vendorId": "X"})
    strict = caller.new_call("Heartbeat", {})
    callee.receive_message(caller.send(lenient, validate=False))
    callee.receive_message(caller.send(strict))
    (first, second) = callee.events()
    assert isinstance(first, Call)
    assert isinstance(second, Call)
    # The callee answers; its own opt-out applies to the response it sends.
    answer_lenient = callee.send(CallResult(message_id=lenient.message_id, payload={}), validate=False)
    answer_strict = callee.send(CallResult(message_id=strict.message_id, payload={"currentTime": "t"}))
    caller.receive_message(answer_strict)
    caller.receive_message(answer_lenient)
    assert [(a, k.value, v) for a, k, _, v in codec.seen] == [
        ("DataTransfer", "request", False),
        ("Heartbeat", "request", True),
        ("Heartbeat", "response", True),
        ("DataTransfer", "response", False),
    ]
    # A call that ends any other way forgets its opt-out too (no memory kept per id).
    dropped = caller.new_call("DataTransfer", {})
    caller.send(dropped, validate=False)
    assert caller.abandon_call(dropped.message_id)
    assert not caller._unvalidated
    closing = caller.new_call("DataTransfer", {})
    caller.send(closing, validate=False)
    caller.receive_message(None)
    assert not caller._unvalidated


def test_send_and_callresulterror_only_where_defined(version: str, initiator: Role) -> None:
    engine = Connection(initiator, version)
    send = engine.new_send("NotifyPeriodicEventStream", {"id": 1, "pending": 0, "basetime": "t", "data": []})
    error = CallResultError(message_id="m", code=ErrorCode.FORMAT_VIOLATION)
    if version == "ocpp2.1":
        assert engine.send(send).startswith(f'[6,"{send.message_id}","NotifyPeriodicEventStream",')
    else:
        with pytest.raises(LocalProtocolError, match="SEND is not defined"):
            engine.send(send)
        with pytest.raises(LocalProtocolError, match="CALL_RESULT_ERROR is not defined"):
            engine.send(error)


def remembers_answers(pair: ConnectionPair, role: Role) -> bool:
    return MessageType.CALL_RESULT_ERROR in pair.conn[role].rules.message_types


def test_answered_ids_are_remembered_only_where_callresulterror_exists(version: str, initiator: Role) -> None:
    """1.6 and 2.0.1 have no CALLRESULTERROR: a CSMS keeps no ids of the CALLs it answered."""
    pair = ConnectionPair(version)
    responder = other(initiator)
    for _ in range(300):
        call = pair.conn[initiator].new_call("Heartbeat", {})
        pair.send(initiator, call)
        pair.send(responder, CallResult(message_id=call.message_id, payload={}))
    assert len(pair.conn[responder]._answered or {}) == (32 if version == "ocpp2.1" else 0)
    assert len(pair.conn[initiator]._finished or {}) == 32  # the default bound
    assert remembers_answers(pair, responder) is (version == "ocpp2.1")


def test_memories_of_answered_calls_are_bounded(version: str, initiator: Role) -> None:
    pair = ConnectionPair(version, finished_memory=2)
    responder = other(initiator)
    ids = []
    for _ in range(3):
        call = pair.conn[initiator].new_call("Heartbeat", {})
        pair.send(initiator, call)
        pair.send(responder, CallResult(message_id=call.message_id, payload={}))
        ids.append(call.message_id)
    # The initiator remembers the last two answered CALLs, and has forgotten the first; the
    # responder remembers what it answered only where a CALLRESULTERROR may name it (2.1).
    assert list(pair.conn[initiator]._finished or {}) == ids[1:]
    assert list(pair.conn[responder]._answered or {}) == (
        ids[1:] if remembers_answers(pair, responder) else []
    )
    late = pair.deliver(initiator, f'[3,"{ids[0]}",{{}}]') + pair.deliver(initiator, f'[3,"{ids[2]}",{{}}]')
    assert [e.late for e in late if isinstance(e, UnmatchedResponse)] == [False, True]


def test_a_reused_id_keeps_its_place_in_the_memories(version: str, initiator: Role) -> None:
    """Like a dict: remembering an id again updates it where it is (the oldest is forgotten first)."""
    pair = ConnectionPair(version, finished_memory=2)
    responder = other(initiator)
    for message_id in ("a", "b", "a", "c"):
        pair.send(initiator, Call(message_id=message_id, action="Heartbeat", payload={}))
        pair.send(responder, CallResult(message_id=message_id, payload={}))
        if message_id == "a" and remembers_answers(pair, responder):
            assert list(pair.conn[initiator]._finished or {}) == list(pair.conn[responder]._answered or {})
    assert list(pair.conn[initiator]._finished or {}) == ["b", "c"]
    assert list(pair.conn[responder]._answered or {}) == (
        ["b", "c"] if remembers_answers(pair, responder) else []
    )
    pair.conn[initiator].send(Call(message_id="b", action="Reset", payload={}))
    assert pair.conn[initiator].abandon_call("b")
    assert (pair.conn[initiator]._finished or {}) == {"b": "Reset", "c": "Heartbeat"}
