"""Every row of the rules table: bad input, per version, and the exact answer.

Each case is fed as ``str`` and as ``bytes`` to a CSMS and to a charging station
(the framing rules do not depend on the role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from ocpprpc import (
    BadMessage,
    Call,
    CallError,
    Connection,
    ErrorCode,
    InvalidResponse,
    JsonObjectCodec,
    MessageType,
    PayloadCodec,
    PayloadKind,
    Role,
    TooManyBadMessages,
    ValidationPolicy,
    Violation,
    codec_for,
)

from .helpers import ROLES, VERSIONS, answer_own_call

LONG_ID = "i" * 37


@dataclass(frozen=True)
class Row:
    name: str
    data: str
    violation: Violation
    #: The expected reply per version as a decoded frame, or None for silence.
    replies: dict[str, list[object] | None]


def _same(reply: list[object] | None) -> dict[str, list[object] | None]:
    return dict.fromkeys(VERSIONS, reply)


def _rpc(reply_id: str, desc: str, v16: list[object] | None = None) -> dict[str, list[object] | None]:
    """A frame error: RpcFrameworkError in 2.x, and *v16* on 1.6."""
    return {
        "ocpp1.6": v16,
        "ocpp2.0.1": [4, reply_id, "RpcFrameworkError", desc, {}],
        "ocpp2.1": [4, reply_id, "RpcFrameworkError", desc, {}],
    }


# fmt: off
ROWS = [
    # -- unreadable messages: "-1" in 2.x ([P4-201] 4.2.3), silence in 1.6 -----------
    Row("not json", "hello", Violation.NOT_JSON,
        _rpc("-1", "JSON is malformed: invalid character (byte 0)")),
    Row("truncated json", '[2,"a","Heartbeat",{', Violation.NOT_JSON,
        _rpc("-1", "Input data was truncated")),
    Row("json object", '{"a":1}', Violation.NOT_AN_ARRAY,
        _rpc("-1", "an OCPP-J message is a JSON array")),
    Row("json string", '"[2]"', Violation.NOT_AN_ARRAY,
        _rpc("-1", "an OCPP-J message is a JSON array")),
    Row("empty array", "[]", Violation.BAD_MESSAGE_TYPE,
        _rpc("-1", "element 0 must be the message type number")),
    Row("type is a string", '["2","a","Heartbeat",{}]', Violation.BAD_MESSAGE_TYPE,
        _rpc("-1", "element 0 must be the message type number")),
    Row("type is a bool", '[true,"a","Heartbeat",{}]', Violation.BAD_MESSAGE_TYPE,
        _rpc("-1", "element 0 must be the message type number")),
    Row("type is a float", '[2.0,"a","Heartbeat",{}]', Violation.BAD_MESSAGE_TYPE,
        _rpc("-1", "element 0 must be the message type number")),
    Row("type out of range", "[1e400]", Violation.BAD_MESSAGE_TYPE,
        _rpc("-1", "element 0 must be the message type number")),
    # -- ids --------------------------------------------------------------------------
    Row("call id is a number", '[2,5,"Heartbeat",{}]', Violation.UNREADABLE_ID,
        _rpc("-1", "message id could not be read")),
    Row("call id is null", '[2,null,"Heartbeat",{}]', Violation.UNREADABLE_ID,
        _rpc("-1", "message id could not be read")),
    Row("call id missing", "[2]", Violation.UNREADABLE_ID,
        _rpc("-1", "message id could not be read")),
    Row("broken call with over-long id", f'[2,"{LONG_ID}",7,{{}}]', Violation.UNREADABLE_ID,
        _rpc("-1", "message id could not be read")),
    Row("type 7 with over-long id", f'[7,"{LONG_ID}"]', Violation.UNKNOWN_MESSAGE_TYPE,
        {"ocpp1.6": None, "ocpp2.1": None,
         "ocpp2.0.1": [4, "-1", "MessageTypeNotSupported", "message type 7 is not supported", {}]}),
    Row("call id empty", '[2,"","Heartbeat",{}]', Violation.UNREADABLE_ID,
        _rpc("-1", "message id could not be read")),
    Row("call id too long", f'[2,"{LONG_ID}","Heartbeat",{{}}]', Violation.ID_TOO_LONG,
        _rpc(LONG_ID, "message id is longer than 36 characters",
             [4, LONG_ID, "FormationViolation", "message id is longer than 36 characters", {}])),
    # -- CALL structure (id readable: answered with that id) -----------------------------
    Row("call without payload", '[2,"a","Heartbeat"]', Violation.MALFORMED_FRAME,
        _rpc("a", "Expected `array` of at least length 4, got 3",
             [4, "a", "FormationViolation", "Expected `array` of at least length 4, got 3", {}])),
    Row("call with extra element", '[2,"a","Heartbeat",{},1]', Violation.MALFORMED_FRAME,
        _rpc("a", "Expected `array` of at most length 3",
             [4, "a", "FormationViolation", "Expected `array` of at most length 3", {}])),
    Row("call action not a string", '[2,"a",7,{}]', Violation.MALFORMED_FRAME,
        _rpc("a", "Expected `str`, got `int` - at `$[2]`",
             [4, "a", "FormationViolation", "Expected `str`, got `int` - at `$[2]`", {}])),
    Row("call payload is an array", '[2,"a","Heartbeat",[]]', Violation.PAYLOAD_NOT_OBJECT,
        {"ocpp1.6": [4, "a", "FormationViolation", "payload must be a JSON object", {}],
         "ocpp2.0.1": [4, "a", "FormatViolation", "payload must be a JSON object", {}],
         "ocpp2.1": [4, "a", "FormatViolation", "payload must be a JSON object", {}]}),
    Row("call payload is null", '[2,"a","Heartbeat",null]', Violation.PAYLOAD_NOT_OBJECT,
        {"ocpp1.6": [4, "a", "FormationViolation", "payload must be a JSON object", {}],
         "ocpp2.0.1": [4, "a", "FormatViolation", "payload must be a JSON object", {}],
         "ocpp2.1": [4, "a", "FormatViolation", "payload must be a JSON object", {}]}),
    Row("call payload number out of range", '[2,"a","Heartbeat",{"x":1e400}]', Violation.INVALID_PAYLOAD,
        {"ocpp1.6": [4, "a", "FormationViolation", "Number out of range - at `$[...]`", {}],
         "ocpp2.0.1": [4, "a", "FormatViolation", "Number out of range - at `$[...]`", {}],
         "ocpp2.1": [4, "a", "FormatViolation", "Number out of range - at `$[...]`", {}]}),
    # -- unknown message types: ignore (1.6, 2.1) or MessageTypeNotSupported (2.0.1) ----
    Row("type 7", '[7,"a",{}]', Violation.UNKNOWN_MESSAGE_TYPE,
        {"ocpp1.6": None, "ocpp2.1": None,
         "ocpp2.0.1": [4, "a", "MessageTypeNotSupported", "message type 7 is not supported", {}]}),
    Row("type 7 without id", "[7]", Violation.UNKNOWN_MESSAGE_TYPE,
        {"ocpp1.6": None, "ocpp2.1": None,
         "ocpp2.0.1": [4, "-1", "MessageTypeNotSupported", "message type 7 is not supported", {}]}),
    Row("type 0", '[0,"a"]', Violation.UNKNOWN_MESSAGE_TYPE,
        {"ocpp1.6": None, "ocpp2.1": None,
         "ocpp2.0.1": [4, "a", "MessageTypeNotSupported", "message type 0 is not supported", {}]}),
    # -- frames that are never answered with a CALLERROR ---------------------------------
    Row("callerror with null details", '[4,"zz","GenericError","",null]', Violation.MALFORMED_FRAME,
        _same(None)),
    Row("callerror code not a string", '[4,"zz",5,"",{}]', Violation.MALFORMED_FRAME, _same(None)),
    Row("callerror without id", "[4]", Violation.UNREADABLE_ID, _same(None)),
    # a defective CALLRESULT: CALLRESULTERROR on 2.1 ([P4-21] FR.06), nothing before.
    Row("callresult wrong arity", '[3,"zz"]', Violation.MALFORMED_FRAME,
        {"ocpp1.6": None, "ocpp2.0.1": None,
         "ocpp2.1": [5, "zz", "RpcFrameworkError", "Expected `array` of at least length 3, got 2", {}]}),
    Row("callresult unreadable id", '[3,{},{}]', Violation.UNREADABLE_ID,
        {"ocpp1.6": None, "ocpp2.0.1": None,
         "ocpp2.1": [5, "-1", "RpcFrameworkError", "message id could not be read", {}]}),
]
# fmt: on


def _replies_for(row: Row) -> list[Any]:
    return [pytest.param(row, version, id=f"{version}-{row.name}") for version in VERSIONS]


@pytest.mark.parametrize(("row", "version"), [p for row in ROWS for p in _replies_for(row)])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_rules_row(row: Row, version: str, role: Role, as_bytes: bool) -> None:
    engine = Connection(role, version)
    engine.receive_message(row.data.encode() if as_bytes else row.data)
    (event,) = engine.events()
    assert isinstance(event, BadMessage)
    assert event.violation is row.violation
    expected = row.replies[version]
    if expected is None:
        assert event.reply is None
    else:
        assert event.reply is not None
        assert msgspec.json.decode(event.reply) == expected
    assert engine.consecutive_bad_messages == 1
    assert not engine.inbound_calls  # a bad CALL is never handed to a handler


def test_salvaged_fields_are_reported() -> None:
    engine = Connection(Role.CSMS, "ocpp2.0.1")
    engine.receive_message('[2,"abc",7,{}]')
    engine.receive_message('[2,"abc","Authorize",{},"extra"]')
    first, second = engine.events()
    assert isinstance(first, BadMessage) and isinstance(second, BadMessage)
    assert (first.message_type, first.message_id, first.action) == (2, "abc", None)
    assert (second.message_type, second.message_id, second.action) == (2, "abc", "Authorize")
    assert second.code is ErrorCode.RPC_FRAMEWORK_ERROR


def test_send_and_callresulterror_types_are_unknown_before_21() -> None:
    for version in ("ocpp1.6", "ocpp2.0.1"):
        engine = Connection(Role.CSMS, version)
        engine.receive_message('[6,"s1","NotifyPeriodicEventStream",{}]')
        engine.receive_message('[5,"r1","FormatViolation","",{}]')
        for event in engine.events():
            assert isinstance(event, BadMessage)
            assert event.violation is Violation.UNKNOWN_MESSAGE_TYPE
            assert (event.reply is not None) == (version == "ocpp2.0.1")


@pytest.mark.parametrize("version", VERSIONS)
def test_duplicate_inbound_call_is_refused(version: str) -> None:
    engine = Connection(Role.CSMS, version)
    engine.receive_message('[2,"dup","Heartbeat",{}]')
    engine.receive_message('[2,"dup","Heartbeat",{}]')
    first, second = engine.events()
    assert first == Call(message_id="dup", action="Heartbeat", payload={})
    assert isinstance(second, BadMessage) and second.violation is Violation.DUPLICATE_CALL
    code = "GenericError" if version == "ocpp1.6" else "RpcFrameworkError"
    assert second.reply is not None
    assert msgspec.json.decode(second.reply) == [
        4,
        "dup",
        code,
        "a CALL with this message id is already being handled",
        {},
    ]
    # The first CALL is still being handled and can be answered normally.
    assert dict(engine.inbound_calls) == {"dup": "Heartbeat"}


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_messages_are_ignored_and_not_counted(version: str) -> None:
    engine = Connection(Role.CSMS, version, max_bad_messages=1)
    for data in ("", b"", "   \n", memoryview(b" ")):
        engine.receive_message(data)
    events = list(engine.events())
    assert [e.violation for e in events if isinstance(e, BadMessage)] == [Violation.EMPTY] * 4
    assert all(e.reply is None for e in events if isinstance(e, BadMessage))
    assert engine.consecutive_bad_messages == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_memoryview_input(version: str) -> None:
    engine = Connection(Role.CSMS, version)
    engine.receive_message(memoryview(b'[2,"m","Heartbeat",{}]'))
    engine.receive_message(bytearray(b"garbage"))
    call, bad = engine.events()
    assert isinstance(call, Call) and call.message_id == "m"
    assert isinstance(bad, BadMessage) and bad.violation is Violation.NOT_JSON


@pytest.mark.parametrize("version", VERSIONS)
def test_bad_message_accounting(version: str) -> None:
    engine = Connection(Role.CSMS, version, max_bad_messages=3)
    for _ in range(2):
        engine.receive_message("junk")
    assert engine.consecutive_bad_messages == 2
    engine.receive_message('[2,"ok","Heartbeat",{}]')  # a good message resets the count
    assert engine.consecutive_bad_messages == 0
    for _ in range(4):
        engine.receive_message("junk")
    events = list(engine.events())
    limit_events = [e for e in events if isinstance(e, TooManyBadMessages)]
    assert limit_events == [TooManyBadMessages(count=3, limit=3)]  # emitted once
    assert events.index(limit_events[0]) == 6  # right after the third bad message in a row


@pytest.mark.parametrize("version", VERSIONS)
def test_malformed_answer_to_our_call_fails_it(version: str) -> None:
    """A defective CALLRESULT or CALLERROR naming our CALL ends that CALL (never answered by CALLERROR)."""
    engine = Connection(Role.CHARGING_STATION, version, max_outstanding_calls=2)
    a = engine.new_call("BootNotification", {})
    b = engine.new_call("Heartbeat", {})
    engine.send(a)
    engine.send(b)
    engine.receive_message(f'[3,"{a.message_id}"]')
    engine.receive_message(f'[4,"{b.message_id}","GenericError"]')
    first, second = engine.events()
    assert isinstance(first, InvalidResponse)
    assert (first.message_id, first.action, first.message_type) == (a.message_id, "BootNotification", 3)
    assert isinstance(second, InvalidResponse)
    assert (second.message_id, second.action, second.message_type) == (b.message_id, "Heartbeat", 4)
    assert second.reply is None
    if version == "ocpp2.1":
        assert first.reply is not None
        assert msgspec.json.decode(first.reply)[:3] == [5, a.message_id, "RpcFrameworkError"]
    else:
        assert first.reply is None
    assert not engine.outstanding_calls
    assert engine.consecutive_bad_messages == 2


@pytest.mark.parametrize("version", VERSIONS)
def test_result_payload_not_an_object_fails_the_call(version: str) -> None:
    message_id, (event,) = answer_own_call(version, '[3,"{id}",[1]]')
    assert isinstance(event, InvalidResponse)
    assert event.message_type is MessageType.CALL_RESULT
    assert event.code is ErrorCode.FORMAT_VIOLATION
    if version == "ocpp2.1":
        assert event.reply is not None
        assert msgspec.json.decode(event.reply) == [
            5,
            message_id,
            "FormatViolation",
            "payload must be a JSON object",
            {},
        ]
    else:
        assert event.reply is None


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_error_codes_are_read_as_generic(version: str) -> None:
    _, (event,) = answer_own_call(version, '[4,"{id}","VendorSpecificFault","boom",{"k":1}]')
    assert isinstance(event, CallError)
    assert event.code is ErrorCode.GENERIC_ERROR
    assert event.wire_code == "VendorSpecificFault"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "spelling",
    [
        "FormationViolation",
        "FormatViolation",
        "OccurenceConstraintViolation",
        "OccurrenceConstraintViolation",
    ],
)
def test_every_spelling_is_accepted_on_receive(version: str, spelling: str) -> None:
    _, (event,) = answer_own_call(version, f'[4,"{{id}}","{spelling}","",{{}}]')
    expected = (
        ErrorCode.FORMAT_VIOLATION if "Format" in spelling else ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    )
    assert isinstance(event, CallError) and event.code is expected


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


#: JSON nested far past the interpreter's recursion limit, which msgspec counts against.
DEEP = 100_000

DEEP_MESSAGES = {
    "whole-message": _nested(DEEP),
    "call-payload": f'[2,"1","Heartbeat",{_nested(DEEP)}]',
    "call-payload-member": f'[2,"1","Heartbeat",{{"a":{_nested(DEEP)}}}]',
    "result-payload": f'[3,"1",{_nested(DEEP)}]',
    "error-details": f'[4,"1","GenericError","",{{"a":{_nested(DEEP)}}}]',
}


class _GeneralPath(JsonObjectCodec):
    """JsonObjectCodec's behaviour, but a subclass: the engine takes no shortcut for it."""


def _codecs(version: str) -> list[PayloadCodec]:
    return [JsonObjectCodec(), _GeneralPath(), codec_for(version, ValidationPolicy.on())]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", DEEP_MESSAGES)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_deeply_nested_json_is_a_malformed_message(version: str, name: str, as_bytes: bool) -> None:
    """A RecursionError inside the decoder is peer input: a BadMessage and the malformed-frame reply."""
    text = DEEP_MESSAGES[name]
    for codec in _codecs(version):
        engine = Connection(Role.CSMS, version, codec=codec, max_bad_messages=5)
        engine.receive_message(text.encode() if as_bytes else text)
        [event] = engine.events()
        assert isinstance(event, BadMessage)
        assert event.violation is Violation.NOT_JSON
        assert event.description == "JSON nested too deeply to be read"
        if version == "ocpp1.6":
            assert event.reply is None  # 1.6 has no reply for a message whose id cannot be read
        else:
            assert event.reply is not None
            assert msgspec.json.decode(event.reply)[:3] == [4, "-1", "RpcFrameworkError"]
        # The engine carries on: a good CALL after it is read.
        engine.receive_message('[2,"2","Heartbeat",{}]')
        assert [type(e) for e in engine.events()] == [Call]


class _RecursingCodec(JsonObjectCodec):
    """A user codec whose own walk of the payload (a custom validator, say) overflows the stack."""

    def decode(
        self, action: str, kind: PayloadKind, data: bytes | memoryview | msgspec.Raw, *, validate: bool = True
    ) -> Any:
        raise RecursionError("maximum recursion depth exceeded")


@pytest.mark.parametrize("version", VERSIONS)
def test_a_codec_that_recurses_too_deep_is_a_format_violation(version: str) -> None:
    engine = Connection(Role.CSMS, version, codec=_RecursingCodec())
    engine.receive_message('[2,"1","Heartbeat",{"a":[[[1]]]}]')
    [event] = engine.events()
    assert isinstance(event, BadMessage)
    assert event.violation is Violation.INVALID_PAYLOAD
    assert event.code is ErrorCode.FORMAT_VIOLATION
    assert event.reply is not None
    reply = msgspec.json.decode(event.reply)
    assert reply[:2] == [4, "1"] and reply[3] == "JSON nested too deeply to be read"
    # A payload that is not an object is still told apart.
    engine.receive_message('[2,"2","Heartbeat",[1]]')
    [event] = engine.events()
    assert isinstance(event, BadMessage) and event.violation is Violation.PAYLOAD_NOT_OBJECT
